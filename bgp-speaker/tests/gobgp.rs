//! Interop with GoBGP (Debian package `gobgpd`): an eBGP session over
//! loopback inside a throw-away network namespace reaches Established, and a
//! route GoBGP originates arrives as a decoded UPDATE.
//!
//! Needs root (network namespaces) and `gobgpd`/`gobgp` on PATH; skips
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

const TWILL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const GOBGP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn gobgp_config() -> String {
    format!(
        r#"[global.config]
  as = 64513
  router-id = "{GOBGP}"
  port = 179
  local-address-list = ["{GOBGP}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{TWILL}"
    peer-as = 64512
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
  [neighbors.transport.config]
    passive-mode = true
    local-address = "{GOBGP}"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

#[test]
fn session_with_gobgp_reaches_established_and_receives_its_route() {
    require_root!();
    if !twill_integration::require_programs(&["gobgpd", "gobgp"], "gobgpd") {
        return;
    }
    let netns = TestNetns::new("bgp").unwrap();
    netns
        .ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gobgpd.toml");
    std::fs::write(&config, gobgp_config()).unwrap();
    let api = format!("{GOBGP}:50051");
    let log_path = dir.path().join("gobgpd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = netns.command("gobgpd");
    command
        .args([
            "-f",
            config.to_str().unwrap(),
            "-t",
            "toml",
            "--api-hosts",
            &api,
            "-l",
            "debug",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _gobgpd = netns.spawn_command(command).unwrap();
    let gobgp_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = PeerSpec {
        address: IpAddr::V4(GOBGP),
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

    let outcome = netns
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
                .expect("established within 30 s");
                assert_eq!(
                    speaker.status().await,
                    vec![(IpAddr::V4(GOBGP), State::Established)]
                );

                // GoBGP originates a route; it must arrive decoded and clean.
                let added = std::process::Command::new("gobgp")
                    .args([
                        "-u",
                        &GOBGP.to_string(),
                        "global",
                        "rib",
                        "add",
                        "10.99.0.0/24",
                        "-a",
                        "ipv4",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    added.status.success(),
                    "{}",
                    String::from_utf8_lossy(&added.stderr)
                );
                let announced = tokio::time::timeout(Duration::from_secs(15), async {
                    loop {
                        if let Some(RibMsg::Update { update, .. }) = rib.recv().await {
                            let routes = update.announced_v4();
                            if !routes.is_empty() {
                                return (routes, update.problems.clone());
                            }
                        }
                    }
                })
                .await
                .expect("update within 15 s");

                // And an IPv6 route, which arrives in MP_REACH_NLRI.
                let added = std::process::Command::new("gobgp")
                    .args([
                        "-u",
                        &GOBGP.to_string(),
                        "global",
                        "rib",
                        "add",
                        "2001:db8:99::/48",
                        "-a",
                        "ipv6",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    added.status.success(),
                    "{}",
                    String::from_utf8_lossy(&added.stderr)
                );
                let announced_v6 = tokio::time::timeout(Duration::from_secs(15), async {
                    loop {
                        if let Some(RibMsg::Update { update, .. }) = rib.recv().await {
                            let routes = update.announced_v6();
                            if !routes.is_empty() {
                                return routes;
                            }
                        }
                    }
                })
                .await
                .expect("ipv6 update within 15 s");
                assert_eq!(
                    announced_v6,
                    vec!["2001:db8:99::/48".parse::<ipnet::Ipv6Net>().unwrap()]
                );

                // Our route to GoBGP: its AS_PATH must read as a sequence, not a set.
                let attrs = RouteAttributes {
                    origin: Origin::IGP,
                    as_path: vec![64512],
                    // GoBGP treats a loopback next hop as invalid (treat-as-withdraw).
                    next_hop_v4: Some(NEXT_HOP),
                    next_hop_v6: None,
                    next_hop_v6_link_local: None,
                    med: None,
                    local_pref: None,
                    communities: vec![0xfc00_0001],
                };
                let ours = ["10.244.0.0/26".parse().unwrap()];
                let message =
                    encode_update_v4(&ours, &[], &attrs, negotiated.four_octet_as).unwrap();
                assert!(speaker.command(Command::SendUpdate {
                    peer: IpAddr::V4(GOBGP),
                    message
                }));

                // Keepalives keep the session up past GoBGP's 9 s hold time.
                tokio::time::sleep(Duration::from_secs(10)).await;
                let state_later = speaker.status().await;
                // Asked while our speaker still runs (it stops with this runtime).
                let neighbor = std::process::Command::new("gobgp")
                    .args(["-u", &GOBGP.to_string(), "neighbor"])
                    .output()
                    .unwrap();
                let neighbor = String::from_utf8_lossy(&neighbor.stdout).into_owned();
                let rib_text = std::process::Command::new("gobgp")
                    .args(["-u", &GOBGP.to_string(), "global", "rib", "-a", "ipv4"])
                    .output()
                    .unwrap();
                let rib_text = String::from_utf8_lossy(&rib_text.stdout).into_owned();
                let line = rib_text
                    .lines()
                    .find(|l| l.contains("10.244.0.0/26"))
                    .map(str::to_owned);
                let line = line.unwrap_or_else(|| {
                    panic!(
                        "gobgp did not accept our route: {rib_text}\ngobgpd log:\n{}",
                        gobgp_log()
                    )
                });
                assert!(
                    line.contains(" 64512 ") && !line.contains("{64512"),
                    "as_path not a sequence (a set prints as {{64512}}): {line}"
                );
                assert!(line.contains(&NEXT_HOP.to_string()), "next hop: {line}");
                assert!(line.contains("Communities: 64512:1"), "communities: {line}");
                (negotiated, announced, state_later, neighbor)
            })
        })
        .unwrap();

    let (negotiated, (routes, problems), state_later, neighbor) = outcome;
    assert_eq!(negotiated.peer_as, 64513);
    assert_eq!(negotiated.peer_id, GOBGP);
    assert_eq!(negotiated.hold_time, Duration::from_secs(9));
    assert!(negotiated.four_octet_as);
    assert!(negotiated.families.contains(&Family::Ipv6Unicast));
    assert_eq!(
        routes,
        vec!["10.99.0.0/24".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(state_later, vec![(IpAddr::V4(GOBGP), State::Established)]);
    assert!(
        neighbor.contains("Establ"),
        "gobgp neighbor says: {neighbor}"
    );
}
