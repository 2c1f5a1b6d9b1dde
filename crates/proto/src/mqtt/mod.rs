//! MQTT 3.1.1 codec (OASIS standard, 29 October 2014), all 14 packet types, both directions.
//!
//! Decoding is streaming: [`Decoder::decode`] takes the bytes received so far and returns
//! `Ok(Some((packet, used)))`, `Ok(None)` when more bytes are needed (not an error), or
//! `Err` for bytes that can never become a valid packet. The maximum packet size is checked
//! from the fixed header, before any allocation and before waiting for the body.
//!
//! Encoding validates what the decoder would reject, so that this crate never writes a
//! packet that it (or a strict peer) would refuse.

mod ack;
mod codec;
mod connack;
mod connect;
mod empty;
mod publish;
mod suback;
mod subscribe;
mod topic;
mod unsubscribe;

use std::num::NonZeroU16;

pub use codec::MAX_REMAINING_LENGTH;
pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, LastWill};
pub use publish::{Publish, PublishRef, QosPid};
pub use suback::{SubAck, SubAckCode};
pub use subscribe::{Subscribe, SubscribeFilter};
pub use topic::{topic_matches, validate_topic_filter, validate_topic_name};
pub use unsubscribe::Unsubscribe;

/// Quality of service (MQTT 3.1.1 §4.3). The wire value 3 is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// 0: at most once.
    AtMostOnce = 0,
    /// 1: at least once (PUBACK).
    AtLeastOnce = 1,
    /// 2: exactly once (PUBREC, PUBREL, PUBCOMP).
    ExactlyOnce = 2,
}

impl TryFrom<u8> for QoS {
    type Error = DecodeError;
    fn try_from(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(DecodeError::InvalidQoS(other)),
        }
    }
}

/// A packet identifier: never zero (MQTT-2.3.1-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0, which is not a packet identifier.
    pub const fn new(v: u16) -> Option<PacketId> {
        match NonZeroU16::new(v) {
            Some(n) => Some(PacketId(n)),
            None => None,
        }
    }

    /// The wire value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65535 to 1.
    pub const fn next(self) -> PacketId {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(n) => PacketId(n),
            None => PacketId(NonZeroU16::MIN),
        }
    }
}

impl std::fmt::Display for PacketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The 14 control packets of MQTT 3.1.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// 1: client request to connect.
    Connect(Connect),
    /// 2: connect acknowledgment.
    ConnAck(ConnAck),
    /// 3: publish message.
    Publish(Publish),
    /// 4: publish acknowledgment (QoS 1).
    PubAck(PacketId),
    /// 5: publish received (QoS 2, part 1).
    PubRec(PacketId),
    /// 6: publish release (QoS 2, part 2).
    PubRel(PacketId),
    /// 7: publish complete (QoS 2, part 3).
    PubComp(PacketId),
    /// 8: subscribe request.
    Subscribe(Subscribe),
    /// 9: subscribe acknowledgment.
    SubAck(SubAck),
    /// 10: unsubscribe request.
    Unsubscribe(Unsubscribe),
    /// 11: unsubscribe acknowledgment.
    UnsubAck(PacketId),
    /// 12: ping request.
    PingReq,
    /// 13: ping response.
    PingResp,
    /// 14: client is disconnecting.
    Disconnect,
}

impl Packet {
    /// The packet's type name as the specification writes it, for logs and traffic views.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }

    /// Appends the packet's bytes to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, out)
    }

    /// The packet's bytes in a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }
}

/// The longest UTF-8 string MQTT can carry (topic names among them): a 16-bit length
/// (MQTT 3.1.1 §1.5.3).
pub const MAX_STRING_BYTES: usize = 65_535;

/// The default maximum packet size: the 256 KB IoT Hub message limit plus room for topic
/// and headers. Callers facing other peers choose their own.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024 + 16 * 1024;

/// A streaming decoder with a maximum packet size.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    max_packet_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder {
    /// A decoder that refuses packets whose total size (fixed header included) exceeds
    /// `max_packet_size` bytes.
    pub const fn new(max_packet_size: usize) -> Decoder {
        Decoder { max_packet_size }
    }

    /// The configured maximum total packet size.
    pub const fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a packet, `Ok(Some((packet, n)))`
    /// when the first `n` bytes are a packet (bytes after them are left alone), and `Err`
    /// when the bytes are malformed; after an error the stream cannot be resynchronised
    /// and the connection should be closed.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Packet, usize)>, DecodeError> {
        codec::decode(buf, self.max_packet_size)
    }

    /// [`Decoder::decode`], with a PUBLISH's topic and payload borrowed from `buf`
    /// instead of copied (the other packets are small and owned).
    pub fn decode_ref<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(PacketRef<'a>, usize)>, DecodeError> {
        codec::decode_ref(buf, self.max_packet_size)
    }
}

/// A decoded packet, a PUBLISH borrowed from the bytes it came from
/// ([`Decoder::decode_ref`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketRef<'a> {
    /// A PUBLISH, its topic and payload borrowed.
    Publish(PublishRef<'a>),
    /// Any other packet.
    Other(Packet),
}

impl PacketRef<'_> {
    /// The packet type, e.g. `PUBLISH`.
    pub fn name(&self) -> &'static str {
        match self {
            PacketRef::Publish(_) => "PUBLISH",
            PacketRef::Other(p) => p.name(),
        }
    }

    /// The packet, owned.
    pub fn into_owned(self) -> Packet {
        match self {
            PacketRef::Publish(p) => Packet::Publish(p.to_owned()),
            PacketRef::Other(p) => p,
        }
    }
}

/// Decodes one packet with the default maximum size; see [`Decoder::decode`].
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, DecodeError> {
    Decoder::default().decode(buf)
}

/// Why bytes are not a valid MQTT 3.1.1 packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining-length field continues past its fourth byte (§2.2.3).
    #[error("remaining length is longer than 4 bytes")]
    RemainingLengthTooLong,
    /// Packet type 0 or 15 is reserved (§2.2.1).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// Fixed-header flag bits that must have fixed values do not (MQTT-2.2.2-2).
    #[error("invalid fixed-header flags {flags:#06b} for {packet}")]
    InvalidFlags {
        /// The packet type name.
        packet: &'static str,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A QoS value of 3 (MQTT-3.3.1-4), or any other value above 2.
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// DUP set on a QoS 0 PUBLISH (MQTT-3.3.1-2).
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQos0,
    /// A packet identifier of 0 where one is required (MQTT-2.3.1-1).
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// SUBSCRIBE with no topic filter (MQTT-3.8.3-3).
    #[error("SUBSCRIBE without topic filters")]
    SubscribeWithoutFilters,
    /// UNSUBSCRIBE with no topic filter (MQTT-3.10.3-2).
    #[error("UNSUBSCRIBE without topic filters")]
    UnsubscribeWithoutFilters,
    /// SUBACK with no return code.
    #[error("SUBACK without return codes")]
    SubAckWithoutCodes,
    /// A string that is not well-formed UTF-8 (MQTT-1.5.3-1).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string containing U+0000 (MQTT-1.5.3-2).
    #[error("string contains U+0000")]
    NullCharacter,
    /// A PUBLISH topic name containing `+` or `#` (MQTT-3.3.2-2).
    #[error("wildcard in topic name {}", crate::text::Quoted(.0))]
    WildcardInTopicName(String),
    /// An empty topic name or filter (MQTT-4.7.3-1).
    #[error("empty topic")]
    EmptyTopic,
    /// A topic filter with a misplaced `#` or `+` (MQTT-4.7.1-2, MQTT-4.7.1-3).
    #[error("invalid topic filter {}", crate::text::Quoted(.0))]
    InvalidTopicFilter(String),
    /// CONNECT protocol name other than `MQTT` (MQTT-3.1.2-1).
    #[error("protocol name {}, expected \"MQTT\"", crate::text::Quoted(.0))]
    InvalidProtocolName(String),
    /// CONNECT protocol level other than 4 (MQTT-3.1.2-2); a server answers CONNACK 1.
    #[error("protocol level {0}, expected 4 (MQTT 3.1.1)")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags bit 0 is reserved and must be 0 (MQTT-3.1.2-3).
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will flag (MQTT-3.1.2-13, MQTT-3.1.2-15).
    #[error("will QoS or retain set without the will flag")]
    WillFlagsWithoutWill,
    /// Password flag set without the user-name flag (MQTT-3.1.2-22).
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// CONNACK acknowledge flags with reserved bits set (MQTT-3.2.2-1... bits 7-1 are 0).
    #[error("CONNACK reserved flag bits set: {0:#04x}")]
    InvalidConnAckFlags(u8),
    /// CONNACK session-present set with a non-zero return code (MQTT-3.2.2-4).
    #[error("CONNACK session present with a refusal")]
    SessionPresentWithRefusal,
    /// CONNACK return code above 5 (§3.2.2.3).
    #[error("CONNACK return code {0} is reserved")]
    InvalidConnectReturnCode(u8),
    /// SUBSCRIBE requested-QoS byte with reserved bits set (MQTT-3.8.3-4).
    #[error("SUBSCRIBE options byte {0:#04x} has reserved bits set")]
    InvalidSubscribeOptions(u8),
    /// SUBACK return code other than 0, 1, 2 or 0x80 (MQTT-3.9.3-2).
    #[error("SUBACK return code {0:#04x} is reserved")]
    InvalidSubAckCode(u8),
    /// The packet's total size is over the configured maximum; checked before allocating.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Total size: fixed header plus remaining length.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A field runs past the end of the packet's remaining length.
    #[error("{0} runs past the end of the packet")]
    Truncated(&'static str),
    /// Bytes left over inside the packet after all its fields.
    #[error("{count} unexpected bytes at the end of {packet}")]
    TrailingBytes {
        /// The packet type name.
        packet: &'static str,
        /// How many bytes were left.
        count: usize,
    },
}

/// Why a packet cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet is longer than MQTT's 268,435,455-byte remaining length.
    #[error("packet body of {0} bytes exceeds the MQTT maximum of 268435455")]
    PacketTooLarge(usize),
    /// A string or binary field longer than 65,535 bytes.
    #[error("{field} is {len} bytes; MQTT allows at most 65535")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A field the decoder would reject (wildcards, U+0000, no filters, ...).
    #[error("invalid packet: {0}")]
    Invalid(#[from] DecodeError),
}
