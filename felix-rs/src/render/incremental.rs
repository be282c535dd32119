//! Incremental rendering: the desired ruleset is kept between applies and
//! only what the graph's [`Changes`] name is redone.
//!
//! * Local endpoints are rendered per interface name (the chains
//!   `from-<iface>` / `to-<iface>`, or one per `render::host::HostHook` for
//!   HostEndpoints,
//!   their dispatch entries and anti-spoofing elements): a changed endpoint
//!   re-renders the interfaces it left and joined.
//! * Policy chains are reference-counted by the interfaces that jump to
//!   them: rendered when the first one does, removed after the last; a
//!   changed policy re-renders its chains if they exist.
//! * Sets are reference-counted by the policy chains that use them; a rule
//!   selector whose members changed refills only its sets.
//!
//! [`render`](super::render) stays the reference: after any sequence of
//! updates the two give the same ruleset (a property test checks it), and
//! [`IncrementalRender::take_touched`] names every chain, set and map that
//! may differ from the previous result, so that
//! [`plan_touched`](crate::plan::plan_touched) can look at those alone.

use std::collections::{BTreeMap, BTreeSet};

use super::host::{ALL_INTERFACES, HostHook};
use super::{
    FROM_DISPATCH_MAP, Family, RenderCache, RenderConfig, Renderer, SOURCE_V4_SET, SOURCE_V6_SET,
    SetRef, TO_DISPATCH_MAP, from_endpoint_chain, policy_chain_name, to_endpoint_chain,
};
use crate::graph::{CalcGraph, Changes, Dir, LocalKey};
use crate::model::{EndpointKey, PolicyKey};
use crate::ruleset::{Chain, Ruleset, Set, SetKind, Touched, VerdictMap};

/// What the chains of one interface refer to.
#[derive(Debug, Default)]
struct Group {
    /// Policy chains they jump to.
    policies: BTreeSet<(PolicyKey, Dir)>,
    /// Anti-spoofing elements: (set name, element).
    sources: BTreeSet<(&'static str, String)>,
}

/// Local endpoints by the interface they are rendered under.
#[derive(Debug)]
struct Groups<K> {
    iface_of: BTreeMap<K, String>,
    members: BTreeMap<String, BTreeSet<K>>,
    rendered: BTreeMap<String, Group>,
}

impl<K> Default for Groups<K> {
    fn default() -> Self {
        Self {
            iface_of: BTreeMap::new(),
            members: BTreeMap::new(),
            rendered: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Groups<K> {
    /// Moves `key` under `iface` (`None`: not rendered); the interfaces it
    /// left and joined go into `dirty`.
    fn place(&mut self, key: &K, iface: Option<&str>, dirty: &mut BTreeSet<String>) {
        if let Some(old) = self.iface_of.remove(key) {
            if let Some(members) = self.members.get_mut(&old) {
                members.remove(key);
                if members.is_empty() {
                    self.members.remove(&old);
                }
            }
            dirty.insert(old);
        }
        if let Some(iface) = iface {
            self.iface_of.insert(key.clone(), iface.to_string());
            self.members
                .entry(iface.to_string())
                .or_default()
                .insert(key.clone());
            dirty.insert(iface.to_string());
        }
    }
}

fn source_set(family: Family) -> &'static str {
    match family {
        Family::V4 => SOURCE_V4_SET,
        Family::V6 => SOURCE_V6_SET,
    }
}

impl SetRef {
    fn name(&self) -> &str {
        match self {
            SetRef::Selector(_, _, name) | SetRef::Fixed(name, _) => name,
            SetRef::NamedPort(_, _, _, _, name) => name,
        }
    }

    /// The rule selector whose members fill the set, if any.
    fn selector(&self) -> Option<&str> {
        match self {
            SetRef::Selector(_, id, _) | SetRef::NamedPort(_, id, _, _, _) => Some(id),
            SetRef::Fixed(..) => None,
        }
    }
}

/// The desired ruleset, kept up to date from the graph's [`Changes`].
///
/// ```text
/// graph.on_update(..)*  ──►  graph.take_changes()  ──►  update(&graph, changes)
///                                                         │ ruleset(): the desired Ruleset
///                                                         └ take_touched(): what may differ
/// ```
#[derive(Debug)]
pub struct IncrementalRender {
    config: RenderConfig,
    ruleset: Ruleset,
    workloads: Groups<EndpointKey>,
    hosts: Groups<String>,
    /// Rendered policy chains, with the number of interfaces jumping to each.
    policy_refs: BTreeMap<(PolicyKey, Dir), usize>,
    /// The sets each rendered policy chain refers to (one entry per use).
    policy_sets: BTreeMap<(PolicyKey, Dir), Vec<SetRef>>,
    /// Sets by name, with the number of uses by rendered policy chains.
    set_refs: BTreeMap<String, (SetRef, usize)>,
    /// Names of the sets filled from each rule selector, by selector ID.
    selector_sets: BTreeMap<String, BTreeSet<String>>,
    touched: Touched,
    built: bool,
    /// Whether the skeleton has the HostEndpoint parts (rebuilt when the
    /// first HostEndpoint comes or the last goes).
    with_hosts: bool,
}

impl IncrementalRender {
    /// A renderer that builds everything on its first [`update`](Self::update).
    pub fn new(config: RenderConfig) -> Self {
        Self {
            config,
            ruleset: Ruleset::default(),
            workloads: Groups::default(),
            hosts: Groups::default(),
            policy_refs: BTreeMap::new(),
            policy_sets: BTreeMap::new(),
            set_refs: BTreeMap::new(),
            selector_sets: BTreeMap::new(),
            touched: Touched::everything(),
            built: false,
            with_hosts: false,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RenderConfig {
        &self.config
    }

    /// Changes the settings; a different config rebuilds everything on the
    /// next [`update`](Self::update).
    pub fn set_config(&mut self, config: RenderConfig) {
        if config != self.config {
            self.config = config;
            self.built = false;
        }
    }

    /// The desired ruleset as of the last [`update`](Self::update).
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// What may differ from the ruleset as it was at the previous call (the
    /// first call: everything).
    pub fn take_touched(&mut self) -> Touched {
        std::mem::take(&mut self.touched)
    }

    /// [`update`](Self::update) with the changes taken from `graph`.
    pub fn sync(&mut self, graph: &mut CalcGraph) {
        let changes = graph.take_changes();
        self.update(graph, changes);
    }

    /// Brings the ruleset up to date with `graph`, given what changed in it
    /// since the previous call (`graph.take_changes()`).
    pub fn update(&mut self, graph: &CalcGraph, changes: Changes) {
        if !self.built || changes.all || super::host::any_local(graph) != self.with_hosts {
            self.rebuild(graph);
            return;
        }
        let mut dirty_workloads = BTreeSet::new();
        let mut dirty_hosts = BTreeSet::new();
        for local in &changes.locals {
            match local {
                LocalKey::Workload(key) => {
                    let iface = workload_iface(graph, key);
                    self.workloads
                        .place(key, iface.as_deref(), &mut dirty_workloads);
                }
                LocalKey::Host(name) => {
                    let iface = host_iface(graph, name);
                    self.hosts.place(name, iface.as_deref(), &mut dirty_hosts);
                }
            }
        }
        let mut rendered = BTreeSet::new();
        for iface in &dirty_workloads {
            self.render_workloads(graph, iface, &mut rendered);
        }
        for iface in &dirty_hosts {
            self.render_hosts(graph, iface, &mut rendered);
        }
        for key in &changes.policies {
            for dir in [Dir::Ingress, Dir::Egress] {
                let chain = (key.clone(), dir);
                if self.policy_refs.contains_key(&chain) && !rendered.contains(&chain) {
                    self.render_policy(graph, &chain);
                }
            }
        }
        for selector in &changes.selectors {
            self.refill(graph, selector);
        }
    }

    /// Renders everything from scratch.
    fn rebuild(&mut self, graph: &CalcGraph) {
        let config = self.config.clone();
        *self = Self::new(config);
        self.built = true;
        let mut cache = RenderCache::default();
        let mut r = Renderer::scratch(graph, &mut cache);
        self.with_hosts = super::host::any_local(graph);
        r.skeleton(&self.config, self.with_hosts);
        self.ruleset.chains = std::mem::take(&mut r.out.chains);
        // The NAT-outgoing sets (render::nat) come with the skeleton.
        self.ruleset.sets = std::mem::take(&mut r.out.sets);
        // The HostEndpoint maps come with the skeleton (render::host).
        self.ruleset.maps = std::mem::take(&mut r.out.maps);
        for map in [FROM_DISPATCH_MAP, TO_DISPATCH_MAP] {
            self.ruleset
                .maps
                .insert(map.to_string(), VerdictMap::default());
        }
        for (name, kind) in [
            (SOURCE_V4_SET, SetKind::IfaceIpv4),
            (SOURCE_V6_SET, SetKind::IfaceIpv6),
        ] {
            self.ruleset.sets.insert(
                name.to_string(),
                Set {
                    kind,
                    elements: BTreeSet::new(),
                },
            );
        }
        let (mut workloads, mut hosts) = (BTreeSet::new(), BTreeSet::new());
        for (key, _) in graph.local_endpoints() {
            let iface = workload_iface(graph, key);
            self.workloads.place(key, iface.as_deref(), &mut workloads);
        }
        for (name, _) in graph.local_host_endpoints() {
            let iface = host_iface(graph, name);
            self.hosts.place(name, iface.as_deref(), &mut hosts);
        }
        let mut rendered = BTreeSet::new();
        for iface in &workloads {
            self.render_workloads(graph, iface, &mut rendered);
        }
        for iface in &hosts {
            self.render_hosts(graph, iface, &mut rendered);
        }
        self.touched = Touched::everything();
    }

    /// Re-renders the chains of the local workloads using `iface`.
    fn render_workloads(
        &mut self,
        graph: &CalcGraph,
        iface: &str,
        rendered: &mut BTreeSet<(PolicyKey, Dir)>,
    ) {
        let chains = [from_endpoint_chain(iface), to_endpoint_chain(iface)];
        let maps = [FROM_DISPATCH_MAP, TO_DISPATCH_MAP];
        let old = self.workloads.rendered.remove(iface).unwrap_or_default();
        self.clear_group(iface, &chains, &maps, &old);
        let mut group = Group::default();
        if let Some(members) = self.workloads.members.get(iface) {
            let mut cache = RenderCache::default();
            let mut r = Renderer::scratch(graph, &mut cache);
            for key in members {
                if let Some(ep) = graph.endpoint(key) {
                    for (family, element) in r.workload(key, ep) {
                        group.sources.insert((source_set(family), element));
                    }
                }
            }
            group.policies = std::mem::take(&mut r.wanted_policies);
            let mut out = std::mem::take(&mut r.out);
            self.fill_group(iface, &chains, &maps, &mut out, &group);
        }
        self.swap_policies(graph, &old.policies, &group.policies, rendered);
        if self.workloads.members.contains_key(iface) {
            self.workloads.rendered.insert(iface.to_string(), group);
        }
    }

    /// Re-renders the chains of the local HostEndpoints on `iface`.
    fn render_hosts(
        &mut self,
        graph: &CalcGraph,
        iface: &str,
        rendered: &mut BTreeSet<(PolicyKey, Dir)>,
    ) {
        let chains = HostHook::ALL.map(|hook| hook.chain(iface));
        let maps = HostHook::ALL.map(HostHook::map);
        let old = self.hosts.rendered.remove(iface).unwrap_or_default();
        self.clear_group(iface, &chains, &maps, &old);
        let mut group = Group::default();
        if let Some(members) = self.hosts.members.get(iface) {
            let mut cache = RenderCache::default();
            let mut r = Renderer::scratch(graph, &mut cache);
            for name in members {
                if let Some(hep) = graph.host_endpoint(name) {
                    r.host(&self.config, name, hep);
                }
            }
            group.policies = std::mem::take(&mut r.wanted_policies);
            let mut out = std::mem::take(&mut r.out);
            self.fill_group(iface, &chains, &maps, &mut out, &group);
        }
        self.swap_policies(graph, &old.policies, &group.policies, rendered);
        if self.hosts.members.contains_key(iface) {
            self.hosts.rendered.insert(iface.to_string(), group);
        } else if iface == ALL_INTERFACES {
            // The skeleton's fallback rules jump to these: never dangling.
            for chain in chains {
                self.ruleset.chains.insert(chain, Chain::default());
            }
        }
    }

    /// Removes what an interface's chains put in the ruleset.
    fn clear_group(&mut self, iface: &str, chains: &[String], maps: &[&str], old: &Group) {
        for chain in chains {
            self.ruleset.chains.remove(chain);
            self.touched.chains.insert(chain.clone());
        }
        for map in maps {
            if let Some(m) = self.ruleset.maps.get_mut(*map) {
                m.elements.remove(iface);
            }
            self.touched.maps.insert((*map).to_string());
        }
        for (set, element) in &old.sources {
            if let Some(s) = self.ruleset.sets.get_mut(*set) {
                s.elements.remove(element);
            }
            self.touched.sets.insert((*set).to_string());
        }
    }

    /// Puts an interface's freshly rendered chains into the ruleset.
    fn fill_group(
        &mut self,
        iface: &str,
        chains: &[String],
        maps: &[&str],
        out: &mut Ruleset,
        group: &Group,
    ) {
        for (chain, map) in chains.iter().zip(maps) {
            if let Some(rendered) = out.chains.remove(chain) {
                self.ruleset.chains.insert(chain.clone(), rendered);
                if iface == ALL_INTERFACES {
                    // Reached by the fallback rules, not through the maps.
                    continue;
                }
                if let Some(m) = self.ruleset.maps.get_mut(*map) {
                    m.elements
                        .insert(iface.to_string(), format!("goto {chain}"));
                }
            }
        }
        for (set, element) in &group.sources {
            if let Some(s) = self.ruleset.sets.get_mut(*set) {
                s.elements.insert(element.clone());
            }
            self.touched.sets.insert((*set).to_string());
        }
    }

    /// Takes references to the policy chains in `new`, then drops those to
    /// the chains in `old` (in that order, so a chain in both stays).
    fn swap_policies(
        &mut self,
        graph: &CalcGraph,
        old: &BTreeSet<(PolicyKey, Dir)>,
        new: &BTreeSet<(PolicyKey, Dir)>,
        rendered: &mut BTreeSet<(PolicyKey, Dir)>,
    ) {
        for chain in new {
            let count = self.policy_refs.entry(chain.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.render_policy(graph, chain);
                rendered.insert(chain.clone());
            }
        }
        for chain in old {
            let Some(count) = self.policy_refs.get_mut(chain) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.policy_refs.remove(chain);
                let name = policy_chain_name(&chain.0, chain.1);
                self.ruleset.chains.remove(&name);
                self.touched.chains.insert(name);
                for set in self.policy_sets.remove(chain).unwrap_or_default() {
                    self.release_set(&set);
                }
            }
        }
    }

    /// (Re-)renders one policy chain and takes its sets.
    fn render_policy(&mut self, graph: &CalcGraph, chain: &(PolicyKey, Dir)) {
        let mut cache = RenderCache::default();
        let mut r = Renderer::scratch(graph, &mut cache);
        let name = r.policy_chain(&chain.0, chain.1);
        let mut out = std::mem::take(&mut r.out);
        let sets = cache
            .policies
            .remove(chain)
            .map(|cached| cached.sets)
            .unwrap_or_default();
        if let Some(rendered) = out.chains.remove(&name) {
            self.ruleset.chains.insert(name.clone(), rendered);
        }
        self.touched.chains.insert(name);
        for set in &sets {
            self.take_set(set, &mut out);
        }
        for set in self
            .policy_sets
            .insert(chain.clone(), sets)
            .unwrap_or_default()
        {
            self.release_set(&set);
        }
    }

    /// One more use of a set; the first puts it (from `out`) in the ruleset.
    fn take_set(&mut self, set: &SetRef, out: &mut Ruleset) {
        let name = set.name().to_string();
        let entry = self
            .set_refs
            .entry(name.clone())
            .or_insert_with(|| (set.clone(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            if let Some(content) = out.sets.remove(&name) {
                self.ruleset.sets.insert(name.clone(), content);
            }
            if let Some(selector) = set.selector() {
                self.selector_sets
                    .entry(selector.to_string())
                    .or_default()
                    .insert(name.clone());
            }
            self.touched.sets.insert(name);
        }
    }

    /// One use of a set less; after the last it leaves the ruleset.
    fn release_set(&mut self, set: &SetRef) {
        let name = set.name();
        let Some(entry) = self.set_refs.get_mut(name) else {
            return;
        };
        entry.1 -= 1;
        if entry.1 > 0 {
            return;
        }
        self.set_refs.remove(name);
        self.ruleset.sets.remove(name);
        if let Some(selector) = set.selector()
            && let Some(names) = self.selector_sets.get_mut(selector)
        {
            names.remove(name);
            if names.is_empty() {
                self.selector_sets.remove(selector);
            }
        }
        self.touched.sets.insert(name.to_string());
    }

    /// Refills the sets of a rule selector whose members changed.
    fn refill(&mut self, graph: &CalcGraph, selector: &str) {
        let Some(names) = self.selector_sets.get(selector) else {
            return;
        };
        let refs: Vec<SetRef> = names
            .iter()
            .filter_map(|n| self.set_refs.get(n).map(|(set, _)| set.clone()))
            .collect();
        let mut cache = RenderCache::default();
        let mut r = Renderer::scratch(graph, &mut cache);
        for set in &refs {
            r.replay(set);
        }
        let out = std::mem::take(&mut r.out);
        for (name, content) in out.sets {
            if self.ruleset.sets.get(&name) != Some(&content) {
                self.ruleset.sets.insert(name.clone(), content);
                self.touched.sets.insert(name);
            }
        }
    }
}

/// The interface a workload endpoint is rendered under, if it is rendered.
fn workload_iface(graph: &CalcGraph, key: &EndpointKey) -> Option<String> {
    graph
        .endpoint(key)
        .filter(|ep| ep.node == graph.hostname() && !ep.interface.is_empty())
        .map(|ep| ep.interface.clone())
}

/// The interface a HostEndpoint is rendered under, if it is rendered.
fn host_iface(graph: &CalcGraph, name: &str) -> Option<String> {
    graph
        .local_host_endpoints()
        .find(|(n, _)| *n == name)
        .map(|(_, hep)| hep.effective_interface().to_string())
}

#[cfg(test)]
mod tests;
