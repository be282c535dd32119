//! Behaviour specific to the SQLite backend: schema versioning, retention,
//! watches fed by other connections, the typed and async layers.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use twill_store::{
    AsyncDatastore, Datastore, DatastoreExt, Error, Key, Precondition, Revision, SqliteOptions,
    SqliteStore, WatchEvent,
};

fn temp_store(options: SqliteOptions) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_with(dir.path().join("twill.db"), options).expect("open");
    (dir, store)
}

#[test]
fn new_file_gets_the_current_schema_version_and_reopens_with_its_data() {
    let (dir, store) = temp_store(SqliteOptions::default());
    let created = store
        .create(&Key::cluster("IPPool", "a"), &json!({"v": 1}))
        .expect("create");
    drop(store);
    let path = dir.path().join("twill.db");
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 1);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    drop(conn);
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.get(&Key::cluster("IPPool", "a")).expect("get"),
        created
    );
    assert_eq!(
        store.current_revision().expect("revision"),
        created.revision
    );
}

#[test]
fn file_from_a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("twill.db");
    drop(SqliteStore::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    conn.pragma_update(None, "user_version", 7)
        .expect("bump version");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(Error::SchemaTooNew {
            found, supported, ..
        }) => assert_eq!((found, supported), (7, 1)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn history_beyond_the_retention_is_compacted_as_writes_go_by() {
    let (_dir, store) = temp_store(SqliteOptions {
        history_retention: 100,
        ..SqliteOptions::default()
    });
    let key = Key::cluster("Counter", "c");
    store.create(&key, &json!(0)).expect("create");
    for i in 1..1000 {
        store
            .update(&key, &json!(i), Precondition::Unconditional)
            .expect("update");
    }
    let oldest = store.oldest_watchable().expect("oldest");
    let current = store.current_revision().expect("revision");
    assert!(oldest > Revision(0), "nothing was compacted");
    assert!(
        current.0 - oldest.0 >= 100,
        "retention not kept: {oldest} vs {current}"
    );
    assert!(
        current.0 - oldest.0 < 100 + 256,
        "compaction lags: {oldest} vs {current}"
    );
    assert!(matches!(
        store.watch("Counter", None, Revision(1)),
        Err(Error::Compacted {
            requested: Revision(1),
            ..
        })
    ));
    store
        .watch("Counter", None, oldest)
        .expect("watch from the oldest revision");
}

#[test]
fn watch_sees_writes_of_another_connection_by_polling() {
    let (dir, watcher_store) = temp_store(SqliteOptions::default());
    // A second handle has its own connections and no shared wake-up: it is
    // what another process looks like.
    let writer = SqliteStore::open(dir.path().join("twill.db")).expect("second handle");
    let mut watch = watcher_store
        .watch("IPPool", None, Revision(0))
        .expect("watch");
    let created = writer
        .create(&Key::cluster("IPPool", "a"), &json!({}))
        .expect("create");
    let event = watch.next_timeout(Duration::from_secs(5)).expect("watch");
    assert_eq!(event, Some(WatchEvent::Added(created)));
}

#[test]
fn watch_catching_up_on_more_than_one_batch_delivers_every_event() {
    let (_dir, store) = temp_store(SqliteOptions {
        durability: twill_store::Durability::ProcessCrash,
        ..SqliteOptions::default()
    });
    for i in 0..1500 {
        store
            .create(&Key::cluster("IPPool", format!("p{i}")), &json!(i))
            .expect("create");
    }
    let mut watch = store.watch("IPPool", None, Revision(0)).expect("watch");
    for i in 0..1500u64 {
        match watch.next_timeout(Duration::from_secs(5)).expect("watch") {
            Some(WatchEvent::Added(o)) => assert_eq!(o.revision, Revision(i + 1)),
            other => panic!("event {i}: expected Added, got {other:?}"),
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pool {
    cidr: String,
}

#[test]
fn typed_access_round_trips_and_names_the_key_on_a_type_mismatch() {
    let (_dir, store) = temp_store(SqliteOptions::default());
    let key = Key::cluster("IPPool", "a");
    let revision = store
        .create_as(
            &key,
            &Pool {
                cidr: "10.0.0.0/16".into(),
            },
        )
        .expect("create");
    let pool = store.get_as::<Pool>(&key).expect("get");
    assert_eq!(
        (pool.revision, pool.value.cidr.as_str()),
        (revision, "10.0.0.0/16")
    );
    // Through a trait object too.
    let dyn_store: Arc<dyn Datastore> = Arc::new(store.clone());
    let (pools, _) = dyn_store.list_as::<Pool>("IPPool", None).expect("list");
    assert_eq!(pools.len(), 1);
    store
        .update(&key, &json!({"cidr": 5}), Precondition::Unconditional)
        .expect("update");
    match store.get_as::<Pool>(&key) {
        Err(e @ Error::Serde { .. }) => assert!(e.to_string().contains("IPPool/a"), "{e}"),
        other => panic!("expected Serde, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_store_streams_watch_events_to_a_task() {
    let (_dir, store) = temp_store(SqliteOptions::default());
    let store = AsyncDatastore::new(Arc::new(store));
    let list = store.list("IPPool".into(), None).await.expect("list");
    let mut events = store
        .watch("IPPool".into(), None, list.revision)
        .await
        .expect("watch");
    let key = Key::cluster("IPPool", "a");
    let created = store
        .create(key.clone(), json!({"v": 1}))
        .await
        .expect("create");
    let deleted = store
        .delete(key, Precondition::Revision(created.revision))
        .await
        .expect("delete");
    assert_eq!(deleted, created);
    let first = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert!(
        matches!(first, Ok(Some(Ok(WatchEvent::Added(_))))),
        "{first:?}"
    );
    let second = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert!(
        matches!(second, Ok(Some(Ok(WatchEvent::Deleted(_))))),
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_watch_from_a_compacted_revision_ends_with_compacted() {
    let (_dir, store) = temp_store(SqliteOptions::default());
    let key = Key::cluster("IPPool", "a");
    let first = store.create(&key, &json!(1)).expect("create");
    let second = store
        .update(&key, &json!(2), Precondition::Unconditional)
        .expect("update");
    store.compact(second.revision).expect("compact");
    let store = AsyncDatastore::new(Arc::new(store));
    match store.watch("IPPool".into(), None, first.revision).await {
        Err(Error::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (first.revision, second.revision));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
}

#[test]
fn write_waits_for_a_held_write_lock_then_gives_up_with_busy() {
    let (dir, store) = temp_store(SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    });
    let mut other = rusqlite::Connection::open(dir.path().join("twill.db")).expect("open raw");
    let holder = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("take the write lock");
    let started = std::time::Instant::now();
    match store.create(&Key::cluster("IPPool", "a"), &json!({})) {
        Err(e @ Error::Busy { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Busy, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    // Reads are not blocked by a writer in WAL mode.
    assert!(matches!(
        store.get(&Key::cluster("IPPool", "a")),
        Err(Error::NotFound { .. })
    ));
    drop(holder);
    store
        .create(&Key::cluster("IPPool", "a"), &json!({}))
        .expect("create after release");
}

/// The WAL file's size: the most it ever held, since a rewound WAL is
/// overwritten rather than truncated.
fn wal_size(dir: &tempfile::TempDir) -> u64 {
    std::fs::metadata(dir.path().join("twill.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// About 4 KB: a full IPAM block's document, an overflow page per copy.
fn large_body(i: usize) -> serde_json::Value {
    json!({"i": i, "pad": "x".repeat(4000)})
}

/// A WAL of `CHECKPOINT_FRAMES` (4,000) pages is about 16 MB.
const WAL_BOUND: u64 = 40 << 20;

#[test]
fn wal_is_rewound_while_several_connections_write_without_pause() {
    let options = SqliteOptions {
        durability: twill_store::Durability::ProcessCrash,
        ..SqliteOptions::default()
    };
    let (dir, first) = temp_store(options.clone());
    let second = SqliteStore::open_with(dir.path().join("twill.db"), options).expect("open");
    // Two handles on one file, as two processes would be: without the
    // store's checkpoints, each commit's passive checkpoint trails the other
    // writer's commits and the WAL grows by every page written (about 190 MB
    // here).
    const WRITES: usize = 4000;
    std::thread::scope(|s| {
        for (w, store) in [&first, &second].into_iter().enumerate() {
            s.spawn(move || {
                let key = Key::cluster("IPAMBlock", format!("b{w}"));
                store.create(&key, &large_body(0)).expect("create");
                for i in 1..=WRITES {
                    store
                        .update(&key, &large_body(i), Precondition::Unconditional)
                        .expect("update");
                }
            });
        }
    });
    for w in 0..2 {
        let key = Key::cluster("IPAMBlock", format!("b{w}"));
        assert_eq!(first.get(&key).expect("get").value, large_body(WRITES));
    }
    let size = wal_size(&dir);
    assert!(size < WAL_BOUND, "the WAL grew to {size} bytes");
}

#[test]
fn reader_holding_an_old_snapshot_stalls_writes_for_at_most_a_checkpoint_wait() {
    let (dir, store) = temp_store(SqliteOptions {
        durability: twill_store::Durability::ProcessCrash,
        ..SqliteOptions::default()
    });
    // Enough writes to pass `CHECKPOINT_FRAMES` early: every later commit
    // asks for a checkpoint.
    const WRITES: usize = 3000;
    let key = Key::cluster("IPAMBlock", "b");
    store.create(&key, &large_body(0)).expect("create");
    // A read transaction that stays open: no checkpoint can rewind the WAL
    // past its snapshot.
    let mut reader = rusqlite::Connection::open(dir.path().join("twill.db")).expect("open raw");
    let snapshot = reader.transaction().expect("begin read");
    let held: i64 = snapshot
        .query_row("SELECT count(*) FROM objects", [], |row| row.get(0))
        .expect("read");
    assert_eq!(held, 1);
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 1..=WRITES {
        let write = std::time::Instant::now();
        store
            .update(&key, &large_body(i), Precondition::Unconditional)
            .expect("update");
        slowest = slowest.max(write.elapsed());
    }
    let total = started.elapsed();
    // Each checkpoint attempt may hold the write lock for 50 ms waiting for
    // the reader, then the checkpoint thread rests (10 ms, doubling up to a
    // second); the busy timeout (10 s) never comes into play.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest write {slowest:?}"
    );
    assert!(
        total < Duration::from_secs(30),
        "{WRITES} writes took {total:?}"
    );
    drop(snapshot);
    assert_eq!(store.get(&key).expect("get").value, large_body(WRITES));
}
