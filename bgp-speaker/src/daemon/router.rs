//! The daemon's configuration handed to the real [`Router`]s: one for IPv4
//! and one for IPv6 (see the module docs of [`super`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use twill_kernel::{Kernel, KernelError, KernelOp, KernelReply, NetnsPath, Pending};

use super::{Identity, Listeners, Routing, SpeakerStats, StartRouting};
use crate::config::{Advertised, Filter, FilterAction, FilterRule, NextHop, PeerConfig, PeerType};
use crate::router::{Neighbor, Originated, PeerStatus, Router, RouterConfig};
use crate::status::PeerRow;

/// The graceful restart time announced to every peer: BIRD's default,
/// which Calico keeps for every peering (`nodeMeshMaxRestartTime`).
pub const RESTART_TIME: Duration = Duration::from_secs(120);

/// The default Selection_Deferral_Timer (RFC 4724 §4.1): after a restart,
/// the longest wait for every peer's End-of-RIB before the first decision
/// pass, and before protocol-202 routes of the previous run are swept.
///
/// The restart time this node announces, not FRR's 360 s: peers keep this
/// node's routes for about that long, so deferring longer could leave them
/// without its routes before it sends them again; and with a peer that
/// never comes up, every other peer waits for this node's new prefixes
/// for the whole time.
pub const SELECTION_DEFERRAL_TIME: Duration = RESTART_TIME;

/// Starts [`Router`]s that program learned routes through `kernel`.
pub struct RouterStarter {
    kernel: Option<Arc<dyn Kernel>>,
    selection_deferral: Duration,
}

impl RouterStarter {
    /// Routers writing learned routes to `kernel` (none: nowhere), with the
    /// default [`SELECTION_DEFERRAL_TIME`].
    pub fn new(kernel: Option<Arc<dyn Kernel>>) -> Self {
        Self {
            kernel,
            selection_deferral: SELECTION_DEFERRAL_TIME,
        }
    }

    /// Sets the Selection_Deferral_Timer of the routers started from now on.
    #[must_use]
    pub fn with_selection_deferral(mut self, time: Duration) -> Self {
        self.selection_deferral = time;
        self
    }
}

impl RouterStarter {
    fn router(&self, identity: &Identity, ipv6: bool, listener: TcpListener) -> Router {
        Router::start(
            RouterConfig {
                asn: identity.asn,
                router_id: identity.router_id,
                cluster_id: identity.cluster_id,
                kernel: self
                    .kernel
                    .clone()
                    .map(|kernel| Arc::new(FamilyKernel::new(kernel, ipv6)) as Arc<dyn Kernel>),
                graceful_restart_time: Some(RESTART_TIME),
                stale_sweep_after: self.selection_deferral,
            },
            Some(listener),
        )
    }
}

impl StartRouting for RouterStarter {
    fn start(&self, identity: &Identity, listeners: Listeners) -> Arc<dyn Routing> {
        Arc::new(RouterRouting {
            v4: listeners.v4.map(|l| self.router(identity, false, l)),
            v6: listeners.v6.map(|l| self.router(identity, true, l)),
        })
    }
}

/// A [`Kernel`] whose route listings hold one address family only, so that
/// a router's start-up sweep of stale protocol-202 routes never touches
/// the other family's router's routes.
pub struct FamilyKernel {
    inner: Arc<dyn Kernel>,
    ipv6: bool,
}

impl FamilyKernel {
    /// `inner`, listing only IPv6 routes (`ipv6`) or only IPv4 routes.
    pub fn new(inner: Arc<dyn Kernel>, ipv6: bool) -> Self {
        Self { inner, ipv6 }
    }
}

impl Kernel for FamilyKernel {
    fn submit(&self, op: KernelOp) -> Pending<KernelReply> {
        match op {
            KernelOp::ListRoutes(mut filter) => {
                filter.ipv6 = Some(self.ipv6);
                self.inner.submit(KernelOp::ListRoutes(filter))
            }
            op => self.inner.submit(op),
        }
    }

    fn enter(&self, netns: &NetnsPath) -> Result<Arc<dyn Kernel>, KernelError> {
        Ok(Arc::new(FamilyKernel::new(
            self.inner.enter(netns)?,
            self.ipv6,
        )))
    }

    fn watch_addresses(&self) -> Result<twill_kernel::watch::AddressChanges, KernelError> {
        self.inner.watch_addresses()
    }
}

/// The IPv4 and IPv6 [`Router`]s as the daemon drives them.
pub struct RouterRouting {
    v4: Option<Router>,
    v6: Option<Router>,
}

impl RouterRouting {
    fn routers(&self) -> impl Iterator<Item = &Router> {
        self.v4.iter().chain(self.v6.iter())
    }
}

/// A rule rejecting the family the session does not carry (the router
/// negotiates both; a session carries its own family only), then `filter`.
/// First, so that no accepting rule of the other family can come before it.
fn own_family_only(filter: &Filter, session_ipv4: bool) -> Filter {
    let mut rules = Vec::with_capacity(filter.rules.len() + 1);
    rules.push(FilterRule::new(!session_ipv4, FilterAction::Reject));
    rules.extend(filter.rules.iter().cloned());
    Filter { rules }
}

/// The router's peering for one configured session; it exchanges routes of
/// its address's family only.
pub fn neighbor(peer: &PeerConfig) -> Neighbor {
    let ipv4 = peer.address.is_ipv4();
    Neighbor {
        address: peer.address,
        port: peer.port,
        asn: peer.asn,
        local_asn: peer.local_asn,
        local_address: peer.local_address,
        route_reflector_client: peer.route_reflector_client,
        keepalive: peer.keepalive,
        hold: peer.hold,
        password: peer.password.clone(),
        max_restart_time: peer.max_restart_time,
        import: own_family_only(&peer.import, ipv4),
        export: own_family_only(&peer.export, ipv4),
        // Calico's protocol name: node status derives the peer type from it.
        description: peer.name.clone(),
        next_hop_self: peer.next_hop == NextHop::SelfAddress,
        passive: peer.passive,
        ttl_security: peer.ttl_security,
    }
}

/// A node-status row from the router's status of one peering.
pub fn row(status: PeerStatus) -> PeerRow {
    let peer_type = PeerType::from_name(&status.description)
        .map_or_else(|| status.description.clone(), |t| t.describe().to_string());
    let state = format!("{:?}", status.state);
    let info = if status.info == state {
        String::new()
    } else {
        status.info
    };
    PeerRow {
        address: status.address,
        peer_type,
        state,
        since: PeerRow::epoch_seconds(status.since),
        info,
        prefixes_received: status.prefixes_received,
        prefixes_accepted: status.prefixes_accepted,
        prefixes_advertised: status.prefixes_advertised,
    }
}

impl Routing for RouterRouting {
    fn set_neighbors(&self, neighbors: &[PeerConfig]) {
        for (router, ipv4) in [(&self.v4, true), (&self.v6, false)] {
            if let Some(router) = router {
                router.set_neighbors(
                    neighbors
                        .iter()
                        .filter(|n| n.address.is_ipv4() == ipv4)
                        .map(neighbor)
                        .collect(),
                );
            }
        }
    }

    fn set_originated(&self, originated: &[Advertised]) {
        for (router, ipv4) in [(&self.v4, true), (&self.v6, false)] {
            if let Some(router) = router {
                router.set_originated(
                    originated
                        .iter()
                        .filter(|a| a.prefix.addr().is_ipv4() == ipv4)
                        .map(|a| Originated {
                            prefix: a.prefix,
                            communities: a.communities.clone(),
                            large_communities: a.large_communities.clone(),
                        })
                        .collect(),
                );
            }
        }
    }

    fn status(&self) -> BoxFuture<'_, Vec<PeerRow>> {
        Box::pin(async {
            let mut rows = Vec::new();
            for router in self.routers() {
                rows.extend(router.status().await.into_iter().map(row));
            }
            rows
        })
    }

    fn stats(&self) -> BoxFuture<'_, SpeakerStats> {
        Box::pin(async {
            let mut total = SpeakerStats::default();
            for router in self.routers() {
                let stats = router.stats().await;
                total.updates_received += stats.updates_in;
                total.updates_sent += stats.updates_out;
                total.flaps += stats.flaps;
            }
            total
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            for router in self.routers() {
                router.stop().await;
            }
        })
    }
}
