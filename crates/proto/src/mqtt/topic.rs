//! Topic names and topic filters (MQTT 3.1.1 §4.7).

use super::DecodeError;

/// A PUBLISH topic name: at least one character (MQTT-4.7.3-1), no `+` or `#`
/// (MQTT-3.3.2-2), no U+0000 (MQTT-4.7.3-2).
pub fn validate_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    // One pass, eight bytes at a time: the common case is a long IoT Hub topic with a
    // property bag and none of these bytes.
    match first_special(topic.as_bytes()) {
        None => Ok(()),
        Some(_) if topic.as_bytes().contains(&0) => Err(DecodeError::NullCharacter),
        Some(_) => Err(DecodeError::WildcardInTopicName(topic.to_string())),
    }
}

/// A SUBSCRIBE/UNSUBSCRIBE topic filter: at least one character; `#` only alone as the
/// last level (MQTT-4.7.1-2); `+` only alone in a level (MQTT-4.7.1-3); no U+0000.
pub fn validate_topic_filter(filter: &str) -> Result<(), DecodeError> {
    let b = filter.as_bytes();
    if b.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    // Only the special bytes are looked at, found eight bytes at a time: an IoT Hub filter
    // has one `#`, at its end.
    let mut from = 0;
    while let Some(i) = first_special(&b[from..]).map(|i| from + i) {
        let ok = match b[i] {
            0 => return Err(DecodeError::NullCharacter),
            b'#' => (i == 0 || b[i - 1] == b'/') && i + 1 == b.len(),
            _ => (i == 0 || b[i - 1] == b'/') && (i + 1 == b.len() || b[i + 1] == b'/'),
        };
        if !ok {
            // A NUL later in the filter is the error to report.
            if b[i..].contains(&0) {
                return Err(DecodeError::NullCharacter);
            }
            return Err(DecodeError::InvalidTopicFilter(filter.to_string()));
        }
        from = i + 1;
    }
    Ok(())
}

/// The index of the first NUL, `+` or `#` byte in `b`. Word-at-a-time (SWAR): a byte of
/// `x ^ c` is zero exactly where `x` has `c`, and `(v - 0x01..) & !v & 0x80..` marks the
/// zero bytes of `v` (and possibly bytes after a zero one, never before it: so its lowest
/// mark, the first byte in little-endian order, is exact).
fn first_special(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let marks = |c: &[u8]| {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
        // '+' (0x2b) and '#' (0x23) differ only in bit 3: clear it and look for '#'.
        zero(x) | zero((x & !(LO * 0x08)) ^ (LO * u64::from(b'#')))
    };
    // Skip 32 bytes at a time while none is special (four independent words, one
    // branch); a word's false marks only follow a true one in that word.
    let mut at = 0;
    for block in b.chunks_exact(32) {
        if (marks(&block[..8]) | marks(&block[8..16]) | marks(&block[16..24]) | marks(&block[24..]))
            != 0
        {
            break;
        }
        at += 32;
    }
    let mut chunks = b[at..].chunks_exact(8);
    for c in &mut chunks {
        let m = marks(c);
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == 0 || c == b'+' || c == b'#')
        .map(|i| at + i)
}

/// Whether `topic` matches `filter` (§4.7): `+` matches one level, `#` the rest (the
/// parent level included), and filters starting with a wildcard do not match topics
/// starting with `$` (MQTT-4.7.2-1).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_word_scan_agrees_with_a_byte_scan(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let naive = b.iter().position(|&c| c == 0 || c == b'+' || c == b'#');
            prop_assert_eq!(super::first_special(&b), naive);
        }

        #[test]
        fn filter_validation_agrees_with_the_rules_level_by_level(
            f in proptest::collection::vec(prop_oneof![Just('a'), Just('/'), Just('+'), Just('#'), Just('\0')], 0..24)
        ) {
            let f: String = f.into_iter().collect();
            let levels: Vec<&str> = f.split('/').collect();
            let naive = if f.is_empty() {
                Err(super::DecodeError::EmptyTopic)
            } else if f.contains('\0') {
                Err(super::DecodeError::NullCharacter)
            } else if levels.iter().enumerate().all(|(i, l)| {
                (!l.contains('#') || (*l == "#" && i + 1 == levels.len()))
                    && (!l.contains('+') || *l == "+")
            }) {
                Ok(())
            } else {
                Err(super::DecodeError::InvalidTopicFilter(f.clone()))
            };
            prop_assert_eq!(super::validate_topic_filter(&f), naive);
        }
    }

    #[test]
    fn special_bytes_are_found_at_every_offset() {
        for len in 1..40 {
            for at in 0..len {
                for c in [0u8, b'+', b'#'] {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    assert_eq!(super::first_special(&b), Some(at), "{c} at {at} of {len}");
                    // A 0x01 after a NUL is a false mark of the word scan: never first.
                    if at + 1 < len {
                        b[at + 1] = 1;
                        assert_eq!(super::first_special(&b), Some(at));
                    }
                }
            }
            assert_eq!(super::first_special(&vec![b'a'; len]), None);
            // Neighbours of the special bytes are not special.
            assert_eq!(super::first_special(&vec![b'*'; len]), None);
            assert_eq!(super::first_special(&vec![0x01; len]), None);
            assert_eq!(super::first_special(&vec![b'$'; len]), None);
        }
    }

    use super::*;

    #[test]
    fn matching() {
        for (f, t) in [
            ("#", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("a/+/c", "a/b/c"),
            ("+/+", "/x"),
            ("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1"),
            (
                "devices/d1/messages/devicebound/#",
                "devices/d1/messages/devicebound/%24.mid=1",
            ),
        ] {
            assert!(topic_matches(f, t), "{f} {t}");
        }
        for (f, t) in [
            ("#", "$iothub/methods/POST/x"),
            ("+/methods/#", "$iothub/methods/POST/x"),
            ("a/+", "a/b/c"),
            ("a/b", "a"),
            (
                "devices/d1/messages/devicebound/#",
                "devices/d2/messages/devicebound/x",
            ),
        ] {
            assert!(!topic_matches(f, t), "{f} {t}");
        }
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("devices/d1/messages/events/").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert_eq!(validate_topic_name(""), Err(DecodeError::EmptyTopic));
        assert!(matches!(
            validate_topic_name("a/+/b"),
            Err(DecodeError::WildcardInTopicName(_))
        ));
        assert!(matches!(
            validate_topic_name("a/#"),
            Err(DecodeError::WildcardInTopicName(_))
        ));
        assert_eq!(validate_topic_name("a\0b"), Err(DecodeError::NullCharacter));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "$iothub/twin/res/#",
            "/",
            "a//b",
        ] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a/#/b", "a#", "a/b#", "a+", "a/+b/c", "##"] {
            assert!(
                matches!(
                    validate_topic_filter(bad),
                    Err(DecodeError::InvalidTopicFilter(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(validate_topic_filter(""), Err(DecodeError::EmptyTopic));
    }
}
