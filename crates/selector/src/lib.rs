//! Calico's label selector language: parser, canonical form, evaluation and an
//! incremental label index.
//!
//! # The language
//!
//! | selector | matches an item whose labels… |
//! |---|---|
//! | `k == "v"` | have `k` with value `v` |
//! | `k != "v"` | lack `k`, or have it with another value |
//! | `k in {"a", "b"}` | have `k` with one of the values |
//! | `k not in {"a", "b"}` | lack `k`, or have it with none of the values |
//! | `has(k)` | have `k` (any value) |
//! | `k contains "s"` / `k starts with "s"` / `k ends with "s"` | have `k` with such a value |
//! | `all()` (or an empty selector) | anything |
//! | `global()` | anything non-namespaced (see [`Scope`]) |
//! | `!e`, `e && f`, `e \|\| f`, `(e)` | negation, conjunction, disjunction, grouping |
//!
//! Precedence is `!` > `&&` > `||`; `!` applies to one operation (`!a == "x"`
//! is `!(a == "x")`). Literals are `"…"` or `'…'` with no escapes. Keys are 1
//! to 512 bytes of `[A-Za-z0-9_./-]` (e.g. `projectcalico.org/namespace`).
//! Whitespace is spaces and tabs only, as in Calico. The grammar, including
//! Calico's quirks (`startswith`, `notin`, trailing commas in sets), is in
//! the `parser` module's source.
//!
//! `global()`: Calico's evaluator treats `global()` as true, and Calico
//! rewrites a rule's `namespaceSelector` before evaluating it (`all()` →
//! `has(projectcalico.org/namespace)`, `global()` →
//! `!has(projectcalico.org/namespace)`). [`Selector::matches`] and the index
//! follow the evaluator (`global()` is true); [`Selector::matches_in_scope`]
//! evaluates it against a [`Scope`]; and
//! [`Selector::namespace_selector_to_endpoint_selector`] performs Calico's
//! rewrite.
//!
//! # Canonical form and ID
//!
//! Parsing yields a tree in normal form ([`Expr`]); its
//! [`Display`](std::fmt::Display) is the canonical text, and
//! `parse(canonical) == tree`. Inputs differing only in
//! whitespace, quote style, redundant parentheses, double negation, nesting of
//! `&&`/`||`, or the order and repetition of set members have the same tree.
//! [`Selector::id`] hashes the canonical text into a 24-character name fit for
//! an nftables set. The canonical text is Twill's own: it agrees with Calico's
//! `String()` on operators, quoting and sorted sets, but prints only the
//! parentheses precedence needs (Calico wraps every `&&`/`||` group) and
//! flattens nested groups, so IDs are not Calico's `s:…` IDs.
//!
//! # The label index
//!
//! [`index::LabelIndex`] tracks which selectors match which items as either
//! changes, emitting `MatchStarted`/`MatchStopped`. Items inherit labels from
//! parents (Calico's profiles). Each selector is filed under the most
//! selective key (and values) that every match must carry; each item is filed
//! under its labels; so a change evaluates only the selectors or items that
//! could be affected. See the module documentation for the complexity.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use twill_selector::Selector;
//! use twill_selector::index::{LabelIndex, MatchEvent};
//!
//! let web = Selector::parse("app == 'web' && tier in {'fe', 'be'}")?;
//! assert_eq!(web.to_string(), r#"app == "web" && tier in {"be", "fe"}"#);
//! let labels = BTreeMap::from([("app".into(), "web".into()), ("tier".into(), "fe".into())]);
//! assert!(web.matches(&labels));
//!
//! let mut index: LabelIndex<&str, &str, &str> = LabelIndex::new();
//! index.update_selector("allow-web", web);
//! let events = index.update_item("pod-1", labels, vec![]);
//! assert_eq!(events, [MatchEvent::MatchStarted("allow-web", "pod-1")]);
//! # Ok::<(), twill_selector::ParseError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

mod ast;
mod eval;
pub mod index;
mod parser;
mod restrict;

pub use ast::{Expr, ExprError, MAX_KEY_LEN, is_valid_key};
pub use eval::{Labels, Scope};

/// The label every namespaced Calico item carries, holding its namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

/// The prefix Calico puts on namespace labels inherited by endpoints.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";

/// Length in characters of [`Selector::id`].
pub const ID_LEN: usize = 24;

/// A parsed selector, in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    expr: Expr,
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
    /// Parses a selector; the empty (or all-whitespace) string is `all()`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parser::parse(text).map(|expr| Self { expr })
    }

    /// `all()`: the selector that matches everything.
    pub fn all() -> Self {
        Self { expr: Expr::All }
    }

    /// A selector from a tree built in code; the tree is normalized.
    pub fn from_expr(expr: Expr) -> Result<Self, ExprError> {
        expr.validate()?;
        Ok(Self {
            expr: expr.normalized(),
        })
    }

    /// The tree, in normal form.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the selector matches the given labels. `global()` counts as
    /// true, as in Calico's evaluator; use [`Selector::matches_in_scope`] to
    /// tell global from namespaced items.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        eval::eval(&self.expr, labels, true)
    }

    /// [`Selector::matches`] for any [`Labels`] source.
    pub fn matches_labels<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        eval::eval(&self.expr, labels, true)
    }

    /// Whether the selector matches an item with these labels in this scope:
    /// `global()` is true only for [`Scope::Global`] items.
    pub fn matches_in_scope<L: Labels + ?Sized>(&self, labels: &L, scope: Scope) -> bool {
        eval::eval(&self.expr, labels, scope == Scope::Global)
    }

    /// The canonical text (same as `to_string()`).
    pub fn canonical(&self) -> String {
        self.expr.to_string()
    }

    /// A stable ID of the canonical text: `s_` and the first 110 bits of its
    /// SHA-256 in lowercase RFC 4648 base32 (22 characters), [`ID_LEN`] = 24
    /// characters in all, every one in `[a-z0-9_]`, so it is a valid nftables
    /// identifier that leaves room for a prefix within the kernel's 32-byte
    /// limit of older kernels. It changes only if the canonical text does.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.canonical().as_bytes());
        let mut id = String::with_capacity(ID_LEN);
        id.push_str("s_");
        id.push_str(&base32_lower(&digest, ID_LEN - 2));
        id
    }

    /// Whether this is `all()`.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// `self && other`.
    pub fn and(&self, other: &Selector) -> Selector {
        Selector {
            expr: Expr::and(vec![self.expr.clone(), other.expr.clone()]),
        }
    }

    /// A copy with `prefix` in front of every label key (Calico's
    /// `PrefixVisitor`, used for `pcns.` and `pcsa.` labels).
    pub fn with_key_prefix(&self, prefix: &str) -> Result<Selector, ExprError> {
        let expr = self
            .expr
            .rewrite(&|k| format!("{prefix}{k}"), &Expr::All, &Expr::Global);
        expr.validate()?;
        Ok(Selector { expr })
    }

    /// Calico's translation of a rule's `namespaceSelector` into a selector
    /// over endpoints: keys get the `pcns.` prefix, `all()` becomes "is in a
    /// namespace" (`has(projectcalico.org/namespace)`) and `global()` becomes
    /// "is not" (`!has(projectcalico.org/namespace)`). An empty
    /// `namespaceSelector` field means "not set" to Calico, not `all()`: the
    /// caller must tell the two apart before parsing.
    pub fn namespace_selector_to_endpoint_selector(&self) -> Result<Selector, ExprError> {
        let in_namespace = Expr::Has(NAMESPACE_LABEL.to_string());
        let expr = self.expr.rewrite(
            &|k| format!("{NAMESPACE_LABEL_PREFIX}{k}"),
            &in_namespace,
            &Expr::negate(in_namespace.clone()),
        );
        expr.validate()?;
        Ok(Selector { expr })
    }

    /// The keys the selector mentions, sorted and de-duplicated.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        self.expr.for_each_key(&mut |k| keys.push(k.to_string()));
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Default for Selector {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The first `chars` characters of `bytes` in lowercase base32 (RFC 4648
/// alphabet, no padding).
fn base32_lower(bytes: &[u8], chars: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(chars);
    let mut buffer: u16 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 31)]));
            if out.len() == chars {
                return out;
            }
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 31)],
        ));
    }
    out
}

#[cfg(test)]
mod tests;
