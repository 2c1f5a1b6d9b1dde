//! The hub's service REST API, as requests to send and answers to read: twin read and
//! desired patch, cloud-to-device send and direct-method invocation, signed with a
//! service policy's SAS token. No IO: the browser (or any client) sends what these build.
//! Also the fault requests devhub's `/devhub/faults` takes, shared with devhub itself.
//!
//! Sources: D-TWIN (`GET/PATCH /twins/{id}`), D-DM (`POST /twins/{id}/methods`,
//! `responseTimeoutInSeconds` 5..=300), D-MSG (C2D headers `iothub-app-{name}`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::identity::Identity;
use super::props::{is_http_token, validate_app_name};
use super::{API_VERSION, MAX_C2D_MESSAGE_BYTES, MAX_METHOD_PAYLOAD_BYTES};

/// One HTTP request to the service API: method, path with query, headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRequest {
    /// `GET`, `PATCH` or `POST`.
    pub method: &'static str,
    /// Path and query, e.g. `/twins/dev-01?api-version=2021-04-12`.
    pub path: String,
    /// Headers besides `Authorization`.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// Why a service request could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceInputError {
    /// The desired patch is not a JSON object.
    #[error("the desired patch must be a JSON object, e.g. {{\"interval\": 5}}")]
    DesiredNotObject,
    /// The method name is empty or too long.
    #[error("the method name must be 1 to 128 characters with no '/' or '?'")]
    MethodName,
    /// The response timeout is outside 5..=300 s.
    #[error("the response timeout must be between 5 and 300 seconds")]
    Timeout,
    /// The method payload is too large.
    #[error("the method payload is {0} bytes; the hub takes at most 128 KB")]
    MethodPayloadTooLarge(usize),
    /// The C2D body is too large.
    #[error("the message is {0} bytes; a cloud-to-device message may be at most 64 KB")]
    C2dTooLarge(usize),
    /// An application property name or value the hub would refuse.
    #[error("property {}: {why}", crate::text::Quoted(.name))]
    Property {
        /// The name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

fn twin_path(id: &Identity) -> String {
    match &id.module {
        Some(m) => format!(
            "/twins/{}/modules/{}",
            enc(id.device.as_str()),
            enc(m.as_str())
        ),
        None => format!("/twins/{}", enc(id.device.as_str())),
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn json_headers() -> Vec<(String, String)> {
    vec![(
        "Content-Type".into(),
        "application/json; charset=utf-8".into(),
    )]
}

/// `GET /twins/{id}`: the twin as the service sees it (tags, versions, `$metadata`,
/// connection state).
pub fn get_twin(id: &Identity) -> ServiceRequest {
    ServiceRequest {
        method: "GET",
        path: format!("{}?api-version={API_VERSION}", twin_path(id)),
        headers: Vec::new(),
        body: None,
    }
}

/// `PATCH /twins/{id}` with `{"properties":{"desired": patch}}`: merges a desired patch
/// (a `null` removes a property). The connected device is sent the change.
pub fn patch_desired(id: &Identity, patch: &Value) -> Result<ServiceRequest, ServiceInputError> {
    if !patch.is_object() {
        return Err(ServiceInputError::DesiredNotObject);
    }
    let body = json!({"properties": {"desired": patch}});
    Ok(ServiceRequest {
        method: "PATCH",
        path: format!("{}?api-version={API_VERSION}", twin_path(id)),
        headers: json_headers(),
        body: Some(body.to_string().into_bytes()),
    })
}

/// `POST /twins/{id}/methods`: invokes a direct method and waits up to `timeout_s` for
/// the device's answer.
pub fn invoke_method(
    id: &Identity,
    name: &str,
    payload: &Value,
    timeout_s: u64,
) -> Result<ServiceRequest, ServiceInputError> {
    if name.is_empty() || name.chars().count() > 128 || name.contains(['/', '?']) {
        return Err(ServiceInputError::MethodName);
    }
    if !(5..=300).contains(&timeout_s) {
        return Err(ServiceInputError::Timeout);
    }
    let size = payload.to_string().len();
    if size > MAX_METHOD_PAYLOAD_BYTES {
        return Err(ServiceInputError::MethodPayloadTooLarge(size));
    }
    let body = json!({
        "methodName": name,
        "payload": payload,
        "responseTimeoutInSeconds": timeout_s,
    });
    Ok(ServiceRequest {
        method: "POST",
        path: format!("{}/methods?api-version={API_VERSION}", twin_path(id)),
        headers: json_headers(),
        body: Some(body.to_string().into_bytes()),
    })
}

/// `POST /devices/{id}/messages/deviceBound`: a cloud-to-device message with its
/// application properties (as `iothub-app-{name}` headers), message id and content type.
pub fn send_c2d(
    device: &str,
    body: &[u8],
    props: &[(String, String)],
    message_id: &str,
    content_type: Option<&str>,
) -> Result<ServiceRequest, ServiceInputError> {
    let size = body.len() + props.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if size > MAX_C2D_MESSAGE_BYTES {
        return Err(ServiceInputError::C2dTooLarge(size));
    }
    let mut headers = vec![("iothub-messageid".to_string(), message_id.to_string())];
    if let Some(ct) = content_type.filter(|c| !c.is_empty()) {
        headers.push(("Content-Type".into(), ct.to_string()));
    }
    for (name, value) in props {
        let bad = |why: String| ServiceInputError::Property {
            name: name.clone(),
            why,
        };
        validate_app_name(name).map_err(|e| bad(e.to_string()))?;
        if !is_http_token(name) {
            return Err(bad(
                "a C2D property name travels as an HTTP header: letters, digits and !#$%&'*+-.^_`|~ only"
                    .into(),
            ));
        }
        // An HTTP header value: printable ASCII only.
        if !value.chars().all(|c| (' '..='~').contains(&c)) {
            return Err(bad(
                "a C2D property value travels as an HTTP header: printable ASCII only".into(),
            ));
        }
        headers.push((format!("iothub-app-{name}"), value.clone()));
    }
    Ok(ServiceRequest {
        method: "POST",
        path: format!(
            "/devices/{}/messages/deviceBound?api-version={API_VERSION}",
            enc(device)
        ),
        headers,
        body: Some(body.to_vec()),
    })
}

/// A direct method's answer as the service reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodAnswer {
    /// The status the device answered with.
    pub status: i32,
    /// The payload the device answered with.
    pub payload: Value,
}

/// Reads a method answer (`{"status": 200, "payload": ...}`) from a 200 body.
pub fn parse_method_answer(body: &str) -> Result<MethodAnswer, String> {
    let bad = |e: String| format!("the hub's answer is not a method result: {e}");
    let mut v: Value = serde_json::from_slice(body.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let status = v
        .get("status")
        .and_then(Value::as_i64)
        .and_then(|s| i32::try_from(s).ok())
        .ok_or_else(|| bad("it has no whole-number \"status\"".into()))?;
    let payload = v.get_mut("payload").map(Value::take).unwrap_or(Value::Null);
    Ok(MethodAnswer { status, payload })
}

/// An error answer in words: the hub's `ErrorCode` and message from its JSON body
/// (`{"Message":"ErrorCode:DeviceNotOnline;...", ...}`), and what the status means.
pub fn explain_error(status: u16, body: &str) -> String {
    let from_body = serde_json::from_slice::<Value>(body.as_bytes())
        .ok()
        .and_then(|v| {
            let m = v.get("Message").or_else(|| v.get("message"))?.as_str()?;
            // Some answers nest the JSON again inside Message.
            let m = serde_json::from_slice::<Value>(m.as_bytes())
                .ok()
                .and_then(|inner| inner.get("Message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| m.to_string());
            Some(m)
        });
    let detail = match from_body {
        Some(m) => match m.strip_prefix("ErrorCode:").and_then(|r| r.split_once(';')) {
            Some((code, text)) => format!("{code}: {text}"),
            None => m,
        },
        None if body.trim().is_empty() => String::new(),
        None => body.chars().take(200).collect(),
    };
    let hint = match status {
        401 => "the service key or its policy name is wrong, or the token expired",
        403 => "the policy lacks the permission (service connect or registry write)",
        404 => "no such device (or it is not connected, for a method)",
        412 => "the twin changed meanwhile (etag)",
        429 => "throttled: try again later",
        504 => "the device did not answer in time",
        _ => "",
    };
    let mut out = format!("HTTP {status}");
    if !detail.is_empty() {
        out.push_str(": ");
        out.push_str(&detail);
    }
    if !hint.is_empty() {
        out.push_str(" (");
        out.push_str(hint);
        out.push(')');
    }
    out
}

/// Operations devhub's faults can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOp {
    /// Twin GET and reported PATCH from devices.
    Twin,
    /// Direct-method invocations from the service.
    Method,
    /// Device telemetry.
    Telemetry,
}

/// A request to devhub's `POST /devhub/faults` (devhub only; a real hub has no such API).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Fault {
    /// Drop a device's connections now.
    Drop {
        /// The device id.
        device: String,
    },
    /// Fail the next `count` operations of `op` with `status`.
    Fail {
        /// Which operations.
        op: FaultOp,
        /// How many.
        count: u32,
        /// The HTTP-style status to fail with.
        status: u16,
    },
    /// Delay every answer by `ms`.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Drop connections at random.
    DropRate {
        /// Probability per incoming packet, 0..=1.
        rate: f64,
        /// Seed of the random generator.
        seed: u64,
    },
    /// Lose the next desired-property notification for a device (or `device/module`).
    SkipDesired {
        /// The client id.
        device: String,
    },
    /// Clear every fault.
    Clear,
}

impl Fault {
    /// The request to send for it.
    pub fn request(&self) -> ServiceRequest {
        ServiceRequest {
            method: "POST",
            path: "/devhub/faults".into(),
            headers: json_headers(),
            body: Some(serde_json::to_vec(self).unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iothub::{DeviceId, ModuleId};

    fn dev(id: &str) -> Identity {
        Identity::device(DeviceId::new(id).unwrap())
    }

    fn body(r: &ServiceRequest) -> Value {
        serde_json::from_slice(r.body.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn twin_paths_escape_ids_and_name_modules() {
        let r = get_twin(&dev("dev#01"));
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/twins/dev%2301?api-version=2021-04-12");
        let m = Identity::module(DeviceId::new("d").unwrap(), ModuleId::new("m").unwrap());
        assert_eq!(
            get_twin(&m).path,
            "/twins/d/modules/m?api-version=2021-04-12"
        );
    }

    #[test]
    fn desired_patch_is_wrapped_in_properties() {
        let r = patch_desired(&dev("d"), &json!({"interval": 5})).unwrap();
        assert_eq!(r.method, "PATCH");
        assert_eq!(
            body(&r),
            json!({"properties": {"desired": {"interval": 5}}})
        );
        assert_eq!(
            patch_desired(&dev("d"), &json!([1])),
            Err(ServiceInputError::DesiredNotObject)
        );
    }

    #[test]
    fn method_invocation_checks_name_timeout_and_size() {
        let r = invoke_method(&dev("d"), "reboot", &json!({"delay": 1}), 30).unwrap();
        assert_eq!(r.path, "/twins/d/methods?api-version=2021-04-12");
        assert_eq!(
            body(&r),
            json!({"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 30})
        );
        assert_eq!(
            invoke_method(&dev("d"), "", &Value::Null, 30),
            Err(ServiceInputError::MethodName)
        );
        assert_eq!(
            invoke_method(&dev("d"), "a/b", &Value::Null, 30),
            Err(ServiceInputError::MethodName)
        );
        assert_eq!(
            invoke_method(&dev("d"), "m", &Value::Null, 4),
            Err(ServiceInputError::Timeout)
        );
        let big = Value::String("x".repeat(MAX_METHOD_PAYLOAD_BYTES));
        assert!(matches!(
            invoke_method(&dev("d"), "m", &big, 30),
            Err(ServiceInputError::MethodPayloadTooLarge(_))
        ));
    }

    #[test]
    fn c2d_properties_become_headers_and_bad_ones_are_named() {
        let props = vec![("color".to_string(), "red".to_string())];
        let r = send_c2d("d:1", b"<b>hi</b>", &props, "m-1", Some("text/plain")).unwrap();
        assert_eq!(
            r.path,
            "/devices/d%3A1/messages/deviceBound?api-version=2021-04-12"
        );
        assert!(r
            .headers
            .contains(&("iothub-app-color".into(), "red".into())));
        assert!(r
            .headers
            .contains(&("iothub-messageid".into(), "m-1".into())));
        assert!(r
            .headers
            .contains(&("Content-Type".into(), "text/plain".into())));
        assert_eq!(r.body.as_deref(), Some(&b"<b>hi</b>"[..]));
        let bad = vec![("a b".to_string(), "x".to_string())];
        assert!(matches!(
            send_c2d("d", b"", &bad, "m", None),
            Err(ServiceInputError::Property { name, .. }) if name == "a b"
        ));
        let bad = vec![("k".to_string(), "é".to_string())];
        assert!(send_c2d("d", b"", &bad, "m", None).is_err());
        let big = vec![0u8; MAX_C2D_MESSAGE_BYTES + 1];
        assert_eq!(
            send_c2d("d", &big, &[], "m", None),
            Err(ServiceInputError::C2dTooLarge(MAX_C2D_MESSAGE_BYTES + 1))
        );
    }

    #[test]
    fn errors_are_explained_from_the_hub_body() {
        let b = r#"{"Message":"ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.","ExceptionMessage":"Tracking ID:x"}"#;
        assert_eq!(
            explain_error(404, b),
            "HTTP 404: DeviceNotOnline: Timed out waiting for device to connect. (no such device (or it is not connected, for a method))"
        );
        assert_eq!(explain_error(500, ""), "HTTP 500");
        assert!(explain_error(401, "nope").contains("service key"));
    }

    #[test]
    fn method_answers_parse() {
        let a = parse_method_answer(r#"{"status":200,"payload":{"ok":true}}"#).unwrap();
        assert_eq!((a.status, a.payload), (200, json!({"ok": true})));
        assert!(parse_method_answer("[]").is_err());
        // No payload: null. A status that is not a whole number says so.
        let a = parse_method_answer(r#"{"status":404}"#).unwrap();
        assert_eq!((a.status, a.payload), (404, Value::Null));
        let e = parse_method_answer(r#"{"status":"200","payload":1}"#).unwrap_err();
        assert!(e.contains("\"status\""), "{e}");
        assert!(parse_method_answer("{")
            .unwrap_err()
            .contains("not a method result"));
    }

    #[test]
    fn faults_serialize_as_devhub_reads_them() {
        let f = Fault::Fail {
            op: FaultOp::Twin,
            count: 2,
            status: 500,
        };
        assert_eq!(
            body(&f.request()),
            json!({"action": "fail", "op": "twin", "count": 2, "status": 500})
        );
        assert_eq!(
            serde_json::to_value(Fault::DropRate { rate: 0.5, seed: 1 }).unwrap(),
            json!({"action": "drop-rate", "rate": 0.5, "seed": 1})
        );
        let back: Fault = serde_json::from_slice(r#"{"action":"clear"}"#.as_bytes()).unwrap();
        assert_eq!(back, Fault::Clear);
    }
}
