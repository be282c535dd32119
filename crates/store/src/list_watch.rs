//! List-then-watch with automatic relisting: the loop every consumer of a
//! kind needs (a daemon's cache of policies, pools, peers...).
//!
//! The first event is a [`ListWatchEvent::Snapshot`] of the kind; changes
//! follow. When the watch falls behind compaction the watcher lists again and
//! sends a fresh snapshot, which the consumer takes as "replace everything".
//! Other watch failures resume from the last revision seen, without a relist.
//!
//! A snapshot is a [`List`] of JSON values ([`ListWatcher::new`]) or a
//! [`TextList`] of bodies as text ([`ListWatcher::text`]), for a consumer
//! that decodes each object into its own type and drops the text.

use std::marker::PhantomData;
use std::time::Duration;

use tracing::{debug, warn};

use crate::{Datastore, Error, List, Result, Revision, TextObject, Watch, WatchEvent};

/// How a [`ListWatcher`] lists its kind for a snapshot.
pub trait Listing: Sized {
    /// `kind`'s objects in `namespace` (or all namespaces), one snapshot.
    ///
    /// # Errors
    ///
    /// The store's.
    fn list<S: Datastore + ?Sized>(store: &S, kind: &str, namespace: Option<&str>) -> Result<Self>;
    /// The revision the listing was read at.
    fn revision(&self) -> Revision;
    /// How many objects it holds.
    fn object_count(&self) -> usize;
}

impl Listing for List {
    fn list<S: Datastore + ?Sized>(store: &S, kind: &str, namespace: Option<&str>) -> Result<Self> {
        store.list(kind, namespace)
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn object_count(&self) -> usize {
        self.items.len()
    }
}

/// A kind's objects with their bodies as text ([`Datastore::list_text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TextList {
    /// The objects, ordered by namespace then name.
    pub items: Vec<TextObject>,
    /// The revision the list was read at.
    pub revision: Revision,
}

impl Listing for TextList {
    fn list<S: Datastore + ?Sized>(store: &S, kind: &str, namespace: Option<&str>) -> Result<Self> {
        let (revision, items) = store.list_text(kind, namespace)?;
        Ok(Self { items, revision })
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn object_count(&self) -> usize {
        self.items.len()
    }
}

/// What a [`ListWatcher`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ListWatchEvent<L = List> {
    /// The complete state of the watched kind: replace what was known.
    /// Sent first and after every relist.
    Snapshot(L),
    /// A change after the last snapshot (or a bookmark).
    Change(WatchEvent),
}

/// Keeps one kind (optionally one namespace) in view across compactions
/// and watch failures; see the module docs.
pub struct ListWatcher<S, L = List> {
    store: S,
    kind: String,
    namespace: Option<String>,
    watch: Option<Box<dyn Watch>>,
    /// The last revision delivered; `None` until the first snapshot and
    /// after a compaction (both need a list).
    position: Option<Revision>,
    relists: u64,
    listing: PhantomData<fn() -> L>,
}

impl<S: Datastore> ListWatcher<S> {
    /// A watcher of `kind` in `namespace` (or all namespaces) whose
    /// snapshots are [`List`]s. Nothing is read until the first
    /// [`ListWatcher::next_timeout`].
    pub fn new(store: S, kind: impl Into<String>, namespace: Option<String>) -> Self {
        Self::with_listing(store, kind.into(), namespace)
    }
}

impl<S: Datastore> ListWatcher<S, TextList> {
    /// As [`ListWatcher::new`], with snapshots listed as text.
    pub fn text(store: S, kind: impl Into<String>, namespace: Option<String>) -> Self {
        Self::with_listing(store, kind.into(), namespace)
    }
}

impl<S: Datastore, L: Listing> ListWatcher<S, L> {
    fn with_listing(store: S, kind: String, namespace: Option<String>) -> Self {
        Self {
            store,
            kind,
            namespace,
            watch: None,
            position: None,
            relists: 0,
            listing: PhantomData,
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
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ListWatchEvent<L>>> {
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

    fn step(&mut self, timeout: Duration) -> Result<Option<ListWatchEvent<L>>> {
        let namespace = self.namespace.as_deref();
        let Some(position) = self.position else {
            let list = L::list(&self.store, &self.kind, namespace)?;
            let revision = list.revision();
            self.watch = Some(self.store.watch(&self.kind, namespace, revision)?);
            self.position = Some(revision);
            debug!(kind = %self.kind, %revision, items = list.object_count(), "listed");
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
