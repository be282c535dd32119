//! [`RecordingKernel`]: a [`Kernel`] for tests of callers (CNI plugin,
//! felix-rs, the BGP southbound) that records every op in order, keeps an
//! in-memory model so reads after writes agree, and fails chosen ops.
//!
//! The model follows the kernel where callers depend on it: names are
//! unique per namespace, deleting a veth deletes its peer, moving or
//! deleting an interface drops its addresses, routes, neighbours and FDB
//! entries and moving one brings it down, adds of existing objects fail with
//! `AlreadyExists`, deletes of missing ones with `NotFound`, nft scripts
//! apply all-or-nothing. It does not model what the kernel adds by itself
//! (connected routes, link-local addresses, learned neighbours) nor fill in
//! the device of a gateway route.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::addr::AddressEntry;
use crate::error::{KernelError, KernelObject};
use crate::fake_nft::FakeNft;
use crate::link::{self, LinkInfo, MacAddr};
use crate::neigh::{FdbEntry, Neighbour};
use crate::netns::{self, NetnsPath};
use crate::nft::NftTableId;
use crate::op::{Kernel, KernelOp, KernelReply, Pending};
use crate::route::{Route, RouteKey, RouteKind, normalize_metric};
use crate::route_batch::{RouteBatchReport, RouteChange, RouteFailure};
use crate::sysctl::SysctlKey;
use crate::watch::{AddressChanges, Notifier};

/// One op as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOp {
    /// Namespace it was submitted to (`None`: the fake's host namespace).
    pub netns: Option<NetnsPath>,
    /// The op.
    pub op: KernelOp,
    /// Whether it failed (injected or modelled failure).
    pub failed: bool,
}

type Matcher = Box<dyn Fn(&KernelOp) -> bool + Send>;

struct Failure {
    matcher: Matcher,
    error: KernelError,
    once: bool,
}

#[derive(Debug, Clone)]
struct FakeLink {
    info: LinkInfo,
    /// Where the other end of a veth is: (namespace, name).
    peer: Option<(Option<NetnsPath>, String)>,
}

#[derive(Debug, Clone, Default)]
struct Space {
    links: BTreeMap<String, FakeLink>,
    addresses: BTreeSet<AddressEntry>,
    routes: Vec<Route>,
    neighbours: BTreeMap<(String, IpAddr), MacAddr>,
    fdb: BTreeMap<(String, MacAddr), Option<IpAddr>>,
    sysctls: BTreeMap<SysctlKey, String>,
    nft: FakeNft,
    next_index: u32,
}

impl Space {
    fn with_loopback(up: bool) -> Self {
        let mut space = Self {
            next_index: 2,
            ..Self::default()
        };
        let lo = LinkInfo {
            index: 1,
            name: "lo".into(),
            kind: None,
            mtu: 65536,
            mac: None,
            up,
            controller: None,
            vxlan: None,
        };
        space.links.insert(
            "lo".into(),
            FakeLink {
                info: lo,
                peer: None,
            },
        );
        space
    }

    fn link(&self, name: &str) -> Result<&FakeLink, KernelError> {
        self.links.get(name).ok_or_else(|| not_found_link(name))
    }

    fn link_mut(&mut self, name: &str) -> Result<&mut FakeLink, KernelError> {
        self.links.get_mut(name).ok_or_else(|| not_found_link(name))
    }

    fn new_link(
        &mut self,
        name: &str,
        kind: &str,
        mtu: u32,
        mac: Option<MacAddr>,
        seq: u32,
    ) -> FakeLink {
        let index = self.next_index;
        self.next_index += 1;
        let [a, b, c, d] = seq.to_be_bytes();
        let mac = mac.unwrap_or(MacAddr([0x02, 0x54, a, b, c, d]));
        let info = LinkInfo {
            index,
            name: name.into(),
            kind: Some(kind.into()),
            mtu,
            mac: Some(mac),
            up: false,
            controller: None,
            vxlan: None,
        };
        FakeLink { info, peer: None }
    }

    /// Drops everything that refers to interface `name` (after a delete or
    /// a move out of this namespace).
    fn forget_link_state(&mut self, name: &str) {
        self.addresses.retain(|a| a.link != name);
        self.routes.retain(|r| {
            !r.next_hops
                .iter()
                .any(|h| h.device.as_deref() == Some(name))
        });
        self.neighbours.retain(|(link, _), _| link != name);
        self.fdb.retain(|(link, _), _| link != name);
        let marker = format!("/{name}/");
        self.sysctls
            .retain(|key, _| !(is_interface_key(key) && key.as_str().contains(&marker)));
        for l in self.links.values_mut() {
            if l.info.controller.as_deref() == Some(name) {
                l.info.controller = None;
            }
        }
    }
}

fn not_found_link(name: &str) -> KernelError {
    KernelError::NotFound {
        object: KernelObject::Interface(name.into()),
    }
}

fn exists_link(name: &str) -> KernelError {
    KernelError::AlreadyExists {
        object: KernelObject::Interface(name.into()),
    }
}

/// `net/<family>/{conf,neigh}/<interface>/<leaf>`.
fn is_interface_key(key: &SysctlKey) -> bool {
    let parts: Vec<&str> = key.as_str().split('/').collect();
    parts.len() == 5
        && parts[0] == "net"
        && matches!(parts[2], "conf" | "neigh")
        && !matches!(parts[3], "all" | "default")
}

struct State {
    spaces: BTreeMap<Option<NetnsPath>, Space>,
    log: Vec<RecordedOp>,
    failures: Vec<Failure>,
    mac_seq: u32,
    /// Address watches, by the namespace they watch.
    address_watches: Vec<(Option<NetnsPath>, Notifier)>,
}

/// The recording fake. Clones share one model and one log; [`Kernel::enter`]
/// returns a handle on another namespace of the same model.
#[derive(Clone)]
pub struct RecordingKernel {
    state: Arc<Mutex<State>>,
    netns: Option<NetnsPath>,
}

impl std::fmt::Debug for RecordingKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingKernel")
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

impl Default for RecordingKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingKernel {
    /// A fake host namespace holding only `lo` (up).
    pub fn new() -> Self {
        let state = State {
            spaces: BTreeMap::from([(None, Space::with_loopback(true))]),
            log: Vec::new(),
            failures: Vec::new(),
            mac_seq: 0,
            address_watches: Vec::new(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            netns: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a model that is still
        // consistent (every op validates before it mutates).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a namespace that exists outside the fake's ops, e.g. the one a
    /// container runtime made for a pod (`CNI_NETNS`). It holds `lo` (down).
    pub fn add_netns(&self, netns: &NetnsPath) {
        self.lock()
            .spaces
            .entry(Some(netns.clone()))
            .or_insert_with(|| Space::with_loopback(false));
    }

    /// Whether the namespace exists in the model.
    pub fn has_netns(&self, netns: &NetnsPath) -> bool {
        self.lock().spaces.contains_key(&Some(netns.clone()))
    }

    /// Sets a sysctl value without recording an op (a kernel default).
    pub fn seed_sysctl(&self, key: &SysctlKey, value: &str) {
        let mut state = self.lock();
        if let Some(space) = state.spaces.get_mut(&self.netns) {
            space.sysctls.insert(key.clone(), value.into());
        }
    }

    /// Every op submitted so far, in order, across namespaces.
    pub fn ops(&self) -> Vec<RecordedOp> {
        self.lock().log.clone()
    }

    /// The ops that change state (reads left out), in order.
    pub fn writes(&self) -> Vec<KernelOp> {
        self.lock()
            .log
            .iter()
            .filter(|r| !r.op.is_read())
            .map(|r| r.op.clone())
            .collect()
    }

    /// Returns and forgets the recorded ops.
    pub fn take_ops(&self) -> Vec<RecordedOp> {
        std::mem::take(&mut self.lock().log)
    }

    /// Makes every op matching `matcher` fail with `error` until
    /// [`clear_failures`](Self::clear_failures).
    pub fn fail_when(
        &self,
        matcher: impl Fn(&KernelOp) -> bool + Send + 'static,
        error: KernelError,
    ) {
        self.inject_failure(matcher, error, false);
    }

    /// Makes the next op matching `matcher` fail with `error`.
    pub fn fail_once(
        &self,
        matcher: impl Fn(&KernelOp) -> bool + Send + 'static,
        error: KernelError,
    ) {
        self.inject_failure(matcher, error, true);
    }

    fn inject_failure(
        &self,
        matcher: impl Fn(&KernelOp) -> bool + Send + 'static,
        error: KernelError,
        once: bool,
    ) {
        self.lock().failures.push(Failure {
            matcher: Box::new(matcher),
            error,
            once,
        });
    }

    /// Removes every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// The lines applied to an nft table of this namespace, in order.
    pub fn nft_table_text(&self, family: &str, name: &str) -> Option<String> {
        let state = self.lock();
        state
            .spaces
            .get(&self.netns)?
            .nft
            .table_text(&NftTableId::new(family, name))
    }

    fn run(&self, op: &KernelOp) -> Result<KernelReply, KernelError> {
        let mut state = self.lock();
        let result = match take_injected(&mut state, op) {
            Some(error) => Err(error),
            None => execute(&mut state, &self.netns, op),
        };
        state.log.push(RecordedOp {
            netns: self.netns.clone(),
            op: op.clone(),
            failed: result.is_err(),
        });
        if result.is_ok() && changes_addresses(op) {
            let netns = &self.netns;
            state
                .address_watches
                .retain(|(watched, notifier)| watched != netns || notifier.notify());
        }
        result
    }
}

/// Whether `op` changes what an address watch reports: addresses, or
/// interfaces (which carry them).
fn changes_addresses(op: &KernelOp) -> bool {
    matches!(
        op,
        KernelOp::AddAddress(_)
            | KernelOp::DeleteAddress(_)
            | KernelOp::CreateVeth(_)
            | KernelOp::CreateBridge(_)
            | KernelOp::CreateVxlan(_)
            | KernelOp::MoveLink { .. }
            | KernelOp::RenameLink { .. }
            | KernelOp::SetLinkUp { .. }
            | KernelOp::DeleteLink { .. }
    )
}

impl Kernel for RecordingKernel {
    fn submit(&self, op: KernelOp) -> Pending<KernelReply> {
        Pending::ready(self.run(&op))
    }

    fn enter(&self, netns: &NetnsPath) -> Result<Arc<dyn Kernel>, KernelError> {
        if !self.has_netns(netns) {
            return Err(KernelError::NotFound {
                object: netns.object(),
            });
        }
        Ok(Arc::new(Self {
            state: Arc::clone(&self.state),
            netns: Some(netns.clone()),
        }))
    }

    fn watch_addresses(&self) -> Result<AddressChanges, KernelError> {
        let (notifier, changes) = AddressChanges::channel();
        self.lock()
            .address_watches
            .push((self.netns.clone(), notifier));
        Ok(changes)
    }
}

/// The error of the first injected failure matching `op` (forgotten if
/// it was for one op only).
fn take_injected(state: &mut State, op: &KernelOp) -> Option<KernelError> {
    let at = state.failures.iter().position(|f| (f.matcher)(op))?;
    let error = state.failures[at].error.clone();
    if state.failures[at].once {
        state.failures.remove(at);
    }
    Some(error)
}

/// Applies a batch change by change, as the kernel does: each change is
/// the equivalent single op (so failures injected for `ReplaceRoute` and
/// `DeleteRoute` hit batched changes too), and one failure stops nothing.
fn apply_routes(state: &mut State, ns: &Option<NetnsPath>, changes: &[RouteChange]) -> KernelReply {
    let mut failed = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let single = match change {
            RouteChange::Replace(route) => KernelOp::ReplaceRoute(route.clone()),
            RouteChange::Delete(key) => KernelOp::DeleteRoute(key.clone()),
        };
        let result = match take_injected(state, &single) {
            Some(error) => Err(error),
            None => execute(state, ns, &single),
        };
        if let Err(error) = result {
            failed.push(RouteFailure { index, error });
        }
    }
    KernelReply::RouteBatch(RouteBatchReport {
        applied: changes.len() - failed.len(),
        failed,
    })
}

fn space<'a>(state: &'a mut State, ns: &Option<NetnsPath>) -> Result<&'a mut Space, KernelError> {
    state
        .spaces
        .get_mut(ns)
        .ok_or_else(|| KernelError::NotFound {
            object: KernelObject::Netns(
                ns.as_ref()
                    .map_or_else(|| "host".into(), ToString::to_string),
            ),
        })
}

/// Starts creating one link called `name` in `ns` (a bridge, a VXLAN
/// device): checks the name, takes the next MAC sequence number, and fails
/// if the name is taken.
fn new_link_slot<'a>(
    state: &'a mut State,
    ns: &Option<NetnsPath>,
    name: &str,
) -> Result<(&'a mut Space, u32), KernelError> {
    link::check_name(name)?;
    state.mac_seq += 1;
    let seq = state.mac_seq;
    let space = space(state, ns)?;
    if space.links.contains_key(name) {
        return Err(exists_link(name));
    }
    Ok((space, seq))
}

/// Removes the entry `(link, key)` of a per-link table (neighbours, FDB),
/// or fails with `NotFound` naming `object`.
fn remove_per_link<K: Ord, V>(
    table: &mut BTreeMap<(String, K), V>,
    link: &str,
    key: K,
    object: impl FnOnce() -> KernelObject,
) -> Result<KernelReply, KernelError> {
    table
        .remove(&(link.to_string(), key))
        .map(|_| KernelReply::Done)
        .ok_or_else(|| KernelError::NotFound { object: object() })
}

/// The entries of a per-link table (neighbours, FDB) of every link, or of
/// `link`, which must exist.
fn list_per_link<K: Copy, V: Copy, T>(
    space: &Space,
    table: &BTreeMap<(String, K), V>,
    link: &Option<String>,
    entry: impl Fn(String, K, V) -> T,
) -> Result<Vec<T>, KernelError> {
    if let Some(name) = link {
        space.link(name)?;
    }
    Ok(table
        .iter()
        .filter(|((l, _), _)| link.as_deref().is_none_or(|want| l == want))
        .map(|((l, k), v)| entry(l.clone(), *k, *v))
        .collect())
}

fn check_route(space: &Space, route: &Route) -> Result<(), KernelError> {
    let invalid = |reason: &str| {
        Err(KernelError::Invalid {
            object: route.object(),
            reason: reason.into(),
        })
    };
    if route.kind.is_reject() && !route.next_hops.is_empty() {
        return invalid("reject routes (blackhole, unreachable, prohibit, throw) take no next hop");
    }
    if route.kind == RouteKind::Unicast && route.next_hops.is_empty() {
        return invalid("a unicast route needs a next hop");
    }
    if route.next_hops.len() > 1
        && route
            .next_hops
            .iter()
            .any(|h| !(1..=256).contains(&h.weight))
    {
        return invalid("next hop weights are 1 to 256");
    }
    for hop in &route.next_hops {
        if let Some(device) = &hop.device {
            space.link(device)?;
        }
    }
    Ok(())
}

fn same_key(a: &Route, b: &Route) -> bool {
    a.destination == b.destination && a.table == b.table && a.metric == b.metric
}

fn key_matches(key: &RouteKey, route: &Route) -> bool {
    let metric = normalize_metric(&key.destination, key.metric);
    route.destination == key.destination.trunc()
        && route.table == key.table
        && (key.metric.is_none() || route.metric == metric)
        && key.protocol.is_none_or(|p| p == route.protocol)
}

fn execute(
    state: &mut State,
    ns: &Option<NetnsPath>,
    op: &KernelOp,
) -> Result<KernelReply, KernelError> {
    use KernelOp as Op;
    use KernelReply as R;
    match op {
        Op::CreateNetns { name } => {
            netns::check_name(name)?;
            let path = NetnsPath::named(name);
            if state.spaces.contains_key(&Some(path.clone())) {
                return Err(KernelError::AlreadyExists {
                    object: path.object(),
                });
            }
            state.spaces.insert(Some(path), Space::with_loopback(false));
            Ok(R::Done)
        }
        Op::DeleteNetns { name } => {
            netns::check_name(name)?;
            let path = NetnsPath::named(name);
            let removed =
                state
                    .spaces
                    .remove(&Some(path.clone()))
                    .ok_or(KernelError::NotFound {
                        object: path.object(),
                    })?;
            // Veths die with their namespace, and take their peers along.
            for link in removed.links.values() {
                if let Some((peer_ns, peer)) = &link.peer
                    && let Some(other) = state.spaces.get_mut(peer_ns)
                {
                    other.links.remove(peer);
                    other.forget_link_state(peer);
                }
            }
            Ok(R::Done)
        }
        Op::CreateVeth(spec) => {
            link::check_name(&spec.name)?;
            link::check_name(&spec.peer_name)?;
            let peer_ns = spec.peer_netns.clone().or_else(|| ns.clone());
            if space(state, ns)?.links.contains_key(&spec.name) {
                return Err(exists_link(&spec.name));
            }
            if space(state, &peer_ns)?.links.contains_key(&spec.peer_name)
                || (peer_ns == *ns && spec.name == spec.peer_name)
            {
                return Err(exists_link(&spec.peer_name));
            }
            state.mac_seq += 2;
            let seq = state.mac_seq;
            let mtu = spec.mtu.unwrap_or(1500);
            let mut local = space(state, ns)?.new_link(&spec.name, "veth", mtu, spec.mac, seq);
            local.peer = Some((peer_ns.clone(), spec.peer_name.clone()));
            space(state, ns)?.links.insert(spec.name.clone(), local);
            let mut remote = space(state, &peer_ns)?.new_link(
                &spec.peer_name,
                "veth",
                mtu,
                spec.peer_mac,
                seq + 1,
            );
            remote.peer = Some((ns.clone(), spec.name.clone()));
            space(state, &peer_ns)?
                .links
                .insert(spec.peer_name.clone(), remote);
            Ok(R::Done)
        }
        Op::CreateBridge(spec) => {
            let (space, seq) = new_link_slot(state, ns, &spec.name)?;
            let link = space.new_link(&spec.name, "bridge", spec.mtu.unwrap_or(1500), None, seq);
            space.links.insert(spec.name.clone(), link);
            Ok(R::Done)
        }
        Op::CreateVxlan(spec) => {
            let (space, seq) = new_link_slot(state, ns, &spec.name)?;
            if let Some(underlay) = &spec.underlay {
                space.link(underlay)?;
            }
            let mut link =
                space.new_link(&spec.name, "vxlan", spec.mtu.unwrap_or(1450), spec.mac, seq);
            link.info.vxlan = Some(crate::VxlanIdentity::of(spec));
            space.links.insert(spec.name.clone(), link);
            Ok(R::Done)
        }
        Op::MoveLink { name, netns } => {
            let target = Some(netns.clone());
            space(state, &target)?;
            if target == *ns {
                return Ok(R::Done);
            }
            let mut moving = space(state, ns)?.link(name)?.clone();
            if space(state, &target)?.links.contains_key(name) {
                return Err(exists_link(name));
            }
            let source = space(state, ns)?;
            source.links.remove(name);
            source.forget_link_state(name);
            let dest = space(state, &target)?;
            moving.info.index = dest.next_index;
            dest.next_index += 1;
            moving.info.up = false;
            moving.info.controller = None;
            let peer = moving.peer.clone();
            dest.links.insert(name.clone(), moving);
            if let Some((peer_ns, peer_name)) = peer
                && let Some(p) = state
                    .spaces
                    .get_mut(&peer_ns)
                    .and_then(|s| s.links.get_mut(&peer_name))
            {
                p.peer = Some((target, name.clone()));
            }
            Ok(R::Done)
        }
        Op::RenameLink { name, new_name } => {
            link::check_name(new_name)?;
            let space_ = space(state, ns)?;
            let mut renamed = space_.link(name)?.clone();
            if space_.links.contains_key(new_name) {
                return Err(exists_link(new_name));
            }
            space_.links.remove(name);
            renamed.info.name = new_name.clone();
            let peer = renamed.peer.clone();
            space_.links.insert(new_name.clone(), renamed);
            space_.addresses = std::mem::take(&mut space_.addresses)
                .into_iter()
                .map(|mut a| {
                    if a.link == *name {
                        a.link = new_name.clone();
                    }
                    a
                })
                .collect();
            for route in &mut space_.routes {
                for hop in &mut route.next_hops {
                    if hop.device.as_deref() == Some(name.as_str()) {
                        hop.device = Some(new_name.clone());
                    }
                }
            }
            space_.neighbours = std::mem::take(&mut space_.neighbours)
                .into_iter()
                .map(|((l, ip), mac)| ((if l == *name { new_name.clone() } else { l }, ip), mac))
                .collect();
            space_.fdb = std::mem::take(&mut space_.fdb)
                .into_iter()
                .map(|((l, mac), dst)| ((if l == *name { new_name.clone() } else { l }, mac), dst))
                .collect();
            for l in space_.links.values_mut() {
                if l.info.controller.as_deref() == Some(name.as_str()) {
                    l.info.controller = Some(new_name.clone());
                }
            }
            if let Some((peer_ns, peer_name)) = peer
                && let Some(p) = state
                    .spaces
                    .get_mut(&peer_ns)
                    .and_then(|s| s.links.get_mut(&peer_name))
            {
                p.peer = Some((ns.clone(), new_name.clone()));
            }
            Ok(R::Done)
        }
        Op::SetLinkUp { name, up } => {
            space(state, ns)?.link_mut(name)?.info.up = *up;
            Ok(R::Done)
        }
        Op::SetLinkMtu { name, mtu } => {
            space(state, ns)?.link_mut(name)?.info.mtu = *mtu;
            Ok(R::Done)
        }
        Op::SetLinkMac { name, mac } => {
            space(state, ns)?.link_mut(name)?.info.mac = Some(*mac);
            Ok(R::Done)
        }
        Op::SetLinkController { name, controller } => {
            let space = space(state, ns)?;
            space.link(name)?;
            if let Some(bridge) = controller {
                let kind = space.link(bridge)?.info.kind.clone();
                if kind.as_deref() != Some("bridge") {
                    return Err(KernelError::Invalid {
                        object: KernelObject::Interface(bridge.clone()),
                        reason: "only bridges take ports".into(),
                    });
                }
            }
            space.link_mut(name)?.info.controller = controller.clone();
            Ok(R::Done)
        }
        Op::DeleteLink { name } => {
            let space_ = space(state, ns)?;
            let removed = space_
                .links
                .remove(name)
                .ok_or_else(|| not_found_link(name))?;
            space_.forget_link_state(name);
            if let Some((peer_ns, peer)) = removed.peer
                && let Some(other) = state.spaces.get_mut(&peer_ns)
            {
                other.links.remove(&peer);
                other.forget_link_state(&peer);
            }
            Ok(R::Done)
        }
        Op::GetLink { name } => Ok(R::Link(space(state, ns)?.link(name)?.info.clone())),
        Op::ListLinks { prefix } => Ok(R::Links(
            space(state, ns)?
                .links
                .values()
                .filter(|l| prefix.as_deref().is_none_or(|p| l.info.name.starts_with(p)))
                .map(|l| l.info.clone())
                .collect(),
        )),
        Op::AddAddress(entry) => {
            let space = space(state, ns)?;
            space.link(&entry.link)?;
            if !space.addresses.insert(entry.clone()) {
                return Err(KernelError::AlreadyExists {
                    object: KernelObject::Address {
                        link: entry.link.clone(),
                        addr: entry.addr,
                    },
                });
            }
            Ok(R::Done)
        }
        Op::DeleteAddress(entry) => {
            let space = space(state, ns)?;
            space.link(&entry.link)?;
            if !space.addresses.remove(entry) {
                return Err(KernelError::NotFound {
                    object: KernelObject::Address {
                        link: entry.link.clone(),
                        addr: entry.addr,
                    },
                });
            }
            Ok(R::Done)
        }
        Op::ListAddresses { link } => {
            let space = space(state, ns)?;
            if let Some(name) = link {
                space.link(name)?;
            }
            Ok(R::Addresses(
                space
                    .addresses
                    .iter()
                    .filter(|a| link.as_deref().is_none_or(|l| a.link == l))
                    .cloned()
                    .collect(),
            ))
        }
        Op::AddRoute(route) | Op::ReplaceRoute(route) => {
            let space = space(state, ns)?;
            check_route(space, route)?;
            let route = route.clone().normalized();
            let existing = space.routes.iter().position(|r| same_key(r, &route));
            match (existing, matches!(op, Op::ReplaceRoute(_))) {
                (Some(_), false) => {
                    return Err(KernelError::AlreadyExists {
                        object: route.object(),
                    });
                }
                (Some(at), true) => space.routes[at] = route,
                (None, _) => space.routes.push(route),
            }
            space.routes.sort();
            Ok(R::Done)
        }
        Op::DeleteRoute(key) => {
            let space = space(state, ns)?;
            let at = space
                .routes
                .iter()
                .position(|r| key_matches(key, r))
                .ok_or_else(|| KernelError::NotFound {
                    object: key.object(),
                })?;
            space.routes.remove(at);
            Ok(R::Done)
        }
        Op::ApplyRoutes(changes) => Ok(apply_routes(state, ns, changes)),
        Op::ListRoutes(filter) => Ok(R::Routes(
            space(state, ns)?
                .routes
                .iter()
                .filter(|r| filter.matches(r))
                .cloned()
                .collect(),
        )),
        Op::AddNeighbour(entry) => {
            let space = space(state, ns)?;
            space.link(&entry.link)?;
            space
                .neighbours
                .insert((entry.link.clone(), entry.ip), entry.mac);
            Ok(R::Done)
        }
        Op::DeleteNeighbour { link, ip } => {
            let space = space(state, ns)?;
            space.link(link)?;
            remove_per_link(&mut space.neighbours, link, *ip, || {
                KernelObject::Neighbour {
                    link: link.clone(),
                    ip: *ip,
                }
            })
        }
        Op::ListNeighbours { link } => {
            let space = space(state, ns)?;
            list_per_link(space, &space.neighbours, link, |link, ip, mac| Neighbour {
                link,
                ip,
                mac,
            })
            .map(R::Neighbours)
        }
        Op::AddFdb(entry) => {
            let space = space(state, ns)?;
            space.link(&entry.link)?;
            space.fdb.insert((entry.link.clone(), entry.mac), entry.dst);
            Ok(R::Done)
        }
        Op::DeleteFdb(entry) => {
            let space = space(state, ns)?;
            space.link(&entry.link)?;
            remove_per_link(&mut space.fdb, &entry.link, entry.mac, || {
                KernelObject::Fdb {
                    link: entry.link.clone(),
                    mac: entry.mac,
                }
            })
        }
        Op::ListFdb { link } => {
            let space = space(state, ns)?;
            list_per_link(space, &space.fdb, link, |link, mac, dst| FdbEntry {
                link,
                mac,
                dst,
            })
            .map(R::Fdb)
        }
        Op::ReadSysctl(key) => space(state, ns)?
            .sysctls
            .get(key)
            .cloned()
            .map(R::Sysctl)
            .ok_or_else(|| KernelError::NotFound {
                object: KernelObject::Sysctl(key.clone()),
            }),
        Op::WriteSysctl { key, value } => {
            let space = space(state, ns)?;
            if is_interface_key(key) {
                let interface = key.as_str().split('/').nth(3).unwrap_or_default();
                if !space.links.contains_key(interface) {
                    return Err(KernelError::NotFound {
                        object: KernelObject::Sysctl(key.clone()),
                    });
                }
            }
            space.sysctls.insert(key.clone(), value.clone());
            Ok(R::Done)
        }
        Op::NftApply { script } => space(state, ns)?.nft.apply(script).map(|()| R::Done),
        Op::NftReadTable(id) => {
            id.check()?;
            space(state, ns)?.nft.read_table(id).map(R::NftTable)
        }
        Op::NftDeleteTable(id) => {
            id.check()?;
            space(state, ns)?.nft.delete_table(id).map(|()| R::Done)
        }
        Op::NftListTables => Ok(R::NftTables(space(state, ns)?.nft.list_tables())),
        // The fake keeps no flows: the op is only recorded.
        Op::DeleteConntrack { .. } => space(state, ns).map(|_| R::Done),
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
