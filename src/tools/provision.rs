//! The Provision panel's form: ID scope, registration id, an individual key or a group key
//! (the device key is then derived here, in the browser), an optional Plug and Play model
//! id, and the endpoint. Pure, so the checks are tested natively.

use serde_json::json;
use twinscope_proto::iothub::sas::derive_device_key;
use twinscope_proto::iothub::SymmetricKey;
use twinscope_proto::provisioning::{
    check_registration_id, registration_token, ProvisioningConfig, RegistrationState,
    GLOBAL_ENDPOINT,
};
use twinscope_proto::text::Quoted;

/// The form as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionForm {
    /// The ID scope.
    pub id_scope: String,
    /// The registration id.
    pub registration_id: String,
    /// The individual enrollment key, or the group key when `group_key`.
    pub key: String,
    /// `key` is an enrollment group's key: derive the device key from it.
    pub group_key: bool,
    /// A Plug and Play model id to send as `{"modelId": ...}`.
    pub model_id: String,
    /// The WebSocket URL; the global endpoint when empty.
    pub endpoint: String,
}

/// What a registration needs: the session's settings, where to connect, the device key.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The session's settings.
    pub config: ProvisioningConfig,
    /// The WebSocket URL.
    pub url: String,
    /// The device key (derived from a group key, or the individual key), base64.
    pub device_key: String,
}

/// The global device endpoint's WebSocket URL.
pub fn global_url() -> String {
    format!("wss://{GLOBAL_ENDPOINT}:443/$iothub/websocket")
}

impl ProvisionForm {
    /// The registration to run at `now_ms`, or what is wrong with the form.
    pub fn registration(&self, now_ms: u64) -> Result<Registration, String> {
        let scope = self.id_scope.trim();
        if scope.is_empty() {
            return Err(
                "the ID scope is empty: copy it from the DPS overview page (0ne...)".into(),
            );
        }
        if !scope.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "the ID scope {} should be letters and digits only, like 0ne00ABC123",
                Quoted(scope)
            ));
        }
        let reg = self.registration_id.trim();
        check_registration_id(reg)?;
        let key = SymmetricKey::from_base64(self.key.trim()).map_err(|e| {
            format!("the key is not valid base64 ({e}); copy the enrollment's primary key")
        })?;
        let device_key = if self.group_key {
            derive_device_key(&key, reg)
        } else {
            key.to_base64()
        };
        let dk = SymmetricKey::from_base64(&device_key).map_err(|e| e.to_string())?;
        let url = match self.endpoint.trim() {
            "" => global_url(),
            u if u.starts_with("wss://") || u.starts_with("ws://") => u.to_string(),
            u => {
                return Err(format!(
                    "the endpoint {} must start with wss:// (or ws:// for devhub)",
                    Quoted(u)
                ))
            }
        };
        let model = self.model_id.trim();
        Ok(Registration {
            config: ProvisioningConfig {
                id_scope: scope.to_string(),
                registration_id: reg.to_string(),
                token: registration_token(scope, reg, &dk, now_ms / 1000 + 3600),
                payload: (!model.is_empty()).then(|| json!({"modelId": model})),
                timeout_ms: 120_000,
            },
            url,
            device_key,
        })
    }
}

/// The device's connection string after an assignment.
pub fn connection_string(state: &RegistrationState, device_key: &str) -> Option<String> {
    Some(format!(
        "HostName={};DeviceId={};SharedAccessKey={device_key}",
        state.assigned_hub.as_deref()?,
        state.device_id.as_deref()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinscope_proto::iothub::SasToken;

    fn form() -> ProvisionForm {
        ProvisionForm {
            id_scope: "0ne00000000".into(),
            registration_id: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6".into(),
            key: "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==".into(),
            group_key: true,
            model_id: "dtmi:com:example:Thermostat;1".into(),
            endpoint: String::new(),
        }
    }

    #[test]
    fn a_group_key_is_turned_into_the_device_key_here() {
        let r = form().registration(1_700_000_000_000).unwrap();
        assert_eq!(
            r.device_key, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=",
            "vector D1"
        );
        assert_eq!(
            r.url,
            "wss://global.azure-devices-provisioning.net:443/$iothub/websocket"
        );
        assert_eq!(
            r.config.payload,
            Some(json!({"modelId": "dtmi:com:example:Thermostat;1"}))
        );
        let t = SasToken::parse(&r.config.token).unwrap();
        t.verify_signature(&SymmetricKey::from_base64(&r.device_key).unwrap())
            .unwrap();
        assert_eq!(
            t.resource,
            "0ne00000000/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
        );
        let individual = ProvisionForm {
            group_key: false,
            ..form()
        }
        .registration(0)
        .unwrap();
        assert_eq!(
            individual.device_key,
            form().key,
            "an individual key is used as is"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = |f: ProvisionForm| f.registration(0).unwrap_err();
        assert!(e(ProvisionForm {
            id_scope: " ".into(),
            ..form()
        })
        .contains("ID scope"));
        assert!(e(ProvisionForm {
            registration_id: "Dev 1".into(),
            ..form()
        })
        .contains("lowercase"));
        assert!(e(ProvisionForm {
            key: "not base64!".into(),
            ..form()
        })
        .contains("base64"));
        assert!(e(ProvisionForm {
            endpoint: "http://x".into(),
            ..form()
        })
        .contains("wss://"));
    }

    #[test]
    fn the_assignment_becomes_a_connection_string() {
        let st = RegistrationState {
            registration_id: "r".into(),
            assigned_hub: Some("hub.azure-devices.net".into()),
            device_id: Some("r".into()),
            status: "assigned".into(),
            substatus: None,
            error_code: None,
            error_message: None,
        };
        assert_eq!(
            connection_string(&st, "a2V5").as_deref(),
            Some("HostName=hub.azure-devices.net;DeviceId=r;SharedAccessKey=a2V5")
        );
    }
}
