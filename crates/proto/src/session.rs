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

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use crate::iothub::topic::filter;
use crate::iothub::twin::{
    section_size, validate_patch, HubError, TwinDocument, TwinError, MAX_SECTION_BYTES,
};
use crate::iothub::{
    Identity, PropertyBag, PropertyError, SasToken, SysPrefix, Topic, Username, API_VERSION,
    MAX_D2C_MESSAGE_BYTES, MAX_METHOD_PAYLOAD_BYTES,
};
use crate::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, QosPid,
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
    /// QoS 1 messages in flight at once.
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
            max_inflight: 16,
            max_queued: 200,
            request_timeout_ms: 30_000,
            connack_timeout_ms: 30_000,
            reconnect: ReconnectPolicy::default(),
            renew_at: 0.8,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TwinOp {
    Get,
    Patch,
}

struct Pending {
    request: RequestId,
    op: TwinOp,
    deadline: u64,
}

/// The longest keep-alive worth asking for: the hub waits 1.5× the keep-alive, capped at
/// 1767 s, so a longer one would have the hub drop an idle device before it pings.
pub const MAX_KEEP_ALIVE_S: u16 = 1177;

/// How long to wait for PINGRESP (at most; shorter when the keep-alive is shorter).
const PING_TIMEOUT_MS: u64 = 30_000;

/// The session's timers; [`DeviceSession::deadline`] computes each one's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Ask for a new token (at the renewal fraction of the current one's life).
    TokenRenewal,
    /// The oldest twin request's answer is overdue.
    TwinRequest,
    /// Open the transport again (backoff).
    Reconnect,
    /// CONNACK is overdue.
    Connack,
    /// PINGRESP is overdue: the connection is dead.
    PingTimeout,
    /// Nothing was sent for a keep-alive period: send PINGREQ.
    KeepAlive,
}

impl Timer {
    /// In the order they fire when due together.
    const ALL: [Timer; 6] = [
        Timer::TokenRenewal,
        Timer::TwinRequest,
        Timer::Reconnect,
        Timer::Connack,
        Timer::PingTimeout,
        Timer::KeepAlive,
    ];
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
    next_pid: u16,
    next_msg: MessageId,
    next_request: RequestId,
    next_rid: u64,
    inflight: BTreeMap<PacketId, (MessageId, Publish)>,
    queue: VecDeque<(MessageId, Telemetry)>,
    twin: HashMap<String, Pending>,
    desired_version: Option<u64>,
    suback: Option<PacketId>,
    last_sent: u64,
    ping_sent: Option<u64>,
    connack_deadline: Option<u64>,
    attempt: u32,
    rng: u64,
}

const RID_PREFIX: &str = "ts";

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
            next_pid: 1,
            next_msg: 1,
            next_request: 1,
            next_rid: 1,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
            twin: HashMap::new(),
            desired_version: None,
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
        self.inflight.len()
    }

    /// Messages waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The desired version the session knows.
    pub fn desired_version(&self) -> Option<u64> {
        self.desired_version
    }

    /// Next bytes to write to the transport.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout` next: the earliest deadline of the timer table.
    pub fn poll_timeout(&self) -> Option<u64> {
        Timer::ALL.iter().filter_map(|t| self.deadline(*t)).min()
    }

    /// The keep-alive the session asks for in CONNECT and keeps to, in ms: the configured
    /// value capped at 1177 s (the hub waits 1.5× that, and at most 1767 s).
    fn keep_alive_ms(&self) -> u64 {
        u64::from(self.cfg.keep_alive_s.min(MAX_KEEP_ALIVE_S)) * 1000
    }

    /// The one place each timer's deadline is computed (ms), or `None` when it is not
    /// running. `poll_timeout` takes the earliest; `handle_timeout` fires the ones due, so
    /// the two cannot disagree.
    fn deadline(&self, timer: Timer) -> Option<u64> {
        match (timer, self.state) {
            (Timer::Reconnect, State::Reconnecting { retry_at, .. }) => Some(retry_at),
            (Timer::Connack, State::Connecting) => self.connack_deadline,
            (Timer::KeepAlive, State::Connected) => {
                let ka = self.keep_alive_ms();
                (ka > 0 && self.ping_sent.is_none()).then_some(self.last_sent + ka)
            }
            (Timer::PingTimeout, State::Connected) => {
                let ka = self.keep_alive_ms();
                (ka > 0)
                    .then_some(self.ping_sent)
                    .flatten()
                    .map(|sent| sent + ka.min(PING_TIMEOUT_MS))
            }
            (Timer::TwinRequest, _) => self.twin.values().map(|p| p.deadline).min(),
            (Timer::TokenRenewal, _) => {
                let (_, issued, expiry) = self.token.as_ref()?;
                (self.want_connected && !self.token_asked)
                    .then(|| self.renew_time(*issued, *expiry))
            }
            _ => None,
        }
    }

    fn renew_time(&self, issued: u64, expiry: u64) -> u64 {
        issued + ((expiry.saturating_sub(issued)) as f64 * self.cfg.renew_at) as u64
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
                self.transmit.push_back(b);
                self.last_sent = now;
                self.events.push_back(Event::Traffic {
                    outbound: true,
                    at: now,
                    packet: p,
                });
            }
            Err(e) => self
                .events
                .push_back(Event::Error(format!("could not encode {}: {e}", p.name()))),
        }
    }

    fn take_pid(&mut self) -> PacketId {
        loop {
            let pid = PacketId::new(self.next_pid).unwrap_or(PacketId::new(1).expect("1 is valid"));
            self.next_pid = pid.next().get();
            if !self.inflight.contains_key(&pid) && self.suback != Some(pid) {
                return pid;
            }
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

    /// Sends telemetry now, or queues it until connected (bounded).
    pub fn publish_telemetry(&mut self, now: u64, t: Telemetry) -> Result<MessageId, SendError> {
        let qos = t.qos.unwrap_or(self.cfg.default_qos);
        if qos == QoS::ExactlyOnce {
            return Err(SendError::QoS2);
        }
        t.props.validate_d2c()?;
        let size = t.body.len() + t.props.counted_size();
        if size > MAX_D2C_MESSAGE_BYTES {
            return Err(SendError::TooLarge { size });
        }
        if self.queue.len() >= self.cfg.max_queued {
            return Err(SendError::QueueFull(self.queue.len()));
        }
        let id = self.next_msg;
        self.next_msg += 1;
        self.queue.push_back((
            id,
            Telemetry {
                qos: Some(qos),
                ..t
            },
        ));
        self.flush(now);
        Ok(id)
    }

    /// Moves queued telemetry onto the wire while connected and the window allows.
    fn flush(&mut self, now: u64) {
        while self.state == State::Connected {
            let Some((_, t)) = self.queue.front() else {
                break;
            };
            let qos1 = t.qos == Some(QoS::AtLeastOnce);
            if qos1 && self.inflight.len() >= self.cfg.max_inflight {
                break;
            }
            let (id, t) = self.queue.pop_front().expect("front exists");
            let topic = Topic::Telemetry {
                identity: self.cfg.identity.clone(),
                props: t.props,
            }
            .to_topic(SysPrefix::Literal);
            let qospid = if qos1 {
                QosPid::AtLeastOnce(self.take_pid())
            } else {
                QosPid::AtMostOnce
            };
            let p = Publish {
                dup: false,
                qospid,
                retain: false,
                topic,
                payload: t.body,
            };
            if let QosPid::AtLeastOnce(pid) = qospid {
                self.inflight.insert(pid, (id, p.clone()));
            }
            self.send(now, Packet::Publish(p));
            self.events.push_back(Event::TelemetrySent(id));
        }
    }

    fn twin_request(
        &mut self,
        now: u64,
        op: TwinOp,
        body: Vec<u8>,
    ) -> Result<RequestId, SendError> {
        if self.state != State::Connected {
            return Err(SendError::NotConnected);
        }
        let request = self.next_request;
        self.next_request += 1;
        let rid = format!("{RID_PREFIX}{}", self.next_rid);
        self.next_rid += 1;
        let topic = match op {
            TwinOp::Get => Topic::TwinGet { rid: rid.clone() },
            TwinOp::Patch => Topic::TwinPatchReported { rid: rid.clone() },
        };
        self.twin.insert(
            rid,
            Pending {
                request,
                op,
                deadline: now + self.cfg.request_timeout_ms,
            },
        );
        let p = Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: false,
            topic: topic.to_topic(SysPrefix::Literal),
            payload: body,
        };
        self.send(now, Packet::Publish(p));
        Ok(request)
    }

    /// Asks for the full twin; the answer arrives as [`Event::Twin`].
    pub fn get_twin(&mut self, now: u64) -> Result<RequestId, SendError> {
        self.twin_request(now, TwinOp::Get, Vec::new())
    }

    /// Sends a reported-properties patch (a JSON object; `null` deletes); the answer
    /// arrives as [`Event::ReportedPatched`].
    pub fn patch_reported(&mut self, now: u64, patch: &Value) -> Result<RequestId, SendError> {
        validate_patch(patch)?;
        if let Some(o) = patch.as_object() {
            let size = section_size(o);
            if size > MAX_SECTION_BYTES {
                return Err(TwinError::TooLarge {
                    section: "reported",
                    size,
                }
                .into());
            }
        }
        self.twin_request(now, TwinOp::Patch, patch.to_string().into_bytes())
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
            last_will: None,
            username: Some(Username::build(
                &self.cfg.host,
                id,
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

    /// Timers: reconnect, CONNACK timeout, keep-alive, request timeouts, token renewal.
    /// Fires every timer of the table whose deadline is due.
    pub fn handle_timeout(&mut self, now: u64) {
        for timer in Timer::ALL {
            if self.deadline(timer).is_some_and(|d| now >= d) {
                self.fire(timer, now);
            }
        }
    }

    fn fire(&mut self, timer: Timer, now: u64) {
        match timer {
            Timer::TokenRenewal => {
                self.token_asked = true;
                self.events.push_back(Event::TokenNeeded);
            }
            Timer::TwinRequest => {
                let expired: Vec<String> = self
                    .twin
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(rid, _)| rid.clone())
                    .collect();
                for rid in expired {
                    let p = self.twin.remove(&rid).expect("listed");
                    self.twin_failed(
                        p,
                        RequestError {
                            status: None,
                            message: "no answer from the hub in time".into(),
                        },
                    );
                }
            }
            Timer::Reconnect => self.open(now),
            Timer::Connack => {
                self.connack_deadline = None;
                self.events
                    .push_back(Event::Error("no CONNACK from the hub in time".into()));
                self.events.push_back(Event::CloseTransport);
            }
            Timer::PingTimeout => {
                self.events.push_back(Event::Error(
                    "no PINGRESP from the hub: the connection is dead".into(),
                ));
                self.events.push_back(Event::CloseTransport);
            }
            Timer::KeepAlive => {
                self.send(now, Packet::PingReq);
                self.ping_sent = Some(now);
            }
        }
    }

    fn fail_twin_requests(&mut self, why: &str) {
        let all: Vec<Pending> = self.twin.drain().map(|(_, p)| p).collect();
        for p in all {
            self.twin_failed(
                p,
                RequestError {
                    status: None,
                    message: why.to_string(),
                },
            );
        }
    }

    fn twin_failed(&mut self, p: Pending, e: RequestError) {
        self.events.push_back(match p.op {
            TwinOp::Get => Event::Twin {
                request: p.request,
                result: Err(e),
            },
            TwinOp::Patch => Event::ReportedPatched {
                request: p.request,
                result: Err(e),
            },
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
                if let Some((id, _)) = self.inflight.remove(&pid) {
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
            let pkid = self.take_pid();
            self.suback = Some(pkid);
            self.send(now, Packet::Subscribe(Subscribe { pkid, filters }));
        }
        // Unacknowledged QoS 1 telemetry goes again, marked DUP, in its original order.
        let resend: Vec<Publish> = self
            .inflight
            .values()
            .map(|(_, p)| Publish {
                dup: true,
                ..p.clone()
            })
            .collect();
        for p in resend {
            self.send(now, Packet::Publish(p));
        }
        self.flush(now);
        if let Ok(request) = self.twin_request(now, TwinOp::Get, Vec::new()) {
            self.events.push_back(Event::TwinResync {
                request,
                reason: "connected",
            });
        }
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
            Ok(other) => self.events.push_back(Event::Error(format!(
                "unexpected topic from the hub: {other:?}"
            ))),
            Err(e) => self
                .events
                .push_back(Event::Error(format!("unreadable topic from the hub: {e}"))),
        }
    }

    fn twin_response(&mut self, status: u16, rid: &str, version: Option<u64>, body: &[u8]) {
        let Some(p) = self.twin.remove(rid) else {
            return;
        };
        let error = |body: &[u8]| {
            let message = serde_json::from_slice::<HubError>(body)
                .map(|e| format!("{} ({})", e.message, e.error_code))
                .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
            RequestError {
                status: Some(status),
                message,
            }
        };
        match (p.op, status) {
            (TwinOp::Get, 200) => {
                let result = TwinDocument::parse(body).map_err(|e| RequestError {
                    status: Some(200),
                    message: e.to_string(),
                });
                if let Ok(doc) = &result {
                    self.desired_version = Some(doc.desired.version);
                }
                self.events.push_back(Event::Twin {
                    request: p.request,
                    result,
                });
            }
            (TwinOp::Patch, 200..=299) => {
                let result = version.ok_or(RequestError {
                    status: Some(status),
                    message: "no $version in the answer".into(),
                });
                self.events.push_back(Event::ReportedPatched {
                    request: p.request,
                    result,
                });
            }
            _ => self.twin_failed(p, error(body)),
        }
    }

    fn desired(&mut self, now: u64, version: Option<u64>, body: &[u8]) {
        let patch: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                self.events
                    .push_back(Event::Error(format!("desired update is not JSON: {e}")));
                return;
            }
        };
        let Some(version) = version.or_else(|| patch.get("$version").and_then(Value::as_u64))
        else {
            self.events
                .push_back(Event::Error("desired update without $version".into()));
            return;
        };
        let known = self.desired_version;
        if known.is_some_and(|k| version <= k) {
            return; // Not newer than what we have: already applied.
        }
        self.desired_version = Some(version);
        self.events
            .push_back(Event::DesiredUpdate { version, patch });
        if known.is_some_and(|k| version > k + 1) {
            if let Ok(request) = self.twin_request(now, TwinOp::Get, Vec::new()) {
                self.events.push_back(Event::TwinResync {
                    request,
                    reason: "version gap",
                });
            }
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
