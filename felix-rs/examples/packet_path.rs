//! Packet-path cost of a 10,000-policy ruleset (root): new TCP connections
//! per second and bulk TCP throughput between two pods on one node, with
//! the ruleset installed and with no ruleset, in the same run.
//!
//! The node carries the scale workload (250 local and 10,000 remote
//! endpoints, N policies; first argument, default 10,000) plus the two real
//! pods: the server is labelled `app1` (five policies, fifteen rules apply
//! to its ingress), the client `app2`, a peer those rules allow on port 80.
//! Every new connection is evaluated through the server's chain and the
//! client's; established packets are accepted by the first conntrack rule.
//!
//! Run: `cargo run --release -p felix-rs --example packet_path [-- POLICIES SECONDS]`.

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

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const PORT: u16 = 80;

/// (connections/s, Gbit/s) without and with the ruleset.
type Row = ((f64, f64), (f64, f64));

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

/// Connect-and-close loop for `seconds`: connections per second.
fn connection_rate(client: &Pod, seconds: f64) -> f64 {
    let target = SocketAddr::from((SERVER_IP, PORT));
    client
        .run(move || {
            let start = Instant::now();
            let mut done = 0u64;
            while start.elapsed().as_secs_f64() < seconds {
                let mut stream =
                    TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect");
                // The server closes first (its side keeps TIME_WAIT): read EOF.
                let mut buf = [0u8; 1];
                let _ = stream.read(&mut buf);
                done += 1;
            }
            done as f64 / start.elapsed().as_secs_f64()
        })
        .expect("client namespace")
}

/// One connection writing for `seconds`: Gbit/s.
fn throughput(client: &Pod, seconds: f64) -> f64 {
    let target = SocketAddr::from((SERVER_IP, PORT + 1));
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
fn serve(server: &Pod, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let server = server.clone();
    std::thread::spawn(move || {
        server
            .run(move || {
                let accept = TcpListener::bind((SERVER_IP, PORT)).expect("bind");
                let bulk = TcpListener::bind((SERVER_IP, PORT + 1)).expect("bind");
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

fn main() {
    let mut args = std::env::args().skip(1);
    let policies: usize = args.next().map_or(10_000, |a| a.parse().expect("a number"));
    let seconds: f64 = args.next().map_or(3.0, |a| a.parse().expect("seconds"));
    if !twill_integration::require_root() {
        return;
    }
    let fabric = Fabric::new().expect("fabric");
    let node = fabric.add_node("pp").expect("node");
    let server = node.add_pod("srv", SERVER_IP).expect("server pod");
    let client = node.add_pod("cli", CLIENT_IP).expect("client pod");
    client
        .sysctl("net/ipv4/ip_local_port_range", "1024 65000")
        .expect("port range");
    client
        .sysctl("net/ipv4/tcp_tw_reuse", "1")
        .expect("tw reuse");

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
        .on_update(pod_endpoint(&server, "srv", SERVER_IP, 1))
        .expect("valid");
    graph
        .on_update(pod_endpoint(&client, "cli", CLIENT_IP, 2))
        .expect("valid");
    let ruleset = render(&graph, &RenderConfig::default());
    let text = script(&plan(&ruleset, &Ruleset::default()));
    let server_chain = format!("to-{}", server.host_link());
    println!(
        "{policies} policies: {} chains, {} rules, {} sets; server ingress chain {} rules",
        ruleset.chains.len(),
        ruleset.rule_count(),
        ruleset.sets.len(),
        ruleset.chains[&server_chain].rules.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let servers = serve(&server, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(200));
    connection_rate(&client, 0.5); // warm-up

    let mut rows = Vec::new();
    let mut tracked_rows: Vec<(f64, f64)> = Vec::new();
    for round in 0..2 {
        let _ = node.exec("nft", &["delete", "table", "inet", "twill"]);
        let bare = (
            connection_rate(&client, seconds),
            throughput(&client, seconds),
        );
        node.nft(CONNTRACK_ONLY)
            .expect("conntrack-only table loads");
        let tracked = (
            connection_rate(&client, seconds),
            throughput(&client, seconds),
        );
        let _ = node.exec("nft", &["delete", "table", "inet", "twill"]);
        node.nft(&text).expect("ruleset loads");
        let policed = (
            connection_rate(&client, seconds),
            throughput(&client, seconds),
        );
        println!(
            "round {round}: no ruleset {:>7.0} conn/s {:>6.2} Gbit/s | conntrack only {:>7.0} conn/s {:>6.2} Gbit/s | {policies} policies {:>7.0} conn/s {:>6.2} Gbit/s",
            bare.0, bare.1, tracked.0, tracked.1, policed.0, policed.1
        );
        rows.push((bare, policed));
        tracked_rows.push(tracked);
    }
    let tracked_conn = tracked_rows.iter().map(|r| r.0).sum::<f64>() / tracked_rows.len() as f64;
    let tracked_bulk = tracked_rows.iter().map(|r| r.1).sum::<f64>() / tracked_rows.len() as f64;
    let mean = |f: fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
    let (bare_conn, bare_bulk) = (mean(|r| r.0.0), mean(|r| r.0.1));
    let (pol_conn, pol_bulk) = (mean(|r| r.1.0), mean(|r| r.1.1));
    println!(
        "mean: new connections {pol_conn:.0}/s vs {bare_conn:.0}/s ({:.1} %), bulk {pol_bulk:.2} vs {bare_bulk:.2} Gbit/s ({:.1} %)",
        100.0 * pol_conn / bare_conn,
        100.0 * pol_bulk / bare_bulk
    );
    println!(
        "against conntrack only: new connections {:.1} %, bulk {:.1} %",
        100.0 * pol_conn / tracked_conn,
        100.0 * pol_bulk / tracked_bulk
    );

    // Stop the servers: flag, then one connection to each to wake accept.
    stop.store(true, Ordering::Relaxed);
    let _ = client.run(|| {
        for port in [PORT, PORT + 1] {
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from((SERVER_IP, port)),
                Duration::from_secs(1),
            );
        }
    });
    servers.join().expect("servers stop");
    let _ = node.exec("nft", &["delete", "table", "inet", "twill"]);
}
