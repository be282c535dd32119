//! The routing information bases, without I/O: Adj-RIB-In, Loc-RIB and
//! Adj-RIB-Out for IPv4 and IPv6 unicast in one table.
//!
//! ```text
//!  UPDATE --Received--> receive(): loop checks, import filter --> paths of
//!  the prefix (Adj-RIB-In of every peer, plus this node's own paths)
//!        | marks the prefix dirty
//!        v
//!  process(): decision process (decision.rs) per dirty prefix
//!        |--> FIB changes (next hops of the multipath set) --> kernel
//!        '--> per Established peer: export rules + export filter,
//!             diffed against its Adj-RIB-Out --> encoded UPDATEs
//! ```
//!
//! A prefix's paths live in one [`Dest`]: a peer's Adj-RIB-In is the set of
//! paths whose [`Source`] is that peer, which keeps one table lookup per
//! received prefix. The received attributes are kept next to the
//! post-import ones so that a changed import filter is re-applied without a
//! route refresh.
//!
//! Propagation rules (RFC 4271 §9.2, RFC 4456 §6):
//!
//! * a route is never sent back to the peer it was learned from;
//! * eBGP-learned and local routes go to every peer; iBGP-learned routes go
//!   to eBGP peers, and to iBGP peers only when reflected: from a client to
//!   every peer, from a non-client to clients only;
//! * to eBGP: own AS prepended, next hop self, no LOCAL_PREF, MED only on
//!   local routes, no ORIGINATOR_ID/CLUSTER_LIST;
//! * to iBGP: LOCAL_PREF (100 unless set), next hop kept unless the
//!   peering says next-hop-self or the route is local; reflected routes get
//!   ORIGINATOR_ID (if absent) and the cluster ID prepended to CLUSTER_LIST;
//! * NO_EXPORT routes are not sent to eBGP peers, NO_ADVERTISE to no one.
//!
//! Received routes are dropped (treated as withdrawn) when the own AS is in
//! the AS_PATH of an eBGP route, when ORIGINATOR_ID is this router, or when
//! CLUSTER_LIST holds this cluster ID.

pub mod attrs;
pub mod decision;
pub mod policy;
mod table;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

// foldhash: an Adj-RIB-Out is hashed once or twice per exported prefix,
// and SipHash on an IpNet key costs more than the rest of the lookup.
use foldhash::HashMap;
use ipnet::IpNet;

pub use attrs::{Attrs, DEFAULT_LOCAL_PREF, Origin, Received};
use decision::SourceInfo;
use policy::FilterContext;
use table::{Fib, Paths, Slot, Table};

use crate::config::Filter;
use crate::packet::Family;

/// Well-known community NO_EXPORT (RFC 1997).
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
/// Well-known community NO_ADVERTISE (RFC 1997).
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;

/// This router's identity as the RIB needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RibConfig {
    /// Own AS.
    pub asn: u32,
    /// Own BGP identifier.
    pub router_id: Ipv4Addr,
    /// Route-reflector cluster ID; the router ID is used when reflecting without one.
    pub cluster_id: Option<Ipv4Addr>,
}

/// Where a path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Originated by this node.
    Local,
    /// Learned from the peer at this address.
    Peer(IpAddr),
}

/// One path to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Who sent it.
    pub source: Source,
    /// The attributes as received (before import policy).
    pub received: Arc<Attrs>,
    /// The attributes after import policy; `None` when rejected.
    pub attrs: Option<Arc<Attrs>>,
    /// Kept across the source's graceful restart, not yet refreshed (RFC 4724).
    pub stale: bool,
}

/// The next hops a prefix has in the kernel, as [`Rib::fib`] yields them.
#[derive(Debug, Clone, Copy)]
pub struct FibHops<'a>(&'a Dest);

impl FibHops<'_> {
    /// The next hops, in address order.
    pub fn to_vec(&self) -> Vec<IpAddr> {
        let dest = self.0;
        match &dest.fib_hops {
            Some(hops) => hops.to_vec(),
            None if dest.fib_v4.is_unspecified() => Vec::new(),
            None => vec![IpAddr::V4(dest.fib_v4)],
        }
    }
}

/// A prefix's paths; the selected ones (best first) lead.
///
/// One of these per prefix in the table: 56 bytes, with the one path most
/// prefixes have and their one IPv4 kernel next hop inline.
#[derive(Debug, Clone)]
pub struct Dest {
    paths: Paths,
    /// The kernel next hops when they are not one IPv4 address ([`Fib`]).
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer: a boxed slice would make every Dest 8 bytes larger"
    )]
    fib_hops: Option<Box<Vec<IpAddr>>>,
    /// The one IPv4 kernel next hop; unspecified (never a usable next hop)
    /// when there is none.
    fib_v4: Ipv4Addr,
    /// How many paths are selected (the low 31 bits), and whether the
    /// prefix is queued in [`Rib::dirty`] for the next decision run (the
    /// top bit): one word, so that a `Dest` and its prefix fit 64 bytes.
    state: u32,
}

/// The `Dest::state` bit saying the prefix is queued for a decision run.
const QUEUED: u32 = 1 << 31;

impl Default for Dest {
    fn default() -> Self {
        Self {
            paths: Paths::default(),
            fib_hops: None,
            fib_v4: Ipv4Addr::UNSPECIFIED,
            state: 0,
        }
    }
}

impl Dest {
    /// Every path, selected ones first.
    pub fn paths(&self) -> &[Path] {
        self.paths.as_slice()
    }

    /// The best path, if any.
    pub fn best(&self) -> Option<&Path> {
        self.selected().first()
    }

    /// The multipath set (best first).
    pub fn selected(&self) -> &[Path] {
        let paths = self.paths.as_slice();
        // Clamped: a withdrawal may have removed paths since the last run.
        let count = usize::try_from(self.state & !QUEUED).unwrap_or(usize::MAX);
        &paths[..count.min(paths.len())]
    }

    /// Records how many paths lead as the multipath set.
    fn set_selected(&mut self, count: usize) {
        let count = u32::try_from(count)
            .ok()
            .filter(|count| count & QUEUED == 0)
            .expect("a prefix has a path per peer, far fewer than 2^31");
        self.state = self.state & QUEUED | count;
    }

    /// Queues the prefix of this destination for the next decision run,
    /// once.
    fn mark(&mut self, slot: Slot, dirty: &mut Vec<Slot>) {
        if self.state & QUEUED == 0 {
            self.state |= QUEUED;
            dirty.push(slot);
        }
    }

    /// Whether the prefix has a kernel route.
    fn has_fib(&self) -> bool {
        self.fib_hops.is_some() || !self.fib_v4.is_unspecified()
    }

    /// Whether the prefix has `fib` as its kernel next hops.
    fn fib_is(&self, fib: &Fib) -> bool {
        match (fib, &self.fib_hops) {
            (Fib::None, None) => self.fib_v4.is_unspecified(),
            (Fib::V4(hop), None) => self.fib_v4 == *hop,
            (Fib::Other(hops), Some(mine)) => hops == mine,
            _ => false,
        }
    }

    /// Records `fib` as the prefix's kernel next hops.
    fn set_fib(&mut self, fib: Fib) {
        (self.fib_v4, self.fib_hops) = match fib {
            Fib::None => (Ipv4Addr::UNSPECIFIED, None),
            Fib::V4(hop) => (hop, None),
            Fib::Other(hops) => (Ipv4Addr::UNSPECIFIED, Some(hops)),
        };
    }
}

/// Whether `filter` rejects every route of `family` whatever its
/// attributes: the first rule of that family is an unconditional reject
/// (rules of the other family never match). Such a peer needs no export
/// attributes built.
fn rejects_all(filter: &Filter, family: Family) -> bool {
    let ipv4 = family == Family::Ipv4Unicast;
    filter
        .rules
        .iter()
        .find(|rule| rule.ipv4 == ipv4)
        .is_some_and(|rule| {
            rule.action == crate::config::FilterAction::Reject
                && rule.cidr.is_none()
                && rule.min_prefix_len.is_none()
                && rule.max_prefix_len.is_none()
                && !rule.remote_peers_only
                && rule.interface.is_none()
                && rule.peer_type.is_none()
                && rule.communities.is_empty()
                && rule.large_communities.is_empty()
                && rule.as_path_prefix.is_empty()
                && rule.priority.is_none()
        })
}

/// How the RIB treats one peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The peer's AS (equal to ours: iBGP).
    pub asn: u32,
    /// The AS this router presents to the peer instead of its own
    /// (BGPPeer `localASNumber`): the session is iBGP when the peer's AS
    /// equals it, and it is what eBGP exports prepend.
    pub local_asn: Option<u32>,
    /// The peer is a route-reflector client of this router.
    pub route_reflector_client: bool,
    /// Send routes to this iBGP peer with this router as next hop.
    pub next_hop_self: bool,
    /// Import filter.
    pub import: Filter,
    /// Export filter.
    pub export: Filter,
}

impl PeerPolicy {
    /// The AS this router is towards the peer, its own being `router_asn`.
    pub fn own_asn(&self, router_asn: u32) -> u32 {
        self.local_asn.unwrap_or(router_asn)
    }

    /// Whether the session is iBGP.
    pub fn is_ibgp(&self, router_asn: u32) -> bool {
        self.asn == self.own_asn(router_asn)
    }
}

/// What an Established session tells the RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our address on the connection (next hop self).
    pub local_address: Option<IpAddr>,
    /// Negotiated families.
    pub families: BTreeSet<Family>,
    /// 4-octet AS numbers in AS_PATH.
    pub four_octet_as: bool,
}

#[derive(Debug)]
struct Peer {
    policy: PeerPolicy,
    router_id: Ipv4Addr,
    session: Option<SessionInfo>,
    adj_out: HashMap<IpNet, Arc<Attrs>>,
    received: usize,
    accepted: usize,
}

/// Per-peer route counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Prefixes in the peer's Adj-RIB-In.
    pub received: usize,
    /// Of those, accepted by import policy.
    pub accepted: usize,
    /// Prefixes in the peer's Adj-RIB-Out.
    pub advertised: usize,
}

/// A change of a prefix's kernel route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibChange {
    /// The prefix.
    pub prefix: IpNet,
    /// Next hops to install (several: ECMP); empty: remove the route.
    pub next_hops: Vec<IpAddr>,
}

/// What [`Rib::process`] produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// Kernel route changes, by prefix.
    pub fib: Vec<FibChange>,
    /// Encoded UPDATEs per peer.
    pub updates: Vec<(IpAddr, Vec<Vec<u8>>)>,
}

/// The RIB of one router.
#[derive(Debug)]
pub struct Rib {
    config: RibConfig,
    table: Table,
    peers: HashMap<IpAddr, Peer>,
    /// Entries to decide on, each once (flagged in its [`Dest`]), by
    /// position: the decision run does not hash their prefixes again. A
    /// vector, not a set, as the set kept its peak capacity after a full
    /// table's first run.
    dirty: Vec<Slot>,
    originated: BTreeMap<IpNet, Arc<Attrs>>,
    best_count: usize,
}

impl Rib {
    /// An empty RIB.
    pub fn new(config: RibConfig) -> Self {
        Self {
            config,
            table: Table::default(),
            peers: HashMap::default(),
            dirty: Vec::new(),
            originated: BTreeMap::new(),
            best_count: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    /// Prefixes with a best path.
    pub fn loc_rib_len(&self) -> usize {
        self.best_count
    }

    /// A prefix's paths.
    pub fn dest(&self, prefix: &IpNet) -> Option<&Dest> {
        self.table.get(prefix)
    }

    /// Every prefix with its paths, in prefix order.
    pub fn dests(&self) -> Vec<(IpNet, &Dest)> {
        let mut all: Vec<_> = self.table.iter().collect();
        all.sort_by_key(|(prefix, _)| *prefix);
        all
    }

    /// The kernel's desired view: prefix → next hops, for every prefix that
    /// should have a protocol-202 route.
    pub fn fib(&self) -> impl Iterator<Item = (IpNet, FibHops<'_>)> {
        self.table
            .iter()
            .filter(|(_, d)| d.has_fib())
            .map(|(p, d)| (p, FibHops(d)))
    }

    /// Route counts of a peer.
    pub fn counts(&self, peer: &IpAddr) -> PeerCounts {
        self.peers
            .get(peer)
            .map(|p| PeerCounts {
                received: p.received,
                accepted: p.accepted,
                advertised: p.adj_out.len(),
            })
            .unwrap_or_default()
    }

    /// What the Adj-RIB-Out of `peer` holds, in prefix order.
    pub fn adj_rib_out(&self, peer: &IpAddr) -> BTreeMap<IpNet, Attrs> {
        self.peers
            .get(peer)
            .map(|p| {
                p.adj_out
                    .iter()
                    .map(|(prefix, a)| (*prefix, (**a).clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn reflector(&self) -> bool {
        self.config.cluster_id.is_some()
            || self.peers.values().any(|p| p.policy.route_reflector_client)
    }

    fn cluster_id(&self) -> Ipv4Addr {
        self.config.cluster_id.unwrap_or(self.config.router_id)
    }

    /// Adds a peering, or changes its policy (import re-applied, export redone).
    pub fn set_peer(&mut self, address: IpAddr, policy: PeerPolicy) {
        match self.peers.get_mut(&address) {
            Some(peer) if peer.policy == policy => {}
            Some(peer) => {
                let import_changed = peer.policy.import != policy.import;
                peer.policy = policy;
                if import_changed {
                    self.reimport(address);
                }
                // Export rules may differ for every prefix.
                for (slot, _, dest) in self.table.iter_mut() {
                    dest.mark(slot, &mut self.dirty);
                }
            }
            None => {
                self.peers.insert(
                    address,
                    Peer {
                        policy,
                        router_id: Ipv4Addr::UNSPECIFIED,
                        session: None,
                        adj_out: HashMap::default(),
                        received: 0,
                        accepted: 0,
                    },
                );
            }
        }
    }

    fn reimport(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let ctx = FilterContext {
            ibgp: peer.policy.is_ibgp(self.config.asn),
            from_peer: true,
        };
        let mut accepted = 0;
        for (slot, prefix, dest) in self.table.iter_mut() {
            let mut changed = false;
            for path in dest.paths.as_mut_slice() {
                if path.source == Source::Peer(address) {
                    path.attrs = policy::apply(&peer.policy.import, &prefix, &path.received, ctx);
                    accepted += usize::from(path.attrs.is_some());
                    changed = true;
                }
            }
            if changed {
                dest.mark(slot, &mut self.dirty);
            }
        }
        peer.accepted = accepted;
    }

    /// Removes a peering and every route learned from it.
    pub fn remove_peer(&mut self, address: IpAddr) {
        self.drop_paths(address, |_, _| true);
        self.peers.remove(&address);
    }

    /// The session with `address` is Established.
    pub fn peer_up(&mut self, address: IpAddr, session: SessionInfo) {
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.router_id = session.router_id;
            peer.session = Some(session);
            peer.adj_out.clear();
        }
    }

    /// The session with `address` went down. With `keep_stale`, its routes
    /// stay (marked stale) for a graceful restart; otherwise they go.
    pub fn peer_down(&mut self, address: IpAddr, keep_stale: bool) {
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.session = None;
            peer.adj_out.clear();
        }
        if keep_stale {
            for dest in self.table.values_mut() {
                for path in dest.paths.as_mut_slice() {
                    if path.source == Source::Peer(address) {
                        path.stale = true;
                    }
                }
            }
        } else {
            self.drop_paths(address, |_, _| true);
        }
    }

    /// Number of stale paths from `address`.
    pub fn stale_count(&self, address: IpAddr) -> usize {
        self.table
            .values()
            .flat_map(|d| d.paths.as_slice())
            .filter(|p| p.source == Source::Peer(address) && p.stale)
            .count()
    }

    /// Removes the stale paths of `address` in `families` (End-of-RIB
    /// received, or the restart timer ran out).
    pub fn sweep_stale(&mut self, address: IpAddr, families: &[Family]) {
        self.drop_paths(address, |prefix, path| {
            path.stale && families.contains(&wire::family_of(prefix))
        });
    }

    /// Removes the paths of `address` that `pick` selects, keeping the
    /// peer's counters right.
    fn drop_paths(&mut self, address: IpAddr, pick: impl Fn(&IpNet, &Path) -> bool) {
        let mut removed = 0;
        let mut removed_accepted = 0;
        for (slot, prefix, dest) in self.table.iter_mut() {
            let picked = |p: &Path| p.source == Source::Peer(address) && pick(&prefix, p);
            // Most destinations keep every path: leave them untouched.
            if !dest.paths.as_slice().iter().any(picked) {
                continue;
            }
            let before = dest.paths.len();
            dest.paths.retain(|p| {
                let drop = picked(p);
                if drop {
                    removed_accepted += usize::from(p.attrs.is_some());
                }
                !drop
            });
            if dest.paths.len() != before {
                removed += before - dest.paths.len();
                dest.mark(slot, &mut self.dirty);
            }
        }
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.received -= removed;
            peer.accepted -= removed_accepted;
        }
    }

    /// True when a route with `attrs` from a peer towards which this router
    /// is `own_asn` (over iBGP or not) must be dropped as a loop.
    fn is_loop(&self, own_asn: u32, ibgp: bool, attrs: &Attrs) -> bool {
        let own = [self.config.asn, own_asn];
        if !ibgp && attrs.as_path.iter().any(|a| own.contains(a)) {
            return true;
        }
        attrs.originator_id == Some(self.config.router_id)
            || attrs.cluster_list.contains(&self.cluster_id())
    }

    /// Applies the routes of one UPDATE from `address`.
    pub fn receive(&mut self, address: IpAddr, received: Received) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let own_asn = peer.policy.own_asn(self.config.asn);
        let ibgp = peer.policy.is_ibgp(self.config.asn);
        for prefix in received.withdrawn {
            self.withdraw(address, prefix);
        }
        for (attrs, prefixes) in received.announced {
            if self.is_loop(own_asn, ibgp, &attrs) {
                for prefix in prefixes {
                    self.withdraw(address, prefix);
                }
                continue;
            }
            // The peer once per attribute set, not once per prefix.
            let Some(peer) = self.peers.get_mut(&address) else {
                return;
            };
            for prefix in prefixes {
                let prefix = prefix.trunc();
                let (slot, dest) = self.table.get_or_default(prefix);
                dest.mark(slot, &mut self.dirty);
                add_path(dest, peer, ibgp, address, &prefix, Arc::clone(&attrs));
            }
        }
    }

    /// Adds or replaces the path from `address` to `prefix`.
    pub fn announce(&mut self, address: IpAddr, prefix: IpNet, received: Arc<Attrs>) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let ibgp = peer.policy.is_ibgp(self.config.asn);
        let (slot, dest) = self.table.get_or_default(prefix);
        dest.mark(slot, &mut self.dirty);
        add_path(dest, peer, ibgp, address, &prefix, received);
    }

    /// Removes the path from `address` to `prefix`, if any.
    pub fn withdraw(&mut self, address: IpAddr, prefix: IpNet) {
        let prefix = prefix.trunc();
        let Some((slot, dest)) = self.table.get_mut(&prefix) else {
            return;
        };
        let source = Source::Peer(address);
        let Some(at) = dest
            .paths
            .as_slice()
            .iter()
            .position(|p| p.source == source)
        else {
            return;
        };
        let old = dest.paths.remove(at);
        dest.mark(slot, &mut self.dirty);
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.received -= 1;
            peer.accepted -= usize::from(old.attrs.is_some());
        }
    }

    /// Replaces the set of prefixes this node originates.
    pub fn set_originated(&mut self, routes: BTreeMap<IpNet, Arc<Attrs>>) {
        let routes: BTreeMap<IpNet, Arc<Attrs>> =
            routes.into_iter().map(|(p, a)| (p.trunc(), a)).collect();
        for (prefix, old) in &self.originated {
            // A prefix without a destination has nothing to decide.
            if routes.get(prefix) != Some(old)
                && let Some((slot, dest)) = self.table.get_mut(prefix)
            {
                dest.paths.retain(|p| p.source != Source::Local);
                dest.mark(slot, &mut self.dirty);
            }
        }
        for (prefix, attrs) in &routes {
            if self.originated.get(prefix) == Some(attrs) {
                continue;
            }
            let (slot, dest) = self.table.get_or_default(*prefix);
            dest.paths.retain(|p| p.source != Source::Local);
            dest.paths.push(Path {
                source: Source::Local,
                received: Arc::clone(attrs),
                attrs: Some(Arc::clone(attrs)),
                stale: false,
            });
            dest.mark(slot, &mut self.dirty);
        }
        self.originated = routes;
    }

    /// Runs the decision process on every prefix changed since the last
    /// call and returns the kernel changes and the UPDATEs to send.
    pub fn process(&mut self) -> Processed {
        // Taken, not drained: a full table's first run must not leave its
        // capacity behind.
        let dirty = std::mem::take(&mut self.dirty);
        let mut processed = Processed::default();
        if dirty.is_empty() {
            return processed;
        }
        let local_id = self.config.router_id;
        let asn = self.config.asn;
        let infos: HashMap<IpAddr, SourceInfo> = self
            .peers
            .iter()
            .map(|(a, p)| {
                (
                    *a,
                    SourceInfo {
                        ibgp: p.policy.is_ibgp(asn),
                        router_id: p.router_id,
                    },
                )
            })
            .collect();
        let mut changed_best = Vec::with_capacity(dirty.len());
        let mut emptied = Vec::new();
        for slot in dirty {
            let Some((prefix, dest)) = self.table.at_mut(slot) else {
                continue;
            };
            dest.state &= !QUEUED;
            let had_best = dest.state & !QUEUED > 0;
            let selected = decision::select(dest.paths.as_mut_slice(), local_id, |a| {
                infos.get(&a).copied()
            });
            dest.set_selected(selected);
            let has_best = selected > 0;
            match (had_best, has_best) {
                (false, true) => self.best_count += 1,
                (true, false) => self.best_count -= 1,
                _ => {}
            }
            let fib = Fib::of(dest.selected());
            if !dest.fib_is(&fib) {
                processed.fib.push(FibChange {
                    prefix,
                    next_hops: fib.to_vec(),
                });
                dest.set_fib(fib);
            }
            if dest.paths.is_empty() {
                emptied.push(prefix);
            }
            changed_best.push((slot, prefix));
        }
        let addresses: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_some())
            .map(|(a, _)| *a)
            .collect();
        for address in addresses {
            let messages = self.export_to(address, &changed_best);
            if !messages.is_empty() {
                processed.updates.push((address, messages));
            }
        }
        // A removal moves another entry into the hole: only once no queued
        // position is left to read.
        for prefix in &emptied {
            self.table.remove(prefix);
        }
        processed
    }

    /// The full Adj-RIB-Out of `address` for `families` (table dump after
    /// session up, or a route refresh), as UPDATEs; the Adj-RIB-Out is
    /// rebuilt from the Loc-RIB.
    pub fn dump(&mut self, address: IpAddr, families: &[Family]) -> Vec<Vec<u8>> {
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.adj_out
                .retain(|prefix, _| !families.contains(&wire::family_of(prefix)));
        }
        let prefixes: Vec<(Slot, IpNet)> = self
            .table
            .slots()
            .filter(|(_, p)| families.contains(&wire::family_of(p)))
            .collect();
        self.export_to(address, &prefixes)
    }

    /// What `address` should be sent for `prefix`, whose paths are `dest`,
    /// or `None`.
    fn export_attrs(
        &self,
        address: IpAddr,
        peer: &Peer,
        prefix: &IpNet,
        dest: &Dest,
    ) -> Option<Arc<Attrs>> {
        let session = peer.session.as_ref()?;
        let family = wire::family_of(prefix);
        if !session.families.contains(&family) {
            return None;
        }
        let best = dest.best()?;
        let attrs = best.attrs.as_ref()?;
        let to_ibgp = peer.policy.is_ibgp(self.config.asn);
        if attrs.communities.contains(&NO_ADVERTISE)
            || (!to_ibgp && attrs.communities.contains(&NO_EXPORT))
        {
            return None;
        }
        let mut reflected_from = None;
        match best.source {
            Source::Peer(from) if from == address => return None,
            Source::Peer(from) => {
                let source = self.peers.get(&from)?;
                let from_ibgp = source.policy.is_ibgp(self.config.asn);
                if from_ibgp && to_ibgp {
                    if !self.reflector() {
                        return None;
                    }
                    let client_source = source.policy.route_reflector_client;
                    if !client_source && !peer.policy.route_reflector_client {
                        return None;
                    }
                    reflected_from = Some(source.router_id);
                }
            }
            Source::Local => {}
        }
        let self_hop = match (family, session.local_address) {
            (Family::Ipv4Unicast, Some(IpAddr::V4(a))) => Some(IpAddr::V4(a)),
            (Family::Ipv6Unicast, Some(a)) => Some(a),
            _ => None,
        };
        let mut out = (**attrs).clone();
        if to_ibgp {
            out.local_pref = Some(attrs.effective_local_pref());
            if let Some(originator) = reflected_from {
                out.originator_id.get_or_insert(originator);
                out.cluster_list.insert(0, self.cluster_id());
            }
            if best.source == Source::Local || peer.policy.next_hop_self || out.next_hop.is_none() {
                out.next_hop = Some(self_hop?);
                out.next_hop_link_local = None;
            }
        } else {
            out.as_path.insert(0, peer.policy.own_asn(self.config.asn));
            out.as_path_len += 1;
            out.local_pref = None;
            out.originator_id = None;
            out.cluster_list.clear();
            if best.source != Source::Local {
                out.med = None;
            }
            out.next_hop = Some(self_hop?);
            out.next_hop_link_local = None;
        }
        let ctx = FilterContext {
            ibgp: to_ibgp,
            from_peer: best.source != Source::Local,
        };
        policy::apply(&peer.policy.export, prefix, &Arc::new(out), ctx)
    }

    /// Brings the Adj-RIB-Out of `address` up to date for `prefixes` (with
    /// their entries' positions) and encodes the difference.
    fn export_to(&mut self, address: IpAddr, prefixes: &[(Slot, IpNet)]) -> Vec<Vec<u8>> {
        let Some(peer) = self.peers.get(&address) else {
            return Vec::new();
        };
        let Some(four_octet_as) = peer.session.as_ref().map(|s| s.four_octet_as) else {
            return Vec::new();
        };
        // The export filter is applied last, to the attributes built for
        // the peer; a peer whose filter refuses a whole family needs none.
        let refused = Family::ALL.map(|family| rejects_all(&peer.policy.export, family));
        if refused.iter().all(|r| *r) && peer.adj_out.is_empty() {
            return Vec::new();
        }
        let mut announce: HashMap<Arc<Attrs>, Vec<IpNet>> = HashMap::default();
        let mut withdraw: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
        for (slot, prefix) in prefixes {
            let refuse = refused[usize::from(prefix.addr().is_ipv6())];
            let new = match self.table.at(*slot) {
                Some(dest) if !refuse => self.export_attrs(address, peer, prefix, dest),
                _ => None,
            };
            if new.as_ref() == peer.adj_out.get(prefix) {
                continue;
            }
            match new {
                Some(attrs) => announce.entry(attrs).or_default().push(*prefix),
                None if peer.adj_out.contains_key(prefix) => {
                    withdraw[usize::from(prefix.addr().is_ipv6())].push(*prefix);
                }
                None => {}
            }
        }
        let peer = self.peers.get_mut(&address).expect("looked up above");
        for prefix in withdraw.iter().flatten() {
            peer.adj_out.remove(prefix);
        }
        // Equal attributes share one Arc in the Adj-RIB-Out.
        for (attrs, prefixes) in &announce {
            for prefix in prefixes {
                peer.adj_out.insert(*prefix, Arc::clone(attrs));
            }
        }
        let mut messages = Vec::new();
        for (family, prefixes) in Family::ALL.into_iter().zip(&mut withdraw) {
            prefixes.sort();
            wire::encode_withdraw(family, prefixes, &mut messages);
        }
        let mut groups: Vec<(Arc<Attrs>, Vec<IpNet>)> = announce.into_iter().collect();
        groups.sort_by(|a, b| a.1.first().cmp(&b.1.first()));
        for (attrs, mut prefixes) in groups {
            prefixes.sort();
            let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
                prefixes.into_iter().partition(|p| p.addr().is_ipv4());
            if !v4.is_empty() {
                wire::encode_announce(
                    Family::Ipv4Unicast,
                    &attrs,
                    &v4,
                    four_octet_as,
                    &mut messages,
                );
            }
            if !v6.is_empty() {
                wire::encode_announce(
                    Family::Ipv6Unicast,
                    &attrs,
                    &v6,
                    four_octet_as,
                    &mut messages,
                );
            }
        }
        messages
    }
}

/// Adds or replaces in `dest` (the destination of `prefix`) the path from
/// `peer` at `address` (over iBGP or not) with `received`, after its import
/// filter.
fn add_path(
    dest: &mut Dest,
    peer: &mut Peer,
    ibgp: bool,
    address: IpAddr,
    prefix: &IpNet,
    received: Arc<Attrs>,
) {
    let ctx = FilterContext {
        ibgp,
        from_peer: true,
    };
    let attrs = policy::apply(&peer.policy.import, prefix, &received, ctx);
    let accepted = attrs.is_some();
    let source = Source::Peer(address);
    let path = Path {
        source,
        received,
        attrs,
        stale: false,
    };
    match dest
        .paths
        .as_mut_slice()
        .iter_mut()
        .find(|p| p.source == source)
    {
        Some(old) => {
            peer.accepted =
                peer.accepted + usize::from(accepted) - usize::from(old.attrs.is_some());
            *old = path;
        }
        None => {
            peer.received += 1;
            peer.accepted += usize::from(accepted);
            dest.paths.push(path);
        }
    }
}

/// True for a next hop the kernel can route through: not unspecified, and
/// not an IPv4-mapped IPv6 address (what a peer sends as the IPv6 next hop
/// over an IPv4 session; it would need an IPv4 gateway for an IPv6 route,
/// RTA_VIA, which the kernel crate does not write yet).
fn usable_next_hop(hop: &IpAddr) -> bool {
    match hop {
        IpAddr::V4(a) => !a.is_unspecified(),
        IpAddr::V6(a) => !a.is_unspecified() && a.to_ipv4_mapped().is_none(),
    }
}

/// The kernel next hops of a multipath set: learned paths with a usable
/// next hop, deduplicated; none when this node originates the prefix.
fn fib_next_hops(selected: &[Path]) -> Vec<IpAddr> {
    if selected.iter().any(|p| p.source == Source::Local) {
        return Vec::new();
    }
    let mut hops: Vec<IpAddr> = selected
        .iter()
        .filter_map(|p| p.attrs.as_ref()?.next_hop)
        .filter(usable_next_hop)
        .collect();
    hops.sort();
    hops.dedup();
    hops
}
