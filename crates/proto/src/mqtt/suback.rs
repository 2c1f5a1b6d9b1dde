//! SUBACK (MQTT 3.1.1 §3.9).
//!
//! ```text
//! variable header: packet identifier (u16)
//! payload:         one return code per requested filter:
//!                  0x00, 0x01, 0x02 = granted QoS; 0x80 = failure; others reserved
//! ```

use super::codec::{write_u16, Reader};
use super::{DecodeError, EncodeError, PacketId, QoS};

/// The answer to SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub pkid: PacketId,
    /// One code per filter, in order.
    pub return_codes: Vec<SubAckCode>,
}

/// One SUBACK return code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubAckCode {
    /// Subscribed with this maximum QoS.
    Success(QoS),
    /// 0x80: refused.
    Failure,
}

impl SubAck {
    pub(super) fn decode(packet: &'static str, r: &mut Reader) -> Result<SubAck, DecodeError> {
        let pkid = r.packet_id()?;
        let codes = r.rest();
        if codes.is_empty() {
            return Err(DecodeError::SubAckWithoutCodes);
        }
        let return_codes = codes
            .iter()
            .map(|&c| match c {
                0x80 => Ok(SubAckCode::Failure),
                0..=2 => Ok(SubAckCode::Success(QoS::try_from(c)?)),
                other => Err(DecodeError::InvalidSubAckCode(other)),
            })
            .collect::<Result<_, _>>()?;
        r.finish(packet)?;
        Ok(SubAck { pkid, return_codes })
    }

    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.return_codes.is_empty() {
            return Err(DecodeError::SubAckWithoutCodes.into());
        }
        Ok(2 + self.return_codes.len())
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) {
        write_u16(self.pkid.get(), out);
        out.extend(self.return_codes.iter().map(|c| match c {
            SubAckCode::Success(q) => *q as u8,
            SubAckCode::Failure => 0x80,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, Packet};

    #[test]
    fn codes_byte_exact() {
        #[rustfmt::skip]
        let bytes = [
            0x90, 0x06,             // SUBACK, remaining length 6
            0x00, 0x0a,             // packet id 10
            0x00, 0x01, 0x02, 0x80, // granted 0, 1, 2; failure
            0x30,                   // trailing: a PUBLISH's first byte
        ];
        let p = Packet::SubAck(SubAck {
            pkid: PacketId::new(10).unwrap(),
            return_codes: vec![
                SubAckCode::Success(QoS::AtMostOnce),
                SubAckCode::Success(QoS::AtLeastOnce),
                SubAckCode::Success(QoS::ExactlyOnce),
                SubAckCode::Failure,
            ],
        });
        assert_eq!(decode(&bytes).unwrap(), Some((p.clone(), 8)));
        assert_eq!(p.to_bytes().unwrap(), &bytes[..8]);
    }

    #[test]
    fn rejects_reserved_codes_and_empty() {
        assert_eq!(
            decode(&[0x90, 0x03, 0x00, 0x01, 0x03]),
            Err(DecodeError::InvalidSubAckCode(3))
        );
        assert_eq!(
            decode(&[0x90, 0x03, 0x00, 0x01, 0x81]),
            Err(DecodeError::InvalidSubAckCode(0x81))
        );
        assert_eq!(
            decode(&[0x90, 0x02, 0x00, 0x01]),
            Err(DecodeError::SubAckWithoutCodes)
        );
    }
}
