//! Serving several requests of one node with one datastore commit.
//!
//! When many pods start at once, the node IPAM service drains its queue and
//! hands the single-address requests to [`Ipam::allocate_many`]: one read of
//! the pools, then per block one transaction ([`Datastore::txn_text`]: the
//! block encoded once, straight to JSON text, and only revisions back) that
//! writes every request's handle and the block together — one commit (one
//! fsync) for the batch instead of one per handle plus one per block, and
//! no window in which a handle counts an address the block does not hold.
//!
//! [`Datastore::txn_text`]: twill_store::Datastore::txn_text

use std::collections::BTreeMap;

use ipnet::IpNet;
use twill_api::Spec;
use twill_api::ipam::{IPAMBlockSpec, IPAMHandleSpec};
use twill_store::{Error as StoreError, Precondition, TextOp};

use crate::Ipam;
use crate::allocate::{AllocateRequest, AllocatedIp, check_request};
use crate::block::{BlockExt, ip_at};
use crate::error::{IpamError, Result};
use crate::handle;
use crate::pool::{Family, Pool, PoolFilter, Snapshot, node_labels};
use crate::store::{self, CAS_RETRIES, Stored, cidr_name};

/// Requests that may share block writes: one address of one family, from
/// one node, choosing pools the same way.
#[derive(Debug, PartialEq)]
struct Shape<'a> {
    node: &'a str,
    family: Family,
    usage: twill_api::ippool::IPPoolAllowedUse,
    pools: &'a [String],
    namespace_labels: Option<&'a BTreeMap<String, String>>,
    max_blocks_per_host: Option<usize>,
}

fn shape(r: &AllocateRequest) -> Option<Shape<'_>> {
    check_request(&r.handle, &r.node).ok()?;
    let (family, pools) = match (r.ipv4, r.ipv6) {
        (1, 0) => (Family::V4, &r.ipv4_pools),
        (0, 1) => (Family::V6, &r.ipv6_pools),
        _ => return None,
    };
    Some(Shape {
        node: &r.node,
        family,
        usage: r.usage,
        pools,
        namespace_labels: r.namespace_labels.as_ref(),
        max_blocks_per_host: r.max_blocks_per_host,
    })
}

type Results = Vec<Option<Result<Vec<AllocatedIp>>>>;

impl Ipam {
    /// Serves several requests, with the results in request order. Requests
    /// for one address of one family from the same node with the same pool
    /// choice share block writes (see the module docs), in the node's blocks
    /// and in blocks newly claimed for them; the others, and those that
    /// would have to borrow from other nodes' blocks, go through
    /// [`Ipam::allocate`] one by one.
    pub fn allocate_many(&self, requests: &[AllocateRequest]) -> Vec<Result<Vec<AllocatedIp>>> {
        let mut results: Results = requests.iter().map(|_| None).collect();
        let mut groups: Vec<(Shape<'_>, Vec<usize>)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let Some(s) = shape(r) else { continue };
            match groups.iter_mut().find(|(g, _)| *g == s) {
                Some((_, members)) => members.push(i),
                None => groups.push((s, vec![i])),
            }
        }
        for (s, members) in &groups {
            if let Err(e) = self.serve_group(s, members, requests, &mut results) {
                tracing::debug!(error = %e, "batched allocation failed; serving one by one");
            }
        }
        results
            .into_iter()
            .zip(requests)
            .map(|(done, r)| done.unwrap_or_else(|| self.allocate(r)))
            .collect()
    }

    fn serve_group(
        &self,
        s: &Shape<'_>,
        members: &[usize],
        requests: &[AllocateRequest],
        results: &mut Results,
    ) -> Result<()> {
        let snapshot = Snapshot::load(self.store())?;
        let labels = node_labels(self.store(), s.node)?;
        let filter = PoolFilter {
            family: s.family,
            usage: s.usage,
            node: s.node,
            node_labels: &labels,
            namespace_labels: s.namespace_labels,
            requested: s.pools,
        };
        let pools = snapshot.select(&filter)?;
        let mut pending = members.to_vec();
        for (net, pool) in self.affine_blocks(s.node, &pools, false)? {
            if pending.is_empty() {
                break;
            }
            let served =
                self.take_many(&snapshot, s.node, net, pool, &pending, requests, results)?;
            if served.len() < pending.len() {
                self.demote(s.node, net);
            }
            for (i, ip) in served {
                results[i] = Some(Ok(vec![ip]));
                pending.retain(|p| *p != i);
            }
        }
        // The node's blocks are full: claim new ones for the rest, as
        // `allocate` would, up to the node's limit. Borrowing from other
        // nodes' blocks is left to `allocate`, one request at a time.
        let limit = snapshot
            .config
            .max_blocks_per_host
            .min(s.max_blocks_per_host.unwrap_or(usize::MAX));
        while !pending.is_empty() && snapshot.config.auto_allocate_blocks {
            if self.affine_blocks(s.node, &pools, true)?.len() >= limit {
                break;
            }
            let Some((net, pool)) = self.claim_new(&snapshot, s.node, &pools)? else {
                break;
            };
            let served =
                self.take_many(&snapshot, s.node, net, pool, &pending, requests, results)?;
            if served.is_empty() {
                break;
            }
            for (i, ip) in served {
                results[i] = Some(Ok(vec![ip]));
                pending.retain(|p| *p != i);
            }
        }
        Ok(())
    }

    /// One address each for as many of `pending` as the block holds, written
    /// with their handles in one datastore transaction (group commit: one
    /// commit for the whole batch, all of it or nothing). A conflict on the
    /// block or a handle writes nothing, so it is retried with a fresh read.
    /// Any other datastore error leaves it open whether the transaction was
    /// committed: the requests it carried fail and are not retried within
    /// the batch, which could hand a second address to the same handle (if
    /// it was committed, the collector reclaims the addresses once their
    /// owners are gone).
    #[allow(clippy::too_many_arguments)] // One internal call site; a struct would only rename them.
    fn take_many(
        &self,
        snapshot: &Snapshot,
        node: &str,
        net: IpNet,
        pool: &Pool,
        pending: &[usize],
        requests: &[AllocateRequest],
        results: &mut Results,
    ) -> Result<Vec<(usize, AllocatedIp)>> {
        let name = cidr_name(&net.to_string());
        let cidr = net.to_string();
        let reserved = snapshot.reserved_in(&net);
        let cooldown = snapshot.config.cooldown;
        let usable = |b: &Stored<IPAMBlockSpec>| {
            !b.object.spec.deleted && b.object.spec.host() == Some(node)
        };
        // The block as this service last wrote it saves a read and a decode
        // per batch; a stale copy fails the revision precondition below and
        // is read afresh, so it can cost a retry but never a wrong write.
        // A block seen full is skipped while its revision stays the same (no
        // address freed since): a revision check instead of a read and a
        // decode of its body, for every full block, every batch.
        let seen_full = self.full_blocks().get(&name).copied();
        if let Some(revision) = seen_full {
            let key = store::key::<IPAMBlockSpec>(&name);
            if self.store().revision_of(&key)? == Some(revision) {
                return Ok(Vec::new());
            }
            self.full_blocks().remove(&name);
        }
        let cached = self.block_cache().remove(&name);
        // Whether `block` is known to be the stored revision (not a copy
        // that another writer may have changed since).
        let mut current = cached.is_none();
        let block = match cached {
            Some(b) => Some(b),
            None => {
                tracing::trace!(block = %name, "batch reads a block");
                store::get::<IPAMBlockSpec>(self.store(), &name)?
            }
        };
        let Some(mut block) = block.filter(usable) else {
            self.forget(Some(node), net);
            return Ok(Vec::new());
        };
        // What each handle held when last read; a handle not read yet is
        // assumed absent (the common case: one new handle per pod).
        let mut handles: BTreeMap<&str, Option<Stored<IPAMHandleSpec>>> = BTreeMap::new();
        for _ in 0..CAS_RETRIES {
            // A block with no free address and none cooling down cannot
            // serve: not worth a copy.
            let spec = &block.object.spec;
            let room = spec.free(&reserved) > 0 || spec.slots().iter().any(|s| s.released());
            let mut next = room.then(|| block.clone());
            let mut served = Vec::new();
            if let Some(spec) = next.as_mut().map(|n| &mut n.object.spec) {
                spec.sweep(self.now(), cooldown);
            }
            for &i in pending {
                let Some(spec) = next.as_mut().map(|n| &mut n.object.spec) else {
                    break;
                };
                let r = &requests[i];
                let mut secondary = r.attributes.clone();
                secondary.insert("node".into(), node.to_string());
                match spec.take(1, &r.handle, &secondary, &reserved).first() {
                    Some(&(ordinal, sequence)) => served.push((
                        i,
                        AllocatedIp {
                            ip: ip_at(&net, ordinal),
                            pool: pool.name.clone(),
                            block: cidr.clone(),
                            sequence,
                            borrowed: false,
                        },
                    )),
                    None => break,
                }
            }
            let Some(mut next) = next.filter(|_| !served.is_empty()) else {
                // A full block is remembered by its revision only (its body
                // would cost memory for every full block of the node), once
                // that revision is known to be the stored one.
                if !current && self.store().revision_of(&block.key)? != Some(block.revision) {
                    match store::get::<IPAMBlockSpec>(self.store(), &name)? {
                        Some(b) if usable(&b) => {
                            block = b;
                            current = true;
                            continue;
                        }
                        _ => {
                            self.forget(Some(node), net);
                            return Ok(Vec::new());
                        }
                    }
                }
                if !room {
                    self.full_blocks().insert(name, block.revision);
                }
                return Ok(Vec::new());
            };
            next.object.spec.bump();
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for (i, _) in &served {
                *counts.entry(requests[*i].handle.as_str()).or_default() += 1;
            }
            let mut ops = Vec::with_capacity(counts.len() + 1);
            for (&handle, &count) in &counts {
                let known = handles.get(handle).and_then(Option::as_ref);
                ops.push(TextOp::from_op(&handle::count_op(
                    handle, known, &cidr, count,
                )?));
            }
            ops.push(TextOp::Update {
                key: next.key.clone(),
                body: store::encode_text(&next.object)?,
                precondition: Precondition::Revision(next.revision),
            });
            match self.store().txn_text(&ops) {
                Ok(written) => {
                    if let Some(&revision) = written.last() {
                        next.revision = revision;
                        self.block_cache().insert(name, next);
                    }
                    return Ok(served);
                }
                Err(
                    StoreError::Conflict { key, .. }
                    | StoreError::NotFound { key }
                    | StoreError::AlreadyExists { key },
                ) if key == next.key => match store::get::<IPAMBlockSpec>(self.store(), &name)? {
                    Some(b) if usable(&b) => {
                        block = b;
                        current = true;
                    }
                    _ => {
                        self.forget(Some(node), net);
                        return Ok(Vec::new());
                    }
                },
                Err(
                    StoreError::Conflict { key, .. }
                    | StoreError::NotFound { key }
                    | StoreError::AlreadyExists { key },
                ) if key.kind == IPAMHandleSpec::STORE_KIND
                    && counts.contains_key(key.name.as_str()) =>
                {
                    let (&handle, _) = counts
                        .get_key_value(key.name.as_str())
                        .expect("checked by the guard");
                    let current = store::get::<IPAMHandleSpec>(self.store(), handle)?;
                    handles.insert(handle, current);
                }
                Err(e) => {
                    for (i, _) in &served {
                        results[*i] = Some(Err(IpamError::BatchFailed {
                            handle: requests[*i].handle.clone(),
                            reason: e.to_string(),
                        }));
                    }
                    return Err(e.into());
                }
            }
        }
        Err(store::too_many_conflicts(block.key))
    }
}
