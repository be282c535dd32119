//! Calico's label selector language.
//!
//! (Interface stub: the full implementation replaces this file; the
//! signatures below are the contract other crates build against.)

use std::collections::BTreeMap;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    text: String,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector parse error at byte {offset}: expected {expected}")]
pub struct ParseError {
    /// Byte offset into the input where parsing failed.
    pub offset: usize,
    /// What the parser expected there.
    pub expected: String,
}

impl Selector {
    /// Parses a selector; the empty string is `all()`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Ok(Self { text: text.to_string() })
    }

    /// Whether the selector matches the given labels.
    pub fn matches(&self, _labels: &BTreeMap<String, String>) -> bool {
        true
    }
}
