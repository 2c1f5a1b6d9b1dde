//! The service REST API's request and response bodies, as IoT Hub spells them. Each REST
//! field lives here once: the hub's service operations take and return these types, and
//! `http.rs` only (de)serialises them. Unknown request fields are ignored, as the hub does
//! (the SDKs send whole twins and devices back).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A time the hub has not recorded, as IoT Hub writes it.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// `enabled` or `disabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityStatus {
    /// Can connect.
    Enabled,
    /// Cannot connect; connected clients are closed.
    Disabled,
}

impl IdentityStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityStatus::Enabled => "enabled",
            IdentityStatus::Disabled => "disabled",
        }
    }
}

/// `PUT /devices/{id}[/modules/{mid}]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRequest {
    /// New status; unchanged (or enabled for a new identity) when absent.
    #[serde(default)]
    pub status: Option<IdentityStatus>,
    /// Keys; generated (or unchanged) when absent or empty.
    #[serde(default)]
    pub authentication: Option<AuthenticationRequest>,
}

/// `authentication` in an identity request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationRequest {
    /// The SAS keys.
    #[serde(default)]
    pub symmetric_key: Option<SymmetricKeys>,
}

/// A primary and a secondary key (base64).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeys {
    /// The primary key.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// The secondary key.
    #[serde(default)]
    pub secondary_key: Option<String>,
}

/// No X.509 thumbprints (devhub authenticates with SAS only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// Always null.
    pub primary_thumbprint: Option<String>,
    /// Always null.
    pub secondary_thumbprint: Option<String>,
}

/// `authentication` in an identity answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationView {
    /// The keys.
    pub symmetric_key: SymmetricKeys,
    /// None.
    pub x509_thumbprint: X509Thumbprint,
    /// `sas`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `capabilities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Always false.
    pub iot_edge: bool,
}

/// A device or module as the registry answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    /// The device.
    pub device_id: String,
    /// The module, for a module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Changes when an identity is deleted and created again.
    pub generation_id: String,
    /// The identity's etag.
    pub etag: String,
    /// `Connected` or `Disconnected`.
    pub connection_state: &'static str,
    /// `enabled` or `disabled`.
    pub status: IdentityStatus,
    /// Always null.
    pub status_reason: Option<String>,
    /// Not recorded.
    pub connection_state_updated_time: &'static str,
    /// Not recorded.
    pub status_updated_time: &'static str,
    /// Not recorded.
    pub last_activity_time: &'static str,
    /// Not counted.
    pub cloud_to_device_message_count: u32,
    /// The keys.
    pub authentication: AuthenticationView,
    /// No IoT Edge.
    pub capabilities: Capabilities,
}

/// `PATCH` (merge) or `PUT` (replace) `/twins/{id}[/modules/{mid}]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinUpdate {
    /// Tags to merge or set.
    #[serde(default)]
    pub tags: Option<Map<String, Value>>,
    /// Desired properties.
    #[serde(default)]
    pub properties: Option<TwinPropertiesUpdate>,
}

/// `properties` in a twin update: only `desired` is the service's to change.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinPropertiesUpdate {
    /// Desired properties to merge or set (`$`-keys are the caller's copy and ignored).
    #[serde(default)]
    pub desired: Option<Map<String, Value>>,
}

/// `properties` in a twin answer, each with `$metadata` and `$version`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinPropertiesView {
    /// Desired properties.
    pub desired: Value,
    /// Reported properties.
    pub reported: Value,
}

/// A twin as the service sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinView {
    /// The device.
    pub device_id: String,
    /// The module, for a module twin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The twin's etag (for If-Match).
    pub etag: String,
    /// The identity's etag.
    pub device_etag: String,
    /// `enabled` or `disabled`.
    pub status: IdentityStatus,
    /// Not recorded.
    pub status_update_time: &'static str,
    /// `Connected` or `Disconnected`.
    pub connection_state: &'static str,
    /// Not recorded.
    pub last_activity_time: &'static str,
    /// Not counted.
    pub cloud_to_device_message_count: u32,
    /// `sas`.
    pub authentication_type: &'static str,
    /// None.
    pub x509_thumbprint: X509Thumbprint,
    /// The Plug and Play model the device last connected with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The twin's version.
    pub version: u64,
    /// Tags.
    pub tags: Value,
    /// Desired and reported properties.
    pub properties: TwinPropertiesView,
    /// No IoT Edge.
    pub capabilities: Capabilities,
}

/// `POST /twins/{id}[/modules/{mid}]/methods`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodInvocation {
    /// The method.
    pub method_name: String,
    /// Its payload (any JSON; null when absent).
    #[serde(default)]
    pub payload: Value,
    /// How long to wait for the answer, 5 to 300 s (default 30).
    #[serde(default)]
    pub response_timeout_in_seconds: Option<u64>,
    /// How long to wait for the device to come online, 0 to 300 s (default 0).
    #[serde(default)]
    pub connect_timeout_in_seconds: Option<u64>,
}

/// The answer to a method call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodResult {
    /// The device's status.
    pub status: i32,
    /// The device's payload.
    pub payload: Value,
}

/// The answer to `POST /devices/{id}/messages/deviceBound`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dAccepted {
    /// The message id (given, or generated).
    pub message_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_what_the_sdks_send_and_refuse_wrong_types() {
        let r: IdentityRequest = serde_json::from_value(json!({
            "deviceId": "d1", "etag": "*", "status": "disabled",
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "a", "secondaryKey": null}},
        }))
        .unwrap();
        assert_eq!(r.status, Some(IdentityStatus::Disabled));
        let keys = r.authentication.unwrap().symmetric_key.unwrap();
        assert_eq!(
            (keys.primary_key.as_deref(), keys.secondary_key),
            (Some("a"), None)
        );
        assert!(serde_json::from_value::<IdentityRequest>(json!({"status": "paused"})).is_err());
        let t: TwinUpdate = serde_json::from_value(json!({
            "tags": null, "properties": {"desired": {"a": 1}, "reported": {"x": 1}}, "etag": "AAAA",
        }))
        .unwrap();
        assert!(t.tags.is_none());
        assert_eq!(t.properties.unwrap().desired.unwrap()["a"], 1);
        assert!(
            serde_json::from_value::<TwinUpdate>(json!({"properties": {"desired": 5}})).is_err()
        );
        let m: MethodInvocation =
            serde_json::from_value(json!({"methodName": "reboot", "responseTimeoutInSeconds": 10}))
                .unwrap();
        assert_eq!(
            (
                m.method_name.as_str(),
                m.payload,
                m.response_timeout_in_seconds
            ),
            ("reboot", Value::Null, Some(10))
        );
    }
}
