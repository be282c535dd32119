//! Learned routes in a real kernel: a router in one network namespace
//! learns two prefixes from a router in another (joined by a veth pair) and
//! installs them with `NetlinkKernel` as protocol 202; `ip route` shows
//! them, and they stay after the router shuts down.
//!
//! Needs root; skips otherwise (`TWILL_REQUIRE_ROOT=1` makes the skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgp_speaker::router::{Neighbor, Originated, Router, RouterConfig};
use common::{VETH_PEER, VETH_TWILL};
use tokio::net::TcpListener;
use twill_integration::require_root;
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

const PREFIXES: [&str; 2] = ["10.99.1.0/24", "10.99.2.0/26"];

fn config(router_id: Ipv4Addr, asn: u32, kernel: Option<Arc<dyn Kernel>>) -> RouterConfig {
    RouterConfig {
        asn,
        router_id,
        cluster_id: None,
        kernel,
        graceful_restart_time: None,
        stale_sweep_after: Duration::from_secs(30),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The lines of `ip route` in `netns` that carry Twill's BGP protocol
/// (printed as 202, or by name when iproute2 knows it).
fn proto_202_routes(netns: &twill_integration::TestNetns) -> Vec<String> {
    netns
        .ip(&["-4", "route", "show", "table", "main"])
        .unwrap()
        .lines()
        .filter(|line| line.contains(" proto 202 ") || line.contains(" proto twill-bgp "))
        .map(str::to_string)
        .collect()
}

#[test]
fn learned_routes_are_installed_with_protocol_202_and_survive_shutdown() {
    require_root!();
    let (netns, peer_netns) = common::veth_pair("rtpeer");
    let kernel: Arc<dyn Kernel> = Arc::new(
        NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default()).unwrap(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

    std::thread::scope(|scope| {
        // The peer: AS 64513 at VETH_PEER, originating PREFIXES, waiting for us.
        let peer = scope.spawn(|| {
            peer_netns
                .run(move || {
                    runtime().block_on(async move {
                        let listener =
                            TcpListener::bind(SocketAddr::new(IpAddr::V4(VETH_PEER), 179))
                                .await
                                .unwrap();
                        let router = Router::start(
                            config(Ipv4Addr::new(192, 0, 2, 2), 64513, None),
                            Some(listener),
                        );
                        let mut n = Neighbor::new(IpAddr::V4(VETH_TWILL), 64512);
                        n.local_address = Some(IpAddr::V4(VETH_PEER));
                        n.passive = true;
                        router.set_neighbors(vec![n]);
                        router.set_originated(
                            PREFIXES
                                .iter()
                                .map(|p| Originated {
                                    prefix: p.parse().unwrap(),
                                    communities: vec![],
                                    large_communities: vec![],
                                })
                                .collect(),
                        );
                        let _ = stop_rx.await;
                        router.shutdown().await;
                    });
                })
                .unwrap();
        });

        let outcome = netns.run(|| {
            runtime().block_on(async {
                let router = Router::start(
                    config(Ipv4Addr::new(192, 0, 2, 1), 64512, Some(kernel)),
                    None,
                );
                let mut n = Neighbor::new(IpAddr::V4(VETH_PEER), 64513);
                n.local_address = Some(IpAddr::V4(VETH_TWILL));
                router.set_neighbors(vec![n]);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let stats = router.stats().await;
                    if stats.kernel_routes == PREFIXES.len() {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "routes not installed: {stats:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let installed = proto_202_routes(&netns);
                router.shutdown().await;
                installed
            })
        });
        let _ = stop_tx.send(());
        peer.join().unwrap();

        let installed = outcome.unwrap();
        assert_eq!(installed.len(), PREFIXES.len(), "{installed:?}");
        for (line, prefix) in installed.iter().zip(PREFIXES) {
            assert!(
                line.starts_with(&format!("{prefix} via {VETH_PEER} dev tw0 proto ")),
                "{line}"
            );
        }
        // A graceful shutdown leaves forwarding in place.
        assert_eq!(proto_202_routes(&netns), installed);
    });
}
