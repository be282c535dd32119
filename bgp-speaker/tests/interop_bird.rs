//! Interop with BIRD 2 (Debian package `bird2`), each speaker in its own
//! network namespace, Twill's side a [`Router`] writing kernel routes:
//!
//! * an IPv4 and an IPv6 session (one family each, as Calico's BIRD and
//!   BIRD6 run them): routes cross both ways, IPv6 over MP-BGP with IPv6
//!   next hops; BIRD's routes reach our Loc-RIB and kernel; withdrawals on
//!   either side remove the routes on the other;
//! * route refresh both ways: `birdc reload in` makes BIRD ask us
//!   (ROUTE-REFRESH) and our routes arrive again; `birdc reload out` makes
//!   BIRD send its routes again;
//! * a frozen BIRD (`kill -STOP`) is detected by our hold timer, and the
//!   session comes back once BIRD runs again;
//! * route reflection: our router reflects between two BIRD clients
//!   (ORIGINATOR_ID, CLUSTER_LIST), and is itself a client of a BIRD
//!   reflector.
//!
//! Needs root and `bird`/`birdc`; skips otherwise (`TWILL_REQUIRE_ROOT=1`
//! makes a skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod interop_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use interop_support::{
    Bird, HOLD, Link, PEER_AS, TWILL_AS, TWILL_ID, WAIT, block_on_in, established, eventually,
    frozen_peer_is_detected_and_recovers, has_line, kernel_routes, neighbor, originated, paths,
    router,
};
use twill_integration::{TestNetns, require_root};

fn bird_available() -> bool {
    require_root() && twill_integration::require_programs(&["bird", "birdc"], "bird2")
}

const OURS: [&str; 2] = ["10.244.0.0/26", "fd00:10:244::/122"];
const THEIRS_V4: &str = "10.98.0.0/24";
const THEIRS_V6: &str = "fd00:98::/48";

/// BIRD as an eBGP peer (AS 64513) on the `b` end of `link`, passive, one
/// session per family, exporting one static route of each family.
fn ebgp_config(link: &Link) -> String {
    // eBGP needs explicit import and export filters in BIRD 2 (RFC 8212).
    format!(
        r#"router id {b4};
log stderr all;
protocol device {{ }}
protocol static static4 {{ ipv4; route {THEIRS_V4} blackhole; }}
protocol static static6 {{ ipv6; route {THEIRS_V6} blackhole; }}
protocol bgp twill4 {{
  local {b4} as {PEER_AS};
  neighbor {a4} as {TWILL_AS};
  passive on;
  hold time {hold};
  error wait time 1, 5;
  ipv4 {{ import all; export where proto = "static4"; }};
}}
protocol bgp twill6 {{
  local {b6} as {PEER_AS};
  neighbor {a6} as {TWILL_AS};
  passive on;
  hold time {hold};
  error wait time 1, 5;
  ipv6 {{ import all; export where proto = "static6"; }};
}}
"#,
        a4 = link.a4,
        b4 = link.b4,
        a6 = link.a6,
        b6 = link.b6,
        hold = HOLD.as_secs(),
    )
}

/// Twill's namespace, BIRD's, the link between them and BIRD running the
/// eBGP configuration.
struct Ebgp {
    netns: TestNetns,
    _bird_netns: TestNetns,
    link: Link,
    bird: Bird,
    _dir: tempfile::TempDir,
}

impl Ebgp {
    fn new() -> Self {
        let netns = TestNetns::new("twill").unwrap();
        let bird_netns = TestNetns::new("bird").unwrap();
        let link = Link::wire(0, &netns, &bird_netns);
        let dir = tempfile::tempdir().unwrap();
        let bird = Bird::start(&bird_netns, dir.path(), "bird", &ebgp_config(&link));
        Self {
            netns,
            _bird_netns: bird_netns,
            link,
            bird,
            _dir: dir,
        }
    }

    fn peers(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.link.b4), IpAddr::V6(self.link.b6)]
    }

    fn router(&self) -> bgp_speaker::router::Router {
        let router = router(&self.netns, TWILL_AS, TWILL_ID, None);
        router.set_neighbors(vec![
            neighbor(self.peers()[0], IpAddr::V4(self.link.a4), PEER_AS),
            neighbor(self.peers()[1], IpAddr::V6(self.link.a6), PEER_AS),
        ]);
        router.set_originated(originated(&OURS));
        router
    }

    fn context(&self) -> String {
        format!(
            "---- bird log\n{}\n---- birdc show protocols\n{}",
            self.bird.daemon.log(),
            self.bird.birdc(&["show", "protocols"])
        )
    }
}

#[test]
fn ipv4_and_ipv6_routes_cross_both_ways_and_withdrawals_follow() {
    if !bird_available() {
        return;
    }
    let t = Ebgp::new();
    let context = || t.context();
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;

        // BIRD's routes: in our Loc-RIB with BIRD's next hop of each family.
        for (prefix, hop) in [
            (THEIRS_V4, IpAddr::V4(t.link.b4)),
            (THEIRS_V6, IpAddr::V6(t.link.b6)),
        ] {
            let path = eventually(
                &format!("{prefix} from bird in the loc-rib"),
                WAIT,
                async || paths(&router, prefix).await.ok_or("absent".to_string()),
                context,
            )
            .await;
            assert_eq!(path[0].next_hop, Some(hop), "{prefix}: {path:?}");
            assert_eq!(path[0].as_path, vec![PEER_AS], "{prefix}: {path:?}");
            assert!(path[0].best, "{prefix}: {path:?}");
        }
        // ... and in the kernel, through BIRD.
        for (prefix, hop, ipv6) in [
            (THEIRS_V4, t.link.b4.to_string(), false),
            (THEIRS_V6, t.link.b6.to_string(), true),
        ] {
            eventually(
                &format!("kernel route {prefix} via {hop}"),
                WAIT,
                async || {
                    let table = kernel_routes(&t.netns, ipv6);
                    if has_line(&table, &[prefix, &format!("via {hop}")]) {
                        Ok(())
                    } else {
                        Err(table)
                    }
                },
                context,
            )
            .await;
        }

        // Ours at BIRD: our AS, our next hop of the session's family.
        for (prefix, hop) in [
            (OURS[0], t.link.a4.to_string()),
            (OURS[1], t.link.a6.to_string()),
        ] {
            eventually(
                &format!("{prefix} at bird with next hop {hop}"),
                WAIT,
                async || {
                    let route = t.bird.route(prefix);
                    if route.contains(&format!("BGP.next_hop: {hop}"))
                        && route.contains(&format!("BGP.as_path: {TWILL_AS}"))
                    {
                        Ok(())
                    } else {
                        Err(route)
                    }
                },
                context,
            )
            .await;
        }
        // One family per session: BIRD's IPv4 session has no IPv6 route.
        let twill4 = t.bird.birdc(&["show", "route", "protocol", "twill4"]);
        assert!(!twill4.contains("fd00:"), "{twill4}");

        // BIRD withdraws: gone from our Loc-RIB and kernel.
        t.bird.birdc(&["disable", "static4"]);
        t.bird.birdc(&["disable", "static6"]);
        for (prefix, ipv6) in [(THEIRS_V4, false), (THEIRS_V6, true)] {
            eventually(
                &format!("{prefix} withdrawn from the loc-rib and the kernel"),
                WAIT,
                async || {
                    let table = kernel_routes(&t.netns, ipv6);
                    match paths(&router, prefix).await {
                        Some(p) => Err(format!("loc-rib: {p:?}")),
                        None if table.contains(prefix) => Err(format!("kernel: {table}")),
                        None => Ok(()),
                    }
                },
                context,
            )
            .await;
        }

        // We withdraw: gone from BIRD.
        router.set_originated(Vec::new());
        for prefix in OURS {
            eventually(
                &format!("{prefix} withdrawn at bird"),
                WAIT,
                async || {
                    if t.bird.has_route(prefix) {
                        Err(t.bird.route(prefix))
                    } else {
                        Ok(())
                    }
                },
                context,
            )
            .await;
        }
        router.shutdown().await;
    });
}

#[test]
fn route_refresh_resends_routes_in_both_directions() {
    if !bird_available() {
        return;
    }
    let t = Ebgp::new();
    let context = || t.context();
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;
        for prefix in OURS {
            eventually(
                &format!("{prefix} at bird"),
                WAIT,
                async || {
                    t.bird
                        .has_route(prefix)
                        .then_some(())
                        .ok_or_else(|| t.bird.route(prefix))
                },
                context,
            )
            .await;
        }
        for prefix in [THEIRS_V4, THEIRS_V6] {
            eventually(
                &format!("{prefix} in the loc-rib"),
                WAIT,
                async || paths(&router, prefix).await.ok_or("absent".to_string()),
                context,
            )
            .await;
        }

        // `reload in`: BIRD sends ROUTE-REFRESH; we send our routes again.
        for proto in ["twill4", "twill6"] {
            let before = eventually(
                &format!("bird's import counters of {proto}"),
                WAIT,
                async || t.bird.import_updates_received(proto),
                context,
            )
            .await;
            let reply = t.bird.birdc(&["reload", "in", proto]);
            assert!(
                reply.contains(&format!("{proto}: reloading")),
                "birdc reload in {proto}: {reply}"
            );
            eventually(
                &format!("our routes again at bird's {proto} after its route refresh"),
                WAIT,
                async || {
                    let now = t.bird.import_updates_received(proto)?;
                    if now > before {
                        Ok(())
                    } else {
                        Err(format!("import updates received {before} -> {now}"))
                    }
                },
                context,
            )
            .await;
        }
        for prefix in OURS {
            assert!(t.bird.has_route(prefix), "{prefix} after refresh");
        }

        // `reload out`: BIRD sends its routes again; they are re-received.
        for (proto, prefix) in [("twill4", THEIRS_V4), ("twill6", THEIRS_V6)] {
            let before = router.stats().await.updates_in;
            let reply = t.bird.birdc(&["reload", "out", proto]);
            assert!(
                reply.contains(&format!("{proto}: reloading")),
                "birdc reload out {proto}: {reply}"
            );
            eventually(
                &format!("{prefix} re-received after bird's reload out {proto}"),
                WAIT,
                async || {
                    let now = router.stats().await.updates_in;
                    match paths(&router, prefix).await {
                        Some(_) if now > before => Ok(()),
                        found => Err(format!("updates in {before} -> {now}; {found:?}")),
                    }
                },
                context,
            )
            .await;
        }
        // Refreshed, not reset: no session left Established.
        assert_eq!(router.stats().await.flaps, 0, "{}", context());
        router.shutdown().await;
    });
}

#[test]
fn frozen_bird_is_detected_within_the_hold_time_and_the_session_recovers() {
    if !bird_available() {
        return;
    }
    let t = Ebgp::new();
    let context = || t.context();
    let v4 = t.peers()[0];
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;
        eventually(
            "bird's IPv4 route in the loc-rib",
            WAIT,
            async || paths(&router, THEIRS_V4).await.ok_or("absent".to_string()),
            context,
        )
        .await;

        frozen_peer_is_detected_and_recovers(
            &router,
            &t.bird.daemon,
            "bird",
            v4,
            THEIRS_V4,
            context,
        )
        .await;
        router.shutdown().await;
    });
}

const CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// An iBGP BIRD (AS 64512) on the `b` end of `link` peering with `peer`,
/// exporting `export` (a static route, if any), `extra` added verbatim.
fn ibgp_config(local: Ipv4Addr, peer: Ipv4Addr, export: Option<&str>, extra: &str) -> String {
    let (statics, filter) = match export {
        Some(prefix) => (
            format!("protocol static s4 {{ ipv4; route {prefix} blackhole; }}\n"),
            r#"where proto = "s4""#,
        ),
        None => (String::new(), "none"),
    };
    format!(
        r#"router id {local};
log stderr all;
protocol device {{ }}
{statics}{extra}
protocol bgp session1 {{
  local {local} as {TWILL_AS};
  neighbor {peer} as {TWILL_AS};
  hold time {hold};
  connect retry time 1;
  ipv4 {{ import all; export {filter}; }};
}}
"#,
        hold = HOLD.as_secs(),
    )
}

#[test]
fn our_router_reflects_between_two_bird_clients() {
    if !bird_available() {
        return;
    }
    let netns = TestNetns::new("twill").unwrap();
    let (netns_a, netns_b) = (
        TestNetns::new("birda").unwrap(),
        TestNetns::new("birdb").unwrap(),
    );
    let link_a = Link::wire(0, &netns, &netns_a);
    let link_b = Link::wire(1, &netns, &netns_b);
    let dir = tempfile::tempdir().unwrap();
    let client_route = "10.98.1.0/24";
    let bird_a = Bird::start(
        &netns_a,
        dir.path(),
        "a",
        &ibgp_config(link_a.b4, link_a.a4, Some(client_route), ""),
    );
    // B resolves A's next hop (kept by the reflector) through Twill.
    let bird_b = Bird::start(
        &netns_b,
        dir.path(),
        "b",
        &ibgp_config(
            link_b.b4,
            link_b.a4,
            None,
            &format!(
                "protocol static resolve1 {{ ipv4; route 10.0.0.0/30 via {}; }}\n",
                link_b.a4
            ),
        ),
    );
    let context = || {
        format!(
            "---- a\n{}\n---- b\n{}\n{}",
            bird_a.daemon.log(),
            bird_b.daemon.log(),
            bird_b.birdc(&["show", "protocols", "all", "session1"])
        )
    };
    let (a, b) = (IpAddr::V4(link_a.b4), IpAddr::V4(link_b.b4));
    block_on_in(&netns, || async {
        let router = router(&netns, TWILL_AS, TWILL_ID, Some(CLUSTER_ID));
        let mut clients = Vec::new();
        for (peer, local) in [(a, link_a.a4), (b, link_b.a4)] {
            let mut n = neighbor(peer, IpAddr::V4(local), TWILL_AS);
            n.route_reflector_client = true;
            clients.push(n);
        }
        router.set_neighbors(clients);
        established(&router, &[a, b], context).await;

        let reflected = eventually(
            &format!("{client_route} from client a reflected to client b"),
            WAIT,
            async || {
                let route = bird_b.route(client_route);
                if route.contains("BGP.originator_id") {
                    Ok(route)
                } else {
                    Err(route)
                }
            },
            context,
        )
        .await;
        for expected in [
            format!("BGP.originator_id: {}", link_a.b4),
            format!("BGP.cluster_list: {CLUSTER_ID}"),
            format!("BGP.next_hop: {}", link_a.b4),
        ] {
            assert!(reflected.contains(&expected), "{expected} in:\n{reflected}");
        }
        // Not reflected back to the client it came from.
        let at_a = bird_a.birdc(&["show", "route", "protocol", "session1"]);
        assert!(!at_a.contains(client_route), "{at_a}");
        router.shutdown().await;
    });
}

#[test]
fn our_router_as_client_of_a_bird_reflector() {
    if !bird_available() {
        return;
    }
    let netns = TestNetns::new("twill").unwrap();
    let (netns_rr, netns_c) = (
        TestNetns::new("birdrr").unwrap(),
        TestNetns::new("birdc").unwrap(),
    );
    let link_twill = Link::wire(0, &netns, &netns_rr);
    let link_c = Link::wire(1, &netns_c, &netns_rr);
    let rr_cluster = Ipv4Addr::new(198, 51, 100, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut rr_config = format!(
        "router id {};\nlog stderr all;\nprotocol device {{ }}\nprotocol direct {{ ipv4; }}\n",
        link_twill.b4
    );
    for (name, local, peer) in [
        ("twill", link_twill.b4, link_twill.a4),
        ("c", link_c.b4, link_c.a4),
    ] {
        rr_config.push_str(&format!(
            "protocol bgp {name} {{\n  local {local} as {TWILL_AS};\n  neighbor {peer} as {TWILL_AS};\n  \
             rr client;\n  rr cluster id {rr_cluster};\n  hold time {};\n  connect retry time 1;\n  \
             ipv4 {{ import all; export where proto != \"direct1\"; }};\n}}\n",
            HOLD.as_secs()
        ));
    }
    let rr = Bird::start(&netns_rr, dir.path(), "rr", &rr_config);
    let c_route = "10.98.3.0/24";
    let c = Bird::start(
        &netns_c,
        dir.path(),
        "c",
        &ibgp_config(
            link_c.a4,
            link_c.b4,
            Some(c_route),
            &format!(
                "protocol static resolve1 {{ ipv4; route 10.0.0.0/30 via {}; }}\n",
                link_c.b4
            ),
        ),
    );
    let context = || {
        format!(
            "---- rr\n{}\n---- c\n{}\n{}",
            rr.daemon.log(),
            c.daemon.log(),
            rr.birdc(&["show", "protocols"])
        )
    };
    let rr_address = IpAddr::V4(link_twill.b4);
    block_on_in(&netns, || async {
        let router = router(&netns, TWILL_AS, TWILL_ID, None);
        router.set_neighbors(vec![neighbor(
            rr_address,
            IpAddr::V4(link_twill.a4),
            TWILL_AS,
        )]);
        router.set_originated(originated(&[OURS[0]]));
        established(&router, &[rr_address], context).await;

        // C's route, reflected to us.
        let path = eventually(
            &format!("{c_route} from c reflected to us"),
            WAIT,
            async || paths(&router, c_route).await.ok_or("absent".to_string()),
            context,
        )
        .await;
        assert_eq!(path[0].peer, Some(rr_address), "{path:?}");
        assert_eq!(path[0].originator_id, Some(link_c.a4), "{path:?}");
        assert_eq!(path[0].cluster_list, vec![rr_cluster], "{path:?}");
        assert_eq!(path[0].next_hop, Some(IpAddr::V4(link_c.a4)), "{path:?}");
        assert_eq!(path[0].local_pref, Some(100), "{path:?}");

        // Ours, reflected to C with our identifier as originator.
        let route = eventually(
            &format!("{} reflected to c", OURS[0]),
            WAIT,
            async || {
                let route = c.route(OURS[0]);
                if route.contains("BGP.originator_id") {
                    Ok(route)
                } else {
                    Err(route)
                }
            },
            context,
        )
        .await;
        for expected in [
            format!("BGP.originator_id: {TWILL_ID}"),
            format!("BGP.cluster_list: {rr_cluster}"),
            format!("BGP.next_hop: {}", link_twill.a4),
        ] {
            assert!(route.contains(&expected), "{expected} in:\n{route}");
        }
        router.shutdown().await;
    });
}

/// The `bgp-speaker` daemon on a dual-stack node, configured by Calico
/// resources only (Node with both addresses, IPv4 and IPv6 pools and
/// blocks, one BGPPeer per family), peers with BIRD over both families.
#[test]
fn daemon_peers_with_bird_over_both_families_from_calico_resources() {
    use serde_json::{Value, json};
    use twill_store::{Datastore, Key, SqliteStore};

    if !bird_available() {
        return;
    }
    let t = Ebgp::new();
    let dir = tempfile::tempdir().unwrap();
    let datastore = dir.path().join("twill.db");
    let store = SqliteStore::open(&datastore).unwrap();
    let put = |kind: &str, name: &str, spec: Value| {
        let value = json!({"metadata": {"name": name}, "spec": spec});
        store.create(&Key::cluster(kind, name), &value).unwrap();
    };
    put(
        "BGPConfiguration",
        "default",
        json!({"nodeToNodeMeshEnabled": false, "asNumber": TWILL_AS}),
    );
    put(
        "Node",
        "n1",
        json!({"bgp": {"ipv4Address": format!("{}/30", t.link.a4),
                       "ipv6Address": format!("{}/64", t.link.a6)}}),
    );
    put("IPPool", "v4", json!({"cidr": "10.244.0.0/16"}));
    put("IPPool", "v6", json!({"cidr": "fd00:10:244::/48"}));
    for (name, cidr) in [("b4", OURS[0]), ("b6", OURS[1])] {
        put(
            "BlockAffinity",
            name,
            json!({"node": "n1", "cidr": cidr, "state": "confirmed", "deleted": "false"}),
        );
    }
    for (name, address) in [
        ("bird4", t.link.b4.to_string()),
        ("bird6", t.link.b6.to_string()),
    ] {
        put(
            "BGPPeer",
            name,
            json!({"peerIP": address, "asNumber": PEER_AS, "keepaliveTime": "3s"}),
        );
    }
    let log = dir.path().join("n1.log");
    let mut command = t.netns.command(env!("CARGO_BIN_EXE_bgp-speaker"));
    command
        .args(["--node", "n1", "--apply-delay-ms", "20"])
        .arg("--datastore")
        .arg(&datastore)
        .arg("--status-socket")
        .arg(dir.path().join("n1.sock"))
        .env("RUST_LOG", "info");
    let daemon = interop_support::Daemon::spawn(&t.netns, command, &log);
    let context = || format!("---- bgp-speaker\n{}\n{}", daemon.log(), t.context());
    let wait = |what: &str, check: &dyn Fn() -> Result<(), String>| {
        let deadline = Instant::now() + WAIT;
        loop {
            match check() {
                Ok(()) => return,
                Err(last) => assert!(
                    Instant::now() < deadline,
                    "timed out after {WAIT:?} waiting for {what}; last seen: {last}\n{}",
                    context()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    for (proto, prefix, hop) in [
        ("twill4", OURS[0], t.link.a4.to_string()),
        ("twill6", OURS[1], t.link.a6.to_string()),
    ] {
        wait(
            &format!("{prefix} at bird over {proto} with next hop {hop}"),
            &|| {
                let route = t.bird.route(prefix);
                if route.contains(&format!("BGP.next_hop: {hop}")) && route.contains(proto) {
                    Ok(())
                } else {
                    Err(route)
                }
            },
        );
    }
    for (prefix, hop, ipv6) in [
        (THEIRS_V4, t.link.b4.to_string(), false),
        (THEIRS_V6, t.link.b6.to_string(), true),
    ] {
        wait(&format!("kernel route {prefix} via {hop}"), &|| {
            let table = kernel_routes(&t.netns, ipv6);
            if has_line(&table, &[prefix, &format!("via {hop}")]) {
                Ok(())
            } else {
                Err(table)
            }
        });
    }
    for (family, block) in [("-4", OURS[0]), ("-6", OURS[1])] {
        let blackholes = t
            .netns
            .ip(&[family, "route", "show", "proto", "203"])
            .unwrap();
        assert!(
            blackholes.contains(&format!("blackhole {block}")),
            "{family}: {blackholes}"
        );
    }
}
