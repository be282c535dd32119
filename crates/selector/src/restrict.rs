//! What a selector requires of any labels it matches.
//!
//! This is the analysis behind the label index (Calico calls it "label
//! restrictions"): for each key that every matching item must have, either the
//! set of values it must take or "any value". Negation is pushed down the tree
//! (De Morgan), so `!(a != "x")` requires `a` = `x` and `!(a == "x" || b == "y")`
//! requires nothing. The analysis is sound, not complete: whatever it reports
//! holds for every match, but it may miss requirements.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::Expr;

/// For each required key: `Some(values)` when its value must be one of
/// `values`, `None` when any value will do.
pub(crate) type KeyRequirements = BTreeMap<String, Option<BTreeSet<String>>>;

/// The requirements of `expr` under `matches` semantics (`global()` is true),
/// or `None` when nothing can match it (e.g. `!all()`, `a in {}`,
/// `a == "x" && a == "y"`).
pub(crate) fn requirements(expr: &Expr) -> Option<KeyRequirements> {
    required(expr, false)
}

fn single(key: &str, values: Option<BTreeSet<String>>) -> Option<KeyRequirements> {
    if values.as_ref().is_some_and(BTreeSet::is_empty) {
        return None;
    }
    Some(BTreeMap::from([(key.to_string(), values)]))
}

fn required(expr: &Expr, negated: bool) -> Option<KeyRequirements> {
    let nothing = || Some(KeyRequirements::new());
    match (expr, negated) {
        (Expr::All | Expr::Global, false) => nothing(),
        (Expr::All | Expr::Global, true) => None,
        (
            Expr::Has(k) | Expr::Contains(k, _) | Expr::StartsWith(k, _) | Expr::EndsWith(k, _),
            false,
        ) => single(k, None),
        (Expr::Eq(k, v), false) | (Expr::Ne(k, v), true) => {
            single(k, Some(BTreeSet::from([v.clone()])))
        }
        (Expr::In(k, vs), false) | (Expr::NotIn(k, vs), true) => single(k, Some(vs.clone())),
        (
            Expr::Has(_)
            | Expr::Contains(..)
            | Expr::StartsWith(..)
            | Expr::EndsWith(..)
            | Expr::Eq(..)
            | Expr::In(..),
            true,
        )
        | (Expr::Ne(..) | Expr::NotIn(..), false) => nothing(),
        (Expr::Not(inner), _) => required(inner, !negated),
        (Expr::And(ops), false) | (Expr::Or(ops), true) => conjunction(ops, negated),
        (Expr::Or(ops), false) | (Expr::And(ops), true) => disjunction(ops, negated),
    }
}

/// Every operand must match: the union of their requirements, with value sets
/// intersected.
fn conjunction(ops: &[Expr], negated: bool) -> Option<KeyRequirements> {
    let mut acc = KeyRequirements::new();
    for op in ops {
        for (key, values) in required(op, negated)? {
            match acc.get_mut(&key) {
                None => {
                    acc.insert(key, values);
                }
                Some(existing) => {
                    if let Some(new) = values {
                        let merged = match existing.take() {
                            None => new,
                            Some(old) => old.intersection(&new).cloned().collect(),
                        };
                        if merged.is_empty() {
                            return None;
                        }
                        *existing = Some(merged);
                    }
                }
            }
        }
    }
    Some(acc)
}

/// Some operand must match: the keys every satisfiable operand requires, with
/// value sets united (any value, if one operand accepts any).
fn disjunction(ops: &[Expr], negated: bool) -> Option<KeyRequirements> {
    let mut acc: Option<KeyRequirements> = None;
    for op in ops {
        let Some(reqs) = required(op, negated) else {
            continue; // This operand never matches: it adds no alternative.
        };
        acc = Some(match acc {
            None => reqs,
            Some(prev) => prev
                .into_iter()
                .filter_map(|(key, values)| {
                    let other = reqs.get(&key)?;
                    let union = match (values, other) {
                        (Some(mut a), Some(b)) => {
                            a.extend(b.iter().cloned());
                            Some(a)
                        }
                        _ => None,
                    };
                    Some((key, union))
                })
                .collect(),
        });
    }
    acc
}
