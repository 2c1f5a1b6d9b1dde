//! What the panels show, as one plain value: [`DeviceView::apply`] folds each session
//! [`Event`] into it. No web-sys, no signals, no clock (time is passed in), so it is tested
//! natively; the browser glue only feeds it and hands the UI a read-only signal of it.
//!
//! Every list is a bounded [`Ring`]: the oldest entries are dropped first and counted, and
//! each entry carries a stable local id for keyed rendering.

use std::collections::VecDeque;

use serde_json::Value;
use twinscope_proto::iothub::twin::TwinDocument;
use twinscope_proto::session::{C2dMessage, Event, MessageId, MethodCall, RequestId, State};
use twinscope_proto::traffic::{Captured, Pair, Pairing, Record};

use super::ConnStatus;

/// C2D messages kept.
pub const C2D_LIMIT: usize = 200;
/// Desired-property updates kept.
pub const DESIRED_LIMIT: usize = 200;
/// Pending method calls kept (the hub times calls out long before this fills).
pub const METHOD_LIMIT: usize = 100;
/// Packets kept in the traffic inspector.
pub const TRAFFIC_LIMIT: usize = 5000;
/// Telemetry messages kept in the send history.
pub const HISTORY_LIMIT: usize = 50;

/// How many entries each list of a [`DeviceView`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sent telemetry.
    pub history: usize,
    /// C2D messages.
    pub c2d: usize,
    /// Desired updates.
    pub desired: usize,
    /// Answered or dropped method calls.
    pub past_calls: usize,
    /// Packets.
    pub traffic: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            history: HISTORY_LIMIT,
            c2d: C2D_LIMIT,
            desired: DESIRED_LIMIT,
            past_calls: METHOD_LIMIT,
            traffic: TRAFFIC_LIMIT,
        }
    }
}

impl Limits {
    /// Small lists for a fleet member: counters matter, not history.
    pub fn small() -> Limits {
        Limits {
            history: 5,
            c2d: 5,
            desired: 5,
            past_calls: 5,
            traffic: 20,
        }
    }
}

/// A bounded list, oldest first, that drops (and counts) its oldest entry when full.
#[derive(Clone, Debug, PartialEq)]
pub struct Ring<T> {
    items: VecDeque<Entry<T>>,
    cap: usize,
    dropped: u64,
    revision: u64,
}

/// One entry with its stable local id.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<T> {
    /// Unique within a [`DeviceView`], in arrival order.
    pub id: u64,
    /// Milliseconds since 1970 when it arrived.
    pub at: u64,
    /// The entry.
    pub value: T,
}

impl<T> Ring<T> {
    /// An empty ring holding at most `cap` entries.
    pub fn new(cap: usize) -> Ring<T> {
        Ring {
            items: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
            revision: 0,
        }
    }

    /// Changes each time the ring changes: the UI re-reads a list only when it moved.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn push(&mut self, id: u64, at: u64, value: T) {
        self.revision += 1;
        if self.items.len() == self.cap {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(Entry { id, at, value });
    }

    /// The entry with this id, if still kept (ids increase, so this is a binary search).
    pub fn get(&self, id: u64) -> Option<&Entry<T>> {
        let i = self.items.binary_search_by_key(&id, |e| e.id).ok()?;
        self.items.get(i)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Entry<T>> {
        let i = self.items.binary_search_by_key(&id, |e| e.id).ok()?;
        self.revision += 1;
        self.items.get_mut(i)
    }

    /// Entries, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry<T>> {
        self.items.iter()
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entries dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The newest entry.
    pub fn last_mut(&mut self) -> Option<&mut Entry<T>> {
        self.revision += 1;
        self.items.back_mut()
    }

    /// Removes every entry (the count of dropped ones stays).
    pub fn clear(&mut self) {
        self.revision += 1;
        self.items.clear();
    }

    /// Removes the entries `keep` says no to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry<T>) -> bool) {
        self.revision += 1;
        self.items.retain(|e| keep(e));
    }

    /// Entries newest first, cloned, for rendering.
    pub fn newest_first(&self) -> Vec<Entry<T>>
    where
        T: Clone,
    {
        self.items.iter().rev().cloned().collect()
    }
}

/// A desired-property update.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredEntry {
    /// Its `$version`.
    pub version: u64,
    /// The patch as the hub sent it.
    pub patch: Value,
    /// Versions were skipped before it, so the twin was fetched again.
    pub gap: bool,
}

/// What became of a method call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Answered with this status and payload.
    Answered {
        /// The status sent.
        status: i32,
        /// The payload sent.
        payload: String,
        /// The rule that answered, or `None` when the user did.
        rule: Option<String>,
    },
    /// The connection was lost before it was answered: the hub dropped the call.
    Dropped,
}

/// A method call that is no longer pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastCall {
    /// The call.
    pub call: MethodCall,
    /// What became of it.
    pub outcome: CallOutcome,
    /// How long it waited (ms).
    pub waited_ms: u64,
}

/// A telemetry message the user sent, for the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The session's id for it.
    pub message: MessageId,
    /// Bytes counted against the 256 KB limit.
    pub size: usize,
    /// Its properties, one line.
    pub props: String,
    /// Written to the socket (false while queued).
    pub sent: bool,
    /// Acknowledged by the hub (QoS 1).
    pub acked: bool,
}

/// A generator run's counts: only the messages the run sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunStats {
    /// When it started (ms).
    pub started_at: u64,
    /// When it stopped (ms), once it has.
    pub ended_at: Option<u64>,
    /// Messages written to the socket.
    pub sent: u64,
    /// QoS 1 messages acknowledged.
    pub acked: u64,
    /// Messages refused before sending (invalid, queue full).
    pub failed: u64,
    /// Bytes counted against the size limit, summed.
    pub bytes: u64,
    /// The run's messages not yet finished: (id, waits for a PUBACK).
    open: std::collections::HashMap<MessageId, bool>,
}

impl RunStats {
    /// Messages a second since the start (until `now` or the end).
    pub fn rate(&self, now: u64) -> f64 {
        let end = self.ended_at.unwrap_or(now);
        let secs = end.saturating_sub(self.started_at) as f64 / 1000.0;
        if secs <= 0.0 {
            0.0
        } else {
            self.sent as f64 / secs
        }
    }
}

/// One packet in the traffic inspector: the packet, decoded when first shown, and once
/// known the request it answered or the answer it got.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficEntry {
    /// The packet as the inspector keeps it.
    pub packet: Captured,
    /// Its request or answer, and the time between.
    pub pair: Option<Pair>,
}

impl TrafficEntry {
    /// The packet, decoded (on first use).
    pub fn record(&self) -> &Record {
        self.packet.record()
    }
}

/// Everything the panels show about the device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceView {
    /// The session's state.
    pub state: State,
    /// Why the last connection ended, while reconnecting.
    pub lost_because: Option<String>,
    /// The hub's refusal, explained, when it refused the connection.
    pub refusal: Option<String>,
    /// The last error to show, in words.
    pub error: Option<String>,
    /// When the current token expires (ms).
    pub token_expiry: Option<u64>,
    /// When the token was last renewed without the user (ms).
    pub renewed_at: Option<u64>,
    /// Connections the hub accepted (more than one: the session reconnected).
    pub connects: u64,
    /// Telemetry messages written to the socket.
    pub sent: u64,
    /// QoS 1 telemetry acknowledged by the hub.
    pub acked: u64,
    /// Telemetry the session refused to send (invalid, too large, queue full).
    pub failed: u64,
    /// The last telemetry messages sent, with what became of them.
    pub history: Ring<SentMessage>,
    /// Cloud-to-device messages received.
    pub c2d: Ring<C2dMessage>,
    /// The last twin document, kept current with reported patches and desired updates.
    pub twin: Option<TwinDocument>,
    /// Desired-property updates.
    pub desired: Ring<DesiredEntry>,
    /// What the hub said to the last reported patch: its new version, or why not.
    pub last_patch: Option<Result<u64, String>>,
    /// Method calls not yet answered.
    pub methods: Ring<MethodCall>,
    /// Method calls answered or dropped, newest last.
    pub past_calls: Ring<PastCall>,
    /// Packets both ways.
    pub traffic: Ring<TrafficEntry>,
    /// The telemetry generator's current (or last) run.
    pub run: Option<RunStats>,
    /// Reported patches sent and not yet answered, by request.
    patches: Vec<(RequestId, Value)>,
    /// Requests in the traffic waiting for their answers.
    pairing: Pairing,
    /// The list sizes.
    limits: Limits,
    next_id: u64,
}

impl Default for DeviceView {
    fn default() -> Self {
        DeviceView::new()
    }
}

impl DeviceView {
    /// Nothing connected yet.
    pub fn new() -> DeviceView {
        DeviceView::with_limits(Limits::default())
    }

    /// A view whose lists hold at most what `l` says (a fleet member keeps small ones).
    pub fn with_limits(l: Limits) -> DeviceView {
        DeviceView {
            state: State::Disconnected,
            lost_because: None,
            refusal: None,
            error: None,
            token_expiry: None,
            renewed_at: None,
            connects: 0,
            sent: 0,
            acked: 0,
            failed: 0,
            history: Ring::new(l.history),
            c2d: Ring::new(l.c2d),
            twin: None,
            desired: Ring::new(l.desired),
            last_patch: None,
            methods: Ring::new(METHOD_LIMIT),
            past_calls: Ring::new(l.past_calls),
            traffic: Ring::new(l.traffic),
            limits: l,
            run: None,
            patches: Vec::new(),
            pairing: Pairing::default(),
            next_id: 1,
        }
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The header's status word.
    pub fn status(&self) -> ConnStatus {
        match self.state {
            State::Disconnected => ConnStatus::Disconnected,
            State::Connecting => ConnStatus::Connecting,
            State::Connected => ConnStatus::Connected,
            State::Reconnecting { .. } => ConnStatus::Reconnecting,
        }
    }

    /// The status in words, always true: the state, and while reconnecting why and when
    /// the next attempt is; when refused, the hub's refusal explained.
    pub fn status_text(&self, now: u64) -> String {
        match (self.state, &self.refusal) {
            (State::Reconnecting { retry_at, attempt }, _) => {
                let wait = retry_at.saturating_sub(now).div_ceil(1000);
                let why = self
                    .lost_because
                    .as_deref()
                    .unwrap_or("the connection was lost");
                format!("reconnecting: {why}; attempt {attempt}, next in {wait} s")
            }
            (State::Disconnected, Some(refusal)) => format!("disconnected: {refusal}"),
            (s, _) => s.label().to_string(),
        }
    }

    /// The session was given a token expiring at `expiry`; `renewed` when it replaced one
    /// without the user asking.
    pub fn token_supplied(&mut self, expiry: Option<u64>, now: u64, renewed: bool) {
        self.token_expiry = expiry;
        if renewed {
            self.renewed_at = Some(now);
        }
    }

    /// A reported patch was sent as `request` (to apply it when the hub accepts it).
    pub fn patch_sent(&mut self, request: RequestId, patch: Value) {
        self.patches.push((request, patch));
    }

    /// The transport ended for `why` (a reason the session did not see).
    pub fn connection_lost(&mut self, why: String) {
        self.lost_because = Some(why.clone());
        self.error = Some(why);
    }

    /// The user's message `message` was accepted by the session (sent or queued).
    pub fn telemetry_queued(&mut self, message: MessageId, size: usize, props: String, now: u64) {
        self.queued(message, size, props, now, None);
    }

    /// A message of the generator's run was queued (`qos1`: it waits for a PUBACK).
    pub fn run_message_queued(
        &mut self,
        message: MessageId,
        size: usize,
        props: String,
        now: u64,
        qos1: bool,
    ) {
        self.queued(message, size, props, now, Some(qos1));
    }

    /// A generator run starts now.
    pub fn run_started(&mut self, now: u64) {
        self.run = Some(RunStats {
            started_at: now,
            ..RunStats::default()
        });
    }

    /// The generator run stopped (finished or by the user).
    pub fn run_stopped(&mut self, now: u64) {
        if let Some(r) = &mut self.run {
            r.ended_at.get_or_insert(now);
        }
    }

    /// A message of the run was refused before sending.
    pub fn run_message_refused(&mut self) {
        self.failed += 1;
        if let Some(r) = &mut self.run {
            r.failed += 1;
        }
    }

    fn queued(
        &mut self,
        message: MessageId,
        size: usize,
        props: String,
        now: u64,
        run: Option<bool>,
    ) {
        if let (Some(qos1), Some(r)) = (run, &mut self.run) {
            r.open.insert(message, qos1);
            r.bytes += size as u64;
        }
        let id = self.id();
        self.history.push(
            id,
            now,
            SentMessage {
                message,
                size,
                props,
                sent: false,
                acked: false,
            },
        );
    }

    /// The session refused a message.
    pub fn telemetry_refused(&mut self) {
        self.failed += 1;
    }

    fn history_entry(&mut self, message: MessageId) -> Option<&mut SentMessage> {
        self.history.revision += 1;
        self.history
            .items
            .iter_mut()
            .rev()
            .find(|e| e.value.message == message)
            .map(|e| &mut e.value)
    }

    /// The user answered the call `rid`: it moves to the history with the answer.
    pub fn answered(
        &mut self,
        rid: &str,
        status: i32,
        payload: &[u8],
        now: u64,
        rule: Option<String>,
    ) {
        let payload = String::from_utf8_lossy(payload).into_owned();
        self.finish_calls(
            now,
            |c| c.rid == rid,
            || CallOutcome::Answered {
                status,
                payload: payload.clone(),
                rule: rule.clone(),
            },
        );
    }

    fn finish_calls(
        &mut self,
        now: u64,
        which: impl Fn(&MethodCall) -> bool,
        outcome: impl Fn() -> CallOutcome,
    ) {
        let done: Vec<Entry<MethodCall>> = self
            .methods
            .iter()
            .filter(|e| which(&e.value))
            .cloned()
            .collect();
        self.methods.retain(|e| !which(&e.value));
        for e in done {
            let id = self.id();
            self.past_calls.push(
                id,
                now,
                PastCall {
                    waited_ms: now.saturating_sub(e.at),
                    call: e.value,
                    outcome: outcome(),
                },
            );
        }
    }

    /// The user cleared the C2D inbox.
    pub fn clear_c2d(&mut self) {
        self.c2d.clear();
    }

    /// Starts over for a new connection string (counts and lists cleared).
    pub fn reset(&mut self) {
        *self = DeviceView {
            next_id: self.next_id,
            ..DeviceView::with_limits(self.limits)
        };
    }

    /// [`DeviceView::apply`], taking the event: a packet crossing the transport is kept
    /// as it is, not copied.
    pub fn take(&mut self, e: Event, now: u64) {
        match e {
            Event::Traffic {
                outbound,
                at,
                packet,
                size,
            } => self.traffic(Captured::new(packet, outbound, at, size)),
            e => self.apply(&e, now),
        }
    }

    fn traffic(&mut self, packet: Captured) {
        let id = self.id();
        let pair = self.pairing.observe(id, &packet);
        if let Some(p) = pair {
            if let Some(req) = self.traffic.get_mut(p.request) {
                req.value.pair = Some(p);
            }
        }
        let at = packet.at();
        self.traffic.push(id, at, TrafficEntry { packet, pair });
    }

    /// Folds one session event into the view. `now` is when it happened (ms).
    pub fn apply(&mut self, e: &Event, now: u64) {
        match e {
            Event::State(s) => {
                self.state = *s;
                if *s == State::Connected {
                    self.lost_because = None;
                }
            }
            Event::Connected { .. } => {
                self.connects += 1;
                self.error = None;
                self.refusal = None;
            }
            Event::ConnectRefused { explanation, .. } => {
                self.refusal = Some(explanation.clone());
                self.error = Some(explanation.clone());
            }
            Event::TelemetrySent(m) => {
                self.sent += 1;
                if let Some(r) = &mut self.run {
                    if let Some(qos1) = r.open.get(m).copied() {
                        r.sent += 1;
                        if !qos1 {
                            r.open.remove(m);
                        }
                    }
                }
                if let Some(h) = self.history_entry(*m) {
                    h.sent = true;
                }
            }
            Event::TelemetryAcked(m) => {
                self.acked += 1;
                if let Some(r) = &mut self.run {
                    if r.open.remove(m).is_some() {
                        r.acked += 1;
                    }
                }
                if let Some(h) = self.history_entry(*m) {
                    h.acked = true;
                }
            }
            Event::C2d(m) => {
                let id = self.id();
                self.c2d.push(id, now, m.clone());
            }
            Event::Twin {
                result: Ok(doc), ..
            } => self.twin = Some(doc.clone()),
            Event::Twin { result: Err(e), .. } => {
                self.error = Some(format!("twin request failed: {}", e.message));
            }
            Event::ReportedPatched { request, result } => {
                let sent = self
                    .patches
                    .iter()
                    .position(|(r, _)| r == request)
                    .map(|i| self.patches.remove(i).1);
                match result {
                    Ok(version) => {
                        if let (Some(t), Some(patch)) =
                            (self.twin.as_mut(), sent.as_ref().and_then(Value::as_object))
                        {
                            t.apply_reported(patch, *version);
                        }
                        self.last_patch = Some(Ok(*version));
                    }
                    Err(e) => {
                        let why = match e.status {
                            Some(s) => format!("the hub refused the patch ({s}): {}", e.message),
                            None => format!("the patch got no answer: {}", e.message),
                        };
                        self.last_patch = Some(Err(why.clone()));
                        self.error = Some(format!("reported patch failed: {}", e.message));
                    }
                }
            }
            Event::DesiredUpdate { version, patch } => {
                if let (Some(t), Some(p)) = (self.twin.as_mut(), patch.as_object()) {
                    t.apply_desired(p, *version);
                }
                let id = self.id();
                self.desired.push(
                    id,
                    now,
                    DesiredEntry {
                        version: *version,
                        patch: patch.clone(),
                        gap: false,
                    },
                );
            }
            Event::TwinResync { reason, .. } => {
                // The session refetches right after the update that showed the gap.
                if *reason == "version gap" {
                    if let Some(last) = self.desired.last_mut() {
                        last.value.gap = true;
                    }
                }
            }
            Event::MethodCall(call) => {
                let id = self.id();
                self.methods.push(id, now, call.clone());
            }
            Event::Traffic {
                outbound,
                at,
                packet,
                size,
            } => self.traffic(Captured::new(packet.clone(), *outbound, *at, *size)),
            Event::Error(m) => {
                if matches!(self.state, State::Connected | State::Connecting) {
                    self.lost_because = Some(m.clone());
                }
                self.error = Some(m.clone());
            }
            Event::CloseTransport => {
                self.pairing.reset();
                // Calls the hub can no longer route an answer to are dropped by it.
                self.finish_calls(now, |_| true, || CallOutcome::Dropped);
            }
            Event::OpenTransport | Event::TokenNeeded => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinscope_proto::iothub::PropertyBag;
    use twinscope_proto::mqtt::{ConnectReturnCode, Packet};
    use twinscope_proto::session::RequestError;

    fn c2d(body: &str) -> Event {
        Event::C2d(C2dMessage {
            props: PropertyBag::default(),
            body: body.as_bytes().to_vec(),
            input: None,
        })
    }

    #[test]
    fn rings_keep_the_newest_count_the_dropped_and_keep_ids() {
        let mut v = DeviceView::new();
        for i in 0..C2D_LIMIT + 5 {
            v.apply(&c2d(&format!("m{i}")), 1000 + i as u64);
        }
        assert_eq!(v.c2d.len(), C2D_LIMIT);
        assert_eq!(v.c2d.dropped(), 5);
        let first = v.c2d.iter().next().unwrap();
        assert_eq!(first.value.body, b"m5");
        assert_eq!(first.at, 1005);
        let ids: Vec<u64> = v.c2d.iter().map(|e| e.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "stable, increasing ids"
        );
        let last_id = *ids.last().unwrap();
        v.apply(&c2d("more"), 9999);
        assert_eq!(v.c2d.iter().last().unwrap().id, last_id + 1);
        let rev = v.c2d.revision();
        v.apply(&Event::TelemetrySent(1), 0);
        assert_eq!(
            v.c2d.revision(),
            rev,
            "other events leave the list's revision alone"
        );
        v.clear_c2d();
        assert_ne!(v.c2d.revision(), rev);
        assert!(v.c2d.is_empty());
        assert_eq!(
            v.c2d.dropped(),
            6,
            "clearing does not forget what was dropped"
        );
    }

    #[test]
    fn status_words_tell_the_truth() {
        let mut v = DeviceView::new();
        assert_eq!(v.status_text(0), "disconnected");
        v.apply(&Event::State(State::Connecting), 0);
        v.apply(&Event::State(State::Connected), 0);
        assert_eq!(v.status(), ConnStatus::Connected);
        v.apply(
            &Event::Error("no PINGRESP from the hub: the connection is dead".into()),
            10,
        );
        v.apply(
            &Event::State(State::Reconnecting {
                attempt: 2,
                retry_at: 5_500,
            }),
            10,
        );
        assert_eq!(
            v.status_text(1_000),
            "reconnecting: no PINGRESP from the hub: the connection is dead; attempt 2, next in 5 s"
        );
        v.apply(&Event::State(State::Connected), 6_000);
        assert_eq!(v.lost_because, None);
        // A refusal is explained in words and stays in the status.
        let why = twinscope_proto::session::explain_refusal(ConnectReturnCode::NotAuthorized);
        v.apply(
            &Event::ConnectRefused {
                code: ConnectReturnCode::NotAuthorized,
                explanation: why.clone(),
            },
            7_000,
        );
        v.apply(&Event::State(State::Disconnected), 7_000);
        assert!(v
            .status_text(7_000)
            .starts_with("disconnected: the hub refused"));
        assert!(v.status_text(7_000).contains("clock"));
    }

    #[test]
    fn renewals_are_noted_and_gaps_marked() {
        let mut v = DeviceView::new();
        v.token_supplied(Some(60_000), 0, false);
        assert_eq!(v.renewed_at, None);
        v.token_supplied(Some(108_000), 48_000, true);
        assert_eq!(
            (v.token_expiry, v.renewed_at),
            (Some(108_000), Some(48_000))
        );

        v.apply(
            &Event::DesiredUpdate {
                version: 2,
                patch: serde_json::json!({"a": 1, "$version": 2}),
            },
            1,
        );
        v.apply(
            &Event::DesiredUpdate {
                version: 5,
                patch: serde_json::json!({"a": 4, "$version": 5}),
            },
            2,
        );
        v.apply(
            &Event::TwinResync {
                request: 9,
                reason: "version gap",
            },
            2,
        );
        let marks: Vec<(u64, bool)> = v
            .desired
            .iter()
            .map(|e| (e.value.version, e.value.gap))
            .collect();
        assert_eq!(marks, vec![(2, false), (5, true)]);
        // A resync because of a (re)connection is not a gap.
        v.apply(
            &Event::TwinResync {
                request: 10,
                reason: "connected",
            },
            3,
        );
        assert!(v.desired.iter().last().unwrap().value.gap);
        assert_eq!(v.desired.len(), 2);
    }

    #[test]
    fn reported_patches_update_the_twin_and_failures_are_said() {
        let mut v = DeviceView::new();
        let doc = TwinDocument::parse(br#"{"desired":{"$version":1},"reported":{"$version":1}}"#)
            .unwrap();
        v.apply(
            &Event::Twin {
                request: 1,
                result: Ok(doc),
            },
            0,
        );
        v.patch_sent(2, serde_json::json!({"fw": "1.2"}));
        v.apply(
            &Event::ReportedPatched {
                request: 2,
                result: Ok(2),
            },
            1,
        );
        assert_eq!(v.last_patch, Some(Ok(2)));
        let t = v.twin.as_ref().unwrap();
        assert_eq!(
            (t.reported.version, &t.reported.properties["fw"]),
            (2, &serde_json::json!("1.2"))
        );
        v.patch_sent(3, serde_json::json!({"x": 1}));
        v.apply(
            &Event::ReportedPatched {
                request: 3,
                result: Err(RequestError {
                    status: Some(400),
                    message: "bad patch (400004)".into(),
                }),
            },
            2,
        );
        assert_eq!(
            v.error.as_deref(),
            Some("reported patch failed: bad patch (400004)")
        );
        assert_eq!(
            v.last_patch,
            Some(Err(
                "the hub refused the patch (400): bad patch (400004)".into()
            ))
        );
        assert_eq!(v.twin.as_ref().unwrap().reported.version, 2);
    }

    #[test]
    fn method_calls_wait_until_answered_or_the_connection_drops() {
        let mut v = DeviceView::new();
        let call = |rid: &str| {
            Event::MethodCall(MethodCall {
                name: "reboot".into(),
                rid: rid.into(),
                payload: b"{}".to_vec(),
            })
        };
        v.apply(&call("1"), 10);
        v.apply(&call("2"), 20);
        v.answered("1", 201, b"{\"ok\":true}", 25, Some("rule 1".into()));
        let left: Vec<&str> = v.methods.iter().map(|e| e.value.rid.as_str()).collect();
        assert_eq!(left, vec!["2"]);
        assert_eq!(v.methods.iter().next().unwrap().at, 20);
        v.apply(&Event::CloseTransport, 30);
        assert!(
            v.methods.is_empty(),
            "the hub drops calls of a lost connection"
        );
        let past: Vec<(&str, CallOutcome, u64)> = v
            .past_calls
            .iter()
            .map(|e| {
                (
                    e.value.call.rid.as_str(),
                    e.value.outcome.clone(),
                    e.value.waited_ms,
                )
            })
            .collect();
        assert_eq!(
            past,
            vec![
                (
                    "1",
                    CallOutcome::Answered {
                        status: 201,
                        payload: "{\"ok\":true}".into(),
                        rule: Some("rule 1".into()),
                    },
                    15
                ),
                ("2", CallOutcome::Dropped, 10),
            ]
        );
    }

    #[test]
    fn counts_history_and_traffic() {
        let mut v = DeviceView::new();
        v.telemetry_queued(1, 10, "$.ct=application/json".into(), 5);
        v.telemetry_queued(2, 20, String::new(), 6);
        v.telemetry_refused();
        v.apply(&Event::TelemetrySent(1), 0);
        v.apply(&Event::TelemetrySent(2), 0);
        v.apply(&Event::TelemetryAcked(1), 0);
        assert_eq!((v.sent, v.acked, v.failed), (2, 1, 1));
        let h: Vec<(MessageId, bool, bool)> = v
            .history
            .iter()
            .map(|e| (e.value.message, e.value.sent, e.value.acked))
            .collect();
        assert_eq!(h, vec![(1, true, true), (2, true, false)]);
        for i in 0..TRAFFIC_LIMIT + 1 {
            v.apply(
                &Event::Traffic {
                    outbound: i % 2 == 0,
                    at: i as u64,
                    packet: Packet::PingReq,
                    size: 2,
                },
                0,
            );
        }
        assert_eq!((v.traffic.len(), v.traffic.dropped()), (TRAFFIC_LIMIT, 1));
        assert_eq!(
            v.traffic.iter().next().unwrap().value.record().packet,
            "PINGREQ"
        );
        v.reset();
        assert_eq!((v.sent, v.traffic.len()), (0, 0));
    }

    #[test]
    fn traffic_pairs_requests_with_answers_on_both_entries() {
        let mut v = DeviceView::new();
        let ev = |outbound, at, packet| Event::Traffic {
            outbound,
            at,
            packet,
            size: 2,
        };
        v.apply(&ev(true, 10, Packet::PingReq), 10);
        // The glue hands events over (`take`): the same view as `apply`.
        v.take(ev(false, 14, Packet::PingResp), 14);
        let e: Vec<_> = v.traffic.iter().collect();
        let pair = e[1].value.pair.expect("the answer knows its request");
        assert_eq!(
            (pair.request, pair.answer, pair.latency_ms),
            (e[0].id, e[1].id, 4)
        );
        assert_eq!(e[0].value.pair, Some(pair), "the request knows its answer");
        assert_eq!(v.traffic.get(e[1].id).map(|x| x.at), Some(14));
        assert_eq!(e[1].value.record().packet, "PINGRESP");
        assert!(!e[1].value.record().outbound);
        assert!(v.traffic.get(9999).is_none());
    }

    #[test]
    fn a_run_counts_only_its_own_messages() {
        let mut v = DeviceView::new();
        v.run_started(1000);
        v.telemetry_queued(1, 10, String::new(), 1000);
        v.run_message_queued(2, 20, String::new(), 1000, true);
        v.run_message_queued(3, 30, String::new(), 1000, false);
        v.run_message_refused();
        for m in [1, 2, 3] {
            v.apply(&Event::TelemetrySent(m), 1100);
        }
        v.apply(&Event::TelemetryAcked(1), 1200);
        v.apply(&Event::TelemetryAcked(2), 1200);
        let r = v.run.clone().unwrap();
        assert_eq!((r.sent, r.acked, r.failed, r.bytes), (2, 1, 1, 50));
        assert_eq!((v.sent, v.acked, v.failed), (3, 2, 1));
        assert!(
            r.open.is_empty(),
            "QoS 0 is done when sent, QoS 1 when acknowledged"
        );
        assert!((r.rate(2000) - 2.0).abs() < 1e-9);
        v.run_stopped(3000);
        v.run_stopped(5000);
        assert_eq!(v.run.as_ref().unwrap().ended_at, Some(3000));
        assert!((v.run.as_ref().unwrap().rate(9999) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn small_limits_bound_every_list_and_survive_a_reset() {
        let mut v = DeviceView::with_limits(Limits::small());
        for i in 0..100u64 {
            v.apply(
                &Event::Traffic {
                    outbound: true,
                    at: i,
                    packet: Packet::PingReq,
                    size: 2,
                },
                i,
            );
            v.apply(&c2d("x"), i);
        }
        assert_eq!((v.traffic.len(), v.c2d.len()), (20, 5));
        v.reset();
        for i in 0..100u64 {
            v.apply(&c2d("y"), i);
        }
        assert_eq!(v.c2d.len(), 5, "a reset keeps the limits");
    }
}
