//! Plain view models: what the panels show, computed from client state. Tested natively.

use twinscope_proto::iothub::{ConnectionString, PropertyBag, SasToken};
use twinscope_proto::session::{Will, MAX_KEEP_ALIVE_S};
use twinscope_proto::text::Quoted;

use crate::client::ConnectOptions;
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
    /// `$.cid`.
    pub correlation_id: String,
    /// `$.sub`: the Plug and Play component.
    pub component: String,
    /// `$.ctime`: creation time (ISO-8601), if given.
    pub creation_time: String,
    /// 0 or 1.
    pub qos: u8,
}

impl TelemetryForm {
    /// The message to send, or what is wrong with the form. Rows with an empty name and
    /// value are ignored; a value without a name is an error.
    /// `fresh_id` makes a message id when none is fixed in the form (one per message).
    pub fn to_telemetry_with(
        &self,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<Telemetry, String> {
        let mut t = self.to_telemetry()?;
        if t.props.system.message_id.is_none() {
            t.props.system.message_id = Some(fresh_id());
        }
        Ok(t)
    }

    /// The message as the form says it (no message id unless one is fixed).
    pub fn to_telemetry(&self) -> Result<Telemetry, String> {
        let mut props = PropertyBag::default();
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        props.system.content_type = opt(&self.content_type);
        props.system.content_encoding = opt(&self.content_encoding);
        props.system.message_id = opt(&self.message_id);
        props.system.correlation_id = opt(&self.correlation_id);
        props.system.component = opt(&self.component);
        if let Some(t) = opt(&self.creation_time) {
            if chrono_like(&t).is_none() {
                return Err(format!(
                    "creation time {} must be an ISO-8601 UTC time like 2026-11-29T12:00:00Z",
                    Quoted(&t)
                ));
            }
            props.system.creation_time = Some(t);
        }
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

impl TelemetryForm {
    /// Whether the content type says the body is JSON.
    fn is_json(&self) -> bool {
        let ct = self.content_type.trim().to_ascii_lowercase();
        ct == "application/json" || ct.ends_with("+json")
    }

    /// What is wrong with the body as typed: not JSON while the content type says JSON.
    pub fn body_problem(&self) -> Option<String> {
        if !self.is_json() || self.body.trim().is_empty() {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(self.body.as_bytes())
            .err()
            .map(|e| format!("the body is not valid JSON ({e}); fix it or change the content type"))
    }

    /// The body pretty-printed, when it is JSON.
    pub fn formatted_body(&self) -> Result<String, String> {
        serde_json::from_slice::<serde_json::Value>(self.body.as_bytes())
            .map_err(|e| format!("cannot format: the body is not valid JSON ({e})"))
            .map(|v| format!("{v:#}"))
    }

    /// Warnings about what the hub will make of the message.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.content_type.trim().is_empty() || self.content_encoding.trim().is_empty() {
            w.push(
                "without a content type and encoding (e.g. application/json, utf-8) IoT Hub routing \
                 sees the body as base64 and cannot query it"
                    .to_string(),
            );
        }
        w
    }

    /// The size meter: bytes counted against IoT Hub's 256 KB limit (body, system property
    /// values, application property names and values) and the 4 KB units the message is
    /// billed as.
    pub fn size_meter(&self) -> String {
        let size = self.counted_size();
        let units = size.div_ceil(4096).max(1);
        let limit = twinscope_proto::iothub::MAX_D2C_MESSAGE_BYTES;
        let over = if size > limit {
            " — over the limit"
        } else {
            ""
        };
        format!(
            "{size} B of 256 KB ({}%) · {units} × 4 KB billing unit{}{over}",
            crate::tools::num::fixed(size as f64 * 100.0 / limit as f64, 1),
            if units == 1 { "" } else { "s" }
        )
    }

    pub fn counted_size(&self) -> usize {
        let sys: usize = [
            &self.content_type,
            &self.content_encoding,
            &self.message_id,
            &self.correlation_id,
            &self.component,
            &self.creation_time,
        ]
        .iter()
        .map(|v| v.trim().len())
        .sum();
        let app: usize = self
            .props
            .iter()
            .map(|(k, v)| k.trim().len() + v.len())
            .sum();
        self.body.len() + sys + app
    }
}

/// `Some(())` for `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn chrono_like(t: &str) -> Option<()> {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b.last() == Some(&b'Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)));
    ok.then_some(())
}

/// `key=value` lines for a property bag, system properties first, for display.
pub fn property_lines(p: &PropertyBag) -> Vec<(String, String)> {
    p.display_pairs()
}

/// A body for display: UTF-8 text as is, pretty-printed if it is JSON; binary as hex.
pub fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => serde_json::from_slice::<serde_json::Value>(s.as_bytes())
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .map(|v| format!("{v:#}"))
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

/// The connection form's settings as typed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectForm {
    /// WebSocket URL override.
    pub endpoint: String,
    /// Token lifetime in minutes.
    pub ttl_min: String,
    /// CleanSession.
    pub clean_session: bool,
    /// Keep-alive in seconds.
    pub keep_alive: String,
    /// api-version.
    pub api_version: String,
    /// Plug and Play model id.
    pub model_id: String,
    /// Will body (empty: no will).
    pub will_body: String,
    /// Will properties, one `name=value` a line; `$.ct`, `$.ce`, `$.mid` and the other
    /// system names set system properties.
    pub will_props: String,
}

impl ConnectForm {
    /// The settings in a saved profile: each field may be missing (its default then).
    pub fn from_value(v: &serde_json::Value) -> Result<ConnectForm, String> {
        use crate::tools::profiles::{bool_field, str_field};
        if !v.is_object() {
            return Err("must be an object".into());
        }
        let d = ConnectForm::default();
        Ok(ConnectForm {
            endpoint: str_field(v, "endpoint")?.unwrap_or(d.endpoint),
            ttl_min: str_field(v, "ttlMin")?.unwrap_or(d.ttl_min),
            clean_session: bool_field(v, "cleanSession")?.unwrap_or(d.clean_session),
            keep_alive: str_field(v, "keepAlive")?.unwrap_or(d.keep_alive),
            api_version: str_field(v, "apiVersion")?.unwrap_or(d.api_version),
            model_id: str_field(v, "modelId")?.unwrap_or(d.model_id),
            will_body: str_field(v, "willBody")?.unwrap_or(d.will_body),
            will_props: str_field(v, "willProps")?.unwrap_or(d.will_props),
        })
    }
}

impl Default for ConnectForm {
    fn default() -> Self {
        ConnectForm {
            endpoint: String::new(),
            ttl_min: "60".into(),
            clean_session: false,
            keep_alive: "60".into(),
            api_version: twinscope_proto::iothub::API_VERSION.into(),
            model_id: String::new(),
            will_body: String::new(),
            will_props: String::new(),
        }
    }
}

impl ConnectForm {
    /// The settings to connect with, or what is wrong with the form.
    pub fn to_options(&self) -> Result<ConnectOptions, String> {
        let ttl_s = match self.ttl_min.trim().parse::<u64>() {
            Ok(m) if (1..=525_600).contains(&m) => m * 60,
            _ => {
                return Err("token lifetime must be a whole number of minutes, 1 to 525600".into())
            }
        };
        let keep_alive_s = match self.keep_alive.trim().parse::<u16>() {
            Ok(k) if k <= MAX_KEEP_ALIVE_S => k,
            _ => {
                return Err(format!(
                    "keep-alive must be 0 to {MAX_KEEP_ALIVE_S} seconds (the hub waits 1.5 times it, at most 1767 s)"
                ))
            }
        };
        let api = self.api_version.trim();
        if !(api.len() == 10
            && api.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            }))
        {
            return Err(format!(
                "api-version {} must be a date like {}",
                Quoted(api),
                twinscope_proto::iothub::API_VERSION
            ));
        }
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let will = if self.will_body.is_empty() && self.will_props.trim().is_empty() {
            None
        } else {
            let mut props = PropertyBag::default();
            for (i, line) in self.will_props.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| format!("will property line {} must be name=value", i + 1))?;
                props
                    .set(k.trim(), v.trim())
                    .map_err(|e| format!("will property line {}: {e}", i + 1))?;
            }
            props
                .validate_d2c()
                .map_err(|e| format!("will properties: {e}"))?;
            Some(Will {
                body: self.will_body.clone().into_bytes(),
                props,
            })
        };
        Ok(ConnectOptions {
            endpoint: opt(&self.endpoint),
            ttl_s,
            clean_session: self.clean_session,
            keep_alive_s: Some(keep_alive_s),
            api_version: Some(api.to_string()),
            model_id: opt(&self.model_id),
            will,
        })
    }
}

/// What the key looks like while it is hidden (never the key, nor part of it).
pub const MASK: &str = "•••••••• (hidden)";

/// The parsed fields of a connection string for display, `(label, value)`; the key (and
/// a ready-made signature) only when `show_key`, else [`MASK`]. Errors say what is wrong.
pub fn connection_fields(s: &str, show_key: bool) -> Result<Vec<(&'static str, String)>, String> {
    let cs = ConnectionString::parse(s).map_err(|e| e.to_string())?;
    let secret = |v: String| if show_key { v } else { MASK.to_string() };
    let mut out = vec![("Hub", cs.host_name.clone())];
    if let Some(d) = &cs.device_id {
        out.push(("Device", d.to_string()));
    }
    if let Some(m) = &cs.module_id {
        out.push(("Module", m.to_string()));
    }
    if let Some(n) = &cs.shared_access_key_name {
        out.push(("Key name", n.clone()));
    }
    if let Some(k) = &cs.shared_access_key {
        out.push(("Key", secret(k.to_base64())));
    }
    if let Some(sig) = &cs.shared_access_signature {
        let expires = SasToken::parse(sig)
            .map(|t| format!("ready-made token, expires {}", iso_seconds(t.expiry)))
            .unwrap_or_else(|e| format!("ready-made token ({e})"));
        out.push(("Signature", expires));
        if show_key {
            out.push(("Token", sig.clone()));
        }
    }
    if let Some(g) = &cs.gateway_host_name {
        out.push(("Gateway", g.clone()));
    }
    Ok(out)
}

/// `2026-11-29 23:15:00 UTC` for seconds since 1970.
fn iso_seconds(s: u64) -> String {
    let days = s / 86_400;
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{sec:02} UTC")
}

/// The SAS generator's output: a token for `conn_string` valid for `ttl_min` minutes from
/// `now_s`, and the same connection string with that token as its SharedAccessSignature
/// (and no key), for tools that take one.
pub fn generate_sas(
    conn_string: &str,
    ttl_min: &str,
    now_s: u64,
) -> Result<(String, String), String> {
    let ttl = match ttl_min.trim().parse::<u64>() {
        Ok(m) if (1..=525_600).contains(&m) => m * 60,
        _ => {
            return Err(
                "the token lifetime must be a whole number of minutes, 1 to 525600 (a year)".into(),
            )
        }
    };
    let cs = ConnectionString::parse(conn_string).map_err(|e| e.to_string())?;
    if !cs.can_sign() {
        return Err("this connection string has no SharedAccessKey to sign with".into());
    }
    let token = cs.sas_token(now_s + ttl).map_err(|e| e.to_string())?;
    let with_sas = ConnectionString {
        shared_access_key: None,
        shared_access_key_name: None,
        shared_access_signature: Some(token.clone()),
        ..cs
    };
    Ok((token, with_sas.to_string()))
}

/// One line about a twin as the service API returns it: connection state, versions, tags.
pub fn service_twin_summary(t: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(c) = t.get("connectionState").and_then(|v| v.as_str()) {
        parts.push(c.to_string());
    }
    if let Some(v) = t.get("version").and_then(|v| v.as_u64()) {
        parts.push(format!("twin version {v}"));
    }
    for side in ["desired", "reported"] {
        if let Some(v) = t
            .pointer(&format!("/properties/{side}/$version"))
            .and_then(|v| v.as_u64())
        {
            parts.push(format!("{side} $version {v}"));
        }
    }
    let tags = t
        .get("tags")
        .and_then(|v| v.as_object())
        .map_or(0, |o| o.len());
    parts.push(match tags {
        1 => "1 tag".to_string(),
        n => format!("{n} tags"),
    });
    parts.join(" · ")
}

/// Application properties from `(name, value)` rows: blank rows skipped, names trimmed.
pub fn filled_rows(rows: &[(String, String)]) -> Vec<(String, String)> {
    rows.iter()
        .filter(|(k, v)| !(k.trim().is_empty() && v.is_empty()))
        .map(|(k, v)| (k.trim().to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: &str = "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    #[test]
    fn the_connect_form_checks_its_settings_and_builds_a_will() {
        let f = ConnectForm {
            will_body: "{\"online\": false}".into(),
            will_props: "$.ct=application/json\n\nreason = lost".into(),
            model_id: " dtmi:com:example:Thermostat;1 ".into(),
            clean_session: true,
            ..ConnectForm::default()
        };
        let o = f.to_options().unwrap();
        assert_eq!(
            (o.ttl_s, o.keep_alive_s, o.clean_session),
            (3600, Some(60), true)
        );
        assert_eq!(o.model_id.as_deref(), Some("dtmi:com:example:Thermostat;1"));
        assert_eq!(o.endpoint, None);
        let will = o.will.unwrap();
        assert_eq!(
            will.props.system.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            will.props.app,
            vec![("reason".to_string(), Some("lost".to_string()))]
        );
        let bad = |g: fn(&mut ConnectForm)| {
            let mut f = ConnectForm::default();
            g(&mut f);
            f.to_options().unwrap_err()
        };
        assert!(bad(|f| f.keep_alive = "3000".into()).contains("1177"));
        assert!(bad(|f| f.ttl_min = "0".into()).contains("minutes"));
        assert!(bad(|f| f.api_version = "latest".into()).contains("date"));
        assert!(bad(|f| f.will_props = "no equals sign".into()).contains("line 1"));
        assert!(bad(|f| f.will_props = "a=1\na=2".into()).contains("line 2"));
        assert!(ConnectForm::default().to_options().unwrap().will.is_none());
    }

    #[test]
    fn fields_hide_the_key_unless_asked() {
        let hidden = connection_fields(CS, false).unwrap();
        assert_eq!(hidden[0], ("Hub", "h.azure-devices.net".to_string()));
        assert_eq!(hidden[1], ("Device", "d1".to_string()));
        assert_eq!(hidden[2], ("Key", MASK.to_string()));
        assert!(!format!("{hidden:?}").contains("XLy"), "no part of the key");
        let shown = connection_fields(CS, true).unwrap();
        assert_eq!(shown[2].1, "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=");
        let err = connection_fields("HostName=h;DeviceId", false).unwrap_err();
        assert!(!err.is_empty());
        assert_eq!(iso_seconds(1_471_940_363), "2016-08-23 08:19:23 UTC");
    }

    #[test]
    fn the_sas_generator_signs_and_builds_a_connection_string() {
        // Vector V1 of the spec sheet: its device, key and expiry give its token.
        let v1 = "HostName=iot-hub-for-test.azure-devices.net;DeviceId=iot-device-for-test;SharedAccessKey=+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";
        let (token, _) = generate_sas(v1, "60", 1_471_940_363 - 3600).unwrap();
        assert_eq!(
            token,
            "SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1471940363"
        );
        let (token, cs) = generate_sas(CS, "60", 1_471_936_763).unwrap();
        assert_eq!(
            cs,
            format!("HostName=h.azure-devices.net;DeviceId=d1;SharedAccessSignature={token}")
        );
        let parsed = ConnectionString::parse(&cs).unwrap();
        assert_eq!(
            parsed.shared_access_signature.as_deref(),
            Some(token.as_str())
        );
        let key = ConnectionString::parse(CS)
            .unwrap()
            .shared_access_key
            .unwrap();
        SasToken::parse(&token)
            .unwrap()
            .verify_signature(&key)
            .unwrap();
        assert!(generate_sas(CS, "0", 0).unwrap_err().contains("minutes"));
        assert!(generate_sas(
            "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessSignature=x",
            "5",
            0
        )
        .unwrap_err()
        .contains("no SharedAccessKey"));
    }

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
            ..TelemetryForm::default()
        };
        let t = f.to_telemetry().unwrap();
        assert_eq!(
            t.props.system.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(t.props.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(t.props.system.message_id, None);
        let t = f.to_telemetry_with(|| "generated-1".into()).unwrap();
        assert_eq!(t.props.system.message_id.as_deref(), Some("generated-1"));
        let mut fixed = f.clone();
        fixed.message_id = "m-7".into();
        fixed.correlation_id = "c-1".into();
        fixed.component = "thermostat1".into();
        fixed.creation_time = "2026-11-29T12:00:00.123Z".into();
        let t = fixed.to_telemetry_with(|| unreachable!()).unwrap();
        assert_eq!(t.props.system.message_id.as_deref(), Some("m-7"));
        assert_eq!(t.props.system.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(t.props.system.component.as_deref(), Some("thermostat1"));
        assert_eq!(
            t.props.system.creation_time.as_deref(),
            Some("2026-11-29T12:00:00.123Z")
        );
        fixed.creation_time = "yesterday".into();
        assert!(fixed.to_telemetry().unwrap_err().contains("ISO-8601"));
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
    fn the_form_checks_json_meters_size_and_warns() {
        let mut f = TelemetryForm {
            body: "{\"t\": 1".into(),
            content_type: "application/json".into(),
            content_encoding: "utf-8".into(),
            qos: 1,
            ..TelemetryForm::default()
        };
        assert!(f.body_problem().unwrap().contains("not valid JSON"));
        assert!(f.formatted_body().is_err());
        f.body = "{\"t\":1}".into();
        assert_eq!(f.body_problem(), None);
        assert_eq!(f.formatted_body().unwrap(), "{\n  \"t\": 1\n}");
        f.content_type = "text/plain".into();
        f.body = "not json".into();
        assert_eq!(
            f.body_problem(),
            None,
            "only JSON content types are checked"
        );
        assert!(f.warnings().is_empty());
        f.content_encoding.clear();
        assert!(f.warnings()[0].contains("base64"));
        // 8 body + 10 ("text/plain") + 0 (no encoding) + 3 ("k", "v1") = 21 bytes, one unit.
        f.props = vec![("k".into(), "v1".into())];
        f.body = "12345678".into();
        assert!(
            f.size_meter().starts_with("21 B of 256 KB"),
            "{}",
            f.size_meter()
        );
        f.body = "x".repeat(4096);
        assert!(
            f.size_meter().contains("2 × 4 KB billing units"),
            "{}",
            f.size_meter()
        );
        f.body = "x".repeat(262_144);
        assert!(f.size_meter().ends_with("over the limit"));
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

    #[test]
    fn service_twin_summary_reads_state_versions_and_tags() {
        let t = serde_json::json!({
            "connectionState": "Connected",
            "version": 7,
            "tags": {"site": "a"},
            "properties": {"desired": {"$version": 3}, "reported": {"$version": 5}}
        });
        assert_eq!(
            service_twin_summary(&t),
            "Connected · twin version 7 · desired $version 3 · reported $version 5 · 1 tag"
        );
        assert_eq!(service_twin_summary(&serde_json::json!({})), "0 tags");
    }

    #[test]
    fn blank_rows_are_skipped() {
        let rows = vec![
            (" a ".to_string(), "1".to_string()),
            (String::new(), String::new()),
            (String::new(), "v".to_string()),
        ];
        assert_eq!(
            filled_rows(&rows),
            vec![
                ("a".to_string(), "1".to_string()),
                (String::new(), "v".to_string())
            ]
        );
    }
}
