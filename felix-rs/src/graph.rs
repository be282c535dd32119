//! The calculation graph: Felix's inputs, indexed so that each update costs
//! what it changes.
//!
//! Two label indexes do the matching:
//!
//! * the *policy index* matches each policy's endpoint selector against the
//!   LOCAL workload and host endpoints only (remote ones never need policy);
//! * the *IP-set index* matches every distinct rule selector (one entry per
//!   selector ID, however many rules share it) against every endpoint (host
//!   endpoints by their expected IPs) and network set in the cluster; its matches are the members of the
//!   selector's nftables set.
//!
//! Endpoints inherit their namespace's labels (`pcns.*`) and their service
//! account's labels (`pcsa.*`) through the indexes' parents, as Calico's
//! `kns.` / `ksa.` profiles do.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use twill_api::common::Action;
use twill_selector::Selector;
use twill_selector::index::LabelIndex;

use crate::Error;
use crate::model::{
    self, Endpoint, EndpointKey, HostEndpointInfo, K8S_NAMESPACE_NAME_LABEL, NAME_LABEL, NetSet,
    Policy, PolicyKey, PolicyRule, SERVICE_ACCOUNT_LABEL_PREFIX, TierInfo, Update,
};

/// Identity of a NetworkSet (empty namespace: a GlobalNetworkSet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetSetKey {
    /// The namespace, empty for a GlobalNetworkSet.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// Something a rule selector can match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    /// A workload endpoint (local or remote).
    Endpoint(EndpointKey),
    /// A NetworkSet or GlobalNetworkSet.
    NetSet(NetSetKey),
    /// A HostEndpoint (its expected addresses).
    Host(String),
}

/// Something on this node that policies apply to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum LocalKey {
    Workload(EndpointKey),
    Host(String),
}

/// Traffic direction, from the endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// Towards the endpoint.
    Ingress,
    /// From the endpoint.
    Egress,
}

/// The policies of one tier that apply to an endpoint in one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicies {
    /// The tier's name.
    pub tier: String,
    /// What happens at the end of the tier.
    pub default_action: Action,
    /// The policies, in evaluation order.
    pub policies: Vec<PolicyKey>,
}

type Labels = BTreeMap<String, String>;

/// The calculation graph. Feed it [`Update`]s; read what to program.
#[derive(Debug)]
pub struct CalcGraph {
    hostname: String,
    policies: BTreeMap<PolicyKey, Policy>,
    tiers: BTreeMap<String, TierInfo>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
    net_sets: BTreeMap<NetSetKey, NetSet>,
    host_endpoints: BTreeMap<String, HostEndpointInfo>,
    policy_index: LabelIndex<PolicyKey, LocalKey, String>,
    ipset_index: LabelIndex<String, Member, String>,
    /// Rule selectors by ID, with the number of policy references.
    rule_selectors: BTreeMap<String, (Selector, usize)>,
    dirty: bool,
    in_sync: bool,
}

fn namespace_parent(ns: &str) -> String {
    format!("kns.{ns}")
}

fn service_account_parent(ns: &str, sa: &str) -> String {
    format!("ksa.{ns}.{sa}")
}

fn prefixed_labels(prefix: &str, name: &str, labels: &Labels, extra: &[&str]) -> Labels {
    let mut out: Labels = labels
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    for key in extra {
        out.insert(format!("{prefix}{key}"), name.to_string());
    }
    out
}

/// Every selector a rule's IP sets are built from: positive and negative
/// selectors, and the selectors named ports are resolved against.
pub(crate) fn rule_selectors(rule: &PolicyRule) -> Vec<Selector> {
    let mut out = Vec::new();
    for side in [&rule.source, &rule.destination] {
        out.extend(side.selector.iter().cloned());
        out.extend(side.not_selector.iter().cloned());
        if side
            .ports
            .iter()
            .chain(&side.not_ports)
            .any(|p| p.is_named())
        {
            out.push(side.selector.clone().unwrap_or_else(Selector::all));
        }
    }
    out
}

fn policy_selectors(policy: &Policy) -> Vec<Selector> {
    policy
        .ingress
        .iter()
        .chain(&policy.egress)
        .flat_map(rule_selectors)
        .collect()
}

impl CalcGraph {
    /// An empty graph for the node `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            policies: BTreeMap::new(),
            tiers: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            net_sets: BTreeMap::new(),
            host_endpoints: BTreeMap::new(),
            policy_index: LabelIndex::new(),
            ipset_index: LabelIndex::new(),
            rule_selectors: BTreeMap::new(),
            dirty: true,
            in_sync: false,
        }
    }

    /// Applies one update. A resource that cannot be converted is removed
    /// (as if deleted) and the error returned; the rest of the graph is intact.
    pub fn on_update(&mut self, update: Update) -> Result<(), Error> {
        self.dirty = true;
        match update {
            Update::PolicyUpserted(p) => {
                let key = model::PolicyKey {
                    kind: model::PolicyKind::Calico,
                    namespace: p.namespace().unwrap_or("default").to_string(),
                    name: p.name().to_string(),
                };
                self.upsert_policy(key, model::convert_network_policy(&p))
            }
            Update::PolicyDeleted { namespace, name } => {
                self.remove_policy(&PolicyKey {
                    kind: model::PolicyKind::Calico,
                    namespace,
                    name,
                });
                Ok(())
            }
            Update::GlobalPolicyUpserted(p) => {
                let key = PolicyKey {
                    kind: model::PolicyKind::Global,
                    namespace: String::new(),
                    name: p.name().to_string(),
                };
                self.upsert_policy(key, model::convert_global_policy(&p))
            }
            Update::GlobalPolicyDeleted { name } => {
                self.remove_policy(&PolicyKey {
                    kind: model::PolicyKind::Global,
                    namespace: String::new(),
                    name,
                });
                Ok(())
            }
            Update::KubernetesPolicyUpserted(p) => {
                let key = PolicyKey {
                    kind: model::PolicyKind::Kubernetes,
                    namespace: p.namespace().unwrap_or("default").to_string(),
                    name: p.name().to_string(),
                };
                self.upsert_policy(key, model::translate_kubernetes_policy(&p))
            }
            Update::KubernetesPolicyDeleted { namespace, name } => {
                self.remove_policy(&PolicyKey {
                    kind: model::PolicyKind::Kubernetes,
                    namespace,
                    name,
                });
                Ok(())
            }
            Update::TierUpserted(t) => {
                self.tiers
                    .insert(t.name().to_string(), TierInfo::from_tier(&t));
                Ok(())
            }
            Update::TierDeleted { name } => {
                self.tiers.remove(&name);
                Ok(())
            }
            Update::WorkloadEndpointUpserted(wep) => match model::convert_endpoint(&wep) {
                Ok((key, ep)) => {
                    self.upsert_endpoint(key, ep);
                    Ok(())
                }
                Err(e) => {
                    self.remove_endpoint(&EndpointKey {
                        namespace: wep.namespace().unwrap_or("default").to_string(),
                        name: wep.name().to_string(),
                    });
                    Err(e)
                }
            },
            Update::WorkloadEndpointDeleted { namespace, name } => {
                self.remove_endpoint(&EndpointKey { namespace, name });
                Ok(())
            }
            Update::NamespaceLabels { name, labels } => {
                let labels = prefixed_labels(
                    twill_selector::NAMESPACE_LABEL_PREFIX,
                    &name,
                    &labels,
                    &[NAME_LABEL, K8S_NAMESPACE_NAME_LABEL],
                );
                let parent = namespace_parent(&name);
                self.policy_index
                    .update_parent(parent.clone(), labels.clone());
                self.ipset_index.update_parent(parent, labels);
                Ok(())
            }
            Update::NamespaceDeleted { name } => {
                let parent = namespace_parent(&name);
                self.policy_index.remove_parent(&parent);
                self.ipset_index.remove_parent(&parent);
                Ok(())
            }
            Update::ServiceAccountLabels {
                namespace,
                name,
                labels,
            } => {
                let labels =
                    prefixed_labels(SERVICE_ACCOUNT_LABEL_PREFIX, &name, &labels, &[NAME_LABEL]);
                let parent = service_account_parent(&namespace, &name);
                self.policy_index
                    .update_parent(parent.clone(), labels.clone());
                self.ipset_index.update_parent(parent, labels);
                Ok(())
            }
            Update::ServiceAccountDeleted { namespace, name } => {
                let parent = service_account_parent(&namespace, &name);
                self.policy_index.remove_parent(&parent);
                self.ipset_index.remove_parent(&parent);
                Ok(())
            }
            Update::NetworkSetUpserted(set) => {
                let key = NetSetKey {
                    namespace: set.namespace().unwrap_or("default").to_string(),
                    name: set.name().to_string(),
                };
                self.upsert_net_set(key, model::convert_network_set(&set))
            }
            Update::NetworkSetDeleted { namespace, name } => {
                self.remove_net_set(&NetSetKey { namespace, name });
                Ok(())
            }
            Update::GlobalNetworkSetUpserted(set) => {
                let key = NetSetKey {
                    namespace: String::new(),
                    name: set.name().to_string(),
                };
                self.upsert_net_set(key, model::convert_global_network_set(&set))
            }
            Update::GlobalNetworkSetDeleted { name } => {
                self.remove_net_set(&NetSetKey {
                    namespace: String::new(),
                    name,
                });
                Ok(())
            }
            Update::HostEndpointUpserted(hep) => {
                let name = hep.name().to_string();
                match model::convert_host_endpoint(&hep) {
                    Ok(info) => {
                        self.upsert_host_endpoint(name, info);
                        Ok(())
                    }
                    Err(e) => {
                        self.remove_host_endpoint(&name);
                        Err(e)
                    }
                }
            }
            Update::HostEndpointDeleted { name } => {
                self.remove_host_endpoint(&name);
                Ok(())
            }
            Update::InSync => {
                self.in_sync = true;
                Ok(())
            }
        }
    }

    fn upsert_policy(
        &mut self,
        key: PolicyKey,
        converted: Result<(PolicyKey, Policy), Error>,
    ) -> Result<(), Error> {
        match converted {
            Ok((_, policy)) => {
                self.remove_policy(&key);
                for sel in policy_selectors(&policy) {
                    self.add_rule_selector(sel);
                }
                self.policy_index
                    .update_selector(key.clone(), policy.selector.clone());
                self.policies.insert(key, policy);
                Ok(())
            }
            Err(e) => {
                self.remove_policy(&key);
                Err(e)
            }
        }
    }

    fn remove_policy(&mut self, key: &PolicyKey) {
        if let Some(old) = self.policies.remove(key) {
            self.policy_index.remove_selector(key);
            for sel in policy_selectors(&old) {
                self.release_rule_selector(&sel);
            }
        }
    }

    fn add_rule_selector(&mut self, sel: Selector) {
        let id = sel.id();
        match self.rule_selectors.get_mut(&id) {
            Some((_, count)) => *count += 1,
            None => {
                self.ipset_index.update_selector(id.clone(), sel.clone());
                self.rule_selectors.insert(id, (sel, 1));
            }
        }
    }

    fn release_rule_selector(&mut self, sel: &Selector) {
        let id = sel.id();
        if let Some((_, count)) = self.rule_selectors.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                self.rule_selectors.remove(&id);
                self.ipset_index.remove_selector(&id);
            }
        }
    }

    fn parents(ep: &Endpoint) -> Vec<String> {
        let mut parents = vec![namespace_parent(&ep.namespace)];
        if let Some(sa) = &ep.service_account {
            parents.push(service_account_parent(&ep.namespace, sa));
        }
        parents
    }

    fn upsert_endpoint(&mut self, key: EndpointKey, ep: Endpoint) {
        let parents = Self::parents(&ep);
        let local = LocalKey::Workload(key.clone());
        if ep.node == self.hostname {
            self.policy_index
                .update_item(local, ep.labels.clone(), parents.clone());
        } else {
            self.policy_index.remove_item(&local);
        }
        self.ipset_index
            .update_item(Member::Endpoint(key.clone()), ep.labels.clone(), parents);
        self.endpoints.insert(key, ep);
    }

    fn remove_endpoint(&mut self, key: &EndpointKey) {
        self.endpoints.remove(key);
        self.policy_index
            .remove_item(&LocalKey::Workload(key.clone()));
        self.ipset_index.remove_item(&Member::Endpoint(key.clone()));
    }

    fn upsert_host_endpoint(&mut self, name: String, info: HostEndpointInfo) {
        let local = LocalKey::Host(name.clone());
        if info.node == self.hostname {
            self.policy_index
                .update_item(local, info.labels.clone(), Vec::new());
        } else {
            self.policy_index.remove_item(&local);
        }
        self.ipset_index
            .update_item(Member::Host(name.clone()), info.labels.clone(), Vec::new());
        self.host_endpoints.insert(name, info);
    }

    fn remove_host_endpoint(&mut self, name: &str) {
        self.host_endpoints.remove(name);
        self.policy_index
            .remove_item(&LocalKey::Host(name.to_string()));
        self.ipset_index
            .remove_item(&Member::Host(name.to_string()));
    }

    /// This node's HostEndpoints that name one interface, by name.
    pub fn local_host_endpoints(&self) -> impl Iterator<Item = (&String, &HostEndpointInfo)> {
        self.host_endpoints.iter().filter(|(_, h)| {
            h.node == self.hostname && !h.interface.is_empty() && h.interface != "*"
        })
    }

    /// [`CalcGraph::policies_for`] for a HostEndpoint of this node.
    pub fn policies_for_host(&self, name: &str, dir: Dir) -> Vec<TierPolicies> {
        self.policies_for_local(&LocalKey::Host(name.to_string()), dir)
    }

    fn upsert_net_set(
        &mut self,
        key: NetSetKey,
        converted: Result<NetSet, Error>,
    ) -> Result<(), Error> {
        match converted {
            Ok(set) => {
                let parents = if set.namespace.is_empty() {
                    Vec::new()
                } else {
                    vec![namespace_parent(&set.namespace)]
                };
                self.ipset_index.update_item(
                    Member::NetSet(key.clone()),
                    set.labels.clone(),
                    parents,
                );
                self.net_sets.insert(key, set);
                Ok(())
            }
            Err(e) => {
                self.remove_net_set(&key);
                Err(e)
            }
        }
    }

    fn remove_net_set(&mut self, key: &NetSetKey) {
        self.net_sets.remove(key);
        self.ipset_index.remove_item(&Member::NetSet(key.clone()));
    }

    /// This node's name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Whether the datastore has been fully listed once.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// Whether anything changed since [`CalcGraph::clear_dirty`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Marks the current state as programmed.
    pub fn clear_dirty(&mut self) {
        self.dirty = false;
    }

    /// The endpoints on this node, by key.
    pub fn local_endpoints(&self) -> impl Iterator<Item = (&EndpointKey, &Endpoint)> {
        self.endpoints
            .iter()
            .filter(|(_, ep)| ep.node == self.hostname)
    }

    /// A policy by key.
    pub fn policy(&self, key: &PolicyKey) -> Option<&Policy> {
        self.policies.get(key)
    }

    /// A tier's settings (implicit ones when no Tier resource exists).
    pub fn tier(&self, name: &str) -> TierInfo {
        self.tiers
            .get(name)
            .cloned()
            .unwrap_or_else(|| TierInfo::implicit(name))
    }

    /// The policies that apply to a local endpoint in one direction, grouped
    /// by tier: tiers by order then name, policies by order then name
    /// (no order = after every ordered one). Empty: no policy selects it.
    pub fn policies_for(&self, ep: &EndpointKey, dir: Dir) -> Vec<TierPolicies> {
        self.policies_for_local(&LocalKey::Workload(ep.clone()), dir)
    }

    fn policies_for_local(&self, local: &LocalKey, dir: Dir) -> Vec<TierPolicies> {
        let mut by_tier: BTreeMap<&str, Vec<(&PolicyKey, &Policy)>> = BTreeMap::new();
        for key in self.policy_index.selectors_matching(local) {
            let Some(policy) = self.policies.get(key) else {
                continue;
            };
            let applies = match dir {
                Dir::Ingress => policy.ingress_enabled,
                Dir::Egress => policy.egress_enabled,
            };
            if applies {
                by_tier.entry(&policy.tier).or_default().push((key, policy));
            }
        }
        let mut tiers: Vec<TierPolicies> = Vec::with_capacity(by_tier.len());
        let mut orders = Vec::with_capacity(by_tier.len());
        for (tier, mut policies) in by_tier {
            policies.sort_by(|(ka, a), (kb, b)| {
                order_key(a.order)
                    .total_cmp(&order_key(b.order))
                    .then_with(|| ka.name.cmp(&kb.name))
                    .then_with(|| ka.cmp(kb))
            });
            let info = self.tier(tier);
            orders.push(order_key(info.order));
            tiers.push(TierPolicies {
                tier: tier.to_string(),
                default_action: info.default_action,
                policies: policies.into_iter().map(|(k, _)| k.clone()).collect(),
            });
        }
        let mut indexed: Vec<(f64, TierPolicies)> = orders.into_iter().zip(tiers).collect();
        indexed.sort_by(|(oa, a), (ob, b)| oa.total_cmp(ob).then_with(|| a.tier.cmp(&b.tier)));
        indexed.into_iter().map(|(_, t)| t).collect()
    }

    /// The addresses (endpoint addresses and network-set CIDRs) a rule
    /// selector matches.
    /// Takes the selector's [`Selector::id`].
    pub fn selector_members(&self, selector_id: &str) -> BTreeSet<IpNet> {
        let mut out = BTreeSet::new();
        for member in self.ipset_index.items_matching(&selector_id.to_string()) {
            match member {
                Member::Endpoint(k) => {
                    out.extend(self.endpoints.get(k).into_iter().flat_map(|e| &e.addrs));
                }
                Member::NetSet(k) => {
                    out.extend(self.net_sets.get(k).into_iter().flat_map(|s| &s.nets));
                }
                Member::Host(k) => {
                    out.extend(
                        self.host_endpoints
                            .get(k)
                            .into_iter()
                            .flat_map(|h| &h.addrs),
                    );
                }
            }
        }
        out
    }

    /// `(address, protocol, port)` of every endpoint the selector matches
    /// that has a port named `name` (of `protocol`, when given).
    pub fn named_port_members(
        &self,
        selector_id: &str,
        protocol: Option<u8>,
        name: &str,
    ) -> BTreeSet<(IpNet, u8, u16)> {
        let mut out = BTreeSet::new();
        for member in self.ipset_index.items_matching(&selector_id.to_string()) {
            let Member::Endpoint(k) = member else {
                continue;
            };
            let Some(ep) = self.endpoints.get(k) else {
                continue;
            };
            for port in &ep.ports {
                if port.name == name && protocol.is_none_or(|p| p == port.protocol) {
                    for addr in &ep.addrs {
                        out.insert((*addr, port.protocol, port.port));
                    }
                }
            }
        }
        out
    }

    /// Number of distinct rule selectors (Felix's `active_local_selectors`
    /// counts those of active policies only; this counts all).
    pub fn rule_selector_count(&self) -> usize {
        self.rule_selectors.len()
    }
}

fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

#[cfg(test)]
pub(crate) mod tests;
