//! What the library asks of its environment, injected so tests control it:
//! the time ([`Clock`]) and whether an allocation's owner still exists
//! ([`Liveness`]).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_api::node::NodeSpec;
use twill_store::Datastore;

use crate::error::Result;
use crate::store;

/// The time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock set to `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        // A fixed, whole-second start keeps test output stable.
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `time` as RFC 3339 (second precision), as Calico writes `metav1.Time`.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Parses an RFC 3339 time; `None` when it does not parse.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let ts: Timestamp = text.parse().ok()?;
    Some(SystemTime::from(ts))
}

/// One allocation as the garbage collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRef<'a> {
    /// The handle it is held under.
    pub handle: &'a str,
    /// The address (absent when asking about a handle as a whole).
    pub ip: Option<IpAddr>,
    /// The node the allocation was made for (`secondary.node`, else the
    /// block's affinity), if known.
    pub node: Option<&'a str>,
}

/// Whether the owner of an allocation still exists.
///
/// The garbage collector releases an allocation only after [`Liveness`] has
/// said "not live" for longer than the grace period, and asks once more
/// right before releasing.
pub trait Liveness: Send + Sync {
    /// Whether the allocation's owner (a pod's endpoint) is live.
    ///
    /// # Errors
    ///
    /// A lookup failure; the collector then leaves the allocation alone.
    fn is_live(&self, allocation: &AllocationRef<'_>) -> Result<bool>;

    /// Whether the node exists. Allocations and blocks of a node that does
    /// not exist are released without waiting for the grace period.
    ///
    /// # Errors
    ///
    /// A lookup failure; the collector then leaves the node's state alone.
    fn node_exists(&self, node: &str) -> Result<bool>;
}

/// [`Liveness`] from the datastore: a node exists when its `Node` object
/// does; an allocation is live when a `WorkloadEndpoint` carries its address
/// or, for `k8s-pod-network.<containerID>` handles, its container ID.
pub struct StoreLiveness<'a> {
    store: &'a dyn Datastore,
    endpoints: Vec<WorkloadEndpointSpec>,
}

impl<'a> StoreLiveness<'a> {
    /// Reads the endpoints once; build a new one per collection pass.
    ///
    /// # Errors
    ///
    /// The datastore's.
    pub fn load(store: &'a dyn Datastore) -> Result<Self> {
        let endpoints = store
            .list(<WorkloadEndpointSpec as twill_api::Spec>::KIND, None)?
            .items
            .into_iter()
            .map(store::decode::<WorkloadEndpointSpec>)
            .map(|r| r.map(|s| s.object.spec))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { store, endpoints })
    }
}

impl Liveness for StoreLiveness<'_> {
    fn is_live(&self, allocation: &AllocationRef<'_>) -> Result<bool> {
        let container = allocation.handle.strip_prefix("k8s-pod-network.");
        Ok(self.endpoints.iter().any(|ep| {
            container.is_some_and(|c| ep.container_id == c)
                || allocation.ip.is_some_and(|ip| {
                    ep.ip_networks.iter().any(|net| {
                        net.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) == Some(ip)
                    })
                })
        }))
    }

    fn node_exists(&self, node: &str) -> Result<bool> {
        Ok(store::get::<NodeSpec>(self.store, node)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }
}
