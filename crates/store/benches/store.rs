//! Datastore throughput and latency on a SQLite file in a temporary
//! directory: create, compare-and-swap update, get, list, and watch delivery
//! (from a commit returning in one handle to its event arriving at a
//! watcher's thread).
//!
//! `cargo bench -p twill-store --bench store`

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use twill_store::{
    Datastore, Durability, Key, Precondition, Revision, SqliteOptions, SqliteStore, WatchEvent,
};

fn open(dir: &tempfile::TempDir, durability: Durability) -> SqliteStore {
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    SqliteStore::open_with(dir.path().join("twill.db"), options).expect("open store")
}

fn body(n: u64) -> serde_json::Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": format!("node1-k8s-pod{n}-eth0"), "namespace": "default"},
        "spec": {"node": "node1", "pod": format!("pod{n}"), "interfaceName": format!("twl{n:08x}"),
                 "ipNetworks": [format!("10.65.{}.{}/32", n / 256 % 256, n % 256)],
                 "profiles": ["kns.default"]}
    })
}

fn writes(c: &mut Criterion) {
    for (label, durability) in [
        ("power_loss", Durability::PowerLoss),
        ("process_crash", Durability::ProcessCrash),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open(&dir, durability);
        let mut group = c.benchmark_group(format!("write_{label}"));
        group.throughput(Throughput::Elements(1));
        let mut n = 0u64;
        group.bench_function("create", |b| {
            b.iter(|| {
                n += 1;
                let key = Key::namespaced("WorkloadEndpoint", "default", format!("pod{n}"));
                black_box(store.create(&key, &body(n)).expect("create"));
            });
        });
        let key = Key::namespaced("WorkloadEndpoint", "default", "cas");
        let mut revision = store.create(&key, &body(0)).expect("create").revision;
        group.bench_function("update_cas", |b| {
            b.iter(|| {
                revision = store
                    .update(&key, &body(revision.0), Precondition::Revision(revision))
                    .expect("update")
                    .revision;
            });
        });
        group.finish();
    }
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir, Durability::ProcessCrash);
    for n in 0..1000 {
        let key = Key::namespaced("WorkloadEndpoint", "default", format!("pod{n}"));
        store.create(&key, &body(n)).expect("create");
    }
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    let key = Key::namespaced("WorkloadEndpoint", "default", "pod500");
    group.bench_function("get", |b| {
        b.iter(|| black_box(store.get(&key).expect("get")))
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("list_1000", |b| {
        b.iter(|| black_box(store.list("WorkloadEndpoint", None).expect("list")));
    });
    group.finish();
}

/// Runs a watcher thread on `watcher`, writes through `writer`, and measures
/// from each commit's return to the arrival of its event (zero when the event
/// arrives first). Writes start at pseudo-random moments so that they do not
/// phase-lock with the watcher's polling.
fn delivery(writer: &SqliteStore, watcher: &SqliteStore, iters: u64) -> Duration {
    let key = Key::cluster("IPPool", "watched");
    let start = writer
        .create(&key, &json!(0))
        .or_else(|_| writer.get(&key))
        .expect("watched object")
        .revision;
    let mut watch = watcher.watch("IPPool", None, start).expect("watch");
    let (tx, rx) = mpsc::channel::<(Revision, Instant)>();
    let pump = std::thread::spawn(move || {
        let mut remaining = iters;
        while remaining > 0 {
            match watch.next_timeout(Duration::from_secs(5)).expect("watch") {
                Some(WatchEvent::Modified(o)) => {
                    remaining -= 1;
                    tx.send((o.revision, Instant::now())).expect("bench alive");
                }
                Some(_) => {}
                None => panic!("no event within 5 s"),
            }
        }
    });
    let mut total = Duration::ZERO;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..iters {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 5_000));
        let written = writer
            .update(&key, &json!(i), Precondition::Unconditional)
            .expect("update");
        let committed = Instant::now();
        let (revision, arrived) = rx.recv().expect("event");
        assert_eq!(revision, written.revision);
        total += arrived.saturating_duration_since(committed);
    }
    pump.join().expect("watch thread");
    total
}

fn watch_delivery(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir, Durability::PowerLoss);
    // A second handle shares no in-process wake-up: like another process,
    // its watch learns of commits by polling `data_version`.
    let other = open(&dir, Durability::PowerLoss);
    let mut group = c.benchmark_group("watch_delivery");
    group.bench_function("same_handle", |b| {
        b.iter_custom(|iters| delivery(&store, &store, iters))
    });
    group.bench_function("other_handle_polling", |b| {
        b.iter_custom(|iters| delivery(&other, &store, iters));
    });
    group.finish();
}

criterion_group!(benches, writes, reads, watch_delivery);
criterion_main!(benches);
