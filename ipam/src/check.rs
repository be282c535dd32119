//! Consistency checks and utilisation over the whole IPAM state, for
//! `twill ipam check|show` and for the invariant tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use twill_api::Validate;
use twill_api::ipam::{BlockAffinityState, IPAMBlockSpec, IPAMHandleSpec};
use twill_store::Datastore;

use crate::affinity;
use crate::block::{BlockExt, ip_at, size_of};
use crate::error::Result;
use crate::pool::Snapshot;
use crate::store;

/// One inconsistency in the IPAM state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum Problem {
    /// A block breaks the block rules (bad CIDR, free list naming a held
    /// ordinal, ...).
    InvalidBlock {
        /// The block's CIDR.
        block: String,
        /// What is wrong.
        reason: String,
    },
    /// Two blocks cover the same addresses: an address could be held twice.
    OverlappingBlocks {
        /// One block.
        block: String,
        /// The other.
        other: String,
    },
    /// An address is held without a handle that counts it.
    AllocationWithoutHandle {
        /// The address.
        ip: IpAddr,
        /// The handle its attribute names, if any.
        handle: Option<String>,
    },
    /// A handle counts a different number of addresses in a block than the
    /// block holds for it.
    HandleCountMismatch {
        /// The handle.
        handle: String,
        /// The block.
        block: String,
        /// What the handle says.
        recorded: u32,
        /// What the block holds.
        actual: u32,
    },
    /// A confirmed affinity whose block is missing or affine to another node.
    AffinityMismatch {
        /// The block.
        block: String,
        /// The affinity's node.
        node: String,
        /// The block's affinity (`None`: block missing or unaffine).
        owner: Option<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBlock { block, reason } => write!(f, "block {block} is invalid: {reason}"),
            Self::OverlappingBlocks { block, other } => {
                write!(f, "block {block} overlaps block {other}")
            }
            Self::AllocationWithoutHandle { ip, handle } => {
                write!(
                    f,
                    "ip {ip} is allocated without a handle counting it (attribute handle {handle:?})"
                )
            }
            Self::HandleCountMismatch {
                handle,
                block,
                recorded,
                actual,
            } => write!(
                f,
                "handle {handle} counts {recorded} addresses in block {block}, the block holds {actual}"
            ),
            Self::AffinityMismatch { block, node, owner } => write!(
                f,
                "affinity of node {node} to block {block} is confirmed but the block's affinity is {owner:?}"
            ),
        }
    }
}

/// Every inconsistency in the store's IPAM state.
///
/// # Errors
///
/// The datastore's.
pub fn check(store: &dyn Datastore) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let blocks = store::list::<IPAMBlockSpec>(store)?;
    let handles: BTreeMap<String, IPAMHandleSpec> = store::list::<IPAMHandleSpec>(store)?
        .into_iter()
        .map(|h| (h.object.metadata.name.clone(), h.object.spec))
        .collect();

    let mut nets: Vec<(IpNet, String)> = Vec::new();
    let mut actual: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut owners: BTreeMap<String, Option<String>> = BTreeMap::new();
    for b in &blocks {
        let spec = &b.object.spec;
        let mut v = twill_api::Validator::new();
        spec.validate(&mut v);
        let violations = v.finish();
        if !violations.is_empty() {
            problems.push(Problem::InvalidBlock {
                block: spec.cidr.clone(),
                reason: violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
            continue;
        }
        if spec.deleted {
            continue;
        }
        let net = spec.net();
        nets.push((net, spec.cidr.clone()));
        owners.insert(spec.cidr.clone(), spec.affinity.clone());
        for slot in spec.slots().iter().filter(|s| !s.released()) {
            let ip = ip_at(&net, slot.ordinal);
            match slot.handle() {
                Some(h)
                    if handles
                        .get(h)
                        .is_some_and(|hs| hs.block.contains_key(&spec.cidr)) =>
                {
                    *actual
                        .entry((h.to_string(), spec.cidr.clone()))
                        .or_default() += 1;
                }
                other => problems.push(Problem::AllocationWithoutHandle {
                    ip,
                    handle: other.map(str::to_string),
                }),
            }
        }
    }
    nets.sort();
    for (i, (net, cidr)) in nets.iter().enumerate() {
        for (other, other_cidr) in &nets[i + 1..] {
            if net.contains(&other.network()) || other.contains(&net.network()) {
                problems.push(Problem::OverlappingBlocks {
                    block: cidr.clone(),
                    other: other_cidr.clone(),
                });
            }
        }
    }
    for (name, spec) in &handles {
        for (block, recorded) in &spec.block {
            let real = actual
                .get(&(name.clone(), block.clone()))
                .copied()
                .unwrap_or(0);
            if real != *recorded {
                problems.push(Problem::HandleCountMismatch {
                    handle: name.clone(),
                    block: block.clone(),
                    recorded: *recorded,
                    actual: real,
                });
            }
        }
    }
    for a in affinity::all(store)? {
        let spec = &a.object.spec;
        if spec.state != BlockAffinityState::Confirmed {
            continue;
        }
        let owner = owners.get(&spec.cidr).cloned().flatten();
        if owner.as_deref().and_then(|o| o.strip_prefix("host:")) != Some(spec.node.as_str()) {
            problems.push(Problem::AffinityMismatch {
                block: spec.cidr.clone(),
                node: spec.node.clone(),
                owner,
            });
        }
    }
    Ok(problems)
}

/// Utilisation of one pool, as `calicoctl ipam show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The pool's name.
    pub pool: String,
    /// Its CIDR.
    pub cidr: String,
    /// Addresses in the pool (saturating).
    pub total: u128,
    /// Addresses held (not counting those cooling down).
    pub in_use: u64,
    /// Addresses released and cooling down.
    pub cooling_down: u64,
    /// Addresses reserved by IPReservations inside blocks that exist.
    pub reserved: u64,
    /// Blocks that exist in the pool.
    pub blocks: u64,
    /// The nodes owning blocks, with how many.
    pub nodes: BTreeMap<String, u64>,
}

impl Usage {
    /// Addresses neither held, cooling down nor reserved.
    pub fn free(&self) -> u128 {
        self.total
            .saturating_sub(u128::from(self.in_use + self.cooling_down + self.reserved))
    }
}

/// Utilisation per pool.
///
/// # Errors
///
/// The datastore's.
pub fn usage(store: &dyn Datastore) -> Result<Vec<Usage>> {
    let snapshot = Snapshot::load(store)?;
    let blocks = store::list::<IPAMBlockSpec>(store)?;
    let mut out = Vec::new();
    for pool in snapshot.pools.values().flatten() {
        let mut u = Usage {
            pool: pool.name.clone(),
            cidr: pool.net.to_string(),
            total: 1u128
                .checked_shl(u32::from(pool.net.max_prefix_len() - pool.net.prefix_len()))
                .unwrap_or(u128::MAX),
            in_use: 0,
            cooling_down: 0,
            reserved: 0,
            blocks: 0,
            nodes: BTreeMap::new(),
        };
        let mut seen = BTreeSet::new();
        for b in &blocks {
            let spec = &b.object.spec;
            let Some(net) = spec.network() else { continue };
            if spec.deleted || !pool.net.contains(&net) || !seen.insert(net) {
                continue;
            }
            u.blocks += 1;
            if let Some(node) = spec.host() {
                *u.nodes.entry(node.to_string()).or_default() += 1;
            }
            for slot in spec.slots() {
                if slot.released() {
                    u.cooling_down += 1;
                } else {
                    u.in_use += 1;
                }
            }
            let reserved = snapshot.reserved_in(&net);
            u.reserved += (0..size_of(&net))
                .filter(|o| spec.slot(*o).is_none())
                .filter(|o| reserved.iter().any(|r| r.contains(&ip_at(&net, *o))))
                .count() as u64;
        }
        out.push(u);
    }
    Ok(out)
}
