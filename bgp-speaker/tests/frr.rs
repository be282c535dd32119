//! Interop with FRR 8 bgpd (Debian package `frr`, run without zebra): an
//! eBGP session between two throw-away network namespaces reaches
//! Established, stays up past FRR's 9 s hold time, and FRR's `network` route
//! arrives decoded.
//!
//! Needs root (network namespaces) and `/usr/lib/frr/bgpd`; skips otherwise
//! (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_speaker::fsm::State;
use twill_integration::require_root;

const BGPD: &str = "/usr/lib/frr/bgpd";
const TWILL: Ipv4Addr = common::VETH_TWILL;
const FRR: Ipv4Addr = common::VETH_PEER;

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
    let (netns, frr_netns) = common::veth_pair("frr");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bgpd.conf");
    std::fs::write(&config, frr_config()).unwrap();
    let log_path = dir.path().join("bgpd.log");
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
        .args(["--log", "stdout", "--log-level", "debug"]);
    let _bgpd = common::spawn_logged(&frr_netns, command, &log_path);
    let frr_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = common::ebgp_peer(FRR, TWILL);

    let (negotiated, routes, state_later) = common::block_on_in(&netns, || async move {
        let (speaker, mut rib) = common::speaker_with(peer);
        let negotiated = common::established(&mut rib, Duration::from_secs(30))
            .await
            .unwrap_or_else(|_| panic!("not established within 30 s; bgpd log:\n{}", frr_log()));
        let routes = common::first_update(&mut rib, Duration::from_secs(15), common::announced_v4)
            .await
            .unwrap_or_else(|_| panic!("no route from frr within 15 s; bgpd log:\n{}", frr_log()));
        // Past FRR's 9 s hold time: keepalives must have flowed.
        tokio::time::sleep(Duration::from_secs(10)).await;
        (negotiated, routes, speaker.status().await)
    });

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
