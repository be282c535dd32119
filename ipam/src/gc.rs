//! Garbage collection of IPAM state, run periodically by one collector
//! per cluster (or per node service for its own node; passes are safe to
//! run concurrently — every write is a compare-and-swap).
//!
//! One pass ([`GarbageCollector::run`]):
//!
//! 1. **Cooldown sweep.** Released addresses whose cooldown has passed go
//!    back to their block's free queue, also in blocks nobody writes
//!    (Calico's "cold IP" backstop).
//! 2. **Leaks.** An address whose owner [`Liveness`] reports gone becomes a
//!    candidate; once it has been a candidate for the grace period it is
//!    released — after asking [`Liveness`] once more, and with the
//!    allocation's sequence number, so an address reused in between is
//!    never freed. An address of a node that no longer exists is released
//!    at once.
//! 3. **Handles.** A handle that counts more than the blocks hold (a writer
//!    died between the handle write and the block write) is corrected once
//!    the difference has lasted for the grace period at the same handle
//!    revision and the handle is not live.
//! 4. **Empty blocks.** A block that stayed empty (same revision) for the
//!    grace period is released, unless it is its node's last block of that
//!    family; empty blocks of deleted nodes are released at once.
//! 5. **Affinities.** Half-done claims and releases are finished or undone:
//!    a `pending` affinity whose block is the node's is confirmed, one whose
//!    block is missing or another node's is removed (after the grace
//!    period, or at once for a deleted node); a `pendingDeletion` affinity
//!    is removed if its block is gone, else confirmed again; a `confirmed`
//!    affinity whose block is gone or another node's is removed after the
//!    grace period.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use twill_api::ipam::{BlockAffinitySpec, BlockAffinityState, IPAMBlockSpec, IPAMHandleSpec};
use twill_store::Revision;

use crate::Ipam;
use crate::affinity;
use crate::block::{BlockExt, ip_at};
use crate::env::{AllocationRef, Liveness};
use crate::error::{IpamError, Result};
use crate::pool::{EffectiveConfig, Family};
use crate::store::{self, Cas, Stored};

/// Collector settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// How long an owner must be seen gone (or a block empty, or a claim
    /// unfinished) before the collector acts. Calico's `leakGracePeriod`
    /// default, 15 minutes.
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(15 * 60),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Cooled-down addresses returned to free queues.
    pub swept: usize,
    /// Addresses whose owner is gone but whose grace period runs.
    pub candidates: usize,
    /// Leaked addresses released.
    pub released: Vec<IpAddr>,
    /// Handles whose counts were corrected (or that were deleted).
    pub handles_repaired: usize,
    /// Empty blocks released.
    pub blocks_released: Vec<String>,
    /// Affinities removed.
    pub affinities_removed: usize,
    /// Affinities confirmed (claims finished, releases undone).
    pub affinities_confirmed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Candidate {
    Leak(IpAddr, u64),
    Handle(String, Revision),
    EmptyBlock(String, Revision),
    Affinity(String, Revision),
}

/// The collector; keeps when it first saw each candidate between passes.
#[derive(Debug, Default)]
pub struct GarbageCollector {
    config: GcConfig,
    first_seen: HashMap<Candidate, SystemTime>,
}

impl GarbageCollector {
    /// A collector with the given settings.
    pub fn new(config: GcConfig) -> Self {
        Self {
            config,
            first_seen: HashMap::new(),
        }
    }

    /// One pass (see the module docs).
    ///
    /// # Errors
    ///
    /// A datastore failure; what was done before it stays done and the
    /// next pass continues.
    pub fn run(&mut self, ipam: &Ipam, liveness: &dyn Liveness) -> Result<GcReport> {
        let mut pass = Pass {
            ipam,
            liveness,
            grace: self.config.grace,
            now: ipam.now(),
            first_seen: &mut self.first_seen,
            seen: HashSet::new(),
            nodes: HashMap::new(),
            report: GcReport::default(),
        };
        let config = EffectiveConfig::load(ipam.store())?;
        pass.sweep(config.cooldown)?;
        pass.leaks()?;
        pass.handles()?;
        pass.empty_blocks()?;
        pass.affinities()?;
        let seen = std::mem::take(&mut pass.seen);
        let report = std::mem::take(&mut pass.report);
        self.first_seen.retain(|k, _| seen.contains(k));
        Ok(report)
    }
}

struct Pass<'a> {
    ipam: &'a Ipam,
    liveness: &'a dyn Liveness,
    grace: Duration,
    now: SystemTime,
    first_seen: &'a mut HashMap<Candidate, SystemTime>,
    seen: HashSet<Candidate>,
    nodes: HashMap<String, bool>,
    report: GcReport,
}

impl Pass<'_> {
    /// Whether `key` has been a candidate for the grace period (recording it).
    fn ripe(&mut self, key: Candidate) -> bool {
        let first = *self.first_seen.entry(key.clone()).or_insert(self.now);
        self.seen.insert(key);
        self.now.duration_since(first).unwrap_or_default() >= self.grace
    }

    fn node_exists(&mut self, node: &str) -> Result<bool> {
        if let Some(known) = self.nodes.get(node) {
            return Ok(*known);
        }
        let exists = self.liveness.node_exists(node)?;
        self.nodes.insert(node.to_string(), exists);
        Ok(exists)
    }

    fn blocks(&self) -> Result<Vec<Stored<IPAMBlockSpec>>> {
        Ok(store::list::<IPAMBlockSpec>(self.ipam.store())?
            .into_iter()
            .filter(|b| !b.object.spec.deleted && b.object.spec.network().is_some())
            .collect())
    }

    fn sweep(&mut self, cooldown: Duration) -> Result<()> {
        for mut b in self.blocks()? {
            let swept = b.object.spec.sweep(self.now, cooldown);
            if swept > 0 {
                b.object.spec.bump();
                if let Cas::Written(_) = store::update(self.ipam.store(), &b)? {
                    self.report.swept += swept;
                }
            }
        }
        Ok(())
    }

    /// The owner's liveness: `Some(false)` when the node is gone.
    fn owner_state(
        &mut self,
        handle: &str,
        ip: IpAddr,
        node: Option<&str>,
    ) -> Result<(bool, bool)> {
        let node_gone = match node {
            Some(n) => !self.node_exists(n)?,
            None => false,
        };
        let live = !node_gone
            && self.liveness.is_live(&AllocationRef {
                handle,
                ip: Some(ip),
                node,
            })?;
        Ok((live, node_gone))
    }

    fn leaks(&mut self) -> Result<()> {
        for b in self.blocks()? {
            let spec = &b.object.spec;
            let net = spec.net();
            for slot in spec.slots().iter().filter(|s| !s.released()) {
                let Some(handle) = slot.handle() else {
                    continue;
                };
                let ip = ip_at(&net, slot.ordinal);
                let node = slot.node(spec);
                let (live, node_gone) = self.owner_state(handle, ip, node)?;
                if live {
                    continue;
                }
                let ripe = self.ripe(Candidate::Leak(ip, slot.sequence));
                if !(ripe || node_gone) {
                    self.report.candidates += 1;
                    continue;
                }
                // Ask again right before releasing: the owner may be back.
                self.nodes.clear();
                if self.owner_state(handle, ip, node)?.0 {
                    continue;
                }
                match self.ipam.release_ip(ip, Some(handle), Some(slot.sequence)) {
                    Ok(Some(_)) => {
                        tracing::info!(%ip, %handle, "released leaked address");
                        self.report.released.push(ip);
                    }
                    Ok(None) => {}
                    Err(IpamError::BadSequenceNumber { .. } | IpamError::WrongHandle { .. }) => {
                        tracing::debug!(%ip, "address was reused since the scan; left alone");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn handles(&mut self) -> Result<()> {
        let mut actual: BTreeMap<(String, String), u32> = BTreeMap::new();
        for b in self.blocks()? {
            for slot in b.object.spec.slots().iter().filter(|s| !s.released()) {
                if let Some(h) = slot.handle() {
                    *actual
                        .entry((h.to_string(), b.object.spec.cidr.clone()))
                        .or_default() += 1;
                }
            }
        }
        for mut h in store::list::<IPAMHandleSpec>(self.ipam.store())? {
            let name = h.object.metadata.name.clone();
            let real: BTreeMap<String, u32> = h
                .object
                .spec
                .block
                .keys()
                .filter_map(|block| {
                    let n = actual.get(&(name.clone(), block.clone())).copied()?;
                    Some((block.clone(), n))
                })
                .collect();
            let fixed: BTreeMap<String, u32> = h
                .object
                .spec
                .block
                .iter()
                .map(|(block, recorded)| {
                    // Only ever lower a count: a higher real count means an
                    // allocation is being written right now.
                    (
                        block.clone(),
                        (*recorded).min(real.get(block).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            if fixed == h.object.spec.block {
                continue;
            }
            if !self.ripe(Candidate::Handle(name.clone(), h.revision)) {
                continue;
            }
            let live = self.liveness.is_live(&AllocationRef {
                handle: &name,
                ip: None,
                node: None,
            })?;
            if live {
                continue;
            }
            let done = if fixed.is_empty() {
                store::delete(self.ipam.store(), &h.key, h.revision)?
            } else {
                h.object.spec.block = fixed;
                match store::update(self.ipam.store(), &h)? {
                    Cas::Written(_) => Cas::Written(()),
                    Cas::Conflict => Cas::Conflict,
                }
            };
            if let Cas::Written(()) = done {
                tracing::info!(handle = %name, "corrected handle counts");
                self.report.handles_repaired += 1;
            }
        }
        Ok(())
    }

    fn empty_blocks(&mut self) -> Result<()> {
        let blocks = self.blocks()?;
        let mut held: HashMap<(String, Family), usize> = HashMap::new();
        for b in &blocks {
            if let Some(node) = b.object.spec.host() {
                *held
                    .entry((node.to_string(), Family::of_net(&b.object.spec.net())))
                    .or_default() += 1;
            }
        }
        for b in &blocks {
            let spec = &b.object.spec;
            if !spec.is_empty() {
                continue;
            }
            let family = Family::of_net(&spec.net());
            let release = match spec.host() {
                Some(node) if !self.node_exists(node)? => true,
                Some(node) => {
                    let others = held.get(&(node.to_string(), family)).copied().unwrap_or(0) > 1;
                    others && self.ripe(Candidate::EmptyBlock(spec.cidr.clone(), b.revision))
                }
                None => self.ripe(Candidate::EmptyBlock(spec.cidr.clone(), b.revision)),
            };
            if release && affinity::release_block(self.ipam.store(), b)? {
                tracing::info!(block = %spec.cidr, node = ?spec.host(), "released empty block");
                if let Some(node) = spec.host()
                    && let Some(n) = held.get_mut(&(node.to_string(), family))
                {
                    *n -= 1;
                }
                self.report.blocks_released.push(spec.cidr.clone());
            }
        }
        Ok(())
    }

    fn affinities(&mut self) -> Result<()> {
        let owners: HashMap<String, Option<String>> = self
            .blocks()?
            .into_iter()
            .map(|b| {
                let s = b.object.spec;
                (s.cidr.clone(), s.host().map(str::to_string))
            })
            .collect();
        for a in store::list::<BlockAffinitySpec>(self.ipam.store())? {
            let spec = &a.object.spec;
            let owner = owners.get(&spec.cidr);
            let mine = owner.is_some_and(|h| h.as_deref() == Some(spec.node.as_str()));
            let node_gone = !self.node_exists(&spec.node)?;
            let key = Candidate::Affinity(a.key.name.clone(), a.revision);
            enum Act {
                Keep,
                Confirm,
                Remove,
            }
            let act = match spec.state {
                _ if spec.is_deleted() => Act::Remove,
                BlockAffinityState::Confirmed if mine => Act::Keep,
                BlockAffinityState::Pending if mine => Act::Confirm,
                BlockAffinityState::PendingDeletion if mine => Act::Confirm,
                BlockAffinityState::PendingDeletion => Act::Remove,
                _ if node_gone || self.ripe(key) => Act::Remove,
                _ => Act::Keep,
            };
            match act {
                Act::Keep => {}
                Act::Confirm => {
                    let mut a = a.clone();
                    a.object.spec.state = BlockAffinityState::Confirmed;
                    if let Cas::Written(_) = store::update(self.ipam.store(), &a)? {
                        self.report.affinities_confirmed += 1;
                    }
                }
                Act::Remove => {
                    if let Cas::Written(()) = store::delete(self.ipam.store(), &a.key, a.revision)?
                    {
                        tracing::info!(affinity = %a.key.name, "removed stale affinity");
                        self.report.affinities_removed += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
