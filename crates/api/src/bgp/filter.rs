//! `BGPFilter`: import and export rules that BGP peers refer to by name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AsNumber, is_community_value, non_empty};
use crate::common::{Family, check_interface_pattern, check_network, check_range};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, Spec};
use crate::validate::{Validate, Validator};

/// Import and export filters that BGP peers refer to by name.
pub type BGPFilter = Object<BGPFilterSpec>;

/// The spec of a [`BGPFilter`]. Rules are evaluated in order; the first match
/// decides. Without a match, imports are accepted and exports follow Calico's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterSpec {
    /// Rules for IPv4 routes sent to peers.
    #[serde(rename = "exportV4", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    /// Rules for IPv4 routes received from peers.
    #[serde(rename = "importV4", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes sent to peers.
    #[serde(rename = "exportV6", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes received from peers.
    #[serde(rename = "importV6", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One filter rule (the IPv4 and IPv6 lists share the shape; the family is
/// checked against the list the rule is in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterRule {
    /// Prefix to compare routes with, using `matchOperator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Bounds on the route's prefix length (requires `cidr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<BGPFilterPrefixLength>,
    /// Match only routes from remote peers (`RemotePeers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BGPFilterMatchSource>,
    /// Match routes of interfaces with this name (globs allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// How `cidr` is compared: Equal, NotEqual, In (inside) or NotIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<BGPFilterMatchOperator>,
    /// Match only routes from/to peers of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<BGPFilterPeerType>,
    /// Match routes carrying this community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<BGPFilterCommunityMatch>,
    /// Match routes whose AS path starts with these AS numbers (1–10).
    #[serde(
        rename = "asPathPrefix",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<AsNumber>,
    /// Match routes with this kernel priority (1–2147483646).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// What happens to a matching route.
    pub action: BGPFilterAction,
    /// Changes made to accepted routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<BGPFilterOperation>,
}

/// Bounds on a route's prefix length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterPrefixLength {
    /// Shortest prefix length matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    /// Longest prefix length matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// Where matched routes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BGPFilterMatchSource {
    /// Routes learned from BGP peers.
    RemotePeers,
}

/// How a rule's `cidr` is compared with a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BGPFilterMatchOperator {
    /// The route is exactly the CIDR.
    Equal,
    /// The route is not the CIDR.
    NotEqual,
    /// The route is inside the CIDR.
    In,
    /// The route is not inside the CIDR.
    NotIn,
}

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BGPFilterAction {
    /// Import or export the route.
    Accept,
    /// Drop the route.
    Reject,
}

/// A peer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BGPFilterPeerType {
    /// External BGP.
    #[serde(rename = "eBGP")]
    Ebgp,
    /// Internal BGP.
    #[serde(rename = "iBGP")]
    Ibgp,
}

/// Community match criteria (exactly one value for now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterCommunityMatch {
    /// The community values to match.
    #[serde(default)]
    pub values: Vec<String>,
}

/// One route change; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterOperation {
    /// Add a community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<BGPFilterAddCommunity>,
    /// Prepend AS numbers to the AS path.
    #[serde(
        rename = "prependASPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<BGPFilterPrependASPath>,
    /// Set the route's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<BGPFilterSetPriority>,
}

/// A community to add.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterAddCommunity {
    /// The community value.
    #[serde(default)]
    pub value: String,
}

/// AS numbers to prepend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterPrependASPath {
    /// The AS numbers, first one outermost (1–10).
    #[serde(default)]
    pub prefix: Vec<AsNumber>,
}

/// A priority to set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPFilterSetPriority {
    /// The priority (1–2147483646).
    #[serde(default)]
    pub value: i64,
}

impl Spec for BGPFilterSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "BGPFilter";
    const PLURAL: &'static str = "bgpfilters";
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

impl Validate for BGPFilterSpec {
    fn validate(&self, v: &mut Validator) {
        for (name, rules, family) in [
            ("exportV4", &self.export_v4, Family::V4),
            ("importV4", &self.import_v4, Family::V4),
            ("exportV6", &self.export_v6, Family::V6),
            ("importV6", &self.import_v6, Family::V6),
        ] {
            v.field(name, |v| {
                v.each(rules, |v, rule| rule.validate_in(v, family))
            });
        }
    }
}

fn check_as_list(v: &mut Validator, list: &[AsNumber]) {
    if list.is_empty() || list.len() > 10 {
        v.error(format!(
            "between 1 and 10 AS numbers are needed, found {}",
            list.len()
        ));
    }
    v.each(list, |v, asn| asn.validate(v));
}

impl BGPFilterRule {
    fn validate_in(&self, v: &mut Validator, family: Family) {
        let has_cidr = non_empty(&self.cidr);
        if let Some(cidr) = &self.cidr {
            v.field("cidr", |v| check_network(v, cidr, family));
        }
        if has_cidr != self.match_operator.is_some() {
            v.field(if has_cidr { "matchOperator" } else { "cidr" }, |v| {
                v.error("cidr and matchOperator must both be set or both be empty")
            });
        }
        if let Some(bounds) = &self.prefix_length {
            v.field("prefixLength", |v| {
                if !has_cidr {
                    v.error("cidr is required when prefixLength is set");
                }
                let max_len = if family == Family::V6 { 128 } else { 32 };
                if let Some(min) = bounds.min {
                    v.field("min", |v| check_range(v, i64::from(min), 0, max_len));
                }
                if let Some(max) = bounds.max {
                    v.field("max", |v| check_range(v, i64::from(max), 0, max_len));
                }
                if let (Some(min), Some(max)) = (bounds.min, bounds.max)
                    && min > max
                {
                    v.error(format!("min {min} is greater than max {max}"));
                }
            });
        }
        if let Some(iface) = &self.interface {
            v.field("interface", |v| v.check(check_interface_pattern(iface)));
        }
        if let Some(communities) = &self.communities {
            v.field("communities", |v| {
                v.field("values", |v| {
                    if communities.values.len() != 1 {
                        v.error(format!(
                            "exactly one community value is supported, found {}",
                            communities.values.len()
                        ));
                    }
                    v.each(&communities.values, |v, value| check_community(v, value));
                })
            });
        }
        if !self.as_path_prefix.is_empty() {
            v.field("asPathPrefix", |v| check_as_list(v, &self.as_path_prefix));
        }
        if let Some(priority) = self.priority {
            v.field("priority", |v| check_range(v, priority, 1, 2_147_483_646));
        }
        v.field("operations", |v| {
            if !self.operations.is_empty() && self.action != BGPFilterAction::Accept {
                v.error("operations may only be used with action Accept");
            }
            v.each(&self.operations, |v, op| {
                let set = usize::from(op.add_community.is_some())
                    + usize::from(op.prepend_as_path.is_some())
                    + usize::from(op.set_priority.is_some());
                if set != 1 {
                    v.error(format!(
                        "exactly one of addCommunity, prependASPath and setPriority must be set, found {set}"
                    ));
                }
                if let Some(add) = &op.add_community {
                    v.field("addCommunity", |v| {
                        v.field("value", |v| check_community(v, &add.value))
                    });
                }
                if let Some(prepend) = &op.prepend_as_path {
                    v.field("prependASPath", |v| {
                        v.field("prefix", |v| check_as_list(v, &prepend.prefix))
                    });
                }
                if let Some(set) = &op.set_priority {
                    v.field("setPriority", |v| {
                        v.field("value", |v| check_range(v, set.value, 1, 2_147_483_646))
                    });
                }
            });
        });
    }
}

fn check_community(v: &mut Validator, value: &str) {
    if !is_community_value(value) {
        v.error(format!(
            "{value:?} is not a community: use aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)"
        ));
    }
}
