//! Plain view models: what the panels show, computed from client state. Tested natively.

use twinscope_proto::iothub::PropertyBag;
use twinscope_proto::mqtt::QoS;
use twinscope_proto::session::Telemetry;

/// The header's token countdown: `59:58`, `1:02:03`, or `expired`.
pub fn countdown(expiry_ms: Option<u64>, now_ms: u64) -> String {
    let Some(expiry) = expiry_ms else {
        return "—".into();
    };
    if expiry <= now_ms {
        return "expired".into();
    }
    let s = (expiry - now_ms) / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// How long a method call has waited, against the service's default 30 s timeout (the
/// device is not told the caller's actual timeout).
pub fn method_wait(arrived_ms: u64, now_ms: u64) -> String {
    let waited = now_ms.saturating_sub(arrived_ms) / 1000;
    if waited < 30 {
        format!(
            "waiting {waited} s; a caller using the default timeout gives up in {} s",
            30 - waited
        )
    } else {
        format!("waiting {waited} s; past the default 30 s timeout, the caller may have given up")
    }
}

/// The telemetry form as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryForm {
    /// The body.
    pub body: String,
    /// Application properties as typed: (name, value).
    pub props: Vec<(String, String)>,
    /// `$.ct`.
    pub content_type: String,
    /// `$.ce`.
    pub content_encoding: String,
    /// `$.mid`.
    pub message_id: String,
    /// 0 or 1.
    pub qos: u8,
}

impl TelemetryForm {
    /// The message to send, or what is wrong with the form. Rows with an empty name and
    /// value are ignored; a value without a name is an error.
    pub fn to_telemetry(&self) -> Result<Telemetry, String> {
        let mut props = PropertyBag::default();
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        props.system.content_type = opt(&self.content_type);
        props.system.content_encoding = opt(&self.content_encoding);
        props.system.message_id = opt(&self.message_id);
        for (i, (k, v)) in self.props.iter().enumerate() {
            match (k.trim().is_empty(), v.is_empty()) {
                (true, true) => continue,
                (true, false) => return Err(format!("property {} has a value but no name", i + 1)),
                (false, _) => props.app.push((k.trim().to_string(), Some(v.clone()))),
            }
        }
        props.validate_d2c().map_err(|e| e.to_string())?;
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => return Err(format!("QoS {q} is not supported by IoT Hub; use 0 or 1")),
        };
        Ok(Telemetry {
            body: self.body.clone().into_bytes(),
            props,
            qos: Some(qos),
        })
    }
}

/// `key=value` lines for a property bag, system properties first, for display.
pub fn property_lines(p: &PropertyBag) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .system
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.extend(
        p.app
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_else(|| "(no value)".into()))),
    );
    v
}

/// A body for display: UTF-8 text as is, pretty-printed if it is JSON; binary as hex.
pub fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => serde_json::from_str::<serde_json::Value>(s)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| s.to_string()),
        Err(_) => format!(
            "({} bytes, not UTF-8) {}",
            body.len(),
            body.iter()
                .take(64)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_waits() {
        assert_eq!(
            method_wait(1_000, 13_500),
            "waiting 12 s; a caller using the default timeout gives up in 18 s"
        );
        assert!(method_wait(0, 45_000).contains("past the default 30 s timeout"));
        assert!(method_wait(5_000, 0).starts_with("waiting 0 s"));
    }

    #[test]
    fn countdowns() {
        assert_eq!(countdown(None, 0), "—");
        assert_eq!(countdown(Some(10_000), 10_000), "expired");
        assert_eq!(countdown(Some(3_599_000 + 1000), 1000), "59:59");
        assert_eq!(countdown(Some(3_723_000), 0), "1:02:03");
    }

    #[test]
    fn the_form_builds_telemetry_or_says_what_is_wrong() {
        let f = TelemetryForm {
            body: "{\"t\":1}".into(),
            props: vec![("alert".into(), "on".into()), ("".into(), "".into())],
            content_type: "application/json".into(),
            content_encoding: " utf-8 ".into(),
            message_id: "".into(),
            qos: 1,
        };
        let t = f.to_telemetry().unwrap();
        assert_eq!(
            t.props.system.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(t.props.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(t.props.system.message_id, None);
        assert_eq!(
            t.props.app,
            vec![("alert".to_string(), Some("on".to_string()))]
        );
        assert_eq!(t.qos, Some(QoS::AtLeastOnce));

        let mut bad = f.clone();
        bad.props.push(("".into(), "orphan".into()));
        assert_eq!(
            bad.to_telemetry().unwrap_err(),
            "property 3 has a value but no name"
        );
        let mut bad = f.clone();
        bad.props[0].0 = "$.mid".into();
        assert!(bad.to_telemetry().unwrap_err().contains("reserved"));
        let mut bad = f;
        bad.qos = 2;
        assert!(bad.to_telemetry().unwrap_err().contains("QoS 2"));
    }

    #[test]
    fn bodies_display_as_text_json_or_hex() {
        assert_eq!(body_text(b"hello"), "hello");
        assert_eq!(body_text(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(body_text(b"42"), "42");
        assert_eq!(body_text(&[0xff, 0x00]), "(2 bytes, not UTF-8) ff 00");
    }

    #[test]
    fn property_lines_list_system_then_application() {
        let mut p = PropertyBag::default();
        p.system.message_id = Some("m".into());
        p.app.push(("k".into(), None));
        assert_eq!(
            property_lines(&p),
            vec![
                ("$.mid".to_string(), "m".to_string()),
                ("k".to_string(), "(no value)".to_string())
            ]
        );
    }
}
