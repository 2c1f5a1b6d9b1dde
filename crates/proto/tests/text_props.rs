//! Property tests for the IoT Hub text formats: arbitrary input never panics, and
//! generated values round-trip through their text form.

use proptest::prelude::*;
use twinscope_proto::iothub::{
    sas, ConnectionString, DeviceId, Identity, PropertyBag, SasToken, SymmetricKey, SysPrefix,
    Topic, Username,
};

/// Printable text including the characters that need escaping.
fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 $%&=+#/?.;:,!*'()~_\\-éü€]{0,20}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9\\-.%_*?!(),=@$']{1,20}"
}

fn bag() -> impl Strategy<Value = PropertyBag> {
    (
        prop::option::of(value()),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::collection::vec(
            ("[a-zA-Z][a-zA-Z0-9 _\\-]{0,10}", prop::option::of(value())),
            0..5,
        ),
    )
        .prop_map(|(mid, ct, ack, app)| {
            let mut b = PropertyBag::default();
            b.system.message_id = mid;
            b.system.content_type = ct;
            b.system.ack = ack;
            b.app = app;
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parsers_never_panic(s in "\\PC{0,80}") {
        let _ = ConnectionString::parse(&s);
        let _ = SasToken::parse(&s);
        let _ = Topic::parse(&s);
        let _ = PropertyBag::parse(&s);
        let _ = Username::parse(&s);
    }

    #[test]
    fn property_bags_round_trip(b in bag(), encoded in any::<bool>()) {
        let prefix = if encoded { SysPrefix::Encoded } else { SysPrefix::Literal };
        let s = b.encode(prefix);
        prop_assert_eq!(PropertyBag::parse(&s).unwrap(), b);
    }

    #[test]
    fn telemetry_topics_round_trip(d in id(), b in bag()) {
        let t = Topic::Telemetry { identity: Identity::device(DeviceId::new(d).unwrap()), props: b };
        prop_assert_eq!(Topic::parse(&t.to_topic(SysPrefix::Encoded)).unwrap(), t);
    }

    #[test]
    fn tokens_verify_only_with_their_key(
        host in "[a-z0-9\\-]{1,20}\\.azure-devices\\.net",
        d in id(),
        key in prop::collection::vec(any::<u8>(), 1..64),
        other in prop::collection::vec(any::<u8>(), 1..64),
        se in 1u64..4_000_000_000,
    ) {
        let k = SymmetricKey::from_bytes(key.clone());
        let resource = format!("{host}/devices/{d}");
        let token = sas::build_token(&resource, &k, se, None);
        let t = SasToken::parse(&token).unwrap();
        prop_assert_eq!(&t.resource, &resource);
        prop_assert_eq!(t.expiry, se);
        prop_assert!(t.verify_signature(&k).is_ok());
        prop_assert!(t.check_resource(&resource).is_ok());
        if other != key {
            prop_assert!(t.verify_signature(&SymmetricKey::from_bytes(other)).is_err());
        }
    }

    #[test]
    fn connection_strings_round_trip(
        d in id(),
        key in prop::collection::vec(any::<u8>(), 16..64),
        gw in prop::option::of("[a-z]{1,8}\\.[a-z]{2,4}"),
    ) {
        let k = SymmetricKey::from_bytes(key);
        let mut s = format!("HostName=hub.azure-devices.net;DeviceId={d};SharedAccessKey={}", k.to_base64());
        if let Some(g) = &gw {
            s.push_str(&format!(";GatewayHostName={g}"));
        }
        let cs = ConnectionString::parse(&s).unwrap();
        prop_assert_eq!(cs.to_string(), s);
        prop_assert_eq!(cs.shared_access_key, Some(k));
    }
}
