//! The lab's errors.

use std::path::PathBuf;

/// Everything that can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command the lab runs (`ip`, `nft`, a daemon, the CNI plugin) failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A scenario file does not parse or breaks a rule.
    #[error("scenario {source_name}: {path}: {reason}")]
    Scenario {
        /// The file name.
        source_name: String,
        /// The field path (`steps[2].probe[0].expect`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A resource manifest (an `apply` step) does not load.
    #[error("manifest {source_name}: {reason}")]
    Manifest {
        /// Where the manifest came from.
        source_name: String,
        /// The loader's errors.
        reason: String,
    },
    /// The datastore refused a read or write.
    #[error("datastore {path}: {source}")]
    Store {
        /// The datastore file.
        path: PathBuf,
        /// The cause (boxed: it is large and rare).
        source: Box<twill_store::Error>,
    },
    /// No lab of this name is up.
    #[error("no lab {name} is up (no state in {dir}); run `twill lab up` first")]
    NotUp {
        /// The lab's name.
        name: String,
        /// Where its state would be.
        dir: PathBuf,
    },
    /// A lab of this name is already up.
    #[error("lab {name} is already up (state in {dir}); run `twill lab down` first")]
    AlreadyUp {
        /// The lab's name.
        name: String,
        /// Where its state is.
        dir: PathBuf,
    },
    /// A node, pod or daemon named on the command line does not exist.
    #[error("unknown {what} {name:?}")]
    Unknown {
        /// `node`, `pod`, `daemon`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// An argument is malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What the argument is.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A program the lab needs is not installed.
    #[error("{program} not found (looked in {looked}); {hint}")]
    Missing {
        /// The program.
        program: String,
        /// Where it was looked for.
        looked: String,
        /// How to get it.
        hint: &'static str,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds:.1}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the lab waited.
        seconds: f64,
    },
    /// IPAM (garbage collection) failed.
    #[error("ipam on datastore {datastore}: {source}")]
    Ipam {
        /// The datastore file.
        datastore: PathBuf,
        /// The cause (boxed: it is large and rare).
        source: Box<twill_ipam::IpamError>,
    },
    /// The lab state file is unreadable.
    #[error("lab state {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

impl LabError {
    /// An [`LabError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
