//! The routing task: the [routing core](crate::routing) driven by
//! datastore watches, applied through the kernel crate.
//!
//! ```text
//!  list-watch WorkloadEndpoint ─┐ (twill_daemon::forward_watch)
//!  list-watch Node ─────────────┤ RouteMsg::{Snapshot, Upserted, Deleted, WatchError}
//!  list-watch IPPool ───────────┤
//!  list-watch BlockAffinity ────┤
//!  list-watch FelixConfiguration┤
//!  list-watch BGPConfiguration ─┤ (local workload peering)
//!  list-watch BGPPeer ──────────┘
//!                               ▼
//!            ┌──── routing task (run) ─────┐
//!            │ RoutingModel, stale-route   │──► IPAM (tunnel address) + Node write
//!            │ clock; timers: apply, drift │──► <mtu file> for twill-cni
//!            │                             │──► felix_routing_* metrics
//!            └──────────────┬──────────────┘
//!                           │ list → plan → ops one by one → list → verify
//!                           ▼
//!                        Kernel
//! ```
//!
//! It keeps the policy owner task's rules: nothing is read from or written
//! to the kernel before every watch has listed once; changes are coalesced
//! for `apply_delay`; a failed apply is retried with exponential backoff
//! against a fresh listing; every `drift_interval` the kernel is listed
//! again and differences repaired. A local pod route without an endpoint is
//! removed only after [`RoutingConfig::stale_route_grace`], so that the
//! route twill-cni writes just before its WorkloadEndpoint survives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;
use twill_api::Spec;
use twill_api::bgp::{BGPConfigurationSpec, BGPPeerSpec};
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::felix::FelixConfigurationSpec;
use twill_api::ipam::BlockAffinitySpec;
use twill_api::ippool::{IPPoolAllowedUse, IPPoolSpec, VXLANMode};
use twill_api::node::NodeSpec;
use twill_kernel::{Kernel, KernelError, KernelExt, KernelOp, Route, RouteFilter};
use twill_store::{AsyncDatastore, Key, Object, Precondition};

use super::health::Health;
use crate::routing::{
    self, Actual, Family, LocalEndpoint, LocalPeering, NodeInfo, PoolInfo, ROUTE_PROTOCOL,
    RoutingModel, RoutingSettings, VxlanLink, mtu, plan,
};
use twill_selector::Selector;

/// Settings of the routing task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where the pod MTU is published for twill-cni.
    #[serde(default = "default_mtu_file")]
    pub mtu_file: PathBuf,
    /// How long a local pod route may exist without its endpoint.
    #[serde(default = "default_grace", with = "grace_millis")]
    pub stale_route_grace: Duration,
}

fn default_mtu_file() -> PathBuf {
    PathBuf::from(twill_api::status::DEFAULT_MTU_FILE)
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

mod grace_millis {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            mtu_file: default_mtu_file(),
            stale_route_grace: default_grace(),
        }
    }
}

/// The kinds the routing task watches.
pub const ROUTING_KINDS: &[&str] = &[
    WorkloadEndpointSpec::STORE_KIND,
    NodeSpec::STORE_KIND,
    IPPoolSpec::STORE_KIND,
    BlockAffinitySpec::STORE_KIND,
    FelixConfigurationSpec::STORE_KIND,
    BGPConfigurationSpec::STORE_KIND,
    BGPPeerSpec::STORE_KIND,
];

/// What the watch tasks tell the routing task.
#[derive(Debug)]
pub enum RouteMsg {
    /// Every object of a kind.
    Snapshot {
        /// The kind.
        kind: &'static str,
        /// The objects.
        items: Vec<Object>,
    },
    /// An object was created or changed.
    Upserted {
        /// The kind.
        kind: &'static str,
        /// The object.
        item: Object,
    },
    /// An object was deleted.
    Deleted {
        /// The kind.
        kind: &'static str,
        /// Its key.
        key: Key,
    },
    /// A list-watch failed (it retries on its own).
    WatchError {
        /// The kind.
        kind: &'static str,
        /// Why.
        error: String,
    },
}

impl twill_daemon::WatchMsg for RouteMsg {
    fn snapshot(kind: &'static str, items: Vec<Object>) -> Self {
        Self::Snapshot { kind, items }
    }

    fn upserted(kind: &'static str, item: Object) -> Self {
        Self::Upserted { kind, item }
    }

    fn deleted(kind: &'static str, object: Object) -> Self {
        Self::Deleted {
            kind,
            key: object.key,
        }
    }

    fn watch_error(kind: &'static str, error: twill_store::Error) -> Self {
        Self::WatchError {
            kind,
            error: error.to_string(),
        }
    }
}

/// Errors of one routing apply (all retried).
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A kernel operation failed.
    #[error("{action} failed: {source}")]
    Kernel {
        /// What was being done.
        action: String,
        /// The kernel's error.
        source: KernelError,
    },
    /// The kernel still differs after an apply.
    #[error("verification failed: {ops} operations still planned after apply")]
    Verify {
        /// How many.
        ops: usize,
    },
    /// The tunnel address could not be allocated or recorded.
    #[error("{family:?} vxlan tunnel address for node {node}: {reason}")]
    Tunnel {
        /// This node.
        node: String,
        /// The overlay's family.
        family: Family,
        /// Why.
        reason: String,
    },
}

/// Decodes a stored object of Calico shape.
fn decode_object<S: Spec>(value: &serde_json::Value) -> Option<twill_api::Object<S>> {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    serde_json::from_value::<twill_api::Object<S>>(value).ok()
}

/// Keeps `value` under `key`, or removes `key` when there is none (the
/// object no longer decodes, or no longer concerns this node).
fn keep<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// Decodes a stored object of Calico shape into its spec.
fn decode<S: Spec>(value: &serde_json::Value) -> Option<S> {
    decode_object(value).map(|o| o.spec)
}

struct Router {
    config: RoutingConfig,
    kernel: Arc<dyn Kernel>,
    store: AsyncDatastore,
    health: Arc<Health>,
    model: RoutingModel,
    felix_configs: BTreeMap<String, FelixConfigurationSpec>,
    bgp_configs: BTreeMap<String, BGPConfigurationSpec>,
    bgp_peers: BTreeMap<String, BGPPeerSpec>,
    known: twill_daemon::KnownKeys,
    /// This node's Node object as stored (for the tunnel address write).
    my_node: Option<Object>,
    /// When each unwanted local route was first seen.
    stale_since: BTreeMap<IpNet, Instant>,
    apply_at: Option<Instant>,
    apply_delay: Duration,
    retry_min: Duration,
    retry_max: Duration,
    failures: u32,
}

impl Router {
    fn synced(&self) -> bool {
        self.known.kinds() == ROUTING_KINDS.len()
    }

    fn schedule(&mut self, delay: Duration) {
        if self.synced() && self.failures == 0 {
            let at = Instant::now() + delay;
            self.apply_at = Some(self.apply_at.map_or(at, |a| a.min(at)));
        }
    }

    fn on_msg(&mut self, msg: RouteMsg) {
        match msg {
            RouteMsg::Snapshot { kind, items } => {
                for key in self.known.snapshot(kind, items.iter().map(|o| &o.key)) {
                    self.on_deleted(kind, &key);
                }
                for item in items {
                    self.on_upserted(kind, item);
                }
            }
            RouteMsg::Upserted { kind, item } => {
                self.known.upserted(kind, &item.key);
                self.on_upserted(kind, item);
            }
            RouteMsg::Deleted { kind, key } => {
                self.known.deleted(kind, &key);
                self.on_deleted(kind, &key);
            }
            RouteMsg::WatchError { kind, error } => {
                tracing::warn!(kind, %error, "watch failed; it retries");
                return;
            }
        }
        self.schedule(self.apply_delay);
    }

    fn on_upserted(&mut self, kind: &str, item: Object) {
        let name = item.key.name.clone();
        match kind {
            WorkloadEndpointSpec::STORE_KIND => {
                let id = (item.key.namespace.clone().unwrap_or_default(), name);
                let endpoint = decode_object::<WorkloadEndpointSpec>(&item.value)
                    .filter(|w| w.spec.node == self.model.node)
                    .and_then(|w: WorkloadEndpoint| LocalEndpoint::from_workload(&w));
                keep(&mut self.model.endpoints, id, endpoint);
            }
            NodeSpec::STORE_KIND => match decode::<NodeSpec>(&item.value) {
                Some(spec) => {
                    self.model
                        .nodes
                        .insert(name.clone(), NodeInfo::from_spec(&spec));
                    if name == self.model.node {
                        self.my_node = Some(item);
                        self.refresh_peering();
                    }
                }
                None => self.on_deleted(kind, &item.key),
            },
            IPPoolSpec::STORE_KIND => {
                let pool = decode::<IPPoolSpec>(&item.value).and_then(|p| PoolInfo::from_spec(&p));
                keep(&mut self.model.pools, name, pool);
            }
            BlockAffinitySpec::STORE_KIND => {
                let affinity =
                    decode::<BlockAffinitySpec>(&item.value).and_then(|a| routing::affinity(&a));
                keep(&mut self.model.affinities, name, affinity);
            }
            FelixConfigurationSpec::STORE_KIND => {
                keep(&mut self.felix_configs, name, decode(&item.value));
                self.refresh_settings();
            }
            BGPConfigurationSpec::STORE_KIND => {
                keep(&mut self.bgp_configs, name, decode(&item.value));
                self.refresh_peering();
            }
            BGPPeerSpec::STORE_KIND => {
                keep(&mut self.bgp_peers, name, decode(&item.value));
                self.refresh_peering();
            }
            _ => {}
        }
    }

    fn on_deleted(&mut self, kind: &str, key: &Key) {
        let name = &key.name;
        match kind {
            WorkloadEndpointSpec::STORE_KIND => {
                self.model
                    .endpoints
                    .remove(&(key.namespace.clone().unwrap_or_default(), name.clone()));
            }
            NodeSpec::STORE_KIND => {
                self.model.nodes.remove(name);
                if *name == self.model.node {
                    self.my_node = None;
                    self.refresh_peering();
                }
            }
            IPPoolSpec::STORE_KIND => {
                self.model.pools.remove(name);
            }
            BlockAffinitySpec::STORE_KIND => {
                self.model.affinities.remove(name);
            }
            FelixConfigurationSpec::STORE_KIND => {
                self.felix_configs.remove(name);
                self.refresh_settings();
            }
            BGPConfigurationSpec::STORE_KIND => {
                self.bgp_configs.remove(name);
                self.refresh_peering();
            }
            BGPPeerSpec::STORE_KIND => {
                self.bgp_peers.remove(name);
                self.refresh_peering();
            }
            _ => {}
        }
    }

    /// Calico's precedence: `node.<node>` over `default`, not merged.
    fn refresh_settings(&mut self) {
        let node_specific = format!("node.{}", self.model.node);
        self.model.settings = self
            .felix_configs
            .get(&node_specific)
            .or_else(|| self.felix_configs.get("default"))
            .map(RoutingSettings::from_felix_configuration)
            .unwrap_or_default();
    }

    /// BGPConfiguration `default`'s peering addresses and the
    /// `localWorkloadSelector` of every BGPPeer that applies to this node
    /// (its `node`, its `nodeSelector` against this node's labels, or
    /// neither: every node). A selector that does not parse is skipped
    /// (bgp-speaker reports it).
    fn refresh_peering(&mut self) {
        let global = self.bgp_configs.get("default");
        let node_labels: BTreeMap<String, String> = self
            .my_node
            .as_ref()
            .and_then(|n| n.value.pointer("/metadata/labels"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let applies = |peer: &BGPPeerSpec| match (&peer.node, &peer.node_selector) {
            (Some(node), _) if !node.is_empty() => *node == self.model.node,
            (_, Some(selector)) if !selector.is_empty() => {
                Selector::parse(selector).is_ok_and(|s| s.matches(&node_labels))
            }
            _ => true,
        };
        let selectors = self
            .bgp_peers
            .iter()
            .filter(|(_, peer)| applies(peer))
            .filter_map(|(name, peer)| {
                let text = peer.local_workload_selector.as_deref()?;
                let selector = Selector::parse(text).ok().filter(|_| !text.is_empty())?;
                Some((name.clone(), selector))
            })
            .collect();
        self.model.local_peering = LocalPeering {
            v4: global
                .and_then(|g| g.local_workload_peering_ipv4.as_ref())
                .and_then(|ip| ip.parse().ok()),
            v6: global
                .and_then(|g| g.local_workload_peering_ipv6.as_ref())
                .and_then(|ip| ip.parse().ok()),
            selectors,
        };
    }

    async fn kernel<T>(
        &self,
        action: impl FnOnce() -> String,
        pending: twill_kernel::Pending<T>,
    ) -> Result<T, RoutingError> {
        pending.await.map_err(|source| RoutingError::Kernel {
            action: action(),
            source,
        })
    }

    async fn list(&self) -> Result<Actual, RoutingError> {
        let k = &*self.kernel;
        let mut vxlan = BTreeMap::new();
        let mut fdb = Vec::new();
        for family in Family::ALL {
            let name = family.interface();
            let link = match k.get_link(name).await {
                Ok(link) => link,
                Err(e) if e.is_not_found() => continue,
                Err(source) => {
                    return Err(RoutingError::Kernel {
                        action: format!("reading {name}"),
                        source,
                    });
                }
            };
            let addresses = self
                .kernel(
                    || format!("listing addresses of {name}"),
                    k.list_addresses(Some(name)),
                )
                .await?;
            fdb.extend(
                self.kernel(|| format!("listing fdb of {name}"), k.list_fdb(Some(name)))
                    .await?,
            );
            let addresses = addresses.into_iter().map(|a| a.addr).collect();
            vxlan.insert(family, VxlanLink { link, addresses });
        }
        let filter = RouteFilter {
            table: Some(twill_kernel::route::TABLE_MAIN),
            protocol: Some(ROUTE_PROTOCOL),
            ipv6: None,
        };
        let routes = self
            .kernel(|| "listing routes".into(), k.list_routes(filter))
            .await?;
        let neighbours = self
            .kernel(|| "listing neighbours".into(), k.list_neighbours(None))
            .await?;
        let workload_addresses = self
            .kernel(|| "listing addresses".into(), k.list_addresses(None))
            .await?
            .into_iter()
            .filter(|a| a.link.starts_with(twill_kernel::WORKLOAD_INTERFACE_PREFIX))
            .collect();
        Ok(Actual {
            vxlan,
            routes,
            neighbours,
            fdb,
            workload_addresses,
        })
    }

    async fn detect_mtu(&mut self) -> Result<(), RoutingError> {
        let links = self
            .kernel(|| "listing links".into(), self.kernel.list_links(None))
            .await?;
        match mtu::host_mtu(&links, self.model.settings.mtu_iface_pattern.as_deref()) {
            Ok(host) => self.model.host_mtu = host,
            Err(error) => tracing::warn!(%error, "host mtu not detected; keeping the last"),
        }
        Ok(())
    }

    /// Allocates this node's tunnel address of each family in use through
    /// IPAM and records it, with the device MAC, in this node's Node
    /// resource.
    async fn ensure_tunnels(&mut self) -> Result<(), RoutingError> {
        for family in Family::ALL {
            self.ensure_tunnel(family).await?;
        }
        Ok(())
    }

    async fn ensure_tunnel(&mut self, family: Family) -> Result<(), RoutingError> {
        let node = self.model.node.clone();
        let Some(mut stored) = self.my_node.clone() else {
            return Ok(());
        };
        let info = self.model.nodes.get(&node).cloned().unwrap_or_default();
        if !self.model.vxlan_wanted(family)
            || info.address(family).is_none()
            || info.vtep(family).is_some()
        {
            return Ok(());
        }
        let fail = |reason: String| RoutingError::Tunnel {
            node: node.clone(),
            family,
            reason,
        };
        let tunnel = match info.tunnel(family) {
            Some(tunnel) => tunnel,
            None => {
                let pools: Vec<String> = self
                    .model
                    .pools
                    .iter()
                    .filter(|(_, p)| {
                        Family::of(p.cidr.addr()) == family && p.vxlan != VXLANMode::Never
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                let store = Arc::clone(self.store.blocking());
                let handle = routing::tunnel_handle(&node, family);
                let for_node = node.clone();
                let allocated = tokio::task::spawn_blocking(move || {
                    let ipam = twill_ipam::Ipam::new(store);
                    // Whatever an interrupted earlier attempt held goes back.
                    ipam.release_handle(&handle)?;
                    let mut request = twill_ipam::AllocateRequest::ipv4(handle, for_node);
                    request.usage = IPPoolAllowedUse::Tunnel;
                    match family {
                        Family::V4 => request.ipv4_pools = pools,
                        Family::V6 => {
                            (request.ipv4, request.ipv6) = (0, 1);
                            request.ipv6_pools = pools;
                        }
                    }
                    ipam.allocate(&request)
                })
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
                match allocated.first().map(|a| a.ip) {
                    Some(ip) if Family::of(ip) == family => ip,
                    other => return Err(fail(format!("ipam returned {other:?}"))),
                }
            }
        };
        let mac = info
            .mac(family)
            .unwrap_or_else(|| routing::vxlan_mac(&node, family));
        let spec = stored
            .value
            .as_object_mut()
            .and_then(|o| {
                o.entry("spec")
                    .or_insert_with(|| serde_json::json!({}))
                    .as_object_mut()
            })
            .ok_or_else(|| fail("the Node resource has no spec object".into()))?;
        let (tunnel_field, mac_field) = family.node_fields();
        spec.insert(tunnel_field.into(), tunnel.to_string().into());
        spec.insert(mac_field.into(), mac.to_string().into());
        let written = self
            .store
            .update(
                stored.key.clone(),
                stored.value.clone(),
                Precondition::Revision(stored.revision),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        tracing::info!(?family, %tunnel, %mac, "vxlan tunnel address recorded in the Node");
        self.model
            .nodes
            .insert(node, info.with_vtep(family, tunnel, mac));
        self.my_node = Some(written);
        Ok(())
    }

    fn may_delete(&mut self, actual: &Actual, wanted: &routing::Desired) -> BTreeSet<IpNet> {
        let now = Instant::now();
        let unwanted: BTreeSet<IpNet> = actual
            .routes
            .iter()
            .filter(|r| routing::plan::is_workload_route(r))
            .filter(|r| !wanted.routes.contains_key(&r.destination))
            .map(|r| r.destination)
            .collect();
        self.stale_since.retain(|d, _| unwanted.contains(d));
        let mut ripe = BTreeSet::new();
        for destination in unwanted {
            let since = *self.stale_since.entry(destination).or_insert(now);
            if now.duration_since(since) >= self.config.stale_route_grace {
                ripe.insert(destination);
            }
        }
        ripe
    }

    async fn try_apply(&mut self) -> Result<usize, RoutingError> {
        self.detect_mtu().await?;
        if let Err(error) = self.ensure_tunnels().await {
            // Routing to local pods and native routes do not need it.
            tracing::warn!(%error, "no vxlan tunnel address yet");
        }
        let desired = self.model.desired();
        let actual = self.list().await?;
        let ripe = self.may_delete(&actual, &desired);
        let deletable =
            |r: &Route| !routing::plan::is_workload_route(r) || ripe.contains(&r.destination);
        let ops = plan(&desired, &actual, deletable);
        self.health.routing_routes.set(gauge(desired.routes.len()));
        self.health.vxlan_remote_vteps.set(gauge(desired.fdb.len()));
        for op in &ops {
            let result = self.kernel.submit(op.clone()).await;
            match (result, op) {
                (Ok(_), _) => {}
                (Err(error), KernelOp::DeleteConntrack { ip }) => {
                    tracing::warn!(%ip, %error, "stale conntrack flows not removed");
                }
                // Gone already (a device deletion took it along).
                (
                    Err(e),
                    KernelOp::DeleteRoute(_)
                    | KernelOp::DeleteNeighbour { .. }
                    | KernelOp::DeleteFdb(_),
                ) if e.is_not_found() => {}
                (Err(source), op) => {
                    return Err(RoutingError::Kernel {
                        action: format!("{op:?}"),
                        source,
                    });
                }
            }
        }
        if !ops.is_empty() {
            let residual = plan(&desired, &self.list().await?, deletable);
            if !residual.is_empty() {
                tracing::debug!(?residual, "unexpected difference after apply");
                return Err(RoutingError::Verify {
                    ops: residual.len(),
                });
            }
        }
        match mtu::publish(&self.config.mtu_file, self.model.pod_mtu()) {
            Ok(true) => {
                tracing::info!(mtu = self.model.pod_mtu(), path = %self.config.mtu_file.display(), "pod mtu published")
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "pod mtu not published"),
        }
        if !self.stale_since.is_empty() {
            // Look again once the oldest stale route is ripe.
            self.apply_at = Some(Instant::now() + self.config.stale_route_grace);
        }
        Ok(ops.len())
    }

    async fn apply(&mut self) {
        self.apply_at = None;
        let started = Instant::now();
        let result = self.try_apply().await;
        self.health
            .routing_apply_time
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(ops) => {
                self.failures = 0;
                if ops > 0 {
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(ops, elapsed_ms, "routes applied");
                }
            }
            Err(error) => {
                self.health.routing_errors.inc();
                self.failures = self.failures.saturating_add(1);
                let backoff = self
                    .retry_min
                    .saturating_mul(1u32 << self.failures.saturating_sub(1).min(16))
                    .min(self.retry_max);
                tracing::warn!(%error, failures = self.failures, retry_in_ms = backoff.as_millis() as u64, "routing apply failed");
                self.apply_at = Some(Instant::now() + backoff);
            }
        }
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Timers shared with the policy owner task.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Coalescing delay.
    pub apply_delay: Duration,
    /// Drift check period.
    pub drift_interval: Duration,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// Runs the routing task for `node` until every watch ends, reporting into
/// `health`'s routing metrics.
pub async fn run(
    node: String,
    config: RoutingConfig,
    timers: Timers,
    store: AsyncDatastore,
    kernel: Arc<dyn Kernel>,
    health: Arc<Health>,
) {
    let (tx, mut rx) = mpsc::channel(1024);
    let mut watches = tokio::task::JoinSet::new();
    for kind in ROUTING_KINDS {
        match store.list_watch((*kind).to_string(), None) {
            Ok(stream) => {
                let span = tracing::info_span!("watch", kind);
                watches
                    .spawn(twill_daemon::forward_watch(kind, stream, tx.clone()).instrument(span));
            }
            Err(error) => tracing::error!(kind, %error, "cannot watch; routing stays unsynced"),
        }
    }
    drop(tx);
    let mut router = Router {
        config,
        kernel,
        store,
        health,
        model: RoutingModel::new(node),
        felix_configs: BTreeMap::new(),
        bgp_configs: BTreeMap::new(),
        bgp_peers: BTreeMap::new(),
        known: twill_daemon::KnownKeys::default(),
        my_node: None,
        stale_since: BTreeMap::new(),
        apply_at: None,
        apply_delay: timers.apply_delay,
        retry_min: timers.retry_min,
        retry_max: timers.retry_max,
        failures: 0,
    };
    let mut drift = tokio::time::interval_at(
        Instant::now() + timers.drift_interval,
        timers.drift_interval,
    );
    drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let apply_at = router.apply_at;
        let apply_due = async move {
            match apply_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => router.on_msg(msg),
                None => return,
            },
            () = apply_due => router.apply().await,
            _ = drift.tick() => {
                if router.synced() && router.apply_at.is_none() {
                    tracing::debug!("route drift check");
                    router.apply_at = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use twill_kernel::fake::RecordingKernel;
    use twill_store::{MemoryStore, Revision};

    use super::*;

    fn router(kernel: &RecordingKernel, grace: Duration) -> Router {
        Router {
            config: RoutingConfig {
                mtu_file: PathBuf::from("unused"),
                stale_route_grace: grace,
            },
            kernel: Arc::new(kernel.clone()),
            store: AsyncDatastore::new(Arc::new(MemoryStore::default())),
            health: Arc::new(Health::new()),
            model: RoutingModel::new("n1"),
            felix_configs: BTreeMap::new(),
            bgp_configs: BTreeMap::new(),
            bgp_peers: BTreeMap::new(),
            known: twill_daemon::KnownKeys::default(),
            my_node: None,
            stale_since: BTreeMap::new(),
            apply_at: None,
            apply_delay: Duration::from_millis(5),
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_millis(50),
            failures: 0,
        }
    }

    fn object(kind: &str, name: &str, value: serde_json::Value) -> Object {
        Object {
            key: Key {
                kind: kind.into(),
                namespace: None,
                name: name.into(),
            },
            revision: Revision(1),
            value,
        }
    }

    #[test]
    fn nothing_is_scheduled_until_every_routing_kind_has_listed() {
        let kernel = RecordingKernel::new();
        let mut r = router(&kernel, Duration::ZERO);
        let (last, first) = ROUTING_KINDS.split_last().unwrap();
        for kind in first {
            r.on_msg(RouteMsg::Snapshot {
                kind,
                items: Vec::new(),
            });
            assert!(r.apply_at.is_none(), "scheduled before {last} listed");
        }
        r.on_msg(RouteMsg::Snapshot {
            kind: last,
            items: Vec::new(),
        });
        assert!(r.apply_at.is_some(), "in sync: an apply is due");
        assert!(
            kernel.ops().is_empty(),
            "messages alone never touch the kernel"
        );
    }

    #[test]
    fn the_node_specific_felix_configuration_wins_whole() {
        let kernel = RecordingKernel::new();
        let mut r = router(&kernel, Duration::ZERO);
        let fc =
            |vni: u32| serde_json::json!({"metadata": {"name": "x"}, "spec": {"vxlanVNI": vni}});
        r.on_upserted(
            FelixConfigurationSpec::STORE_KIND,
            object(FelixConfigurationSpec::STORE_KIND, "default", fc(7)),
        );
        assert_eq!(r.model.settings.vni, 7);
        r.on_upserted(
            FelixConfigurationSpec::STORE_KIND,
            object(FelixConfigurationSpec::STORE_KIND, "node.n1", fc(9)),
        );
        assert_eq!(r.model.settings.vni, 9);
        r.on_deleted(
            FelixConfigurationSpec::STORE_KIND,
            &Key::cluster(FelixConfigurationSpec::STORE_KIND, "node.n1"),
        );
        assert_eq!(r.model.settings.vni, 7);
    }

    #[test]
    fn local_workload_selectors_of_peers_for_this_node_are_kept() {
        let kernel = RecordingKernel::new();
        let mut r = router(&kernel, Duration::ZERO);
        r.on_upserted(
            NodeSpec::STORE_KIND,
            object(
                NodeSpec::STORE_KIND,
                "n1",
                serde_json::json!({"metadata": {"name": "n1", "labels": {"rack": "r1"}}, "spec": {}}),
            ),
        );
        r.on_upserted(
            BGPConfigurationSpec::STORE_KIND,
            object(
                BGPConfigurationSpec::STORE_KIND,
                "default",
                serde_json::json!({"metadata": {"name": "default"},
                    "spec": {"localWorkloadPeeringIPV4": "10.0.255.1"}}),
            ),
        );
        let peers = [
            ("everywhere", serde_json::json!({})),
            ("here", serde_json::json!({"node": "n1"})),
            ("elsewhere", serde_json::json!({"node": "n2"})),
            (
                "rack-r1",
                serde_json::json!({"nodeSelector": "rack == 'r1'"}),
            ),
            (
                "rack-r2",
                serde_json::json!({"nodeSelector": "rack == 'r2'"}),
            ),
        ];
        for (name, mut spec) in peers {
            spec["localWorkloadSelector"] = "app == 'bird'".into();
            spec["asNumber"] = 65001.into();
            r.on_upserted(
                BGPPeerSpec::STORE_KIND,
                object(
                    BGPPeerSpec::STORE_KIND,
                    name,
                    serde_json::json!({"metadata": {"name": name}, "spec": spec}),
                ),
            );
        }
        let peering = &r.model.local_peering;
        assert_eq!(peering.v4, Some("10.0.255.1".parse().unwrap()));
        assert_eq!(peering.v6, None);
        let names: Vec<&str> = peering.selectors.keys().map(String::as_str).collect();
        assert_eq!(names, ["everywhere", "here", "rack-r1"]);

        r.on_deleted(
            BGPConfigurationSpec::STORE_KIND,
            &Key::cluster(BGPConfigurationSpec::STORE_KIND, "default"),
        );
        assert_eq!(r.model.local_peering.v4, None);
    }

    #[test]
    fn only_endpoints_of_this_node_are_local() {
        let kernel = RecordingKernel::new();
        let mut r = router(&kernel, Duration::ZERO);
        let wep = |node: &str| {
            serde_json::json!({"metadata": {"name": "w", "namespace": "ns"}, "spec": {
                "node": node, "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                "interfaceName": "twl0000000001", "ipNetworks": ["10.65.0.5/32"]}})
        };
        let mut item = object(WorkloadEndpointSpec::STORE_KIND, "w", wep("n1"));
        item.key.namespace = Some("ns".into());
        r.on_upserted(WorkloadEndpointSpec::STORE_KIND, item.clone());
        assert_eq!(r.model.endpoints.len(), 1);
        item.value = wep("n2");
        r.on_upserted(WorkloadEndpointSpec::STORE_KIND, item);
        assert!(r.model.endpoints.is_empty(), "moved to another node");
    }

    #[test]
    fn unwanted_workload_routes_ripen_only_after_the_grace_period() {
        let kernel = RecordingKernel::new();
        let route = Route::to_device("10.65.0.5/32".parse().unwrap(), "twl0000000001")
            .protocol(ROUTE_PROTOCOL);
        let actual = Actual {
            routes: vec![route],
            ..Actual::default()
        };
        let nothing = routing::Desired::default();
        let mut patient = router(&kernel, Duration::from_secs(3600));
        assert!(patient.may_delete(&actual, &nothing).is_empty());
        assert_eq!(patient.stale_since.len(), 1, "the clock started");
        let mut eager = router(&kernel, Duration::ZERO);
        assert_eq!(eager.may_delete(&actual, &nothing).len(), 1);
        let gone = Actual::default();
        patient.may_delete(&gone, &nothing);
        assert!(patient.stale_since.is_empty(), "forgotten once gone");
    }

    #[tokio::test]
    async fn applies_report_their_time_routes_and_failures() {
        let kernel = RecordingKernel::new();
        let dir = tempfile::tempdir().unwrap();
        let mut r = router(&kernel, Duration::ZERO);
        r.config.mtu_file = dir.path().join("mtu");
        for kind in ROUTING_KINDS {
            r.on_msg(RouteMsg::Snapshot {
                kind,
                items: Vec::new(),
            });
        }
        let mut item = object(
            WorkloadEndpointSpec::STORE_KIND,
            "w",
            serde_json::json!({"metadata": {"name": "w", "namespace": "ns"}, "spec": {
                "node": "n1", "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                "interfaceName": "twl0000000001", "ipNetworks": ["10.65.0.5/32"]}}),
        );
        item.key.namespace = Some("ns".into());
        r.on_msg(RouteMsg::Upserted {
            kind: WorkloadEndpointSpec::STORE_KIND,
            item,
        });
        // The pod's interface does not exist yet: its route cannot be written.
        r.apply().await;
        assert_eq!(r.health.routing_errors.get(), 1);
        kernel
            .create_veth(twill_kernel::VethSpec::new("twl0000000001", "twt-peer1"))
            .await
            .unwrap();
        r.apply().await;
        assert_eq!(r.health.routing_errors.get(), 1, "the retry succeeded");
        assert_eq!(r.health.routing_routes.get(), 1);
        assert_eq!(r.health.vxlan_remote_vteps.get(), 0);
        let text = r.health.encode();
        assert!(
            text.contains("felix_routing_apply_time_seconds_count 2"),
            "{text}"
        );
    }
}
