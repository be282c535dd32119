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
use twill_store::{Datastore, ListWatchEvent, ListWatcher, Result, TextList, WatchEvent};

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

/// One kind's list-then-watch ([`ListWatcher`], snapshots as text), its
/// events turned into the owner's messages.
struct Pump {
    kind: &'static str,
    watcher: ListWatcher<Arc<dyn Datastore>, TextList>,
}

impl Pump {
    fn new(store: Arc<dyn Datastore>, kind: &'static str) -> Self {
        Self {
            kind,
            watcher: ListWatcher::text(store, kind, None),
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

    /// Waits up to `timeout` for the next message: a snapshot (first, and
    /// after a relist), a change, or nothing (a quiet wait or a bookmark).
    fn next(&mut self, timeout: Duration) -> Result<Option<FelixMsg>> {
        let kind = self.kind;
        Ok(match self.watcher.next_timeout(timeout)? {
            Some(ListWatchEvent::Snapshot(list)) => Some(FelixMsg::Snapshot {
                kind,
                items: list.items.into_iter().map(Item::decode_text).collect(),
            }),
            Some(ListWatchEvent::Change(
                WatchEvent::Added(object) | WatchEvent::Modified(object),
            )) => Some(FelixMsg::upserted(kind, object)),
            Some(ListWatchEvent::Change(WatchEvent::Deleted(object))) => {
                Some(FelixMsg::deleted(kind, object))
            }
            Some(ListWatchEvent::Change(WatchEvent::Bookmark(_))) | None => None,
        })
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
