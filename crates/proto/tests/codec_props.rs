//! Property tests for the MQTT codec: every valid packet round-trips, byte for byte and
//! through every split of the stream; arbitrary bytes never panic.

use proptest::prelude::*;
use twinscope_proto::mqtt::{
    decode, ConnAck, Connect, ConnectReturnCode, DecodeError, Decoder, LastWill, Packet, PacketId,
    PacketRef, Publish, QoS, QosPid, SubAck, SubAckCode, Subscribe, SubscribeFilter, Unsubscribe,
};

fn pid() -> impl Strategy<Value = PacketId> {
    (1u16..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// A topic level: printable text without wildcards, separators or U+0000.
fn level() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9$%=&._\\-éü€ ]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..6)
        .prop_map(|ls| ls.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

fn topic_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..5),
        any::<bool>(),
    )
        .prop_map(|(ls, hash)| {
            let mut t = ls.join("/");
            if hash {
                t.push_str("/#");
            }
            t
        })
        .prop_filter("non-empty", |t| !t.is_empty())
}

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn connect() -> impl Strategy<Value = Connect> {
    (
        text(),
        any::<u16>(),
        any::<bool>(),
        prop::option::of((topic_name(), bytes(64), qos(), any::<bool>())),
        prop::option::of((text(), prop::option::of(bytes(64)))),
    )
        .prop_map(|(client_id, keep_alive, clean_session, will, auth)| {
            let (username, password) = match auth {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            Connect {
                client_id,
                keep_alive,
                clean_session,
                last_will: will.map(|(topic, message, qos, retain)| LastWill {
                    topic,
                    message,
                    qos,
                    retain,
                }),
                username,
                password,
            }
        })
}

fn connack() -> impl Strategy<Value = ConnAck> {
    prop_oneof![
        any::<bool>().prop_map(|session_present| ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted
        }),
        (1u8..=5).prop_map(|c| ConnAck {
            session_present: false,
            code: ConnectReturnCode::try_from(c).unwrap()
        }),
    ]
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        prop_oneof![
            Just(QosPid::AtMostOnce),
            pid().prop_map(QosPid::AtLeastOnce),
            pid().prop_map(QosPid::ExactlyOnce)
        ],
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        bytes(300),
    )
        .prop_map(|(qospid, dup, retain, topic, payload)| Publish {
            dup: dup && qospid != QosPid::AtMostOnce,
            qospid,
            retain,
            topic,
            payload,
        })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        connack().prop_map(Packet::ConnAck),
        publish().prop_map(Packet::Publish),
        pid().prop_map(Packet::PubAck),
        pid().prop_map(Packet::PubRec),
        pid().prop_map(Packet::PubRel),
        pid().prop_map(Packet::PubComp),
        (pid(), prop::collection::vec((topic_filter(), qos()), 1..6)).prop_map(|(pkid, fs)| {
            Packet::Subscribe(Subscribe {
                pkid,
                filters: fs
                    .into_iter()
                    .map(|(filter, qos)| SubscribeFilter { filter, qos })
                    .collect(),
            })
        }),
        (
            pid(),
            prop::collection::vec(
                prop_oneof![
                    qos().prop_map(SubAckCode::Success),
                    Just(SubAckCode::Failure)
                ],
                1..6
            )
        )
            .prop_map(|(pkid, return_codes)| Packet::SubAck(SubAck { pkid, return_codes })),
        (pid(), prop::collection::vec(topic_filter(), 1..6))
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        pid().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// encode then decode gives the same packet, using exactly the encoded bytes.
    #[test]
    fn every_packet_round_trips(p in packet()) {
        let bytes = p.to_bytes().unwrap();
        let (q, used) = decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&q, &p);
        // And re-encoding is byte-identical.
        prop_assert_eq!(&q.to_bytes().unwrap(), &bytes);
        // The borrowing decoder reads the same packet, a PUBLISH's topic and payload
        // lent out of the bytes themselves.
        let (r, used) = Decoder::default().decode_ref(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        match &r {
            PacketRef::Publish(pr) => {
                let within = |s: &[u8]| bytes.as_ptr_range().contains(&s.as_ptr()) || s.is_empty();
                prop_assert!(within(pr.topic.as_bytes()) && within(pr.payload));
                let Packet::Publish(o) = &p else {
                    return Err(TestCaseError::fail("a PUBLISH decoded from another packet"));
                };
                prop_assert_eq!(pr, &o.as_ref());
            }
            PacketRef::Other(o) => {
                prop_assert!(!matches!(o, Packet::Publish(_)));
                prop_assert_eq!(o, &p);
            }
        }
        prop_assert_eq!(r.into_owned(), p);
    }

    /// Any strict prefix of a packet is "need more", never an error or a packet.
    #[test]
    fn every_prefix_needs_more(p in packet()) {
        let bytes = p.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
    }

    /// A stream of packets split into arbitrary chunks decodes to the same packets.
    #[test]
    fn streams_decode_across_any_chunking(
        ps in prop::collection::vec(packet(), 1..8),
        chunk in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for p in &ps {
            p.encode(&mut wire).unwrap();
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some((p, used)) = decode(&buf).unwrap() {
                got.push(p);
                buf.drain(..used);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, ps);
    }

    /// Arbitrary bytes never panic; whatever decodes re-encodes to the same bytes, except
    /// where MQTT allows more than one encoding (a non-minimal remaining length).
    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(512), max in 0usize..1024) {
        let d = Decoder::new(max);
        if let Ok(Some((p, used))) = d.decode(&data) {
            prop_assert!(used <= data.len());
            prop_assert!(used <= max);
            let again = p.to_bytes().unwrap();
            prop_assert_eq!(decode(&again).unwrap().unwrap().0, p);
        }
    }

    /// Mutating one byte of a valid packet gives a packet, "need more" or an error: no panic.
    #[test]
    fn single_byte_mutations_never_panic(p in packet(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut bytes = p.to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] = v;
        let _ = decode(&bytes);
    }
}

#[test]
fn oversize_is_refused_before_the_body() {
    let p = Packet::Publish(Publish {
        dup: false,
        qospid: QosPid::AtMostOnce,
        retain: false,
        topic: "t".into(),
        payload: vec![0; 5000],
    });
    let bytes = p.to_bytes().unwrap();
    assert!(matches!(
        Decoder::new(4096).decode(&bytes[..4]),
        Err(DecodeError::PacketTooLarge { max: 4096, .. })
    ));
}
