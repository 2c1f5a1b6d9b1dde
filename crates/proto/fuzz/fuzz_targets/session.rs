//! `DeviceSession` fed arbitrary hub bytes, timeouts, transport events and commands: it
//! never panics, everything it transmits is whole, valid MQTT, and its bounds hold (QoS 1
//! window, offline queue). (Packet-id reuse is checked by the session's property test,
//! which knows which ids the hub acknowledged.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinscope_proto::iothub::{sas, DeviceId, Identity, PropertyBag, SymmetricKey};
use twinscope_proto::mqtt::{Decoder, Packet, QoS};
use twinscope_proto::session::{DeviceSession, SessionConfig, Telemetry};

const MAX_INFLIGHT: usize = 4;
const MAX_QUEUED: usize = 8;

fuzz_target!(|data: &[u8]| {
    let id = Identity::device(DeviceId::new("fz").unwrap());
    let mut cfg = SessionConfig::new("h.azure-devices.net", id);
    cfg.max_inflight = MAX_INFLIGHT;
    cfg.max_queued = MAX_QUEUED;
    let mut s = DeviceSession::new(cfg);
    let mut now: u64 = 1_767_225_600_000;
    let key = SymmetricKey::from_bytes(vec![7u8; 32]);
    let token = |now: u64| {
        sas::build_token(
            "h.azure-devices.net/devices/fz",
            &key,
            now / 1000 + 3600,
            None,
        )
    };
    s.supply_token(now, token(now)).unwrap();
    s.connect(now).unwrap();

    let mut rest = data;
    let take = |n: usize, rest: &mut &[u8]| -> Vec<u8> {
        let n = n.min(rest.len());
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.to_vec()
    };
    while let Some((&op, r)) = rest.split_first() {
        rest = r;
        let arg = take(1, &mut rest).first().copied().unwrap_or(0);
        match op % 10 {
            0 | 1 => {
                let chunk = take(usize::from(arg), &mut rest);
                s.handle_bytes(now, &chunk);
            }
            2 => {
                now += u64::from(arg) * 500;
                s.handle_timeout(now);
            }
            3 => {
                if let Some(t) = s.poll_timeout() {
                    now = now.max(t);
                    s.handle_timeout(now);
                }
            }
            4 => s.handle_closed(now),
            5 => s.handle_opened(now),
            6 => {
                let qos = if arg & 1 == 1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                let _ = s.publish_telemetry(
                    now,
                    Telemetry {
                        body: vec![b'x'; usize::from(arg)],
                        props: PropertyBag::default(),
                        qos: Some(qos),
                    },
                );
            }
            7 => {
                let _ = s.patch_reported(now, &serde_json::json!({ "a": arg }));
            }
            8 => {
                let _ = s.get_twin(now);
            }
            _ => {
                let _ = s.supply_token(now, token(now));
            }
        }
        // Whatever it transmits is whole, valid MQTT that re-encodes to itself.
        while let Some(bytes) = s.poll_transmit() {
            let mut b = &bytes[..];
            while !b.is_empty() {
                let (p, used) = Decoder::default()
                    .decode(b)
                    .expect("the session sends valid MQTT")
                    .expect("the session sends whole packets");
                assert_eq!(p.to_bytes().unwrap(), b[..used].to_vec());
                assert!(!matches!(p, Packet::Connect(ref c) if c.password.is_none()));
                b = &b[used..];
            }
        }
        while s.poll_event().is_some() {}
        assert!(s.inflight() <= MAX_INFLIGHT, "{}", s.inflight());
        assert!(s.queued() <= MAX_QUEUED, "{}", s.queued());
    }
});
