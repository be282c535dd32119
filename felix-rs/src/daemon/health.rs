//! Health and Prometheus metrics, served on `GET /livez`, `GET /readyz`
//! and `GET /metrics` by [`twill_daemon::serve`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use twill_daemon::Heartbeat;

/// Felix's `felix_resync_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncState {
    /// Waiting for the first snapshot of every kind.
    WaitingForDatastore = 1,
    /// Every kind listed; the first apply has not succeeded yet.
    ResyncInProgress = 2,
    /// Programmed from a complete view of the datastore.
    InSync = 3,
}

/// The daemon's metrics and health, shared by the owner task (which
/// updates them) and the HTTP server (which reads them).
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    /// Time per apply (render, plan, transaction, verify), seconds.
    pub apply_time: Histogram,
    /// Local WorkloadEndpoints whose chains are programmed.
    pub active_local_endpoints: Gauge,
    /// Policies rendered for local endpoints.
    pub active_local_policies: Gauge,
    /// Distinct rule selectors (named sets).
    pub active_local_selectors: Gauge,
    /// Failed nft transactions, reads and verifications.
    pub nft_errors: Counter,
    /// [`ResyncState`] as a number.
    pub resync_state: Gauge,
    /// Time per routing apply (list, plan, kernel operations, verify), seconds.
    pub routing_apply_time: Histogram,
    /// Failed routing applies (each retried with backoff).
    pub routing_errors: Counter,
    /// Routes the routing task owns (local pods and remote blocks).
    pub routing_routes: Gauge,
    /// Remote VXLAN tunnel endpoints in the FDB, both families.
    pub vxlan_remote_vteps: Gauge,
    ready: AtomicBool,
    heartbeat: Heartbeat,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Fresh metrics, registered under Felix's names.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let apply_time = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let active_local_endpoints = Gauge::default();
        let active_local_policies = Gauge::default();
        let active_local_selectors = Gauge::default();
        let nft_errors = Counter::default();
        let resync_state = Gauge::default();
        let routing_apply_time = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let routing_errors = Counter::default();
        let routing_routes = Gauge::default();
        let vxlan_remote_vteps = Gauge::default();
        registry.register(
            "felix_int_dataplane_apply_time_seconds",
            "Time to render, plan, apply and verify one nft transaction",
            apply_time.clone(),
        );
        registry.register(
            "felix_active_local_endpoints",
            "Local workload endpoints whose policy is programmed",
            active_local_endpoints.clone(),
        );
        registry.register(
            "felix_active_local_policies",
            "Policies programmed for local endpoints",
            active_local_policies.clone(),
        );
        registry.register(
            "felix_active_local_selectors",
            "Distinct rule selectors programmed as sets",
            active_local_selectors.clone(),
        );
        registry.register(
            "felix_nft_errors",
            "Failed nft transactions, read-backs and verifications",
            nft_errors.clone(),
        );
        registry.register(
            "felix_resync_state",
            "1: waiting for the datastore, 2: resync in progress, 3: in sync",
            resync_state.clone(),
        );
        registry.register(
            "felix_routing_apply_time_seconds",
            "Time to list, plan, program and verify routes, neighbours, FDB and VXLAN devices",
            routing_apply_time.clone(),
        );
        registry.register(
            "felix_routing_errors",
            "Failed routing applies (retried with backoff)",
            routing_errors.clone(),
        );
        registry.register(
            "felix_routing_routes",
            "Routes owned by felix-rs (local pods and remote blocks)",
            routing_routes.clone(),
        );
        registry.register(
            "felix_vxlan_remote_vteps",
            "Remote VXLAN tunnel endpoints programmed, both families",
            vxlan_remote_vteps.clone(),
        );
        resync_state.set(ResyncState::WaitingForDatastore as i64);
        Self {
            registry,
            apply_time,
            active_local_endpoints,
            active_local_policies,
            active_local_selectors,
            nft_errors,
            resync_state,
            routing_apply_time,
            routing_errors,
            routing_routes,
            vxlan_remote_vteps,
            ready: AtomicBool::new(false),
            heartbeat: Heartbeat::new(),
        }
    }

    /// Sets the resync state; ready means in sync with the last apply
    /// successful.
    pub fn set_state(&self, state: ResyncState, last_apply_ok: bool) {
        self.resync_state.set(state as i64);
        self.ready.store(
            state == ResyncState::InSync && last_apply_ok,
            Ordering::Relaxed,
        );
    }

    /// Whether the daemon is ready (see [`Health::set_state`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Records that the owner loop is turning.
    pub fn heartbeat(&self) {
        self.heartbeat.beat();
    }

    /// Live while the owner loop turned within `stall`.
    pub fn is_live(&self, stall: Duration) -> bool {
        self.heartbeat.is_live(stall)
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl twill_daemon::HealthProbe for Health {
    fn is_live(&self, stall: Duration) -> bool {
        Health::is_live(self, stall)
    }

    fn is_ready(&self) -> bool {
        Health::is_ready(self)
    }

    fn metrics(&self) -> String {
        self.encode()
    }
}
