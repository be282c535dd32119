//! The harness's error type.

use std::io;

/// What can go wrong while building or using a test topology.
///
/// A probe that gets no answer is not an error: it is a
/// [`ProbeOutcome`](crate::ProbeOutcome). Errors mean the harness itself could
/// not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A helper binary (`ip`, `nft`, `ping`) could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A helper binary ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// A thread could not enter a network namespace.
    #[error("cannot enter network namespace {netns}: {source}")]
    Setns {
        /// The namespace name.
        netns: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A network namespace that should exist does not, or one that should
    /// be gone is still there.
    #[error("network namespace {netns}: {problem}")]
    Netns {
        /// The namespace name.
        netns: String,
        /// What is wrong.
        problem: String,
    },
    /// A socket or file operation of the harness failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A topology request made no sense (unknown subnet, exhausted range,
    /// bad name).
    #[error("topology: {0}")]
    Topology(String),
}

/// Result with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
