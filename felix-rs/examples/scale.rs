//! Scale figures for the pure core: 250 local endpoints, 10,000 remote
//! endpoints, N policies (default 10,000; first argument overrides).
//! Run: `cargo run --release -p felix-rs --example scale [-- POLICIES]`.

use std::collections::BTreeMap;
use std::time::Instant;

use felix_rs::render::{RenderCache, render_with_cache};
use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, script};
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::policy::{GlobalNetworkPolicy, GlobalNetworkPolicySpec};

fn endpoint(i: usize, node: &str, app: usize) -> Update {
    let mut wep = WorkloadEndpoint::new(
        format!("{node}-k8s-p{i}-eth0"),
        Some("ns"),
        WorkloadEndpointSpec {
            node: node.into(),
            orchestrator: "k8s".into(),
            interface_name: format!("twl{i:08x}"),
            ip_networks: vec![format!(
                "10.{}.{}.{}/32",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            )],
            ..Default::default()
        },
    );
    wep.metadata.labels = BTreeMap::from([("app".to_string(), format!("app{app}"))]);
    Update::WorkloadEndpointUpserted(Box::new(wep))
}

fn policy(i: usize, apps: usize) -> Update {
    let rule = |peer: usize| twill_api::common::Rule {
        action: twill_api::common::Action::Allow,
        ip_version: None,
        protocol: Some(twill_api::common::Protocol::Tcp),
        icmp: None,
        not_protocol: None,
        not_icmp: None,
        source: twill_api::common::EntityRule {
            selector: format!("app == 'app{peer}'"),
            ..Default::default()
        },
        destination: twill_api::common::EntityRule {
            ports: vec![twill_api::common::Port::number(80 + (i % 3) as u16)],
            ..Default::default()
        },
        http: None,
        metadata: None,
    };
    let spec = GlobalNetworkPolicySpec {
        order: Some(i as f64),
        selector: format!("app == 'app{}'", i % apps),
        ingress: vec![
            rule((i + 1) % apps),
            rule((i + 2) % apps),
            rule((i + 7) % apps),
        ],
        ..Default::default()
    };
    Update::GlobalPolicyUpserted(Box::new(GlobalNetworkPolicy::new(
        format!("p{i}"),
        None,
        spec,
    )))
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    let (local, remote, apps) = (250, 10_000, 2_000);
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
        graph.on_update(policy(i, apps)).expect("valid");
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
