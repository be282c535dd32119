//! GTSM (RFC 5082, BGPPeer `ttlSecurity`): session sockets send with TTL 255
//! and drop what arrives with a TTL below `256 - hops`.
//!
//! Over loopback (no root) a GTSM listener refuses a client sending with the
//! default TTL and takes one sending with 255. In network namespaces (root;
//! skips otherwise, `TWILL_REQUIRE_ROOT=1` makes the skip a failure) two
//! routers one hop apart establish with `ttlSecurity: 1`; with a forwarding
//! namespace between them (received TTL 254) the side expecting one hop stays
//! down, and both establish once both say 2.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgp_speaker::fsm::State;
use bgp_speaker::router::{Neighbor, Router, RouterConfig};
use bgp_speaker::speaker::{GTSM_TTL, apply_ttl_security};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::{TcpListener, TcpSocket};
use twill_integration::{TestNetns, require_root};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
const ESTABLISH_WITHIN: Duration = Duration::from_secs(30);
/// How long a session that must not come up is watched: longer than the
/// connect-retry timer (5 s) and the hold time (9 s), so attempts fail.
const STAYS_DOWN_FOR: Duration = Duration::from_secs(10);

fn socket_for(address: IpAddr) -> TcpSocket {
    if address.is_ipv4() {
        TcpSocket::new_v4().unwrap()
    } else {
        TcpSocket::new_v6().unwrap()
    }
}

/// A listener on `address` whose connections only take packets with TTL 255
/// (a one-hop GTSM peer over loopback, where nothing decrements the TTL).
fn gtsm_listener(address: IpAddr) -> TcpListener {
    let socket = socket_for(address);
    apply_ttl_security(&socket, address, 1).unwrap();
    socket.bind(SocketAddr::new(address, 0)).unwrap();
    socket.listen(16).unwrap()
}

async fn connects(to: SocketAddr, gtsm_hops: Option<u8>) -> bool {
    let socket = socket_for(to.ip());
    if let Some(hops) = gtsm_hops {
        apply_ttl_security(&socket, to.ip(), hops).unwrap();
    }
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn gtsm_listener_takes_only_clients_sending_with_ttl_255() {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let cases = [
        ("ipv4, default ttl", v4, None, false),
        ("ipv4, gtsm", v4, Some(1), true),
        ("ipv6, default hop limit", v6, None, false),
        ("ipv6, gtsm", v6, Some(1), true),
    ];
    for (name, address, client_hops, expect_connected) in cases {
        let listener = gtsm_listener(address);
        let to = listener.local_addr().unwrap();
        assert_eq!(
            connects(to, client_hops).await,
            expect_connected,
            "case {name}"
        );
    }
}

#[test]
fn gtsm_socket_sends_with_ttl_255_and_zero_hops_leaves_it_alone() {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);

    let socket = TcpSocket::new_v4().unwrap();
    let default_ttl = getsockopt(&socket, sockopt::Ipv4Ttl).unwrap();
    assert_ne!(default_ttl, i32::from(GTSM_TTL));
    apply_ttl_security(&socket, v4, 0).unwrap();
    assert_eq!(getsockopt(&socket, sockopt::Ipv4Ttl).unwrap(), default_ttl);
    apply_ttl_security(&socket, v4, 3).unwrap();
    assert_eq!(
        getsockopt(&socket, sockopt::Ipv4Ttl).unwrap(),
        i32::from(GTSM_TTL)
    );

    let socket = TcpSocket::new_v6().unwrap();
    apply_ttl_security(&socket, v6, 1).unwrap();
    assert_eq!(
        getsockopt(&socket, sockopt::Ipv6Ttl).unwrap(),
        i32::from(GTSM_TTL)
    );

    // An IPv4 peer on an IPv6 socket (as a dual-stack listener accepts it)
    // gets the IPv4 options.
    let socket = TcpSocket::new_v6().unwrap();
    apply_ttl_security(&socket, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 1).unwrap();
    assert_eq!(
        getsockopt(&socket, sockopt::Ipv4Ttl).unwrap(),
        i32::from(GTSM_TTL)
    );
}

#[test]
fn refused_option_names_the_peer_and_the_option() {
    // IPv6 options on an IPv4 socket: the kernel refuses them.
    let socket = TcpSocket::new_v4().unwrap();
    let peer: IpAddr = "2001:db8::7".parse().unwrap();
    let error = apply_ttl_security(&socket, peer, 1).unwrap_err();
    assert_eq!(error.peer, peer);
    assert_eq!(error.option, "IPV6_UNICAST_HOPS");
    let message = error.to_string();
    assert!(
        message.contains("2001:db8::7") && message.contains("IPV6_UNICAST_HOPS"),
        "{message}"
    );
}

// Network namespaces (root).

/// Side A's and side B's namespaces and addresses.
struct Topology {
    a: TestNetns,
    b: TestNetns,
    a_address: Ipv4Addr,
    b_address: Ipv4Addr,
    /// The forwarding namespace between them, if any; lives as long as they.
    _router: Option<TestNetns>,
}

/// Adds a veth pair from `local` to `remote` and gives each end its address
/// in a /30.
fn veth(local: (&TestNetns, &str, Ipv4Addr), remote: (&TestNetns, &str, Ipv4Addr)) {
    local
        .0
        .ip(&[
            "link",
            "add",
            local.1,
            "type",
            "veth",
            "peer",
            "name",
            remote.1,
            "netns",
            remote.0.name(),
        ])
        .unwrap();
    for (netns, link, address) in [local, remote] {
        netns
            .ip(&["addr", "add", &format!("{address}/30"), "dev", link])
            .unwrap();
        netns.ip(&["link", "set", link, "up"]).unwrap();
    }
}

/// A and B on one veth pair: one hop apart.
fn direct() -> Topology {
    let a = TestNetns::new("gtsm-a").unwrap();
    let b = TestNetns::new("gtsm-b").unwrap();
    let (a_address, b_address) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    veth((&a, "tw0", a_address), (&b, "tw1", b_address));
    Topology {
        a,
        b,
        a_address,
        b_address,
        _router: None,
    }
}

/// A and B on two links joined by a forwarding namespace: every packet
/// arrives with its TTL decremented once.
fn routed() -> Topology {
    let a = TestNetns::new("gtsm-a").unwrap();
    let router = TestNetns::new("gtsm-r").unwrap();
    let b = TestNetns::new("gtsm-b").unwrap();
    let (a_address, a_gateway) = (Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 1, 2));
    let (b_gateway, b_address) = (Ipv4Addr::new(10, 0, 2, 1), Ipv4Addr::new(10, 0, 2, 2));
    veth((&a, "tw0", a_address), (&router, "tw1", a_gateway));
    veth((&router, "tw2", b_gateway), (&b, "tw3", b_address));
    router.sysctl("net/ipv4/ip_forward", "1").unwrap();
    a.ip(&["route", "add", "10.0.2.0/30", "via", &a_gateway.to_string()])
        .unwrap();
    b.ip(&["route", "add", "10.0.1.0/30", "via", &b_gateway.to_string()])
        .unwrap();
    Topology {
        a,
        b,
        a_address,
        b_address,
        _router: Some(router),
    }
}

fn config(last: u8, asn: u32) -> RouterConfig {
    RouterConfig {
        asn,
        router_id: Ipv4Addr::new(192, 0, 2, last),
        cluster_id: None,
        kernel: None,
        graceful_restart_time: None,
        stale_sweep_after: Duration::from_secs(30),
    }
}

/// An eBGP peering from `local` to `remote` (AS `remote_asn`) with
/// `ttlSecurity: hops`.
fn neighbor(local: Ipv4Addr, remote: Ipv4Addr, remote_asn: u32, hops: u8) -> Neighbor {
    let mut n = Neighbor::new(IpAddr::V4(remote), remote_asn);
    n.local_address = Some(IpAddr::V4(local));
    n.hold = Duration::from_secs(9);
    n.ttl_security = Some(hops);
    n
}

/// Routers A (AS 64512, connecting) and B (AS 64513, passive, listening on
/// port 179 in its namespace) of `topology`.
struct Pair<'t> {
    topology: &'t Topology,
    a: Router,
    b: Router,
}

impl Pair<'_> {
    /// Gives A and B their `ttlSecurity`; a change restarts the session.
    fn set_hops(&self, a_hops: u8, b_hops: u8) {
        let t = self.topology;
        let mut b_side = neighbor(t.b_address, t.a_address, 64512, b_hops);
        b_side.passive = true;
        self.b.set_neighbors(vec![b_side]);
        self.a
            .set_neighbors(vec![neighbor(t.a_address, t.b_address, 64513, a_hops)]);
    }

    /// Whether A's and B's sessions are Established.
    async fn established(&self) -> (bool, bool) {
        let up = |status: Vec<bgp_speaker::router::PeerStatus>| {
            status.iter().any(|s| s.state == State::Established)
        };
        (up(self.a.status().await), up(self.b.status().await))
    }

    /// Polls for `within`; true as soon as both sessions are Established.
    async fn both_establish(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.established().await == (true, true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Polls for `during`: whether A's and B's sessions were ever Established.
    async fn ever_established(&self, during: Duration) -> (bool, bool) {
        let deadline = tokio::time::Instant::now() + during;
        let mut ever = (false, false);
        while tokio::time::Instant::now() < deadline {
            let now = self.established().await;
            ever = (ever.0 || now.0, ever.1 || now.1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ever
    }
}

/// Runs `test` with A and B of `topology` on a runtime in A's namespace. B
/// only accepts, on a listener bound in B's namespace, so its sockets live
/// there.
fn with_pair<F>(topology: &Topology, test: F)
where
    F: for<'p> FnOnce(&'p Pair<'_>) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'p>> + Send,
{
    let b_address = SocketAddr::new(IpAddr::V4(topology.b_address), 179);
    let listener = topology
        .b
        .run(move || std::net::TcpListener::bind(b_address))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    topology
        .a
        .run(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let pair = Pair {
                    topology,
                    a: Router::start(config(1, 64512), None),
                    b: Router::start(
                        config(2, 64513),
                        Some(TcpListener::from_std(listener).unwrap()),
                    ),
                };
                test(&pair).await;
                pair.a.shutdown().await;
                pair.b.shutdown().await;
            });
        })
        .unwrap();
}

#[test]
fn routers_one_hop_apart_establish_with_ttl_security_1() {
    require_root!();
    let topology = direct();
    with_pair(&topology, |pair| {
        Box::pin(async move {
            pair.set_hops(1, 1);
            assert!(
                pair.both_establish(ESTABLISH_WITHIN).await,
                "not established: {:?}",
                pair.established().await
            );
        })
    });
}

#[test]
fn a_forwarding_hop_keeps_ttl_security_1_down_and_2_establishes() {
    require_root!();
    let topology = routed();
    // (case, A's hops, B's hops, whether A's and B's sessions may come up).
    // A side expecting one hop drops what crossed two, so it never comes up.
    // When only the accepting side expects one hop, the connecting side may
    // come up for a moment: its OPEN can be queued on the accepted socket
    // before the minimum TTL is set there, but nothing after it gets through.
    let down: [(&str, u8, u8, (bool, bool)); 3] = [
        ("both expect 1 hop", 1, 1, (false, false)),
        ("B (accepting) expects 1 hop", 2, 1, (true, false)),
        ("A (connecting) expects 1 hop", 1, 2, (false, false)),
    ];
    with_pair(&topology, |pair| {
        Box::pin(async move {
            for (case, a_hops, b_hops, may_come_up) in down {
                pair.set_hops(a_hops, b_hops);
                let ever = pair.ever_established(STAYS_DOWN_FOR).await;
                assert!(
                    (!ever.0 || may_come_up.0) && (!ever.1 || may_come_up.1),
                    "case {case}: established (A, B) = {ever:?}"
                );
            }
            pair.set_hops(2, 2);
            assert!(
                pair.both_establish(ESTABLISH_WITHIN).await,
                "2 hops: not established: {:?}",
                pair.established().await
            );
        })
    });
}
