//! Talking to devhub from the browser: the demo device it offers.

use leptos::wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The demo device devhub serves at `GET /devhub/demo` (read by hand from JSON: a derived
/// reader cost the app 5 KB of wasm).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoDevice {
    /// The device's connection string.
    pub connection_string: String,
    /// devhub's MQTT-over-WebSocket URL.
    pub websocket_url: String,
    /// devhub's service (iothubowner) connection string, for the hub console.
    pub service_connection_string: Option<String>,
    /// devhub's DPS ID scope.
    pub id_scope: Option<String>,
    /// devhub's demo enrollment group, with `--demo`.
    pub demo_group: Option<DemoGroup>,
}

/// An enrollment group devhub offers for trying DPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoGroup {
    /// The group's name.
    pub name: String,
    /// The group key (a device key is derived from it per registration id).
    pub key: String,
}

/// Fetches `{base}/devhub/demo`; `None` when the page is not served by devhub (or devhub
/// runs without `--demo`).
pub async fn fetch_demo(base: &str) -> Option<DemoDevice> {
    let window = web_sys::window()?;
    let resp = JsFuture::from(window.fetch_with_str(&format!("{base}/devhub/demo")))
        .await
        .ok()?;
    let resp: web_sys::Response = resp.dyn_into().ok()?;
    if !resp.ok() {
        return None;
    }
    let text = JsFuture::from(resp.text().ok()?).await.ok()?.as_string()?;
    let v: serde_json::Value = serde_json::from_slice(text.as_bytes()).ok()?;
    let s = twinscope_proto::text::json_text;
    Some(DemoDevice {
        connection_string: s(&v, "connectionString")?,
        websocket_url: s(&v, "websocketUrl")?,
        service_connection_string: s(&v, "serviceConnectionString"),
        id_scope: s(&v, "idScope"),
        demo_group: v.get("demoGroup").and_then(|g| {
            Some(DemoGroup {
                name: s(g, "name")?,
                key: s(g, "key")?,
            })
        }),
    })
}
