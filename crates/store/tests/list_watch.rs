//! The list-then-watch loop, against both backends.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use twill_store::{
    AsyncDatastore, Datastore, Key, ListWatchEvent, ListWatcher, Listing, MemoryStore,
    Precondition, Revision, SqliteStore, TextList, WatchEvent,
};

const WAIT: Duration = Duration::from_secs(5);

/// A backend under test, with its way of compacting.
struct Backend {
    name: &'static str,
    store: Arc<dyn Datastore>,
    compact: Box<dyn Fn(Revision)>,
    _dir: tempfile::TempDir,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteStore::open(dir.path().join("twill.db")).expect("open");
    let memory = MemoryStore::default();
    let (s, m) = (sqlite.clone(), memory.clone());
    vec![
        Backend {
            name: "sqlite",
            store: Arc::new(sqlite),
            compact: Box::new(move |r| {
                s.compact(r).expect("compact");
            }),
            _dir: dir,
        },
        Backend {
            name: "memory",
            store: Arc::new(memory),
            compact: Box::new(move |r| {
                m.compact(r);
            }),
            _dir: tempfile::tempdir().expect("temporary directory"),
        },
    ]
}

fn next_non_bookmark<S: Datastore, L: Listing>(
    watcher: &mut ListWatcher<S, L>,
) -> ListWatchEvent<L> {
    loop {
        match watcher.next_timeout(WAIT).expect("list-watch") {
            Some(ListWatchEvent::Change(WatchEvent::Bookmark(_))) => {}
            Some(event) => return event,
            None => panic!("nothing within {WAIT:?}"),
        }
    }
}

#[test]
fn starts_with_a_snapshot_then_streams_changes() {
    for Backend { name, store, .. } in backends() {
        store
            .create(&Key::cluster("IPPool", "a"), &json!(1))
            .expect("create");
        let mut watcher = ListWatcher::new(Arc::clone(&store), "IPPool", None);
        match next_non_bookmark(&mut watcher) {
            ListWatchEvent::Snapshot(list) => assert_eq!(list.items.len(), 1, "{name}"),
            other => panic!("{name}: expected a snapshot, got {other:?}"),
        }
        let b = store
            .create(&Key::cluster("IPPool", "b"), &json!(2))
            .expect("create");
        assert_eq!(
            next_non_bookmark(&mut watcher),
            ListWatchEvent::Change(WatchEvent::Added(b)),
            "{name}"
        );
        assert_eq!(watcher.relists(), 0, "{name}");
    }
}

#[test]
fn a_text_watcher_lists_bodies_as_text_then_streams_the_same_changes() {
    for Backend { name, store, .. } in backends() {
        let a = store
            .create(&Key::cluster("IPPool", "a"), &json!({"v": 1}))
            .expect("create");
        let mut watcher = ListWatcher::text(Arc::clone(&store), "IPPool", None);
        match next_non_bookmark(&mut watcher) {
            ListWatchEvent::Snapshot(TextList { items, revision }) => {
                assert_eq!(revision, a.revision, "{name}");
                assert_eq!(items.len(), 1, "{name}");
                assert_eq!(items[0].key, a.key, "{name}");
                let body: serde_json::Value = serde_json::from_str(&items[0].body).expect("json");
                assert_eq!(body, a.value, "{name}");
            }
            other => panic!("{name}: expected a snapshot, got {other:?}"),
        }
        let b = store
            .create(&Key::cluster("IPPool", "b"), &json!(2))
            .expect("create");
        assert_eq!(
            next_non_bookmark(&mut watcher),
            ListWatchEvent::Change(WatchEvent::Added(b)),
            "{name}"
        );
    }
}

#[test]
fn relists_with_a_fresh_snapshot_after_compaction_overtakes_it() {
    for Backend {
        name,
        store,
        compact,
        ..
    } in backends()
    {
        let key = Key::cluster("IPPool", "a");
        store.create(&key, &json!(0)).expect("create");
        let mut watcher = ListWatcher::new(Arc::clone(&store), "IPPool", None);
        assert!(matches!(
            next_non_bookmark(&mut watcher),
            ListWatchEvent::Snapshot(_)
        ));
        let mut last = None;
        for v in 1..=3 {
            last = Some(
                store
                    .update(&key, &json!(v), Precondition::Unconditional)
                    .expect("update"),
            );
        }
        let last = last.expect("three updates");
        compact(last.revision);
        match next_non_bookmark(&mut watcher) {
            ListWatchEvent::Snapshot(list) => {
                assert_eq!(
                    list.items,
                    vec![last.clone()],
                    "{name}: snapshot has the latest state"
                );
            }
            other => panic!("{name}: expected a new snapshot, got {other:?}"),
        }
        assert_eq!(watcher.relists(), 1, "{name}");
        let next = store
            .update(&key, &json!(4), Precondition::Unconditional)
            .expect("update");
        assert_eq!(
            next_non_bookmark(&mut watcher),
            ListWatchEvent::Change(WatchEvent::Modified(next))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_list_watch_streams_snapshot_then_changes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("twill.db")).expect("open");
    let store = AsyncDatastore::new(Arc::new(store));
    let mut stream = store.list_watch("IPPool".into(), None).expect("list-watch");
    let first = tokio::time::timeout(WAIT, stream.recv())
        .await
        .expect("in time");
    assert!(
        matches!(first, Some(Ok(ListWatchEvent::Snapshot(ref l))) if l.items.is_empty()),
        "{first:?}"
    );
    let created = store
        .create(Key::cluster("IPPool", "a"), json!(1))
        .await
        .expect("create");
    let second = tokio::time::timeout(WAIT, stream.recv())
        .await
        .expect("in time");
    assert_eq!(
        second.expect("open").expect("ok"),
        ListWatchEvent::Change(WatchEvent::Added(created))
    );
}
