//! IoT Hub topic names, both directions (D-MQTT, D-TWIN, D-DM).
//!
//! ```text
//! device -> hub  devices/{d}/messages/events/{bag}            telemetry
//!                devices/{d}/modules/{m}/messages/events/{bag} module telemetry
//!                $iothub/twin/GET/?$rid={rid}
//!                $iothub/twin/PATCH/properties/reported/?$rid={rid}
//!                $iothub/methods/res/{status}/?$rid={rid}
//! hub -> device  devices/{d}/messages/devicebound/{bag}        C2D
//!                devices/{d}/modules/{m}/inputs/{input}/{bag}   module input
//!                $iothub/twin/res/{status}/?$rid={rid}[&$version={v}]
//!                $iothub/twin/PATCH/properties/desired/?$version={v}
//!                $iothub/methods/POST/{name}/?$rid={rid}
//! ```
//!
//! Ids are written into topics unencoded (P-WIKI). After the fixed levels, the rest of the
//! topic is the property bag, which may itself contain a raw `/` (E-HUB c2d tests).

use super::identity::{DeviceId, Identity, IdentityError, ModuleId};
use super::props::{PropertyBag, PropertyError, SysPrefix};

/// Subscription filters.
pub mod filter {
    use super::{DeviceId, Identity};

    /// Twin responses.
    pub const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
    /// Desired-property updates.
    pub const TWIN_DESIRED: &str = "$iothub/twin/PATCH/properties/desired/#";
    /// Direct-method requests.
    pub const METHODS: &str = "$iothub/methods/POST/#";

    /// C2D messages for a device.
    pub fn c2d(device: &DeviceId) -> String {
        format!("devices/{device}/messages/devicebound/#")
    }

    /// Inputs of a module (`None` for a device identity).
    pub fn module_inputs(id: &Identity) -> Option<String> {
        id.module
            .as_ref()
            .map(|m| format!("devices/{}/modules/{m}/inputs/#", id.device))
    }
}

/// The topic of a C2D message for `device` whose property bag is already encoded.
pub fn c2d_topic(device: &DeviceId, encoded_bag: &str) -> String {
    format!("devices/{device}/messages/devicebound/{encoded_bag}")
}

/// The topic `identity` sends telemetry with properties `props` to. Built in place (it is
/// built for every message sent): one allocation, no formatting machinery.
pub fn telemetry_topic(identity: &Identity, props: &PropertyBag, prefix: SysPrefix) -> String {
    let module = identity.module.as_ref().map(ModuleId::as_str);
    let mut t = String::with_capacity(
        48 + identity.device.as_str().len()
            + module.map_or(0, str::len)
            + props.encoded_len_hint() * 3 / 2,
    );
    t.push_str("devices/");
    t.push_str(identity.device.as_str());
    if let Some(m) = module {
        t.push_str("/modules/");
        t.push_str(m);
    }
    t.push_str("/messages/events/");
    props.encode_into(&mut t, prefix);
    t
}

/// A parsed IoT Hub topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Device-to-cloud telemetry from a device or module.
    Telemetry {
        /// Who sent it (from the topic; the hub checks it is the connected identity).
        identity: Identity,
        /// Properties from the topic.
        props: PropertyBag,
    },
    /// A cloud-to-device message for a device.
    C2d {
        /// The device.
        device: DeviceId,
        /// Properties from the topic.
        props: PropertyBag,
    },
    /// A message for a module input.
    ModuleInput {
        /// The module.
        identity: Identity,
        /// The input name.
        input: String,
        /// Properties from the topic.
        props: PropertyBag,
    },
    /// Request for the full twin.
    TwinGet {
        /// Request id.
        rid: String,
    },
    /// Reported-properties patch.
    TwinPatchReported {
        /// Request id.
        rid: String,
    },
    /// The hub's answer to a twin request.
    TwinResponse {
        /// HTTP-like status: 200, 204, 400, 429, ...
        status: u16,
        /// Request id.
        rid: String,
        /// New reported version (PATCH answers).
        version: Option<u64>,
    },
    /// A desired-properties update.
    TwinDesired {
        /// The desired version after the update.
        version: Option<u64>,
    },
    /// A direct-method call.
    MethodRequest {
        /// Method name (PnP components: `component*command`).
        name: String,
        /// Request id.
        rid: String,
    },
    /// The device's answer to a method call.
    MethodResponse {
        /// Status chosen by the device.
        status: i32,
        /// Request id.
        rid: String,
    },
}

/// Why a topic is not an IoT Hub topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not a documented topic.
    #[error("{} is not an IoT Hub topic", crate::text::Quoted(.0))]
    Unknown(String),
    /// A required query parameter is missing or malformed.
    #[error("topic {}: {what}", crate::text::Quoted(.topic))]
    BadParam {
        /// The topic.
        topic: String,
        /// What is wrong.
        what: &'static str,
    },
    /// An id in the topic breaks the registry rules.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The property bag is malformed.
    #[error(transparent)]
    Properties(#[from] PropertyError),
}

/// Parses `?a=1&b=2` (leading `?` required) into pairs, values percent-decoded.
fn query(q: &str) -> Option<Vec<(&str, String)>> {
    let q = q.strip_prefix('?')?;
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            super::encoding::decode(v).map(|v| (k, v))
        })
        .collect()
}

impl Topic {
    /// Parses any documented topic.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let unknown = || TopicError::Unknown(topic.to_string());
        let bad = |what| TopicError::BadParam {
            topic: topic.to_string(),
            what,
        };
        if let Some(rest) = topic.strip_prefix("$iothub/") {
            let (path, q) = match rest.find("/?") {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest.trim_end_matches('/'), ""),
            };
            let params = if q.is_empty() {
                Vec::new()
            } else {
                query(q).ok_or_else(|| bad("malformed query"))?
            };
            let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
            let rid = || {
                get("$rid")
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| bad("missing $rid"))
            };
            let version = || -> Result<Option<u64>, TopicError> {
                get("$version")
                    .map(|v| v.parse().map_err(|_| bad("$version is not a number")))
                    .transpose()
            };
            let levels: Vec<&str> = path.split('/').collect();
            return match levels.as_slice() {
                ["twin", "GET"] => Ok(Topic::TwinGet { rid: rid()? }),
                ["twin", "PATCH", "properties", "reported"] => {
                    Ok(Topic::TwinPatchReported { rid: rid()? })
                }
                ["twin", "PATCH", "properties", "desired"] => Ok(Topic::TwinDesired {
                    version: version()?,
                }),
                ["twin", "res", status] => Ok(Topic::TwinResponse {
                    status: status.parse().map_err(|_| bad("status is not a number"))?,
                    rid: rid()?,
                    version: version()?,
                }),
                ["methods", "POST", name] if !name.is_empty() => Ok(Topic::MethodRequest {
                    name: name.to_string(),
                    rid: rid()?,
                }),
                ["methods", "res", status] => Ok(Topic::MethodResponse {
                    status: status.parse().map_err(|_| bad("status is not a number"))?,
                    rid: rid()?,
                }),
                _ => Err(unknown()),
            };
        }
        let rest = topic.strip_prefix("devices/").ok_or_else(unknown)?;
        let (device, rest) = rest.split_once('/').ok_or_else(unknown)?;
        let device = DeviceId::new(device)?;
        // Splits `prefix` off `rest` and returns the bag: `prefix/bag` or exactly `prefix`.
        let after = |rest: &'_ str, prefix: &str| -> Option<String> {
            let tail = rest.strip_prefix(prefix)?;
            if tail.is_empty() {
                Some(String::new())
            } else {
                tail.strip_prefix('/').map(str::to_string)
            }
        };
        if let Some(bag) = after(rest, "messages/events") {
            let props = PropertyBag::parse(&bag)?;
            return Ok(Topic::Telemetry {
                identity: Identity::device(device),
                props,
            });
        }
        if let Some(bag) = after(rest, "messages/devicebound") {
            return Ok(Topic::C2d {
                device,
                props: PropertyBag::parse(&bag)?,
            });
        }
        let rest = rest.strip_prefix("modules/").ok_or_else(unknown)?;
        let (module, rest) = rest.split_once('/').ok_or_else(unknown)?;
        let identity = Identity::module(device, ModuleId::new(module)?);
        if let Some(bag) = after(rest, "messages/events") {
            return Ok(Topic::Telemetry {
                identity,
                props: PropertyBag::parse(&bag)?,
            });
        }
        let rest = rest.strip_prefix("inputs/").ok_or_else(unknown)?;
        let (input, bag) = rest.split_once('/').unwrap_or((rest, ""));
        if input.is_empty() {
            return Err(unknown());
        }
        Ok(Topic::ModuleInput {
            identity,
            input: input.to_string(),
            props: PropertyBag::parse(bag)?,
        })
    }

    /// Writes the topic, with system property names written as `prefix` says.
    pub fn to_topic(&self, prefix: SysPrefix) -> String {
        let enc = super::encoding::encode;
        match self {
            Topic::Telemetry { identity, props } => telemetry_topic(identity, props, prefix),
            Topic::C2d { device, props } => c2d_topic(device, &props.encode(prefix)),
            Topic::ModuleInput {
                identity,
                input,
                props,
            } => format!(
                "devices/{}/modules/{}/inputs/{input}/{}",
                identity.device,
                identity
                    .module
                    .as_ref()
                    .map(ModuleId::as_str)
                    .unwrap_or_default(),
                props.encode(prefix)
            ),
            Topic::TwinGet { rid } => format!("$iothub/twin/GET/?$rid={}", enc(rid)),
            Topic::TwinPatchReported { rid } => {
                format!("$iothub/twin/PATCH/properties/reported/?$rid={}", enc(rid))
            }
            Topic::TwinResponse {
                status,
                rid,
                version,
            } => {
                let mut t = format!("$iothub/twin/res/{status}/?$rid={}", enc(rid));
                if let Some(v) = version {
                    t.push_str(&format!("&$version={v}"));
                }
                t
            }
            Topic::TwinDesired { version } => match version {
                Some(v) => format!("$iothub/twin/PATCH/properties/desired/?$version={v}"),
                None => "$iothub/twin/PATCH/properties/desired/".to_string(),
            },
            Topic::MethodRequest { name, rid } => {
                format!("$iothub/methods/POST/{name}/?$rid={}", enc(rid))
            }
            Topic::MethodResponse { status, rid } => {
                format!("$iothub/methods/res/{status}/?$rid={}", enc(rid))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(d: &str) -> Identity {
        Identity::device(DeviceId::new(d).unwrap())
    }

    #[test]
    fn observed_wire_topics_parse() {
        assert_eq!(
            Topic::parse("$iothub/twin/res/204/?$rid=0&$version=2").unwrap(),
            Topic::TwinResponse {
                status: 204,
                rid: "0".into(),
                version: Some(2)
            }
        );
        assert_eq!(
            Topic::parse("$iothub/twin/res/200/?$rid=7").unwrap(),
            Topic::TwinResponse {
                status: 200,
                rid: "7".into(),
                version: None
            }
        );
        assert_eq!(
            Topic::parse("$iothub/twin/PATCH/properties/desired/?$version=12").unwrap(),
            Topic::TwinDesired { version: Some(12) }
        );
        assert_eq!(
            Topic::parse("$iothub/methods/POST/component_one*TestMethod/?$rid=1").unwrap(),
            Topic::MethodRequest {
                name: "component_one*TestMethod".into(),
                rid: "1".into()
            }
        );
        let Topic::C2d { device, props } = Topic::parse(
            "devices/mqtt-dev-01/messages/devicebound/%24.mid=d411e727&%24.to=%2Fdevices%2Fmqtt-dev-01%2Fmessages%2Fdevicebound&%24.ce=utf-8&iothub-ack=none",
        )
        .unwrap() else {
            panic!("not C2D")
        };
        assert_eq!(device.as_str(), "mqtt-dev-01");
        assert_eq!(props.system.ack.as_deref(), Some("none"));
        assert_eq!(
            props.system.to.as_deref(),
            Some("/devices/mqtt-dev-01/messages/devicebound")
        );
    }

    #[test]
    fn decoded_slash_in_bag_is_tolerated() {
        let Topic::C2d { props, .. } =
            Topic::parse("devices/d/messages/devicebound/$.to=/devices/d/messages/devicebound&a=1")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            props.system.to.as_deref(),
            Some("/devices/d/messages/devicebound")
        );
        assert_eq!(props.app_value("a"), Some(Some("1")));
    }

    #[test]
    fn every_topic_round_trips() {
        let mut props = PropertyBag::default();
        props.system.content_type = Some("application/json".into());
        props.app.push(("k".into(), Some("v w".into())));
        let module = Identity::module(DeviceId::new("d").unwrap(), ModuleId::new("m").unwrap());
        let all = vec![
            Topic::Telemetry {
                identity: dev("d-1"),
                props: props.clone(),
            },
            Topic::Telemetry {
                identity: dev("d-1"),
                props: PropertyBag::default(),
            },
            Topic::Telemetry {
                identity: module.clone(),
                props: props.clone(),
            },
            Topic::C2d {
                device: DeviceId::new("d").unwrap(),
                props: props.clone(),
            },
            Topic::ModuleInput {
                identity: module,
                input: "in1".into(),
                props,
            },
            Topic::TwinGet { rid: "1".into() },
            Topic::TwinPatchReported { rid: "a b".into() },
            Topic::TwinResponse {
                status: 204,
                rid: "3".into(),
                version: Some(9),
            },
            Topic::TwinDesired { version: Some(4) },
            Topic::MethodRequest {
                name: "reboot".into(),
                rid: "5".into(),
            },
            Topic::MethodResponse {
                status: 200,
                rid: "5".into(),
            },
            Topic::MethodResponse {
                status: -1,
                rid: "6".into(),
            },
        ];
        for t in all {
            for prefix in [SysPrefix::Literal, SysPrefix::Encoded] {
                let s = t.to_topic(prefix);
                assert_eq!(Topic::parse(&s).unwrap(), t, "{s}");
            }
        }
    }

    #[test]
    fn exact_topic_strings() {
        let mut props = PropertyBag::default();
        props.system.content_type = Some("application/json".into());
        props.system.content_encoding = Some("utf-8".into());
        assert_eq!(
            Topic::Telemetry {
                identity: dev("dev-01"),
                props
            }
            .to_topic(SysPrefix::Literal),
            "devices/dev-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
        );
        assert_eq!(
            Topic::Telemetry {
                identity: dev("dev-01"),
                props: PropertyBag::default()
            }
            .to_topic(SysPrefix::Literal),
            "devices/dev-01/messages/events/"
        );
        assert_eq!(
            Topic::TwinGet { rid: "1".into() }.to_topic(SysPrefix::Literal),
            "$iothub/twin/GET/?$rid=1"
        );
        assert_eq!(
            filter::c2d(&DeviceId::new("d1").unwrap()),
            "devices/d1/messages/devicebound/#"
        );
    }

    #[test]
    fn rejects_undocumented_and_malformed() {
        for t in [
            "foo/bar",
            "devices/d1",
            "devices/d1/messages",
            "devices/d1/messages/eventsX",
            "devices/d1/modules/m/outputs/x",
            "$iothub/twin/DELETE/?$rid=1",
            "$iothub/methods/POST//?$rid=1",
        ] {
            assert!(
                matches!(Topic::parse(t), Err(TopicError::Unknown(_))),
                "{t}"
            );
        }
        assert!(matches!(
            Topic::parse("$iothub/twin/GET/"),
            Err(TopicError::BadParam { .. })
        ));
        assert!(matches!(
            Topic::parse("$iothub/twin/res/abc/?$rid=1"),
            Err(TopicError::BadParam { .. })
        ));
        assert!(matches!(
            Topic::parse("$iothub/twin/res/200/?$rid=1&$version=x"),
            Err(TopicError::BadParam { .. })
        ));
        assert!(matches!(
            Topic::parse("devices/a b/messages/events/"),
            Err(TopicError::Identity(_))
        ));
        assert!(matches!(
            Topic::parse("devices/d/messages/events/a=%ff"),
            Err(TopicError::Properties(_))
        ));
    }
}
