//! The router against GoBGP (Debian package `gobgpd`), over a veth pair
//! between two network namespaces:
//!
//! * GoBGP announces IPv4 and IPv6 prefixes: they reach our Loc-RIB, and the
//!   IPv4 one the kernel (protocol 202, via GoBGP's address);
//! * we originate prefixes: GoBGP has them, with our AS and next hop;
//! * graceful restart: our router shuts down without a NOTIFICATION, GoBGP
//!   (helper) keeps our routes, the kernel keeps GoBGP's; the new router
//!   announces one prefix less, and after our End-of-RIB GoBGP drops the
//!   stale one.
//!
//! Needs root and `gobgpd`/`gobgp`; skips otherwise.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_speaker::router::{Neighbor, Originated, Router, RouterConfig};
use common::{VETH_PEER, VETH_TWILL};
use twill_integration::{TestNetns, require_root};
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

const WAIT: Duration = Duration::from_secs(30);

/// Runs the `gobgp` client in `netns` and returns its stdout.
fn gobgp(netns: &TestNetns, args: &[&str]) -> String {
    let mut all = vec!["-u", "10.0.0.2"];
    all.extend_from_slice(args);
    let out = netns.exec("gobgp", &all).unwrap();
    assert!(
        out.status.success(),
        "gobgp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn router(kernel: &std::sync::Arc<dyn Kernel>, prefixes: &[&str]) -> Router {
    let router = Router::start(
        RouterConfig {
            asn: 64512,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            cluster_id: None,
            kernel: Some(std::sync::Arc::clone(kernel)),
            graceful_restart_time: Some(Duration::from_secs(120)),
            stale_sweep_after: Duration::from_secs(60),
        },
        None,
    );
    let mut n = Neighbor::new(IpAddr::V4(VETH_PEER), 64513);
    n.local_address = Some(IpAddr::V4(VETH_TWILL));
    n.hold = Duration::from_secs(9);
    router.set_neighbors(vec![n]);
    router.set_originated(
        prefixes
            .iter()
            .map(|p| Originated {
                prefix: p.parse().unwrap(),
                communities: vec![0xfc00_0001],
                large_communities: vec![],
            })
            .collect(),
    );
    router
}

async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check() {
            Ok(()) => return,
            Err(state) if tokio::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn has_line(text: &str, all: &[&str]) -> bool {
    text.lines()
        .any(|line| all.iter().all(|part| line.contains(part)))
}

#[test]
fn routes_flow_both_ways_and_survive_our_graceful_restart() {
    require_root!();
    if !twill_integration::require_programs(&["gobgpd", "gobgp"], "gobgpd") {
        return;
    }
    let (netns, peer_netns) = common::veth_pair("gobgp");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gobgpd.toml");
    std::fs::write(&config, common::gobgp_config(VETH_PEER, VETH_TWILL, true)).unwrap();
    let log_path = dir.path().join("gobgpd.log");
    let mut command = peer_netns.command("gobgpd");
    command.args([
        "-f",
        config.to_str().unwrap(),
        "-t",
        "toml",
        "--api-hosts",
        "10.0.0.2:50051",
    ]);
    let _gobgpd = common::spawn_logged(&peer_netns, command, &log_path);
    let kernel: std::sync::Arc<dyn Kernel> = std::sync::Arc::new(
        NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default()).unwrap(),
    );
    let routes = || netns.ip(&["route", "show", "proto", "202"]).unwrap();

    common::block_on_in(&netns, || async {
        let first = router(&kernel, &["10.244.0.0/26", "10.244.0.64/26"]);
        // The API comes up with the daemon; retry until it answers.
        eventually("gobgp's api", || {
            let out = peer_netns
                .exec(
                    "gobgp",
                    &[
                        "-u",
                        "10.0.0.2",
                        "global",
                        "rib",
                        "add",
                        "10.99.0.0/24",
                        "-a",
                        "ipv4",
                    ],
                )
                .unwrap();
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .await;
        gobgp(
            &peer_netns,
            &["global", "rib", "add", "2001:db8:99::/48", "-a", "ipv6"],
        );

        // GoBGP's routes: in the Loc-RIB (both families) and the kernel (IPv4).
        let deadline = tokio::time::Instant::now() + WAIT;
        let rib = loop {
            let rib = first.loc_rib().await;
            let learned = |prefix: &str| rib.iter().any(|(p, _)| p.to_string() == prefix);
            if learned("10.99.0.0/24") && learned("2001:db8:99::/48") {
                break rib;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gobgp's routes not in the loc-rib: {rib:?}\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let v4 = rib
            .iter()
            .find(|(p, _)| p.to_string() == "10.99.0.0/24")
            .unwrap();
        assert_eq!(v4.1[0].next_hop, Some(IpAddr::V4(VETH_PEER)));
        assert_eq!(v4.1[0].as_path, vec![64513]);
        assert!(rib.iter().any(|(p, _)| p.to_string() == "2001:db8:99::/48"));
        eventually("the kernel route", || {
            let text = routes();
            if has_line(&text, &["10.99.0.0/24 via 10.0.0.2 dev tw0"]) {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;

        // Ours at GoBGP, with our AS and next hop.
        eventually("our routes at gobgp", || {
            let text = gobgp(&peer_netns, &["global", "rib", "-a", "ipv4"]);
            let ok = ["10.244.0.0/26", "10.244.0.64/26"]
                .iter()
                .all(|p| has_line(&text, &[p, "10.0.0.1", " 64512 ", "64512:1"]));
            if ok { Ok(()) } else { Err(text) }
        })
        .await;

        // Graceful restart: no NOTIFICATION, so GoBGP keeps ours as stale.
        first.shutdown().await;
        eventually("gobgp to notice the restart", || {
            let text = gobgp(&peer_netns, &["neighbor"]);
            if has_line(&text, &["10.0.0.1"]) && !text.contains("Establ") {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
        let during = gobgp(&peer_netns, &["global", "rib", "-a", "ipv4"]);
        assert!(
            has_line(&during, &["10.244.0.0/26"]) && has_line(&during, &["10.244.0.64/26"]),
            "gobgp dropped our routes during the restart: {during}"
        );
        assert!(
            has_line(&routes(), &["10.99.0.0/24 via 10.0.0.2"]),
            "the kernel route survives our shutdown"
        );

        // The new router announces one prefix; after its End-of-RIB GoBGP
        // forgets the other.
        let second = router(&kernel, &["10.244.0.64/26"]);
        eventually("the stale route gone at gobgp", || {
            let text = gobgp(&peer_netns, &["global", "rib", "-a", "ipv4"]);
            if has_line(&text, &["10.244.0.64/26"]) && !has_line(&text, &["10.244.0.0/26"]) {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
        // GoBGP's End-of-RIB lets the new router sweep; GoBGP's route stays.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = second.stats().await;
            if stats.startup_swept {
                assert_eq!(stats.kernel_errors, 0, "{stats:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(has_line(&routes(), &["10.99.0.0/24 via 10.0.0.2"]));
        second.shutdown().await;
    });
}
