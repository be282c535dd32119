//! felix-rs: Twill's policy engine, as a pure core with no I/O.
//!
//! ```text
//!  Update ──► graph::CalcGraph::on_update ──► render::render ──► ruleset::Ruleset (desired)
//!            (model conversion, label                              │
//!             indexes, dirty flag)                                 ▼
//!                                        kernel's Ruleset ──► plan::plan ──► Vec<Op> ──► one nft script
//! ```
//!
//! * [`model`]: Felix's inputs as plain data; Calico and Kubernetes policies
//!   converted into one [`model::Policy`] form (Kubernetes NetworkPolicy as
//!   Calico translates it).
//! * [`graph`]: which policies apply to which local endpoint, in order;
//!   which addresses each distinct rule selector matches.
//! * [`render`](mod@render): the desired ruleset, deterministic; `render_with_cache`
//!   reuses policy and endpoint chains while their inputs are unchanged.
//! * [`ruleset`]: the typed ruleset, its operations and their nft text.
//! * [`plan`](mod@plan): desired vs actual as one ordered transaction.
//! * [`daemon`]: the I/O around the core (datastore watches, throttled
//!   apply with read-back verification, endpoint status files, drift
//!   repair, health and metrics) that the `felix-rs` binary runs.
//! * [`readback`]: the kernel's table (`twill_kernel::NftTable`) as a
//!   [`Ruleset`] to plan against and to verify an apply with.
//! * [`routing`]: local pod routes, the VXLAN overlay (Always and
//!   CrossSubnet) and the pod MTU, as a pure model planned against the
//!   kernel's listing; run by the daemon's routing task
//!   ([`daemon::routes`]). NAT outgoing is part of the ruleset
//!   ([`render::nat`]).
//!
//! # Ruleset layout (table `inet twill`)
//!
//! `"twl*"` below stands for the workload interface prefix (minus Twill's
//! own devices, should an operator choose a prefix they share).
//!
//! ```text
//! forward (hook forward, prio 0, policy accept)
//!  ├─ iifname "twl*" jump from-wl
//!  │    from-wl: ct established,related → accept; ct invalid → drop
//!  │             iifname . saddr ∉ @wl-src-v4 / @wl-src-v6 → drop   (anti-spoofing)
//!  │             iifname vmap @from-wl-dispatch ──goto──► from-<iface>
//!  │             drop                          (a "twl*" interface not programmed: fail closed)
//!  └─ oifname "twl*" jump to-wl
//!       to-wl:   ct established,related → accept; ct invalid → drop
//!                oifname vmap @to-wl-dispatch ──goto──► to-<iface>
//!                drop
//!
//! input (hook input, prio 0, policy accept)
//!  ├─ ct untracked with the accept mark → accept   (doNotTrack policy allowed it)
//!  ├─ iifname "twl*" icmpv6 ND/MLD types → accept
//!  ├─ iifname "twl*" jump from-wl            (the endpoint's egress policy)
//!  ├─ iifname "twl*" drop | accept           (workload-to-host default action)
//!  ├─ iifname vmap @hep-in-dispatch ──goto──► hin-<iface>   (HostEndpoints)
//!  └─ iifname != "lo" goto hin--all          (the `*` HostEndpoint, if any)
//!
//! output (hook output, prio 0, policy accept)
//!  ├─ ct untracked with the accept mark → accept
//!  ├─ oifname vmap @hep-out-dispatch ──goto──► hout-<iface>
//!  └─ oifname != "lo" oifname != "twl*" goto hout--all
//!
//! forward also jumps to hep-fwd-in / hep-fwd-out around the workload
//! chains, and raw-prerouting, raw-output (prio -300) and prednat
//! (prerouting, prio -110) dispatch to the HostEndpoints' doNotTrack and
//! preDNAT chains: see `render::host`.
//!
//! hin-<iface> / hout-<iface> (a HostEndpoint, traffic to / from the host):
//!    ct established,related → accept; ct invalid → drop
//!    failsafe ports → accept
//!    tiers as below; then drop unless the endpoint has a profile
//!
//! from-<iface> (egress) / to-<iface> (ingress):
//!    clear accept and pass marks
//!    for each tier that has policies for this endpoint and direction:
//!       clear the pass mark (from the second tier on)
//!       for each policy:  pass mark clear → jump po-<id> / pi-<id>
//!                         accept mark set → return (allowed)
//!       pass mark clear → drop              (end of tier, unless defaultAction Pass)
//!    (end of chain: the namespace profile allows → return)
//!
//! pi-<id> / po-<id> (one per policy and direction, shared by endpoints):
//!    <match> mark |= accept; return   (Allow)
//!    <match> mark |= pass; return     (Pass)
//!    <match> drop                     (Deny)
//!    <match> log prefix "twill-packet: "  (Log, continues)
//! ```
//!
//! Sets, all named (never anonymous): `v4-s_<selector id>` / `v6-…` (one
//! per distinct rule selector, shared by every rule that uses it),
//! `v4-n_<hash>` (named ports: `addr . proto . port`), `v4-c_<hash>` (a
//! rule's nets), `p_<hash>` (a rule's port list). Every rule carries the
//! comment `tw:<content hash>`; the hash chains through the rules before it
//! in its chain, so the comment list identifies a chain's contents.
//!
//! Traffic from the host to a local workload (kubelet probes) goes through
//! the output hook, which Twill does not police, as Calico does not.

pub mod allocator;
pub mod daemon;
pub mod graph;
pub mod model;
pub mod plan;
pub mod readback;
pub mod render;
pub mod routing;
pub mod ruleset;

pub use graph::{CalcGraph, Dir};
pub use model::Update;
pub use plan::plan;
pub use readback::from_kernel;
pub use render::{RenderConfig, render};
pub use ruleset::{Op, Ruleset, script};

/// Errors of the policy engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A selector in a resource does not parse or cannot be rewritten.
    #[error("invalid selector {selector:?} in {field}: {reason}")]
    Selector {
        /// Field path inside the resource.
        field: String,
        /// The selector text.
        selector: String,
        /// Why.
        reason: String,
    },
    /// A CIDR in a resource does not parse.
    #[error("invalid network {net:?} in {field}: {reason}")]
    Net {
        /// Field path inside the resource.
        field: String,
        /// The text.
        net: String,
        /// Why.
        reason: String,
    },
    /// A Kubernetes NetworkPolicy that cannot be translated.
    #[error("cannot translate {field}: {reason}")]
    Translation {
        /// Field path inside the policy.
        field: String,
        /// Why.
        reason: String,
    },
    /// A plan that does not apply to the ruleset it was given.
    #[error("cannot apply plan: {0}")]
    Apply(String),
    /// A policy was accepted, but some of its rules cannot be enforced as
    /// written; they are enforced fail closed instead.
    #[error("policy {policy}: {fields} not enforced as written: {reason}")]
    Unsupported {
        /// The policy.
        policy: String,
        /// Field paths of the rules concerned, comma-separated.
        fields: String,
        /// Why, and what is enforced instead.
        reason: String,
    },
}
