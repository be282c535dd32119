//! Where felix-rs's heap goes with 250 local endpoints, 10,000 remote
//! endpoints and N policies (default 10,000; first argument overrides):
//! the bytes each stage keeps live (a counting allocator), and the
//! transient stages' own size while they exist. As root it also applies
//! the script in a throwaway namespace and measures the read-back.
//! Run: `cargo run --release -p felix-rs --example memory [-- POLICIES]`.

mod common;
mod counting;

use std::time::Instant;

use common::{APPS, LOCAL, REMOTE, store};
use counting::live_mb;
use felix_rs::daemon::{Decoded, Item, TABLE_FAMILY, TABLE_NAME, WATCHED_KINDS};
use felix_rs::render::IncrementalRender;
use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, from_kernel, plan, script};
use twill_daemon::WatchMsg;
use twill_kernel::{KernelExt, NetlinkKernel, NetnsPath, NftConfig};
use twill_store::{Datastore, MemoryStore};

/// Prints one stage: the heap it added (or holds) and the time it took.
struct Stage {
    at: f64,
    started: Instant,
    peak: counting::PeakSampler,
}

impl Stage {
    fn start() -> Self {
        Self {
            at: live_mb(),
            started: Instant::now(),
            peak: counting::PeakSampler::start(),
        }
    }

    fn done(self, what: &str) -> Self {
        let now = live_mb();
        let elapsed = self.started.elapsed();
        let peak = self.peak.finish().max(now);
        println!(
            "  {what:<58} {:>+7.1} MB  (peak {:>+7.1} MB, live {now:>6.1} MB) {elapsed:>8.1?}",
            now - self.at,
            peak - self.at,
        );
        Self::start()
    }
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    println!(
        "{policies} policies, {LOCAL} local + {REMOTE} remote endpoints; heap kept by each stage:"
    );
    let stage = Stage::start();
    let memory = MemoryStore::default();
    for i in 0..LOCAL + REMOTE {
        let node = if i < LOCAL { "node1" } else { "node2" };
        store(&common::endpoint(i, node, i % APPS).into(), &memory);
    }
    for i in 0..policies {
        store(&common::policy(i).into(), &memory);
    }
    let stage = stage.done("datastore filled (in-memory store, not felix-rs)");

    // What the watches hand the owner task: every kind listed and decoded.
    let mut messages = Vec::new();
    for kind in WATCHED_KINDS {
        let list = memory.list(kind, None).expect("list");
        messages.push(felix_rs::daemon::FelixMsg::snapshot(kind, list.items));
    }
    let stage = stage.done("snapshots listed, decoded and converted (transient)");

    let mut graph = CalcGraph::new("node1");
    let mut known = std::collections::BTreeSet::new();
    for message in messages {
        if let felix_rs::daemon::FelixMsg::Snapshot { items, .. } = message {
            for Item { key, resource, .. } in items {
                known.insert((key.namespace, key.name));
                if let Decoded::Graph { update, .. } = resource.expect("decodes") {
                    graph.on_prepared(update).expect("valid");
                }
            }
        }
    }
    graph.on_update(Update::InSync).expect("valid");
    let stage = stage.done("graph loaded, snapshots dropped (+ keys known per kind)");

    let mut renderer = IncrementalRender::new(RenderConfig::default());
    renderer.sync(&mut graph);
    let touched = renderer.take_touched();
    let desired = renderer.ruleset();
    let stage = stage.done(&format!(
        "rendered: {} chains, {} rules, {} sets",
        desired.chains.len(),
        desired.rule_count(),
        desired.sets.len()
    ));

    let ops = plan(desired, &Ruleset::default());
    let stage = stage.done(&format!(
        "plan from nothing: {} operations (transient)",
        ops.len()
    ));
    let text = script(&ops);
    let stage = stage.done(&format!("script text: {} bytes (transient)", text.len()));
    drop(ops);
    let stage = stage.done("plan dropped");

    let last_applied = desired.clone();
    drop(stage.done("copy of what was applied (last_applied)"));

    if twill_integration::require_root() {
        let netns = twill_integration::TestNetns::new("felixmem").expect("namespace");
        let kernel = NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default())
            .expect("kernel");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stage = Stage::start();
        runtime
            .block_on(kernel.nft_apply(&text))
            .expect("nft accepts the script");
        let stage = stage.done("nft -f of the script");
        let table = runtime
            .block_on(kernel.nft_read_table(TABLE_FAMILY, TABLE_NAME))
            .expect("read back");
        let stage = stage.done("kernel listing decoded (NftTable, transient)");
        let back = from_kernel(&table);
        drop(table);
        let stage = stage.done("read-back as a Ruleset (transient)");
        let residual = plan(desired, &back);
        assert!(residual.is_empty(), "the read-back plans to nothing");
        drop(back);
        drop(stage.done("read-back dropped"));
    }
    drop(text);
    std::hint::black_box((&graph, &renderer, &touched, &last_applied, &known));
    println!(
        "  live at the end (store + graph + renderer + last applied + known keys): {:.1} MB; process RSS {:.1} MB",
        live_mb(),
        counting::process_memory_mb("VmRSS:")
    );
}
