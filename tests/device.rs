//! Browser tests against a running devhub: the app in headless Chromium connects over a
//! real WebSocket and is checked through devhub's REST and events APIs.
//!
//! `cargo xtask test` starts devhub and passes its URL and service connection string at
//! build time (TWINSCOPE_DEVHUB_URL, TWINSCOPE_DEVHUB_SERVICE); it also sets
//! TWINSCOPE_REQUIRE_DEVHUB so that a missing devhub fails instead of skipping.
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use serde_json::{json, Value};
use twinscope::client::{ConnStatus, Device};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

#[wasm_bindgen_test]
async fn the_app_is_a_device_telemetry_c2d_twin_desired_and_methods() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "browser-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    assert!(
        text(&root, "token-expiry").contains(':'),
        "token countdown shown: {}",
        text(&root, "token-expiry")
    );

    // Telemetry with an application property, checked in devhub's events API.
    type_into(&el(&root, "telemetry-body"), r#"{"temperature": 30}"#);
    el(&root, "telemetry-prop-add").click();
    leptos::task::tick().await;
    type_into(&el(&root, "telemetry-prop-key"), "alert");
    type_into(&el(&root, "telemetry-prop-value"), "too hot");
    el(&root, "telemetry-send").click();
    wait_until("telemetry acknowledged", 10_000, || {
        text(&root, "telemetry-sent-count").contains("1 acknowledged")
    })
    .await;
    let (_, events) = call(
        base,
        &service,
        "GET",
        "/devhub/events?device=browser-1",
        None,
    )
    .await;
    let ev = &events[0];
    assert_eq!(ev["properties"]["application"]["alert"], "too hot");
    assert_eq!(ev["properties"]["system"]["$.ct"], "application/json");
    assert_eq!(ev["body"], r#"{"temperature": 30}"#);
    // No message id was fixed: the app made a fresh one for the message.
    let mid = ev["properties"]["system"]["$.mid"]
        .as_str()
        .unwrap_or_default();
    assert!(
        mid.len() == 32 && mid.chars().all(|c| c.is_ascii_hexdigit()),
        "{mid:?}"
    );

    // C2D through the REST API shows up in the inbox with its properties, as text.
    let (status, _) = finish(request(
        base,
        &service,
        "POST",
        "/devices/browser-1/messages/deviceBound",
        Some("<b>hello</b> from the cloud"),
        &[("iothub-app-color", "green")],
    ))
    .await;
    assert_eq!(status, 200);
    wait_until("C2D message", 10_000, || {
        !all(&root, "c2d-message").is_empty()
    })
    .await;
    let msg = &all(&root, "c2d-message")[0];
    assert!(
        msg.text_content()
            .unwrap()
            .contains("<b>hello</b> from the cloud"),
        "body rendered as text"
    );
    assert!(
        msg.query_selector("b").unwrap().is_none(),
        "payload must not become markup"
    );
    assert!(msg.text_content().unwrap().contains("green"));

    // Twin: fetched on connect; a reported patch reaches the hub.
    wait_until("twin document", 10_000, || {
        text(&root, "twin-document").contains("$version")
    })
    .await;
    type_into(
        &el(&root, "twin-reported-editor"),
        r#"{"firmware": "2.0.1"}"#,
    );
    el(&root, "twin-reported-send").click();
    let mut reported = Value::Null;
    for _ in 0..100 {
        let (_, twin) = call(base, &service, "GET", "/twins/browser-1", None).await;
        reported = twin["properties"]["reported"].clone();
        if reported["firmware"] == "2.0.1" {
            break;
        }
        TimeoutFuture::new(50).await;
    }
    assert_eq!(reported["firmware"], "2.0.1");
    // The app shows the hub's new reported version and the patched document.
    let hub_version = reported["$version"].as_u64().unwrap().to_string();
    wait_until("reported version shown", 5_000, || {
        text(&root, "twin-reported-version").trim() == hub_version
    })
    .await;
    assert!(text(&root, "twin-document").contains("2.0.1"));

    // A desired update from the REST API arrives.
    let (status, _) = call(
        base,
        &service,
        "PATCH",
        "/twins/browser-1",
        Some(r#"{"properties":{"desired":{"interval":42}}}"#),
    )
    .await;
    assert_eq!(status, 200);
    wait_until("desired update", 10_000, || {
        all(&root, "twin-desired-update")
            .iter()
            .any(|e| e.text_content().unwrap().contains("42"))
    })
    .await;
    assert!(
        text(&root, "twin-document").contains("\"interval\": 42"),
        "desired update merged into the shown twin"
    );

    // A method invoked through the REST API is answered from the UI.
    let pending = request(
        base,
        &service,
        "POST",
        "/twins/browser-1/methods",
        Some(r#"{"methodName":"reboot","payload":{"in":5},"responseTimeoutInSeconds":20}"#),
        &[],
    );
    wait_until("method call", 10_000, || {
        !all(&root, "method-request").is_empty()
    })
    .await;
    assert_eq!(text(&root, "method-name"), "reboot");
    type_into(&el(&root, "method-status"), "201");
    type_into(&el(&root, "method-response"), r#"{"rebooting": true}"#);
    el(&root, "method-respond").click();
    let (status, body) = finish(pending).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": 201, "payload": {"rebooting": true}})
    );
    // The answered call moves to the history with its answer.
    wait_until("the call in the history", 5_000, || {
        all(&root, "method-answered")
            .iter()
            .any(|e| e.text_content().unwrap().contains("answered 201"))
    })
    .await;
    assert!(all(&root, "method-request").is_empty());

    // The traffic log shows the packets, decoded.
    let traffic: Vec<String> = all(&root, "traffic-entry")
        .iter()
        .map(|e| e.text_content().unwrap())
        .collect();
    assert!(traffic.iter().any(|t| t.contains("CONNACK")));
    assert!(
        traffic
            .iter()
            .any(|t| t.contains("PUBLISH")
                && t.contains("telemetry devices/browser-1/messages/events/")),
        "{traffic:?}"
    );

    el(&root, "disconnect").click();
    wait_until("disconnected", 5_000, || status_is(&root, "disconnected")).await;
}

#[wasm_bindgen_test]
async fn a_dropped_connection_comes_back_without_losing_qos1_telemetry() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "browser-2").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    let send = |body: &str| {
        type_into(&el(&root, "telemetry-body"), body);
        el(&root, "telemetry-send").click();
    };
    for i in 0..3 {
        send(&format!("m{i}"));
    }
    wait_until("first three acknowledged", 10_000, || {
        text(&root, "telemetry-sent-count").contains("3 acknowledged")
    })
    .await;
    let (status, _) = call(
        base,
        &service,
        "POST",
        "/devhub/faults",
        Some(r#"{"action":"drop","device":"browser-2"}"#),
    )
    .await;
    assert_eq!(status, 204);
    wait_until("the drop noticed", 10_000, || {
        !status_is(&root, "connected")
    })
    .await;
    for i in 3..6 {
        send(&format!("m{i}"));
    }
    wait_until("reconnected", 15_000, || status_is(&root, "connected")).await;
    wait_until("all six acknowledged", 15_000, || {
        text(&root, "telemetry-sent-count").contains("6 acknowledged")
    })
    .await;
    let (_, events) = call(
        base,
        &service,
        "GET",
        "/devhub/events?device=browser-2",
        None,
    )
    .await;
    let bodies: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["body"].as_str())
        .collect();
    for i in 0..6 {
        assert!(
            bodies.contains(&format!("m{i}").as_str()),
            "m{i} was lost: {bodies:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_short_lived_token_is_renewed_without_user_action() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "browser-3").await;
    let device = Device::new();
    device.connect(&cs, Some(&ws_url(base)), 12).unwrap();
    wait_until("connected", 10_000, || {
        device.view().with_untracked(|v| v.status()) == ConnStatus::Connected
    })
    .await;
    let first = device.view().with_untracked(|v| v.token_expiry).unwrap();
    // Renewal at 80% of 12 s; the hub would drop an expired token at 12 s.
    wait_until("a new token", 15_000, || {
        device
            .view()
            .with_untracked(|v| v.token_expiry)
            .is_some_and(|e| e > first)
    })
    .await;
    wait_until("connected with the new token", 10_000, || {
        device.view().with_untracked(|v| v.status()) == ConnStatus::Connected
    })
    .await;
    let connects = device.view().with_untracked(|v| {
        v.traffic
            .iter()
            .filter(|e| e.value.record().packet == "CONNECT")
            .count()
    });
    assert!(
        device.view().with_untracked(|v| v.renewed_at.is_some()),
        "the renewal is noted for the header"
    );
    assert!(
        connects >= 2,
        "reconnected with the new token ({connects} CONNECTs)"
    );
    assert!(
        device.view().with_untracked(|v| v.error.clone()).is_none(),
        "no error shown: {:?}",
        device.view().with_untracked(|v| v.error.clone())
    );
    // Past the first token's expiry the device is still connected: the hub saw the new one.
    let wait = first.saturating_sub(twinscope::client::now_ms()) + 1500;
    TimeoutFuture::new(wait as u32).await;
    assert_eq!(
        device.view().with_untracked(|v| v.status()),
        ConnStatus::Connected
    );
    device.disconnect();
}

#[wasm_bindgen_test]
async fn a_will_set_in_advanced_is_sent_by_the_hub_when_the_connection_drops() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "browser-4").await;
    let root = mount_app();
    leptos::task::tick().await;
    type_into(&el(&root, "conn-will-body"), r#"{"online": false}"#);
    type_into(
        &el(&root, "conn-will-props"),
        "$.ct=application/json\nreason=connection lost",
    );
    type_into(&el(&root, "conn-keepalive"), "30");
    connect_ui(&root, &cs, base).await;
    let connect = all(&root, "traffic-entry")
        .iter()
        .map(|e| e.text_content().unwrap())
        .find(|t| t.contains("CONNECT"))
        .unwrap();
    assert!(connect.contains("keep-alive 30 s"), "{connect}");
    let (status, _) = call(
        base,
        &service,
        "POST",
        "/devhub/faults",
        Some(r#"{"action":"drop","device":"browser-4"}"#),
    )
    .await;
    assert_eq!(status, 204);
    let mut will = Value::Null;
    for _ in 0..50 {
        let (_, events) = call(
            base,
            &service,
            "GET",
            "/devhub/events?device=browser-4",
            None,
        )
        .await;
        if let Some(w) = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["properties"]["application"]["iothub-MessageType"] == "Will")
        {
            will = w.clone();
            break;
        }
        TimeoutFuture::new(100).await;
    }
    assert_eq!(will["body"], r#"{"online": false}"#, "{will}");
    assert_eq!(
        will["properties"]["application"]["reason"],
        "connection lost"
    );
    assert_eq!(will["properties"]["system"]["$.ct"], "application/json");
    el(&root, "disconnect").click();
}

#[wasm_bindgen_test]
async fn a_lost_desired_notification_is_marked_and_the_twin_fetched_again() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "browser-5").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    let patch = |n: u32| {
        let body = json!({"properties": {"desired": {"n": n}}}).to_string();
        let service = &service;
        async move {
            let (status, _) = call(base, service, "PATCH", "/twins/browser-5", Some(&body)).await;
            assert_eq!(status, 200);
        }
    };
    patch(1).await;
    wait_until("the first update", 10_000, || {
        all(&root, "twin-desired-update").len() == 1
    })
    .await;
    assert!(all(&root, "twin-desired-gap").is_empty());
    // devhub loses the next notification; the one after it shows the gap.
    let (status, _) = call(
        base,
        &service,
        "POST",
        "/devhub/faults",
        Some(r#"{"action":"skip-desired","device":"browser-5"}"#),
    )
    .await;
    assert_eq!(status, 204);
    patch(2).await;
    patch(3).await;
    wait_until("the gap mark", 10_000, || {
        all(&root, "twin-desired-gap").len() == 1
    })
    .await;
    // The twin was fetched again: it is at the latest version, with the latest value.
    wait_until("the refetched twin", 10_000, || {
        text(&root, "twin-desired-version").trim() == "4"
    })
    .await;
    assert!(text(&root, "twin-document").contains("\"n\": 3"));
    el(&root, "disconnect").click();
}
