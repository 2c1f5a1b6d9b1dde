//! PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK (MQTT 3.1.1 §3.4-3.7, §3.11): a packet
//! identifier and nothing else.
//!
//! ```text
//! fixed header: type | flags (PUBREL 0010, the others 0000), remaining length 2
//! variable header: packet identifier (u16, non-zero)
//! ```

use super::codec::Reader;
use super::{DecodeError, PacketId};

pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<PacketId, DecodeError> {
    let id = r.packet_id()?;
    r.finish(packet)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use crate::mqtt::{decode, DecodeError, Packet, PacketId};

    #[test]
    fn every_id_only_packet_byte_exact() {
        let id = PacketId::new(0x1234).unwrap();
        for (p, first) in [
            (Packet::PubAck(id), 0x40),
            (Packet::PubRec(id), 0x50),
            (Packet::PubRel(id), 0x62),
            (Packet::PubComp(id), 0x70),
            (Packet::UnsubAck(id), 0xb0),
        ] {
            #[rustfmt::skip]
            let bytes = [
                first, 0x02, // type and flags, remaining length 2
                0x12, 0x34,  // packet id 0x1234
                0xe0,        // trailing: a DISCONNECT's first byte
            ];
            assert_eq!(p.to_bytes().unwrap(), &bytes[..4], "{}", p.name());
            assert_eq!(
                decode(&bytes).unwrap(),
                Some((p.clone(), 4)),
                "{}",
                p.name()
            );
        }
    }

    #[test]
    fn rejects_wrong_flags_zero_id_and_length() {
        // PUBREL must carry flags 0010.
        assert_eq!(
            decode(&[0x60, 0x02, 0x00, 0x01]),
            Err(DecodeError::InvalidFlags {
                packet: "PUBREL",
                flags: 0
            })
        );
        // PUBACK must carry flags 0000.
        assert_eq!(
            decode(&[0x42, 0x02, 0x00, 0x01]),
            Err(DecodeError::InvalidFlags {
                packet: "PUBACK",
                flags: 2
            })
        );
        assert_eq!(
            decode(&[0x40, 0x02, 0x00, 0x00]),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode(&[0x40, 0x03, 0x00, 0x01, 0x00]),
            Err(DecodeError::TrailingBytes {
                packet: "PUBACK",
                count: 1
            })
        );
        assert_eq!(
            decode(&[0x40, 0x01, 0x00]),
            Err(DecodeError::Truncated("packet identifier"))
        );
    }
}
