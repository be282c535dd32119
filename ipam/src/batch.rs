//! Serving several requests of one node with one block write.
//!
//! When many pods start at once, the node IPAM service drains its queue and
//! hands the single-address requests to [`Ipam::allocate_many`]: one read of
//! the pools, one handle write per request and one block write for all of
//! them, instead of a block write (and a conflict to retry) per request.

use std::collections::BTreeMap;

use ipnet::IpNet;
use twill_api::ipam::IPAMBlockSpec;

use crate::Ipam;
use crate::allocate::{AllocateRequest, AllocatedIp, check_request};
use crate::block::{BlockExt, ip_at};
use crate::error::{IpamError, Result};
use crate::handle;
use crate::pool::{Family, Pool, PoolFilter, Snapshot, node_labels};
use crate::store::{self, CAS_RETRIES, Cas, Stored, cidr_name};

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
    /// choice share block writes (see the module docs); the others, and
    /// those the node's current blocks cannot hold, go through
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
            if members.len() > 1
                && let Err(e) = self.serve_group(s, members, requests, &mut results)
            {
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
        Ok(())
    }

    /// One address each for as many of `pending` as the block holds: the
    /// handles first, then one compare-and-swap of the block. A request
    /// whose handle was counted when a datastore error struck fails; it is
    /// not retried within the batch, which could count its handle twice.
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
        let mut counted = Vec::new();
        let outcome =
            self.take_many_counted(snapshot, node, net, pool, pending, requests, &mut counted);
        // After a failed write (which may have happened) the counts stay: a
        // count too high is safe, the collector corrects it once the owner
        // is gone; a count too low would not be.
        let reason = match &outcome {
            Ok(_) => "its handle count could not be corrected".to_string(),
            Err(e) => e.to_string(),
        };
        for &i in &counted {
            results[i] = Some(Err(IpamError::BatchFailed {
                handle: requests[i].handle.clone(),
                reason: reason.clone(),
            }));
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)] // As `take_many`.
    fn take_many_counted(
        &self,
        snapshot: &Snapshot,
        node: &str,
        net: IpNet,
        pool: &Pool,
        pending: &[usize],
        requests: &[AllocateRequest],
        counted: &mut Vec<usize>,
    ) -> Result<Vec<(usize, AllocatedIp)>> {
        let name = cidr_name(&net.to_string());
        let cidr = net.to_string();
        let reserved = snapshot.reserved_in(&net);
        let cooldown = snapshot.config.cooldown;
        let usable = |b: &Stored<IPAMBlockSpec>| {
            !b.object.spec.deleted && b.object.spec.host() == Some(node)
        };
        let block = store::get::<IPAMBlockSpec>(self.store(), &name)?;
        let Some(mut block) = block.filter(usable) else {
            self.forget(Some(node), net);
            return Ok(Vec::new());
        };
        let mut probe = block.object.spec.clone();
        probe.sweep(self.now(), cooldown);
        let chosen = &pending[..pending.len().min(probe.free(&reserved))];
        for &i in chosen {
            // Counted even if the write reports failure: it may have happened.
            counted.push(i);
            handle::adjust(self.store(), &requests[i].handle, &cidr, 1)?;
        }
        for _ in 0..CAS_RETRIES {
            let spec = &mut block.object.spec;
            spec.sweep(self.now(), cooldown);
            let mut served = Vec::new();
            for &i in chosen {
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
            if served.is_empty() {
                break;
            }
            spec.bump();
            match store::update(self.store(), &block)? {
                Cas::Written(_) => {
                    let unserved: Vec<usize> = chosen
                        .iter()
                        .copied()
                        .filter(|i| served.iter().all(|(s, _)| s != i))
                        .collect();
                    *counted = self.uncount(&unserved, requests, &cidr);
                    return Ok(served);
                }
                Cas::Conflict => match store::get::<IPAMBlockSpec>(self.store(), &name)? {
                    Some(b) if usable(&b) => block = b,
                    _ => break,
                },
            }
        }
        *counted = self.uncount(chosen, requests, &cidr);
        Ok(Vec::new())
    }

    /// Takes back one count of each request's handle; returns the requests
    /// whose count could not be taken back.
    fn uncount(&self, which: &[usize], requests: &[AllocateRequest], cidr: &str) -> Vec<usize> {
        which
            .iter()
            .copied()
            .filter(|&i| {
                let result = handle::adjust(self.store(), &requests[i].handle, cidr, -1);
                if let Err(e) = &result {
                    tracing::warn!(handle = %requests[i].handle, error = %e, "could not correct a handle count; the collector will");
                }
                result.is_err()
            })
            .collect()
    }
}
