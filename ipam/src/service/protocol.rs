//! The node IPAM service's wire protocol: newline-delimited JSON over a
//! unix stream socket.
//!
//! A client writes one [`Request`] per line and reads one [`Response`] per
//! line; on one connection, requests are answered in order. Open several
//! connections for concurrent requests. Example:
//!
//! ```text
//! → {"id":1,"op":"allocate","request":{"handle":"k8s-pod-network.abc","node":"n1","ipv4":1}}
//! ← {"id":1,"result":{"ips":[{"ip":"10.0.0.1","pool":"default","block":"10.0.0.0/26","sequence":1,"borrowed":false}]}}
//! → {"id":2,"op":"releaseHandle","handle":"k8s-pod-network.abc"}
//! ← {"id":2,"result":{"released":["10.0.0.1"]}}
//! → {"id":3,"op":"allocate","request":{"handle":"h","node":"n1","ipv4":1,"ipv4Pools":["nope"]}}
//! ← {"id":3,"error":{"kind":"poolNotUsable","refusal":true,"message":"ip pool nope: no such ip pool (by name or cidr)"}}
//! ```
//!
//! A line is at most [`MAX_LINE`] bytes; a longer one closes the connection.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::allocate::{AllocateRequest, AllocatedIp, AssignIpRequest};
use crate::error::IpamError;

/// The longest request or response line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the response.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    deny_unknown_fields,
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Op {
    /// Automatically chosen addresses.
    Allocate {
        /// The request.
        request: AllocateRequest,
    },
    /// One given address.
    AssignIp {
        /// The request.
        request: AssignIpRequest,
    },
    /// Every address of a handle (CNI DEL).
    ReleaseHandle {
        /// The handle.
        handle: String,
    },
    /// One address, optionally checking its handle and sequence number.
    ReleaseIp {
        /// The address.
        ip: IpAddr,
        /// The handle it must be held under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handle: Option<String>,
        /// The sequence number it must have been handed out with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence: Option<u64>,
    },
    /// The service's state.
    Status,
}

/// One response line: `result` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Response {
    /// The request's `id` (0 when the request could not be read).
    pub id: u64,
    /// What the operation returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Reply>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

/// A successful operation's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Reply {
    /// `allocate`, `assignIp`.
    Allocated {
        /// The addresses.
        ips: Vec<AllocatedIp>,
    },
    /// `releaseHandle`, `releaseIp`.
    Released {
        /// The addresses released.
        released: Vec<IpAddr>,
    },
    /// `status`.
    Status(Status),
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Status {
    /// The node served.
    pub node: String,
    /// Requests answered since start.
    pub requests: u64,
    /// Requests that failed (refusals included).
    pub failures: u64,
    /// The node's blocks: CIDR, addresses held, free addresses.
    pub blocks: Vec<BlockStatus>,
}

/// One of the node's blocks in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlockStatus {
    /// The block's CIDR.
    pub cidr: String,
    /// Addresses held.
    pub in_use: usize,
    /// Addresses free (not counting reserved or cooling-down ones).
    pub free: usize,
}

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorReply {
    /// A stable machine-readable kind, e.g. `exhausted`, `inUse`, `datastore`.
    pub kind: String,
    /// Whether the request was refused (retrying it unchanged will not
    /// help) rather than failed (a retry may succeed).
    pub refusal: bool,
    /// The error, naming the pool, address or field.
    pub message: String,
}

impl From<&IpamError> for ErrorReply {
    fn from(e: &IpamError) -> Self {
        let kind = match e {
            IpamError::Store(_) => "datastore",
            IpamError::Corrupt { .. } => "corrupt",
            IpamError::InvalidPool { .. } => "invalidPool",
            IpamError::OverlappingPools { .. } => "overlappingPools",
            IpamError::PoolNotUsable { .. } => "poolNotUsable",
            IpamError::NoPool { .. } => "noPool",
            IpamError::Exhausted { .. } => "exhausted",
            IpamError::OutsidePools { .. } => "outsidePools",
            IpamError::Reserved { .. } => "reserved",
            IpamError::InUse { .. } => "inUse",
            IpamError::CoolingDown { .. } => "coolingDown",
            IpamError::AffineToOtherNode { .. } => "affineToOtherNode",
            IpamError::BlockLimit { .. } => "blockLimit",
            IpamError::BadSequenceNumber { .. } => "badSequenceNumber",
            IpamError::WrongHandle { .. } => "wrongHandle",
            IpamError::InvalidRequest { .. } => "invalidRequest",
            IpamError::InvalidConfig { .. } => "invalidConfig",
            IpamError::TooManyConflicts { .. } => "tooManyConflicts",
            IpamError::BatchFailed { .. } => "datastore",
        };
        Self {
            kind: kind.to_string(),
            refusal: e.is_refusal(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let line = r#"{"id":2,"op":"releaseIp","ip":"10.0.0.1","sequence":4}"#;
        let request: Request = serde_json::from_str(line).expect("decodes");
        assert_eq!(
            request.op,
            Op::ReleaseIp {
                ip: "10.0.0.1".parse().expect("ip"),
                handle: None,
                sequence: Some(4)
            }
        );
        assert_eq!(serde_json::to_string(&request).expect("encodes"), line);
        let status: Request = serde_json::from_str(r#"{"id":1,"op":"status"}"#).expect("decodes");
        assert_eq!(status.op, Op::Status);
    }

    #[test]
    fn unknown_operations_and_fields_are_rejected() {
        for line in [
            r#"{"id":1,"op":"explode"}"#,
            r#"{"id":1,"op":"releaseHandle","handle":"h","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Request>(line).is_err(), "{line}");
        }
    }
}
