//! End to end: the real `devhub` binary on an ephemeral loopback port, a device speaking
//! MQTT over a real WebSocket (this crate's codec), and the service REST API over HTTP.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::iothub::{sas, Topic};
use twinscope_proto::mqtt::{ConnAck, Connect, ConnectReturnCode, Packet, PacketId, QosPid};

use common::*;

#[tokio::test]
async fn device_and_service_meet_over_websocket_and_rest() {
    let hub = start(&[], None);
    let http = reqwest::Client::new();

    // A WebSocket without the mqtt subprotocol is refused with 400.
    let r = http
        .get(hub.url("/$iothub/websocket"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The service API wants a token.
    assert_eq!(
        http.get(hub.url("/devices/d1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let (mut dev, ack) = Device::connect(&hub, "d1", true).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    dev.subscribe_all().await;

    // Telemetry with properties arrives in the events API with the hub's stamps.
    dev.send(publish(
        "devices/d1/messages/events/$.ct=application%2Fjson&level=high",
        br#"{"t":21}"#,
        QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
    ))
    .await;
    assert_eq!(
        dev.recv().await,
        Some(Packet::PubAck(PacketId::new(7).unwrap()))
    );
    let events = hub.get_json("/devhub/events?device=d1").await;
    assert_eq!(events[0]["body"], r#"{"t":21}"#);
    assert_eq!(events[0]["properties"]["application"]["level"], "high");
    assert_eq!(
        events[0]["properties"]["stamps"]["iothub-connection-device-id"],
        "d1"
    );

    // Twin: reported patch from the device, read by the service.
    dev.send(publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        br#"{"fw":"1.2"}"#,
        QosPid::AtMostOnce,
    ))
    .await;
    let p = dev.recv_publish().await;
    assert_eq!(
        Topic::parse(&p.topic).unwrap(),
        Topic::TwinResponse {
            status: 204,
            rid: "1".into(),
            version: Some(2)
        }
    );
    let twin = hub.get_json("/twins/d1").await;
    assert_eq!(twin["properties"]["reported"]["fw"], "1.2");

    // The registry lists its devices at `/devices` and, as the Node service SDK asks,
    // at `/devices/`.
    for path in ["/devices", "/devices/"] {
        let list = hub.get_json(path).await;
        let ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["deviceId"].as_str())
            .collect();
        assert!(ids.contains(&"d1"), "{path}: {ids:?}");
    }

    // Desired patch from the service reaches the device.
    let r = http
        .patch(hub.url("/twins/d1"))
        .header("Authorization", hub.auth())
        .json(&json!({"properties": {"desired": {"interval": 10}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = dev.recv_publish().await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"interval": 10, "$version": 2})
    );

    // C2D from the service, with properties, completed by PUBACK.
    let r = http
        .post(hub.url("/devices/d1/messages/deviceBound"))
        .header("Authorization", hub.auth())
        .header("iothub-messageid", "c2d-1")
        .header("iothub-app-color", "red")
        .body("hello device")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = dev.recv_publish().await;
    assert_eq!(p.payload, b"hello device");
    let Topic::C2d { props, .. } = Topic::parse(&p.topic).unwrap() else {
        panic!("not C2D: {}", p.topic)
    };
    assert_eq!(props.system.message_id.as_deref(), Some("c2d-1"));
    assert_eq!(props.app_value("color"), Some(Some("red")));
    dev.send(Packet::PubAck(p.qospid.pid().unwrap())).await;

    // A direct method: the service waits while the device answers.
    let call = {
        let http = http.clone();
        let (url, auth) = (hub.url("/twins/d1/methods"), hub.auth());
        tokio::spawn(async move {
            http.post(url).header("Authorization", auth).json(&json!({"methodName": "reboot", "payload": {"in": 1}, "responseTimeoutInSeconds": 10}))
                .send().await.unwrap()
        })
    };
    let p = dev.recv_publish().await;
    let Topic::MethodRequest { name, rid } = Topic::parse(&p.topic).unwrap() else {
        panic!()
    };
    assert_eq!(name, "reboot");
    dev.send(publish(
        &format!("$iothub/methods/res/200/?$rid={rid}"),
        br#"{"done":true}"#,
        QosPid::AtMostOnce,
    ))
    .await;
    let r = call.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": 200, "payload": {"done": true}})
    );

    // A method on a device that is not connected: 404 with 404103.
    let r = http
        .post(hub.url("/twins/d2/methods"))
        .header("Authorization", hub.auth())
        .json(&json!({"methodName": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], 404103);

    // The fault API drops the connection.
    let r = http
        .post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "drop", "device": "d1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(dev.recv().await, None);

    // Publishing to another device's topic closes the connection; devhub serves others.
    let (mut d2, _) = Device::connect(&hub, "d2", true).await;
    d2.send(publish(
        "devices/d1/messages/events/",
        b"spoof",
        QosPid::AtMostOnce,
    ))
    .await;
    assert_eq!(d2.recv().await, None);
    still_serves(&hub, "d1").await;
}

#[tokio::test]
async fn a_method_nobody_answers_times_out_with_504101() {
    let hub = start(&[], None);
    let (mut dev, _) = Device::connect(&hub, "d1", true).await;
    dev.subscribe_all().await;
    let r = reqwest::Client::new()
        .post(hub.url("/twins/d1/methods"))
        .header("Authorization", hub.auth())
        .json(&json!({"methodName": "slow", "responseTimeoutInSeconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], 504101);
}

#[tokio::test]
async fn queued_c2d_and_sessions_survive_kill_9() {
    let dir = std::env::temp_dir().join(format!("devhub-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("hub.sqlite");
    let hub = start(&[], Some(&db));
    let http = reqwest::Client::new();
    // A persistent session subscribes, then goes away.
    let (mut dev, _) = Device::connect(&hub, "d1", false).await;
    dev.subscribe_all().await;
    drop(dev);
    for i in 0..3 {
        let r = http
            .post(hub.url("/devices/d1/messages/deviceBound"))
            .header("Authorization", hub.auth())
            .body(format!("m{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "devhub acknowledged message {i}");
    }
    let mut hub = hub;
    // kill -9: no chance to flush anything.
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();

    let hub2 = start(&[], Some(&db));
    let (mut dev, ack) = Device::connect(&hub2, "d1", false).await;
    assert!(
        ack.session_present,
        "the persistent session survived the restart"
    );
    // The stored subscriptions deliver the queued messages without a new SUBSCRIBE.
    for i in 0..3 {
        let p = dev.recv_publish().await;
        assert_eq!(p.payload, format!("m{i}").as_bytes());
        dev.send(Packet::PubAck(p.qospid.pid().unwrap())).await;
    }
    drop(hub2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn event_stream_delay_and_random_drop_faults() {
    let hub = start(&[], None);
    let http = reqwest::Client::new();

    // The server-sent event stream carries telemetry as it is stored.
    let mut stream = http
        .get(hub.url("/devhub/events/stream?device=d1"))
        .header("Authorization", hub.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let (mut dev, _) = Device::connect(&hub, "d1", true).await;
    dev.send(publish(
        "devices/d1/messages/events/k=v",
        b"streamed",
        QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
    ))
    .await;
    assert_eq!(
        dev.recv().await,
        Some(Packet::PubAck(PacketId::new(1).unwrap()))
    );
    let mut text = String::new();
    while !text.contains("streamed") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .expect("a data line");
    let ev: Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(ev["properties"]["application"]["k"], "v");
    // The streamed record is the stored one, field for field.
    let stored = hub.get_json("/devhub/events?device=d1").await;
    let stored = stored
        .as_array()
        .or_else(|| stored["events"].as_array())
        .and_then(|a| a.last())
        .cloned()
        .expect("the stored message");
    assert_eq!(ev, stored);

    // Delay: answers wait at least the given time.
    let r = http
        .post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "delay", "ms": 400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let t = std::time::Instant::now();
    dev.send(Packet::PingReq).await;
    assert_eq!(dev.recv().await, Some(Packet::PingResp));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "answered after {:?}",
        t.elapsed()
    );

    // Random drops at rate 1: the next packet ends the connection.
    http.post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "clear"}))
        .send()
        .await
        .unwrap();
    http.post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "drop-rate", "rate": 1.0, "seed": 7}))
        .send()
        .await
        .unwrap();
    dev.send(Packet::PingReq).await;
    assert_eq!(dev.recv().await, None);
    http.post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "clear"}))
        .send()
        .await
        .unwrap();
    let (mut dev, _) = Device::connect(&hub, "d1", true).await;
    dev.send(Packet::PingReq).await;
    assert_eq!(dev.recv().await, Some(Packet::PingResp));

    // A malformed fault request says what is expected.
    let r = http
        .post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("drop-rate"));
}

#[tokio::test]
async fn expired_tokens_qos2_and_oversize_end_as_the_hub_ends_them() {
    let hub = start(&[], None);
    // Expired token: CONNACK 5.
    let mut d = Device::open(&hub).await;
    let key = hub.device("d1").shared_access_key.unwrap();
    d.send(Packet::Connect(Connect {
        client_id: "d1".into(),
        keep_alive: 60,
        clean_session: true,
        last_will: None,
        username: Some("localhost/d1/?api-version=2021-04-12".into()),
        password: Some(
            sas::build_token("localhost/devices/d1", &key, 1_000_000, None).into_bytes(),
        ),
    }))
    .await;
    assert_eq!(
        d.recv().await,
        Some(Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized
        }))
    );
    assert_eq!(d.recv().await, None);

    // QoS 2 publish: closed.
    let (mut d, _) = Device::connect(&hub, "d1", true).await;
    d.send(publish(
        "devices/d1/messages/events/",
        b"x",
        QosPid::ExactlyOnce(PacketId::new(1).unwrap()),
    ))
    .await;
    assert_eq!(d.recv().await, None);

    // Over 256 KB: closed, nothing stored.
    let (mut d, _) = Device::connect(&hub, "d1", true).await;
    d.send(publish(
        "devices/d1/messages/events/",
        &vec![b'a'; 262_145],
        QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
    ))
    .await;
    assert_eq!(d.recv().await, None);
    let events = hub.get_json("/devhub/events?device=d1").await;
    assert_eq!(events.as_array().unwrap().len(), 0);

    // Malformed bytes: closed; the hub keeps serving.
    let mut raw = Device::open(&hub).await;
    raw.ws
        .send(Message::Binary(vec![0xf0, 0x00].into()))
        .await
        .unwrap();
    assert_eq!(raw.recv().await, None);
    still_serves(&hub, "d2").await;
}

#[tokio::test]
async fn the_no_client_cert_query_is_accepted() {
    let hub = start(&[], None);
    let (mut d, ack) = Device::connect_at(
        &hub,
        "/$iothub/websocket?iothub-no-client-cert=true",
        "d1",
        true,
    )
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    d.send(Packet::PingReq).await;
    assert_eq!(d.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn the_delay_fault_delays_a_refusal_and_its_close_in_order() {
    let hub = start(&[], None);
    let r = reqwest::Client::new()
        .post(hub.url("/devhub/faults"))
        .header("Authorization", hub.auth())
        .json(&json!({"action": "delay", "ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // A token signed with the wrong key: the CONNACK 5 still arrives before the close.
    let mut d = Device::open(&hub).await;
    let t = std::time::Instant::now();
    d.send(Packet::Connect(Connect {
        client_id: "d1".into(),
        keep_alive: 60,
        clean_session: true,
        last_will: None,
        username: Some("localhost/d1/?api-version=2021-04-12".into()),
        password: Some(
            sas::build_token(
                "localhost/devices/d1",
                &hub.service_key,
                4_000_000_000,
                None,
            )
            .into_bytes(),
        ),
    }))
    .await;
    let Some(Packet::ConnAck(ack)) = d.recv().await else {
        panic!("the refusal's CONNACK was lost behind the close")
    };
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(d.recv().await, None);
}

/// Reads server-sent events until `done` says so; returns (event name, id, data) triples.
async fn read_sse(
    stream: &mut reqwest::Response,
    mut done: impl FnMut(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let mut text = String::new();
    let mut events = Vec::new();
    while !done(&events) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut name, mut id, mut data) =
                ("message".to_string(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().into();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().into();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push((name, id, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn events_page_resume_with_last_event_id_and_report_lag() {
    let hub = start(&[], None);
    let http = reqwest::Client::new();
    let (mut dev, _) = Device::connect(&hub, "d1", true).await;
    // 1,100 messages (QoS 0), then a QoS 1 one to know all are stored.
    for i in 0..1100 {
        dev.send(publish(
            "devices/d1/messages/events/",
            format!("{i}").as_bytes(),
            QosPid::AtMostOnce,
        ))
        .await;
    }
    dev.send(publish(
        "devices/d1/messages/events/",
        b"last",
        QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
    ))
    .await;
    assert_eq!(
        dev.recv().await,
        Some(Packet::PubAck(PacketId::new(1).unwrap()))
    );

    // Pages hold at most 1000; `after` pages on.
    let page = |after: i64| {
        http.get(hub.url(&format!(
            "/devhub/events?device=d1&limit=5000&after={after}"
        )))
        .header("Authorization", hub.auth())
        .send()
    };
    let first: Value = page(0).await.unwrap().json().await.unwrap();
    assert_eq!(first.as_array().unwrap().len(), 1000);
    let last_seq = first[999]["seq"].as_i64().unwrap();
    let rest: Value = page(last_seq).await.unwrap().json().await.unwrap();
    assert_eq!(rest.as_array().unwrap().len(), 101);
    assert_eq!(rest[100]["body"], "last");

    // Resuming with Last-Event-ID replays what was stored after it, from the store.
    let resume_after = rest[97]["seq"].as_i64().unwrap();
    let mut stream = http
        .get(hub.url("/devhub/events/stream?device=d1"))
        .header("Authorization", hub.auth())
        .header("Last-Event-ID", resume_after.to_string())
        .send()
        .await
        .unwrap();
    let got = read_sse(&mut stream, |e| e.len() >= 3).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|(_, _, d)| serde_json::from_str::<Value>(d).unwrap()["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("1098"), json!("1099"), json!("last")]);
    assert_eq!(got[0].1, (resume_after + 1).to_string());

    // A client that stops reading while thousands of messages arrive is told how many it
    // missed, not left to guess.
    let mut slow = http
        .get(hub.url("/devhub/events/stream"))
        .header("Authorization", hub.auth())
        .send()
        .await
        .unwrap();
    let body = vec![b'x'; 2000];
    for _ in 0..20_000 {
        dev.send(publish(
            "devices/d1/messages/events/",
            &body,
            QosPid::AtMostOnce,
        ))
        .await;
    }
    dev.send(publish(
        "devices/d1/messages/events/",
        b"end",
        QosPid::AtLeastOnce(PacketId::new(2).unwrap()),
    ))
    .await;
    assert_eq!(
        dev.recv().await,
        Some(Packet::PubAck(PacketId::new(2).unwrap()))
    );
    let got = read_sse(&mut slow, |e| e.iter().any(|(n, _, _)| n == "lagged")).await;
    let (_, _, data) = got.iter().find(|(n, _, _)| n == "lagged").unwrap();
    let missed = serde_json::from_str::<Value>(data).unwrap()["missed"]
        .as_u64()
        .unwrap();
    assert!(missed > 0);
    println!("a stalled event-stream client was told it missed {missed} events");
}

/// C2D messages posted by many REST callers at once reach the device in packet-id order,
/// so its in-order PUBACKs are accepted and nothing is delivered twice. (devhub used to
/// queue each caller's packets after releasing the hub lock, so two callers' packets could
/// swap on the wire; the device's in-order PUBACKs then closed the connection and every
/// message in flight was delivered again.)
#[tokio::test]
async fn concurrent_c2d_senders_keep_packet_order() {
    let hub = start(&[], None);
    let (mut dev, ack) = Device::connect(&hub, "d1", true).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    dev.subscribe_all().await;
    let http = reqwest::Client::new();
    let (senders, each) = (16, 40);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let http = http.clone();
        let url = hub.url("/devices/d1/messages/deviceBound");
        let auth = hub.auth();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                loop {
                    let r = http
                        .post(&url)
                        .header("Authorization", &auth)
                        .header("Content-Type", "application/json")
                        .body(format!("{{\"s\":{s},\"i\":{i}}}"))
                        .send()
                        .await
                        .unwrap();
                    if r.status() == 200 {
                        break;
                    }
                    // The queue is full (50): let the device catch up.
                    assert_eq!(r.status(), 403);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    let mut seen = std::collections::HashSet::new();
    let mut last_pid = 0u16;
    while seen.len() < senders * each {
        let p = tokio::time::timeout(Duration::from_secs(10), dev.recv_publish())
            .await
            .expect("the messages keep coming (the connection stays up)");
        let QosPid::AtLeastOnce(pid) = p.qospid else {
            panic!("C2D is QoS 1")
        };
        assert!(
            pid.get() > last_pid,
            "packet ids in order: {} after {last_pid}",
            pid.get()
        );
        last_pid = pid.get();
        assert!(
            seen.insert(p.payload.clone()),
            "delivered twice: {:?}",
            String::from_utf8_lossy(&p.payload)
        );
        dev.send(Packet::PubAck(pid)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_burst_is_acknowledged_in_order_and_every_acknowledged_message_survives_kill_9() {
    let dir = std::env::temp_dir().join(format!("devhub-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("hub.sqlite");
    let mut hub = start(&[], Some(&db));
    let (mut dev, _) = Device::connect(&hub, "d1", true).await;
    let publish_bytes = |i: u16| {
        publish(
            "devices/d1/messages/events/n=burst",
            format!("m{i}").as_bytes(),
            QosPid::AtLeastOnce(PacketId::new(i).unwrap()),
        )
        .to_bytes()
        .unwrap()
    };
    // 150 packets in one WebSocket message, then 150 messages sent back to back: devhub
    // handles what has arrived in batches, one commit each.
    let one: Vec<u8> = (1..=150).flat_map(publish_bytes).collect();
    dev.ws.send(Message::Binary(one.into())).await.unwrap();
    for i in 151..=300 {
        dev.ws
            .feed(Message::Binary(publish_bytes(i).into()))
            .await
            .unwrap();
    }
    dev.ws.flush().await.unwrap();
    for i in 1..=300 {
        assert_eq!(
            dev.recv().await,
            Some(Packet::PubAck(PacketId::new(i).unwrap())),
            "PUBACK {i} in order"
        );
    }
    // kill -9 right after the last PUBACK: what was acknowledged was committed.
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    let hub2 = start(&[], Some(&db));
    let stored = hub2.get_json("/devhub/events?device=d1&limit=1000").await;
    let bodies: Vec<&str> = stored
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["body"].as_str())
        .collect();
    let want: Vec<String> = (1..=300).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "every acknowledged message, in order");
    drop(hub2);
    let _ = std::fs::remove_dir_all(&dir);
}
