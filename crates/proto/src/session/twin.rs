//! Twin requests: GET and reported PATCH correlated by `$rid` with their deadlines, and the
//! desired version the device knows (newer updates applied, older ones ignored, a gap
//! refetches the twin). [`TwinRequests`] holds these invariants; the `impl DeviceSession`
//! below turns them into packets and events.

use super::*;

/// Prefix of the `$rid`s this session makes.
const RID_PREFIX: &str = "ts";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TwinOp {
    Get,
    Patch,
}

/// A twin request waiting for its answer.
pub(super) struct Pending {
    request: RequestId,
    op: TwinOp,
    deadline: u64,
}

/// What to do with a desired-properties update.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DesiredStep {
    /// Not newer than the known version: already applied.
    Stale,
    /// Apply it.
    Apply,
    /// Apply it, and fetch the whole twin: versions were skipped.
    ApplyAndRefetch,
}

/// Pending twin requests and the known desired version.
#[derive(Default)]
pub(super) struct TwinRequests {
    pending: HashMap<String, Pending>,
    next_request: RequestId,
    next_rid: u64,
    desired_version: Option<u64>,
}

impl TwinRequests {
    pub(super) fn new() -> TwinRequests {
        TwinRequests {
            next_request: 1,
            next_rid: 1,
            ..TwinRequests::default()
        }
    }

    /// Registers a request; returns its id and the `$rid` to send it with.
    fn start(&mut self, op: TwinOp, deadline: u64) -> (RequestId, String) {
        let request = self.next_request;
        self.next_request += 1;
        let rid = format!("{RID_PREFIX}{}", self.next_rid);
        self.next_rid += 1;
        self.pending.insert(
            rid.clone(),
            Pending {
                request,
                op,
                deadline,
            },
        );
        (request, rid)
    }

    /// The earliest deadline of a pending request.
    pub(super) fn earliest_deadline(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Removes and returns the requests whose deadline has passed.
    fn expired(&mut self, now: u64) -> Vec<Pending> {
        let rids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(rid, _)| rid.clone())
            .collect();
        rids.iter()
            .filter_map(|rid| self.pending.remove(rid))
            .collect()
    }

    /// The desired version the device knows.
    pub(super) fn desired_version(&self) -> Option<u64> {
        self.desired_version
    }

    /// Decides what an update of `version` means, and records it when newer.
    fn desired_update(&mut self, version: u64) -> DesiredStep {
        let known = self.desired_version;
        if known.is_some_and(|k| version <= k) {
            return DesiredStep::Stale;
        }
        self.desired_version = Some(version);
        if known.is_some_and(|k| version > k + 1) {
            DesiredStep::ApplyAndRefetch
        } else {
            DesiredStep::Apply
        }
    }
}

impl DeviceSession {
    fn twin_request(
        &mut self,
        now: u64,
        op: TwinOp,
        body: Vec<u8>,
    ) -> Result<RequestId, SendError> {
        if self.state != State::Connected {
            return Err(SendError::NotConnected);
        }
        let (request, rid) = self.twin.start(op, now + self.cfg.request_timeout_ms);
        let topic = match op {
            TwinOp::Get => Topic::TwinGet { rid },
            TwinOp::Patch => Topic::TwinPatchReported { rid },
        };
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

    /// Asks for the full twin again after `reason` (connected, a version gap).
    pub(super) fn resync_twin(&mut self, now: u64, reason: &'static str) {
        if let Ok(request) = self.twin_request(now, TwinOp::Get, Vec::new()) {
            self.events.push_back(Event::TwinResync { request, reason });
        }
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

    /// Fails the requests whose answer is overdue.
    pub(super) fn expire_twin_requests(&mut self, now: u64) {
        for p in self.twin.expired(now) {
            self.twin_failed(
                p,
                RequestError {
                    status: None,
                    message: "no answer from the hub in time".into(),
                },
            );
        }
    }

    /// Fails every pending request (the connection ended).
    pub(super) fn fail_twin_requests(&mut self, why: &str) {
        let all: Vec<Pending> = self.twin.pending.drain().map(|(_, p)| p).collect();
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

    pub(super) fn twin_response(
        &mut self,
        status: u16,
        rid: &str,
        version: Option<u64>,
        body: &[u8],
    ) {
        let Some(p) = self.twin.pending.remove(rid) else {
            return;
        };
        let error = |body: &[u8]| {
            let message = HubError::from_json(body)
                .map(|e| format!("{} ({})", e.message, e.error_code))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
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
                    self.twin.desired_version = Some(doc.desired.version);
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

    pub(super) fn desired(&mut self, now: u64, version: Option<u64>, body: &[u8]) {
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
        match self.twin.desired_update(version) {
            DesiredStep::Stale => {}
            DesiredStep::Apply => self
                .events
                .push_back(Event::DesiredUpdate { version, patch }),
            DesiredStep::ApplyAndRefetch => {
                self.events
                    .push_back(Event::DesiredUpdate { version, patch });
                self.resync_twin(now, "version gap");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_versions_apply_once_and_gaps_refetch() {
        let mut t = TwinRequests::new();
        assert_eq!(t.desired_update(3), DesiredStep::Apply, "nothing known yet");
        assert_eq!(t.desired_update(3), DesiredStep::Stale);
        assert_eq!(t.desired_update(2), DesiredStep::Stale);
        assert_eq!(t.desired_update(4), DesiredStep::Apply);
        assert_eq!(t.desired_update(7), DesiredStep::ApplyAndRefetch);
        assert_eq!(t.desired_version(), Some(7));
    }

    #[test]
    fn requests_expire_by_deadline_only() {
        let mut t = TwinRequests::new();
        let (a, rid_a) = t.start(TwinOp::Get, 100);
        let (b, rid_b) = t.start(TwinOp::Patch, 200);
        assert_ne!((a, &rid_a), (b, &rid_b));
        assert_eq!(t.earliest_deadline(), Some(100));
        let gone: Vec<RequestId> = t.expired(150).iter().map(|p| p.request).collect();
        assert_eq!(gone, vec![a]);
        assert_eq!(t.earliest_deadline(), Some(200));
    }
}
