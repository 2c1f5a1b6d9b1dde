//! Helpers shared by the browser tests that run against devhub.
#![allow(dead_code)]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::wasm_bindgen::{JsCast, JsValue};
use serde_json::{json, Value};
use twinscope_proto::iothub::{sas, ConnectionString};
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlElement;

pub const DEVHUB: Option<&str> = option_env!("TWINSCOPE_DEVHUB_URL");
pub const SERVICE: Option<&str> = option_env!("TWINSCOPE_DEVHUB_SERVICE");

/// The devhub to use, or `None` to skip (only when not required).
pub fn devhub() -> Option<(&'static str, ConnectionString)> {
    match (DEVHUB, SERVICE) {
        (Some(url), Some(service)) => Some((
            url,
            ConnectionString::parse(service).expect("service connection string"),
        )),
        _ => {
            assert!(
                option_env!("TWINSCOPE_REQUIRE_DEVHUB").is_none(),
                "TWINSCOPE_DEVHUB_URL and TWINSCOPE_DEVHUB_SERVICE must be set (cargo xtask test sets them)"
            );
            web_sys::console::log_1(&"skipping: no devhub (run cargo xtask test)".into());
            None
        }
    }
}

pub fn service_token(service: &ConnectionString) -> String {
    let now = (js_sys::Date::now() / 1000.0) as u64;
    sas::build_token(
        &service.host_name,
        service.shared_access_key.as_ref().unwrap(),
        now + 600,
        Some("iothubowner"),
    )
}

/// Starts an HTTP request to devhub (it is under way before this returns).
pub fn request(
    base: &str,
    service: &ConnectionString,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> JsFuture {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let h = web_sys::Headers::new().unwrap();
    h.set("Authorization", &service_token(service)).unwrap();
    h.set("Content-Type", "application/json").unwrap();
    for (k, v) in headers {
        h.set(k, v).unwrap();
    }
    init.set_headers(&h);
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
    }
    let req = web_sys::Request::new_with_str_and_init(&format!("{base}{path}"), &init).unwrap();
    JsFuture::from(web_sys::window().unwrap().fetch_with_request(&req))
}

pub async fn finish(f: JsFuture) -> (u16, String) {
    let resp: web_sys::Response = f.await.expect("request reached devhub").dyn_into().unwrap();
    let text = JsFuture::from(resp.text().unwrap())
        .await
        .unwrap()
        .as_string()
        .unwrap_or_default();
    (resp.status(), text)
}

pub async fn call(
    base: &str,
    service: &ConnectionString,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, text) = finish(request(base, service, method, path, body, &[])).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a device and returns its connection string.
pub async fn create_device(base: &str, service: &ConnectionString, id: &str) -> String {
    let (status, dev) = call(
        base,
        service,
        "PUT",
        &format!("/devices/{id}"),
        Some(&json!({"deviceId": id}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "create {id}: {dev}");
    let key = dev["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    format!(
        "HostName={};DeviceId={id};SharedAccessKey={key}",
        service.host_name
    )
}

pub fn ws_url(base: &str) -> String {
    format!("{}/$iothub/websocket", base.replacen("http://", "ws://", 1))
}

pub async fn wait_until(what: &str, timeout_ms: u32, mut f: impl FnMut() -> bool) {
    let mut waited = 0;
    while !f() {
        assert!(
            waited < timeout_ms,
            "timed out after {timeout_ms} ms waiting for {what}"
        );
        TimeoutFuture::new(50).await;
        waited += 50;
    }
}

pub fn mount_app() -> HtmlElement {
    let root: HtmlElement = document().create_element("div").unwrap().unchecked_into();
    document().body().unwrap().append_child(&root).unwrap();
    leptos::mount::mount_to(root.clone(), twinscope::App).forget();
    root
}

pub fn el(root: &HtmlElement, id: &str) -> HtmlElement {
    root.query_selector(&format!("[data-testid=\"{id}\"]"))
        .unwrap()
        .unwrap_or_else(|| panic!("no {id}"))
        .unchecked_into()
}

pub fn all(root: &HtmlElement, id: &str) -> Vec<HtmlElement> {
    let list = root
        .query_selector_all(&format!("[data-testid=\"{id}\"]"))
        .unwrap();
    (0..list.length())
        .map(|i| list.item(i).unwrap().unchecked_into())
        .collect()
}

pub fn text(root: &HtmlElement, id: &str) -> String {
    el(root, id).text_content().unwrap_or_default()
}

/// Types into an input or textarea the way a user does (value, then an input event).
pub fn type_into(e: &HtmlElement, value: &str) {
    if let Some(t) = e.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        t.set_value(value);
    } else {
        e.unchecked_ref::<web_sys::HtmlInputElement>()
            .set_value(value);
    }
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    e.dispatch_event(&web_sys::Event::new_with_event_init_dict("input", &init).unwrap())
        .unwrap();
}

pub fn status_is(root: &HtmlElement, word: &str) -> bool {
    text(root, "conn-status").trim() == word
}

pub async fn connect_ui(root: &HtmlElement, cs: &str, base: &str) {
    leptos::task::tick().await;
    type_into(&el(root, "conn-string"), cs);
    type_into(&el(root, "conn-endpoint"), &ws_url(base));
    el(root, "connect").click();
    wait_until("connected", 10_000, || status_is(root, "connected")).await;
}

/// Fires a `change` event (what a user's edit does when the field loses focus).
pub fn fire_change(e: &HtmlElement) {
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    e.dispatch_event(&web_sys::Event::new_with_event_init_dict("change", &init).unwrap())
        .unwrap();
}

/// How many traffic entries mention `what`.
pub fn traffic_count(root: &HtmlElement, what: &str) -> usize {
    all(root, "traffic-entry")
        .iter()
        .filter(|e| e.text_content().unwrap_or_default().contains(what))
        .count()
}

/// The text of the element with this test id, or empty while there is none.
pub fn text_now(root: &HtmlElement, id: &str) -> String {
    root.query_selector(&format!("[data-testid=\"{id}\"]"))
        .ok()
        .flatten()
        .and_then(|e| e.text_content())
        .unwrap_or_default()
}

/// Creates (or replaces) a DPS enrollment group with this key.
pub async fn create_group(base: &str, service: &ConnectionString, name: &str, key: &str) {
    let body = json!({"enrollmentGroupId": name,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}});
    let (status, answer) = finish(request(
        base,
        service,
        "PUT",
        &format!("/enrollmentGroups/{name}"),
        Some(&body.to_string()),
        &[],
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
}
