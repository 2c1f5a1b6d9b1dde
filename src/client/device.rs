//! The device in the browser: a [`DeviceSession`] pumped over a `web_sys::WebSocket`.
//!
//! The [`Device`] handle is `Copy`: Leptos signals the UI reads, plus the browser-side
//! state (socket, closures, timer) in a local `StoredValue`. Signals are updated only after
//! the internal borrow is released, so UI reactions can call back into the device.

use std::cell::RefCell;
use std::rc::Rc;
use twinscope_proto::text::Quoted;

use gloo_timers::callback::Interval;
use leptos::prelude::*;
use serde_json::Value;
use twinscope_proto::iothub::ConnectionString;
use twinscope_proto::session::{DeviceSession, Event, SessionConfig, State, Telemetry, Will};

use super::transport::{arm_timer, attach, retire, ArmedTimer, Socket, SocketOwner};
use super::view::DeviceView;
use super::ConnStatus;

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

struct Inner {
    session: DeviceSession,
    endpoint: String,
    /// Signs every token, the first and the renewed ones alike.
    cs: ConnectionString,
    ttl_s: u64,
    socket: Option<Socket>,
    generation: u64,
    timer: ArmedTimer,
    _clock: Option<Interval>,
}

/// Connection settings beyond the connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// WebSocket URL; the hub's own when `None`.
    pub endpoint: Option<String>,
    /// SAS token lifetime in seconds.
    pub ttl_s: u64,
    /// CleanSession (false keeps subscriptions and unacknowledged C2D on the hub).
    pub clean_session: bool,
    /// Keep-alive in seconds (the session caps it at 1177).
    pub keep_alive_s: Option<u16>,
    /// The api-version in the user name.
    pub api_version: Option<String>,
    /// IoT Plug and Play model id.
    pub model_id: Option<String>,
    /// A will the hub sends as telemetry if the connection drops.
    pub will: Option<Will>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            endpoint: None,
            ttl_s: 3600,
            clean_session: false,
            keep_alive_s: None,
            api_version: None,
            model_id: None,
            will: None,
        }
    }
}

/// The device handle the UI uses.
#[derive(Clone, Copy)]
pub struct Device {
    /// What the panels show; written only here, by folding session events into it.
    view: RwSignal<DeviceView>,
    /// `device @ hub` while a session exists.
    pub identity: RwSignal<Option<String>>,
    /// The device's client id (`device` or `device/module`) while a session exists.
    pub target: RwSignal<Option<String>>,
    /// The Plug and Play model id the device announced, if any.
    pub model_id: RwSignal<Option<String>>,
    /// The browser clock, ticking each second while a session exists.
    pub now: RwSignal<u64>,
    inner: StoredValue<Option<Rc<RefCell<Inner>>>, LocalStorage>,
}

impl Default for Device {
    fn default() -> Self {
        Device::new()
    }
}

impl Device {
    /// A disconnected device.
    pub fn new() -> Device {
        Device::with_limits(super::view::Limits::default())
    }

    /// A disconnected device whose view keeps lists of these sizes.
    pub fn with_limits(limits: super::view::Limits) -> Device {
        Device {
            view: RwSignal::new(DeviceView::with_limits(limits)),
            identity: RwSignal::new(None),
            target: RwSignal::new(None),
            model_id: RwSignal::new(None),
            now: RwSignal::new(now_ms()),
            inner: StoredValue::new_local(None),
        }
    }

    /// What the panels show (read-only).
    pub fn view(&self) -> ReadSignal<DeviceView> {
        self.view.read_only()
    }

    /// The header's status (reactive).
    pub fn status(&self) -> ConnStatus {
        self.view.with(DeviceView::status)
    }

    /// Shows a packet another session (DPS) exchanged in this device's traffic inspector.
    pub fn note_traffic(&self, outbound: bool, packet: twinscope_proto::mqtt::Packet) {
        let size = packet.to_bytes().map_or(0, |b| b.len());
        let now = now_ms();
        let e = Event::Traffic {
            outbound,
            at: now,
            packet,
            size,
        };
        self.view.update(|v| v.apply(&e, now));
    }

    /// Empties the C2D inbox.
    pub fn clear_c2d(&self) {
        self.view.update(DeviceView::clear_c2d);
    }

    fn say(&self, error: String) {
        self.view.update(|v| v.error = Some(error));
    }

    fn rc(&self) -> Option<Rc<RefCell<Inner>>> {
        self.inner.with_value(|i| i.clone())
    }

    /// Connects with a device connection string and default settings. The SAS token is
    /// signed here, in the browser, valid for `ttl_s` seconds and renewed before it
    /// expires. `endpoint` overrides the WebSocket URL (e.g. devhub's
    /// `ws://127.0.0.1:8080/$iothub/websocket`).
    pub fn connect(
        &self,
        connection_string: &str,
        endpoint: Option<&str>,
        ttl_s: u64,
    ) -> Result<(), String> {
        self.connect_with(
            connection_string,
            &ConnectOptions {
                endpoint: endpoint.map(str::to_string),
                ttl_s,
                ..ConnectOptions::default()
            },
        )
    }

    /// Connects with a device connection string and the settings in `o`.
    pub fn connect_with(&self, connection_string: &str, o: &ConnectOptions) -> Result<(), String> {
        let ttl_s = o.ttl_s;
        let cs = ConnectionString::parse_device(connection_string).map_err(|e| e.to_string())?;
        let identity = cs
            .identity()
            .ok_or("the connection string names no device")?;
        let endpoint = match o
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            Some(e) if e.starts_with("ws://") || e.starts_with("wss://") => e.to_string(),
            Some(e) => {
                return Err(format!(
                    "the endpoint {} must start with wss:// (or ws:// for a local hub)",
                    Quoted(e)
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
        let mut cfg = SessionConfig::new(cs.host_name.clone(), identity.clone());
        cfg.clean_session = o.clean_session;
        if let Some(k) = o.keep_alive_s {
            cfg.keep_alive_s = k;
        }
        if let Some(v) = &o.api_version {
            cfg.api_version = v.clone();
        }
        cfg.model_id = o.model_id.clone();
        cfg.will = o.will.clone();
        let mut session = DeviceSession::new(cfg);
        session
            .supply_token(now, token)
            .map_err(|e| e.to_string())?;
        let label = format!("{identity} @ {}", cs.host_name);
        let same_device = self.identity.get_untracked().as_deref() == Some(label.as_str());
        let expiry = session.token_expiry();
        self.view.update(|v| {
            if !same_device {
                v.reset();
            }
            v.error = None;
            v.refusal = None;
            v.token_supplied(expiry, now, false);
        });
        self.identity.set(Some(label));
        self.target.set(Some(identity.client_id()));
        self.model_id
            .set(o.model_id.clone().filter(|m| !m.trim().is_empty()));
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
        self.view.update(|v| v.state = State::Disconnected);
    }

    /// Sends (or queues) telemetry; returns a message for the user on refusal. The
    /// message goes into the view's history (size and properties) before its events.
    pub fn send_telemetry(&self, t: Telemetry) -> Result<(), String> {
        self.send(t, false)
    }

    /// Sends (or queues) a message of the generator's run, counted in the run's stats.
    pub fn send_generated(&self, t: Telemetry) -> Result<(), String> {
        self.send(t, true)
    }

    /// When the current generator run started (ms), if one is counted.
    pub fn run_start(&self) -> Option<u64> {
        self.view
            .with_untracked(|v| v.run.as_ref().map(|r| r.started_at))
    }

    /// Starts counting a generator run.
    pub fn run_started(&self) {
        self.view.update(|v| v.run_started(now_ms()));
    }

    /// Stops counting the generator run.
    pub fn run_stopped(&self) {
        self.view.update(|v| v.run_stopped(now_ms()));
    }

    fn send(&self, t: Telemetry, from_run: bool) -> Result<(), String> {
        let Some(rc) = self.rc() else {
            if from_run {
                self.view.update(DeviceView::run_message_refused);
            }
            return Err("not connected: connect first".into());
        };
        let size = t.body.len() + t.props.counted_size();
        let props = t.props.encode(twinscope_proto::iothub::SysPrefix::Literal);
        let qos1 = t.qos != Some(twinscope_proto::mqtt::QoS::AtMostOnce);
        let now = now_ms();
        let r = rc.borrow_mut().session.publish_telemetry(now, t);
        // The message goes into the view in the same update as the events its sending
        // makes: one signal write a message, not two.
        let mut queued = Some((&r, props));
        self.pump_with(
            &rc,
            Some(&mut |v: &mut DeviceView| {
                let Some((r, props)) = queued.take() else {
                    return;
                };
                match (r, from_run) {
                    (Ok(id), false) => v.telemetry_queued(*id, size, props, now),
                    (Ok(id), true) => v.run_message_queued(*id, size, props, now, qos1),
                    (Err(_), false) => v.telemetry_refused(),
                    (Err(_), true) => v.run_message_refused(),
                }
            }),
        );
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
            self.view.update(|v| v.patch_sent(request, patch.clone()));
        }
        self.pump(&rc);
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Answers a method call and removes it from the list.
    pub fn respond_method(&self, rid: &str, status: i32, payload: &[u8]) -> Result<(), String> {
        self.respond_method_by(rid, status, payload, None)
    }

    /// Answers a method call; `rule` names the rule that answered (shown in the history).
    pub fn respond_method_by(
        &self,
        rid: &str,
        status: i32,
        payload: &[u8],
        rule: Option<String>,
    ) -> Result<(), String> {
        let rc = self.rc().ok_or("not connected: connect first")?;
        let r = rc
            .borrow_mut()
            .session
            .respond_method(now_ms(), rid, status, payload);
        self.pump(&rc);
        r.map_err(|e| e.to_string())?;
        self.view
            .update(|v| v.answered(rid, status, payload, now_ms(), rule));
        Ok(())
    }

    /// Drains the session's outputs: bytes to the socket, events to signals and actions,
    /// then re-arms the timer.
    fn pump(&self, rc: &Rc<RefCell<Inner>>) {
        self.pump_with(rc, None);
    }

    /// Sends what the session wrote, carries out and shows its events, and re-arms the
    /// timer. `first` changes the view in the same update as the first round's events.
    fn pump_with(
        &self,
        rc: &Rc<RefCell<Inner>>,
        mut first: Option<&mut dyn FnMut(&mut DeviceView)>,
    ) {
        let mut events = Vec::new();
        loop {
            {
                let i = &mut *rc.borrow_mut();
                while let Some(b) = i.session.poll_transmit() {
                    if let Some(s) = &i.socket {
                        s.send(&b);
                    }
                }
                events.extend(std::iter::from_fn(|| i.session.poll_event()));
            }
            if events.is_empty() && first.is_none() {
                break;
            }
            for e in &events {
                self.act_on(rc, e);
            }
            // One view update per pump round, not one per event: under a telemetry burst
            // every update re-runs what the panels derive from the view.
            let now = now_ms();
            let first = first.take();
            self.view.update(|v| {
                if let Some(f) = first {
                    f(v);
                }
                for e in events.drain(..) {
                    v.take(e, now);
                }
            });
        }
        self.arm_timer(rc);
    }

    fn arm_timer(&self, rc: &Rc<RefCell<Inner>>) {
        let me = *self;
        arm_timer(rc, now_ms, move |rc| me.pump(rc));
    }

    /// Carries out what an event asks of the browser (the view takes it in afterwards).
    fn act_on(&self, rc: &Rc<RefCell<Inner>>, e: &Event) {
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
            Event::TokenNeeded => self.renew_token(rc),
            _ => {}
        }
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
                    Ok(()) => {
                        let expiry = rc.borrow().session.token_expiry();
                        self.view.update(|v| v.token_supplied(expiry, now, true));
                    }
                    Err(e) => self.say(e.to_string()),
                }
            }
            None => self.say(
                "the SAS token is about to expire and this connection string has no key to sign a new one: paste a fresh SharedAccessSignature and connect again".into(),
            ),
        }
    }

    fn open_socket(&self, rc: &Rc<RefCell<Inner>>) {
        let url = rc.borrow().endpoint.clone();
        let me = *self;
        let on_abnormal = move |code: u16, reason: String| {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            let why = format!("the WebSocket closed (code {code}{reason})");
            me.view.update(|v| v.connection_lost(why));
        };
        if let Err(e) = attach(rc, &url, now_ms, move |rc| me.pump(rc), on_abnormal) {
            self.say(e);
        }
    }
}

impl SocketOwner for Inner {
    fn socket(&mut self) -> &mut Option<Socket> {
        &mut self.socket
    }
    fn generation(&mut self) -> &mut u64 {
        &mut self.generation
    }
    fn opened(&mut self, now: u64) {
        self.session.handle_opened(now);
    }
    fn bytes(&mut self, now: u64, bytes: &[u8]) {
        self.session.handle_bytes(now, bytes);
    }
    fn closed(&mut self, now: u64) {
        self.session.handle_closed(now);
    }
    fn next_timeout(&self) -> Option<u64> {
        self.session.poll_timeout()
    }
    fn timeout(&mut self, now: u64) {
        self.session.handle_timeout(now);
    }
    fn timer(&mut self) -> &mut ArmedTimer {
        &mut self.timer
    }
}
