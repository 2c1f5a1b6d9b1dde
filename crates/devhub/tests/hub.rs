//! Scenario tests of the hub logic: no sockets, virtual time, real SAS tokens.

use serde_json::{json, Value};
use twinscope_devhub::hub::{Action, ConnId, ErrorCode, FaultOp, Hub, HubConfig};
use twinscope_devhub::store::Store;
use twinscope_proto::iothub::{sas, PropertyBag, SymmetricKey, SysPrefix, Topic};
use twinscope_proto::mqtt::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PacketId, Publish, QoS, QosPid, SubAck,
    SubAckCode, Subscribe, SubscribeFilter,
};

const HUB: &str = "devhub.local";
const T0: u64 = 1_800_000_000_000; // ms
const OWNER: &str = "b3duZXIta2V5LW93bmVyLWtleS1vd25lci1rZXktMTIz";

fn hub() -> Hub {
    let cfg = HubConfig {
        hub_name: HUB.into(),
        owner_key: SymmetricKey::from_base64(OWNER).unwrap(),
        c2d_ttl_ms: 3_600_000,
        c2d_lock_ms: 60_000,
    };
    let mut h = Hub::new(cfg, Store::in_memory().unwrap());
    for d in ["d1", "d2"] {
        h.put_identity(d, None, &Default::default(), None, T0)
            .unwrap();
    }
    h
}

fn key_of(h: &Hub, device: &str, module: Option<&str>) -> SymmetricKey {
    let rec = h.store().identity(device, module).unwrap().unwrap();
    SymmetricKey::from_base64(&rec.primary_key).unwrap()
}

fn token(h: &Hub, device: &str, expiry_s: u64) -> String {
    sas::build_token(
        &format!("{HUB}/devices/{device}"),
        &key_of(h, device, None),
        expiry_s,
        None,
    )
}

fn connect_packet(device: &str, password: String, clean: bool) -> Connect {
    Connect {
        client_id: device.into(),
        keep_alive: 60,
        clean_session: clean,
        last_will: None,
        username: Some(format!("{HUB}/{device}/?api-version=2021-04-12")),
        password: Some(password.into_bytes()),
    }
}

fn connack(code: ConnectReturnCode, session_present: bool) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
    })
}

/// Connects `device` on `conn`, expecting acceptance.
fn online(h: &mut Hub, conn: ConnId, device: &str, clean: bool) -> Vec<Action> {
    let t = token(h, device, T0 / 1000 + 3600);
    let out = h.connect(conn, connect_packet(device, t, clean), T0);
    assert!(
        out.iter().any(|a| matches!(a, Action::Send(c, Packet::ConnAck(ConnAck { code: ConnectReturnCode::Accepted, .. })) if *c == conn)),
        "{out:?}"
    );
    out
}

fn subscribe(h: &mut Hub, conn: ConnId, filters: &[(&str, QoS)]) -> Vec<Action> {
    h.packet(
        conn,
        Packet::Subscribe(Subscribe {
            pkid: PacketId::new(1).unwrap(),
            filters: filters
                .iter()
                .map(|(f, q)| SubscribeFilter {
                    filter: f.to_string(),
                    qos: *q,
                })
                .collect(),
        }),
        T0,
    )
}

fn publish(topic: &str, payload: &[u8], qospid: QosPid) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qospid,
        retain: false,
        topic: topic.into(),
        payload: payload.to_vec(),
    })
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn closes(out: &[Action], conn: ConnId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Close(c, _) if *c == conn))
}

fn sent(out: &[Action], conn: ConnId) -> Vec<Packet> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(c, p) if *c == conn => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn publishes(out: &[Action], conn: ConnId) -> Vec<Publish> {
    sent(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn accepts_a_valid_token_and_refuses_every_bad_one_with_connack_5() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);

    let not_authorized = |out: Vec<Action>, conn: ConnId| {
        assert_eq!(
            sent(&out, conn),
            vec![connack(ConnectReturnCode::NotAuthorized, false)],
            "{out:?}"
        );
        assert!(closes(&out, conn));
    };
    let good = token(&h, "d2", T0 / 1000 + 60);
    // Wrong key.
    let wrong = sas::build_token(
        &format!("{HUB}/devices/d2"),
        &SymmetricKey::from_bytes(b"nope".to_vec()),
        T0 / 1000 + 60,
        None,
    );
    not_authorized(h.connect(2, connect_packet("d2", wrong, true), T0), 2);
    // Expired.
    let expired = token(&h, "d2", T0 / 1000 - 1);
    not_authorized(h.connect(3, connect_packet("d2", expired, true), T0), 3);
    // d1's token used by d2.
    let d1s = token(&h, "d1", T0 / 1000 + 60);
    not_authorized(h.connect(4, connect_packet("d2", d1s, true), T0), 4);
    // Client id that does not match the user name.
    let mut c = connect_packet("d2", good.clone(), true);
    c.client_id = "d1".into();
    not_authorized(h.connect(5, c, T0), 5);
    // Unknown device.
    let mut c = connect_packet("ghost", good.clone(), true);
    c.username = Some(format!("{HUB}/ghost/?api-version=2021-04-12"));
    not_authorized(h.connect(6, c, T0), 6);
    // Another hub's name.
    let mut c = connect_packet("d2", good.clone(), true);
    c.username = Some("other.hub/d2/?api-version=2021-04-12".into());
    not_authorized(h.connect(7, c, T0), 7);
    // Disabled device.
    h.put_identity(
        "d2",
        None,
        &serde_json::from_value(json!({"status": "disabled"})).unwrap(),
        Some("*"),
        T0,
    )
    .unwrap();
    not_authorized(h.connect(8, connect_packet("d2", good, true), T0), 8);
    // d1 still works throughout.
    let out = h.packet(1, Packet::PingReq, T0);
    assert_eq!(sent(&out, 1), vec![Packet::PingResp]);
}

#[test]
fn owner_policy_token_with_hub_prefix_is_accepted() {
    let mut h = hub();
    let owner = SymmetricKey::from_base64(OWNER).unwrap();
    let t = sas::build_token(HUB, &owner, T0 / 1000 + 60, Some("iothubowner"));
    let out = h.connect(1, connect_packet("d1", t, true), T0);
    assert_eq!(
        sent(&out, 1),
        vec![connack(ConnectReturnCode::Accepted, false)]
    );
}

#[test]
fn telemetry_is_stored_with_stamps_and_scoped_to_the_identity() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    let topic = "devices/d1/messages/events/$.ct=application%2Fjson&$.mid=m1&alert=on&flag";
    let mut p = Publish {
        dup: false,
        qospid: QosPid::AtLeastOnce(pid(5)),
        retain: true,
        topic: topic.into(),
        payload: b"{\"t\":1}".to_vec(),
    };
    let out = h.packet(1, Packet::Publish(p.clone()), T0 + 5);
    assert_eq!(sent(&out, 1), vec![Packet::PubAck(pid(5))]);
    let ev = h.store().events(Some("d1"), 0, 10).unwrap();
    assert_eq!(ev.len(), 1);
    let props = &ev[0].properties;
    assert_eq!(props["system"]["$.ct"], "application/json");
    assert_eq!(props["system"]["$.mid"], "m1");
    assert_eq!(props["application"]["alert"], "on");
    assert_eq!(props["application"]["flag"], Value::Null);
    assert_eq!(props["application"]["mqtt-retain"], "true");
    assert_eq!(props["stamps"]["iothub-connection-device-id"], "d1");
    assert!(props["stamps"]["iothub-connection-auth-method"]
        .as_str()
        .unwrap()
        .contains("\"scope\":\"device\""));
    let generation = h
        .store()
        .identity("d1", None)
        .unwrap()
        .unwrap()
        .generation_id;
    assert!(!generation.is_empty());
    assert_eq!(
        props["stamps"]["iothub-connection-auth-generation-id"],
        generation.as_str()
    );
    assert_eq!(ev[0].body.as_deref(), Some("{\"t\":1}"));

    // Another device's topic closes the connection.
    p.topic = "devices/d2/messages/events/".into();
    let out = h.packet(1, Packet::Publish(p), T0);
    assert!(closes(&out, 1));
    assert!(h.store().events(Some("d2"), 0, 10).unwrap().is_empty());
}

#[test]
fn qos2_oversize_and_undocumented_topics_close_the_connection() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    let out = h.packet(
        1,
        publish(
            "devices/d1/messages/events/",
            b"x",
            QosPid::ExactlyOnce(pid(1)),
        ),
        T0,
    );
    assert!(closes(&out, 1));

    online(&mut h, 2, "d1", true);
    let big = vec![b'a'; 256 * 1024 + 1];
    let out = h.packet(
        2,
        publish(
            "devices/d1/messages/events/",
            &big,
            QosPid::AtLeastOnce(pid(1)),
        ),
        T0,
    );
    assert!(closes(&out, 2));

    online(&mut h, 3, "d1", true);
    let out = h.packet(3, publish("some/other/topic", b"x", QosPid::AtMostOnce), T0);
    assert!(closes(&out, 3));

    online(&mut h, 4, "d1", true);
    let out = subscribe(
        &mut h,
        4,
        &[("devices/d2/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    assert!(closes(&out, 4));
}

#[test]
fn subscribe_grants_qos1_for_qos2_and_limits_filters() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    let out = subscribe(
        &mut h,
        1,
        &[
            ("devices/d1/messages/devicebound/#", QoS::ExactlyOnce),
            ("$iothub/twin/res/#", QoS::AtMostOnce),
        ],
    );
    assert_eq!(
        sent(&out, 1),
        vec![Packet::SubAck(SubAck {
            pkid: pid(1),
            return_codes: vec![
                SubAckCode::Success(QoS::AtLeastOnce),
                SubAckCode::Success(QoS::AtMostOnce)
            ]
        })]
    );
    let out = subscribe(
        &mut h,
        1,
        &[
            ("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce),
            ("$iothub/methods/POST/#", QoS::AtMostOnce),
            ("#", QoS::AtMostOnce),
            ("devices/+/messages/devicebound/#", QoS::AtMostOnce),
        ],
    );
    assert!(closes(&out, 1), "six filters must close the connection");
}

#[test]
fn one_connection_per_identity() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    let out = online(&mut h, 2, "d1", true);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Close(1, why) if why.contains("400027"))),
        "{out:?}"
    );
    // The old connection is gone; the new one works.
    assert!(closes(&h.packet(1, Packet::PingReq, T0), 1));
    assert_eq!(
        sent(&h.packet(2, Packet::PingReq, T0), 2),
        vec![Packet::PingResp]
    );
}

#[test]
fn twin_get_patch_and_desired_push() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    subscribe(
        &mut h,
        1,
        &[
            ("$iothub/twin/res/#", QoS::AtMostOnce),
            ("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce),
        ],
    );

    let out = h.packet(
        1,
        publish("$iothub/twin/GET/?$rid=1", b"", QosPid::AtMostOnce),
        T0,
    );
    let p = &publishes(&out, 1)[0];
    assert_eq!(
        Topic::parse(&p.topic).unwrap(),
        Topic::TwinResponse {
            status: 200,
            rid: "1".into(),
            version: None
        }
    );
    let doc: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        doc,
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    let out = h.packet(
        1,
        publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            br#"{"temp": 21, "fw": {"v": "1.0"}}"#,
            QosPid::AtMostOnce,
        ),
        T0 + 1000,
    );
    let p = &publishes(&out, 1)[0];
    assert_eq!(
        Topic::parse(&p.topic).unwrap(),
        Topic::TwinResponse {
            status: 204,
            rid: "2".into(),
            version: Some(2)
        }
    );
    assert!(p.payload.is_empty());

    // Bad JSON and bad keys get 400 with the hub's error body.
    for bad in [&b"{not json"[..], br#"{"a.b": 1}"#, b"[1,2]"] {
        let out = h.packet(
            1,
            publish(
                "$iothub/twin/PATCH/properties/reported/?$rid=3",
                bad,
                QosPid::AtMostOnce,
            ),
            T0,
        );
        let p = &publishes(&out, 1)[0];
        assert!(p.topic.starts_with("$iothub/twin/res/400/"), "{}", p.topic);
        let err: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(err["errorCode"], 400004);
    }

    // The service sees the reported properties with metadata.
    let twin = serde_json::to_value(h.twin_view("d1", None).unwrap()).unwrap();
    assert_eq!(twin["properties"]["reported"]["temp"], 21);
    assert_eq!(twin["properties"]["reported"]["$version"], 2);
    assert!(twin["properties"]["reported"]["$metadata"]["fw"]["v"]["$lastUpdated"].is_string());

    // A desired patch from the service is pushed with its version.
    let (_, out) = h
        .update_twin(
            "d1",
            None,
            &twin_update(json!({"properties": {"desired": {"rate": 5}}})),
            false,
            None,
            T0,
        )
        .unwrap();
    let p = &publishes(&out, 1)[0];
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"rate": 5, "$version": 2})
    );

    // A twin fault fails the next GET with the chosen status.
    h.fail_next(FaultOp::Twin, 1, ErrorCode::ThrottlingException);
    let out = h.packet(
        1,
        publish("$iothub/twin/GET/?$rid=9", b"", QosPid::AtMostOnce),
        T0,
    );
    assert!(publishes(&out, 1)[0]
        .topic
        .starts_with("$iothub/twin/res/429/?$rid=9"));
    let out = h.packet(
        1,
        publish("$iothub/twin/GET/?$rid=10", b"", QosPid::AtMostOnce),
        T0,
    );
    assert!(publishes(&out, 1)[0]
        .topic
        .starts_with("$iothub/twin/res/200/"));
}

#[test]
fn direct_methods_round_trip_and_offline_is_404103() {
    let mut h = hub();
    let err = h
        .invoke_method("d1", None, "reboot", &json!({}))
        .unwrap_err();
    assert_eq!((err.status, err.code.number()), (404, 404103));
    online(&mut h, 1, "d1", true);
    // Connected but not subscribed is still not online for methods.
    assert_eq!(
        h.invoke_method("d1", None, "reboot", &json!({}))
            .unwrap_err()
            .code,
        ErrorCode::DeviceNotOnline
    );
    subscribe(&mut h, 1, &[("$iothub/methods/POST/#", QoS::AtMostOnce)]);
    let (call, out) = h
        .invoke_method("d1", None, "reboot", &json!({"delay": 3}))
        .unwrap();
    let p = &publishes(&out, 1)[0];
    let Topic::MethodRequest { name, rid } = Topic::parse(&p.topic).unwrap() else {
        panic!()
    };
    assert_eq!(name, "reboot");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"delay": 3})
    );
    let reply = Topic::MethodResponse { status: 201, rid }.to_topic(SysPrefix::Literal);
    let out = h.packet(
        1,
        publish(&reply, br#"{"ok":true}"#, QosPid::AtMostOnce),
        T0,
    );
    assert_eq!(
        out,
        vec![Action::MethodResult {
            call,
            status: 201,
            payload: json!({"ok": true})
        }]
    );
}

#[test]
fn c2d_queue_delivery_completion_order_and_limits() {
    let mut h = hub();
    let mut props = PropertyBag::default();
    props.system.message_id = Some("m-1".into());
    props.app.push(("color".into(), Some("red blue".into())));
    h.send_c2d("d1", b"first", props, None, T0).unwrap();
    h.send_c2d("d1", b"second", PropertyBag::default(), None, T0)
        .unwrap();

    // Delivered after subscribing, in order, QoS 1, with the hub's encoded bag.
    online(&mut h, 1, "d1", false);
    let out = subscribe(
        &mut h,
        1,
        &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    let ps = publishes(&out, 1);
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].payload, b"first");
    assert!(ps[0].topic.starts_with("devices/d1/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fd1%2Fmessages%2Fdevicebound&iothub-ack=none&color=red%20blue"), "{}", ps[0].topic);
    let (p1, p2) = (ps[0].qospid.pid().unwrap(), ps[1].qospid.pid().unwrap());

    // Out-of-order PUBACK closes the connection, as the hub does.
    let out = h.packet(1, Packet::PubAck(p2), T0);
    assert!(closes(&out, 1));

    // Unacknowledged messages come back on the next connection (persistent session).
    let out = online(&mut h, 2, "d1", false);
    assert_eq!(sent(&out, 2)[0], connack(ConnectReturnCode::Accepted, true));
    let ps = publishes(&out, 2);
    assert_eq!(
        ps.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    let (p1b, p2b) = (ps[0].qospid.pid().unwrap(), ps[1].qospid.pid().unwrap());
    assert!(h.packet(2, Packet::PubAck(p1b), T0).is_empty());
    assert!(h.packet(2, Packet::PubAck(p2b), T0).is_empty());
    assert!(h.store().c2d_queue("d1", T0).unwrap().is_empty());
    let _ = p1;

    // 50 queued is the limit: the 51st is refused with 403004.
    for i in 0..50 {
        h.send_c2d(
            "d2",
            format!("{i}").as_bytes(),
            PropertyBag::default(),
            None,
            T0,
        )
        .unwrap();
    }
    let err = h
        .send_c2d("d2", b"one too many", PropertyBag::default(), None, T0)
        .unwrap_err();
    assert_eq!((err.status, err.code.number()), (403, 403004));
}

#[test]
fn c2d_lock_expiry_redelivers_and_ttl_expires() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    subscribe(
        &mut h,
        1,
        &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    let (_, out) = h
        .send_c2d("d1", b"hello", PropertyBag::default(), None, T0)
        .unwrap();
    assert_eq!(publishes(&out, 1).len(), 1);
    // Keep the connection alive but never acknowledge: after the 60 s lock it comes again.
    h.packet(1, Packet::PingReq, T0 + 59_000);
    assert!(publishes(&h.tick(T0 + 59_000), 1).is_empty());
    let again = publishes(&h.tick(T0 + 60_001), 1);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, b"hello");
    // A message whose TTL ran out is never delivered.
    h.send_c2d("d2", b"stale", PropertyBag::default(), Some(1000), T0)
        .unwrap();
    online(&mut h, 2, "d2", true);
    let out = subscribe(
        &mut h,
        2,
        &[("devices/d2/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    assert_eq!(publishes(&out, 2).len(), 1);
    let mut h2 = hub();
    h2.send_c2d("d2", b"stale", PropertyBag::default(), Some(1000), T0)
        .unwrap();
    assert!(h2.store().c2d_queue("d2", T0 + 1000).unwrap().is_empty());
}

#[test]
fn keep_alive_and_token_expiry_close_connections() {
    let mut h = hub();
    online(&mut h, 1, "d1", true); // keep-alive 60 s: timeout 90 s
    assert!(!closes(&h.tick(T0 + 89_000), 1));
    let out = h.tick(T0 + 90_001);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Close(1, why) if why.contains("keep-alive"))));

    let t = token(&h, "d2", T0 / 1000 + 30);
    h.connect(2, connect_packet("d2", t, true), T0);
    h.packet(2, Packet::PingReq, T0 + 29_000);
    assert!(!closes(&h.tick(T0 + 29_000), 2));
    let out = h.tick(T0 + 30_000);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Close(2, why) if why.contains("401003"))));
}

#[test]
fn will_is_published_on_abrupt_close_only() {
    let mut h = hub();
    let t = token(&h, "d1", T0 / 1000 + 3600);
    let mut c = connect_packet("d1", t, true);
    c.last_will = Some(LastWill {
        topic: "devices/d1/messages/events/reason=lost".into(),
        message: b"bye".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    h.connect(1, c.clone(), T0);
    h.closed(1, false, T0);
    let ev = h.store().events(Some("d1"), 0, 10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].properties["application"]["iothub-MessageType"],
        "Will"
    );
    assert_eq!(ev[0].properties["application"]["reason"], "lost");
    // After DISCONNECT, no will.
    h.connect(2, c, T0);
    h.packet(2, Packet::Disconnect, T0);
    assert_eq!(h.store().events(Some("d1"), 0, 10).unwrap().len(), 1);
}

#[test]
fn service_tokens_are_checked() {
    let h = hub();
    let owner = SymmetricKey::from_base64(OWNER).unwrap();
    let good = sas::build_token(HUB, &owner, T0 / 1000 + 60, Some("iothubowner"));
    h.check_service_token(Some(&good), T0).unwrap();
    assert_eq!(h.check_service_token(None, T0).unwrap_err().status, 401);
    let device_key = key_of(&h, "d1", None);
    let forged = sas::build_token(HUB, &device_key, T0 / 1000 + 60, Some("iothubowner"));
    assert_eq!(
        h.check_service_token(Some(&forged), T0).unwrap_err().status,
        401
    );
    let no_policy = sas::build_token(HUB, &owner, T0 / 1000 + 60, None);
    assert_eq!(
        h.check_service_token(Some(&no_policy), T0)
            .unwrap_err()
            .status,
        401
    );
    let expired = sas::build_token(HUB, &owner, T0 / 1000 - 1, Some("iothubowner"));
    assert_eq!(
        h.check_service_token(Some(&expired), T0)
            .unwrap_err()
            .status,
        401
    );
}

#[test]
fn a_session_is_kept_only_once_it_has_subscriptions() {
    let mut h = hub();
    // CleanSession 0, dropped before SUBSCRIBE: nothing to keep, so no session is present.
    let out = online(&mut h, 1, "d1", false);
    assert_eq!(
        sent(&out, 1)[0],
        connack(ConnectReturnCode::Accepted, false)
    );
    h.closed(1, false, T0);
    let out = online(&mut h, 2, "d1", false);
    assert_eq!(
        sent(&out, 2)[0],
        connack(ConnectReturnCode::Accepted, false),
        "an empty session was kept"
    );
    // With a subscription the session is kept, and present on the next connection.
    subscribe(&mut h, 2, &[("$iothub/methods/POST/#", QoS::AtMostOnce)]);
    h.closed(2, false, T0);
    let out = online(&mut h, 3, "d1", false);
    assert_eq!(sent(&out, 3)[0], connack(ConnectReturnCode::Accepted, true));
    // Unsubscribing everything ends it again.
    let out = h.packet(
        3,
        Packet::Unsubscribe(twinscope_proto::mqtt::Unsubscribe {
            pkid: pid(9),
            filters: vec!["$iothub/methods/POST/#".into()],
        }),
        T0,
    );
    assert_eq!(sent(&out, 3), vec![Packet::UnsubAck(pid(9))]);
    h.closed(3, false, T0);
    let out = online(&mut h, 4, "d1", false);
    assert_eq!(
        sent(&out, 4)[0],
        connack(ConnectReturnCode::Accepted, false)
    );
}

#[test]
fn tokens_too_far_out_are_refused_and_the_farthest_is_held_without_overflow() {
    let mut h = hub();
    let t = token(&h, "d1", u64::MAX);
    let out = h.connect(1, connect_packet("d1", t, true), T0);
    assert_eq!(
        sent(&out, 1),
        vec![connack(ConnectReturnCode::NotAuthorized, false)]
    );
    assert!(closes(&out, 1));
    // The last second the hub can represent is accepted, and the connection is not
    // closed as expired by the next tick (se * 1000 saturates, it does not wrap).
    let t = token(&h, "d1", twinscope_proto::iothub::sas::MAX_EXPIRY);
    let out = h.connect(2, connect_packet("d1", t, true), T0);
    assert_eq!(
        sent(&out, 2)[0],
        connack(ConnectReturnCode::Accepted, false)
    );
    assert!(!closes(&h.tick(T0 + 1000), 2));
}

/// Connects module `d1/m1` (created here) on `conn`.
fn module_online(h: &mut Hub, conn: ConnId) -> Vec<Action> {
    if h.store().identity("d1", Some("m1")).unwrap().is_none() {
        h.put_identity("d1", Some("m1"), &Default::default(), None, T0)
            .unwrap();
    }
    let t = sas::build_token(
        &format!("{HUB}/devices/d1/modules/m1"),
        &key_of(h, "d1", Some("m1")),
        T0 / 1000 + 3600,
        None,
    );
    let mut c = connect_packet("d1/m1", t, true);
    c.username = Some(format!("{HUB}/d1/m1/?api-version=2021-04-12"));
    h.connect(conn, c, T0)
}

#[test]
fn modules_keep_out_of_the_devices_c2d_and_go_when_it_is_disabled() {
    let mut h = hub();
    h.send_c2d("d1", b"for the device", PropertyBag::default(), None, T0)
        .unwrap();
    online(&mut h, 1, "d1", true);
    let out = subscribe(
        &mut h,
        1,
        &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    assert_eq!(
        publishes(&out, 1).len(),
        1,
        "delivered, locked, not acknowledged"
    );
    // A module of d1 comes and goes: the device's delivered message stays locked to it.
    let out = module_online(&mut h, 2);
    assert_eq!(
        sent(&out, 2)[0],
        connack(ConnectReturnCode::Accepted, false)
    );
    h.closed(2, false, T0);
    let queue = h.store().c2d_queue("d1", T0).unwrap();
    assert!(
        queue[0].lock_until_ms > T0,
        "the module's close unlocked the device's message"
    );

    // Disabling the device closes it and its module at once, and keeps the module out.
    module_online(&mut h, 3);
    let (_, out) = h
        .put_identity(
            "d1",
            None,
            &serde_json::from_value(json!({"status": "disabled"})).unwrap(),
            Some("*"),
            T0,
        )
        .unwrap();
    assert!(closes(&out, 1), "{out:?}");
    assert!(closes(&out, 3), "{out:?}");
    let out = module_online(&mut h, 4);
    assert_eq!(
        sent(&out, 4),
        vec![connack(ConnectReturnCode::NotAuthorized, false)]
    );
}

#[test]
fn c2d_messages_that_cannot_be_delivered_are_refused_when_sent() {
    let mut h = hub();
    // Properties that percent-encode past MQTT's 65,535-byte topic limit.
    let mut props = PropertyBag::default();
    for i in 0..30 {
        props.app.push((format!("k{i}"), Some("/".repeat(800))));
    }
    let err = h.send_c2d("d1", b"x", props, None, T0).unwrap_err();
    assert_eq!(err.code, ErrorCode::ArgumentInvalid);
    assert!(err.message.contains("65535"), "{}", err.message);
    assert!(
        h.store().c2d_queue("d1", T0).unwrap().is_empty(),
        "nothing was queued"
    );
    // The queue is not poisoned: a normal message is delivered.
    h.send_c2d("d1", b"fine", PropertyBag::default(), None, T0)
        .unwrap();
    online(&mut h, 1, "d1", true);
    let out = subscribe(
        &mut h,
        1,
        &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
    );
    assert_eq!(publishes(&out, 1)[0].payload, b"fine");
}

#[test]
fn deleting_a_device_touches_no_other_identitys_session() {
    let mut h = hub();
    for d in ["a_", "ab", "a%", "a%b"] {
        h.put_identity(d, None, &Default::default(), None, T0)
            .unwrap();
    }
    // Persistent sessions of modules ab/m and a%b/m (client ids "ab/m", "a%b/m").
    let mut conn = 10;
    for d in ["ab", "a%b"] {
        h.put_identity(d, Some("m"), &Default::default(), None, T0)
            .unwrap();
        conn += 1;
        let t = sas::build_token(
            &format!("{HUB}/devices/{d}/modules/m"),
            &key_of(&h, d, Some("m")),
            T0 / 1000 + 3600,
            None,
        );
        let mut c = connect_packet(&format!("{d}/m"), t, false);
        c.username = Some(format!("{HUB}/{d}/m/?api-version=2021-04-12"));
        let out = h.connect(conn, c, T0);
        assert_eq!(
            sent(&out, conn)[0],
            connack(ConnectReturnCode::Accepted, false),
            "{d}/m"
        );
        subscribe(&mut h, conn, &[("$iothub/methods/POST/#", QoS::AtMostOnce)]);
        h.closed(conn, false, T0);
    }
    // `a_/%` and `a%/%` as LIKE patterns would match both.
    for d in ["a_", "a%"] {
        h.delete_identity(d, None, None, T0).unwrap();
    }
    for cid in ["ab/m", "a%b/m"] {
        assert!(
            h.store().session(cid).unwrap().is_some(),
            "{cid}'s session was deleted with another device"
        );
    }
}

#[test]
fn if_match_takes_any_etag_quoted_or_not_and_refuses_a_stale_one() {
    let mut h = hub();
    let (v, _) = h
        .put_identity("e1", None, &Default::default(), None, T0)
        .unwrap();
    let first = v.etag.clone();
    // `"*"` as the SDKs send it, `*`, the etag quoted, weak, or bare: all pass.
    for m in ["\"*\"", "*"] {
        h.put_identity("e1", None, &Default::default(), Some(m), T0)
            .unwrap();
    }
    // The current etag quoted, weak, or bare passes (and each update bumps it).
    for form in [
        |e: &str| format!("\"{e}\""),
        |e: &str| format!("W/\"{e}\""),
        |e: &str| e.to_string(),
    ] {
        let now = h
            .identity_view(&h.store().identity("e1", None).unwrap().unwrap())
            .etag;
        let m = form(&now);
        let (v, _) = h
            .put_identity("e1", None, &Default::default(), Some(&m), T0)
            .unwrap();
        assert_ne!(v.etag, now, "{m}: the update bumps the etag");
    }
    let stale = format!("\"{first}\"");
    let e = h
        .put_identity("e1", None, &Default::default(), Some(&stale), T0)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    assert!(e.message.contains("does not match"), "{}", e.message);
    let e = h.delete_identity("e1", None, Some(&stale), T0).unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::PreconditionFailed,
        "a stale delete keeps the device"
    );
    assert!(h.store().identity("e1", None).unwrap().is_some());
    h.delete_identity("e1", None, Some("\"*\""), T0).unwrap();
    assert!(h.store().identity("e1", None).unwrap().is_none());
}

#[test]
fn module_twins_are_queried_apart_from_device_twins() {
    let mut h = hub();
    for (d, m) in [("q1", "m1"), ("q1", "m2"), ("q2", "m1")] {
        if h.store().identity(d, None).unwrap().is_none() {
            h.put_identity(d, None, &Default::default(), None, T0)
                .unwrap();
        }
        h.put_identity(d, Some(m), &Default::default(), None, T0)
            .unwrap();
    }
    let ids = |q: &str| -> Vec<String> {
        h.query(q, 0, 100)
            .unwrap()
            .items
            .iter()
            .map(|t| {
                format!(
                    "{}/{}",
                    t["deviceId"].as_str().unwrap(),
                    t["moduleId"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    assert_eq!(
        ids("SELECT * FROM devices.modules WHERE moduleId = 'm1'"),
        ["q1/m1", "q2/m1"]
    );
    assert_eq!(
        ids("SELECT * FROM devices.modules WHERE devices.deviceId = 'q1'"),
        ["q1/m1", "q1/m2"]
    );
    let devices = ids("SELECT * FROM devices WHERE deviceId = 'q1' OR deviceId = 'q2'");
    assert_eq!(devices, ["q1/-", "q2/-"]);
    // Pages: one at a time, each saying where the next starts.
    let first = h.query("SELECT * FROM devices.modules", 0, 1).unwrap();
    assert_eq!((first.items.len(), first.next), (1, Some(1)));
    let last = h.query("SELECT * FROM devices.modules", 2, 1).unwrap();
    assert_eq!((last.items.len(), last.next), (1, None));
    let e = h.query("SELECT * FROM jobs", 0, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::ArgumentInvalid);
    assert!(e.message.contains("FROM jobs"), "{}", e.message);
}

#[test]
fn tags_are_limited_and_method_names_must_fit_a_topic() {
    let mut h = hub();
    // Tags: 8 KB by the twin size rule; over it the update is refused and nothing changes.
    let big: serde_json::Map<String, Value> = (0..3)
        .map(|i| (format!("t{i}"), json!("x".repeat(3000))))
        .collect();
    let err = h
        .update_twin(
            "d1",
            None,
            &twin_update(json!({"tags": big})),
            false,
            None,
            T0,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ArgumentInvalid);
    assert!(err.message.contains("tags"), "{}", err.message);
    assert_eq!(
        serde_json::to_value(h.twin_view("d1", None).unwrap()).unwrap()["tags"],
        json!({})
    );
    h.update_twin(
        "d1",
        None,
        &twin_update(json!({"tags": {"site": "lab"}})),
        false,
        None,
        T0,
    )
    .unwrap();

    // Method names that could not be put in a topic are refused up front (before, they
    // failed to encode and the caller waited for the whole timeout).
    online(&mut h, 1, "d1", true);
    subscribe(&mut h, 1, &[("$iothub/methods/POST/#", QoS::AtMostOnce)]);
    for bad in [
        "re\0boot".to_string(),
        "a\nb".into(),
        "x".repeat(70_000),
        "a/b".into(),
    ] {
        let err = h.invoke_method("d1", None, &bad, &json!({})).unwrap_err();
        assert_eq!(err.code, ErrorCode::ArgumentInvalid, "{bad:?}");
    }
    assert!(h.invoke_method("d1", None, "reboot", &json!({})).is_ok());
}

#[test]
fn stored_telemetry_is_bounded_per_device_and_in_all_oldest_first() {
    use twinscope_devhub::store::{Retention, PRUNE_EVERY};
    let mut store = Store::in_memory().unwrap();
    store.set_retention(Retention {
        per_device: 100,
        total: 250,
    });
    let props = "{}";
    for i in 0..1000 {
        store
            .add_event("d1", None, props, format!("{i}").as_bytes(), "t")
            .unwrap();
    }
    let d1 = store.events(Some("d1"), 0, 10_000).unwrap();
    assert!(
        (100..100 + PRUNE_EVERY as usize).contains(&d1.len()),
        "{}",
        d1.len()
    );
    assert_eq!(
        d1.last().unwrap().body.as_deref(),
        Some("999"),
        "the newest are kept"
    );
    for i in 0..300 {
        store
            .add_event("d2", None, props, format!("{i}").as_bytes(), "t")
            .unwrap();
    }
    let all = store.events(None, 0, 10_000).unwrap();
    assert!(all.len() <= 250, "{}", all.len());
    assert_eq!(all.last().unwrap().body.as_deref(), Some("299"));
    // d2 pushed d1's remaining messages out of the total bound: oldest first.
    assert!(store.events(Some("d1"), 0, 10_000).unwrap().is_empty());
}

#[test]
fn a_device_keeps_its_newest_messages_when_the_total_bound_took_some_of_them() {
    // The per-device prune counts what a device holds; the total bound dropping that
    // device's oldest messages must lower the count, or the prune would drop more.
    use twinscope_devhub::store::{Retention, PRUNE_EVERY};
    assert_eq!(PRUNE_EVERY, 64, "the steps below count on pruning every 64");
    let mut store = Store::in_memory().unwrap();
    store.set_retention(Retention {
        per_device: 100,
        total: 150,
    });
    let add = |d: &str, i: usize| {
        store
            .add_event(d, None, "{}", format!("{d}-{i}").as_bytes(), "t")
            .unwrap();
    };
    // d1: 100 messages (a prune at its 64th, nothing to drop).
    (0..100).for_each(|i| add("d1", i));
    // d2: 100 more; the total bound drops d1's oldest 50.
    (0..100).for_each(|i| add("d2", i));
    assert_eq!(store.events(Some("d1"), 0, 1000).unwrap().len(), 50);
    // d1: 28 more, each dropping one of its own oldest for the total; at the 28th its
    // prune is due, with 50 held: under its 100, so nothing more goes.
    (100..128).for_each(|i| add("d1", i));
    let d1 = store.events(Some("d1"), 0, 1000).unwrap();
    assert_eq!(d1.len(), 50, "d1 holds 50, under its bound of 100");
    assert_eq!(d1[0].body.as_deref(), Some("d1-78"));
    assert_eq!(d1.last().unwrap().body.as_deref(), Some("d1-127"));
}

#[test]
fn a_file_store_keeps_its_write_ahead_log_bounded_under_a_long_burst() {
    // The log is copied back into the database by a thread of its own; the writer's own
    // checkpoint (at 16 MiB of log) finishes each round, so the log starts over instead
    // of growing with the burst.
    let dir = std::env::temp_dir().join(format!("devhub-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("devhub.db");
    let body = vec![b'x'; 1024];
    let n = 60_000;
    {
        let store = Store::open(&path).unwrap();
        let mut max_wal = 0;
        for i in 0..n {
            store
                .add_event(&format!("d{}", i % 20), None, "{}", &body, "t")
                .unwrap();
            if i % 1000 == 0 {
                let wal = std::fs::metadata(dir.join("devhub.db-wal")).map_or(0, |m| m.len());
                max_wal = max_wal.max(wal);
            }
        }
        // 60,000 messages of 1 KiB: more than 60 MB went through the log.
        assert!(max_wal < 40 << 20, "the log grew to {max_wal} bytes");
        assert_eq!(store.events(None, 0, 10).unwrap().len(), 10);
    }
    // Everything is in the database after it is closed and opened again.
    let store = Store::open(&path).unwrap();
    let last = store.events(None, 0, 1_000_000).unwrap();
    assert_eq!(last.len(), n);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn twin_update(v: serde_json::Value) -> twinscope_devhub::rest::TwinUpdate {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_skipped_desired_notification_leaves_a_version_gap() {
    let mut h = hub();
    online(&mut h, 1, "d1", true);
    subscribe(
        &mut h,
        1,
        &[("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce)],
    );
    h.skip_next_desired("d1");
    let patch = |n: u32| twin_update(json!({"properties": {"desired": {"n": n}}}));
    let (_, out) = h
        .update_twin("d1", None, &patch(1), false, None, T0)
        .unwrap();
    assert!(publishes(&out, 1).is_empty(), "the notification was lost");
    let (_, out) = h
        .update_twin("d1", None, &patch(2), false, None, T0)
        .unwrap();
    assert_eq!(
        publishes(&out, 1)[0].topic,
        "$iothub/twin/PATCH/properties/desired/?$version=3",
        "the next one arrives, after a gap"
    );
}
