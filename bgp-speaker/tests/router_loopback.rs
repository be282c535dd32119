//! Routers talking to each other over loopback (127.0.0.x, no root): routes
//! propagate and are withdrawn, a route reflector reflects, peerings change
//! without needless restarts, graceful restart keeps routes across a peer's
//! restart, and kernel routes (a recording fake) follow the Loc-RIB and are
//! reconciled at start-up.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgp_speaker::fsm::State;
use bgp_speaker::router::{Neighbor, Originated, PathSummary, Router, RouterConfig};
use ipnet::IpNet;
use tokio::net::TcpListener;
use twill_kernel::fake::RecordingKernel;
use twill_kernel::{Kernel, KernelExt, Route, RouteFilter, RouteProto};

const WAIT: Duration = Duration::from_secs(20);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// A router on 127.0.0.`last` with its listener's port.
struct Node {
    router: Router,
    address: IpAddr,
    port: u16,
}

fn config(last: u8, asn: u32) -> RouterConfig {
    RouterConfig {
        asn,
        router_id: Ipv4Addr::new(10, 0, 0, last),
        cluster_id: None,
        kernel: None,
        graceful_restart_time: None,
        stale_sweep_after: Duration::from_secs(60),
    }
}

async fn listener(last: u8, port: u16) -> TcpListener {
    // A stopped router's listener closes when its task is dropped, soon after.
    let mut tries = 0;
    loop {
        match TcpListener::bind(SocketAddr::new(addr(last), port)).await {
            Ok(listener) => return listener,
            Err(error) if tries < 50 => {
                tries += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot bind {last}:{port}: {error}"),
        }
    }
}

async fn node(last: u8, config: RouterConfig) -> Node {
    let listener = listener(last, 0).await;
    let port = listener.local_addr().unwrap().port();
    Node {
        router: Router::start(config, Some(listener)),
        address: addr(last),
        port,
    }
}

/// A peering from `from` to `to`; the higher address waits (as Calico's mesh).
fn neighbor(from: &Node, to: &Node, asn: u32) -> Neighbor {
    let mut n = Neighbor::new(to.address, asn);
    n.port = to.port;
    n.local_address = Some(from.address);
    n.hold = Duration::from_secs(9);
    n.passive = from.address > to.address;
    n
}

fn originated(prefix: &str) -> Originated {
    Originated {
        prefix: net(prefix),
        communities: vec![],
        large_communities: vec![],
    }
}

/// Polls `router`'s Loc-RIB until `ready` holds, or fails after `WAIT`.
async fn until(
    router: &Router,
    what: &str,
    ready: impl Fn(&[(IpNet, Vec<PathSummary>)]) -> bool,
) -> Vec<(IpNet, Vec<PathSummary>)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rib = router.loc_rib().await;
        if ready(&rib) {
            return rib;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; loc-rib: {rib:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn best<'a>(rib: &'a [(IpNet, Vec<PathSummary>)], prefix: &str) -> Option<&'a PathSummary> {
    rib.iter()
        .find(|(p, _)| *p == net(prefix))
        .and_then(|(_, paths)| paths.iter().find(|p| p.best))
}

async fn established(router: &Router, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = router.status().await;
        if status
            .iter()
            .filter(|s| s.state == State::Established)
            .count()
            == count
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions not established: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ebgp_routes_propagate_and_withdraw() {
    let a = node(1, config(1, 64512)).await;
    let b = node(2, config(2, 64513)).await;
    a.router.set_neighbors(vec![neighbor(&a, &b, 64513)]);
    b.router.set_neighbors(vec![neighbor(&b, &a, 64512)]);
    a.router.set_originated(vec![
        originated("10.65.0.0/26"),
        originated("2001:db8:65::/122"),
    ]);

    let rib = until(&b.router, "a's prefixes at b", |rib| rib.len() == 2).await;
    let v4 = best(&rib, "10.65.0.0/26").unwrap();
    assert_eq!(v4.peer, Some(a.address));
    assert_eq!(v4.as_path, vec![64512]);
    assert_eq!(v4.next_hop, Some(a.address), "next hop self towards ebgp");
    assert_eq!(v4.local_pref, None);
    let v6 = best(&rib, "2001:db8:65::/122").unwrap();
    assert_eq!(
        v6.next_hop,
        Some(IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()))
    );

    let status = b.router.status().await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, State::Established);
    assert_eq!(status[0].info, "Established");
    assert_eq!(
        (status[0].prefixes_received, status[0].prefixes_accepted),
        (2, 2)
    );
    let a_status = a.router.status().await;
    assert_eq!(a_status[0].prefixes_advertised, 2);

    a.router
        .set_originated(vec![originated("2001:db8:65::/122")]);
    until(&b.router, "the withdrawal at b", |rib| {
        rib.len() == 1 && best(rib, "10.65.0.0/26").is_none()
    })
    .await;
    let stats = b.router.stats().await;
    assert!(stats.updates_in >= 3, "{stats:?}");
    assert_eq!(stats.loc_rib_prefixes, 1);
    assert_eq!(stats.sessions.get("Established"), Some(&1));
    a.router.shutdown().await;
    b.router.shutdown().await;
}

#[tokio::test]
async fn route_reflector_reflects_between_clients() {
    let mut rr_config = config(1, 64512);
    rr_config.cluster_id = Some(Ipv4Addr::new(1, 0, 0, 1));
    let rr = node(1, rr_config).await;
    let c1 = node(2, config(2, 64512)).await;
    let c2 = node(3, config(3, 64512)).await;
    let client = |to: &Node| {
        let mut n = neighbor(&rr, to, 64512);
        n.route_reflector_client = true;
        n
    };
    rr.router.set_neighbors(vec![client(&c1), client(&c2)]);
    c1.router.set_neighbors(vec![neighbor(&c1, &rr, 64512)]);
    c2.router.set_neighbors(vec![neighbor(&c2, &rr, 64512)]);
    c1.router.set_originated(vec![originated("10.65.1.0/26")]);

    let rib = until(&c2.router, "the reflected route at c2", |rib| {
        best(rib, "10.65.1.0/26").is_some()
    })
    .await;
    let path = best(&rib, "10.65.1.0/26").unwrap();
    assert_eq!(path.peer, Some(rr.address));
    assert_eq!(
        path.next_hop,
        Some(c1.address),
        "reflection keeps the next hop"
    );
    assert_eq!(path.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(path.cluster_list, vec![Ipv4Addr::new(1, 0, 0, 1)]);
    assert_eq!(path.local_pref, Some(100));
    assert!(path.as_path.is_empty());

    // c1 does not get its own route back (ORIGINATOR_ID loop check and no
    // reflection to the source).
    let rib = c1.router.loc_rib().await;
    assert!(best(&rib, "10.65.1.0/26").is_some_and(|p| p.peer.is_none()));
    for n in [rr, c1, c2] {
        n.router.shutdown().await;
    }
}

#[tokio::test]
async fn ibgp_routes_are_not_readvertised_to_ibgp_without_reflection() {
    let a = node(1, config(1, 64512)).await;
    let b = node(2, config(2, 64512)).await;
    let c = node(3, config(3, 64512)).await;
    a.router.set_neighbors(vec![neighbor(&a, &b, 64512)]);
    b.router
        .set_neighbors(vec![neighbor(&b, &a, 64512), neighbor(&b, &c, 64512)]);
    c.router.set_neighbors(vec![neighbor(&c, &b, 64512)]);
    a.router.set_originated(vec![originated("10.65.2.0/26")]);
    c.router.set_originated(vec![originated("10.65.3.0/26")]);
    until(&b.router, "both routes at b", |rib| rib.len() == 2).await;
    established(&c.router, 1).await;
    // Give b time to (wrongly) pass a's route on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rib = c.router.loc_rib().await;
    assert!(best(&rib, "10.65.2.0/26").is_none(), "{rib:?}");
    for n in [a, b, c] {
        n.router.shutdown().await;
    }
}

#[tokio::test]
async fn changing_filters_keeps_the_session_and_removing_a_peering_drops_its_routes() {
    let a = node(1, config(1, 64512)).await;
    let b = node(2, config(2, 64513)).await;
    let mut a_to_b = neighbor(&a, &b, 64513);
    a.router.set_neighbors(vec![a_to_b.clone()]);
    b.router.set_neighbors(vec![neighbor(&b, &a, 64512)]);
    b.router
        .set_originated(vec![originated("10.66.0.0/24"), originated("10.67.0.0/24")]);
    until(&a.router, "b's routes", |rib| rib.len() == 2).await;

    a_to_b.import.rules = vec![bgp_speaker::router::FilterRule {
        cidr: Some((
            net("10.67.0.0/24"),
            bgp_speaker::router::MatchOperator::Equal,
        )),
        ..bgp_speaker::router::FilterRule::new(true, bgp_speaker::router::FilterAction::Reject)
    }];
    a_to_b.description = "Global".to_string();
    a.router.set_neighbors(vec![a_to_b]);
    until(&a.router, "the filtered route gone", |rib| rib.len() == 1).await;
    let stats = a.router.stats().await;
    assert_eq!(
        stats.flaps, 0,
        "a filter change does not restart the session"
    );
    let status = a.router.status().await;
    assert_eq!(status[0].description, "Global");
    assert_eq!(
        (status[0].prefixes_received, status[0].prefixes_accepted),
        (2, 1)
    );

    a.router.set_neighbors(vec![]);
    until(&a.router, "routes of the removed peering gone", |rib| {
        rib.is_empty()
    })
    .await;
    assert!(a.router.status().await.is_empty());
    a.router.shutdown().await;
    b.router.shutdown().await;
}

async fn bgp_routes(kernel: &RecordingKernel) -> Vec<Route> {
    let mut routes = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .await
        .unwrap();
    routes.sort();
    routes
}

async fn kernel_routes(kernel: &RecordingKernel, what: &str, ready: impl Fn(&[Route]) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let routes = kernel
            .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
            .await
            .unwrap();
        if ready(&routes) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; kernel: {routes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn graceful_restart_keeps_routes_until_the_restarted_peer_sends_end_of_rib() {
    let kernel = Arc::new(RecordingKernel::new());
    let mut b_config = config(2, 64513);
    b_config.kernel = Some(Arc::clone(&kernel) as Arc<dyn Kernel>);
    let b = node(2, b_config).await;
    let mut a_config = config(1, 64512);
    a_config.graceful_restart_time = Some(Duration::from_secs(120));
    // With a kernel, a announces preserved forwarding (the F bit), which
    // makes b keep a's routes across the restart.
    a_config.kernel = Some(Arc::new(RecordingKernel::new()) as Arc<dyn Kernel>);
    let a = node(1, a_config.clone()).await;
    let a_port = a.port;
    a.router.set_neighbors(vec![neighbor(&a, &b, 64513)]);
    b.router.set_neighbors(vec![neighbor(&b, &a, 64512)]);
    a.router
        .set_originated(vec![originated("10.68.0.0/24"), originated("10.69.0.0/24")]);
    until(&b.router, "a's routes at b", |rib| rib.len() == 2).await;
    kernel_routes(&kernel, "a's routes in b's kernel", |r| r.len() == 2).await;

    // a goes away without a NOTIFICATION: b keeps the routes as stale.
    a.router.shutdown().await;
    let rib = until(&b.router, "stale routes at b", |rib| {
        rib.len() == 2 && rib.iter().all(|(_, p)| p[0].stale)
    })
    .await;
    assert_eq!(rib.len(), 2);
    assert_eq!(
        bgp_routes(&kernel).await.len(),
        2,
        "the kernel keeps stale routes"
    );

    // a comes back (same address and port) with one of the two prefixes.
    let listener = listener(1, a_port).await;
    let a = Router::start(a_config, Some(listener));
    let mut back = Neighbor::new(b.address, 64513);
    back.port = b.port;
    back.local_address = Some(addr(1));
    back.hold = Duration::from_secs(9);
    a.set_neighbors(vec![back]);
    a.set_originated(vec![originated("10.69.0.0/24")]);
    let rib = until(&b.router, "only the refreshed route at b", |rib| {
        rib.len() == 1 && rib[0].1.iter().all(|p| !p.stale)
    })
    .await;
    assert_eq!(rib[0].0, net("10.69.0.0/24"));
    kernel_routes(&kernel, "the stale route out of the kernel", |r| {
        r.len() == 1 && r[0].destination == net("10.69.0.0/24")
    })
    .await;
    a.shutdown().await;
    b.router.shutdown().await;
}

#[tokio::test]
async fn start_up_sweep_removes_only_unwanted_routes_after_end_of_rib() {
    let kernel = Arc::new(RecordingKernel::new());
    // Left by a previous run: one still advertised, one not.
    for (prefix, hop) in [("10.70.0.0/24", 1), ("10.71.0.0/24", 1)] {
        kernel
            .add_route(Route::via(net(prefix), addr(hop)).protocol(RouteProto::TWILL_BGP))
            .await
            .unwrap();
    }
    let a = node(1, config(1, 64512)).await;
    let mut b_config = config(2, 64513);
    b_config.kernel = Some(Arc::clone(&kernel) as Arc<dyn Kernel>);
    let b = node(2, b_config).await;
    a.router.set_originated(vec![originated("10.70.0.0/24")]);
    a.router.set_neighbors(vec![neighbor(&a, &b, 64513)]);
    // Nothing is removed before b has its peers' End-of-RIB.
    assert_eq!(bgp_routes(&kernel).await.len(), 2);
    b.router.set_neighbors(vec![neighbor(&b, &a, 64512)]);
    kernel_routes(&kernel, "the sweep", |r| {
        r.len() == 1 && r[0].destination == net("10.70.0.0/24")
    })
    .await;
    let stats = b.router.stats().await;
    assert!(stats.startup_swept, "{stats:?}");
    assert_eq!(stats.kernel_errors, 0);
    a.router.shutdown().await;
    b.router.shutdown().await;
}

#[tokio::test]
async fn tcp_md5_passwords_must_match() {
    for (password_a, password_b, up) in [("s3cret", "s3cret", true), ("s3cret", "other", false)] {
        let a = node(1, config(1, 64512)).await;
        let b = node(2, config(2, 64513)).await;
        let mut a_to_b = neighbor(&a, &b, 64513);
        a_to_b.password = Some(password_a.to_string());
        let mut b_to_a = neighbor(&b, &a, 64512);
        b_to_a.password = Some(password_b.to_string());
        a.router.set_neighbors(vec![a_to_b]);
        b.router.set_neighbors(vec![b_to_a]);
        b.router.set_originated(vec![originated("10.72.0.0/24")]);
        if up {
            until(&a.router, "the route over an md5 session", |rib| {
                rib.len() == 1
            })
            .await;
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let status = a.router.status().await;
            assert_ne!(status[0].state, State::Established, "{status:?}");
            assert!(a.router.loc_rib().await.is_empty());
        }
        a.router.shutdown().await;
        b.router.shutdown().await;
    }
}
