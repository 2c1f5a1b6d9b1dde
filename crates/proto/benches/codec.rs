//! Codec speed against a peer: `cargo xtask bench` (or `cargo bench -p twinscope-proto
//! --bench codec`).
//!
//! For representative IoT Hub packets, encode and decode in ns per packet and MB/s, for
//! our codec and for `mqttbytes` (rumqttc's MQTT 3.1.1 codec, v4) on the same bytes, and the
//! ratio (peer time / our time: above 1 is faster than the peer). Both decoders start from
//! the same byte slice: ours decodes it in place, `mqttbytes` needs it in a `BytesMut`,
//! which is filled from the slice in the timed loop, as a network read would fill it.
//! Ours is timed twice: `Decoder::decode_ref`, which lends a PUBLISH's topic and payload out
//! of the slice (what devhub uses), and `decode`, which copies them into an owned packet
//! (what the sessions use); the ratio is for the first, the owned one is printed beside it.
//! Both encoders write into a reused buffer. Numbers, not pass/fail.
//! With `BENCH_JSON=path` the rows are also written there as JSON.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqttbytes::v4 as peer;
use twinscope_proto::mqtt::{
    decode, Connect, Decoder, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
};

const HOST: &str = "contoso-hub.azure-devices.net";
const DEVICE: &str = "thermostat-0042";
const TOPIC: &str = "devices/thermostat-0042/messages/events/$.ct=application%2Fjson&$.ce=utf-8&$.mid=6f1c2a9e-8d2b-4c6e-9a51-3f0e7b2d4c11&alert=on&site=building%2043";
const FILTERS: [&str; 4] = [
    "devices/thermostat-0042/messages/devicebound/#",
    "$iothub/twin/res/#",
    "$iothub/twin/PATCH/properties/desired/#",
    "$iothub/methods/POST/#",
];

/// Runs `f` repeatedly for about `budget`; nanoseconds per call.
fn ns_per(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    let mut batch = 1u64;
    while start.elapsed() < budget {
        for _ in 0..batch {
            f();
        }
        n += batch;
        batch = (batch * 2).min(1 << 14);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn sas_password() -> String {
    // The shape of a real token: sr, a 44-character base64 signature, percent-encoded, se.
    format!(
        "SharedAccessSignature sr={HOST}%2Fdevices%2F{DEVICE}&sig=q3Jm6v%2B0zK1uX4fQ9r2W8sYbT5nLpA7cE1dGhV3iO0k%3D&se=1796000000"
    )
}

/// One benchmark case: the same packet in both codecs.
struct Case {
    name: String,
    ours: Packet,
    theirs: peer::Packet,
    /// Packets in `ours` (a stream case holds many).
    count: usize,
    stream: Option<(Vec<Packet>, Vec<peer::Packet>)>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let username = format!("{HOST}/{DEVICE}/?api-version=2021-04-12");
    let connect = Connect {
        client_id: DEVICE.into(),
        keep_alive: 240,
        clean_session: false,
        last_will: None,
        username: Some(username.clone()),
        password: Some(sas_password().into_bytes()),
    };
    let mut pc = peer::Connect::new(DEVICE);
    pc.keep_alive = 240;
    pc.clean_session = false;
    pc.set_login(username, sas_password());
    v.push(Case {
        name: "CONNECT (SAS password)".into(),
        ours: Packet::Connect(connect),
        theirs: peer::Packet::Connect(pc),
        count: 1,
        stream: None,
    });
    for size in [100usize, 4096, 262_144] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let ours = Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
            retain: false,
            topic: TOPIC.into(),
            payload: body.clone(),
        });
        let mut p = peer::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, body);
        p.pkid = 7;
        let label = if size >= 1024 {
            format!("{} KB", size / 1024)
        } else {
            format!("{size} B")
        };
        v.push(Case {
            name: format!("PUBLISH {label} (property bag)"),
            ours,
            theirs: peer::Packet::Publish(p),
            count: 1,
            stream: None,
        });
    }
    let ours = Packet::Subscribe(Subscribe {
        pkid: PacketId::new(1).unwrap(),
        filters: FILTERS
            .iter()
            .map(|f| SubscribeFilter {
                filter: (*f).into(),
                qos: QoS::AtLeastOnce,
            })
            .collect(),
    });
    let mut s = peer::Subscribe::new(FILTERS[0], mqttbytes::QoS::AtLeastOnce);
    for f in &FILTERS[1..] {
        s.add((*f).into(), mqttbytes::QoS::AtLeastOnce);
    }
    s.pkid = 1;
    v.push(Case {
        name: "SUBSCRIBE (4 IoT Hub filters)".into(),
        ours,
        theirs: peer::Packet::Subscribe(s),
        count: 1,
        stream: None,
    });
    v.push(Case {
        name: "PUBACK".into(),
        ours: Packet::PubAck(PacketId::new(42).unwrap()),
        theirs: peer::Packet::PubAck(peer::PubAck::new(42)),
        count: 1,
        stream: None,
    });
    // A busy session's inbound mix: small telemetry echoes, PUBACKs and PINGRESPs.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 1..=300u16 {
        let body = br#"{"temperature":21.5,"humidity":40}"#.to_vec();
        ours.push(Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(PacketId::new(i).unwrap()),
            retain: false,
            topic: TOPIC.into(),
            payload: body.clone(),
        }));
        let mut p = peer::Publish::new(TOPIC, mqttbytes::QoS::AtLeastOnce, body);
        p.pkid = i;
        theirs.push(peer::Packet::Publish(p));
        ours.push(Packet::PubAck(PacketId::new(i).unwrap()));
        theirs.push(peer::Packet::PubAck(peer::PubAck::new(i)));
        ours.push(Packet::PingResp);
        theirs.push(peer::Packet::PingResp);
    }
    v.push(Case {
        name: "mixed stream (900 small)".into(),
        ours: Packet::PingResp,
        theirs: peer::Packet::PingResp,
        count: ours.len(),
        stream: Some((ours, theirs)),
    });
    v
}

fn peer_write(p: &peer::Packet, out: &mut BytesMut) {
    match p {
        peer::Packet::Connect(c) => c.write(out),
        peer::Packet::Publish(c) => c.write(out),
        peer::Packet::Subscribe(c) => c.write(out),
        peer::Packet::PubAck(c) => c.write(out),
        peer::Packet::PingResp => peer::PingResp.write(out),
        other => unreachable!("not benchmarked: {other:?}"),
    }
    .unwrap();
}

struct Row {
    case: String,
    bytes: usize,
    enc_ours: f64,
    enc_peer: f64,
    dec_ours: f64,
    dec_owned: f64,
    dec_peer: f64,
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(700),
    );
    let mut rows = Vec::new();
    for case in cases() {
        let (ours, theirs): (Vec<Packet>, Vec<peer::Packet>) = match &case.stream {
            Some((o, t)) => (o.clone(), t.clone()),
            None => (vec![case.ours.clone()], vec![case.theirs.clone()]),
        };
        // The same bytes from both encoders, or the comparison means nothing.
        let mut bytes = Vec::new();
        for p in &ours {
            p.encode(&mut bytes).unwrap();
        }
        let mut peer_bytes = BytesMut::new();
        for p in &theirs {
            peer_write(p, &mut peer_bytes);
        }
        assert_eq!(
            bytes,
            peer_bytes.to_vec(),
            "{}: the codecs disagree on the bytes",
            case.name
        );

        let mut out = Vec::with_capacity(bytes.len());
        let enc_ours = ns_per(budget, || {
            out.clear();
            for p in black_box(&ours) {
                p.encode(&mut out).unwrap();
            }
            black_box(&out);
        });
        let mut pout = BytesMut::with_capacity(bytes.len());
        let enc_peer = ns_per(budget, || {
            pout.clear();
            for p in black_box(&theirs) {
                peer_write(p, &mut pout);
            }
            black_box(&pout);
        });
        let decoder = Decoder::default();
        let dec_ours = ns_per(budget, || {
            let mut buf = black_box(&bytes[..]);
            while let Some((p, used)) = decoder.decode_ref(buf).unwrap() {
                black_box(p);
                buf = &buf[used..];
            }
        });
        let dec_owned = ns_per(budget, || {
            let mut buf = black_box(&bytes[..]);
            while let Some((p, used)) = decode(buf).unwrap() {
                black_box(p);
                buf = &buf[used..];
            }
        });
        let dec_peer = ns_per(budget, || {
            let mut buf = BytesMut::from(black_box(&bytes[..]));
            while !buf.is_empty() {
                black_box(peer::read(&mut buf, 1 << 20).unwrap());
            }
        });
        let n = case.count as f64;
        rows.push(Row {
            case: case.name,
            bytes: bytes.len(),
            enc_ours: enc_ours / n,
            enc_peer: enc_peer / n,
            dec_ours: dec_ours / n,
            dec_owned: dec_owned / n,
            dec_peer: dec_peer / n,
        });
        let _ = case.ours;
        let _ = case.theirs;
    }

    println!(
        "{:<32} {:>8} {:>9} {:>9} {:>7} {:>6} {:>9} {:>9} {:>9} {:>7} {:>6} {:>6}",
        "codec (ns/packet)",
        "bytes",
        "enc ours",
        "enc peer",
        "MB/s",
        "ratio",
        "dec ours",
        "dec owned",
        "dec peer",
        "MB/s",
        "ratio",
        "owned"
    );
    let mut json = Vec::new();
    for r in &rows {
        let per = r.bytes as f64 / (rows_count(r) as f64);
        let mbs = |ns: f64| per / ns * 1e3;
        println!(
            "{:<32} {:>8} {:>9.0} {:>9.0} {:>7.0} {:>6.2} {:>9.0} {:>9.0} {:>9.0} {:>7.0} {:>6.2} {:>6.2}",
            r.case,
            r.bytes,
            r.enc_ours,
            r.enc_peer,
            mbs(r.enc_ours),
            r.enc_peer / r.enc_ours,
            r.dec_ours,
            r.dec_owned,
            r.dec_peer,
            mbs(r.dec_ours),
            r.dec_peer / r.dec_ours,
            r.dec_peer / r.dec_owned,
        );
        json.push(format!(
            "{{\"case\":\"{}\",\"bytes\":{},\"encode_ns\":{:.1},\"encode_peer_ns\":{:.1},\"encode_ratio\":{:.3},\"decode_ns\":{:.1},\"decode_owned_ns\":{:.1},\"decode_peer_ns\":{:.1},\"decode_ratio\":{:.3},\"decode_owned_ratio\":{:.3},\"encode_mb_s\":{:.1},\"decode_mb_s\":{:.1}}}",
            r.case, r.bytes, r.enc_ours, r.enc_peer, r.enc_peer / r.enc_ours, r.dec_ours, r.dec_owned, r.dec_peer, r.dec_peer / r.dec_ours, r.dec_peer / r.dec_owned, mbs(r.enc_ours), mbs(r.dec_ours)
        ));
    }
    println!("peer: mqttbytes 0.6 (v4); ratio = peer ns / our ns (above 1: ours is faster); dec ours: decode_ref (PUBLISH borrowed), dec owned: decode");
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let text = format!(
            "{{\"peer\":\"mqttbytes 0.6 v4\",\"rows\":[{}]}}\n",
            json.join(",")
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}

/// Packets per case row (the stream row holds 900).
fn rows_count(r: &Row) -> usize {
    if r.case.starts_with("mixed") {
        900
    } else {
        1
    }
}
