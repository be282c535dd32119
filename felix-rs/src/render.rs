//! Renders the calculation graph into the desired [`Ruleset`].
//!
//! Everything here is a pure function of the graph and the config: the same
//! inputs give the same ruleset, byte for byte. See the crate docs for the
//! chain layout.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use twill_api::common::{Action, Port, Protocol};
use twill_api::felix::{FelixConfigurationSpec, ProtoPort};
use twill_selector::Selector;

use crate::graph::{CalcGraph, Dir, TierPolicies};
use crate::model::{
    Endpoint, EndpointKey, EntityMatch, PolicyKey, PolicyKind, PolicyRule, ProfileStep,
};
use crate::ruleset::{BaseChain, Chain, Hook, Rule, Ruleset, Set, SetKind, VerdictMap};
use host::TierEnd;

/// Mark bit a policy sets when it allows a packet.
pub const ACCEPT_MARK: u32 = 0x1_0000;
/// Mark bit a policy sets when it passes a packet to the next tier.
pub const PASS_MARK: u32 = 0x2_0000;
/// Prefix of log lines from `Log` rules.
pub const LOG_PREFIX: &str = "twill-packet: ";

/// Chain every packet from a workload interface goes through.
pub const FROM_WORKLOAD_CHAIN: &str = "from-wl";
/// Chain every packet to a workload interface goes through.
pub const TO_WORKLOAD_CHAIN: &str = "to-wl";
/// Verdict map: interface → its from-endpoint chain.
pub const FROM_DISPATCH_MAP: &str = "from-wl-dispatch";
/// Verdict map: interface → its to-endpoint chain.
pub const TO_DISPATCH_MAP: &str = "to-wl-dispatch";
/// `ifname . ipv4_addr` pairs a workload may send from.
pub const SOURCE_V4_SET: &str = "wl-src-v4";
/// `ifname . ipv6_addr` pairs a workload may send from.
pub const SOURCE_V6_SET: &str = "wl-src-v6";

/// What happens to traffic from a workload to its own host once the
/// workload's egress policy allowed it (Felix's `DefaultEndpointToHostAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointToHost {
    /// Drop it (Felix's default).
    #[default]
    Drop,
    /// Accept it.
    Accept,
    /// Give no verdict: the host's other rules decide.
    Return,
}

/// Settings that shape the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Prefix of workload interfaces (`twl`).
    pub interface_prefix: String,
    /// Twill's own interfaces that share the prefix but are not workloads
    /// (the VXLAN devices): never dispatched, never dropped as unknown.
    pub not_workloads: Vec<String>,
    /// Workload-to-host default action.
    pub endpoint_to_host: EndpointToHost,
    /// Host ports a HostEndpoint always accepts traffic to.
    pub failsafe_inbound: Vec<ProtoPort>,
    /// Remote ports the host may always reach through a HostEndpoint.
    pub failsafe_outbound: Vec<ProtoPort>,
    /// NAT outgoing ([`nat`]): the pools and `natOutgoingAddress`.
    pub nat_outgoing: nat::NatOutgoing,
}

impl RenderConfig {
    /// The settings a FelixConfiguration asks for: `defaultEndpointToHostAction`
    /// and the first of `interfacePrefix` (Twill's `twl` when unset: Calico's
    /// default `cali` names Calico's interfaces, not Twill's).
    pub fn from_felix_configuration(spec: &FelixConfigurationSpec) -> Self {
        let mut config = Self {
            failsafe_inbound: spec.effective_failsafe_inbound(),
            failsafe_outbound: spec.effective_failsafe_outbound(),
            ..Self::default()
        };
        if let Some(prefix) = spec
            .interface_prefix
            .as_deref()
            .and_then(|p| p.split(',').next())
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            config.interface_prefix = prefix.to_string();
        }
        config.endpoint_to_host = match spec
            .default_endpoint_to_host_action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("accept") => EndpointToHost::Accept,
            Some("return") => EndpointToHost::Return,
            _ => EndpointToHost::Drop,
        };
        config
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            interface_prefix: twill_kernel::WORKLOAD_INTERFACE_PREFIX.to_string(),
            not_workloads: crate::routing::Family::ALL
                .iter()
                .map(|f| f.interface().to_string())
                .collect(),
            endpoint_to_host: EndpointToHost::Drop,
            failsafe_inbound: FelixConfigurationSpec::default().effective_failsafe_inbound(),
            failsafe_outbound: FelixConfigurationSpec::default().effective_failsafe_outbound(),
            nat_outgoing: nat::NatOutgoing::default(),
        }
    }
}

/// IP family of a rendered rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
    fn addr(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
    fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
    fn icmp(self) -> &'static str {
        match self {
            Family::V4 => "icmp",
            Family::V6 => "icmpv6",
        }
    }
}

/// Lowercase RFC 4648 base32 of the SHA-256 of `text`, `len` characters.
pub(crate) fn hash(text: &str, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(len);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in digest {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && out.len() < len {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    out
}

/// Name of a policy's chain for one direction.
pub fn policy_chain_name(key: &PolicyKey, dir: Dir) -> String {
    let prefix = match (key.kind, dir) {
        (PolicyKind::Profile, Dir::Ingress) => "pri",
        (PolicyKind::Profile, Dir::Egress) => "pro",
        (_, Dir::Ingress) => "pi",
        (_, Dir::Egress) => "po",
    };
    format!("{prefix}-{}", hash(&key.to_string(), 20))
}

/// Name of the chain for traffic from an endpoint's interface.
pub fn from_endpoint_chain(iface: &str) -> String {
    format!("from-{iface}")
}

/// Name of the chain for traffic to an endpoint's interface.
pub fn to_endpoint_chain(iface: &str) -> String {
    format!("to-{iface}")
}

/// Builds a chain, hashing each rule with the one before it.
struct ChainBuilder {
    name: String,
    chain: Chain,
}

impl ChainBuilder {
    fn new(name: &str, base: Option<BaseChain>) -> Self {
        Self {
            name: name.to_string(),
            chain: Chain {
                base,
                rules: Vec::new(),
            },
        }
    }

    fn push(&mut self, body: impl Into<String>) {
        let body = body.into();
        let prev = self.chain.rules.last().map_or("", |r| r.hash.as_str());
        let hash = hash(&format!("{}\n{prev}\n{body}", self.name), 16);
        self.chain.rules.push(Rule { body, hash });
    }

    fn finish(self, out: &mut Ruleset) {
        out.chains.insert(self.name, self.chain);
    }
}

/// Removes nets covered by another net of the set (interval sets reject overlaps).
fn disjoint(nets: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let mut sorted: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
    sorted.sort_by(|a, b| {
        a.network()
            .cmp(&b.network())
            .then(a.prefix_len().cmp(&b.prefix_len()))
    });
    sorted.dedup();
    let mut out: Vec<IpNet> = Vec::with_capacity(sorted.len());
    for net in sorted {
        if out.last().is_some_and(|last| last.contains(&net)) {
            continue;
        }
        out.push(net);
    }
    out
}

/// A net as nft writes it: a bare address for a host prefix.
fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn protocol_text(number: u8) -> String {
    match number {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// Numeric ports and ranges merged into disjoint `(min, max)` intervals.
fn port_intervals(ports: &[Port]) -> Vec<(u16, u16)> {
    let mut ranges: Vec<(u16, u16)> = ports
        .iter()
        .filter_map(|p| match p {
            Port::Single { port, .. } => Some((*port, *port)),
            Port::Range { min, max } => Some((*min, *max)),
            Port::Named(_) => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (min, max) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(min) <= u32::from(last.1) + 1 => last.1 = last.1.max(max),
            _ => out.push((min, max)),
        }
    }
    out
}

fn interval_text((min, max): (u16, u16)) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}-{max}")
    }
}

/// A set a policy chain refers to: enough to rebuild it with current members.
#[derive(Debug, Clone)]
enum SetRef {
    /// A selector's addresses: family, selector ID, set name.
    Selector(Family, String, String),
    /// A set whose elements are fixed by the policy (nets, ports).
    Fixed(String, Set),
    /// A named port on the endpoints a selector matches: family, selector
    /// ID, protocol, port name, set name.
    NamedPort(Family, String, Option<u8>, String, String),
}

#[derive(Debug)]
struct CachedPolicy {
    policy: crate::model::Policy,
    chain: Chain,
    sets: Vec<SetRef>,
}

/// Policy chains rendered by earlier calls, reused while their policy is
/// unchanged (a chain depends only on its policy: set names are derived
/// from content, set members are filled in on every render).
#[derive(Debug, Default)]
pub struct RenderCache {
    policies: BTreeMap<(PolicyKey, Dir), CachedPolicy>,
    /// Endpoint chains by name, with the tiers and profiles they were
    /// rendered from.
    endpoints: BTreeMap<String, (Vec<TierPolicies>, Vec<ProfileStep>, Chain)>,
}

struct Renderer<'a> {
    graph: &'a CalcGraph,
    out: Ruleset,
    /// Policy chains the endpoint chains rendered so far jump to.
    wanted_policies: BTreeSet<(PolicyKey, Dir)>,
    rendered_policies: BTreeSet<(PolicyKey, Dir)>,
    rendered_endpoints: BTreeSet<String>,
    cache: &'a mut RenderCache,
    recording: Option<Vec<SetRef>>,
}

impl<'a> Renderer<'a> {
    /// A renderer writing into an empty ruleset (a full render, or pieces
    /// for the incremental renderer to take).
    fn scratch(graph: &'a CalcGraph, cache: &'a mut RenderCache) -> Self {
        Renderer {
            graph,
            out: Ruleset::default(),
            wanted_policies: BTreeSet::new(),
            rendered_policies: BTreeSet::new(),
            rendered_endpoints: BTreeSet::new(),
            cache,
            recording: None,
        }
    }
}

/// Renders the whole desired ruleset for the graph's local endpoints.
pub fn render(graph: &CalcGraph, config: &RenderConfig) -> Ruleset {
    render_with_cache(graph, config, &mut RenderCache::default())
}

/// [`render`], reusing the policy chains of earlier renders kept in `cache`.
pub fn render_with_cache(
    graph: &CalcGraph,
    config: &RenderConfig,
    cache: &mut RenderCache,
) -> Ruleset {
    let mut r = Renderer::scratch(graph, cache);
    r.skeleton(config, host::any_local(graph));
    let mut from_dispatch = VerdictMap::default();
    let mut to_dispatch = VerdictMap::default();
    let mut sources: BTreeMap<Family, BTreeSet<String>> = BTreeMap::new();
    for (key, ep) in graph.local_endpoints() {
        if ep.interface.is_empty() {
            continue;
        }
        for (family, element) in r.workload(key, ep) {
            sources.entry(family).or_default().insert(element);
        }
        from_dispatch.elements.insert(
            ep.interface.clone(),
            format!("goto {}", from_endpoint_chain(&ep.interface)),
        );
        to_dispatch.elements.insert(
            ep.interface.clone(),
            format!("goto {}", to_endpoint_chain(&ep.interface)),
        );
    }
    r.out.maps.insert(FROM_DISPATCH_MAP.into(), from_dispatch);
    r.out.maps.insert(TO_DISPATCH_MAP.into(), to_dispatch);
    host::render_hosts(&mut r, config);
    for (key, dir) in std::mem::take(&mut r.wanted_policies) {
        r.policy_chain(&key, dir);
    }
    for (family, name, kind) in [
        (Family::V4, SOURCE_V4_SET, SetKind::IfaceIpv4),
        (Family::V6, SOURCE_V6_SET, SetKind::IfaceIpv6),
    ] {
        let elements = sources.remove(&family).unwrap_or_default();
        r.out.sets.insert(name.into(), Set { kind, elements });
    }
    let used = std::mem::take(&mut r.rendered_policies);
    r.cache.policies.retain(|k, _| used.contains(k));
    let used = std::mem::take(&mut r.rendered_endpoints);
    r.cache.endpoints.retain(|k, _| used.contains(k));
    r.out
}

impl Renderer<'_> {
    /// A local workload's two chains; returns its anti-spoofing elements.
    fn workload(&mut self, key: &EndpointKey, ep: &Endpoint) -> Vec<(Family, String)> {
        let from = from_endpoint_chain(&ep.interface);
        let to = to_endpoint_chain(&ep.interface);
        let graph = self.graph;
        let profiles = graph.profile_steps(&ep.profiles);
        self.endpoint_chain(
            &from,
            graph.policies_for(key, Dir::Egress),
            &profiles,
            Dir::Egress,
        );
        self.endpoint_chain(
            &to,
            graph.policies_for(key, Dir::Ingress),
            &profiles,
            Dir::Ingress,
        );
        let mut sources = Vec::new();
        for family in [Family::V4, Family::V6] {
            let nets = ep.addrs.iter().chain(&ep.allow_spoofed).copied();
            for net in disjoint(nets.filter(|n| family.holds(n))) {
                sources.push((family, format!("\"{}\" . {}", ep.interface, net_text(&net))));
            }
        }
        sources
    }

    /// Base chains, the from/to workload chains, and their fail-closed ends;
    /// the HostEndpoint base chains and dispatch only `with_hosts` (none is
    /// on the packet path of a node without HostEndpoints).
    fn skeleton(&mut self, config: &RenderConfig, with_hosts: bool) {
        // nft wildcards only match a prefix, so Twill's own devices that
        // share the workload prefix (only if an operator chose a prefix such
        // as `tw`) are excluded by name: `iifname "tw*" iifname != "twill.vxlan"`.
        let workload = |dir: &str| {
            let mut m = format!("{dir} \"{}*\"", config.interface_prefix);
            let prefix = &config.interface_prefix;
            for name in config
                .not_workloads
                .iter()
                .filter(|n| n.starts_with(prefix))
            {
                m.push_str(&format!(" {dir} != \"{name}\""));
            }
            m
        };
        let (from_wl, to_wl) = (workload("iifname"), workload("oifname"));
        let mut forward = ChainBuilder::new(
            "forward",
            Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
            }),
        );
        if with_hosts {
            forward.push(host::UNTRACKED_ACCEPT);
            forward.push(host::forward_in_rule());
        }
        forward.push(format!("{from_wl} jump {FROM_WORKLOAD_CHAIN}"));
        forward.push(format!("{to_wl} jump {TO_WORKLOAD_CHAIN}"));
        if with_hosts {
            forward.push(host::forward_out_rule());
        }
        forward.finish(&mut self.out);

        let mut input = ChainBuilder::new(
            "input",
            Some(BaseChain {
                hook: Hook::Input,
                priority: 0,
            }),
        );
        if with_hosts {
            input.push(host::UNTRACKED_ACCEPT);
        }
        // Router and neighbour discovery and MLD from pods to the host.
        for icmpv6_type in [130, 131, 132, 133, 135, 136] {
            input.push(format!("{from_wl} icmpv6 type {icmpv6_type} accept"));
        }
        input.push(format!("{from_wl} jump {FROM_WORKLOAD_CHAIN}"));
        match config.endpoint_to_host {
            EndpointToHost::Drop => input.push(format!("{from_wl} drop")),
            EndpointToHost::Accept => input.push(format!("{from_wl} accept")),
            EndpointToHost::Return => {}
        }

        let mut output = ChainBuilder::new(
            "output",
            Some(BaseChain {
                hook: Hook::Output,
                priority: 0,
            }),
        );
        if with_hosts {
            output.push(host::UNTRACKED_ACCEPT);
            host::skeleton(&mut self.out, config, &mut input, &mut output);
        }
        input.finish(&mut self.out);
        output.finish(&mut self.out);

        let mut from = ChainBuilder::new(FROM_WORKLOAD_CHAIN, None);
        from.push("ct state established,related accept");
        from.push("ct state invalid drop");
        from.push(format!(
            "meta nfproto ipv4 iifname . ip saddr != @{SOURCE_V4_SET} drop"
        ));
        from.push(format!(
            "meta nfproto ipv6 ip6 saddr != fe80::/10 iifname . ip6 saddr != @{SOURCE_V6_SET} drop"
        ));
        from.push(format!("iifname vmap @{FROM_DISPATCH_MAP}"));
        // An interface with our prefix that is not programmed yet.
        from.push("drop");
        from.finish(&mut self.out);

        let mut to = ChainBuilder::new(TO_WORKLOAD_CHAIN, None);
        to.push("ct state established,related accept");
        to.push("ct state invalid drop");
        to.push(format!("oifname vmap @{TO_DISPATCH_MAP}"));
        to.push("drop");
        to.finish(&mut self.out);

        nat::render_nat(&config.nat_outgoing, &mut self.out);
    }

    /// An endpoint's chain for one direction: tiers in order, each policy
    /// jumped to unless an earlier one passed; the tier's default action at
    /// its end; then the namespace profile, which allows (the chain returns).
    fn endpoint_chain(
        &mut self,
        name: &str,
        tiers: Vec<TierPolicies>,
        profiles: &[ProfileStep],
        dir: Dir,
    ) {
        self.rendered_endpoints.insert(name.to_string());
        if let Some((cached_tiers, cached_profiles, chain)) = self.cache.endpoints.get(name)
            && *cached_tiers == tiers
            && cached_profiles == profiles
        {
            self.out.chains.insert(name.to_string(), chain.clone());
            for key in tiers.iter().flat_map(|t| &t.policies) {
                self.wanted_policies.insert((key.clone(), dir));
            }
            for step in profiles {
                if let ProfileStep::Rules(key) = step {
                    self.wanted_policies.insert((key.clone(), dir));
                }
            }
            return;
        }
        let mut c = ChainBuilder::new(name, None);
        self.tier_rules(&mut c, &tiers, dir);
        self.profile_rules(&mut c, profiles, dir);
        self.cache.endpoints.insert(
            name.to_string(),
            (tiers, profiles.to_vec(), c.chain.clone()),
        );
        c.finish(&mut self.out);
    }

    /// The endpoint's profiles, reached after every tier (when no tier
    /// applies, or the last one passed): each profile's chain in order,
    /// returning once one allows; a missing profile, or the end of the
    /// list, drops. A namespace profile allows everything, so the chain
    /// simply ends there (the caller's verdict: accept).
    fn profile_rules(&mut self, c: &mut ChainBuilder, profiles: &[ProfileStep], dir: Dir) {
        for step in profiles {
            match step {
                ProfileStep::AllowAll => return,
                ProfileStep::NoRules => {}
                ProfileStep::Rules(key) => {
                    self.wanted_policies.insert((key.clone(), dir));
                    c.push(format!("jump {}", policy_chain_name(key, dir)));
                    c.push(format!("meta mark & {ACCEPT_MARK:#x} != 0 return"));
                }
                ProfileStep::Missing => break,
            }
        }
        c.push("drop");
    }

    /// Clears the marks, then each tier's policies and end-of-tier drop.
    fn tier_rules(&mut self, c: &mut ChainBuilder, tiers: &[TierPolicies], dir: Dir) {
        self.tier_rules_ending(c, tiers, dir, TierEnd::Normal);
    }

    /// [`Renderer::tier_rules`] for a chain of the given kind.
    fn tier_rules_ending(
        &mut self,
        c: &mut ChainBuilder,
        tiers: &[TierPolicies],
        dir: Dir,
        end: TierEnd,
    ) {
        c.push(format!(
            "meta mark set meta mark & {:#x}",
            !(ACCEPT_MARK | PASS_MARK)
        ));
        for (i, tier) in tiers.iter().enumerate() {
            if i > 0 {
                c.push(format!("meta mark set meta mark & {:#x}", !PASS_MARK));
            }
            for key in &tier.policies {
                let chain = policy_chain_name(key, dir);
                self.wanted_policies.insert((key.clone(), dir));
                c.push(format!("meta mark & {PASS_MARK:#x} == 0 jump {chain}"));
                c.push(host::on_accept(end));
            }
            if host::end_of_tier_drop(end, tier) {
                c.push(format!("meta mark & {PASS_MARK:#x} == 0 drop"));
            }
        }
    }

    fn policy_chain(&mut self, key: &PolicyKey, dir: Dir) -> String {
        let name = policy_chain_name(key, dir);
        if !self.rendered_policies.insert((key.clone(), dir)) {
            return name;
        }
        let mut c = ChainBuilder::new(&name, None);
        if let Some(policy) = self.graph.policy(key) {
            let cache_key = (key.clone(), dir);
            if let Some(cached) = self.cache.policies.remove(&cache_key)
                && cached.policy == *policy
            {
                self.out.chains.insert(name.clone(), cached.chain.clone());
                for set in &cached.sets {
                    self.replay(set);
                }
                self.cache.policies.insert(cache_key, cached);
                return name;
            }
            self.recording = Some(Vec::new());
            let rules = match dir {
                Dir::Ingress => &policy.ingress,
                Dir::Egress => &policy.egress,
            };
            for rule in rules {
                let verdict = match rule.action {
                    Action::Allow => format!("meta mark set meta mark | {ACCEPT_MARK:#x} return"),
                    Action::Pass => format!("meta mark set meta mark | {PASS_MARK:#x} return"),
                    Action::Deny => "drop".to_string(),
                    Action::Log => format!("log prefix \"{LOG_PREFIX}\""),
                };
                for matches in self.rule_matches(rule) {
                    if matches.is_empty() {
                        c.push(verdict.clone());
                    } else {
                        c.push(format!("{matches} {verdict}"));
                    }
                }
            }
            let sets = self.recording.take().unwrap_or_default();
            self.cache.policies.insert(
                (key.clone(), dir),
                CachedPolicy {
                    policy: policy.clone(),
                    chain: c.chain.clone(),
                    sets,
                },
            );
        }
        c.finish(&mut self.out);
        name
    }

    /// Adds a set a cached policy chain refers to, with current members.
    fn replay(&mut self, set: &SetRef) {
        match set {
            SetRef::Selector(family, selector, name) => {
                self.fill_selector_set(*family, selector, name);
            }
            SetRef::Fixed(name, set) => {
                if !self.out.sets.contains_key(name) {
                    self.out.sets.insert(name.clone(), set.clone());
                }
            }
            SetRef::NamedPort(family, selector, proto, port, name) => {
                self.fill_named_port_set(*family, selector, *proto, port, name);
            }
        }
    }

    /// Notes a set the policy chain being rendered refers to.
    fn record(&mut self, set: impl FnOnce() -> SetRef) {
        if let Some(recording) = &mut self.recording {
            recording.push(set());
        }
    }

    /// The match expressions of a rule: one string per nft rule needed (an
    /// OR in Calico's model becomes several rules with the same verdict).
    fn rule_matches(&mut self, rule: &PolicyRule) -> Vec<String> {
        let sides = [&rule.source, &rule.destination];
        let icmp_proto = rule.protocol.map(Protocol::number);
        let needs_family = rule.ip_version.is_some()
            || matches!(icmp_proto, Some(1 | 58))
            || rule.not_icmp.is_some()
            || sides.iter().any(|s| {
                !s.nets.is_empty()
                    || !s.not_nets.is_empty()
                    || s.selector.is_some()
                    || s.not_selector.is_some()
                    || s.ports.iter().chain(&s.not_ports).any(Port::is_named)
            });
        let families: Vec<Option<Family>> = if needs_family {
            [Family::V4, Family::V6]
                .into_iter()
                .filter(|f| match rule.ip_version {
                    Some(4) => *f == Family::V4,
                    Some(6) => *f == Family::V6,
                    _ => true,
                })
                .filter(|f| match icmp_proto {
                    Some(1) => *f == Family::V4,
                    Some(58) => *f == Family::V6,
                    _ => true,
                })
                .filter(|f| {
                    sides
                        .iter()
                        .all(|s| s.nets.is_empty() || s.nets.iter().any(|n| f.holds(n)))
                })
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut out = Vec::new();
        for family in families {
            let mut fixed: Vec<String> = Vec::new();
            if let Some(f) = family {
                // A copy whose other-family notNets were left out would
                // otherwise match the other family's packets unconstrained.
                let dropped = sides.iter().any(|s| s.not_nets.iter().any(|n| !f.holds(n)));
                if rule.ip_version.is_some() || dropped {
                    fixed.push(format!("meta nfproto {}", f.nfproto()));
                }
            }
            if let Some(p) = rule.protocol {
                fixed.push(format!("meta l4proto {}", protocol_text(p.number())));
            }
            if let Some(p) = rule.not_protocol {
                fixed.push(format!("meta l4proto != {}", protocol_text(p.number())));
            }
            if let Some(icmp) = &rule.icmp {
                let kw = if icmp_proto == Some(58) {
                    "icmpv6"
                } else {
                    "icmp"
                };
                if let Some(t) = icmp.icmp_type {
                    fixed.push(format!("{kw} type {t}"));
                }
                if let Some(code) = icmp.code {
                    fixed.push(format!("{kw} code {code}"));
                }
            }
            let mut variants: Vec<Vec<String>> = vec![fixed];
            if let (Some(icmp), Some(f)) = (&rule.not_icmp, family) {
                let kw = f.icmp();
                let alternatives = match (icmp.icmp_type, icmp.code) {
                    (Some(t), Some(c)) => vec![
                        vec![format!("{kw} type != {t}")],
                        vec![format!("{kw} type {t}"), format!("{kw} code != {c}")],
                    ],
                    (Some(t), None) => vec![vec![format!("{kw} type != {t}")]],
                    _ => vec![Vec::new()],
                };
                variants = product(&variants, &alternatives);
            }
            for (side, dir) in [(&rule.source, "s"), (&rule.destination, "d")] {
                let (fixed, alternatives) = self.side_matches(side, dir, family, rule.protocol);
                let fixed: Vec<Vec<String>> = vec![fixed];
                variants = product(&variants, &fixed);
                variants = product(&variants, &alternatives);
            }
            out.extend(variants.into_iter().map(|v| v.join(" ")));
        }
        out
    }

    /// Matches of one side: ANDed parts, and alternatives (ORed ports).
    fn side_matches(
        &mut self,
        side: &EntityMatch,
        dir: &str,
        family: Option<Family>,
        protocol: Option<Protocol>,
    ) -> (Vec<String>, Vec<Vec<String>>) {
        let mut fixed = Vec::new();
        let port_kw = format!("th {dir}port");
        if let Some(f) = family {
            let addr = format!("{} {dir}addr", f.addr());
            for (nets, op) in [(&side.nets, ""), (&side.not_nets, "!= ")] {
                let nets: Vec<IpNet> = nets.iter().filter(|n| f.holds(n)).copied().collect();
                match nets.as_slice() {
                    [] => {}
                    [one] => fixed.push(format!("{addr} {op}{}", net_text(one))),
                    _ => {
                        let set = self.nets_set(f, &nets);
                        fixed.push(format!("{addr} {op}@{set}"));
                    }
                }
            }
            for (sel, op) in [
                (side.selector.as_deref(), ""),
                (side.not_selector.as_deref(), "!= "),
            ] {
                if let Some(sel) = sel {
                    let set = self.selector_set(f, sel);
                    fixed.push(format!("{addr} {op}@{set}"));
                }
            }
            for port in &side.not_ports {
                let Port::Named(port) = port else { continue };
                let selector = side
                    .selector
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(Selector::all);
                let proto = protocol.map(Protocol::number);
                let set = self.named_port_set(f, selector, proto, port);
                fixed.push(format!("{addr} . meta l4proto . {port_kw} != @{set}"));
            }
        }
        let not_ports = port_intervals(&side.not_ports);
        match not_ports.as_slice() {
            [] => {}
            [one] => fixed.push(format!("{port_kw} != {}", interval_text(*one))),
            _ => {
                let set = self.ports_set(&not_ports);
                fixed.push(format!("{port_kw} != @{set}"));
            }
        }
        let mut alternatives: Vec<Vec<String>> = Vec::new();
        let ports = port_intervals(&side.ports);
        match ports.as_slice() {
            [] => {}
            [one] => alternatives.push(vec![format!("{port_kw} {}", interval_text(*one))]),
            _ => {
                let set = self.ports_set(&ports);
                alternatives.push(vec![format!("{port_kw} @{set}")]);
            }
        }
        if let Some(f) = family {
            let addr = format!("{} {dir}addr", f.addr());
            for port in &side.ports {
                let Port::Named(port) = port else { continue };
                let selector = side
                    .selector
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(Selector::all);
                let proto = protocol.map(Protocol::number);
                let set = self.named_port_set(f, selector, proto, port);
                alternatives.push(vec![format!("{addr} . meta l4proto . {port_kw} @{set}")]);
            }
        }
        if alternatives.is_empty() {
            alternatives.push(Vec::new());
        }
        (fixed, alternatives)
    }

    fn selector_set(&mut self, family: Family, selector: &Selector) -> String {
        let id = selector.id();
        let name = format!("{}-{id}", family.tag());
        self.record(|| SetRef::Selector(family, id.clone(), name.clone()));
        self.fill_selector_set(family, &id, &name);
        name
    }

    fn fill_selector_set(&mut self, family: Family, selector_id: &str, name: &str) {
        if !self.out.sets.contains_key(name) {
            let members = self.graph.selector_members(selector_id);
            let elements = disjoint(members.into_iter().filter(|n| family.holds(n)))
                .iter()
                .map(net_text)
                .collect();
            let kind = match family {
                Family::V4 => SetKind::Ipv4,
                Family::V6 => SetKind::Ipv6,
            };
            self.out
                .sets
                .insert(name.to_string(), Set { kind, elements });
        }
    }

    fn nets_set(&mut self, family: Family, nets: &[IpNet]) -> String {
        let nets = disjoint(nets.iter().copied());
        let elements: BTreeSet<String> = nets.iter().map(net_text).collect();
        let key: Vec<&str> = elements.iter().map(String::as_str).collect();
        let name = format!("{}-c_{}", family.tag(), hash(&key.join(","), 22));
        let kind = match family {
            Family::V4 => SetKind::Ipv4,
            Family::V6 => SetKind::Ipv6,
        };
        let set = Set { kind, elements };
        self.record(|| SetRef::Fixed(name.clone(), set.clone()));
        self.out.sets.entry(name.clone()).or_insert(set);
        name
    }

    fn ports_set(&mut self, intervals: &[(u16, u16)]) -> String {
        let elements: BTreeSet<String> = intervals.iter().map(|i| interval_text(*i)).collect();
        let key: Vec<String> = intervals.iter().map(|i| interval_text(*i)).collect();
        let name = format!("p_{}", hash(&key.join(","), 22));
        let set = Set {
            kind: SetKind::Ports,
            elements,
        };
        self.record(|| SetRef::Fixed(name.clone(), set.clone()));
        self.out.sets.entry(name.clone()).or_insert(set);
        name
    }

    fn named_port_set(
        &mut self,
        family: Family,
        selector: Selector,
        proto: Option<u8>,
        port_name: &str,
    ) -> String {
        let selector_id = selector.id();
        let key = format!("{selector_id}|{proto:?}|{port_name}");
        let name = format!("{}-n_{}", family.tag(), hash(&key, 22));
        self.record(|| {
            SetRef::NamedPort(
                family,
                selector_id.clone(),
                proto,
                port_name.to_string(),
                name.clone(),
            )
        });
        self.fill_named_port_set(family, &selector_id, proto, port_name, &name);
        name
    }

    fn fill_named_port_set(
        &mut self,
        family: Family,
        selector_id: &str,
        proto: Option<u8>,
        port_name: &str,
        name: &str,
    ) {
        if !self.out.sets.contains_key(name) {
            let elements = self
                .graph
                .named_port_members(selector_id, proto, port_name)
                .into_iter()
                .filter(|(addr, _, _)| family.holds(addr))
                .map(|(addr, proto, port)| format!("{} . {proto} . {port}", addr.addr()))
                .collect();
            let kind = match family {
                Family::V4 => SetKind::Ipv4NamedPort,
                Family::V6 => SetKind::Ipv6NamedPort,
            };
            self.out
                .sets
                .insert(name.to_string(), Set { kind, elements });
        }
    }
}

/// Every concatenation of one item of `a` with one item of `b`.
fn product(a: &[Vec<String>], b: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            out.push(x.iter().chain(y).cloned().collect());
        }
    }
    out
}

pub mod host;
#[cfg(test)]
mod host_tests;
mod incremental;
pub mod nat;
pub use host::{HOST_IN_DISPATCH_MAP, HOST_OUT_DISPATCH_MAP, host_in_chain, host_out_chain};
pub use incremental::IncrementalRender;

#[cfg(test)]
mod tests;
