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
    if !has_special(topic.as_bytes()) {
        return Ok(());
    }
    if topic.as_bytes().contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    Err(DecodeError::WildcardInTopicName(topic.to_string()))
}

/// A SUBSCRIBE/UNSUBSCRIBE topic filter: at least one character; `#` only alone as the
/// last level (MQTT-4.7.1-2); `+` only alone in a level (MQTT-4.7.1-3); no U+0000.
pub fn validate_topic_filter(filter: &str) -> Result<(), DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if !has_special(filter.as_bytes()) {
        return Ok(());
    }
    if filter.as_bytes().contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    let b = filter.as_bytes();
    let starts_level = |i: usize| i == 0 || b[i - 1] == b'/';
    let ends_level = |i: usize| i + 1 == b.len() || b[i + 1] == b'/';
    for (i, &c) in b.iter().enumerate() {
        let ok = match c {
            b'#' => starts_level(i) && i + 1 == b.len(),
            b'+' => starts_level(i) && ends_level(i),
            _ => true,
        };
        if !ok {
            return Err(DecodeError::InvalidTopicFilter(filter.to_string()));
        }
    }
    Ok(())
}

/// Whether `b` holds a NUL, `+` or `#` byte. Word-at-a-time (SWAR): a byte of `x ^ c` is
/// zero exactly where `x` has `c`, and `(v - 0x01..) & !v & 0x80..` is nonzero exactly when
/// `v` has a zero byte.
fn has_special(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // '+' (0x2b) and '#' (0x23) differ only in bit 3: clear it and look for '#'.
        if zero(x) | zero((x & !(LO * 0x08)) ^ (LO * u64::from(b'#'))) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c == 0 || c == b'+' || c == b'#')
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
            let naive = b.iter().any(|&c| c == 0 || c == b'+' || c == b'#');
            prop_assert_eq!(super::has_special(&b), naive);
        }
    }

    #[test]
    fn special_bytes_are_found_at_every_offset() {
        for len in 1..40 {
            for at in 0..len {
                for c in [0u8, b'+', b'#'] {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    assert!(super::has_special(&b), "{c} at {at} of {len}");
                }
            }
            assert!(!super::has_special(&vec![b'a'; len]));
            // Neighbours of the special bytes are not special.
            assert!(!super::has_special(&vec![b'*'; len]));
            assert!(!super::has_special(&vec![0x01; len]));
            assert!(!super::has_special(&vec![b'$'; len]));
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
