//! The async face of a [`Datastore`] for tokio daemons.
//!
//! ```text
//!  daemon task (owns state) <--mpsc-- watch pump thread --next_timeout--> Watch
//!        |                                  (one per watch; exits when the
//!        +--await--> spawn_blocking --> Datastore::update/get/...  stream is dropped)
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{
    Datastore, Error, Key, List, ListWatchEvent, ListWatcher, Object, Op, Precondition, Result,
    Revision, WatchEvent,
};

/// How long the pump waits on the watch before checking that the stream is
/// still wanted.
const PUMP_TICK: Duration = Duration::from_millis(100);

/// How long a list-watch pump waits after a backend error before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Events buffered between the pump and the consumer.
const STREAM_CAPACITY: usize = 256;

/// Runs a [`Datastore`]'s blocking calls on tokio's blocking pool.
#[derive(Clone)]
pub struct AsyncDatastore {
    inner: Arc<dyn Datastore>,
}

impl std::fmt::Debug for AsyncDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDatastore").finish_non_exhaustive()
    }
}

impl AsyncDatastore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn Datastore>) -> Self {
        Self { inner }
    }

    /// The wrapped store, for blocking use (e.g. inside `spawn_blocking`).
    pub fn blocking(&self) -> &Arc<dyn Datastore> {
        &self.inner
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Datastore) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// See [`Datastore::create`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::create`].
    pub async fn create(&self, key: Key, value: serde_json::Value) -> Result<Object> {
        self.run(move |s| s.create(&key, &value)).await
    }

    /// See [`Datastore::update`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::update`].
    pub async fn update(
        &self,
        key: Key,
        value: serde_json::Value,
        precondition: Precondition,
    ) -> Result<Object> {
        self.run(move |s| s.update(&key, &value, precondition))
            .await
    }

    /// See [`Datastore::delete`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::delete`].
    pub async fn delete(&self, key: Key, precondition: Precondition) -> Result<Object> {
        self.run(move |s| s.delete(&key, precondition)).await
    }

    /// See [`Datastore::txn`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::txn`].
    pub async fn txn(&self, ops: Vec<Op>) -> Result<Vec<Object>> {
        self.run(move |s| s.txn(&ops)).await
    }

    /// See [`Datastore::get`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::get`].
    pub async fn get(&self, key: Key) -> Result<Object> {
        self.run(move |s| s.get(&key)).await
    }

    /// See [`Datastore::list`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::list`].
    pub async fn list(&self, kind: String, namespace: Option<String>) -> Result<List> {
        self.run(move |s| s.list(&kind, namespace.as_deref())).await
    }

    /// See [`Datastore::current_revision`].
    ///
    /// # Errors
    ///
    /// As [`Datastore::current_revision`].
    pub async fn current_revision(&self) -> Result<Revision> {
        self.run(|s| s.current_revision()).await
    }

    /// Starts a watch (see [`Datastore::watch`]) whose events arrive on a
    /// [`WatchStream`]. A thread pumps the blocking watch into the stream and
    /// stops within a fraction of a second after the stream is dropped.
    ///
    /// # Errors
    ///
    /// As [`Datastore::watch`]; later errors (e.g. [`Error::Compacted`])
    /// arrive as the stream's last item.
    pub async fn watch(
        &self,
        kind: String,
        namespace: Option<String>,
        after: Revision,
    ) -> Result<WatchStream> {
        let watch_kind = kind.clone();
        let mut watch = self
            .run(move |s| s.watch(&watch_kind, namespace.as_deref(), after))
            .await?;
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        std::thread::Builder::new()
            .name(format!("twill-watch-{kind}"))
            .spawn(move || {
                while !tx.is_closed() {
                    let item = match watch.next_timeout(PUMP_TICK) {
                        Ok(None) => continue,
                        Ok(Some(event)) => Ok(event),
                        Err(error) => Err(error),
                    };
                    let last = item.is_err();
                    if tx.blocking_send(item).is_err() || last {
                        break;
                    }
                }
                debug!(kind = %kind, "watch pump stopped");
            })
            .map_err(|e| {
                warn!(error = %e, "cannot start a watch thread");
                Error::Task(e.to_string())
            })?;
        Ok(WatchStream { rx })
    }
}

impl AsyncDatastore {
    /// Runs a [`ListWatcher`] on a thread and streams its snapshots and
    /// changes: first a snapshot, then changes, and a new snapshot whenever
    /// the watch had to relist after a compaction. Backend errors arrive as
    /// `Err` items and the pump retries after a second; the stream never
    /// ends on its own. Dropping it stops the thread.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] if the thread cannot be started.
    pub fn list_watch(
        &self,
        kind: String,
        namespace: Option<String>,
    ) -> Result<WatchStream<ListWatchEvent>> {
        let mut watcher = ListWatcher::new(Arc::clone(&self.inner), kind.clone(), namespace);
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        std::thread::Builder::new()
            .name(format!("twill-listwatch-{kind}"))
            .spawn(move || {
                while !tx.is_closed() {
                    let item = match watcher.next_timeout(PUMP_TICK) {
                        Ok(None) => continue,
                        Ok(Some(event)) => Ok(event),
                        Err(error) => Err(error),
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() {
                        break;
                    }
                    if failed {
                        std::thread::sleep(RETRY_AFTER);
                    }
                }
                debug!(kind = %kind, "list-watch pump stopped");
            })
            .map_err(|e| Error::Task(e.to_string()))?;
        Ok(WatchStream { rx })
    }
}

/// The events of a watch started by [`AsyncDatastore::watch`] (or, with
/// `T = ListWatchEvent`, [`AsyncDatastore::list_watch`]), in revision order.
/// A plain watch ends after an error. Dropping the stream stops the watch.
#[derive(Debug)]
pub struct WatchStream<T = WatchEvent> {
    rx: mpsc::Receiver<Result<T>>,
}

impl<T> WatchStream<T> {
    /// The next event, or `None` once the watch has ended.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        self.rx.recv().await
    }
}

impl<T> futures::Stream for WatchStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
