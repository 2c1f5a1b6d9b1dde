//! SUBSCRIBE (MQTT 3.1.1 §3.8).
//!
//! ```text
//! fixed header flags: 0010 (MQTT-3.8.1-1)
//! variable header:    packet identifier (u16)
//! payload:            one or more of: topic filter (string), options (u8:
//!                     bits 7-2 reserved = 0, bits 1-0 requested QoS)
//! ```

use super::codec::{field_len, write_binary, write_u16, Reader};
use super::topic::validate_topic_filter;
use super::{DecodeError, EncodeError, PacketId, QoS};

/// A subscribe request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier echoed by SUBACK.
    pub pkid: PacketId,
    /// At least one filter (MQTT-3.8.3-3).
    pub filters: Vec<SubscribeFilter>,
}

/// One topic filter and its requested QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// The topic filter.
    pub filter: String,
    /// The maximum QoS the client wants.
    pub qos: QoS,
}

impl Subscribe {
    pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<Subscribe, DecodeError> {
        let pkid = r.packet_id()?;
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            let filter = r.utf8("topic filter")?;
            validate_topic_filter(filter)?;
            let options = r.u8("requested QoS")?;
            if options & 0xfc != 0 {
                return Err(DecodeError::InvalidSubscribeOptions(options));
            }
            filters.push(SubscribeFilter {
                filter: filter.to_string(),
                qos: QoS::try_from(options)?,
            });
        }
        if filters.is_empty() {
            return Err(DecodeError::SubscribeWithoutFilters);
        }
        r.finish(packet)?;
        Ok(Subscribe { pkid, filters })
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(DecodeError::SubscribeWithoutFilters.into());
        }
        let mut len = 2;
        for f in &self.filters {
            validate_topic_filter(&f.filter)?;
            len += field_len("topic filter", f.filter.len())? + 1;
        }
        Ok(len)
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        write_u16(self.pkid.get(), out);
        for f in &self.filters {
            write_binary(f.filter.as_bytes(), out);
            out.push(f.qos as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, Packet};

    #[test]
    fn two_filters_byte_exact() {
        #[rustfmt::skip]
        let bytes = [
            0x82, 0x0e,                   // SUBSCRIBE, flags 0010, remaining length 14
            0x00, 0x0a,                   // packet id 10
            0x00, 0x03, b'a', b'/', b'#', // filter "a/#"
            0x01,                         // QoS 1
            0x00, 0x03, b'+', b'/', b'b', // filter "+/b"
            0x00,                         // QoS 0
            0xc0,                         // trailing: PINGREQ
        ];
        let p = Packet::Subscribe(Subscribe {
            pkid: PacketId::new(10).unwrap(),
            filters: vec![
                SubscribeFilter {
                    filter: "a/#".into(),
                    qos: QoS::AtLeastOnce,
                },
                SubscribeFilter {
                    filter: "+/b".into(),
                    qos: QoS::AtMostOnce,
                },
            ],
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 16)));
        assert_eq!(p.to_bytes().unwrap(), &bytes[..16]);
    }

    #[test]
    fn rejects_each_violation() {
        // No filters.
        assert_eq!(
            decode(&[0x82, 0x02, 0x00, 0x01]),
            Err(DecodeError::SubscribeWithoutFilters)
        );
        // Flags 0000 instead of 0010.
        assert_eq!(
            decode(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
            Err(DecodeError::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0
            })
        );
        // Requested QoS 3.
        assert_eq!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
            Err(DecodeError::InvalidQoS(3))
        );
        // Reserved option bits.
        assert_eq!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x41]),
            Err(DecodeError::InvalidSubscribeOptions(0x41))
        );
        // Missing options byte.
        assert_eq!(
            decode(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            Err(DecodeError::Truncated("requested QoS"))
        );
        // Malformed filter.
        assert!(matches!(
            decode(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'#', b'a', 0x00]),
            Err(DecodeError::InvalidTopicFilter(_))
        ));
        // Packet id 0.
        assert_eq!(
            decode(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
            Err(DecodeError::ZeroPacketId)
        );
    }

    #[test]
    fn encoder_refuses_empty_and_malformed() {
        let mut s = Subscribe {
            pkid: PacketId::new(1).unwrap(),
            filters: vec![],
        };
        assert!(Packet::Subscribe(s.clone()).to_bytes().is_err());
        s.filters.push(SubscribeFilter {
            filter: "a/#/b".into(),
            qos: QoS::AtMostOnce,
        });
        assert!(Packet::Subscribe(s).to_bytes().is_err());
    }
}
