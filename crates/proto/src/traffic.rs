//! The traffic inspector's model: each packet kept as a [`Captured`] (the payload cut, the
//! SAS token blanked) and decoded into a [`Record`] only when it is shown, filtered or
//! exported; requests paired with their answers ([`Pairing`]), a [`Filter`] by kind and
//! text, and the NDJSON export. Pure: the page feeds it packets and renders what it says.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use crate::iothub::Topic;
use crate::mqtt::{Packet, QosPid};

/// A short, human description of a packet: its type and what it carries.
pub fn summarize(p: &Packet) -> String {
    let what = match p {
        Packet::Publish(p) => Some(publish_kind(&p.topic).1),
        _ => None,
    };
    summarize_as(p, what, None)
}

/// What a PUBLISH topic is, in the inspector's terms.
fn publish_kind(topic: &str) -> (Kind, &'static str) {
    match Topic::parse(topic) {
        Ok(Topic::Telemetry { .. }) => (Kind::Telemetry, "telemetry"),
        Ok(Topic::C2d { .. }) => (Kind::C2d, "C2D message"),
        Ok(Topic::ModuleInput { .. }) => (Kind::C2d, "module input"),
        Ok(Topic::TwinGet { .. }) => (Kind::Twin, "twin GET"),
        Ok(Topic::TwinPatchReported { .. }) => (Kind::Twin, "reported patch"),
        Ok(Topic::TwinResponse { .. }) => (Kind::Twin, "twin response"),
        Ok(Topic::TwinDesired { .. }) => (Kind::Twin, "desired update"),
        Ok(Topic::MethodRequest { .. }) => (Kind::Methods, "method call"),
        Ok(Topic::MethodResponse { .. }) => (Kind::Methods, "method response"),
        Err(_) => (Kind::Control, "message"),
    }
}

/// [`summarize`], with a PUBLISH's kind (`what`) already known, and its payload's full
/// length when the packet holds only a prefix of it.
fn summarize_as(p: &Packet, what: Option<&str>, payload_len: Option<usize>) -> String {
    match p {
        Packet::Connect(c) => format!(
            "CONNECT client {} keep-alive {} s{}",
            c.client_id,
            c.keep_alive,
            if c.clean_session {
                ", clean session"
            } else {
                ""
            }
        ),
        Packet::ConnAck(a) => format!(
            "CONNACK {}{}",
            a.code.description(),
            if a.session_present {
                ", session present"
            } else {
                ""
            }
        ),
        Packet::Publish(p) => {
            let what = what.unwrap_or("message");
            // Sized up front and written in place: one allocation for a summary made for
            // every packet.
            let mut s = String::with_capacity(48 + what.len() + p.topic.len());
            let dup = if p.dup { " DUP" } else { "" };
            let _ = write!(s, "PUBLISH {what} {}{dup} (", p.topic);
            let _ = match p.qospid {
                QosPid::AtMostOnce => s.write_str("QoS 0"),
                QosPid::AtLeastOnce(id) => write!(s, "QoS 1 pid {id}"),
                QosPid::ExactlyOnce(id) => write!(s, "QoS 2 pid {id}"),
            };
            let _ = write!(s, ", {} B)", payload_len.unwrap_or(p.payload.len()));
            s
        }
        Packet::PubAck(id) => format!("PUBACK pid {id}"),
        Packet::PubRec(id) => format!("PUBREC pid {id}"),
        Packet::PubRel(id) => format!("PUBREL pid {id}"),
        Packet::PubComp(id) => format!("PUBCOMP pid {id}"),
        Packet::Subscribe(s) => format!(
            "SUBSCRIBE pid {}: {}",
            s.pkid,
            s.filters
                .iter()
                .map(|f| format!("{} (QoS {})", f.filter, f.qos as u8))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Packet::SubAck(s) => format!("SUBACK pid {} ({} filters)", s.pkid, s.return_codes.len()),
        Packet::Unsubscribe(u) => format!("UNSUBSCRIBE pid {}: {}", u.pkid, u.filters.join(", ")),
        Packet::UnsubAck(id) => format!("UNSUBACK pid {id}"),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect => "DISCONNECT".into(),
    }
}

/// Payload bytes a record keeps (the preview and the export); the size is always exact.
pub const PAYLOAD_KEPT: usize = 4096;

/// What a packet is about, for the kind filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Device-to-cloud messages and their PUBACKs.
    Telemetry,
    /// Cloud-to-device messages (and module inputs).
    C2d,
    /// Twin GET, reported patches, answers and desired updates.
    Twin,
    /// Direct-method calls and answers.
    Methods,
    /// CONNECT, SUBSCRIBE, PING and the rest of the session's own packets.
    Control,
}

impl Kind {
    /// Every kind, in filter order.
    pub const ALL: [Kind; 5] = [
        Kind::Telemetry,
        Kind::C2d,
        Kind::Twin,
        Kind::Methods,
        Kind::Control,
    ];

    /// The word shown and used in the export.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::C2d => "c2d",
            Kind::Twin => "twin",
            Kind::Methods => "methods",
            Kind::Control => "control",
        }
    }

    /// The kind with this label.
    pub fn from_label(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// How a payload reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preview {
    /// No payload.
    Empty,
    /// JSON, pretty-printed.
    Json(String),
    /// UTF-8 text.
    Text(String),
    /// Binary: hex of the first bytes.
    Hex(String),
}

impl Preview {
    /// Reads `body` (possibly cut at [`PAYLOAD_KEPT`]).
    pub fn of(body: &[u8]) -> Preview {
        if body.is_empty() {
            return Preview::Empty;
        }
        match std::str::from_utf8(body) {
            Ok(s) => match serde_json::from_slice::<Value>(s.as_bytes()) {
                Ok(v) if v.is_object() || v.is_array() => Preview::Json(format!("{v:#}")),
                _ => Preview::Text(s.to_string()),
            },
            Err(_) => Preview::Hex(
                body.iter()
                    .take(256)
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }

    /// The text to show.
    pub fn text(&self) -> &str {
        match self {
            Preview::Empty => "",
            Preview::Json(s) | Preview::Text(s) | Preview::Hex(s) => s,
        }
    }
}

/// One packet as the inspector shows it. The CONNECT password (the SAS token) is never
/// kept: only that there was one, and its length.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Sent by the device (else received from the hub).
    pub outbound: bool,
    /// When (ms since 1970).
    pub at: u64,
    /// The MQTT packet type, e.g. `PUBLISH`.
    pub packet: &'static str,
    /// What it is about.
    pub kind: Kind,
    /// What it is in IoT Hub's terms (`telemetry`, `twin GET`, ...), for PUBLISH.
    pub what: Option<&'static str>,
    /// The topic (PUBLISH), or the filters (SUBSCRIBE).
    pub topic: Option<String>,
    /// The property bag from the topic, percent-decoded; for CONNECT its fields.
    pub props: Vec<(String, String)>,
    /// QoS, where the packet has one.
    pub qos: Option<u8>,
    /// Packet id, where the packet has one.
    pub pid: Option<u16>,
    /// Flags set: `DUP`, `RETAIN`, `clean session`, `session present`.
    pub flags: Vec<&'static str>,
    /// The payload's first [`PAYLOAD_KEPT`] bytes (shared with the kept packet).
    pub payload: Arc<Vec<u8>>,
    /// The payload's full length.
    pub payload_len: usize,
    /// The packet's size on the wire, when known.
    pub size: usize,
    /// The `$rid` of a twin or method request or answer.
    pub rid: Option<String>,
    /// One line: what it carries.
    pub summary: String,
}

impl Record {
    /// Decodes `p` for the inspector (`size` = bytes on the wire).
    pub fn new(p: &Packet, outbound: bool, at: u64, size: usize) -> Record {
        Record::of(p, outbound, at, size, None)
    }

    /// [`Record::new`] of a packet whose payload was taken out: `kept` is the payload (cut)
    /// and its full length.
    fn of(
        p: &Packet,
        outbound: bool,
        at: u64,
        size: usize,
        kept: Option<(&Arc<Vec<u8>>, usize)>,
    ) -> Record {
        let mut r = Record {
            outbound,
            at,
            packet: p.name(),
            kind: Kind::Control,
            what: None,
            topic: None,
            props: Vec::new(),
            qos: None,
            pid: None,
            flags: Vec::new(),
            payload: Arc::default(),
            payload_len: 0,
            size,
            rid: None,
            summary: String::new(),
        };
        match p {
            Packet::Connect(c) => {
                r.props.push(("client id".into(), c.client_id.clone()));
                if let Some(u) = &c.username {
                    r.props.push(("user name".into(), u.clone()));
                }
                if let Some(pw) = &c.password {
                    r.props.push((
                        "password".into(),
                        format!("SAS token, {} bytes (not shown)", pw.len()),
                    ));
                }
                r.props
                    .push(("keep-alive".into(), format!("{} s", c.keep_alive)));
                if let Some(w) = &c.last_will {
                    r.props.push(("will topic".into(), w.topic.clone()));
                    r.payload_len = w.message.len();
                    r.payload = Arc::new(w.message[..w.message.len().min(PAYLOAD_KEPT)].to_vec());
                }
                if c.clean_session {
                    r.flags.push("clean session");
                }
            }
            Packet::ConnAck(a) => {
                if a.session_present {
                    r.flags.push("session present");
                }
                r.props
                    .push(("return code".into(), a.code.description().into()));
            }
            Packet::Publish(pb) => {
                r.topic = Some(pb.topic.clone());
                let (qos, pid) = match pb.qospid {
                    QosPid::AtMostOnce => (0, None),
                    QosPid::AtLeastOnce(id) => (1, Some(id.get())),
                    QosPid::ExactlyOnce(id) => (2, Some(id.get())),
                };
                r.qos = Some(qos);
                r.pid = pid;
                if pb.dup {
                    r.flags.push("DUP");
                }
                if pb.retain {
                    r.flags.push("RETAIN");
                }
                r.payload_len = pb.payload.len();
                r.payload = Arc::new(pb.payload[..pb.payload.len().min(PAYLOAD_KEPT)].to_vec());
                let (kind, what) = match Topic::parse(&pb.topic) {
                    Ok(Topic::Telemetry { props, .. }) => {
                        r.props = props.into_display_pairs();
                        (Kind::Telemetry, "telemetry")
                    }
                    Ok(Topic::C2d { props, .. }) => {
                        r.props = props.into_display_pairs();
                        (Kind::C2d, "C2D message")
                    }
                    Ok(Topic::ModuleInput { props, input, .. }) => {
                        r.props = props.into_display_pairs();
                        r.props.insert(0, ("input".into(), input));
                        (Kind::C2d, "module input")
                    }
                    Ok(Topic::TwinGet { rid }) => {
                        r.rid = Some(rid);
                        (Kind::Twin, "twin GET")
                    }
                    Ok(Topic::TwinPatchReported { rid }) => {
                        r.rid = Some(rid);
                        (Kind::Twin, "reported patch")
                    }
                    Ok(Topic::TwinResponse {
                        status,
                        rid,
                        version,
                    }) => {
                        r.props.push(("status".into(), status.to_string()));
                        if let Some(v) = version {
                            r.props.push(("$version".into(), v.to_string()));
                        }
                        r.rid = Some(rid);
                        (Kind::Twin, "twin response")
                    }
                    Ok(Topic::TwinDesired { version }) => {
                        if let Some(v) = version {
                            r.props.push(("$version".into(), v.to_string()));
                        }
                        (Kind::Twin, "desired update")
                    }
                    Ok(Topic::MethodRequest { name, rid }) => {
                        r.props.push(("method".into(), name));
                        r.rid = Some(rid);
                        (Kind::Methods, "method call")
                    }
                    Ok(Topic::MethodResponse { status, rid }) => {
                        r.props.push(("status".into(), status.to_string()));
                        r.rid = Some(rid);
                        (Kind::Methods, "method response")
                    }
                    Err(_) => (Kind::Control, "message"),
                };
                r.kind = kind;
                r.what = Some(what);
                debug_assert_eq!(publish_kind(&pb.topic), (kind, what));
            }
            Packet::PubAck(id) => {
                r.pid = Some(id.get());
                r.kind = Kind::Telemetry;
            }
            Packet::PubRec(id) | Packet::PubRel(id) | Packet::PubComp(id) => r.pid = Some(id.get()),
            Packet::Subscribe(s) => {
                r.pid = Some(s.pkid.get());
                r.topic = Some(
                    s.filters
                        .iter()
                        .map(|f| f.filter.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            Packet::SubAck(s) => r.pid = Some(s.pkid.get()),
            Packet::Unsubscribe(u) => {
                r.pid = Some(u.pkid.get());
                r.topic = Some(u.filters.join(" "));
            }
            Packet::UnsubAck(id) => r.pid = Some(id.get()),
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
        }
        // The topic was parsed above: the summary does not parse it again.
        r.summary = summarize_as(p, r.what, kept.map(|k| k.1));
        if let Some((payload, len)) = kept {
            r.payload = Arc::clone(payload);
            r.payload_len = len;
        }
        r
    }

    /// How the payload reads.
    pub fn preview(&self) -> Preview {
        Preview::of(&self.payload)
    }

    /// Whether the payload was cut at [`PAYLOAD_KEPT`].
    pub fn truncated(&self) -> bool {
        self.payload_len > self.payload.len()
    }
}

/// A packet as the inspector keeps it: the packet itself, its payload (cut at
/// [`PAYLOAD_KEPT`]) kept beside it, and the CONNECT password (the SAS token) blanked;
/// decoded into a [`Record`] on first use, which shares the payload. A telemetry burst then
/// costs the inspector a move, not a decode: the record's strings (properties, summary) are
/// made only for the rows shown, and for every entry once a filter or an export reads them.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The packet with its PUBLISH payload or will message taken out (into `payload`).
    packet: Packet,
    payload: Arc<Vec<u8>>,
    outbound: bool,
    at: u64,
    size: usize,
    payload_len: usize,
    record: OnceLock<Record>,
}

impl Captured {
    /// Keeps `p` (`size` = bytes on the wire).
    pub fn new(mut p: Packet, outbound: bool, at: u64, size: usize) -> Captured {
        let take = |body: &mut Vec<u8>| {
            let mut body = std::mem::take(body);
            let len = body.len();
            if len > PAYLOAD_KEPT {
                body.truncate(PAYLOAD_KEPT);
                body.shrink_to_fit();
            }
            (body, len)
        };
        let (payload, payload_len) = match &mut p {
            Packet::Publish(pb) => take(&mut pb.payload),
            Packet::Connect(c) => {
                // The token is never kept, only its length.
                if let Some(pw) = &mut c.password {
                    pw.fill(0);
                }
                c.last_will
                    .as_mut()
                    .map_or((Vec::new(), 0), |w| take(&mut w.message))
            }
            _ => (Vec::new(), 0),
        };
        Captured {
            packet: p,
            payload: Arc::new(payload),
            outbound,
            at,
            size,
            payload_len,
            record: OnceLock::new(),
        }
    }

    /// Sent by the device (else received from the hub).
    pub fn outbound(&self) -> bool {
        self.outbound
    }

    /// When (ms since 1970).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The packet decoded for the inspector (made on first use, then kept).
    pub fn record(&self) -> &Record {
        self.record.get_or_init(|| {
            let kept = Some((&self.payload, self.payload_len));
            Record::of(&self.packet, self.outbound, self.at, self.size, kept)
        })
    }
}

/// Equal when the packets are: whether the record was made yet does not matter.
impl PartialEq for Captured {
    fn eq(&self, o: &Captured) -> bool {
        (self.outbound, self.at, self.size, self.payload_len)
            == (o.outbound, o.at, o.size, o.payload_len)
            && self.packet == o.packet
            && self.payload == o.payload
    }
}

/// A request and its answer: which entry answered which, and how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The request's entry id.
    pub request: u64,
    /// The answer's entry id.
    pub answer: u64,
    /// Time between them (ms).
    pub latency_ms: u64,
}

/// What a request waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// Twin request from the device, answered by `$iothub/twin/res/...` (same `$rid`).
    Twin(String),
    /// Method call from the hub, answered by `$iothub/methods/res/...` (same `$rid`).
    Method(String),
    /// QoS 1 PUBLISH from the device, answered by PUBACK (same packet id).
    Ack(u16),
    /// SUBSCRIBE, answered by SUBACK.
    Sub(u16),
    /// CONNECT, answered by CONNACK.
    Connect,
    /// PINGREQ, answered by PINGRESP.
    Ping,
}

/// Pairs requests with their answers as packets go by: twin requests and method calls by
/// `$rid`, telemetry with its PUBACK by packet id, SUBSCRIBE with SUBACK, CONNECT with
/// CONNACK, PINGREQ with PINGRESP. Requests never answered are forgotten after
/// [`Pairing::MAX_OPEN`] newer ones (and all of them when the connection closes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairing {
    open: HashMap<Key, (u64, u64)>,
}

impl Pairing {
    /// Requests waiting for an answer, at most.
    pub const MAX_OPEN: usize = 4096;

    /// Notes entry `id`; returns the pair when it answers an earlier request. Reads the
    /// packet, not its record: only twin and method topics (`$iothub/...`) are parsed.
    pub fn observe(&mut self, id: u64, c: &Captured) -> Option<Pair> {
        let (answer, request) = Self::keys(c);
        if let Some(k) = answer {
            return self.open.remove(&k).map(|(request, at)| Pair {
                request,
                answer: id,
                latency_ms: c.at.saturating_sub(at),
            });
        }
        if let Some(k) = request {
            if self.open.len() >= Self::MAX_OPEN {
                if let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, v)| v.0)
                    .map(|(k, _)| k.clone())
                {
                    self.open.remove(&oldest);
                }
            }
            self.open.insert(k, (id, c.at));
        }
        if matches!(c.packet, Packet::Connect(_)) {
            // A new connection: nothing from the old one will be answered.
            self.open.retain(|k, _| *k == Key::Connect);
        }
        None
    }

    /// What `c` answers, and what it asks (at most one of them).
    fn keys(c: &Captured) -> (Option<Key>, Option<Key>) {
        let out = c.outbound;
        match &c.packet {
            Packet::Publish(p) => {
                if p.topic.starts_with("$iothub/") {
                    match Topic::parse(&p.topic) {
                        Ok(Topic::TwinGet { rid } | Topic::TwinPatchReported { rid }) if out => {
                            return (None, Some(Key::Twin(rid)))
                        }
                        Ok(Topic::TwinResponse { rid, .. }) if !out => {
                            return (Some(Key::Twin(rid)), None)
                        }
                        Ok(Topic::MethodRequest { rid, .. }) if !out => {
                            return (None, Some(Key::Method(rid)))
                        }
                        Ok(Topic::MethodResponse { rid, .. }) if out => {
                            return (Some(Key::Method(rid)), None)
                        }
                        _ => {}
                    }
                }
                match p.qospid {
                    QosPid::AtLeastOnce(id) if out => (None, Some(Key::Ack(id.get()))),
                    _ => (None, None),
                }
            }
            Packet::Subscribe(s) if out => (None, Some(Key::Sub(s.pkid.get()))),
            Packet::Connect(_) if out => (None, Some(Key::Connect)),
            Packet::PingReq if out => (None, Some(Key::Ping)),
            Packet::PubAck(id) if !out => (Some(Key::Ack(id.get())), None),
            Packet::SubAck(s) if !out => (Some(Key::Sub(s.pkid.get())), None),
            Packet::ConnAck(_) if !out => (Some(Key::Connect), None),
            Packet::PingResp if !out => (Some(Key::Ping), None),
            _ => (None, None),
        }
    }

    /// Forgets every open request (the connection closed).
    pub fn reset(&mut self) {
        self.open.clear();
    }
}

/// The inspector's filter: kinds shown (all when empty) and text to find.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Kinds to show; empty shows all.
    pub kinds: Vec<Kind>,
    /// Text that must appear (case-insensitive) in the packet type, topic, properties,
    /// summary or payload; empty matches all.
    pub text: String,
}

impl Filter {
    /// Whether `r` passes.
    pub fn matches(&self, r: &Record) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&r.kind) {
            return false;
        }
        let needle = self.text.trim().as_bytes();
        if needle.is_empty() {
            return true;
        }
        let has = |s: &str| contains_ignore_ascii_case(s.as_bytes(), needle);
        has(&r.summary)
            || r.topic.as_deref().is_some_and(has)
            || r.props.iter().any(|(k, v)| has(k) || has(v))
            || contains_ignore_ascii_case(&r.payload, needle)
    }
}

/// Whether `needle` occurs in `hay`, ASCII letters compared without case (other bytes,
/// UTF-8 included, exactly). No allocation: the filter runs over thousands of records on
/// every keystroke, and Unicode case tables would cost the web app 15 KB.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// One record as a JSON object for the NDJSON export. `pair` is what it answered or what
/// answered it.
pub fn export_json(id: u64, r: &Record, pair: Option<&Pair>) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(id));
    o.insert("at".into(), json!(r.at));
    o.insert("dir".into(), json!(if r.outbound { "out" } else { "in" }));
    o.insert("packet".into(), json!(r.packet));
    o.insert("kind".into(), json!(r.kind.label()));
    if let Some(w) = r.what {
        o.insert("what".into(), json!(w));
    }
    if let Some(t) = &r.topic {
        o.insert("topic".into(), json!(t));
    }
    if !r.props.is_empty() {
        let props: Map<String, Value> = r
            .props
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        o.insert("props".into(), Value::Object(props));
    }
    if let Some(q) = r.qos {
        o.insert("qos".into(), json!(q));
    }
    if let Some(p) = r.pid {
        o.insert("pid".into(), json!(p));
    }
    if !r.flags.is_empty() {
        o.insert("flags".into(), json!(r.flags));
    }
    if let Some(rid) = &r.rid {
        o.insert("rid".into(), json!(rid));
    }
    o.insert("size".into(), json!(r.size));
    if r.payload_len > 0 {
        o.insert("payloadBytes".into(), json!(r.payload_len));
        match std::str::from_utf8(&r.payload) {
            Ok(s) => o.insert("payload".into(), json!(s)),
            Err(_) => {
                use base64::Engine;
                o.insert(
                    "payloadBase64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(r.payload.as_slice())),
                )
            }
        };
        if r.truncated() {
            o.insert("payloadTruncated".into(), json!(true));
        }
    }
    if let Some(p) = pair {
        if p.answer == id {
            o.insert("answers".into(), json!(p.request));
        } else {
            o.insert("answeredBy".into(), json!(p.answer));
        }
        o.insert("latencyMs".into(), json!(p.latency_ms));
    }
    Value::Object(o)
}

/// Records as NDJSON: one JSON object a line, each line ending in `\n`.
pub fn to_ndjson<'a>(
    items: impl IntoIterator<Item = (u64, &'a Record, Option<&'a Pair>)>,
) -> String {
    let mut out = String::new();
    for (id, r, pair) in items {
        out.push_str(&export_json(id, r, pair).to_string());
        out.push('\n');
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{ConnAck, Connect, ConnectReturnCode, PacketId, Publish};

    fn publish(topic: &str, qos1: Option<u16>, payload: &[u8]) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qospid: match qos1 {
                Some(id) => QosPid::AtLeastOnce(PacketId::new(id).unwrap()),
                None => QosPid::AtMostOnce,
            },
            retain: false,
            topic: topic.into(),
            payload: payload.to_vec(),
        })
    }

    fn rec(p: &Packet, outbound: bool, at: u64) -> Record {
        Record::new(p, outbound, at, 10)
    }

    /// A device's CONNECT with `token` as its password.
    fn connect_with(token: &str) -> Packet {
        Packet::Connect(Connect {
            client_id: "d".into(),
            keep_alive: 60,
            clean_session: false,
            last_will: None,
            username: Some("hub/d/?api-version=2021-04-12".into()),
            password: Some(token.as_bytes().to_vec()),
        })
    }

    fn cap(p: &Packet, outbound: bool, at: u64) -> Captured {
        Captured::new(p.clone(), outbound, at, 10)
    }

    #[test]
    fn a_capture_keeps_a_prefix_blanks_the_token_and_decodes_like_the_packet() {
        let big = vec![b'a'; PAYLOAD_KEPT * 3];
        let p = publish("devices/d/messages/events/a=1", Some(3), &big);
        let c = cap(&p, true, 7);
        assert_eq!(c.record().payload.len(), PAYLOAD_KEPT);
        // The record of the cut packet is the record of the whole one.
        assert_eq!(c.record(), &rec(&p, true, 7));
        assert!(c.record().truncated());
        // The record shares the kept payload: it is in memory once.
        assert!(Arc::ptr_eq(&c.record().payload, &c.payload));
        // Whether the record was made does not change equality.
        assert_eq!(c, cap(&p, true, 7));

        let connect = connect_with("SharedAccessSignature sr=h&sig=s3cr3t&se=1");
        let c = cap(&connect, true, 1);
        let Packet::Connect(kept) = &c.packet else {
            panic!("not a CONNECT")
        };
        let pw = kept.password.as_deref().unwrap();
        assert_eq!(pw.len(), 42);
        assert!(pw.iter().all(|&b| b == 0), "the token is kept");
        assert_eq!(c.record(), &rec(&connect, true, 1));
    }

    #[test]
    fn connect_keeps_no_token() {
        let token = "SharedAccessSignature sr=hub%2Fdevices%2Fd&sig=SECRETSIG&se=1";
        let p = connect_with(token);
        let r = rec(&p, true, 0);
        let all = format!("{r:?}") + &export_json(1, &r, None).to_string();
        assert!(!all.contains("SECRETSIG"), "{all}");
        assert!(r
            .props
            .iter()
            .any(|(k, v)| k == "password" && v.contains("not shown")));
    }

    #[test]
    fn publish_topics_are_decoded_into_properties() {
        let p = publish(
            "devices/d/messages/events/%24.ct=application%2Fjson&color=dark%20red",
            Some(5),
            br#"{"t":1}"#,
        );
        let r = rec(&p, true, 0);
        assert_eq!(
            (r.kind, r.what, r.qos, r.pid),
            (Kind::Telemetry, Some("telemetry"), Some(1), Some(5))
        );
        assert!(r
            .props
            .contains(&("$.ct".into(), "application/json".into())));
        assert!(r.props.contains(&("color".into(), "dark red".into())));
        assert_eq!(r.preview(), Preview::Json("{\n  \"t\": 1\n}".into()));
        let m = rec(
            &publish("$iothub/methods/POST/reboot/?$rid=9", None, b""),
            false,
            0,
        );
        assert_eq!((m.kind, m.rid.as_deref()), (Kind::Methods, Some("9")));
        assert!(m.props.contains(&("method".into(), "reboot".into())));
        assert_eq!(Preview::of(&[0xff, 0x00]), Preview::Hex("ff 00".into()));
    }

    #[test]
    fn large_payloads_keep_a_prefix_and_their_true_size() {
        let big = vec![b'a'; PAYLOAD_KEPT * 3];
        let r = rec(&publish("devices/d/messages/events/", None, &big), true, 0);
        assert_eq!(
            (r.payload.len(), r.payload_len),
            (PAYLOAD_KEPT, PAYLOAD_KEPT * 3)
        );
        assert!(r.truncated());
        assert_eq!(export_json(1, &r, None)["payloadTruncated"], json!(true));
    }

    #[test]
    fn requests_pair_with_answers_and_their_latency() {
        let mut pairing = Pairing::default();
        let steps: Vec<(Packet, bool, u64)> = vec![
            (publish("$iothub/twin/GET/?$rid=1", None, b""), true, 100),
            (
                publish("devices/d/messages/events/", Some(7), b"x"),
                true,
                110,
            ),
            (
                publish("$iothub/methods/POST/m/?$rid=ab", None, b"{}"),
                false,
                120,
            ),
            (
                publish("$iothub/twin/res/200/?$rid=1", None, b"{}"),
                false,
                130,
            ),
            (Packet::PubAck(PacketId::new(7).unwrap()), false, 145),
            (
                publish("$iothub/methods/res/200/?$rid=ab", None, b"{}"),
                true,
                220,
            ),
            // An answer to nothing pairs with nothing.
            (Packet::PubAck(PacketId::new(8).unwrap()), false, 230),
        ];
        let pairs: Vec<Option<Pair>> = steps
            .iter()
            .enumerate()
            .map(|(i, (p, out, at))| pairing.observe(i as u64 + 1, &cap(p, *out, *at)))
            .collect();
        assert_eq!(
            pairs[3],
            Some(Pair {
                request: 1,
                answer: 4,
                latency_ms: 30
            })
        );
        assert_eq!(
            pairs[4],
            Some(Pair {
                request: 2,
                answer: 5,
                latency_ms: 35
            })
        );
        assert_eq!(
            pairs[5],
            Some(Pair {
                request: 3,
                answer: 6,
                latency_ms: 100
            })
        );
        assert_eq!(pairs[6], None);
        assert_eq!(pairs.iter().flatten().count(), 3);
    }

    #[test]
    fn a_new_connect_forgets_requests_of_the_old_connection() {
        let mut pairing = Pairing::default();
        pairing.observe(
            1,
            &cap(
                &publish("devices/d/messages/events/", Some(1), b""),
                true,
                0,
            ),
        );
        let connect = Packet::Connect(Connect {
            client_id: "d".into(),
            keep_alive: 60,
            clean_session: false,
            last_will: None,
            username: None,
            password: None,
        });
        pairing.observe(2, &cap(&connect, true, 5));
        assert_eq!(
            pairing.observe(
                3,
                &cap(&Packet::PubAck(PacketId::new(1).unwrap()), false, 6)
            ),
            None
        );
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Accepted,
        });
        assert_eq!(
            pairing.observe(4, &cap(&connack, false, 9)),
            Some(Pair {
                request: 2,
                answer: 4,
                latency_ms: 4
            })
        );
    }

    #[test]
    fn the_filter_matches_kind_and_text() {
        let t = rec(
            &publish("devices/d/messages/events/color=Red", None, b"hello world"),
            true,
            0,
        );
        let ping = rec(&Packet::PingReq, true, 0);
        let all = Filter::default();
        assert!(all.matches(&t) && all.matches(&ping));
        let kinds = Filter {
            kinds: vec![Kind::Telemetry],
            text: String::new(),
        };
        assert!(kinds.matches(&t) && !kinds.matches(&ping));
        let text = |s: &str| Filter {
            kinds: vec![],
            text: s.into(),
        };
        assert!(
            text("red").matches(&t),
            "property values match, case-insensitively"
        );
        assert!(text("WORLD").matches(&t), "payload text matches");
        assert!(!text("blue").matches(&t));
        assert!(text("pingreq").matches(&ping));
        assert!(!text("hello world and more").matches(&t), "longer than all");
        // Binary payloads are searched too, and UTF-8 text matches exactly.
        let bin = rec(
            &publish(
                "devices/d/messages/events/",
                None,
                b"\xff\x00Gr\xc3\xbc\xc3\x9fe\x01",
            ),
            true,
            0,
        );
        assert!(text("grüße").matches(&bin));
        assert!(!text("grüsse").matches(&bin));
    }

    #[test]
    fn export_is_one_json_object_a_line() {
        let a = rec(&publish("$iothub/twin/GET/?$rid=1", None, b""), true, 100);
        let b = rec(
            &publish("$iothub/twin/res/200/?$rid=1", None, &[0xff, 0x01]),
            false,
            130,
        );
        let pair = Pair {
            request: 1,
            answer: 2,
            latency_ms: 30,
        };
        let out = to_ndjson([(1, &a, Some(&pair)), (2, &b, Some(&pair))]);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_slice(l.as_bytes()).unwrap())
            .collect();
        assert!(out.ends_with('\n'));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["answeredBy"], json!(2));
        assert_eq!(lines[0]["dir"], json!("out"));
        assert_eq!(lines[0]["rid"], json!("1"));
        assert_eq!(lines[1]["answers"], json!(1));
        assert_eq!(lines[1]["latencyMs"], json!(30));
        assert_eq!(lines[1]["payloadBase64"], json!("/wE="));
        assert_eq!(lines[1]["kind"], json!("twin"));
        assert_eq!(lines[1]["props"]["status"], json!("200"));
    }

    #[test]
    fn summaries_name_the_packet_and_what_it_carries() {
        let p = Packet::Publish(Publish {
            dup: true,
            qospid: QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
            retain: false,
            topic: "devices/d/messages/events/$.ct=application%2Fjson".into(),
            payload: vec![0; 12],
        });
        assert_eq!(
            summarize(&p),
            "PUBLISH telemetry devices/d/messages/events/$.ct=application%2Fjson DUP (QoS 1 pid 7, 12 B)"
        );
        assert_eq!(
            summarize(&Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized
            })),
            "CONNACK not authorized"
        );
        assert_eq!(
            summarize(&Packet::PubAck(PacketId::new(3).unwrap())),
            "PUBACK pid 3"
        );
    }
}
