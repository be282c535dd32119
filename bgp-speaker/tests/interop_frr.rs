//! Interop with FRR 8 bgpd (Debian package `frr`, run without zebra), each
//! speaker in its own network namespace, Twill's side a [`Router`] writing
//! kernel routes:
//!
//! * an IPv4 and an IPv6 session (one family each): routes cross both ways,
//!   IPv6 over MP-BGP with IPv6 next hops; FRR's routes reach our Loc-RIB
//!   and kernel; withdrawals on either side remove the routes on the other
//!   (`show bgp ipv4|ipv6 unicast json`);
//! * route refresh both ways: `clear bgp * soft in` makes FRR send us a
//!   ROUTE-REFRESH and our routes arrive again; `clear bgp * soft out`
//!   makes FRR send its routes again;
//! * a frozen bgpd (`kill -STOP`) is detected by our hold timer, and the
//!   session comes back once it runs again.
//!
//! Needs root, `/usr/lib/frr/bgpd` and `vtysh`; skips otherwise
//! (`TWILL_REQUIRE_ROOT=1` makes a skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod interop_support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use bgp_speaker::router::Router;
use interop_support::{
    Daemon, HOLD, Link, PEER_AS, TWILL_AS, TWILL_ID, WAIT, block_on_in, established, eventually,
    frozen_peer_is_detected_and_recovers, has_line, kernel_routes, neighbor, originated, paths,
    router,
};
use serde_json::Value;
use twill_integration::{TestNetns, require_root};

const BGPD: &str = "/usr/lib/frr/bgpd";
const OURS: [&str; 2] = ["10.244.0.0/26", "fd00:10:244::/122"];
const THEIRS_V4: &str = "10.97.0.0/24";
const THEIRS_V6: &str = "fd00:97::/48";

fn frr_available() -> bool {
    require_root() && twill_integration::require_programs(&[BGPD, "vtysh"], "frr")
}

/// bgpd as an eBGP peer (AS 64513) on the `b` end of `link`: passive, one
/// session per family, a `network` route of each family.
fn frr_config(link: &Link) -> String {
    let (a4, b4, a6) = (link.a4, link.b4, link.a6);
    let hold = HOLD.as_secs();
    // The traditional profile drops eBGP routes without policy (RFC 8212);
    // without zebra, `network` needs the import check off.
    format!(
        "hostname twill-interop
router bgp {PEER_AS}
 bgp router-id {b4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor {a4} remote-as {TWILL_AS}
 neighbor {a4} timers {keepalive} {hold}
 neighbor {a4} passive
 neighbor {a6} remote-as {TWILL_AS}
 neighbor {a6} timers {keepalive} {hold}
 neighbor {a6} passive
 address-family ipv4 unicast
  network {THEIRS_V4}
  neighbor {a4} activate
 exit-address-family
 address-family ipv6 unicast
  network {THEIRS_V6}
  neighbor {a6} activate
 exit-address-family
",
        keepalive = hold / 3,
    )
}

/// Twill's namespace, FRR's, the link, and bgpd running.
struct Frr {
    netns: TestNetns,
    _frr_netns: TestNetns,
    link: Link,
    bgpd: Daemon,
    dir: tempfile::TempDir,
}

impl Frr {
    fn new() -> Self {
        let netns = TestNetns::new("twill").unwrap();
        let frr_netns = TestNetns::new("frr").unwrap();
        let link = Link::wire(0, &netns, &frr_netns);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bgpd.conf");
        std::fs::write(&config, frr_config(&link)).unwrap();
        let mut command = frr_netns.command(BGPD);
        command
            .args(["-f", config.to_str().unwrap(), "-Z", "-S", "-P", "0"])
            .arg("-i")
            .arg(dir.path().join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(dir.path())
            .args(["--log", "stdout", "--log-level", "debug"]);
        let bgpd = Daemon::spawn(&frr_netns, command, &dir.path().join("bgpd.log"));
        Self {
            netns,
            _frr_netns: frr_netns,
            link,
            bgpd,
            dir,
        }
    }

    fn vty_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `vtysh` output for `commands` (one `-c` each), against this bgpd only.
    fn vtysh(&self, commands: &[&str]) -> String {
        let mut command = Command::new("vtysh");
        command
            .arg("--vty_socket")
            .arg(self.vty_dir())
            .args(["-d", "bgpd"]);
        for c in commands {
            command.args(["-c", c]);
        }
        let output = command.output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A `vtysh` JSON answer (`Value::Null` when it is not JSON yet).
    fn json(&self, command: &str) -> Value {
        serde_json::from_str(&self.vtysh(&[command])).unwrap_or(Value::Null)
    }

    /// FRR's BGP table entry of `prefix` (`show bgp ipv4|ipv6 unicast json`).
    fn route(&self, prefix: &str) -> Option<Value> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let table = self.json(&format!("show bgp {family} unicast json"));
        table["routes"].get(prefix).cloned()
    }

    /// A counter of `messageStats` of the neighbor at `address`.
    fn message_stat(&self, address: IpAddr, counter: &str) -> u64 {
        let json = self.json(&format!("show bgp neighbors {address} json"));
        json[address.to_string()]["messageStats"][counter]
            .as_u64()
            .unwrap_or_else(|| panic!("no messageStats.{counter} for {address}: {json}"))
    }

    fn peers(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.link.b4), IpAddr::V6(self.link.b6)]
    }

    fn router(&self) -> Router {
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
            "---- bgpd log (tail)\n{}\n---- show bgp summary\n{}",
            tail(&self.bgpd.log(), 60),
            self.vtysh(&["show bgp summary"])
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for both of FRR's routes in our Loc-RIB, and both of ours at FRR.
async fn routes_exchanged(t: &Frr, router: &Router, context: impl Fn() -> String + Copy) {
    for prefix in [THEIRS_V4, THEIRS_V6] {
        eventually(
            &format!("{prefix} from frr in the loc-rib"),
            WAIT,
            async || paths(router, prefix).await.ok_or("absent".to_string()),
            context,
        )
        .await;
    }
    for prefix in OURS {
        eventually(
            &format!("{prefix} at frr"),
            WAIT,
            async || t.route(prefix).ok_or_else(|| "absent".to_string()),
            context,
        )
        .await;
    }
}

#[test]
fn ipv4_and_ipv6_routes_cross_both_ways_and_withdrawals_follow() {
    if !frr_available() {
        return;
    }
    let t = Frr::new();
    let context = || t.context();
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;
        routes_exchanged(&t, &router, context).await;

        for (prefix, hop) in [
            (THEIRS_V4, IpAddr::V4(t.link.b4)),
            (THEIRS_V6, IpAddr::V6(t.link.b6)),
        ] {
            let path = paths(&router, prefix).await.unwrap();
            assert_eq!(path[0].next_hop, Some(hop), "{prefix}: {path:?}");
            assert_eq!(path[0].as_path, vec![PEER_AS], "{prefix}: {path:?}");
        }
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

        // Ours at FRR: our AS path and our next hop of the session's family.
        for (prefix, hop) in [
            (OURS[0], t.link.a4.to_string()),
            (OURS[1], t.link.a6.to_string()),
        ] {
            let entry = t.route(prefix).unwrap();
            let path = &entry[0];
            assert_eq!(
                path["path"],
                Value::String(TWILL_AS.to_string()),
                "{prefix}: {entry}"
            );
            let hops: Vec<&str> = path["nexthops"]
                .as_array()
                .map(|a| a.iter().filter_map(|h| h["ip"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                hops.contains(&hop.as_str()),
                "{prefix} next hop {hop}: {entry}"
            );
        }
        // One family per session: each prefix came over its family's session only.
        for (prefix, session) in [
            (OURS[0], t.link.a4.to_string()),
            (OURS[1], t.link.a6.to_string()),
        ] {
            let entry = t.route(prefix).unwrap();
            let from: Vec<&str> = entry
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["peerId"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(from, [session.as_str()], "{prefix}: {entry}");
        }

        // FRR withdraws: gone from our Loc-RIB and kernel.
        t.vtysh(&[
            "configure terminal",
            &format!("router bgp {PEER_AS}"),
            "address-family ipv4 unicast",
            &format!("no network {THEIRS_V4}"),
            "exit-address-family",
            "address-family ipv6 unicast",
            &format!("no network {THEIRS_V6}"),
        ]);
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

        // We withdraw: gone from FRR.
        router.set_originated(Vec::new());
        for prefix in OURS {
            eventually(
                &format!("{prefix} withdrawn at frr"),
                WAIT,
                async || match t.route(prefix) {
                    Some(entry) => Err(entry.to_string()),
                    None => Ok(()),
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
    if !frr_available() {
        return;
    }
    let t = Frr::new();
    let context = || t.context();
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;
        routes_exchanged(&t, &router, context).await;

        // `soft in`: FRR sends ROUTE-REFRESH; we send our routes again.
        for (peer, prefix) in [
            (IpAddr::V4(t.link.a4), OURS[0]),
            (IpAddr::V6(t.link.a6), OURS[1]),
        ] {
            let refreshes = t.message_stat(peer, "routeRefreshSent");
            let updates = t.message_stat(peer, "updatesRecv");
            t.vtysh(&[&format!("clear bgp {peer} soft in")]);
            eventually(
                &format!("our routes again at frr from {peer} after its route refresh"),
                WAIT,
                async || {
                    let (r, u) = (
                        t.message_stat(peer, "routeRefreshSent"),
                        t.message_stat(peer, "updatesRecv"),
                    );
                    if r > refreshes && u > updates {
                        Ok(())
                    } else {
                        Err(format!(
                            "refreshes sent {refreshes} -> {r}, updates received {updates} -> {u}"
                        ))
                    }
                },
                context,
            )
            .await;
            assert!(t.route(prefix).is_some(), "{prefix} after the refresh");
        }

        // `soft out`: FRR sends its routes again; they are re-received.
        for (peer, prefix) in [
            (IpAddr::V4(t.link.a4), THEIRS_V4),
            (IpAddr::V6(t.link.a6), THEIRS_V6),
        ] {
            let before = router.stats().await.updates_in;
            t.vtysh(&[&format!("clear bgp {peer} soft out")]);
            eventually(
                &format!("{prefix} re-received after frr's soft out to {peer}"),
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
fn frozen_bgpd_is_detected_within_the_hold_time_and_the_session_recovers() {
    if !frr_available() {
        return;
    }
    let t = Frr::new();
    let context = || t.context();
    let v4 = t.peers()[0];
    block_on_in(&t.netns, || async {
        let router = t.router();
        established(&router, &t.peers(), context).await;
        routes_exchanged(&t, &router, context).await;

        frozen_peer_is_detected_and_recovers(&router, &t.bgpd, "bgpd", v4, THEIRS_V4, context)
            .await;
        router.shutdown().await;
    });
}
