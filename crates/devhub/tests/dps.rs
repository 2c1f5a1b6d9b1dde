//! DPS end to end: the real devhub binary, this crate's `ProvisioningSession` over a real
//! WebSocket, with an enrollment group (device key derived from the group key) and an
//! individual enrollment; the provisioned device then connects to the hub with its key.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::iothub::sas::{build_token, derive_device_key};
use twinscope_proto::iothub::SymmetricKey;
use twinscope_proto::mqtt::{Connect, ConnectReturnCode, Packet};
use twinscope_proto::provisioning::{
    registration_token, ProvisioningConfig, ProvisioningEvent, ProvisioningSession,
    RegistrationState,
};

use common::*;

const SCOPE: &str = "0ne00TEST01";
const GROUP_KEY: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const SOLO_KEY: &str = "c29sby1kZXZpY2Uta2V5LWZvci10ZXN0cy0xMjM0NTY=";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn key(k: &str) -> SymmetricKey {
    SymmetricKey::from_base64(k).unwrap()
}

/// Runs one registration to its end, pumping the session over a WebSocket to devhub.
async fn provision(
    hub: &Devhub,
    reg: &str,
    device_key: &SymmetricKey,
    payload: Option<Value>,
) -> Result<RegistrationState, String> {
    let mut s = ProvisioningSession::new(ProvisioningConfig {
        id_scope: SCOPE.into(),
        registration_id: reg.into(),
        token: registration_token(SCOPE, reg, device_key, now() / 1000 + 600),
        payload,
        timeout_ms: 30_000,
    });
    s.start(now())?;
    let mut dev: Option<Device> = None;
    let mut result = None;
    loop {
        loop {
            let bytes: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit()).collect();
            let events: Vec<ProvisioningEvent> = std::iter::from_fn(|| s.poll_event()).collect();
            if bytes.is_empty() && events.is_empty() {
                break;
            }
            if let Some(d) = dev.as_mut() {
                for b in bytes {
                    let _ = d.ws.send(Message::Binary(b.into())).await;
                }
            }
            for e in events {
                match e {
                    ProvisioningEvent::OpenTransport => {
                        dev = Some(Device::open(hub).await);
                        s.handle_opened(now());
                    }
                    ProvisioningEvent::CloseTransport => dev = None,
                    ProvisioningEvent::Assigned(st) => result = Some(Ok(st)),
                    ProvisioningEvent::Failed(w) => result = Some(Err(w)),
                    ProvisioningEvent::Progress(_) | ProvisioningEvent::Traffic(..) => {}
                }
            }
        }
        if s.is_done() {
            return result.expect("a done session said how it ended");
        }
        let wait = s.poll_timeout().map_or(Duration::from_secs(30), |t| {
            Duration::from_millis(t.saturating_sub(now()))
        });
        let d = dev.as_mut().expect("a transport while registering");
        tokio::select! {
            msg = d.ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => s.handle_bytes(now(), &b),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => { dev = None; s.handle_closed(now()); }
            },
            _ = tokio::time::sleep(wait) => s.handle_timeout(now()),
        }
    }
}

/// The provisioned device connects to the hub with its own key.
async fn connects(hub: &Devhub, id: &str, device_key: &SymmetricKey) -> bool {
    let mut d = Device::open(hub).await;
    let token = build_token(
        &format!("localhost/devices/{id}"),
        device_key,
        now() / 1000 + 600,
        None,
    );
    d.send(Packet::Connect(Connect {
        client_id: id.into(),
        keep_alive: 60,
        clean_session: true,
        last_will: None,
        username: Some(format!("localhost/{id}/?api-version=2021-04-12")),
        password: Some(token.into_bytes()),
    }))
    .await;
    matches!(d.recv().await, Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Accepted)
}

#[tokio::test]
async fn group_and_individual_enrollments_provision_devices_that_then_connect() {
    let hub = start(
        &[
            "--id-scope",
            SCOPE,
            "--dps-group",
            &format!("lab:{GROUP_KEY}"),
            "--dps-device",
            &format!("solo-1:{SOLO_KEY}"),
        ],
        None,
    );
    // A group enrollment: the device key is derived from the group key.
    let derived = key(&derive_device_key(&key(GROUP_KEY), "sensor-1"));
    let st = provision(
        &hub,
        "sensor-1",
        &derived,
        Some(json!({"modelId": "dtmi:x;1"})),
    )
    .await
    .unwrap();
    assert_eq!(st.assigned_hub.as_deref(), Some("localhost"));
    assert_eq!(st.device_id.as_deref(), Some("sensor-1"));
    assert_eq!(st.substatus.as_deref(), Some("initialAssignment"));
    assert!(
        connects(&hub, "sensor-1", &derived).await,
        "the device connects with its derived key"
    );

    // Registering again finds the device again.
    let st = provision(&hub, "sensor-1", &derived, None).await.unwrap();
    assert_eq!(
        st.substatus.as_deref(),
        Some("reprovisionedToInitialAssignment")
    );

    // An individual enrollment.
    let st = provision(&hub, "solo-1", &key(SOLO_KEY), None)
        .await
        .unwrap();
    assert_eq!(st.device_id.as_deref(), Some("solo-1"));
    assert!(connects(&hub, "solo-1", &key(SOLO_KEY)).await);

    // The group key itself (not derived) does not sign for a registration.
    let e = provision(&hub, "sensor-2", &key(GROUP_KEY), None)
        .await
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
    // Nor does another registration's key.
    let e = provision(&hub, "solo-1", &derived, None).await.unwrap_err();
    assert!(e.contains("refused"), "{e}");
}

#[tokio::test]
async fn enrollments_are_managed_through_the_rest_api_and_the_demo_shows_the_scope() {
    let hub = start(&["--id-scope", SCOPE, "--demo"], None);
    let http = reqwest::Client::new();
    // --demo adds the demo group; /devhub/demo names the scope and the group's key.
    let demo: Value = http
        .get(hub.url("/devhub/demo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(demo["idScope"], SCOPE);
    assert_eq!(demo["demoGroup"]["name"], "demo-group");
    let group_key = key(demo["demoGroup"]["key"].as_str().unwrap());
    let derived = key(&derive_device_key(&group_key, "from-demo"));
    assert!(provision(&hub, "from-demo", &derived, None).await.is_ok());

    // An individual enrollment created through the API (key generated).
    let r = http
        .put(hub.url("/enrollments/api-1"))
        .header("Authorization", hub.auth())
        .header("Content-Type", "application/json")
        .body(
            json!({"registrationId": "api-1", "attestation": {"type": "symmetricKey"}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    let k = key(e["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap());
    assert!(provision(&hub, "api-1", &k, None).await.is_ok());
    // Read back, deleted, then refused.
    let got = hub.get_json("/enrollments/api-1").await;
    assert_eq!(got["registrationId"], "api-1");
    let r = http
        .delete(hub.url("/enrollments/api-1"))
        .header("Authorization", hub.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(provision(&hub, "api-1", &k, None).await.is_err());
    // Without the service token, nothing.
    let r = http
        .get(hub.url("/enrollments/api-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // X.509 attestations are refused in words.
    let r = http
        .put(hub.url("/enrollmentGroups/g"))
        .header("Authorization", hub.auth())
        .header("Content-Type", "application/json")
        .body(json!({"attestation": {"type": "x509"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("symmetricKey"));
}
