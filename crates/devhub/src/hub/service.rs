//! The service side of the hub: identities, twins, direct methods and C2D messages as the
//! service REST API asks for them, as typed operations on records; `http.rs` turns them
//! into the wire format.

use super::*;
use crate::rest::{
    AuthenticationView, Capabilities, IdentityRequest, IdentityStatus, IdentityView, SymmetricKeys,
    TwinPropertiesView, TwinUpdate, TwinView, X509Thumbprint, NEVER,
};

fn connection_state(connected: bool) -> &'static str {
    if connected {
        "Connected"
    } else {
        "Disconnected"
    }
}

fn status_of(r: &IdentityRecord) -> IdentityStatus {
    if r.status == "disabled" {
        IdentityStatus::Disabled
    } else {
        IdentityStatus::Enabled
    }
}

/// A page of query results.
#[derive(Debug)]
pub struct QueryPage {
    /// The results.
    pub items: Vec<Value>,
    /// Where the next page starts, if there is one.
    pub next: Option<usize>,
    /// Whole twins (`SELECT *`), else projections or a count.
    pub twins: bool,
}

/// An If-Match header against the current etag: absent, `*` (quoted or not, as the SDKs
/// send it) or the same etag (quoted or not, weak or strong) passes; another is 412.
fn check_if_match(if_match: Option<&str>, current: &str, what: &str) -> Result<(), ServiceError> {
    let Some(m) = if_match else { return Ok(()) };
    let m = m.trim();
    let m = m.strip_prefix("W/").unwrap_or(m).trim_matches('"');
    if m == "*" || m == current {
        return Ok(());
    }
    Err(ServiceError::new(
        ErrorCode::PreconditionFailed,
        format!("{what} does not match (If-Match {}, current {current}): read the current one and try again", twinscope_proto::text::Quoted(m)),
    ))
}

impl Hub {
    /// Creates or updates an identity from the REST body. `if_match` is the request's
    /// If-Match header (`*` or an etag) for updates.
    pub fn put_identity(
        &mut self,
        device: &str,
        module: Option<&str>,
        req: &IdentityRequest,
        if_match: Option<&str>,
        now_ms: u64,
    ) -> Result<(IdentityView, Vec<Action>), ServiceError> {
        let id = parse_identity(device, module)?;
        let existing = self.store.identity(device, module)?;
        if let Some(e) = &existing {
            check_if_match(if_match, &etag(e.etag), "etag")?;
        }
        if existing.is_some() && if_match.is_none() {
            return Err(ServiceError::new(
                ErrorCode::DeviceAlreadyExists,
                format!("{id} already exists"),
            ));
        }
        let given = req
            .authentication
            .as_ref()
            .and_then(|a| a.symmetric_key.clone())
            .unwrap_or_default();
        let key = |name: &str,
                   given: Option<String>,
                   old: Option<&String>|
         -> Result<String, ServiceError> {
            match given.filter(|s| !s.is_empty()) {
                Some(k) => {
                    SymmetricKey::from_base64(&k).map_err(|_| {
                        ServiceError::new(
                            ErrorCode::ArgumentInvalid,
                            format!("{name} is not valid base64"),
                        )
                    })?;
                    Ok(k)
                }
                None => Ok(old.cloned().unwrap_or_else(generate_key)),
            }
        };
        let status = match req.status {
            Some(s) => s.as_str().to_string(),
            None => existing
                .as_ref()
                .map_or("enabled".to_string(), |e| e.status.clone()),
        };
        let rec = IdentityRecord {
            device_id: device.to_string(),
            module_id: module.map(str::to_string),
            primary_key: key(
                "primaryKey",
                given.primary_key,
                existing.as_ref().map(|e| &e.primary_key),
            )?,
            secondary_key: key(
                "secondaryKey",
                given.secondary_key,
                existing.as_ref().map(|e| &e.secondary_key),
            )?,
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
        Ok((self.identity_view(&rec), out))
    }

    /// The connections of `id`; for a device, its modules' connections too.
    pub(super) fn conns_of(&self, id: &Identity) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.identity == *id || (id.module.is_none() && c.identity.device == id.device)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// The REST view of an identity, or the hub's 400/404 answer.
    pub fn identity_of(
        &self,
        device: &str,
        module: Option<&str>,
    ) -> Result<IdentityView, ServiceError> {
        let id = parse_identity(device, module)?;
        let rec = self
            .store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        Ok(self.identity_view(&rec))
    }

    /// An identity as the REST API shows it.
    pub fn identity_view(&self, r: &IdentityRecord) -> IdentityView {
        let connected = parse_identity(&r.device_id, r.module_id.as_deref())
            .is_ok_and(|id| self.is_connected(&id));
        IdentityView {
            device_id: r.device_id.clone(),
            module_id: r.module_id.clone(),
            generation_id: r.generation_id.clone(),
            etag: etag(r.etag),
            connection_state: connection_state(connected),
            status: status_of(r),
            status_reason: None,
            connection_state_updated_time: NEVER,
            status_updated_time: NEVER,
            last_activity_time: NEVER,
            cloud_to_device_message_count: 0,
            authentication: AuthenticationView {
                symmetric_key: SymmetricKeys {
                    primary_key: Some(r.primary_key.clone()),
                    secondary_key: Some(r.secondary_key.clone()),
                },
                x509_thumbprint: X509Thumbprint::default(),
                kind: "sas",
            },
            capabilities: Capabilities::default(),
        }
    }

    /// Deletes an identity (and closes its connection).
    /// `GET /statistics/devices`: the devices in the registry (modules not counted), and
    /// how many are enabled and disabled.
    pub fn registry_statistics(&self) -> Result<Value, ServiceError> {
        let devices = self.store.devices()?;
        let enabled = devices.iter().filter(|d| d.status == "enabled").count();
        Ok(serde_json::json!({
            "totalDeviceCount": devices.len(),
            "enabledDeviceCount": enabled,
            "disabledDeviceCount": devices.len() - enabled,
        }))
    }

    /// `GET /statistics/service`: the devices connected now (a device counts once, its
    /// modules' connections not at all).
    pub fn service_statistics(&self) -> Value {
        let connected: std::collections::HashSet<&str> = self
            .by_client
            .values()
            .filter_map(|c| self.conns.get(c))
            .filter(|c| c.identity.module.is_none())
            .map(|c| c.identity.device.as_str())
            .collect();
        serde_json::json!({ "connectedDeviceCount": connected.len() })
    }

    /// `POST /devices/query`: what the query selects from the device twins (or the module
    /// twins), in id order, a page at a time: `skip` results skipped, at most `max`; with
    /// the next page's start when there is more, and whether the results are whole twins.
    pub fn query(&self, text: &str, skip: usize, max: usize) -> Result<QueryPage, ServiceError> {
        let q = super::query::parse(text)
            .map_err(|e| ServiceError::new(ErrorCode::ArgumentInvalid, format!("query: {e}")))?;
        let mut docs = Vec::new();
        let mut add = |device: &str, module: Option<&str>| -> Result<(), ServiceError> {
            let view = self.twin_view(device, module)?;
            docs.push(serde_json::to_value(view).unwrap_or_default());
            Ok(())
        };
        for d in self.store.devices()? {
            if q.modules {
                for m in self.store.modules(&d.device_id)? {
                    add(&d.device_id, m.module_id.as_deref())?;
                }
            } else {
                add(&d.device_id, None)?;
            }
        }
        let all = super::query::run(&q, docs);
        let total = all.len();
        let items: Vec<Value> = all.into_iter().skip(skip).take(max.max(1)).collect();
        let end = skip.saturating_add(items.len());
        Ok(QueryPage {
            items,
            next: (end < total).then_some(end),
            twins: q.select == super::query::Select::All,
        })
    }

    /// Deletes an identity (`if_match`: the request's If-Match header, `*` or an etag).
    pub fn delete_identity(
        &mut self,
        device: &str,
        module: Option<&str>,
        if_match: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Action>, ServiceError> {
        let id = parse_identity(device, module)?;
        let existing = self
            .store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        check_if_match(if_match, &etag(existing.etag), "etag")?;
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
    pub fn twin_view(&self, device: &str, module: Option<&str>) -> Result<TwinView, ServiceError> {
        let id = parse_identity(device, module)?;
        let rec = self
            .store
            .identity(device, module)?
            .ok_or_else(|| not_found(&id))?;
        let t = self
            .store
            .twin(device, module)?
            .ok_or_else(|| not_found(&id))?;
        Ok(TwinView {
            device_id: device.to_string(),
            module_id: module.map(str::to_string),
            etag: etag(t.version),
            device_etag: etag(rec.etag),
            status: status_of(&rec),
            status_update_time: NEVER,
            connection_state: connection_state(self.is_connected(&id)),
            last_activity_time: NEVER,
            cloud_to_device_message_count: 0,
            authentication_type: "sas",
            x509_thumbprint: X509Thumbprint::default(),
            model_id: self.model_ids.get(&id.client_id()).cloned(),
            version: t.version,
            tags: t.tags,
            properties: TwinPropertiesView {
                desired: t.desired.to_json(true),
                reported: t.reported.to_json(true),
            },
            capabilities: Capabilities::default(),
        })
    }

    /// PATCH (merge) or PUT (replace) of tags and desired properties. Connected devices
    /// subscribed to desired updates get the change.
    pub fn update_twin(
        &mut self,
        device: &str,
        module: Option<&str>,
        update: &TwinUpdate,
        replace: bool,
        if_match: Option<&str>,
        now_ms: u64,
    ) -> Result<(TwinView, Vec<Action>), ServiceError> {
        let id = parse_identity(device, module)?;
        let mut t = self
            .store
            .twin(device, module)?
            .ok_or_else(|| not_found(&id))?;
        check_if_match(if_match, &etag(t.version), "twin etag")?;
        let bad = |e: TwinError| ServiceError::new(ErrorCode::ArgumentInvalid, e.to_string());
        if let Some(tags_obj) = &update.tags {
            let tags = Value::Object(tags_obj.clone());
            twin::validate_patch(&tags).map_err(bad)?;
            let mut next = if replace {
                tags_obj.clone()
            } else {
                t.tags.as_object().cloned().unwrap_or_default()
            };
            if !replace {
                twin::merge_patch(&mut next, tags_obj);
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
        if let Some(desired) = update.properties.as_ref().and_then(|p| p.desired.as_ref()) {
            // `$version` and `$metadata` in the request are the caller's copy: ignore them.
            let clean: Map<String, Value> = desired
                .iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
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
        let lost = pushed.is_some() && self.faults.skip_desired.remove(&id.client_id());
        if let (Some((version, body)), false) = (pushed, lost) {
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
        Ok((self.twin_view(device, module)?, out))
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

    /// `POST /devices`: bulk registry operations, each an `ExportImportDevice` (`id`,
    /// `moduleId`, `importMode`, `eTag`, `status`, `authentication`, `tags`,
    /// `properties.desired`). Modes: `create` (fails if it exists), `update` (creates or
    /// overwrites), `updateIfMatchETag`, `delete`, `deleteIfMatchETag`. Each operation
    /// stands alone: the result lists the ones that failed, and is successful when none
    /// did.
    pub fn bulk_registry(
        &mut self,
        ops: &[Value],
        now_ms: u64,
    ) -> Result<(Value, Vec<Action>), ServiceError> {
        if ops.len() > 100 {
            return Err(ServiceError::new(
                ErrorCode::ArgumentInvalid,
                format!("{} operations: at most 100 in one request", ops.len()),
            ));
        }
        let mut errors = Vec::new();
        let mut actions = Vec::new();
        for op in ops {
            let device = op.get("id").and_then(Value::as_str).unwrap_or("");
            let module = op.get("moduleId").and_then(Value::as_str);
            let mode = op.get("importMode").and_then(Value::as_str).unwrap_or("");
            // What the mode needs of an existing identity's etag: nothing (create: it
            // must not exist), any, or the one given.
            let etag = op.get("eTag").and_then(Value::as_str).unwrap_or("");
            let r = match mode.to_ascii_lowercase().as_str() {
                "create" => self.bulk_put(op, device, module, None, &mut actions, now_ms),
                "update" => self.bulk_put(op, device, module, Some("*"), &mut actions, now_ms),
                "updateifmatchetag" => {
                    self.bulk_put(op, device, module, Some(etag), &mut actions, now_ms)
                }
                "delete" => self
                    .delete_identity(device, module, Some("*"), now_ms)
                    .map(|a| actions.extend(a)),
                "deleteifmatchetag" => self
                    .delete_identity(device, module, Some(etag), now_ms)
                    .map(|a| actions.extend(a)),
                _ => Err(ServiceError::new(
                    ErrorCode::ArgumentInvalid,
                    format!(
                        "importMode {} is not one of create, update, updateIfMatchETag, delete, deleteIfMatchETag",
                        twinscope_proto::text::Quoted(mode)
                    ),
                )),
            };
            if let Err(e) = r {
                errors.push(json!({
                    "deviceId": device,
                    "moduleId": module,
                    "errorCode": e.code.name(),
                    "errorStatus": e.message,
                    "operation": mode,
                }));
            }
        }
        Ok((
            json!({"isSuccessful": errors.is_empty(), "errors": errors, "warnings": []}),
            actions,
        ))
    }

    /// One create or update of a bulk request: the identity (`if_match` applies only if
    /// it exists), then its tags and desired properties, if the operation has any.
    fn bulk_put(
        &mut self,
        op: &Value,
        device: &str,
        module: Option<&str>,
        if_match: Option<&str>,
        actions: &mut Vec<Action>,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let req: IdentityRequest = serde_json::from_value(op.clone())
            .map_err(|e| ServiceError::new(ErrorCode::ArgumentInvalid, e.to_string()))?;
        let exists = self.store.identity(device, module)?.is_some();
        let (_, a) =
            self.put_identity(device, module, &req, if_match.filter(|_| exists), now_ms)?;
        actions.extend(a);
        let update: TwinUpdate = serde_json::from_value(op.clone()).unwrap_or_default();
        if update.tags.is_some()
            || update
                .properties
                .as_ref()
                .is_some_and(|p| p.desired.is_some())
        {
            let (_, a) = self.update_twin(device, module, &update, false, None, now_ms)?;
            actions.extend(a);
        }
        Ok(())
    }

    /// `DELETE /devices/{id}/commands`: drops every C2D message queued for the device,
    /// those delivered and not yet acknowledged included (a late PUBACK for one is
    /// ignored).
    pub fn purge_c2d(&mut self, device: &str) -> Result<Value, ServiceError> {
        let id = parse_identity(device, None)?;
        self.store
            .identity(device, None)?
            .ok_or_else(|| not_found(&id))?;
        let purged = self.store.purge_c2d(device)?;
        for c in self.conns.values_mut() {
            if c.identity.device == id.device && c.identity.module.is_none() {
                c.c2d_inflight.clear();
            }
        }
        Ok(json!({
            "deviceId": device,
            "moduleId": null,
            "totalMessagesPurged": purged,
        }))
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
