//! List-then-watch with automatic relisting: the loop every consumer of a
//! kind needs (a daemon's cache of policies, pools, peers...).
//!
//! The first event is a [`ListWatchEvent::Snapshot`] of the kind; changes
//! follow. When the watch falls behind compaction the watcher lists again and
//! sends a fresh snapshot, which the consumer takes as "replace everything".
//! Other watch failures resume from the last revision seen, without a relist.

use std::time::Duration;

use tracing::{debug, warn};

use crate::{Datastore, Error, List, Result, Revision, Watch, WatchEvent};

/// What a [`ListWatcher`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ListWatchEvent {
    /// The complete state of the watched kind at `revision`: replace what
    /// was known. Sent first and after every relist.
    Snapshot(List),
    /// A change after the last snapshot (or a bookmark).
    Change(WatchEvent),
}

/// Keeps one kind (optionally one namespace) in view across compactions
/// and watch failures; see the module docs.
pub struct ListWatcher<S> {
    store: S,
    kind: String,
    namespace: Option<String>,
    watch: Option<Box<dyn Watch>>,
    /// The last revision delivered; `None` until the first snapshot and
    /// after a compaction (both need a list).
    position: Option<Revision>,
    relists: u64,
}

impl<S: Datastore> ListWatcher<S> {
    /// A watcher of `kind` in `namespace` (or all namespaces). Nothing is read
    /// until the first [`ListWatcher::next_timeout`].
    pub fn new(store: S, kind: impl Into<String>, namespace: Option<String>) -> Self {
        Self {
            store,
            kind: kind.into(),
            namespace,
            watch: None,
            position: None,
            relists: 0,
        }
    }

    /// How many times the watcher listed after its first snapshot.
    pub fn relists(&self) -> u64 {
        self.relists
    }

    /// Waits up to `timeout` for the next snapshot or change. A watch
    /// overtaken by compaction is repaired here: the result is then a new
    /// snapshot.
    ///
    /// # Errors
    ///
    /// Backend errors from listing or watching. The watcher stays usable:
    /// the next call resumes from the last revision delivered (or lists).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ListWatchEvent>> {
        match self.step(timeout) {
            Err(Error::Compacted { requested, oldest }) => {
                warn!(kind = %self.kind, %requested, %oldest, "watch overtaken by compaction; relisting");
                self.watch = None;
                self.position = None;
                self.relists += 1;
                // A second compaction between this list and its watch would
                // need a very small retention; report it rather than spin.
                self.step(timeout)
            }
            Err(error) => {
                self.watch = None;
                Err(error)
            }
            ok => ok,
        }
    }

    fn step(&mut self, timeout: Duration) -> Result<Option<ListWatchEvent>> {
        let namespace = self.namespace.as_deref();
        let Some(position) = self.position else {
            let list = self.store.list(&self.kind, namespace)?;
            self.watch = Some(self.store.watch(&self.kind, namespace, list.revision)?);
            self.position = Some(list.revision);
            debug!(kind = %self.kind, revision = %list.revision, items = list.items.len(), "listed");
            return Ok(Some(ListWatchEvent::Snapshot(list)));
        };
        let watch = match &mut self.watch {
            Some(watch) => watch,
            None => self
                .watch
                .insert(self.store.watch(&self.kind, namespace, position)?),
        };
        let event = watch.next_timeout(timeout)?;
        if let Some(event) = &event {
            self.position = Some(event.revision());
        }
        Ok(event.map(ListWatchEvent::Change))
    }
}
