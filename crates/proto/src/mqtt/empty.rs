//! PINGREQ, PINGRESP and DISCONNECT (MQTT 3.1.1 §3.12-3.14): a fixed header with flags
//! 0000 and remaining length 0, nothing else.

use super::codec::Reader;
use super::{DecodeError, Packet};

pub(super) fn decode(p: Packet, packet: &'static str, r: &Reader) -> Result<Packet, DecodeError> {
    r.finish(packet)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use crate::mqtt::{decode, DecodeError, Packet};

    #[test]
    fn byte_exact() {
        for (p, first) in [
            (Packet::PingReq, 0xc0),
            (Packet::PingResp, 0xd0),
            (Packet::Disconnect, 0xe0),
        ] {
            // type, remaining length 0, then a trailing byte of the next packet
            let bytes = [first, 0x00, 0x10];
            assert_eq!(p.to_bytes().unwrap(), &bytes[..2]);
            assert_eq!(decode(&bytes).unwrap(), Some((p, 2)));
        }
    }

    #[test]
    fn rejects_flags_and_body() {
        assert_eq!(
            decode(&[0xc1, 0x00]),
            Err(DecodeError::InvalidFlags {
                packet: "PINGREQ",
                flags: 1
            })
        );
        assert_eq!(
            decode(&[0xe0, 0x01, 0x00]),
            Err(DecodeError::TrailingBytes {
                packet: "DISCONNECT",
                count: 1
            })
        );
        assert_eq!(
            decode(&[0x00, 0x00]),
            Err(DecodeError::ReservedPacketType(0))
        );
        assert_eq!(
            decode(&[0xf0, 0x00]),
            Err(DecodeError::ReservedPacketType(15))
        );
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0xc0]), Ok(None));
    }
}
