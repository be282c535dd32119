//! Invariants under concurrency and crashes: several simulated nodes
//! (threads) allocate (one by one and in batches), release and collect
//! garbage at once against one
//! store, while a fault-injecting store fails writes and "kills" writers
//! between two of their writes (every later call of that operation fails,
//! as if the process had died). Checked:
//!
//! - no address is ever held by two owners at once;
//! - at every point, every allocation has a handle counting it, no block
//!   is confirmed for two nodes (or for a node that does not own it), and
//!   no two blocks overlap;
//! - after the collector has run past the grace period, the counts in
//!   blocks match the handles exactly and every live allocation survived;
//! - once every owner is gone, nothing is left allocated and each node
//!   keeps at most its last block.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, LiveSet};
use proptest::prelude::*;
use twill_ipam::{AllocateRequest, GarbageCollector, GcConfig, Problem};
use twill_store::{
    Datastore, Error as StoreError, Key, List, MemoryStore, Object, Op, Precondition, Revision,
    Watch,
};

thread_local! {
    /// Set when this thread's current operation was "killed".
    static DEAD: Cell<bool> = const { Cell::new(false) };
    /// This thread's random state for fault decisions.
    static RNG: Cell<u64> = const { Cell::new(1) };
}

fn next_random() -> u64 {
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn chance(per_mille: u64) -> bool {
    next_random() % 1000 < per_mille
}

/// A [`Datastore`] that fails writes before or after they happen and kills
/// writers after a write.
struct Faulty {
    inner: Arc<dyn Datastore>,
    active: AtomicBool,
    /// Per mille: a write fails without happening.
    fail_before: u64,
    /// Per mille: a write happens but the caller is told it failed.
    fail_after: u64,
    /// Per mille: the writer dies right after the write.
    kill: u64,
}

fn injected() -> StoreError {
    StoreError::Busy {
        path: PathBuf::from("fault-injection"),
        operation: "injected fault",
    }
}

impl Faulty {
    fn write<T>(&self, op: impl FnOnce() -> twill_store::Result<T>) -> twill_store::Result<T> {
        if !self.active.load(Ordering::Relaxed) {
            return op();
        }
        if DEAD.with(Cell::get) || chance(self.fail_before) {
            return Err(injected());
        }
        let result = op();
        if chance(self.kill) {
            DEAD.with(|d| d.set(true));
            return Err(injected());
        }
        if result.is_ok() && chance(self.fail_after) {
            return Err(injected());
        }
        result
    }

    fn read<T>(&self, op: impl FnOnce() -> twill_store::Result<T>) -> twill_store::Result<T> {
        if self.active.load(Ordering::Relaxed) && DEAD.with(Cell::get) {
            return Err(injected());
        }
        op()
    }
}

impl Datastore for Faulty {
    fn create(&self, key: &Key, value: &serde_json::Value) -> twill_store::Result<Object> {
        self.write(|| self.inner.create(key, value))
    }
    fn update(
        &self,
        key: &Key,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> twill_store::Result<Object> {
        self.write(|| self.inner.update(key, value, precondition))
    }
    fn delete(&self, key: &Key, precondition: Precondition) -> twill_store::Result<Object> {
        self.write(|| self.inner.delete(key, precondition))
    }
    fn txn(&self, ops: &[Op]) -> twill_store::Result<Vec<Object>> {
        self.write(|| self.inner.txn(ops))
    }
    fn get(&self, key: &Key) -> twill_store::Result<Object> {
        self.read(|| self.inner.get(key))
    }
    fn list(&self, kind: &str, namespace: Option<&str>) -> twill_store::Result<List> {
        self.read(|| self.inner.list(kind, namespace))
    }
    fn watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        after: Revision,
    ) -> twill_store::Result<Box<dyn Watch>> {
        self.inner.watch(kind, namespace, after)
    }
    fn current_revision(&self) -> twill_store::Result<Revision> {
        self.inner.current_revision()
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    nodes: usize,
    ops: usize,
    cooldown: i32,
    strict: bool,
    fail_before: u64,
    fail_after: u64,
    kill: u64,
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        2usize..=4,
        40usize..=80,
        prop_oneof![Just(0), Just(5), Just(30)],
        any::<bool>(),
        0u64..=50,
        0u64..=50,
        0u64..=80,
    )
        .prop_map(
            |(seed, nodes, ops, cooldown, strict, fail_before, fail_after, kill)| Scenario {
                seed,
                nodes,
                ops,
                cooldown,
                strict,
                fail_before,
                fail_after,
                kill,
            },
        )
}

const GRACE: Duration = Duration::from_secs(20);

/// Problems that must never exist, even right after crashes.
fn always_wrong(problems: &[Problem]) -> Vec<&Problem> {
    problems
        .iter()
        .filter(|p| match p {
            // A crash may leave a handle counting more, never less.
            Problem::HandleCountMismatch {
                recorded, actual, ..
            } => actual > recorded,
            _ => true,
        })
        .collect()
}

fn run(scenario: &Scenario) {
    let faulty = Arc::new(Faulty {
        inner: Arc::new(MemoryStore::default()),
        active: AtomicBool::new(false),
        fail_before: scenario.fail_before,
        fail_after: scenario.fail_after,
        kill: scenario.kill,
    });
    let f = Fixture::over(faulty.clone());
    // Small blocks in a small pool: blocks fill, get claimed, borrowed and
    // released all the time.
    f.pool("p", "10.0.0.0/26", 29).config(|c| {
        c.ip_cooldown_seconds = Some(scenario.cooldown);
        c.strict_affinity = scenario.strict;
    });
    for n in 0..scenario.nodes {
        f.node(&format!("n{n}"), &[]);
    }
    let live = Arc::new(LiveSet::default());
    let held: Arc<Mutex<HashMap<IpAddr, String>>> = Arc::default();
    let duplicates: Arc<Mutex<Vec<String>>> = Arc::default();
    faulty.active.store(true, Ordering::Relaxed);

    std::thread::scope(|s| {
        for n in 0..scenario.nodes {
            let (f, live, held, duplicates) = (&f, &live, &held, &duplicates);
            s.spawn(move || {
                RNG.with(|r| {
                    r.set(scenario.seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
                });
                let node = format!("n{n}");
                let mut ipam = f.ipam();
                let mut gc = GarbageCollector::new(GcConfig { grace: GRACE });
                let mut mine: Vec<(String, IpAddr, u64)> = Vec::new();
                for op in 0..scenario.ops {
                    DEAD.with(|d| d.set(false));
                    let roll = next_random() % 100;
                    if roll < 15 {
                        // Several pods at once, served with shared block writes.
                        let requests: Vec<AllocateRequest> = (0..3)
                            .map(|k| {
                                AllocateRequest::ipv4(format!("{node}-{op}-{k}"), node.clone())
                            })
                            .collect();
                        for r in &requests {
                            live.add(&r.handle);
                        }
                        for (r, result) in requests.iter().zip(ipam.allocate_many(&requests)) {
                            match result {
                                Ok(got) => {
                                    let mut map = held.lock().unwrap();
                                    for ip in got {
                                        if let Some(other) = map.insert(ip.ip, r.handle.clone()) {
                                            duplicates.lock().unwrap().push(format!(
                                                "{} given to {} while held by {other}",
                                                ip.ip, r.handle
                                            ));
                                        }
                                        mine.push((r.handle.clone(), ip.ip, ip.sequence));
                                    }
                                }
                                Err(_) => live.remove(&r.handle),
                            }
                        }
                    } else if roll < 55 {
                        let handle = format!("{node}-{op}");
                        live.add(&handle);
                        match ipam.allocate(&AllocateRequest::ipv4(handle.clone(), node.clone())) {
                            Ok(got) => {
                                let mut map = held.lock().unwrap();
                                for ip in got {
                                    if let Some(other) = map.insert(ip.ip, handle.clone()) {
                                        duplicates.lock().unwrap().push(format!(
                                            "{} given to {handle} while held by {other}",
                                            ip.ip
                                        ));
                                    }
                                    mine.push((handle.clone(), ip.ip, ip.sequence));
                                }
                            }
                            Err(_) => live.remove(&handle),
                        }
                    } else if roll < 90 && !mine.is_empty() {
                        let (handle, ip, sequence) =
                            mine.swap_remove(next_random() as usize % mine.len());
                        held.lock().unwrap().remove(&ip);
                        live.remove(&handle);
                        // Failures are fine: the owner is gone, the collector reclaims.
                        let _ = if next_random().is_multiple_of(2) {
                            ipam.release_handle(&handle).map(|_| ())
                        } else {
                            ipam.release_ip(ip, Some(&handle), Some(sequence))
                                .map(|_| ())
                        };
                    } else {
                        let _ = gc.run(&ipam, &**live);
                    }
                    if DEAD.with(Cell::get) {
                        // The process restarts: its caches are gone.
                        ipam = f.ipam();
                        gc = GarbageCollector::new(GcConfig { grace: GRACE });
                    }
                    if op.is_multiple_of(8) {
                        f.clock.advance(Duration::from_secs(1));
                    }
                }
            });
        }
    });
    faulty.active.store(false, Ordering::Relaxed);
    DEAD.with(|d| d.set(false));

    let duplicates = duplicates.lock().unwrap();
    assert!(
        duplicates.is_empty(),
        "addresses held twice: {duplicates:?}"
    );
    let problems = f.problems();
    let wrong = always_wrong(&problems);
    assert!(wrong.is_empty(), "right after the run: {wrong:?}");

    // Collect past the grace period: counts must match exactly and every
    // live allocation must have survived.
    let ipam = f.ipam();
    let mut gc = GarbageCollector::new(GcConfig { grace: GRACE });
    for _ in 0..3 {
        gc.run(&ipam, &*live).unwrap();
        f.clock.advance(GRACE + Duration::from_secs(31));
    }
    gc.run(&ipam, &*live).unwrap();
    let problems = f.problems();
    assert!(problems.is_empty(), "after collection: {problems:?}");
    let blocks = f.blocks();
    for (ip, handle) in held.lock().unwrap().iter() {
        let holder = blocks.iter().find_map(|b| {
            let net: ipnet::IpNet = b.cidr.parse().unwrap();
            let ordinal = twill_ipam::block::ordinal_of(&net, *ip)?;
            use twill_ipam::block::BlockExt;
            let slot = b.slot(ordinal)?;
            (!slot.released()).then(|| slot.handle().map(str::to_string))
        });
        assert_eq!(
            holder,
            Some(Some(handle.clone())),
            "live allocation {ip} lost"
        );
    }

    // Every owner gone: nothing may be left but one block per node.
    live.handles.lock().unwrap().clear();
    for _ in 0..4 {
        gc.run(&ipam, &*live).unwrap();
        f.clock.advance(GRACE + Duration::from_secs(31));
    }
    let blocks = f.blocks();
    use twill_ipam::block::BlockExt;
    let leaked: Vec<_> = blocks.iter().filter(|b| !b.is_empty()).collect();
    assert!(leaked.is_empty(), "leaked: {leaked:?}");
    let mut per_node: HashMap<Option<String>, usize> = HashMap::new();
    for b in &blocks {
        *per_node.entry(b.host().map(str::to_string)).or_default() += 1;
    }
    assert!(
        per_node.iter().all(|(node, n)| node.is_some() && *n == 1),
        "blocks left per node: {per_node:?}"
    );
    assert!(f.problems().is_empty(), "at the end: {:?}", f.problems());
    let handles = twill_ipam::store::list::<twill_api::ipam::IPAMHandleSpec>(&*f.store).unwrap();
    assert!(handles.is_empty(), "handles left: {}", handles.len());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn concurrent_nodes_with_crashes_never_break_the_invariants(scenario in scenarios()) {
        run(&scenario);
    }
}

#[test]
fn a_heavy_fault_scenario_keeps_the_invariants() {
    run(&Scenario {
        seed: 7,
        nodes: 4,
        ops: 200,
        cooldown: 30,
        strict: false,
        fail_before: 50,
        fail_after: 50,
        kill: 100,
    });
}
