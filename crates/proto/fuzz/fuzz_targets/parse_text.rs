//! Every text parser of the IoT Hub dialect on arbitrary input: never panic, and what
//! parses re-serialises to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinscope_proto::iothub::{
    twin, ConnectionString, PropertyBag, SasToken, SysPrefix, Topic, Username,
};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(cs) = ConnectionString::parse(s) {
                let again = ConnectionString::parse(&cs.to_string()).expect("display parses");
                assert_eq!(again, cs);
            }
        }
        1 => {
            if let Ok(t) = SasToken::parse(s) {
                let _ = t.check_resource("h/devices/d");
            }
        }
        2 => {
            if let Ok(t) = Topic::parse(s) {
                for p in [SysPrefix::Literal, SysPrefix::Encoded] {
                    assert_eq!(
                        Topic::parse(&t.to_topic(p)).expect("written topic parses"),
                        t
                    );
                }
            }
        }
        3 => {
            if let Ok(b) = PropertyBag::parse(s) {
                assert_eq!(
                    PropertyBag::parse(&b.encode(SysPrefix::Encoded)).unwrap(),
                    b
                );
                let _ = b.validate_d2c();
            }
        }
        4 => {
            let _ = Username::parse(s);
        }
        _ => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
                let mut section = twin::TwinSection::new("t0");
                let _ = section.apply_patch(&v, "t1", "reported", false);
                let _ = twin::TwinDocument::parse(s.as_bytes());
            }
        }
    }
});
