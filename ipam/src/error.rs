//! The IPAM library's one error type.

use std::net::IpAddr;

use twill_store::Key;

/// A shorthand for results whose error is [`IpamError`].
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// Everything an IPAM operation can fail with. Every variant names the pool,
/// address, block, node or field it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The datastore failed (other than a conflict the library retried).
    #[error("datastore: {0}")]
    Store(#[from] twill_store::Error),

    /// A stored IPAM object does not have the shape the library expects.
    #[error("object {key} is corrupt: {reason}")]
    Corrupt {
        /// The object's key.
        key: Key,
        /// What is wrong with it.
        reason: String,
    },

    /// A pool cannot be used as configured.
    #[error("ip pool {pool}: field {field}: {reason}")]
    InvalidPool {
        /// The pool's name.
        pool: String,
        /// The offending field, e.g. `spec.blockSize`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// Two pools cover the same addresses.
    #[error("ip pool {pool} ({cidr}) overlaps ip pool {other} ({other_cidr})")]
    OverlappingPools {
        /// The pool being used.
        pool: String,
        /// Its CIDR.
        cidr: String,
        /// The pool it overlaps.
        other: String,
        /// That pool's CIDR.
        other_cidr: String,
    },

    /// The request names a pool (by name or CIDR) that does not exist or
    /// cannot serve it.
    #[error("ip pool {pool}: {reason}")]
    PoolNotUsable {
        /// The pool as the request named it.
        pool: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// No pool of the family may serve this node, namespace and use.
    #[error("no {family} ip pool is usable by node {node} for {use_}")]
    NoPool {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The requesting node.
        node: String,
        /// The intended use, e.g. `Workload`.
        use_: String,
    },

    /// Every usable pool is full (or the node may claim no more blocks and
    /// may not borrow).
    #[error("{family} ip pools {pools} are exhausted for node {node}: {detail}")]
    Exhausted {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The pools that were tried, comma-separated.
        pools: String,
        /// The requesting node.
        node: String,
        /// Why nothing could be handed out.
        detail: String,
    },

    /// The address is in no IP pool.
    #[error("ip {ip} is not in any ip pool")]
    OutsidePools {
        /// The address.
        ip: IpAddr,
    },

    /// The address is excluded by an IPReservation.
    #[error("ip {ip} is reserved by ipreservation {reservation}")]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// The reservation's name.
        reservation: String,
    },

    /// The address is already held.
    #[error("ip {ip} is already allocated to handle {handle}")]
    InUse {
        /// The address.
        ip: IpAddr,
        /// Its current handle.
        handle: String,
    },

    /// The address was released and its cooldown has not passed.
    #[error("ip {ip} was released at {released_at} and is cooling down")]
    CoolingDown {
        /// The address.
        ip: IpAddr,
        /// When it was released.
        released_at: String,
    },

    /// The block is affine to another node and strict affinity forbids
    /// borrowing from it.
    #[error("block {block} is affine to node {owner}, not {node}, and strictAffinity is on")]
    AffineToOtherNode {
        /// The block's CIDR.
        block: String,
        /// The node that owns it.
        owner: String,
        /// The requesting node.
        node: String,
    },

    /// The node already has as many blocks as allowed.
    #[error(
        "node {node} holds {held} blocks, the per host block limit (maxBlocksPerHost) is {limit}"
    )]
    BlockLimit {
        /// The node.
        node: String,
        /// Blocks it holds.
        held: usize,
        /// The limit.
        limit: usize,
    },

    /// A release carried a sequence number that is not the allocation's: the
    /// address was released and handed out again since the caller looked.
    #[error(
        "ip {ip}: sequence number {given} does not match the allocation's {current}; not released"
    )]
    BadSequenceNumber {
        /// The address.
        ip: IpAddr,
        /// The number the caller gave.
        given: u64,
        /// The allocation's number.
        current: u64,
    },

    /// A release names a handle that does not hold the address.
    #[error("ip {ip} is held by handle {actual}, not {given}; not released")]
    WrongHandle {
        /// The address.
        ip: IpAddr,
        /// The handle the caller gave.
        given: String,
        /// The handle holding it.
        actual: String,
    },

    /// The request itself is malformed.
    #[error("invalid request: field {field}: {reason}")]
    InvalidRequest {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The IPAMConfiguration cannot be used.
    #[error("ipamconfiguration default: field {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A request served in a batch failed after its handle was counted.
    #[error("allocation for handle {handle} failed: {reason}")]
    BatchFailed {
        /// The request's handle.
        handle: String,
        /// The batch's error.
        reason: String,
    },

    /// A compare-and-swap kept losing to other writers.
    #[error("gave up on {key} after {attempts} conflicting writes")]
    TooManyConflicts {
        /// The contended object.
        key: Key,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl IpamError {
    /// Whether the error is a refusal of the request (bad input, nothing
    /// free) rather than a failure of the datastore.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Store(_)
                | Self::Corrupt { .. }
                | Self::TooManyConflicts { .. }
                | Self::BatchFailed { .. }
        )
    }
}
