//! The backend-agnostic conformance suite: every backend must pass it.
//!
//! A backend's test file implements [`Target`] and expands
//! [`conformance_tests!`](crate::conformance_tests), which generates one
//! `#[test]` per case:
//!
//! ```text
//! struct Sqlite(tempfile::TempDir);
//! impl twill_store::conformance::Target for Sqlite { /* new_store, compact */ }
//! twill_store::conformance_tests!(Sqlite::new());
//! ```
//!
//! or calls [`run_all`] from one test:
//!
//! ```
//! use std::time::Duration;
//! use twill_store::{MemoryStore, Revision, conformance::{self, Target}};
//!
//! struct Memory;
//! impl Target for Memory {
//!     type Store = MemoryStore;
//!     fn new_store(&self) -> MemoryStore {
//!         MemoryStore::new(Duration::from_millis(100))
//!     }
//!     fn compact(&self, store: &MemoryStore, through: Revision) {
//!         store.compact(through);
//!     }
//! }
//! conformance::run_all(&Memory);
//! ```
//!
//! Cases panic with a message naming the broken rule, like any test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    Datastore, DatastoreExt, Error, Key, Op, Precondition, Revision, TextOp, Watch, WatchEvent,
};

/// How long a case waits for an event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// A backend under test.
pub trait Target {
    /// The store type.
    type Store: Datastore + Clone + 'static;

    /// A fresh, empty store. Its watches must send bookmarks after at most
    /// about a second of silence.
    fn new_store(&self) -> Self::Store;

    /// Compacts the store's history up to and including `through`, as the
    /// backend's compaction (or the API server's) would.
    fn compact(&self, store: &Self::Store, through: Revision);
}

/// Generates one `#[test]` per conformance case, each building its target
/// with the given expression.
#[macro_export]
macro_rules! conformance_tests {
    ($target:expr) => {
        $crate::conformance_tests!(@cases $target;
            create_then_get_returns_the_object,
            create_rejects_an_existing_key,
            invalid_keys_are_rejected,
            update_with_stale_revision_conflicts,
            update_with_current_revision_succeeds,
            unconditional_update_overwrites_and_update_of_missing_is_not_found,
            delete_with_stale_revision_conflicts,
            delete_of_missing_object_is_not_found,
            delete_returns_the_last_state,
            list_filters_by_kind_and_namespace,
            watch_reports_added_modified_deleted_in_order,
            watch_filters_by_namespace,
            watch_from_a_revision_skips_earlier_writes,
            list_then_watch_sees_every_concurrent_write_exactly_once,
            idle_watch_sends_bookmarks,
            watch_from_compacted_revision_fails_and_relist_recovers,
            watch_overtaken_by_compaction_fails_with_compacted,
            concurrent_compare_and_swap_loses_no_increment,
            txn_applies_every_operation_in_order,
            txn_with_a_failing_operation_writes_nothing,
            txn_operations_see_the_earlier_ones,
            txn_text_writes_what_txn_writes_and_returns_the_revisions,
            txn_text_with_a_body_that_is_not_json_writes_nothing,
            revision_of_follows_writes_and_deletes,
            list_text_lists_what_list_lists,
        );
    };
    (@cases $target:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$target);
            }
        )*
    };
}

/// Runs every case against one target, in order.
pub fn run_all<T: Target>(target: &T) {
    create_then_get_returns_the_object(target);
    create_rejects_an_existing_key(target);
    invalid_keys_are_rejected(target);
    update_with_stale_revision_conflicts(target);
    update_with_current_revision_succeeds(target);
    unconditional_update_overwrites_and_update_of_missing_is_not_found(target);
    delete_with_stale_revision_conflicts(target);
    delete_of_missing_object_is_not_found(target);
    delete_returns_the_last_state(target);
    list_filters_by_kind_and_namespace(target);
    watch_reports_added_modified_deleted_in_order(target);
    watch_filters_by_namespace(target);
    watch_from_a_revision_skips_earlier_writes(target);
    list_then_watch_sees_every_concurrent_write_exactly_once(target);
    idle_watch_sends_bookmarks(target);
    watch_from_compacted_revision_fails_and_relist_recovers(target);
    watch_overtaken_by_compaction_fails_with_compacted(target);
    concurrent_compare_and_swap_loses_no_increment(target);
    txn_applies_every_operation_in_order(target);
    txn_with_a_failing_operation_writes_nothing(target);
    txn_operations_see_the_earlier_ones(target);
    txn_text_writes_what_txn_writes_and_returns_the_revisions(target);
    txn_text_with_a_body_that_is_not_json_writes_nothing(target);
    revision_of_follows_writes_and_deletes(target);
    list_text_lists_what_list_lists(target);
}

fn pool(name: &str) -> Key {
    Key::cluster("IPPool", name)
}

fn policy(namespace: &str, name: &str) -> Key {
    Key::namespaced("NetworkPolicy", namespace, name)
}

/// The next non-bookmark event, or a panic after [`EVENT_WAIT`].
fn next_change(watch: &mut dyn Watch) -> WatchEvent {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no watch event within {EVENT_WAIT:?}");
        match watch.next_timeout(left).expect("watch must not fail") {
            Some(WatchEvent::Bookmark(_)) | None => {}
            Some(event) => return event,
        }
    }
}

/// Asserts that no change arrives for `wait` (bookmarks are allowed).
fn assert_no_change(watch: &mut dyn Watch, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match watch.next_timeout(left).expect("watch must not fail") {
            Some(WatchEvent::Bookmark(_)) | None => {}
            Some(event) => panic!("unexpected watch event {event:?}"),
        }
    }
}

/// Create stores the body and gives it a revision after every earlier write.
pub fn create_then_get_returns_the_object<T: Target>(target: &T) {
    let store = target.new_store();
    let before = store.current_revision().expect("current revision");
    let created = store
        .create(&pool("a"), &json!({"cidr": "10.0.0.0/16"}))
        .expect("create");
    assert!(
        created.revision > before,
        "create must move the revision forward"
    );
    assert_eq!(
        store.current_revision().expect("current revision"),
        created.revision
    );
    let got = store.get(&pool("a")).expect("get");
    assert_eq!(got, created);
    let second = store.create(&pool("b"), &json!({})).expect("create");
    assert!(
        second.revision > created.revision,
        "revisions must increase"
    );
}

/// A second create of the same key fails and leaves the first object alone.
pub fn create_rejects_an_existing_key<T: Target>(target: &T) {
    let store = target.new_store();
    let first = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    match store.create(&pool("a"), &json!({"v": 2})) {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, pool("a")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(&pool("a")).expect("get"), first);
    // The same name in another kind or namespace is another object.
    store
        .create(&policy("ns1", "a"), &json!({}))
        .expect("other kind");
    store
        .create(&policy("ns2", "a"), &json!({}))
        .expect("other namespace");
}

/// Empty parts and separators in keys are rejected by every operation.
pub fn invalid_keys_are_rejected<T: Target>(target: &T) {
    let store = target.new_store();
    let cases = [
        Key::cluster("", "a"),
        Key::cluster("IPPool", ""),
        Key::cluster("IPPool", "a/b"),
        Key::namespaced("NetworkPolicy", "", "a"),
        Key::namespaced("NetworkPolicy", "x/y", "a"),
    ];
    for key in cases {
        assert!(
            matches!(
                store.create(&key, &json!({})),
                Err(Error::InvalidKey { .. })
            ),
            "create of {key:?} must be rejected"
        );
        assert!(
            matches!(store.get(&key), Err(Error::InvalidKey { .. })),
            "get of {key:?} must be rejected"
        );
    }
}

/// An update expecting an old revision fails with both revisions named.
pub fn update_with_stale_revision_conflicts<T: Target>(target: &T) {
    let store = target.new_store();
    let v1 = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let v2 = store
        .update(
            &pool("a"),
            &json!({"v": 2}),
            Precondition::Revision(v1.revision),
        )
        .expect("update");
    match store.update(
        &pool("a"),
        &json!({"v": 3}),
        Precondition::Revision(v1.revision),
    ) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, pool("a"));
            assert_eq!(expected, v1.revision);
            assert_eq!(actual, v2.revision);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(&pool("a")).expect("get").value, json!({"v": 2}));
}

/// An update expecting the current revision writes and moves the revision.
pub fn update_with_current_revision_succeeds<T: Target>(target: &T) {
    let store = target.new_store();
    let v1 = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let v2 = store
        .update(
            &pool("a"),
            &json!({"v": 2}),
            Precondition::Revision(v1.revision),
        )
        .expect("update");
    assert!(v2.revision > v1.revision);
    assert_eq!(store.get(&pool("a")).expect("get"), v2);
}

/// Unconditional updates ignore the revision; no update creates an object.
pub fn unconditional_update_overwrites_and_update_of_missing_is_not_found<T: Target>(target: &T) {
    let store = target.new_store();
    store.create(&pool("a"), &json!({"v": 1})).expect("create");
    store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update");
    assert_eq!(store.get(&pool("a")).expect("get").value, json!({"v": 2}));
    for precondition in [
        Precondition::Unconditional,
        Precondition::Revision(Revision(1)),
    ] {
        match store.update(&pool("missing"), &json!({}), precondition) {
            Err(Error::NotFound { key }) => assert_eq!(key, pool("missing")),
            other => panic!("expected NotFound for {precondition:?}, got {other:?}"),
        }
    }
    assert!(matches!(
        store.get(&pool("missing")),
        Err(Error::NotFound { .. })
    ));
}

/// A delete expecting an old revision fails and deletes nothing.
pub fn delete_with_stale_revision_conflicts<T: Target>(target: &T) {
    let store = target.new_store();
    let v1 = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let v2 = store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update");
    match store.delete(&pool("a"), Precondition::Revision(v1.revision)) {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, pool("a"));
            assert_eq!((expected, actual), (v1.revision, v2.revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(&pool("a")).expect("still there"), v2);
    store
        .delete(&pool("a"), Precondition::Revision(v2.revision))
        .expect("delete with the current revision");
}

/// Deleting what is not there is NotFound, whatever the precondition.
pub fn delete_of_missing_object_is_not_found<T: Target>(target: &T) {
    let store = target.new_store();
    for precondition in [
        Precondition::Unconditional,
        Precondition::Revision(Revision(1)),
    ] {
        match store.delete(&pool("missing"), precondition) {
            Err(Error::NotFound { key }) => assert_eq!(key, pool("missing")),
            other => panic!("expected NotFound for {precondition:?}, got {other:?}"),
        }
    }
}

/// Delete returns the last state; the key is then free to create again.
pub fn delete_returns_the_last_state<T: Target>(target: &T) {
    let store = target.new_store();
    store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let last = store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update");
    let deleted = store
        .delete(&pool("a"), Precondition::Unconditional)
        .expect("delete");
    assert_eq!(
        deleted, last,
        "delete returns the last state and its revision"
    );
    assert!(store.current_revision().expect("revision") > last.revision);
    assert!(matches!(store.get(&pool("a")), Err(Error::NotFound { .. })));
    let again = store
        .create(&pool("a"), &json!({"v": 3}))
        .expect("re-create");
    assert!(again.revision > last.revision);
}

/// List returns one kind, optionally one namespace, ordered, with the
/// current revision.
pub fn list_filters_by_kind_and_namespace<T: Target>(target: &T) {
    let store = target.new_store();
    for (ns, name) in [("ns2", "b"), ("ns1", "b"), ("ns1", "a"), ("ns2", "a")] {
        store
            .create(&policy(ns, name), &json!({"n": name}))
            .expect("create");
    }
    store.create(&pool("p"), &json!({})).expect("create pool");
    let revision = store.current_revision().expect("revision");
    let names = |items: &[crate::Object]| {
        items
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o.key.namespace.as_deref().unwrap_or("-"),
                    o.key.name
                )
            })
            .collect::<Vec<_>>()
    };
    let all = store.list("NetworkPolicy", None).expect("list");
    assert_eq!(names(&all.items), ["ns1/a", "ns1/b", "ns2/a", "ns2/b"]);
    assert_eq!(all.revision, revision);
    let ns1 = store.list("NetworkPolicy", Some("ns1")).expect("list ns1");
    assert_eq!(names(&ns1.items), ["ns1/a", "ns1/b"]);
    assert_eq!(ns1.items[0], store.get(&policy("ns1", "a")).expect("get"));
    let pools = store.list("IPPool", None).expect("list pools");
    assert_eq!(names(&pools.items), ["-/p"]);
    let none = store.list("BGPPeer", None).expect("list empty kind");
    assert!(none.items.is_empty());
    assert_eq!(none.revision, revision);
}

/// A watch yields Added, Modified and Deleted (with the last state and the
/// deletion's revision) in order, for its kind only.
pub fn watch_reports_added_modified_deleted_in_order<T: Target>(target: &T) {
    let store = target.new_store();
    let start = store.current_revision().expect("revision");
    let mut watch = store.watch("IPPool", None, start).expect("watch");
    let created = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    store
        .create(&policy("ns", "x"), &json!({}))
        .expect("other kind");
    let updated = store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update");
    store
        .delete(&pool("a"), Precondition::Unconditional)
        .expect("delete");
    let deleted_at = store.current_revision().expect("revision");
    assert_eq!(next_change(watch.as_mut()), WatchEvent::Added(created));
    assert_eq!(
        next_change(watch.as_mut()),
        WatchEvent::Modified(updated.clone())
    );
    match next_change(watch.as_mut()) {
        WatchEvent::Deleted(object) => {
            assert_eq!(object.key, pool("a"));
            assert_eq!(
                object.value, updated.value,
                "deleted carries the last state"
            );
            assert_eq!(
                object.revision, deleted_at,
                "deleted carries the deletion revision"
            );
        }
        other => panic!("expected Deleted, got {other:?}"),
    }
    assert_no_change(watch.as_mut(), Duration::from_millis(100));
}

/// A namespaced watch sees only its namespace.
pub fn watch_filters_by_namespace<T: Target>(target: &T) {
    let store = target.new_store();
    let start = store.current_revision().expect("revision");
    let mut watch = store
        .watch("NetworkPolicy", Some("ns1"), start)
        .expect("watch");
    store
        .create(&policy("ns2", "a"), &json!({}))
        .expect("create");
    let mine = store
        .create(&policy("ns1", "a"), &json!({}))
        .expect("create");
    assert_eq!(next_change(watch.as_mut()), WatchEvent::Added(mine));
    assert_no_change(watch.as_mut(), Duration::from_millis(100));
}

/// A watch yields only writes after its start revision, including writes
/// made before the watch was opened.
pub fn watch_from_a_revision_skips_earlier_writes<T: Target>(target: &T) {
    let store = target.new_store();
    let first = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let second = store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update");
    let mut watch = store.watch("IPPool", None, first.revision).expect("watch");
    assert_eq!(next_change(watch.as_mut()), WatchEvent::Modified(second));
    assert_no_change(watch.as_mut(), Duration::from_millis(100));
}

/// The list-then-watch contract under concurrent writes: every write is in
/// the list (if at or before its revision) or seen by the watch from the list
/// revision (if after), never both, never twice, never lost.
pub fn list_then_watch_sees_every_concurrent_write_exactly_once<T: Target>(target: &T) {
    const KEYS: usize = 20;
    const WRITES: usize = 300;
    let store = target.new_store();
    let writer_store = store.clone();
    let (third_done, third_done_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let mut written = Vec::new();
        for i in 0..WRITES {
            if i == WRITES / 3 {
                // The receiver may have given up; the test then fails there.
                let _ = third_done.send(());
            }
            let key = Key::namespaced("Probe", "ns", format!("k{}", i % KEYS));
            let object = match (i / KEYS) % 3 {
                0 => writer_store.create(&key, &json!({"i": i})),
                1 => writer_store.update(&key, &json!({"i": i}), Precondition::Unconditional),
                _ => writer_store.delete(&key, Precondition::Unconditional),
            }
            .expect("write");
            // Deletes return the last state's revision, not the deletion's.
            let revision = ((i / KEYS) % 3 != 2).then_some(object.revision);
            written.push((key, i, revision));
        }
        written
    });
    // List while the writer runs.
    third_done_rx
        .recv()
        .expect("writer reached a third of its writes");
    let list = store.list("Probe", None).expect("list");
    let written = writer.join().expect("writer thread");
    let mut watch = store.watch("Probe", None, list.revision).expect("watch");
    let last = store.current_revision().expect("revision");

    // State the list says, then every watch event applied on top.
    let mut state: BTreeMap<Key, serde_json::Value> = list
        .items
        .iter()
        .map(|o| {
            assert!(
                o.revision <= list.revision,
                "listed object newer than the list"
            );
            (o.key.clone(), o.value.clone())
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut position = list.revision;
    while position < last {
        let event = next_change(watch.as_mut());
        let revision = event.revision();
        assert!(
            revision > list.revision,
            "event {event:?} is already in the list"
        );
        assert!(
            revision > position,
            "event {event:?} out of order or repeated"
        );
        assert!(
            seen.insert(revision),
            "event at revision {revision} delivered twice"
        );
        position = revision;
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                state.insert(o.key, o.value);
            }
            WatchEvent::Deleted(o) => {
                assert!(
                    state.remove(&o.key).is_some(),
                    "delete of unknown {}",
                    o.key
                );
            }
            WatchEvent::Bookmark(_) => {}
        }
    }
    assert_eq!(
        seen.len() as u64,
        last.0 - list.revision.0,
        "a write was missed"
    );
    // Final state from list + watch equals the truth.
    let truth: BTreeMap<Key, serde_json::Value> = store
        .list("Probe", None)
        .expect("list")
        .items
        .into_iter()
        .map(|o| (o.key, o.value))
        .collect();
    assert_eq!(state, truth);
    // Every create/update the writer made after the list revision was seen.
    for (key, i, revision) in written {
        if let Some(revision) = revision.filter(|r| *r > list.revision) {
            assert!(
                seen.contains(&revision),
                "write {i} to {key} at {revision} not seen"
            );
        }
    }
}

/// An idle watch sends bookmarks that move past writes to other kinds.
pub fn idle_watch_sends_bookmarks<T: Target>(target: &T) {
    let store = target.new_store();
    let start = store.current_revision().expect("revision");
    let mut watch = store.watch("IPPool", None, start).expect("watch");
    let other = store
        .create(&policy("ns", "a"), &json!({}))
        .expect("create");
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no bookmark at or after {} in {EVENT_WAIT:?}",
            other.revision
        );
        match watch.next_timeout(left).expect("watch") {
            Some(WatchEvent::Bookmark(revision)) if revision >= other.revision => {
                assert!(revision <= store.current_revision().expect("revision"));
                break;
            }
            Some(WatchEvent::Bookmark(_)) | None => {}
            Some(event) => panic!("unexpected event {event:?}"),
        }
    }
    // Resuming from the bookmark sees exactly the next write.
    let next = store.create(&pool("a"), &json!({})).expect("create");
    assert_eq!(next_change(watch.as_mut()), WatchEvent::Added(next));
}

/// A watch from before the compaction point fails with Compacted (at start
/// or on its first read); relisting and watching from the list works.
pub fn watch_from_compacted_revision_fails_and_relist_recovers<T: Target>(target: &T) {
    let store = target.new_store();
    let first = store.create(&pool("a"), &json!({"v": 1})).expect("create");
    let mut revision = first.revision;
    for v in 2..=5 {
        revision = store
            .update(&pool("a"), &json!({"v": v}), Precondition::Unconditional)
            .expect("update")
            .revision;
    }
    target.compact(&store, revision);
    let outcome = match store.watch("IPPool", None, first.revision) {
        Err(e) => Err(e),
        Ok(mut watch) => watch.next_timeout(Duration::from_secs(2)).map(|_| ()),
    };
    match outcome {
        Err(Error::Compacted { requested, oldest }) => {
            assert_eq!(requested, first.revision);
            assert!(
                oldest > first.revision && oldest <= revision,
                "oldest {oldest}"
            );
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let list = store.list("IPPool", None).expect("relist");
    assert_eq!(list.items[0].value, json!({"v": 5}));
    let mut watch = store
        .watch("IPPool", None, list.revision)
        .expect("watch after relist");
    let next = store
        .update(&pool("a"), &json!({"v": 6}), Precondition::Unconditional)
        .expect("update");
    assert_eq!(next_change(watch.as_mut()), WatchEvent::Modified(next));
}

/// A running watch whose unread history is compacted away fails with
/// Compacted instead of silently skipping changes.
pub fn watch_overtaken_by_compaction_fails_with_compacted<T: Target>(target: &T) {
    let store = target.new_store();
    let start = store
        .create(&pool("a"), &json!({"v": 0}))
        .expect("create")
        .revision;
    let mut watch = store.watch("IPPool", None, start).expect("watch");
    let mut revision = start;
    for v in 1..=3 {
        revision = store
            .update(&pool("a"), &json!({"v": v}), Precondition::Unconditional)
            .expect("update")
            .revision;
    }
    target.compact(&store, revision);
    match watch.next_timeout(EVENT_WAIT) {
        Err(Error::Compacted { requested, oldest }) => {
            assert!(requested < oldest, "{requested} must be before {oldest}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        matches!(
            watch.next_timeout(Duration::ZERO),
            Err(Error::Compacted { .. })
        ),
        "a failed watch stays failed"
    );
}

/// Threads racing read-modify-write with compare-and-swap lose nothing.
pub fn concurrent_compare_and_swap_loses_no_increment<T: Target>(target: &T) {
    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 50;
    let store = target.new_store();
    let key = Key::cluster("Counter", "c");
    store.create(&key, &json!({"count": 0})).expect("create");
    let handles = (0..THREADS)
        .map(|_| {
            let store = store.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    store
                        .update_with(&key, |v: &mut serde_json::Value| {
                            let count = v["count"].as_u64().expect("count is a number");
                            v["count"] = json!(count + 1);
                            Ok(())
                        })
                        .expect("increment");
                }
            })
        })
        .collect::<Vec<_>>();
    for handle in handles {
        handle.join().expect("incrementing thread");
    }
    let count = store.get(&key).expect("get").value["count"].as_u64();
    assert_eq!(count, Some(THREADS * INCREMENTS));
}

/// A transaction applies its operations in order, each with its own
/// revision, returns what each single operation would, and watchers see
/// the writes in that order.
pub fn txn_applies_every_operation_in_order<T: Target>(target: &T) {
    let store = target.new_store();
    let a = store
        .create(&pool("a"), &json!({"v": 1}))
        .expect("create a");
    let d = store
        .create(&pool("d"), &json!({"v": 1}))
        .expect("create d");
    let mut watch = store
        .watch("IPPool", None, d.revision)
        .expect("watch from d");
    let results = store
        .txn(&[
            Op::Create {
                key: pool("b"),
                value: json!({"v": 1}),
            },
            Op::Update {
                key: pool("a"),
                value: json!({"v": 2}),
                precondition: Precondition::Revision(a.revision),
            },
            Op::Delete {
                key: pool("d"),
                precondition: Precondition::Unconditional,
            },
        ])
        .expect("txn");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].key, pool("b"));
    assert_eq!(results[1].value, json!({"v": 2}));
    assert_eq!(results[2], d, "a delete returns the last state");
    assert!(results[0].revision > d.revision);
    assert_eq!(results[1].revision.0, results[0].revision.0 + 1);
    assert_eq!(store.get(&pool("b")).expect("get b"), results[0]);
    assert_eq!(store.get(&pool("a")).expect("get a"), results[1]);
    assert!(matches!(store.get(&pool("d")), Err(Error::NotFound { .. })));
    match next_change(&mut *watch) {
        WatchEvent::Added(o) => assert_eq!(o, results[0]),
        other => panic!("expected Added b, got {other:?}"),
    }
    match next_change(&mut *watch) {
        WatchEvent::Modified(o) => assert_eq!(o, results[1]),
        other => panic!("expected Modified a, got {other:?}"),
    }
    match next_change(&mut *watch) {
        WatchEvent::Deleted(o) => {
            assert_eq!(o.key, pool("d"));
            assert_eq!(o.revision.0, results[1].revision.0 + 1);
        }
        other => panic!("expected Deleted d, got {other:?}"),
    }
    assert_eq!(
        store.current_revision().expect("revision").0,
        results[1].revision.0 + 1
    );
}

/// When any operation fails, the transaction reports that operation's error
/// and nothing of it is written: no object, no revision, no event.
pub fn txn_with_a_failing_operation_writes_nothing<T: Target>(target: &T) {
    let store = target.new_store();
    let a = store
        .create(&pool("a"), &json!({"v": 1}))
        .expect("create a");
    let stale = a.revision;
    store
        .update(&pool("a"), &json!({"v": 2}), Precondition::Unconditional)
        .expect("update a");
    let before = store.current_revision().expect("revision");
    let mut watch = store.watch("IPPool", None, before).expect("watch");
    let fresh = || Op::Create {
        key: pool("new"),
        value: json!({}),
    };
    type IsExpected = fn(&Error) -> bool;
    let cases: Vec<(Vec<Op>, IsExpected)> = vec![
        (
            vec![
                fresh(),
                Op::Create {
                    key: pool("a"),
                    value: json!({}),
                },
            ],
            |e| matches!(e, Error::AlreadyExists { key } if key.name == "a"),
        ),
        (
            vec![
                fresh(),
                Op::Update {
                    key: pool("a"),
                    value: json!({}),
                    precondition: Precondition::Revision(stale),
                },
            ],
            |e| matches!(e, Error::Conflict { key, .. } if key.name == "a"),
        ),
        (
            vec![
                fresh(),
                Op::Delete {
                    key: pool("absent"),
                    precondition: Precondition::Unconditional,
                },
            ],
            |e| matches!(e, Error::NotFound { key } if key.name == "absent"),
        ),
        (
            vec![
                fresh(),
                Op::Create {
                    key: pool("a/b"),
                    value: json!({}),
                },
            ],
            |e| matches!(e, Error::InvalidKey { .. }),
        ),
    ];
    for (ops, expected) in cases {
        let error = store.txn(&ops).expect_err("the transaction must fail");
        assert!(expected(&error), "unexpected error {error:?} for {ops:?}");
        assert!(
            matches!(store.get(&pool("new")), Err(Error::NotFound { .. })),
            "the earlier create of {ops:?} must not be written"
        );
        assert_eq!(store.current_revision().expect("revision"), before);
    }
    assert_eq!(store.get(&pool("a")).expect("get a").value, json!({"v": 2}));
    assert_no_change(&mut *watch, Duration::from_millis(100));
}

/// Later operations of a transaction see the earlier ones: create, update
/// and delete of one key in one transaction, and a transaction of nothing
/// writes nothing.
pub fn txn_operations_see_the_earlier_ones<T: Target>(target: &T) {
    let store = target.new_store();
    assert!(store.txn(&[]).expect("empty txn").is_empty());
    assert_eq!(store.current_revision().expect("revision"), Revision(0));
    let results = store
        .txn(&[
            Op::Create {
                key: pool("x"),
                value: json!({"v": 1}),
            },
            Op::Update {
                key: pool("x"),
                value: json!({"v": 2}),
                precondition: Precondition::Unconditional,
            },
            Op::Create {
                key: pool("y"),
                value: json!({"v": 1}),
            },
        ])
        .expect("create then update");
    assert_eq!(store.get(&pool("x")).expect("get x"), results[1]);
    let second = store
        .txn(&[
            Op::Delete {
                key: pool("y"),
                precondition: Precondition::Revision(results[2].revision),
            },
            Op::Create {
                key: pool("y"),
                value: json!({"v": 9}),
            },
        ])
        .expect("delete then create again");
    assert_eq!(store.get(&pool("y")).expect("get y"), second[1]);
    let error = store
        .txn(&[
            Op::Delete {
                key: pool("x"),
                precondition: Precondition::Unconditional,
            },
            Op::Update {
                key: pool("x"),
                value: json!({}),
                precondition: Precondition::Unconditional,
            },
        ])
        .expect_err("an update after a delete in the same transaction");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert_eq!(store.get(&pool("x")).expect("x is still there"), results[1]);
}

/// `txn_text` writes bodies given as JSON text with `txn`'s semantics and
/// returns each operation's revision; `get_text` reads a body back as text
/// that parses to the same document.
pub fn txn_text_writes_what_txn_writes_and_returns_the_revisions<T: Target>(target: &T) {
    let store = target.new_store();
    let a = store
        .create(&pool("a"), &json!({"v": 1}))
        .expect("create a");
    let d = store
        .create(&pool("d"), &json!({"v": 1}))
        .expect("create d");
    let mut watch = store
        .watch("IPPool", None, d.revision)
        .expect("watch from d");
    let revisions = store
        .txn_text(&[
            TextOp::Create {
                key: pool("b"),
                body: r#"{"v":1,"s":"x"}"#.into(),
            },
            TextOp::Update {
                key: pool("a"),
                body: r#"{"v":2}"#.into(),
                precondition: Precondition::Revision(a.revision),
            },
            TextOp::Delete {
                key: pool("d"),
                precondition: Precondition::Unconditional,
            },
        ])
        .expect("txn_text");
    assert_eq!(revisions.len(), 3);
    assert!(revisions[0] > d.revision);
    assert_eq!(revisions[1].0, revisions[0].0 + 1);
    assert_eq!(
        revisions[2], d.revision,
        "a delete returns the last revision"
    );
    let b = store.get(&pool("b")).expect("get b");
    assert_eq!(
        (b.revision, b.value),
        (revisions[0], json!({"v": 1, "s": "x"}))
    );
    let a_text = store.get_text(&pool("a")).expect("get_text a");
    assert_eq!(a_text.revision, revisions[1]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a_text.body).expect("a body is JSON"),
        json!({"v": 2})
    );
    assert!(matches!(store.get(&pool("d")), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.get_text(&pool("d")),
        Err(Error::NotFound { .. })
    ));
    match next_change(&mut *watch) {
        WatchEvent::Added(o) => assert_eq!(o.value, json!({"v": 1, "s": "x"})),
        other => panic!("expected Added b, got {other:?}"),
    }
    match next_change(&mut *watch) {
        WatchEvent::Modified(o) => assert_eq!(o.revision, revisions[1]),
        other => panic!("expected Modified a, got {other:?}"),
    }
    match next_change(&mut *watch) {
        WatchEvent::Deleted(o) => assert_eq!(o.key, pool("d")),
        other => panic!("expected Deleted d, got {other:?}"),
    }
    let stale = store.txn_text(&[TextOp::Update {
        key: pool("a"),
        body: r#"{"v":3}"#.into(),
        precondition: Precondition::Revision(a.revision),
    }]);
    assert!(
        matches!(&stale, Err(Error::Conflict { key, .. }) if *key == pool("a")),
        "a stale revision conflicts: {stale:?}"
    );
}

/// A body that is not JSON fails the whole `txn_text` with the key's
/// `Serde` error; nothing is written.
pub fn txn_text_with_a_body_that_is_not_json_writes_nothing<T: Target>(target: &T) {
    let store = target.new_store();
    let before = store.current_revision().expect("revision");
    let result = store.txn_text(&[
        TextOp::Create {
            key: pool("a"),
            body: r#"{"v":1}"#.into(),
        },
        TextOp::Create {
            key: pool("b"),
            body: r#"{"v":"#.into(),
        },
    ]);
    assert!(
        matches!(&result, Err(Error::Serde { key, .. }) if *key == pool("b")),
        "expected a Serde error for b, got {result:?}"
    );
    assert!(matches!(store.get(&pool("a")), Err(Error::NotFound { .. })));
    assert_eq!(store.current_revision().expect("revision"), before);
}

/// `revision_of` reports the revision of the last write of a key, and
/// `None` once it is deleted or when it never existed.
pub fn revision_of_follows_writes_and_deletes<T: Target>(target: &T) {
    let store = target.new_store();
    assert_eq!(store.revision_of(&pool("a")).expect("revision_of"), None);
    let created = store
        .create(&pool("a"), &json!({"v": 1}))
        .expect("create a");
    assert_eq!(
        store.revision_of(&pool("a")).expect("revision_of"),
        Some(created.revision)
    );
    let updated = store
        .update(
            &pool("a"),
            &json!({"v": 2}),
            Precondition::Revision(created.revision),
        )
        .expect("update a");
    assert_ne!(updated.revision, created.revision);
    assert_eq!(
        store.revision_of(&pool("a")).expect("revision_of"),
        Some(updated.revision)
    );
    store
        .delete(&pool("a"), Precondition::Unconditional)
        .expect("delete a");
    assert_eq!(store.revision_of(&pool("a")).expect("revision_of"), None);
}

/// `list_text` lists the same objects, revisions and list revision as
/// `list`, each body the object's JSON text, filtered the same way.
pub fn list_text_lists_what_list_lists<T: Target>(target: &T) {
    let store = target.new_store();
    for (ns, name, value) in [
        ("ns2", "b", json!({"n": "b", "list": [1, 2]})),
        ("ns1", "a", json!({"n": "a", "nested": {"k": "v"}})),
    ] {
        store.create(&policy(ns, name), &value).expect("create");
    }
    store.create(&pool("p"), &json!({})).expect("create pool");
    store
        .update(
            &policy("ns1", "a"),
            &json!({"n": "a2"}),
            Precondition::Unconditional,
        )
        .expect("update");
    for namespace in [None, Some("ns1"), Some("ns3")] {
        for kind in ["NetworkPolicy", "IPPool", "BGPPeer"] {
            let list = store.list(kind, namespace).expect("list");
            let (revision, texts) = store.list_text(kind, namespace).expect("list_text");
            assert_eq!(revision, list.revision, "{kind} in {namespace:?}");
            let decoded: Vec<crate::Object> = texts
                .into_iter()
                .map(|text| crate::Object {
                    value: serde_json::from_str(&text.body).expect("the body is JSON"),
                    key: text.key,
                    revision: text.revision,
                })
                .collect();
            assert_eq!(decoded, list.items, "{kind} in {namespace:?}");
        }
    }
    let (_, all) = store.list_text("NetworkPolicy", None).expect("list_text");
    assert_eq!(all.len(), 2, "both policies, in every namespace");
}
