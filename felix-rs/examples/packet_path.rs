//! Packet-path cost of a 10,000-policy ruleset (root): the time of a new
//! TCP connection and bulk TCP throughput between two pods on one node,
//! with the ruleset installed, with a conntrack-only table, and with no
//! ruleset, in the same run.
//!
//! Each of the three is its own node on one fabric, with its own server
//! and client pod, so that all three exist at once and are measured
//! interleaved: connections are timed one by one in batches of 20,
//! rotating between the nodes batch by batch (3,000 per node), and bulk
//! streams rotate the same way; medians are reported. Load from other
//! work on the machine then falls on all three alike.
//!
//! The policed node carries the scale workload (250 local and 10,000
//! remote endpoints, N policies; first argument, default 10,000) plus the
//! two real pods: the server is labelled `app1` (five policies, fifteen
//! rules apply to its ingress), the client `app2`, a peer those rules allow
//! on port 80. Every new connection is evaluated through the server's chain
//! and the client's; established packets are accepted by the first
//! conntrack rule.
//!
//! Run: `cargo run --release -p felix-rs --example packet_path [-- POLICIES SECONDS]`
//! (SECONDS: each bulk stream, default 1; five per node).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{APPS, LOCAL, REMOTE};
use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, render, script};
use twill_api::endpoint::WorkloadEndpoint;
use twill_integration::{Fabric, Pod};

const PORT: u16 = 80;
/// Connections per batch.
const BATCH: usize = 20;
/// Connection batches per node.
const BATCHES: usize = 150;
/// Bulk streams per node.
const STREAMS: usize = 5;

/// Conntrack and nothing else: what any stateful ruleset costs, to tell
/// conntrack's share from the policies'.
const CONNTRACK_ONLY: &str = "add table inet twill
add chain inet twill forward { type filter hook forward priority 0 ; policy accept ; }
add rule inet twill forward ct state established,related accept
";

/// The real pod as a WorkloadEndpoint labelled `app{app}`.
fn pod_endpoint(pod: &Pod, name: &str, ip: Ipv4Addr, app: usize) -> Update {
    let mut wep: WorkloadEndpoint = common::endpoint(0, "node1", app);
    wep.metadata.name = format!("node1-k8s-{name}-eth0");
    wep.spec.interface_name = pod.host_link().to_string();
    wep.spec.ip_networks = vec![format!("{ip}/32")];
    Update::WorkloadEndpointUpserted(Box::new(wep))
}

/// The time of each of [`BATCH`] sequential connections to `server` (the
/// server closes first, keeping TIME_WAIT on its side), in microseconds.
fn connect_times(client: &Pod, server: Ipv4Addr) -> Vec<f64> {
    let target = SocketAddr::from((server, PORT));
    client
        .run(move || {
            (0..BATCH)
                .map(|_| {
                    let start = Instant::now();
                    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                        .expect("connect");
                    let _ = stream.read(&mut [0u8; 1]);
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect()
        })
        .expect("client namespace")
}

/// One connection writing for `seconds`: Gbit/s.
fn throughput(client: &Pod, server: Ipv4Addr, seconds: f64) -> f64 {
    let target = SocketAddr::from((server, PORT + 1));
    client
        .run(move || {
            let mut stream = TcpStream::connect(target).expect("connect");
            let buf = vec![0x5au8; 256 * 1024];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed().as_secs_f64() < seconds {
                stream.write_all(&buf).expect("write");
                sent += buf.len() as u64;
            }
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
            let mut ack = [0u8; 8];
            stream.read_exact(&mut ack).expect("server count");
            assert_eq!(u64::from_be_bytes(ack), sent, "every byte arrived");
            sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
        })
        .expect("client namespace")
}

/// Servers in the server pod: PORT closes each connection at once; PORT+1
/// counts bytes to EOF and answers with the count.
fn serve(server: &Pod, ip: Ipv4Addr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let server = server.clone();
    std::thread::spawn(move || {
        server
            .run(move || {
                let accept = TcpListener::bind((ip, PORT)).expect("bind");
                let bulk = TcpListener::bind((ip, PORT + 1)).expect("bind");
                std::thread::scope(|scope| {
                    let stop_accept = Arc::clone(&stop);
                    scope.spawn(move || {
                        for stream in accept.incoming() {
                            if stop_accept.load(Ordering::Relaxed) {
                                break;
                            }
                            drop(stream);
                        }
                    });
                    for stream in bulk.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut stream = stream.expect("accept");
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut total = 0u64;
                        loop {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => total += n as u64,
                            }
                        }
                        let _ = stream.write_all(&total.to_be_bytes());
                    }
                });
            })
            .expect("server namespace");
    })
}

/// One node with a server and a client pod, under one kind of ruleset.
struct Bed {
    what: String,
    node: twill_integration::Node,
    server: Pod,
    client: Pod,
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
}

impl Bed {
    fn new(fabric: &Fabric, index: u8, what: String) -> Self {
        let node = fabric.add_node(&format!("pp{index}")).expect("node");
        let (server_ip, client_ip) = (
            Ipv4Addr::new(10, 200, index, 1),
            Ipv4Addr::new(10, 200, index, 2),
        );
        let server = node
            .add_pod(&format!("srv{index}"), server_ip)
            .expect("server pod");
        let client = node
            .add_pod(&format!("cli{index}"), client_ip)
            .expect("client pod");
        client
            .sysctl("net/ipv4/ip_local_port_range", "1024 65000")
            .expect("port range");
        Self {
            what,
            node,
            server,
            client,
            server_ip,
            client_ip,
        }
    }
}

/// The scale ruleset with `bed`'s two pods in it, as nft text.
fn policed_ruleset(bed: &Bed, policies: usize) -> String {
    let mut graph = CalcGraph::new("node1");
    for i in 0..LOCAL {
        graph
            .on_update(Update::WorkloadEndpointUpserted(Box::new(
                common::endpoint(i, "node1", i % APPS),
            )))
            .expect("valid");
    }
    for i in LOCAL..LOCAL + REMOTE {
        graph
            .on_update(Update::WorkloadEndpointUpserted(Box::new(
                common::endpoint(i, "node2", i % APPS),
            )))
            .expect("valid");
    }
    for i in 0..policies {
        graph
            .on_update(Update::GlobalPolicyUpserted(Box::new(common::policy(i))))
            .expect("valid");
    }
    graph
        .on_update(pod_endpoint(&bed.server, "srv", bed.server_ip, 1))
        .expect("valid");
    graph
        .on_update(pod_endpoint(&bed.client, "cli", bed.client_ip, 2))
        .expect("valid");
    let ruleset = render(&graph, &RenderConfig::default());
    let server_chain = format!("to-{}", bed.server.host_link());
    println!(
        "{policies} policies: {} chains, {} rules, {} sets; server ingress chain {} rules",
        ruleset.chains.len(),
        ruleset.rule_count(),
        ruleset.sets.len(),
        ruleset.chains[&server_chain].rules.len()
    );
    script(&plan(&ruleset, &Ruleset::default()))
}

/// The `q` quantile of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let policies: usize = args.next().map_or(10_000, |a| a.parse().expect("a number"));
    let seconds: f64 = args.next().map_or(1.0, |a| a.parse().expect("seconds"));
    if !twill_integration::require_root() {
        return;
    }
    let fabric = Fabric::new().expect("fabric");
    let beds = [
        Bed::new(&fabric, 1, "no ruleset".into()),
        Bed::new(&fabric, 2, "conntrack-only table".into()),
        Bed::new(&fabric, 3, format!("{policies} policies")),
    ];
    beds[1]
        .node
        .nft(CONNTRACK_ONLY)
        .expect("conntrack-only table loads");
    beds[2]
        .node
        .nft(&policed_ruleset(&beds[2], policies))
        .expect("ruleset loads");

    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = beds
        .iter()
        .map(|b| serve(&b.server, b.server_ip, Arc::clone(&stop)))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for bed in &beds {
        connect_times(&bed.client, bed.server_ip); // warm-up
    }

    let mut times = vec![Vec::new(); beds.len()];
    for round in 0..BATCHES {
        for i in 0..beds.len() {
            let i = (i + round) % beds.len();
            times[i].extend(connect_times(&beds[i].client, beds[i].server_ip));
        }
    }
    let mut bulk = vec![Vec::new(); beds.len()];
    for round in 0..STREAMS {
        for i in 0..beds.len() {
            let i = (i + round) % beds.len();
            bulk[i].push(throughput(&beds[i].client, beds[i].server_ip, seconds));
        }
    }
    for values in times.iter_mut().chain(bulk.iter_mut()) {
        values.sort_by(f64::total_cmp);
    }
    let rate = |i: usize| 1e6 / quantile(&times[i], 0.5);
    let gbits = |i: usize| quantile(&bulk[i], 0.5);
    println!(
        "ruleset              | connect µs p50 / p90 | conn/s at p50 | vs none | bulk Gbit/s (median of {STREAMS}) | vs none"
    );
    for (i, bed) in beds.iter().enumerate() {
        println!(
            "{:20} | {:8.1} / {:8.1} | {:13.0} | {:5.1} % | {:10.2} | {:5.1} %",
            bed.what,
            quantile(&times[i], 0.5),
            quantile(&times[i], 0.9),
            rate(i),
            100.0 * rate(i) / rate(0),
            gbits(i),
            100.0 * gbits(i) / gbits(0),
        );
    }

    // Stop the servers: flag, then one connection to each to wake accept.
    stop.store(true, Ordering::Relaxed);
    for bed in &beds {
        let server_ip = bed.server_ip;
        let _ = bed.client.run(move || {
            for port in [PORT, PORT + 1] {
                let _ = TcpStream::connect_timeout(
                    &SocketAddr::from((server_ip, port)),
                    Duration::from_secs(1),
                );
            }
        });
    }
    for server in servers {
        server.join().expect("servers stop");
    }
}
