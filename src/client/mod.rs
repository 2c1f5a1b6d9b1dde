//! Browser glue around the device session: the only module that touches browser APIs
//! (WebSocket, timers, clock, fetch).

mod device;
mod hub;
mod page;
mod provision;
mod service;
mod transport;
pub mod view;

pub use device::{clock_label, now_ms, ConnectOptions, Device};
pub use hub::{fetch_demo, DemoDevice};
pub use page::{
    copy_text, download_text, focus_element, fresh_message_id, page_origin, storage_get,
    storage_set,
};
pub use provision::{ProvisionView, Provisioner};
pub use service::{Console, ServiceAnswer};
pub use view::{CallOutcome, DeviceView, Entry, Limits, PastCall, Ring, TrafficEntry};

/// What the header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnStatus {
    /// No socket, no session.
    Disconnected,
    /// Socket opening or CONNECT sent, no CONNACK yet.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// The connection dropped and the session is waiting to try again.
    Reconnecting,
}

impl ConnStatus {
    /// The word shown to the user (and matched by UI tests).
    pub fn label(self) -> &'static str {
        match self {
            ConnStatus::Disconnected => "disconnected",
            ConnStatus::Connecting => "connecting",
            ConnStatus::Connected => "connected",
            ConnStatus::Reconnecting => "reconnecting",
        }
    }

    /// A CSS modifier for the status dot.
    pub fn css_class(self) -> &'static str {
        match self {
            ConnStatus::Disconnected => "status status--off",
            ConnStatus::Connecting | ConnStatus::Reconnecting => "status status--busy",
            ConnStatus::Connected => "status status--on",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_words_ui_tests_match() {
        // UI tests find the state by these exact words; each must be distinct and none may
        // contain another except "connected" in "disconnected", which tests match whole.
        let all = [
            ConnStatus::Disconnected,
            ConnStatus::Connecting,
            ConnStatus::Connected,
            ConnStatus::Reconnecting,
        ];
        let labels: Vec<_> = all.iter().map(|s| s.label()).collect();
        assert_eq!(
            labels,
            ["disconnected", "connecting", "connected", "reconnecting"]
        );
        assert_eq!(ConnStatus::Connected.css_class(), "status status--on");
        assert_ne!(
            ConnStatus::Disconnected.css_class(),
            ConnStatus::Connected.css_class()
        );
    }
}
