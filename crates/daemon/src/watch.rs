//! The list-watch task every daemon runs per datastore kind: it turns
//! [`ListWatchEvent`]s into the owner task's own messages.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use twill_store::{Error, Key, ListWatchEvent, Object, WatchEvent, WatchStream};

/// How a daemon's owner message is made from list-watch events.
pub trait WatchMsg: Send + 'static {
    /// The complete state of `kind`: replace what was known.
    fn snapshot(kind: &'static str, items: Vec<Object>) -> Self;
    /// An object of `kind` was added or modified.
    fn upserted(kind: &'static str, object: Object) -> Self;
    /// An object of `kind` was deleted; `object` is its last state.
    fn deleted(kind: &'static str, object: Object) -> Self;
    /// The list-watch of `kind` failed (it retries on its own).
    fn watch_error(kind: &'static str, error: Error) -> Self;
}

/// Forwards `stream`'s events for `kind` to `tx` as `M`, skipping
/// bookmarks, until the stream ends or the owner drops its receiver.
pub async fn forward_watch<M: WatchMsg>(
    kind: &'static str,
    mut stream: WatchStream<ListWatchEvent>,
    tx: mpsc::Sender<M>,
) {
    while let Some(event) = stream.recv().await {
        let msg = match event {
            Ok(ListWatchEvent::Snapshot(list)) => M::snapshot(kind, list.items),
            Ok(ListWatchEvent::Change(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                M::upserted(kind, o)
            }
            Ok(ListWatchEvent::Change(WatchEvent::Deleted(o))) => M::deleted(kind, o),
            Ok(ListWatchEvent::Change(WatchEvent::Bookmark(_))) => continue,
            Err(error) => M::watch_error(kind, error),
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// The objects an owner task knows per kind, as its list-watches told it:
/// a later snapshot of a kind (after a watch restarted) implies the
/// deletion of whatever it no longer lists.
#[derive(Debug, Default)]
pub struct KnownKeys {
    kinds: BTreeMap<&'static str, BTreeSet<(Option<String>, String)>>,
}

impl KnownKeys {
    /// Records a snapshot of `kind` listing `keys`; returns the keys known
    /// before that it no longer lists.
    pub fn snapshot<'a>(
        &mut self,
        kind: &'static str,
        keys: impl IntoIterator<Item = &'a Key>,
    ) -> Vec<Key> {
        let fresh: BTreeSet<_> = keys.into_iter().map(id).collect();
        let gone = self
            .kinds
            .get(kind)
            .map(|old| {
                old.difference(&fresh)
                    .map(|(namespace, name)| Key {
                        kind: kind.into(),
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.kinds.insert(kind, fresh);
        gone
    }

    /// Records that `key` of `kind` exists.
    pub fn upserted(&mut self, kind: &'static str, key: &Key) {
        self.kinds.entry(kind).or_default().insert(id(key));
    }

    /// Records that `key` of `kind` is gone.
    pub fn deleted(&mut self, kind: &'static str, key: &Key) {
        if let Some(known) = self.kinds.get_mut(kind) {
            known.remove(&id(key));
        }
    }

    /// Whether a snapshot (or a change) of `kind` has arrived.
    pub fn has(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// How many objects of `kind` are known.
    pub fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, BTreeSet::len)
    }

    /// How many kinds have been heard of.
    pub fn kinds(&self) -> usize {
        self.kinds.len()
    }
}

fn id(key: &Key) -> (Option<String>, String) {
    (key.namespace.clone(), key.name.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use twill_store::{AsyncDatastore, Key, Precondition, SqliteStore};

    use super::*;

    /// What the task sent, reduced to comparable names.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Snapshot(&'static str, Vec<String>),
        Upserted(&'static str, String),
        Deleted(&'static str, String),
        Error(&'static str),
    }

    impl WatchMsg for Seen {
        fn snapshot(kind: &'static str, items: Vec<Object>) -> Self {
            Self::Snapshot(kind, items.into_iter().map(|o| o.key.name).collect())
        }
        fn upserted(kind: &'static str, object: Object) -> Self {
            Self::Upserted(kind, object.key.name)
        }
        fn deleted(kind: &'static str, object: Object) -> Self {
            Self::Deleted(kind, object.key.name)
        }
        fn watch_error(kind: &'static str, _error: Error) -> Self {
            Self::Error(kind)
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Seen>) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message within 10 s")
            .expect("the task is running")
    }

    #[tokio::test]
    async fn snapshot_then_changes_arrive_as_the_daemons_messages() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("store.db")).expect("open the store");
        let store = AsyncDatastore::new(Arc::new(store));
        let value = serde_json::json!({"spec": {}});
        store
            .create(Key::cluster("IPPool", "a"), value.clone())
            .await
            .expect("create a");
        let (tx, mut rx) = mpsc::channel(8);
        let stream = store
            .list_watch("IPPool".into(), None)
            .expect("start the list-watch");
        let task = tokio::spawn(forward_watch("IPPool", stream, tx));
        assert_eq!(
            next(&mut rx).await,
            Seen::Snapshot("IPPool", vec!["a".into()])
        );
        store
            .create(Key::cluster("IPPool", "b"), value.clone())
            .await
            .expect("create b");
        assert_eq!(next(&mut rx).await, Seen::Upserted("IPPool", "b".into()));
        store
            .update(
                Key::cluster("IPPool", "b"),
                value,
                Precondition::Unconditional,
            )
            .await
            .expect("update b");
        assert_eq!(next(&mut rx).await, Seen::Upserted("IPPool", "b".into()));
        store
            .delete(Key::cluster("IPPool", "a"), Precondition::Unconditional)
            .await
            .expect("delete a");
        assert_eq!(next(&mut rx).await, Seen::Deleted("IPPool", "a".into()));
        task.abort();
    }

    #[tokio::test]
    async fn the_task_ends_when_the_owner_drops_its_receiver() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("store.db")).expect("open the store");
        let store = AsyncDatastore::new(Arc::new(store));
        let (tx, rx) = mpsc::channel::<Seen>(1);
        drop(rx);
        let stream = store
            .list_watch("IPPool".into(), None)
            .expect("start the list-watch");
        tokio::time::timeout(Duration::from_secs(10), forward_watch("IPPool", stream, tx))
            .await
            .expect("the task returns once its first send fails");
    }

    #[test]
    fn a_later_snapshot_yields_what_it_no_longer_lists() {
        let key = |name: &str| Key::namespaced("WorkloadEndpoint", "ns", name);
        let mut known = KnownKeys::default();
        assert!(!known.has("WorkloadEndpoint"));
        assert_eq!(
            known.snapshot("WorkloadEndpoint", &[key("a"), key("b")]),
            []
        );
        known.upserted("WorkloadEndpoint", &key("c"));
        known.deleted("WorkloadEndpoint", &key("a"));
        assert_eq!(known.snapshot("WorkloadEndpoint", &[key("b")]), [key("c")]);
        assert!(known.has("WorkloadEndpoint"));
        assert_eq!(known.count("WorkloadEndpoint"), 1);
        assert_eq!(known.kinds(), 1);
    }
}
