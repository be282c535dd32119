//! The datastore's one error type.

use std::path::PathBuf;

use crate::{Key, Revision};

/// A shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a datastore operation can fail with.
///
/// Callers match on the semantic variants (`NotFound`, `AlreadyExists`,
/// `Conflict`, `Compacted`); the rest are backend failures. New backends may
/// add variants, hence `#[non_exhaustive]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// The key that was looked up.
        key: Key,
    },

    /// A create found an object with the same key.
    #[error("object {key} already exists")]
    AlreadyExists {
        /// The key that is taken.
        key: Key,
    },

    /// A compare-and-swap found another revision than the one expected:
    /// someone else wrote the object since the caller read it. Re-read and
    /// retry.
    #[error("conflict on object {key}: expected revision {expected}, found revision {actual}")]
    Conflict {
        /// The object's key.
        key: Key,
        /// The revision the caller expected.
        expected: Revision,
        /// The object's current revision.
        actual: Revision,
    },

    /// A watch asked for history that was compacted away ("revision too old"):
    /// list again and watch from the list's revision.
    #[error(
        "revision {requested} is too old (oldest watchable revision is {oldest}): relist and watch again"
    )]
    Compacted {
        /// The revision the watch was to start after (or had reached).
        requested: Revision,
        /// The oldest revision a watch can start after now.
        oldest: Revision,
    },

    /// The key cannot be stored.
    #[error("invalid key {key}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: Key,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An object body could not be converted to or from the caller's type.
    #[error("object {key} does not match the requested type: {source}")]
    Serde {
        /// The object's key.
        key: Key,
        /// The JSON error, with the field where it happened.
        #[source]
        source: serde_json::Error,
    },

    /// A stored body is not valid JSON (the file was written by something
    /// else than Twill).
    #[error("object {key} has a corrupt body in the store: {source}")]
    Corrupt {
        /// The object's key.
        key: Key,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The database file was written by a newer Twill whose schema this
    /// version does not know.
    #[error(
        "datastore {path} has schema version {found}, newer than the supported version {supported}"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The newest schema this build knows.
        supported: i64,
    },

    /// Another process held the database's write lock for longer than the
    /// configured busy timeout.
    #[error("datastore {path} is busy: {operation} gave up waiting for the write lock")]
    Busy {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
    },

    /// SQLite failed.
    #[error("datastore {path}: {operation} failed: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// The watch was stopped (its source went away) and yields nothing more.
    #[error("watch of kind {kind} closed")]
    WatchClosed {
        /// The watched kind.
        kind: String,
    },

    /// The store's checkpoint thread could not be started.
    #[error("datastore {path}: cannot start the checkpoint thread: {source}")]
    Thread {
        /// The database file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A blocking call could not run on the async runtime's blocking pool.
    #[error("datastore task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether re-reading and retrying the operation can succeed: a
    /// [`Error::Conflict`] or a [`Error::Busy`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Busy { .. })
    }
}
