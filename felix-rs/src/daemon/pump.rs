//! The list-watch threads: one per watched kind, each listing its kind,
//! watching it from the list's revision and listing again when the watch
//! falls behind compaction, handing the owner task [`FelixMsg`]s already
//! decoded and converted.
//!
//! A snapshot is listed as JSON text ([`Datastore::list_text`]) and each
//! object is decoded and converted on its own, its text and JSON value
//! dropped before the next: no list of JSON values is ever held, and the
//! transient allocations of one object reuse those of the last, so the
//! long-lived converted objects are not scattered between freed ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use twill_daemon::WatchMsg;
use twill_store::{Datastore, Error, Result, Revision, Watch, WatchEvent};

use super::{FelixMsg, Item};

/// How long one wait for a change lasts before the thread checks that the
/// owner still listens.
const TICK: Duration = Duration::from_millis(100);
/// How long a failed list or watch waits before it is retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts the thread that lists and watches `kind` and sends what it
/// reads to `tx`, logging within `span`; it stops once the receiver is
/// gone.
///
/// # Errors
///
/// The thread cannot be started.
pub(super) fn spawn(
    store: Arc<dyn Datastore>,
    kind: &'static str,
    tx: mpsc::Sender<FelixMsg>,
    span: tracing::Span,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("felix-watch-{kind}"))
        .spawn(move || {
            let _entered = span.enter();
            Pump::new(store, kind).run(&tx);
            tracing::debug!("list-watch stopped");
        })
        .map(drop)
}

/// One kind's list-then-watch.
struct Pump {
    store: Arc<dyn Datastore>,
    kind: &'static str,
    watch: Option<Box<dyn Watch>>,
    /// The last revision delivered; `None` until the first snapshot and
    /// after a compaction (both need a list).
    position: Option<Revision>,
}

impl Pump {
    fn new(store: Arc<dyn Datastore>, kind: &'static str) -> Self {
        Self {
            store,
            kind,
            watch: None,
            position: None,
        }
    }

    /// Every snapshot, change and failure becomes one message until the
    /// receiver is gone; bookmarks are skipped.
    fn run(&mut self, tx: &mpsc::Sender<FelixMsg>) {
        while !tx.is_closed() {
            let (msg, failed) = match self.next(TICK) {
                Ok(Some(msg)) => (msg, false),
                Ok(None) => continue,
                Err(error) => (FelixMsg::watch_error(self.kind, error), true),
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
            if failed {
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }

    /// Waits up to `timeout` for the next message. A watch overtaken by
    /// compaction is repaired here: the message is then a new snapshot.
    /// After any other failure the next call resumes from the last
    /// revision delivered (or lists).
    fn next(&mut self, timeout: Duration) -> Result<Option<FelixMsg>> {
        match self.step(timeout) {
            Err(Error::Compacted { requested, oldest }) => {
                tracing::warn!(%requested, %oldest, "watch overtaken by compaction; relisting");
                self.watch = None;
                self.position = None;
                self.step(timeout)
            }
            Err(error) => {
                self.watch = None;
                Err(error)
            }
            ok => ok,
        }
    }

    fn step(&mut self, timeout: Duration) -> Result<Option<FelixMsg>> {
        let kind = self.kind;
        let Some(position) = self.position else {
            let (revision, texts) = self.store.list_text(kind, None)?;
            tracing::debug!(%revision, objects = texts.len(), "listed");
            let items = texts.into_iter().map(Item::decode_text).collect();
            self.watch = Some(self.store.watch(kind, None, revision)?);
            self.position = Some(revision);
            return Ok(Some(FelixMsg::Snapshot { kind, items }));
        };
        let watch = match &mut self.watch {
            Some(watch) => watch,
            None => self.watch.insert(self.store.watch(kind, None, position)?),
        };
        let Some(event) = watch.next_timeout(timeout)? else {
            return Ok(None);
        };
        self.position = Some(event.revision());
        Ok(match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                Some(FelixMsg::upserted(kind, object))
            }
            WatchEvent::Deleted(object) => Some(FelixMsg::deleted(kind, object)),
            WatchEvent::Bookmark(_) => None,
        })
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
