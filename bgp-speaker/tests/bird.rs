//! Interop with BIRD 2 (Debian package `bird2`): an eBGP session over
//! loopback inside a throw-away network namespace reaches Established, BIRD's
//! static route arrives, and BIRD imports Twill's route with its AS_SEQUENCE.
//!
//! Needs root (network namespaces) and `bird`/`birdc` on PATH; skips
//! otherwise (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_speaker::fsm::State;
use bgp_speaker::packet::{RouteAttributes, encode_update_v4};
use bgp_speaker::speaker::Command;
use netgauze_bgp_pkt::path_attribute::Origin;
use twill_integration::require_root;

// BIRD refuses loopback neighbours, so each side gets its own namespace
// and a veth pair between them.
const TWILL: Ipv4Addr = common::VETH_TWILL;
const BIRD: Ipv4Addr = common::VETH_PEER;

fn bird_config() -> String {
    // BIRD 2 needs explicit eBGP import/export filters (RFC 8212).
    format!(
        r#"router id {BIRD};
log stderr all;
debug protocols {{ states, events, packets }};
protocol device {{ }}
protocol static static4 {{
  ipv4;
  route 10.98.0.0/24 blackhole;
}}
protocol bgp twill {{
  local {BIRD} as 64513;
  neighbor {TWILL} as 64512;
  passive on;
  hold time 9;
  ipv4 {{ import all; export where proto = "static4"; }};
  ipv6 {{ import all; export none; }};
}}
"#
    )
}

#[test]
fn session_with_bird_reaches_established_and_routes_cross_both_ways() {
    require_root!();
    if !twill_integration::require_programs(&["bird", "birdc"], "bird2") {
        return;
    }
    let (netns, bird_netns) = common::veth_pair("bird");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bird.conf");
    let socket = dir.path().join("bird.ctl");
    std::fs::write(&config, bird_config()).unwrap();
    let socket = socket.to_str().unwrap().to_owned();
    let birdc = move |args: &[&str]| -> String {
        let output = std::process::Command::new("birdc")
            .arg("-s")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let log_path = dir.path().join("bird.log");
    let mut command = bird_netns.command("bird");
    command
        .args(["-f", "-c", config.to_str().unwrap(), "-s"])
        .arg(dir.path().join("bird.ctl"));
    let _bird = common::spawn_logged(&bird_netns, command, &log_path);
    let bird_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = common::ebgp_peer(BIRD, TWILL);

    let (negotiated, routes, state_later, protocols, imported) =
        common::block_on_in(&netns, || async move {
            let (speaker, mut rib) = common::speaker_with(peer);
            let negotiated = common::established(&mut rib, Duration::from_secs(30))
                .await
                .unwrap_or_else(|_| {
                    panic!("not established within 30 s; bird log:\n{}", bird_log())
                });
            let routes =
                common::first_update(&mut rib, Duration::from_secs(15), common::announced_v4)
                    .await
                    .expect("bird's static route within 15 s");

            let attrs = RouteAttributes {
                origin: Origin::IGP,
                as_path: vec![64512],
                next_hop_v4: Some(TWILL),
                next_hop_v6: None,
                next_hop_v6_link_local: None,
                med: None,
                local_pref: None,
                communities: vec![],
            };
            let ours = ["10.244.0.0/26".parse().unwrap()];
            let message = encode_update_v4(&ours, &[], &attrs, negotiated.four_octet_as).unwrap();
            assert!(speaker.command(Command::SendUpdate {
                peer: IpAddr::V4(BIRD),
                message
            }));

            // Past BIRD's 9 s hold time: keepalives must have flowed.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let state_later = speaker.status().await;
            let protocols = birdc(&["show", "protocols", "twill"]);
            let imported = birdc(&["show", "route", "10.244.0.0/26", "all"]);
            (negotiated, routes, state_later, protocols, imported)
        });

    assert_eq!(negotiated.peer_as, 64513);
    assert_eq!(negotiated.hold_time, Duration::from_secs(9));
    assert_eq!(
        routes,
        vec!["10.98.0.0/24".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert_eq!(state_later, vec![(IpAddr::V4(BIRD), State::Established)]);
    assert!(
        protocols.contains("Established"),
        "birdc show protocols: {protocols}"
    );
    assert!(
        imported.contains("10.244.0.0/26"),
        "bird did not import our route: {imported}"
    );
    assert!(
        imported.contains("BGP.as_path: 64512") && !imported.contains("{64512"),
        "as_path not one AS_SEQUENCE: {imported}"
    );
}
