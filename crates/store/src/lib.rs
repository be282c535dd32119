//! Twill's datastore: the [`Datastore`] trait, the embedded SQLite backend
//! ([`SqliteStore`]), an in-memory backend ([`MemoryStore`]) and a
//! backend-agnostic [`conformance`] suite.
//!
//! # Model
//!
//! Objects are JSON documents keyed by ([`Key::kind`], [`Key::namespace`],
//! [`Key::name`]). Every write moves one store-wide, monotonically increasing
//! [`Revision`] forward and stamps the written object with it (etcd's
//! `mod_revision`, Kubernetes' `resourceVersion`). On top of that:
//!
//! - [`Datastore::create`] creates if absent and fails with
//!   [`Error::AlreadyExists`] otherwise;
//! - [`Datastore::update`] and [`Datastore::delete`] take a [`Precondition`]:
//!   a compare-and-swap on the object's revision ([`Error::Conflict`] names
//!   the key, the expected and the actual revision), or unconditional;
//! - [`Datastore::txn`] applies several creates, updates and deletes as one
//!   transaction: all of them or none;
//! - [`Datastore::list`] returns the items of a kind (optionally of one
//!   namespace) and the revision the list was read at;
//! - [`Datastore::watch`] yields every change of a kind (optionally of one
//!   namespace) *after* a revision, as [`WatchEvent`]s: `Added`, `Modified`,
//!   `Deleted` (carrying the object's last state) and `Bookmark` (carrying a
//!   revision the watch has fully caught up to). A watch from a revision whose
//!   history was compacted fails with [`Error::Compacted`]: the caller lists
//!   again and watches from the new list revision.
//!
//! The list-then-watch pattern is therefore gap-free and duplicate-free:
//! `list` returns revision `R` with every write up to `R` applied, and
//! `watch(after = R)` yields exactly the writes after `R`.
//!
//! # Why this trait fits Kubernetes and etcd without changing callers
//!
//! - **Revisions.** [`Revision`] is a `u64`. etcd's `mod_revision` is an
//!   `i64` counter; a Kubernetes `resourceVersion` is formally an opaque
//!   string but every API server serves etcd's revision in it, so the
//!   Kubernetes backend parses it and reports a non-numeric one as a backend
//!   error. Callers only store revisions, pass them back, and compare two
//!   revisions from the same store (which both backends support).
//! - **Per-kind watches.** The Kubernetes API can only watch one resource type
//!   (optionally in one namespace); etcd watches a key prefix. [`Datastore::watch`]
//!   therefore takes one kind and an optional namespace, never "everything":
//!   the Kubernetes backend maps it to
//!   `?watch=1&resourceVersion=R&allowWatchBookmarks=true`, the etcd
//!   backend to a prefix `/twill/<kind>/<namespace>/` watch with
//!   `start_revision = R + 1` and `prev_kv` (for the last state in `Deleted`).
//! - **"After" semantics.** A watch yields events with revisions strictly
//!   greater than the one given, which is Kubernetes' semantics and etcd's
//!   `start_revision - 1`.
//! - **Compaction.** etcd's `ErrCompacted` (with its `compact_revision`) and
//!   Kubernetes' `410 Gone` ("too old resource version: R (oldest)"), whether
//!   returned at the start or in the middle of a watch, both map to
//!   [`Error::Compacted`]. It can come from [`Datastore::watch`] or from any
//!   [`Watch::next_timeout`]; in both cases the only correct reaction is the
//!   same: relist, then watch from the new list revision.
//! - **Bookmarks.** Kubernetes' `BOOKMARK` events (`allowWatchBookmarks`) and
//!   etcd's progress notifications are both "nothing for you up to revision
//!   R" and map to [`WatchEvent::Bookmark`]. Callers must not rely on their
//!   frequency, only on their meaning (a safe revision to resume from).
//! - **Compare-and-swap.** etcd does it with a `Txn` comparing `mod_revision`
//!   (whose failure branch reads the current revision for
//!   [`Error::Conflict`]); Kubernetes with `metadata.resourceVersion` in a
//!   `PUT` (409 Conflict) and `preconditions.resourceVersion` in a `DELETE`,
//!   after which the backend reads the object to report its revision (which
//!   may then be newer still: callers only use it in messages and retry
//!   from a fresh read anyway). A missing object is [`Error::NotFound`] in
//!   both, whatever the precondition.
//! - **Deletes.** [`Datastore::delete`] returns the object's last state with
//!   the revision of its last write (etcd's `prev_kv`, the body of
//!   Kubernetes' `DELETE` response). A [`WatchEvent::Deleted`] carries the
//!   last state with the revision *of the deletion* (what both backends put in
//!   their delete events), so a watcher's position moves past it.
//! - **Values.** The store does not interpret object bodies. A backend that
//!   keeps metadata inside the body (Kubernetes) sets `metadata.name`,
//!   `metadata.namespace` and `metadata.resourceVersion` from the key and the
//!   revision.
//! - **Kinds.** A kind is a string chosen by callers (e.g. `IPPool`); kinds
//!   that clash across API groups should be qualified by the caller (e.g.
//!   `NetworkPolicy.networking.k8s.io`). A Kubernetes backend is built with a
//!   table from kind to API resource.
//! - **Conformance.** The suite needs a backend to create fresh stores and
//!   to force a compaction ([`conformance::Target`]); against a mocked API
//!   server the latter scripts a `410 Gone`, against etcd it calls `Compact`.
//! - **Errors.** [`Error`] is `#[non_exhaustive]`: a backend adds its own
//!   transport variant without breaking callers, who match on the semantic
//!   variants.
//!
//! # Sync core, async wrapper
//!
//! The trait is synchronous and object-safe: callers hold `Arc<dyn Datastore>`
//! (chosen at run time from configuration) or a generic `S: Datastore`.
//! A synchronous core serves the short-lived CNI plugin and the CLI, which
//! need no runtime, and fits SQLite, whose calls block on disk and on file
//! locks anyway. Tokio daemons use [`AsyncDatastore`], which runs each call on
//! tokio's blocking pool and turns a watch into an async stream fed by a
//! dedicated thread, so a watch can run in a child task that forwards events
//! as messages to the task owning the daemon's state. A remote backend (kube-rs,
//! etcd-client, both async) implements the synchronous trait by driving its
//! futures on a private runtime thread; the extra hop costs microseconds
//! against network round trips of milliseconds.
//!
//! Typed access (`get_as::<T>`, `update_with`, ...) is in [`DatastoreExt`],
//! implemented for every `Datastore`, including `dyn Datastore`.
//! [`ListWatcher`] (blocking) and [`AsyncDatastore::list_watch`] (a stream)
//! run the list-then-watch loop and relist after a compaction.

mod async_store;
pub mod conformance;
mod error;
mod list_watch;
mod memory;
mod sqlite;
mod sqlite_watch;
mod typed;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use async_store::{AsyncDatastore, WatchStream};
pub use error::{Error, Result};
pub use list_watch::{ListWatchEvent, ListWatcher, Listing, TextList};
pub use memory::MemoryStore;
pub use sqlite::{Durability, SqliteOptions, SqliteStore};
pub use typed::{DatastoreExt, Versioned};

/// A store-wide revision: every write moves it forward by at least one.
///
/// Revisions from one store are totally ordered; revisions from different
/// stores mean nothing to each other. `Revision(0)` is "before any write".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one object: its kind, its namespace (none for cluster-scoped
/// kinds) and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// The kind, e.g. `IPPool`.
    pub kind: String,
    /// The namespace, or `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// The name, unique within kind and namespace.
    pub name: String,
}

impl Key {
    /// The key of a cluster-scoped object.
    pub fn cluster(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// The key of a namespaced object.
    pub fn namespaced(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// Checks that the key can be stored: kind and name are non-empty, a
    /// namespace (when given) is non-empty, and no part contains `/` or NUL
    /// (which would make keys ambiguous in prefix-keyed backends like etcd).
    pub fn validate(&self) -> Result<()> {
        let bad = |part: &str| part.is_empty() || part.contains(['/', '\0']);
        let reason = if bad(&self.kind) {
            Some("kind is empty or contains '/' or NUL")
        } else if self.namespace.as_deref().is_some_and(bad) {
            Some("namespace is empty or contains '/' or NUL")
        } else if bad(&self.name) {
            Some("name is empty or contains '/' or NUL")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidKey {
                key: self.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// An object as stored: its key, the revision of its last write and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Where the object lives.
    pub key: Key,
    /// The revision of the write that produced this state (for a
    /// [`WatchEvent::Deleted`], the revision of the deletion).
    pub revision: Revision,
    /// The body, uninterpreted by the store.
    pub value: serde_json::Value,
}

/// The result of [`Datastore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    /// The objects, ordered by namespace then name.
    pub items: Vec<Object>,
    /// The store revision the list was read at: every write up to it is
    /// reflected in `items`, none after it. Watch from here.
    pub revision: Revision,
}

/// The condition an update or delete checks before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever the current revision is (the object must exist).
    Unconditional,
    /// Write only if the object's current revision is exactly this one;
    /// otherwise fail with [`Error::Conflict`].
    Revision(Revision),
}

impl Precondition {
    /// Checks this precondition against the revision `actual` an existing
    /// object at `key` has; a mismatch is [`Error::Conflict`].
    pub(crate) fn check(self, key: &Key, actual: Revision) -> Result<()> {
        match self {
            Precondition::Revision(expected) if expected != actual => Err(Error::Conflict {
                key: key.clone(),
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

/// One write of a [`Datastore::txn`], with the semantics of the single
/// operation of the same name.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// [`Datastore::create`]: fails if the key is taken.
    Create {
        /// Where to create.
        key: Key,
        /// The body.
        value: serde_json::Value,
    },
    /// [`Datastore::update`]: the object must exist and the precondition hold.
    Update {
        /// What to replace.
        key: Key,
        /// The new body.
        value: serde_json::Value,
        /// The revision check.
        precondition: Precondition,
    },
    /// [`Datastore::delete`]: the object must exist and the precondition hold.
    Delete {
        /// What to delete.
        key: Key,
        /// The revision check.
        precondition: Precondition,
    },
}

impl Op {
    /// The key the operation writes.
    pub fn key(&self) -> &Key {
        match self {
            Self::Create { key, .. } | Self::Update { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

/// One write of [`Datastore::txn_text`]: an [`Op`] whose body is JSON text
/// the caller has already serialized, so the store writes it as it is
/// instead of serializing a [`serde_json::Value`] tree while it holds the
/// write lock.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOp {
    /// [`Op::Create`] with a body as JSON text.
    Create {
        /// Where to create.
        key: Key,
        /// The body, JSON text.
        body: String,
    },
    /// [`Op::Update`] with a body as JSON text.
    Update {
        /// What to replace.
        key: Key,
        /// The new body, JSON text.
        body: String,
        /// The revision check.
        precondition: Precondition,
    },
    /// [`Op::Delete`].
    Delete {
        /// What to delete.
        key: Key,
        /// The revision check.
        precondition: Precondition,
    },
}

impl TextOp {
    /// The key the operation writes.
    pub fn key(&self) -> &Key {
        match self {
            Self::Create { key, .. } | Self::Update { key, .. } | Self::Delete { key, .. } => key,
        }
    }

    /// The operation with its body serialized.
    pub fn from_op(op: &Op) -> Self {
        match op {
            Op::Create { key, value } => Self::Create {
                key: key.clone(),
                body: value.to_string(),
            },
            Op::Update {
                key,
                value,
                precondition,
            } => Self::Update {
                key: key.clone(),
                body: value.to_string(),
                precondition: *precondition,
            },
            Op::Delete { key, precondition } => Self::Delete {
                key: key.clone(),
                precondition: *precondition,
            },
        }
    }

    /// The operation with its body parsed.
    ///
    /// # Errors
    ///
    /// [`Error::Serde`] with the key if the body is not JSON.
    pub fn to_op(&self) -> Result<Op> {
        let parse = |key: &Key, body: &str| {
            serde_json::from_str(body).map_err(|source| Error::Serde {
                key: key.clone(),
                source,
            })
        };
        Ok(match self {
            Self::Create { key, body } => Op::Create {
                key: key.clone(),
                value: parse(key, body)?,
            },
            Self::Update {
                key,
                body,
                precondition,
            } => Op::Update {
                key: key.clone(),
                value: parse(key, body)?,
                precondition: *precondition,
            },
            Self::Delete { key, precondition } => Op::Delete {
                key: key.clone(),
                precondition: *precondition,
            },
        })
    }

    /// Checks the key and that the body is JSON (without building a tree).
    pub(crate) fn validate(&self) -> Result<()> {
        self.key().validate()?;
        match self {
            Self::Create { key, body } | Self::Update { key, body, .. } => {
                serde_json::from_str::<serde::de::IgnoredAny>(body)
                    .map(|_| ())
                    .map_err(|source| Error::Serde {
                        key: key.clone(),
                        source,
                    })
            }
            Self::Delete { .. } => Ok(()),
        }
    }
}

/// An object as stored, with its body as the JSON text the store holds
/// ([`Datastore::get_text`]): decode it straight into a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct TextObject {
    /// Where the object lives.
    pub key: Key,
    /// The revision of the write that produced this state.
    pub revision: Revision,
    /// The body, JSON text.
    pub body: String,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The object was created.
    Added(Object),
    /// The object was updated.
    Modified(Object),
    /// The object was deleted; this is its last state, with the revision of
    /// the deletion.
    Deleted(Object),
    /// The watch has delivered every change up to and including this
    /// revision; resuming a watch from it loses nothing.
    Bookmark(Revision),
}

impl WatchEvent {
    /// The revision this event moves the watcher to.
    pub fn revision(&self) -> Revision {
        match self {
            Self::Added(o) | Self::Modified(o) | Self::Deleted(o) => o.revision,
            Self::Bookmark(r) => *r,
        }
    }

    /// The object this event is about, if it is not a bookmark.
    pub fn object(&self) -> Option<&Object> {
        match self {
            Self::Added(o) | Self::Modified(o) | Self::Deleted(o) => Some(o),
            Self::Bookmark(_) => None,
        }
    }
}

/// A running watch: a blocking source of [`WatchEvent`]s in revision order.
///
/// After it returns an error the watch is finished; every later call returns
/// an error too. Dropping it stops it.
pub trait Watch: Send {
    /// Waits up to `timeout` for the next event. `Ok(None)` means none came
    /// in time (the watch is still alive).
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] when the watch fell behind the store's retained
    /// history (relist and watch again), or a backend error.
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<WatchEvent>>;
}

/// A typed-object store with etcd/Kubernetes semantics; see the crate docs.
///
/// All methods are blocking. Implementations are safe to share between
/// threads (`Arc<dyn Datastore>`).
pub trait Datastore: Send + Sync {
    /// Creates the object if no object has this key.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if the key is taken; [`Error::InvalidKey`].
    fn create(&self, key: &Key, value: &serde_json::Value) -> Result<Object>;

    /// Replaces an existing object's body if the precondition holds.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the object does not exist (whatever the
    /// precondition); [`Error::Conflict`] if its revision differs from the
    /// expected one.
    fn update(
        &self,
        key: &Key,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Object>;

    /// Deletes an existing object if the precondition holds and returns its
    /// last state (with the revision of its last write).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the object does not exist; [`Error::Conflict`]
    /// if its revision differs from the expected one.
    fn delete(&self, key: &Key, precondition: Precondition) -> Result<Object>;

    /// Applies `ops` in order as one transaction: all of them or none.
    /// Each operation sees the effects of the earlier ones (a create and
    /// then an update of the same key is allowed), gets its own revision
    /// (consecutive, so watchers see the writes in order) and becomes
    /// visible to readers and watchers together with the others. Returns,
    /// per operation, what the single operation returns: the written object,
    /// or for a delete the object's last state. An empty `ops` writes
    /// nothing.
    ///
    /// # Errors
    ///
    /// The error of the first operation that fails, as the single operation
    /// reports it ([`Error::AlreadyExists`], [`Error::NotFound`],
    /// [`Error::Conflict`], [`Error::InvalidKey`] with the key); then nothing
    /// was written.
    fn txn(&self, ops: &[Op]) -> Result<Vec<Object>>;

    /// Reads one object.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the object does not exist.
    fn get(&self, key: &Key) -> Result<Object>;

    /// Lists the objects of a kind, in one namespace or (with `None`) in all
    /// namespaces and none, together with the revision the list was read at.
    ///
    /// # Errors
    ///
    /// Backend errors only; an empty kind is an empty list.
    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<List>;

    /// Watches the changes to a kind (optionally in one namespace) made after
    /// revision `after`.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] if history after `after` is no longer retained
    /// (it may also come from the first [`Watch::next_timeout`]).
    fn watch(&self, kind: &str, namespace: Option<&str>, after: Revision)
    -> Result<Box<dyn Watch>>;

    /// The store's current revision (that of its latest write).
    ///
    /// # Errors
    ///
    /// Backend errors only.
    fn current_revision(&self) -> Result<Revision>;

    /// [`Datastore::txn`] with bodies given as JSON text, returning only the
    /// revision each operation wrote (for a delete, the object's last
    /// revision): no body is parsed into or copied out of a
    /// [`serde_json::Value`]. Same semantics and errors as `txn`, plus
    /// [`Error::Serde`] with the key for a body that is not JSON (then
    /// nothing was written).
    ///
    /// # Errors
    ///
    /// As [`Datastore::txn`]; [`Error::Serde`] for a body that is not JSON.
    fn txn_text(&self, ops: &[TextOp]) -> Result<Vec<Revision>> {
        let ops = ops.iter().map(TextOp::to_op).collect::<Result<Vec<_>>>()?;
        Ok(self.txn(&ops)?.into_iter().map(|o| o.revision).collect())
    }

    /// [`Datastore::get`] with the body as JSON text, for callers that decode
    /// it straight into their own type.
    ///
    /// # Errors
    ///
    /// As [`Datastore::get`].
    fn get_text(&self, key: &Key) -> Result<TextObject> {
        let object = self.get(key)?;
        Ok(TextObject {
            body: object.value.to_string(),
            key: object.key,
            revision: object.revision,
        })
    }

    /// The current revision of `key` without its body (`None` when it does
    /// not exist): a cheap check that a copy read earlier is still current.
    ///
    /// # Errors
    ///
    /// Invalid keys and backend errors.
    fn revision_of(&self, key: &Key) -> Result<Option<Revision>> {
        match self.get(key) {
            Ok(object) => Ok(Some(object.revision)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Datastore::list`] with the bodies as JSON text, for callers that
    /// decode each object straight into their own type and drop its text
    /// (no list of [`serde_json::Value`]s is built): the revision the list
    /// was read at, and the objects ordered by namespace then name.
    ///
    /// # Errors
    ///
    /// As [`Datastore::list`].
    fn list_text(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Revision, Vec<TextObject>)> {
        let list = self.list(kind, namespace)?;
        let items = list
            .items
            .into_iter()
            .map(|object| TextObject {
                body: object.value.to_string(),
                key: object.key,
                revision: object.revision,
            })
            .collect();
        Ok((list.revision, items))
    }
}

impl<S: Datastore + ?Sized> Datastore for std::sync::Arc<S> {
    fn create(&self, key: &Key, value: &serde_json::Value) -> Result<Object> {
        (**self).create(key, value)
    }
    fn update(
        &self,
        key: &Key,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Object> {
        (**self).update(key, value, precondition)
    }
    fn delete(&self, key: &Key, precondition: Precondition) -> Result<Object> {
        (**self).delete(key, precondition)
    }
    fn txn(&self, ops: &[Op]) -> Result<Vec<Object>> {
        (**self).txn(ops)
    }
    fn get(&self, key: &Key) -> Result<Object> {
        (**self).get(key)
    }
    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<List> {
        (**self).list(kind, namespace)
    }
    fn watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<Box<dyn Watch>> {
        (**self).watch(kind, namespace, after)
    }
    fn current_revision(&self) -> Result<Revision> {
        (**self).current_revision()
    }
    fn txn_text(&self, ops: &[TextOp]) -> Result<Vec<Revision>> {
        (**self).txn_text(ops)
    }
    fn get_text(&self, key: &Key) -> Result<TextObject> {
        (**self).get_text(key)
    }
    fn revision_of(&self, key: &Key) -> Result<Option<Revision>> {
        (**self).revision_of(key)
    }
    fn list_text(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Revision, Vec<TextObject>)> {
        (**self).list_text(kind, namespace)
    }
}
