//! CONNACK (MQTT 3.1.1 §3.2).
//!
//! ```text
//! byte 1: acknowledge flags: bits 7-1 reserved (0), bit 0 session present
//! byte 2: connect return code (0 accepted, 1-5 refused, 6-255 reserved)
//! ```

use super::codec::Reader;
use super::{DecodeError, EncodeError};

/// The server's answer to CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// The server kept a session for this client (only with [`ConnectReturnCode::Accepted`]).
    pub session_present: bool,
    /// Accepted, or why not.
    pub code: ConnectReturnCode,
}

/// CONNACK return codes (§3.2.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted = 0,
    /// 1: the server does not support this protocol level.
    UnacceptableProtocolVersion = 1,
    /// 2: client identifier refused.
    IdentifierRejected = 2,
    /// 3: service unavailable.
    ServerUnavailable = 3,
    /// 4: malformed user name or password.
    BadUsernameOrPassword = 4,
    /// 5: not authorized. IoT Hub answers 5 for every CONNECT failure.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The specification's words for the code.
    pub fn description(self) -> &'static str {
        match self {
            ConnectReturnCode::Accepted => "connection accepted",
            ConnectReturnCode::UnacceptableProtocolVersion => "unacceptable protocol version",
            ConnectReturnCode::IdentifierRejected => "identifier rejected",
            ConnectReturnCode::ServerUnavailable => "server unavailable",
            ConnectReturnCode::BadUsernameOrPassword => "bad user name or password",
            ConnectReturnCode::NotAuthorized => "not authorized",
        }
    }
}

impl TryFrom<u8> for ConnectReturnCode {
    type Error = DecodeError;
    fn try_from(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUsernameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            other => return Err(DecodeError::InvalidConnectReturnCode(other)),
        })
    }
}

impl ConnAck {
    pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::InvalidConnAckFlags(flags));
        }
        let code = ConnectReturnCode::try_from(r.u8("return code")?)?;
        let session_present = flags & 0x01 != 0;
        if session_present && code != ConnectReturnCode::Accepted {
            return Err(DecodeError::SessionPresentWithRefusal);
        }
        r.finish(packet)?;
        Ok(ConnAck {
            session_present,
            code,
        })
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.session_present && self.code != ConnectReturnCode::Accepted {
            return Err(DecodeError::SessionPresentWithRefusal.into());
        }
        Ok(2)
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.session_present));
        out.push(self.code as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, Packet};

    #[test]
    fn accepted_with_session_present_byte_exact() {
        #[rustfmt::skip]
        let bytes = [
            0x20, 0x02, // CONNACK, remaining length 2
            0x01,       // session present
            0x00,       // accepted
            0xd0,       // trailing: first byte of a PINGRESP
        ];
        let p = Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 4)));
        assert_eq!(p.to_bytes().unwrap(), &bytes[..4]);
    }

    #[test]
    fn iothub_refusal_is_not_authorized() {
        let (p, _) = decode(&[0x20, 0x02, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!(
            p,
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized
            })
        );
    }

    #[test]
    fn rejects_reserved_bits_codes_and_inconsistency() {
        assert_eq!(
            decode(&[0x20, 0x02, 0x02, 0x00]),
            Err(DecodeError::InvalidConnAckFlags(0x02))
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x00, 0x06]),
            Err(DecodeError::InvalidConnectReturnCode(6))
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x01, 0x05]),
            Err(DecodeError::SessionPresentWithRefusal)
        );
        assert_eq!(
            decode(&[0x20, 0x03, 0x00, 0x00, 0x00]),
            Err(DecodeError::TrailingBytes {
                packet: "CONNACK",
                count: 1
            })
        );
        assert_eq!(
            decode(&[0x20, 0x01, 0x00]),
            Err(DecodeError::Truncated("return code"))
        );
    }
}
