//! The hub's service REST API from the browser: requests built by
//! `twinscope_proto::iothub::service`, signed here with the service policy's key (the key
//! never leaves the page; only the token does), sent with `fetch`.

use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use twinscope_proto::iothub::service::{self, ServiceRequest};
use twinscope_proto::iothub::{ConnectionString, Identity};
use wasm_bindgen_futures::JsFuture;

use super::now_ms;

/// Token lifetime for one service call.
const TOKEN_TTL_S: u64 = 3600;

/// An answer from the service API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl ServiceAnswer {
    /// The body when the status is 2xx, else the error in words.
    pub fn ok(self) -> Result<String, String> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(service::explain_error(self.status, &self.body))
        }
    }
}

/// The hub console's settings: the service connection string and where its REST API is.
#[derive(Clone, Copy)]
pub struct Console {
    /// A service (policy) connection string, e.g. devhub's iothubowner string.
    pub conn: RwSignal<String>,
    /// The REST API's base URL (`https://{HostName}`, or devhub's own origin).
    pub base: RwSignal<String>,
    /// Whether `base` is devhub (it answers `/devhub/health`): faults are offered then.
    pub devhub: RwSignal<bool>,
    /// The last twin read through the service API (with tags and `$metadata`), or why not.
    pub twin: RwSignal<Option<Result<serde_json::Value, String>>>,
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Console {
    /// Empty settings.
    pub fn new() -> Console {
        Console {
            conn: RwSignal::new(String::new()),
            base: RwSignal::new(String::new()),
            devhub: RwSignal::new(false),
            twin: RwSignal::new(None),
        }
    }

    /// The parsed service connection string, or what is wrong with it.
    pub fn policy(&self) -> Result<ConnectionString, String> {
        let text = self.conn.get_untracked();
        if text.trim().is_empty() {
            return Err("paste a service connection string (a shared access policy with service connect, e.g. iothubowner) first".into());
        }
        let cs = ConnectionString::parse(&text).map_err(|e| e.to_string())?;
        if cs.device_id.is_some() {
            return Err("this is a device connection string; the console needs a service policy string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)".into());
        }
        if cs.shared_access_key_name.is_none() {
            return Err("the service connection string has no SharedAccessKeyName (the policy, e.g. iothubowner)".into());
        }
        Ok(cs)
    }

    /// The base URL to use: the one set, else `https://{HostName}`.
    pub fn base_url(&self, cs: &ConnectionString) -> String {
        let b = self.base.get_untracked();
        let b = b.trim().trim_end_matches('/');
        if b.is_empty() {
            format!("https://{}", cs.host_name)
        } else {
            b.to_string()
        }
    }

    /// Sends `req`, signed with the policy key.
    pub async fn send(&self, req: ServiceRequest) -> Result<ServiceAnswer, String> {
        let cs = self.policy()?;
        let base = self.base_url(&cs);
        let token = cs
            .sas_token(now_ms() / 1000 + TOKEN_TTL_S)
            .map_err(|e| e.to_string())?;
        fetch(&base, &token, &req).await
    }

    /// Whether a service connection string has been given.
    pub fn configured(&self) -> bool {
        !self.conn.with(|c| c.trim().is_empty())
    }

    /// Reads the twin of `client_id` (`device` or `device/module`) as the service sees it
    /// into [`Console::twin`].
    pub async fn fetch_twin(&self, client_id: &str) {
        let r = match Identity::from_client_id(client_id) {
            Err(e) => Err(format!("target device: {e}")),
            Ok(id) => match self.send(service::get_twin(&id)).await {
                Err(e) => Err(e),
                Ok(a) => a.ok().and_then(|b| {
                    serde_json::from_slice(b.as_bytes())
                        .map_err(|e| format!("the twin is not JSON: {e}"))
                }),
            },
        };
        self.twin.set(Some(r));
    }

    /// Asks `base` whether it is devhub, and remembers the answer.
    pub async fn probe(&self) {
        let base = self.base.get_untracked();
        let base = base.trim().trim_end_matches('/').to_string();
        let is = !base.is_empty() && is_devhub(&base).await;
        self.devhub.set(is);
    }
}

async fn is_devhub(base: &str) -> bool {
    let Some(w) = web_sys::window() else {
        return false;
    };
    let Ok(resp) = JsFuture::from(w.fetch_with_str(&format!("{base}/devhub/health"))).await else {
        return false;
    };
    let Ok(resp) = resp.dyn_into::<web_sys::Response>() else {
        return false;
    };
    if !resp.ok() {
        return false;
    }
    match resp.text() {
        Ok(p) => JsFuture::from(p)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .is_some_and(|t| t.trim() == "ok"),
        Err(_) => false,
    }
}

async fn fetch(base: &str, token: &str, req: &ServiceRequest) -> Result<ServiceAnswer, String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_method(req.method);
    let headers = web_sys::Headers::new().map_err(|_| "cannot build headers")?;
    headers
        .set("Authorization", token)
        .map_err(|_| "cannot set the Authorization header")?;
    for (k, v) in &req.headers {
        headers
            .set(k, v)
            .map_err(|_| format!("the header {k} has a value the browser refuses"))?;
    }
    init.set_headers(&headers);
    if let Some(b) = &req.body {
        let arr = js_sys::Uint8Array::from(b.as_slice());
        init.set_body(&arr);
    }
    let url = format!("{base}{}", req.path);
    let request = web_sys::Request::new_with_str_and_init(&url, &init)
        .map_err(|_| format!("bad URL {url}"))?;
    let resp = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|_| {
            format!(
                "could not reach {base}: the hub is down, or it did not allow this page to call it. \
                 Azure IoT Hub's REST API sends no CORS headers, so a page can only reach devhub \
                 (or a proxy that adds them)"
            )
        })?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "not a response")?;
    let status = resp.status();
    let body = match resp.text() {
        Ok(p) => JsFuture::from(p)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ok(ServiceAnswer { status, body })
}
