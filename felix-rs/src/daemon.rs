//! The felix-rs daemon: the pure core driven by datastore watches, applying
//! to the kernel through one `nft -f -` transaction per change.
//!
//! ```text
//!  list-watch WorkloadEndpoint ──┐
//!  list-watch NetworkPolicy ─────┤
//!  list-watch ... (one per kind  │ FelixMsg::{Snapshot, Upserted, Deleted, WatchError}
//!    in WATCHED_KINDS) ──────────┤
//!                                ▼
//!                  ┌─────────── owner task (run) ───────────┐
//!                  │ CalcGraph, IncrementalRender, last     │
//!                  │ Ruleset + what changed since,          │
//!                  │ local WEPs, status files               │
//!                  │ timers: apply (throttle / backoff),    │
//!                  │         drift check                    │
//!                  └──────────────────┬─────────────────────┘
//!                                     │ updates Arc<Health> ──► health task:
//!                                     │        GET /livez /readyz /metrics
//!                                     │ render changes → plan them → nft -f -
//!                                     ▼
//!                        Kernel (NetlinkKernel / RecordingKernel)
//!                                     │ then
//!                                     ▼
//!                   <status dir>/<namespace>.<wep>.json (endpoint programmed)
//! ```
//!
//! Rules the owner task keeps:
//!
//! * **No kernel access before sync.** Nothing is read or written until
//!   every watch has delivered its first snapshot.
//! * **The first apply sweeps.** It plans against the table read back from
//!   the kernel, so what an earlier run left is kept where still wanted
//!   (established flows survive a restart) and removed where not.
//! * **Coalescing.** A change schedules an apply `apply_delay` later; every
//!   change until then joins the same transaction.
//! * **Incremental.** The graph names what changed; the renderer redoes
//!   only that and names the chains, sets and maps it touched; the plan
//!   looks at those alone.
//! * **Fail closed, verify.** A failed transaction changes nothing in the
//!   kernel; the daemon forgets what it believed the kernel has, and retries
//!   with exponential backoff planning against a fresh read-back.
//!   Verification (see [`Verification`]): a transaction planned against a
//!   read-back of an existing table is read back and must plan to nothing.
//!   Transactions planned against the daemon's own record (every change
//!   after the first), and the first one into an absent table (which
//!   deletes any table of that name in the same transaction), leave the
//!   kernel's table exactly as the script says once nft accepts it; the
//!   whole table is then compared on the drift timer, the first time
//!   shortly after the first apply.
//! * **Drift.** Every `drift_interval` the table is read back and any
//!   difference repaired.
//! * **Host addresses.** A HostEndpoint with only `expectedIPs` polices the
//!   interface carrying one of them; the kernel's notices of address and
//!   interface changes (`Kernel::watch_addresses`) trigger an apply that
//!   lists the addresses again, so the policy follows a moved address.

pub mod health;
mod msg;
mod pump;
pub mod routes;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;
use twill_api::Spec;
use twill_api::felix::FelixConfigurationSpec;
use twill_kernel::watch::AddressChanges;
use twill_kernel::{Kernel, KernelError, KernelExt};
use twill_store::{AsyncDatastore, Key};

use crate::graph::Prepared;
use crate::model::Update;
use crate::plan::plan_touched;
use crate::render::{IncrementalRender, RenderConfig, from_endpoint_chain};
use crate::ruleset::{Op, Touched};
use crate::{CalcGraph, Ruleset, plan, readback, script};
use health::{Health, ResyncState};
use msg::deleted_update;
pub use msg::{Decoded, EndpointFields, FelixMsg, Item};
use status::{LocalWep, StatusDir};

/// The nft family of Twill's table.
pub const TABLE_FAMILY: &str = "inet";
/// The name of Twill's table.
pub const TABLE_NAME: &str = "twill";

/// The datastore kinds felix-rs watches (`Spec::STORE_KIND`).
pub const WATCHED_KINDS: &[&str] = &[
    twill_api::endpoint::WorkloadEndpointSpec::STORE_KIND,
    twill_api::policy::NetworkPolicySpec::STORE_KIND,
    twill_api::policy::GlobalNetworkPolicySpec::STORE_KIND,
    twill_api::k8s::KubernetesNetworkPolicySpec::STORE_KIND,
    twill_api::tier::TierSpec::STORE_KIND,
    twill_api::networkset::NetworkSetSpec::STORE_KIND,
    twill_api::networkset::GlobalNetworkSetSpec::STORE_KIND,
    twill_api::endpoint::HostEndpointSpec::STORE_KIND,
    twill_api::profile::ProfileSpec::STORE_KIND,
    twill_api::felix::FelixConfigurationSpec::STORE_KIND,
    twill_api::ippool::IPPoolSpec::STORE_KIND,
];

/// The daemon's configuration, validated by [`DaemonConfig::validate`]
/// before anything is touched.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonConfig {
    /// This node's name: WorkloadEndpoints whose `spec.node` equals it are
    /// local.
    pub node: String,
    /// Where endpoint status files go.
    pub status_dir: PathBuf,
    /// How long changes are coalesced before an apply.
    #[serde(with = "millis")]
    pub apply_delay: Duration,
    /// How often the kernel's table is read back and drift repaired.
    #[serde(with = "millis")]
    pub drift_interval: Duration,
    /// The first retry delay after a failed apply; doubled per failure.
    #[serde(with = "millis")]
    pub retry_min: Duration,
    /// The longest retry delay.
    #[serde(with = "millis")]
    pub retry_max: Duration,
    /// Where to serve `/livez`, `/readyz` and `/metrics`; none when unset.
    #[serde(default)]
    pub health_address: Option<SocketAddr>,
    /// Local routes, VXLAN and the pod MTU file ([`routes`]); off when
    /// unset.
    #[serde(default)]
    pub routing: Option<routes::RoutingConfig>,
}

mod millis {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl DaemonConfig {
    /// A configuration with the default timers for `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            status_dir: PathBuf::from(twill_api::status::DEFAULT_ENDPOINT_STATUS_DIR),
            apply_delay: Duration::from_millis(10),
            drift_interval: Duration::from_secs(90),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            health_address: None,
            routing: None,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DaemonError> {
        let bad = |field: &str, reason: &str| {
            Err(DaemonError::Config {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if self.node.is_empty() {
            return bad("node", "must not be empty");
        }
        if self.status_dir.as_os_str().is_empty() {
            return bad("statusDir", "must not be empty");
        }
        if self.drift_interval.is_zero() {
            return bad("driftInterval", "must be positive");
        }
        if self.retry_min.is_zero() {
            return bad("retryMin", "must be positive");
        }
        if self.retry_max < self.retry_min {
            return bad("retryMax", "must not be shorter than retryMin");
        }
        Ok(())
    }
}

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A configuration field is invalid.
    #[error("invalid configuration field {field}: {reason}")]
    Config {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A watch could not be started.
    #[error("cannot watch {kind}: {source}")]
    Watch {
        /// The datastore kind.
        kind: String,
        /// The store's error.
        source: Box<twill_store::Error>,
    },
    /// Every watch task ended (the store went away).
    #[error("every datastore watch ended")]
    WatchesEnded,
    /// The kernel refused an operation.
    #[error("{action} failed: {source}")]
    Kernel {
        /// What was being done.
        action: &'static str,
        /// The kernel's error.
        source: KernelError,
    },
    /// After a successful transaction the kernel's table still differs.
    #[error("verification failed: the table read back needs {ops} more operations")]
    Verify {
        /// How many operations the plan against the read-back holds.
        ops: usize,
    },
    /// The health and metrics address cannot be bound.
    #[error("cannot serve health on {address}: {source}")]
    Health {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The endpoint status directory cannot be used.
    #[error("endpoint status directory {path}: {source}")]
    StatusDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An endpoint status file cannot be written or removed.
    #[error("endpoint status file {path}: {source}")]
    StatusFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How the daemon knows the kernel holds what it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The plan was made against the daemon's own record of the table, or
    /// against an absent table with a `delete table` first: once nft
    /// accepts the transaction (atomically), the table is what the script
    /// says. Chains are rewritten whole, map entries are deleted before
    /// they are added, and deleting a missing element fails the whole
    /// transaction, so a stale record shows up as a failed apply.
    Construction,
    /// The plan was made against a read-back of an existing table: the
    /// table is read back again after the transaction and must plan to
    /// nothing.
    ReadBack,
}

/// What one apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    /// Operations in the transaction (0: nothing was written).
    ops: usize,
    /// How the result was verified.
    verification: Verification,
    /// Where the time went: rendering; planning and writing the script
    /// (with the read-back planned against, if any); the transaction
    /// with its verification.
    render: Duration,
    plan: Duration,
    kernel: Duration,
}

/// How long after the first apply the whole table is read back and
/// compared (later ones follow `drift_interval`).
const FIRST_DRIFT_CHECK: Duration = Duration::from_secs(2);

/// The state the owner task keeps.
struct Felix {
    config: DaemonConfig,
    kernel: Arc<dyn Kernel>,
    graph: CalcGraph,
    renderer: IncrementalRender,
    /// What may differ between the renderer's ruleset and `last_applied`.
    touched: Touched,
    render_config: RenderConfig,
    felix_configs: BTreeMap<String, FelixConfigurationSpec>,
    /// IP pools by name (NAT outgoing).
    pools: BTreeMap<String, twill_api::ippool::IPPoolSpec>,
    /// Objects known per kind, to turn a snapshot into deletions.
    known: twill_daemon::KnownKeys,
    /// WorkloadEndpoints on this node, by `(namespace, name)`.
    local_weps: BTreeMap<(String, String), LocalWep>,
    /// What the kernel is believed to hold; `None` means read it back.
    last_applied: Option<Ruleset>,
    /// Something changed since the last successful apply.
    dirty: bool,
    apply_at: Option<Instant>,
    failures: u32,
    /// At least one apply succeeded.
    applied_once: bool,
    /// When the first whole-table comparison is due.
    first_drift_check: Option<Instant>,
    /// The apply under way compares the whole table (drift check).
    checking_drift: bool,
    status: StatusDir,
    health: Arc<Health>,
}

impl Felix {
    fn new(
        config: DaemonConfig,
        kernel: Arc<dyn Kernel>,
        status: StatusDir,
        health: Arc<Health>,
    ) -> Self {
        Self {
            graph: CalcGraph::new(config.node.clone()),
            config,
            kernel,
            renderer: IncrementalRender::new(RenderConfig::default()),
            touched: Touched::everything(),
            render_config: RenderConfig::default(),
            felix_configs: BTreeMap::new(),
            pools: BTreeMap::new(),
            known: twill_daemon::KnownKeys::default(),
            local_weps: BTreeMap::new(),
            last_applied: None,
            dirty: false,
            apply_at: None,
            failures: 0,
            applied_once: false,
            first_drift_check: None,
            checking_drift: false,
            status,
            health,
        }
    }

    fn synced(&self) -> bool {
        self.known.kinds() == WATCHED_KINDS.len()
    }

    fn schedule(&mut self, delay: Duration) {
        if self.synced() && self.apply_at.is_none() && self.failures == 0 {
            self.apply_at = Some(Instant::now() + delay);
        }
    }

    fn on_msg(&mut self, msg: FelixMsg) {
        match msg {
            FelixMsg::Snapshot { kind, items } => {
                let first = !self.known.has(kind);
                let gone = self.known.snapshot(kind, items.iter().map(|i| &i.key));
                tracing::info!(
                    kind,
                    objects = items.len(),
                    removed = gone.len(),
                    "snapshot"
                );
                for key in gone {
                    self.on_deleted(kind, &key);
                }
                for item in items {
                    self.on_upserted(kind, item);
                }
                if first && self.synced() {
                    tracing::info!("every watch has listed once: in sync");
                    self.update(Update::InSync);
                    self.health.set_state(ResyncState::ResyncInProgress, false);
                }
            }
            FelixMsg::Upserted { kind, item } => {
                self.known.upserted(kind, &item.key);
                self.on_upserted(kind, item);
            }
            FelixMsg::Deleted { kind, key } => {
                self.known.deleted(kind, &key);
                self.on_deleted(kind, &key);
            }
            FelixMsg::WatchError { kind, error } => {
                tracing::warn!(kind, error, "watch failed; it retries");
                return;
            }
        }
        self.dirty = true;
        self.schedule(self.config.apply_delay);
    }

    fn update(&mut self, update: impl Into<Prepared>) {
        match self.graph.on_prepared(update.into()) {
            Ok(()) => {}
            Err(error @ crate::Error::Unsupported { .. }) => {
                tracing::warn!(%error, "policy enforced fail closed where unsupported");
            }
            Err(error) => tracing::warn!(%error, "resource ignored"),
        }
    }

    fn on_upserted(&mut self, kind: &'static str, item: Item) {
        let decoded = match item.resource {
            Ok(decoded) => decoded,
            Err(error) => {
                // As the graph does with a resource it cannot convert: it
                // stops existing until it is fixed.
                tracing::warn!(kind, name = %item.key.name, error, "undecodable object ignored");
                self.on_deleted(kind, &item.key);
                return;
            }
        };
        match decoded {
            Decoded::Graph { update, endpoint } => {
                if let Some(wep) = endpoint {
                    let id = (
                        item.key.namespace.clone().unwrap_or_default(),
                        item.key.name.clone(),
                    );
                    if wep.node == self.config.node {
                        let container_id = Some(wep.container_id).filter(|c| !c.is_empty());
                        self.local_weps.insert(
                            id,
                            LocalWep {
                                revision: item.revision,
                                container_id,
                                interface: wep.interface,
                            },
                        );
                    } else {
                        self.local_weps.remove(&id);
                    }
                }
                self.update(update);
            }
            Decoded::FelixConfiguration(spec) => {
                self.felix_configs.insert(item.key.name, *spec);
                self.refresh_render_config();
            }
            Decoded::IpPool(spec) => {
                self.pools.insert(item.key.name, *spec);
                self.refresh_render_config();
            }
            Decoded::Ignored => {}
        }
    }

    fn on_deleted(&mut self, kind: &str, key: &Key) {
        if kind == FelixConfigurationSpec::STORE_KIND {
            self.felix_configs.remove(&key.name);
            self.refresh_render_config();
            return;
        }
        if kind == twill_api::ippool::IPPoolSpec::STORE_KIND {
            self.pools.remove(&key.name);
            self.refresh_render_config();
            return;
        }
        if kind == twill_api::endpoint::WorkloadEndpointSpec::STORE_KIND {
            self.local_weps
                .remove(&(key.namespace.clone().unwrap_or_default(), key.name.clone()));
        }
        if let Some(update) = deleted_update(kind, key) {
            self.update(update);
        }
    }

    /// Calico's precedence: `node.<node>` over `default`; fields are not
    /// merged between the two.
    fn refresh_render_config(&mut self) {
        let node_specific = format!("node.{}", self.config.node);
        let felix = self
            .felix_configs
            .get(&node_specific)
            .or_else(|| self.felix_configs.get("default"));
        self.render_config = felix
            .map(RenderConfig::from_felix_configuration)
            .unwrap_or_default();
        self.render_config.nat_outgoing =
            crate::render::nat::NatOutgoing::new(self.pools.values(), felix);
    }

    async fn read_back(&self) -> Result<Ruleset, DaemonError> {
        match self.kernel.nft_read_table(TABLE_FAMILY, TABLE_NAME).await {
            Ok(table) => Ok(readback::from_kernel(&table)),
            Err(e) if e.is_not_found() => Ok(Ruleset::default()),
            Err(source) => Err(DaemonError::Kernel {
                action: "reading the nft table",
                source,
            }),
        }
    }

    /// Whether Twill's table exists, as a read-back.
    async fn read_back_existing(&self) -> Result<Option<Ruleset>, DaemonError> {
        match self.kernel.nft_read_table(TABLE_FAMILY, TABLE_NAME).await {
            Ok(table) => Ok(Some(readback::from_kernel(&table))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(source) => Err(DaemonError::Kernel {
                action: "reading the nft table",
                source,
            }),
        }
    }

    /// Tells the graph the host's interface addresses when a HostEndpoint
    /// has only `expectedIPs` (on every apply, so on every drift check too).
    async fn resolve_host_endpoints(&mut self) {
        if !self.graph.wants_host_addresses() {
            return;
        }
        match self.kernel.list_addresses(None).await {
            Ok(entries) => self.update(Update::host_interface_addresses(&entries)),
            Err(error) => tracing::warn!(%error, "cannot list the host's addresses"),
        }
    }

    /// Render what changed, plan, one transaction, verify.
    async fn try_apply(&mut self) -> Result<Applied, DaemonError> {
        let started = std::time::Instant::now();
        self.resolve_host_endpoints().await;
        self.renderer.set_config(self.render_config.clone());
        self.renderer.sync(&mut self.graph);
        self.touched.merge(self.renderer.take_touched());
        let render = started.elapsed();
        // `scoped`: planned over the touched names against our own record.
        let (mut actual, ops, verification, scoped) = match self.last_applied.take() {
            Some(actual) => {
                let ops = plan_touched(self.renderer.ruleset(), &actual, &self.touched);
                (actual, ops, Verification::Construction, !self.touched.all)
            }
            None => match self.read_back_existing().await? {
                Some(actual) => {
                    let ops = plan(self.renderer.ruleset(), &actual);
                    (actual, ops, Verification::ReadBack, false)
                }
                None => {
                    // Whatever appears under our name meanwhile is replaced.
                    let mut ops = vec![Op::AddTable, Op::DeleteTable];
                    ops.extend(plan(self.renderer.ruleset(), &Ruleset::default()));
                    (Ruleset::default(), ops, Verification::Construction, false)
                }
            },
        };
        let desired = self.renderer.ruleset();
        let mut plan_time = started.elapsed() - render;
        if !ops.is_empty() {
            let text = script(&ops);
            plan_time = started.elapsed() - render;
            self.kernel
                .nft_apply(&text)
                .await
                .map_err(|source| DaemonError::Kernel {
                    action: "the nft transaction",
                    source,
                })?;
            if verification == Verification::ReadBack {
                let residual = plan(desired, &self.read_back().await?);
                if !residual.is_empty() {
                    tracing::debug!(
                        script = script(&residual),
                        "unexpected difference after apply"
                    );
                    return Err(DaemonError::Verify {
                        ops: residual.len(),
                    });
                }
            }
        }
        if scoped {
            actual.copy_touched(desired, &self.touched);
        } else {
            actual.clone_from(desired);
        }
        self.last_applied = Some(actual);
        self.touched = Touched::default();
        Ok(Applied {
            ops: ops.len(),
            verification,
            render,
            plan: plan_time,
            kernel: started.elapsed() - render - plan_time,
        })
    }

    async fn apply(&mut self) {
        self.apply_at = None;
        if !self.dirty && self.last_applied.is_some() {
            return;
        }
        let started = Instant::now();
        let result = self.try_apply().await;
        let elapsed = started.elapsed().as_secs_f64();
        let elapsed_ms = elapsed * 1e3;
        self.health.apply_time.observe(elapsed);
        match result {
            Ok(applied) => {
                self.failures = 0;
                if !self.applied_once {
                    self.first_drift_check = Some(Instant::now() + FIRST_DRIFT_CHECK);
                }
                if self.checking_drift && applied.ops > 0 {
                    tracing::warn!(
                        ops = applied.ops,
                        "the kernel's table had drifted; repaired"
                    );
                }
                self.checking_drift = false;
                self.applied_once = true;
                self.health.set_state(ResyncState::InSync, true);
                self.dirty = false;
                self.graph.clear_dirty();
                if applied.ops > 0 {
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    tracing::info!(ops = applied.ops, elapsed_ms, render_ms = ms(applied.render),
                        plan_ms = ms(applied.plan), kernel_ms = ms(applied.kernel),
                        verification = ?applied.verification, "ruleset applied");
                }
                if let Err(error) = self.sync_status() {
                    tracing::error!(%error, "endpoint status not written");
                    self.dirty = true;
                    self.apply_at = Some(Instant::now() + self.config.retry_min);
                }
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                self.health.nft_errors.inc();
                let state = if self.applied_once {
                    ResyncState::InSync
                } else {
                    ResyncState::ResyncInProgress
                };
                self.health.set_state(state, false);
                // Whatever the failure, plan the retry against the kernel.
                self.last_applied = None;
                let backoff = self
                    .config
                    .retry_min
                    .saturating_mul(1u32 << self.failures.saturating_sub(1).min(16))
                    .min(self.config.retry_max);
                tracing::warn!(%error, failures = self.failures, retry_in_ms = backoff.as_millis() as u64,
                    "apply failed; the kernel keeps its previous ruleset");
                self.apply_at = Some(Instant::now() + backoff);
            }
        }
    }

    fn sync_status(&mut self) -> Result<(), DaemonError> {
        let desired = self
            .last_applied
            .as_ref()
            .expect("status is synced after a successful apply");
        let programmed: BTreeMap<(String, String), &LocalWep> = self
            .local_weps
            .iter()
            .filter(|(_, wep)| {
                desired
                    .chains
                    .contains_key(&from_endpoint_chain(&wep.interface))
            })
            .map(|(k, wep)| (k.clone(), wep))
            .collect();
        let policies: BTreeSet<&str> = desired
            .chains
            .keys()
            .filter_map(|name| {
                name.strip_prefix("pi-")
                    .or_else(|| name.strip_prefix("po-"))
            })
            .collect();
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.health
            .active_local_endpoints
            .set(gauge(programmed.len()));
        self.health.active_local_policies.set(gauge(policies.len()));
        self.health
            .active_local_selectors
            .set(gauge(self.graph.rule_selector_count()));
        self.status.sync(&programmed)
    }

    fn on_first_drift_check(&mut self) {
        if self.apply_at.is_some() {
            // An apply (or its retry) comes first; check after it.
            self.first_drift_check = Some(Instant::now() + FIRST_DRIFT_CHECK);
        } else {
            self.on_drift_tick();
        }
    }

    /// The host's addresses or interfaces changed: a HostEndpoint with only
    /// `expectedIPs` may have moved to another interface.
    fn on_host_addresses_changed(&mut self) {
        if self.graph.wants_host_addresses() {
            self.dirty = true;
            self.schedule(self.config.apply_delay);
        }
    }

    fn on_drift_tick(&mut self) {
        if self.synced() && self.apply_at.is_none() {
            tracing::debug!("drift check");
            self.first_drift_check = None;
            self.checking_drift = true;
            self.last_applied = None;
            self.dirty = true;
            self.apply_at = Some(Instant::now());
        }
    }
}

/// Runs the daemon until `shutdown` completes. The kernel's table is left
/// as it is on return.
///
/// # Errors
///
/// An invalid configuration, a status directory that cannot be created, a
/// watch that cannot start, or the end of every watch. Kernel failures are
/// retried, never returned.
pub async fn run(
    config: DaemonConfig,
    store: AsyncDatastore,
    kernel: Arc<dyn Kernel>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    run_with_health(config, store, kernel, Arc::new(Health::new()), shutdown).await
}

/// The next notice of `addresses`; never, without a watch.
async fn next_change(addresses: Option<&mut AddressChanges>) -> Option<()> {
    match addresses {
        Some(addresses) => addresses.changed().await,
        None => std::future::pending().await,
    }
}

/// How often the owner loop proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the owner loop may go without turning before `/livez` fails
/// (an apply of a very large ruleset takes seconds, not minutes).
const STALL: Duration = Duration::from_secs(60);

/// [`run`], reporting into `health` (which the caller may also read).
///
/// # Errors
///
/// As [`run`], and [`DaemonError::Health`] when the health address cannot
/// be bound.
pub async fn run_with_health(
    config: DaemonConfig,
    store: AsyncDatastore,
    kernel: Arc<dyn Kernel>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    config.validate()?;
    let status = StatusDir::open(&config.status_dir)?;
    let listener = match config.health_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| DaemonError::Health { address, source })?,
        ),
        None => None,
    };
    let span = tracing::info_span!("felix", node = %config.node);
    let (tx, mut rx) = mpsc::channel(1024);
    for kind in WATCHED_KINDS {
        let span = tracing::info_span!(parent: &span, "watch", kind);
        // The threads stop once `rx` is dropped, when this returns.
        pump::spawn(Arc::clone(store.blocking()), kind, tx.clone(), span).map_err(|source| {
            DaemonError::Watch {
                kind: (*kind).to_string(),
                source: Box::new(twill_store::Error::Task(source.to_string())),
            }
        })?;
    }
    drop(tx);
    let mut watches = tokio::task::JoinSet::new();
    if let Some(listener) = listener {
        let span = tracing::info_span!(parent: &span, "health");
        watches
            .spawn(twill_daemon::serve(listener, Arc::clone(&health) as _, STALL).instrument(span));
    }
    if let Some(routing) = config.routing.clone() {
        let timers = routes::Timers {
            apply_delay: config.apply_delay,
            drift_interval: config.drift_interval,
            retry_min: config.retry_min,
            retry_max: config.retry_max,
        };
        let span = tracing::info_span!(parent: &span, "routing");
        let task = routes::run(
            config.node.clone(),
            routing,
            timers,
            store.clone(),
            Arc::clone(&kernel),
            Arc::clone(&health),
        );
        watches.spawn(task.instrument(span));
    }
    // HostEndpoints with only `expectedIPs` follow their addresses as they
    // move; without the watch, at the next drift check.
    let mut addresses = kernel
        .watch_addresses()
        .inspect_err(|error| {
            tracing::warn!(%error, "host address changes are seen only at drift checks");
        })
        .ok();
    health.heartbeat();
    let drift_interval = config.drift_interval;
    let mut felix = Felix::new(config, kernel, status, Arc::clone(&health));
    let mut drift = tokio::time::interval_at(Instant::now() + drift_interval, drift_interval);
    drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    tokio::pin!(shutdown);
    let result = async {
        loop {
            let apply_at = felix.apply_at;
            let apply_due = async move {
                match apply_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let first_check = felix.first_drift_check;
            let first_check_due = async move {
                match first_check {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                msg = rx.recv() => match msg {
                    Some(msg) => felix.on_msg(msg),
                    None => return Err(DaemonError::WatchesEnded),
                },
                changed = next_change(addresses.as_mut()) => match changed {
                    Some(()) => felix.on_host_addresses_changed(),
                    None => {
                        tracing::warn!("the host address watch ended; changes are seen only at drift checks");
                        addresses = None;
                    }
                },
                () = apply_due => felix.apply().await,
                _ = drift.tick() => felix.on_drift_tick(),
                () = first_check_due => felix.on_first_drift_check(),
                _ = heartbeat.tick() => {}
            }
            felix.health.heartbeat();
        }
    }
    .instrument(span)
    .await;
    watches.abort_all();
    result
}
