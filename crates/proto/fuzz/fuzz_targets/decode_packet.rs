//! Decode arbitrary bytes as a stream of MQTT packets: never panic, never read past the
//! input, and every decoded packet re-encodes to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinscope_proto::mqtt::{decode, Decoder};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a maximum packet size, so the size check is fuzzed too.
    let (max, mut rest) = match data.split_first() {
        Some((m, r)) => (usize::from(*m) * 64, r),
        None => return,
    };
    let d = Decoder::new(max);
    while let Ok(Some((p, used))) = d.decode(rest) {
        assert!(used > 0 && used <= rest.len() && used <= max);
        let again = p.to_bytes().expect("a decoded packet encodes");
        assert_eq!(decode(&again).unwrap().unwrap().0, p);
        rest = &rest[used..];
    }
});
