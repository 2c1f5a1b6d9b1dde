//! What a web page the user happens to visit can do to a devhub on their machine: nothing.
//! The real binary on a loopback port, spoken to over HTTP as a browser would (Origin,
//! Host, preflight, `no-cors` bodies) and as the SDKs do (no Origin).

mod common;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::*;

async fn body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, v)
}

#[tokio::test]
async fn foreign_pages_and_names_are_refused() {
    let hub = start(&["--demo", "--allow-origin", "http://127.0.0.1:4999"], None);
    let http = reqwest::Client::new();
    let own_origin = format!("http://{}", hub.addr);

    // A foreign Origin reads nothing: not the demo key, not the events.
    let r = http
        .get(hub.url("/devhub/demo"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let (status, v) = body(r).await;
    assert_eq!(status, 403);
    assert_eq!(v["errorCode"], 403000);
    assert!(v["Message"]
        .as_str()
        .unwrap()
        .contains("--allow-origin https://evil.example"));

    // devhub's own page, and a page named with --allow-origin, may.
    let r = http
        .get(hub.url("/devhub/demo"))
        .header("Origin", &own_origin)
        .send()
        .await
        .unwrap();
    let (status, demo) = body(r).await;
    assert_eq!(status, 200);
    assert!(demo["connectionString"]
        .as_str()
        .unwrap()
        .contains("DeviceId=demo-device"));
    assert!(demo["serviceConnectionString"]
        .as_str()
        .unwrap()
        .contains("SharedAccessKeyName=iothubowner"));
    let r = http
        .get(hub.url("/devhub/health"))
        .header("Origin", "http://127.0.0.1:4999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://127.0.0.1:4999"
    );

    // A preflight from a foreign page is refused; from an allowed one it is answered.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, hub.url("/devhub/faults"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = preflight("http://127.0.0.1:4999").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://127.0.0.1:4999"
    );

    // DNS rebinding: a page whose name now points at 127.0.0.1 sends its own Host.
    let r = http
        .get(hub.url("/devhub/demo"))
        .header("Host", "rebind.evil.example")
        .send()
        .await
        .unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 403);
    assert!(v["message"].as_str().unwrap().contains("--allow-host"));

    // A cross-site no-cors POST can only carry text/plain: refused before it is read,
    // token or not.
    let r = http
        .post(hub.url("/devhub/faults"))
        .header("Content-Type", "text/plain")
        .header("Authorization", hub.auth())
        .body(r#"{"action":"drop-rate","rate":1,"seed":1}"#)
        .send()
        .await
        .unwrap();
    let (status, v) = body(r).await;
    assert_eq!(status, 415);
    assert_eq!(v["ErrorCode"], "GenericUnsupportedMediaType");

    // Events, statistics, queries and faults need the iothubowner token; health does not.
    for path in [
        "/devhub/events",
        "/devhub/events/stream",
        "/statistics/devices",
        "/statistics/service",
    ] {
        let r = http.get(hub.url(path)).send().await.unwrap();
        let (status, v) = body(r).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(v["errorCode"], 401003);
    }
    // So do the service routes that change things.
    for (method, path, body) in [
        (
            "POST",
            "/devhub/faults",
            json!({"action": "drop-rate", "rate": 1.0, "seed": 1}),
        ),
        (
            "POST",
            "/devices/query?api-version=2021-04-12",
            json!({"query": "SELECT * FROM devices"}),
        ),
        ("DELETE", "/devices/d1/commands", json!(null)),
        (
            "POST",
            "/devices",
            json!([{"id": "x", "importMode": "create"}]),
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(method, hub.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
    }
    assert_eq!(
        http.get(hub.url("/devhub/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // None of the refused fault requests took effect.
    still_serves(&hub, "d1").await;
}

#[tokio::test]
async fn websocket_upgrades_from_foreign_pages_are_refused() {
    let hub = start(&[], None);
    let upgrade = |origin: Option<String>| {
        let mut req = format!("ws://{}/$iothub/websocket", hub.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    match upgrade(Some("https://evil.example".into())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("expected a 403 refusal, got {:?}", other.map(|_| ())),
    }
    // The SDKs send no Origin (Node) or their own host (paho: https://host:port).
    let (mut ws, _) = upgrade(None).await.unwrap();
    ws.send(Message::Close(None)).await.unwrap();
    let (mut ws, _) = upgrade(Some(format!("https://{}", hub.addr)))
        .await
        .unwrap();
    ws.send(Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn every_error_has_the_hubs_json_shape() {
    let hub = start(&[], None);
    // No connection reuse: devhub answers 413 before reading the whole body and closes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let cases = [
        (http.get(hub.url("/no/such/route")), 404, "GenericNotFound"),
        (
            http.delete(hub.url("/devhub/health")),
            405,
            "GenericMethodNotAllowed",
        ),
        (
            http.get(hub.url("/devhub/events?after=notanumber"))
                .header("Authorization", hub.auth()),
            400,
            "ArgumentInvalid",
        ),
        (
            http.put(hub.url("/devices/d9"))
                .header("Authorization", hub.auth())
                .header("Content-Type", "application/json")
                .body(vec![b' '; 3 * 1024 * 1024]),
            413,
            "GenericRequestEntityTooLarge",
        ),
        (
            http.get(hub.url("/devices/%FF%FE"))
                .header("Authorization", hub.auth()),
            400,
            "ArgumentInvalid",
        ),
        (
            http.get(hub.url("/$iothub/websocket")),
            400,
            "ArgumentInvalid",
        ),
        (
            http.post(hub.url("/devhub/faults"))
                .header("Authorization", hub.auth())
                .json(&json!({"action": "fail", "op": "twin", "count": 1, "status": 418})),
            400,
            "ArgumentInvalid",
        ),
    ];
    for (req, status, name) in cases {
        let r = req.send().await.unwrap();
        let (got, v) = body(r).await;
        assert_eq!((got, v["ErrorCode"].as_str()), (status, Some(name)), "{v}");
        assert!(v["Message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("ErrorCode:{name};")));
        assert!(v["ExceptionMessage"].as_str().is_some());
    }
}
