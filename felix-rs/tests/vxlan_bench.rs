//! Routing benchmarks (root; ignored by default, they print figures):
//!
//! ```text
//! cargo test -p felix-rs --test vxlan_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! * `throughput_and_connection_rate`: one TCP stream blasting for a few
//!   seconds, and sequential connect/close cycles, between two nodes of one
//!   subnet over three paths measured in the same run: node to node on the
//!   fabric (bare veth and bridge), pod to pod routed natively (a
//!   CrossSubnet pool, same subnet) and pod to pod through VXLAN (an Always
//!   pool). The connection figure is the time of one connect (handshake
//!   through the ruleset and the path) and close, timed one by one in small
//!   batches with the paths interleaved batch by batch, so that load from
//!   elsewhere on the machine falls on all three alike; its median gives
//!   the sequential rate. Medians, because a two-core machine running
//!   other work stalls single threads for milliseconds.
//! * `ten_node_convergence`: the time from a tenth node's Node resource
//!   (and its pod's block affinity) appearing in the datastore until pods
//!   on the nine other nodes reach its pod through VXLAN.

#![allow(clippy::unwrap_used)]

mod vxlan_cluster;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use twill_integration::TestNetns;
use vxlan_cluster::*;

const BLAST: Duration = Duration::from_secs(3);
/// Connections per batch.
const BATCH: usize = 20;
/// Batches per path.
const BATCHES: usize = 150;
const PORT: u16 = 9000;

/// A sink that reads and discards, and accepts connections, until stopped.
struct Sink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: IpAddr,
}

impl Sink {
    fn start(netns: &TestNetns, addr: IpAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = netns
            .run(move || {
                let listener = TcpListener::bind((addr, PORT)).unwrap();
                std::thread::spawn(move || {
                    let mut first = true;
                    for stream in listener.incoming() {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        let Ok(mut stream) = stream else { continue };
                        // The first connection is the blast; the others
                        // only count. The client closes first, so the
                        // TIME_WAIT sockets are the client's (which reuses
                        // them), never a stale one here refusing a SYN.
                        if std::mem::take(&mut first) {
                            std::thread::spawn(move || {
                                let mut buf = vec![0u8; 1 << 17];
                                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                            });
                        } else {
                            let _ = stream.read(&mut [0u8; 1]);
                        }
                    }
                })
            })
            .unwrap();
        Self {
            stop,
            thread: Some(thread),
            addr,
        }
    }

    fn stop(&mut self, client: &TestNetns) {
        self.stop.store(true, Ordering::Relaxed);
        let addr = self.addr;
        // Wakes the accept loop.
        let _ = client.run(move || TcpStream::connect_timeout(&(addr, PORT).into(), WAIT));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Gbit/s of one stream for [`BLAST`] from `client` to `addr`.
fn throughput(client: &TestNetns, addr: IpAddr) -> f64 {
    client
        .run(move || {
            let mut stream = TcpStream::connect_timeout(&(addr, PORT).into(), WAIT).unwrap();
            let buf = vec![0x5a_u8; 1 << 17];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < BLAST {
                stream.write_all(&buf).unwrap();
                sent += buf.len() as u64;
            }
            sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
        })
        .unwrap()
}

/// The time of each of [`BATCH`] sequential connect/close cycles from
/// `client` to `addr`, in microseconds.
fn connect_times(client: &TestNetns, addr: IpAddr) -> Vec<f64> {
    client
        .run(move || {
            (0..BATCH)
                .map(|_| {
                    let start = Instant::now();
                    drop(TcpStream::connect_timeout(&(addr, PORT).into(), WAIT).unwrap());
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect()
        })
        .unwrap()
}

/// The `q` quantile of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    values[((values.len() - 1) as f64 * q).round() as usize]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn throughput_and_connection_rate() {
    twill_integration::require_root!();
    let mut c = Cluster::new(
        &[("n1", 0), ("n2", 0)],
        "{cidr: 10.70.0.0/16, vxlanMode: CrossSubnet, blockSize: 26}",
    );
    c.put(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: overlay}
spec: {cidr: 10.71.0.0/16, vxlanMode: Always, blockSize: 26}
",
    );
    let native = (
        c.add_pod_from("na", "n1", &["pool"]),
        c.add_pod_from("nb", "n2", &["pool"]),
    );
    let overlay = (
        c.add_pod_from("va", "n1", &["overlay"]),
        c.add_pod_from("vb", "n2", &["overlay"]),
    );
    c.start_all();
    for (from, to) in [("na", "nb"), ("va", "vb")] {
        let _server = c.pods[to].listen_tcp(8080).unwrap();
        c.eventually(&format!("{from} reaches {to}"), || c.reaches(from, to));
    }
    // Pods get the MTU felix-rs publishes, as twill-cni gives them.
    let mtu = std::fs::read_to_string(c.mtu_file("n1")).unwrap();
    for pod in [&overlay.0, &overlay.1] {
        pod.netns()
            .ip(&["link", "set", pod.link(), "mtu", mtu.trim()])
            .unwrap();
    }
    let n1 = c.nodes["n1"].clone();
    let n2 = c.nodes["n2"].clone();
    let paths: [(&str, &TestNetns, &TestNetns, IpAddr); 3] = [
        (
            "fabric (node to node)",
            n1.netns(),
            n2.netns(),
            IpAddr::V4(n2.ip()),
        ),
        (
            "native (pod to pod)",
            native.0.netns(),
            native.1.netns(),
            native.1.ip(),
        ),
        (
            "vxlan (pod to pod)",
            overlay.0.netns(),
            overlay.1.netns(),
            overlay.1.ip(),
        ),
    ];
    let mut sinks = Vec::new();
    let mut gbits = Vec::new();
    for (_, client, server, addr) in &paths {
        // Sequential connects would otherwise run out of ports in TIME_WAIT.
        client.sysctl("net/ipv4/tcp_tw_reuse", "1").unwrap();
        sinks.push(Sink::start(server, *addr));
        gbits.push(throughput(client, *addr));
    }
    let mut times = vec![Vec::new(); paths.len()];
    for round in 0..BATCHES {
        for i in 0..paths.len() {
            let i = (i + round) % paths.len();
            let (_, client, _, addr) = &paths[i];
            times[i].extend(connect_times(client, *addr));
        }
    }
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    let rate = |i: usize| 1e6 / quantile(&times[i], 0.5);
    println!(
        "path                   | Gbit/s (1 stream) | connect+close µs p50 / p90 | conn/s at p50 | vs fabric"
    );
    for (i, (name, client, _, _)) in paths.iter().enumerate() {
        sinks[i].stop(client);
        println!(
            "{name:22} | {:17.2} | {:10.1} / {:8.1} | {:13.0} | {:.0} %",
            gbits[i],
            quantile(&times[i], 0.5),
            quantile(&times[i], 0.9),
            rate(i),
            100.0 * rate(i) / rate(0)
        );
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn ten_node_convergence() {
    twill_integration::require_root!();
    let nodes: Vec<(String, usize)> = (1..10).map(|i| (format!("n{i}"), i % 2)).collect();
    let refs: Vec<(&str, usize)> = nodes.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let mut c = Cluster::new(
        &refs,
        "{cidr: 10.72.0.0/16, vxlanMode: Always, blockSize: 26}",
    );
    for (name, _) in &nodes {
        c.add_pod(&format!("p-{name}"), name);
    }
    c.start_all();
    let _servers: Vec<_> = nodes
        .iter()
        .map(|(name, _)| c.pods[&format!("p-{name}")].listen_tcp(8080).unwrap())
        .collect();
    for (name, _) in nodes.iter().skip(1) {
        c.eventually("the nine nodes mesh", || {
            c.reaches("p-n1", &format!("p-{name}"))
        });
    }
    // The tenth node: namespaces, Node, pod (its block affinity) and
    // endpoint, then its felix-rs.
    let started = Instant::now();
    c.add_node("n10", 0);
    c.add_pod("p-n10", "n10");
    c.start("n10");
    let written = started.elapsed();
    let target = c.pods["p-n10"].ip();
    let _server = c.pods["p-n10"].listen_tcp(8080).unwrap();
    let mut slowest = Duration::ZERO;
    let clients: Vec<_> = nodes
        .iter()
        .map(|(name, _)| c.pods[&format!("p-{name}")].clone())
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .map(|pod| {
                scope.spawn(move || {
                    while !pod
                        .probe_tcp(target, 8080, Duration::from_millis(100))
                        .unwrap()
                        .is_reachable()
                    {
                        assert!(started.elapsed() < WAIT, "no convergence");
                    }
                    started.elapsed()
                })
            })
            .collect();
        for handle in handles {
            slowest = slowest.max(handle.join().unwrap());
        }
    });
    let converged = slowest.saturating_sub(written);
    println!(
        "10 nodes: every other node reaches the new node's pod {:.0} ms after the new node's \
         Node, block affinity and endpoint were written and its felix-rs started \
         ({:.0} ms including building its namespaces and pod)",
        converged.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
}
