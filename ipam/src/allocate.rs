//! Allocation: automatic (from the node's blocks, a newly claimed block, or
//! a borrowed one) and of a specific address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use twill_api::ipam::{BlockAffinityState, IPAMBlockSpec};
use twill_api::ippool::IPPoolAllowedUse;

use crate::Ipam;
use crate::affinity::{self, Claim};
use crate::block::{BlockExt, SlotError, ordinal_of};
use crate::error::{IpamError, Result};
use crate::handle;
use crate::pool::{Family, Pool, PoolFilter, Snapshot, node_labels};
use crate::store::{self, CAS_RETRIES, Cas, cidr_name};

/// A request for automatically chosen addresses (Calico's `AutoAssignArgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllocateRequest {
    /// The handle the addresses are held under, e.g. `k8s-pod-network.<containerID>`.
    pub handle: String,
    /// The node the addresses are for.
    pub node: String,
    /// How many IPv4 addresses.
    #[serde(default)]
    pub ipv4: u32,
    /// How many IPv6 addresses.
    #[serde(default)]
    pub ipv6: u32,
    /// What the addresses are for (default `Workload`).
    #[serde(default = "workload")]
    pub usage: IPPoolAllowedUse,
    /// IPv4 pools to use, by name or CIDR (Calico's `ipv4_pools` / pod
    /// annotation); empty: every matching automatic pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4_pools: Vec<String>,
    /// IPv6 pools to use, as `ipv4_pools`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_pools: Vec<String>,
    /// The labels of the pod's namespace, for pools' namespaceSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Metadata kept with each address (`pod`, `namespace`, ...); `node`
    /// is added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// A lower per-request block limit than the configuration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<usize>,
}

fn workload() -> IPPoolAllowedUse {
    IPPoolAllowedUse::Workload
}

impl AllocateRequest {
    /// A request for one IPv4 workload address.
    pub fn ipv4(handle: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            handle: handle.into(),
            node: node.into(),
            ipv4: 1,
            ipv6: 0,
            usage: IPPoolAllowedUse::Workload,
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            namespace_labels: None,
            attributes: BTreeMap::new(),
            max_blocks_per_host: None,
        }
    }
}

/// A request for one given address (Calico's `AssignIPArgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssignIpRequest {
    /// The address.
    pub ip: IpAddr,
    /// The handle it is held under.
    pub handle: String,
    /// The node it is for.
    pub node: String,
    /// What it is for (default `Workload`).
    #[serde(default = "workload")]
    pub usage: IPPoolAllowedUse,
    /// Metadata kept with the address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocatedIp {
    /// The address.
    pub ip: IpAddr,
    /// The pool it came from.
    pub pool: String,
    /// The block's CIDR.
    pub block: String,
    /// The sequence number to give back with a release of this allocation.
    pub sequence: u64,
    /// Whether it came from a block affine to another node (or none).
    pub borrowed: bool,
}

pub(crate) fn check_request(handle: &str, node: &str) -> Result<()> {
    let bad = |s: &str| s.is_empty() || s.contains(['/', '\0']);
    if bad(handle) {
        return Err(IpamError::InvalidRequest {
            field: "handle",
            reason: format!("{handle:?} is empty or contains '/' or NUL"),
        });
    }
    if bad(node) {
        return Err(IpamError::InvalidRequest {
            field: "node",
            reason: format!("{node:?} is empty or contains '/' or NUL"),
        });
    }
    Ok(())
}

/// A stable per-node starting point, so that one node tries the same
/// blocks in the same order and nodes spread over a pool.
fn node_hash(node: &str) -> u128 {
    u128::from(node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

impl Ipam {
    /// Hands out `ipv4` IPv4 and `ipv6` IPv6 addresses. All or nothing: when
    /// one family fails, the addresses of the other are released again.
    ///
    /// # Errors
    ///
    /// A refusal ([`IpamError::is_refusal`]) with nothing written, or a
    /// datastore failure.
    pub fn allocate(&self, request: &AllocateRequest) -> Result<Vec<AllocatedIp>> {
        check_request(&request.handle, &request.node)?;
        if request.ipv4 == 0 && request.ipv6 == 0 {
            return Err(IpamError::InvalidRequest {
                field: "ipv4",
                reason: "asks for no address in either family".into(),
            });
        }
        let snapshot = Snapshot::load(self.store())?;
        let labels = node_labels(self.store(), &request.node)?;
        let mut wanted = Vec::new();
        for (family, count, requested) in [
            (Family::V4, request.ipv4, &request.ipv4_pools),
            (Family::V6, request.ipv6, &request.ipv6_pools),
        ] {
            if count == 0 {
                continue;
            }
            let filter = PoolFilter {
                family,
                usage: request.usage,
                node: &request.node,
                node_labels: &labels,
                namespace_labels: request.namespace_labels.as_ref(),
                requested,
            };
            // Select both families' pools before writing anything.
            wanted.push((family, count, snapshot.select(&filter)?));
        }
        let mut got: Vec<AllocatedIp> = Vec::new();
        for (family, count, pools) in wanted {
            match self.allocate_family(&snapshot, request, family, count as usize, &pools) {
                Ok(ips) => got.extend(ips),
                Err(e) => {
                    self.undo(&request.handle, &got);
                    return Err(e);
                }
            }
        }
        Ok(got)
    }

    fn undo(&self, handle: &str, got: &[AllocatedIp]) {
        for ip in got {
            if let Err(e) = self.release_ip(ip.ip, Some(handle), Some(ip.sequence)) {
                tracing::warn!(ip = %ip.ip, error = %e, "could not undo a partial allocation; the collector will");
            }
        }
    }

    fn allocate_family(
        &self,
        snapshot: &Snapshot,
        request: &AllocateRequest,
        family: Family,
        count: usize,
        pools: &[&Pool],
    ) -> Result<Vec<AllocatedIp>> {
        let node = request.node.as_str();
        let mut secondary = request.attributes.clone();
        secondary.insert("node".into(), node.to_string());
        let mut got = Vec::new();
        let take = |got: &mut Vec<AllocatedIp>, net: IpNet, pool: &Pool, host| {
            let want = count - got.len();
            let ips =
                self.take_from(snapshot, net, pool, want, &request.handle, &secondary, host)?;
            got.extend(ips);
            Ok::<_, IpamError>(got.len() == count)
        };

        // 1. The node's own blocks.
        for (net, pool) in self.affine_blocks(node, pools, false)? {
            if take(&mut got, net, pool, Some(node))? {
                return Ok(got);
            }
            self.demote(node, net);
        }

        // 2. A new block.
        let limit = snapshot
            .config
            .max_blocks_per_host
            .min(request.max_blocks_per_host.unwrap_or(usize::MAX));
        let mut held = 0;
        if snapshot.config.auto_allocate_blocks {
            loop {
                held = self.affine_blocks(node, pools, true)?.len();
                if held >= limit {
                    break;
                }
                let Some((net, pool)) = self.claim_new(snapshot, node, pools)? else {
                    break;
                };
                if take(&mut got, net, pool, Some(node))? {
                    return Ok(got);
                }
            }
        }

        // 3. Borrow from other nodes' blocks.
        if !snapshot.config.strict_affinity {
            let blocks = store::list::<IPAMBlockSpec>(self.store())?;
            for pool in pools {
                for block in &blocks {
                    let spec = &block.object.spec;
                    let Some(net) = spec.network() else { continue };
                    if spec.deleted || spec.host() == Some(node) || !pool.net.contains(&net) {
                        continue;
                    }
                    let mut probe = spec.clone();
                    probe.sweep(self.now(), snapshot.config.cooldown);
                    if probe.free(&snapshot.reserved_in(&net)) > 0
                        && take(&mut got, net, pool, None)?
                    {
                        return Ok(got);
                    }
                }
            }
        }

        self.undo(&request.handle, &got);
        let names = pools
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        if held >= limit {
            return Err(IpamError::BlockLimit {
                node: node.to_string(),
                held,
                limit,
            });
        }
        Err(IpamError::Exhausted {
            family: family.name(),
            pools: names,
            node: node.to_string(),
            detail: if snapshot.config.strict_affinity {
                "no free block to claim and strictAffinity forbids borrowing".into()
            } else {
                "no free block to claim and no free address in any block".into()
            },
        })
    }

    /// The node's confirmed blocks in `pools`, from the cache unless
    /// `fresh`, those last seen with room first. The cache is only a hint:
    /// every block is re-read and its affinity checked before use.
    pub(crate) fn affine_blocks<'p>(
        &self,
        node: &str,
        pools: &[&'p Pool],
        fresh: bool,
    ) -> Result<Vec<(IpNet, &'p Pool)>> {
        let cached = if fresh {
            None
        } else {
            self.affine_cache().get(node).cloned()
        };
        let order = match cached {
            Some(order) => order,
            None => {
                let cidrs: BTreeSet<IpNet> = affinity::all(self.store())?
                    .into_iter()
                    .filter(|a| {
                        a.object.spec.node == node
                            && a.object.spec.state == BlockAffinityState::Confirmed
                    })
                    .filter_map(|a| a.object.spec.cidr.parse().ok())
                    .collect();
                let mut cache = self.affine_cache();
                let previous = cache.get(node).cloned().unwrap_or_default();
                // Blocks not seen before are likely the emptiest: first.
                let mut order: Vec<IpNet> = cidrs
                    .iter()
                    .filter(|c| !previous.contains(c))
                    .copied()
                    .collect();
                order.extend(previous.into_iter().filter(|c| cidrs.contains(c)));
                cache.insert(node.to_string(), order.clone());
                order
            }
        };
        Ok(order
            .into_iter()
            .filter_map(|net| {
                pools
                    .iter()
                    .find(|p| p.net.contains(&net))
                    .map(|p| (net, *p))
            })
            .collect())
    }

    /// Moves a block that had no more room to the back of the node's order.
    pub(crate) fn demote(&self, node: &str, net: IpNet) {
        if let Some(order) = self.affine_cache().get_mut(node)
            && let Some(i) = order.iter().position(|n| *n == net)
        {
            order.remove(i);
            order.push(net);
        }
    }

    /// Claims a free block in the first pool that has one.
    pub(crate) fn claim_new<'p>(
        &self,
        snapshot: &Snapshot,
        node: &str,
        pools: &[&'p Pool],
    ) -> Result<Option<(IpNet, &'p Pool)>> {
        // Affinities are small documents, blocks are not: learn which
        // blocks are taken from the affinities. A block without one (its
        // node's affinity was removed) is found by the claim itself, whose
        // block create-if-absent refuses it.
        let mut existing: BTreeSet<IpNet> = affinity::all(self.store())?
            .into_iter()
            .filter_map(|a| a.object.spec.cidr.parse().ok())
            .collect();
        for pool in pools {
            let count = pool.block_count();
            let start = node_hash(node) % count;
            let in_pool = existing.iter().filter(|b| pool.net.contains(*b)).count();
            // Enough candidates to get past every existing block, plus a
            // margin for fully reserved ones.
            let budget = (in_pool as u128 + 4096).min(count);
            for i in 0..budget {
                let net = pool.block_at((start + i) % count);
                if existing.contains(&net) || snapshot.fully_reserved(&net) {
                    continue;
                }
                match affinity::claim(self.store(), node, net, self.now())? {
                    Claim::Claimed(_) => {
                        let mut cache = self.affine_cache();
                        let order = cache.entry(node.to_string()).or_default();
                        order.retain(|n| *n != net);
                        order.insert(0, net);
                        tracing::info!(%node, block = %net, pool = %pool.name, "claimed block");
                        return Ok(Some((net, *pool)));
                    }
                    Claim::Taken(_) => {
                        existing.insert(net);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Takes up to `want` addresses from one block: handle first, then the
    /// block with compare-and-swap. `host`: the node the block must be
    /// affine to (`None`: borrowing).
    #[allow(clippy::too_many_arguments)] // One internal call site; a struct would only rename them.
    fn take_from(
        &self,
        snapshot: &Snapshot,
        net: IpNet,
        pool: &Pool,
        want: usize,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        host: Option<&str>,
    ) -> Result<Vec<AllocatedIp>> {
        let name = cidr_name(&net.to_string());
        let reserved = snapshot.reserved_in(&net);
        let cooldown = snapshot.config.cooldown;
        let usable = |b: &store::Stored<IPAMBlockSpec>| {
            !b.object.spec.deleted
                && match host {
                    Some(node) => b.object.spec.host() == Some(node),
                    None => true,
                }
        };
        let Some(mut block) = store::get::<IPAMBlockSpec>(self.store(), &name)? else {
            self.forget(host, net);
            return Ok(Vec::new());
        };
        if !usable(&block) {
            self.forget(host, net);
            return Ok(Vec::new());
        }
        let mut probe = block.object.spec.clone();
        probe.sweep(self.now(), cooldown);
        let n = want.min(probe.free(&reserved));
        if n == 0 {
            return Ok(Vec::new());
        }
        let block_cidr = net.to_string();
        handle::adjust(self.store(), handle, &block_cidr, n as i64)?;
        for _ in 0..CAS_RETRIES {
            let spec = &mut block.object.spec;
            spec.sweep(self.now(), cooldown);
            let taken = spec.take(n, handle, secondary, &reserved);
            if taken.is_empty() {
                break;
            }
            spec.bump();
            match store::update(self.store(), &block)? {
                Cas::Written(_) => {
                    if taken.len() < n {
                        handle::adjust(
                            self.store(),
                            handle,
                            &block_cidr,
                            -((n - taken.len()) as i64),
                        )?;
                    }
                    return Ok(taken
                        .into_iter()
                        .map(|(ordinal, sequence)| AllocatedIp {
                            ip: crate::block::ip_at(&net, ordinal),
                            pool: pool.name.clone(),
                            block: block_cidr.clone(),
                            sequence,
                            borrowed: host.is_none(),
                        })
                        .collect());
                }
                Cas::Conflict => match store::get::<IPAMBlockSpec>(self.store(), &name)? {
                    Some(b) if usable(&b) => block = b,
                    _ => break,
                },
            }
        }
        handle::adjust(self.store(), handle, &block_cidr, -(n as i64))?;
        Ok(Vec::new())
    }

    pub(crate) fn forget(&self, host: Option<&str>, net: IpNet) {
        if let Some(node) = host
            && let Some(order) = self.affine_cache().get_mut(node)
        {
            order.retain(|n| *n != net);
        }
    }

    /// Hands out one given address (Calico's `AssignIP`), claiming its
    /// block for the node when the block does not exist yet.
    ///
    /// # Errors
    ///
    /// [`IpamError::OutsidePools`], [`IpamError::Reserved`],
    /// [`IpamError::InUse`], [`IpamError::CoolingDown`],
    /// [`IpamError::AffineToOtherNode`], a pool that cannot serve it — all
    /// with nothing written — or a datastore failure.
    pub fn assign_ip(&self, request: &AssignIpRequest) -> Result<AllocatedIp> {
        check_request(&request.handle, &request.node)?;
        let ip = request.ip;
        let snapshot = Snapshot::load(self.store())?;
        let pool = snapshot.pool_of(ip)?;
        if pool.spec.disabled {
            return Err(IpamError::PoolNotUsable {
                pool: pool.name.clone(),
                reason: "the pool is disabled".into(),
            });
        }
        if !pool.spec.effective_allowed_uses().contains(&request.usage) {
            return Err(IpamError::PoolNotUsable {
                pool: pool.name.clone(),
                reason: format!("allowedUses does not include {:?}", request.usage),
            });
        }
        if let Some(reservation) = snapshot.reservation_of(ip) {
            return Err(IpamError::Reserved {
                ip,
                reservation: reservation.to_string(),
            });
        }
        let net = pool.block_of(ip);
        let name = cidr_name(&net.to_string());
        let ordinal = ordinal_of(&net, ip).expect("the block holds the address");
        let mut secondary = request.attributes.clone();
        secondary.insert("node".into(), request.node.clone());
        let cooldown = snapshot.config.cooldown;
        let mut counted = false;
        let result = (|| {
            for _ in 0..CAS_RETRIES {
                let Some(mut block) = store::get::<IPAMBlockSpec>(self.store(), &name)? else {
                    affinity::claim(self.store(), &request.node, net, self.now())?;
                    continue;
                };
                let spec = &mut block.object.spec;
                if let Some(owner) = spec.host()
                    && owner != request.node
                    && snapshot.config.strict_affinity
                {
                    return Err(IpamError::AffineToOtherNode {
                        block: spec.cidr.clone(),
                        owner: owner.to_string(),
                        node: request.node.clone(),
                    });
                }
                let borrowed = spec.host() != Some(request.node.as_str());
                spec.sweep(self.now(), cooldown);
                let sequence = spec
                    .take_ordinal(ordinal, &request.handle, &secondary)
                    .map_err(|e| match e {
                        SlotError::CoolingDown(at) => IpamError::CoolingDown {
                            ip,
                            released_at: at,
                        },
                        SlotError::InUse(handle) => IpamError::InUse { ip, handle },
                        other => IpamError::InvalidRequest {
                            field: "ip",
                            reason: format!("{ip}: {other:?}"),
                        },
                    })?;
                spec.bump();
                if !counted {
                    handle::adjust(self.store(), &request.handle, &spec.cidr, 1)?;
                    counted = true;
                }
                if let Cas::Written(_) = store::update(self.store(), &block)? {
                    return Ok(AllocatedIp {
                        ip,
                        pool: pool.name.clone(),
                        block: net.to_string(),
                        sequence,
                        borrowed,
                    });
                }
            }
            Err(store::too_many_conflicts(store::key::<IPAMBlockSpec>(
                &name,
            )))
        })();
        if result.is_err() && counted {
            handle::adjust(self.store(), &request.handle, &net.to_string(), -1)?;
        }
        result
    }
}
