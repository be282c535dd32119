#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::ruleset::{BaseChain, Hook, Rule, Set, SetKind, VerdictMap};

fn rule(body: &str) -> Rule {
    Rule {
        body: body.to_string(),
        hash: format!("h-{body}"),
    }
}

fn chain_strategy() -> impl Strategy<Value = (String, Chain)> {
    (
        prop::sample::select(vec!["forward", "input", "a", "b", "c", "d"]),
        prop::collection::vec(
            prop::sample::select(vec!["accept", "drop", "return", "jump a"]),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(name, bodies, flip_hook)| {
            let base = match name {
                "forward" => Some(BaseChain {
                    hook: if flip_hook {
                        Hook::Forward
                    } else {
                        Hook::Output
                    },
                    priority: 0,
                }),
                "input" => Some(BaseChain {
                    hook: Hook::Input,
                    priority: 0,
                }),
                _ => None,
            };
            (
                name.to_string(),
                Chain {
                    base,
                    rules: bodies.into_iter().map(rule).collect(),
                },
            )
        })
}

fn set_strategy() -> impl Strategy<Value = (String, Set)> {
    (
        prop::sample::select(vec!["v4-a", "v6-b", "p_c"]),
        // Kinds drawn independently of names: a clash forces a rebuild.
        prop::sample::select(vec![SetKind::Ipv4, SetKind::Ipv6, SetKind::Ports]),
        prop::collection::btree_set(prop::sample::select(vec!["e1", "e2", "e3", "e4"]), 0..4),
    )
        .prop_map(|(name, kind, elements)| {
            (
                name.to_string(),
                Set {
                    kind,
                    elements: elements.into_iter().map(String::from).collect(),
                },
            )
        })
}

fn map_strategy() -> impl Strategy<Value = (String, VerdictMap)> {
    (
        prop::sample::select(vec!["from-wl-dispatch", "to-wl-dispatch"]),
        prop::collection::btree_map(
            prop::sample::select(vec!["tw1", "tw2", "tw3"]),
            prop::sample::select(vec!["goto a", "goto b"]),
            0..3,
        ),
    )
        .prop_map(|(name, elements)| {
            (
                name.to_string(),
                VerdictMap {
                    elements: elements
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                },
            )
        })
}

fn ruleset_strategy() -> impl Strategy<Value = Ruleset> {
    (
        prop::collection::vec(chain_strategy(), 0..6),
        prop::collection::vec(set_strategy(), 0..3),
        prop::collection::vec(map_strategy(), 0..2),
    )
        .prop_map(|(chains, sets, maps)| Ruleset {
            chains: chains.into_iter().collect(),
            sets: sets.into_iter().collect(),
            maps: maps.into_iter().collect(),
        })
}

proptest! {
    #[test]
    fn planning_a_ruleset_against_itself_changes_nothing(d in ruleset_strategy()) {
        prop_assert!(plan(&d, &d).is_empty());
    }

    #[test]
    fn applying_the_plan_to_the_actual_ruleset_yields_the_desired_one(
        d in ruleset_strategy(),
        a in ruleset_strategy(),
    ) {
        let mut actual = a.clone();
        actual.apply(&plan(&d, &a)).unwrap();
        prop_assert_eq!(&actual, &d);
        prop_assert!(plan(&d, &actual).is_empty());
    }
}

#[test]
fn an_unchanged_chain_is_not_rewritten_and_set_changes_are_batched() {
    let mut actual = Ruleset::default();
    actual.chains.insert(
        "keep".into(),
        Chain {
            base: None,
            rules: vec![rule("accept")],
        },
    );
    actual.sets.insert(
        "v4-a".into(),
        Set {
            kind: SetKind::Ipv4,
            elements: BTreeSet::from(["10.0.0.1".to_string(), "10.0.0.2".to_string()]),
        },
    );
    let mut desired = actual.clone();
    desired
        .sets
        .get_mut("v4-a")
        .unwrap()
        .elements
        .extend(["10.0.0.3".to_string(), "10.0.0.4".to_string()]);
    desired
        .sets
        .get_mut("v4-a")
        .unwrap()
        .elements
        .remove("10.0.0.1");
    assert_eq!(
        plan(&desired, &actual),
        vec![
            Op::AddTable,
            Op::AddElements {
                set: "v4-a".into(),
                elements: vec!["10.0.0.3".into(), "10.0.0.4".into()],
            },
            Op::DeleteElements {
                set: "v4-a".into(),
                elements: vec!["10.0.0.1".into()],
            },
        ]
    );
}

#[test]
fn a_removed_endpoint_loses_its_map_entry_before_its_chain_is_deleted() {
    let mut actual = Ruleset::default();
    actual.chains.insert(
        "from-tw1".into(),
        Chain {
            base: None,
            rules: vec![rule("return")],
        },
    );
    actual.maps.insert(
        "from-wl-dispatch".into(),
        VerdictMap {
            elements: BTreeMap::from([("tw1".to_string(), "goto from-tw1".to_string())]),
        },
    );
    let mut desired = actual.clone();
    desired.chains.clear();
    desired
        .maps
        .get_mut("from-wl-dispatch")
        .unwrap()
        .elements
        .clear();
    assert_eq!(
        crate::ruleset::script(&plan(&desired, &actual)),
        "add table inet twill\n\
         delete element inet twill from-wl-dispatch { \"tw1\" }\n\
         flush chain inet twill from-tw1\n\
         delete chain inet twill from-tw1\n"
    );
}

#[test]
fn a_set_of_another_type_under_a_wanted_name_rebuilds_the_table() {
    let set = |kind| Set {
        kind,
        elements: BTreeSet::new(),
    };
    let mut actual = Ruleset::default();
    actual.sets.insert("v4-a".into(), set(SetKind::Foreign));
    let mut desired = Ruleset::default();
    desired.sets.insert("v4-a".into(), set(SetKind::Ipv4));
    let ops = plan(&desired, &actual);
    assert_eq!(ops[..2], [Op::AddTable, Op::DeleteTable]);
    actual.apply(&ops).unwrap();
    assert_eq!(actual, desired);
}
