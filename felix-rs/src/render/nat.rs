//! NAT outgoing: traffic from a pool with `natOutgoing: true` to a
//! destination outside every pool leaves with the node's address
//! (masquerade), or with FelixConfiguration `natOutgoingAddress`.
//!
//! ```text
//! nat-postrouting (type nat hook postrouting priority 100, policy accept)
//!   ip saddr @nat-masq-v4 ip daddr != @nat-pools-v4 masquerade | snat ip to <natOutgoingAddress>
//!   ip6 saddr @nat-masq-v6 ip6 daddr != @nat-pools-v6 masquerade
//! ```
//!
//! `nat-pools-*` holds every pool (enabled or not: traffic between pods
//! keeps its source), `nat-masq-*` the pools with `natOutgoing`. Nothing is
//! rendered when no pool asks for NAT, so the chain and sets disappear with
//! the last such pool. Rendered into the same ruleset, and so the same
//! transaction, as the policy chains.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use twill_api::felix::FelixConfigurationSpec;
use twill_api::ippool::IPPoolSpec;

use super::{ChainBuilder, disjoint};
use crate::ruleset::{BaseChain, Hook, Ruleset, Set, SetKind};

/// The NAT chain.
pub const NAT_CHAIN: &str = "nat-postrouting";
/// Priority of the NAT chain (nft's `srcnat`).
pub const NAT_PRIORITY: i32 = 100;
/// Every IPv4 pool.
pub const POOLS_V4_SET: &str = "nat-pools-v4";
/// Every IPv6 pool.
pub const POOLS_V6_SET: &str = "nat-pools-v6";
/// IPv4 pools with `natOutgoing`.
pub const MASQ_V4_SET: &str = "nat-masq-v4";
/// IPv6 pools with `natOutgoing`.
pub const MASQ_V6_SET: &str = "nat-masq-v6";

/// What NAT outgoing depends on: every pool's network and `natOutgoing`,
/// and FelixConfiguration `natOutgoingAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatOutgoing {
    /// `(cidr, natOutgoing)` per pool, sorted.
    pub pools: Vec<(IpNet, bool)>,
    /// The SNAT address instead of masquerading (IPv4).
    pub address: Option<Ipv4Addr>,
}

impl NatOutgoing {
    /// The settings from the pools and the FelixConfiguration in effect.
    pub fn new<'a>(
        pools: impl IntoIterator<Item = &'a IPPoolSpec>,
        felix: Option<&FelixConfigurationSpec>,
    ) -> Self {
        let mut pools: Vec<(IpNet, bool)> = pools
            .into_iter()
            .filter_map(|p| Some((p.network()?, p.nat_outgoing)))
            .collect();
        pools.sort();
        Self {
            pools,
            address: felix
                .and_then(|s| s.nat_outgoing_address.as_deref())
                .and_then(|a| a.parse().ok()),
        }
    }
}

fn element(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Adds the NAT-outgoing chain and sets of `nat` to `out`.
pub fn render_nat(nat: &NatOutgoing, out: &mut Ruleset) {
    let pools = &nat.pools;
    let mut chain = ChainBuilder::new(
        NAT_CHAIN,
        Some(BaseChain {
            hook: Hook::Postrouting,
            priority: NAT_PRIORITY,
        }),
    );
    let families: [(bool, &str, &str, &str, SetKind, String); 2] = [
        (
            false,
            "ip",
            POOLS_V4_SET,
            MASQ_V4_SET,
            SetKind::Ipv4,
            nat.address
                .map_or_else(|| "masquerade".into(), |a| format!("snat ip to {a}")),
        ),
        (
            true,
            "ip6",
            POOLS_V6_SET,
            MASQ_V6_SET,
            SetKind::Ipv6,
            "masquerade".into(),
        ),
    ];
    let mut sets = BTreeMap::new();
    for (v6, proto, all_set, masq_set, kind, action) in families {
        let of_family = |masq_only: bool| {
            disjoint(
                pools
                    .iter()
                    .filter(|(net, nat)| net.addr().is_ipv6() == v6 && (*nat || !masq_only))
                    .map(|(net, _)| *net),
            )
        };
        let masq = of_family(true);
        if masq.is_empty() {
            continue;
        }
        for (name, nets) in [(all_set, of_family(false)), (masq_set, masq)] {
            sets.insert(
                name.to_string(),
                Set {
                    kind,
                    elements: nets.iter().map(element).collect(),
                },
            );
        }
        chain.push(format!(
            "{proto} saddr @{masq_set} {proto} daddr != @{all_set} {action}"
        ));
    }
    if sets.is_empty() {
        return;
    }
    out.sets.extend(sets);
    chain.finish(out);
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use twill_api::ippool::IPPoolSpec;

    use super::*;

    fn pool(cidr: &str, nat: bool) -> IPPoolSpec {
        IPPoolSpec {
            cidr: cidr.into(),
            nat_outgoing: nat,
            ..IPPoolSpec::default()
        }
    }

    fn rendered(pools: &[IPPoolSpec], address: Option<Ipv4Addr>) -> Ruleset {
        let mut nat = NatOutgoing::new(pools, None);
        nat.address = address;
        let mut out = Ruleset::default();
        render_nat(&nat, &mut out);
        out
    }

    fn bodies(r: &Ruleset) -> Vec<String> {
        r.chains
            .get(NAT_CHAIN)
            .map(|c| c.rules.iter().map(|r| r.body.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn nat_pools_are_masqueraded_towards_destinations_outside_every_pool() {
        let r = rendered(
            &[pool("10.65.0.0/16", true), pool("10.66.0.0/16", false)],
            None,
        );
        assert_eq!(
            bodies(&r),
            vec!["ip saddr @nat-masq-v4 ip daddr != @nat-pools-v4 masquerade"]
        );
        let chain = &r.chains[NAT_CHAIN];
        assert_eq!(
            chain.base,
            Some(BaseChain {
                hook: Hook::Postrouting,
                priority: NAT_PRIORITY
            })
        );
        let elements = |name: &str| r.sets[name].elements.iter().cloned().collect::<Vec<_>>();
        assert_eq!(elements(MASQ_V4_SET), vec!["10.65.0.0/16"]);
        assert_eq!(elements(POOLS_V4_SET), vec!["10.65.0.0/16", "10.66.0.0/16"]);
        assert!(!r.sets.contains_key(MASQ_V6_SET), "no v6 nat pool");
    }

    #[test]
    fn nat_outgoing_address_replaces_masquerade_for_ipv4_only() {
        let r = rendered(
            &[pool("10.65.0.0/16", true), pool("fd00:65::/48", true)],
            Some(Ipv4Addr::new(192, 0, 2, 7)),
        );
        assert_eq!(
            bodies(&r),
            vec![
                "ip saddr @nat-masq-v4 ip daddr != @nat-pools-v4 snat ip to 192.0.2.7",
                "ip6 saddr @nat-masq-v6 ip6 daddr != @nat-pools-v6 masquerade",
            ]
        );
    }

    #[test]
    fn without_nat_pools_nothing_is_rendered() {
        let r = rendered(&[pool("10.65.0.0/16", false)], None);
        assert_eq!(r, Ruleset::default());
    }

    #[test]
    fn the_nat_chain_script_declares_a_nat_chain() {
        let r = rendered(&[pool("10.65.0.0/16", true)], None);
        let script = crate::script(&crate::plan(&r, &Ruleset::default()));
        assert!(
            script.contains(
                "add chain inet twill nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }"
            ),
            "{script}"
        );
    }
}
