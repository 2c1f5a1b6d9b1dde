//! UNSUBSCRIBE (MQTT 3.1.1 §3.10).
//!
//! ```text
//! fixed header flags: 0010 (MQTT-3.10.1-1)
//! variable header:    packet identifier (u16)
//! payload:            one or more topic filters (strings)
//! ```

use super::codec::{field_len, write_binary, write_u16, Reader};
use super::topic::validate_topic_filter;
use super::{DecodeError, EncodeError, PacketId};

/// An unsubscribe request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier echoed by UNSUBACK.
    pub pkid: PacketId,
    /// At least one filter (MQTT-3.10.3-2).
    pub filters: Vec<String>,
}

impl Unsubscribe {
    pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
        let pkid = r.packet_id()?;
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            let f = r.utf8("topic filter")?;
            validate_topic_filter(f)?;
            filters.push(f.to_string());
        }
        if filters.is_empty() {
            return Err(DecodeError::UnsubscribeWithoutFilters);
        }
        r.finish(packet)?;
        Ok(Unsubscribe { pkid, filters })
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(DecodeError::UnsubscribeWithoutFilters.into());
        }
        let mut len = 2;
        for f in &self.filters {
            validate_topic_filter(f)?;
            len += field_len("topic filter", f.len())?;
        }
        Ok(len)
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        write_u16(self.pkid.get(), out);
        for f in &self.filters {
            write_binary(f.as_bytes(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, Packet};

    #[test]
    fn byte_exact() {
        #[rustfmt::skip]
        let bytes = [
            0xa2, 0x09,                   // UNSUBSCRIBE, flags 0010, remaining length 9
            0x00, 0x05,                   // packet id 5
            0x00, 0x01, b'#',             // filter "#"
            0x00, 0x02, b'a', b'b',       // filter "ab"
        ];
        let p = Packet::Unsubscribe(Unsubscribe {
            pkid: PacketId::new(5).unwrap(),
            filters: vec!["#".into(), "ab".into()],
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 11)));
        assert_eq!(p.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn rejects_each_violation() {
        assert_eq!(
            decode(&[0xa2, 0x02, 0x00, 0x01]),
            Err(DecodeError::UnsubscribeWithoutFilters)
        );
        assert_eq!(
            decode(&[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            Err(DecodeError::InvalidFlags {
                packet: "UNSUBSCRIBE",
                flags: 0
            })
        );
        assert_eq!(
            decode(&[0xa2, 0x05, 0x00, 0x01, 0x00, 0x02, b'a']),
            Err(DecodeError::Truncated("topic filter"))
        );
    }
}
