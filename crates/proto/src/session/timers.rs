//! The session's timers, in one table: each timer's deadline is computed in one place
//! ([`DeviceSession::deadline`]), `poll_timeout` takes the earliest, and `handle_timeout`
//! fires the ones due, so the two cannot disagree (quinn-proto's `connection/timer.rs`).

use super::*;

/// The longest keep-alive worth asking for: the hub waits 1.5× the keep-alive, capped at
/// 1767 s, so a longer one would have the hub drop an idle device before it pings.
pub const MAX_KEEP_ALIVE_S: u16 = 1177;

/// How long to wait for PINGRESP (at most; shorter when the keep-alive is shorter).
const PING_TIMEOUT_MS: u64 = 30_000;

/// The session's timers; [`DeviceSession::deadline`] computes each one's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Ask for a new token (at the renewal fraction of the current one's life).
    TokenRenewal,
    /// The oldest twin request's answer is overdue.
    TwinRequest,
    /// Open the transport again (backoff).
    Reconnect,
    /// CONNACK is overdue.
    Connack,
    /// PINGRESP is overdue: the connection is dead.
    PingTimeout,
    /// Nothing was sent for a keep-alive period: send PINGREQ.
    KeepAlive,
}

impl Timer {
    /// In the order they fire when due together.
    pub(super) const ALL: [Timer; 6] = [
        Timer::TokenRenewal,
        Timer::TwinRequest,
        Timer::Reconnect,
        Timer::Connack,
        Timer::PingTimeout,
        Timer::KeepAlive,
    ];
}

impl DeviceSession {
    /// When to call `handle_timeout` next: the earliest deadline of the timer table.
    pub fn poll_timeout(&self) -> Option<u64> {
        Timer::ALL.iter().filter_map(|t| self.deadline(*t)).min()
    }

    /// The keep-alive the session asks for in CONNECT and keeps to, in ms: the configured
    /// value capped at 1177 s (the hub waits 1.5× that, and at most 1767 s).
    pub(super) fn keep_alive_ms(&self) -> u64 {
        u64::from(self.cfg.keep_alive_s.min(MAX_KEEP_ALIVE_S)) * 1000
    }

    /// The one place each timer's deadline is computed (ms), or `None` when it is not
    /// running. `poll_timeout` takes the earliest; `handle_timeout` fires the ones due, so
    /// the two cannot disagree.
    pub(super) fn deadline(&self, timer: Timer) -> Option<u64> {
        match (timer, self.state) {
            (Timer::Reconnect, State::Reconnecting { retry_at, .. }) => Some(retry_at),
            (Timer::Connack, State::Connecting) => self.connack_deadline,
            (Timer::KeepAlive, State::Connected) => {
                let ka = self.keep_alive_ms();
                (ka > 0 && self.ping_sent.is_none()).then_some(self.last_sent + ka)
            }
            (Timer::PingTimeout, State::Connected) => {
                let ka = self.keep_alive_ms();
                (ka > 0)
                    .then_some(self.ping_sent)
                    .flatten()
                    .map(|sent| sent + ka.min(PING_TIMEOUT_MS))
            }
            (Timer::TwinRequest, _) => self.twin.earliest_deadline(),
            (Timer::TokenRenewal, _) => {
                let (_, issued, expiry) = self.token.as_ref()?;
                (self.want_connected && !self.token_asked)
                    .then(|| self.renew_time(*issued, *expiry))
            }
            _ => None,
        }
    }

    pub(super) fn renew_time(&self, issued: u64, expiry: u64) -> u64 {
        issued + ((expiry.saturating_sub(issued)) as f64 * self.cfg.renew_at) as u64
    }

    /// Timers: reconnect, CONNACK timeout, keep-alive, request timeouts, token renewal.
    /// Fires every timer of the table whose deadline is due.
    pub fn handle_timeout(&mut self, now: u64) {
        for timer in Timer::ALL {
            if self.deadline(timer).is_some_and(|d| now >= d) {
                self.fire(timer, now);
            }
        }
    }

    pub(super) fn fire(&mut self, timer: Timer, now: u64) {
        match timer {
            Timer::TokenRenewal => {
                self.token_asked = true;
                self.events.push_back(Event::TokenNeeded);
            }
            Timer::TwinRequest => self.expire_twin_requests(now),
            Timer::Reconnect => self.open(now),
            Timer::Connack => {
                self.connack_deadline = None;
                self.events
                    .push_back(Event::Error("no CONNACK from the hub in time".into()));
                self.events.push_back(Event::CloseTransport);
            }
            Timer::PingTimeout => {
                self.events.push_back(Event::Error(
                    "no PINGRESP from the hub: the connection is dead".into(),
                ));
                self.events.push_back(Event::CloseTransport);
            }
            Timer::KeepAlive => {
                self.send(now, Packet::PingReq);
                self.ping_sent = Some(now);
            }
        }
    }
}
