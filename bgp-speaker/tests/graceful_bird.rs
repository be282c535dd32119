//! Interop with BIRD 2 around a restart of Twill's router and a change of
//! import policy, each speaker in its own network namespace:
//!
//! * selection deferral (RFC 4724 §4.1): after our router restarts with
//!   graceful restart, BIRD keeps our routes (stale) and gets them again
//!   only once every peer is up and has sent End-of-RIB — a second BIRD
//!   session held down keeps the first one waiting — and the kernel route
//!   to BIRD's prefix is never deleted meanwhile (`ip monitor route`);
//! * an import filter change re-filters the routes we keep from BIRD:
//!   its routes leave and come back in our Loc-RIB and kernel with no new
//!   UPDATE from BIRD (no ROUTE-REFRESH needed) and the session untouched.
//!
//! Needs root and `bird`/`birdc`; skips otherwise (`TWILL_REQUIRE_ROOT=1`
//! makes a skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod interop_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bgp_speaker::router::{Filter, FilterAction, FilterRule, MatchOperator, Router, RouterConfig};
use interop_support::{
    Bird, Daemon, HOLD, Link, PEER_AS, TWILL_AS, TWILL_ID, WAIT, block_on_in, established,
    eventually, has_line, kernel_routes, neighbor, originated, paths,
};
use twill_integration::{TestNetns, require_root};
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

fn bird_available() -> bool {
    require_root() && twill_integration::require_programs(&["bird", "birdc"], "bird2")
}

const OURS: &str = "10.244.0.0/26";
const THEIRS: &str = "10.98.0.0/24";
const THEIRS_TOO: &str = "10.99.0.0/24";

/// BIRD with two passive eBGP sessions, one per link to Twill: `peer1`
/// exports two static routes, `peer2` (disabled until enabled with birdc)
/// exports nothing. Both restart gracefully (RFC 4724).
fn bird_config(first: &Link, second: &Link) -> String {
    format!(
        r#"router id {b4};
log stderr all;
protocol device {{ }}
protocol static static4 {{ ipv4; route {THEIRS} blackhole; route {THEIRS_TOO} blackhole; }}
protocol bgp peer1 {{
  local {b4} as {PEER_AS};
  neighbor {a4} as {TWILL_AS};
  passive on;
  hold time {hold};
  error wait time 1, 5;
  graceful restart on;
  ipv4 {{ import all; export where proto = "static4"; }};
}}
protocol bgp peer2 {{
  disabled;
  local {b4_2} as {PEER_AS};
  neighbor {a4_2} as {TWILL_AS};
  passive on;
  hold time {hold};
  error wait time 1, 5;
  graceful restart on;
  ipv4 {{ import all; export none; }};
}}
"#,
        a4 = first.a4,
        b4 = first.b4,
        a4_2 = second.a4,
        b4_2 = second.b4,
        hold = HOLD.as_secs(),
    )
}

/// Twill's namespace, BIRD's, two links between them and BIRD running.
struct Setup {
    netns: TestNetns,
    _bird_netns: TestNetns,
    first: Link,
    second: Link,
    bird: Bird,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let netns = TestNetns::new("twill").unwrap();
        let bird_netns = TestNetns::new("bird").unwrap();
        let first = Link::wire(0, &netns, &bird_netns);
        let second = Link::wire(1, &netns, &bird_netns);
        let dir = tempfile::tempdir().unwrap();
        let bird = Bird::start(
            &bird_netns,
            dir.path(),
            "bird",
            &bird_config(&first, &second),
        );
        Self {
            netns,
            _bird_netns: bird_netns,
            first,
            second,
            bird,
            dir,
        }
    }

    fn first_peer(&self) -> IpAddr {
        IpAddr::V4(self.first.b4)
    }

    /// A router in Twill's namespace writing kernel routes, announcing
    /// graceful restart (`graceful_restart`) with this deferral timer.
    fn router(&self, graceful_restart: bool, deferral: Duration, both: bool) -> Router {
        let kernel: Arc<dyn Kernel> = Arc::new(
            NetlinkKernel::open(
                &NetnsPath::from_path(self.netns.path()),
                NftConfig::default(),
            )
            .unwrap(),
        );
        let router = Router::start(
            RouterConfig {
                asn: TWILL_AS,
                router_id: TWILL_ID,
                cluster_id: None,
                kernel: Some(kernel),
                graceful_restart_time: graceful_restart.then_some(Duration::from_secs(120)),
                stale_sweep_after: deferral,
            },
            None,
        );
        let mut neighbors = vec![neighbor(
            self.first_peer(),
            IpAddr::V4(self.first.a4),
            PEER_AS,
        )];
        if both {
            neighbors.push(neighbor(
                IpAddr::V4(self.second.b4),
                IpAddr::V4(self.second.a4),
                PEER_AS,
            ));
        }
        router.set_neighbors(neighbors);
        router.set_originated(originated(&[OURS]));
        router
    }

    fn context(&self) -> String {
        format!(
            "---- bird log\n{}\n---- birdc show protocols\n{}\n---- kernel\n{}",
            self.bird.daemon.log(),
            self.bird.birdc(&["show", "protocols"]),
            kernel_routes(&self.netns, false),
        )
    }

    /// BIRD's "Established" line for `proto` (it carries the time the
    /// session was established).
    fn bird_session(&self, proto: &str) -> Result<String, String> {
        let text = self.bird.birdc(&["show", "protocols", proto]);
        text.lines()
            .find(|l| l.starts_with(proto) && l.contains("Established"))
            .map(str::to_string)
            .ok_or(text)
    }
}

/// The `Since` column (`HH:MM:SS.mmm`) of a `birdc show protocols` line, in
/// milliseconds of the day.
fn since_ms(line: &str) -> u64 {
    let since = line.split_whitespace().nth(4).unwrap();
    let (hms, ms) = since.split_once('.').unwrap();
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms.parse::<u64>().unwrap()
}

#[test]
fn after_a_restart_routes_go_out_only_when_every_peer_has_sent_end_of_rib() {
    if !bird_available() {
        return;
    }
    let t = Setup::new();
    let context = || t.context();
    // Every route change in Twill's namespace, from before the restart on.
    let monitor_log = t.dir.path().join("monitor.log");
    let mut monitor = t.netns.command("ip");
    monitor.args(["-4", "monitor", "route"]);
    let monitor = Daemon::spawn(&t.netns, monitor, &monitor_log);
    block_on_in(&t.netns, || async {
        // A first run: BIRD's route in our kernel, ours at BIRD.
        let router = t.router(true, Duration::from_secs(60), false);
        established(&router, &[t.first_peer()], context).await;
        eventually(
            "bird's route in the kernel",
            WAIT,
            async || {
                let table = kernel_routes(&t.netns, false);
                has_line(&table, &[THEIRS]).then_some(()).ok_or(table)
            },
            context,
        )
        .await;
        eventually(
            "our route at bird",
            WAIT,
            async || {
                t.bird
                    .has_route(OURS)
                    .then_some(())
                    .ok_or_else(|| t.bird.route(OURS))
            },
            context,
        )
        .await;
        // Stop without a NOTIFICATION (graceful restart): BIRD keeps our
        // route, our kernel keeps BIRD's.
        router.shutdown().await;
        let received_before = t.bird.import_updates_received("peer1").unwrap();

        // The restarted router has two peers; the second stays down for now.
        let router = t.router(true, Duration::from_secs(60), true);
        established(&router, &[t.first_peer()], context).await;
        eventually(
            "bird's route (and End-of-RIB) received again",
            WAIT,
            async || {
                paths(&router, THEIRS)
                    .await
                    .map(|_| ())
                    .ok_or("absent".to_string())
            },
            context,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = router.stats().await;
        assert!(stats.selection_deferred, "{stats:?}");
        assert_eq!(
            stats.updates_out, 0,
            "nothing sent while deferring: {stats:?}"
        );
        assert_eq!(
            t.bird.import_updates_received("peer1").unwrap(),
            received_before,
            "bird got no UPDATE while the second peer is down\n{}",
            context()
        );
        assert!(t.bird.has_route(OURS), "bird keeps our stale route");
        assert!(has_line(&kernel_routes(&t.netns, false), &[THEIRS]));

        // The second peer comes up and sends End-of-RIB: the deferral ends.
        let reply = t.bird.birdc(&["enable", "peer2"]);
        assert!(reply.contains("peer2: enabled"), "birdc enable: {reply}");
        eventually(
            "our route sent to bird again",
            WAIT,
            async || {
                let now = t.bird.import_updates_received("peer1")?;
                if now > received_before {
                    Ok(())
                } else {
                    Err(format!(
                        "import updates received {received_before} -> {now}"
                    ))
                }
            },
            context,
        )
        .await;
        let stats = router.stats().await;
        assert!(!stats.selection_deferred, "{stats:?}");
        assert!(t.bird.has_route(OURS), "{}", t.bird.route(OURS));
        eventually(
            "the start-up sweep",
            WAIT,
            async || {
                let stats = router.stats().await;
                stats
                    .startup_swept
                    .then_some(())
                    .ok_or(format!("{stats:?}"))
            },
            context,
        )
        .await;
        assert!(has_line(&kernel_routes(&t.netns, false), &[THEIRS]));
        router.shutdown().await;
    });
    let changes = std::fs::read_to_string(&monitor_log).unwrap();
    drop(monitor);
    assert!(
        !changes
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains(THEIRS)),
        "the kernel route to {THEIRS} was deleted during the restart:\n{changes}"
    );
}

fn reject(prefix: &str) -> Filter {
    let mut rule = FilterRule::new(true, FilterAction::Reject);
    rule.cidr = Some((prefix.parse().unwrap(), MatchOperator::Equal));
    Filter { rules: vec![rule] }
}

#[test]
fn an_import_filter_change_refilters_without_refresh_or_reset() {
    if !bird_available() {
        return;
    }
    let t = Setup::new();
    let context = || t.context();
    block_on_in(&t.netns, || async {
        let router = t.router(false, Duration::from_secs(60), false);
        let peer = t.first_peer();
        established(&router, &[peer], context).await;
        for prefix in [THEIRS, THEIRS_TOO] {
            eventually(
                &format!("{prefix} in the kernel"),
                WAIT,
                async || {
                    let table = kernel_routes(&t.netns, false);
                    has_line(&table, &[prefix]).then_some(()).ok_or(table)
                },
                context,
            )
            .await;
        }
        let session = t.bird_session("peer1").unwrap();
        let since = router.status().await[0].since;
        let updates_in = router.stats().await.updates_in;

        // (import filter, the prefix that must be gone, the one that must be there)
        let steps = [
            (reject(THEIRS), Some(THEIRS), THEIRS_TOO),
            (reject(THEIRS_TOO), Some(THEIRS_TOO), THEIRS),
            (Filter::default(), None, THEIRS),
        ];
        for (import, gone, kept) in steps {
            let mut changed = neighbor(peer, IpAddr::V4(t.first.a4), PEER_AS);
            changed.import = import;
            router.set_neighbors(vec![changed]);
            eventually(
                &format!("{gone:?} out of and {kept} in the loc-rib and kernel"),
                WAIT,
                async || {
                    let table = kernel_routes(&t.netns, false);
                    let rib_ok = paths(&router, kept).await.is_some()
                        && match gone {
                            Some(g) => paths(&router, g).await.is_none(),
                            None => paths(&router, THEIRS_TOO).await.is_some(),
                        };
                    let kernel_ok =
                        has_line(&table, &[kept]) && gone.is_none_or(|g| !has_line(&table, &[g]));
                    (rib_ok && kernel_ok).then_some(()).ok_or(table)
                },
                context,
            )
            .await;
        }
        // BIRD prints `Since` from its monotonic clock at display time: the
        // same session can read a millisecond apart.
        let after = t.bird_session("peer1").unwrap();
        let (was, is) = (since_ms(&session), since_ms(&after));
        assert!(
            was.abs_diff(is) < 500,
            "bird's session was not re-established: {session:?} -> {after:?}\n{}",
            t.context()
        );
        // `since` is rebuilt from a monotonic instant: equal up to the
        // jitter of reading two clocks on a busy machine.
        let now = router.status().await[0].since;
        let drift = now.duration_since(since).unwrap_or_else(|e| e.duration());
        assert!(
            drift < Duration::from_secs(1),
            "our session did not change state: {since:?} -> {now:?}"
        );
        let stats = router.stats().await;
        assert_eq!(stats.flaps, 0, "{stats:?}");
        assert_eq!(
            stats.updates_in, updates_in,
            "no UPDATE from bird: the kept routes were re-filtered, not refreshed"
        );
        router.shutdown().await;
    });
}
