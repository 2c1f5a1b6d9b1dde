//! [`DeviceSession`]: the device side of an IoT Hub MQTT connection, with no IO and no clock.
//!
//! # Call order
//!
//! The caller owns the transport (a WebSocket in the browser, a TCP/TLS stream natively)
//! and the clock, and drives the session:
//!
//! 1. [`DeviceSession::supply_token`] with a SAS token, then [`DeviceSession::connect`].
//! 2. After every input, drain the outputs in this order: [`DeviceSession::poll_transmit`]
//!    until `None` (write each buffer to the transport), then [`DeviceSession::poll_event`]
//!    until `None` (act on [`Event::OpenTransport`] and [`Event::CloseTransport`]; bytes
//!    written before a close must go out first, e.g. the DISCONNECT before a token
//!    renewal), then arm a timer for [`DeviceSession::poll_timeout`].
//! 3. Inputs: [`DeviceSession::handle_opened`] once the transport is open,
//!    [`DeviceSession::handle_bytes`] for received bytes, [`DeviceSession::handle_closed`]
//!    when the transport ends (whoever closed it), [`DeviceSession::handle_timeout`] when
//!    the timer fires, and the commands (`publish_telemetry`, `get_twin`, `patch_reported`,
//!    `respond_method`, `disconnect`, `supply_token`).
//!
//! Time is milliseconds since 1970 (or any monotonic origin), passed in.
//!
//! The session is split where its invariants live: `timers.rs` (every deadline computed in
//! one place), `outbox.rs` (queue, in-flight window, packet ids, DUP resend) and `twin.rs`
//! (pending twin requests, the desired version, gap refetch); this file holds the
//! connection itself and routes what the hub sends.

use std::collections::{BTreeMap, HashMap, VecDeque};

mod outbox;
mod timers;
mod twin;

pub use timers::MAX_KEEP_ALIVE_S;

use outbox::Outbox;
use twin::TwinRequests;

use serde_json::Value;

use crate::iothub::topic::{filter, telemetry_topic};
use crate::iothub::twin::{
    section_size, validate_patch, HubError, TwinDocument, TwinError, MAX_SECTION_BYTES,
};
use crate::iothub::{
    Identity, PropertyBag, PropertyError, SasToken, SysPrefix, Topic, Username, API_VERSION,
    MAX_D2C_MESSAGE_BYTES, MAX_METHOD_PAYLOAD_BYTES,
};
use crate::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoder, LastWill, Packet, PacketId, Publish, QoS, QosPid,
    SubAckCode, Subscribe, SubscribeFilter,
};

/// Reconnect backoff: exponential with equal jitter from a seeded generator.
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// First delay.
    pub initial_ms: u64,
    /// Largest delay.
    pub max_ms: u64,
    /// Seed for the jitter, so tests are deterministic.
    pub seed: u64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_ms: 1_000,
            max_ms: 60_000,
            seed: 0x7769_6e73_636f_7065,
        }
    }
}

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The hub's HostName (named in the user name).
    pub host: String,
    /// The device or module.
    pub identity: Identity,
    /// The api-version in the user name.
    pub api_version: String,
    /// IoT Plug and Play model id, announced in the user name.
    pub model_id: Option<String>,
    /// `DeviceClientType` in the user name.
    pub client_type: Option<String>,
    /// Keep-alive in seconds (at most 1177: the hub's limit is 1.5× this, capped at 1767).
    pub keep_alive_s: u16,
    /// CleanSession (the SDKs use false).
    pub clean_session: bool,
    /// QoS for telemetry when the caller does not choose.
    pub default_qos: QoS,
    /// QoS 1 messages in flight at once (default 64). IoT Hub documents no limit; paho and
    /// mosquitto default to 20 and MQTT.js has none. Against a loopback hub the window is
    /// what bounds QoS 1 throughput: 16 gave 29,500 messages a second in the browser
    /// benchmark, 64 gives 79,000, while the copies held for a resend stay bounded.
    pub max_inflight: usize,
    /// Messages held while disconnected or while the window is full.
    pub max_queued: usize,
    /// How long a twin request may wait for its answer.
    pub request_timeout_ms: u64,
    /// How long to wait for CONNACK.
    pub connack_timeout_ms: u64,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
    /// Fraction of a token's life after which a new one is asked for.
    pub renew_at: f64,
    /// A will: telemetry the hub sends for the device if the connection drops without a
    /// DISCONNECT.
    pub will: Option<Will>,
}

/// A will message: body and properties, sent by the hub as the device's telemetry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// The body.
    pub body: Vec<u8>,
    /// Its properties (the topic's property bag).
    pub props: PropertyBag,
}

impl SessionConfig {
    /// Defaults as the SDKs use them: keep-alive 60 s, CleanSession 0, QoS 1.
    pub fn new(host: impl Into<String>, identity: Identity) -> SessionConfig {
        SessionConfig {
            host: host.into(),
            identity,
            api_version: API_VERSION.to_string(),
            model_id: None,
            client_type: Some(concat!("twinscope/", env!("CARGO_PKG_VERSION")).to_string()),
            keep_alive_s: 60,
            clean_session: false,
            default_qos: QoS::AtLeastOnce,
            max_inflight: 64,
            max_queued: 200,
            request_timeout_ms: 30_000,
            connack_timeout_ms: 30_000,
            reconnect: ReconnectPolicy::default(),
            renew_at: 0.8,
            will: None,
        }
    }
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not connected and not trying.
    Disconnected,
    /// Transport opening or CONNECT sent.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// Waiting to try again.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// When the next attempt starts.
        retry_at: u64,
    },
}

impl State {
    /// The word the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// A local id for a telemetry message.
pub type MessageId = u64;
/// A local id for a twin request.
pub type RequestId = u64;

/// A telemetry message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// The body.
    pub body: Vec<u8>,
    /// System and application properties.
    pub props: PropertyBag,
    /// QoS; `None` uses the configured default.
    pub qos: Option<QoS>,
}

/// A cloud-to-device message (or module input message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C2dMessage {
    /// Properties from the topic.
    pub props: PropertyBag,
    /// The body.
    pub body: Vec<u8>,
    /// The module input name, for module input messages.
    pub input: Option<String>,
}

/// A direct-method call waiting for an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodCall {
    /// Method name.
    pub name: String,
    /// Request id to answer with.
    pub rid: String,
    /// The request payload (JSON text or empty).
    pub payload: Vec<u8>,
}

/// Why a twin request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The hub's status, or `None` for a timeout or a lost connection.
    pub status: Option<u16>,
    /// What happened.
    pub message: String,
}

/// What the session tells its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Open a transport to the hub, then call `handle_opened`.
    OpenTransport,
    /// Close the transport (then call `handle_closed`).
    CloseTransport,
    /// The state changed.
    State(State),
    /// The hub accepted the connection.
    Connected {
        /// The hub kept the session (subscriptions) from before.
        session_present: bool,
    },
    /// The hub refused the connection; the session stopped trying.
    ConnectRefused {
        /// The CONNACK code.
        code: ConnectReturnCode,
        /// What it means for IoT Hub and what to check.
        explanation: String,
    },
    /// Telemetry written to the transport (final for QoS 0).
    TelemetrySent(MessageId),
    /// Telemetry acknowledged by the hub (QoS 1).
    TelemetryAcked(MessageId),
    /// A cloud-to-device message arrived (and was acknowledged).
    C2d(C2dMessage),
    /// The answer to `get_twin` (or to a resync the session started itself).
    Twin {
        /// The request.
        request: RequestId,
        /// The document, or why not.
        result: Result<TwinDocument, RequestError>,
    },
    /// The answer to `patch_reported`.
    ReportedPatched {
        /// The request.
        request: RequestId,
        /// The new reported version, or why not.
        result: Result<u64, RequestError>,
    },
    /// A desired-properties update.
    DesiredUpdate {
        /// Its version.
        version: u64,
        /// The patch (with `$version`).
        patch: Value,
    },
    /// The session is fetching the twin again; the result arrives as [`Event::Twin`].
    TwinResync {
        /// The request.
        request: RequestId,
        /// Why: "connected" or "version gap".
        reason: &'static str,
    },
    /// A direct-method call.
    MethodCall(MethodCall),
    /// The token is about to expire (or has): supply a new one with `supply_token`.
    TokenNeeded,
    /// A packet crossed the transport (for the traffic view).
    Traffic {
        /// Sent by the device.
        outbound: bool,
        /// When.
        at: u64,
        /// The packet.
        packet: Packet,
        /// Its size on the wire, in bytes.
        size: usize,
    },
    /// Something the hub sent could not be understood, or the connection failed.
    Error(String),
}

/// Why a command was refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// IoT Hub does not accept QoS 2.
    #[error("IoT Hub does not support QoS 2; use QoS 0 or 1")]
    QoS2,
    /// Over 256 KB with properties.
    #[error("message is {size} bytes with its properties; IoT Hub accepts at most 262144")]
    TooLarge {
        /// Body plus counted property bytes.
        size: usize,
    },
    /// A property that cannot be sent.
    #[error(transparent)]
    Property(#[from] PropertyError),
    /// The offline queue is full.
    #[error("{0} messages are already waiting to be sent; wait for the connection or for acknowledgements")]
    QueueFull(usize),
    /// The operation needs a connection.
    #[error("not connected: connect first")]
    NotConnected,
    /// A reported patch that breaks the twin rules.
    #[error(transparent)]
    Twin(#[from] TwinError),
    /// A method answer that is not JSON.
    #[error("a method response must be JSON (or empty): {0}")]
    NotJson(String),
    /// A method answer over 128 KB.
    #[error("a method response is at most 128 KB")]
    MethodPayloadTooLarge,
    /// No token was supplied.
    #[error("no SAS token: supply one first")]
    NoToken,
    /// A token that cannot be parsed.
    #[error("the SAS token is malformed: {0}")]
    BadToken(String),
}

/// The device session.
pub struct DeviceSession {
    cfg: SessionConfig,
    state: State,
    want_connected: bool,
    transport_open: bool,
    token: Option<(String, u64, u64)>, // (token, issued_ms, expiry_ms)
    token_asked: bool,
    renew_pending: bool,
    decoder: Decoder,
    rx: Vec<u8>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    outbox: Outbox,
    twin: TwinRequests,
    suback: Option<PacketId>,
    last_sent: u64,
    ping_sent: Option<u64>,
    connack_deadline: Option<u64>,
    attempt: u32,
    rng: u64,
}

impl DeviceSession {
    /// A session that is disconnected.
    pub fn new(cfg: SessionConfig) -> DeviceSession {
        // splitmix64 of the seed: distinct seeds give distinct, non-zero generator states.
        let mut z = cfg.reconnect.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let seed = (z ^ (z >> 31)).max(1);
        DeviceSession {
            cfg,
            state: State::Disconnected,
            want_connected: false,
            transport_open: false,
            token: None,
            token_asked: false,
            renew_pending: false,
            decoder: Decoder::default(),
            rx: Vec::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            outbox: Outbox::new(),
            twin: TwinRequests::new(),
            suback: None,
            last_sent: 0,
            ping_sent: None,
            connack_deadline: None,
            attempt: 0,
            rng: seed,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the current token expires (ms), if there is one.
    pub fn token_expiry(&self) -> Option<u64> {
        self.token.as_ref().map(|t| t.2)
    }

    /// QoS 1 messages sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.outbox.inflight_len()
    }

    /// Messages waiting to be sent.
    pub fn queued(&self) -> usize {
        self.outbox.queued_len()
    }

    /// The desired version the session knows.
    pub fn desired_version(&self) -> Option<u64> {
        self.twin.desired_version()
    }

    /// Next bytes to write to the transport.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn set_state(&mut self, s: State) {
        if self.state != s {
            self.state = s;
            self.events.push_back(Event::State(s));
        }
    }

    fn send(&mut self, now: u64, p: Packet) {
        match p.to_bytes() {
            Ok(b) => {
                let size = b.len();
                self.transmit.push_back(b);
                self.last_sent = now;
                self.events.push_back(Event::Traffic {
                    outbound: true,
                    at: now,
                    packet: p,
                    size,
                });
            }
            Err(e) => self
                .events
                .push_back(Event::Error(format!("could not encode {}: {e}", p.name()))),
        }
    }

    fn jitter(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn backoff(&mut self, attempt: u32) -> u64 {
        let p = &self.cfg.reconnect;
        let base = p
            .initial_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(p.max_ms)
            .max(1);
        let half = base / 2;
        half + self.jitter() % (half + 1)
    }

    // ------------------------------------------------------------------ commands

    /// Supplies a SAS token (the password). While connected, the session reconnects with
    /// it at once, keeping queued and in-flight telemetry.
    pub fn supply_token(&mut self, now: u64, token: String) -> Result<(), SendError> {
        let parsed = SasToken::parse(&token).map_err(|e| SendError::BadToken(e.to_string()))?;
        let expiry = parsed.expiry.saturating_mul(1000);
        let had = self.token.is_some();
        self.token = Some((token, now, expiry));
        self.token_asked = false;
        if had && self.state == State::Connected {
            // MQTT 3.1.1 cannot re-authenticate in place: reconnect with the new token.
            self.send(now, Packet::Disconnect);
            self.renew_pending = true;
            self.events.push_back(Event::CloseTransport);
        }
        Ok(())
    }

    /// Starts connecting.
    pub fn connect(&mut self, now: u64) -> Result<(), SendError> {
        if self.token.is_none() {
            return Err(SendError::NoToken);
        }
        self.want_connected = true;
        if matches!(self.state, State::Disconnected | State::Reconnecting { .. }) {
            self.attempt = 0;
            self.open(now);
        }
        Ok(())
    }

    fn open(&mut self, now: u64) {
        self.set_state(State::Connecting);
        self.connack_deadline = Some(now + self.cfg.connack_timeout_ms);
        self.events.push_back(Event::OpenTransport);
    }

    /// Disconnects on purpose: DISCONNECT, then close. Queued telemetry stays queued.
    pub fn disconnect(&mut self, now: u64) {
        self.want_connected = false;
        if self.state == State::Connected {
            self.send(now, Packet::Disconnect);
        }
        if self.transport_open || self.state == State::Connecting {
            self.events.push_back(Event::CloseTransport);
        }
        self.fail_twin_requests("disconnected");
        self.connack_deadline = None;
        self.set_state(State::Disconnected);
    }

    /// Answers a method call with a status and a JSON payload (`payload` may be empty).
    pub fn respond_method(
        &mut self,
        now: u64,
        rid: &str,
        status: i32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if !payload.is_empty() {
            serde_json::from_slice::<Value>(payload)
                .map_err(|e| SendError::NotJson(e.to_string()))?;
        }
        if payload.len() > MAX_METHOD_PAYLOAD_BYTES {
            return Err(SendError::MethodPayloadTooLarge);
        }
        if self.state != State::Connected {
            return Err(SendError::NotConnected);
        }
        let topic = Topic::MethodResponse {
            status,
            rid: rid.to_string(),
        }
        .to_topic(SysPrefix::Literal);
        let p = Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: false,
            topic,
            payload: payload.to_vec(),
        };
        self.send(now, Packet::Publish(p));
        Ok(())
    }

    // ------------------------------------------------------------------ inputs

    /// The transport is open: send CONNECT.
    pub fn handle_opened(&mut self, now: u64) {
        self.transport_open = true;
        self.rx.clear();
        let Some((token, _, _)) = self.token.clone() else {
            self.events
                .push_back(Event::Error("no token to connect with".into()));
            self.events.push_back(Event::CloseTransport);
            return;
        };
        let id = &self.cfg.identity;
        let c = Connect {
            client_id: id.client_id(),
            keep_alive: self.cfg.keep_alive_s.min(MAX_KEEP_ALIVE_S),
            clean_session: self.cfg.clean_session,
            last_will: self.cfg.will.as_ref().map(|w| LastWill {
                topic: Topic::Telemetry {
                    identity: id.clone(),
                    props: w.props.clone(),
                }
                .to_topic(SysPrefix::Literal),
                message: w.body.clone(),
                qos: QoS::AtLeastOnce,
                retain: false,
            }),
            username: Some(Username::build(
                &self.cfg.host,
                id,
                &self.cfg.api_version,
                self.cfg.model_id.as_deref(),
                self.cfg.client_type.as_deref(),
            )),
            password: Some(token.into_bytes()),
        };
        self.send(now, Packet::Connect(c));
    }

    /// Bytes from the transport.
    pub fn handle_bytes(&mut self, now: u64, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&self.rx) {
                Ok(None) => return,
                Ok(Some((p, used))) => {
                    self.rx.drain(..used);
                    self.events.push_back(Event::Traffic {
                        outbound: false,
                        at: now,
                        packet: p.clone(),
                        size: used,
                    });
                    self.packet(now, p);
                }
                Err(e) => {
                    self.rx.clear();
                    self.events.push_back(Event::Error(format!(
                        "the hub sent malformed MQTT ({e}); reconnecting"
                    )));
                    self.events.push_back(Event::CloseTransport);
                    return;
                }
            }
        }
    }

    /// The transport ended. Reconnects with backoff unless the user disconnected.
    pub fn handle_closed(&mut self, now: u64) {
        self.transport_open = false;
        self.ping_sent = None;
        self.suback = None;
        self.connack_deadline = None;
        self.transmit.clear();
        self.fail_twin_requests("the connection was lost");
        if !self.want_connected {
            self.set_state(State::Disconnected);
            return;
        }
        if std::mem::take(&mut self.renew_pending) {
            self.attempt = 0;
            self.open(now);
            return;
        }
        let retry_at = now + self.backoff(self.attempt);
        self.attempt += 1;
        self.set_state(State::Reconnecting {
            attempt: self.attempt,
            retry_at,
        });
    }

    fn packet(&mut self, now: u64, p: Packet) {
        match p {
            Packet::ConnAck(a) => self.connack(now, a),
            Packet::SubAck(s) => {
                if self.suback == Some(s.pkid) {
                    self.suback = None;
                    if s.return_codes.contains(&SubAckCode::Failure) {
                        self.events
                            .push_back(Event::Error("the hub refused a subscription".into()));
                    }
                }
            }
            Packet::PubAck(pid) => {
                if let Some(id) = self.outbox.ack(pid) {
                    self.events.push_back(Event::TelemetryAcked(id));
                    self.flush(now);
                }
            }
            Packet::PingResp => self.ping_sent = None,
            Packet::Publish(p) => self.publish(now, p),
            other => {
                self.events.push_back(Event::Error(format!(
                    "unexpected {} from the hub",
                    other.name()
                )));
            }
        }
    }

    fn connack(&mut self, now: u64, a: ConnAck) {
        self.connack_deadline = None;
        if a.code != ConnectReturnCode::Accepted {
            self.want_connected = false;
            self.events.push_back(Event::ConnectRefused {
                code: a.code,
                explanation: explain_refusal(a.code),
            });
            self.events.push_back(Event::CloseTransport);
            self.set_state(State::Disconnected);
            return;
        }
        self.attempt = 0;
        self.set_state(State::Connected);
        self.events.push_back(Event::Connected {
            session_present: a.session_present,
        });
        // Subscribe on every connection, as the official SDKs do, even when the hub says
        // it kept the session: SUBSCRIBE is idempotent, and a session the hub kept from a
        // connection that dropped before its SUBSCRIBE would otherwise leave the device
        // deaf to methods and desired updates with nothing to tell the user.
        {
            let id = &self.cfg.identity;
            let mut filters = vec![
                SubscribeFilter {
                    filter: filter::TWIN_RESPONSES.into(),
                    qos: QoS::AtMostOnce,
                },
                SubscribeFilter {
                    filter: filter::TWIN_DESIRED.into(),
                    qos: QoS::AtMostOnce,
                },
                SubscribeFilter {
                    filter: filter::METHODS.into(),
                    qos: QoS::AtMostOnce,
                },
            ];
            let c2d = filter::module_inputs(id).unwrap_or_else(|| filter::c2d(&id.device));
            filters.insert(
                0,
                SubscribeFilter {
                    filter: c2d,
                    qos: QoS::AtLeastOnce,
                },
            );
            let pkid = self.outbox.take_pid(None);
            self.suback = Some(pkid);
            self.send(now, Packet::Subscribe(Subscribe { pkid, filters }));
        }
        // Unacknowledged QoS 1 telemetry goes again, marked DUP, in its original order.
        for p in self.outbox.resend() {
            self.send(now, Packet::Publish(p));
        }
        self.flush(now);
        self.resync_twin(now, "connected");
    }

    fn publish(&mut self, now: u64, p: Publish) {
        let topic = Topic::parse(&p.topic);
        // C2D and module input messages are acknowledged at once, in the order received.
        if let QosPid::AtLeastOnce(pid) = p.qospid {
            self.send(now, Packet::PubAck(pid));
        }
        match topic {
            Ok(Topic::C2d { props, .. }) => self.events.push_back(Event::C2d(C2dMessage {
                props,
                body: p.payload,
                input: None,
            })),
            Ok(Topic::ModuleInput { props, input, .. }) => {
                self.events.push_back(Event::C2d(C2dMessage {
                    props,
                    body: p.payload,
                    input: Some(input),
                }))
            }
            Ok(Topic::TwinResponse {
                status,
                rid,
                version,
            }) => self.twin_response(status, &rid, version, &p.payload),
            Ok(Topic::TwinDesired { version }) => self.desired(now, version, &p.payload),
            Ok(Topic::MethodRequest { name, rid }) => {
                self.events.push_back(Event::MethodCall(MethodCall {
                    name,
                    rid,
                    payload: p.payload,
                }))
            }
            Ok(_) => self.events.push_back(Event::Error(format!(
                "unexpected topic from the hub: {}",
                crate::text::Quoted(&p.topic)
            ))),
            Err(e) => self
                .events
                .push_back(Event::Error(format!("unreadable topic from the hub: {e}"))),
        }
    }
}

/// What a CONNACK refusal means for IoT Hub, which answers 5 to every CONNECT failure.
pub fn explain_refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUsernameOrPassword => format!(
            "the hub refused the connection ({}, code {}). IoT Hub says this for every authentication \
             problem: check that the key is the device's current primary or secondary key, that the \
             device id and HostName match the hub, that the device is enabled, and that this computer's \
             clock is right (the token must not be expired)",
            code.description(),
            code as u8
        ),
        other => format!("the hub refused the connection: {} (code {})", other.description(), other as u8),
    }
}
