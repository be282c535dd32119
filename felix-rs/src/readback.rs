//! What the kernel has, as a [`Ruleset`] the planner can diff against.
//!
//! The kernel's listing does not give back the rule text Twill wrote, so a
//! read-back rule carries only the content hash from its `tw:` comment (a
//! rule without one gets an empty hash, so its chain is rewritten). Set
//! elements are brought into the notation the renderer uses: bare addresses
//! for host prefixes, protocol numbers, quoted interface names.

use twill_kernel::NftTable;
use twill_kernel::nft::NftSet;

use crate::ruleset::{BaseChain, Chain, Hook, Rule, Ruleset, Set, SetKind, VerdictMap};

/// Prefix of the comment every Twill rule carries.
pub const COMMENT_PREFIX: &str = "tw:";

fn address(text: &str) -> String {
    match text.parse::<ipnet::IpNet>() {
        Ok(net) if net.prefix_len() == net.max_prefix_len() => net.addr().to_string(),
        Ok(net) => net.to_string(),
        Err(_) => text.to_string(),
    }
}

fn protocol(text: &str) -> String {
    match text {
        "tcp" => "6".into(),
        "udp" => "17".into(),
        "sctp" => "132".into(),
        "udplite" => "136".into(),
        "icmp" => "1".into(),
        "ipv6-icmp" | "icmpv6" => "58".into(),
        other => other.to_string(),
    }
}

fn unquote(text: &str) -> &str {
    text.trim_matches('"')
}

/// An element as the renderer writes it.
fn element(kind: SetKind, text: &str) -> String {
    let parts: Vec<&str> = text.split(" . ").map(str::trim).collect();
    match (kind, parts.as_slice()) {
        (SetKind::Ipv4 | SetKind::Ipv6, [one]) => address(one),
        (SetKind::Ipv4NamedPort | SetKind::Ipv6NamedPort, [addr, proto, port]) => {
            format!("{} . {} . {port}", address(addr), protocol(proto))
        }
        (SetKind::IfaceIpv4 | SetKind::IfaceIpv6, [iface, addr]) => {
            format!("\"{}\" . {}", unquote(iface), address(addr))
        }
        _ => text.to_string(),
    }
}

fn verdict_map(set: &NftSet) -> VerdictMap {
    VerdictMap {
        elements: set
            .elements
            .iter()
            .filter_map(|e| e.split_once(" : "))
            .map(|(k, v)| (unquote(k.trim()).to_string(), v.trim().to_string()))
            .collect(),
    }
}

/// Twill's view of the kernel's table.
pub fn from_kernel(table: &NftTable) -> Ruleset {
    let mut out = Ruleset::default();
    for chain in &table.chains {
        // A base chain Twill would not have made (another type or policy)
        // reads as a regular chain, so that a wanted base chain of that
        // name is recreated.
        let base = chain.base.as_ref().and_then(|b| {
            let hook = Hook::parse(&b.hook)
                .filter(|h| b.kind == h.chain_type() && b.policy == "accept")?;
            Some(BaseChain {
                hook,
                priority: i32::try_from(b.priority).ok()?,
            })
        });
        out.chains.insert(
            chain.name.clone(),
            Chain {
                base,
                rules: Vec::new(),
            },
        );
    }
    for rule in &table.rules {
        let hash = rule
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
            .unwrap_or_default()
            .to_string();
        out.chains
            .entry(rule.chain.clone())
            .or_default()
            .rules
            .push(Rule {
                body: String::new(),
                hash,
            });
    }
    for set in &table.sets {
        if set.map_type.as_deref() == Some("verdict") && set.key_type == "ifname" {
            out.maps.insert(set.name.clone(), verdict_map(set));
            continue;
        }
        let kind = if set.map_type.is_some() {
            SetKind::Foreign
        } else {
            SetKind::from_listing(&set.key_type, &set.flags)
        };
        let elements = set.elements.iter().map(|e| element(kind, e)).collect();
        out.sets.insert(set.name.clone(), Set { kind, elements });
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn listed_elements_take_the_renderers_notation() {
        let cases = [
            (SetKind::Ipv4, "10.0.0.1/32", "10.0.0.1"),
            (SetKind::Ipv4, "10.0.0.0/24", "10.0.0.0/24"),
            (SetKind::Ipv6, "fd00::1/128", "fd00::1"),
            (
                SetKind::Ipv4NamedPort,
                "10.0.0.1 . tcp . 80",
                "10.0.0.1 . 6 . 80",
            ),
            (
                SetKind::Ipv6NamedPort,
                "fd00::1 . udp . 53",
                "fd00::1 . 17 . 53",
            ),
            (SetKind::IfaceIpv4, "tw1 . 10.0.0.1", "\"tw1\" . 10.0.0.1"),
            (
                SetKind::IfaceIpv4,
                "tw1 . 10.9.0.0/16",
                "\"tw1\" . 10.9.0.0/16",
            ),
            (SetKind::Ports, "8000-8080", "8000-8080"),
        ];
        for (kind, listed, rendered) in cases {
            assert_eq!(element(kind, listed), rendered, "{listed}");
        }
    }
}
