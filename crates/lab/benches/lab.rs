//! Lab benchmarks (root; a bench binary, not criterion: each figure is a
//! whole-system measurement of seconds, not a hot loop).
//!
//! ```sh
//! cargo build --release -p felix-rs -p bgp-speaker -p twill-ipam -p twill-cni
//! sudo cargo bench -p twill-lab --bench lab
//! ```
//!
//! * `lab up` wall time for 3 and 10 nodes (BIRD ToR, BGP), median of 3.
//! * Pod-add-to-first-allowed-probe latency: a server pod added on another
//!   node than the client, then TCP probes every 10 ms until one connects;
//!   p50/p99 over 100 pods (target: p99 < 1 s).
//! * Memory (VmRSS) of felix-rs, bgp-speaker and twill-ipamd on one node
//!   with 100 pods and 1,000 policies (each selecting one pod's app label,
//!   so every pod has 10) (target: < 100 MB), beside the BIRD ToR's in the
//!   same run; and how long the 1,000 policies take to be programmed.
//!
//! `cargo bench -p twill-lab --bench lab -- up|pods|memory` runs one part.
//!
//! `TWILL_BIN_DIR` names the daemons' directory (default: the release
//! target directory this benchmark was built in).

#![allow(clippy::unwrap_used)] // A benchmark that cannot set up should stop.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use twill_lab::scenario::PortSpec;
use twill_lab::{Encap, Lab, LabOptions, PodRequest, Protocol, Routing, Tor, UpOptions};

fn options(name: &str) -> LabOptions {
    let bin_dir = std::env::var_os("TWILL_BIN_DIR").map_or_else(
        || {
            // target/release/deps/lab-… → target/release
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().to_path_buf()
        },
        PathBuf::from,
    );
    LabOptions {
        name: name.into(),
        state_root: std::env::temp_dir().join("twill-lab-bench"),
        bin_dir: Some(bin_dir),
        listener: vec![std::env::current_exe().unwrap().into(), "listen".into()],
        progress: false,
    }
}

fn up(name: &str, nodes: usize) -> (Lab, Duration) {
    let start = Instant::now();
    let lab = Lab::up(
        options(name),
        &UpOptions {
            nodes: (1..=nodes).map(|i| format!("n{i}")).collect(),
            tor: Tor::Bird,
            encap: Encap::None,
            routing: Some(Routing::Bgp),
        },
    )
    .unwrap();
    (lab, start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench_up(report: &mut String) {
    for nodes in [3, 10] {
        let mut times = Vec::new();
        for run in 0..3 {
            let name = format!("bu{nodes}x{run}");
            let _ = Lab::down(&options(&name));
            let (_lab, took) = up(&name, nodes);
            times.push(took);
            Lab::down(&options(&name)).unwrap();
        }
        times.sort();
        let _ = writeln!(
            report,
            "lab up, {nodes:>2} nodes (BIRD ToR, BGP, sessions Established): median {:.2} s (runs: {})",
            times[1].as_secs_f64(),
            times
                .iter()
                .map(|t| format!("{:.2}", t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn bench_pods(report: &mut String) {
    let name = "bpod";
    let _ = Lab::down(&options(name));
    let (mut lab, _) = up(name, 3);
    let port = |p: u16| PortSpec {
        name: Some("http".into()),
        port: p,
        protocol: Protocol::Tcp,
    };
    lab.pod_add(
        &PodRequest {
            namespace: "bench".into(),
            name: "client".into(),
            node: "n1".into(),
            ..PodRequest::default()
        },
        true,
    )
    .unwrap();
    let mut latencies = Vec::new();
    for i in 0..100 {
        let start = Instant::now();
        let pod = PodRequest {
            namespace: "bench".into(),
            name: format!("server-{i}"),
            node: if i % 2 == 0 { "n2" } else { "n3" }.into(),
            labels: [("app".to_string(), "server".to_string())].into(),
            ports: vec![port(8080)],
            ..PodRequest::default()
        };
        let id = format!("bench/{}", pod.name);
        lab.pod_add(&pod, false).unwrap();
        loop {
            let outcome = lab
                .probe(
                    "bench/client",
                    &id,
                    Some(8080),
                    Protocol::Tcp,
                    Duration::from_millis(100),
                )
                .unwrap();
            if outcome == twill_lab::Outcome::Reachable {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{id} never became reachable"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let _ = writeln!(
        report,
        "pod add -> first allowed TCP probe from another node, 100 pods: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 < 1000 ms)",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
    );

    drop(lab);
    Lab::down(&options(name)).unwrap();
}

/// Retries the barrier: a 1,000-policy apply can outlast one settle timeout.
fn settle(lab: &Lab) -> Duration {
    let start = Instant::now();
    loop {
        match lab.barrier() {
            Ok(()) => return start.elapsed(),
            Err(twill_lab::LabError::Timeout { .. })
                if start.elapsed() < Duration::from_secs(600) => {}
            Err(e) => panic!("felix-rs did not catch up: {e}"),
        }
    }
}

fn bench_memory(report: &mut String) {
    let name = "bmem";
    let _ = Lab::down(&options(name));
    let (mut lab, _) = up(name, 2);
    // 100 pods on n1, each its own app label; 1,000 policies, each
    // selecting one app (so every pod has 10) and allowing one source
    // role on one port.
    for i in 0..100 {
        let pod = PodRequest {
            namespace: "bench".into(),
            name: format!("p{i}"),
            node: "n1".into(),
            labels: [("app".to_string(), format!("a{i}"))].into(),
            ..PodRequest::default()
        };
        lab.pod_add(&pod, false).unwrap();
    }
    let mut yaml = String::new();
    for i in 0..1000 {
        let _ = write!(
            yaml,
            "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p{i}\n  namespace: bench\nspec:\n  selector: app == 'a{}'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n      protocol: TCP\n      source:\n        selector: role == 'r{i}'\n      destination:\n        ports: [{}]\n",
            i % 100,
            1000 + i
        );
    }
    let start = Instant::now();
    lab.apply("bench-policies", &yaml).unwrap();
    let stored = start.elapsed();
    let programmed = settle(&lab) + stored;
    // Let freed memory settle before reading RSS.
    std::thread::sleep(Duration::from_secs(2));
    let node = lab.state().node("n1").unwrap().clone();
    let mut total = 0;
    let mut parts = Vec::new();
    for (daemon, pid) in &node.pids {
        let kib = rss_kib(*pid);
        total += kib;
        parts.push(format!("{daemon} {:.1} MB", kib as f64 / 1024.0));
    }
    let bird = lab.state().tor_pid.map_or(0, rss_kib);
    let _ = writeln!(
        report,
        "1,000 policies written and programmed on every node: {:.1} s",
        programmed.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "memory on node n1 (100 pods, 1,000 policies): {:.1} MB total RSS ({}); target < 100 MB; beside it, the BIRD ToR ({} sessions): {:.1} MB",
        total as f64 / 1024.0,
        parts.join(", "),
        lab.state().nodes.len(),
        bird as f64 / 1024.0
    );
    drop(lab);
    Lab::down(&options(name)).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("listen") {
        let tcp: Vec<u16> = args
            .windows(2)
            .filter(|w| w[0] == "--tcp")
            .map(|w| w[1].parse().unwrap())
            .collect();
        let udp: Vec<u16> = args
            .windows(2)
            .filter(|w| w[0] == "--udp")
            .map(|w| w[1].parse().unwrap())
            .collect();
        twill_lab::probe::listen(&tcp, &udp).unwrap();
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the lab benchmark needs root");
        return;
    }
    let filter = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let mut report = String::new();
    if "up".contains(&filter) {
        bench_up(&mut report);
    }
    if "pods".contains(&filter) {
        bench_pods(&mut report);
    }
    if "memory".contains(&filter) {
        bench_memory(&mut report);
    }
    println!("\n{report}");
}
