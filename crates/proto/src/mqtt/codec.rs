//! The fixed header, the remaining-length varint, and field readers and writers.
//!
//! Fixed header (MQTT 3.1.1 §2.2):
//!
//! ```text
//!   bit     7   6   5   4   3   2   1   0
//! byte 1   [ packet type ] [    flags    ]
//! byte 2.. remaining length: 1 to 4 bytes, 7 bits each, least significant group first,
//!          bit 7 set = another byte follows (§2.2.3)
//! ```
//!
//! Strings (§1.5.3) are a big-endian u16 length and that many bytes of UTF-8 without U+0000;
//! binary data (§1.5.3 for Will Message and Password) is a u16 length and raw bytes.

use super::{
    ack, connack, connect, empty, publish, suback, subscribe, unsubscribe, DecodeError,
    EncodeError, Packet, PacketId, PacketRef,
};

/// The largest remaining length MQTT can express (§2.2.3): 268,435,455.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Reads the remaining length starting at `buf[1]`.
/// Returns `Ok(None)` if more bytes are needed, else `(length, bytes used by the varint)`.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::RemainingLengthTooLong)
}

/// The remaining-length varint: its bytes and how many of them there are (1 to 4).
fn remaining_length_varint(mut len: usize) -> ([u8; 4], usize) {
    let mut bytes = [0u8; 4];
    let mut n = 0;
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        bytes[n] = byte;
        n += 1;
        if len == 0 || n == 4 {
            return (bytes, n);
        }
    }
}

pub(super) fn decode(buf: &[u8], max: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    decode_as(buf, max, |p| Packet::Publish(p.to_owned()), |p| p)
}

pub(super) fn decode_ref(
    buf: &[u8],
    max: usize,
) -> Result<Option<(PacketRef<'_>, usize)>, DecodeError> {
    decode_as(buf, max, PacketRef::Publish, PacketRef::Other)
}

/// The decoder, with what to make of a PUBLISH and of any other packet. One copy of it
/// for each of [`decode`] and [`decode_ref`]: making the owned packet from the borrowed
/// one afterwards moved the large result twice and made small packets decode twice as
/// slowly.
#[inline(always)]
fn decode_as<'a, T>(
    buf: &'a [u8],
    max: usize,
    publish: impl FnOnce(publish::PublishRef<'a>) -> T,
    other: impl FnOnce(Packet) -> T,
) -> Result<Option<(T, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0f;
    if packet_type == 0 || packet_type == 15 {
        return Err(DecodeError::ReservedPacketType(packet_type));
    }
    let Some((len, varint)) = remaining_length(buf)? else {
        return Ok(None);
    };
    let total = 1 + varint + len;
    if total > max {
        return Err(DecodeError::PacketTooLarge { size: total, max });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut r = Reader::new(&buf[1 + varint..total]);
    let packet = match packet_type {
        1 => Packet::Connect(connect::Connect::decode(
            fixed_flags("CONNECT", flags, 0)?,
            &mut r,
        )?),
        2 => Packet::ConnAck(connack::ConnAck::decode(
            fixed_flags("CONNACK", flags, 0)?,
            &mut r,
        )?),
        3 => {
            let p = publish::PublishRef::decode(flags, &mut r)?;
            return Ok(Some((publish(p), total)));
        }
        4 => Packet::PubAck(ack::decode(fixed_flags("PUBACK", flags, 0)?, &mut r)?),
        5 => Packet::PubRec(ack::decode(fixed_flags("PUBREC", flags, 0)?, &mut r)?),
        6 => Packet::PubRel(ack::decode(fixed_flags("PUBREL", flags, 0b0010)?, &mut r)?),
        7 => Packet::PubComp(ack::decode(fixed_flags("PUBCOMP", flags, 0)?, &mut r)?),
        8 => Packet::Subscribe(subscribe::Subscribe::decode(
            fixed_flags("SUBSCRIBE", flags, 0b0010)?,
            &mut r,
        )?),
        9 => Packet::SubAck(suback::SubAck::decode(
            fixed_flags("SUBACK", flags, 0)?,
            &mut r,
        )?),
        10 => Packet::Unsubscribe(unsubscribe::Unsubscribe::decode(
            fixed_flags("UNSUBSCRIBE", flags, 0b0010)?,
            &mut r,
        )?),
        11 => Packet::UnsubAck(ack::decode(fixed_flags("UNSUBACK", flags, 0)?, &mut r)?),
        12 => empty::decode(Packet::PingReq, fixed_flags("PINGREQ", flags, 0)?, &r)?,
        13 => empty::decode(Packet::PingResp, fixed_flags("PINGRESP", flags, 0)?, &r)?,
        14 => empty::decode(Packet::Disconnect, fixed_flags("DISCONNECT", flags, 0)?, &r)?,
        _ => unreachable!("packet types 0 and 15 were rejected above"),
    };
    Ok(Some((other(packet), total)))
}

/// Checks flag bits that the specification fixes (MQTT-2.2.2-2); returns the packet name.
fn fixed_flags(packet: &'static str, flags: u8, expected: u8) -> Result<&'static str, DecodeError> {
    if flags == expected {
        Ok(packet)
    } else {
        Err(DecodeError::InvalidFlags { packet, flags })
    }
}

pub(super) fn encode(packet: &Packet, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    // Fixed-size packets: one write, nothing to check (a PUBACK goes for every message).
    match packet {
        Packet::PubAck(id) | Packet::PubRec(id) | Packet::PubComp(id) | Packet::UnsubAck(id) => {
            let first = match packet {
                Packet::PubAck(_) => 0x40,
                Packet::PubRec(_) => 0x50,
                Packet::PubComp(_) => 0x70,
                _ => 0xb0,
            };
            let [hi, lo] = id.get().to_be_bytes();
            out.extend_from_slice(&[first, 2, hi, lo]);
            return Ok(());
        }
        Packet::PingReq => {
            out.extend_from_slice(&[0xc0, 0]);
            return Ok(());
        }
        Packet::PingResp => {
            out.extend_from_slice(&[0xd0, 0]);
            return Ok(());
        }
        Packet::Disconnect => {
            out.extend_from_slice(&[0xe0, 0]);
            return Ok(());
        }
        _ => {}
    }
    // Validate and size first, so that nothing is appended on error.
    let (first, len) = match packet {
        Packet::Connect(p) => (0x10, p.body_len()?),
        Packet::ConnAck(p) => (0x20, p.body_len()?),
        Packet::Publish(p) => (p.first_byte(), p.body_len()?),
        Packet::PubAck(_) => (0x40, 2),
        Packet::PubRec(_) => (0x50, 2),
        Packet::PubRel(_) => (0x62, 2),
        Packet::PubComp(_) => (0x70, 2),
        Packet::Subscribe(p) => (0x82, p.body_len()?),
        Packet::SubAck(p) => (0x90, p.body_len()?),
        Packet::Unsubscribe(p) => (0xa2, p.body_len()?),
        Packet::UnsubAck(_) => (0xb0, 2),
        Packet::PingReq => (0xc0, 0),
        Packet::PingResp => (0xd0, 0),
        Packet::Disconnect => (0xe0, 0),
    };
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(len));
    }
    // The fixed header in one write: the first byte and the remaining length.
    let (varint, n) = remaining_length_varint(len);
    let [a, b, c, d] = varint;
    let header = [first, a, b, c, d];
    out.reserve(1 + n + len);
    out.extend_from_slice(&header[..1 + n]);
    match packet {
        Packet::Connect(p) => p.write_body(out),
        Packet::ConnAck(p) => p.write_body(out),
        Packet::Publish(p) => p.write_body(out),
        Packet::PubAck(id)
        | Packet::PubRec(id)
        | Packet::PubRel(id)
        | Packet::PubComp(id)
        | Packet::UnsubAck(id) => write_u16(id.get(), out),
        Packet::Subscribe(p) => p.write_body(out),
        Packet::SubAck(p) => p.write_body(out),
        Packet::Unsubscribe(p) => p.write_body(out),
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
    }
    Ok(())
}

/// A cursor over one packet's body (the bytes covered by the remaining length).
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId)
    }

    /// A length-prefixed byte field (§1.5.3 binary data).
    pub(super) fn binary(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.take(len, what)
    }

    /// A length-prefixed UTF-8 string without U+0000 (§1.5.3).
    pub(super) fn string(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let s = self.utf8(what)?;
        check_string(s)?;
        Ok(s)
    }

    /// A string whose caller checks it for U+0000 itself (topic names and filters are
    /// validated in one pass that looks for it too).
    pub(super) fn utf8(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Everything left in the body.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Errors if any body bytes are left unread.
    pub(super) fn finish(&self, packet: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { packet, count }),
        }
    }
}

/// U+0000 is forbidden in MQTT strings (MQTT-1.5.3-2). Rust strings are valid UTF-8 (which
/// also excludes the surrogates of MQTT-1.5.3-1) by construction.
pub(super) fn check_string(s: &str) -> Result<(), DecodeError> {
    if s.as_bytes().contains(&0) {
        Err(DecodeError::NullCharacter)
    } else {
        Ok(())
    }
}

/// The encoded size of a string or binary field, checking the 65,535-byte limit.
pub(super) fn field_len(field: &'static str, len: usize) -> Result<usize, EncodeError> {
    if len > super::MAX_STRING_BYTES {
        Err(EncodeError::FieldTooLong { field, len })
    } else {
        Ok(2 + len)
    }
}

pub(super) fn write_u16(v: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a length-prefixed field; the caller has checked the length with [`field_len`].
pub(super) fn write_binary(b: &[u8], out: &mut Vec<u8>) {
    write_u16(b.len() as u16, out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_boundaries_round_trip() {
        // §2.2.3 table: the first and last value of each byte count.
        for (len, bytes) in [
            (0, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xff, 0xff, 0x7f]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, vec![0xff, 0xff, 0xff, 0x7f]),
        ] {
            let (varint, n) = remaining_length_varint(len);
            assert_eq!(&varint[..n], &bytes[..], "encoding {len}");
            let mut framed = vec![0x30];
            framed.extend_from_slice(&bytes);
            assert_eq!(remaining_length(&framed), Ok(Some((len, bytes.len()))));
        }
    }

    #[test]
    fn remaining_length_needs_more_or_is_too_long() {
        assert_eq!(remaining_length(&[0x30]), Ok(None));
        assert_eq!(remaining_length(&[0x30, 0x80, 0x80]), Ok(None));
        assert_eq!(
            remaining_length(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::RemainingLengthTooLong)
        );
    }
}
