//! The bgp-speaker daemon: datastore watches drive one owner task, which
//! computes this node's [`Desired`] configuration and hands it to the
//! router; local blackhole routes for the node's blocks go to the kernel.
//!
//! ```text
//!  list-watch BGPConfiguration ──┐
//!  list-watch BGPPeer ───────────┤
//!  list-watch ... (one per kind  │ DaemonMsg::{Snapshot, Upserted, Deleted, WatchError}
//!    in config::WATCHED_KINDS) ──┤  (WorkloadEndpoints of other nodes are dropped here)
//!                                ▼
//!              ┌────────────── owner task (run) ──────────────┐
//!              │ Snapshot, last Desired, the running router   │
//!              │ timers: apply (coalescing), metrics refresh  │
//!              └───────┬───────────────┬──────────────┬───────┘
//!                      │ set_neighbors │ blackholes   │ Arc<Health>, Arc<Shared>
//!                      │ set_originated│ (proto 203)  ▼
//!                      ▼               ▼       health task: /livez /readyz /metrics
//!          Router (IPv4), Router (IPv6)  Kernel   status task: unix socket, NodeStatus
//! ```
//!
//! * **One router per address family**, as Calico runs BIRD and BIRD6: the
//!   IPv4 router has the IPv4 peerings, prefixes and listener, the IPv6
//!   router the IPv6 ones; each only exchanges routes of its own family and
//!   sweeps only its own family's kernel routes. A node without an address
//!   of a family has no router for it.
//!
//! Rules the owner task keeps:
//!
//! * **Nothing before sync.** No router starts and no route is touched until
//!   every watched kind has delivered its first snapshot.
//! * **Coalescing.** A change schedules an apply `apply_delay` later; every
//!   change until then joins it.
//! * **Identity restarts the router, nothing else does.** A change of AS
//!   number, router ID, cluster ID or listen address stops the router and
//!   starts a new one; a change of peerings or prefixes is handed to the
//!   running router, which restarts only the sessions whose settings changed.
//! * **Blackholes are Twill's.** Routes of protocol 203 (`twill-aggregate`)
//!   are this daemon's: after sync, those not wanted are removed. On
//!   shutdown they stay, so that a restart does not open a routing hole.
//! * **Bad input never stops the daemon.** Unusable resources are skipped
//!   with a warning; when this node cannot run BGP at all (no Node, no
//!   address), the running router is kept and the daemon reports not ready.

pub mod health;
mod router;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ipnet::IpNet;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};
use twill_api::bgp::{BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec, BindMode};
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_api::ipam::{BlockAffinitySpec, IPAMBlockSpec};
use twill_api::ippool::IPPoolSpec;
use twill_api::node::NodeSpec;
use twill_api::{Object, Spec};
use twill_kernel::route::TABLE_MAIN;
use twill_kernel::{Kernel, KernelExt, Route, RouteFilter, RouteKind, RouteProto};
use twill_store::AsyncDatastore;

use crate::config::{self, Advertised, ConfigError, Desired, PeerConfig, Secrets, Snapshot};
use crate::status::{self, NodeStatus, PeerRow};
use health::{Health, StateLabel};

pub use router::{
    FamilyKernel, RESTART_TIME, RouterRouting, RouterStarter, SELECTION_DEFERRAL_TIME, neighbor,
    row,
};

/// The daemon's settings (from the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// This node's name.
    pub node: String,
    /// Where the node-status socket is served; none when unset.
    pub status_socket: Option<PathBuf>,
    /// Where `/livez`, `/readyz` and `/metrics` are served; none when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// How long changes are coalesced before an apply.
    pub apply_delay: Duration,
    /// How often session metrics are refreshed from the router.
    pub metrics_interval: Duration,
}

impl DaemonConfig {
    /// Default timers for `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            status_socket: None,
            metrics_listen: None,
            apply_delay: Duration::from_millis(100),
            metrics_interval: Duration::from_secs(2),
        }
    }
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The node name is empty.
    #[error("invalid configuration: --node must not be empty")]
    EmptyNode,
    /// A watch could not be started.
    #[error("cannot watch {kind}: {source}")]
    Watch {
        /// The datastore kind.
        kind: &'static str,
        /// The store's error.
        source: Box<twill_store::Error>,
    },
    /// Every watch ended (the store went away).
    #[error("every datastore watch ended")]
    WatchesEnded,
    /// The metrics address cannot be bound.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The status socket cannot be bound.
    #[error("cannot serve status on {path}: {source}")]
    StatusSocket {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the router reports in totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeakerStats {
    /// UPDATE messages received.
    pub updates_received: u64,
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Sessions that left Established.
    pub flaps: u64,
}

/// What the daemon drives: the router ([`RouterRouting`]) or a test double.
pub trait Routing: Send + Sync {
    /// Replaces the peerings; unchanged sessions are kept.
    fn set_neighbors(&self, neighbors: &[PeerConfig]);
    /// Replaces the originated prefixes.
    fn set_originated(&self, originated: &[Advertised]);
    /// One row per peering.
    fn status(&self) -> BoxFuture<'_, Vec<PeerRow>>;
    /// Totals since start.
    fn stats(&self) -> BoxFuture<'_, SpeakerStats>;
    /// Stops every session (idempotent).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// What needs a new router when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// AS number.
    pub asn: u32,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Route-reflector cluster ID.
    pub cluster_id: Option<Ipv4Addr>,
    /// Where to listen for IPv4 peers (`None`: the node has no IPv4 address).
    pub listen_v4: Option<SocketAddr>,
    /// Where to listen for IPv6 peers (`None`: the node has no IPv6 address).
    pub listen_v6: Option<SocketAddr>,
}

/// The bound BGP listeners, one per family the node has an address of.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Accepts IPv4 peers.
    pub v4: Option<TcpListener>,
    /// Accepts IPv6 peers (an IPv6-only socket).
    pub v6: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `identity`.
    ///
    /// # Errors
    ///
    /// The address and the I/O error of the first bind that fails.
    pub async fn bind(identity: &Identity) -> Result<Self, (SocketAddr, std::io::Error)> {
        let v4 = match identity.listen_v4 {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|e| (address, e))?),
            None => None,
        };
        let v6 = match identity.listen_v6 {
            Some(SocketAddr::V6(address)) => {
                Some(bind_v6_only(address).map_err(|e| (SocketAddr::V6(address), e))?)
            }
            Some(address @ SocketAddr::V4(_)) => {
                return Err((
                    address,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "an IPv4 address for the IPv6 listener",
                    ),
                ));
            }
            None => None,
        };
        Ok(Self { v4, v6 })
    }
}

/// A listener for IPv6 only: the wildcard `[::]` must not also take IPv4
/// connections (they would arrive as `::ffff:a.b.c.d`, and the IPv4
/// listener needs the port).
fn bind_v6_only(address: SocketAddrV6) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, listen, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(address))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
}

/// Starts routers.
pub trait StartRouting: Send + Sync {
    /// A router with `identity`, accepting on `listeners`.
    fn start(&self, identity: &Identity, listeners: Listeners) -> Arc<dyn Routing>;
}

/// One decoded datastore object.
#[derive(Debug, Clone)]
enum Decoded {
    BgpConfiguration(Object<BGPConfigurationSpec>),
    BgpPeer(Object<BGPPeerSpec>),
    BgpFilter(Object<BGPFilterSpec>),
    Node(Object<NodeSpec>),
    IpPool(Object<IPPoolSpec>),
    IpamBlock(Object<IPAMBlockSpec>),
    BlockAffinity(Object<BlockAffinitySpec>),
    WorkloadEndpoint(Object<WorkloadEndpointSpec>),
}

fn decode_as<S: Spec>(mut value: Value) -> Result<Object<S>, String> {
    if let Value::Object(map) = &mut value {
        map.remove("apiVersion");
        map.remove("kind");
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn decode(kind: &str, value: Value) -> Result<Decoded, String> {
    Ok(match kind {
        k if k == BGPConfigurationSpec::STORE_KIND => Decoded::BgpConfiguration(decode_as(value)?),
        k if k == BGPPeerSpec::STORE_KIND => Decoded::BgpPeer(decode_as(value)?),
        k if k == BGPFilterSpec::STORE_KIND => Decoded::BgpFilter(decode_as(value)?),
        k if k == NodeSpec::STORE_KIND => Decoded::Node(decode_as(value)?),
        k if k == IPPoolSpec::STORE_KIND => Decoded::IpPool(decode_as(value)?),
        k if k == IPAMBlockSpec::STORE_KIND => Decoded::IpamBlock(decode_as(value)?),
        k if k == BlockAffinitySpec::STORE_KIND => Decoded::BlockAffinity(decode_as(value)?),
        k if k == WorkloadEndpointSpec::STORE_KIND => Decoded::WorkloadEndpoint(decode_as(value)?),
        other => return Err(format!("kind {other} is not watched")),
    })
}

/// What the watch tasks tell the owner task.
#[derive(Debug)]
enum DaemonMsg {
    Snapshot {
        kind: &'static str,
        items: Vec<(String, Result<Decoded, String>)>,
    },
    Upserted {
        kind: &'static str,
        name: String,
        item: Box<Result<Decoded, String>>,
    },
    Deleted {
        kind: &'static str,
        name: String,
    },
    WatchError {
        kind: &'static str,
        error: String,
    },
}

/// The snapshot's key of a stored object: its name, prefixed with
/// `namespace/` for a namespaced kind (WorkloadEndpoint).
fn key_name(key: twill_store::Key) -> String {
    match key.namespace {
        Some(namespace) => format!("{namespace}/{}", key.name),
        None => key.name,
    }
}

impl twill_daemon::WatchMsg for DaemonMsg {
    fn snapshot(kind: &'static str, items: Vec<twill_store::Object>) -> Self {
        Self::Snapshot {
            kind,
            items: items
                .into_iter()
                .map(|o| (key_name(o.key), decode(kind, o.value)))
                .collect(),
        }
    }

    fn upserted(kind: &'static str, object: twill_store::Object) -> Self {
        Self::Upserted {
            kind,
            name: key_name(object.key),
            item: Box::new(decode(kind, object.value)),
        }
    }

    fn deleted(kind: &'static str, object: twill_store::Object) -> Self {
        Self::Deleted {
            kind,
            name: key_name(object.key),
        }
    }

    fn watch_error(kind: &'static str, error: twill_store::Error) -> Self {
        Self::WatchError {
            kind,
            error: error.to_string(),
        }
    }
}

/// Adds or replaces an object; true when the snapshot changed. A
/// WorkloadEndpoint of another node is not kept (nor is an earlier version
/// of it).
fn insert(snapshot: &mut Snapshot, node: &str, name: String, item: Decoded) -> bool {
    match item {
        Decoded::WorkloadEndpoint(o) if o.spec.node != node => {
            return snapshot.workload_endpoints.remove(&name).is_some();
        }
        Decoded::WorkloadEndpoint(o) => drop(snapshot.workload_endpoints.insert(name, o)),
        Decoded::BgpConfiguration(o) => drop(snapshot.bgp_configurations.insert(name, o)),
        Decoded::BgpPeer(o) => drop(snapshot.bgp_peers.insert(name, o)),
        Decoded::BgpFilter(o) => drop(snapshot.bgp_filters.insert(name, o)),
        Decoded::Node(o) => drop(snapshot.nodes.insert(name, o)),
        Decoded::IpPool(o) => drop(snapshot.ip_pools.insert(name, o)),
        Decoded::IpamBlock(o) => drop(snapshot.ipam_blocks.insert(name, o)),
        Decoded::BlockAffinity(o) => drop(snapshot.block_affinities.insert(name, o)),
    }
    true
}

/// Removes an object; true when the snapshot had it.
fn remove(snapshot: &mut Snapshot, kind: &str, name: &str) -> bool {
    match kind {
        k if k == BGPConfigurationSpec::STORE_KIND => {
            snapshot.bgp_configurations.remove(name).is_some()
        }
        k if k == BGPPeerSpec::STORE_KIND => snapshot.bgp_peers.remove(name).is_some(),
        k if k == BGPFilterSpec::STORE_KIND => snapshot.bgp_filters.remove(name).is_some(),
        k if k == NodeSpec::STORE_KIND => snapshot.nodes.remove(name).is_some(),
        k if k == IPPoolSpec::STORE_KIND => snapshot.ip_pools.remove(name).is_some(),
        k if k == IPAMBlockSpec::STORE_KIND => snapshot.ipam_blocks.remove(name).is_some(),
        k if k == BlockAffinitySpec::STORE_KIND => snapshot.block_affinities.remove(name).is_some(),
        k if k == WorkloadEndpointSpec::STORE_KIND => {
            snapshot.workload_endpoints.remove(name).is_some()
        }
        _ => false,
    }
}

fn clear(snapshot: &mut Snapshot, kind: &str) {
    match kind {
        k if k == BGPConfigurationSpec::STORE_KIND => snapshot.bgp_configurations.clear(),
        k if k == BGPPeerSpec::STORE_KIND => snapshot.bgp_peers.clear(),
        k if k == BGPFilterSpec::STORE_KIND => snapshot.bgp_filters.clear(),
        k if k == NodeSpec::STORE_KIND => snapshot.nodes.clear(),
        k if k == IPPoolSpec::STORE_KIND => snapshot.ip_pools.clear(),
        k if k == IPAMBlockSpec::STORE_KIND => snapshot.ipam_blocks.clear(),
        k if k == BlockAffinitySpec::STORE_KIND => snapshot.block_affinities.clear(),
        k if k == WorkloadEndpointSpec::STORE_KIND => snapshot.workload_endpoints.clear(),
        _ => {}
    }
}

/// What the status server reads.
#[derive(Default)]
struct Shared {
    router: Option<Arc<dyn Routing>>,
    asn: u32,
    router_id: Option<Ipv4Addr>,
}

fn shared_router(shared: &Mutex<Shared>) -> (Option<Arc<dyn Routing>>, u32, Ipv4Addr) {
    let guard = shared
        .lock()
        .expect("status lock is never poisoned: no panics while held");
    (
        guard.router.clone(),
        guard.asn,
        guard.router_id.unwrap_or(Ipv4Addr::UNSPECIFIED),
    )
}

/// The state the owner task keeps.
struct Owner {
    config: DaemonConfig,
    kernel: Option<Arc<dyn Kernel>>,
    secrets: Arc<dyn Secrets>,
    starter: Arc<dyn StartRouting>,
    snapshot: Snapshot,
    synced: BTreeSet<&'static str>,
    identity: Option<Identity>,
    router: Option<Arc<dyn Routing>>,
    neighbors: Option<Vec<PeerConfig>>,
    originated: Option<Vec<Advertised>>,
    blackholes: Option<Vec<IpNet>>,
    warnings: Vec<ConfigError>,
    health: Arc<Health>,
    shared: Arc<Mutex<Shared>>,
    /// Last FSM state per peer, to count flaps.
    states: BTreeMap<(IpAddr, String), String>,
}

impl Owner {
    fn synced(&self) -> bool {
        config::WATCHED_KINDS
            .iter()
            .all(|k| self.synced.contains(k))
    }

    /// Applies one message; true when the snapshot changed.
    fn on_message(&mut self, msg: DaemonMsg) -> bool {
        match msg {
            DaemonMsg::Snapshot { kind, items } => {
                clear(&mut self.snapshot, kind);
                for (name, item) in items {
                    match item {
                        Ok(item) => drop(insert(&mut self.snapshot, &self.config.node, name, item)),
                        Err(error) => {
                            warn!(kind, %name, %error, "skipping an object that does not decode")
                        }
                    }
                }
                if self.synced.insert(kind) && self.synced() {
                    info!("datastore synced");
                    self.health.synced.set(1);
                }
                true
            }
            DaemonMsg::Upserted { kind, name, item } => match *item {
                Ok(item) => insert(&mut self.snapshot, &self.config.node, name, item),
                Err(error) => {
                    warn!(kind, %name, %error, "skipping an object that does not decode");
                    remove(&mut self.snapshot, kind, &name)
                }
            },
            DaemonMsg::Deleted { kind, name } => remove(&mut self.snapshot, kind, &name),
            DaemonMsg::WatchError { kind, error } => {
                warn!(kind, %error, "datastore watch failed; it retries");
                false
            }
        }
    }

    /// Computes and applies the configuration; returns when to retry, if
    /// something failed.
    async fn apply(&mut self) -> Option<Duration> {
        if !self.synced() {
            return None;
        }
        let computed =
            match config::desired(&self.snapshot, &self.config.node, self.secrets.as_ref()) {
                Ok(computed) => computed,
                Err(error) => {
                    error!(%error, "this node cannot run BGP; keeping the running router");
                    self.health.set_ready(false);
                    return None;
                }
            };
        if computed.warnings != self.warnings {
            for warning in &computed.warnings {
                warn!(%warning, "configuration skipped");
            }
            self.warnings.clone_from(&computed.warnings);
        }
        self.health
            .warnings
            .set(i64::try_from(computed.warnings.len()).unwrap_or(i64::MAX));
        let desired = computed.desired;
        let (listen_v4, listen_v6) = self.listen_addresses(&desired);
        let identity = Identity {
            asn: desired.asn,
            router_id: desired.router_id,
            cluster_id: desired.cluster_id,
            listen_v4,
            listen_v6,
        };
        if self.identity != Some(identity) {
            if let Some(router) = self.router.take() {
                info!("router identity changed; restarting the router");
                router.shutdown().await;
            }
            self.identity = None;
            self.neighbors = None;
            self.originated = None;
            let listeners = match Listeners::bind(&identity).await {
                Ok(listeners) => listeners,
                Err((listen, error)) => {
                    error!(%listen, %error, "cannot listen for BGP; retrying");
                    self.health.set_ready(false);
                    return Some(Duration::from_secs(1));
                }
            };
            info!(
                asn = identity.asn,
                router_id = %identity.router_id,
                listen_v4 = ?identity.listen_v4,
                listen_v6 = ?identity.listen_v6,
                "starting the router"
            );
            self.router = Some(self.starter.start(&identity, listeners));
            self.identity = Some(identity);
        }
        let router = Arc::clone(self.router.as_ref().expect("a router was started above"));
        {
            let mut shared = self.shared.lock().expect("status lock is never poisoned");
            shared.router = Some(Arc::clone(&router));
            shared.asn = desired.asn;
            shared.router_id = Some(desired.router_id);
        }
        if self.neighbors.as_ref() != Some(&desired.neighbors) {
            info!(peers = desired.neighbors.len(), "peerings changed");
            router.set_neighbors(&desired.neighbors);
            self.health
                .peers
                .set(i64::try_from(desired.neighbors.len()).unwrap_or(i64::MAX));
            self.neighbors = Some(desired.neighbors.clone());
        }
        if self.originated.as_ref() != Some(&desired.originated) {
            info!(
                prefixes = desired.originated.len(),
                "originated prefixes changed"
            );
            router.set_originated(&desired.originated);
            self.health
                .prefixes_originated
                .set(i64::try_from(desired.originated.len()).unwrap_or(i64::MAX));
            self.originated = Some(desired.originated.clone());
        }
        self.health.applies.inc();
        let retry = match &self.kernel {
            Some(kernel) if self.blackholes.as_ref() != Some(&desired.blackholes) => {
                match sync_blackholes(kernel.as_ref(), &desired.blackholes).await {
                    Ok(()) => {
                        self.blackholes = Some(desired.blackholes.clone());
                        None
                    }
                    Err(error) => {
                        error!(%error, "cannot program blackhole routes; retrying");
                        Some(Duration::from_secs(1))
                    }
                }
            }
            _ => None,
        };
        self.health.set_ready(retry.is_none());
        retry
    }

    /// The IPv4 and IPv6 listen addresses: the node's own with `bindMode:
    /// NodeIP`, the wildcard otherwise; none for a family the node lacks.
    fn listen_addresses(&self, desired: &Desired) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let bind_mode = self
            .snapshot
            .bgp_configurations
            .get("default")
            .and_then(|c| c.spec.bind_mode);
        let node_ip = bind_mode == Some(BindMode::NodeIp);
        let port = desired.listen_port;
        let v4 = desired.node_address.map(|a| {
            let ip = if node_ip { a } else { Ipv4Addr::UNSPECIFIED };
            SocketAddr::new(IpAddr::V4(ip), port)
        });
        let v6 = desired.node_address_v6.map(|a| {
            let ip = if node_ip { a } else { Ipv6Addr::UNSPECIFIED };
            SocketAddr::new(IpAddr::V6(ip), port)
        });
        (v4, v6)
    }

    async fn refresh_metrics(&mut self) {
        let Some(router) = self.router.clone() else {
            return;
        };
        let rows = router.status().await;
        let stats = router.stats().await;
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        let (mut received, mut accepted, mut advertised) = (0usize, 0usize, 0usize);
        for row in &rows {
            *by_state.entry(row.state.clone()).or_default() += 1;
            received += row.prefixes_received;
            accepted += row.prefixes_accepted;
            advertised += row.prefixes_advertised;
            let key = (row.address, row.peer_type.clone());
            if let Some(previous) = self.states.insert(key, row.state.clone())
                && previous != row.state
            {
                info!(peer = %row.address, from = %previous, to = %row.state, "session state changed");
            }
        }
        self.health.sessions.clear();
        for (state, count) in by_state {
            self.health
                .sessions
                .get_or_create(&StateLabel { state })
                .set(count);
        }
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.health.prefixes_received.set(gauge(received));
        self.health.prefixes_accepted.set(gauge(accepted));
        self.health.prefixes_advertised.set(gauge(advertised));
        Health::advance(&self.health.updates_received, stats.updates_received);
        Health::advance(&self.health.updates_sent, stats.updates_sent);
        Health::advance(&self.health.flaps, stats.flaps);
    }
}

/// Makes the kernel's protocol-203 routes exactly `wanted` (blackholes in
/// the main table).
async fn sync_blackholes(
    kernel: &dyn Kernel,
    wanted: &[IpNet],
) -> Result<(), twill_kernel::KernelError> {
    let present = kernel
        .list_routes(RouteFilter {
            table: Some(TABLE_MAIN),
            ..RouteFilter::protocol(RouteProto::TWILL_AGGREGATE)
        })
        .await?;
    let wanted_set: BTreeSet<IpNet> = wanted.iter().copied().collect();
    for route in &present {
        if !(wanted_set.contains(&route.destination) && route.kind == RouteKind::Blackhole) {
            debug!(destination = %route.destination, "removing blackhole route");
            kernel.delete_route(route.key()).await?;
        }
    }
    let have: BTreeSet<IpNet> = present
        .iter()
        .filter(|r| r.kind == RouteKind::Blackhole)
        .map(|r| r.destination)
        .collect();
    for destination in wanted_set.difference(&have) {
        debug!(%destination, "adding blackhole route");
        kernel
            .replace_route(Route::blackhole(*destination).protocol(RouteProto::TWILL_AGGREGATE))
            .await?;
    }
    Ok(())
}

/// Runs the daemon until `shutdown` completes; the router's sessions are
/// closed then, and kernel routes stay.
///
/// # Errors
///
/// [`DaemonError`] when a watch, the metrics address or the status socket
/// cannot be set up, or every watch ends.
pub async fn run(
    config: DaemonConfig,
    store: AsyncDatastore,
    kernel: Option<Arc<dyn Kernel>>,
    secrets: Arc<dyn Secrets>,
    starter: Arc<dyn StartRouting>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    if config.node.is_empty() {
        return Err(DaemonError::EmptyNode);
    }
    let span = info_span!("bgp_speaker", node = %config.node);
    let health = Arc::new(Health::new());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut background = Vec::new();
    if let Some(address) = config.metrics_listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| DaemonError::Metrics { address, source })?;
        let stall = (config.metrics_interval * 5).max(Duration::from_secs(10));
        background.push(tokio::spawn(
            twill_daemon::serve(listener, Arc::clone(&health) as _, stall).instrument(span.clone()),
        ));
    }
    if let Some(path) = &config.status_socket {
        let listener = status::bind(path).map_err(|source| DaemonError::StatusSocket {
            path: path.clone(),
            source,
        })?;
        let shared = Arc::clone(&shared);
        let node = config.node.clone();
        background.push(tokio::spawn(status::serve(listener, move || {
            let (router, asn, router_id) = shared_router(&shared);
            let node = node.clone();
            async move {
                let peers = match router {
                    Some(router) => router.status().await,
                    None => Vec::new(),
                };
                NodeStatus {
                    node,
                    asn,
                    router_id,
                    peers,
                }
            }
        })));
    }
    let (tx, mut rx) = mpsc::channel(256);
    for kind in config::WATCHED_KINDS {
        let stream =
            store
                .list_watch(kind.to_string(), None)
                .map_err(|source| DaemonError::Watch {
                    kind,
                    source: Box::new(source),
                })?;
        background.push(tokio::spawn(twill_daemon::forward_watch(
            kind,
            stream,
            tx.clone(),
        )));
    }
    drop(tx);
    let mut owner = Owner {
        kernel,
        secrets,
        starter,
        snapshot: Snapshot::default(),
        synced: BTreeSet::new(),
        identity: None,
        router: None,
        neighbors: None,
        originated: None,
        blackholes: None,
        warnings: Vec::new(),
        health: Arc::clone(&health),
        shared: Arc::clone(&shared),
        states: BTreeMap::new(),
        config,
    };
    let result = async {
        tokio::pin!(shutdown);
        let mut apply_at: Option<Instant> = None;
        let mut metrics = tokio::time::interval(owner.config.metrics_interval);
        metrics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            owner.health.heartbeat();
            let sleep_until =
                apply_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down");
                    break Ok(());
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { break Err(DaemonError::WatchesEnded) };
                    if owner.on_message(msg) && apply_at.is_none() {
                        apply_at = Some(Instant::now() + owner.config.apply_delay);
                    }
                }
                () = tokio::time::sleep_until(sleep_until), if apply_at.is_some() => {
                    apply_at = owner.apply().await.map(|retry| Instant::now() + retry);
                }
                _ = metrics.tick() => owner.refresh_metrics().await,
            }
        }
    }
    .instrument(span)
    .await;
    if let Some(router) = owner.router.take() {
        router.shutdown().await;
    }
    shared.lock().expect("status lock is never poisoned").router = None;
    for task in background {
        task.abort();
    }
    if let Some(path) = &owner.config.status_socket {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests;
