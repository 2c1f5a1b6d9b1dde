//! devhub under load: N native devices, each sending M QoS 1 telemetry messages over
//! WebSocket to an in-process devhub (SQLite in memory). Prints throughput and
//! acknowledgement latency percentiles. `cargo xtask bench`; DEVICES and MESSAGES override.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use twinscope_devhub::http::{router, HttpConfig};
use twinscope_devhub::hub::{Hub, HubConfig};
use twinscope_devhub::net::{ticker, Shared};
use twinscope_devhub::store::Store;
use twinscope_native::{now_ms, NativeDevice};
use twinscope_proto::iothub::{DeviceId, Identity, PropertyBag, SymmetricKey};
use twinscope_proto::session::{Event, Telemetry};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let devices = env("DEVICES", 20);
    let messages = env("MESSAGES", 500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = HubConfig {
            hub_name: "localhost".into(),
            owner_key: SymmetricKey::from_bytes(b"bench-owner-key".to_vec()),
            c2d_ttl_ms: 3_600_000,
            c2d_lock_ms: 60_000,
        };
        let mut hub = Hub::new(cfg, Store::in_memory().unwrap());
        for d in 0..devices {
            hub.put_identity(&format!("load-{d}"), None, &Default::default(), None, now_ms()).unwrap();
        }
        let shared = Shared::new(hub, false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/$iothub/websocket", listener.local_addr().unwrap());
        tokio::spawn(ticker(shared.clone()));
        let app = router(shared.clone(), HttpConfig::default());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let mut tasks = Vec::new();
        let start = Instant::now();
        for d in 0..devices {
            let id = Identity::device(DeviceId::new(format!("load-{d}")).unwrap());
            let cs = shared.read_hub(|h| h.connection_string(&id, None)).unwrap().unwrap();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut dev = NativeDevice::connect(&cs, &url, 3600).unwrap();
                dev.wait_connected(Duration::from_secs(30)).await.unwrap();
                let mut sent_at = HashMap::new();
                let mut latencies = Vec::with_capacity(messages);
                let body = br#"{"temperature":21.5,"humidity":40}"#.to_vec();
                let mut next = 0;
                while latencies.len() < messages {
                    // Keep up to 64 messages in the pipeline (16 in flight, the rest queued).
                    while next < messages && sent_at.len() < 64 {
                        let mut props = PropertyBag::default();
                        props.system.content_type = Some("application/json".into());
                        let id = dev.send_telemetry(Telemetry { body: body.clone(), props, qos: None }).await.unwrap();
                        sent_at.insert(id, Instant::now());
                        next += 1;
                    }
                    match dev.next_event().await {
                        Some(Event::TelemetryAcked(id)) => {
                            if let Some(t) = sent_at.remove(&id) {
                                latencies.push(t.elapsed());
                            }
                        }
                        Some(_) => {}
                        None => panic!("driver stopped"),
                    }
                }
                dev.disconnect();
                latencies
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        let stored = shared.read_hub(|h| h.store().events(None, 0, u32::MAX).map(|v| v.len())).unwrap();
        println!("devhub load: {devices} devices x {messages} QoS 1 messages over WebSocket (SQLite in memory)");
        println!("  total          {} messages in {:.2} s", all.len(), elapsed.as_secs_f64());
        println!("  throughput     {:.0} messages/s", all.len() as f64 / elapsed.as_secs_f64());
        println!("  ack latency    p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", pct(0.5).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3, all[all.len() - 1].as_secs_f64() * 1e3);
        println!("  stored         {stored} events");
        assert_eq!(stored, devices * messages, "every acknowledged message is stored");
    });
}
