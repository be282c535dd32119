//! Pools, reservations and configuration as one allocation sees them: read
//! once per operation, checked before anything is written.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use twill_api::ippool::{
    AssignmentMode, IPAM_CONFIGURATION_NAME, IPAMConfigurationSpec, IPPoolAllowedUse, IPPoolSpec,
    IPReservationSpec,
};
use twill_api::node::NodeSpec;
use twill_selector::Selector;
use twill_store::Datastore;

use crate::error::{IpamError, Result};
use crate::store;

/// Twill's default `ipCooldownSeconds` when the IPAMConfiguration sets none.
///
/// Calico's default is 0: a released address can go to the next pod at once,
/// while routes, conntrack entries and policy for the old pod may still be in
/// flight on other nodes (projectcalico/calico#6968). Thirty seconds covers
/// route and policy convergence and kubelet's endpoint propagation with a
/// margin, and costs little: with FIFO reuse an address only comes back after
/// the rest of the block's free addresses have been handed out anyway.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Calico's safeguard when `maxBlocksPerHost` is 0 or unset.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: usize = 20;

/// The IPAMConfiguration with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveConfig {
    /// Never borrow from other nodes' blocks.
    pub strict_affinity: bool,
    /// Blocks one node may hold per address family.
    pub max_blocks_per_host: usize,
    /// Claim new blocks when the node's blocks are full.
    pub auto_allocate_blocks: bool,
    /// How long a released address waits before it is handed out again.
    pub cooldown: Duration,
}

impl Default for EffectiveConfig {
    fn default() -> Self {
        Self::from_spec(&IPAMConfigurationSpec::default())
    }
}

impl EffectiveConfig {
    /// Applies Twill's defaults to a spec.
    pub fn from_spec(spec: &IPAMConfigurationSpec) -> Self {
        let max = spec.max_blocks_per_host.unwrap_or(0);
        Self {
            strict_affinity: spec.strict_affinity,
            max_blocks_per_host: if max <= 0 {
                DEFAULT_MAX_BLOCKS_PER_HOST
            } else {
                usize::try_from(max).unwrap_or(DEFAULT_MAX_BLOCKS_PER_HOST)
            },
            auto_allocate_blocks: spec.auto_allocate_blocks,
            cooldown: spec.ip_cooldown_seconds.map_or(DEFAULT_COOLDOWN, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            }),
        }
    }

    /// Reads the `default` IPAMConfiguration (defaults when there is none).
    ///
    /// # Errors
    ///
    /// The datastore's, or [`IpamError::InvalidConfig`] for settings the
    /// allocator cannot honour.
    pub fn load(store: &dyn Datastore) -> Result<Self> {
        let spec = store::get::<IPAMConfigurationSpec>(store, IPAM_CONFIGURATION_NAME)?
            .map(|s| s.object.spec)
            .unwrap_or_default();
        if !spec.strict_affinity && !spec.auto_allocate_blocks {
            return Err(IpamError::InvalidConfig {
                field: "spec.autoAllocateBlocks",
                reason: "strictAffinity and autoAllocateBlocks cannot both be false".into(),
            });
        }
        if let Some(s) = spec.ip_cooldown_seconds
            && !(0..=1200).contains(&s)
        {
            return Err(IpamError::InvalidConfig {
                field: "spec.ipCooldownSeconds",
                reason: format!("{s} is out of range 0 to 1200"),
            });
        }
        Ok(Self::from_spec(&spec))
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }

    /// The family of an address.
    pub fn of_ip(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// `IPv4` or `IPv6`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// One IP pool, parsed and checked.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// Its network.
    pub net: IpNet,
    /// Its blocks' prefix length.
    pub block_prefix: u8,
    /// The spec as stored.
    pub spec: IPPoolSpec,
    node_selector: Selector,
    namespace_selector: Option<Selector>,
}

impl Pool {
    /// Parses and checks a pool: a masked CIDR and a block size that fits in
    /// it and in the family's range.
    ///
    /// # Errors
    ///
    /// [`IpamError::InvalidPool`] naming the field.
    pub fn parse(name: &str, spec: &IPPoolSpec) -> Result<Self> {
        let invalid = |field, reason: String| IpamError::InvalidPool {
            pool: name.to_string(),
            field,
            reason,
        };
        let net: IpNet = spec
            .cidr
            .parse()
            .map_err(|_| invalid("spec.cidr", format!("{:?} is not a CIDR", spec.cidr)))?;
        if net.trunc() != net {
            return Err(invalid(
                "spec.cidr",
                format!("{net} is not masked (did you mean {}?)", net.trunc()),
            ));
        }
        let size = spec
            .effective_block_size()
            .expect("a pool whose CIDR parses has a block size");
        let (min, max) = match net {
            IpNet::V4(_) => (20, 32),
            IpNet::V6(_) => (116, 128),
        };
        if !(min..=max).contains(&size) {
            return Err(invalid(
                "spec.blockSize",
                format!("block size {size} is out of range {min} to {max} for {net}"),
            ));
        }
        let block_prefix = u8::try_from(size).expect("checked to be in range");
        if net.prefix_len() > block_prefix {
            return Err(invalid(
                "spec.blockSize",
                format!("a /{size} block does not fit in {net}"),
            ));
        }
        let parse_selector = |field, text: &str| {
            Selector::parse(text).map_err(|e| invalid(field, format!("{text:?}: {e}")))
        };
        let node_selector = match spec.node_selector.as_deref() {
            None | Some("") => Selector::all(),
            Some(text) => parse_selector("spec.nodeSelector", text)?,
        };
        let namespace_selector = match spec.namespace_selector.as_deref() {
            None | Some("") => None,
            Some(text) => Some(parse_selector("spec.namespaceSelector", text)?),
        };
        Ok(Self {
            name: name.to_string(),
            net,
            block_prefix,
            spec: spec.clone(),
            node_selector,
            namespace_selector,
        })
    }

    /// The pool's family.
    pub fn family(&self) -> Family {
        Family::of_net(&self.net)
    }

    /// How many blocks the pool has (saturating).
    pub fn block_count(&self) -> u128 {
        let bits = u32::from(self.block_prefix - self.net.prefix_len());
        1u128.checked_shl(bits).unwrap_or(u128::MAX)
    }

    /// The `index`-th block of the pool.
    pub fn block_at(&self, index: u128) -> IpNet {
        let host_bits = u32::from(self.net.max_prefix_len() - self.block_prefix);
        let offset = index << host_bits;
        match self.net {
            IpNet::V4(n) => {
                let base = u32::from(n.network());
                let addr = base.wrapping_add(u32::try_from(offset).unwrap_or(0));
                IpNet::new(IpAddr::V4(addr.into()), self.block_prefix)
            }
            IpNet::V6(n) => {
                let base = u128::from(n.network());
                IpNet::new(
                    IpAddr::V6(base.wrapping_add(offset).into()),
                    self.block_prefix,
                )
            }
        }
        .expect("the block prefix is within the family's range")
    }

    /// The block of this pool that holds `ip`.
    pub fn block_of(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.block_prefix)
            .expect("the block prefix is within the family's range")
            .trunc()
    }

    fn serves(&self, usage: IPPoolAllowedUse) -> bool {
        self.spec.effective_allowed_uses().contains(&usage)
    }
}

/// The pools, reservations and configuration of one operation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The configuration.
    pub config: EffectiveConfig,
    /// Every pool, by name, with its parse result (an unusable pool only
    /// fails the requests that would use it).
    pub pools: BTreeMap<String, std::result::Result<Pool, PoolProblem>>,
    /// Reserved networks and the reservation naming each.
    pub reservations: Vec<(IpNet, String)>,
}

/// Why a pool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolProblem {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
    /// The pool's family, when its CIDR parses.
    pub family: Option<Family>,
}

impl PoolProblem {
    fn error(&self, pool: &str) -> IpamError {
        IpamError::InvalidPool {
            pool: pool.to_string(),
            field: self.field,
            reason: self.reason.clone(),
        }
    }
}

/// How a request narrows the pools.
#[derive(Debug, Clone, Copy)]
pub struct PoolFilter<'a> {
    /// The family wanted.
    pub family: Family,
    /// What the address is for.
    pub usage: IPPoolAllowedUse,
    /// The requesting node.
    pub node: &'a str,
    /// The node's labels.
    pub node_labels: &'a BTreeMap<String, String>,
    /// The pod namespace's labels, when known (a pool's namespaceSelector is
    /// matched only then).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Pools the request names (by name or CIDR); empty: any automatic pool.
    pub requested: &'a [String],
}

impl Snapshot {
    /// Reads configuration, pools and reservations.
    ///
    /// # Errors
    ///
    /// The datastore's, or an invalid configuration.
    pub fn load(store: &dyn Datastore) -> Result<Self> {
        let config = EffectiveConfig::load(store)?;
        let pools = store::list::<IPPoolSpec>(store)?
            .into_iter()
            .filter(|p| p.object.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let name = p.object.metadata.name.clone();
                let pool = Pool::parse(&name, &p.object.spec).map_err(|e| match e {
                    IpamError::InvalidPool { field, reason, .. } => PoolProblem {
                        field,
                        reason,
                        family: p.object.spec.network().map(|n| Family::of_net(&n)),
                    },
                    other => PoolProblem {
                        field: "spec",
                        reason: other.to_string(),
                        family: None,
                    },
                });
                (name, pool)
            })
            .collect();
        let mut reservations = Vec::new();
        for r in store::list::<IPReservationSpec>(store)? {
            for text in &r.object.spec.reserved_cidrs {
                let net = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| IpamError::Corrupt {
                        key: r.key.clone(),
                        reason: format!("reservedCIDRs entry {text:?} is not a CIDR"),
                    })?;
                reservations.push((net.trunc(), r.object.metadata.name.clone()));
            }
        }
        Ok(Self {
            config,
            pools,
            reservations,
        })
    }

    /// The reservation covering `ip`, if any.
    pub fn reservation_of(&self, ip: IpAddr) -> Option<&str> {
        self.reservations
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, name)| name.as_str())
    }

    /// Whether every address of `block` is reserved.
    pub fn fully_reserved(&self, block: &IpNet) -> bool {
        self.reservations.iter().any(|(net, _)| net.contains(block))
    }

    /// Reserved networks overlapping `block`.
    pub fn reserved_in(&self, block: &IpNet) -> Vec<IpNet> {
        self.reservations
            .iter()
            .filter(|(net, _)| net.contains(block) || block.contains(net))
            .map(|(net, _)| *net)
            .collect()
    }

    /// The pool holding `ip`, checked for overlaps.
    ///
    /// # Errors
    ///
    /// [`IpamError::OutsidePools`], or the pool's own problem.
    pub fn pool_of(&self, ip: IpAddr) -> Result<&Pool> {
        for (name, pool) in &self.pools {
            match pool {
                Ok(pool) if pool.net.contains(&ip) => {
                    self.check_overlaps(pool)?;
                    return Ok(pool);
                }
                Ok(_) => {}
                Err(problem) => {
                    if let Some(net) = self.pool_cidr(name)
                        && net.contains(&ip)
                    {
                        return Err(problem.error(name));
                    }
                }
            }
        }
        Err(IpamError::OutsidePools { ip })
    }

    fn pool_cidr(&self, name: &str) -> Option<IpNet> {
        match self.pools.get(name)? {
            Ok(pool) => Some(pool.net),
            Err(_) => None,
        }
    }

    /// Refuses a pool that overlaps any other pool.
    ///
    /// # Errors
    ///
    /// [`IpamError::OverlappingPools`].
    pub fn check_overlaps(&self, pool: &Pool) -> Result<()> {
        for other in self.pools.values().flatten() {
            if other.name != pool.name
                && (other.net.contains(&pool.net.network())
                    || pool.net.contains(&other.net.network()))
            {
                return Err(IpamError::OverlappingPools {
                    pool: pool.name.clone(),
                    cidr: pool.net.to_string(),
                    other: other.name.clone(),
                    other_cidr: other.net.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The pools a request may allocate from, in order: the named ones in
    /// the order named, else every automatic pool that matches, by name.
    ///
    /// # Errors
    ///
    /// A named pool that does not exist or cannot serve the request, an
    /// invalid or overlapping pool that would be used, or
    /// [`IpamError::NoPool`] when none is left.
    pub fn select(&self, filter: &PoolFilter<'_>) -> Result<Vec<&Pool>> {
        let mut chosen = Vec::new();
        let mut broken = None;
        if filter.requested.is_empty() {
            for (name, pool) in &self.pools {
                let pool = match pool {
                    Ok(pool) => pool,
                    Err(problem) => {
                        tracing::warn!(pool = %name, reason = %problem.reason, "skipping unusable ip pool");
                        if problem.family.is_none_or(|f| f == filter.family) {
                            broken.get_or_insert_with(|| problem.error(name));
                        }
                        continue;
                    }
                };
                if pool.family() == filter.family
                    && !pool.spec.disabled
                    && pool.serves(filter.usage)
                    && pool.spec.assignment_mode != Some(AssignmentMode::Manual)
                    && pool.node_selector.matches(filter.node_labels)
                    && namespace_matches(pool, filter.namespace_labels)
                {
                    chosen.push(pool);
                }
            }
        } else {
            for wanted in filter.requested {
                let found = self.pools.iter().find(|(name, pool)| {
                    *name == wanted
                        || pool
                            .as_ref()
                            .is_ok_and(|p| wanted.parse::<IpNet>().is_ok_and(|w| w == p.net))
                });
                let Some((name, pool)) = found else {
                    return Err(IpamError::PoolNotUsable {
                        pool: wanted.clone(),
                        reason: "no such ip pool (by name or cidr)".into(),
                    });
                };
                let unusable = |reason: String| IpamError::PoolNotUsable {
                    pool: name.clone(),
                    reason,
                };
                let pool = pool.as_ref().map_err(|p| p.error(name))?;
                if pool.family() != filter.family {
                    continue;
                }
                if pool.spec.disabled {
                    return Err(unusable("the pool is disabled".into()));
                }
                if !pool.serves(filter.usage) {
                    return Err(unusable(format!(
                        "allowedUses does not include {:?}",
                        filter.usage
                    )));
                }
                if !pool.node_selector.matches(filter.node_labels) {
                    return Err(unusable(format!(
                        "nodeSelector does not match node {}",
                        filter.node
                    )));
                }
                if !namespace_matches(pool, filter.namespace_labels) {
                    return Err(unusable(
                        "namespaceSelector does not match the pod's namespace".into(),
                    ));
                }
                chosen.push(pool);
            }
        }
        if chosen.is_empty() {
            // A broken pool that might have served is the better answer.
            if let Some(error) = broken {
                return Err(error);
            }
            return Err(IpamError::NoPool {
                family: filter.family.name(),
                node: filter.node.to_string(),
                use_: format!("{:?}", filter.usage),
            });
        }
        for pool in &chosen {
            self.check_overlaps(pool)?;
        }
        Ok(chosen)
    }
}

fn namespace_matches(pool: &Pool, labels: Option<&BTreeMap<String, String>>) -> bool {
    match (&pool.namespace_selector, labels) {
        (Some(selector), Some(labels)) => selector.matches(labels),
        _ => true,
    }
}

/// The labels of a node's `Node` object (none when it has no object).
///
/// # Errors
///
/// The datastore's.
pub fn node_labels(store: &dyn Datastore, node: &str) -> Result<BTreeMap<String, String>> {
    Ok(store::get::<NodeSpec>(store, node)?
        .map(|n| n.object.metadata.labels)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cidr: &str, block_size: Option<i32>) -> IPPoolSpec {
        IPPoolSpec {
            cidr: cidr.into(),
            block_size,
            ..IPPoolSpec::default()
        }
    }

    #[test]
    fn pool_problems_name_the_pool_and_field() {
        let cases = [
            ("10.0.0.0/28", Some(26), "spec.blockSize", "does not fit"),
            ("10.0.0.0/16", Some(19), "spec.blockSize", "out of range"),
            ("fd00::/64", Some(26), "spec.blockSize", "out of range"),
            ("10.0.0.1/16", None, "spec.cidr", "not masked"),
            ("banana", None, "spec.cidr", "not a CIDR"),
        ];
        for (cidr, size, field, words) in cases {
            let err = Pool::parse("p1", &spec(cidr, size)).expect_err(cidr);
            let text = err.to_string();
            assert!(
                text.contains("ip pool p1") && text.contains(field) && text.contains(words),
                "{cidr}: {text}"
            );
        }
    }

    #[test]
    fn blocks_are_enumerated_from_the_pool_start() {
        let pool = Pool::parse("p", &spec("10.0.0.0/24", Some(26))).expect("valid");
        assert_eq!(pool.block_count(), 4);
        assert_eq!(pool.block_at(3).to_string(), "10.0.0.192/26");
        assert_eq!(
            pool.block_of("10.0.0.77".parse().expect("ip")).to_string(),
            "10.0.0.64/26"
        );
        let v6 = Pool::parse("p6", &spec("fd00::/120", Some(122))).expect("valid");
        assert_eq!(v6.block_at(1).to_string(), "fd00::40/122");
    }

    #[test]
    fn cooldown_defaults_to_thirty_seconds_but_zero_is_honoured() {
        assert_eq!(EffectiveConfig::default().cooldown, DEFAULT_COOLDOWN);
        let zero = IPAMConfigurationSpec {
            ip_cooldown_seconds: Some(0),
            ..IPAMConfigurationSpec::default()
        };
        assert_eq!(EffectiveConfig::from_spec(&zero).cooldown, Duration::ZERO);
        assert_eq!(EffectiveConfig::default().max_blocks_per_host, 20);
    }
}
