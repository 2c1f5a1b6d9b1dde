//! IoT Hub's error codes, and the error answer every devhub failure takes.
//!
//! One enum holds each code's number, HTTP status and name, so that they cannot drift apart
//! (the names and numbers are IoT Hub's, from its troubleshooting page and the service
//! SDKs' `ErrorCode` enums).

use serde_json::{json, Value};

use crate::store::StoreError;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $number:literal, $status:literal;)*) => {
        /// An IoT Hub error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, for tests and listings.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The six-digit number, e.g. 404103.
            pub const fn number(self) -> u32 {
                match self { $(ErrorCode::$name => $number,)* }
            }

            /// The HTTP status the hub answers with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$name => $status,)* }
            }

            /// The name, e.g. `DeviceNotOnline`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => stringify!($name),)* }
            }
        }
    };
}

error_codes! {
    /// The request is malformed or a value in it is out of range.
    ArgumentInvalid = 400004, 400;
    /// The request is not allowed for this caller (devhub: a foreign Host or Origin).
    IotHubUnauthorizedAccess = 401002, 401;
    /// The SAS token is missing, expired, or signed with the wrong key.
    IotHubUnauthorized = 401003, 401;
    /// The request is refused.
    GenericForbidden = 403000, 403;
    /// The hub's quota is used up.
    IotHubQuotaExceeded = 403002, 403;
    /// The device's C2D queue is full (50 messages).
    DeviceMaximumQueueDepthExceeded = 403004, 403;
    /// No such route.
    GenericNotFound = 404000, 404;
    /// No such device.
    DeviceNotFound = 404001, 404;
    /// No such module.
    ModuleNotFound = 404010, 404;
    /// The device is not connected, or not subscribed to methods.
    DeviceNotOnline = 404103, 404;
    /// The route does not take this HTTP method.
    GenericMethodNotAllowed = 405000, 405;
    /// The device already exists.
    DeviceAlreadyExists = 409001, 409;
    /// The If-Match etag does not match.
    PreconditionFailed = 412001, 412;
    /// The request body is larger than the hub accepts.
    GenericRequestEntityTooLarge = 413000, 413;
    /// The message is larger than the hub accepts.
    MessageTooLarge = 413001, 413;
    /// The request's Content-Type is not one the route takes.
    GenericUnsupportedMediaType = 415000, 415;
    /// Too many requests: throttled.
    ThrottlingException = 429001, 429;
    /// Too many requests waiting: throttled.
    ThrottleBacklogLimitExceeded = 429002, 429;
    /// The hub failed.
    ServerError = 500001, 500;
    /// The hub is not available.
    ServiceUnavailable = 503001, 503;
    /// The device did not answer in time.
    GatewayTimeout = 504101, 504;
}

impl ErrorCode {
    /// The code an injected failure with this HTTP status takes, or `None` for a status
    /// the hub does not answer operations with.
    pub fn for_status(status: u16) -> Option<ErrorCode> {
        Some(match status {
            400 => ErrorCode::ArgumentInvalid,
            401 => ErrorCode::IotHubUnauthorized,
            403 => ErrorCode::IotHubQuotaExceeded,
            404 => ErrorCode::DeviceNotFound,
            412 => ErrorCode::PreconditionFailed,
            413 => ErrorCode::MessageTooLarge,
            429 => ErrorCode::ThrottlingException,
            500 => ErrorCode::ServerError,
            503 => ErrorCode::ServiceUnavailable,
            504 => ErrorCode::GatewayTimeout,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

/// An error answer, shaped as IoT Hub answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status (the code's own status unless a caller chose another).
    pub status: u16,
    /// The error code.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl ServiceError {
    /// An error with the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status: code.status(),
            code,
            message: message.into(),
        }
    }

    /// The JSON body, as the hub sends it: `Message` and `ExceptionMessage` as the REST
    /// API has them, and the fields the device and service SDKs read.
    pub fn body(&self, now_ms: u64) -> Value {
        let tracking = tracking_id(now_ms);
        json!({
            "Message": format!("ErrorCode:{};{}", self.code.name(), self.message),
            "ExceptionMessage": format!("Tracking ID:{tracking}-TimeStamp:{}", iso(now_ms)),
            "ErrorCode": self.code.name(),
            "errorCode": self.code.number(),
            "message": self.message,
            "trackingId": tracking,
            "timestampUtc": iso(now_ms),
        })
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        ServiceError::new(ErrorCode::ServerError, format!("devhub store error: {e}"))
    }
}

/// ISO-8601 with milliseconds, as twin metadata and message stamps use.
pub fn iso(now_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A tracking id for an error answer.
pub fn tracking_id(now_ms: u64) -> String {
    format!("devhub-{now_ms:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_statuses_and_names_agree() {
        for c in ErrorCode::ALL {
            assert_eq!(c.number() / 1000, u32::from(c.status()), "{c}");
        }
        assert_eq!(
            ErrorCode::ThrottlingException.to_string(),
            "429001 ThrottlingException"
        );
        assert_eq!(
            ErrorCode::for_status(429),
            Some(ErrorCode::ThrottlingException)
        );
        assert_eq!(ErrorCode::for_status(418), None);
        for s in [400, 401, 403, 404, 412, 413, 429, 500, 503, 504] {
            assert_eq!(ErrorCode::for_status(s).unwrap().status(), s);
        }
    }

    #[test]
    fn body_names_the_code() {
        let e = ServiceError::new(ErrorCode::ThrottlingException, "fault injection");
        let b = e.body(0);
        assert_eq!(
            b["Message"],
            "ErrorCode:ThrottlingException;fault injection"
        );
        assert_eq!(b["errorCode"], 429001);
        assert_eq!(b["ErrorCode"], "ThrottlingException");
        assert_eq!(e.status, 429);
    }
}
