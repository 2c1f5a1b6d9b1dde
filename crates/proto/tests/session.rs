//! DeviceSession scenarios against scripted hub bytes, in virtual time, and property tests
//! over random interleavings of commands, hub packets, drops and timeouts.

use proptest::prelude::*;
use serde_json::{json, Value};
use twinscope_proto::iothub::{
    sas, DeviceId, Identity, PropertyBag, SymmetricKey, Topic, Username,
};
use twinscope_proto::mqtt::{
    ConnAck, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, QosPid,
};
use twinscope_proto::session::{
    DeviceSession, Event, MethodCall, RequestError, SendError, SessionConfig, State, Telemetry,
};

const T0: u64 = 1_800_000_000_000;
const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

fn token(expiry_ms: u64) -> String {
    sas::build_token(
        "hub.example/devices/dev-1",
        &SymmetricKey::from_base64(KEY).unwrap(),
        expiry_ms / 1000,
        None,
    )
}

struct H {
    s: DeviceSession,
    now: u64,
    out: Vec<Packet>,
    events: Vec<Event>,
}

impl H {
    fn new(f: impl FnOnce(&mut SessionConfig)) -> H {
        let mut cfg = SessionConfig::new(
            "hub.example",
            Identity::device(DeviceId::new("dev-1").unwrap()),
        );
        f(&mut cfg);
        let mut s = DeviceSession::new(cfg);
        s.supply_token(T0, token(T0 + 3_600_000)).unwrap();
        H {
            s,
            now: T0,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    fn pump(&mut self) {
        while let Some(b) = self.s.poll_transmit() {
            let mut rest = &b[..];
            while let Some((p, used)) = Decoder::default().decode(rest).unwrap() {
                self.out.push(p);
                rest = &rest[used..];
            }
            assert!(rest.is_empty(), "transmit buffers hold whole packets");
        }
        while let Some(e) = self.s.poll_event() {
            if !matches!(e, Event::Traffic { .. }) {
                self.events.push(e);
            }
        }
    }

    fn out(&mut self) -> Vec<Packet> {
        self.pump();
        std::mem::take(&mut self.out)
    }

    fn events(&mut self) -> Vec<Event> {
        self.pump();
        std::mem::take(&mut self.events)
    }

    fn hub(&mut self, p: Packet) {
        self.s.handle_bytes(self.now, &p.to_bytes().unwrap());
        self.pump();
    }

    fn at(&mut self, t: u64) {
        self.now = t;
        self.s.handle_timeout(t);
        self.pump();
    }

    /// Connects and accepts; returns what the device sent after CONNACK.
    fn online(&mut self, session_present: bool) -> Vec<Packet> {
        if self.s.state() != State::Connecting {
            self.s.connect(self.now).unwrap();
        }
        self.s.handle_opened(self.now);
        let out = self.out();
        assert!(matches!(out.last(), Some(Packet::Connect(_))), "{out:?}");
        self.hub(Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }));
        self.out()
    }
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn hub_publish(topic: &str, payload: &[u8], qospid: QosPid) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qospid,
        retain: false,
        topic: topic.into(),
        payload: payload.to_vec(),
    })
}

fn telemetry(body: &str, qos: QoS) -> Telemetry {
    Telemetry {
        body: body.as_bytes().to_vec(),
        props: PropertyBag::default(),
        qos: Some(qos),
    }
}

fn publishes(out: &[Packet]) -> Vec<Publish> {
    out.iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn connect_sends_the_hub_connect_then_one_subscribe_and_a_twin_get() {
    let mut h = H::new(|_| {});
    h.s.connect(T0).unwrap();
    assert_eq!(
        h.events(),
        vec![Event::State(State::Connecting), Event::OpenTransport]
    );
    h.s.handle_opened(T0);
    let Packet::Connect(c) = &h.out()[0] else {
        panic!()
    };
    assert_eq!(c.client_id, "dev-1");
    assert!(!c.clean_session);
    assert_eq!(c.keep_alive, 60);
    let u = Username::parse(c.username.as_deref().unwrap()).unwrap();
    assert_eq!(u.api_version(), Some("2021-04-12"));
    assert!(u
        .param("DeviceClientType")
        .unwrap()
        .starts_with("twinscope/"));
    assert_eq!(
        c.password.as_deref(),
        Some(token(T0 + 3_600_000).as_bytes())
    );

    h.hub(Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    }));
    let out = h.out();
    let Packet::Subscribe(sub) = &out[0] else {
        panic!("{out:?}")
    };
    let filters: Vec<(&str, QoS)> = sub
        .filters
        .iter()
        .map(|f| (f.filter.as_str(), f.qos))
        .collect();
    assert_eq!(
        filters,
        vec![
            ("devices/dev-1/messages/devicebound/#", QoS::AtLeastOnce),
            ("$iothub/twin/res/#", QoS::AtMostOnce),
            ("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce),
            ("$iothub/methods/POST/#", QoS::AtMostOnce),
        ]
    );
    let get = &publishes(&out)[0];
    assert!(matches!(
        Topic::parse(&get.topic).unwrap(),
        Topic::TwinGet { .. }
    ));
    let ev = h.events();
    assert!(ev.contains(&Event::State(State::Connected)));
    assert!(ev.contains(&Event::Connected {
        session_present: false
    }));
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::TwinResync {
            reason: "connected",
            ..
        }
    )));
}

#[test]
fn a_refusal_is_explained_and_not_retried() {
    let mut h = H::new(|_| {});
    h.s.connect(T0).unwrap();
    h.s.handle_opened(T0);
    h.hub(Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::NotAuthorized,
    }));
    let ev = h.events();
    let explanation = ev
        .iter()
        .find_map(|e| {
            if let Event::ConnectRefused { explanation, .. } = e {
                Some(explanation.clone())
            } else {
                None
            }
        })
        .expect("refusal event");
    assert!(
        explanation.contains("key")
            && explanation.contains("clock")
            && explanation.contains("enabled"),
        "{explanation}"
    );
    assert!(ev.contains(&Event::CloseTransport));
    h.s.handle_closed(T0);
    assert_eq!(h.s.state(), State::Disconnected);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn telemetry_qos1_is_tracked_to_its_puback_and_qos0_is_fire_and_forget() {
    let mut h = H::new(|_| {});
    h.online(false);
    h.events();
    let mut props = PropertyBag::default();
    props.system.content_type = Some("application/json".into());
    props.app.push(("alert".into(), Some("on fire".into())));
    let id =
        h.s.publish_telemetry(
            h.now,
            Telemetry {
                body: b"{}".to_vec(),
                props,
                qos: None,
            },
        )
        .unwrap();
    let p = publishes(&h.out())[0].clone();
    assert_eq!(
        p.topic,
        "devices/dev-1/messages/events/$.ct=application%2Fjson&alert=on%20fire"
    );
    let QosPid::AtLeastOnce(pk) = p.qospid else {
        panic!("default QoS is 1")
    };
    assert_eq!(h.events(), vec![Event::TelemetrySent(id)]);
    h.hub(Packet::PubAck(pk));
    assert_eq!(h.events(), vec![Event::TelemetryAcked(id)]);

    let id0 =
        h.s.publish_telemetry(h.now, telemetry("x", QoS::AtMostOnce))
            .unwrap();
    assert_eq!(publishes(&h.out())[0].qospid, QosPid::AtMostOnce);
    assert_eq!(h.events(), vec![Event::TelemetrySent(id0)]);
    assert_eq!(h.s.inflight(), 0);
}

#[test]
fn refused_before_sending_with_reasons() {
    let mut h = H::new(|c| c.max_queued = 2);
    assert_eq!(
        h.s.publish_telemetry(T0, telemetry("x", QoS::ExactlyOnce)),
        Err(SendError::QoS2)
    );
    let big = Telemetry {
        body: vec![0; 262_000],
        props: PropertyBag {
            app: vec![("k".into(), Some("v".repeat(200)))],
            ..Default::default()
        },
        qos: None,
    };
    assert!(matches!(
        h.s.publish_telemetry(T0, big),
        Err(SendError::TooLarge { size: 262_201 })
    ));
    let bad = Telemetry {
        props: PropertyBag {
            app: vec![("$.mid".into(), None)],
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(matches!(
        h.s.publish_telemetry(T0, bad),
        Err(SendError::Property(_))
    ));
    // Offline: two fit in the queue, the third is a clear error.
    h.s.publish_telemetry(T0, telemetry("1", QoS::AtLeastOnce))
        .unwrap();
    h.s.publish_telemetry(T0, telemetry("2", QoS::AtLeastOnce))
        .unwrap();
    assert_eq!(
        h.s.publish_telemetry(T0, telemetry("3", QoS::AtLeastOnce)),
        Err(SendError::QueueFull(2))
    );
    assert!(h.out().is_empty(), "nothing goes out while disconnected");
    assert_eq!(h.s.get_twin(T0), Err(SendError::NotConnected));
    assert!(matches!(
        h.s.patch_reported(T0, &json!([1])),
        Err(SendError::Twin(_))
    ));
    assert!(matches!(
        h.s.patch_reported(T0, &json!({"a.b": 1})),
        Err(SendError::Twin(_))
    ));
    // Queued messages go out in order once connected.
    let out = h.online(false);
    let bodies: Vec<Vec<u8>> = publishes(&out)
        .iter()
        .filter(|p| p.topic.starts_with("devices/"))
        .map(|p| p.payload.clone())
        .collect();
    assert_eq!(bodies, vec![b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn the_inflight_window_holds_back_until_acknowledged() {
    let mut h = H::new(|c| c.max_inflight = 2);
    h.online(false);
    for b in ["a", "b", "c"] {
        h.s.publish_telemetry(h.now, telemetry(b, QoS::AtLeastOnce))
            .unwrap();
    }
    let sent = publishes(&h.out());
    assert_eq!(sent.len(), 2);
    assert_eq!((h.s.inflight(), h.s.queued()), (2, 1));
    h.hub(Packet::PubAck(sent[0].qospid.pid().unwrap()));
    let next = publishes(&h.out());
    assert_eq!(next[0].payload, b"c");
    assert_ne!(
        next[0].qospid.pid(),
        sent[1].qospid.pid(),
        "no packet id reused while in flight"
    );
}

#[test]
fn reconnects_with_jittered_backoff_and_resends_unacked_with_dup() {
    let mut h = H::new(|c| c.reconnect.initial_ms = 1000);
    h.online(false);
    h.s.publish_telemetry(h.now, telemetry("keep me", QoS::AtLeastOnce))
        .unwrap();
    let first = publishes(&h.out())[0].clone();
    h.events();
    h.s.handle_closed(h.now);
    let State::Reconnecting {
        attempt: 1,
        retry_at,
    } = h.s.state()
    else {
        panic!("{:?}", h.s.state())
    };
    assert!(
        (T0 + 500..=T0 + 1000).contains(&retry_at),
        "{}",
        retry_at - T0
    );
    assert_eq!(h.s.poll_timeout(), Some(retry_at));
    h.at(retry_at - 1);
    assert!(!h.events().contains(&Event::OpenTransport));
    h.at(retry_at);
    assert!(h.events().contains(&Event::OpenTransport));
    // Session kept: SUBSCRIBE again all the same (idempotent, as the SDKs do); the message
    // goes again with DUP and the same packet id.
    let out = h.online(true);
    assert!(out.iter().any(|p| matches!(p, Packet::Subscribe(_))));
    let again = publishes(&out)
        .into_iter()
        .find(|p| p.topic.starts_with("devices/"))
        .unwrap();
    assert!(again.dup);
    assert_eq!(
        (again.qospid, again.payload.clone()),
        (first.qospid, first.payload.clone())
    );
    h.hub(Packet::PubAck(again.qospid.pid().unwrap()));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::TelemetryAcked(1))));
}

#[test]
fn backoff_grows_is_capped_and_is_deterministic_for_a_seed() {
    let delays = |seed: u64| {
        let mut h = H::new(|c| {
            c.reconnect.initial_ms = 1000;
            c.reconnect.max_ms = 8000;
            c.reconnect.seed = seed;
        });
        h.online(false);
        let mut v = Vec::new();
        for _ in 0..7 {
            h.s.handle_closed(h.now);
            let State::Reconnecting { retry_at, .. } = h.s.state() else {
                panic!()
            };
            v.push(retry_at - h.now);
            h.at(retry_at);
            h.s.handle_opened(h.now); // transport opens, but the hub never answers: drop again
        }
        v
    };
    let a = delays(42);
    assert_eq!(a, delays(42));
    assert_ne!(a, delays(43));
    for (i, d) in a.iter().enumerate() {
        let base = (1000u64 << i).min(8000);
        assert!(
            (base / 2..=base).contains(d),
            "attempt {i}: {d} not in [{}, {base}]",
            base / 2
        );
    }
}

#[test]
fn c2d_messages_are_delivered_and_acknowledged_in_order() {
    let mut h = H::new(|_| {});
    h.online(false);
    h.events();
    h.hub(hub_publish("devices/dev-1/messages/devicebound/%24.mid=m1&%24.to=%2Fdevices%2Fdev-1%2Fmessages%2Fdevicebound&color=red", b"one", QosPid::AtLeastOnce(pid(9))));
    h.hub(hub_publish(
        "devices/dev-1/messages/devicebound/%24.mid=m2",
        b"two",
        QosPid::AtLeastOnce(pid(4)),
    ));
    assert_eq!(
        h.out(),
        vec![Packet::PubAck(pid(9)), Packet::PubAck(pid(4))]
    );
    let msgs: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| if let Event::C2d(m) = e { Some(m) } else { None })
        .collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].props.system.message_id.as_deref(), Some("m1"));
    assert_eq!(msgs[0].props.app_value("color"), Some(Some("red")));
    assert_eq!(msgs[1].body, b"two");
}

fn twin_rid(out: &[Packet]) -> String {
    publishes(out)
        .iter()
        .find_map(|p| match Topic::parse(&p.topic).unwrap() {
            Topic::TwinGet { rid } | Topic::TwinPatchReported { rid } => Some(rid),
            _ => None,
        })
        .expect("a twin request")
}

#[test]
fn twin_requests_are_correlated_by_rid_and_time_out() {
    let mut h = H::new(|c| c.request_timeout_ms = 5000);
    let out = h.online(false);
    let resync_rid = twin_rid(&out);
    h.events();
    let body = br#"{"desired":{"rate":5,"$version":3},"reported":{"$version":7}}"#;
    h.hub(hub_publish(
        &format!("$iothub/twin/res/200/?$rid={resync_rid}"),
        body,
        QosPid::AtMostOnce,
    ));
    let ev = h.events();
    let Some(Event::Twin {
        result: Ok(doc), ..
    }) = ev.first()
    else {
        panic!("{ev:?}")
    };
    assert_eq!((doc.desired.version, doc.reported.version), (3, 7));
    assert_eq!(h.s.desired_version(), Some(3));

    let req = h.s.patch_reported(h.now, &json!({"fw": "2.0"})).unwrap();
    let rid = twin_rid(&h.out());
    // An answer to someone else's rid is ignored.
    h.hub(hub_publish(
        "$iothub/twin/res/204/?$rid=other&$version=9",
        b"",
        QosPid::AtMostOnce,
    ));
    assert!(h.events().is_empty());
    h.hub(hub_publish(
        &format!("$iothub/twin/res/204/?$rid={rid}&$version=8"),
        b"",
        QosPid::AtMostOnce,
    ));
    assert_eq!(
        h.events(),
        vec![Event::ReportedPatched {
            request: req,
            result: Ok(8)
        }]
    );

    let req = h.s.patch_reported(h.now, &json!({"x": 1})).unwrap();
    let rid = twin_rid(&h.out());
    let err = br#"{"errorCode":400004,"trackingId":"t","message":"bad key","timestampUtc":"x"}"#;
    h.hub(hub_publish(
        &format!("$iothub/twin/res/400/?$rid={rid}"),
        err,
        QosPid::AtMostOnce,
    ));
    assert_eq!(
        h.events(),
        vec![Event::ReportedPatched {
            request: req,
            result: Err(RequestError {
                status: Some(400),
                message: "bad key (400004)".into()
            })
        }]
    );

    let req = h.s.get_twin(h.now).unwrap();
    h.out();
    h.at(h.now + 4999);
    assert!(h.events().is_empty());
    h.at(h.now + 1);
    assert_eq!(
        h.events(),
        vec![Event::Twin {
            request: req,
            result: Err(RequestError {
                status: None,
                message: "no answer from the hub in time".into()
            })
        }]
    );
}

#[test]
fn desired_updates_ignore_stale_versions_and_refetch_on_a_gap() {
    let mut h = H::new(|_| {});
    let out = h.online(false);
    let rid = twin_rid(&out);
    h.hub(hub_publish(
        &format!("$iothub/twin/res/200/?$rid={rid}"),
        br#"{"desired":{"$version":5},"reported":{"$version":1}}"#,
        QosPid::AtMostOnce,
    ));
    h.events();
    let desired = |v: u64| {
        hub_publish(
            &format!("$iothub/twin/PATCH/properties/desired/?$version={v}"),
            format!(r#"{{"rate":{v},"$version":{v}}}"#).as_bytes(),
            QosPid::AtMostOnce,
        )
    };
    h.hub(desired(5));
    h.hub(desired(4));
    assert!(
        h.events().is_empty(),
        "versions not newer than 5 are ignored"
    );
    h.hub(desired(6));
    assert_eq!(
        h.events(),
        vec![Event::DesiredUpdate {
            version: 6,
            patch: json!({"rate": 6, "$version": 6})
        }]
    );
    assert!(h.out().is_empty());
    h.hub(desired(9));
    let ev = h.events();
    assert_eq!(
        ev[0],
        Event::DesiredUpdate {
            version: 9,
            patch: json!({"rate": 9, "$version": 9})
        }
    );
    assert!(matches!(
        ev[1],
        Event::TwinResync {
            reason: "version gap",
            ..
        }
    ));
    assert!(matches!(
        Topic::parse(&publishes(&h.out())[0].topic).unwrap(),
        Topic::TwinGet { .. }
    ));
}

#[test]
fn method_calls_are_answered_with_status_and_json() {
    let mut h = H::new(|_| {});
    h.online(false);
    h.events();
    h.hub(hub_publish(
        "$iothub/methods/POST/reboot/?$rid=17",
        br#"{"delay":2}"#,
        QosPid::AtMostOnce,
    ));
    assert_eq!(
        h.events(),
        vec![Event::MethodCall(MethodCall {
            name: "reboot".into(),
            rid: "17".into(),
            payload: br#"{"delay":2}"#.to_vec()
        })]
    );
    assert!(matches!(
        h.s.respond_method(h.now, "17", 200, b"{oops"),
        Err(SendError::NotJson(_))
    ));
    h.s.respond_method(h.now, "17", 200, br#"{"ok":true}"#)
        .unwrap();
    let p = &publishes(&h.out())[0];
    assert_eq!(p.topic, "$iothub/methods/res/200/?$rid=17");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"ok": true})
    );
}

#[test]
fn keep_alive_pings_when_idle_and_declares_a_silent_hub_dead() {
    let mut h = H::new(|c| c.keep_alive_s = 60);
    h.online(false);
    h.events();
    h.at(T0 + 59_999);
    assert!(h.out().is_empty());
    h.at(T0 + 60_000);
    assert_eq!(h.out(), vec![Packet::PingReq]);
    h.hub(Packet::PingResp);
    h.at(T0 + 119_999);
    assert!(h.out().is_empty());
    h.at(T0 + 120_000);
    assert_eq!(h.out(), vec![Packet::PingReq]);
    h.at(T0 + 150_000);
    let ev = h.events();
    assert!(ev.contains(&Event::CloseTransport), "{ev:?}");
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Error(m) if m.contains("PINGRESP"))));
}

#[test]
fn the_token_is_renewed_at_80_percent_with_a_reconnect_that_keeps_the_queue() {
    let mut h = H::new(|_| {});
    h.s.supply_token(T0, token(T0 + 100_000)).unwrap();
    h.online(false);
    h.events();
    h.s.publish_telemetry(h.now, telemetry("pending", QoS::AtLeastOnce))
        .unwrap();
    let sent = publishes(&h.out())[0].clone();
    h.at(T0 + 79_000);
    assert!(!h.events().contains(&Event::TokenNeeded));
    h.at(T0 + 80_000);
    assert!(h.events().contains(&Event::TokenNeeded));
    h.s.supply_token(h.now, token(T0 + 3_700_000)).unwrap();
    // (A keep-alive PINGREQ went out at 79 s; the renewal ends with DISCONNECT.)
    assert_eq!(h.out().last(), Some(&Packet::Disconnect));
    assert!(h.events().contains(&Event::CloseTransport));
    h.s.handle_closed(h.now);
    assert!(
        h.events().contains(&Event::OpenTransport),
        "renewal reconnects at once"
    );
    let out = h.online(true);
    let again = publishes(&out)
        .into_iter()
        .find(|p| p.topic.starts_with("devices/"))
        .unwrap();
    assert_eq!((again.dup, again.qospid), (true, sent.qospid));
}

#[test]
fn a_lost_connection_fails_pending_twin_requests() {
    let mut h = H::new(|_| {});
    let out = h.online(false);
    let _ = twin_rid(&out);
    h.events();
    h.s.handle_closed(h.now);
    let ev = h.events();
    assert!(ev.iter().any(|e| matches!(e, Event::Twin { result: Err(RequestError { status: None, message }), .. } if message.contains("lost"))));
}

#[test]
fn malformed_bytes_from_the_hub_close_the_transport() {
    let mut h = H::new(|_| {});
    h.online(false);
    h.events();
    h.s.handle_bytes(h.now, &[0xf0, 0x00]);
    let ev = h.events();
    assert!(ev.contains(&Event::CloseTransport));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Error(m) if m.contains("malformed"))));
}

// ---------------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Op {
    Publish(bool),
    AckOne(usize),
    HubC2d(u16),
    Drop,
    Advance(u32),
    Reconnect(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Publish),
        3 => any::<usize>().prop_map(Op::AckOne),
        2 => (1u16..2000).prop_map(Op::HubC2d),
        1 => Just(Op::Drop),
        1 => (0u32..120_000).prop_map(Op::Advance),
        2 => any::<bool>().prop_map(Op::Reconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Over any interleaving: no packet id is reused while in flight, C2D PUBACKs follow the
    /// order of receipt, and every QoS 1 message is acknowledged or still held — never lost.
    #[test]
    fn invariants_hold_over_random_interleavings(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = H::new(|c| { c.max_inflight = 3; c.max_queued = 1000; });
        h.online(false);
        // QoS 1 telemetry packet ids on the wire and not yet acknowledged by the hub.
        let mut outstanding: Vec<PacketId> = Vec::new();
        let (mut qos1_published, mut qos0_published, mut qos0_on_wire) = (0u64, 0u64, 0u64);
        let mut acked = std::collections::HashSet::new();
        let mut c2d_sent: Vec<PacketId> = Vec::new();
        let mut connected = true;
        for op in ops {
            match op {
                Op::Publish(qos1) => {
                    let q = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                    h.s.publish_telemetry(h.now, telemetry("m", q)).unwrap();
                    if qos1 { qos1_published += 1 } else { qos0_published += 1 }
                }
                Op::AckOne(i) if connected && !outstanding.is_empty() => {
                    let p = outstanding.remove(i % outstanding.len());
                    h.hub(Packet::PubAck(p));
                }
                Op::HubC2d(p) if connected => {
                    let p = pid(p);
                    c2d_sent.push(p);
                    h.hub(hub_publish("devices/dev-1/messages/devicebound/", b"c", QosPid::AtLeastOnce(p)));
                }
                Op::Drop if connected => {
                    h.s.handle_closed(h.now);
                    connected = false;
                    c2d_sent.clear();
                }
                Op::Advance(ms) => { let t = h.now + u64::from(ms); h.at(t); }
                Op::Reconnect(present) if !connected => {
                    if let State::Reconnecting { retry_at, .. } = h.s.state() {
                        let t = retry_at.max(h.now);
                        h.at(t);
                    }
                    let sent = h.online(present);
                    h.out.extend(sent);
                    connected = true;
                }
                _ => {}
            }
            h.pump();
            for p in std::mem::take(&mut h.out) {
                match p {
                    Packet::Publish(p) if p.topic.starts_with("devices/") => match p.qospid {
                        QosPid::AtLeastOnce(pk) if p.dup => {
                            prop_assert!(outstanding.contains(&pk), "DUP for id {} that is not outstanding", pk);
                        }
                        QosPid::AtLeastOnce(pk) => {
                            prop_assert!(!outstanding.contains(&pk), "packet id {} reused while in flight", pk);
                            outstanding.push(pk);
                        }
                        _ => qos0_on_wire += 1,
                    },
                    Packet::PubAck(pk) => {
                        prop_assert!(!c2d_sent.is_empty(), "PUBACK for nothing");
                        let expected = c2d_sent.remove(0);
                        prop_assert_eq!(pk, expected, "C2D PUBACKs out of order");
                    }
                    _ => {}
                }
            }
            for e in std::mem::take(&mut h.events) {
                if let Event::TelemetryAcked(id) = e {
                    prop_assert!(acked.insert(id), "message {} acknowledged twice", id);
                }
            }
            prop_assert_eq!(h.s.inflight(), outstanding.len(), "the window and the wire disagree");
            let queued_qos1 = h.s.queued() as u64 - (qos0_published - qos0_on_wire);
            prop_assert_eq!(
                h.s.inflight() as u64 + queued_qos1 + acked.len() as u64,
                qos1_published,
                "a QoS 1 message was lost"
            );
        }
    }
}

#[test]
fn a_keep_alive_over_the_hubs_limit_is_capped_in_connect_and_in_the_ping_timer() {
    let mut h = H::new(|c| c.keep_alive_s = 3000);
    h.s.connect(h.now).unwrap();
    h.s.handle_opened(h.now);
    let out = h.out();
    let Some(Packet::Connect(c)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(c.keep_alive, 1177);
    h.hub(Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    }));
    h.out();
    // Idle: the PINGREQ goes 1177 s after the last packet (the hub drops the device after
    // 1.5 x 1177 s), not after the configured 3000 s.
    h.at(T0 + 1_177_000 - 1);
    assert!(!h.out().contains(&Packet::PingReq));
    assert!(h.s.poll_timeout().unwrap() <= T0 + 1_177_000);
    h.at(T0 + 1_177_000);
    assert!(h.out().contains(&Packet::PingReq));
}

#[test]
fn connect_carries_the_will_api_version_and_model_id_asked_for() {
    let mut h = H::new(|c| {
        let mut props = twinscope_proto::iothub::PropertyBag::default();
        props.system.content_type = Some("application/json".into());
        props.app.push(("reason".into(), Some("lost".into())));
        c.will = Some(twinscope_proto::session::Will {
            body: br#"{"online":false}"#.to_vec(),
            props,
        });
        c.api_version = "2020-09-30".into();
        c.model_id = Some("dtmi:com:example:Thermostat;1".into());
        c.clean_session = true;
    });
    h.s.connect(h.now).unwrap();
    h.s.handle_opened(h.now);
    let out = h.out();
    let Some(Packet::Connect(c)) = out.last() else {
        panic!("{out:?}")
    };
    let will = c.last_will.as_ref().expect("a will");
    assert_eq!(
        will.topic,
        "devices/dev-1/messages/events/$.ct=application%2Fjson&reason=lost"
    );
    assert_eq!(will.message, br#"{"online":false}"#);
    assert_eq!(will.qos, QoS::AtLeastOnce);
    let user = c.username.as_deref().unwrap();
    assert!(user.starts_with("hub.example/dev-1/?api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"), "{user}");
    assert!(c.clean_session);
}
