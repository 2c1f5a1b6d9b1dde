//! Connection strings: `HostName=...;DeviceId=...;SharedAccessKey=...`.
//!
//! Keys: HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName,
//! SharedAccessSignature, GatewayHostName (and x509, which a browser cannot use). Every
//! error names the field that is missing or wrong and says what to do.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::identity::{DeviceId, Identity, IdentityError, ModuleId};

/// Accepts base64 with or without padding and with non-zero trailing bits, as the Node
/// SDK does (SAS vector V4 signs with the key `key`).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A shared access key: the base64-decoded bytes. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKey(Vec<u8>);

impl SymmetricKey {
    /// Decodes a base64 key (padding optional).
    pub fn from_base64(s: &str) -> Result<SymmetricKey, base64::DecodeError> {
        let bytes = LENIENT_BASE64.decode(s.trim())?;
        if bytes.is_empty() {
            return Err(base64::DecodeError::InvalidLength(0));
        }
        Ok(SymmetricKey(bytes))
    }

    /// A key from raw bytes.
    pub fn from_bytes(b: impl Into<Vec<u8>>) -> SymmetricKey {
        SymmetricKey(b.into())
    }

    /// The raw key bytes (the HMAC key).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The canonical base64 form, for display when the user asks and for storage.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey(<{} bytes, redacted>)", self.0.len())
    }
}

/// A parsed connection string (device, module, or service policy).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`: the hub, e.g. `myhub.azure-devices.net`. Tokens are signed for it.
    pub host_name: String,
    /// `DeviceId`.
    pub device_id: Option<DeviceId>,
    /// `ModuleId` (needs `DeviceId`).
    pub module_id: Option<ModuleId>,
    /// `SharedAccessKey`, decoded.
    pub shared_access_key: Option<SymmetricKey>,
    /// `SharedAccessKeyName`: the policy the key belongs to (service strings, or a device
    /// connecting with a policy key).
    pub shared_access_key_name: Option<String>,
    /// `SharedAccessSignature`: a ready-made token instead of a key.
    pub shared_access_signature: Option<String>,
    /// `GatewayHostName`: where to connect, when it differs from `HostName`.
    pub gateway_host_name: Option<String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("shared_access_key", &self.shared_access_key)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field(
                "shared_access_signature",
                &self.shared_access_signature.as_ref().map(|_| "<redacted>"),
            )
            .field("gateway_host_name", &self.gateway_host_name)
            .finish()
    }
}

/// What is wrong with a connection string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// Nothing was given.
    #[error("the connection string is empty; paste one like HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=...")]
    Empty,
    /// A `;`-separated part with no `=`. The part is not quoted: it may be a pasted key.
    #[error("part {index} is not of the form Name=value; parts are separated by ';'")]
    NotKeyValue {
        /// 1-based position of the part.
        index: usize,
    },
    /// A field name this format does not have. Quoted only when it looks like a name
    /// (letters, at most 32), so that a stray key is never echoed.
    #[error("unknown field {name}in part {index}; expected HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName, SharedAccessSignature or GatewayHostName")]
    UnknownField {
        /// `"Name" ` or empty.
        name: String,
        /// 1-based position of the part.
        index: usize,
    },
    /// The same key twice.
    #[error("{0} appears more than once")]
    Duplicate(&'static str),
    /// A required key is absent.
    #[error("{field} is missing; {hint}")]
    Missing {
        /// The field.
        field: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// A key present with an empty value.
    #[error("{0} is empty")]
    EmptyValue(&'static str),
    /// SharedAccessKey is not base64.
    #[error("SharedAccessKey is not valid base64 ({0}); copy the primary or secondary key exactly as the portal shows it")]
    InvalidKey(String),
    /// HostName is not a host name.
    #[error("{field} {} is not a host name (letters, digits, '-', '.', optional :port)", crate::text::Quoted(.value))]
    InvalidHost {
        /// HostName or GatewayHostName.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// DeviceId or ModuleId breaks the registry rules.
    #[error(transparent)]
    InvalidId(#[from] IdentityError),
    /// ModuleId without DeviceId.
    #[error("ModuleId is given without DeviceId; a module belongs to a device")]
    ModuleWithoutDevice,
    /// Both a key and a signature.
    #[error("SharedAccessKey and SharedAccessSignature are both given; keep one")]
    KeyAndSignature,
    /// `x509=true`.
    #[error("this is an X.509 connection string; a browser cannot present a client certificate, use a symmetric-key device")]
    X509NotSupported,
}

fn valid_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

impl ConnectionString {
    /// Parses and validates every field present. Whitespace around parts is ignored;
    /// field names are matched case-insensitively, as the .NET SDK does.
    pub fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        use ConnectionStringError as E;
        let s = s.trim();
        if s.is_empty() {
            return Err(E::Empty);
        }
        let mut host = None;
        let mut device = None;
        let mut module = None;
        let mut key = None;
        let mut key_name = None;
        let mut sig = None;
        let mut gateway = None;
        for (i, part) in s.split(';').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let index = i + 1;
            let Some((name, value)) = part.split_once('=') else {
                return Err(E::NotKeyValue { index });
            };
            let value = value.trim();
            let (field, slot): (&'static str, &mut Option<String>) =
                match name.trim().to_ascii_lowercase().as_str() {
                    "hostname" => ("HostName", &mut host),
                    "deviceid" => ("DeviceId", &mut device),
                    "moduleid" => ("ModuleId", &mut module),
                    "sharedaccesskey" => ("SharedAccessKey", &mut key),
                    "sharedaccesskeyname" => ("SharedAccessKeyName", &mut key_name),
                    "sharedaccesssignature" => ("SharedAccessSignature", &mut sig),
                    "gatewayhostname" => ("GatewayHostName", &mut gateway),
                    "x509" => return Err(E::X509NotSupported),
                    _ => {
                        let n = name.trim();
                        let looks_like_name =
                            n.len() <= 32 && n.chars().all(|c| c.is_ascii_alphabetic());
                        let name = if looks_like_name {
                            format!("{} ", crate::text::Quoted(n))
                        } else {
                            String::new()
                        };
                        return Err(E::UnknownField { name, index });
                    }
                };
            if slot.is_some() {
                return Err(E::Duplicate(field));
            }
            if value.is_empty() {
                return Err(E::EmptyValue(field));
            }
            *slot = Some(value.to_string());
        }
        let host_name = host.ok_or(E::Missing {
            field: "HostName",
            hint: "add HostName=<your hub>.azure-devices.net",
        })?;
        if !valid_host(&host_name) {
            return Err(E::InvalidHost {
                field: "HostName",
                value: host_name,
            });
        }
        if let Some(g) = &gateway {
            if !valid_host(g) {
                return Err(E::InvalidHost {
                    field: "GatewayHostName",
                    value: g.clone(),
                });
            }
        }
        if key.is_some() && sig.is_some() {
            return Err(E::KeyAndSignature);
        }
        if key.is_none() && sig.is_none() {
            return Err(E::Missing {
                field: "SharedAccessKey",
                hint: "add SharedAccessKey=<the device's primary key> (or a SharedAccessSignature)",
            });
        }
        let shared_access_key = key
            .map(|k| SymmetricKey::from_base64(&k).map_err(|e| E::InvalidKey(e.to_string())))
            .transpose()?;
        let device_id = device.map(DeviceId::new).transpose()?;
        let module_id = module.map(ModuleId::new).transpose()?;
        if module_id.is_some() && device_id.is_none() {
            return Err(E::ModuleWithoutDevice);
        }
        Ok(ConnectionString {
            host_name,
            device_id,
            module_id,
            shared_access_key,
            shared_access_key_name: key_name,
            shared_access_signature: sig,
            gateway_host_name: gateway,
        })
    }

    /// Parses a string that must name a device (or module) able to connect over MQTT.
    pub fn parse_device(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        let cs = ConnectionString::parse(s)?;
        let id = cs.identity().ok_or(ConnectionStringError::Missing {
            field: "DeviceId",
            hint: "this looks like a service connection string; use a device connection string from the device's page",
        })?;
        id.check_mqtt()?;
        Ok(cs)
    }

    /// The device or module identity, if the string names one.
    pub fn identity(&self) -> Option<Identity> {
        let device = self.device_id.clone()?;
        Some(Identity {
            device,
            module: self.module_id.clone(),
        })
    }

    /// The resource URI a token for this string is signed for:
    /// `{HostName}/devices/{id}[/modules/{mid}]`, or `{HostName}` for a policy string.
    pub fn resource_uri(&self) -> String {
        match self.identity() {
            Some(id) => format!("{}/{}", self.host_name, id.resource_path()),
            None => self.host_name.clone(),
        }
    }

    /// Whether [`ConnectionString::sas_token`] can make new tokens (the string has a key,
    /// not only a ready-made signature).
    pub fn can_sign(&self) -> bool {
        self.shared_access_key.is_some()
    }

    /// A SAS token for this string, valid until `expiry` (seconds since 1970): signed with
    /// its key, for its policy (`skn`) when it names one; or, without a key, the ready-made
    /// `SharedAccessSignature` it carries (which cannot be renewed). Every token the app,
    /// the native driver and devhub make from a connection string comes from here, so a
    /// renewed token is made exactly as the first one was.
    pub fn sas_token(&self, expiry: u64) -> Result<String, ConnectionStringError> {
        match (&self.shared_access_key, &self.shared_access_signature) {
            (Some(key), _) => Ok(super::sas::build_token(
                &self.resource_uri(),
                key,
                expiry,
                self.shared_access_key_name.as_deref(),
            )),
            (None, Some(sig)) => Ok(sig.clone()),
            (None, None) => Err(ConnectionStringError::Missing {
                field: "SharedAccessKey",
                hint: "add SharedAccessKey=<the device's primary key> or SharedAccessSignature=<a token>",
            }),
        }
    }

    /// Where to connect: GatewayHostName if given, else HostName.
    pub fn connect_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }

    /// The hub's WebSocket URL for a SAS-authenticated device:
    /// `wss://{connect host}:443/$iothub/websocket?iothub-no-client-cert=true`.
    ///
    /// The query tells the hub not to request a TLS client certificate (E-HUB, Java and C#
    /// SDKs); without it the hub asks for one in the handshake, which a browser may answer
    /// with a certificate picker or a failure. twinscope authenticates with SAS only.
    pub fn websocket_url(&self) -> String {
        let host = self.connect_host();
        let port = if host.contains(':') { "" } else { ":443" };
        format!("wss://{host}{port}/$iothub/websocket?iothub-no-client-cert=true")
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionString::parse(s)
    }
}

/// Writes the string back in the portal's field order. Includes the key: only call this
/// when the user asked for it.
impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={}", self.host_name)?;
        if let Some(d) = &self.device_id {
            write!(f, ";DeviceId={d}")?;
        }
        if let Some(m) = &self.module_id {
            write!(f, ";ModuleId={m}")?;
        }
        if let Some(n) = &self.shared_access_key_name {
            write!(f, ";SharedAccessKeyName={n}")?;
        }
        if let Some(k) = &self.shared_access_key {
            write!(f, ";SharedAccessKey={}", k.to_base64())?;
        }
        if let Some(s) = &self.shared_access_signature {
            write!(f, ";SharedAccessSignature={s}")?;
        }
        if let Some(g) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={g}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStringError as E;

    const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    #[test]
    fn tokens_from_connection_strings_match_the_public_vectors() {
        // V1: a device key.
        let dev = ConnectionString::parse(&format!(
            "HostName=iot-hub-for-test.azure-devices.net;DeviceId=iot-device-for-test;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(
            dev.sas_token(1471940363).unwrap(),
            "SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1471940363"
        );
        // V2: a module signed with a policy key keeps its skn, every time it is signed.
        let module = ConnectionString::parse(&format!(
            "HostName=iot-hub-for-test.azure-devices.net;DeviceId=iot-device-for-test;ModuleId=module-for-test;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        for _ in 0..2 {
            let t = module.sas_token(1471940363).unwrap();
            assert!(
                t.contains("sig=JwAxBBBPYA0E%2FTHdnrXzUfBfuZ7deH6pppCniJ23Uu0%3D"),
                "{t}"
            );
            assert!(t.ends_with("&skn=iothubowner"), "{t}");
        }
        // V3: a service policy string signs for the hub itself.
        let service = ConnectionString::parse(&format!(
            "HostName=iot-hub-for-test.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(service.resource_uri(), "iot-hub-for-test.azure-devices.net");
        assert!(service
            .sas_token(1471940363)
            .unwrap()
            .contains("sig=770sPjjYxRYpNz8%2FhEN7XR5XU5KDGYGTinSP8YyeTXw%3D"));
        // A ready-made signature is used as it is and cannot be renewed.
        let ready = ConnectionString::parse(
            "HostName=h.azure-devices.net;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h.azure-devices.net%2Fdevices%2Fd&sig=abc&se=1",
        )
        .unwrap();
        assert!(!ready.can_sign());
        assert!(ready.sas_token(99).unwrap().ends_with("&se=1"));
        let none = ConnectionString {
            shared_access_signature: None,
            ..ready
        };
        assert!(none
            .sas_token(99)
            .unwrap_err()
            .to_string()
            .contains("SharedAccessKey"));
    }

    #[test]
    fn parses_a_device_string() {
        let cs = ConnectionString::parse_device(&format!(
            "HostName=hub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(cs.host_name, "hub.azure-devices.net");
        assert_eq!(cs.identity().unwrap().client_id(), "dev-01");
        assert_eq!(cs.shared_access_key.as_ref().unwrap().as_bytes().len(), 32);
        assert_eq!(
            cs.websocket_url(),
            "wss://hub.azure-devices.net:443/$iothub/websocket?iothub-no-client-cert=true"
        );
        assert_eq!(
            cs.to_string(),
            format!("HostName=hub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={KEY}")
        );
    }

    #[test]
    fn module_gateway_and_policy() {
        let cs = ConnectionString::parse(&format!(
            " hostname=h.net ; DeviceId=d;ModuleId=m;SharedAccessKeyName=device;SharedAccessKey={KEY};GatewayHostName=127.0.0.1 "
        ))
        .unwrap();
        assert_eq!(cs.identity().unwrap().client_id(), "d/m");
        assert_eq!(cs.shared_access_key_name.as_deref(), Some("device"));
        assert_eq!(cs.connect_host(), "127.0.0.1");
        assert_eq!(
            cs.websocket_url(),
            "wss://127.0.0.1:443/$iothub/websocket?iothub-no-client-cert=true"
        );
    }

    #[test]
    fn service_string_is_not_a_device() {
        let s = format!("HostName=h.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        assert!(ConnectionString::parse(&s).unwrap().identity().is_none());
        assert!(matches!(
            ConnectionString::parse_device(&s),
            Err(E::Missing {
                field: "DeviceId",
                ..
            })
        ));
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            ("   ", E::Empty),
            ("HostName", E::NotKeyValue { index: 1 }),
            (
                "HostName=h;Foo=1",
                E::UnknownField {
                    name: "\"Foo\" ".into(),
                    index: 2,
                },
            ),
            ("HostName=h;HostName=i", E::Duplicate("HostName")),
            ("HostName=;DeviceId=d", E::EmptyValue("HostName")),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=abc!",
                E::InvalidKey("Invalid symbol 33, offset 3.".into()),
            ),
            (
                "HostName=bad host;DeviceId=d;SharedAccessKey=a2V5",
                E::InvalidHost {
                    field: "HostName",
                    value: "bad host".into(),
                },
            ),
            (
                "HostName=h;ModuleId=m;SharedAccessKey=a2V5",
                E::ModuleWithoutDevice,
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=a2V5;SharedAccessSignature=x",
                E::KeyAndSignature,
            ),
            ("HostName=h;DeviceId=d;x509=true", E::X509NotSupported),
        ];
        for (input, want) in cases {
            assert_eq!(
                &ConnectionString::parse(input).unwrap_err(),
                want,
                "{input:?}"
            );
        }
        assert!(matches!(
            ConnectionString::parse("DeviceId=d;SharedAccessKey=a2V5"),
            Err(E::Missing {
                field: "HostName",
                ..
            })
        ));
        assert!(matches!(
            ConnectionString::parse("HostName=h;DeviceId=d"),
            Err(E::Missing {
                field: "SharedAccessKey",
                ..
            })
        ));
        assert!(matches!(
            ConnectionString::parse("HostName=h;DeviceId=a/b;SharedAccessKey=a2V5"),
            Err(E::InvalidId(_))
        ));
        assert!(matches!(
            ConnectionString::parse_device("HostName=h;DeviceId=a#b;SharedAccessKey=a2V5"),
            Err(E::InvalidId(IdentityError::MqttWildcard { .. }))
        ));
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let s = format!("HostName=h.net;DeviceId=d;SharedAccessKey={KEY}");
        let cs = ConnectionString::parse(&s).unwrap();
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains(KEY), "{dbg}");
        assert!(dbg.contains("redacted"));
        // A stray key (with or without its '=') is never echoed in an error.
        for stray in [KEY, KEY.trim_end_matches('=')] {
            let err = ConnectionString::parse(&format!("HostName=h;{stray}"))
                .unwrap_err()
                .to_string();
            assert!(!err.contains(&KEY[..8]), "{err}");
            assert!(err.contains("part 2"), "{err}");
        }
    }

    #[test]
    fn lenient_key_decoding_matches_node() {
        // SAS vector V4: the key "key" is non-canonical base64 for 91 EC.
        assert_eq!(
            SymmetricKey::from_base64("key").unwrap().as_bytes(),
            &[0x91, 0xec]
        );
        assert_eq!(
            SymmetricKey::from_base64("a2V5").unwrap().as_bytes(),
            b"key"
        );
        assert!(SymmetricKey::from_base64("").is_err());
    }
}
