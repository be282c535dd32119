//! Reliability in the lab: each daemon killed (SIGKILL) and restarted
//! while a TCP stream crosses its node, and a node removed from the
//! cluster. Root tests driving the `twill-lab` binary with Twill's real
//! daemons; they print `skipped: needs root` otherwise. Build the daemons
//! first: `cargo build -p felix-rs -p bgp-speaker -p twill-ipam -p
//! twill-cni`.

#![allow(clippy::unwrap_used)] // Setup failures panic, which fails the test.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use twill_api::ipam::{BlockAffinitySpec, IPAMBlockSpec, IPAMHandleSpec};

use common::{TestLab, ready};

/// The longest the stream may go without an echo.
const MAX_GAP: Duration = Duration::from_secs(2);
/// The port the test's echo server listens on in pod B.
const ECHO_PORT: u16 = 7000;

/// What the stream has seen so far.
#[derive(Debug)]
struct Stats {
    echoed: u64,
    last: Instant,
    max_gap: Duration,
    error: Option<String>,
}

/// A long-lived TCP connection from one pod to another: the client writes
/// a counter every 10 ms and reads it back from the server's echo.
struct Stream {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    threads: Vec<JoinHandle<()>>,
}

impl Stream {
    fn start(client_netns: &str, server_netns: &str, server: Ipv4Addr) -> Self {
        let listener = twill_lab::sys::run_in_netns(server_netns, || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, ECHO_PORT))
        })
        .unwrap()
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server_stop = Arc::clone(&stop);
        let echo = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 1024];
            while !server_stop.load(Ordering::Relaxed) {
                match conn.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        });
        let address = SocketAddr::from((server, ECHO_PORT));
        let mut conn = twill_lab::sys::run_in_netns(client_netns, || {
            TcpStream::connect_timeout(&address, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let stats = Arc::new(Mutex::new(Stats {
            echoed: 0,
            last: Instant::now(),
            max_gap: Duration::ZERO,
            error: None,
        }));
        let client_stats = Arc::clone(&stats);
        let client_stop = Arc::clone(&stop);
        let client = std::thread::spawn(move || {
            let mut counter = 0u64;
            while !client_stop.load(Ordering::Relaxed) {
                counter += 1;
                let mut back = [0u8; 8];
                let result = conn
                    .write_all(&counter.to_be_bytes())
                    .and_then(|()| conn.read_exact(&mut back));
                let mut stats = client_stats.lock().unwrap();
                match result {
                    Ok(()) if u64::from_be_bytes(back) == counter => {
                        let now = Instant::now();
                        stats.max_gap = stats.max_gap.max(now - stats.last);
                        stats.last = now;
                        stats.echoed = counter;
                    }
                    Ok(()) => {
                        stats.error = Some(format!(
                            "echo out of order: sent {counter}, got {}",
                            u64::from_be_bytes(back)
                        ));
                        return;
                    }
                    Err(e) => {
                        stats.error = Some(format!("after {} echoes: {e}", stats.echoed));
                        return;
                    }
                }
                drop(stats);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            stats,
            threads: vec![echo, client],
        }
    }

    fn echoed(&self) -> u64 {
        self.stats.lock().unwrap().echoed
    }

    /// Waits until `more` further echoes arrive, then checks the stream
    /// never broke nor stalled for longer than [`MAX_GAP`].
    fn assert_flowing(&self, what: &str, more: u64) {
        let start = self.echoed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.echoed() < start + more && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let stats = self.stats.lock().unwrap();
        eprintln!(
            "stream {what}: {} echoes, longest gap so far {:?}",
            stats.echoed, stats.max_gap
        );
        assert_eq!(stats.error, None, "{what}: the stream broke");
        assert!(
            stats.echoed >= start + more,
            "{what}: the stream stalled at {} echoes",
            stats.echoed
        );
        assert!(
            stats.max_gap < MAX_GAP,
            "{what}: the stream stalled for {:?}",
            stats.max_gap
        );
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

/// The /26 block holding `address` (the lab's pool uses /26 blocks).
fn block_of(address: Ipv4Addr) -> String {
    let bits = u32::from(address) & !0x3f;
    format!("{}/26", Ipv4Addr::from(bits))
}

fn routes(netns: &str) -> String {
    twill_lab::sys::ip(netns, &["-4", "route", "show"]).unwrap()
}

fn routes_to(netns: &str, block: &str, address: Ipv4Addr) -> Vec<String> {
    let host = format!("{address} ");
    routes(netns)
        .lines()
        .filter(|l| l.starts_with(&format!("{block} ")) || l.starts_with(&host))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_tcp_stream_survives_daemon_kills_and_a_removed_node_is_reclaimed() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let status = lab.ok(&["up", "--nodes", "3", "--tor", "bird"]);
    assert_eq!(status.matches("Established").count(), 3, "{status}");
    lab.ok(&["pod", "add", "rel/a", "--node", "n1"]);
    lab.ok(&["pod", "add", "rel/b", "--node", "n2"]);
    let state = lab.state();
    let a = state.pod("rel/a").unwrap().clone();
    let b = state.pod("rel/b").unwrap().clone();
    let b_block = block_of(b.address);
    let stream = Stream::start(&a.netns, &b.netns, b.address);
    stream.assert_flowing("before any restart", 50);

    for (node, daemon) in [
        ("n2", "felix"),
        ("n2", "ipam"),
        ("n2", "bgp"),
        ("n1", "felix"),
    ] {
        let what = format!("{daemon} on {node} killed and restarted");
        let old = lab.state().node(node).unwrap().pids[daemon];
        lab.ok(&["restart", node, daemon, "--kill"]);
        let new = lab.state().node(node).unwrap().pids[daemon];
        assert_ne!(old, new, "{what}: the state file has the new pid");
        assert!(
            !twill_lab::sys::alive(old),
            "{what}: the old process is gone"
        );
        assert!(twill_lab::sys::alive(new), "{what}: the new process runs");
        // A second of traffic after the daemon is back.
        stream.assert_flowing(&what, 100);
        match daemon {
            "bgp" => {
                let bgp = lab.open().bgp_status("n2").unwrap();
                assert_eq!(bgp.peers.len(), 3, "{what}: n1, n3 and the ToR: {bgp:?}");
                for peer in &bgp.peers {
                    assert_eq!(peer.state, "Established", "{what}: {peer:?}");
                }
                let n1 = routes_to(&lab.netns("node-n1"), &b_block, b.address);
                assert!(
                    n1.iter().any(|r| r.contains("via 192.0.2.11 ")),
                    "{what}: n1 routes {b_block} to n2: {n1:?}"
                );
            }
            "ipam" => {
                let out = lab.ok(&["pod", "add", "rel/after-ipam", "--node", "n2"]);
                assert!(
                    out.contains(": 10.244."),
                    "{what}: a new pod's address: {out}"
                );
            }
            _ => {}
        }
    }

    // Node removal: n3 with a pod on it.
    lab.ok(&["pod", "add", "rel/z", "--node", "n3"]);
    let z = lab.state().pod("rel/z").unwrap().clone();
    let z_block = block_of(z.address);
    let handle = format!("k8s-pod-network.{}", z.container_id);
    let observers = [lab.netns("node-n1"), lab.netns("node-n2"), lab.netns("tor")];
    // The nodes route to n3 directly; the ToR may have picked another
    // node's re-advertisement of the block.
    for (netns, via) in observers
        .iter()
        .zip(["via 192.0.2.12 ", "via 192.0.2.12 ", "via "])
    {
        let before = routes_to(netns, &z_block, z.address);
        assert!(
            before.iter().any(|r| r.contains(via)),
            "{netns} routes {z_block} ({via}) before the removal: {before:?}"
        );
    }
    lab.ok(&["node", "remove", "n3"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    for netns in &observers {
        loop {
            let left = routes_to(netns, &z_block, z.address);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{netns} still routes to n3's block {z_block}: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        !lab.namespaces().contains(&lab.netns("node-n3")),
        "n3's namespace is gone"
    );
    assert!(
        !lab.namespaces().contains(&z.netns),
        "the pod on n3 is gone"
    );
    let status = lab.ok(&["status"]);
    assert!(status.contains("removed nodes: n3"), "{status}");
    assert!(
        status.contains("lab ") && status.contains(": 2 nodes"),
        "{status}"
    );

    let db = twill_store::SqliteStore::open(lab.root.join(&lab.name).join("datastore.db")).unwrap();
    let affinities = twill_ipam::store::list::<BlockAffinitySpec>(&db).unwrap();
    let n3: Vec<_> = affinities
        .iter()
        .filter(|a| a.object.spec.node == "n3")
        .map(|a| a.object.spec.cidr.clone())
        .collect();
    assert_eq!(n3, Vec::<String>::new(), "affinities of n3 are released");
    let blocks = twill_ipam::store::list::<IPAMBlockSpec>(&db).unwrap();
    for block in &blocks {
        let spec = &block.object.spec;
        assert_ne!(
            spec.affinity.as_deref(),
            Some("host:n3"),
            "block {} is no longer n3's",
            spec.cidr
        );
        assert!(
            !spec
                .attributes
                .iter()
                .any(|a| a.handle_id.as_deref() == Some(handle.as_str())),
            "block {} holds no allocation of n3's pod ({handle})",
            spec.cidr
        );
    }
    let handles = twill_ipam::store::list::<IPAMHandleSpec>(&db).unwrap();
    assert!(
        !handles.iter().any(|h| h.object.spec.handle_id == handle),
        "the handle {handle} is gone"
    );
    stream.assert_flowing("after removing n3", 50);
    stream.stop();
    let pids = lab.pids();
    lab.ok(&["down"]);
    lab.assert_gone(&pids);
}

#[test]
fn a_lab_with_the_frr_tor_routes_pods_across_nodes_and_drops_a_removed_node() {
    if !ready()
        || !twill_integration::require_programs(
            &["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh"],
            "frr",
        )
    {
        return;
    }
    let lab = TestLab::new();
    let status = lab.ok(&["up", "--nodes", "3", "--tor", "frr"]);
    assert!(status.contains("ToR frr"), "{status}");
    lab.ok(&[
        "pod",
        "add",
        "frr/server",
        "--node",
        "n1",
        "--ports",
        "8080",
    ]);
    lab.ok(&["pod", "add", "frr/client", "--node", "n2"]);
    lab.ok(&["pod", "add", "frr/other", "--node", "n3", "--ports", "8080"]);
    for (from, to) in [
        ("frr/client", "frr/server"),
        ("frr/client", "frr/other"),
        ("frr/other", "frr/server"),
    ] {
        let out = lab.ok(&["probe", from, to]);
        assert!(out.starts_with("allow"), "{from} -> {to}: {out}");
    }
    // FRR learned every node's block and zebra put it in the ToR's kernel.
    let state = lab.state();
    let tor = routes(&lab.netns("tor"));
    for pod in &state.pods {
        let block = block_of(pod.address);
        assert!(
            tor.lines()
                .any(|l| l.starts_with(&format!("{block} ")) && l.contains("proto bgp")),
            "the ToR routes {block}: {tor}"
        );
    }
    let other = state.pod("frr/other").unwrap().clone();
    let other_block = block_of(other.address);
    lab.ok(&["node", "remove", "n3"]);
    let tor = routes(&lab.netns("tor"));
    assert!(
        !tor.lines()
            .any(|l| l.starts_with(&format!("{other_block} ")) || l.contains("192.0.2.12")),
        "the ToR dropped n3's block {other_block}: {tor}"
    );
    let out = lab.ok(&["probe", "frr/client", "frr/server"]);
    assert!(out.starts_with("allow"), "after removing n3: {out}");
    let pids = lab.pids();
    lab.ok(&["down"]);
    lab.assert_gone(&pids);
}
