//! Interop with BIRD 2 (Debian package `bird2`): an eBGP session over
//! loopback inside a throw-away network namespace reaches Established, BIRD's
//! static route arrives, and BIRD imports Twill's route with its AS_SEQUENCE.
//!
//! Needs root (network namespaces) and `bird`/`birdc` on PATH; skips
//! otherwise (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use bgp_speaker::fsm::{PeerConfig, State};
use bgp_speaker::packet::{Family, RouteAttributes, encode_update_v4};
use bgp_speaker::speaker::{Command, PeerSpec, RibMsg, Speaker};
use netgauze_bgp_pkt::path_attribute::Origin;
use twill_integration::{TestNetns, require_root};

// BIRD refuses loopback neighbours, so each side gets its own namespace
// and a veth pair between them.
const TWILL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const BIRD: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

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
    let netns = TestNetns::new("twill").unwrap();
    let bird_netns = TestNetns::new("bird").unwrap();
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
            bird_netns.name(),
        ])
        .unwrap();
    netns
        .ip(&["addr", "add", "10.0.0.1/30", "dev", "tw0"])
        .unwrap();
    netns.ip(&["link", "set", "tw0", "up"]).unwrap();
    bird_netns
        .ip(&["addr", "add", "10.0.0.2/30", "dev", "tw1"])
        .unwrap();
    bird_netns.ip(&["link", "set", "tw1", "up"]).unwrap();
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
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = bird_netns.command("bird");
    command
        .args(["-f", "-c", config.to_str().unwrap(), "-s"])
        .arg(dir.path().join("bird.ctl"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _bird = bird_netns.spawn_command(command).unwrap();
    let bird_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = PeerSpec {
        address: IpAddr::V4(BIRD),
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

    let (negotiated, routes, state_later, protocols, imported) = netns
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
                    panic!("not established within 30 s; bird log:\n{}", bird_log())
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
                let message =
                    encode_update_v4(&ours, &[], &attrs, negotiated.four_octet_as).unwrap();
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
            })
        })
        .unwrap();

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
