//! Who may talk to devhub over HTTP: the checks that keep a web page the user happens to
//! visit from driving a hub on their laptop.
//!
//! Every HTTP request (REST, devhub's own endpoints, WebSocket upgrades, the app's files)
//! passes [`Exposure::check`] first:
//!
//! 1. **Host** must name devhub: `localhost`, an IP literal (loopback or the address it
//!    listens on), the hub name, or a name given with `--allow-host`. A DNS-rebinding page
//!    (`evil.example` re-pointed at 127.0.0.1) sends its own name and is refused.
//! 2. **Origin**, when a browser sends one, must be devhub's own origin (the same host and
//!    port as the request's Host, over http or https) or one given with `--allow-origin`.
//!    Clients that are not browsers send no Origin (or, like paho, their own) and pass.
//! 3. **Content-Type** of every POST, PUT and PATCH must be `application/json`, so that no
//!    cross-site form or `no-cors` fetch (which can only send text/plain, form or
//!    multipart bodies) is accepted. The one exception is devhub's C2D route, whose
//!    Content-Type is the message's own; it needs the iothubowner token, a header no
//!    cross-site page can send without a preflight, which rule 2 refuses.
//!
//! The module is pure (headers in, verdict out) and tested natively; `http.rs` runs it as
//! axum middleware.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, Method};

use crate::hub::{ErrorCode, ServiceError};

/// The names and origins devhub answers to.
#[derive(Clone, Debug, Default)]
pub struct Exposure {
    /// Host names (lowercase, no port) accepted besides `localhost` and IP literals: the
    /// hub name and `--allow-host` names.
    pub hosts: Vec<String>,
    /// Origins (`scheme://host:port`, lowercase) accepted besides devhub's own;
    /// `scheme://host:*` accepts any port on that host.
    pub origins: Vec<String>,
}

impl Exposure {
    /// Devhub answering to `hub_name` and the extra names and origins given by flag.
    pub fn new(hub_name: &str, hosts: &[String], origins: &[String]) -> Exposure {
        let mut all: Vec<String> = std::iter::once(hub_name)
            .chain(hosts.iter().map(String::as_str))
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        all.dedup();
        Exposure {
            hosts: all,
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` (from a Host header, port removed) names devhub.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "localhost" || host.parse::<IpAddr>().is_ok() || self.hosts.contains(&host)
    }

    /// Whether a browser page at `origin` may call devhub through a request whose Host
    /// header is `host_header`.
    pub fn origin_allowed(&self, origin: &str, host_header: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let named = |o: &String| match o.strip_suffix(":*") {
            // `scheme://host:*`: any port on that host.
            Some(prefix) => origin
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(is_port),
            None => *o == origin,
        };
        if self.origins.iter().any(named) {
            return true;
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| a.eq_ignore_ascii_case(host_header))
    }

    /// Checks one request; the error says what was refused and how to allow it.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), ServiceError> {
        let refuse = |msg: String| ServiceError::new(ErrorCode::GenericForbidden, msg);
        let host_header = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refuse("the request has no Host header".into()))?;
        let host = host_of(host_header)
            .ok_or_else(|| refuse(format!("Host header {host_header:?} is malformed")))?;
        if !self.host_allowed(host) {
            return Err(refuse(format!(
                "devhub does not answer to the name {host:?} (Host header); it answers to localhost, IP addresses, {}; start devhub with --allow-host {host} to allow it",
                self.hosts.join(", ")
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin, host_header) {
                return Err(refuse(format!(
                    "requests from the web page at origin {origin:?} are refused; start devhub with --allow-origin {origin} to allow that page to use it"
                )));
            }
        }
        let has_body = [Method::POST, Method::PUT, Method::PATCH].contains(method);
        if has_body && !is_c2d_route(path) {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Err(ServiceError::new(
                    ErrorCode::GenericUnsupportedMediaType,
                    format!(
                        "{method} needs Content-Type: application/json (got {:?})",
                        if ct.is_empty() { "none" } else { ct }
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `POST /devices/{id}/messages/deviceBound`, whose Content-Type is the message's own.
fn is_c2d_route(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), ["devices", _, "messages", "deviceBound"])
}

/// The host part of a Host header: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn host_of(h: &str) -> Option<&str> {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Some(inside);
    }
    let host = match h.rsplit_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => h,
    };
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then_some(host)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// What listening on `addr` exposes, when it is not a loopback address (printed at start).
pub fn exposure_warning(addr: &std::net::SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "{addr} is not a loopback address: other machines on the network can reach devhub there. \
         Anyone who can reach it may connect devices whose keys they hold, and anyone with the service \
         connection string may read every device's telemetry, keys and twins, send C2D messages, call \
         methods and inject faults. The demo page and its keys are served to every browser that loads it."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn exposure() -> Exposure {
        Exposure::new(
            "myhub.local",
            &["devbox".into()],
            &["http://127.0.0.1:9000".into(), "http://[::1]:*".into()],
        )
    }

    #[test]
    fn listening_off_loopback_says_what_is_exposed() {
        assert_eq!(exposure_warning(&"127.0.0.1:8080".parse().unwrap()), None);
        assert_eq!(exposure_warning(&"[::1]:8080".parse().unwrap()), None);
        for a in ["0.0.0.0:8080", "[::]:443", "192.0.2.7:8883"] {
            let w = exposure_warning(&a.parse().unwrap()).expect(a);
            assert!(
                w.contains("not a loopback address") && w.contains("telemetry"),
                "{w}"
            );
        }
    }

    #[test]
    fn host_names() {
        assert_eq!(host_of("localhost:8080"), Some("localhost"));
        assert_eq!(host_of("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:8080"), Some("::1"));
        assert_eq!(host_of("[::1]"), Some("::1"));
        assert_eq!(host_of("a:b"), None);
        assert_eq!(host_of("[::1]x"), None);
        assert_eq!(host_of(""), None);
        let e = exposure();
        for ok in [
            "localhost",
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "MyHub.Local",
            "devbox",
            "localhost.",
        ] {
            assert!(e.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io"] {
            assert!(!e.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn dns_rebinding_is_refused() {
        let e = exposure();
        let err = e
            .check(
                &Method::GET,
                "/devhub/demo",
                &headers(&[("host", "evil.example:8080")]),
            )
            .unwrap_err();
        assert_eq!(err.status, 403);
        assert!(
            err.message.contains("--allow-host evil.example"),
            "{}",
            err.message
        );
        assert!(
            e.check(&Method::GET, "/", &headers(&[])).is_err(),
            "no Host"
        );
        assert!(e
            .check(&Method::GET, "/", &headers(&[("host", "localhost:8080")]))
            .is_ok());
    }

    #[test]
    fn only_devhubs_own_origin_and_named_origins() {
        let e = exposure();
        let get = |origin: &str| {
            e.check(
                &Method::GET,
                "/devhub/demo",
                &headers(&[("host", "127.0.0.1:8080"), ("origin", origin)]),
            )
        };
        assert!(get("http://127.0.0.1:8080").is_ok());
        assert!(
            get("https://127.0.0.1:8080").is_ok(),
            "paho sends https://host:port"
        );
        assert!(get("http://127.0.0.1:9000").is_ok(), "--allow-origin");
        assert!(get("http://127.0.0.1:9001").is_err(), "another local page");
        assert!(
            get("http://localhost:8080").is_err(),
            "another origin for the same server"
        );
        assert!(get("https://evil.example").is_err());
        assert!(get("null").is_err());
        assert!(get("http://[::1]:4000").is_ok(), "port wildcard");
        assert!(get("http://[::1]").is_err(), "the wildcard needs a port");
        assert!(get("http://[::1]:4000.evil.example").is_err());
        let err = get("https://evil.example").unwrap_err();
        assert!(err.message.contains("--allow-origin https://evil.example"));
    }

    #[test]
    fn bodies_must_be_json_except_c2d() {
        let e = exposure();
        let post = |path: &str, ct: Option<&str>| {
            let mut h = headers(&[("host", "localhost:8080")]);
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            e.check(&Method::POST, path, &h)
        };
        let err = post("/devhub/faults", Some("text/plain")).unwrap_err();
        assert_eq!(err.status, 415);
        assert!(err.message.contains("application/json"));
        assert!(post("/devhub/faults", None).is_err());
        assert!(post("/devhub/faults", Some("application/x-www-form-urlencoded")).is_err());
        assert!(post("/devhub/faults", Some("application/json")).is_ok());
        assert!(post("/devhub/faults", Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(post("/devices/d1/messages/deviceBound", Some("text/plain")).is_ok());
        assert!(post("/devices/d1/messages/deviceBound/x", Some("text/plain")).is_err());
        assert!(e
            .check(
                &Method::GET,
                "/devhub/events",
                &headers(&[("host", "localhost")])
            )
            .is_ok());
    }
}
