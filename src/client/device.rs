//! The device in the browser: a [`DeviceSession`] pumped over a `web_sys::WebSocket`.
//!
//! The [`Device`] handle is `Copy`: Leptos signals the UI reads, plus the browser-side
//! state (socket, closures, timer) in a local `StoredValue`. Signals are updated only after
//! the internal borrow is released, so UI reactions can call back into the device.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::{Interval, Timeout};
use leptos::prelude::*;
use leptos::wasm_bindgen::closure::Closure;
use leptos::wasm_bindgen::JsCast;
use serde_json::Value;
use twinscope_proto::iothub::twin::TwinDocument;
use twinscope_proto::iothub::ConnectionString;
use twinscope_proto::mqtt::Packet;
use twinscope_proto::session::{
    C2dMessage, DeviceSession, Event, MethodCall, SessionConfig, State, Telemetry,
};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::ConnStatus;

/// Traffic entries kept for the view (oldest dropped first).
pub const TRAFFIC_LIMIT: usize = 500;

/// One packet in the traffic view.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficEntry {
    /// Order of arrival, for keys.
    pub seq: u64,
    /// Milliseconds since 1970.
    pub at: u64,
    /// Sent by the device.
    pub outbound: bool,
    /// The packet type, e.g. `PUBLISH`.
    pub kind: &'static str,
    /// One line: what it carries.
    pub summary: String,
}

/// Milliseconds since 1970, from the browser's clock.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// `HH:MM:SS.mmm` in the browser's local time, for the traffic view.
pub fn clock_label(ms: u64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds(),
        d.get_milliseconds()
    )
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// Drops a socket after the current callback returns: its closures may be running now.
fn retire(socket: Option<Socket>) {
    if let Some(s) = socket {
        leptos::task::spawn_local(async move { drop(s) });
    }
}

struct Inner {
    session: DeviceSession,
    endpoint: String,
    /// Signs every token, the first and the renewed ones alike.
    cs: ConnectionString,
    ttl_s: u64,
    socket: Option<Socket>,
    generation: u64,
    timer: Option<Timeout>,
    _clock: Option<Interval>,
}

/// The device handle the UI uses.
#[derive(Clone, Copy)]
pub struct Device {
    /// Connection state for the header.
    pub status: RwSignal<ConnStatus>,
    /// `device @ hub` while a session exists.
    pub identity: RwSignal<Option<String>>,
    /// When the current token expires (ms).
    pub token_expiry: RwSignal<Option<u64>>,
    /// The browser clock, ticking each second while a session exists.
    pub now: RwSignal<u64>,
    /// The last error to show, in words.
    pub error: RwSignal<Option<String>>,
    /// Packets both ways.
    pub traffic: RwSignal<Vec<TrafficEntry>>,
    /// Telemetry messages written to the socket.
    pub sent: RwSignal<u64>,
    /// QoS 1 telemetry acknowledged by the hub.
    pub acked: RwSignal<u64>,
    /// Cloud-to-device messages received.
    pub c2d: RwSignal<Vec<C2dMessage>>,
    /// The last twin document received.
    pub twin: RwSignal<Option<TwinDocument>>,
    /// Desired-property updates: (version, patch).
    pub desired: RwSignal<Vec<(u64, Value)>>,
    /// Method calls not yet answered, with the time each arrived (ms).
    pub methods: RwSignal<Vec<(u64, MethodCall)>>,
    inner: StoredValue<Option<Rc<RefCell<Inner>>>, LocalStorage>,
    traffic_seq: StoredValue<u64>,
    /// Reported patches sent and not yet answered, by request.
    patches: StoredValue<Vec<(twinscope_proto::session::RequestId, Value)>>,
}

impl Default for Device {
    fn default() -> Self {
        Device::new()
    }
}

impl Device {
    /// A disconnected device.
    pub fn new() -> Device {
        Device {
            status: RwSignal::new(ConnStatus::Disconnected),
            identity: RwSignal::new(None),
            token_expiry: RwSignal::new(None),
            now: RwSignal::new(now_ms()),
            error: RwSignal::new(None),
            traffic: RwSignal::new(Vec::new()),
            sent: RwSignal::new(0),
            acked: RwSignal::new(0),
            c2d: RwSignal::new(Vec::new()),
            twin: RwSignal::new(None),
            desired: RwSignal::new(Vec::new()),
            methods: RwSignal::new(Vec::new()),
            inner: StoredValue::new_local(None),
            traffic_seq: StoredValue::new(0),
            patches: StoredValue::new(Vec::new()),
        }
    }

    fn rc(&self) -> Option<Rc<RefCell<Inner>>> {
        self.inner.with_value(|i| i.clone())
    }

    /// Connects with a device connection string. The SAS token is signed here, in the
    /// browser, valid for `ttl_s` seconds and renewed before it expires. `endpoint`
    /// overrides the WebSocket URL (e.g. devhub's `ws://127.0.0.1:8080/$iothub/websocket`).
    pub fn connect(
        &self,
        connection_string: &str,
        endpoint: Option<&str>,
        ttl_s: u64,
    ) -> Result<(), String> {
        let cs = ConnectionString::parse_device(connection_string).map_err(|e| e.to_string())?;
        let identity = cs
            .identity()
            .ok_or("the connection string names no device")?;
        let endpoint = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) if e.starts_with("ws://") || e.starts_with("wss://") => e.to_string(),
            Some(e) => {
                return Err(format!(
                    "the endpoint {e:?} must start with wss:// (or ws:// for a local hub)"
                ))
            }
            None => cs.websocket_url(),
        };
        if !(10..=365 * 24 * 3600).contains(&ttl_s) {
            return Err("the token lifetime must be between 10 seconds and one year".into());
        }
        self.disconnect();
        let now = now_ms();
        let token = cs
            .sas_token(now / 1000 + ttl_s)
            .map_err(|e| e.to_string())?;
        let mut session =
            DeviceSession::new(SessionConfig::new(cs.host_name.clone(), identity.clone()));
        session
            .supply_token(now, token)
            .map_err(|e| e.to_string())?;
        self.token_expiry.set(session.token_expiry());
        self.identity
            .set(Some(format!("{identity} @ {}", cs.host_name)));
        self.error.set(None);
        let now_signal = self.now;
        let clock = Interval::new(1000, move || now_signal.set(now_ms()));
        let rc = Rc::new(RefCell::new(Inner {
            session,
            endpoint,
            cs: cs.clone(),
            ttl_s,
            socket: None,
            generation: 0,
            timer: None,
            _clock: Some(clock),
        }));
        self.inner.set_value(Some(rc.clone()));
        let r = rc.borrow_mut().session.connect(now);
        r.map_err(|e| e.to_string())?;
        self.pump(&rc);
        Ok(())
    }

    /// Disconnects (DISCONNECT, then close) and forgets the session.
    pub fn disconnect(&self) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().session.disconnect(now_ms());
            self.pump(&rc);
            let mut i = rc.borrow_mut();
            i.generation += 1;
            retire(i.socket.take());
            i.timer = None;
            i._clock = None;
        }
        self.inner.set_value(None);
        self.status.set(ConnStatus::Disconnected);
    }

    /// Sends (or queues) telemetry; returns a message for the user on refusal.
    pub fn send_telemetry(&self, t: Telemetry) -> Result<(), String> {
        let rc = self.rc().ok_or("not connected: connect first")?;
        let r = rc.borrow_mut().session.publish_telemetry(now_ms(), t);
        self.pump(&rc);
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Asks for the twin.
    pub fn get_twin(&self) -> Result<(), String> {
        let rc = self.rc().ok_or("not connected: connect first")?;
        let r = rc.borrow_mut().session.get_twin(now_ms());
        self.pump(&rc);
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Sends a reported-properties patch.
    pub fn patch_reported(&self, patch: &Value) -> Result<(), String> {
        let rc = self.rc().ok_or("not connected: connect first")?;
        let r = rc.borrow_mut().session.patch_reported(now_ms(), patch);
        if let Ok(request) = r {
            self.patches
                .update_value(|p| p.push((request, patch.clone())));
        }
        self.pump(&rc);
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Answers a method call and removes it from the list.
    pub fn respond_method(&self, rid: &str, status: i32, payload: &[u8]) -> Result<(), String> {
        let rc = self.rc().ok_or("not connected: connect first")?;
        let r = rc
            .borrow_mut()
            .session
            .respond_method(now_ms(), rid, status, payload);
        self.pump(&rc);
        r.map_err(|e| e.to_string())?;
        self.methods.update(|m| m.retain(|(_, c)| c.rid != rid));
        Ok(())
    }

    /// Drains the session's outputs: bytes to the socket, events to signals and actions,
    /// then re-arms the timer.
    fn pump(&self, rc: &Rc<RefCell<Inner>>) {
        loop {
            let (bytes, events) = {
                let mut i = rc.borrow_mut();
                let bytes: Vec<Vec<u8>> =
                    std::iter::from_fn(|| i.session.poll_transmit()).collect();
                let events: Vec<Event> = std::iter::from_fn(|| i.session.poll_event()).collect();
                (bytes, events)
            };
            if bytes.is_empty() && events.is_empty() {
                break;
            }
            if let Some(s) = &rc.borrow().socket {
                for b in &bytes {
                    let _ = s.ws.send_with_u8_array(b);
                }
            }
            for e in events {
                self.event(rc, e);
            }
        }
        self.arm_timer(rc);
    }

    fn arm_timer(&self, rc: &Rc<RefCell<Inner>>) {
        let at = rc.borrow().session.poll_timeout();
        let weak = Rc::downgrade(rc);
        let me = *self;
        let timer = at.map(|at| {
            let delay = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
            Timeout::new(delay, move || {
                if let Some(rc) = weak.upgrade() {
                    rc.borrow_mut().session.handle_timeout(now_ms());
                    me.pump(&rc);
                }
            })
        });
        rc.borrow_mut().timer = timer;
    }

    fn event(&self, rc: &Rc<RefCell<Inner>>, e: Event) {
        match e {
            Event::OpenTransport => self.open_socket(rc),
            Event::CloseTransport => {
                // Retiring the socket closes it without calling back: tell the session now.
                let socket = {
                    let mut i = rc.borrow_mut();
                    i.generation += 1;
                    i.socket.take()
                };
                retire(socket);
                rc.borrow_mut().session.handle_closed(now_ms());
            }
            Event::State(s) => self.status.set(match s {
                State::Disconnected => ConnStatus::Disconnected,
                State::Connecting => ConnStatus::Connecting,
                State::Connected => ConnStatus::Connected,
                State::Reconnecting { .. } => ConnStatus::Reconnecting,
            }),
            Event::Connected { .. } => self.error.set(None),
            Event::ConnectRefused { explanation, .. } => self.error.set(Some(explanation)),
            Event::TelemetrySent(_) => self.sent.update(|n| *n += 1),
            Event::TelemetryAcked(_) => self.acked.update(|n| *n += 1),
            Event::C2d(m) => self.c2d.update(|v| v.push(m)),
            Event::Twin {
                result: Ok(doc), ..
            } => self.twin.set(Some(doc)),
            Event::Twin { result: Err(e), .. } => self
                .error
                .set(Some(format!("twin request failed: {}", e.message))),
            Event::ReportedPatched { request, result } => {
                let sent = self.take_patch(request);
                match result {
                    // Keep the shown twin current: the hub applied the patch as this version.
                    Ok(version) => self.twin.update(|t| {
                        if let (Some(t), Some(patch)) =
                            (t.as_mut(), sent.as_ref().and_then(Value::as_object))
                        {
                            t.apply_reported(patch, version);
                        }
                    }),
                    Err(e) => self
                        .error
                        .set(Some(format!("reported patch failed: {}", e.message))),
                }
            }
            Event::TwinResync { .. } => {}
            Event::DesiredUpdate { version, patch } => {
                self.twin.update(|t| {
                    if let (Some(t), Some(p)) = (t.as_mut(), patch.as_object()) {
                        t.apply_desired(p, version);
                    }
                });
                self.desired.update(|v| v.push((version, patch)));
            }
            Event::MethodCall(call) => self.methods.update(|v| v.push((now_ms(), call))),
            Event::TokenNeeded => self.renew_token(rc),
            Event::Traffic {
                outbound,
                at,
                packet,
            } => self.log(outbound, at, &packet),
            Event::Error(m) => self.error.set(Some(m)),
        }
    }

    fn take_patch(&self, request: twinscope_proto::session::RequestId) -> Option<Value> {
        let mut found = None;
        self.patches.update_value(|p| {
            if let Some(i) = p.iter().position(|(r, _)| *r == request) {
                found = Some(p.remove(i).1);
            }
        });
        found
    }

    fn renew_token(&self, rc: &Rc<RefCell<Inner>>) {
        let now = now_ms();
        let token = {
            let i = rc.borrow();
            i.cs.can_sign()
                .then(|| i.cs.sas_token(now / 1000 + i.ttl_s).ok())
                .flatten()
        };
        match token {
            Some(t) => {
                let r = rc.borrow_mut().session.supply_token(now, t);
                match r {
                    Ok(()) => self.token_expiry.set(rc.borrow().session.token_expiry()),
                    Err(e) => self.error.set(Some(e.to_string())),
                }
            }
            None => self.error.set(Some(
                "the SAS token is about to expire and this connection string has no key to sign a new one: paste a fresh SharedAccessSignature and connect again".into(),
            )),
        }
    }

    fn log(&self, outbound: bool, at: u64, p: &Packet) {
        let seq = self.traffic_seq.get_value();
        self.traffic_seq.set_value(seq + 1);
        let entry = TrafficEntry {
            seq,
            at,
            outbound,
            kind: p.name(),
            summary: twinscope_proto::traffic::summarize(p),
        };
        self.traffic.update(|v| {
            v.push(entry);
            if v.len() > TRAFFIC_LIMIT {
                let extra = v.len() - TRAFFIC_LIMIT;
                v.drain(..extra);
            }
        });
    }

    fn open_socket(&self, rc: &Rc<RefCell<Inner>>) {
        let (url, generation) = {
            let mut i = rc.borrow_mut();
            i.generation += 1;
            retire(i.socket.take());
            (i.endpoint.clone(), i.generation)
        };
        let ws = match WebSocket::new_with_str(&url, "mqtt") {
            Ok(ws) => ws,
            Err(e) => {
                self.error
                    .set(Some(format!("cannot open {url}: {}", js_error(&e))));
                rc.borrow_mut().session.handle_closed(now_ms());
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = *self;
        let current = move |weak: &Weak<RefCell<Inner>>| -> Option<Rc<RefCell<Inner>>> {
            let rc = weak.upgrade()?;
            let ok = rc.borrow().generation == generation;
            ok.then_some(rc)
        };
        let weak = Rc::downgrade(rc);
        let on_open = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(rc) = current(&weak) {
                    rc.borrow_mut().session.handle_opened(now_ms());
                    me.pump(&rc);
                }
            }
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let weak = weak.clone();
            move |e: MessageEvent| {
                let Some(rc) = current(&weak) else { return };
                if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                    let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                    rc.borrow_mut().session.handle_bytes(now_ms(), &bytes);
                    me.pump(&rc);
                }
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new({
            let weak = weak.clone();
            move |e: CloseEvent| {
                let Some(rc) = current(&weak) else { return };
                if e.code() != 1000 && e.code() != 1005 {
                    let reason = if e.reason().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", e.reason())
                    };
                    me.error.set(Some(format!(
                        "the WebSocket closed (code {}{reason})",
                        e.code()
                    )));
                }
                let socket = {
                    let mut i = rc.borrow_mut();
                    i.generation += 1;
                    i.socket.take()
                };
                retire(socket);
                rc.borrow_mut().session.handle_closed(now_ms());
                me.pump(&rc);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        rc.borrow_mut().socket = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
    }
}

fn js_error(e: &wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}
