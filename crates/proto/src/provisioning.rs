//! [`ProvisioningSession`]: register a device with the Device Provisioning Service over MQTT
//! (spec §10), with no IO and no clock, in the same call order as `DeviceSession`.
//!
//! # Call order
//!
//! 1. [`ProvisioningSession::new`] with the ID scope, registration id, a SAS token signed
//!    for `{idScope}/registrations/{registrationId}` with `skn=registration` (see
//!    [`registration_token`]) and an optional payload; then [`ProvisioningSession::start`].
//! 2. After every input, drain [`ProvisioningSession::poll_transmit`], then
//!    [`ProvisioningSession::poll_event`] (open or close the transport when asked), then
//!    arm a timer for [`ProvisioningSession::poll_timeout`].
//! 3. Inputs: `handle_opened`, `handle_bytes`, `handle_closed`, `handle_timeout`.
//!
//! The flow: CONNECT → SUBSCRIBE `$dps/registrations/res/#` → PUBLISH register → `202`
//! with an operation id and `retry-after` → PUBLISH operation-status polls, each after the
//! `retry-after` the service asked for → `200` with `status: assigned` (or a terminal
//! `failed`/`disabled`) → DISCONNECT. Status 429 and above are retried after `retry-after`;
//! other errors end the registration with the service's code and message in words.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::iothub::sas::build_token;
use crate::iothub::SymmetricKey;
use crate::mqtt::{
    Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, QosPid, Subscribe,
    SubscribeFilter,
};
use crate::text::json_text as text;

/// The DPS api-version of the MQTT user name (spec §10).
pub const DPS_API_VERSION: &str = "2019-03-31";
/// The global device endpoint.
pub const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";
/// How long to wait between polls when the service names no `retry-after` (the Python
/// SDK's default).
pub const DEFAULT_RETRY_AFTER_S: u64 = 2;

/// The resource a registration token is signed for: `{idScope}/registrations/{regId}`.
pub fn registration_resource(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// A registration SAS token, valid until `expiry` (seconds since 1970), signed with the
/// device's key (an individual enrollment key, or one derived from a group key with
/// `sas::derive_device_key`).
pub fn registration_token(
    id_scope: &str,
    registration_id: &str,
    key: &SymmetricKey,
    expiry: u64,
) -> String {
    build_token(
        &registration_resource(id_scope, registration_id),
        key,
        expiry,
        Some("registration"),
    )
}

/// The MQTT user name DPS wants.
pub fn username(id_scope: &str, registration_id: &str) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={DPS_API_VERSION}&ClientVersion=twinscope%2F{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Checks a registration id: lowercase letters, digits and `-`, at most 128 (spec §10,
/// D-DPS-SYM; `.`, `_` and `:` are accepted by the service too).
pub fn check_registration_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("the registration id must be 1 to 128 characters".into());
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-._:".contains(*c)))
    {
        Some(c) => Err(format!(
            "the registration id may hold lowercase letters, digits and - . _ : only (found {})",
            crate::text::QuotedChar(c)
        )),
        None => Ok(()),
    }
}

/// The subscription that carries DPS answers.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";

/// A DPS topic (spec §10), both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpsTopic {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
    Register {
        /// Request id.
        rid: String,
    },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}`.
    Poll {
        /// Request id.
        rid: String,
        /// The operation to ask about (decoded).
        operation_id: String,
    },
    /// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`.
    Response {
        /// HTTP-like status.
        status: u16,
        /// Request id.
        rid: String,
        /// Seconds to wait before the next request, if the service says.
        retry_after: Option<u64>,
    },
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

impl DpsTopic {
    /// Reads a topic; `None` when it is not one of the three.
    pub fn parse(topic: &str) -> Option<DpsTopic> {
        let rid = |q: &str| query_param(q, "$rid").map(str::to_string);
        if let Some(q) = topic.strip_prefix("$dps/registrations/PUT/iotdps-register/?") {
            return Some(DpsTopic::Register { rid: rid(q)? });
        }
        if let Some(q) = topic.strip_prefix("$dps/registrations/GET/iotdps-get-operationstatus/?") {
            let op = query_param(q, "operationId")?;
            let operation_id = percent_encoding::percent_decode_str(op)
                .decode_utf8()
                .ok()?
                .into_owned();
            return Some(DpsTopic::Poll {
                rid: rid(q)?,
                operation_id,
            });
        }
        let rest = topic.strip_prefix("$dps/registrations/res/")?;
        let (status, q) = rest.split_once("/?").unwrap_or((rest, ""));
        Some(DpsTopic::Response {
            status: status.parse().ok()?,
            rid: rid(q).unwrap_or_default(),
            retry_after: query_param(q, "retry-after").and_then(|r| r.parse().ok()),
        })
    }

    /// The topic name.
    pub fn to_topic(&self) -> String {
        match self {
            DpsTopic::Register { rid } => {
                format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}")
            }
            DpsTopic::Poll { rid, operation_id } => format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
                percent_encoding::utf8_percent_encode(
                    operation_id,
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
            DpsTopic::Response {
                status,
                rid,
                retry_after,
            } => {
                let mut t = format!("$dps/registrations/res/{status}/?$rid={rid}");
                if let Some(r) = retry_after {
                    t.push_str(&format!("&retry-after={r}"));
                }
                t
            }
        }
    }
}

/// Settings for one registration.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisioningConfig {
    /// The ID scope (`0ne...`).
    pub id_scope: String,
    /// The registration id (the device id DPS assigns, for symmetric keys).
    pub registration_id: String,
    /// The SAS token (see [`registration_token`]).
    pub token: String,
    /// A custom payload, e.g. `{"modelId": "dtmi:..."}`.
    pub payload: Option<Value>,
    /// Give up after this long (ms) from `start`.
    pub timeout_ms: u64,
}

/// What DPS said about the registration when it ended well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationState {
    /// The registration id.
    pub registration_id: String,
    /// The hub the device was assigned to.
    pub assigned_hub: Option<String>,
    /// The device id in that hub.
    pub device_id: Option<String>,
    /// `assigned`, `failed`, `disabled`, ...
    pub status: String,
    /// `initialAssignment`, `deviceDataMigrated`, `reprovisionedToInitialAssignment`, ...
    pub substatus: Option<String>,
    /// The service's error code, when it failed.
    pub error_code: Option<i64>,
    /// The service's error message, when it failed.
    pub error_message: Option<String>,
}

impl RegistrationState {
    /// Reads DPS's `registrationState` object (by hand rather than derived: the app is
    /// built for size, and a derived reader costs several KB of wasm). `None` without
    /// its required `registrationId` and `status`.
    pub fn from_value(v: &Value) -> Option<RegistrationState> {
        Some(RegistrationState {
            registration_id: text(v, "registrationId")?,
            assigned_hub: text(v, "assignedHub"),
            device_id: text(v, "deviceId"),
            status: text(v, "status")?,
            substatus: text(v, "substatus"),
            error_code: v.get("errorCode").and_then(Value::as_i64),
            error_message: text(v, "errorMessage"),
        })
    }
}

/// What the session asks of its caller or tells it.
#[derive(Clone, Debug, PartialEq)]
pub enum ProvisioningEvent {
    /// Open the transport (a WebSocket to the DPS endpoint, subprotocol `mqtt`).
    OpenTransport,
    /// Close the transport.
    CloseTransport,
    /// Progress, in words (`connecting`, `registering`, `assigning, next poll in 2 s`).
    Progress(String),
    /// DPS assigned the device.
    Assigned(RegistrationState),
    /// The registration ended without an assignment; why, in words.
    Failed(String),
    /// A packet crossed the transport (for a traffic view): sent?, the packet.
    Traffic(bool, Packet),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Opening,
    Connecting,
    Subscribing,
    Registering,
    Waiting,
    Polling,
    Done,
}

/// One registration with DPS (see the module docs for the call order).
#[derive(Debug)]
pub struct ProvisioningSession {
    cfg: ProvisioningConfig,
    phase: Phase,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ProvisioningEvent>,
    rx: Vec<u8>,
    decoder: Decoder,
    deadline: Option<u64>,
    next_poll: Option<u64>,
    operation: Option<String>,
    rid: u64,
    next_pid: u16,
}

impl ProvisioningSession {
    /// A session for `cfg`; nothing happens until [`ProvisioningSession::start`].
    pub fn new(cfg: ProvisioningConfig) -> ProvisioningSession {
        ProvisioningSession {
            cfg,
            phase: Phase::Idle,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rx: Vec::new(),
            decoder: Decoder::default(),
            deadline: None,
            next_poll: None,
            operation: None,
            rid: 0,
            next_pid: 1,
        }
    }

    /// Starts: asks for the transport.
    pub fn start(&mut self, now: u64) -> Result<(), String> {
        if self.phase != Phase::Idle {
            return Err("the registration has already started".into());
        }
        check_registration_id(&self.cfg.registration_id)?;
        if self.cfg.id_scope.trim().is_empty() {
            return Err("the ID scope is empty; copy it from the DPS overview page".into());
        }
        self.phase = Phase::Opening;
        self.deadline = Some(now + self.cfg.timeout_ms);
        self.events
            .push_back(ProvisioningEvent::Progress("connecting".into()));
        self.events.push_back(ProvisioningEvent::OpenTransport);
        Ok(())
    }

    /// Whether the registration has ended (assigned or failed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProvisioningEvent> {
        self.events.pop_front()
    }

    /// When to call [`ProvisioningSession::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.phase == Phase::Done {
            return None;
        }
        match (self.deadline, self.next_poll) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        }
    }

    fn send(&mut self, p: Packet) {
        match p.to_bytes() {
            Ok(b) => {
                self.transmit.push_back(b);
                self.events.push_back(ProvisioningEvent::Traffic(true, p));
            }
            Err(e) => self.fail(format!("could not encode {}: {e}", p.name())),
        }
    }

    fn pid(&mut self) -> PacketId {
        let p = PacketId::new(self.next_pid).unwrap_or(PacketId::new(1).expect("1"));
        self.next_pid = p.next().get();
        p
    }

    fn fail(&mut self, why: String) {
        if self.phase == Phase::Done {
            return;
        }
        let connected = !matches!(self.phase, Phase::Idle | Phase::Opening);
        self.phase = Phase::Done;
        if connected {
            if let Ok(b) = Packet::Disconnect.to_bytes() {
                self.transmit.push_back(b);
            }
        }
        self.events.push_back(ProvisioningEvent::Failed(why));
        self.events.push_back(ProvisioningEvent::CloseTransport);
    }

    fn finish(&mut self, state: RegistrationState) {
        self.phase = Phase::Done;
        if let Ok(b) = Packet::Disconnect.to_bytes() {
            self.transmit.push_back(b);
        }
        self.events.push_back(ProvisioningEvent::Assigned(state));
        self.events.push_back(ProvisioningEvent::CloseTransport);
    }

    /// The transport is open: CONNECT.
    pub fn handle_opened(&mut self, _now: u64) {
        if self.phase != Phase::Opening {
            return;
        }
        self.phase = Phase::Connecting;
        let c = Connect {
            client_id: self.cfg.registration_id.clone(),
            keep_alive: 60,
            clean_session: true,
            last_will: None,
            username: Some(username(&self.cfg.id_scope, &self.cfg.registration_id)),
            password: Some(self.cfg.token.clone().into_bytes()),
        };
        self.send(Packet::Connect(c));
    }

    /// The transport ended.
    pub fn handle_closed(&mut self, _now: u64) {
        if self.phase != Phase::Done {
            self.fail("the connection to the provisioning service closed before the registration finished".into());
        }
    }

    /// Bytes from the transport.
    pub fn handle_bytes(&mut self, now: u64, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&self.rx) {
                Ok(None) => return,
                Ok(Some((p, used))) => {
                    self.rx.drain(..used);
                    self.events
                        .push_back(ProvisioningEvent::Traffic(false, p.clone()));
                    self.packet(now, p);
                }
                Err(e) => {
                    self.rx.clear();
                    self.fail(format!(
                        "the provisioning service sent bytes that are not MQTT: {e}"
                    ));
                    return;
                }
            }
        }
    }

    /// The timer fired.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.phase == Phase::Done {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.fail(format!(
                "no assignment after {} s: the provisioning service did not finish in time",
                self.cfg.timeout_ms / 1000
            ));
            return;
        }
        if self.next_poll.is_some_and(|p| now >= p) {
            self.next_poll = None;
            match self.operation.clone() {
                Some(op) => self.poll(op),
                None => self.register(),
            }
        }
    }

    fn register(&mut self) {
        self.phase = Phase::Registering;
        self.rid += 1;
        let mut body = json!({"registrationId": self.cfg.registration_id});
        if let Some(p) = &self.cfg.payload {
            body["payload"] = p.clone();
        }
        let pid = self.pid();
        self.events
            .push_back(ProvisioningEvent::Progress("registering".into()));
        self.send(Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid),
            retain: false,
            topic: DpsTopic::Register {
                rid: self.rid.to_string(),
            }
            .to_topic(),
            payload: body.to_string().into_bytes(),
        }));
    }

    fn poll(&mut self, op: String) {
        self.phase = Phase::Polling;
        self.rid += 1;
        let pid = self.pid();
        self.send(Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid),
            retain: false,
            topic: DpsTopic::Poll {
                rid: self.rid.to_string(),
                operation_id: op,
            }
            .to_topic(),
            payload: Vec::new(),
        }));
    }

    fn packet(&mut self, now: u64, p: Packet) {
        match p {
            Packet::ConnAck(a) if self.phase == Phase::Connecting => {
                if a.code != ConnectReturnCode::Accepted {
                    let why = match a.code {
                        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUsernameOrPassword => format!(
                            "the provisioning service refused the connection ({}): check the ID scope, the registration id and the key (an enrollment group key must be turned into the device key; tick \"group key\"), and this computer's clock",
                            a.code.description()
                        ),
                        other => format!("the provisioning service refused the connection: {}", other.description()),
                    };
                    self.fail(why);
                    return;
                }
                self.phase = Phase::Subscribing;
                let pid = self.pid();
                self.send(Packet::Subscribe(Subscribe {
                    pkid: pid,
                    filters: vec![SubscribeFilter {
                        filter: RESPONSE_FILTER.into(),
                        qos: QoS::AtLeastOnce,
                    }],
                }));
            }
            Packet::SubAck(_) if self.phase == Phase::Subscribing => self.register(),
            Packet::Publish(pb) => {
                if let QosPid::AtLeastOnce(id) = pb.qospid {
                    self.send(Packet::PubAck(id));
                }
                self.response(now, &pb.topic, &pb.payload);
            }
            Packet::PubAck(_) | Packet::PingResp => {}
            other => self.fail(format!(
                "the provisioning service sent an unexpected {}",
                other.name()
            )),
        }
    }

    fn response(&mut self, now: u64, topic: &str, body: &[u8]) {
        let Some(DpsTopic::Response {
            status,
            rid,
            retry_after,
        }) = DpsTopic::parse(topic)
        else {
            return;
        };
        if rid.parse::<u64>().ok() != Some(self.rid) {
            return; // an answer to an earlier request
        }
        let retry_after_s = retry_after.unwrap_or(DEFAULT_RETRY_AFTER_S);
        match status {
            200..=299 => {
                let op: Value = match serde_json::from_slice(body) {
                    Ok(op) => op,
                    Err(e) => {
                        self.fail(format!(
                            "the provisioning service's answer is not JSON: {e}"
                        ));
                        return;
                    }
                };
                let st = text(&op, "status").unwrap_or_default();
                let state = op
                    .get("registrationState")
                    .and_then(RegistrationState::from_value);
                match (st.as_str(), state) {
                    ("assigned", Some(state)) => self.finish(state),
                    ("failed" | "disabled", state) => {
                        let detail = state
                            .and_then(|s| {
                                s.error_message
                                    .map(|m| format!("{m} (code {})", s.error_code.unwrap_or(0)))
                            })
                            .unwrap_or_else(|| "no detail given".into());
                        self.fail(format!("the registration is {st}: {detail}"));
                    }
                    _ => {
                        if let Some(id) = text(&op, "operationId") {
                            self.operation = Some(id);
                        }
                        if self.operation.is_none() {
                            self.fail(
                                "the provisioning service gave no operation id to poll".into(),
                            );
                            return;
                        }
                        self.phase = Phase::Waiting;
                        self.next_poll = Some(now + retry_after_s * 1000);
                        self.events.push_back(ProvisioningEvent::Progress(format!(
                            "{}, next poll in {retry_after_s} s",
                            if st.is_empty() {
                                "waiting"
                            } else {
                                st.as_str()
                            }
                        )));
                    }
                }
            }
            429.. => {
                self.phase = Phase::Waiting;
                self.next_poll = Some(now + retry_after_s * 1000);
                self.events.push_back(ProvisioningEvent::Progress(format!(
                    "the service asked to wait (status {status}); trying again in {retry_after_s} s"
                )));
            }
            _ => {
                let e: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let code = e.get("errorCode").and_then(Value::as_i64);
                let message = text(&e, "message");
                let hint = match status {
                    401 => ": the key does not sign for this registration id (group key not derived? wrong enrollment?)",
                    404 => ": no enrollment matches this registration id or ID scope",
                    _ => "",
                };
                self.fail(format!(
                    "the provisioning service answered {status}{}{}{hint}",
                    code.map(|c| format!(" (error {c})")).unwrap_or_default(),
                    message.map(|m| format!(": {m}")).unwrap_or_default(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iothub::sas::SasToken;
    use crate::mqtt::{ConnAck, SubAck, SubAckCode};

    fn cfg() -> ProvisioningConfig {
        let key =
            SymmetricKey::from_base64("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        ProvisioningConfig {
            id_scope: "0ne00000000".into(),
            registration_id: "sensor-1".into(),
            token: registration_token("0ne00000000", "sensor-1", &key, 1_700_000_000),
            payload: Some(json!({"modelId": "dtmi:com:example:Thermostat;1"})),
            timeout_ms: 60_000,
        }
    }

    /// Drains the session: (bytes decoded as packets, events without traffic).
    fn drain(s: &mut ProvisioningSession) -> (Vec<Packet>, Vec<ProvisioningEvent>) {
        let d = Decoder::default();
        let sent = std::iter::from_fn(|| s.poll_transmit())
            .map(|b| d.decode(&b).unwrap().unwrap().0)
            .collect();
        let events = std::iter::from_fn(|| s.poll_event())
            .filter(|e| !matches!(e, ProvisioningEvent::Traffic(..)))
            .collect();
        (sent, events)
    }

    fn res(status: u16, rid: u64, extra: &str, body: Value) -> Vec<u8> {
        Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: false,
            topic: format!("$dps/registrations/res/{status}/?$rid={rid}{extra}"),
            payload: body.to_string().into_bytes(),
        })
        .to_bytes()
        .unwrap()
    }

    fn connack(code: ConnectReturnCode) -> Vec<u8> {
        Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        })
        .to_bytes()
        .unwrap()
    }

    fn suback() -> Vec<u8> {
        Packet::SubAck(SubAck {
            pkid: PacketId::new(1).unwrap(),
            return_codes: vec![SubAckCode::Success(QoS::AtLeastOnce)],
        })
        .to_bytes()
        .unwrap()
    }

    /// Runs the session up to its register request.
    fn registered() -> ProvisioningSession {
        let mut s = ProvisioningSession::new(cfg());
        s.start(0).unwrap();
        assert!(drain(&mut s).1.contains(&ProvisioningEvent::OpenTransport));
        s.handle_opened(10);
        let (sent, _) = drain(&mut s);
        let Packet::Connect(c) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(c.client_id, "sensor-1");
        assert!(c.clean_session);
        assert_eq!(
            c.username.as_deref().unwrap().split('&').next(),
            Some("0ne00000000/registrations/sensor-1/api-version=2019-03-31")
        );
        let token =
            SasToken::parse(std::str::from_utf8(c.password.as_ref().unwrap()).unwrap()).unwrap();
        assert_eq!(token.resource, "0ne00000000/registrations/sensor-1");
        assert_eq!(token.policy.as_deref(), Some("registration"));
        s.handle_bytes(20, &connack(ConnectReturnCode::Accepted));
        let (sent, _) = drain(&mut s);
        let Packet::Subscribe(sub) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(sub.filters[0].filter, "$dps/registrations/res/#");
        s.handle_bytes(30, &suback());
        let (sent, _) = drain(&mut s);
        let Packet::Publish(p) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(p.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(
            body,
            json!({"registrationId": "sensor-1", "payload": {"modelId": "dtmi:com:example:Thermostat;1"}})
        );
        s
    }

    #[test]
    fn registers_then_polls_after_retry_after_until_assigned() {
        let mut s = registered();
        s.handle_bytes(
            100,
            &res(
                202,
                1,
                "&retry-after=3",
                json!({"operationId": "4.abc", "status": "assigning"}),
            ),
        );
        let (sent, events) = drain(&mut s);
        assert!(sent.is_empty());
        assert_eq!(
            events,
            vec![ProvisioningEvent::Progress(
                "assigning, next poll in 3 s".into()
            )]
        );
        assert_eq!(
            s.poll_timeout(),
            Some(3100),
            "the poll waits for retry-after"
        );
        s.handle_timeout(3099);
        assert!(drain(&mut s).0.is_empty());
        s.handle_timeout(3100);
        let (sent, _) = drain(&mut s);
        let Packet::Publish(p) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(
            p.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4%2Eabc"
        );
        // Still assigning, no retry-after: the default 2 s.
        s.handle_bytes(
            3200,
            &res(
                202,
                2,
                "",
                json!({"operationId": "4.abc", "status": "assigning"}),
            ),
        );
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(5200));
        s.handle_timeout(5200);
        drain(&mut s);
        let state = json!({"operationId": "4.abc", "status": "assigned", "registrationState": {
            "registrationId": "sensor-1", "assignedHub": "hub.azure-devices.net",
            "deviceId": "sensor-1", "status": "assigned", "substatus": "initialAssignment"}});
        s.handle_bytes(5300, &res(200, 3, "", state));
        let (sent, events) = drain(&mut s);
        assert_eq!(sent, vec![Packet::Disconnect]);
        let ProvisioningEvent::Assigned(st) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(st.assigned_hub.as_deref(), Some("hub.azure-devices.net"));
        assert_eq!(st.device_id.as_deref(), Some("sensor-1"));
        assert_eq!(events[1], ProvisioningEvent::CloseTransport);
        assert!(s.is_done());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn errors_end_with_the_services_code_and_message() {
        let mut s = registered();
        s.handle_bytes(
            100,
            &res(
                401,
                1,
                "",
                json!({"errorCode": 401002, "trackingId": "t", "message": "Invalid certificate."}),
            ),
        );
        let (sent, events) = drain(&mut s);
        assert_eq!(sent, vec![Packet::Disconnect]);
        let ProvisioningEvent::Failed(why) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(
            why.contains("401") && why.contains("401002") && why.contains("Invalid certificate."),
            "{why}"
        );
        assert!(s.is_done());
    }

    #[test]
    fn throttling_is_retried_and_failed_registrations_say_why() {
        let mut s = registered();
        s.handle_bytes(100, &res(429, 1, "&retry-after=5", json!({})));
        let (_, events) = drain(&mut s);
        assert!(matches!(&events[0], ProvisioningEvent::Progress(p) if p.contains("status 429")));
        s.handle_timeout(5100);
        let (sent, _) = drain(&mut s);
        let Packet::Publish(p) = &sent[0] else {
            panic!()
        };
        assert!(
            p.topic
                .starts_with("$dps/registrations/PUT/iotdps-register/?$rid=2"),
            "no operation yet: register again"
        );
        s.handle_bytes(
            5200,
            &res(
                200,
                2,
                "",
                json!({"operationId": "o", "status": "failed",
            "registrationState": {"registrationId": "sensor-1", "status": "failed",
                "errorCode": 400209, "errorMessage": "Custom allocation failed"}}),
            ),
        );
        let (_, events) = drain(&mut s);
        let ProvisioningEvent::Failed(why) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            why,
            "the registration is failed: Custom allocation failed (code 400209)"
        );
    }

    #[test]
    fn refusals_timeouts_and_lost_connections_end_it() {
        let mut s = ProvisioningSession::new(cfg());
        s.start(0).unwrap();
        s.handle_opened(1);
        drain(&mut s);
        s.handle_bytes(2, &connack(ConnectReturnCode::NotAuthorized));
        let (_, events) = drain(&mut s);
        assert!(matches!(&events[0], ProvisioningEvent::Failed(w) if w.contains("group key")));

        let mut s = registered();
        s.handle_bytes(
            100,
            &res(
                202,
                1,
                "&retry-after=1",
                json!({"operationId": "o", "status": "assigning"}),
            ),
        );
        drain(&mut s);
        s.handle_bytes(150, &res(202, 0, "", json!({"status": "stale"})));
        assert!(
            drain(&mut s).1.is_empty(),
            "answers to earlier requests are ignored"
        );
        s.handle_closed(500);
        let (_, events) = drain(&mut s);
        assert!(matches!(&events[0], ProvisioningEvent::Failed(w) if w.contains("closed")));

        let mut s = registered();
        s.handle_timeout(60_000);
        let (_, events) = drain(&mut s);
        assert!(matches!(&events[0], ProvisioningEvent::Failed(w) if w.contains("60 s")));

        let mut s = registered();
        s.handle_bytes(100, b"\xff\xff\xff\xff\xff");
        let (_, events) = drain(&mut s);
        assert!(matches!(&events[0], ProvisioningEvent::Failed(w) if w.contains("not MQTT")));
    }

    #[test]
    fn registration_ids_and_scopes_are_checked_before_anything_is_sent() {
        assert!(check_registration_id("sensor-01").is_ok());
        assert!(check_registration_id("Sensor")
            .unwrap_err()
            .contains("lowercase"));
        assert!(check_registration_id("").is_err());
        let mut c = cfg();
        c.id_scope = " ".into();
        assert!(ProvisioningSession::new(c)
            .start(0)
            .unwrap_err()
            .contains("ID scope"));
    }

    #[test]
    fn dps_topics_round_trip() {
        for t in [
            DpsTopic::Register { rid: "1".into() },
            DpsTopic::Poll {
                rid: "2".into(),
                operation_id: "4.abc&d".into(),
            },
            DpsTopic::Response {
                status: 202,
                rid: "3".into(),
                retry_after: Some(3),
            },
        ] {
            assert_eq!(
                DpsTopic::parse(&t.to_topic()),
                Some(t.clone()),
                "{}",
                t.to_topic()
            );
        }
        assert_eq!(DpsTopic::parse("devices/d/messages/events/"), None);
        assert_eq!(DpsTopic::parse("$dps/registrations/res/abc/?$rid=1"), None);
    }

    #[test]
    fn the_token_matches_vector_d3() {
        let key =
            SymmetricKey::from_base64("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        let t = registration_token(
            "0ne00000000",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
            &key,
            1_700_000_000,
        );
        assert!(
            t.contains(
                "sig=UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng%3D&se=1700000000&skn=registration"
            ),
            "{t}"
        );
    }
}
