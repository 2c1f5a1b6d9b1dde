//! Codec throughput: `cargo xtask bench` (or `cargo bench -p twinscope-proto --bench codec`).
//!
//! Prints, for PUBLISH packets of several payload sizes and for a stream of small packets,
//! packets per second and payload MB/s for encoding and decoding. Numbers, not pass/fail.

use std::hint::black_box;
use std::time::{Duration, Instant};

use twinscope_proto::mqtt::{decode, Packet, PacketId, Publish, QosPid};

fn publish(size: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qospid: QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
        retain: false,
        topic: "devices/dev-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=on".into(),
        payload: vec![b'x'; size],
    })
}

/// Runs `f` repeatedly for about `budget`, returning iterations per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up, then measure in growing batches.
    for _ in 0..100 {
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
        batch = (batch * 2).min(1 << 16);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(700),
    );
    println!("{:<28} {:>14} {:>12}", "case", "packets/s", "MB/s");
    for size in [16usize, 256, 4096, 65_536, 262_144] {
        let p = publish(size);
        let bytes = p.to_bytes().unwrap();
        let mut out = Vec::with_capacity(bytes.len());
        let enc = rate(budget, || {
            out.clear();
            black_box(&p).encode(&mut out).unwrap();
            black_box(&out);
        });
        let dec = rate(budget, || {
            black_box(decode(black_box(&bytes)).unwrap());
        });
        let mb = |r: f64| r * size as f64 / 1e6;
        println!(
            "{:<28} {:>14.0} {:>12.1}",
            format!("encode PUBLISH {size} B"),
            enc,
            mb(enc)
        );
        println!(
            "{:<28} {:>14.0} {:>12.1}",
            format!("decode PUBLISH {size} B"),
            dec,
            mb(dec)
        );
    }
    // A stream of mixed small packets, as a busy device session sees it.
    let mut stream = Vec::new();
    let mut count = 0usize;
    for i in 1..=1000u16 {
        publish(64).encode(&mut stream).unwrap();
        Packet::PubAck(PacketId::new(i).unwrap())
            .encode(&mut stream)
            .unwrap();
        Packet::PingResp.encode(&mut stream).unwrap();
        count += 3;
    }
    let streams = rate(budget, || {
        let mut buf = &stream[..];
        while let Some((p, used)) = decode(buf).unwrap() {
            black_box(p);
            buf = &buf[used..];
        }
    });
    println!(
        "{:<28} {:>14.0} {:>12.1}",
        "decode mixed stream",
        streams * count as f64,
        streams * stream.len() as f64 / 1e6
    );
}
