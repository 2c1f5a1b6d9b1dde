//! The CONNECT user name: `{host}/{device}[/{module}]/?api-version=...[&model-id=...][&DeviceClientType=...]`.
//!
//! The hub does not decode host and ids; it %-decodes the query (P-WIKI). The legacy form
//! without `?` (`{host}/{device}/api-version=2016-11-14&...`) also parses.

use super::encoding::{decode, encode};
use super::identity::{DeviceId, Identity, IdentityError, ModuleId};

/// A parsed user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    /// The hub host name.
    pub host: String,
    /// The device or module.
    pub identity: Identity,
    /// Query parameters in order, decoded.
    pub params: Vec<(String, String)>,
}

/// Why a user name is not an IoT Hub user name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Not `{host}/{device}[/{module}]/{query}`.
    #[error("user name is not of the form {{host}}/{{device}}[/{{module}}]/?api-version=...")]
    Shape,
    /// A query parameter does not decode.
    #[error("user name query parameter {} is not valid percent-encoding", crate::text::Quoted(.0))]
    BadParam(String),
    /// An id breaks the registry rules.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl Username {
    /// Builds the user name twinscope sends, naming `api_version` (e.g. [`crate::iothub::API_VERSION`]).
    pub fn build(
        host: &str,
        id: &Identity,
        api_version: &str,
        model_id: Option<&str>,
        client_type: Option<&str>,
    ) -> String {
        let mut s = format!(
            "{host}/{}/?api-version={}",
            id.client_id(),
            encode(api_version)
        );
        if let Some(m) = model_id {
            s.push_str("&model-id=");
            s.push_str(&encode(m));
        }
        if let Some(c) = client_type {
            s.push_str("&DeviceClientType=");
            s.push_str(&encode(c));
        }
        s
    }

    /// Parses a user name, current or legacy form.
    pub fn parse(s: &str) -> Result<Username, UsernameError> {
        let parts: Vec<&str> = s.split('/').collect();
        let (host, device, module, query) = match parts.as_slice() {
            [h, d, q] => (*h, *d, None, *q),
            [h, d, m, q] => (*h, *d, Some(*m), *q),
            _ => return Err(UsernameError::Shape),
        };
        let query = if let Some(q) = query.strip_prefix('?') {
            q
        } else if query.starts_with("api-version=") || query.is_empty() {
            query
        } else {
            return Err(UsernameError::Shape);
        };
        if host.is_empty() {
            return Err(UsernameError::Shape);
        }
        let device = DeviceId::new(device)?;
        let identity = match module {
            Some(m) => Identity::module(device, ModuleId::new(m)?),
            None => Identity::device(device),
        };
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match (decode(k), decode(v)) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err(UsernameError::BadParam(k.to_string())),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Username {
            host: host.to_string(),
            identity,
            params,
        })
    }

    /// A query parameter's decoded value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `api-version` parameter.
    pub fn api_version(&self) -> Option<&str> {
        self.param("api-version")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iothub::API_VERSION;

    #[test]
    fn builds_the_documented_form() {
        let id = Identity::device(DeviceId::new("dev-01").unwrap());
        assert_eq!(
            Username::build("h.net", &id, API_VERSION, None, None),
            "h.net/dev-01/?api-version=2021-04-12"
        );
        assert_eq!(
            Username::build("h.net", &id, API_VERSION, Some("dtmi:com:example:Thermostat;1"), Some("twinscope/0.1 (browser)")),
            "h.net/dev-01/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1&DeviceClientType=twinscope%2F0.1%20%28browser%29"
        );
        let m = Identity::module(DeviceId::new("d").unwrap(), ModuleId::new("m").unwrap());
        assert_eq!(
            Username::build("h", &m, API_VERSION, None, None),
            "h/d/m/?api-version=2021-04-12"
        );
    }

    #[test]
    fn parses_sdk_user_names() {
        let u = Username::parse(
            "myiothub.azure-devices.net/my_device/?api-version=2020-09-30&DeviceClientType=azsdk-c%2F1.0&model-id=dtmi%3AYOUR_COMPANY_NAME_HERE%3Asample_device%3B1",
        )
        .unwrap();
        assert_eq!(u.host, "myiothub.azure-devices.net");
        assert_eq!(u.identity.client_id(), "my_device");
        assert_eq!(u.api_version(), Some("2020-09-30"));
        assert_eq!(
            u.param("model-id"),
            Some("dtmi:YOUR_COMPANY_NAME_HERE:sample_device;1")
        );
        assert_eq!(u.param("DeviceClientType"), Some("azsdk-c/1.0"));

        let m = Username::parse("myiothub.azure-devices.net/my_device/my_module_id/?api-version=2020-09-30&DeviceClientType=azrtos").unwrap();
        assert_eq!(m.identity.client_id(), "my_device/my_module_id");

        let legacy = Username::parse("h.net/d1/api-version=2016-11-14&DeviceClientType=x").unwrap();
        assert_eq!(legacy.api_version(), Some("2016-11-14"));
        assert_eq!(legacy.identity.client_id(), "d1");

        let none = Username::parse("h.net/d1/").unwrap();
        assert_eq!(none.api_version(), None);
    }

    #[test]
    fn round_trips() {
        let id = Identity::module(DeviceId::new("d.1").unwrap(), ModuleId::new("m-2").unwrap());
        let s = Username::build("hub.example", &id, API_VERSION, Some("dtmi:x;1"), None);
        let u = Username::parse(&s).unwrap();
        assert_eq!(u.identity, id);
        assert_eq!(u.param("model-id"), Some("dtmi:x;1"));
    }

    #[test]
    fn rejects_bad_shapes() {
        for s in ["", "h", "h/d", "h/d/m/x/?a", "/d/?api-version=1", "h/d/m"] {
            assert!(Username::parse(s).is_err(), "{s}");
        }
        assert!(matches!(
            Username::parse("h/a b/?x"),
            Err(UsernameError::Identity(_))
        ));
        assert!(matches!(
            Username::parse("h/d/?api-version=%ff"),
            Err(UsernameError::BadParam(_))
        ));
    }
}
