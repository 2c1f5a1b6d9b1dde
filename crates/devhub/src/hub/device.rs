//! The device side of the hub: CONNECT and its checks, packets from devices (telemetry,
//! twin GET and reported PATCH, method answers, subscriptions, PUBACKs), C2D delivery and
//! the end of a connection.

use super::*;

impl Hub {
    pub(super) fn refuse(conn: ConnId, why: impl Into<String>) -> Vec<Action> {
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
        if self.is_dps_user(username) {
            return self.dps_connect(conn, c, now_ms);
        }
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
                generation_id: rec.generation_id.clone(),
            },
        );
        match user.param("model-id") {
            Some(m) => self.model_ids.insert(client_id.clone(), m.to_string()),
            None => self.model_ids.remove(&client_id),
        };
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

    /// [`Hub::packet`] for a packet from [`twinscope_proto::mqtt::Decoder::decode_ref`]: a device's PUBLISH is
    /// handled where it lies in the receive buffer (telemetry goes to the store without a
    /// copy of its own); anything else is made owned first.
    pub fn packet_ref(&mut self, conn: ConnId, p: PacketRef<'_>, now_ms: u64) -> Vec<Action> {
        match p {
            PacketRef::Publish(pb) if !self.is_dps_conn(conn) => {
                if let Some(refused) = self.before_packet(conn, now_ms) {
                    return refused;
                }
                self.publish(conn, pb, now_ms)
            }
            p => self.packet(conn, p.into_owned(), now_ms),
        }
    }

    /// What every packet of a device connection goes through first: the connection is
    /// known and seen now, and the random-drop fault may end it (the actions to take then).
    fn before_packet(&mut self, conn: ConnId, now_ms: u64) -> Option<Vec<Action>> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Some(vec![Action::Close(conn, "packet before CONNECT".into())]);
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
                return Some(self.close_with(conn, "fault injection: random drop", now_ms));
            }
        }
        None
    }

    /// Handles a packet after CONNECT.
    pub fn packet(&mut self, conn: ConnId, p: Packet, now_ms: u64) -> Vec<Action> {
        if self.is_dps_conn(conn) {
            return self.dps_packet(conn, p, now_ms);
        }
        if let Some(refused) = self.before_packet(conn, now_ms) {
            return refused;
        }
        match p {
            Packet::Publish(p) => self.publish(conn, p.as_ref(), now_ms),
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
    pub(super) fn persist_subs(&mut self, conn: ConnId) -> Result<(), StoreError> {
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

    pub(super) fn close_with(&mut self, conn: ConnId, why: &str, now_ms: u64) -> Vec<Action> {
        let mut out = self.closed(conn, false, now_ms);
        out.push(Action::Close(conn, why.to_string()));
        out
    }

    pub(super) fn publish(&mut self, conn: ConnId, p: PublishRef<'_>, now_ms: u64) -> Vec<Action> {
        if p.qospid.qos() == QoS::ExactlyOnce {
            return self.close_with(conn, "QoS 2 PUBLISH is not supported by IoT Hub", now_ms);
        }
        let topic = match Topic::parse(p.topic) {
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
            Topic::TwinPatchReported { rid } => self.twin_patch(conn, &rid, p.payload, now_ms),
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
                        serde_json::from_slice(p.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(p.payload).into_owned())
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

    pub(super) fn telemetry(
        &mut self,
        conn: ConnId,
        p: PublishRef<'_>,
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
        let mut extra = Vec::new();
        if p.retain {
            extra.push(("mqtt-retain", "true".to_string()));
        }
        match self.store_event(
            &c.identity,
            &props,
            p.payload,
            &extra,
            c.model_id.as_deref(),
            c.hub_scoped,
            &c.generation_id,
            now_ms,
        ) {
            Ok(ev) => {
                let mut out: Vec<Action> = ev
                    .map(|ev| Action::Event(Box::new(ev)))
                    .into_iter()
                    .collect();
                if let QosPid::AtLeastOnce(pid) = p.qospid {
                    out.push(Action::Send(conn, Packet::PubAck(pid)));
                }
                out
            }
            Err(e) => self.close_with(conn, &format!("store: {e}"), now_ms),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_event(
        &self,
        id: &Identity,
        props: &PropertyBag,
        body: &[u8],
        extra: &[(&str, String)],
        model_id: Option<&str>,
        hub_scoped: bool,
        generation_id: &str,
        now_ms: u64,
    ) -> Result<Option<EventRecord>, StoreError> {
        // The hub's JSON text for the auth method, as a constant: this runs for every message.
        let method = if hub_scoped {
            r#"{"scope":"hub","type":"sas","issuer":"iothub"}"#
        } else if id.module.is_some() {
            r#"{"scope":"module","type":"sas","issuer":"iothub"}"#
        } else {
            r#"{"scope":"device","type":"sas","issuer":"iothub"}"#
        };
        let enqueued = iso(now_ms);
        let mut stamps = vec![("iothub-connection-device-id", Some(id.device.as_str()))];
        if let Some(m) = &id.module {
            stamps.push(("iothub-connection-module-id", Some(m.as_str())));
        }
        stamps.push(("iothub-connection-auth-generation-id", Some(generation_id)));
        stamps.push(("iothub-connection-auth-method", Some(method)));
        stamps.push(("iothub-enqueuedtime", Some(&enqueued)));
        if let Some(m) = model_id {
            stamps.push(("dt-dataschema", Some(m)));
        }
        let app = props
            .app
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .chain(extra.iter().map(|(k, v)| (*k, Some(v.as_str()))));
        let properties =
            properties_json(props.system.iter().map(|(k, v)| (k, Some(v))), app, stamps);
        let module = id.module.as_ref().map(ModuleId::as_str);
        let seq = self
            .store
            .add_event(id.device.as_str(), module, &properties, body, &enqueued)?;
        // The record as `Store::events` would read it back, without the query; only made
        // when someone listens to the event stream (it copies the body twice).
        if !self.event_listeners {
            return Ok(None);
        }
        let properties = serde_json::from_str(&properties).unwrap_or(Value::Null);
        Ok(Some(EventRecord::new(
            seq,
            id.device.as_str(),
            module,
            properties,
            body.to_vec(),
            enqueued,
        )))
    }

    pub(super) fn reply(&mut self, conn: ConnId, topic: Topic, body: Vec<u8>) -> Action {
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

    pub(super) fn twin_error(
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

    /// The answer to a twin request that the store failed.
    fn twin_store_error(
        &mut self,
        conn: ConnId,
        rid: &str,
        e: &StoreError,
        now_ms: u64,
    ) -> Vec<Action> {
        self.twin_error(
            conn,
            rid,
            ErrorCode::ServerError,
            &format!("store: {e}"),
            now_ms,
        )
    }

    /// An injected twin failure, if one is pending: the error answer to send instead.
    pub(super) fn twin_fault(
        &mut self,
        conn: ConnId,
        rid: &str,
        now_ms: u64,
    ) -> Option<Vec<Action>> {
        let code = self.faults.take(FaultOp::Twin)?;
        Some(self.twin_error(conn, rid, code, "fault injection", now_ms))
    }

    pub(super) fn twin_get(&mut self, conn: ConnId, rid: &str, now_ms: u64) -> Vec<Action> {
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
            Err(e) => self.twin_store_error(conn, rid, &e, now_ms),
        }
    }

    pub(super) fn twin_patch(
        &mut self,
        conn: ConnId,
        rid: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Vec<Action> {
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
            Err(e) => return self.twin_store_error(conn, rid, &e, now_ms),
        };
        match twin
            .reported
            .apply_patch(&patch, &iso(now_ms), "reported", false)
        {
            Ok(version) => {
                twin.version += 1;
                if let Err(e) = self.store.put_twin(id.device.as_str(), module, &twin) {
                    return self.twin_store_error(conn, rid, &e, now_ms);
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

    pub(super) fn allowed_filter(id: &Identity, f: &str) -> bool {
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

    pub(super) fn subscribe(&mut self, conn: ConnId, s: Subscribe, now_ms: u64) -> Vec<Action> {
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

    pub(super) fn puback(&mut self, conn: ConnId, pid: PacketId, now_ms: u64) -> Vec<Action> {
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
    pub(super) fn deliver_c2d(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
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

    pub(super) fn drop_calls_of(&mut self, conn: ConnId) {
        self.calls.retain(|_, pc| pc.conn != conn);
    }

    /// The socket of `conn` ended. Publishes the will unless `graceful` (DISCONNECT).
    pub fn closed(&mut self, conn: ConnId, graceful: bool, now_ms: u64) -> Vec<Action> {
        self.dps_closed(conn);
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
                    if let Ok(Some(ev)) = self.store_event(
                        &identity,
                        &props,
                        &w.message,
                        &extra,
                        c.model_id.as_deref(),
                        c.hub_scoped,
                        &c.generation_id,
                        now_ms,
                    ) {
                        out.push(Action::Event(Box::new(ev)));
                    }
                }
            }
        }
        out
    }
}

/// A stored message's properties as the hub's JSON text, `{"system": {..}, "application":
/// {..}, "stamps": {..}}`, written straight out: this runs for every message, and building
/// `serde_json` maps first cost two allocations a property. A name given twice keeps its
/// first place and its last value (as a JSON map built by inserting would).
fn properties_json<'a>(
    system: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    application: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    stamps: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    json_section(&mut out, "system", system);
    out.push(b',');
    json_section(&mut out, "application", application);
    out.push(b',');
    json_section(&mut out, "stamps", stamps);
    out.push(b'}');
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// `"name":{..}` of [`properties_json`].
fn json_section<'a>(
    out: &mut Vec<u8>,
    name: &str,
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) {
    let mut kept: Vec<(&str, Option<&str>)> = Vec::new();
    for (k, v) in items {
        match kept.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => kept.push((k, v)),
        }
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":{");
    for (i, (k, v)) in kept.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod properties_tests {
    use serde_json::{json, Map, Value};

    type Items<'a> = Vec<(&'a str, Option<&'a str>)>;

    /// What building `serde_json` maps makes of the same properties.
    fn by_maps(system: &Items, application: &Items, stamps: &Items) -> String {
        let map = |items: &Items| -> Map<String, Value> {
            let mut m = Map::new();
            for (k, v) in items {
                m.insert(
                    k.to_string(),
                    v.map_or(Value::Null, |v| Value::String(v.into())),
                );
            }
            m
        };
        json!({"system": map(system), "application": map(application), "stamps": map(stamps)})
            .to_string()
    }

    #[test]
    fn the_text_is_what_json_maps_make_of_the_same_properties() {
        let cases: Vec<(Items, Items, Items)> = vec![
            (vec![], vec![], vec![]),
            (
                vec![
                    ("contentType", Some("application/json")),
                    ("messageId", Some("m-1")),
                ],
                vec![
                    ("zone", Some("north \"wing\"")),
                    ("flag", None),
                    ("zone", Some("south")),
                    ("mqtt-retain", Some("true")),
                ],
                vec![
                    ("iothub-connection-device-id", Some("d1")),
                    ("iothub-enqueuedtime", Some("2026-11-30T00:00:00.000Z")),
                ],
            ),
            (
                vec![],
                vec![
                    ("ünïcode\u{1}\n", Some("tab\there \\ slash / é")),
                    ("emoji", Some("🌡")),
                ],
                vec![(
                    "iothub-connection-auth-method",
                    Some(r#"{"scope":"device","type":"sas","issuer":"iothub"}"#),
                )],
            ),
        ];
        for (sys, app, st) in &cases {
            let text = super::properties_json(sys.clone(), app.clone(), st.clone());
            assert_eq!(text, by_maps(sys, app, st));
            let _: Value = serde_json::from_str(&text).expect("valid JSON");
        }
    }
}
