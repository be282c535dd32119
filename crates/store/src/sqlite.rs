//! The embedded backend: one SQLite file shared by every process on a machine.
//!
//! Layout (schema version 1, kept in `PRAGMA user_version`):
//!
//! ```text
//! meta(name, value)                       'revision' = latest write, 'compacted' = oldest
//!                                         revision a watch may start after
//! objects(kind, namespace, name, revision, value)   current state ('' = no namespace)
//! events(revision, kind, namespace, name, type, value)  history for watches;
//!                                         a Deleted row holds the last state
//! ```
//!
//! Every write (or [`Datastore::txn`] of several) is one `BEGIN IMMEDIATE`
//! transaction that bumps the revision, writes `objects` and appends to
//! `events`, so the revision, the state and the history never disagree,
//! whichever process wrote and whenever it died.
//! WAL mode lets readers and watchers run while a writer commits; a busy
//! handler makes writers queue for the write lock (retrying every few hundred
//! microseconds, up to [`SqliteOptions::busy_timeout`]) instead of failing.
//!
//! Checkpoints are placed by the store, not left to SQLite's automatic
//! ones: a commit that leaves [`CHECKPOINT_FRAMES`] or more frames in the WAL
//! wakes the store's checkpoint thread, which runs a `RESTART` checkpoint on
//! its own connection, off the writer's path (the write has returned by
//! then; its fsync was the commit's own).
//! SQLite's automatic checkpoint is `PASSIVE`: when several processes write
//! without pause, it runs after nearly every commit (with its own fsyncs) yet
//! never catches up with the others' commits, so the WAL is never rewound and
//! grows without bound, and every commit's fsync then also extends the file
//! (the file's size is written too: an fsync of 32 KB appended took over ten
//! times as long as of 32 KB overwritten, on the disk measured). After a
//! `RESTART` checkpoint the next writer rewinds the WAL, whose file keeps its
//! size, so commits overwrite it instead.
//!
//! Watches poll `PRAGMA data_version`, which changes when another connection
//! commits and costs no disk read; in-process writes also wake them at once
//! through a condition variable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tracing::{debug, info_span, trace};

use crate::sqlite_watch::SqliteWatch;
use crate::{
    Datastore, Error, Key, List, Object, Op, Precondition, Result, Revision, TextObject, TextOp,
    Watch,
};

/// The newest schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Schema migrations: entry `i` upgrades a file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the initial schema.
    "CREATE TABLE meta (
         name  TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
     CREATE TABLE objects (
         kind      TEXT NOT NULL,
         namespace TEXT NOT NULL,
         name      TEXT NOT NULL,
         revision  INTEGER NOT NULL,
         value     TEXT NOT NULL,
         PRIMARY KEY (kind, namespace, name)
     ) WITHOUT ROWID;
     CREATE TABLE events (
         revision  INTEGER PRIMARY KEY,
         kind      TEXT NOT NULL,
         namespace TEXT NOT NULL,
         name      TEXT NOT NULL,
         type      INTEGER NOT NULL,
         value     TEXT NOT NULL
     );
     CREATE INDEX events_by_kind ON events (kind, revision);",
];

/// How many WAL frames (pages) a commit may leave before the WAL is
/// checkpointed and rewound: a WAL file of about 16 MB. Four times SQLite's
/// automatic threshold: each checkpoint holds off writers while it copies
/// and syncs, and pages written again and again are copied once per
/// checkpoint (about 6 % more allocations per second through the node
/// service than with 1,000 frames, in an A/B on a loaded machine).
pub(crate) const CHECKPOINT_FRAMES: i32 = 4000;

/// How long a checkpoint waits at most for other writers and for readers of
/// older snapshots. It holds the write lock while it waits for readers, so
/// this bounds the stall a slow reader can cause; a checkpoint that gives up
/// keeps what it copied and is tried again after a later commit, once the
/// checkpoint thread has rested (see [`CHECKPOINT_REST`]).
const CHECKPOINT_WAIT: Duration = Duration::from_millis(50);

/// How long the checkpoint thread rests after a checkpoint that could not
/// complete: the first rest, doubled after each further failure up to
/// [`CHECKPOINT_REST_MAX`], and reset by a checkpoint that completes. A
/// checkpoint that merely lost the race for the write lock to another
/// process's writers is soon tried again, so the WAL stays near its bound;
/// a reader that keeps an old snapshot for long costs writers at most
/// [`CHECKPOINT_WAIT`] per second.
const CHECKPOINT_REST: Duration = Duration::from_millis(10);
const CHECKPOINT_REST_MAX: Duration = Duration::from_secs(1);

/// Event type codes in the `events` table.
pub(crate) const EVENT_ADDED: i64 = 0;
pub(crate) const EVENT_MODIFIED: i64 = 1;
pub(crate) const EVENT_DELETED: i64 = 2;

/// How much a committed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives the crash of any process (`synchronous = NORMAL`); a power
    /// loss may drop the last commits, never corrupt the file.
    ProcessCrash,
    /// Also survives a power loss (`synchronous = FULL`: an fsync per commit).
    PowerLoss,
}

/// Tuning for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a write waits for another process's write lock before
    /// failing with [`Error::Busy`].
    pub busy_timeout: Duration,
    /// What a commit survives.
    pub durability: Durability,
    /// How many revisions of history watches can resume from; older history
    /// is compacted as writes go by.
    pub history_retention: u64,
    /// How often an idle watch checks the file for commits by other
    /// processes (an upper bound on cross-process delivery latency).
    pub watch_poll_interval: Duration,
    /// How long a watch stays silent before it sends a bookmark.
    pub bookmark_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            durability: Durability::PowerLoss,
            history_retention: 100_000,
            watch_poll_interval: Duration::from_millis(5),
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// Wakes this process's watches when this process commits.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    commits: Mutex<u64>,
    cond: Condvar,
}

impl Notifier {
    fn notify(&self) {
        let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        *commits = commits.wrapping_add(1);
        self.cond.notify_all();
    }

    /// The number of commits seen so far.
    pub(crate) fn commits(&self) -> u64 {
        *self.commits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a commit after `seen` or until `timeout`.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let _unused = self
            .cond
            .wait_timeout_while(commits, timeout, |c| *c == seen)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// The embedded SQLite datastore; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    options: SqliteOptions,
    /// Shared with the checkpoint thread, which holds it while it
    /// checkpoints so that this store's own writes do not race it for the
    /// write lock.
    writer: Arc<Mutex<Connection>>,
    reader: Mutex<Connection>,
    notifier: Arc<Notifier>,
    /// The WAL's frame count after the writer's last commit (from its WAL
    /// hook).
    wal_frames: Arc<AtomicI32>,
    /// Wakes the checkpoint thread; it ends when this is dropped.
    checkpoint: SyncSender<()>,
    /// The last revision handed out in the write transaction under way (0:
    /// none yet). Only touched with `writer` locked; `meta` is bumped once,
    /// at the end of the transaction, rather than once per write in it.
    txn_revision: AtomicI64,
}

/// The checkpoint thread: one `RESTART` checkpoint per wake-up, on a
/// connection of its own opened at the first one, with `writer` (the
/// store's writing connection) held meanwhile.
fn run_checkpoints(
    path: &Path,
    options: &SqliteOptions,
    writer: &Mutex<Connection>,
    wake: &Receiver<()>,
) {
    let mut conn: Option<Connection> = None;
    let mut rest = CHECKPOINT_REST;
    while wake.recv().is_ok() {
        let conn = match conn.as_mut() {
            Some(conn) => conn,
            None => {
                let opened = open_connection(path, options).and_then(|mut c| {
                    install_busy_handler(&mut c, CHECKPOINT_WAIT.min(options.busy_timeout))
                        .map_err(|e| sql_error(path, "set busy handler", e))?;
                    Ok(c)
                });
                match opened {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        debug!(error = %e, "cannot open the checkpoint connection");
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        // RESTART waits for other writers and for readers of older
        // snapshots, copies the WAL into the database and syncs it; the
        // next writer then rewinds the WAL.
        let checkpointed = {
            let _writes_held = writer.lock().unwrap_or_else(|p| p.into_inner());
            conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::RESTART)
        };
        match checkpointed {
            Ok((frames, copied)) => {
                let elapsed = started.elapsed();
                debug!(frames, copied, ?elapsed, "checkpointed the wal");
                rest = CHECKPOINT_REST;
            }
            Err(e) => {
                debug!(error = %e, ?rest, "wal checkpoint did not complete");
                std::thread::sleep(rest);
                rest = (rest * 2).min(CHECKPOINT_REST_MAX);
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// Wraps a SQLite error with the file and the operation, turning lock
/// timeouts into [`Error::Busy`].
pub(crate) fn sql_error(path: &Path, operation: &'static str, source: rusqlite::Error) -> Error {
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy {
            path: path.to_path_buf(),
            operation,
        },
        _ => Error::Sqlite {
            path: path.to_path_buf(),
            operation,
            source,
        },
    }
}

fn to_sql_revision(revision: Revision) -> i64 {
    i64::try_from(revision.0).unwrap_or(i64::MAX)
}

pub(crate) fn from_sql_revision(revision: i64) -> Revision {
    Revision(u64::try_from(revision).unwrap_or(0))
}

pub(crate) fn namespace_column(namespace: Option<&str>) -> &str {
    namespace.unwrap_or("")
}

pub(crate) fn namespace_from_column(namespace: String) -> Option<String> {
    (!namespace.is_empty()).then_some(namespace)
}

/// How many times a waiting writer doubles its 100 µs pause: 200 µs at most.
/// Waiting writers poll at this pace, and the write lock is idle until one
/// of them looks: with four processes taking turns, a 1.6 ms cap left it
/// idle about a quarter of the time.
const BUSY_BACKOFF_STEPS: i32 = 1;

/// Makes a connection wait for another process's lock up to `timeout`,
/// retrying every few hundred microseconds. SQLite's own busy timeout backs
/// off to 100 ms sleeps, which leaves the write lock idle long after its
/// holder released it and multiplies write latency under contention.
fn install_busy_handler(conn: &mut Connection, timeout: Duration) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |attempt: i32| {
        if attempt == 0 {
            started = Instant::now();
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return false;
        }
        let pause = Duration::from_micros(100 << attempt.clamp(0, BUSY_BACKOFF_STEPS));
        std::thread::sleep(pause.min(timeout - waited));
        true
    }))
}

/// Opens a connection with Twill's pragmas; the schema is not touched.
pub(crate) fn open_connection(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, "open", e))?;
    install_busy_handler(&mut conn, options.busy_timeout)
        .map_err(|e| sql_error(path, "set busy handler", e))?;
    // Switching to WAL takes an exclusive lock that the busy handler does not
    // always wait for, so retry it while another process opens the file too.
    let deadline = Instant::now() + options.busy_timeout;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(sql_error(path, "enable WAL", e)),
        }
    }
    let synchronous = match options.durability {
        Durability::ProcessCrash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| sql_error(path, "set synchronous", e))?;
    Ok(conn)
}

/// Brings the file's schema to [`SCHEMA_VERSION`], in one write transaction
/// so that processes opening a new file together create it once.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, "begin migration", e))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| sql_error(path, "read schema version", e))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let from = usize::try_from(found).unwrap_or(0);
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(from) {
        debug!(path = %path.display(), version = version + 1, "migrating datastore schema");
        tx.execute_batch(migration)
            .map_err(|e| sql_error(path, "migrate schema", e))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| sql_error(path, "write schema version", e))?;
    tx.commit()
        .map_err(|e| sql_error(path, "commit migration", e))
}

/// Reads a stored JSON body.
pub(crate) fn parse_body(key: &Key, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|source| Error::Corrupt {
        key: key.clone(),
        source,
    })
}

/// A stored object with its body parsed.
fn parsed(text: TextObject) -> Result<Object> {
    let value = parse_body(&text.key, &text.body)?;
    Ok(Object {
        key: text.key,
        revision: text.revision,
        value,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaTooNew`] for a file from a newer Twill, [`Error::Busy`]
    /// or [`Error::Sqlite`] if the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the store at `path`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let _span = info_span!("open_datastore", path = %path.display()).entered();
        let mut writer = open_connection(&path, &options)?;
        migrate(&mut writer, &path)?;
        // The hook replaces SQLite's automatic checkpoint on this connection
        // (the only one that writes); `write` wakes the checkpoint thread
        // instead.
        let wal_frames = Arc::new(AtomicI32::new(0));
        let frames = Arc::clone(&wal_frames);
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                frames.store(pages, Ordering::Relaxed);
                Ok(())
            }))
            .map_err(|e| sql_error(&path, "set wal hook", e))?;
        let reader = open_connection(&path, &options)?;
        // One pending wake-up is enough: more commits in the meantime need
        // the same checkpoint.
        let (checkpoint, wake) = sync_channel(1);
        let writer = Arc::new(Mutex::new(writer));
        let thread_path = path.clone();
        let thread_options = options.clone();
        let thread_writer = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("twill-checkpoint".into())
            .spawn(move || run_checkpoints(&thread_path, &thread_options, &thread_writer, &wake))
            .map_err(|source| Error::Thread {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                options,
                writer,
                reader: Mutex::new(reader),
                notifier: Arc::new(Notifier::default()),
                wal_frames,
                checkpoint,
                txn_revision: AtomicI64::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.shared.options
    }

    /// Deletes the history up to and including `through` (capped at the
    /// current revision): watches can then only start after `through`.
    /// Returns the oldest revision a watch may now start after.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    pub fn compact(&self, through: Revision) -> Result<Revision> {
        self.write("compact", |tx, path| {
            let current = read_meta(tx, path, "revision")?;
            compact_in(tx, path, to_sql_revision(through).min(current))
        })
        .map(from_sql_revision)
    }

    /// The oldest revision a watch may start after.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    pub fn oldest_watchable(&self) -> Result<Revision> {
        let conn = self.reader();
        read_meta(&conn, &self.shared.path, "compacted").map(from_sql_revision)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.shared.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The objects of `kind` (in `namespace`, or all) with their bodies as
    /// text, ordered, and the revision they were read at; with `release`,
    /// the reader's page cache is freed afterwards.
    fn list_rows(
        &self,
        kind: &str,
        namespace: Option<&str>,
        release: bool,
    ) -> Result<(Revision, Vec<TextObject>)> {
        let path = &self.shared.path;
        let mut conn = self.reader();
        // One read transaction: the items and the revision are one snapshot.
        let tx = conn.transaction().map_err(|e| sql_error(path, "list", e))?;
        let revision = read_meta(&tx, path, "revision")?;
        let rows: Vec<(String, String, i64, String)> = {
            let (sql, args): (&str, Vec<&dyn rusqlite::ToSql>) = match &namespace {
                Some(ns) => (
                    "SELECT namespace, name, revision, value FROM objects
                     WHERE kind = ?1 AND namespace = ?2 ORDER BY namespace, name",
                    vec![&kind, ns],
                ),
                None => (
                    "SELECT namespace, name, revision, value FROM objects
                     WHERE kind = ?1 ORDER BY namespace, name",
                    vec![&kind],
                ),
            };
            let mut stmt = tx
                .prepare_cached(sql)
                .map_err(|e| sql_error(path, "list", e))?;
            stmt.query_map(args.as_slice(), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error(path, "list", e))?
        };
        tx.finish().map_err(|e| sql_error(path, "list", e))?;
        if release {
            // Only memory is at stake: a failure leaves the cache as it was.
            if let Err(error) = conn.execute_batch("PRAGMA shrink_memory") {
                debug!(%error, "cannot release the reader's page cache");
            }
        }
        let items = rows
            .into_iter()
            .map(|(ns, name, revision, body)| TextObject {
                key: Key {
                    kind: kind.to_owned(),
                    namespace: namespace_from_column(ns),
                    name,
                },
                revision: from_sql_revision(revision),
                body,
            })
            .collect();
        Ok((from_sql_revision(revision), items))
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and wakes watchers after
    /// the commit, and the checkpoint thread if the WAL holds
    /// [`CHECKPOINT_FRAMES`] or more frames (see the module docs).
    fn write<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &Path) -> Result<T>,
    ) -> Result<T> {
        let path = &self.shared.path;
        let mut conn = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(path, operation, e))?;
        self.shared.txn_revision.store(0, Ordering::Relaxed);
        let result = f(&tx, path)?;
        let last = self.shared.txn_revision.swap(0, Ordering::Relaxed);
        if last > 0 {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
                .and_then(|mut stmt| stmt.execute([last]))
                .map_err(|e| sql_error(path, "bump revision", e))?;
        }
        tx.commit().map_err(|e| sql_error(path, operation, e))?;
        drop(conn);
        self.shared.notifier.notify();
        if self.shared.wal_frames.swap(0, Ordering::Relaxed) >= CHECKPOINT_FRAMES {
            match self.shared.checkpoint.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    debug!("the checkpoint thread has ended");
                }
            }
        }
        Ok(result)
    }

    /// Applies one operation inside the write transaction `tx`.
    fn apply_in(&self, tx: &rusqlite::Transaction<'_>, path: &Path, op: &Op) -> Result<Object> {
        let (revision, deleted) = self.apply_text_in(tx, path, &TextOp::from_op(op))?;
        let value = match op {
            Op::Create { value, .. } | Op::Update { value, .. } => value.clone(),
            Op::Delete { key, .. } => {
                parse_body(key, &deleted.expect("a delete returns the body it removed"))?
            }
        };
        Ok(Object {
            key: op.key().clone(),
            revision,
            value,
        })
    }

    /// Applies one operation with a JSON text body inside the write
    /// transaction `tx`; returns the revision it wrote (for a delete, the
    /// object's last revision) and, for a delete, the body it removed.
    fn apply_text_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        op: &TextOp,
    ) -> Result<(Revision, Option<String>)> {
        let write = |key: &Key, body: &str, event_type: i64| {
            let revision = self.record(tx, path, key, event_type, body)?;
            Self::upsert(tx, path, key, revision, body)?;
            trace!(key = %key, revision, "wrote object");
            Ok((from_sql_revision(revision), None))
        };
        match op {
            TextOp::Create { key, body } => {
                if Self::revision_in(tx, path, key)?.is_some() {
                    return Err(Error::AlreadyExists { key: key.clone() });
                }
                write(key, body, EVENT_ADDED)
            }
            TextOp::Update {
                key,
                body,
                precondition,
            } => {
                // Only the revision: reading the old body would read every
                // overflow page of a large object for nothing.
                let actual = Self::revision_in(tx, path, key)?
                    .ok_or_else(|| Error::NotFound { key: key.clone() })?;
                precondition.check(key, from_sql_revision(actual))?;
                write(key, body, EVENT_MODIFIED)
            }
            TextOp::Delete { key, precondition } => {
                let (revision, body) = Self::check(tx, path, key, *precondition)?;
                self.record(tx, path, key, EVENT_DELETED, &body)?;
                tx.prepare_cached(
                    "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        key.kind,
                        namespace_column(key.namespace.as_deref()),
                        key.name
                    ])
                })
                .map_err(|e| sql_error(path, "delete object", e))?;
                trace!(key = %key, last_revision = revision, "deleted object");
                Ok((from_sql_revision(revision), Some(body)))
            }
        }
    }

    /// Applies one operation in its own transaction.
    fn write_one(&self, operation: &'static str, op: &Op) -> Result<Object> {
        op.key().validate()?;
        self.write(operation, |tx, path| self.apply_in(tx, path, op))
    }

    /// Takes the next revision (`meta` is written by [`SqliteStore::write`]
    /// once per transaction), records the event and compacts old history
    /// now and then. Returns the new revision.
    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        key: &Key,
        event_type: i64,
        body: &str,
    ) -> Result<i64> {
        let last = match self.shared.txn_revision.load(Ordering::Relaxed) {
            0 => read_meta(tx, path, "revision")?,
            last => last,
        };
        let revision = last + 1;
        self.shared.txn_revision.store(revision, Ordering::Relaxed);
        tx.prepare_cached(
            "INSERT INTO events (revision, kind, namespace, name, type, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                revision,
                key.kind,
                namespace_column(key.namespace.as_deref()),
                key.name,
                event_type,
                body
            ])
        })
        .map_err(|e| sql_error(path, "record event", e))?;
        let retention = i64::try_from(self.shared.options.history_retention).unwrap_or(i64::MAX);
        // Compacting in batches keeps the per-write cost flat.
        if revision % 256 == 0 && revision > retention {
            compact_in(tx, path, revision - retention)?;
        }
        Ok(revision)
    }

    /// The current revision of `key` in the write transaction `tx`.
    fn revision_in(tx: &Connection, path: &Path, key: &Key) -> Result<Option<i64>> {
        tx.prepare_cached(
            "SELECT revision FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    key.kind,
                    namespace_column(key.namespace.as_deref()),
                    key.name
                ],
                |row| row.get(0),
            )
            .optional()
        })
        .map_err(|e| sql_error(path, "read object", e))
    }

    /// The current revision and body of `key`, read on `conn` (the reader,
    /// or a write transaction); `operation` names the read in errors.
    fn current_in(
        conn: &Connection,
        path: &Path,
        key: &Key,
        operation: &'static str,
    ) -> Result<Option<(i64, String)>> {
        conn.prepare_cached(
            "SELECT revision, value FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    key.kind,
                    namespace_column(key.namespace.as_deref()),
                    key.name
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })
        .map_err(|e| sql_error(path, operation, e))
    }

    /// Checks existence and the precondition for an update or delete;
    /// returns the current revision and body.
    fn check(
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        key: &Key,
        precondition: Precondition,
    ) -> Result<(i64, String)> {
        let Some((actual, body)) = Self::current_in(tx, path, key, "read object")? else {
            return Err(Error::NotFound { key: key.clone() });
        };
        precondition.check(key, from_sql_revision(actual))?;
        Ok((actual, body))
    }

    fn upsert(
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        key: &Key,
        revision: i64,
        body: &str,
    ) -> Result<()> {
        tx.prepare_cached(
            "INSERT INTO objects (kind, namespace, name, revision, value) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (kind, namespace, name) DO UPDATE SET revision = ?4, value = ?5",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                key.kind,
                namespace_column(key.namespace.as_deref()),
                key.name,
                revision,
                body
            ])
        })
        .map(|_| ())
        .map_err(|e| sql_error(path, "write object", e))
    }
}

fn read_meta(conn: &Connection, path: &Path, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
        .map_err(|e| sql_error(path, "read revision", e))
}

/// Deletes events up to `through` and records it as the compaction point.
fn compact_in(tx: &rusqlite::Transaction<'_>, path: &Path, through: i64) -> Result<i64> {
    let compacted = read_meta(tx, path, "compacted")?;
    if through <= compacted {
        return Ok(compacted);
    }
    let deleted = tx
        .execute("DELETE FROM events WHERE revision <= ?1", [through])
        .map_err(|e| sql_error(path, "compact history", e))?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
        [through],
    )
    .map_err(|e| sql_error(path, "compact history", e))?;
    debug!(through, deleted, "compacted datastore history");
    Ok(through)
}

impl Datastore for SqliteStore {
    fn create(&self, key: &Key, value: &serde_json::Value) -> Result<Object> {
        let op = Op::Create {
            key: key.clone(),
            value: value.clone(),
        };
        self.write_one("create", &op)
    }

    fn update(
        &self,
        key: &Key,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Object> {
        let op = Op::Update {
            key: key.clone(),
            value: value.clone(),
            precondition,
        };
        self.write_one("update", &op)
    }

    fn delete(&self, key: &Key, precondition: Precondition) -> Result<Object> {
        let op = Op::Delete {
            key: key.clone(),
            precondition,
        };
        self.write_one("delete", &op)
    }

    fn txn(&self, ops: &[Op]) -> Result<Vec<Object>> {
        for op in ops {
            op.key().validate()?;
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.write("transaction", |tx, path| {
            ops.iter().map(|op| self.apply_in(tx, path, op)).collect()
        })
    }

    fn txn_text(&self, ops: &[TextOp]) -> Result<Vec<Revision>> {
        for op in ops {
            op.validate()?;
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.write("transaction", |tx, path| {
            ops.iter()
                .map(|op| {
                    self.apply_text_in(tx, path, op)
                        .map(|(revision, _)| revision)
                })
                .collect()
        })
    }

    fn get_text(&self, key: &Key) -> Result<TextObject> {
        key.validate()?;
        let path = &self.shared.path;
        let row = Self::current_in(&self.reader(), path, key, "get")?;
        let (revision, body) = row.ok_or_else(|| Error::NotFound { key: key.clone() })?;
        Ok(TextObject {
            key: key.clone(),
            revision: from_sql_revision(revision),
            body,
        })
    }

    fn revision_of(&self, key: &Key) -> Result<Option<Revision>> {
        key.validate()?;
        let revision = Self::revision_in(&self.reader(), &self.shared.path, key)?;
        Ok(revision.map(from_sql_revision))
    }

    fn get(&self, key: &Key) -> Result<Object> {
        parsed(self.get_text(key)?)
    }

    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<List> {
        let (revision, items) = self.list_rows(kind, namespace, false)?;
        let items = items.into_iter().map(parsed).collect::<Result<Vec<_>>>()?;
        Ok(List { items, revision })
    }

    /// A list's consumer decodes each object and drops it: the pages it
    /// read are of no further use, so the reader's page cache (up to 2 MB,
    /// of the whole kind) is released rather than kept for later gets.
    fn list_text(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Revision, Vec<TextObject>)> {
        self.list_rows(kind, namespace, true)
    }

    fn watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<Box<dyn Watch>> {
        let watch = SqliteWatch::start(
            &self.shared.path,
            &self.shared.options,
            Arc::clone(&self.shared.notifier),
            kind,
            namespace,
            to_sql_revision(after),
        )?;
        Ok(Box::new(watch))
    }

    fn current_revision(&self) -> Result<Revision> {
        let conn = self.reader();
        read_meta(&conn, &self.shared.path, "revision").map(from_sql_revision)
    }
}
