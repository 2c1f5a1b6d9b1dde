//! CONNECT (MQTT 3.1.1 §3.1).
//!
//! ```text
//! variable header: protocol name (string "MQTT"), protocol level (u8 = 4),
//!                  connect flags (u8), keep alive (u16 seconds)
//! connect flags:   7 user name | 6 password | 5 will retain | 4-3 will QoS |
//!                  2 will flag | 1 clean session | 0 reserved (= 0)
//! payload:         client id, [will topic, will message], [user name], [password]
//! ```

use super::codec::{check_string, field_len, write_binary, write_u16, Reader};
use super::topic::validate_topic_name;
use super::{DecodeError, EncodeError, QoS};

/// A client's request to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Client identifier; IoT Hub wants the device id (or `device/module`).
    pub client_id: String,
    /// Keep-alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Start a new session (true) or resume a stored one (false).
    pub clean_session: bool,
    /// A message the server publishes if the client vanishes.
    pub last_will: Option<LastWill>,
    /// User name (IoT Hub: `{host}/{device}/?api-version=...`).
    pub username: Option<String>,
    /// Password (IoT Hub: the SAS token). Binary data in MQTT 3.1.1.
    pub password: Option<Vec<u8>>,
}

/// The Will: published by the server when the connection ends without DISCONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastWill {
    /// A topic name (no wildcards).
    pub topic: String,
    /// The message body.
    pub message: Vec<u8>,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Whether the server retains it.
    pub retain: bool,
}

const PROTOCOL_NAME: &str = "MQTT";
const PROTOCOL_LEVEL: u8 = 4;

impl Connect {
    pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<Connect, DecodeError> {
        let name = r.string("protocol name")?;
        if name != PROTOCOL_NAME {
            return Err(DecodeError::InvalidProtocolName(name.to_string()));
        }
        let level = r.u8("protocol level")?;
        if level != PROTOCOL_LEVEL {
            return Err(DecodeError::UnsupportedProtocolLevel(level));
        }
        let flags = r.u8("connect flags")?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let clean_session = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::try_from((flags >> 3) & 0x03)?;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        if password_flag && !username_flag {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let client_id = r.string("client identifier")?.to_string();
        let last_will = if will_flag {
            let topic = r.string("will topic")?;
            validate_topic_name(topic)?;
            let message = r.binary("will message")?.to_vec();
            Some(LastWill {
                topic: topic.to_string(),
                message,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string("user name")?.to_string())
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary("password")?.to_vec())
        } else {
            None
        };
        r.finish(packet)?;
        Ok(Connect {
            client_id,
            keep_alive,
            clean_session,
            last_will,
            username,
            password,
        })
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.password.is_some() && self.username.is_none() {
            return Err(DecodeError::PasswordWithoutUsername.into());
        }
        check_string(&self.client_id)?;
        let mut len = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        len += field_len("client identifier", self.client_id.len())?;
        if let Some(w) = &self.last_will {
            validate_topic_name(&w.topic)?;
            len += field_len("will topic", w.topic.len())?;
            len += field_len("will message", w.message.len())?;
        }
        if let Some(u) = &self.username {
            check_string(u)?;
            len += field_len("user name", u.len())?;
        }
        if let Some(p) = &self.password {
            len += field_len("password", p.len())?;
        }
        Ok(len)
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        write_binary(PROTOCOL_NAME.as_bytes(), out);
        out.push(PROTOCOL_LEVEL);
        let mut flags = 0u8;
        if self.clean_session {
            flags |= 0x02;
        }
        if let Some(w) = &self.last_will {
            flags |= 0x04 | ((w.qos as u8) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        out.push(flags);
        write_u16(self.keep_alive, out);
        write_binary(self.client_id.as_bytes(), out);
        if let Some(w) = &self.last_will {
            write_binary(w.topic.as_bytes(), out);
            write_binary(&w.message, out);
        }
        if let Some(u) = &self.username {
            write_binary(u.as_bytes(), out);
        }
        if let Some(p) = &self.password {
            write_binary(p, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::mqtt::{decode, DecodeError, LastWill, Packet, QoS};

    use super::Connect;

    /// CONNECT as an IoT Hub device sends it, followed by the first byte of another packet.
    #[rustfmt::skip]
    const IOTHUB_CONNECT: &[u8] = &[
        0x10, 45,                         // CONNECT, remaining length 45
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04,                             // protocol level 4 (3.1.1)
        0xc0,                             // flags: user name, password; clean session 0
        0x00, 0x3c,                       // keep alive 60 s
        0x00, 0x02, b'd', b'1',           // client id "d1"
        0x00, 0x0e, b'h', b'/', b'd', b'1', b'/', b'?', b'a', b'p', b'i', b'=', b'2', b'0', b'2', b'1',
                                          // user name "h/d1/?api=2021"
        0x00, 0x0d, b'S', b'h', b'a', b'r', b'e', b'd', b'A', b'c', b'c', b'e', b's', b's', b'S',
                                          // password "SharedAccessS"
        0xc0,                             // trailing: first byte of a PINGREQ
    ];

    fn iothub_connect() -> Connect {
        Connect {
            client_id: "d1".into(),
            keep_alive: 60,
            clean_session: false,
            last_will: None,
            username: Some("h/d1/?api=2021".into()),
            password: Some(b"SharedAccessS".to_vec()),
        }
    }

    #[test]
    fn decodes_iothub_connect_and_leaves_trailing_bytes() {
        let (p, used) = decode(IOTHUB_CONNECT).unwrap().unwrap();
        assert_eq!(used, IOTHUB_CONNECT.len() - 1);
        assert_eq!(p, Packet::Connect(iothub_connect()));
    }

    #[test]
    fn encodes_iothub_connect_byte_exact() {
        let bytes = Packet::Connect(iothub_connect()).to_bytes().unwrap();
        assert_eq!(bytes, &IOTHUB_CONNECT[..IOTHUB_CONNECT.len() - 1]);
    }

    #[rustfmt::skip]
    const WILL_CONNECT: &[u8] = &[
        0x10, 22,                         // CONNECT, remaining length 22
        0x00, 0x04, b'M', b'Q', b'T', b'T', // "MQTT"
        0x04,                             // level 4
        0x2e,                             // flags: will retain, will QoS 1, will flag, clean session
        0x00, 0x00,                       // keep alive 0
        0x00, 0x00,                       // client id "" (allowed with clean session)
        0x00, 0x03, b'a', b'/', b'b',     // will topic "a/b"
        0x00, 0x03, 0x00, 0xff, 0x10,     // will message: binary, may hold 0x00
    ];

    #[test]
    fn will_round_trips_byte_exact() {
        let c = Connect {
            client_id: String::new(),
            keep_alive: 0,
            clean_session: true,
            last_will: Some(LastWill {
                topic: "a/b".into(),
                message: vec![0x00, 0xff, 0x10],
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: None,
            password: None,
        };
        assert_eq!(Packet::Connect(c.clone()).to_bytes().unwrap(), WILL_CONNECT);
        assert_eq!(decode(WILL_CONNECT).unwrap().unwrap().0, Packet::Connect(c));
    }

    fn with(byte_index: usize, value: u8) -> Vec<u8> {
        let mut v = IOTHUB_CONNECT[..IOTHUB_CONNECT.len() - 1].to_vec();
        v[byte_index] = value;
        v
    }

    #[test]
    fn rejects_each_header_violation() {
        assert_eq!(
            decode(&with(7, b'X')),
            Err(DecodeError::InvalidProtocolName("MQTX".into()))
        );
        assert_eq!(
            decode(&with(8, 3)),
            Err(DecodeError::UnsupportedProtocolLevel(3))
        );
        assert_eq!(
            decode(&with(9, 0xc1)),
            Err(DecodeError::ConnectReservedFlag)
        );
        // Will QoS 1 without the will flag.
        assert_eq!(
            decode(&with(9, 0xc8)),
            Err(DecodeError::WillFlagsWithoutWill)
        );
        // Will retain without the will flag.
        assert_eq!(
            decode(&with(9, 0xe0)),
            Err(DecodeError::WillFlagsWithoutWill)
        );
        // Will QoS 3.
        assert_eq!(decode(&with(9, 0xdc)), Err(DecodeError::InvalidQoS(3)));
        // Password without user name.
        assert_eq!(
            decode(&with(9, 0x40)),
            Err(DecodeError::PasswordWithoutUsername)
        );
        // Flags other than 0 in the fixed header.
        assert!(matches!(
            decode(&with(0, 0x11)),
            Err(DecodeError::InvalidFlags { .. })
        ));
    }

    #[test]
    fn rejects_bad_strings() {
        // Client id "d\0".
        assert_eq!(decode(&with(15, 0x00)), Err(DecodeError::NullCharacter));
        // Client id "d" followed by a lone continuation byte: not UTF-8.
        assert_eq!(decode(&with(15, 0x80)), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn rejects_fields_past_the_end_and_trailing_bytes() {
        // Remaining length one short: the password runs past the end.
        let mut short = with(1, 44);
        short.pop();
        assert_eq!(decode(&short), Err(DecodeError::Truncated("password")));
        // One extra byte inside the packet.
        let mut long = with(1, 46);
        long.push(0);
        assert_eq!(
            decode(&long),
            Err(DecodeError::TrailingBytes {
                packet: "CONNECT",
                count: 1
            })
        );
    }

    #[test]
    fn encoder_refuses_what_the_decoder_refuses() {
        let mut c = iothub_connect();
        c.username = None;
        assert!(Packet::Connect(c).to_bytes().is_err());
        let mut c = iothub_connect();
        c.client_id = "a\0".into();
        assert!(Packet::Connect(c).to_bytes().is_err());
        let mut c = iothub_connect();
        c.password = Some(vec![0; 70_000]);
        assert!(Packet::Connect(c).to_bytes().is_err());
    }
}
