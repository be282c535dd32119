//! ADD / DEL latency of the real plugin binary on one node (root only).
//!
//! Run: `cargo bench -p twill-cni --bench add_del` (as root). The plugin
//! processes are forked from a thread inside the node namespace, so the
//! figures are the plugin's own (process start, IPAM round trip, netlink,
//! sysctls, SQLite write) and not `ip netns exec`'s.
//!
//! Reports: ADD p50/p99 without the policy wait, ADD p50/p99 with a
//! felix-rs stand-in reporting endpoints (polling every 2 ms), DEL p50/p99,
//! and the wall time of 100 ADDs started at once.
//!
//! Then, in the same run and the same way (one process per call, forked
//! in a node namespace of its own, the same number of pods), the floor a
//! user compares against: the reference `bridge` plugin with `host-local`
//! IPAM from containernetworking-plugins (`/usr/lib/cni`). It does less
//! than Twill — no datastore, no endpoint, no policy — so it is a floor,
//! not a peer. Skipped, with a note, when the plugins are not installed.

#![allow(clippy::unwrap_used)] // Setup failures should panic loudly.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Rig, finish, spawn_plugin};
use serde_json::Value;
use serde_json::json;
use twill_integration::TestNetns;

const PLUGIN: &str = env!("CARGO_BIN_EXE_twill-cni");

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what:<34} n={:<4} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// Sequential ADD then DEL of `n` pods by the plugin at `plugin`, forked
/// in `node`; returns (ADD, DEL) latencies.
fn sequential_with(
    node: &TestNetns,
    plugin: &str,
    n: usize,
    conf: &Value,
    tag: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new("pod").unwrap()).collect();
    node.run(|| {
        let mut adds = Vec::with_capacity(n);
        let mut dels = Vec::with_capacity(n);
        for (i, pod) in pods.iter().enumerate() {
            let id = format!("{tag}{i}");
            let timed = |verb: &str| {
                let start = Instant::now();
                let (out, ok) = finish(spawn_plugin(
                    Command::new(plugin),
                    verb,
                    &id,
                    Some(pod.path()),
                    conf,
                ));
                let elapsed = start.elapsed();
                assert!(ok, "{verb} {id}: {out}");
                elapsed
            };
            adds.push(timed("ADD"));
            dels.push(timed("DEL"));
        }
        (adds, dels)
    })
    .unwrap()
}

/// Sequential ADD then DEL of `n` pods by `twill-cni` in the rig's node.
fn sequential(rig: &Rig, n: usize, conf: &Value, tag: &str) -> (Vec<Duration>, Vec<Duration>) {
    sequential_with(&rig.node, PLUGIN, n, conf, tag)
}

/// Starts ADD for every pod at once in `node`; returns the time until
/// the last one returned. Then DELs them one by one.
fn parallel_adds(node: &TestNetns, plugin: &str, pods: &[TestNetns], conf: &Value) -> Duration {
    let wall = node
        .run(|| {
            let start = Instant::now();
            let children: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    spawn_plugin(
                        Command::new(plugin),
                        "ADD",
                        &format!("p{i}"),
                        Some(pod.path()),
                        conf,
                    )
                })
                .collect();
            for child in children {
                let (out, ok) = finish(child);
                assert!(ok, "parallel ADD: {out}");
            }
            start.elapsed()
        })
        .unwrap();
    node.run(|| {
        for (i, pod) in pods.iter().enumerate() {
            let (out, ok) = finish(spawn_plugin(
                Command::new(plugin),
                "DEL",
                &format!("p{i}"),
                Some(pod.path()),
                conf,
            ));
            assert!(ok, "DEL: {out}");
        }
    })
    .unwrap();
    wall
}

const BRIDGE: &str = "/usr/lib/cni/bridge";
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// The reference plugins on the same workload, in a node namespace of
/// their own: bridge (gateway on the bridge, no masquerade) + host-local.
fn reference(sequential_pods: usize, parallel_pods: usize) {
    if ![BRIDGE, HOST_LOCAL]
        .iter()
        .all(|p| std::path::Path::new(p).exists())
    {
        println!(
            "reference plugins: skipped, needs {BRIDGE} and {HOST_LOCAL} \
             (Debian package containernetworking-plugins)"
        );
        return;
    }
    let node = TestNetns::new("refnode").unwrap();
    let data = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "reference",
        "type": "bridge",
        "bridge": twill_integration::names::link(),
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.78.0.0/16"}]],
            "dataDir": data.path(),
        },
    });
    let _ = sequential_with(&node, BRIDGE, 5, &conf, "warm");
    let (adds, dels) = sequential_with(&node, BRIDGE, sequential_pods, &conf, "s");
    report("bridge+host-local ADD", adds);
    report("bridge+host-local DEL", dels);
    let pods: Vec<TestNetns> = (0..parallel_pods)
        .map(|_| TestNetns::new("pod").unwrap())
        .collect();
    let wall = parallel_adds(&node, BRIDGE, &pods, &conf);
    println!(
        "bridge+host-local {parallel_pods} parallel ADDs: all returned after {:.0} ms",
        wall.as_secs_f64() * 1e3
    );
    let leftover = std::fs::read_dir(data.path().join("reference"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftover, 0, "host-local released every address");
}

fn main() {
    if !twill_integration::require_root() {
        return;
    }
    let rig = Rig::new();
    let no_wait = rig.conf("1.0.0", json!({"log_level": "error"}));
    let waiting = rig.conf(
        "1.0.0",
        json!({"log_level": "error", "policy_setup_timeout": 10}),
    );

    // Warm-up (page cache, first block claim).
    let _ = sequential(&rig, 5, &no_wait, "warm");

    let (adds, dels) = sequential(&rig, 200, &no_wait, "s");
    report("ADD (no policy wait)", adds);
    report("DEL", dels);

    let (stop, felix) = rig.felix();
    let (adds, _) = sequential(&rig, 100, &waiting, "w");
    stop.store(true, Ordering::Relaxed);
    felix.join().unwrap();
    report("ADD (with policy wait)", adds);

    let pods: Vec<TestNetns> = (0..100).map(|_| TestNetns::new("pod").unwrap()).collect();
    let wall = parallel_adds(&rig.node, PLUGIN, &pods, &no_wait);
    println!(
        "100 parallel ADDs: all returned after {:.0} ms",
        wall.as_secs_f64() * 1e3
    );
    rig.assert_clean("after the benchmark", "p0");
    drop(pods);
    drop(rig);

    reference(200, 100);
}
