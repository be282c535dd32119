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

#![allow(clippy::unwrap_used)] // Setup failures should panic loudly.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Rig, finish, spawn_plugin};
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

/// Sequential ADD then DEL of `n` pods; returns (ADD, DEL) latencies.
fn sequential(
    rig: &Rig,
    n: usize,
    conf: &serde_json::Value,
    tag: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let pods: Vec<TestNetns> = (0..n).map(|_| TestNetns::new("pod").unwrap()).collect();
    rig.node
        .run(|| {
            let mut adds = Vec::with_capacity(n);
            let mut dels = Vec::with_capacity(n);
            for (i, pod) in pods.iter().enumerate() {
                let id = format!("{tag}{i}");
                let timed = |verb: &str| {
                    let start = Instant::now();
                    let (out, ok) = finish(spawn_plugin(
                        Command::new(PLUGIN),
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
    let wall = rig
        .node
        .run(|| {
            let start = Instant::now();
            let children: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    spawn_plugin(
                        Command::new(PLUGIN),
                        "ADD",
                        &format!("p{i}"),
                        Some(pod.path()),
                        &no_wait,
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
    println!(
        "100 parallel ADDs: all returned after {:.0} ms",
        wall.as_secs_f64() * 1e3
    );
    rig.node
        .run(|| {
            for (i, pod) in pods.iter().enumerate() {
                let (out, ok) = finish(spawn_plugin(
                    Command::new(PLUGIN),
                    "DEL",
                    &format!("p{i}"),
                    Some(pod.path()),
                    &no_wait,
                ));
                assert!(ok, "DEL: {out}");
            }
        })
        .unwrap();
    rig.assert_clean("after the benchmark", "p0");
}
