//! The hub's logic, with no IO and no clock: packets and service calls in, [`Action`]s out.
//!
//! Call order for one device connection (the glue in `net.rs` does this):
//! 1. [`Hub::connect`] with the CONNECT packet; it answers CONNACK (and closes on refusal).
//! 2. [`Hub::packet`] for every following packet.
//! 3. [`Hub::closed`] once, when the socket ends (`graceful` if DISCONNECT came first).
//! 4. [`Hub::tick`] every few hundred ms for all connections: keep-alive, token expiry,
//!    C2D lock expiry.
//!
//! Time is milliseconds since 1970, passed in. Every state change that is acknowledged to a
//! client is committed to the store before the acknowledgement is returned.

use std::collections::{HashMap, VecDeque};

use base64::Engine;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Map, Value};
use twinscope_proto::iothub::twin::{self, HubError, TwinError, TwinSection};
use twinscope_proto::iothub::{
    topic::{c2d_topic, filter},
    ConnectionString, DeviceId, Identity, ModuleId, PropertyBag, SasToken, SymmetricKey, SysPrefix,
    Topic, Username, MAX_C2D_MESSAGE_BYTES, MAX_D2C_MESSAGE_BYTES, MAX_METHOD_PAYLOAD_BYTES,
};
use twinscope_proto::mqtt::{
    topic_matches, validate_topic_filter, ConnAck, Connect, ConnectReturnCode, LastWill, Packet,
    PacketId, Publish, QoS, QosPid, SubAck, SubAckCode, Subscribe, MAX_STRING_BYTES,
};

mod error;

pub use error::{iso, tracking_id, ErrorCode, ServiceError};

use crate::store::{EventRecord, IdentityRecord, Store, StoreError, TwinRecord};

/// Identifies one network connection.
pub type ConnId = u64;

/// What the glue must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a packet on a connection.
    Send(ConnId, Packet),
    /// Close a connection (after sending what was queued before), saying why in the log.
    Close(ConnId, String),
    /// A direct-method call finished: hand the result to the waiting service request.
    MethodResult {
        /// The call, as returned by [`Hub::invoke_method`].
        call: u64,
        /// The device's status.
        status: i32,
        /// The device's payload (JSON, or null).
        payload: Value,
    },
    /// Telemetry was stored: tell event-stream listeners.
    Event(Box<EventRecord>),
}

/// Settings of the hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The HostName that tokens and user names must name.
    pub hub_name: String,
    /// The `iothubowner` policy key.
    pub owner_key: SymmetricKey,
    /// Default C2D time to live.
    pub c2d_ttl_ms: u64,
    /// How long a delivered C2D message stays locked without PUBACK.
    pub c2d_lock_ms: u64,
}

/// Operations that faults can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOp {
    /// Twin GET and reported PATCH from devices.
    Twin,
    /// Direct-method invocations from the service.
    Method,
    /// Device telemetry.
    Telemetry,
}

#[derive(Default)]
struct Faults {
    fail: HashMap<FaultOp, (u32, ErrorCode)>,
    delay_ms: u64,
    drop_rate: f64,
    rng: Option<StdRng>,
}

impl Faults {
    /// Consumes one failure for `op`, returning its error code.
    fn take(&mut self, op: FaultOp) -> Option<ErrorCode> {
        let (left, status) = self.fail.get_mut(&op)?;
        let s = *status;
        *left -= 1;
        if *left == 0 {
            self.fail.remove(&op);
        }
        Some(s)
    }
}

struct Conn {
    identity: Identity,
    client_id: String,
    clean: bool,
    subs: Vec<(String, QoS)>,
    timeout_ms: u64,
    last_seen_ms: u64,
    token_expiry_ms: u64,
    will: Option<LastWill>,
    next_pid: PacketId,
    /// C2D messages delivered at QoS 1 and not yet acknowledged: (packet id, seq), in order.
    c2d_inflight: VecDeque<(PacketId, i64)>,
    api_version: Option<String>,
    model_id: Option<String>,
    /// Authenticated with a policy key (auth scope `hub`) rather than the identity's key.
    hub_scoped: bool,
}

impl Conn {
    fn take_pid(&mut self) -> PacketId {
        let p = self.next_pid;
        self.next_pid = p.next();
        p
    }

    fn granted(&self, topic: &str) -> Option<QoS> {
        self.subs
            .iter()
            .filter(|(f, _)| topic_matches(f, topic))
            .map(|(_, q)| *q)
            .max()
    }
}

/// The pending side of a direct-method call.
struct PendingCall {
    conn: ConnId,
    rid: String,
}

/// The hub.
pub struct Hub {
    cfg: HubConfig,
    store: Store,
    conns: HashMap<ConnId, Conn>,
    by_client: HashMap<String, ConnId>,
    calls: HashMap<u64, PendingCall>,
    next_call: u64,
    faults: Faults,
}

/// Keys for new identities: 32 random bytes, base64.
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const MAX_FILTERS: usize = 5;
const MAX_C2D_QUEUE: usize = 50;
const MAX_TIMEOUT_MS: u64 = 1_767_000;

impl Hub {
    /// A hub over `store`.
    pub fn new(cfg: HubConfig, store: Store) -> Hub {
        Hub {
            cfg,
            store,
            conns: HashMap::new(),
            by_client: HashMap::new(),
            calls: HashMap::new(),
            next_call: 1,
            faults: Faults::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Direct access to the store (read-only uses: events, listings).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The service (iothubowner) connection string.
    pub fn service_connection_string(&self) -> String {
        ConnectionString {
            host_name: self.cfg.hub_name.clone(),
            device_id: None,
            module_id: None,
            shared_access_key: Some(self.cfg.owner_key.clone()),
            shared_access_key_name: Some("iothubowner".into()),
            shared_access_signature: None,
            gateway_host_name: None,
        }
        .to_string()
    }

    /// A device or module connection string, if the identity exists.
    pub fn connection_string(
        &self,
        id: &Identity,
        gateway: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        let rec = self
            .store
            .identity(id.device.as_str(), id.module.as_ref().map(ModuleId::as_str))?;
        let Some(rec) = rec else { return Ok(None) };
        let key = SymmetricKey::from_base64(&rec.primary_key)
            .map_err(|e| ServiceError::new(ErrorCode::ServerError, format!("stored key: {e}")))?;
        Ok(Some(
            ConnectionString {
                host_name: self.cfg.hub_name.clone(),
                device_id: Some(id.device.clone()),
                module_id: id.module.clone(),
                shared_access_key: Some(key),
                shared_access_key_name: None,
                shared_access_signature: None,
                gateway_host_name: gateway.map(str::to_string),
            }
            .to_string(),
        ))
    }

    /// Whether a connection is authenticated (for the glue's bookkeeping and tests).
    pub fn is_connected(&self, id: &Identity) -> bool {
        self.by_client.contains_key(&id.client_id())
    }

    /// The delay to apply before sending answers (fault injection).
    pub fn answer_delay_ms(&self) -> u64 {
        self.faults.delay_ms
    }

    // ---------------------------------------------------------------- device side

    fn refuse(conn: ConnId, why: impl Into<String>) -> Vec<Action> {
        vec![
            Action::Send(
                conn,
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::NotAuthorized,
                }),
            ),
            Action::Close(conn, format!("CONNECT refused: {}", why.into())),
        ]
    }

    /// Handles CONNECT. IoT Hub answers every failure with CONNACK 5 (not authorized).
    pub fn connect(&mut self, conn: ConnId, c: Connect, now_ms: u64) -> Vec<Action> {
        let Some(username) = c.username.as_deref() else {
            return Hub::refuse(conn, "no user name");
        };
        let user = match Username::parse(username) {
            Ok(u) => u,
            Err(e) => return Hub::refuse(conn, format!("user name: {e}")),
        };
        let id = user.identity.clone();
        if c.client_id != id.client_id() {
            return Hub::refuse(
                conn,
                format!(
                    "client id {:?} does not match user name identity {id}",
                    c.client_id
                ),
            );
        }
        if !user.host.eq_ignore_ascii_case(&self.cfg.hub_name) {
            return Hub::refuse(
                conn,
                format!(
                    "user name names hub {:?}, this hub is {:?}",
                    user.host, self.cfg.hub_name
                ),
            );
        }
        let Some(password) = c
            .password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
        else {
            return Hub::refuse(conn, "no SAS token in the password");
        };
        let token = match SasToken::parse(password) {
            Ok(t) => t,
            Err(e) => return Hub::refuse(conn, format!("password: {e}")),
        };
        if let Err(e) = token.check_expiry(now_ms / 1000) {
            return Hub::refuse(conn, e.to_string());
        }
        let resource = format!("{}/{}", self.cfg.hub_name, id.resource_path());
        if let Err(e) = token.check_resource(&resource) {
            return Hub::refuse(conn, e.to_string());
        }
        let module = id.module.as_ref().map(ModuleId::as_str);
        let rec = match self.store.identity(id.device.as_str(), module) {
            Ok(Some(r)) => r,
            Ok(None) => return Hub::refuse(conn, format!("{id} is not registered")),
            Err(e) => return Hub::refuse(conn, format!("store: {e}")),
        };
        if rec.status != "enabled" {
            return Hub::refuse(conn, format!("{id} is disabled"));
        }
        if id.module.is_some() {
            match self.store.identity(id.device.as_str(), None) {
                Ok(Some(d)) if d.status == "enabled" => {}
                _ => return Hub::refuse(conn, format!("device {} is disabled", id.device)),
            }
        }
        let verified = match token.policy.as_deref() {
            Some("iothubowner") => token.verify_signature(&self.cfg.owner_key).is_ok(),
            Some(_) => false,
            None => [&rec.primary_key, &rec.secondary_key].iter().any(|k| {
                SymmetricKey::from_base64(k).is_ok_and(|k| token.verify_signature(&k).is_ok())
            }),
        };
        if !verified {
            return Hub::refuse(conn, "signature does not match the identity's keys");
        }
        if let Err(e) = id.check_mqtt() {
            return Hub::refuse(conn, e.to_string());
        }

        let mut out = Vec::new();
        let client_id = id.client_id();
        // One connection per identity: the newer one wins.
        if let Some(old) = self.by_client.remove(&client_id) {
            if let Some(o) = self.conns.remove(&old) {
                self.drop_calls_of(old);
                if o.identity.module.is_none() {
                    let _ = self.store.unlock_c2d(o.identity.device.as_str());
                }
            }
            out.push(Action::Close(
                old,
                "400027 ConnectionForcefullyClosedOnNewConnection".into(),
            ));
        }
        let stored = if c.clean_session {
            let _ = self.store.delete_session(&client_id);
            None
        } else {
            self.store.session(&client_id).ok().flatten()
        };
        // A session is stored only once it holds subscriptions (see `persist_subs`), so a
        // connection that dropped before its SUBSCRIBE leaves no empty session behind.
        let session_present = stored.is_some();
        let subs = stored
            .unwrap_or_default()
            .into_iter()
            .map(|(f, q)| (f, QoS::try_from(q).unwrap_or(QoS::AtLeastOnce)))
            .collect();
        let timeout_ms = match c.keep_alive {
            0 => MAX_TIMEOUT_MS,
            k => (u64::from(k) * 1500).min(MAX_TIMEOUT_MS),
        };
        self.conns.insert(
            conn,
            Conn {
                identity: id,
                client_id: client_id.clone(),
                clean: c.clean_session,
                subs,
                timeout_ms,
                last_seen_ms: now_ms,
                token_expiry_ms: token.expiry.saturating_mul(1000),
                will: c.last_will,
                next_pid: PacketId::new(1).expect("1 is a packet id"),
                c2d_inflight: VecDeque::new(),
                api_version: user.api_version().map(str::to_string),
                model_id: user.param("model-id").map(str::to_string),
                hub_scoped: token.policy.is_some(),
            },
        );
        self.by_client.insert(client_id, conn);
        out.push(Action::Send(
            conn,
            Packet::ConnAck(ConnAck {
                session_present,
                code: ConnectReturnCode::Accepted,
            }),
        ));
        out.extend(self.deliver_c2d(conn, now_ms));
        out
    }

    /// Handles a packet after CONNECT.
    pub fn packet(&mut self, conn: ConnId, p: Packet, now_ms: u64) -> Vec<Action> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return vec![Action::Close(conn, "packet before CONNECT".into())];
        };
        c.last_seen_ms = now_ms;
        if self.faults.drop_rate > 0.0 {
            let rate = self.faults.drop_rate;
            let roll: f64 = self
                .faults
                .rng
                .get_or_insert_with(|| StdRng::seed_from_u64(0))
                .gen();
            if roll < rate {
                return self.close_with(conn, "fault injection: random drop", now_ms);
            }
        }
        match p {
            Packet::Publish(p) => self.publish(conn, p, now_ms),
            Packet::PubAck(pid) => self.puback(conn, pid, now_ms),
            Packet::Subscribe(s) => self.subscribe(conn, s, now_ms),
            Packet::Unsubscribe(u) => {
                let c = self.conns.get_mut(&conn).expect("checked above");
                c.subs.retain(|(f, _)| !u.filters.contains(f));
                if let Err(e) = self.persist_subs(conn) {
                    return self.close_with(conn, &format!("store: {e}"), now_ms);
                }
                vec![Action::Send(conn, Packet::UnsubAck(u.pkid))]
            }
            Packet::PingReq => vec![Action::Send(conn, Packet::PingResp)],
            Packet::Disconnect => {
                let mut out = self.closed(conn, true, now_ms);
                out.push(Action::Close(conn, "client sent DISCONNECT".into()));
                out
            }
            other => self.close_with(
                conn,
                &format!("unexpected {} from a device", other.name()),
                now_ms,
            ),
        }
    }

    /// Stores a CleanSession=0 connection's subscriptions as its session; a session with
    /// none is deleted rather than kept empty.
    fn persist_subs(&mut self, conn: ConnId) -> Result<(), StoreError> {
        let c = &self.conns[&conn];
        if c.clean {
            return Ok(());
        }
        if c.subs.is_empty() {
            self.store.delete_session(&c.client_id)
        } else {
            self.store
                .put_session(&c.client_id, &subs_for_store(&c.subs))
        }
    }

    fn close_with(&mut self, conn: ConnId, why: &str, now_ms: u64) -> Vec<Action> {
        let mut out = self.closed(conn, false, now_ms);
        out.push(Action::Close(conn, why.to_string()));
        out
    }

    fn publish(&mut self, conn: ConnId, p: Publish, now_ms: u64) -> Vec<Action> {
        if p.qospid.qos() == QoS::ExactlyOnce {
            return self.close_with(conn, "QoS 2 PUBLISH is not supported by IoT Hub", now_ms);
        }
        let topic = match Topic::parse(&p.topic) {
            Ok(t) => t,
            Err(e) => return self.close_with(conn, &format!("undocumented topic: {e}"), now_ms),
        };
        let c = &self.conns[&conn];
        match topic {
            Topic::Telemetry { identity, props } => {
                if identity != c.identity {
                    let why = format!("{} published to {}'s telemetry topic", c.identity, identity);
                    return self.close_with(conn, &why, now_ms);
                }
                self.telemetry(conn, p, props, now_ms)
            }
            Topic::TwinGet { rid } => self.twin_get(conn, &rid, now_ms),
            Topic::TwinPatchReported { rid } => self.twin_patch(conn, &rid, &p.payload, now_ms),
            Topic::MethodResponse { status, rid } => {
                let call = self
                    .calls
                    .iter()
                    .find(|(_, pc)| pc.conn == conn && pc.rid == rid)
                    .map(|(k, _)| *k);
                let mut out = Vec::new();
                if let Some(call) = call {
                    self.calls.remove(&call);
                    let payload = if p.payload.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&p.payload).into_owned())
                        })
                    };
                    out.push(Action::MethodResult {
                        call,
                        status,
                        payload,
                    });
                }
                if let QosPid::AtLeastOnce(pid) = p.qospid {
                    out.push(Action::Send(conn, Packet::PubAck(pid)));
                }
                out
            }
            other => {
                let why = format!("devices cannot publish to {other:?}");
                self.close_with(conn, &why, now_ms)
            }
        }
    }

    fn telemetry(
        &mut self,
        conn: ConnId,
        p: Publish,
        props: PropertyBag,
        now_ms: u64,
    ) -> Vec<Action> {
        if p.payload.len() + props.counted_size() > MAX_D2C_MESSAGE_BYTES {
            let why = format!(
                "message of {} bytes (body and properties) exceeds the 256 KB limit",
                p.payload.len() + props.counted_size()
            );
            return self.close_with(conn, &why, now_ms);
        }
        if let Some(status) = self.faults.take(FaultOp::Telemetry) {
            return self.close_with(
                conn,
                &format!("fault injection: telemetry fails with {status}"),
                now_ms,
            );
        }
        let c = &self.conns[&conn];
        let (identity, model_id, hub_scoped) =
            (c.identity.clone(), c.model_id.clone(), c.hub_scoped);
        let mut extra = Vec::new();
        if p.retain {
            extra.push(("mqtt-retain", "true".to_string()));
        }
        match self.store_event(
            &identity,
            &props,
            &p.payload,
            &extra,
            model_id.as_deref(),
            hub_scoped,
            now_ms,
        ) {
            Ok(ev) => {
                let mut out = vec![Action::Event(Box::new(ev))];
                if let QosPid::AtLeastOnce(pid) = p.qospid {
                    out.push(Action::Send(conn, Packet::PubAck(pid)));
                }
                out
            }
            Err(e) => self.close_with(conn, &format!("store: {e}"), now_ms),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn store_event(
        &self,
        id: &Identity,
        props: &PropertyBag,
        body: &[u8],
        extra: &[(&str, String)],
        model_id: Option<&str>,
        hub_scoped: bool,
        now_ms: u64,
    ) -> Result<EventRecord, StoreError> {
        let system: Map<String, Value> = props
            .system
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let mut application: Map<String, Value> = props
            .app
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone().map(Value::String).unwrap_or(Value::Null),
                )
            })
            .collect();
        for (k, v) in extra {
            application.insert(k.to_string(), Value::String(v.clone()));
        }
        let mut stamps = Map::new();
        stamps.insert(
            "iothub-connection-device-id".into(),
            id.device.as_str().into(),
        );
        if let Some(m) = &id.module {
            stamps.insert("iothub-connection-module-id".into(), m.as_str().into());
        }
        let rec = self
            .store
            .identity(id.device.as_str(), id.module.as_ref().map(ModuleId::as_str))?;
        stamps.insert(
            "iothub-connection-auth-generation-id".into(),
            rec.map(|r| r.generation_id).unwrap_or_default().into(),
        );
        stamps.insert(
            "iothub-connection-auth-method".into(),
            json!({
                "scope": if hub_scoped { "hub" } else if id.module.is_some() { "module" } else { "device" },
                "type": "sas",
                "issuer": "iothub"
            })
                .to_string()
                .into(),
        );
        let enqueued = iso(now_ms);
        stamps.insert("iothub-enqueuedtime".into(), enqueued.clone().into());
        if let Some(m) = model_id {
            stamps.insert("dt-dataschema".into(), m.into());
        }
        let properties = json!({"system": system, "application": application, "stamps": stamps});
        let module = id.module.as_ref().map(ModuleId::as_str);
        let seq = self
            .store
            .add_event(id.device.as_str(), module, &properties, body, &enqueued)?;
        Ok(self
            .store
            .events(Some(id.device.as_str()), seq - 1, 1)?
            .into_iter()
            .next()
            .expect("just stored"))
    }

    fn reply(&mut self, conn: ConnId, topic: Topic, body: Vec<u8>) -> Action {
        Action::Send(
            conn,
            Packet::Publish(Publish {
                dup: false,
                qospid: QosPid::AtMostOnce,
                retain: false,
                topic: topic.to_topic(SysPrefix::Encoded),
                payload: body,
            }),
        )
    }

    fn twin_error(
        &mut self,
        conn: ConnId,
        rid: &str,
        code: ErrorCode,
        msg: &str,
        now_ms: u64,
    ) -> Vec<Action> {
        let body = serde_json::to_vec(&HubError {
            error_code: code.number(),
            tracking_id: tracking_id(now_ms),
            message: msg.to_string(),
            timestamp_utc: iso(now_ms),
        })
        .unwrap_or_default();
        vec![self.reply(
            conn,
            Topic::TwinResponse {
                status: code.status(),
                rid: rid.to_string(),
                version: None,
            },
            body,
        )]
    }

    /// An injected twin failure, if one is pending: the error answer to send instead.
    fn twin_fault(&mut self, conn: ConnId, rid: &str, now_ms: u64) -> Option<Vec<Action>> {
        let code = self.faults.take(FaultOp::Twin)?;
        Some(self.twin_error(conn, rid, code, "fault injection", now_ms))
    }

    fn twin_get(&mut self, conn: ConnId, rid: &str, now_ms: u64) -> Vec<Action> {
        if let Some(out) = self.twin_fault(conn, rid, now_ms) {
            return out;
        }
        let id = self.conns[&conn].identity.clone();
        match self
            .store
            .twin(id.device.as_str(), id.module.as_ref().map(ModuleId::as_str))
        {
            Ok(Some(t)) => {
                let body = twin::get_body(&t.desired, &t.reported);
                let topic = Topic::TwinResponse {
                    status: 200,
                    rid: rid.to_string(),
                    version: None,
                };
                vec![self.reply(conn, topic, body.to_string().into_bytes())]
            }
            Ok(None) => self.twin_error(
                conn,
                rid,
                ErrorCode::DeviceNotFound,
                "twin not found",
                now_ms,
            ),
            Err(e) => self.twin_error(
                conn,
                rid,
                ErrorCode::ServerError,
                &format!("store: {e}"),
                now_ms,
            ),
        }
    }

    fn twin_patch(&mut self, conn: ConnId, rid: &str, body: &[u8], now_ms: u64) -> Vec<Action> {
        if let Some(out) = self.twin_fault(conn, rid, now_ms) {
            return out;
        }
        let c = &self.conns[&conn];
        if c.api_version.is_none() {
            return self.twin_error(
                conn,
                rid,
                ErrorCode::ArgumentInvalid,
                "the user name has no api-version; the hub needs one to patch the twin",
                now_ms,
            );
        }
        let id = c.identity.clone();
        let patch: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return self.twin_error(
                    conn,
                    rid,
                    ErrorCode::ArgumentInvalid,
                    &format!("malformed JSON: {e}"),
                    now_ms,
                )
            }
        };
        let module = id.module.as_ref().map(ModuleId::as_str);
        let mut twin = match self.store.twin(id.device.as_str(), module) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return self.twin_error(
                    conn,
                    rid,
                    ErrorCode::DeviceNotFound,
                    "twin not found",
                    now_ms,
                )
            }
            Err(e) => {
                return self.twin_error(
                    conn,
                    rid,
                    ErrorCode::ServerError,
                    &format!("store: {e}"),
                    now_ms,
                )
            }
        };
        match twin
            .reported
            .apply_patch(&patch, &iso(now_ms), "reported", false)
        {
            Ok(version) => {
                twin.version += 1;
                if let Err(e) = self.store.put_twin(id.device.as_str(), module, &twin) {
                    return self.twin_error(
                        conn,
                        rid,
                        ErrorCode::ServerError,
                        &format!("store: {e}"),
                        now_ms,
                    );
                }
                let topic = Topic::TwinResponse {
                    status: 204,
                    rid: rid.to_string(),
                    version: Some(version),
                };
                vec![self.reply(conn, topic, Vec::new())]
            }
            Err(e) => self.twin_error(
                conn,
                rid,
                ErrorCode::ArgumentInvalid,
                &e.to_string(),
                now_ms,
            ),
        }
    }

    fn allowed_filter(id: &Identity, f: &str) -> bool {
        let d = id.device.as_str();
        let mut ok = vec![
            filter::TWIN_RESPONSES.to_string(),
            filter::TWIN_DESIRED.to_string(),
            filter::METHODS.to_string(),
            "#".to_string(),
        ];
        match &id.module {
            None => {
                ok.push(filter::c2d(&id.device));
                ok.push("devices/+/messages/devicebound/#".into());
            }
            Some(m) => {
                ok.push(format!("devices/{d}/modules/{m}/#"));
                ok.push(format!("devices/{d}/modules/{m}/inputs/#"));
            }
        }
        ok.iter().any(|x| x == f)
    }

    fn subscribe(&mut self, conn: ConnId, s: Subscribe, now_ms: u64) -> Vec<Action> {
        let c = self.conns.get_mut(&conn).expect("caller checked");
        let mut codes = Vec::with_capacity(s.filters.len());
        for sf in &s.filters {
            if validate_topic_filter(&sf.filter).is_err()
                || !Hub::allowed_filter(&c.identity, &sf.filter)
            {
                let why = format!(
                    "{} subscribed to the undocumented filter {:?}",
                    c.identity, sf.filter
                );
                return self.close_with(conn, &why, now_ms);
            }
            let qos = sf.qos.min(QoS::AtLeastOnce);
            match c.subs.iter_mut().find(|(f, _)| *f == sf.filter) {
                Some(existing) => existing.1 = qos,
                None => c.subs.push((sf.filter.clone(), qos)),
            }
            codes.push(SubAckCode::Success(qos));
        }
        if c.subs.len() > MAX_FILTERS {
            let why = format!("{} has more than {MAX_FILTERS} subscriptions", c.identity);
            return self.close_with(conn, &why, now_ms);
        }
        if let Err(e) = self.persist_subs(conn) {
            return self.close_with(conn, &format!("store: {e}"), now_ms);
        }
        let mut out = vec![Action::Send(
            conn,
            Packet::SubAck(SubAck {
                pkid: s.pkid,
                return_codes: codes,
            }),
        )];
        out.extend(self.deliver_c2d(conn, now_ms));
        out
    }

    fn puback(&mut self, conn: ConnId, pid: PacketId, now_ms: u64) -> Vec<Action> {
        let c = self.conns.get_mut(&conn).expect("caller checked");
        match c.c2d_inflight.iter().position(|(p, _)| *p == pid) {
            Some(0) => {
                let (_, seq) = c.c2d_inflight.pop_front().expect("position 0 exists");
                if let Err(e) = self.store.complete_c2d(seq) {
                    return self.close_with(conn, &format!("store: {e}"), now_ms);
                }
                Vec::new()
            }
            Some(_) => self.close_with(
                conn,
                "Client MUST send PUBACK packets in the order in which the corresponding PUBLISH packets were received (QoS 1 messages) per [MQTT-4.6.0-2]",
                now_ms,
            ),
            None => Vec::new(),
        }
    }

    /// Delivers queued C2D messages that are neither locked nor in flight.
    fn deliver_c2d(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if c.identity.module.is_some() {
            return Vec::new();
        }
        let device = c.identity.device.clone();
        let probe = format!("devices/{device}/messages/devicebound/x");
        let Some(qos) = c.granted(&probe) else {
            return Vec::new();
        };
        let Ok(queue) = self.store.c2d_queue(device.as_str(), now_ms) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in queue {
            let c = self.conns.get_mut(&conn).expect("present");
            if m.lock_until_ms > now_ms || c.c2d_inflight.iter().any(|(_, s)| *s == m.seq) {
                continue;
            }
            let topic = c2d_topic(&device, &m.props);
            let qospid = if qos == QoS::AtMostOnce {
                QosPid::AtMostOnce
            } else {
                let pid = c.take_pid();
                c.c2d_inflight.push_back((pid, m.seq));
                QosPid::AtLeastOnce(pid)
            };
            let stored = if qospid == QosPid::AtMostOnce {
                self.store.complete_c2d(m.seq)
            } else {
                self.store
                    .lock_c2d(m.seq, now_ms + self.cfg.c2d_lock_ms, true)
            };
            if stored.is_err() {
                break;
            }
            out.push(Action::Send(
                conn,
                Packet::Publish(Publish {
                    dup: false,
                    qospid,
                    retain: false,
                    topic,
                    payload: m.body,
                }),
            ));
        }
        out
    }

    fn drop_calls_of(&mut self, conn: ConnId) {
        self.calls.retain(|_, pc| pc.conn != conn);
    }

    /// The socket of `conn` ended. Publishes the will unless `graceful` (DISCONNECT).
    pub fn closed(&mut self, conn: ConnId, graceful: bool, now_ms: u64) -> Vec<Action> {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        if self.by_client.get(&c.client_id) == Some(&conn) {
            self.by_client.remove(&c.client_id);
        }
        self.drop_calls_of(conn);
        // Delivered but unacknowledged C2D messages go back to the queue at once. The queue
        // is the device's: a module's connection has none of it in flight.
        if c.identity.module.is_none() {
            let _ = self.store.unlock_c2d(c.identity.device.as_str());
        }
        let mut out = Vec::new();
        if let (false, Some(w)) = (graceful, c.will) {
            if let Ok(Topic::Telemetry { identity, props }) = Topic::parse(&w.topic) {
                if identity == c.identity {
                    let extra = [("iothub-MessageType", "Will".to_string())];
                    if let Ok(ev) = self.store_event(
                        &identity,
                        &props,
                        &w.message,
                        &extra,
                        c.model_id.as_deref(),
                        c.hub_scoped,
                        now_ms,
                    ) {
                        out.push(Action::Event(Box::new(ev)));
                    }
                }
            }
        }
        out
    }

    /// Time-driven work: keep-alive, token expiry, C2D lock expiry.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            let c = &self.conns[&conn];
            if now_ms >= c.token_expiry_ms {
                out.extend(self.close_with(
                    conn,
                    "401003 IoTHubUnauthorized: SAS token expired",
                    now_ms,
                ));
                continue;
            }
            if now_ms.saturating_sub(c.last_seen_ms) > c.timeout_ms {
                out.extend(self.close_with(
                    conn,
                    "404104 DeviceConnectionClosedRemotely: keep-alive timeout",
                    now_ms,
                ));
                continue;
            }
            // Locks that ran out: the message goes back to the queue and is delivered again.
            let device = c.identity.device.as_str().to_string();
            if let Ok(queue) = self.store.c2d_queue(&device, now_ms) {
                let expired: Vec<i64> = queue
                    .iter()
                    .filter(|m| m.lock_until_ms != 0 && m.lock_until_ms <= now_ms)
                    .map(|m| m.seq)
                    .collect();
                if !expired.is_empty() {
                    let c = self.conns.get_mut(&conn).expect("present");
                    c.c2d_inflight.retain(|(_, s)| !expired.contains(s));
                    for seq in expired {
                        let _ = self.store.lock_c2d(seq, 0, false);
                    }
                    out.extend(self.deliver_c2d(conn, now_ms));
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------- service side

    /// Creates or updates an identity from the REST body. `if_match` is the request's
    /// If-Match header (`*` or an etag) for updates.
    pub fn put_identity(
        &mut self,
        device: &str,
        module: Option<&str>,
        body: &Value,
        if_match: Option<&str>,
        now_ms: u64,
    ) -> Result<(Value, Vec<Action>), ServiceError> {
        let id = parse_identity(device, module)?;
        let existing = self.store.identity(device, module)?;
        if let (Some(e), Some(m)) = (&existing, if_match) {
            if m != "*" && m.trim_matches('"') != etag(e.etag) {
                return Err(ServiceError::new(
                    ErrorCode::PreconditionFailed,
                    "etag does not match (If-Match)",
                ));
            }
        }
        if existing.is_some() && if_match.is_none() {
            return Err(ServiceError::new(
                ErrorCode::DeviceAlreadyExists,
                format!("{id} already exists"),
            ));
        }
        let sym = &body["authentication"]["symmetricKey"];
        let key = |name: &str, old: Option<&String>| -> Result<String, ServiceError> {
            match sym[name].as_str().filter(|s| !s.is_empty()) {
                Some(k) => {
                    SymmetricKey::from_base64(k).map_err(|_| {
                        ServiceError::new(
                            ErrorCode::ArgumentInvalid,
                            format!("{name} is not valid base64"),
                        )
                    })?;
                    Ok(k.to_string())
                }
                None => Ok(old.cloned().unwrap_or_else(generate_key)),
            }
        };
        let status = match body["status"].as_str() {
            None => existing
                .as_ref()
                .map_or("enabled".to_string(), |e| e.status.clone()),
            Some(s @ ("enabled" | "disabled")) => s.to_string(),
            Some(other) => {
                return Err(ServiceError::new(
                    ErrorCode::ArgumentInvalid,
                    format!("status {other:?} must be enabled or disabled"),
                ))
            }
        };
        let rec = IdentityRecord {
            device_id: device.to_string(),
            module_id: module.map(str::to_string),
            primary_key: key("primaryKey", existing.as_ref().map(|e| &e.primary_key))?,
            secondary_key: key("secondaryKey", existing.as_ref().map(|e| &e.secondary_key))?,
            status,
            generation_id: existing.as_ref().map_or_else(
                || format!("{}", 638_000_000_000_000_000u64 + now_ms),
                |e| e.generation_id.clone(),
            ),
            etag: existing.as_ref().map_or(1, |e| e.etag + 1),
            created_ms: existing.as_ref().map_or(now_ms, |e| e.created_ms),
        };
        if module.is_some() && self.store.identity(device, None)?.is_none() {
            return Err(ServiceError::new(
                ErrorCode::DeviceNotFound,
                format!("device {device} does not exist"),
            ));
        }
        let twin = TwinRecord {
            tags: json!({}),
            desired: TwinSection::new(&iso(now_ms)),
            reported: TwinSection::new(&iso(now_ms)),
            version: 1,
        };
        self.store.put_identity(&rec, &twin)?;
        let mut out = Vec::new();
        if rec.status == "disabled" {
            // A disabled identity is disconnected at once; a disabled device takes its
            // modules' connections with it (they cannot connect while it is disabled).
            for conn in self.conns_of(&id) {
                out.extend(self.close_with(conn, &format!("{id} was disabled"), now_ms));
            }
        }
        Ok((self.identity_json(&rec), out))
    }

    /// The connections of `id`; for a device, its modules' connections too.
    fn conns_of(&self, id: &Identity) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.identity == *id || (id.module.is_none() && c.identity.device == id.device)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// The REST view of an identity, or the hub's 400/404 answer.
    pub fn identity_of(&self, device: &str, module: Option<&str>) -> Result<Value, ServiceError> {
        let id = parse_identity(device, module)?;
        let rec = self
            .store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        Ok(self.identity_json(&rec))
    }

    /// An identity as the REST API shows it.
    pub fn identity_json(&self, r: &IdentityRecord) -> Value {
        let client = match &r.module_id {
            Some(m) => format!("{}/{m}", r.device_id),
            None => r.device_id.clone(),
        };
        let connected = self.by_client.contains_key(&client);
        let mut v = json!({
            "deviceId": r.device_id,
            "generationId": r.generation_id,
            "etag": etag(r.etag),
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "status": r.status,
            "statusReason": null,
            "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
            "statusUpdatedTime": "0001-01-01T00:00:00Z",
            "lastActivityTime": "0001-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "symmetricKey": {"primaryKey": r.primary_key, "secondaryKey": r.secondary_key},
                "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
                "type": "sas"
            },
            "capabilities": {"iotEdge": false},
        });
        if let Some(m) = &r.module_id {
            v["moduleId"] = json!(m);
            v["managedBy"] = Value::Null;
        }
        v
    }

    /// Deletes an identity (and closes its connection).
    pub fn delete_identity(
        &mut self,
        device: &str,
        module: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Action>, ServiceError> {
        let id = parse_identity(device, module)?;
        if !self.store.delete_identity(device, module)? {
            return Err(not_found(&id));
        }
        let mut out = Vec::new();
        for conn in self.conns_of(&id) {
            out.extend(self.close_with(conn, "identity deleted", now_ms));
        }
        Ok(out)
    }

    /// The twin as the service sees it.
    pub fn twin_json(&self, device: &str, module: Option<&str>) -> Result<Value, ServiceError> {
        let id = parse_identity(device, module)?;
        let rec = self
            .store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        let t = self
            .store
            .twin(device, module)?
            .ok_or_else(|| not_found(&id))?;
        let connected = self.is_connected(&id);
        let mut v = json!({
            "deviceId": device,
            "etag": etag(t.version),
            "deviceEtag": etag(rec.etag),
            "status": rec.status,
            "statusUpdateTime": "0001-01-01T00:00:00Z",
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "lastActivityTime": "0001-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            "version": t.version,
            "tags": t.tags,
            "properties": {"desired": t.desired.to_json(true), "reported": t.reported.to_json(true)},
            "capabilities": {"iotEdge": false},
        });
        if let Some(m) = module {
            v["moduleId"] = json!(m);
        }
        Ok(v)
    }

    /// PATCH (merge) or PUT (replace) of tags and desired properties. Connected devices
    /// subscribed to desired updates get the change.
    pub fn update_twin(
        &mut self,
        device: &str,
        module: Option<&str>,
        body: &Value,
        replace: bool,
        if_match: Option<&str>,
        now_ms: u64,
    ) -> Result<(Value, Vec<Action>), ServiceError> {
        let id = parse_identity(device, module)?;
        let mut t = self
            .store
            .twin(device, module)?
            .ok_or_else(|| not_found(&id))?;
        if let Some(m) = if_match {
            if m != "*" && m.trim_matches('"') != etag(t.version) {
                return Err(ServiceError::new(
                    ErrorCode::PreconditionFailed,
                    "twin etag does not match (If-Match)",
                ));
            }
        }
        let bad = |e: TwinError| ServiceError::new(ErrorCode::ArgumentInvalid, e.to_string());
        if let Some(tags) = body.get("tags").filter(|v| !v.is_null()) {
            let tags_obj = tags.as_object().ok_or_else(|| {
                ServiceError::new(ErrorCode::ArgumentInvalid, "tags must be an object")
            })?;
            twinscope_proto::iothub::twin::validate_patch(tags).map_err(bad)?;
            let mut next = if replace {
                tags_obj.clone()
            } else {
                t.tags.as_object().cloned().unwrap_or_default()
            };
            if !replace {
                twinscope_proto::iothub::twin::merge_patch(&mut next, tags_obj);
            }
            let size = twin::section_size(&next);
            if size > twin::MAX_TAGS_BYTES {
                return Err(bad(TwinError::TooLarge {
                    section: "tags",
                    size,
                }));
            }
            t.tags = Value::Object(next);
        }
        let mut pushed = None;
        if let Some(desired) = body
            .get("properties")
            .and_then(|p| p.get("desired"))
            .filter(|v| !v.is_null())
        {
            // `$version` and `$metadata` in the request are the caller's copy: ignore them.
            let clean: Map<String, Value> = desired
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| !k.starts_with('$'))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let clean = Value::Object(clean);
            let version = if replace {
                t.desired.replace(&clean, &iso(now_ms), "desired", true)
            } else {
                t.desired.apply_patch(&clean, &iso(now_ms), "desired", true)
            }
            .map_err(bad)?;
            let mut notification = if replace {
                t.desired.properties.clone()
            } else {
                clean.as_object().cloned().unwrap_or_default()
            };
            notification.insert("$version".into(), json!(version));
            pushed = Some((version, Value::Object(notification)));
        }
        t.version += 1;
        self.store.put_twin(device, module, &t)?;
        let mut out = Vec::new();
        if let Some((version, body)) = pushed {
            if let Some(&conn) = self.by_client.get(&id.client_id()) {
                let topic = Topic::TwinDesired {
                    version: Some(version),
                }
                .to_topic(SysPrefix::Encoded);
                if self.conns[&conn].granted(&topic).is_some() {
                    out.push(self.reply(
                        conn,
                        Topic::TwinDesired {
                            version: Some(version),
                        },
                        body.to_string().into_bytes(),
                    ));
                }
            }
        }
        Ok((self.twin_json(device, module)?, out))
    }

    /// Starts a direct-method call. Errors with 404103 when the device is not connected
    /// and subscribed to methods. The result arrives as [`Action::MethodResult`]; the
    /// caller enforces the response timeout and then calls [`Hub::cancel_method`].
    pub fn invoke_method(
        &mut self,
        device: &str,
        module: Option<&str>,
        name: &str,
        payload: &Value,
    ) -> Result<(u64, Vec<Action>), ServiceError> {
        let id = parse_identity(device, module)?;
        self.store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        // The name travels in the request's MQTT topic: no topic separators or wildcards,
        // no control characters (MQTT strings cannot hold U+0000), and a topic MQTT can carry.
        let request_topic = Topic::MethodRequest {
            name: name.to_string(),
            rid: format!("{:x}", u64::MAX),
        }
        .to_topic(SysPrefix::Encoded);
        if name.is_empty()
            || name.contains(['/', '?', '#', '+'])
            || name.chars().any(char::is_control)
            || request_topic.len() > MAX_STRING_BYTES
        {
            return Err(ServiceError::new(
                ErrorCode::ArgumentInvalid,
                format!(
                    "method name {:?} is not valid: it must be non-empty, without / ? # + or control characters, and short enough for an MQTT topic",
                    name.chars().take(64).collect::<String>()
                ),
            ));
        }
        let body = serde_json::to_vec(payload).unwrap_or_default();
        if body.len() > MAX_METHOD_PAYLOAD_BYTES {
            return Err(ServiceError::new(
                ErrorCode::MessageTooLarge,
                "method payload exceeds 128 KB",
            ));
        }
        if let Some(code) = self.faults.take(FaultOp::Method) {
            return Err(ServiceError::new(code, "fault injection"));
        }
        let offline = || {
            ServiceError::new(
                ErrorCode::DeviceNotOnline,
                format!("{id} is not online (connected and subscribed to methods)"),
            )
        };
        let conn = *self.by_client.get(&id.client_id()).ok_or_else(offline)?;
        let call = self.next_call;
        self.next_call += 1;
        let rid = format!("{call:x}");
        let topic = Topic::MethodRequest {
            name: name.to_string(),
            rid: rid.clone(),
        };
        if self.conns[&conn]
            .granted(&topic.to_topic(SysPrefix::Encoded))
            .is_none()
        {
            return Err(offline());
        }
        self.calls.insert(call, PendingCall { conn, rid });
        let action = self.reply(conn, topic, body);
        Ok((call, vec![action]))
    }

    /// Forgets a call whose caller stopped waiting (timeout).
    pub fn cancel_method(&mut self, call: u64) {
        self.calls.remove(&call);
    }

    /// Queues a C2D message. `sys` and `app` become the property bag.
    pub fn send_c2d(
        &mut self,
        device: &str,
        body: &[u8],
        mut props: PropertyBag,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(String, Vec<Action>), ServiceError> {
        let id = parse_identity(device, None)?;
        self.store
            .identity(device, None)?
            .ok_or_else(|| not_found(&id))?;
        if body.len() + props.counted_size() > MAX_C2D_MESSAGE_BYTES {
            return Err(ServiceError::new(
                ErrorCode::MessageTooLarge,
                "C2D message exceeds 64 KB",
            ));
        }
        let queue = self.store.c2d_queue(device, now_ms)?;
        if queue.len() >= MAX_C2D_QUEUE {
            return Err(ServiceError::new(ErrorCode::DeviceMaximumQueueDepthExceeded,
                format!("{device} already has {MAX_C2D_QUEUE} messages queued; it must receive some first"),
            ));
        }
        let mid = props.system.message_id.clone().unwrap_or_else(|| {
            let r: u128 = rand::thread_rng().gen();
            format!("{r:032x}")
        });
        props.system.message_id = Some(mid.clone());
        props.system.to = Some(format!("/devices/{device}/messages/devicebound"));
        if props.system.ack.is_none() {
            props.system.ack = Some("none".into());
        }
        let expiry = now_ms.saturating_add(ttl_ms.unwrap_or(self.cfg.c2d_ttl_ms));
        let bag = props.encode(SysPrefix::Encoded);
        // A message whose topic MQTT cannot carry would never be delivered and would block
        // the queue behind it: refuse it now.
        let topic_len = c2d_topic(&id.device, &bag).len();
        if topic_len > MAX_STRING_BYTES {
            return Err(ServiceError::new(
                ErrorCode::ArgumentInvalid,
                format!(
                    "the message's properties make a {topic_len}-byte MQTT topic once percent-encoded; MQTT allows at most 65535: send fewer or shorter properties"
                ),
            ));
        }
        self.store.enqueue_c2d(device, &bag, body, expiry)?;
        let mut out = Vec::new();
        if let Some(&conn) = self.by_client.get(id.device.as_str()) {
            out.extend(self.deliver_c2d(conn, now_ms));
        }
        Ok((mid, out))
    }

    /// Drops a device's (and its modules') connections now.
    pub fn drop_device(&mut self, device: &str, now_ms: u64) -> Vec<Action> {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.identity.device.as_str() == device)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for conn in conns {
            out.extend(self.close_with(conn, "fault injection: connection dropped", now_ms));
        }
        out
    }

    /// Sets faults: fail the next `count` operations of `op` with `code`.
    pub fn fail_next(&mut self, op: FaultOp, count: u32, code: ErrorCode) {
        if count == 0 {
            self.faults.fail.remove(&op);
        } else {
            self.faults.fail.insert(op, (count, code));
        }
    }

    /// Delays every answer by `ms`.
    pub fn set_delay(&mut self, ms: u64) {
        self.faults.delay_ms = ms;
    }

    /// Drops connections at random: each incoming packet closes its connection with
    /// probability `rate`, drawn from a generator seeded with `seed`.
    pub fn set_drop_rate(&mut self, rate: f64, seed: u64) {
        self.faults.drop_rate = rate.clamp(0.0, 1.0);
        self.faults.rng = Some(StdRng::seed_from_u64(seed));
    }

    /// Clears every fault.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// Checks a service SAS token (`Authorization` header): iothubowner policy, this hub,
    /// not expired, signed with the owner key.
    pub fn check_service_token(
        &self,
        header: Option<&str>,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let unauthorized = |why: String| ServiceError::new(ErrorCode::IotHubUnauthorized, why);
        let h = header.ok_or_else(|| {
            unauthorized("Authorization header is missing: send an iothubowner SAS token".into())
        })?;
        let t = SasToken::parse(h).map_err(|e| unauthorized(e.to_string()))?;
        t.check_expiry(now_ms / 1000)
            .map_err(|e| unauthorized(e.to_string()))?;
        t.check_resource(&self.cfg.hub_name)
            .map_err(|e| unauthorized(e.to_string()))?;
        if t.policy.as_deref() != Some("iothubowner") {
            return Err(unauthorized(
                "token must be signed for the iothubowner policy".into(),
            ));
        }
        t.verify_signature(&self.cfg.owner_key)
            .map_err(|e| unauthorized(e.to_string()))
    }

    /// Parses a connection string's key for tests and tools.
    pub fn parse_connection_string(s: &str) -> Option<ConnectionString> {
        ConnectionString::parse(s).ok()
    }
}

fn subs_for_store(subs: &[(String, QoS)]) -> Vec<(String, u8)> {
    subs.iter().map(|(f, q)| (f.clone(), *q as u8)).collect()
}

fn etag(v: u64) -> String {
    format!("AAAAAAAAAA{v}=")
}

fn parse_identity(device: &str, module: Option<&str>) -> Result<Identity, ServiceError> {
    let bad = |e: twinscope_proto::iothub::IdentityError| {
        ServiceError::new(ErrorCode::ArgumentInvalid, e.to_string())
    };
    let d = DeviceId::new(device).map_err(bad)?;
    Ok(match module {
        Some(m) => Identity::module(d, ModuleId::new(m).map_err(bad)?),
        None => Identity::device(d),
    })
}

fn not_found(id: &Identity) -> ServiceError {
    match &id.module {
        Some(_) => ServiceError::new(
            ErrorCode::ModuleNotFound,
            format!("module {id} does not exist"),
        ),
        None => ServiceError::new(
            ErrorCode::DeviceNotFound,
            format!("device {id} does not exist"),
        ),
    }
}
