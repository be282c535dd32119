//! Errors of loading resources from text.

use std::fmt;

use crate::validate::FieldPath;

/// What went wrong with one document (or the whole input).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadErrorKind {
    /// The text is not valid YAML or JSON.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// The document is not a mapping (e.g. a bare string or number).
    #[error("a resource must be a mapping with apiVersion, kind, metadata and spec")]
    NotAMapping,
    /// `apiVersion` or `kind` is missing or not a string.
    #[error("{field} is missing or not a string")]
    MissingTypeField {
        /// `apiVersion` or `kind`.
        field: &'static str,
    },
    /// No kind of that apiVersion and kind is known.
    #[error("unknown kind {kind:?} in apiVersion {api_version:?}{hint}")]
    UnknownKind {
        /// The document's apiVersion.
        api_version: String,
        /// The document's kind.
        kind: String,
        /// A suggestion, e.g. the apiVersion that does have this kind.
        hint: String,
    },
    /// The document does not have the kind's shape (wrong type, unknown field).
    #[error("{path}: {reason}")]
    Decode {
        /// Where.
        path: FieldPath,
        /// Why.
        reason: String,
    },
    /// The document has the right shape but breaks a validation rule.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where.
        path: FieldPath,
        /// Why.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read file: {0}")]
    Io(String),
}

impl LoadErrorKind {
    /// The field path the error is about, when it is about one field.
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            Self::Decode { path, .. } | Self::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// One error, located: source (file name), document, resource, field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct LoadError {
    /// Where the text came from (a file name, `-` for stdin).
    pub source: String,
    /// 1-based index of the document in the stream (YAML documents, or
    /// elements of a top-level JSON array); `None` for errors of the whole text.
    pub document: Option<usize>,
    /// The resource's kind, when known.
    pub kind: Option<String>,
    /// The resource's name, when known.
    pub name: Option<String>,
    /// What went wrong.
    #[source]
    pub error: LoadErrorKind,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let LoadErrorKind::Syntax {
            line,
            column,
            message,
        } = &self.error
        {
            return write!(f, ":{line}:{column}: syntax error: {message}");
        }
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
        }
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) if !name.is_empty() => write!(f, " ({kind} {name:?})")?,
            (Some(kind), _) => write!(f, " ({kind})")?,
            _ => {}
        }
        write!(f, ": {}", self.error)
    }
}

/// Every error found in a load, across all documents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    /// The errors, in document order.
    pub fn errors(&self) -> &[LoadError] {
        &self.0
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl IntoIterator for LoadErrors {
    type Item = LoadError;
    type IntoIter = std::vec::IntoIter<LoadError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
