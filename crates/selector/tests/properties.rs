//! Property tests: canonical round-trips, parser robustness, and the label
//! index against brute-force evaluation.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use twill_selector::index::{LabelIndex, MatchEvent};
use twill_selector::{Expr, Selector};

// ---------------------------------------------------------------------------
// Random trees

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "app",
            "tier",
            "projectcalico.org/namespace",
            "a.b/c-d_e",
            "in",
            "not",
            "has",
            "all",
            "global",
            "contains",
            "0",
            "-",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9_./-]{1,10}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ]{0,6}",
        "[a-z\"]{0,4}",
        "[a-z']{0,4}",
        "\\PC{0,4}".prop_filter("no literal can hold both quotes", |v| !(v.contains('"')
            && v.contains('\''))),
    ]
}

fn leaf(key: BoxedStrategy<String>, value: BoxedStrategy<String>) -> impl Strategy<Value = Expr> {
    let set = prop::collection::btree_set(value.clone(), 0..4);
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key.clone().prop_map(Expr::Has),
        (key.clone(), value.clone()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (key.clone(), value.clone()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (key.clone(), value.clone()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (key.clone(), value.clone()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (key.clone(), value).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        (key.clone(), set.clone()).prop_map(|(k, vs)| Expr::In(k, vs)),
        (key, set).prop_map(|(k, vs)| Expr::NotIn(k, vs)),
    ]
}

fn tree(key: BoxedStrategy<String>, value: BoxedStrategy<String>) -> impl Strategy<Value = Expr> {
    leaf(key, value).prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::And),
            prop::collection::vec(inner, 1..4).prop_map(Expr::Or),
        ]
    })
}

fn any_tree() -> impl Strategy<Value = Expr> {
    tree(key().boxed(), value().boxed())
}

// ---------------------------------------------------------------------------
// A deliberately untidy printer: random whitespace, quotes, parentheses,
// double negations, set order and duplicates. Parsing its output must give
// the normalized tree.

struct Noise {
    bytes: Vec<u8>,
    at: usize,
}

impl Noise {
    fn next(&mut self) -> u8 {
        let b = self
            .bytes
            .get(self.at % self.bytes.len().max(1))
            .copied()
            .unwrap_or(0);
        self.at += 1;
        b
    }

    fn chance(&mut self) -> bool {
        self.next().is_multiple_of(4)
    }

    fn ws(&mut self) -> &'static str {
        ["", "", " ", "\t", "  "][usize::from(self.next() % 5)]
    }

    fn ws1(&mut self) -> &'static str {
        [" ", "\t", " \t "][usize::from(self.next() % 3)]
    }

    fn literal(&mut self, v: &str) -> String {
        let single = if v.contains('"') {
            true
        } else if v.contains('\'') {
            false
        } else {
            self.next().is_multiple_of(2)
        };
        if single {
            format!("'{v}'")
        } else {
            format!("\"{v}\"")
        }
    }

    /// `e` written so that it is one operation (an operand of `&&`).
    fn operation(&mut self, e: &Expr) -> String {
        let core = match e {
            Expr::And(_) | Expr::Or(_) => format!("({}{}{})", self.ws(), self.expr(e), self.ws()),
            _ if self.chance() => format!("({}{}{})", self.ws(), self.expr(e), self.ws()),
            _ => self.expr(e),
        };
        if self.chance() {
            format!("!{}!{}{core}", self.ws(), self.ws())
        } else {
            core
        }
    }

    fn comparison(&mut self, k: &str, op: &str, v: &str) -> String {
        // A word operator must be separated from the key; a symbol need not.
        let ws_before = if op.starts_with(['=', '!']) {
            self.ws()
        } else {
            self.ws1()
        };
        let ws_after = self.ws();
        format!("{k}{ws_before}{op}{ws_after}{}", self.literal(v))
    }

    fn set(&mut self, k: &str, op: &str, vs: &BTreeSet<String>) -> String {
        let mut members: Vec<&String> = vs.iter().collect();
        if self.chance() {
            members.reverse();
        }
        if let Some(first) = vs.iter().next()
            && self.chance()
        {
            members.push(first);
        }
        let mut out = format!("{k}{}{op}{}{{", self.ws1(), self.ws());
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.push_str(self.ws());
                out.push(',');
            }
            out.push_str(self.ws());
            let lit = self.literal(m);
            out.push_str(&lit);
        }
        if !members.is_empty() && self.chance() {
            out.push(',');
        }
        out.push_str(self.ws());
        out.push('}');
        out
    }

    fn expr(&mut self, e: &Expr) -> String {
        match e {
            Expr::All => format!("all({})", self.ws()),
            Expr::Global => format!("global({})", self.ws()),
            Expr::Has(k) => format!("has({}{k}{})", self.ws(), self.ws()),
            Expr::Eq(k, v) => self.comparison(k, "==", v),
            Expr::Ne(k, v) => self.comparison(k, "!=", v),
            Expr::Contains(k, v) => self.comparison(k, "contains", v),
            Expr::StartsWith(k, v) => {
                let op = if self.chance() {
                    "startswith"
                } else {
                    "starts with"
                };
                self.comparison(k, op, v)
            }
            Expr::EndsWith(k, v) => self.comparison(k, "ends  with", v),
            Expr::In(k, vs) => self.set(k, "in", vs),
            Expr::NotIn(k, vs) => {
                let op = if self.chance() { "notin" } else { "not in" };
                self.set(k, op, vs)
            }
            Expr::Not(inner) => {
                let operand = self.operation(inner);
                format!("!{}{operand}", self.ws())
            }
            Expr::And(ops) => {
                let parts: Vec<String> = ops.iter().map(|op| self.operation(op)).collect();
                let sep = format!("{}&&{}", self.ws(), self.ws());
                parts.join(&sep)
            }
            Expr::Or(ops) => {
                let parts: Vec<String> = ops
                    .iter()
                    .map(|op| match op {
                        Expr::And(_) if !self.chance() => self.expr(op),
                        _ => self.operation(op),
                    })
                    .collect();
                let sep = format!("{}||{}", self.ws(), self.ws());
                parts.join(&sep)
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_text_parses_back_to_the_same_tree(tree in any_tree()) {
        let selector = Selector::from_expr(tree).expect("generated trees are valid");
        let text = selector.to_string();
        let parsed = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&parsed, &selector, "text {:?}", text);
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(parsed.id(), selector.id());
    }

    #[test]
    fn untidy_text_parses_to_the_normalized_tree(tree in any_tree(), noise in prop::collection::vec(any::<u8>(), 1..64)) {
        let selector = Selector::from_expr(tree.clone()).expect("generated trees are valid");
        let mut printer = Noise { bytes: noise, at: 0 };
        let text = format!("{}{}{}", printer.ws(), printer.expr(&tree), printer.ws());
        let parsed = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&parsed, &selector, "text {:?}", text);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics_and_round_trips(text in "\\PC{0,40}|[a-z =!&|(){},'\"\t]{0,40}") {
        if let Ok(selector) = Selector::parse(&text) {
            let canonical = selector.to_string();
            let reparsed = Selector::parse(&canonical);
            prop_assert_eq!(reparsed, Ok(selector), "{:?}", canonical);
        } else if let Err(e) = Selector::parse(&text) {
            prop_assert!(e.offset <= text.len());
        }
    }

    #[test]
    fn evaluation_agrees_with_the_canonical_form(tree in any_tree(), labels in labels_strategy()) {
        let selector = Selector::from_expr(tree).expect("valid");
        let reparsed = Selector::parse(&selector.to_string()).expect("canonical text parses");
        prop_assert_eq!(selector.matches(&labels), reparsed.matches(&labels));
    }
}

fn labels_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(small_key(), small_value(), 0..4)
}

// ---------------------------------------------------------------------------
// The index against brute force.

fn small_key() -> BoxedStrategy<String> {
    prop::sample::select(vec!["a", "b", "c", "d"])
        .prop_map(str::to_string)
        .boxed()
}

fn small_value() -> BoxedStrategy<String> {
    prop::sample::select(vec!["", "1", "2", "12"])
        .prop_map(str::to_string)
        .boxed()
}

#[derive(Debug, Clone)]
enum Op {
    Item(u8, BTreeMap<String, String>, Vec<u8>),
    RemoveItem(u8),
    Parent(u8, BTreeMap<String, String>),
    RemoveParent(u8),
    Selector(u8, Expr),
    RemoveSelector(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let parents = prop::collection::vec(0u8..3, 0..3);
    prop_oneof![
        4 => (0u8..8, labels_strategy(), parents).prop_map(|(i, l, p)| Op::Item(i, l, p)),
        1 => (0u8..8).prop_map(Op::RemoveItem),
        2 => (0u8..3, labels_strategy()).prop_map(|(p, l)| Op::Parent(p, l)),
        1 => (0u8..3).prop_map(Op::RemoveParent),
        3 => (0u8..8, tree(small_key(), small_value())).prop_map(|(s, e)| Op::Selector(s, e)),
        1 => (0u8..8).prop_map(Op::RemoveSelector),
    ]
}

#[derive(Default)]
struct Model {
    items: BTreeMap<u8, (BTreeMap<String, String>, Vec<u8>)>,
    parents: BTreeMap<u8, BTreeMap<String, String>>,
    selectors: BTreeMap<u8, Selector>,
}

impl Model {
    fn effective(&self, item: u8) -> BTreeMap<String, String> {
        let (own, parents) = &self.items[&item];
        let mut labels = own.clone();
        for p in parents {
            for (k, v) in self.parents.get(p).into_iter().flatten() {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        labels
    }

    fn relation(&self) -> BTreeSet<(u8, u8)> {
        let mut rel = BTreeSet::new();
        for (&s, selector) in &self.selectors {
            for &i in self.items.keys() {
                if selector.matches(&self.effective(i)) {
                    rel.insert((s, i));
                }
            }
        }
        rel
    }
}

fn index_relation(index: &LabelIndex<u8, u8, u8>, model: &Model) -> BTreeSet<(u8, u8)> {
    let mut rel = BTreeSet::new();
    for &s in model.selectors.keys() {
        rel.extend(index.items_matching(&s).map(|&i| (s, i)));
    }
    rel
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn index_agrees_with_brute_force_after_every_change(ops in prop::collection::vec(op(), 1..40)) {
        let mut index: LabelIndex<u8, u8, u8> = LabelIndex::new();
        let mut model = Model::default();
        let mut relation = BTreeSet::new();
        for op in ops {
            let events = match op.clone() {
                Op::Item(i, labels, parents) => {
                    model.items.insert(i, (labels.clone(), parents.clone()));
                    index.update_item(i, labels, parents)
                }
                Op::RemoveItem(i) => {
                    model.items.remove(&i);
                    index.remove_item(&i)
                }
                Op::Parent(p, labels) => {
                    model.parents.insert(p, labels.clone());
                    index.update_parent(p, labels)
                }
                Op::RemoveParent(p) => {
                    model.parents.remove(&p);
                    index.remove_parent(&p)
                }
                Op::Selector(s, tree) => {
                    let selector = Selector::from_expr(tree).expect("valid");
                    model.selectors.insert(s, selector.clone());
                    index.update_selector(s, selector)
                }
                Op::RemoveSelector(s) => {
                    model.selectors.remove(&s);
                    index.remove_selector(&s)
                }
            };
            for event in &events {
                match *event {
                    MatchEvent::MatchStarted(s, i) => {
                        prop_assert!(relation.insert((s, i)), "{:?} started twice after {:?}", event, op);
                    }
                    MatchEvent::MatchStopped(s, i) => {
                        prop_assert!(relation.remove(&(s, i)), "{:?} stopped but was not matching after {:?}", event, op);
                    }
                }
            }
            let expected = model.relation();
            prop_assert_eq!(&relation, &expected, "events diverge from brute force after {:?}", op);
            prop_assert_eq!(index_relation(&index, &model), expected, "index state after {:?}", op);
            for &i in model.items.keys() {
                prop_assert_eq!(index.effective_labels(&i), Some(model.effective(i)));
            }
            prop_assert_eq!(index.match_count(), relation.len());
        }
    }
}
