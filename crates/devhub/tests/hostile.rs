//! Hostile clients against the real devhub binary: sockets that never send CONNECT or
//! never finish a TLS handshake, a flood of packets, garbage, and a device that never reads
//! its answers. In each case a well-behaved device connected at the same time keeps getting
//! its PUBACKs within a stated bound, and devhub's memory stays bounded.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::mqtt::{Packet, PacketId, QosPid};

use common::*;

/// The bound on a well-behaved device's PUBACK latency while others misbehave.
const PUBACK_BOUND: Duration = Duration::from_secs(2);

/// A well-behaved device sending QoS 1 telemetry every 20 ms until stopped; returns the
/// number acknowledged and the slowest acknowledgement.
async fn well_behaved(
    hub: &Devhub,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Duration)> {
    let (mut d, _) = Device::connect(hub, "d1", true).await;
    tokio::spawn(async move {
        let (mut acked, mut worst) = (0u32, Duration::ZERO);
        let mut pid = 1u16;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            d.send(publish(
                "devices/d1/messages/events/",
                b"{\"ok\":true}",
                QosPid::AtLeastOnce(PacketId::new(pid).unwrap()),
            ))
            .await;
            assert_eq!(
                d.recv().await,
                Some(Packet::PubAck(PacketId::new(pid).unwrap()))
            );
            worst = worst.max(t.elapsed());
            acked += 1;
            pid = pid % 60000 + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (acked, worst)
    })
}

async fn ws(
    hub: &Devhub,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{}/$iothub/websocket", hub.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_after_the_connect_and_handshake_timeouts() {
    let hub = start(&["--mqtt-tls-listen", "127.0.0.1:0"], None);
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(&hub, stop.clone()).await;

    let opened = Instant::now();
    let mut idle_ws = Vec::new();
    for _ in 0..200 {
        idle_ws.push(ws(&hub).await);
    }
    let mut idle_tls = Vec::new();
    for _ in 0..200 {
        idle_tls.push(
            tokio::net::TcpStream::connect(hub.mqtts.as_deref().unwrap())
                .await
                .unwrap(),
        );
    }
    let rss_open = hub.rss_kib();
    // Every idle socket is closed by devhub: the WebSockets for sending no CONNECT within
    // 10 s, the TLS sockets for not starting a handshake within 10 s.
    let mut closes = Vec::new();
    for mut w in idle_ws {
        let end = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match w.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "an idle WebSocket was still open after 20 s");
        closes.push(opened.elapsed());
    }
    for mut t in idle_tls {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(20), t.read(&mut b))
            .await
            .expect("an idle TLS socket was still open after 20 s");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        closes.push(opened.elapsed());
    }
    let first = closes.iter().min().unwrap();
    let last = closes.iter().max().unwrap();
    println!("400 idle sockets: first closed after {first:?}, last after {last:?}; devhub RSS {rss_open} KiB with them open");
    assert!(
        *first >= Duration::from_secs(9),
        "closed too early: {first:?}"
    );
    assert!(
        *last <= Duration::from_secs(14),
        "closed too late: {last:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let (acked, worst) = good.await.unwrap();
    println!("well-behaved device meanwhile: {acked} PUBACKs, slowest {worst:?}");
    assert!(acked > 100, "{acked}");
    assert!(worst < PUBACK_BOUND, "{worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_garbage_and_non_readers_do_not_stall_others() {
    let hub = start(&["--device", "d3", "--device", "d4"], None);
    let http = reqwest::Client::new();
    let rss_start = hub.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(&hub, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. A million packets in one WebSocket message (2 MB): over the 512 KiB message
    //    limit, so the connection is closed before devhub holds or decodes it.
    let (mut flood, _) = Device::connect(&hub, "d2", true).await;
    let million = Packet::PingReq.to_bytes().unwrap().repeat(1_000_000);
    let _ = flood.ws.send(Message::Binary(million.into())).await;
    assert_eq!(
        flood.recv().await,
        None,
        "the oversize message closes the connection"
    );

    // 2. 200,000 packets in one message under the limit: decoded in one linear pass and
    //    answered, while others are served.
    let (mut burst, _) = Device::connect(&hub, "d2", true).await;
    let many = Packet::PingReq.to_bytes().unwrap().repeat(200_000);
    let t = Instant::now();
    burst.ws.send(Message::Binary(many.into())).await.unwrap();
    for _ in 0..200_000 {
        assert_eq!(burst.recv().await, Some(Packet::PingResp));
    }
    println!(
        "200,000 PINGREQs in one message answered in {:?}",
        t.elapsed()
    );

    // 3. Garbage, before and after CONNECT: closed at once.
    let mut g = ws(&hub).await;
    g.send(Message::Binary(vec![0x5a; 64 * 1024].into()))
        .await
        .unwrap();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), g.next())
            .await
            .unwrap(),
        Some(Ok(Message::Close(_))) | None | Some(Err(_))
    ));
    let (mut g2, _) = Device::connect(&hub, "d4", true).await;
    g2.ws
        .send(Message::Binary(
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01].into(),
        ))
        .await
        .unwrap();
    assert_eq!(g2.recv().await, None);

    // 4. Devices that never read. d3 asks for its 4 KB twin 20,000 times (80 MB of
    //    answers): once its answers fill the socket, devhub stops decoding its requests
    //    and, after 10 s without taking bytes, disconnects it. d4 is sent desired patches
    //    of 24 KB by the service: its queue passes 2 MiB and it is disconnected at once.
    let big: serde_json::Map<String, serde_json::Value> = (0..6)
        .map(|i| (format!("p{i}"), json!("x".repeat(4000))))
        .collect();
    let patch = |device: &'static str, n: usize| {
        let mut big = big.clone();
        big.insert("n".into(), json!(n));
        http.patch(hub.url(&format!("/twins/{device}")))
            .header("Authorization", hub.auth())
            .json(&json!({"properties": {"desired": big}}))
            .send()
    };
    let r = http
        .patch(hub.url("/twins/d3"))
        .header("Authorization", hub.auth())
        .json(&json!({"properties": {"desired": {"p": "x".repeat(4000)}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (lazy, _) = Device::connect(&hub, "d3", true).await;
    let mut lazy = lazy;
    let asked = Instant::now();
    for half in 0..2 {
        let mut asks = Vec::new();
        for rid in 0..10_000 {
            asks.extend(
                publish(
                    &format!("$iothub/twin/GET/?$rid={half}-{rid}"),
                    b"",
                    QosPid::AtMostOnce,
                )
                .to_bytes()
                .unwrap(),
            );
        }
        lazy.ws.send(Message::Binary(asks.into())).await.unwrap();
    }

    let (mut lazy2, _) = Device::connect(&hub, "d4", true).await;
    lazy2
        .send(Packet::Subscribe(twinscope_proto::mqtt::Subscribe {
            pkid: PacketId::new(1).unwrap(),
            filters: vec![twinscope_proto::mqtt::SubscribeFilter {
                filter: "$iothub/twin/PATCH/properties/desired/#".into(),
                qos: twinscope_proto::mqtt::QoS::AtMostOnce,
            }],
        }))
        .await;
    assert!(matches!(lazy2.recv().await, Some(Packet::SubAck(_))));
    let connected = |device: &'static str| {
        let req = http
            .get(hub.url(&format!("/devices/{device}")))
            .header("Authorization", hub.auth())
            .send();
        async move {
            let v: serde_json::Value = req.await.unwrap().json().await.unwrap();
            v["connectionState"] == "Connected"
        }
    };
    let mut patches = 0;
    while connected("d4").await {
        assert_eq!(patch("d4", patches).await.unwrap().status(), 200);
        patches += 1;
        assert!(
            patches < 2000,
            "d4 still connected after {patches} patches of 24 KB"
        );
    }
    println!("non-reading d4: disconnected after {patches} desired patches of ~24 KB");
    let rss_lazy = hub.rss_kib();

    while connected("d3").await {
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "d3 still connected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "non-reading d3: disconnected {:?} after its 20,000 twin requests",
        asked.elapsed()
    );
    // What was already in flight arrives, then the close: far fewer than 4000 answers.
    let mut answers = 0;
    while let Some(p) = lazy.recv().await {
        assert!(matches!(p, Packet::Publish(_)));
        answers += 1;
    }
    println!("non-reading d3 got {answers} of 20,000 twin answers");
    assert!(answers < 5000, "{answers}");

    stop.store(true, Ordering::Relaxed);
    let (acked, worst) = good.await.unwrap();
    let rss_end = hub.rss_kib();
    println!(
        "well-behaved device meanwhile: {acked} PUBACKs, slowest {worst:?}; devhub RSS {rss_start} KiB at start, {rss_lazy} KiB with the non-reader, {rss_end} KiB at the end"
    );
    assert!(acked > 20, "{acked}");
    assert!(worst < PUBACK_BOUND, "{worst:?}");
    assert!(rss_lazy < 200 * 1024, "RSS {rss_lazy} KiB");
    // devhub still serves everyone.
    still_serves(&hub, "d2").await;
    still_serves(&hub, "d3").await;
}
