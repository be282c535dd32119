//! BGPFilter rules as the speaker evaluates them.
//!
//! A peering's import (export) filter is the concatenation, in the order of
//! the BGPPeer's `filters`, of each BGPFilter's `importV4` then `importV6`
//! (`exportV4` then `exportV6`) rules. The first rule that matches a route
//! decides; when none does, Calico's defaults apply (import: accept; export:
//! Calico's own routes only), which are the speaker's, not the filter's.

use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::bgp::{
    BGPFilterAction, BGPFilterMatchOperator, BGPFilterPeerType, BGPFilterRule, BGPFilterSpec,
};

use super::ConfigError;

/// An ordered list of rules; the first match decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The rules, in order.
    pub rules: Vec<FilterRule>,
}

/// How a rule's CIDR is compared with a route's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOperator {
    /// The prefix is the CIDR.
    Equal,
    /// The prefix is not the CIDR.
    NotEqual,
    /// The prefix lies inside the CIDR (or is it).
    In,
    /// The prefix does not lie inside the CIDR.
    NotIn,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Take the route.
    Accept,
    /// Drop the route.
    Reject,
}

/// Which sessions a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTypeMatch {
    /// Peers in another AS.
    Ebgp,
    /// Peers in this AS.
    Ibgp,
}

/// One rule of a [`Filter`]: every set condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// The address family the rule applies to (`true`: IPv4).
    pub ipv4: bool,
    /// The CIDR and how the prefix must relate to it.
    pub cidr: Option<(IpNet, MatchOperator)>,
    /// The prefix length must be at least this.
    pub min_prefix_len: Option<u8>,
    /// The prefix length must be at most this.
    pub max_prefix_len: Option<u8>,
    /// Only routes from BGP peers (`source: RemotePeers`).
    pub remote_peers_only: bool,
    /// Only routes over an interface matching this glob (local routes).
    pub interface: Option<String>,
    /// Only sessions of this type.
    pub peer_type: Option<PeerTypeMatch>,
    /// The route must carry one of these standard communities.
    pub communities: Vec<u32>,
    /// The route must carry one of these large communities.
    pub large_communities: Vec<(u32, u32, u32)>,
    /// The AS path must start with these AS numbers.
    pub as_path_prefix: Vec<u32>,
    /// Only routes with this priority (kernel metric).
    pub priority: Option<i64>,
    /// Accept or reject.
    pub action: FilterAction,
    /// Standard communities added to accepted routes.
    pub add_communities: Vec<u32>,
    /// Large communities added to accepted routes.
    pub add_large_communities: Vec<(u32, u32, u32)>,
    /// AS numbers prepended to the path of accepted routes.
    pub prepend_as_path: Vec<u32>,
    /// Priority set on accepted routes.
    pub set_priority: Option<i64>,
}

impl FilterRule {
    /// A rule with no condition but the family: it matches every route of
    /// one family and does `action` to it.
    pub const fn new(ipv4: bool, action: FilterAction) -> Self {
        Self {
            ipv4,
            cidr: None,
            min_prefix_len: None,
            max_prefix_len: None,
            remote_peers_only: false,
            interface: None,
            peer_type: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            as_path_prefix: Vec::new(),
            priority: None,
            action,
            add_communities: Vec::new(),
            add_large_communities: Vec::new(),
            prepend_as_path: Vec::new(),
            set_priority: None,
        }
    }

    /// Whether the rule's prefix conditions hold for `prefix` (the
    /// session- and attribute-dependent conditions are the speaker's).
    pub fn matches_prefix(&self, prefix: &IpNet) -> bool {
        if self.ipv4 != matches!(prefix.addr(), IpAddr::V4(_)) {
            return false;
        }
        let len = prefix.prefix_len();
        if self.min_prefix_len.is_some_and(|min| len < min)
            || self.max_prefix_len.is_some_and(|max| len > max)
        {
            return false;
        }
        match self.cidr {
            None => true,
            Some((cidr, MatchOperator::Equal)) => *prefix == cidr,
            Some((cidr, MatchOperator::NotEqual)) => *prefix != cidr,
            Some((cidr, MatchOperator::In)) => cidr.contains(prefix),
            Some((cidr, MatchOperator::NotIn)) => !cidr.contains(prefix),
        }
    }
}

/// A parsed community: standard (`aa:nn`) or large (`aa:nn:mm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommunityValue {
    Standard(u32),
    Large(u32, u32, u32),
}

/// Parses `aa:nn` (16-bit parts) or `aa:nn:mm` (32-bit parts).
pub(super) fn parse_community(text: &str) -> Option<CommunityValue> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [a, n] => {
            let (a, n): (u16, u16) = (a.parse().ok()?, n.parse().ok()?);
            Some(CommunityValue::Standard(
                (u32::from(a) << 16) | u32::from(n),
            ))
        }
        [a, b, c] => Some(CommunityValue::Large(
            a.parse().ok()?,
            b.parse().ok()?,
            c.parse().ok()?,
        )),
        _ => None,
    }
}

/// Which rules of a BGPFilter a filter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Import,
    Export,
}

/// Appends the rules of `filter` (named `name`) for `direction` to `out`.
pub(super) fn append_rules(
    name: &str,
    filter: &BGPFilterSpec,
    direction: Direction,
    out: &mut Filter,
) -> Result<(), ConfigError> {
    let (v4, v6, f4, f6) = match direction {
        Direction::Import => (&filter.import_v4, &filter.import_v6, "importV4", "importV6"),
        Direction::Export => (&filter.export_v4, &filter.export_v6, "exportV4", "exportV6"),
    };
    for (rules, ipv4, field) in [(v4, true, f4), (v6, false, f6)] {
        for rule in rules {
            out.rules.push(convert_rule(name, field, ipv4, rule)?);
        }
    }
    Ok(())
}

fn convert_rule(
    name: &str,
    field: &'static str,
    ipv4: bool,
    rule: &BGPFilterRule,
) -> Result<FilterRule, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        kind: "BGPFilter",
        name: name.to_string(),
        field,
        reason,
    };
    let cidr = match &rule.cidr {
        None => None,
        Some(text) => {
            let net: IpNet = text
                .parse()
                .map_err(|_| invalid(format!("cidr {text:?} is not a CIDR")))?;
            if net.addr().is_ipv4() != ipv4 {
                return Err(invalid(format!(
                    "cidr {text} is of the other address family"
                )));
            }
            let operator = match rule.match_operator {
                Some(BGPFilterMatchOperator::Equal) => MatchOperator::Equal,
                Some(BGPFilterMatchOperator::NotEqual) => MatchOperator::NotEqual,
                Some(BGPFilterMatchOperator::In) => MatchOperator::In,
                Some(BGPFilterMatchOperator::NotIn) => MatchOperator::NotIn,
                None => return Err(invalid(format!("cidr {text} needs a matchOperator"))),
            };
            Some((net.trunc(), operator))
        }
    };
    let length = |value: Option<i32>| -> Result<Option<u8>, ConfigError> {
        value
            .map(|v| {
                u8::try_from(v).map_err(|_| invalid(format!("prefix length {v} is out of range")))
            })
            .transpose()
    };
    let (min_prefix_len, max_prefix_len) = match &rule.prefix_length {
        None => (None, None),
        Some(p) => (length(p.min)?, length(p.max)?),
    };
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    for value in rule.communities.iter().flat_map(|c| &c.values) {
        match parse_community(value) {
            Some(CommunityValue::Standard(c)) => communities.push(c),
            Some(CommunityValue::Large(a, b, c)) => large_communities.push((a, b, c)),
            None => {
                return Err(invalid(format!(
                    "community {value:?} is not aa:nn or aa:nn:mm"
                )));
            }
        }
    }
    let mut add_communities = Vec::new();
    let mut add_large_communities = Vec::new();
    let mut prepend_as_path = Vec::new();
    let mut set_priority = None;
    for operation in &rule.operations {
        if let Some(add) = &operation.add_community {
            match parse_community(&add.value) {
                Some(CommunityValue::Standard(c)) => add_communities.push(c),
                Some(CommunityValue::Large(a, b, c)) => add_large_communities.push((a, b, c)),
                None => {
                    return Err(invalid(format!(
                        "addCommunity {:?} is not aa:nn or aa:nn:mm",
                        add.value
                    )));
                }
            }
        }
        if let Some(prepend) = &operation.prepend_as_path {
            prepend_as_path.extend(prepend.prefix.iter().map(|a| a.0));
        }
        if let Some(priority) = &operation.set_priority {
            set_priority = Some(priority.value);
        }
    }
    Ok(FilterRule {
        ipv4,
        cidr,
        min_prefix_len,
        max_prefix_len,
        remote_peers_only: rule.source.is_some(),
        interface: rule.interface.clone(),
        peer_type: rule.peer_type.map(|t| match t {
            BGPFilterPeerType::Ebgp => PeerTypeMatch::Ebgp,
            BGPFilterPeerType::Ibgp => PeerTypeMatch::Ibgp,
        }),
        communities,
        large_communities,
        as_path_prefix: rule.as_path_prefix.iter().map(|a| a.0).collect(),
        priority: rule.priority,
        action: match rule.action {
            BGPFilterAction::Accept => FilterAction::Accept,
            BGPFilterAction::Reject => FilterAction::Reject,
        },
        add_communities,
        add_large_communities,
        prepend_as_path,
        set_priority,
    })
}
