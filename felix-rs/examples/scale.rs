//! Scale figures for the pure core: 250 local endpoints, 10,000 remote
//! endpoints, N policies (default 10,000; first argument overrides).
//! Run: `cargo run --release -p felix-rs --example scale [-- POLICIES]`.
//!
//! Prints the full render (the reference) and, for three kinds of change,
//! the latency from the update to the nft script of the transaction:
//! incremental (`IncrementalRender` + `plan_touched`) against the full
//! render with its chain cache + `plan` of the whole ruleset, same run.
//! `SCALE_SCRIPT=<file>` writes the full script (for `nft -f` timing).

mod common;

use std::time::{Duration, Instant};

use common::{APPS, LOCAL, REMOTE};
use felix_rs::plan::plan_touched;
use felix_rs::render::{IncrementalRender, RenderCache, render_with_cache};
use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, script};

fn endpoint(i: usize, node: &str, app: usize) -> Update {
    Update::WorkloadEndpointUpserted(Box::new(common::endpoint(i, node, app)))
}

fn policy(i: usize) -> Update {
    Update::GlobalPolicyUpserted(Box::new(common::policy(i)))
}

/// Policy `i` with its first rule's peer moved (a rule change).
fn changed_policy(i: usize, shift: usize) -> Update {
    let mut p = common::policy(i);
    p.spec.ingress[0].source.selector = format!("app == 'app{}'", (i + 11 + shift) % APPS);
    Update::GlobalPolicyUpserted(Box::new(p))
}

/// The three changes the targets name; `k` makes each sample distinct.
#[derive(Clone, Copy, Debug)]
enum Change {
    PodAdded,
    LabelChanged,
    PolicyChanged,
}

impl Change {
    fn update(self, k: usize) -> Update {
        match self {
            // A new local pod (fresh interface and address).
            Change::PodAdded => endpoint(LOCAL + REMOTE + k, "node1", k % APPS),
            // A remote pod moves to an app active policies allow traffic
            // from: it joins that app's set.
            Change::LabelChanged => endpoint(LOCAL + k, "node2", 1 + k % LOCAL),
            // An active policy (its app has local pods) changes a rule.
            Change::PolicyChanged => changed_policy(k % LOCAL, k),
        }
    }
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    }
    fn show(&self) -> String {
        format!(
            "p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    let samples: usize = std::env::args()
        .nth(2)
        .map_or(200, |a| a.parse().expect("a number"));
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
    let config = RenderConfig::default();
    let mut cache = RenderCache::default();
    let t = Instant::now();
    let desired = render_with_cache(&graph, &config, &mut cache);
    let rendered = t.elapsed();
    let t = Instant::now();
    let text = script(&plan(&desired, &Ruleset::default()));
    let planned = t.elapsed();
    let t = Instant::now();
    let mut incremental = IncrementalRender::new(config.clone());
    incremental.sync(&mut graph);
    let built = t.elapsed();
    assert_eq!(incremental.ruleset(), &desired, "incremental == full");
    incremental.take_touched();
    println!(
        "{policies} policies, {local} local + {remote} remote endpoints: load {loaded:.2?}, full render {rendered:.2?} (incremental first build {built:.2?}), plan+script {planned:.2?}; {} chains, {} rules, {} sets, {} script bytes",
        desired.chains.len(),
        desired.rule_count(),
        desired.sets.len(),
        text.len()
    );
    if let Ok(path) = std::env::var("SCALE_SCRIPT") {
        std::fs::write(path, &text).expect("write script");
    }

    // Incremental path: the kernel's ruleset (what the last script made)
    // follows the desired one through the touched names only.
    let mut actual = desired;
    let mut k = 0;
    println!(
        "update → nft script, {samples} samples each (incremental: on_update + IncrementalRender::update + plan_touched + script):"
    );
    for change in [
        Change::PodAdded,
        Change::LabelChanged,
        Change::PolicyChanged,
    ] {
        let (mut inc, mut ops) = (Samples::default(), 0);
        for _ in 0..samples {
            k += 1;
            let t = Instant::now();
            graph.on_update(change.update(k)).expect("valid");
            incremental.sync(&mut graph);
            let touched = incremental.take_touched();
            let plan_ops = plan_touched(incremental.ruleset(), &actual, &touched);
            let text = script(&plan_ops);
            inc.0.push(t.elapsed());
            ops += plan_ops.len();
            std::hint::black_box(text);
            actual.copy_touched(incremental.ruleset(), &touched);
        }
        println!(
            "  {:<14} incremental {}   ({:.1} ops/change)",
            format!("{change:?}"),
            inc.show(),
            ops as f64 / samples as f64
        );
    }
    assert_eq!(
        incremental.ruleset(),
        &render_with_cache(&graph, &config, &mut cache),
        "incremental == full after the samples"
    );
    assert_eq!(
        &actual,
        incremental.ruleset(),
        "the followed ruleset is the desired one"
    );

    // The previous path, same run: full render (with the chain cache) and
    // a plan over the whole ruleset.
    let mut actual = render_with_cache(&graph, &config, &mut cache);
    let few = samples.min(40);
    for change in [
        Change::PodAdded,
        Change::LabelChanged,
        Change::PolicyChanged,
    ] {
        let mut full = Samples::default();
        for _ in 0..few {
            k += 1;
            let t = Instant::now();
            graph.on_update(change.update(k)).expect("valid");
            let desired = render_with_cache(&graph, &config, &mut cache);
            let text = script(&plan(&desired, &actual));
            full.0.push(t.elapsed());
            std::hint::black_box(text);
            actual = desired;
        }
        println!(
            "  {:<14} full render + full plan ({few} samples) {}",
            format!("{change:?}"),
            full.show()
        );
    }
}
