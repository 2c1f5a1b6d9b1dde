//! The Azure IoT Hub device dialect of MQTT: connection strings, SAS tokens, usernames,
//! topics, property bags and twin documents. Facts and sources: `shared/spec/iothub-mqtt.md`.

pub mod connstr;
pub mod encoding;
pub mod identity;
pub mod pnp;
pub mod props;
pub mod sas;
pub mod service;
pub mod topic;
pub mod twin;
pub mod username;

pub use connstr::{ConnectionString, ConnectionStringError, SymmetricKey};
pub use identity::{DeviceId, Identity, IdentityError, ModuleId};

pub use props::{PropertyBag, PropertyError, SysPrefix, SystemProperties};
pub use sas::{SasError, SasToken};
pub use topic::{Topic, TopicError};
pub use username::{Username, UsernameError};

/// The api-version twinscope sends (the documented one, as the Node SDK).
pub const API_VERSION: &str = "2021-04-12";

/// Maximum device-to-cloud message size: body plus property names and values (D-MSG).
pub const MAX_D2C_MESSAGE_BYTES: usize = 256 * 1024;

/// Maximum cloud-to-device message size (D-QUOTA).
pub const MAX_C2D_MESSAGE_BYTES: usize = 64 * 1024;

/// Maximum direct-method request or response payload (D-DM).
pub const MAX_METHOD_PAYLOAD_BYTES: usize = 128 * 1024;
