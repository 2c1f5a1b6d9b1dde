//! The Device Provisioning Service's device endpoint (spec §10), on devhub's own listeners:
//! CONNECT with `{idScope}/registrations/{registrationId}/api-version=...` and a
//! `skn=registration` token signed with an individual enrollment's key or with the key
//! derived from an enrollment group's key; SUBSCRIBE `$dps/registrations/res/#`; register
//! (answered `202` with an operation id and `retry-after`) and operation-status polls
//! (answered `200` with the registration state). The device is created in this hub with
//! the key it registered with (or found again), so it can connect at once.

use super::*;
use crate::rest::{AuthenticationRequest, IdentityRequest, SymmetricKeys};
use twinscope_proto::iothub::sas::derive_device_key;
use twinscope_proto::provisioning::{registration_resource, DpsTopic, RESPONSE_FILTER};

/// DPS settings: the ID scope and the enrollments.
#[derive(Clone, Debug, Default)]
pub struct DpsConfig {
    /// The ID scope devices name in their user name.
    pub id_scope: String,
    /// Enrollment groups: (name, group key).
    pub groups: Vec<(String, SymmetricKey)>,
    /// Individual enrollments: (registration id, key).
    pub individual: Vec<(String, SymmetricKey)>,
}

/// The `retry-after` devhub asks for between register and the first poll (seconds).
const RETRY_AFTER_S: u64 = 1;

#[derive(Default)]
pub(super) struct Dps {
    pub(super) cfg: Option<DpsConfig>,
    conns: HashMap<ConnId, DpsConn>,
    ops: HashMap<String, Operation>,
    next_op: u64,
}

struct DpsConn {
    registration_id: String,
    /// The key the device signed with (its device key).
    key: String,
}

struct Operation {
    registration_id: String,
    key: String,
    payload: Option<Value>,
}

fn iso_now(now_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Hub {
    /// Serves DPS registrations for `cfg` from now on.
    pub fn set_dps(&mut self, cfg: DpsConfig) {
        self.dps.cfg = Some(cfg);
    }

    /// The DPS ID scope, when DPS is served.
    pub fn id_scope(&self) -> Option<&str> {
        self.dps.cfg.as_ref().map(|c| c.id_scope.as_str())
    }

    /// Adds (or replaces) an individual enrollment.
    pub fn enroll_individual(&mut self, registration_id: &str, key: SymmetricKey) {
        let cfg = self.dps.cfg.get_or_insert_with(DpsConfig::default);
        cfg.individual.retain(|(r, _)| r != registration_id);
        cfg.individual.push((registration_id.to_string(), key));
    }

    /// Adds (or replaces) an enrollment group.
    pub fn enroll_group(&mut self, name: &str, key: SymmetricKey) {
        let cfg = self.dps.cfg.get_or_insert_with(DpsConfig::default);
        cfg.groups.retain(|(n, _)| n != name);
        cfg.groups.push((name.to_string(), key));
    }

    /// An individual enrollment's key.
    pub fn individual_enrollment(&self, registration_id: &str) -> Option<&SymmetricKey> {
        let cfg = self.dps.cfg.as_ref()?;
        cfg.individual
            .iter()
            .find(|(r, _)| r == registration_id)
            .map(|(_, k)| k)
    }

    /// An enrollment group's key.
    pub fn enrollment_group(&self, name: &str) -> Option<&SymmetricKey> {
        let cfg = self.dps.cfg.as_ref()?;
        cfg.groups.iter().find(|(n, _)| n == name).map(|(_, k)| k)
    }

    /// Removes an individual enrollment (`group` false) or a group; whether it existed.
    pub fn remove_enrollment(&mut self, id: &str, group: bool) -> bool {
        let Some(cfg) = self.dps.cfg.as_mut() else {
            return false;
        };
        let list = if group {
            &mut cfg.groups
        } else {
            &mut cfg.individual
        };
        let before = list.len();
        list.retain(|(n, _)| n != id);
        list.len() != before
    }

    /// Whether `username` is a DPS user name for this hub's ID scope.
    pub(super) fn is_dps_user(&self, username: &str) -> bool {
        self.id_scope()
            .is_some_and(|s| username.starts_with(&format!("{s}/registrations/")))
    }

    /// Whether `conn` is a DPS registration connection.
    pub(super) fn is_dps_conn(&self, conn: ConnId) -> bool {
        self.dps.conns.contains_key(&conn)
    }

    /// CONNECT to the DPS endpoint.
    pub(super) fn dps_connect(&mut self, conn: ConnId, c: Connect, now_ms: u64) -> Vec<Action> {
        let Some(cfg) = self.dps.cfg.clone() else {
            return Hub::refuse(conn, "DPS is not served");
        };
        let user = c.username.as_deref().unwrap_or_default();
        let rest = &user[cfg.id_scope.len() + "/registrations/".len()..];
        let Some((reg, query)) = rest.split_once('/') else {
            return Hub::refuse(
                conn,
                "DPS user name: no /api-version= after the registration id",
            );
        };
        if !query.starts_with("api-version=") {
            return Hub::refuse(
                conn,
                "DPS user name: expected api-version= after the registration id",
            );
        }
        if c.client_id != reg {
            return Hub::refuse(
                conn,
                format!(
                    "client id {:?} is not the registration id {reg:?}",
                    c.client_id
                ),
            );
        }
        let Some(token) = c
            .password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| SasToken::parse(p).ok())
        else {
            return Hub::refuse(conn, "no SAS token in the password");
        };
        if let Err(e) = token.check_expiry(now_ms / 1000) {
            return Hub::refuse(conn, e.to_string());
        }
        if let Err(e) = token.check_resource(&registration_resource(&cfg.id_scope, reg)) {
            return Hub::refuse(conn, e.to_string());
        }
        // The docs' token carries skn=registration; the official Python SDK sends none
        // (and DPS takes it). Any other policy name is not a device's.
        if !matches!(token.policy.as_deref(), None | Some("registration")) {
            return Hub::refuse(
                conn,
                "a registration token's skn must be registration (or absent)",
            );
        }
        let individual = cfg
            .individual
            .iter()
            .find(|(r, _)| r == reg)
            .map(|(_, k)| k.to_base64());
        let candidates: Vec<String> = individual
            .into_iter()
            .chain(cfg.groups.iter().map(|(_, g)| derive_device_key(g, reg)))
            .collect();
        let key = candidates.into_iter().find(|k| {
            SymmetricKey::from_base64(k).is_ok_and(|k| token.verify_signature(&k).is_ok())
        });
        let Some(key) = key else {
            return Hub::refuse(
                conn,
                format!("no enrollment's key signs for registration {reg:?}"),
            );
        };
        self.dps.conns.insert(
            conn,
            DpsConn {
                registration_id: reg.to_string(),
                key,
            },
        );
        vec![Action::Send(
            conn,
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted,
            }),
        )]
    }

    /// A packet on a DPS connection.
    pub(super) fn dps_packet(&mut self, conn: ConnId, p: Packet, now_ms: u64) -> Vec<Action> {
        match p {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|f| {
                        if f.filter == RESPONSE_FILTER {
                            SubAckCode::Success(QoS::AtLeastOnce.min(f.qos))
                        } else {
                            SubAckCode::Failure
                        }
                    })
                    .collect();
                vec![Action::Send(
                    conn,
                    Packet::SubAck(SubAck {
                        pkid: s.pkid,
                        return_codes: codes,
                    }),
                )]
            }
            Packet::Publish(pb) => {
                let mut out = Vec::new();
                if let QosPid::AtLeastOnce(id) = pb.qospid {
                    out.push(Action::Send(conn, Packet::PubAck(id)));
                }
                out.extend(self.dps_request(conn, &pb.topic, &pb.payload, now_ms));
                out
            }
            Packet::PubAck(_) => Vec::new(),
            Packet::PingReq => vec![Action::Send(conn, Packet::PingResp)],
            Packet::Disconnect => {
                self.dps.conns.remove(&conn);
                vec![Action::Close(conn, "client sent DISCONNECT".into())]
            }
            other => {
                self.dps.conns.remove(&conn);
                vec![Action::Close(
                    conn,
                    format!("unexpected {} on a DPS connection", other.name()),
                )]
            }
        }
    }

    /// The DPS connection ended.
    pub(super) fn dps_closed(&mut self, conn: ConnId) {
        self.dps.conns.remove(&conn);
    }

    fn dps_answer(
        conn: ConnId,
        status: u16,
        rid: &str,
        retry_after: Option<u64>,
        body: Value,
    ) -> Action {
        Action::Send(
            conn,
            Packet::Publish(Publish {
                dup: false,
                qospid: QosPid::AtMostOnce,
                retain: false,
                topic: DpsTopic::Response {
                    status,
                    rid: rid.to_string(),
                    retry_after,
                }
                .to_topic(),
                payload: body.to_string().into_bytes(),
            }),
        )
    }

    fn dps_request(&mut self, conn: ConnId, topic: &str, body: &[u8], now_ms: u64) -> Vec<Action> {
        let Some(dc) = self.dps.conns.get(&conn) else {
            return Vec::new();
        };
        let (reg, key) = (dc.registration_id.clone(), dc.key.clone());
        let error = |status: u16, rid: &str, code: i64, message: &str| {
            Hub::dps_answer(
                conn,
                status,
                rid,
                None,
                json!({"errorCode": code, "trackingId": "devhub", "message": message,
                       "timestampUtc": iso_now(now_ms)}),
            )
        };
        let parsed = DpsTopic::parse(topic);
        if let Some(DpsTopic::Register { rid }) = &parsed {
            let rid = rid.clone();
            let req: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return vec![error(400, &rid, 400004, "the register body is not JSON")],
            };
            if req.get("registrationId").and_then(Value::as_str) != Some(reg.as_str()) {
                return vec![error(
                    400,
                    &rid,
                    400004,
                    "registrationId in the body does not match the connection's",
                )];
            }
            self.dps.next_op += 1;
            let op = format!("4.devhub{:016x}", self.dps.next_op);
            self.dps.ops.insert(
                op.clone(),
                Operation {
                    registration_id: reg,
                    key,
                    payload: req.get("payload").cloned(),
                },
            );
            return vec![Hub::dps_answer(
                conn,
                202,
                &rid,
                Some(RETRY_AFTER_S),
                json!({"operationId": op, "status": "assigning"}),
            )];
        }
        if let Some(DpsTopic::Poll { rid, operation_id }) = parsed {
            let op_id = operation_id;
            let Some(op) = self.dps.ops.get(&op_id) else {
                return vec![error(404, &rid, 404201, "no such operation")];
            };
            if op.registration_id != reg {
                return vec![error(
                    401,
                    &rid,
                    401002,
                    "the operation belongs to another registration",
                )];
            }
            let (reg, key, payload) = (
                op.registration_id.clone(),
                op.key.clone(),
                op.payload.clone(),
            );
            let existed = matches!(self.store.identity(&reg, None), Ok(Some(_)));
            if !existed {
                let req = IdentityRequest {
                    status: None,
                    authentication: Some(AuthenticationRequest {
                        symmetric_key: Some(SymmetricKeys {
                            primary_key: Some(key),
                            secondary_key: None,
                        }),
                    }),
                };
                if let Err(e) = self.put_identity(&reg, None, &req, None, now_ms) {
                    return vec![error(
                        500,
                        &rid,
                        500000,
                        &format!("the hub could not create the device: {}", e.message),
                    )];
                }
            }
            let now = iso_now(now_ms);
            let mut state = json!({
                "registrationId": reg,
                "createdDateTimeUtc": now,
                "assignedHub": self.cfg.hub_name,
                "deviceId": reg,
                "status": "assigned",
                "substatus": if existed { "reprovisionedToInitialAssignment" } else { "initialAssignment" },
                "lastUpdatedDateTimeUtc": now,
                "etag": format!("\"{op_id}\""),
            });
            if let Some(p) = payload {
                state["payload"] = p;
            }
            return vec![Hub::dps_answer(
                conn,
                200,
                &rid,
                None,
                json!({"operationId": op_id, "status": "assigned", "registrationState": state}),
            )];
        }
        vec![error(400, "", 400004, &format!("not a DPS topic: {topic}"))]
    }
}
