//! HostEndpoint rendering: the host's own interfaces, policed like
//! workloads by GlobalNetworkPolicies and profiles.
//!
//! Each local HostEndpoint's interface gets one chain per [`HostHook`],
//! reached through that hook's verdict map (interface → `goto` chain):
//!
//! | hook       | base chain (hook, priority)        | policies                         |
//! |------------|------------------------------------|----------------------------------|
//! | `RawIn`    | `raw-prerouting` (prerouting, -300)| `doNotTrack`, ingress            |
//! | `RawOut`   | `raw-output` (output, -300)        | `doNotTrack`, egress             |
//! | `PreDnat`  | `prednat` (prerouting, -110)       | `preDNAT`, ingress               |
//! | `In`       | `input` (input, 0)                 | normal and `applyOnForward`      |
//! | `Out`      | `output` (output, 0)               | normal and `applyOnForward`      |
//! | `FwdIn`    | `forward` via `hep-fwd-in`         | `applyOnForward`, ingress        |
//! | `FwdOut`   | `forward` via `hep-fwd-out`        | `applyOnForward`, egress         |
//!
//! An all-interfaces HostEndpoint (`interfaceName: "*"`) has the chains
//! `<prefix>--all`, reached by a fallback rule after the map lookup on any
//! interface but `lo` and workload interfaces (workload-to-host traffic is
//! the workload's policy and the endpoint-to-host action's, as in Calico,
//! whose `Return` never reaches host endpoint policy either): a named
//! HostEndpoint wins for its interface, since every HostEndpoint has all
//! its chains and map entries, even empty ones. The `--all` chains always
//! exist (empty without a `*` HostEndpoint) so the fallback rules never
//! dangle. A node without any HostEndpoint has none of these chains, maps
//! or rules: nothing of this is on its packet path.
//!
//! Untracked (`doNotTrack`) policy: an Allow marks the packet and makes it
//! untracked (`notrack`); the filter base chains accept untracked packets
//! carrying the mark, so an untracked flow needs rules in both directions
//! (no conntrack entry lets its replies back). A Deny drops. Untracked and
//! pre-DNAT tiers have no end-of-tier drop and no profiles: what they do
//! not decide goes on to normal policy, as in Calico. Pre-DNAT policy sees
//! only new connections (established and related ones are accepted first);
//! its Allow ends the pre-DNAT chain only, normal policy still applies.
//! An endpoint without `applyOnForward` policy has empty forward chains:
//! forwarded traffic is then the workloads' business alone.

use twill_api::common::Action;
use twill_api::felix::ProtoPort;

use super::{ACCEPT_MARK, ChainBuilder, RenderConfig, Renderer, net_text};
use crate::graph::{Dir, TierPolicies};
use crate::model::{HostEndpointInfo, HostPolicyMode};
use crate::ruleset::{BaseChain, Hook, Ruleset, VerdictMap};

/// Verdict map: host interface → its HostEndpoint's inbound chain.
pub const HOST_IN_DISPATCH_MAP: &str = "hep-in-dispatch";
/// Verdict map: host interface → its HostEndpoint's outbound chain.
pub const HOST_OUT_DISPATCH_MAP: &str = "hep-out-dispatch";
/// The interface name of an all-interfaces HostEndpoint.
pub const ALL_INTERFACES: &str = "*";
/// Accepts what an untracked (`doNotTrack`) policy allowed before
/// conntrack: the first rule of every filter base chain.
pub const UNTRACKED_ACCEPT: &str = "ct state untracked meta mark & 0x10000 != 0 accept";

/// Priority of the chains evaluated before conntrack (nft's `raw`).
pub const RAW_PRIORITY: i32 = -300;
/// Priority of the pre-DNAT chain: just before `dstnat` (-100).
pub const PREDNAT_PRIORITY: i32 = -110;

const FWD_IN_DISPATCH_CHAIN: &str = "hep-fwd-in";
const FWD_OUT_DISPATCH_CHAIN: &str = "hep-fwd-out";

/// Where a HostEndpoint's chain is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostHook {
    /// Traffic to the host (filter input).
    In,
    /// Traffic from the host (filter output).
    Out,
    /// Traffic forwarded in through the interface.
    FwdIn,
    /// Traffic forwarded out through the interface.
    FwdOut,
    /// Traffic arriving, before conntrack.
    RawIn,
    /// Traffic from the host, before conntrack.
    RawOut,
    /// Traffic arriving, before DNAT.
    PreDnat,
}

impl HostHook {
    /// Every hook, in rendering order.
    pub const ALL: [HostHook; 7] = [
        HostHook::In,
        HostHook::Out,
        HostHook::FwdIn,
        HostHook::FwdOut,
        HostHook::RawIn,
        HostHook::RawOut,
        HostHook::PreDnat,
    ];

    fn prefix(self) -> &'static str {
        match self {
            HostHook::In => "hin",
            HostHook::Out => "hout",
            HostHook::FwdIn => "hfin",
            HostHook::FwdOut => "hfout",
            HostHook::RawIn => "hrin",
            HostHook::RawOut => "hrout",
            HostHook::PreDnat => "hpre",
        }
    }

    /// The verdict map dispatching to this hook's chains.
    pub fn map(self) -> &'static str {
        match self {
            HostHook::In => HOST_IN_DISPATCH_MAP,
            HostHook::Out => HOST_OUT_DISPATCH_MAP,
            HostHook::FwdIn => "hep-fwd-in-dispatch",
            HostHook::FwdOut => "hep-fwd-out-dispatch",
            HostHook::RawIn => "hep-raw-in-dispatch",
            HostHook::RawOut => "hep-raw-out-dispatch",
            HostHook::PreDnat => "hep-prednat-dispatch",
        }
    }

    /// Name of this hook's chain for a HostEndpoint on `iface`.
    pub fn chain(self, iface: &str) -> String {
        if iface == ALL_INTERFACES {
            format!("{}--all", self.prefix())
        } else {
            format!("{}-{iface}", self.prefix())
        }
    }

    fn dir(self) -> Dir {
        match self {
            HostHook::In | HostHook::FwdIn | HostHook::RawIn | HostHook::PreDnat => Dir::Ingress,
            HostHook::Out | HostHook::FwdOut | HostHook::RawOut => Dir::Egress,
        }
    }

    /// Whether a policy of this mode applies at this hook.
    fn applies(self, mode: HostPolicyMode) -> bool {
        use HostPolicyMode as M;
        match self {
            HostHook::In | HostHook::Out => matches!(mode, M::Normal | M::ApplyOnForward),
            HostHook::FwdIn | HostHook::FwdOut => mode == M::ApplyOnForward,
            HostHook::RawIn | HostHook::RawOut => mode == M::Untracked,
            HostHook::PreDnat => mode == M::PreDnat,
        }
    }

    /// The match selecting the packets the `*` HostEndpoint's chain sees
    /// when no named one took them.
    fn fallback_match(self, config: &RenderConfig) -> String {
        let (dev, lo) = match self.dir() {
            Dir::Ingress => ("iifname", "iifname != \"lo\""),
            Dir::Egress => ("oifname", "oifname != \"lo\""),
        };
        format!("{lo} {dev} != \"{}*\"", config.interface_prefix)
    }
}

/// Name of a HostEndpoint's chain for traffic to the host through `iface`.
pub fn host_in_chain(iface: &str) -> String {
    HostHook::In.chain(iface)
}

/// Name of a HostEndpoint's chain for traffic from the host through `iface`.
pub fn host_out_chain(iface: &str) -> String {
    HostHook::Out.chain(iface)
}

/// The dispatch rules (map lookup, then the `*` fallback) for `hook`.
fn dispatch_rules(c: &mut ChainBuilder, config: &RenderConfig, hook: HostHook) {
    let dev = match hook.dir() {
        Dir::Ingress => "iifname",
        Dir::Egress => "oifname",
    };
    c.push(format!("{dev} vmap @{}", hook.map()));
    c.push(format!(
        "{} goto {}",
        hook.fallback_match(config),
        hook.chain(ALL_INTERFACES)
    ));
}

/// The HostEndpoint parts of the skeleton: the input and output dispatch
/// (appended to those base chains), the raw, pre-DNAT and forward
/// dispatch chains, and the empty `*` chains.
pub(super) fn skeleton(
    out: &mut Ruleset,
    config: &RenderConfig,
    input: &mut ChainBuilder,
    output: &mut ChainBuilder,
) {
    dispatch_rules(input, config, HostHook::In);
    dispatch_rules(output, config, HostHook::Out);
    for (name, hook, base, skip_established) in [
        ("raw-prerouting", HostHook::RawIn, Hook::Prerouting, false),
        ("raw-output", HostHook::RawOut, Hook::Output, false),
        ("prednat", HostHook::PreDnat, Hook::Prerouting, true),
    ] {
        let priority = if hook == HostHook::PreDnat {
            PREDNAT_PRIORITY
        } else {
            RAW_PRIORITY
        };
        let mut c = ChainBuilder::new(
            name,
            Some(BaseChain {
                hook: base,
                priority,
            }),
        );
        if skip_established {
            c.push(UNTRACKED_ACCEPT);
            c.push("ct state established,related accept");
        }
        dispatch_rules(&mut c, config, hook);
        c.finish(out);
    }
    for (name, hook) in [
        (FWD_IN_DISPATCH_CHAIN, HostHook::FwdIn),
        (FWD_OUT_DISPATCH_CHAIN, HostHook::FwdOut),
    ] {
        let mut c = ChainBuilder::new(name, None);
        dispatch_rules(&mut c, config, hook);
        c.finish(out);
    }
    for hook in HostHook::ALL {
        ChainBuilder::new(&hook.chain(ALL_INTERFACES), None).finish(out);
    }
    for hook in HostHook::ALL {
        out.maps
            .insert(hook.map().to_string(), VerdictMap::default());
    }
}

/// The forward base chain's rule sending traffic from HostEndpoint
/// interfaces to their forward policy (before the workload chains).
pub(super) fn forward_in_rule() -> String {
    format!("jump {FWD_IN_DISPATCH_CHAIN}")
}

/// The forward base chain's rule sending traffic to HostEndpoint
/// interfaces to their forward policy (after the workload chains).
pub(super) fn forward_out_rule() -> String {
    format!("jump {FWD_OUT_DISPATCH_CHAIN}")
}

/// Whether the node has a HostEndpoint to render (else the skeleton leaves
/// every HostEndpoint chain, map and rule out).
pub(super) fn any_local(graph: &crate::graph::CalcGraph) -> bool {
    graph.local_host_endpoints().next().is_some()
}

/// Renders every local HostEndpoint's chains and fills the dispatch maps.
pub(super) fn render_hosts(r: &mut Renderer<'_>, config: &RenderConfig) {
    let graph = r.graph;
    for (name, hep) in graph.local_host_endpoints() {
        r.host(config, name, hep);
        let iface = hep.effective_interface();
        if iface == ALL_INTERFACES {
            continue;
        }
        for hook in HostHook::ALL {
            if let Some(map) = r.out.maps.get_mut(hook.map()) {
                map.elements
                    .insert(iface.to_string(), format!("goto {}", hook.chain(iface)));
            }
        }
    }
}

impl Renderer<'_> {
    /// A local HostEndpoint's chains, one per [`HostHook`].
    pub(super) fn host(&mut self, config: &RenderConfig, name: &str, hep: &HostEndpointInfo) {
        let graph = self.graph;
        let profiles = graph.profile_steps(&hep.profiles);
        for hook in HostHook::ALL {
            let dir = hook.dir();
            let tiers = self.tiers_at(graph.policies_for_host(name, dir), hook);
            let failsafe = match dir {
                Dir::Ingress => &config.failsafe_inbound,
                Dir::Egress => &config.failsafe_outbound,
            };
            let mut c = ChainBuilder::new(&hook.chain(hep.effective_interface()), None);
            match hook {
                HostHook::In | HostHook::Out => {
                    c.push("ct state established,related accept");
                    c.push("ct state invalid drop");
                    failsafe_rules(&mut c, dir, failsafe);
                    self.tier_rules_ending(&mut c, &tiers, dir, TierEnd::Normal);
                    self.profile_rules(&mut c, &profiles, dir);
                }
                HostHook::FwdIn | HostHook::FwdOut => {
                    if !tiers.is_empty() {
                        c.push("ct state established,related accept");
                        c.push("ct state invalid drop");
                        self.tier_rules_ending(&mut c, &tiers, dir, TierEnd::Normal);
                    }
                }
                HostHook::RawIn | HostHook::RawOut => {
                    if !tiers.is_empty() {
                        // Failsafe traffic, and the replies of the other
                        // direction's failsafe connections, stay tracked
                        // and go on to the filter chains' failsafe rules.
                        failsafe_rules(&mut c, dir, failsafe);
                        let replies = match dir {
                            Dir::Ingress => &config.failsafe_outbound,
                            Dir::Egress => &config.failsafe_inbound,
                        };
                        failsafe_reply_rules(&mut c, dir, replies);
                        self.tier_rules_ending(&mut c, &tiers, dir, TierEnd::Untracked);
                    }
                }
                HostHook::PreDnat => {
                    if !tiers.is_empty() {
                        failsafe_rules(&mut c, dir, failsafe);
                        self.tier_rules_ending(&mut c, &tiers, dir, TierEnd::PreDnat);
                    }
                }
            }
            c.finish(&mut self.out);
        }
    }

    /// The tiers' policies that apply at `hook` (tiers left empty go).
    fn tiers_at(&self, tiers: Vec<TierPolicies>, hook: HostHook) -> Vec<TierPolicies> {
        tiers
            .into_iter()
            .filter_map(|mut tier| {
                tier.policies.retain(|key| {
                    self.graph
                        .policy(key)
                        .is_some_and(|p| hook.applies(p.host_mode))
                });
                (!tier.policies.is_empty()).then_some(tier)
            })
            .collect()
    }
}

/// Accepts the failsafe ports (`peer` side: the source for ingress).
fn failsafe_rules(c: &mut ChainBuilder, dir: Dir, failsafe: &[ProtoPort]) {
    failsafe_port_rules(c, dir, failsafe, "dport");
}

/// Accepts (before conntrack, so they stay tracked) the replies of the
/// failsafe connections the other direction opens: source port matched,
/// the peer on the same side as there (its destination is our source).
fn failsafe_reply_rules(c: &mut ChainBuilder, dir: Dir, failsafe: &[ProtoPort]) {
    failsafe_port_rules(c, dir, failsafe, "sport");
}

/// One accept rule per failsafe entry, matching its port as `port_field`
/// (`dport` or `sport`) and its net, if any, on the peer's side.
fn failsafe_port_rules(c: &mut ChainBuilder, dir: Dir, failsafe: &[ProtoPort], port_field: &str) {
    for fs in failsafe {
        let proto = fs.protocol.to_ascii_lowercase();
        let proto = if proto.is_empty() { "tcp" } else { &proto };
        let peer = fs
            .net
            .as_deref()
            .and_then(|n| twill_api::common::parse_cidr(n).ok())
            .map(|net| {
                let family = if net.addr().is_ipv4() { "ip" } else { "ip6" };
                let side = if dir == Dir::Ingress {
                    "saddr"
                } else {
                    "daddr"
                };
                format!("{family} {side} {} ", net_text(&net.trunc()))
            })
            .unwrap_or_default();
        c.push(format!(
            "{peer}meta l4proto {proto} th {port_field} {} accept",
            fs.port
        ));
    }
}

/// How a tier's chain rules end: what an Allow does, and whether the end of
/// a tier drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TierEnd {
    /// Allow returns (the caller accepts); the end of a tier drops.
    Normal,
    /// Allow makes the packet untracked and accepts it; no end drop.
    Untracked,
    /// Allow accepts; no end drop.
    PreDnat,
}

/// The rule after a policy's jump: what an Allow leads to.
pub(super) fn on_accept(end: TierEnd) -> String {
    let marked = format!("meta mark & {ACCEPT_MARK:#x} != 0");
    match end {
        TierEnd::Normal => format!("{marked} return"),
        TierEnd::Untracked => format!("{marked} notrack accept"),
        TierEnd::PreDnat => format!("{marked} accept"),
    }
}

/// Whether a tier's end drops what no policy decided.
pub(super) fn end_of_tier_drop(end: TierEnd, tier: &TierPolicies) -> bool {
    end == TierEnd::Normal && tier.default_action != Action::Pass
}
