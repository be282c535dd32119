//! Decode errors and the NOTIFICATION each one calls for (RFC 4271 §6).

use std::net::Ipv4Addr;

/// NOTIFICATION error codes and subcodes (RFC 4271 §4.5 and the IANA registry).
pub mod codes {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// Connection Not Synchronized.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// Bad Message Length.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// Bad Message Type.
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// Unspecific OPEN error (malformed optional parameter).
    pub const OPEN_UNSPECIFIC: u8 = 0;
    /// Unsupported Version Number.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// Unsupported Optional Parameter.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// Unsupported Capability (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    /// Attribute Flags Error.
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    /// Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    /// Invalid Network Field.
    pub const INVALID_NETWORK_FIELD: u8 = 10;

    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;

    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Unexpected message in OpenSent (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// Unexpected message in OpenConfirm (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// Unexpected message in Established (RFC 6608).
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

    /// Cease.
    pub const CEASE: u8 = 6;
    /// Administrative Shutdown (RFC 4486).
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    /// Peer De-configured (RFC 4486).
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    /// Connection Rejected (RFC 4486).
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    /// Connection Collision Resolution (RFC 4486).
    pub const CEASE_COLLISION_RESOLUTION: u8 = 7;

    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
    /// Invalid Message Length (RFC 7313).
    pub const ROUTE_REFRESH_INVALID_LENGTH: u8 = 1;
}

/// A NOTIFICATION message: error code, subcode and data (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data; its meaning depends on code and subcode.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with no data.
    pub const fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// A NOTIFICATION with data.
    pub fn with_data(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }
}

impl Notification {
    /// The RFC names of the error code and subcode ("Cease", "Administrative
    /// Shutdown"), as BIRD and FRR print them; `None` for values no RFC
    /// Twill implements defines.
    pub fn names(&self) -> (Option<&'static str>, Option<&'static str>) {
        let code = match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => return (None, None),
        };
        let subcode = match (self.code, self.subcode) {
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (2, 7) => "Unsupported Capability",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 6) => "Invalid ORIGIN Attribute",
            (3, 8) => "Invalid NEXT_HOP Attribute",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            (5, 1) => "Receive Unexpected Message in OpenSent State",
            (5, 2) => "Receive Unexpected Message in OpenConfirm State",
            (5, 3) => "Receive Unexpected Message in Established State",
            (6, 1) => "Maximum Number of Prefixes Reached",
            (6, 2) => "Administrative Shutdown",
            (6, 3) => "Peer De-configured",
            (6, 4) => "Administrative Reset",
            (6, 5) => "Connection Rejected",
            (6, 6) => "Other Configuration Change",
            (6, 7) => "Connection Collision Resolution",
            (6, 8) => "Out of Resources",
            (6, 9) => "Hard Reset",
            (7, 1) => "Invalid Message Length",
            _ => return (Some(code), None),
        };
        (Some(code), Some(subcode))
    }
}

/// "Cease: Administrative Shutdown", "Hold Timer Expired"; numbers where
/// the code or subcode has no name ("Cease: subcode 42", "notification 9/1").
impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.names() {
            (Some(code), Some(subcode)) => write!(f, "{code}: {subcode}"),
            (Some(code), None) if self.subcode == 0 => f.write_str(code),
            (Some(code), None) => write!(f, "{code}: subcode {}", self.subcode),
            (None, _) => write!(f, "notification {}/{}", self.code, self.subcode),
        }
    }
}

/// An OPEN message the speaker must refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The version is not 4.
    #[error("unsupported bgp version {version}")]
    UnsupportedVersion {
        /// Version received.
        version: u8,
    },
    /// The AS is not the configured remote AS.
    #[error("bad peer as {received}, expected {expected}")]
    BadPeerAs {
        /// AS received (from the 4-octet AS capability when present).
        received: u32,
        /// AS configured for the peer.
        expected: u32,
    },
    /// The BGP identifier is not a unicast host address, or equals ours on iBGP.
    #[error("bad bgp identifier {id}")]
    BadBgpIdentifier {
        /// Identifier received.
        id: Ipv4Addr,
    },
    /// An optional parameter type other than capabilities.
    #[error("unsupported optional parameter type {kind}")]
    UnsupportedOptionalParameter {
        /// Parameter type received.
        kind: u8,
    },
    /// Hold time 1 or 2 seconds.
    #[error("unacceptable hold time {hold_time} s")]
    UnacceptableHoldTime {
        /// Hold time received.
        hold_time: u16,
    },
    /// The peer lacks a capability Twill needs (no common address family).
    #[error("unsupported capability: {reason}")]
    UnsupportedCapability {
        /// What is missing.
        reason: String,
        /// The capability TLVs Twill needs, sent as NOTIFICATION data (RFC 5492 §5).
        data: Vec<u8>,
    },
    /// A recognised optional parameter is malformed.
    #[error("malformed open message: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
}

impl OpenError {
    /// The NOTIFICATION that refuses the OPEN.
    pub fn notification(&self) -> Notification {
        use codes::*;
        match self {
            // Data: the largest version supported, as a 2-octet integer.
            OpenError::UnsupportedVersion { .. } => {
                Notification::with_data(OPEN_MESSAGE, UNSUPPORTED_VERSION, 4u16.to_be_bytes())
            }
            OpenError::BadPeerAs { .. } => Notification::new(OPEN_MESSAGE, BAD_PEER_AS),
            OpenError::BadBgpIdentifier { .. } => {
                Notification::new(OPEN_MESSAGE, BAD_BGP_IDENTIFIER)
            }
            OpenError::UnsupportedOptionalParameter { .. } => {
                Notification::new(OPEN_MESSAGE, UNSUPPORTED_OPTIONAL_PARAMETER)
            }
            OpenError::UnacceptableHoldTime { .. } => {
                Notification::new(OPEN_MESSAGE, UNACCEPTABLE_HOLD_TIME)
            }
            OpenError::UnsupportedCapability { data, .. } => {
                Notification::with_data(OPEN_MESSAGE, UNSUPPORTED_CAPABILITY, data.clone())
            }
            OpenError::Malformed { .. } => Notification::new(OPEN_MESSAGE, OPEN_UNSPECIFIC),
        }
    }
}

/// An UPDATE error that RFC 7606 settles with a session reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Withdrawn or attribute lengths overrun the message, or an attribute
    /// header is cut short, or MP_REACH/MP_UNREACH appears twice.
    #[error("malformed attribute list: {reason}")]
    MalformedAttributeList {
        /// What was wrong.
        reason: &'static str,
    },
    /// A well-known attribute Twill does not know (optional bit clear).
    #[error("unrecognized well-known attribute type {code}")]
    UnrecognizedWellKnown {
        /// Attribute type code.
        code: u8,
        /// The whole attribute (flags, type, length, value).
        attribute: Vec<u8>,
    },
    /// MP_REACH_NLRI or MP_UNREACH_NLRI is malformed (RFC 7606 §7.11).
    #[error("malformed multiprotocol attribute type {code}: {reason}")]
    MalformedMultiprotocol {
        /// Attribute type code (14 or 15).
        code: u8,
        /// The parser's message.
        reason: String,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// The IPv4 NLRI or withdrawn routes field cannot be parsed.
    #[error("invalid network field: {reason}")]
    InvalidNetworkField {
        /// The parser's message.
        reason: String,
    },
}

impl UpdateError {
    /// The NOTIFICATION that resets the session.
    pub fn notification(&self) -> Notification {
        use codes::*;
        match self {
            UpdateError::MalformedAttributeList { .. } => {
                Notification::new(UPDATE_MESSAGE, MALFORMED_ATTRIBUTE_LIST)
            }
            UpdateError::UnrecognizedWellKnown { attribute, .. } => {
                Notification::with_data(UPDATE_MESSAGE, UNRECOGNIZED_WELL_KNOWN, attribute.clone())
            }
            UpdateError::MalformedMultiprotocol { attribute, .. } => {
                Notification::with_data(UPDATE_MESSAGE, OPTIONAL_ATTRIBUTE, attribute.clone())
            }
            UpdateError::InvalidNetworkField { .. } => {
                Notification::new(UPDATE_MESSAGE, INVALID_NETWORK_FIELD)
            }
        }
    }
}

/// Why a received message could not be decoded. Each variant maps to the
/// NOTIFICATION the speaker sends before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The 16-octet marker is not all ones.
    #[error("connection not synchronized: bad message marker")]
    ConnectionNotSynchronized,
    /// The length field is outside 19..=4096 or wrong for the message type.
    #[error("bad message length {length}")]
    BadMessageLength {
        /// The length field received.
        length: u16,
    },
    /// The type field is not a message type Twill knows.
    #[error("bad message type {kind}")]
    BadMessageType {
        /// The type field received.
        kind: u8,
    },
    /// The OPEN must be refused.
    #[error("in open message: {0}")]
    Open(#[from] OpenError),
    /// The UPDATE calls for a session reset.
    #[error("in update message: {0}")]
    Update(#[from] UpdateError),
    /// A ROUTE-REFRESH whose length is not 23 octets.
    #[error("route-refresh message of {} octets", message.len())]
    RouteRefreshLength {
        /// The whole message, sent back as NOTIFICATION data (RFC 7313 §5).
        message: Vec<u8>,
    },
}

impl DecodeError {
    /// The NOTIFICATION to send for this error (RFC 4271 §6).
    pub fn notification(&self) -> Notification {
        use codes::*;
        match self {
            DecodeError::ConnectionNotSynchronized => {
                Notification::new(MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED)
            }
            // Data: the erroneous length field.
            DecodeError::BadMessageLength { length } => {
                Notification::with_data(MESSAGE_HEADER, BAD_MESSAGE_LENGTH, length.to_be_bytes())
            }
            // Data: the erroneous type field.
            DecodeError::BadMessageType { kind } => {
                Notification::with_data(MESSAGE_HEADER, BAD_MESSAGE_TYPE, [*kind])
            }
            DecodeError::Open(error) => error.notification(),
            DecodeError::Update(error) => error.notification(),
            DecodeError::RouteRefreshLength { message } => Notification::with_data(
                ROUTE_REFRESH_MESSAGE,
                ROUTE_REFRESH_INVALID_LENGTH,
                message.clone(),
            ),
        }
    }

    /// True for errors in the message header (FSM event 21, BGPHeaderErr).
    pub const fn is_header_error(&self) -> bool {
        matches!(
            self,
            DecodeError::ConnectionNotSynchronized
                | DecodeError::BadMessageLength { .. }
                | DecodeError::BadMessageType { .. }
        )
    }
}
