//! PUBLISH (MQTT 3.1.1 §3.3).
//!
//! ```text
//! fixed header flags: bit 3 DUP | bits 2-1 QoS | bit 0 RETAIN
//! variable header:    topic name (string), packet identifier (u16, only if QoS > 0)
//! payload:            the rest of the packet, possibly empty
//! ```

use super::codec::{field_len, write_binary, write_u16, Reader};
use super::topic::validate_topic_name;
use super::{DecodeError, EncodeError, PacketId, QoS};

/// QoS together with the packet identifier that QoS 1 and 2 require and QoS 0 forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0: no packet identifier.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// The QoS level.
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, if the QoS has one.
    pub fn pid(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(p) | QosPid::ExactlyOnce(p) => Some(p),
        }
    }
}

/// An application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// A redelivery of an earlier attempt (only with QoS 1 and 2).
    pub dup: bool,
    /// QoS and packet identifier.
    pub qospid: QosPid,
    /// Ask the server to retain the message (IoT Hub: adds `mqtt-retain` instead).
    pub retain: bool,
    /// The topic name (no wildcards).
    pub topic: String,
    /// The message body.
    pub payload: Vec<u8>,
}

/// A PUBLISH whose topic and payload are borrowed from the bytes it was decoded from
/// ([`super::Decoder::decode_ref`]): no allocation and no copy. A hub that stores the
/// payload or answers the request at once needs nothing more; [`PublishRef::to_owned`]
/// makes a [`Publish`] for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// A redelivery of an earlier attempt (only with QoS 1 and 2).
    pub dup: bool,
    /// QoS and packet identifier.
    pub qospid: QosPid,
    /// Ask the server to retain the message.
    pub retain: bool,
    /// The topic name (validated: no wildcards, no NUL).
    pub topic: &'a str,
    /// The message body.
    pub payload: &'a [u8],
}

impl<'a> PublishRef<'a> {
    pub(super) fn decode(flags: u8, r: &mut Reader<'a>) -> Result<PublishRef<'a>, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::try_from((flags >> 1) & 0x03)?;
        let retain = flags & 0x01 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQos0);
        }
        let topic = r.utf8("topic name")?;
        validate_topic_name(topic)?;
        let qospid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(r.packet_id()?),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(r.packet_id()?),
        };
        Ok(PublishRef {
            dup,
            qospid,
            retain,
            topic,
            payload: r.rest(),
        })
    }

    /// The same message, owned (the topic and payload copied once).
    pub fn to_owned(&self) -> Publish {
        Publish {
            dup: self.dup,
            qospid: self.qospid,
            retain: self.retain,
            topic: self.topic.to_string(),
            payload: self.payload.to_vec(),
        }
    }
}

impl Publish {
    /// The message, borrowed.
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qospid: self.qospid,
            retain: self.retain,
            topic: &self.topic,
            payload: &self.payload,
        }
    }

    pub(super) fn first_byte(&self) -> u8 {
        let mut b = 0x30 | ((self.qospid.qos() as u8) << 1);
        if self.dup {
            b |= 0x08;
        }
        if self.retain {
            b |= 0x01;
        }
        b
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        validate_topic_name(&self.topic)?;
        if self.dup && self.qospid == QosPid::AtMostOnce {
            return Err(DecodeError::DupWithQos0.into());
        }
        let pid = if self.qospid.pid().is_some() { 2 } else { 0 };
        Ok(field_len("topic name", self.topic.len())? + pid + self.payload.len())
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        write_binary(self.topic.as_bytes(), out);
        if let Some(pid) = self.qospid.pid() {
            write_u16(pid.get(), out);
        }
        out.extend_from_slice(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, Decoder, Packet};

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[rustfmt::skip]
    const QOS1_TELEMETRY: &[u8] = &[
        0x32, 0x0c,                   // PUBLISH, QoS 1, remaining length 12
        0x00, 0x05, b'a', b'/', b'b', b'/', b'c', // topic "a/b/c"
        0x00, 0x07,                   // packet id 7
        b'{', b'}', b'!',             // payload "{}!"
        0x40, 0x02, 0x00,             // trailing: the first bytes of a PUBACK
    ];

    #[test]
    fn qos1_byte_exact_both_ways() {
        let p = Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid(7)),
            retain: false,
            topic: "a/b/c".into(),
            payload: b"{}!".to_vec(),
        });
        assert_eq!(decode(QOS1_TELEMETRY).unwrap(), Some((p.clone(), 14)));
        assert_eq!(p.to_bytes().unwrap(), &QOS1_TELEMETRY[..14]);
    }

    #[test]
    fn qos0_retain_empty_payload() {
        #[rustfmt::skip]
        let bytes = [
            0x31, 0x03,             // PUBLISH, QoS 0, RETAIN, remaining length 3
            0x00, 0x01, b't',       // topic "t"; no packet id at QoS 0; empty payload
        ];
        let p = Packet::Publish(Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: true,
            topic: "t".into(),
            payload: vec![],
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 5)));
        assert_eq!(p.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn qos2_dup_flags() {
        #[rustfmt::skip]
        let bytes = [
            0x3c, 0x05,             // PUBLISH, DUP, QoS 2, remaining length 5
            0x00, 0x01, b't',       // topic "t"
            0xff, 0xff,             // packet id 65535
        ];
        let p = Packet::Publish(Publish {
            dup: true,
            qospid: QosPid::ExactlyOnce(pid(65535)),
            retain: false,
            topic: "t".into(),
            payload: vec![],
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 7)));
        assert_eq!(p.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn rejects_each_violation() {
        // QoS 3.
        assert_eq!(
            decode(&[0x36, 0x05, 0, 1, b't', 0, 1]),
            Err(DecodeError::InvalidQoS(3))
        );
        // DUP with QoS 0.
        assert_eq!(
            decode(&[0x38, 0x03, 0, 1, b't']),
            Err(DecodeError::DupWithQos0)
        );
        // Packet id 0 at QoS 1.
        assert_eq!(
            decode(&[0x32, 0x05, 0, 1, b't', 0, 0]),
            Err(DecodeError::ZeroPacketId)
        );
        // Wildcards in the topic name.
        assert!(matches!(
            decode(&[0x30, 0x03, 0, 1, b'#']),
            Err(DecodeError::WildcardInTopicName(_))
        ));
        assert!(matches!(
            decode(&[0x30, 0x05, 0, 3, b'a', b'/', b'+']),
            Err(DecodeError::WildcardInTopicName(_))
        ));
        // Empty topic.
        assert_eq!(decode(&[0x30, 0x02, 0, 0]), Err(DecodeError::EmptyTopic));
        // Packet id missing at QoS 1.
        assert_eq!(
            decode(&[0x32, 0x03, 0, 1, b't']),
            Err(DecodeError::Truncated("packet identifier"))
        );
    }

    #[test]
    fn max_size_is_checked_before_the_body_arrives() {
        // Header announces 1000 bytes; only the header is here. A 100-byte limit fails now,
        // not after buffering the body.
        let header = [0x30, 0xe8, 0x07];
        assert_eq!(
            Decoder::new(100).decode(&header),
            Err(DecodeError::PacketTooLarge {
                size: 1003,
                max: 100
            })
        );
        assert_eq!(Decoder::new(1003).decode(&header), Ok(None));
    }

    #[test]
    fn encoder_refuses_invalid_publish() {
        let mut p = Publish {
            dup: true,
            qospid: QosPid::AtMostOnce,
            retain: false,
            topic: "t".into(),
            payload: vec![],
        };
        assert!(Packet::Publish(p.clone()).to_bytes().is_err());
        p.dup = false;
        p.topic = "a/#".into();
        assert!(Packet::Publish(p).to_bytes().is_err());
    }
}
