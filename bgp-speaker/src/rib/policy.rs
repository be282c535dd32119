//! Evaluating a peering's import or export [`Filter`] on one route.
//!
//! The first rule whose every condition holds decides; a route no rule
//! matches is accepted. Conditions the RIB cannot know for a BGP route
//! (`interface`, `priority`: they describe kernel routes) never hold.
//! Accepting rules may add communities and prepend AS numbers; `setPriority`
//! has no effect on BGP routes.

use std::sync::Arc;

use ipnet::IpNet;

use super::attrs::Attrs;
use crate::config::{Filter, FilterAction, FilterRule, PeerTypeMatch};

/// What a filter knows about the session and the route's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterContext {
    /// The session the filter belongs to is iBGP.
    pub ibgp: bool,
    /// The route was learned from a BGP peer (not originated here).
    pub from_peer: bool,
}

fn rule_matches(rule: &FilterRule, prefix: &IpNet, attrs: &Attrs, ctx: FilterContext) -> bool {
    if !rule.matches_prefix(prefix) {
        return false;
    }
    if rule.remote_peers_only && !ctx.from_peer {
        return false;
    }
    if rule.interface.is_some() || rule.priority.is_some() {
        return false;
    }
    match rule.peer_type {
        Some(PeerTypeMatch::Ibgp) if !ctx.ibgp => return false,
        Some(PeerTypeMatch::Ebgp) if ctx.ibgp => return false,
        _ => {}
    }
    if !rule.communities.is_empty()
        && !rule
            .communities
            .iter()
            .any(|c| attrs.communities.contains(c))
    {
        return false;
    }
    if !rule.large_communities.is_empty()
        && !rule
            .large_communities
            .iter()
            .any(|c| attrs.large_communities.contains(c))
    {
        return false;
    }
    attrs.as_path.starts_with(&rule.as_path_prefix)
}

/// Runs `filter` on a route: `None` when rejected, else the attributes to
/// use (the same `Arc` when the accepting rule changes nothing).
pub fn apply(
    filter: &Filter,
    prefix: &IpNet,
    attrs: &Arc<Attrs>,
    ctx: FilterContext,
) -> Option<Arc<Attrs>> {
    let Some(rule) = filter
        .rules
        .iter()
        .find(|rule| rule_matches(rule, prefix, attrs, ctx))
    else {
        return Some(Arc::clone(attrs));
    };
    if rule.action == FilterAction::Reject {
        return None;
    }
    if rule.add_communities.is_empty()
        && rule.add_large_communities.is_empty()
        && rule.prepend_as_path.is_empty()
    {
        return Some(Arc::clone(attrs));
    }
    let mut changed = (**attrs).clone();
    for c in &rule.add_communities {
        if !changed.communities.contains(c) {
            changed.communities.push(*c);
        }
    }
    for c in &rule.add_large_communities {
        if !changed.large_communities.contains(c) {
            changed.large_communities.push(*c);
        }
    }
    if !rule.prepend_as_path.is_empty() {
        let mut path = rule.prepend_as_path.clone();
        path.extend_from_slice(&changed.as_path);
        changed.as_path_len = changed
            .as_path_len
            .saturating_add(u32::try_from(rule.prepend_as_path.len()).unwrap_or(u32::MAX));
        changed.as_path = path;
    }
    Some(Arc::new(changed))
}
