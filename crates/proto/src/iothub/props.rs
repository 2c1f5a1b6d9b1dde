//! Property bags: the `k1=v1&k2=v2` suffix of telemetry and C2D topics (D-MQTT).
//!
//! Keys and values are percent-encoded like an HTTP query string, but `+` is never a space.
//! System properties are `$.`-prefixed short names, written `$.mid` (Node, Python) or
//! `%24.mid` (C SDKs, and what the hub sends); both parse. A key with no `=` is a property
//! with no value (`null`), `key=` an empty one.

use super::encoding::{decode, encode_into};

/// The system properties that travel in a bag, by their short names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemProperties {
    /// `$.mid`: message id.
    pub message_id: Option<String>,
    /// `$.cid`: correlation id.
    pub correlation_id: Option<String>,
    /// `$.uid`: user id.
    pub user_id: Option<String>,
    /// `$.ct`: content type, e.g. `application/json`.
    pub content_type: Option<String>,
    /// `$.ce`: content encoding, e.g. `utf-8`.
    pub content_encoding: Option<String>,
    /// `$.to`: destination (C2D: `/devices/{id}/messages/devicebound`).
    pub to: Option<String>,
    /// `$.exp`: absolute expiry time.
    pub expiry: Option<String>,
    /// `$.ctime`: creation time (C SDKs).
    pub creation_time: Option<String>,
    /// `$.sub`: IoT Plug and Play component name.
    pub component: Option<String>,
    /// `$.on`: module output name.
    pub output_name: Option<String>,
    /// `$.ifid`: interface id (security messages).
    pub interface_id: Option<String>,
    /// `iothub-ack`: C2D feedback request (`none`, `positive`, `negative`, `full`).
    pub ack: Option<String>,
}

/// Short names, in the order they are written.
const SYSTEM_NAMES: [&str; 12] = [
    "$.mid",
    "$.cid",
    "$.uid",
    "$.ct",
    "$.ce",
    "$.to",
    "$.exp",
    "$.ctime",
    "$.sub",
    "$.on",
    "$.ifid",
    "iothub-ack",
];

/// Names the hub stamps on device-to-cloud messages; a device cannot set them.
const HUB_STAMPED: [&str; 7] = [
    "iothub-connection-device-id",
    "iothub-connection-module-id",
    "iothub-connection-auth-generation-id",
    "iothub-connection-auth-method",
    "iothub-enqueuedtime",
    "iothub-message-source",
    "iothub-messagetype",
];

impl SystemProperties {
    fn values(&self) -> [&Option<String>; 12] {
        [
            &self.message_id,
            &self.correlation_id,
            &self.user_id,
            &self.content_type,
            &self.content_encoding,
            &self.to,
            &self.expiry,
            &self.creation_time,
            &self.component,
            &self.output_name,
            &self.interface_id,
            &self.ack,
        ]
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "$.mid" => &mut self.message_id,
            "$.cid" => &mut self.correlation_id,
            "$.uid" => &mut self.user_id,
            "$.ct" => &mut self.content_type,
            "$.ce" => &mut self.content_encoding,
            "$.to" => &mut self.to,
            "$.exp" => &mut self.expiry,
            "$.ctime" => &mut self.creation_time,
            "$.sub" => &mut self.component,
            "$.on" => &mut self.output_name,
            "$.ifid" => &mut self.interface_id,
            "iothub-ack" => &mut self.ack,
            _ => return None,
        })
    }

    /// `(short name, value)` for every property that is set, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        SYSTEM_NAMES
            .into_iter()
            .zip(self.values())
            .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
    }
}

/// How to write the `$` of system property names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysPrefix {
    /// `$.mid` (Node and Python SDKs).
    Literal,
    /// `%24.mid` (C SDKs; what the hub sends on C2D).
    Encoded,
}

/// A parsed property bag: system properties and ordered application properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertyBag {
    /// Known system properties.
    pub system: SystemProperties,
    /// Application properties in order; `None` is a key without a value.
    pub app: Vec<(String, Option<String>)>,
}

/// What is wrong with a property bag or a property.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// A percent-escape decodes to bytes that are not UTF-8.
    #[error("property {index} is not valid percent-encoded UTF-8")]
    InvalidEncoding {
        /// 1-based position in the bag.
        index: usize,
    },
    /// A property with an empty name.
    #[error("a property name is empty")]
    EmptyName,
    /// A control character in a name.
    #[error("property name {} contains a control character", crate::text::Quoted(.0))]
    ControlChar(String),
    /// An application property using a system or hub-stamped name.
    #[error("{} is reserved for IoT Hub; choose another application property name", crate::text::Quoted(.0))]
    Reserved(String),
    /// The same name twice (IoT Hub routing compares names case-insensitively).
    #[error("property {} appears twice (names are compared case-insensitively)", crate::text::Quoted(.0))]
    Duplicate(String),
}

impl PropertyBag {
    /// Parses a bag as it appears after the topic's fixed levels. A leading `?` (the
    /// Python wiki's form) is tolerated; empty parts (`a=1&&b=2`) are skipped.
    pub fn parse(s: &str) -> Result<PropertyBag, PropertyError> {
        let s = s.strip_prefix('?').unwrap_or(s);
        let mut bag = PropertyBag::default();
        for (i, part) in s.split('&').enumerate() {
            if part.is_empty() {
                continue;
            }
            let bad = || PropertyError::InvalidEncoding { index: i + 1 };
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (decode(k).ok_or_else(bad)?, Some(decode(v).ok_or_else(bad)?)),
                None => (decode(part).ok_or_else(bad)?, None),
            };
            if k.is_empty() {
                return Err(PropertyError::EmptyName);
            }
            match bag.system.slot(&k) {
                Some(slot) => {
                    if slot.is_some() {
                        return Err(PropertyError::Duplicate(k));
                    }
                    // A system property without a value carries none.
                    *slot = Some(v.unwrap_or_default());
                }
                None => bag.app.push((k, v)),
            }
        }
        Ok(bag)
    }

    /// Sets property `name` (a system name such as `$.ct` sets the system property;
    /// any other name adds an application property). A name set twice is an error.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), PropertyError> {
        if name.is_empty() {
            return Err(PropertyError::EmptyName);
        }
        match self.system.slot(name) {
            Some(slot) if slot.is_some() => Err(PropertyError::Duplicate(name.to_string())),
            Some(slot) => {
                *slot = Some(value.to_string());
                Ok(())
            }
            None if self.app.iter().any(|(k, _)| k == name) => {
                Err(PropertyError::Duplicate(name.to_string()))
            }
            None => {
                self.app.push((name.to_string(), Some(value.to_string())));
                Ok(())
            }
        }
    }

    /// `(name, value)` for display: system properties (`$.mid`, ...) first, then the
    /// application ones; a key without a value shows as `(no value)`.
    pub fn display_pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .system
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.extend(
            self.app
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_else(|| "(no value)".into()))),
        );
        v
    }

    /// [`PropertyBag::display_pairs`], taking the bag: its strings move instead of being
    /// copied.
    pub fn into_display_pairs(self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::with_capacity(self.app.len() + 2);
        v.extend(
            self.system
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        v.extend(
            self.app
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_else(|| "(no value)".into()))),
        );
        v
    }

    /// Writes the bag: system properties first (fixed order), then application properties
    /// in order; names and values percent-encoded.
    pub fn encode(&self, prefix: SysPrefix) -> String {
        let mut out = String::new();
        self.encode_into(&mut out, prefix);
        out
    }

    /// [`PropertyBag::encode`] onto the end of `out`.
    pub fn encode_into(&self, out: &mut String, prefix: SysPrefix) {
        let start = out.len();
        let sep = |out: &mut String| {
            if out.len() > start {
                out.push('&');
            }
        };
        for (name, value) in self.system.iter() {
            sep(out);
            match (prefix, name.strip_prefix("$.")) {
                (SysPrefix::Literal, Some(short)) => {
                    out.push_str("$.");
                    out.push_str(short);
                }
                (SysPrefix::Encoded, Some(short)) => {
                    out.push_str("%24.");
                    out.push_str(short);
                }
                (_, None) => encode_into(out, name),
            }
            out.push('=');
            encode_into(out, value);
        }
        for (k, v) in &self.app {
            sep(out);
            encode_into(out, k);
            if let Some(v) = v {
                out.push('=');
                encode_into(out, v);
            }
        }
    }

    /// The length of [`PropertyBag::encode`]'s output before percent-encoding: a capacity
    /// hint.
    pub fn encoded_len_hint(&self) -> usize {
        self.system
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
            + self
                .app
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len() + 1) + 1)
                .sum::<usize>()
    }

    /// An application property's value (`Some(None)` for a key without a value).
    pub fn app_value(&self, name: &str) -> Option<Option<&str>> {
        self.app
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Bytes counted toward the message size limit besides the body: system property
    /// values and application property names and values (D-MSG).
    pub fn counted_size(&self) -> usize {
        let sys: usize = self.system.iter().map(|(_, v)| v.len()).sum();
        let app: usize = self
            .app
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
            .sum();
        sys + app
    }

    /// Checks what a device may send: application property names that are non-empty,
    /// free of control characters, not system or hub-stamped names, and unique ignoring
    /// case.
    pub fn validate_d2c(&self) -> Result<(), PropertyError> {
        for (i, (k, _)) in self.app.iter().enumerate() {
            validate_app_name(k)?;
            if self.app[..i].iter().any(|(e, _)| e.eq_ignore_ascii_case(k)) {
                return Err(PropertyError::Duplicate(k.clone()));
            }
        }
        Ok(())
    }
}

/// Checks one application property name (see [`PropertyBag::validate_d2c`]).
pub fn validate_app_name(name: &str) -> Result<(), PropertyError> {
    if name.is_empty() {
        return Err(PropertyError::EmptyName);
    }
    if name.chars().any(char::is_control) {
        return Err(PropertyError::ControlChar(name.to_string()));
    }
    // Compared without case and without allocating (this runs for every message sent).
    let reserved = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if name.starts_with("$.") || reserved(&SYSTEM_NAMES) || reserved(&HUB_STAMPED) {
        return Err(PropertyError::Reserved(name.to_string()));
    }
    Ok(())
}

/// Whether `s` uses only the characters IoT Hub allows in property names and values over
/// HTTPS and in C2D messages: ASCII alphanumerics and ``! # $ % & ' * + - . ^ _ ` | ~``
/// (D-MSG; the HTTP token set).
pub fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_observed_c2d_bag() {
        let bag = PropertyBag::parse(
            "%24.mid=84c08717-a&%24.to=%2Fdevices%2Fmy-device-1%2Fmessages%2FdeviceBound&%24.ce=utf-8&iothub-ack=full&property1=value1",
        )
        .unwrap();
        assert_eq!(bag.system.message_id.as_deref(), Some("84c08717-a"));
        assert_eq!(
            bag.system.to.as_deref(),
            Some("/devices/my-device-1/messages/deviceBound")
        );
        assert_eq!(bag.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(bag.system.ack.as_deref(), Some("full"));
        assert_eq!(
            bag.app,
            vec![("property1".to_string(), Some("value1".to_string()))]
        );
    }

    #[test]
    fn null_vs_empty_vs_value() {
        // D-MQTT: `/?prop1&prop2=&prop3=a%20string`.
        let bag = PropertyBag::parse("?prop1&prop2=&prop3=a%20string").unwrap();
        assert_eq!(bag.app_value("prop1"), Some(None));
        assert_eq!(bag.app_value("prop2"), Some(Some("")));
        assert_eq!(bag.app_value("prop3"), Some(Some("a string")));
        assert_eq!(bag.app_value("nope"), None);
        assert_eq!(
            bag.encode(SysPrefix::Literal),
            "prop1&prop2=&prop3=a%20string"
        );
    }

    #[test]
    fn literal_and_encoded_prefixes_both_parse_and_write() {
        let mut bag = PropertyBag::default();
        bag.system.content_type = Some("application/json".into());
        bag.system.content_encoding = Some("utf-8".into());
        bag.system.message_id = Some("m 1".into());
        bag.app
            .push(("temp alert".into(), Some("a+b&c=d/e".into())));
        let lit = bag.encode(SysPrefix::Literal);
        assert_eq!(
            lit,
            "$.mid=m%201&$.ct=application%2Fjson&$.ce=utf-8&temp%20alert=a%2Bb%26c%3Dd%2Fe"
        );
        let enc = bag.encode(SysPrefix::Encoded);
        assert_eq!(
            enc,
            "%24.mid=m%201&%24.ct=application%2Fjson&%24.ce=utf-8&temp%20alert=a%2Bb%26c%3Dd%2Fe"
        );
        assert_eq!(PropertyBag::parse(&lit).unwrap(), bag);
        assert_eq!(PropertyBag::parse(&enc).unwrap(), bag);
    }

    #[test]
    fn plus_is_not_a_space() {
        let bag = PropertyBag::parse("k=a+b").unwrap();
        assert_eq!(bag.app_value("k"), Some(Some("a+b")));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            PropertyBag::parse("a=%ff"),
            Err(PropertyError::InvalidEncoding { index: 1 })
        );
        assert_eq!(PropertyBag::parse("=v"), Err(PropertyError::EmptyName));
        assert_eq!(
            PropertyBag::parse("$.mid=1&%24.mid=2"),
            Err(PropertyError::Duplicate("$.mid".into()))
        );
        assert_eq!(PropertyBag::parse("").unwrap(), PropertyBag::default());
    }

    #[test]
    fn d2c_validation() {
        let bag = |k: &str| PropertyBag {
            app: vec![(k.into(), Some("v".into()))],
            ..Default::default()
        };
        assert!(bag("alert").validate_d2c().is_ok());
        assert!(bag("née ünïcode").validate_d2c().is_ok());
        assert_eq!(
            bag("$.foo").validate_d2c(),
            Err(PropertyError::Reserved("$.foo".into()))
        );
        assert_eq!(
            bag("IoTHub-Connection-Device-Id").validate_d2c(),
            Err(PropertyError::Reserved(
                "IoTHub-Connection-Device-Id".into()
            ))
        );
        assert_eq!(
            bag("a\nb").validate_d2c(),
            Err(PropertyError::ControlChar("a\nb".into()))
        );
        let twice = PropertyBag {
            app: vec![("Temp".into(), None), ("temp".into(), None)],
            ..Default::default()
        };
        assert_eq!(
            twice.validate_d2c(),
            Err(PropertyError::Duplicate("temp".into()))
        );
    }

    #[test]
    fn counted_size_and_tokens() {
        let mut bag = PropertyBag::default();
        bag.system.message_id = Some("abc".into());
        bag.app.push(("k".into(), Some("vv".into())));
        bag.app.push(("n".into(), None));
        assert_eq!(bag.counted_size(), 3 + 1 + 2 + 1);
        assert!(is_http_token("a-b.c_d~!"));
        assert!(!is_http_token("a b"));
        assert!(!is_http_token("a/b"));
        assert!(!is_http_token(""));
    }
}
