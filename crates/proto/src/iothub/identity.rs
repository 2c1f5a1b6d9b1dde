//! Device and module identities, validated on construction.
//!
//! Registry rules (D-ID): case-sensitive, at most 128 characters, ASCII alphanumerics and
//! `- . + % _ # * ? ! ( ) , = @ $ '`. Over MQTT the id is written into topic names
//! unencoded, so an id with `+` or `#` (MQTT wildcards) cannot be used there:
//! [`Identity::check_mqtt`] says so.

use std::fmt;

/// Why an id is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Empty id.
    #[error("{kind} is empty")]
    Empty {
        /// "device id" or "module id".
        kind: &'static str,
    },
    /// Longer than 128 characters.
    #[error("{kind} is {len} characters long; IoT Hub allows at most 128")]
    TooLong {
        /// "device id" or "module id".
        kind: &'static str,
        /// Its length.
        len: usize,
    },
    /// A character outside the registry's set.
    #[error("{kind} contains {}; IoT Hub allows ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ '", crate::text::QuotedChar(*.ch))]
    InvalidChar {
        /// "device id" or "module id".
        kind: &'static str,
        /// The offending character.
        ch: char,
    },
    /// `+` or `#` cannot appear in an MQTT topic name.
    #[error(
        "{kind} {} contains {}, an MQTT wildcard: this identity cannot connect over MQTT",
        crate::text::Quoted(.id),
        crate::text::QuotedChar(*.ch)
    )]
    MqttWildcard {
        /// "device id" or "module id".
        kind: &'static str,
        /// The id.
        id: String,
        /// `+` or `#`.
        ch: char,
    },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdentityError> {
    if s.is_empty() {
        return Err(IdentityError::Empty { kind });
    }
    let len = s.chars().count();
    if len > 128 {
        return Err(IdentityError::TooLong { kind, len });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-.+%_#*?!(),=@$'".contains(*c)))
    {
        return Err(IdentityError::InvalidChar { kind, ch });
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` against the registry rules.
            pub fn new(s: impl Into<String>) -> Result<Self, IdentityError> {
                let s = s.into();
                validate($kind, &s)?;
                Ok($name(s))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, IdentityError> {
                $name::new(s)
            }
        }
    };
}

id_type!(
    DeviceId,
    "device id",
    "A device id valid in the identity registry."
);
id_type!(
    ModuleId,
    "module id",
    "A module id valid in the identity registry."
);

/// A device, or a module of a device: who is connecting.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// The device.
    pub device: DeviceId,
    /// The module, for a module identity.
    pub module: Option<ModuleId>,
}

impl Identity {
    /// A device identity.
    pub fn device(device: DeviceId) -> Identity {
        Identity {
            device,
            module: None,
        }
    }

    /// A module identity.
    pub fn module(device: DeviceId, module: ModuleId) -> Identity {
        Identity {
            device,
            module: Some(module),
        }
    }

    /// The MQTT client id: `{device}` or `{device}/{module}`.
    pub fn client_id(&self) -> String {
        match &self.module {
            None => self.device.0.clone(),
            Some(m) => format!("{}/{}", self.device, m),
        }
    }

    /// Reads a client id back: `device` or `device/module` (surrounding space ignored).
    pub fn from_client_id(s: &str) -> Result<Identity, IdentityError> {
        match s.trim().split_once('/') {
            None => Ok(Identity::device(DeviceId::new(s.trim())?)),
            Some((d, m)) => Ok(Identity::module(DeviceId::new(d)?, ModuleId::new(m)?)),
        }
    }

    /// The SAS resource path after the host: `devices/{d}` or `devices/{d}/modules/{m}`.
    pub fn resource_path(&self) -> String {
        match &self.module {
            None => format!("devices/{}", self.device),
            Some(m) => format!("devices/{}/modules/{}", self.device, m),
        }
    }

    /// Errors if the identity cannot be written into MQTT topic names.
    pub fn check_mqtt(&self) -> Result<(), IdentityError> {
        let check = |kind: &'static str, id: &str| match id.chars().find(|c| *c == '+' || *c == '#')
        {
            Some(ch) => Err(IdentityError::MqttWildcard {
                kind,
                id: id.to_string(),
                ch,
            }),
            None => Ok(()),
        };
        check("device id", self.device.as_str())?;
        if let Some(m) = &self.module {
            check("module id", m.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.client_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_read_back() {
        let m = Identity::from_client_id(" d/m ").unwrap();
        assert_eq!(m.client_id(), "d/m");
        assert_eq!(Identity::from_client_id("d").unwrap().module, None);
        assert!(Identity::from_client_id("").is_err());
        assert!(Identity::from_client_id("d/m/x").is_err());
    }

    #[test]
    fn registry_rules() {
        assert!(DeviceId::new("dev-01.a+b%_#*?!(),=@$'").is_ok());
        assert_eq!(
            DeviceId::new(""),
            Err(IdentityError::Empty { kind: "device id" })
        );
        assert_eq!(
            DeviceId::new("a".repeat(129)),
            Err(IdentityError::TooLong {
                kind: "device id",
                len: 129
            })
        );
        assert!(DeviceId::new("a".repeat(128)).is_ok());
        assert_eq!(
            DeviceId::new("a/b"),
            Err(IdentityError::InvalidChar {
                kind: "device id",
                ch: '/'
            })
        );
        assert_eq!(
            ModuleId::new("m 1"),
            Err(IdentityError::InvalidChar {
                kind: "module id",
                ch: ' '
            })
        );
    }

    #[test]
    fn client_id_and_resource() {
        let d = Identity::device(DeviceId::new("d1").unwrap());
        assert_eq!(d.client_id(), "d1");
        assert_eq!(d.resource_path(), "devices/d1");
        let m = Identity::module(DeviceId::new("d1").unwrap(), ModuleId::new("m1").unwrap());
        assert_eq!(m.client_id(), "d1/m1");
        assert_eq!(m.resource_path(), "devices/d1/modules/m1");
    }

    #[test]
    fn wildcards_cannot_go_over_mqtt() {
        let d = Identity::device(DeviceId::new("a#b").unwrap());
        assert!(matches!(
            d.check_mqtt(),
            Err(IdentityError::MqttWildcard { ch: '#', .. })
        ));
        let m = Identity::module(DeviceId::new("ok").unwrap(), ModuleId::new("x+").unwrap());
        assert!(matches!(
            m.check_mqtt(),
            Err(IdentityError::MqttWildcard { ch: '+', .. })
        ));
        assert!(Identity::device(DeviceId::new("fine").unwrap())
            .check_mqtt()
            .is_ok());
    }
}
