//! Scale figures for the pure core: 250 local endpoints, 10,000 remote
//! endpoints, N policies (default 10,000; first argument overrides).
//! Run: `cargo run --release -p felix-rs --example scale [-- POLICIES]`.

mod common;

use std::time::Instant;

use common::{APPS, LOCAL, REMOTE};
use felix_rs::render::{RenderCache, render_with_cache};
use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, script};

fn endpoint(i: usize, node: &str, app: usize) -> Update {
    Update::WorkloadEndpointUpserted(Box::new(common::endpoint(i, node, app)))
}

fn policy(i: usize) -> Update {
    Update::GlobalPolicyUpserted(Box::new(common::policy(i)))
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    let (local, remote, apps) = (LOCAL, REMOTE, APPS);
    let start = Instant::now();
    let mut graph = CalcGraph::new("node1");
    for i in 0..local {
        graph
            .on_update(endpoint(i, "node1", i % apps))
            .expect("valid");
    }
    for i in local..local + remote {
        graph
            .on_update(endpoint(i, "node2", i % apps))
            .expect("valid");
    }
    for i in 0..policies {
        graph.on_update(policy(i)).expect("valid");
    }
    graph.on_update(Update::InSync).expect("valid");
    let loaded = start.elapsed();
    let mut cache = RenderCache::default();
    let t = Instant::now();
    let desired = render_with_cache(&graph, &RenderConfig::default(), &mut cache);
    let rendered = t.elapsed();
    let t = Instant::now();
    let text = script(&plan(&desired, &Ruleset::default()));
    let planned = t.elapsed();
    println!(
        "{policies} policies, {local} local + {remote} remote endpoints: load {loaded:?}, render {rendered:?}, plan+script {planned:?}; {} chains, {} rules, {} sets, {} script bytes",
        desired.chains.len(),
        desired.rule_count(),
        desired.sets.len(),
        text.len()
    );
    // One remote endpoint changes label: only set elements should change.
    let mut samples = Vec::new();
    let mut actual = desired;
    for k in 0..20 {
        let t = Instant::now();
        graph
            .on_update(endpoint(local + k, "node2", (k + 1) % apps))
            .expect("valid");
        let updated = t.elapsed();
        let desired = render_with_cache(&graph, &RenderConfig::default(), &mut cache);
        let rendered = t.elapsed();
        let ops = plan(&desired, &actual);
        samples.push((t.elapsed(), updated, rendered, ops.len()));
        actual = desired;
    }
    samples.sort();
    let (total, updated, rendered, ops) = samples[samples.len() / 2];
    println!(
        "remote label change, median of {}: on_update {updated:?}, render {:?}, plan {:?}, total {total:?} (max {:?}); {ops} ops",
        samples.len(),
        rendered - updated,
        total - rendered,
        samples[samples.len() - 1].0,
    );
    if let Ok(path) = std::env::var("SCALE_SCRIPT") {
        std::fs::write(path, text).expect("write script");
    }
}
