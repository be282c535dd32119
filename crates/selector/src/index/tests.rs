//! The label index, as a specification.

use std::collections::BTreeMap;

use super::MatchEvent::{MatchStarted, MatchStopped};
use super::*;

type Index = LabelIndex<&'static str, &'static str, &'static str>;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).expect("test selector parses")
}

fn matching(index: &Index, s: &'static str) -> Vec<&'static str> {
    let mut items: Vec<_> = index.items_matching(&s).copied().collect();
    items.sort();
    items
}

#[test]
fn adding_a_selector_starts_matches_with_existing_items() {
    let mut index = Index::new();
    index.update_item("web1", labels(&[("app", "web")]), vec![]);
    index.update_item("db1", labels(&[("app", "db")]), vec![]);
    let events = index.update_selector("s", sel("app == 'web'"));
    assert_eq!(events, [MatchStarted("s", "web1")]);
}

#[test]
fn adding_an_item_starts_matches_with_existing_selectors() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_selector("any", sel("all()"));
    index.update_selector("no-tier", sel("!has(tier)"));
    let events = index.update_item("pod", labels(&[("app", "web")]), vec![]);
    assert_eq!(
        events,
        [
            MatchStarted("any", "pod"),
            MatchStarted("no-tier", "pod"),
            MatchStarted("web", "pod")
        ]
    );
}

#[test]
fn item_without_labels_matches_scan_selectors() {
    let mut index = Index::new();
    index.update_selector("any", sel(""));
    index.update_selector("not-web", sel("app != 'web'"));
    let events = index.update_item("bare", labels(&[]), vec![]);
    assert_eq!(
        events,
        [MatchStarted("any", "bare"), MatchStarted("not-web", "bare")]
    );
}

#[test]
fn changing_labels_starts_and_stops_matches() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_selector("db", sel("app in {'db', 'cache'}"));
    index.update_item("pod", labels(&[("app", "web")]), vec![]);
    let events = index.update_item("pod", labels(&[("app", "cache")]), vec![]);
    assert_eq!(
        events,
        [MatchStarted("db", "pod"), MatchStopped("web", "pod")]
    );
}

#[test]
fn unchanged_update_emits_nothing() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_item("pod", labels(&[("app", "web")]), vec![]);
    assert!(
        index
            .update_item("pod", labels(&[("app", "web")]), vec![])
            .is_empty()
    );
    assert!(index.update_selector("web", sel("app=='web'")).is_empty());
}

#[test]
fn removing_an_item_stops_its_matches() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_selector("any", sel("all()"));
    index.update_item("pod", labels(&[("app", "web")]), vec![]);
    let events = index.remove_item(&"pod");
    assert_eq!(
        events,
        [MatchStopped("any", "pod"), MatchStopped("web", "pod")]
    );
    assert_eq!(index.match_count(), 0);
    assert!(index.remove_item(&"pod").is_empty());
}

#[test]
fn removing_a_selector_stops_its_matches() {
    let mut index = Index::new();
    index.update_item("a", labels(&[("app", "web")]), vec![]);
    index.update_item("b", labels(&[("app", "web")]), vec![]);
    index.update_selector("web", sel("has(app)"));
    let events = index.remove_selector(&"web");
    assert_eq!(events, [MatchStopped("web", "a"), MatchStopped("web", "b")]);
    assert!(index.remove_selector(&"web").is_empty());
}

#[test]
fn replacing_a_selector_emits_only_the_difference() {
    let mut index = Index::new();
    index.update_item("a", labels(&[("tier", "1")]), vec![]);
    index.update_item("b", labels(&[("tier", "2")]), vec![]);
    index.update_item("c", labels(&[("tier", "3")]), vec![]);
    index.update_selector("s", sel("tier in {'1', '2'}"));
    let events = index.update_selector("s", sel("tier in {'2', '3'}"));
    assert_eq!(events, [MatchStarted("s", "c"), MatchStopped("s", "a")]);
}

#[test]
fn items_inherit_parent_labels() {
    let mut index = Index::new();
    index.update_selector("prod", sel("pcns.env == 'prod' && app == 'web'"));
    index.update_parent("kns.shop", labels(&[("pcns.env", "prod")]));
    let events = index.update_item("pod", labels(&[("app", "web")]), vec!["kns.shop"]);
    assert_eq!(events, [MatchStarted("prod", "pod")]);
    assert_eq!(
        index.effective_labels(&"pod"),
        Some(labels(&[("app", "web"), ("pcns.env", "prod")]))
    );
}

#[test]
fn own_labels_are_the_item_labels_without_inherited_ones() {
    let mut index = Index::new();
    index.update_parent("kns.shop", labels(&[("pcns.env", "prod")]));
    index.update_item("pod", labels(&[("app", "web")]), vec!["kns.shop"]);
    assert_eq!(index.own_labels(&"pod"), Some(labels(&[("app", "web")])));
    index.update_item("pod", labels(&[("app", "db"), ("v", "2")]), vec![]);
    assert_eq!(
        index.own_labels(&"pod"),
        Some(labels(&[("app", "db"), ("v", "2")]))
    );
    index.remove_item(&"pod");
    assert_eq!(index.own_labels(&"pod"), None);
}

#[test]
fn removed_slots_are_reused_without_mixing_items_up() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_item("a", labels(&[("app", "web")]), vec![]);
    index.update_item("b", labels(&[("app", "db")]), vec![]);
    index.remove_item(&"a");
    let events = index.update_item("c", labels(&[("app", "web")]), vec![]);
    assert_eq!(events, [MatchStarted("web", "c")]);
    assert_eq!(matching(&index, "web"), ["c"]);
    assert!(!index.is_match(&"web", &"a"));
    index.remove_selector(&"web");
    index.update_selector("db", sel("app == 'db'"));
    assert_eq!(matching(&index, "db"), ["b"]);
    assert_eq!(index.selectors_matching(&"b").collect::<Vec<_>>(), [&"db"]);
    assert_eq!(index.match_count(), 1);
}

#[test]
fn own_labels_win_over_parent_labels() {
    let mut index = Index::new();
    index.update_selector("blue", sel("colour == 'blue'"));
    index.update_parent("p", labels(&[("colour", "blue")]));
    let events = index.update_item("pod", labels(&[("colour", "red")]), vec!["p"]);
    assert!(events.is_empty());
    assert_eq!(
        index.effective_labels(&"pod"),
        Some(labels(&[("colour", "red")]))
    );
}

#[test]
fn first_parent_wins_over_later_parents() {
    let mut index = Index::new();
    index.update_parent("first", labels(&[("k", "1")]));
    index.update_parent("second", labels(&[("k", "2"), ("j", "2")]));
    index.update_item("pod", labels(&[]), vec!["first", "second"]);
    assert_eq!(
        index.effective_labels(&"pod"),
        Some(labels(&[("j", "2"), ("k", "1")]))
    );
}

#[test]
fn changing_a_parent_updates_all_its_children() {
    let mut index = Index::new();
    index.update_selector("prod", sel("env == 'prod'"));
    index.update_parent("ns", labels(&[("env", "dev")]));
    index.update_item("a", labels(&[]), vec!["ns"]);
    index.update_item("b", labels(&[]), vec!["ns"]);
    index.update_item("c", labels(&[("env", "prod")]), vec!["ns"]);
    index.update_item("other", labels(&[]), vec![]);
    let events = index.update_parent("ns", labels(&[("env", "prod")]));
    assert_eq!(
        events,
        [MatchStarted("prod", "a"), MatchStarted("prod", "b")]
    );
    let events = index.remove_parent(&"ns");
    assert_eq!(
        events,
        [MatchStopped("prod", "a"), MatchStopped("prod", "b")]
    );
    assert_eq!(matching(&index, "prod"), ["c"]);
}

#[test]
fn parent_named_before_it_exists_applies_when_defined() {
    let mut index = Index::new();
    index.update_selector("s", sel("has(team)"));
    assert!(index.update_item("pod", labels(&[]), vec!["ns"]).is_empty());
    assert_eq!(
        index.update_parent("ns", labels(&[("team", "x")])),
        [MatchStarted("s", "pod")]
    );
}

#[test]
fn changing_an_items_parents_rewires_inheritance() {
    let mut index = Index::new();
    index.update_selector("s", sel("team == 'x'"));
    index.update_parent("nx", labels(&[("team", "x")]));
    index.update_parent("ny", labels(&[("team", "y")]));
    index.update_item("pod", labels(&[]), vec!["nx"]);
    assert_eq!(
        index.update_item("pod", labels(&[]), vec!["ny"]),
        [MatchStopped("s", "pod")]
    );
    // The old parent no longer drives the pod.
    assert!(
        index
            .update_parent("nx", labels(&[("team", "z")]))
            .is_empty()
    );
}

#[test]
fn unsatisfiable_selectors_match_nothing() {
    let mut index = Index::new();
    index.update_item("pod", labels(&[("a", "x")]), vec![]);
    for (id, text) in [
        ("n1", "!all()"),
        ("n2", "a == 'x' && a == 'y'"),
        ("n3", "a in {}"),
    ] {
        assert!(index.update_selector(id, sel(text)).is_empty(), "{text}");
    }
    assert!(
        index
            .update_item("pod2", labels(&[("a", "y")]), vec![])
            .is_empty()
    );
}

#[test]
fn selectors_are_filed_by_requirement_and_only_unrestricted_ones_scan() {
    let mut index = Index::new();
    let cases = [
        ("eq", "app == 'web'", false),
        ("in", "tier in {'a', 'b'}", false),
        ("has", "has(app) && !has(canary)", false),
        ("neg-ne", "!(app != 'web')", false),
        ("or-same-key", "app == 'a' || app == 'b'", false),
        ("contains", "app contains 'we'", false),
        ("all", "all()", true),
        ("not-has", "!has(app)", true),
        ("ne", "app != 'web'", true),
        ("or-different-keys", "a == 'x' || b == 'y'", true),
    ];
    for (id, text, scans) in cases {
        let before = index.scan_selector_count();
        index.update_selector(id, sel(text));
        assert_eq!(
            index.scan_selector_count() - before,
            usize::from(scans),
            "{text}"
        );
    }
}

#[test]
fn queries_report_the_match_relation() {
    let mut index = Index::new();
    index.update_selector("web", sel("app == 'web'"));
    index.update_item("pod", labels(&[("app", "web")]), vec![]);
    assert!(index.is_match(&"web", &"pod"));
    assert_eq!(
        index.selectors_matching(&"pod").collect::<Vec<_>>(),
        [&"web"]
    );
    assert_eq!(index.item_count(), 1);
    assert_eq!(index.selector_count(), 1);
    assert_eq!(index.selector(&"web"), Some(&sel("app == 'web'")));
}

#[test]
fn interned_labels_are_released_when_nothing_refers_to_them() {
    let mut index = Index::new();
    index.update_parent("ns", labels(&[("team", "x")]));
    index.update_selector(
        "s",
        sel("app in {'web', 'db'} && team == 'x' && hash starts with 'a'"),
    );
    for hash in ["a1", "a2", "b3"] {
        index.update_item("pod", labels(&[("app", "web"), ("hash", hash)]), vec!["ns"]);
    }
    index.update_selector("s", sel("app == 'api'"));
    index.remove_item(&"pod");
    index.remove_parent(&"ns");
    index.remove_selector(&"s");
    assert_eq!(index.syms.live(), 0);
}
