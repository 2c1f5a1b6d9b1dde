//! Topic names and topic filters (MQTT 3.1.1 §4.7).

use super::DecodeError;

/// A PUBLISH topic name: at least one character (MQTT-4.7.3-1), no `+` or `#`
/// (MQTT-3.3.2-2), no U+0000 (MQTT-4.7.3-2).
pub fn validate_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if topic.contains('\0') {
        return Err(DecodeError::NullCharacter);
    }
    if topic.contains(['+', '#']) {
        return Err(DecodeError::WildcardInTopicName(topic.to_string()));
    }
    Ok(())
}

/// A SUBSCRIBE/UNSUBSCRIBE topic filter: at least one character; `#` only alone as the
/// last level (MQTT-4.7.1-2); `+` only alone in a level (MQTT-4.7.1-3); no U+0000.
pub fn validate_topic_filter(filter: &str) -> Result<(), DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if filter.contains('\0') {
        return Err(DecodeError::NullCharacter);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let bad_hash = level.contains('#') && (*level != "#" || i != levels.len() - 1);
        let bad_plus = level.contains('+') && *level != "+";
        if bad_hash || bad_plus {
            return Err(DecodeError::InvalidTopicFilter(filter.to_string()));
        }
    }
    Ok(())
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
