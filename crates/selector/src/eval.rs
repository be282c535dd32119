//! Evaluating a selector against a set of labels.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::ast::Expr;

/// Anything that can answer "what is the value of label `key`?".
pub trait Labels {
    /// The value of `key`, or `None` when the label is absent.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<H: BuildHasher> Labels for HashMap<String, String, H> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// Whether the item a selector is evaluated against is namespaced, which is
/// what `global()` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A non-namespaced item: a HostEndpoint, a GlobalNetworkSet, or (for a
    /// rule's `namespaceSelector`) "no namespace". `global()` is true.
    Global,
    /// An item inside a namespace: a WorkloadEndpoint, a NetworkSet, or a
    /// namespace itself. `global()` is false.
    Namespaced,
}

/// Evaluates `expr`; `global` is the value `global()` takes.
pub(crate) fn eval<L: Labels + ?Sized>(expr: &Expr, labels: &L, global: bool) -> bool {
    match expr {
        Expr::All => true,
        Expr::Global => global,
        Expr::Has(k) => labels.get_label(k).is_some(),
        Expr::Eq(k, v) => labels.get_label(k) == Some(v.as_str()),
        Expr::Ne(k, v) => labels.get_label(k) != Some(v.as_str()),
        Expr::In(k, vs) => labels.get_label(k).is_some_and(|x| vs.contains(x)),
        Expr::NotIn(k, vs) => !labels.get_label(k).is_some_and(|x| vs.contains(x)),
        Expr::Contains(k, v) => labels.get_label(k).is_some_and(|x| x.contains(v.as_str())),
        Expr::StartsWith(k, v) => labels
            .get_label(k)
            .is_some_and(|x| x.starts_with(v.as_str())),
        Expr::EndsWith(k, v) => labels.get_label(k).is_some_and(|x| x.ends_with(v.as_str())),
        Expr::Not(inner) => !eval(inner, labels, global),
        Expr::And(ops) => ops.iter().all(|op| eval(op, labels, global)),
        Expr::Or(ops) => ops.iter().any(|op| eval(op, labels, global)),
    }
}
