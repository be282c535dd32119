//! Several real processes sharing one SQLite file: compare-and-swap under
//! contention, and writers killed with SIGKILL in the middle of transactions.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use twill_store::{Datastore, Key, Revision, SqliteStore};

const TORTURE: &str = env!("CARGO_BIN_EXE_twill-store-torture");

#[test]
fn four_processes_compare_and_swap_increments_end_at_exactly_two_thousand() {
    const PROCESSES: usize = 4;
    const INCREMENTS: u64 = 500;
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let started = Instant::now();
    let children = (0..PROCESSES)
        .map(|_| {
            Command::new(TORTURE)
                .args([
                    "increment",
                    db.to_str().expect("utf-8 path"),
                    &INCREMENTS.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn incrementer")
        })
        .collect::<Vec<_>>();
    for child in children {
        let output = child.wait_with_output().expect("wait for incrementer");
        assert!(
            output.status.success(),
            "incrementer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "incrementer: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    eprintln!(
        "{PROCESSES} processes x {INCREMENTS} increments took {:?}",
        started.elapsed()
    );
    let store = SqliteStore::open(&db).expect("open store");
    let counter = store
        .get(&Key::cluster("Counter", "shared"))
        .expect("counter");
    assert_eq!(
        counter.value["count"].as_u64(),
        Some(PROCESSES as u64 * INCREMENTS)
    );
}

/// A cheap pseudo-random delay in [min, min + spread) milliseconds; the
/// sequence differs per run so kills land at different moments.
fn jitter(seed: &mut u64, min: u64, spread: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(min + *seed % spread)
}

#[test]
fn writer_killed_mid_transaction_loses_no_reported_commit() {
    const KILLS: usize = 20;
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
        | 1;
    let mut reported: Vec<(String, Revision)> = Vec::new();
    for round in 0..KILLS {
        let mut child = Command::new(TORTURE)
            .args([
                "write",
                db.to_str().expect("utf-8 path"),
                &format!("r{round}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        std::thread::sleep(jitter(&mut seed, 30, 150));
        // SIGKILL: no destructor, no rollback, no flush runs in the writer.
        child.kill().expect("kill writer");
        child.wait().expect("reap writer");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut out)
            .expect("read writer output");
        let before = reported.len();
        // A torn last line was cut by the kill: only whole lines count.
        let whole = out.rfind('\n').map_or("", |end| &out[..end]);
        for line in whole.lines() {
            let (name, revision) = line.split_once(' ').expect("'<name> <revision>' line");
            let revision = Revision(revision.parse().expect("numeric revision"));
            reported.push((name.to_owned(), revision));
        }

        // The file opens after every kill and holds every reported commit.
        let store = SqliteStore::open(&db).expect("open after kill");
        for (name, revision) in &reported {
            let object = store
                .get(&Key::namespaced("Probe", "crash", name.as_str()))
                .unwrap_or_else(|e| panic!("round {round}: reported write {name} lost: {e}"));
            assert_eq!(object.revision, *revision, "round {round}: {name}");
        }
        let current = store.current_revision().expect("revision");
        let listed = store.list("Probe", Some("crash")).expect("list");
        assert!(reported.iter().all(|(_, r)| *r <= current));
        assert!(listed.items.len() >= reported.len());
        eprintln!(
            "round {round}: {} new commits reported, {} objects, revision {current}",
            reported.len() - before,
            listed.items.len()
        );
    }
    assert!(
        reported.len() > KILLS,
        "the writer must have committed between kills"
    );
    let conn = rusqlite::Connection::open(&db).expect("open for integrity check");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
}

#[test]
fn watch_in_one_process_sees_commits_of_another_process_in_order() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let store = SqliteStore::open(&db).expect("open store");
    let mut watch = store
        .watch("Probe", Some("crash"), Revision(0))
        .expect("watch");
    let mut child = Command::new(TORTURE)
        .args(["write", db.to_str().expect("utf-8 path"), "w"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let mut received = Vec::new();
    while received.len() < 50 {
        match watch.next_timeout(Duration::from_secs(10)) {
            Ok(Some(twill_store::WatchEvent::Added(object))) => received.push(object),
            Ok(Some(twill_store::WatchEvent::Bookmark(_))) => {}
            other => {
                let _ = child.kill();
                panic!("expected Added from the other process, got {other:?}");
            }
        }
    }
    child.kill().expect("kill writer");
    child.wait().expect("reap writer");
    for (n, object) in received.iter().enumerate() {
        assert_eq!(object.key.name, format!("w-{n}"));
        assert_eq!(object.revision, Revision(n as u64 + 1));
    }
}
