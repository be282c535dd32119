//! Interop with GoBGP (Debian package `gobgpd`): an eBGP session over
//! loopback inside a throw-away network namespace reaches Established, and a
//! route GoBGP originates arrives as a decoded UPDATE.
//!
//! Needs root (network namespaces) and `gobgpd`/`gobgp` on PATH; skips
//! otherwise (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_speaker::fsm::State;
use bgp_speaker::packet::{Family, RouteAttributes, encode_update_v4};
use bgp_speaker::speaker::Command;
use netgauze_bgp_pkt::path_attribute::Origin;
use twill_integration::{TestNetns, require_root};

const TWILL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const GOBGP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Runs the `gobgp` client against the daemon's API with `args`.
fn gobgp(args: &[&str]) -> std::process::Output {
    std::process::Command::new("gobgp")
        .args(["-u", &GOBGP.to_string()])
        .args(args)
        .output()
        .unwrap()
}

/// Has GoBGP originate `prefix` in address family `family`.
fn gobgp_rib_add(prefix: &str, family: &str) {
    let added = gobgp(&["global", "rib", "add", prefix, "-a", family]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
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
    std::fs::write(&config, common::gobgp_config(GOBGP, TWILL, false)).unwrap();
    let api = format!("{GOBGP}:50051");
    let log_path = dir.path().join("gobgpd.log");
    let mut command = netns.command("gobgpd");
    command.args([
        "-f",
        config.to_str().unwrap(),
        "-t",
        "toml",
        "--api-hosts",
        &api,
        "-l",
        "debug",
    ]);
    let _gobgpd = common::spawn_logged(&netns, command, &log_path);
    let gobgp_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let peer = common::ebgp_peer(GOBGP, TWILL);

    let outcome = common::block_on_in(&netns, || async move {
        let (speaker, mut rib) = common::speaker_with(peer);
        let negotiated = common::established(&mut rib, Duration::from_secs(30))
            .await
            .expect("established within 30 s");
        assert_eq!(
            speaker.status().await,
            vec![(IpAddr::V4(GOBGP), State::Established)]
        );

        // GoBGP originates a route; it must arrive decoded and clean.
        gobgp_rib_add("10.99.0.0/24", "ipv4");
        let announced = common::first_update(&mut rib, Duration::from_secs(15), |update| {
            common::announced_v4(update).map(|routes| (routes, update.problems.clone()))
        })
        .await
        .expect("update within 15 s");

        // And an IPv6 route, which arrives in MP_REACH_NLRI.
        gobgp_rib_add("2001:db8:99::/48", "ipv6");
        let announced_v6 = common::first_update(&mut rib, Duration::from_secs(15), |update| {
            Some(update.announced_v6()).filter(|routes| !routes.is_empty())
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
        let message = encode_update_v4(&ours, &[], &attrs, negotiated.four_octet_as).unwrap();
        assert!(speaker.command(Command::SendUpdate {
            peer: IpAddr::V4(GOBGP),
            message
        }));

        // Keepalives keep the session up past GoBGP's 9 s hold time.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let state_later = speaker.status().await;
        // Asked while our speaker still runs (it stops with this runtime).
        let neighbor = String::from_utf8_lossy(&gobgp(&["neighbor"]).stdout).into_owned();
        let rib_text =
            String::from_utf8_lossy(&gobgp(&["global", "rib", "-a", "ipv4"]).stdout).into_owned();
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
    });

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
