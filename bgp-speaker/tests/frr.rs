//! Interop with FRR 8 bgpd (Debian package `frr`, run without zebra): an
//! eBGP session between two throw-away network namespaces reaches
//! Established, stays up past FRR's 9 s hold time, and FRR's `network` route
//! arrives decoded.
//!
//! Needs root (network namespaces) and `/usr/lib/frr/bgpd`; skips otherwise
//! (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use bgp_speaker::fsm::{PeerConfig, State};
use bgp_speaker::packet::Family;
use bgp_speaker::speaker::{Command, PeerSpec, RibMsg, Speaker};
use twill_integration::{TestNetns, require_root};

const BGPD: &str = "/usr/lib/frr/bgpd";
const TWILL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const FRR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn frr_config() -> String {
    // FRR's traditional profile drops eBGP routes without policy (RFC 8212);
    // without zebra, `network` needs the import check off.
    format!(
        "hostname twill-interop
router bgp 64513
 bgp router-id {FRR}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {TWILL} remote-as 64512
 neighbor {TWILL} timers 3 9
 neighbor {TWILL} passive
 address-family ipv4 unicast
  network 10.97.0.0/24
 exit-address-family
"
    )
}

#[test]
fn session_with_frr_reaches_established_and_receives_its_route() {
    require_root!();
    if !twill_integration::require_programs(&[BGPD], "frr") {
        return;
    }
    let netns = TestNetns::new("twill").unwrap();
    let frr_netns = TestNetns::new("frr").unwrap();
    netns
        .ip(&[
            "link",
            "add",
            "tw0",
            "type",
            "veth",
            "peer",
            "name",
            "tw1",
            "netns",
            frr_netns.name(),
        ])
        .unwrap();
    netns
        .ip(&["addr", "add", "10.0.0.1/30", "dev", "tw0"])
        .unwrap();
    netns.ip(&["link", "set", "tw0", "up"]).unwrap();
    frr_netns
        .ip(&["addr", "add", "10.0.0.2/30", "dev", "tw1"])
        .unwrap();
    frr_netns.ip(&["link", "set", "tw1", "up"]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bgpd.conf");
    std::fs::write(&config, frr_config()).unwrap();
    let log_path = dir.path().join("bgpd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = frr_netns.command(BGPD);
    command
        .args([
            "-f",
            config.to_str().unwrap(),
            "-Z",
            "-S",
            "-P",
            "0",
            "-l",
            &FRR.to_string(),
        ])
        .arg("-i")
        .arg(dir.path().join("bgpd.pid"))
        .arg("--vty_socket")
        .arg(dir.path())
        .args(["--log", "stdout", "--log-level", "debug"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _bgpd = frr_netns.spawn_command(command).unwrap();
    let frr_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = PeerSpec {
        address: IpAddr::V4(FRR),
        port: 179,
        local_address: Some(IpAddr::V4(TWILL)),
        config: PeerConfig {
            local_as: 64512,
            remote_as: 64513,
            local_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            passive: false,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            route_refresh: true,
            graceful_restart: None,
        },
    };

    let (negotiated, routes, state_later) = netns
        .run(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (speaker, mut rib) = Speaker::start(None);
                assert!(speaker.command(Command::AddPeer(Box::new(peer))));
                let negotiated = tokio::time::timeout(Duration::from_secs(30), async {
                    loop {
                        if let Some(RibMsg::Up { negotiated, .. }) = rib.recv().await {
                            return negotiated;
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    panic!("not established within 30 s; bgpd log:\n{}", frr_log())
                });
                let routes = tokio::time::timeout(Duration::from_secs(15), async {
                    loop {
                        if let Some(RibMsg::Update { update, .. }) = rib.recv().await {
                            let routes = update.announced_v4();
                            if !routes.is_empty() {
                                return routes;
                            }
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    panic!("no route from frr within 15 s; bgpd log:\n{}", frr_log())
                });
                // Past FRR's 9 s hold time: keepalives must have flowed.
                tokio::time::sleep(Duration::from_secs(10)).await;
                (negotiated, routes, speaker.status().await)
            })
        })
        .unwrap();

    assert_eq!(negotiated.peer_as, 64513);
    assert_eq!(negotiated.peer_id, FRR);
    assert_eq!(negotiated.hold_time, Duration::from_secs(9));
    assert!(negotiated.four_octet_as);
    assert_eq!(
        routes,
        vec!["10.97.0.0/24".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert_eq!(
        state_later,
        vec![(IpAddr::V4(FRR), State::Established)],
        "bgpd log:\n{}",
        frr_log()
    );
}
