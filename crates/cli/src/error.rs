//! The errors of the resource commands, each mapped to an exit status.

use std::path::PathBuf;

use crate::Status;

/// Why a resource command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The kind named on the command line is not one Twill knows.
    #[error("unknown resource type {given:?}; known types:{known}")]
    UnknownKind {
        /// What the user typed.
        given: String,
        /// Every known kind with its aliases.
        known: String,
    },
    /// A namespace was given for a cluster-scoped kind.
    #[error("{kind} is cluster-scoped: drop the namespace ({namespace:?})")]
    NotNamespaced {
        /// The kind.
        kind: &'static str,
        /// The namespace given.
        namespace: String,
    },
    /// A manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file (`-` for stdin).
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Manifests were invalid; the errors have been printed.
    #[error("{count} error(s) in the manifests; nothing was written")]
    Invalid {
        /// How many errors.
        count: usize,
    },
    /// The datastore file does not exist.
    #[error(
        "datastore {} does not exist; pass --datastore or set TWILL_DATASTORE",
        path.display()
    )]
    NoDatastore {
        /// The path tried.
        path: PathBuf,
    },
    /// `create` of a resource that exists.
    #[error(
        "resource already exists: {resource}; use `twill apply` or `twill replace` to change it{written}"
    )]
    AlreadyExists {
        /// The resource, as `Kind(namespace/name)`.
        resource: String,
        /// What this means for the rest of the file.
        written: Unwritten,
    },
    /// A resource that must exist does not.
    #[error("resource does not exist: {resource}{hint}{written}")]
    NotFound {
        /// The resource, as `Kind(namespace/name)`.
        resource: String,
        /// How to fix it, for the command that failed.
        hint: &'static str,
        /// What this means for the rest of the file.
        written: Unwritten,
    },
    /// The resource changed since the revision the command expected.
    #[error(
        "resource {resource} was changed concurrently (revision {actual}, expected {expected}); read it again and retry{written}"
    )]
    Conflict {
        /// The resource, as `Kind(namespace/name)`.
        resource: String,
        /// The revision expected.
        expected: u64,
        /// The revision found.
        actual: u64,
        /// What this means for the rest of the file.
        written: Unwritten,
    },
    /// `label key=value` of a key that has another value, without `--overwrite`.
    #[error(
        "label {key:?} is already set on {resource} to {value:?}; pass --overwrite to change it"
    )]
    LabelPresent {
        /// The resource.
        resource: String,
        /// The label key.
        key: String,
        /// Its current value.
        value: String,
    },
    /// A label argument that is neither `key=value` nor `key-`.
    #[error("label argument {arg:?} is neither key=value nor key-")]
    LabelArgument {
        /// The argument.
        arg: String,
    },
    /// A label change that breaks Calico's label rules.
    #[error("invalid labels for {resource}: {reasons}")]
    InvalidLabels {
        /// The resource.
        resource: String,
        /// The rules broken.
        reasons: String,
    },
    /// An IPPool's `spec.cidr` overlaps another pool's, one stored or one
    /// earlier in the same command, as calicoctl refuses it.
    #[error("{overlap}; IPPool CIDRs must not overlap{written}")]
    PoolOverlap {
        /// The two pools, their CIDRs and how they overlap (boxed: it is
        /// the largest error).
        overlap: Box<crate::resources::pools::Overlap>,
        /// What this means for the command's files.
        written: Unwritten,
    },
    /// A command would change an existing IPPool's `spec.cidr` or
    /// `spec.blockSize`, which calicoctl refuses too.
    #[error("{change}{written}")]
    PoolFieldFixed {
        /// The pool, the field and both values (boxed, as `PoolOverlap`).
        change: Box<crate::resources::pools::FixedChange>,
        /// What this means for the command's files.
        written: Unwritten,
    },
    /// `metadata.resourceVersion` in a manifest is not a revision.
    #[error(
        "{resource}: metadata.resourceVersion {value:?} is not a revision of this datastore (a number); remove it or copy it from `twill get -o yaml`"
    )]
    BadResourceVersion {
        /// The resource.
        resource: String,
        /// The value given.
        value: String,
    },
    /// Conflicting command-line arguments.
    #[error("{0}")]
    Usage(String),
    /// A stored object that does not decode as its kind.
    #[error("stored object {key} does not decode: {reason}")]
    Corrupt {
        /// The datastore key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Output could not be produced.
    #[error("cannot format the output: {0}")]
    Format(String),
    /// Any other datastore failure.
    #[error(transparent)]
    Store(#[from] twill_store::Error),
}

/// Appended to write errors: a failed write leaves the whole file unwritten.
#[derive(Debug, Clone, Default)]
pub struct Unwritten(pub Option<String>);

impl std::fmt::Display for Unwritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(source) => write!(f, " (nothing in {source} was written)"),
            None => Ok(()),
        }
    }
}

impl CliError {
    /// The exit status this error ends the command with.
    pub fn status(&self) -> Status {
        match self {
            Self::UnknownKind { .. }
            | Self::NotNamespaced { .. }
            | Self::Read { .. }
            | Self::LabelArgument { .. }
            | Self::BadResourceVersion { .. }
            | Self::Usage(_)
            | Self::NoDatastore { .. } => Status::Usage,
            Self::Invalid { .. } | Self::InvalidLabels { .. } => Status::Invalid,
            Self::AlreadyExists { .. }
            | Self::NotFound { .. }
            | Self::Conflict { .. }
            | Self::PoolOverlap { .. }
            | Self::PoolFieldFixed { .. }
            | Self::LabelPresent { .. } => Status::Refused,
            Self::Corrupt { .. } | Self::Format(_) | Self::Store(_) => Status::Datastore,
        }
    }
}
