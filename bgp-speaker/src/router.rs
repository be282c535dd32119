//! The router: the tokio glue between the session runner ([`Speaker`]), the
//! pure [`Rib`] and the kernel.
//!
//! ```text
//!   Router handle --RouterMsg (neighbors, prefixes, queries)--+
//!   Speaker --RibMsg (Up/Down/Updates/RouteRefresh)-----------+
//!   timers (stale routes, start-up sweep) --RouterMsg---------+
//!                                                             v
//!                                     +-----------------------------------+
//!                                     | owner task: Rib, peers, counters  |
//!                                     | drain a batch -> Rib::process()   |
//!                                     +-----------------------------------+
//!          Speaker <--Command::SendUpdate--|                 | FibChange batches
//!                                                            v
//!                                  kernel thread: one ApplyRoutes batch per flush
//!                                  (replace/delete, proto 202), start-up sweep
//!                                  of stale protocol-202 routes
//! ```
//!
//! * Messages are handled in batches: everything queued is applied to the
//!   RIB before one decision run, so a table dump costs one pass. The
//!   speaker is started batched: the UPDATEs of one socket read come in one
//!   `RibMsg::Updates`, and the connection reads on only as those batches
//!   are applied and dropped here, so a busy RIB slows the peer down (TCP
//!   flow control) instead of decoded UPDATEs piling up in the queue.
//! * Kernel routes are written by their own thread, so netlink latency
//!   never holds up BGP, and a busy runtime never holds up the kernel.
//!   Decisions queued while a batch runs are merged (latest per prefix
//!   wins) into the next one; each batch is one `KernelOp::ApplyRoutes`,
//!   which the kernel crate pipelines over netlink and answers per route,
//!   so one refused route never holds up the rest.
//! * Start-up: protocol-202 routes left by a previous run stay (forwarding
//!   continues) until every configured peer has sent End-of-RIB for its
//!   families, or `stale_sweep_after` has passed; then those not wanted are
//!   deleted.
//! * Selection deferral (RFC 4724 §4.1), with graceful restart configured:
//!   after a restart (with a kernel: one that finds its routes of the
//!   previous run still there) the router receives and stores routes but runs no
//!   decision, writes no kernel route and sends no UPDATE until every
//!   configured peer is Established and each of them that announced
//!   graceful restart without the Restart State bit has sent End-of-RIB for
//!   every negotiated family (peers without the capability, and peers
//!   restarting themselves, are not waited for, so two restarting speakers
//!   never wait for each other), or until `stale_sweep_after` has passed.
//!   Then one decision pass runs, its kernel writes go out, and every
//!   Established peer gets the whole table followed by End-of-RIB.
//! * Graceful restart (RFC 4724), helper: a peer whose session drops
//!   without a NOTIFICATION, having announced the capability, keeps its
//!   routes (stale) for its restart time; its End-of-RIB after the new
//!   session removes what it did not refresh. Restarting: sessions opened
//!   before the start-up sweep announce the restart flag and preserved
//!   forwarding; every table dump ends with End-of-RIB.
//! * Shutdown leaves kernel routes in place. With graceful restart
//!   configured the connections are closed without a NOTIFICATION, so that
//!   peers keep this node's routes while it restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use twill_kernel::Kernel;
use twill_kernel::route::TABLE_MAIN;
use twill_kernel::{KernelExt, RouteFilter, RouteProto};

pub use crate::config::{Filter, FilterAction, FilterRule, MatchOperator, PeerTypeMatch};
use crate::fsm::{PeerConfig, State};
use crate::packet::{Family, GracefulRestart, Update, encode_end_of_rib};
use crate::rib::{Attrs, Origin, PeerPolicy, Received, Rib, RibConfig, SessionInfo, Source};
use crate::speaker::{Command, PeerSpec, RibMsg, Speaker};

mod kernel;
#[cfg(test)]
mod tests;

use kernel::{KernelJob, KernelReport, kernel_writer};

/// The router's identity and southbound.
#[derive(Clone)]
pub struct RouterConfig {
    /// Own AS.
    pub asn: u32,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Route-reflector cluster ID (this node is a reflector when set or
    /// when a neighbour is a client).
    pub cluster_id: Option<Ipv4Addr>,
    /// Where learned routes go; `None`: nowhere.
    pub kernel: Option<Arc<dyn Kernel>>,
    /// Announce graceful restart with this restart time (a neighbour's
    /// `max_restart_time` overrides it).
    pub graceful_restart_time: Option<Duration>,
    /// The Selection_Deferral_Timer (RFC 4724 §4.1): the longest wait for
    /// End-of-RIB from every peer, both before the first decision pass
    /// (with graceful restart configured) and before stale protocol-202
    /// kernel routes from a previous run are removed.
    pub stale_sweep_after: Duration,
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("asn", &self.asn)
            .field("router_id", &self.router_id)
            .field("cluster_id", &self.cluster_id)
            .field("kernel", &self.kernel.is_some())
            .field("graceful_restart_time", &self.graceful_restart_time)
            .field("stale_sweep_after", &self.stale_sweep_after)
            .finish()
    }
}

/// One BGP peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's TCP port.
    pub port: u16,
    /// The peer's AS (ours: iBGP).
    pub asn: u32,
    /// The AS presented to this peer instead of the router's
    /// (`localASNumber`).
    pub local_asn: Option<u32>,
    /// Source address for the session.
    pub local_address: Option<IpAddr>,
    /// The peer is a route-reflector client of this node.
    pub route_reflector_client: bool,
    /// Keepalive interval (informational: the session uses a third of the
    /// negotiated hold time, RFC 4271 §10).
    pub keepalive: Duration,
    /// Hold time proposed in our OPEN.
    pub hold: Duration,
    /// TCP MD5 password (RFC 2385).
    pub password: Option<String>,
    /// Graceful restart time announced to this peer (overrides the router's).
    pub max_restart_time: Option<Duration>,
    /// Import filter.
    pub import: Filter,
    /// Export filter.
    pub export: Filter,
    /// Shown by node status ("Node-to-node mesh", "Global", ...).
    pub description: String,
    /// Send routes to this (iBGP) peer with this node as next hop.
    pub next_hop_self: bool,
    /// Wait for the peer to connect; never initiate.
    pub passive: bool,
    /// GTSM (RFC 5082, BGPPeer `ttlSecurity`): the peer is at most this many
    /// hops away. `None` or 0: off.
    pub ttl_security: Option<u8>,
}

impl Neighbor {
    /// A peering with defaults: port 179, hold 90 s, no password, no filters.
    pub fn new(address: IpAddr, asn: u32) -> Self {
        Self {
            address,
            port: 179,
            asn,
            local_asn: None,
            local_address: None,
            route_reflector_client: false,
            keepalive: Duration::from_secs(30),
            hold: Duration::from_secs(90),
            password: None,
            max_restart_time: None,
            import: Filter::default(),
            export: Filter::default(),
            description: String::new(),
            next_hop_self: false,
            passive: false,
            ttl_security: None,
        }
    }

    /// True when a change from `self` to `other` needs a new session.
    fn session_differs(&self, other: &Neighbor) -> bool {
        self.port != other.port
            || self.asn != other.asn
            || self.local_address != other.local_address
            || self.hold != other.hold
            || self.password != other.password
            || self.max_restart_time != other.max_restart_time
            || self.passive != other.passive
            || self.ttl_security != other.ttl_security
    }

    fn policy(&self) -> PeerPolicy {
        PeerPolicy {
            asn: self.asn,
            local_asn: self.local_asn,
            route_reflector_client: self.route_reflector_client,
            next_hop_self: self.next_hop_self,
            import: self.import.clone(),
            export: self.export.clone(),
        }
    }
}

/// A prefix this node originates (next hop self).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Originated {
    /// The prefix.
    pub prefix: IpNet,
    /// Standard communities.
    pub communities: Vec<u32>,
    /// Large communities.
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// One row of `node status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The peering's description.
    pub description: String,
    /// FSM state.
    pub state: State,
    /// When the state was entered.
    pub since: SystemTime,
    /// "Established", or what went wrong last.
    pub info: String,
    /// Prefixes in the peer's Adj-RIB-In.
    pub prefixes_received: usize,
    /// Of those, accepted by the import filter.
    pub prefixes_accepted: usize,
    /// Prefixes in its Adj-RIB-Out.
    pub prefixes_advertised: usize,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// UPDATE messages received.
    pub updates_in: u64,
    /// UPDATE messages sent.
    pub updates_out: u64,
    /// Prefixes with a best path.
    pub loc_rib_prefixes: usize,
    /// Sessions that left Established.
    pub flaps: u64,
    /// Number of sessions in each state.
    pub sessions: BTreeMap<String, usize>,
    /// Kernel route writes (add/replace and delete) that succeeded.
    pub kernel_writes: u64,
    /// Kernel route writes that failed (e.g. next hop not directly reachable).
    pub kernel_errors: u64,
    /// Protocol-202 routes present in the kernel (as last written).
    pub kernel_routes: usize,
    /// The start-up sweep of stale kernel routes has run.
    pub startup_swept: bool,
    /// Route selection is still deferred after a restart (RFC 4724 §4.1).
    pub selection_deferred: bool,
}

/// One path in `loc_rib()` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSummary {
    /// The peer it was learned from; `None` for this node's own prefixes.
    pub peer: Option<IpAddr>,
    /// Next hop (`None`: this node).
    pub next_hop: Option<IpAddr>,
    /// AS_PATH, nearest first.
    pub as_path: Vec<u32>,
    /// ORIGIN.
    pub origin: Origin,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// MED.
    pub med: Option<u32>,
    /// Communities.
    pub communities: Vec<u32>,
    /// ORIGINATOR_ID.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST.
    pub cluster_list: Vec<Ipv4Addr>,
    /// The best path.
    pub best: bool,
    /// In the multipath (ECMP) set.
    pub multipath: bool,
    /// Kept across the peer's graceful restart.
    pub stale: bool,
}

/// Handle to a running router. Dropping it ends the router too (connections
/// close as in a graceful-restart shutdown; kernel routes stay).
#[derive(Debug)]
pub struct Router {
    tx: mpsc::UnboundedSender<RouterMsg>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

enum RouterMsg {
    SetNeighbors(Vec<Neighbor>),
    SetOriginated(Vec<Originated>),
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Stats(oneshot::Sender<RouterStats>),
    LocRib(oneshot::Sender<Vec<(IpNet, Vec<PathSummary>)>>),
    Stop(oneshot::Sender<()>),
    StaleTimer { peer: IpAddr, generation: u64 },
    SweepTimer,
    Kernel(KernelReport),
}

impl Router {
    /// Starts the router; with `listener`, peers may also connect to it.
    pub fn start(config: RouterConfig, listener: Option<TcpListener>) -> Router {
        let (tx, rx) = mpsc::unbounded_channel();
        let (speaker, rib_rx) = Speaker::start_batched(listener);
        let kernel = config.kernel.clone().map(|kernel| {
            let (ktx, krx) = mpsc::unbounded_channel();
            let report = tx.downgrade();
            // A thread of its own: a tokio task woken by the busy owner task
            // can wait for a worker until the owner yields, which left the
            // kernel idle for most of a table dump.
            std::thread::Builder::new()
                .name("bgp-kernel".into())
                .spawn(move || kernel_writer(kernel.as_ref(), krx, report))
                .expect("a thread can be started at router start unless the process is out of resources");
            ktx
        });
        let sweep_after = config.stale_sweep_after;
        // Timers and the kernel writer hold weak senders: dropping the handle
        // closes the channel and ends the owner task.
        let timer_tx = tx.downgrade();
        tokio::spawn(async move {
            tokio::time::sleep(sweep_after).await;
            if let Some(tx) = timer_tx.upgrade() {
                let _ = tx.send(RouterMsg::SweepTimer);
            }
        });
        let owner = Owner::new(config, SpeakerLink::Live(speaker), tx.downgrade(), kernel);
        let task = tokio::spawn(owner.run(rx, rib_rx));
        Router {
            tx,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Replaces the peerings: new ones start, removed ones stop, changed
    /// ones restart only when a session setting changed (filters,
    /// reflector-client and next-hop settings apply without a restart).
    pub fn set_neighbors(&self, neighbors: Vec<Neighbor>) {
        let _ = self.tx.send(RouterMsg::SetNeighbors(neighbors));
    }

    /// Replaces this node's prefixes.
    pub fn set_originated(&self, routes: Vec<Originated>) {
        let _ = self.tx.send(RouterMsg::SetOriginated(routes));
    }

    async fn ask<T: Default>(&self, make: impl FnOnce(oneshot::Sender<T>) -> RouterMsg) -> T {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).is_err() {
            return T::default();
        }
        rx.await.unwrap_or_default()
    }

    /// One row per peering, in address order.
    pub async fn status(&self) -> Vec<PeerStatus> {
        self.ask(RouterMsg::Status).await
    }

    /// Counters.
    pub async fn stats(&self) -> RouterStats {
        self.ask(RouterMsg::Stats).await
    }

    /// The Loc-RIB: every prefix with its accepted paths, best first.
    pub async fn loc_rib(&self) -> Vec<(IpNet, Vec<PathSummary>)> {
        self.ask(RouterMsg::LocRib).await
    }

    /// Stops every session and the router (idempotent); kernel routes stay.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(RouterMsg::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        let task = self
            .task
            .lock()
            .expect("the task lock is never poisoned: no panics while held")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Graceful shutdown: see [`Router::stop`].
    pub async fn shutdown(self) {
        self.stop().await;
    }
}

/// Where the owner's commands for the sessions go: the running [`Speaker`],
/// or, in the router's unit tests, a channel the test reads.
enum SpeakerLink {
    Live(Speaker),
    #[cfg(test)]
    Recorder(mpsc::UnboundedSender<Command>),
}

impl SpeakerLink {
    fn command(&self, command: Command) {
        match self {
            SpeakerLink::Live(speaker) => {
                speaker.command(command);
            }
            #[cfg(test)]
            SpeakerLink::Recorder(tx) => {
                let _ = tx.send(command);
            }
        }
    }
}

#[derive(Debug, Default)]
struct PeerRuntime {
    /// Families of the current session.
    families: BTreeSet<Family>,
    four_octet_as: bool,
    /// Families whose End-of-RIB arrived on the current session.
    end_of_rib: BTreeSet<Family>,
    /// Generation of the running stale-routes timer.
    stale_timer: Option<u64>,
    established: bool,
    /// The peer's End-of-RIB ends this router's selection deferral: it
    /// announced graceful restart without the Restart State bit (RFC 4724
    /// §4.1 excludes the others).
    deferral_waits_for_eor: bool,
}

impl PeerRuntime {
    /// Every negotiated family's End-of-RIB arrived on the current session.
    fn table_received(&self) -> bool {
        self.families.is_subset(&self.end_of_rib)
    }
}

struct Owner {
    config: RouterConfig,
    rib: Rib,
    speaker: Option<SpeakerLink>,
    tx: mpsc::WeakUnboundedSender<RouterMsg>,
    kernel: Option<mpsc::UnboundedSender<KernelJob>>,
    neighbors: BTreeMap<IpAddr, Neighbor>,
    peers: HashMap<IpAddr, PeerRuntime>,
    neighbors_set: bool,
    swept: bool,
    /// Route selection is deferred (RFC 4724 §4.1): no decision pass, no
    /// kernel write, no UPDATE yet.
    deferring: bool,
    next_generation: u64,
    stats: RouterStats,
    /// Session messages applied since free heap memory was last handed back.
    since_release: usize,
}

/// Most messages applied to the RIB before a decision run.
const BATCH: usize = 4096;

/// Session messages after which, once the queue is empty, free heap memory
/// is handed back to the kernel ([`release_free_memory`]), as it is after
/// an End-of-RIB: a full table's first load (200,000 UPDATEs for 1M
/// prefixes) does so three or four times, each well under 1% of the load.
const RELEASE_AFTER: usize = 65_536;

/// Hands the allocator's free pages back to the kernel. Decoded UPDATEs,
/// per-batch lists and kernel batches are freed between the long-lived
/// attribute sets allocated at the same time, so after a burst the heap
/// keeps tens of MB free that it cannot shrink by itself.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it only walks the allocator's
    // own free lists under their locks.
    #[allow(unsafe_code, reason = "glibc's malloc_trim has no safe wrapper")]
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Owner {
    fn new(
        config: RouterConfig,
        speaker: SpeakerLink,
        tx: mpsc::WeakUnboundedSender<RouterMsg>,
        kernel: Option<mpsc::UnboundedSender<KernelJob>>,
    ) -> Self {
        // A start with graceful restart is a restart: the previous run's
        // kernel routes still forward, and peers keep this node's routes
        // until its End-of-RIB.
        let deferring = config.graceful_restart_time.is_some();
        Owner {
            rib: Rib::new(RibConfig {
                asn: config.asn,
                router_id: config.router_id,
                cluster_id: config.cluster_id,
            }),
            config,
            speaker: Some(speaker),
            tx,
            kernel,
            neighbors: BTreeMap::new(),
            peers: HashMap::new(),
            neighbors_set: false,
            swept: false,
            deferring,
            next_generation: 0,
            stats: RouterStats {
                selection_deferred: deferring,
                ..RouterStats::default()
            },
            since_release: 0,
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<RouterMsg>,
        mut rib_rx: mpsc::UnboundedReceiver<RibMsg>,
    ) {
        self.detect_restart().await;
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    if let Some(reply) = self.handle(msg) {
                        self.stop().await;
                        let _ = reply.send(());
                        return;
                    }
                }
                msg = rib_rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut n = self.session(msg);
                    while n < BATCH {
                        match rib_rx.try_recv() {
                            Ok(msg) => n += self.session(msg),
                            Err(_) => break,
                        }
                    }
                    self.since_release += n;
                }
            }
            self.process();
            if self.since_release >= RELEASE_AFTER && rib_rx.is_empty() {
                release_free_memory();
                self.since_release = 0;
            }
        }
    }

    /// With a kernel, only a restart defers selection: one that finds this
    /// router's routes of a previous run still in the kernel (forwarding
    /// state preserved). A first start has nothing to protect, and deferring
    /// it would hold this node's blocks back for as long as a configured
    /// peer stays down.
    async fn detect_restart(&mut self) {
        let Some(kernel) = self.config.kernel.clone() else {
            return;
        };
        if !self.deferring {
            return;
        }
        let preserved = match kernel
            .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
            .await
        {
            Ok(routes) => routes.iter().filter(|r| r.table == TABLE_MAIN).count(),
            Err(error) => {
                // Deferring is the safe side: the timer bounds it.
                warn!(%error, "cannot list protocol-202 routes; deferring selection");
                return;
            }
        };
        if preserved == 0 {
            info!("no routes of a previous run in the kernel; not deferring selection");
            self.deferring = false;
            self.stats.selection_deferred = false;
        } else {
            info!(routes = preserved, "restart: deferring selection");
        }
    }

    fn speaker(&self, command: Command) {
        if let Some(speaker) = &self.speaker {
            speaker.command(command);
        }
    }

    async fn stop(&mut self) {
        let graceful = self.config.graceful_restart_time.is_some()
            || self
                .neighbors
                .values()
                .any(|n| n.max_restart_time.is_some());
        if !graceful {
            // Without graceful restart, peers are told (Cease) before the close.
            for address in self.neighbors.keys() {
                self.speaker(Command::RemovePeer(*address));
            }
            // A round trip through the speaker: the stops above are done and
            // their NOTIFICATIONs queued on the connections.
            if let Some(SpeakerLink::Live(speaker)) = &self.speaker {
                speaker.status().await;
            }
        }
        // Dropping the speaker closes every connection; with graceful restart
        // no NOTIFICATION is sent, so peers keep this node's routes.
        self.speaker = None;
    }

    /// Handles a handle or timer message; `Some` when the router must stop.
    fn handle(&mut self, msg: RouterMsg) -> Option<oneshot::Sender<()>> {
        match msg {
            RouterMsg::SetNeighbors(neighbors) => self.set_neighbors(neighbors),
            RouterMsg::SetOriginated(routes) => {
                let routes = routes
                    .into_iter()
                    .map(|o| {
                        (
                            o.prefix.trunc(),
                            Arc::new(Attrs::local(o.communities, o.large_communities)),
                        )
                    })
                    .collect();
                self.rib.set_originated(routes);
            }
            RouterMsg::Status(reply) => {
                let (details_tx, details) = oneshot::channel();
                self.speaker(Command::Details(details_tx));
                let rows: Vec<(IpAddr, Neighbor)> = self
                    .neighbors
                    .iter()
                    .map(|(a, n)| (*a, n.clone()))
                    .collect();
                let counts: HashMap<IpAddr, crate::rib::PeerCounts> =
                    rows.iter().map(|(a, _)| (*a, self.rib.counts(a))).collect();
                tokio::spawn(async move {
                    let details = details.await.unwrap_or_default();
                    let _ = reply.send(status_rows(rows, &counts, &details));
                });
            }
            RouterMsg::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.loc_rib_prefixes = self.rib.loc_rib_len();
                let (states_tx, states) = oneshot::channel();
                self.speaker(Command::Status(states_tx));
                tokio::spawn(async move {
                    for (_, state) in states.await.unwrap_or_default() {
                        *stats.sessions.entry(format!("{state:?}")).or_default() += 1;
                    }
                    let _ = reply.send(stats);
                });
            }
            RouterMsg::LocRib(reply) => {
                let _ = reply.send(self.loc_rib());
            }
            RouterMsg::Stop(reply) => return Some(reply),
            RouterMsg::StaleTimer { peer, generation } => {
                let runtime = self.peers.entry(peer).or_default();
                if runtime.stale_timer == Some(generation) {
                    runtime.stale_timer = None;
                    info!(%peer, "graceful restart time is over; removing stale routes");
                    self.rib.sweep_stale(peer, &Family::ALL);
                }
            }
            RouterMsg::SweepTimer => self.start_up_progress(true),
            RouterMsg::Kernel(report) => {
                self.stats.kernel_writes += report.writes;
                self.stats.kernel_errors += report.errors;
                self.stats.kernel_routes = report.installed;
                self.stats.startup_swept |= report.swept;
            }
        }
        None
    }

    fn loc_rib(&self) -> Vec<(IpNet, Vec<PathSummary>)> {
        self.rib
            .dests()
            .into_iter()
            .map(|(prefix, dest)| {
                let selected = dest.selected().len();
                let paths = dest
                    .paths()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, path)| {
                        let attrs = path.attrs.as_ref()?;
                        Some(PathSummary {
                            peer: match path.source {
                                Source::Local => None,
                                Source::Peer(a) => Some(a),
                            },
                            next_hop: attrs.next_hop,
                            as_path: attrs.as_path.clone(),
                            origin: attrs.origin,
                            local_pref: attrs.local_pref,
                            med: attrs.med,
                            communities: attrs.communities.clone(),
                            originator_id: attrs.originator_id,
                            cluster_list: attrs.cluster_list.clone(),
                            best: i == 0 && selected > 0,
                            multipath: i < selected,
                            stale: path.stale,
                        })
                    })
                    .collect();
                (prefix, paths)
            })
            .filter(|(_, paths): &(IpNet, Vec<PathSummary>)| !paths.is_empty())
            .collect()
    }

    fn peer_spec(&self, neighbor: &Neighbor) -> PeerSpec {
        let restart_time = neighbor
            .max_restart_time
            .or(self.config.graceful_restart_time);
        PeerSpec {
            address: neighbor.address,
            port: neighbor.port,
            local_address: neighbor.local_address,
            ttl_security: neighbor.ttl_security,
            config: PeerConfig {
                local_as: neighbor.local_asn.unwrap_or(self.config.asn),
                remote_as: neighbor.asn,
                local_id: self.config.router_id,
                hold_time: u16::try_from(neighbor.hold.as_secs()).unwrap_or(u16::MAX),
                connect_retry: Duration::from_secs(5),
                passive: neighbor.passive,
                families: Family::ALL.to_vec(),
                route_refresh: true,
                graceful_restart: restart_time.map(|time| GracefulRestart {
                    restarting: !self.swept,
                    restart_time: u16::try_from(time.as_secs()).unwrap_or(u16::MAX),
                    forwarding_preserved: self.config.kernel.is_some(),
                }),
            },
        }
    }

    fn start_peer(&mut self, neighbor: &Neighbor) {
        self.rib.set_peer(neighbor.address, neighbor.policy());
        self.speaker(Command::SetPassword {
            peer: neighbor.address,
            password: neighbor.password.as_ref().map(|p| p.as_bytes().to_vec()),
        });
        self.speaker(Command::AddPeer(Box::new(self.peer_spec(neighbor))));
    }

    fn set_neighbors(&mut self, neighbors: Vec<Neighbor>) {
        let new: BTreeMap<IpAddr, Neighbor> =
            neighbors.into_iter().map(|n| (n.address, n)).collect();
        let old = std::mem::take(&mut self.neighbors);
        for (address, neighbor) in &old {
            match new.get(address) {
                None => {
                    info!(peer = %address, "peering removed");
                    self.speaker(Command::RemovePeer(*address));
                    self.rib.remove_peer(*address);
                    self.peers.remove(address);
                }
                Some(changed) if neighbor.session_differs(changed) => {
                    info!(peer = %address, "peering changed; restarting its session");
                    self.speaker(Command::RemovePeer(*address));
                    self.peers.remove(address);
                    self.start_peer(changed);
                }
                Some(changed) => self.rib.set_peer(*address, changed.policy()),
            }
        }
        for (address, neighbor) in &new {
            if !old.contains_key(address) {
                info!(peer = %address, asn = neighbor.asn, "peering added");
                self.start_peer(neighbor);
            }
        }
        self.neighbors = new;
        self.neighbors_set = true;
        self.start_up_progress(false);
    }

    /// Ends the selection deferral, then runs the start-up sweep, each when
    /// its peers are done (or, with `timer`, now).
    fn start_up_progress(&mut self, timer: bool) {
        self.end_deferral(timer);
        self.startup_sweep(timer);
    }

    /// Ends the selection deferral (RFC 4724 §4.1) once every configured
    /// peer is Established and those it waits for have sent End-of-RIB (or,
    /// with `timer`, now): one decision pass, its kernel writes, and the
    /// whole table with End-of-RIB to every Established peer.
    fn end_deferral(&mut self, timer: bool) {
        if !self.deferring {
            return;
        }
        let ready = self.neighbors_set
            && self.neighbors.keys().all(|a| {
                self.peers.get(a).is_some_and(|p| {
                    p.established && (!p.deferral_waits_for_eor || p.table_received())
                })
            });
        if !(timer || ready) {
            return;
        }
        info!(
            timer,
            "selection deferral over; running the first decision pass"
        );
        self.deferring = false;
        self.stats.selection_deferred = false;
        // Nothing was decided while deferring, so every prefix the RIB holds
        // is dirty and this pass exports the whole table to every
        // Established peer (their Adj-RIB-Out is empty since session up).
        self.process();
        let established: Vec<(IpAddr, Vec<Family>)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.established)
            .map(|(a, p)| (*a, p.families.iter().copied().collect()))
            .collect();
        for (peer, families) in established {
            let markers = families
                .into_iter()
                .map(|f| encode_end_of_rib(f).expect("an empty UPDATE always encodes"))
                .collect();
            self.send(peer, markers);
        }
    }

    /// Runs the start-up sweep once every peer has sent End-of-RIB (or, with
    /// `timer`, now).
    fn startup_sweep(&mut self, timer: bool) {
        // The Loc-RIB is empty until the first decision pass.
        if self.swept || self.deferring {
            return;
        }
        let all_done = self.neighbors_set
            && self.neighbors.keys().all(|a| {
                self.peers
                    .get(a)
                    .is_some_and(|p| p.established && p.table_received())
            });
        if !(timer || all_done) {
            return;
        }
        self.swept = true;
        // New sessions from now on are not part of the restart.
        // Decisions still pending must reach the kernel writer first.
        self.process();
        if let Some(kernel) = &self.kernel {
            let wanted: HashSet<IpNet> = self.rib.fib().map(|(p, _)| p).collect();
            debug!(wanted = wanted.len(), timer, "start-up sweep");
            let _ = kernel.send(KernelJob::Sweep(wanted));
        } else {
            self.stats.startup_swept = true;
        }
    }

    /// Takes one message from the speaker; returns how many session
    /// messages it held (UPDATEs of a batch each count).
    fn session(&mut self, msg: RibMsg) -> usize {
        match msg {
            RibMsg::Up {
                peer,
                negotiated,
                local,
            } => {
                info!(%peer, "session established");
                let runtime = self.peers.entry(peer).or_default();
                runtime.established = true;
                runtime.families = negotiated.families.clone();
                runtime.four_octet_as = negotiated.four_octet_as;
                runtime.end_of_rib.clear();
                runtime.deferral_waits_for_eor = negotiated
                    .graceful_restart
                    .as_ref()
                    .is_some_and(|gr| !gr.restarting);
                self.rib.peer_up(
                    peer,
                    SessionInfo {
                        router_id: negotiated.peer_id,
                        local_address: local
                            .map(|l| l.ip())
                            .or(self.neighbors.get(&peer).and_then(|n| n.local_address)),
                        families: negotiated.families.clone(),
                        four_octet_as: negotiated.four_octet_as,
                    },
                );
                // RFC 4724 §4.2: stale routes of families the peer no longer
                // preserved, or of a peer that no longer restarts gracefully, go now.
                let keep: BTreeSet<Family> = negotiated
                    .graceful_restart
                    .as_ref()
                    .map(|gr| gr.forwarding_preserved.clone())
                    .unwrap_or_default();
                let gone: Vec<Family> = Family::ALL
                    .into_iter()
                    .filter(|f| !keep.contains(f))
                    .collect();
                self.rib.sweep_stale(peer, &gone);
                if self.deferring {
                    // The table and End-of-RIB go out when the deferral ends;
                    // this peer may have been the last one it waited for.
                    self.start_up_progress(false);
                    return 1;
                }
                // Pending decisions go out before the dump, so the dump is current.
                self.process();
                let families: Vec<Family> = negotiated.families.iter().copied().collect();
                let mut messages = self.rib.dump(peer, &families);
                for family in &families {
                    messages
                        .push(encode_end_of_rib(*family).expect("an empty UPDATE always encodes"));
                }
                self.send(peer, messages);
            }
            RibMsg::Down { peer, stale_for } => {
                self.stats.flaps += 1;
                let runtime = self.peers.entry(peer).or_default();
                runtime.established = false;
                runtime.end_of_rib.clear();
                match stale_for {
                    Some(time) if self.neighbors.contains_key(&peer) => {
                        info!(%peer, seconds = time.as_secs(), "session down; keeping its routes for graceful restart");
                        self.next_generation += 1;
                        let generation = self.next_generation;
                        runtime.stale_timer = Some(generation);
                        let tx = self.tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(time).await;
                            if let Some(tx) = tx.upgrade() {
                                let _ = tx.send(RouterMsg::StaleTimer { peer, generation });
                            }
                        });
                        self.rib.peer_down(peer, true);
                    }
                    _ => {
                        info!(%peer, "session down; removing its routes");
                        runtime.stale_timer = None;
                        self.rib.peer_down(peer, false);
                    }
                }
            }
            RibMsg::Update { peer, update } => self.update(peer, &update),
            RibMsg::Updates { peer, updates, .. } => {
                for update in &updates {
                    self.update(peer, update);
                }
                return updates.len();
            }
            RibMsg::RouteRefresh { peer, family } => {
                if self.deferring {
                    // The whole table goes to every peer when the deferral ends.
                    debug!(%peer, ?family, "route refresh while selection is deferred");
                    return 1;
                }
                self.process();
                let messages = self.rib.dump(peer, &[family]);
                self.send(peer, messages);
            }
        }
        1
    }

    /// Applies one UPDATE from `peer` to the RIB.
    fn update(&mut self, peer: IpAddr, update: &Update) {
        self.stats.updates_in += 1;
        if !update.problems.is_empty() {
            debug!(%peer, problems = ?update.problems, "update with attribute errors");
        }
        let Some(runtime) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(family) = update.end_of_rib() {
            // A table load is complete: release what it freed once
            // the queue is empty, however much that is.
            self.since_release = self.since_release.max(RELEASE_AFTER);
            runtime.end_of_rib.insert(family);
            self.rib.sweep_stale(peer, &[family]);
            if self.rib.stale_count(peer) == 0 {
                runtime.stale_timer = None;
            }
            self.start_up_progress(false);
            return;
        }
        let received = Received::from_update(update, runtime.four_octet_as);
        self.rib.receive(peer, received);
    }

    fn send(&mut self, peer: IpAddr, messages: Vec<Vec<u8>>) {
        if messages.is_empty() {
            return;
        }
        self.stats.updates_out += messages.len() as u64;
        // One write per batch: the writer task takes bytes, not messages.
        let total = messages.iter().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(total);
        for message in messages {
            bytes.extend_from_slice(&message);
        }
        self.speaker(Command::SendUpdate {
            peer,
            message: bytes,
        });
    }

    fn process(&mut self) {
        if self.deferring {
            return;
        }
        let processed = self.rib.process();
        if !processed.fib.is_empty()
            && let Some(kernel) = &self.kernel
        {
            let _ = kernel.send(KernelJob::Changes(processed.fib));
        }
        for (peer, messages) in processed.updates {
            self.send(peer, messages);
        }
    }
}

fn status_rows(
    rows: Vec<(IpAddr, Neighbor)>,
    counts: &HashMap<IpAddr, crate::rib::PeerCounts>,
    details: &[crate::speaker::PeerDetail],
) -> Vec<PeerStatus> {
    let now = Instant::now();
    let wall = SystemTime::now();
    rows.into_iter()
        .map(|(address, neighbor)| {
            let detail = details.iter().find(|d| d.address == address);
            let state = detail.map_or(State::Idle, |d| d.state);
            let since = detail.map_or(wall, |d| {
                wall.checked_sub(now.saturating_duration_since(d.since))
                    .unwrap_or(wall)
            });
            let info = match (state, detail.and_then(|d| d.last_error.as_ref())) {
                (State::Established, _) => "Established".to_string(),
                (_, Some(error)) => format!("{error}"),
                (state, None) => format!("{state:?}"),
            };
            let count = counts.get(&address).copied().unwrap_or_default();
            PeerStatus {
                address,
                description: neighbor.description,
                state,
                since,
                info,
                prefixes_received: count.received,
                prefixes_accepted: count.accepted,
                prefixes_advertised: count.advertised,
            }
        })
        .collect()
}
