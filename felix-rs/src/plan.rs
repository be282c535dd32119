//! The difference between the desired ruleset and the kernel's, as one
//! ordered list of [`Op`]s that nft applies as a single transaction.
//!
//! Order inside the transaction, so that every reference is valid when it
//! is made and nothing is deleted while still referenced:
//!
//! 1. the table; new sets (with their elements), maps and chains (empty);
//! 2. elements added to existing sets;
//! 3. new and changed chains: flush, then their rules (a chain is rewritten
//!    whole, as Felix does: no rule handles, no window without rules);
//! 4. verdict-map entries removed or changed, then added;
//! 5. elements removed from kept sets;
//! 6. chains no longer wanted: flushed, then (after their maps) deleted;
//!    then sets no longer wanted.
//!
//! Chains are compared by their rules' content hashes only.

use std::collections::{BTreeMap, BTreeSet};

use crate::ruleset::{Chain, Op, Ruleset, Touched};

/// The entries of `map` whose names are in `names` (all when `None`), in
/// name order.
fn entries<'a, V>(
    map: &'a BTreeMap<String, V>,
    names: Option<&BTreeSet<String>>,
) -> Vec<(&'a String, &'a V)> {
    match names {
        None => map.iter().collect(),
        Some(names) => names.iter().filter_map(|n| map.get_key_value(n)).collect(),
    }
}

/// The operations that turn `actual` into `desired`; empty when equal.
///
/// When `actual` holds a set under a name `desired` uses for a set of
/// another type (never Twill's own doing: set names encode their type), the
/// plan deletes and rebuilds the whole table in the same transaction.
pub fn plan(desired: &Ruleset, actual: &Ruleset) -> Vec<Op> {
    plan_touched(desired, actual, &Touched::everything())
}

/// [`plan`] looking only at the chains, sets and maps `touched` names; the
/// rest of `desired` and `actual` must be equal (as they are when `actual`
/// is what the kernel was last given and `touched` what changed since).
/// With [`Touched::all`] it is [`plan`].
pub fn plan_touched(desired: &Ruleset, actual: &Ruleset, touched: &Touched) -> Vec<Op> {
    let (chains, sets, maps) = if touched.all {
        (None, None, None)
    } else {
        (
            Some(&touched.chains),
            Some(&touched.sets),
            Some(&touched.maps),
        )
    };
    let desired_sets = entries(&desired.sets, sets);
    let actual_sets = entries(&actual.sets, sets);
    let desired_chains = entries(&desired.chains, chains);
    let actual_chains = entries(&actual.chains, chains);
    let desired_maps = entries(&desired.maps, maps);
    let actual_maps = entries(&actual.maps, maps);
    let clash = actual_sets
        .iter()
        .any(|(name, set)| desired.sets.get(*name).is_some_and(|d| d.kind != set.kind));
    if clash {
        let mut ops = vec![Op::AddTable, Op::DeleteTable];
        ops.extend(plan(desired, &Ruleset::default()));
        return ops;
    }
    let mut ops = Vec::new();

    // 1. New objects. A chain whose base settings changed is recreated.
    for &(name, set) in &desired_sets {
        if !actual.sets.contains_key(name) {
            ops.push(Op::AddSet {
                name: name.clone(),
                kind: set.kind,
            });
            if !set.elements.is_empty() {
                ops.push(Op::AddElements {
                    set: name.clone(),
                    elements: set.elements.iter().cloned().collect(),
                });
            }
        }
    }
    for &(name, _) in &desired_maps {
        if !actual.maps.contains_key(name) {
            ops.push(Op::AddMap(name.clone()));
        }
    }
    let recreated: Vec<&String> = desired_chains
        .iter()
        .filter(|(name, c)| actual.chains.get(*name).is_some_and(|a| a.base != c.base))
        .map(|&(name, _)| name)
        .collect();
    for name in &recreated {
        ops.push(Op::FlushChain((*name).clone()));
        ops.push(Op::DeleteChain((*name).clone()));
    }
    for &(name, chain) in &desired_chains {
        if !actual.chains.contains_key(name) || recreated.contains(&name) {
            ops.push(Op::AddChain {
                name: name.clone(),
                base: chain.base,
            });
        }
    }

    // 2. Elements added to existing sets.
    for &(name, set) in &desired_sets {
        if let Some(old) = actual.sets.get(name) {
            let added: Vec<String> = set.elements.difference(&old.elements).cloned().collect();
            if !added.is_empty() {
                ops.push(Op::AddElements {
                    set: name.clone(),
                    elements: added,
                });
            }
        }
    }

    // 3. Chain contents.
    let empty = Chain::default();
    for &(name, chain) in &desired_chains {
        let old = match actual.chains.get(name) {
            Some(old) if !recreated.contains(&name) => old,
            _ => &empty,
        };
        if chain.same_rules(old) {
            continue;
        }
        if !old.rules.is_empty() {
            ops.push(Op::FlushChain(name.clone()));
        }
        for rule in &chain.rules {
            ops.push(Op::AddRule {
                chain: name.clone(),
                rule: rule.clone(),
            });
        }
    }

    // 4. Verdict maps.
    for &(name, map) in &desired_maps {
        let old = actual.maps.get(name);
        let stale: Vec<String> = old
            .into_iter()
            .flat_map(|o| &o.elements)
            .filter(|(k, v)| map.elements.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            ops.push(Op::DeleteMapElements {
                map: name.clone(),
                keys: stale,
            });
        }
        let added: Vec<(String, String)> = map
            .elements
            .iter()
            .filter(|(k, v)| old.and_then(|o| o.elements.get(*k)) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !added.is_empty() {
            ops.push(Op::AddMapElements {
                map: name.clone(),
                elements: added,
            });
        }
    }

    // 5. Elements removed from kept sets.
    for &(name, set) in &desired_sets {
        if let Some(old) = actual.sets.get(name) {
            let removed: Vec<String> = old.elements.difference(&set.elements).cloned().collect();
            if !removed.is_empty() {
                ops.push(Op::DeleteElements {
                    set: name.clone(),
                    elements: removed,
                });
            }
        }
    }

    // 6. What is no longer wanted.
    let gone_chains: Vec<&String> = actual_chains
        .iter()
        .map(|&(n, _)| n)
        .filter(|n| !desired.chains.contains_key(*n))
        .collect();
    for name in &gone_chains {
        if !actual.chains[*name].rules.is_empty() {
            ops.push(Op::FlushChain((*name).clone()));
        }
    }
    for &(name, _) in &actual_maps {
        if !desired.maps.contains_key(name) {
            ops.push(Op::DeleteMap(name.clone()));
        }
    }
    for name in gone_chains {
        ops.push(Op::DeleteChain(name.clone()));
    }
    for &(name, _) in &actual_sets {
        if !desired.sets.contains_key(name) {
            ops.push(Op::DeleteSet(name.clone()));
        }
    }

    if !ops.is_empty() {
        ops.insert(0, Op::AddTable);
    }
    ops
}

#[cfg(test)]
mod tests;
