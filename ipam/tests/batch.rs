//! Group commit: queued allocations of one node are written with one
//! datastore transaction per block.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Fixture;
use twill_ipam::AllocateRequest;
use twill_store::{
    Datastore, Key, List, MemoryStore, Object, Op, Precondition, Result, Revision, Watch,
};

/// Counts the commits a caller makes: every create, update, delete and
/// transaction is one.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    commits: AtomicUsize,
}

impl Counting {
    fn commit<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        write()
    }
}

impl Datastore for Counting {
    fn create(&self, key: &Key, value: &serde_json::Value) -> Result<Object> {
        self.commit(|| self.inner.create(key, value))
    }
    fn update(&self, key: &Key, value: &serde_json::Value, p: Precondition) -> Result<Object> {
        self.commit(|| self.inner.update(key, value, p))
    }
    fn delete(&self, key: &Key, p: Precondition) -> Result<Object> {
        self.commit(|| self.inner.delete(key, p))
    }
    fn txn(&self, ops: &[Op]) -> Result<Vec<Object>> {
        self.commit(|| self.inner.txn(ops))
    }
    fn get(&self, key: &Key) -> Result<Object> {
        self.inner.get(key)
    }
    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<List> {
        self.inner.list(kind, namespace)
    }
    fn watch(&self, kind: &str, ns: Option<&str>, after: Revision) -> Result<Box<dyn Watch>> {
        self.inner.watch(kind, ns, after)
    }
    fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision()
    }
}

fn requests(node: &str, from: usize, count: usize) -> Vec<AllocateRequest> {
    (from..from + count)
        .map(|i| AllocateRequest::ipv4(format!("k8s-pod-network.p{i}"), node))
        .collect()
}

#[test]
fn a_batch_in_one_block_is_one_commit_with_its_handles() {
    let store = Arc::new(Counting::default());
    let f = Fixture::over(store.clone());
    f.pool("pool", "10.0.0.0/24", 26).node("n1", &[]);
    let ipam = f.ipam();
    // The first allocation claims the block.
    ipam.allocate(&requests("n1", 0, 1)[0]).expect("claim");
    // (batch size, commits expected)
    for (size, commits) in [(1, 1), (8, 1), (20, 1)] {
        let before = store.commits.load(Ordering::Relaxed);
        let batch = requests("n1", 100 + size, size);
        for result in ipam.allocate_many(&batch) {
            result.expect("allocated");
        }
        assert_eq!(
            store.commits.load(Ordering::Relaxed) - before,
            commits,
            "a batch of {size}"
        );
        for r in &batch {
            let handle = f.handle(&r.handle).expect("every handle is written");
            assert_eq!(handle.block.values().sum::<u32>(), 1, "{}", r.handle);
        }
    }
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn a_batch_larger_than_the_free_space_continues_in_a_newly_claimed_block() {
    let f = Fixture::new();
    f.pool("pool", "10.0.0.0/24", 26).node("n1", &[]);
    let ipam = f.ipam();
    let results = ipam.allocate_many(&requests("n1", 0, 100));
    let ips: std::collections::BTreeSet<_> = results
        .into_iter()
        .map(|r| r.expect("allocated")[0].ip)
        .collect();
    assert_eq!(ips.len(), 100, "100 distinct addresses");
    let blocks = f.blocks();
    assert_eq!(blocks.len(), 2, "64 in the first block, 36 in a second");
    assert!(
        blocks
            .iter()
            .all(|b| b.affinity.as_deref() == Some("host:n1")),
        "both blocks are n1's: nothing was borrowed"
    );
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn a_block_written_elsewhere_since_the_last_batch_is_read_again_not_overwritten() {
    let f = Fixture::new();
    f.pool("pool", "10.0.0.0/24", 26).node("n1", &[]);
    let batching = f.ipam();
    // Another allocator over the same datastore: another process, or the
    // collector, writing the same block between two batches.
    let other = f.ipam();
    let mut ips = std::collections::BTreeSet::new();
    // (who allocates, first request number, how many)
    let steps = [
        ("batch", 0, 8),
        ("other", 100, 3),
        ("batch", 200, 8),
        ("other", 300, 1),
        ("batch", 400, 8),
    ];
    for (who, from, count) in steps {
        let batch = requests("n1", from, count);
        let results = if who == "batch" {
            batching.allocate_many(&batch)
        } else {
            batch.iter().map(|r| other.allocate(r)).collect()
        };
        for result in results {
            let got = result.unwrap_or_else(|e| panic!("{who} from {from}: {e}"));
            assert!(ips.insert(got[0].ip), "{} handed out twice", got[0].ip);
        }
    }
    assert_eq!(ips.len(), 28);
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}
