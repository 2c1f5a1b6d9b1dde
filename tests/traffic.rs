//! The traffic inspector in headless Chromium against devhub: decoded packets, pairing,
//! filter by kind and text, pause, NDJSON export, and a ring of 5,000 entries that stays
//! responsive (the render and filter times are printed, not asserted).
#![cfg(target_arch = "wasm32")]

use leptos::wasm_bindgen::JsCast;
use serde_json::Value;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

fn select(root: &HtmlElement, id: &str, value: &str) {
    let s: web_sys::HtmlSelectElement = el(root, id).unchecked_into();
    s.set_value(value);
    fire_change(&el(root, id));
}

fn rows(root: &HtmlElement) -> Vec<String> {
    all(root, "traffic-entry")
        .iter()
        .map(|e| e.text_content().unwrap_or_default())
        .collect()
}

fn shown(root: &HtmlElement) -> usize {
    // "N of M shown..."
    text_now(root, "traffic-count")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Sends `n` telemetry messages through the form, 100 at a time (the session queues at
/// most 200), each batch waited for until acknowledged.
async fn send_many(root: &HtmlElement, n: usize) {
    let acked = |root: &HtmlElement| -> usize {
        text_now(root, "telemetry-sent-count")
            .split(", ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let start = acked(root);
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(100);
        for _ in 0..batch {
            el(root, "telemetry-send").click();
        }
        sent += batch;
        let want = start + sent;
        wait_until("acknowledged", 30_000, || acked(root) >= want).await;
    }
}

#[wasm_bindgen_test]
async fn the_inspector_decodes_pairs_filters_pauses_and_exports() {
    let Some((base, policy)) = devhub() else {
        return;
    };
    let cs = create_device(base, &policy, "traffic-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;

    // A telemetry message with a property, and a twin GET.
    el(&root, "telemetry-prop-add").click();
    leptos::task::tick().await;
    type_into(&el(&root, "telemetry-prop-key"), "color");
    type_into(&el(&root, "telemetry-prop-value"), "dark red");
    send_many(&root, 1).await;
    el(&root, "tab-twin").click();
    el(&root, "twin-get").click();
    wait_until("twin answer", 5_000, || {
        rows(&root).iter().any(|r| r.contains("twin response"))
    })
    .await;

    // The CONNECT is shown without its SAS token.
    let connect = all(&root, "traffic-entry")
        .into_iter()
        .find(|e| e.text_content().unwrap_or_default().contains("CONNECT"))
        .expect("a CONNECT row");
    connect.click();
    leptos::task::tick().await;
    let detail = text(&root, "traffic-detail");
    assert!(detail.contains("not shown"), "{detail}");
    assert!(
        !detail.contains("SharedAccessSignature") && !detail.contains("sig="),
        "{detail}"
    );
    assert!(
        detail.contains("answered by"),
        "CONNECT pairs with CONNACK: {detail}"
    );

    // The telemetry row: the property bag decoded, and its PUBACK time.
    let telemetry = all(&root, "traffic-entry")
        .into_iter()
        .find(|e| e.text_content().unwrap_or_default().contains("telemetry"))
        .expect("a telemetry row");
    telemetry.click();
    leptos::task::tick().await;
    let props = text(&root, "traffic-props");
    assert!(
        props.contains("color") && props.contains("dark red"),
        "{props}"
    );
    assert!(text(&root, "traffic-detail").contains("answered by"));

    // Filter by kind: only twin packets.
    let total = shown(&root);
    select(&root, "traffic-kind", "twin");
    leptos::task::tick().await;
    let twin_rows = rows(&root);
    assert!(!twin_rows.is_empty() && twin_rows.len() < total);
    assert!(
        twin_rows.iter().all(|r| r.contains("twin")),
        "{twin_rows:?}"
    );
    select(&root, "traffic-kind", "");

    // Filter by text: the percent-decoded property value matches.
    type_into(&el(&root, "traffic-filter"), "DARK RED");
    leptos::task::tick().await;
    assert_eq!(shown(&root), 1, "{}", text(&root, "traffic-count"));
    type_into(&el(&root, "traffic-filter"), "");
    leptos::task::tick().await;

    // Pause: new packets are counted, not shown, until resumed.
    el(&root, "traffic-pause").click();
    leptos::task::tick().await;
    let before = shown(&root);
    el(&root, "tab-telemetry").click();
    send_many(&root, 2).await;
    assert_eq!(shown(&root), before);
    let count = text(&root, "traffic-count");
    let new: usize = count
        .split("paused, ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{count}"));
    assert!(new >= 4, "two messages and their PUBACKs at least: {count}");
    el(&root, "traffic-pause").click();
    leptos::task::tick().await;
    assert_eq!(shown(&root), before + new);

    // Export: one JSON object a line, one line per entry shown, no token anywhere.
    el(&root, "traffic-export").click();
    leptos::task::tick().await;
    let href = el(&root, "traffic-export-link")
        .get_attribute("href")
        .unwrap();
    assert!(href.starts_with("blob:"));
    let resp: web_sys::Response = JsFuture::from(web_sys::window().unwrap().fetch_with_str(&href))
        .await
        .unwrap()
        .unchecked_into();
    let body = JsFuture::from(resp.text().unwrap())
        .await
        .unwrap()
        .as_string()
        .unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), shown(&root));
    assert!(lines.iter().any(|l| l["props"]["color"] == "dark red"));
    assert!(lines.iter().any(|l| l["latencyMs"].is_number()));
    assert!(!body.contains("sig="), "the export carries no token");
}

#[wasm_bindgen_test]
async fn five_thousand_entries_render_and_filter_without_freezing() {
    let Some((base, policy)) = devhub() else {
        return;
    };
    let cs = create_device(base, &policy, "traffic-5000").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    let t0 = js_sys::Date::now();
    // 2,500 QoS 1 messages: 5,000 packets with their PUBACKs.
    send_many(&root, 2500).await;
    wait_until("the ring full", 30_000, || {
        text_now(&root, "traffic-count").contains("of 5000 shown")
    })
    .await;
    let fill_ms = js_sys::Date::now() - t0;
    // Only the rows on screen are in the DOM.
    let in_dom = all(&root, "traffic-entry").len();
    assert!(in_dom > 0 && in_dom < 100, "{in_dom} rows rendered");

    let t1 = js_sys::Date::now();
    type_into(&el(&root, "traffic-filter"), "PUBACK");
    leptos::task::tick().await;
    let filter_ms = js_sys::Date::now() - t1;
    let n = shown(&root);
    assert!((2400..=2600).contains(&n), "{n} PUBACKs of 5000 packets");

    // Scrolling to the top renders the first rows.
    let log = el(&root, "traffic-log");
    log.set_scroll_top(0);
    fire_scroll(&log);
    leptos::task::tick().await;
    assert!(rows(&root).iter().all(|r| r.contains("PUBACK")));
    web_sys::console::log_1(
        &format!(
            "traffic inspector: 5000 entries (2500 messages sent and acknowledged) in {fill_ms:.0} ms; filter over 5000 in {filter_ms:.1} ms; {in_dom} rows in the DOM"
        )
        .into(),
    );
}

fn fire_scroll(e: &HtmlElement) {
    e.dispatch_event(&web_sys::Event::new("scroll").unwrap())
        .unwrap();
}

/// The longest the page's event loop stalled while `f` ran, sampled by a 10 ms timer.
struct StallMeter {
    worst: std::rc::Rc<std::cell::Cell<f64>>,
    _timer: gloo_timers::callback::Interval,
}

impl StallMeter {
    fn start() -> StallMeter {
        let worst = std::rc::Rc::new(std::cell::Cell::new(0.0f64));
        let last = std::rc::Rc::new(std::cell::Cell::new(js_sys::Date::now()));
        let (w, l) = (worst.clone(), last.clone());
        let timer = gloo_timers::callback::Interval::new(10, move || {
            let now = js_sys::Date::now();
            w.set(w.get().max(now - l.get() - 10.0));
            l.set(now);
        });
        StallMeter {
            worst,
            _timer: timer,
        }
    }
}

#[wasm_bindgen_test]
async fn a_flood_of_desired_updates_and_c2d_messages_keeps_the_page_responsive() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "flood-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;

    // 5,000 desired updates, 50 requests in flight at a time.
    let stall = StallMeter::start();
    let t0 = js_sys::Date::now();
    let mut last_version = 0;
    for batch in 0..100 {
        let pending: Vec<_> = (0..50)
            .map(|i| {
                let body = serde_json::json!({"properties": {"desired": {"step": batch * 50 + i}}});
                request(
                    base,
                    &service,
                    "PATCH",
                    "/twins/flood-1",
                    Some(&body.to_string()),
                    &[],
                )
            })
            .collect();
        for p in pending {
            let (status, body) = finish(p).await;
            assert_eq!(status, 200);
            let twin: serde_json::Value = serde_json::from_str(&body).unwrap();
            let v = twin["properties"]["desired"]["$version"].as_u64().unwrap();
            last_version = last_version.max(v);
        }
    }
    wait_until("the last desired update", 60_000, || {
        text_now(&root, "twin-desired-version") == last_version.to_string()
    })
    .await;
    let desired_ms = js_sys::Date::now() - t0;
    let desired_stall = stall.worst.get();
    let cards = all(&root, "twin-desired-update").len();
    assert!(cards <= 200, "the desired stream is bounded: {cards}");

    // 5,000 C2D messages (the inbox keeps the newest 200), 20 in flight at a time; devhub queues at most 50 per device
    // (IoT Hub's limit), so a 403004 "queue full" is retried after a moment.
    let stall = StallMeter::start();
    let t1 = js_sys::Date::now();
    let send = |n: usize| {
        request(
            base,
            &service,
            "POST",
            "/devices/flood-1/messages/deviceBound",
            Some(&format!("{{\"n\": {n}}}")),
            &[],
        )
    };
    for batch in 0..250 {
        let pending: Vec<_> = (0..20)
            .map(|i| (batch * 20 + i, send(batch * 20 + i)))
            .collect();
        for (n, p) in pending {
            let (mut status, mut body) = finish(p).await;
            while status == 403 && body.contains("403004") {
                gloo_timers::future::TimeoutFuture::new(20).await;
                (status, body) = finish(send(n)).await;
            }
            assert_eq!(status, 200, "{body}");
        }
    }
    let inbox = |root: &HtmlElement| {
        root.query_selector("#panel-c2d .actions .muted")
            .ok()
            .flatten()
            .and_then(|e| e.text_content())
            .unwrap_or_default()
    };
    wait_until("all 5000 C2D messages", 120_000, || {
        inbox(&root).contains("4800 older ones dropped")
    })
    .await;
    let c2d_ms = js_sys::Date::now() - t1;
    let c2d_stall = stall.worst.get();
    let cards = all(&root, "c2d-message").len();
    assert_eq!(cards, 200, "the inbox is bounded");
    web_sys::console::log_1(
        &format!(
            "flood: 5000 desired updates in {desired_ms:.0} ms (longest event-loop stall {desired_stall:.0} ms); \
             5000 C2D messages in {c2d_ms:.0} ms (longest stall {c2d_stall:.0} ms); 200 cards kept in each list"
        )
        .into(),
    );
}
