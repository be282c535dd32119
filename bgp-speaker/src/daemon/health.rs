//! Health and Prometheus metrics, served on `GET /livez`, `GET /readyz`
//! and `GET /metrics` by [`twill_daemon::serve`] (shared with felix-rs).
//!
//! Metrics (all prefixed `twill_bgp_`):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `twill_bgp_sessions{state}` | gauge | configured sessions per FSM state |
//! | `twill_bgp_peers` | gauge | configured peerings |
//! | `twill_bgp_prefixes_received` | gauge | prefixes received from all peers |
//! | `twill_bgp_prefixes_accepted` | gauge | of those, accepted by import filters |
//! | `twill_bgp_prefixes_advertised` | gauge | prefixes advertised, summed over peers |
//! | `twill_bgp_prefixes_originated` | gauge | prefixes this node originates |
//! | `twill_bgp_updates_received_total` | counter | UPDATE messages received |
//! | `twill_bgp_updates_sent_total` | counter | UPDATE messages sent |
//! | `twill_bgp_session_flaps_total` | counter | sessions that left Established |
//! | `twill_bgp_config_applies_total` | counter | configurations applied |
//! | `twill_bgp_config_warnings` | gauge | resources skipped in the last computation |
//! | `twill_bgp_datastore_synced` | gauge | 1 once every watched kind is listed |

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use twill_daemon::Heartbeat;

/// The label of `twill_bgp_sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabel {
    /// The FSM state.
    pub state: String,
}

/// The daemon's metrics and health, updated by the owner task and read by
/// the HTTP server.
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    /// Sessions per state.
    pub sessions: Family<StateLabel, Gauge>,
    /// Configured peerings.
    pub peers: Gauge,
    /// Prefixes received.
    pub prefixes_received: Gauge,
    /// Prefixes accepted.
    pub prefixes_accepted: Gauge,
    /// Prefixes advertised (summed over peers).
    pub prefixes_advertised: Gauge,
    /// Prefixes originated.
    pub prefixes_originated: Gauge,
    /// UPDATEs received.
    pub updates_received: Counter,
    /// UPDATEs sent.
    pub updates_sent: Counter,
    /// Session flaps.
    pub flaps: Counter,
    /// Configurations applied.
    pub applies: Counter,
    /// Warnings of the last computation.
    pub warnings: Gauge,
    /// 1 once synced.
    pub synced: Gauge,
    ready: AtomicBool,
    heartbeat: Heartbeat,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Fresh metrics, registered under the names in the module docs.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("twill_bgp");
        let sessions = Family::<StateLabel, Gauge>::default();
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        registry.register(
            "sessions",
            "Configured BGP sessions per FSM state",
            sessions.clone(),
        );
        let peers = gauge(&mut registry, "peers", "Configured BGP peerings");
        let prefixes_received = gauge(
            &mut registry,
            "prefixes_received",
            "Prefixes received from all peers",
        );
        let prefixes_accepted = gauge(
            &mut registry,
            "prefixes_accepted",
            "Prefixes received and accepted by import filters",
        );
        let prefixes_advertised = gauge(
            &mut registry,
            "prefixes_advertised",
            "Prefixes advertised, summed over peers",
        );
        let prefixes_originated = gauge(
            &mut registry,
            "prefixes_originated",
            "Prefixes this node originates",
        );
        let updates_received = counter(
            &mut registry,
            "updates_received",
            "UPDATE messages received",
        );
        let updates_sent = counter(&mut registry, "updates_sent", "UPDATE messages sent");
        let flaps = counter(
            &mut registry,
            "session_flaps",
            "Sessions that left Established",
        );
        let applies = counter(&mut registry, "config_applies", "Configurations applied");
        let warnings = gauge(
            &mut registry,
            "config_warnings",
            "Resources skipped in the last configuration computation",
        );
        let synced = gauge(
            &mut registry,
            "datastore_synced",
            "1 once every watched kind has been listed",
        );
        Self {
            registry,
            sessions,
            peers,
            prefixes_received,
            prefixes_accepted,
            prefixes_advertised,
            prefixes_originated,
            updates_received,
            updates_sent,
            flaps,
            applies,
            warnings,
            synced,
            ready: AtomicBool::new(false),
            heartbeat: Heartbeat::new(),
        }
    }

    /// Ready means: synced with the datastore and a router is running.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// See [`Health::set_ready`].
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

    /// Moves a counter up to `total` (the router reports totals).
    pub fn advance(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_under_documented_names() {
        let health = Health::new();
        health
            .sessions
            .get_or_create(&StateLabel {
                state: "Established".into(),
            })
            .set(2);
        Health::advance(&health.updates_received, 7);
        Health::advance(&health.updates_received, 5);
        let text = health.encode();
        for expected in [
            "twill_bgp_sessions{state=\"Established\"} 2",
            "twill_bgp_updates_received_total 7",
            "twill_bgp_session_flaps_total 0",
            "twill_bgp_datastore_synced 0",
            "twill_bgp_prefixes_originated 0",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }
}
