//! What one node advertises and blackholes (rules in the module docs of
//! [`super`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use twill_api::bgp::BGPConfigurationSpec;
use twill_api::ipam::{BlockAffinityState, IPAMBlockSpec};
use twill_api::ippool::VXLANMode;

use super::filter::{CommunityValue, parse_community};
use super::{Advertised, ConfigError, Origin, Snapshot};

/// A pool's CIDR and whether its routes may be advertised.
struct Pool {
    cidr: IpNet,
    exported: bool,
}

fn pools(snapshot: &Snapshot, warnings: &mut Vec<ConfigError>) -> Vec<Pool> {
    let mut out = Vec::new();
    for (name, pool) in &snapshot.ip_pools {
        let spec = &pool.spec;
        let Ok(cidr) = spec.cidr.parse::<IpNet>() else {
            warnings.push(ConfigError::Invalid {
                kind: "IPPool",
                name: name.clone(),
                field: "spec.cidr",
                reason: format!(
                    "{:?} is not a CIDR; its blocks are not advertised",
                    spec.cidr
                ),
            });
            continue;
        };
        let vxlan = matches!(
            spec.vxlan_mode,
            Some(VXLANMode::Always | VXLANMode::CrossSubnet)
        );
        out.push(Pool {
            cidr: cidr.trunc(),
            // A `disabled` pool only stops new allocations: its existing
            // workloads stay routed (Calico's pool migration relies on it).
            exported: !spec.disable_bgp_export && !vxlan,
        });
    }
    out
}

/// Whether `prefix` lies in a pool whose routes are advertised.
fn exported(pools: &[Pool], prefix: &IpNet) -> bool {
    pools
        .iter()
        .find(|p| p.cidr.contains(prefix))
        .is_some_and(|p| p.exported)
}

/// The address at `ordinal` in `block`.
fn address_at(block: &IpNet, ordinal: usize) -> Option<IpNet> {
    let ordinal = u128::try_from(ordinal).ok()?;
    match block {
        IpNet::V4(net) => {
            let base = u128::from(u32::from(net.network()));
            let addr = u32::try_from(base + ordinal).ok()?;
            Some(IpNet::from(IpAddr::V4(Ipv4Addr::from(addr))))
        }
        IpNet::V6(net) => {
            let addr = u128::from(net.network()).checked_add(ordinal)?;
            Some(IpNet::from(IpAddr::V6(Ipv6Addr::from(addr))))
        }
    }
}

/// The addresses `node` holds in `block` (allocation attribute `node`).
fn held_by(block: &IpAddressBlock<'_>, node: &str) -> Vec<IpNet> {
    let spec = block.spec;
    spec.allocations
        .iter()
        .enumerate()
        .filter_map(|(ordinal, entry)| {
            let attribute = spec.attributes.get(usize::try_from((*entry)?).ok()?)?;
            (attribute.secondary.get("node").map(String::as_str) == Some(node))
                .then(|| address_at(&block.cidr, ordinal))
                .flatten()
        })
        .collect()
}

struct IpAddressBlock<'a> {
    cidr: IpNet,
    spec: &'a IPAMBlockSpec,
}

/// The advertised prefixes (ordered) and the blackhole routes of `node`.
pub(super) fn advertised(
    snapshot: &Snapshot,
    node: &str,
    global: &BGPConfigurationSpec,
    warnings: &mut Vec<ConfigError>,
) -> (Vec<Advertised>, Vec<IpNet>) {
    let pools = pools(snapshot, warnings);
    let mut prefixes: BTreeMap<IpNet, Origin> = BTreeMap::new();
    let mut blackholes = Vec::new();
    for (name, affinity) in &snapshot.block_affinities {
        let spec = &affinity.spec;
        if spec.node != node || spec.state != BlockAffinityState::Confirmed || spec.is_deleted() {
            continue;
        }
        let Ok(block) = spec.cidr.parse::<IpNet>() else {
            warnings.push(ConfigError::Invalid {
                kind: "BlockAffinity",
                name: name.clone(),
                field: "spec.cidr",
                reason: format!("{:?} is not a CIDR", spec.cidr),
            });
            continue;
        };
        let block = block.trunc();
        if block.prefix_len() < block.max_prefix_len() {
            blackholes.push(block);
        }
        if exported(&pools, &block) {
            prefixes.entry(block).or_insert(Origin::Block);
        }
    }
    for block in snapshot.ipam_blocks.values() {
        let spec = &block.spec;
        if spec.deleted || spec.host() == Some(node) {
            continue;
        }
        let Some(cidr) = spec.network() else { continue };
        let block = IpAddressBlock { cidr, spec };
        for address in held_by(&block, node) {
            if exported(&pools, &address) {
                prefixes.entry(address).or_insert(Origin::Borrowed);
            }
        }
    }
    for (field, blocks) in [
        ("spec.serviceClusterIPs", &global.service_cluster_ips),
        ("spec.serviceExternalIPs", &global.service_external_ips),
        (
            "spec.serviceLoadBalancerIPs",
            &global.service_load_balancer_ips,
        ),
    ] {
        for block in blocks {
            match block.cidr.parse::<IpNet>() {
                Ok(net) => {
                    prefixes.entry(net.trunc()).or_insert(Origin::Service);
                }
                Err(_) => warnings.push(ConfigError::Invalid {
                    kind: "BGPConfiguration",
                    name: "default".into(),
                    field,
                    reason: format!("{:?} is not a CIDR", block.cidr),
                }),
            }
        }
    }
    blackholes.sort();
    blackholes.dedup();
    let communities = community_rules(global, warnings);
    let originated = prefixes
        .into_iter()
        .map(|(prefix, origin)| {
            let mut advertised = Advertised {
                prefix,
                origin,
                communities: Vec::new(),
                large_communities: Vec::new(),
            };
            for (cidr, values) in &communities {
                if !cidr.contains(&prefix) {
                    continue;
                }
                for value in values {
                    match *value {
                        CommunityValue::Standard(c) => advertised.communities.push(c),
                        CommunityValue::Large(a, b, c) => {
                            advertised.large_communities.push((a, b, c));
                        }
                    }
                }
            }
            advertised.communities.sort_unstable();
            advertised.communities.dedup();
            advertised.large_communities.sort_unstable();
            advertised.large_communities.dedup();
            advertised
        })
        .collect();
    (originated, blackholes)
}

/// `prefixAdvertisements` with community names resolved.
fn community_rules(
    global: &BGPConfigurationSpec,
    warnings: &mut Vec<ConfigError>,
) -> Vec<(IpNet, Vec<CommunityValue>)> {
    let mut out = Vec::new();
    for advert in &global.prefix_advertisements {
        let invalid = |reason: String| ConfigError::Invalid {
            kind: "BGPConfiguration",
            name: "default".into(),
            field: "spec.prefixAdvertisements",
            reason,
        };
        let Ok(cidr) = advert.cidr.parse::<IpNet>() else {
            warnings.push(invalid(format!("{:?} is not a CIDR", advert.cidr)));
            continue;
        };
        let mut values = Vec::new();
        for community in &advert.communities {
            let value = global
                .communities
                .iter()
                .find(|c| &c.name == community)
                .map_or(community.as_str(), |c| c.value.as_str());
            match parse_community(value) {
                Some(v) => values.push(v),
                None => warnings.push(invalid(format!(
                    "{community:?} is neither a community value nor a defined name"
                ))),
            }
        }
        out.push((cidr.trunc(), values));
    }
    out
}
