//! What the interop tests with BIRD and FRR share: dual-stack veth links
//! between namespaces, the peer daemons with their control clients and
//! logs, a [`Router`] in Twill's namespace, and waits that fail naming what
//! they waited for.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "tests; each interop test uses its own part"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp_speaker::fsm::State;
use bgp_speaker::router::{Neighbor, Originated, PathSummary, Router, RouterConfig};
use ipnet::IpNet;
use twill_integration::{Background, TestNetns};
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

/// Twill's AS in the eBGP tests.
pub const TWILL_AS: u32 = 64512;
/// The peer's AS in the eBGP tests.
pub const PEER_AS: u32 = 64513;
/// Twill's BGP identifier.
pub const TWILL_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Hold time both sides propose: short, so that expiry is quick to see.
pub const HOLD: Duration = Duration::from_secs(9);
/// The longest wait for anything the peers or the router should do.
pub const WAIT: Duration = Duration::from_secs(30);

/// One point-to-point link: `a` side and `b` side addresses of both families.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// IPv4 address of the `a` end (/30).
    pub a4: Ipv4Addr,
    /// IPv4 address of the `b` end (/30).
    pub b4: Ipv4Addr,
    /// IPv6 address of the `a` end (/64).
    pub a6: Ipv6Addr,
    /// IPv6 address of the `b` end (/64).
    pub b6: Ipv6Addr,
}

impl Link {
    /// Link number `n`: 10.0.n.1–2/30 and fd00:0:0:n::1–2/64.
    pub fn numbered(n: u8) -> Self {
        Self {
            a4: Ipv4Addr::new(10, 0, n, 1),
            b4: Ipv4Addr::new(10, 0, n, 2),
            a6: Ipv6Addr::new(0xfd00, 0, 0, u16::from(n), 0, 0, 0, 1),
            b6: Ipv6Addr::new(0xfd00, 0, 0, u16::from(n), 0, 0, 0, 2),
        }
    }

    /// Wires `a` to `b` with a veth pair `l<n>a`/`l<n>b` and both families'
    /// addresses (no duplicate address detection, so they are usable at once).
    pub fn wire(n: u8, a: &TestNetns, b: &TestNetns) -> Self {
        let link = Self::numbered(n);
        let (name_a, name_b) = (format!("l{n}a"), format!("l{n}b"));
        a.ip(&[
            "link",
            "add",
            &name_a,
            "type",
            "veth",
            "peer",
            "name",
            &name_b,
            "netns",
            b.name(),
        ])
        .unwrap();
        for (netns, name, v4, v6) in [
            (a, &name_a, link.a4, link.a6),
            (b, &name_b, link.b4, link.b6),
        ] {
            netns
                .ip(&["addr", "add", &format!("{v4}/30"), "dev", name])
                .unwrap();
            netns
                .ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    name,
                    "nodad",
                ])
                .unwrap();
            netns.ip(&["link", "set", name, "up"]).unwrap();
        }
        link
    }
}

/// A peer daemon running in its namespace, with its log.
pub struct Daemon {
    process: Background,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` in `netns`, writing stdout and stderr to `log`.
    pub fn spawn(netns: &TestNetns, mut command: Command, log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        Self {
            process: netns.spawn_command(command).unwrap(),
            log: log.to_path_buf(),
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the daemon's process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.process.id());
    }
}

/// BIRD 2 in its namespace, with `birdc` on its control socket.
pub struct Bird {
    /// The daemon.
    pub daemon: Daemon,
    socket: PathBuf,
}

impl Bird {
    /// Starts BIRD in `netns` with `config`; files go to `dir` under `name`.
    pub fn start(netns: &TestNetns, dir: &Path, name: &str, config: &str) -> Self {
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).unwrap();
        let socket = dir.join(format!("{name}.ctl"));
        let mut command = netns.command("bird");
        command
            .args(["-f", "-c", conf.to_str().unwrap(), "-s"])
            .arg(&socket);
        let daemon = Daemon::spawn(netns, command, &dir.join(format!("{name}.log")));
        Self { daemon, socket }
    }

    /// `birdc` output for `args`.
    pub fn birdc(&self, args: &[&str]) -> String {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `birdc show route all <prefix>`.
    pub fn route(&self, prefix: &str) -> String {
        self.birdc(&["show", "route", "all", prefix])
    }

    /// True when BIRD's table has `prefix`.
    pub fn has_route(&self, prefix: &str) -> bool {
        let net: IpNet = prefix.parse().unwrap();
        self.route(prefix)
            .lines()
            .any(|line| line.starts_with(&net.to_string()))
    }

    /// The "received" count of BIRD's import updates for protocol `proto`
    /// and its (only) channel; `Err` with what `birdc` said when it has none.
    pub fn import_updates_received(&self, proto: &str) -> Result<u64, String> {
        let text = self.birdc(&["show", "protocols", "all", proto]);
        text.lines()
            .find(|l| l.trim_start().starts_with("Import updates:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no import update counts for {proto}: {text}"))
    }
}

/// Builds a router in the namespace at `netns` (kernel routes go there):
/// own AS `asn`, identifier `id`, reflector cluster `cluster_id`.
pub fn router(netns: &TestNetns, asn: u32, id: Ipv4Addr, cluster_id: Option<Ipv4Addr>) -> Router {
    let kernel: Arc<dyn Kernel> = Arc::new(
        NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default()).unwrap(),
    );
    Router::start(
        RouterConfig {
            asn,
            router_id: id,
            cluster_id,
            kernel: Some(kernel),
            graceful_restart_time: None,
            stale_sweep_after: Duration::from_secs(60),
        },
        None,
    )
}

/// A peering with `address` (AS `asn`) from `local`, hold time [`HOLD`].
pub fn neighbor(address: IpAddr, local: IpAddr, asn: u32) -> Neighbor {
    let mut n = Neighbor::new(address, asn);
    n.local_address = Some(local);
    n.hold = HOLD;
    n.keepalive = HOLD / 3;
    n
}

/// This node's prefixes, without communities.
pub fn originated(prefixes: &[&str]) -> Vec<Originated> {
    prefixes
        .iter()
        .map(|p| Originated {
            prefix: p.parse().unwrap(),
            communities: Vec::new(),
            large_communities: Vec::new(),
        })
        .collect()
}

/// Runs the future `test` makes on a current-thread runtime inside `netns`
/// (the router's sockets are made there).
pub fn block_on_in<F, Fut>(netns: &TestNetns, test: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: Future,
    Fut::Output: Send,
{
    netns
        .run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(test())
        })
        .unwrap()
}

/// Polls `check` every 100 ms until it gives `Ok`, or panics after `within`
/// naming `what`, the last `Err` and `context()` (e.g. the peer's log).
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!(
                "timed out after {within:?} waiting for {what}; last seen: {last}\n{}",
                context()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The session state of `peer` in `router`.
pub async fn state(router: &Router, peer: IpAddr) -> (State, String) {
    router
        .status()
        .await
        .into_iter()
        .find(|s| s.address == peer)
        .map_or((State::Idle, "not configured".into()), |s| {
            (s.state, s.info)
        })
}

/// Waits until every peer in `peers` is Established.
pub async fn established(router: &Router, peers: &[IpAddr], context: impl Fn() -> String) {
    for peer in peers {
        eventually(
            &format!("the session with {peer} to be Established"),
            WAIT,
            async || match state(router, *peer).await {
                (State::Established, _) => Ok(()),
                other => Err(format!("{other:?}")),
            },
            &context,
        )
        .await;
    }
}

/// Freezes `daemon` (SIGSTOP) and checks that the session with `peer` leaves
/// Established within the hold time, for the hold timer's reason, taking
/// `prefix` out of the Loc-RIB; then thaws it and waits until the session
/// and `prefix` are back. `who` names the daemon in messages.
pub async fn frozen_peer_is_detected_and_recovers(
    router: &Router,
    daemon: &Daemon,
    who: &str,
    peer: IpAddr,
    prefix: &str,
    context: impl Fn() -> String + Copy,
) {
    daemon.signal("STOP");
    let frozen = Instant::now();
    let (down_state, info) = eventually(
        &format!("the session with the frozen {who} to leave Established"),
        HOLD + Duration::from_secs(5),
        async || match state(router, peer).await {
            (State::Established, _) => Err("still Established".to_string()),
            other => Ok(other),
        },
        context,
    )
    .await;
    let detected = frozen.elapsed();
    daemon.signal("CONT");
    // Keepalives every HOLD/3: the last one may have come just before the
    // freeze, so expiry is at most HOLD after it (plus scheduling).
    assert!(
        detected <= HOLD + Duration::from_secs(1),
        "detected after {detected:?} (hold {HOLD:?}): {down_state:?} {info}"
    );
    // NOTIFICATION code 4: Hold Timer Expired (RFC 4271 §4.5).
    assert!(
        info.contains("Error: Hold Timer Expired"),
        "the reason is the hold timer's: {down_state:?} {info}"
    );
    assert!(
        paths(router, prefix).await.is_none(),
        "routes of the dead session are gone"
    );

    established(router, &[peer], context).await;
    eventually(
        &format!("{who}'s {prefix} back after the session recovered"),
        WAIT,
        async || paths(router, prefix).await.ok_or("absent".to_string()),
        context,
    )
    .await;
    eprintln!("hold timer expiry detected after {detected:?} (hold {HOLD:?})");
}

/// The Loc-RIB paths of `prefix`, when it has any.
pub async fn paths(router: &Router, prefix: &str) -> Option<Vec<PathSummary>> {
    let prefix: IpNet = prefix.parse().unwrap();
    router
        .loc_rib()
        .await
        .into_iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, paths)| paths)
}

/// `ip route show proto 202` for one family in `netns`.
pub fn kernel_routes(netns: &TestNetns, ipv6: bool) -> String {
    let family = if ipv6 { "-6" } else { "-4" };
    netns
        .ip(&[family, "route", "show", "proto", "202"])
        .unwrap_or_default()
}

/// True when `table` has a line with every one of `parts`.
pub fn has_line(table: &str, parts: &[&str]) -> bool {
    table
        .lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}
