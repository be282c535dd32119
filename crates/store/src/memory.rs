//! An in-memory backend for unit tests of the store's callers: the same
//! semantics as the SQLite backend, in one process, gone when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{
    Datastore, Error, Key, List, Object, Op, Precondition, Result, Revision, Watch, WatchEvent,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    compacted: u64,
    objects: BTreeMap<Key, (Revision, serde_json::Value)>,
    /// Retained history, oldest first.
    history: VecDeque<(Change, Object)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// An in-memory [`Datastore`]. Cheap to clone (clones share the data).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    bookmark_interval: Duration,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl MemoryStore {
    /// An empty store whose watches send a bookmark after being silent for
    /// `bookmark_interval`.
    pub fn new(bookmark_interval: Duration) -> Self {
        Self {
            shared: Arc::default(),
            bookmark_interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops history up to and including `through` (capped at the current
    /// revision); returns the oldest revision a watch may now start after.
    pub fn compact(&self, through: Revision) -> Revision {
        let mut state = self.lock();
        let through = through.0.min(state.revision).max(state.compacted);
        while state
            .history
            .front()
            .is_some_and(|(_, o)| o.revision.0 <= through)
        {
            state.history.pop_front();
        }
        state.compacted = through;
        Revision(through)
    }

    fn check(state: &State, key: &Key, precondition: Precondition) -> Result<Object> {
        let Some((actual, value)) = state.objects.get(key) else {
            return Err(Error::NotFound { key: key.clone() });
        };
        precondition.check(key, *actual)?;
        Ok(Object {
            key: key.clone(),
            revision: *actual,
            value: value.clone(),
        })
    }
}

impl Datastore for MemoryStore {
    fn create(&self, key: &Key, value: &serde_json::Value) -> Result<Object> {
        key.validate()?;
        self.write_checked(key, Change::Added, value.clone(), |state| {
            if state.objects.contains_key(key) {
                Err(Error::AlreadyExists { key: key.clone() })
            } else {
                Ok(())
            }
        })
    }

    fn update(
        &self,
        key: &Key,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Object> {
        key.validate()?;
        self.write_checked(key, Change::Modified, value.clone(), |state| {
            Self::check(state, key, precondition).map(|_| ())
        })
    }

    fn delete(&self, key: &Key, precondition: Precondition) -> Result<Object> {
        key.validate()?;
        let mut state = self.lock();
        let last = Self::check(&state, key, precondition)?;
        state.revision += 1;
        state.objects.remove(key);
        let event = Object {
            revision: Revision(state.revision),
            ..last.clone()
        };
        state.history.push_back((Change::Deleted, event));
        drop(state);
        self.shared.changed.notify_all();
        Ok(last)
    }

    fn txn(&self, ops: &[Op]) -> Result<Vec<Object>> {
        for op in ops {
            op.key().validate()?;
        }
        let mut state = self.lock();
        // Every operation is checked against the state plus the earlier
        // operations' effects before anything is applied, so a failing
        // operation leaves the store untouched.
        let mut staged: BTreeMap<&Key, Option<(Revision, serde_json::Value)>> = BTreeMap::new();
        let mut revision = state.revision;
        let mut changes = Vec::with_capacity(ops.len());
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let current = match staged.get(key) {
                Some(staged) => staged.clone(),
                None => state.objects.get(key).cloned(),
            };
            let existing = |precondition: Precondition| match &current {
                Some((actual, value)) => {
                    precondition.check(key, *actual)?;
                    Ok((*actual, value.clone()))
                }
                None => Err(Error::NotFound { key: key.clone() }),
            };
            revision += 1;
            let (change, object, result) = match op {
                Op::Create { value, .. } => {
                    if current.is_some() {
                        return Err(Error::AlreadyExists { key: key.clone() });
                    }
                    let object = Object {
                        key: key.clone(),
                        revision: Revision(revision),
                        value: value.clone(),
                    };
                    (Change::Added, object.clone(), object)
                }
                Op::Update {
                    value,
                    precondition,
                    ..
                } => {
                    existing(*precondition)?;
                    let object = Object {
                        key: key.clone(),
                        revision: Revision(revision),
                        value: value.clone(),
                    };
                    (Change::Modified, object.clone(), object)
                }
                Op::Delete { precondition, .. } => {
                    let (last, value) = existing(*precondition)?;
                    let event = Object {
                        key: key.clone(),
                        revision: Revision(revision),
                        value: value.clone(),
                    };
                    let result = Object {
                        key: key.clone(),
                        revision: last,
                        value,
                    };
                    (Change::Deleted, event, result)
                }
            };
            let after =
                (change != Change::Deleted).then(|| (object.revision, object.value.clone()));
            staged.insert(key, after);
            changes.push((change, object));
            results.push(result);
        }
        if changes.is_empty() {
            return Ok(results);
        }
        state.revision = revision;
        for (change, object) in changes {
            if change == Change::Deleted {
                state.objects.remove(&object.key);
            } else {
                state
                    .objects
                    .insert(object.key.clone(), (object.revision, object.value.clone()));
            }
            state.history.push_back((change, object));
        }
        drop(state);
        self.shared.changed.notify_all();
        Ok(results)
    }

    fn get(&self, key: &Key) -> Result<Object> {
        key.validate()?;
        Self::check(&self.lock(), key, Precondition::Unconditional)
    }

    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<List> {
        let state = self.lock();
        let mut items = state
            .objects
            .iter()
            .filter(|(k, _)| {
                k.kind == kind && (namespace.is_none() || k.namespace.as_deref() == namespace)
            })
            .map(|(k, (revision, value))| Object {
                key: k.clone(),
                revision: *revision,
                value: value.clone(),
            })
            .collect::<Vec<_>>();
        items.sort_by(|a, b| {
            (a.key.namespace.as_deref().unwrap_or(""), &a.key.name)
                .cmp(&(b.key.namespace.as_deref().unwrap_or(""), &b.key.name))
        });
        Ok(List {
            items,
            revision: Revision(state.revision),
        })
    }

    fn watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<Box<dyn Watch>> {
        let state = self.lock();
        if after.0 < state.compacted {
            return Err(Error::Compacted {
                requested: after,
                oldest: Revision(state.compacted),
            });
        }
        drop(state);
        Ok(Box::new(MemoryWatch {
            store: self.clone(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            position: after.0,
            last_sent: Instant::now(),
        }))
    }

    fn current_revision(&self) -> Result<Revision> {
        Ok(Revision(self.lock().revision))
    }
}

impl MemoryStore {
    fn write_checked(
        &self,
        key: &Key,
        change: Change,
        value: serde_json::Value,
        check: impl FnOnce(&State) -> Result<()>,
    ) -> Result<Object> {
        let mut state = self.lock();
        check(&state)?;
        state.revision += 1;
        let object = Object {
            key: key.clone(),
            revision: Revision(state.revision),
            value,
        };
        state
            .objects
            .insert(key.clone(), (object.revision, object.value.clone()));
        state.history.push_back((change, object.clone()));
        drop(state);
        self.shared.changed.notify_all();
        Ok(object)
    }
}

struct MemoryWatch {
    store: MemoryStore,
    kind: String,
    namespace: Option<String>,
    position: u64,
    last_sent: Instant,
}

impl Watch for MemoryWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<WatchEvent>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.store.lock();
        loop {
            if self.position < state.compacted {
                return Err(Error::Compacted {
                    requested: Revision(self.position),
                    oldest: Revision(state.compacted),
                });
            }
            let start = state
                .history
                .partition_point(|(_, o)| o.revision.0 <= self.position);
            let next = state.history.range(start..).find(|(_, o)| {
                o.key.kind == self.kind
                    && (self.namespace.is_none() || o.key.namespace == self.namespace)
            });
            if let Some((change, object)) = next {
                self.position = object.revision.0;
                self.last_sent = Instant::now();
                let object = object.clone();
                return Ok(Some(match change {
                    Change::Added => WatchEvent::Added(object),
                    Change::Modified => WatchEvent::Modified(object),
                    Change::Deleted => WatchEvent::Deleted(object),
                }));
            }
            self.position = state.revision;
            let now = Instant::now();
            let bookmark_due = self.last_sent + self.store.bookmark_interval;
            if now >= bookmark_due {
                self.last_sent = now;
                return Ok(Some(WatchEvent::Bookmark(Revision(self.position))));
            }
            if now >= deadline {
                return Ok(None);
            }
            let revision = state.revision;
            state = self
                .store
                .shared
                .changed
                .wait_timeout_while(state, deadline.min(bookmark_due) - now, |s| {
                    s.revision == revision
                })
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
