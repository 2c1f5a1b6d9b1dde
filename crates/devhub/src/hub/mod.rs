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
//!
//! One `Hub`, split by job: this file holds its state, actions and clock; `device.rs` the
//! device protocol (connections, subscriptions, telemetry, twin, C2D in flight, wills);
//! `service.rs` the service operations; `faults.rs` fault injection; `error.rs` IoT Hub's
//! error codes. The submodules share this file's imports (`use super::*`).

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
    PacketId, PacketRef, Publish, PublishRef, QoS, QosPid, SubAck, SubAckCode, Subscribe,
    MAX_STRING_BYTES,
};

mod device;
pub mod dps;
mod error;
mod faults;
pub mod query;
mod service;

pub use error::{iso, tracking_id, ErrorCode, ServiceError};
pub use faults::FaultOp;
use faults::Faults;

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
    /// The identity's generation id when it connected (deleting the identity closes the
    /// connection, so it cannot change while connected).
    generation_id: String,
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
    /// The Plug and Play model id each client last connected with (the twin's `modelId`).
    model_ids: HashMap<String, String>,
    /// The DPS endpoint's state.
    dps: dps::Dps,
    /// Someone listens to the stored-telemetry stream: make [`Action::Event`]s (set by the
    /// caller before each use; true when unknown).
    pub event_listeners: bool,
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
    /// Runs `f` (one connection's batch of packets) inside one store transaction: what it
    /// writes commits once, before any of its actions (PUBACKs, answers, events) is carried
    /// out, so an acknowledged message is on disk. Group commit: a burst of telemetry costs
    /// one WAL commit per batch, not one per message. If the commit fails nothing of the
    /// batch was stored: its events and answers are dropped and its connections closed (a
    /// device sends its unacknowledged messages again when it reconnects).
    pub fn batch(&mut self, f: impl FnOnce(&mut Hub) -> Vec<Action>) -> Vec<Action> {
        if self.store.begin_batch().is_err() {
            return f(self);
        }
        let actions = f(self);
        let Err(e) = self.store.commit_batch() else {
            return actions;
        };
        self.store.rollback_batch();
        let mut closed = Vec::new();
        for a in &actions {
            if let Action::Send(c, _) | Action::Close(c, _) = a {
                if !closed.contains(c) {
                    closed.push(*c);
                }
            }
        }
        closed
            .into_iter()
            .map(|c| Action::Close(c, format!("store: the batch did not commit: {e}")))
            .collect()
    }

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
            model_ids: HashMap::new(),
            dps: dps::Dps::default(),
            event_listeners: true,
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
