//! The native driver against devhub running in this process.

use std::time::Duration;

use twinscope_devhub::http::{router, HttpConfig};
use twinscope_devhub::hub::{Hub, HubConfig};
use twinscope_devhub::net::{ticker, Shared};
use twinscope_devhub::store::Store;
use twinscope_native::{now_ms, NativeDevice};
use twinscope_proto::iothub::{DeviceId, Identity, PropertyBag, SymmetricKey};
use twinscope_proto::session::{Event, Telemetry};

async fn devhub() -> (String, std::sync::Arc<Shared>) {
    let cfg = HubConfig {
        hub_name: "localhost".into(),
        owner_key: SymmetricKey::from_bytes(b"owner-key-for-tests".to_vec()),
        c2d_ttl_ms: 3_600_000,
        c2d_lock_ms: 60_000,
    };
    let mut hub = Hub::new(cfg, Store::in_memory().unwrap());
    hub.put_identity("native-1", None, &Default::default(), None, now_ms())
        .unwrap();
    let shared = Shared::new(hub, false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ticker(shared.clone()));
    let app = router(shared.clone(), HttpConfig::default());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("ws://{addr}/$iothub/websocket"), shared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_device_sends_telemetry_and_receives_c2d() {
    let (url, shared) = devhub().await;
    let id = Identity::device(DeviceId::new("native-1").unwrap());
    let cs = shared
        .read_hub(|h| h.connection_string(&id, None))
        .unwrap()
        .unwrap();
    let mut dev = NativeDevice::connect(&cs, &url, 3600).unwrap();
    dev.wait_connected(Duration::from_secs(10)).await.unwrap();

    for i in 0..100 {
        let mut props = PropertyBag::default();
        props.app.push(("n".into(), Some(i.to_string())));
        dev.send_telemetry(Telemetry {
            body: format!("m{i}").into_bytes(),
            props,
            qos: None,
        })
        .await
        .unwrap();
    }
    let mut acked = 0;
    while acked < 100 {
        match tokio::time::timeout(Duration::from_secs(10), dev.next_event())
            .await
            .expect("events keep coming")
        {
            Some(Event::TelemetryAcked(_)) => acked += 1,
            Some(_) => {}
            None => panic!("driver stopped"),
        }
    }
    let stored = shared
        .read_hub(|h| h.store().events(Some("native-1"), 0, 1000))
        .unwrap();
    assert_eq!(stored.len(), 100);
    assert_eq!(stored[99].properties["application"]["n"], "99");

    shared.with_hub(|h| {
        let (_, actions) = h
            .send_c2d(
                "native-1",
                b"to native",
                PropertyBag::default(),
                None,
                now_ms(),
            )
            .unwrap();
        ((), actions)
    });
    loop {
        match tokio::time::timeout(Duration::from_secs(10), dev.next_event())
            .await
            .expect("C2D in time")
        {
            Some(Event::C2d(m)) => {
                assert_eq!(m.body, b"to native");
                break;
            }
            Some(_) => {}
            None => panic!("driver stopped"),
        }
    }
    dev.disconnect();
}
