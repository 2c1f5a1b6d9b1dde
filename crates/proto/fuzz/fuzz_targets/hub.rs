//! devhub's `Hub` fed arbitrary device bytes after a valid CONNECT, with clock ticks in
//! between: it never panics, and every packet it asks the glue to send can be encoded
//! (a packet that cannot be is silently lost: a method call or C2D message the device
//! never sees).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use twinscope_devhub::hub::{Action, Hub, HubConfig};
use twinscope_devhub::store::Store;
use twinscope_proto::iothub::{sas, PropertyBag, SymmetricKey};
use twinscope_proto::mqtt::{Connect, ConnectReturnCode, Decoder, Packet};

const HUB: &str = "fz.azure-devices.net";

fn check(out: &[Action]) -> bool {
    let mut open = true;
    for a in out {
        match a {
            Action::Send(_, p) => {
                p.to_bytes().expect("every packet the hub sends encodes");
            }
            Action::Close(1, _) => open = false,
            _ => {}
        }
    }
    open
}

fuzz_target!(|data: &[u8]| {
    let owner = SymmetricKey::from_bytes(vec![1u8; 32]);
    let mut hub = Hub::new(
        HubConfig {
            hub_name: HUB.into(),
            owner_key: owner,
            c2d_ttl_ms: 3_600_000,
            c2d_lock_ms: 60_000,
        },
        Store::in_memory().unwrap(),
    );
    let mut now: u64 = 1_767_225_600_000;
    let (v, _) = hub
        .put_identity(
            "d1",
            None,
            &serde_json::from_value(json!({"authentication": {"symmetricKey": {"primaryKey": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}}})).unwrap(),
            None,
            now,
        )
        .unwrap();
    let key = SymmetricKey::from_base64(
        v.authentication
            .symmetric_key
            .primary_key
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let token = sas::build_token(&format!("{HUB}/devices/d1"), &key, now / 1000 + 3600, None);
    let out = hub.connect(
        1,
        Connect {
            client_id: "d1".into(),
            keep_alive: 60,
            clean_session: data.first().is_some_and(|b| b & 1 == 1),
            last_will: None,
            username: Some(format!("{HUB}/d1/?api-version=2021-04-12")),
            password: Some(token.into_bytes()),
        },
        now,
    );
    assert!(out.iter().any(|a| matches!(a, Action::Send(1, Packet::ConnAck(c)) if c.code == ConnectReturnCode::Accepted)));
    // Something for the hub to send the device: a C2D message and a desired patch.
    let (_, out) = hub
        .send_c2d("d1", b"c2d", PropertyBag::default(), None, now)
        .unwrap();
    check(&out);

    let mut rest = data;
    let decoder = Decoder::default();
    let mut n = 0u32;
    while let Ok(Some((p, used))) = decoder.decode(rest) {
        rest = &rest[used..];
        n += 1;
        if !check(&hub.packet(1, p, now)) {
            return;
        }
        if n % 4 == 0 {
            now += 20_000;
            if !check(&hub.tick(now)) {
                return;
            }
            if let Ok((_, out)) = hub.update_twin(
                "d1",
                None,
                &twin_update(json!({"properties": {"desired": {"n": n}}})),
                false,
                None,
                now,
            ) {
                check(&out);
            }
            if let Ok((_, out)) = hub.invoke_method("d1", None, "m", &json!({"n": n})) {
                check(&out);
            }
        }
    }
    check(&hub.closed(1, false, now));
});

fn twin_update(v: serde_json::Value) -> twinscope_devhub::rest::TwinUpdate {
    serde_json::from_value(v).unwrap()
}
