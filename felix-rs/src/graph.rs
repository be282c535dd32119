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
use twill_selector::index::{LabelIndex, MatchEvent};

use crate::Error;
use crate::model::{
    self, Endpoint, EndpointKey, HostEndpointInfo, K8S_NAMESPACE_NAME_LABEL, NAME_LABEL, NetSet,
    Policy, PolicyKey, PolicyRule, ProfileStep, SERVICE_ACCOUNT_LABEL_PREFIX, TierInfo, Update,
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
pub enum LocalKey {
    /// A workload endpoint on this node.
    Workload(EndpointKey),
    /// A HostEndpoint of this node, by name.
    Host(String),
}

/// What changed in the graph since the last [`CalcGraph::take_changes`]:
/// what the incremental renderer has to redo. A key listed here may be
/// unchanged after all (the renderer then finds nothing to do for it);
/// a change not listed here is a bug the incremental-equals-full property
/// test exists to catch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything may have changed (a new graph, a Tier changed).
    pub all: bool,
    /// Local endpoints (or endpoints that were local) whose interface,
    /// addresses or applicable policies may have changed.
    pub locals: BTreeSet<LocalKey>,
    /// Policies created, changed or removed.
    pub policies: BTreeSet<PolicyKey>,
    /// Rule selectors (by [`Selector::id`]) whose members' addresses or
    /// named ports may have changed.
    pub selectors: BTreeSet<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.locals.is_empty() && self.policies.is_empty() && self.selectors.is_empty()
    }
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

/// An update whose resource is already converted to the graph's model
/// (selectors parsed, networks checked). Converting needs no graph state,
/// so the daemon prepares updates on its watch tasks, in parallel, and its
/// owner task only indexes them ([`CalcGraph::on_prepared`]).
#[derive(Debug)]
pub struct Prepared(Box<PreparedKind>);

#[derive(Debug)]
enum PreparedKind {
    /// A policy's key and its conversion.
    Policy(PolicyKey, Result<(PolicyKey, Policy), Error>),
    /// A workload endpoint's key and its conversion.
    Endpoint(EndpointKey, Result<(EndpointKey, Endpoint), Error>),
    /// Anything else: applied as it is.
    Other(Update),
}

impl From<Update> for Prepared {
    fn from(update: Update) -> Self {
        Prepared(Box::new(match update {
            Update::PolicyUpserted(p) => PreparedKind::Policy(
                PolicyKey {
                    kind: model::PolicyKind::Calico,
                    namespace: p.namespace().unwrap_or("default").to_string(),
                    name: p.name().to_string(),
                },
                model::convert_network_policy(&p),
            ),
            Update::GlobalPolicyUpserted(p) => PreparedKind::Policy(
                PolicyKey {
                    kind: model::PolicyKind::Global,
                    namespace: String::new(),
                    name: p.name().to_string(),
                },
                model::convert_global_policy(&p),
            ),
            Update::KubernetesPolicyUpserted(p) => PreparedKind::Policy(
                PolicyKey {
                    kind: model::PolicyKind::Kubernetes,
                    namespace: p.namespace().unwrap_or("default").to_string(),
                    name: p.name().to_string(),
                },
                model::translate_kubernetes_policy(&p),
            ),
            Update::WorkloadEndpointUpserted(wep) => PreparedKind::Endpoint(
                EndpointKey {
                    namespace: wep.namespace().unwrap_or("default").to_string(),
                    name: wep.name().to_string(),
                },
                model::convert_endpoint(&wep),
            ),
            other => PreparedKind::Other(other),
        }))
    }
}

/// The calculation graph. Feed it [`Update`]s; read what to program.
#[derive(Debug)]
pub struct CalcGraph {
    hostname: String,
    // Boxed: a map node's empty slots then cost a pointer, not a value.
    policies: BTreeMap<PolicyKey, Box<Policy>>,
    tiers: BTreeMap<String, TierInfo>,
    endpoints: BTreeMap<EndpointKey, Box<Endpoint>>,
    net_sets: BTreeMap<NetSetKey, NetSet>,
    host_endpoints: BTreeMap<String, HostEndpointInfo>,
    /// The host's interface addresses: address → interface.
    host_addresses: BTreeMap<std::net::IpAddr, String>,
    policy_index: LabelIndex<PolicyKey, LocalKey, String>,
    ipset_index: LabelIndex<String, Member, String>,
    /// The number of policy references to each rule selector, by ID (the
    /// selector itself is held by the IP-set index alone).
    rule_selectors: BTreeMap<String, usize>,
    changes: Changes,
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
        out.extend(side.selector.as_deref().cloned());
        out.extend(side.not_selector.as_deref().cloned());
        if side
            .ports
            .iter()
            .chain(&side.not_ports)
            .any(|p| p.is_named())
        {
            out.push(
                side.selector
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(Selector::all),
            );
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
            host_addresses: BTreeMap::new(),
            policy_index: LabelIndex::new(),
            ipset_index: LabelIndex::new(),
            rule_selectors: BTreeMap::new(),
            changes: Changes {
                all: true,
                ..Changes::default()
            },
            dirty: true,
            in_sync: false,
        }
    }

    /// Applies one update. A resource that cannot be converted is removed
    /// (as if deleted) and the error returned; the rest of the graph is intact.
    /// A policy with rules felix-rs cannot enforce as written is kept,
    /// those rules made fail closed, and [`Error::Unsupported`] returned.
    pub fn on_update(&mut self, update: Update) -> Result<(), Error> {
        self.on_prepared(Prepared::from(update))
    }

    /// Applies one update converted beforehand (see [`Prepared`]); the
    /// same as [`CalcGraph::on_update`] of the update it was made from.
    pub fn on_prepared(&mut self, prepared: Prepared) -> Result<(), Error> {
        self.dirty = true;
        match *prepared.0 {
            PreparedKind::Policy(key, converted) => self.upsert_policy(key, converted),
            PreparedKind::Endpoint(key, converted) => match converted {
                Ok((key, ep)) => {
                    self.upsert_endpoint(key, ep);
                    Ok(())
                }
                Err(e) => {
                    self.remove_endpoint(&key);
                    Err(e)
                }
            },
            PreparedKind::Other(update) => self.apply(update),
        }
    }

    fn apply(&mut self, update: Update) -> Result<(), Error> {
        match update {
            update @ (Update::PolicyUpserted(_)
            | Update::GlobalPolicyUpserted(_)
            | Update::KubernetesPolicyUpserted(_)
            | Update::WorkloadEndpointUpserted(_)) => self.on_prepared(Prepared::from(update)),
            Update::PolicyDeleted { namespace, name } => {
                self.remove_policy(&PolicyKey {
                    kind: model::PolicyKind::Calico,
                    namespace,
                    name,
                });
                Ok(())
            }
            Update::GlobalPolicyDeleted { name } => {
                self.remove_policy(&PolicyKey {
                    kind: model::PolicyKind::Global,
                    namespace: String::new(),
                    name,
                });
                Ok(())
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
                let info = TierInfo::from_tier(&t);
                if self.tiers.get(t.name()) != Some(&info) {
                    self.changes.all = true;
                }
                self.tiers.insert(t.name().to_string(), info);
                Ok(())
            }
            Update::TierDeleted { name } => {
                if self.tiers.remove(&name).is_some() {
                    self.changes.all = true;
                }
                Ok(())
            }
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
                let events = self
                    .policy_index
                    .update_parent(parent.clone(), labels.clone());
                self.note_local_events(events);
                let events = self.ipset_index.update_parent(parent, labels);
                self.note_member_events(events);
                Ok(())
            }
            Update::NamespaceDeleted { name } => {
                let parent = namespace_parent(&name);
                let events = self.policy_index.remove_parent(&parent);
                self.note_local_events(events);
                let events = self.ipset_index.remove_parent(&parent);
                self.note_member_events(events);
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
                let events = self
                    .policy_index
                    .update_parent(parent.clone(), labels.clone());
                self.note_local_events(events);
                let events = self.ipset_index.update_parent(parent, labels);
                self.note_member_events(events);
                Ok(())
            }
            Update::ServiceAccountDeleted { namespace, name } => {
                let parent = service_account_parent(&namespace, &name);
                let events = self.policy_index.remove_parent(&parent);
                self.note_local_events(events);
                let events = self.ipset_index.remove_parent(&parent);
                self.note_member_events(events);
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
            Update::ProfileUpserted(profile) => {
                let key = PolicyKey {
                    kind: model::PolicyKind::Profile,
                    namespace: String::new(),
                    name: profile.name().to_string(),
                };
                self.upsert_profile(key, model::convert_profile(&profile))
            }
            Update::ProfileDeleted { name } => {
                let key = PolicyKey {
                    kind: model::PolicyKind::Profile,
                    namespace: String::new(),
                    name,
                };
                if self.policies.contains_key(&key) {
                    self.remove_policy(&key);
                    self.note_profile_users(&key.name);
                }
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
            Update::HostInterfaceAddresses(interfaces) => {
                self.set_host_addresses(interfaces);
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
                let events = self
                    .policy_index
                    .update_selector(key.clone(), policy.selector.clone());
                self.note_local_events(events);
                let selected: Vec<LocalKey> =
                    self.policy_index.items_matching(&key).cloned().collect();
                self.changes.locals.extend(selected);
                self.changes.policies.insert(key.clone());
                let unsupported = unsupported_error(&key, &policy);
                self.policies.insert(key, Box::new(policy));
                unsupported.map_or(Ok(()), Err)
            }
            Err(e) => {
                self.remove_policy(&key);
                Err(e)
            }
        }
    }

    /// A Profile's rules are kept like a policy's, but no selector picks
    /// them: endpoints name their profiles.
    fn upsert_profile(
        &mut self,
        key: PolicyKey,
        converted: Result<(PolicyKey, Policy), Error>,
    ) -> Result<(), Error> {
        let existed = self.policies.contains_key(&key);
        self.remove_policy(&key);
        let result = match converted {
            Ok((_, profile)) => {
                for sel in policy_selectors(&profile) {
                    self.add_rule_selector(sel);
                }
                self.changes.policies.insert(key.clone());
                let unsupported = unsupported_error(&key, &profile);
                self.policies.insert(key.clone(), Box::new(profile));
                unsupported.map_or(Ok(()), Err)
            }
            Err(e) => Err(e),
        };
        if existed != self.policies.contains_key(&key) {
            self.note_profile_users(&key.name);
        }
        result
    }

    /// Local endpoints listing profile `name` (whose chains jump to it or
    /// drop for want of it).
    fn note_profile_users(&mut self, name: &str) {
        let users: Vec<LocalKey> = self
            .local_endpoints()
            .filter(|(_, ep)| ep.profiles.iter().any(|p| p == name))
            .map(|(key, _)| LocalKey::Workload(key.clone()))
            .chain(
                self.host_endpoints
                    .iter()
                    .filter(|(_, h)| {
                        h.node == self.hostname && h.profiles.iter().any(|p| p == name)
                    })
                    .map(|(key, _)| LocalKey::Host(key.clone())),
            )
            .collect();
        self.changes.locals.extend(users);
    }

    /// What each of `profiles` contributes after the tiers, in order.
    pub fn profile_steps(&self, profiles: &[String]) -> Vec<ProfileStep> {
        profiles
            .iter()
            .map(|name| {
                let key = PolicyKey {
                    kind: model::PolicyKind::Profile,
                    namespace: String::new(),
                    name: name.clone(),
                };
                if name.starts_with(model::NAMESPACE_PROFILE_PREFIX) {
                    ProfileStep::AllowAll
                } else if name.starts_with(model::SERVICE_ACCOUNT_PROFILE_PREFIX) {
                    ProfileStep::NoRules
                } else if self.policies.contains_key(&key) {
                    ProfileStep::Rules(key)
                } else if name == model::DEFAULT_ALLOW_PROFILE {
                    ProfileStep::AllowAll
                } else {
                    ProfileStep::Missing
                }
            })
            .collect()
    }

    fn remove_policy(&mut self, key: &PolicyKey) {
        if let Some(old) = self.policies.remove(key) {
            self.changes.policies.insert(key.clone());
            let selected: Vec<LocalKey> = self.policy_index.items_matching(key).cloned().collect();
            self.changes.locals.extend(selected);
            let events = self.policy_index.remove_selector(key);
            self.note_local_events(events);
            for sel in policy_selectors(&old) {
                self.release_rule_selector(&sel);
            }
        }
    }

    fn add_rule_selector(&mut self, sel: Selector) {
        let id = sel.id();
        match self.rule_selectors.get_mut(&id) {
            Some(count) => *count += 1,
            None => {
                let events = self.ipset_index.update_selector(id.clone(), sel);
                self.note_member_events(events);
                self.changes.selectors.insert(id.clone());
                self.rule_selectors.insert(id, 1);
            }
        }
    }

    fn release_rule_selector(&mut self, sel: &Selector) {
        let id = sel.id();
        if let Some(count) = self.rule_selectors.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                self.rule_selectors.remove(&id);
                let events = self.ipset_index.remove_selector(&id);
                self.note_member_events(events);
                self.changes.selectors.insert(id);
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

    /// Local endpoints whose policies changed.
    fn note_local_events(&mut self, events: Vec<MatchEvent<PolicyKey, LocalKey>>) {
        for event in events {
            let (MatchEvent::MatchStarted(_, local) | MatchEvent::MatchStopped(_, local)) = event;
            self.changes.locals.insert(local);
        }
    }

    /// Rule selectors whose members changed.
    fn note_member_events(&mut self, events: Vec<MatchEvent<String, Member>>) {
        for event in events {
            let (MatchEvent::MatchStarted(selector, _) | MatchEvent::MatchStopped(selector, _)) =
                event;
            self.changes.selectors.insert(selector);
        }
    }

    /// Every selector matching `member` (before a change of its addresses).
    fn note_member_content(&mut self, member: &Member) {
        let selectors: Vec<String> = self
            .ipset_index
            .selectors_matching(member)
            .cloned()
            .collect();
        self.changes.selectors.extend(selectors);
    }

    fn upsert_endpoint(&mut self, key: EndpointKey, mut ep: Endpoint) {
        let parents = Self::parents(&ep);
        let local = LocalKey::Workload(key.clone());
        let member = Member::Endpoint(key.clone());
        let old = self.endpoints.get(&key);
        if old.is_some_and(|o| o.node == self.hostname) || ep.node == self.hostname {
            self.changes.locals.insert(local.clone());
        }
        if old.is_none_or(|o| o.addrs != ep.addrs || o.ports != ep.ports) {
            self.note_member_content(&member);
        }
        // The labels live in the indexes alone (interned there): a copy in
        // the stored endpoint would be a third one ([`CalcGraph::endpoint_labels`]).
        let labels = std::mem::take(&mut ep.labels);
        let events = if ep.node == self.hostname {
            self.policy_index
                .update_item(local, labels.clone(), parents.clone())
        } else {
            self.policy_index.remove_item(&local)
        };
        self.note_local_events(events);
        let events = self.ipset_index.update_item(member, labels, parents);
        self.note_member_events(events);
        self.endpoints.insert(key, Box::new(ep));
    }

    fn remove_endpoint(&mut self, key: &EndpointKey) {
        if let Some(old) = self.endpoints.remove(key)
            && old.node == self.hostname
        {
            self.changes.locals.insert(LocalKey::Workload(key.clone()));
        }
        let events = self
            .policy_index
            .remove_item(&LocalKey::Workload(key.clone()));
        self.note_local_events(events);
        let events = self.ipset_index.remove_item(&Member::Endpoint(key.clone()));
        self.note_member_events(events);
    }

    fn upsert_host_endpoint(&mut self, name: String, mut info: HostEndpointInfo) {
        info.resolved_interface = self.interface_carrying(&info);
        let local = LocalKey::Host(name.clone());
        let member = Member::Host(name.clone());
        let old = self.host_endpoints.get(&name);
        if old.is_some_and(|o| o.node == self.hostname) || info.node == self.hostname {
            self.changes.locals.insert(local.clone());
        }
        if old.is_none_or(|o| o.addrs != info.addrs) {
            self.note_member_content(&member);
        }
        let events = if info.node == self.hostname {
            self.policy_index
                .update_item(local, info.labels.clone(), Vec::new())
        } else {
            self.policy_index.remove_item(&local)
        };
        self.note_local_events(events);
        let events = self
            .ipset_index
            .update_item(member, info.labels.clone(), Vec::new());
        self.note_member_events(events);
        self.host_endpoints.insert(name, info);
    }

    fn remove_host_endpoint(&mut self, name: &str) {
        if let Some(old) = self.host_endpoints.remove(name)
            && old.node == self.hostname
        {
            self.changes.locals.insert(LocalKey::Host(name.to_string()));
        }
        let events = self
            .policy_index
            .remove_item(&LocalKey::Host(name.to_string()));
        self.note_local_events(events);
        let events = self
            .ipset_index
            .remove_item(&Member::Host(name.to_string()));
        self.note_member_events(events);
    }

    /// The interface carrying one of an interface-less HostEndpoint's
    /// expected addresses (the first by name; empty: none, or it names one).
    fn interface_carrying(&self, info: &HostEndpointInfo) -> String {
        if !info.interface.is_empty() || info.node != self.hostname {
            return String::new();
        }
        info.addrs
            .iter()
            .filter_map(|net| self.host_addresses.get(&net.addr()))
            .min()
            .cloned()
            .unwrap_or_default()
    }

    /// Takes the host's interface addresses; interface-less HostEndpoints
    /// whose interface changed are re-rendered.
    fn set_host_addresses(&mut self, interfaces: BTreeMap<String, Vec<std::net::IpAddr>>) {
        self.host_addresses = interfaces
            .into_iter()
            .flat_map(|(iface, addrs)| addrs.into_iter().map(move |a| (a, iface.clone())))
            .collect();
        let resolved: Vec<(String, String)> = self
            .host_endpoints
            .iter()
            .filter_map(|(name, info)| {
                let iface = self.interface_carrying(info);
                (iface != info.resolved_interface).then(|| (name.clone(), iface))
            })
            .collect();
        for (name, iface) in resolved {
            if let Some(info) = self.host_endpoints.get_mut(&name) {
                info.resolved_interface = iface;
            }
            self.changes.locals.insert(LocalKey::Host(name));
        }
    }

    /// Whether a local HostEndpoint has no `interfaceName`: the host's
    /// interface addresses are then wanted
    /// ([`Update::HostInterfaceAddresses`], when HostEndpoints change and on
    /// every resync).
    pub fn wants_host_addresses(&self) -> bool {
        self.host_endpoints
            .values()
            .any(|h| h.node == self.hostname && h.interface.is_empty())
    }

    /// This node's HostEndpoints with an interface (named, `*`, or
    /// resolved from their expected addresses), by name.
    pub fn local_host_endpoints(&self) -> impl Iterator<Item = (&String, &HostEndpointInfo)> {
        self.host_endpoints
            .iter()
            .filter(|(_, h)| h.node == self.hostname && !h.effective_interface().is_empty())
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
                let member = Member::NetSet(key.clone());
                if self
                    .net_sets
                    .get(&key)
                    .is_none_or(|old| old.nets != set.nets)
                {
                    self.note_member_content(&member);
                }
                let events = self
                    .ipset_index
                    .update_item(member, set.labels.clone(), parents);
                self.note_member_events(events);
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
        let events = self.ipset_index.remove_item(&Member::NetSet(key.clone()));
        self.note_member_events(events);
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

    /// What changed since the last call (the first call: everything).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// A workload endpoint (local or remote) by key. Its `labels` are
    /// empty: the graph keeps them in its indexes only
    /// ([`CalcGraph::endpoint_labels`]).
    pub fn endpoint(&self, key: &EndpointKey) -> Option<&Endpoint> {
        self.endpoints.get(key).map(Box::as_ref)
    }

    /// A workload endpoint's own labels (without inherited namespace and
    /// service-account labels).
    pub fn endpoint_labels(&self, key: &EndpointKey) -> Option<BTreeMap<String, String>> {
        self.ipset_index.own_labels(&Member::Endpoint(key.clone()))
    }

    /// A HostEndpoint (of any node) by name.
    pub fn host_endpoint(&self, name: &str) -> Option<&HostEndpointInfo> {
        self.host_endpoints.get(name)
    }

    /// The endpoints on this node, by key.
    pub fn local_endpoints(&self) -> impl Iterator<Item = (&EndpointKey, &Endpoint)> {
        self.endpoints
            .iter()
            .map(|(key, ep)| (key, ep.as_ref()))
            .filter(|(_, ep)| ep.node == self.hostname)
    }

    /// A policy by key.
    pub fn policy(&self, key: &PolicyKey) -> Option<&Policy> {
        self.policies.get(key).map(Box::as_ref)
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

/// The error naming what of `policy` is not enforced as written, if any.
fn unsupported_error(key: &PolicyKey, policy: &Policy) -> Option<Error> {
    if policy.unsupported.is_empty() {
        return None;
    }
    let fields: Vec<&str> = policy.unsupported.iter().map(|(f, _)| f.as_str()).collect();
    let mut reasons: Vec<&str> = policy.unsupported.iter().map(|(_, r)| *r).collect();
    reasons.dedup();
    Some(Error::Unsupported {
        policy: key.to_string(),
        fields: fields.join(", "),
        reason: reasons.join("; "),
    })
}

fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

#[cfg(test)]
pub(crate) mod tests;
