//! The BGP-4 wire format: framing, decoding into typed messages, and encoding.
//!
//! OPEN and UPDATE bodies go through `netgauze-bgp-pkt`; this module owns the
//! parts that decide how a session reacts to bad input:
//!
//! * framing ([`frame`]): the 16-octet marker, the length (checked against
//!   19..=4096 and the per-type minimum before any arithmetic) and the type;
//! * every decode failure is a [`DecodeError`] whose
//!   [`notification`](DecodeError::notification) is the RFC 4271 §6 NOTIFICATION
//!   (code, subcode, data) to send;
//! * UPDATE attribute errors follow RFC 7606: each attribute is framed and
//!   parsed on its own, and a bad one leads to attribute discard,
//!   treat-as-withdraw or session reset as the RFC assigns to that attribute
//!   (see [`update`]).
//!
//! KEEPALIVE, NOTIFICATION and ROUTE-REFRESH are small enough to be handled
//! here directly, which keeps unusual NOTIFICATION codes and data intact.

mod error;
mod open;
#[cfg(test)]
mod tests;
pub mod update;

pub use error::{DecodeError, Notification, OpenError, UpdateError, codes};
pub use open::{GracefulRestart, OpenParams, decode_open, encode_open};
pub use update::{
    AttributeProblem, RouteAttributes, Treatment, Update, encode_end_of_rib, encode_update_v4,
    encode_update_v6,
};

use netgauze_bgp_pkt::open::BgpOpenMessage;
use netgauze_iana::address_family::AddressType;

/// Length of the BGP message header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message RFC 4271 allows (RFC 8654 extended messages are not offered).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793): the 2-octet AS number a 4-octet speaker puts where
/// an old speaker expects its AS.
pub const AS_TRANS: u16 = 23456;

/// BGP message type codes (RFC 4271 §4.1, RFC 2918).
pub mod kind {
    /// OPEN.
    pub const OPEN: u8 = 1;
    /// UPDATE.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 5;
}

/// The address families Twill speaks (AFI/SAFI pairs of RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both families, in wire order.
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// The address family identifier.
    pub const fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    /// The subsequent address family identifier.
    pub const fn safi(self) -> u8 {
        1
    }

    /// The family for an (AFI, SAFI) pair, if Twill speaks it.
    pub const fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    pub(crate) const fn address_type(self) -> AddressType {
        match self {
            Family::Ipv4Unicast => AddressType::Ipv4Unicast,
            Family::Ipv6Unicast => AddressType::Ipv6Unicast,
        }
    }

    pub(crate) fn from_address_type(address_type: AddressType) -> Option<Family> {
        match address_type {
            AddressType::Ipv4Unicast => Some(Family::Ipv4Unicast),
            AddressType::Ipv6Unicast => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

/// A ROUTE-REFRESH message (RFC 2918; subtype from RFC 7313).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    /// Address family identifier as received.
    pub afi: u16,
    /// Message subtype: 0 normal request, 1 BoRR, 2 EoRR (RFC 7313).
    pub subtype: u8,
    /// Subsequent address family identifier as received.
    pub safi: u8,
}

impl RouteRefresh {
    /// The family asked for, if Twill speaks it (others are ignored, RFC 2918 §4).
    pub const fn family(&self) -> Option<Family> {
        Family::from_afi_safi(self.afi, self.safi)
    }
}

/// A decoded BGP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// OPEN, as netgauze models it (capabilities included).
    Open(BgpOpenMessage),
    /// UPDATE, after RFC 7606 error handling.
    Update(Update),
    /// NOTIFICATION, exactly as received.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Both sides announced the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
    /// The peer is internal (same AS): LOCAL_PREF is expected and honoured.
    pub ibgp: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            four_octet_as: true,
            ibgp: false,
        }
    }
}

/// A complete message found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Total length of the message including its header.
    pub len: usize,
    /// The message type code (see [`kind`]).
    pub kind: u8,
}

/// Looks for one complete message at the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed. The marker is checked as
/// soon as it is complete, the length as soon as it is readable — before it
/// is used in any arithmetic — so a bad header is reported without waiting
/// for bytes that may never come.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, DecodeError> {
    let marker_len = buf.len().min(16);
    if buf[..marker_len].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let (Some(&hi), Some(&lo)) = (buf.get(16), buf.get(17)) else {
        return Ok(None);
    };
    let length = u16::from_be_bytes([hi, lo]);
    let len = usize::from(length);
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(DecodeError::BadMessageLength { length });
    }
    let Some(&kind) = buf.get(18) else {
        return Ok(None);
    };
    // RFC 4271 §6.1: the length must also fit the message type.
    let fits = match kind {
        kind::OPEN => len >= 29,
        kind::UPDATE => len >= 23,
        kind::NOTIFICATION => len >= 21,
        kind::KEEPALIVE => len == HEADER_LEN,
        // A wrong ROUTE-REFRESH length is its own error (RFC 7313 §5), below.
        kind::ROUTE_REFRESH => true,
        other => return Err(DecodeError::BadMessageType { kind: other }),
    };
    if !fits {
        return Err(DecodeError::BadMessageLength { length });
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame { len, kind }))
}

/// Decodes the first message in `buf`, returning it and the number of bytes it
/// used, or `Ok(None)` if the message is not complete yet.
pub fn decode(
    buf: &[u8],
    options: &DecodeOptions,
) -> Result<Option<(Message, usize)>, DecodeError> {
    let Some(frame) = frame(buf)? else {
        return Ok(None);
    };
    let message = &buf[..frame.len];
    let body = &message[HEADER_LEN..];
    let decoded = match frame.kind {
        kind::OPEN => Message::Open(decode_open(body)?),
        kind::UPDATE => Message::Update(update::decode_update(body, options)?),
        kind::NOTIFICATION => Message::Notification(Notification {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        }),
        kind::KEEPALIVE => Message::Keepalive,
        kind::ROUTE_REFRESH => {
            let [afi_hi, afi_lo, subtype, safi] = body else {
                return Err(DecodeError::RouteRefreshLength {
                    message: message.to_vec(),
                });
            };
            Message::RouteRefresh(RouteRefresh {
                afi: u16::from_be_bytes([*afi_hi, *afi_lo]),
                subtype: *subtype,
                safi: *safi,
            })
        }
        other => return Err(DecodeError::BadMessageType { kind: other }),
    };
    Ok(Some((decoded, frame.len)))
}

/// Writes a header for a message of `body_len` bytes of type `kind`.
fn header(kind: u8, body_len: usize) -> Vec<u8> {
    let total = HEADER_LEN + body_len;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0xff; 16]);
    let length = u16::try_from(total).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.push(kind);
    out
}

/// A KEEPALIVE message.
pub fn encode_keepalive() -> Vec<u8> {
    header(kind::KEEPALIVE, 0)
}

/// A NOTIFICATION message. Data beyond what fits in 4,096 octets is cut.
pub fn encode_notification(notification: &Notification) -> Vec<u8> {
    let data_len = notification
        .data
        .len()
        .min(MAX_MESSAGE_LEN - HEADER_LEN - 2);
    let mut out = header(kind::NOTIFICATION, 2 + data_len);
    out.push(notification.code);
    out.push(notification.subcode);
    out.extend_from_slice(&notification.data[..data_len]);
    out
}

/// A ROUTE-REFRESH message (normal request) for `family`.
pub fn encode_route_refresh(family: Family) -> Vec<u8> {
    let mut out = header(kind::ROUTE_REFRESH, 4);
    out.extend_from_slice(&family.afi().to_be_bytes());
    out.push(0);
    out.push(family.safi());
    out
}

/// Fixes the length field of a message written by netgauze and checks it fits
/// RFC 4271's limit.
fn finish(mut message: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong { len: message.len() });
    }
    let length =
        u16::try_from(message.len()).map_err(|_| EncodeError::TooLong { len: message.len() })?;
    message[16..18].copy_from_slice(&length.to_be_bytes());
    Ok(message)
}

/// Encoding failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed 4,096 octets; split the NLRI over more UPDATEs.
    #[error("bgp message of {len} octets exceeds the 4096-octet limit")]
    TooLong {
        /// Length the message would have had.
        len: usize,
    },
    /// A prefix cannot be carried as unicast NLRI (multicast or broadcast).
    #[error("prefix {prefix} is not a unicast prefix")]
    NotUnicast {
        /// The offending prefix.
        prefix: String,
    },
    /// The underlying serializer failed.
    #[error("bgp serializer failed: {reason}")]
    Serializer {
        /// The serializer's message.
        reason: String,
    },
}
