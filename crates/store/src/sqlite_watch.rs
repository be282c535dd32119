//! Watches on the SQLite backend: each has its own connection and polls the
//! `events` table when `PRAGMA data_version` says another connection
//! committed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tracing::trace;

use crate::sqlite::{
    EVENT_ADDED, EVENT_DELETED, Notifier, SqliteOptions, from_sql_revision, namespace_from_column,
    open_connection, parse_body, sql_error,
};
use crate::{Error, Key, Object, Result, Watch, WatchEvent};

/// How many events one poll reads at most (bounds memory for a far-behind
/// watcher; the next poll continues).
const BATCH: i64 = 512;

pub(crate) struct SqliteWatch {
    conn: Connection,
    path: PathBuf,
    kind: String,
    namespace: Option<String>,
    /// Every event of this watch up to here has been read into `buffer`.
    position: i64,
    buffer: VecDeque<WatchEvent>,
    notifier: Arc<Notifier>,
    /// The `data_version` at the last poll; `None` forces a poll.
    data_version: Option<i64>,
    poll_interval: Duration,
    bookmark_interval: Duration,
    last_sent: Instant,
    failed: Option<Error>,
}

impl SqliteWatch {
    /// Opens the watch and reads its first batch, so that a compacted start
    /// revision fails here.
    pub(crate) fn start(
        path: &Path,
        options: &SqliteOptions,
        notifier: Arc<Notifier>,
        kind: &str,
        namespace: Option<&str>,
        after: i64,
    ) -> Result<Self> {
        let conn = open_connection(path, options)?;
        let mut watch = Self {
            conn,
            path: path.to_path_buf(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            position: after,
            buffer: VecDeque::new(),
            notifier,
            data_version: None,
            poll_interval: options.watch_poll_interval,
            bookmark_interval: options.bookmark_interval,
            last_sent: Instant::now(),
            failed: None,
        };
        watch.poll()?;
        Ok(watch)
    }

    /// Reads new events if anything was committed since the last poll.
    fn poll(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "watch", e))?;
        if self.data_version == Some(version) {
            return Ok(());
        }
        let complete = self.fetch()?;
        // A full batch means more is waiting: poll again without waiting for
        // another commit.
        self.data_version = complete.then_some(version);
        Ok(())
    }

    /// Reads up to [`BATCH`] events after `position` in one snapshot.
    /// Returns whether it read everything there was.
    fn fetch(&mut self) -> Result<bool> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_error(path, "watch", e))?;
        let (revision, compacted): (i64, i64) = tx
            .query_row(
                "SELECT (SELECT value FROM meta WHERE name = 'revision'),
                        (SELECT value FROM meta WHERE name = 'compacted')",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| sql_error(path, "watch", e))?;
        if self.position < compacted {
            return Err(Error::Compacted {
                requested: from_sql_revision(self.position),
                oldest: from_sql_revision(compacted),
            });
        }
        let rows: Vec<(i64, String, String, i64, String)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT revision, namespace, name, type, value FROM events
                     WHERE kind = ?1 AND revision > ?2 AND (?3 IS NULL OR namespace = ?3)
                     ORDER BY revision LIMIT ?4",
                )
                .map_err(|e| sql_error(path, "watch", e))?;
            stmt.query_map(
                params![self.kind, self.position, self.namespace, BATCH],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| sql_error(path, "watch", e))?
        };
        tx.finish().map_err(|e| sql_error(path, "watch", e))?;
        let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH;
        for (event_revision, namespace, name, event_type, body) in rows {
            let key = Key {
                kind: self.kind.clone(),
                namespace: namespace_from_column(namespace),
                name,
            };
            let value = parse_body(&key, &body)?;
            let object = Object {
                key,
                revision: from_sql_revision(event_revision),
                value,
            };
            self.buffer.push_back(match event_type {
                EVENT_ADDED => WatchEvent::Added(object),
                EVENT_DELETED => WatchEvent::Deleted(object),
                _ => WatchEvent::Modified(object),
            });
            self.position = event_revision;
        }
        if complete {
            // Nothing of ours up to `revision` in this snapshot: move on, so a
            // bookmark can report it and compaction of others' history does
            // not strand this watch.
            self.position = self.position.max(revision);
        }
        trace!(kind = %self.kind, position = self.position, buffered = self.buffer.len(), "watch polled");
        Ok(complete)
    }
}

impl SqliteWatch {
    /// What a finished watch keeps returning: the same compaction error, or
    /// "closed" after any other failure.
    fn after_failure(&self, error: &Error) -> Error {
        match error {
            Error::Compacted { requested, oldest } => Error::Compacted {
                requested: *requested,
                oldest: *oldest,
            },
            _ => Error::WatchClosed {
                kind: self.kind.clone(),
            },
        }
    }
}

impl Watch for SqliteWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<WatchEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.last_sent = Instant::now();
                return Ok(Some(event));
            }
            if let Some(error) = &self.failed {
                return Err(self.after_failure(error));
            }
            // Read before polling: a commit after this point wakes the wait
            // below at once.
            let seen = self.notifier.commits();
            if let Err(error) = self.poll() {
                self.failed = Some(self.after_failure(&error));
                return Err(error);
            }
            if !self.buffer.is_empty() {
                continue;
            }
            let now = Instant::now();
            let bookmark_due = self.last_sent + self.bookmark_interval;
            if now >= bookmark_due {
                self.last_sent = now;
                return Ok(Some(WatchEvent::Bookmark(from_sql_revision(self.position))));
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake = deadline.min(bookmark_due).min(now + self.poll_interval);
            self.notifier.wait(seen, wake - now);
        }
    }
}
