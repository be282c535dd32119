//! An incremental index of which selectors match which labelled items.
//!
//! Items carry their own labels and an ordered list of parents (Calico's
//! profiles: namespace and service-account labels). An item's *effective*
//! labels are its own labels plus every parent label it lacks; when two
//! parents disagree, the first one listed wins. Selectors are evaluated
//! against effective labels with [`Selector::matches`] semantics (`global()`
//! is true; rewrite namespace selectors first with
//! [`Selector::namespace_selector_to_endpoint_selector`]).
//!
//! # Design
//!
//! * Items are filed by effective label: key → items with that key, and
//!   (key, value) → items with that value.
//! * Each selector is analysed for what every match must carry (its *label
//!   requirements*: for some keys, "present" or "one of these values"; pushed
//!   through `!`, `&&` and `||`). It is filed under one requirement: the
//!   (key, values) or key that currently has the fewest items. Selectors with
//!   no requirement (`all()`, `!has(x)`, `a != "b"`) are filed as *scan*
//!   selectors; selectors that can match nothing are not filed at all.
//! * When an item's effective labels change, the candidates are the selectors
//!   filed under its (key, value) pairs and its keys, plus the scan selectors.
//!   Any other selector cannot match it. Candidates are evaluated and compared
//!   with the item's previous matches.
//! * When a selector is added or changed, the candidates are the items filed
//!   under its requirement (every item, for a scan selector).
//!
//! # Complexity
//!
//! With `L` labels on an item, `E` the cost of one evaluation (linear in the
//! selector's size):
//!
//! * item added, changed or removed: `O(L)` index updates plus
//!   `E × (Σ over its labels of selectors filed under that (key, value) or key
//!   + scan selectors)` — independent of the total number of selectors;
//! * selector added or changed: `E × (items filed under its requirement)`, or
//!   `E × all items` for a scan selector;
//! * parent changed: the item cost above for each child whose effective labels
//!   actually change;
//! * removals of either kind: `O(matches)`.
//!
//! Inside the index, label keys and values are interned to reference-counted
//! integer symbols: an item's effective labels are a small sorted array of
//! symbol pairs and selectors are compiled against symbols, so an evaluation
//! compares integers in one or two cache lines instead of following string
//! pointers (the dominant cost before).
//!
//! Memory: each match is stored twice (by selector and by item), each label
//! once per posting list.

use std::collections::BTreeMap;
use std::hash::Hash;

// foldhash: several times faster than SipHash on short keys, and randomly
// seeded per process.
use foldhash::{HashMap, HashSet};

use crate::Selector;
use crate::restrict::requirements;

mod compiled;

use compiled::{Compiled, Interner, Sym, SymLabels};

/// A change in the match relation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchEvent<S, I> {
    /// Selector `S` now matches item `I` (and did not before).
    MatchStarted(S, I),
    /// Selector `S` no longer matches item `I` (it did before).
    MatchStopped(S, I),
}

/// The bounds every ID type in the index needs.
pub trait IndexId: Clone + Eq + Hash + Ord {}
impl<T: Clone + Eq + Hash + Ord> IndexId for T {}

type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct Item<P> {
    own: Labels,
    parents: Vec<P>,
    effective: SymLabels,
}

#[derive(Debug)]
struct Parent<I> {
    /// `None` until the parent is defined (items may name it earlier).
    labels: Option<Labels>,
    children: HashSet<I>,
}

/// The items holding one key, and by value.
#[derive(Debug)]
struct KeyPostings<I> {
    with_key: HashSet<I>,
    by_value: HashMap<Sym, HashSet<I>>,
}

impl<I> Default for KeyPostings<I> {
    fn default() -> Self {
        Self {
            with_key: HashSet::default(),
            by_value: HashMap::default(),
        }
    }
}

/// Where a selector is filed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Nothing can match it.
    Never,
    /// Every match has `key` with one of `values`.
    Values { key: Sym, values: Vec<Sym> },
    /// Every match has `key`.
    Key(Sym),
    /// No requirement known: evaluate against every item.
    Scan,
}

#[derive(Debug)]
struct SelectorEntry {
    selector: Selector,
    compiled: Compiled,
    plan: Plan,
}

/// The incremental label index.
///
/// `S` identifies selectors, `I` items and `P` parents. Every mutating method
/// returns the resulting [`MatchEvent`]s, sorted, each (selector, item) pair at
/// most once.
#[derive(Debug)]
pub struct LabelIndex<S, I, P> {
    syms: Interner,
    items: HashMap<I, Item<P>>,
    parents: HashMap<P, Parent<I>>,
    selectors: HashMap<S, SelectorEntry>,
    items_by_label: HashMap<Sym, KeyPostings<I>>,
    selectors_by_value: HashMap<Sym, HashMap<Sym, HashSet<S>>>,
    selectors_by_key: HashMap<Sym, HashSet<S>>,
    scan_selectors: HashSet<S>,
    matches_by_selector: HashMap<S, HashSet<I>>,
    matches_by_item: HashMap<I, HashSet<S>>,
}

impl<S: IndexId, I: IndexId, P: IndexId> Default for LabelIndex<S, I, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: IndexId, I: IndexId, P: IndexId> LabelIndex<S, I, P> {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            syms: Interner::default(),
            items: HashMap::default(),
            parents: HashMap::default(),
            selectors: HashMap::default(),
            items_by_label: HashMap::default(),
            selectors_by_value: HashMap::default(),
            selectors_by_key: HashMap::default(),
            scan_selectors: HashSet::default(),
            matches_by_selector: HashMap::default(),
            matches_by_item: HashMap::default(),
        }
    }

    /// Adds or replaces an item with its own labels and its parents (earlier
    /// parents win label conflicts; the item's own labels win over all).
    pub fn update_item(&mut self, id: I, labels: Labels, parents: Vec<P>) -> Vec<MatchEvent<S, I>> {
        let mut events = Vec::new();
        let old_parents = self.items.get(&id).map(|item| item.parents.clone());
        if old_parents.as_ref() != Some(&parents) {
            for p in old_parents.iter().flatten() {
                self.detach_child(p, &id);
            }
            for p in &parents {
                self.parents
                    .entry(p.clone())
                    .or_insert_with(|| Parent {
                        labels: None,
                        children: HashSet::default(),
                    })
                    .children
                    .insert(id.clone());
            }
        }
        let effective = self.intern_effective(&labels, &parents);
        let is_new = !self.items.contains_key(&id);
        match self.items.get_mut(&id) {
            Some(item) => {
                item.own = labels;
                item.parents = parents;
            }
            None => {
                self.items.insert(
                    id.clone(),
                    Item {
                        own: labels,
                        parents,
                        effective: Vec::new(),
                    },
                );
                self.matches_by_item.insert(id.clone(), HashSet::default());
            }
        }
        self.set_effective(&id, effective, is_new, &mut events);
        finish(events)
    }

    /// Removes an item; every selector that matched it stops matching.
    pub fn remove_item(&mut self, id: &I) -> Vec<MatchEvent<S, I>> {
        let mut events = Vec::new();
        let Some(item) = self.items.remove(id) else {
            return events;
        };
        for p in &item.parents {
            self.detach_child(p, id);
        }
        self.unfile_item(id, &item.effective);
        self.release_labels(&item.effective);
        for s in self.matches_by_item.remove(id).unwrap_or_default() {
            if let Some(set) = self.matches_by_selector.get_mut(&s) {
                set.remove(id);
            }
            events.push(MatchEvent::MatchStopped(s, id.clone()));
        }
        finish(events)
    }

    /// Adds or replaces a parent's labels; its children's matches follow.
    pub fn update_parent(&mut self, id: P, labels: Labels) -> Vec<MatchEvent<S, I>> {
        let parent = self.parents.entry(id.clone()).or_insert_with(|| Parent {
            labels: None,
            children: HashSet::default(),
        });
        if parent.labels.as_ref() == Some(&labels) {
            return Vec::new();
        }
        parent.labels = Some(labels);
        self.refresh_children(&id)
    }

    /// Removes a parent's labels (its children keep naming it, and inherit
    /// its labels again if it comes back).
    pub fn remove_parent(&mut self, id: &P) -> Vec<MatchEvent<S, I>> {
        let Some(parent) = self.parents.get_mut(id) else {
            return Vec::new();
        };
        if parent.labels.take().is_none() {
            return Vec::new();
        }
        let events = self.refresh_children(id);
        if self.parents.get(id).is_some_and(|p| p.children.is_empty()) {
            self.parents.remove(id);
        }
        events
    }

    /// Adds or replaces a selector.
    pub fn update_selector(&mut self, id: S, selector: Selector) -> Vec<MatchEvent<S, I>> {
        if self
            .selectors
            .get(&id)
            .is_some_and(|e| e.selector == selector)
        {
            return Vec::new();
        }
        // Compile before releasing the old version, so shared symbols stay.
        let compiled = Compiled::new(selector.expr(), &mut self.syms);
        if let Some(old) = self.selectors.remove(&id) {
            self.unfile_selector(&id, &old.plan);
            old.compiled.release(&mut self.syms);
        }
        let plan = self.choose_plan(&selector);
        self.file_selector(&id, &plan);

        let mut new_matches = HashSet::default();
        {
            let syms = &self.syms;
            let items = &self.items;
            let mut consider = |item_id: &I| {
                if let Some(item) = items.get(item_id)
                    && compiled.matches(&item.effective, syms)
                {
                    new_matches.insert(item_id.clone());
                }
            };
            match &plan {
                Plan::Never => {}
                Plan::Values { key, values } => {
                    if let Some(postings) = self.items_by_label.get(key) {
                        for v in values {
                            postings
                                .by_value
                                .get(v)
                                .into_iter()
                                .flatten()
                                .for_each(&mut consider);
                        }
                    }
                }
                Plan::Key(key) => {
                    if let Some(postings) = self.items_by_label.get(key) {
                        postings.with_key.iter().for_each(&mut consider);
                    }
                }
                Plan::Scan => {
                    // Walk the item table itself: sequential, no second lookup.
                    for (item_id, item) in items {
                        if compiled.matches(&item.effective, syms) {
                            new_matches.insert(item_id.clone());
                        }
                    }
                }
            }
        }

        let old_matches = self.matches_by_selector.remove(&id).unwrap_or_default();
        let mut events = Vec::with_capacity(new_matches.len());
        for item_id in old_matches.difference(&new_matches) {
            if let Some(set) = self.matches_by_item.get_mut(item_id) {
                set.remove(&id);
            }
            events.push(MatchEvent::MatchStopped(id.clone(), item_id.clone()));
        }
        for item_id in new_matches.difference(&old_matches) {
            if let Some(set) = self.matches_by_item.get_mut(item_id) {
                set.insert(id.clone());
            }
            events.push(MatchEvent::MatchStarted(id.clone(), item_id.clone()));
        }
        self.matches_by_selector.insert(id.clone(), new_matches);
        self.selectors.insert(
            id,
            SelectorEntry {
                selector,
                compiled,
                plan,
            },
        );
        finish(events)
    }

    /// Removes a selector; it stops matching everything it matched.
    pub fn remove_selector(&mut self, id: &S) -> Vec<MatchEvent<S, I>> {
        let Some(entry) = self.selectors.remove(id) else {
            return Vec::new();
        };
        self.unfile_selector(id, &entry.plan);
        entry.compiled.release(&mut self.syms);
        let mut events = Vec::new();
        for item_id in self.matches_by_selector.remove(id).unwrap_or_default() {
            if let Some(set) = self.matches_by_item.get_mut(&item_id) {
                set.remove(id);
            }
            events.push(MatchEvent::MatchStopped(id.clone(), item_id));
        }
        finish(events)
    }

    /// The items selector `id` matches, in no particular order.
    pub fn items_matching(&self, id: &S) -> impl Iterator<Item = &I> {
        self.matches_by_selector.get(id).into_iter().flatten()
    }

    /// The selectors matching item `id`, in no particular order.
    pub fn selectors_matching(&self, id: &I) -> impl Iterator<Item = &S> {
        self.matches_by_item.get(id).into_iter().flatten()
    }

    /// Whether selector `selector` matches item `item`.
    pub fn is_match(&self, selector: &S, item: &I) -> bool {
        self.matches_by_selector
            .get(selector)
            .is_some_and(|set| set.contains(item))
    }

    /// An item's effective labels (own labels plus inherited ones).
    pub fn effective_labels(&self, id: &I) -> Option<BTreeMap<String, String>> {
        self.items.get(id).map(|item| {
            item.effective
                .iter()
                .map(|&(k, v)| {
                    (
                        self.syms.resolve(k).to_string(),
                        self.syms.resolve(v).to_string(),
                    )
                })
                .collect()
        })
    }

    /// The selector stored under `id`.
    pub fn selector(&self, id: &S) -> Option<&Selector> {
        self.selectors.get(id).map(|e| &e.selector)
    }

    /// Number of items.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Number of selectors.
    pub fn selector_count(&self) -> usize {
        self.selectors.len()
    }

    /// Number of selectors with no usable requirement, evaluated against
    /// every changed item.
    pub fn scan_selector_count(&self) -> usize {
        self.scan_selectors.len()
    }

    /// Number of (selector, item) matches.
    pub fn match_count(&self) -> usize {
        self.matches_by_selector.values().map(HashSet::len).sum()
    }

    fn detach_child(&mut self, parent: &P, child: &I) {
        if let Some(p) = self.parents.get_mut(parent) {
            p.children.remove(child);
            if p.children.is_empty() && p.labels.is_none() {
                self.parents.remove(parent);
            }
        }
    }

    /// The effective labels for `own` and `parents`, interned (taking a
    /// reference on each symbol) and sorted by key.
    fn intern_effective(&mut self, own: &Labels, parents: &[P]) -> SymLabels {
        let mut merged: BTreeMap<&str, &str> =
            own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for p in parents {
            if let Some(labels) = self.parents.get(p).and_then(|p| p.labels.as_ref()) {
                for (k, v) in labels {
                    merged.entry(k).or_insert(v);
                }
            }
        }
        let mut effective: SymLabels = merged
            .into_iter()
            .map(|(k, v)| (self.syms.intern(k), self.syms.intern(v)))
            .collect();
        effective.sort_unstable();
        effective
    }

    fn release_labels(&mut self, labels: &SymLabels) {
        for &(k, v) in labels {
            self.syms.release(k);
            self.syms.release(v);
        }
    }

    fn refresh_children(&mut self, parent: &P) -> Vec<MatchEvent<S, I>> {
        let mut events = Vec::new();
        let children: Vec<I> = self
            .parents
            .get(parent)
            .map(|p| p.children.iter().cloned().collect())
            .unwrap_or_default();
        for child in children {
            let Some((own, parents)) = self
                .items
                .get(&child)
                .map(|i| (i.own.clone(), i.parents.clone()))
            else {
                continue;
            };
            let effective = self.intern_effective(&own, &parents);
            self.set_effective(&child, effective, false, &mut events);
        }
        finish(events)
    }

    /// Installs an item's new (interned) effective labels and, if they
    /// changed (or `force`), re-evaluates the selectors that could be
    /// affected. Consumes the references `effective` holds.
    fn set_effective(
        &mut self,
        id: &I,
        effective: SymLabels,
        force: bool,
        events: &mut Vec<MatchEvent<S, I>>,
    ) {
        let Some(item) = self.items.get_mut(id) else {
            self.release_labels(&effective);
            return;
        };
        if item.effective == effective && !force {
            self.release_labels(&effective);
            return;
        }
        let old = std::mem::replace(&mut item.effective, effective);
        self.unfile_item(id, &old);
        self.release_labels(&old);
        let Some(item) = self.items.get(id) else {
            return;
        };
        for &(k, v) in &item.effective {
            let postings = self.items_by_label.entry(k).or_default();
            postings.with_key.insert(id.clone());
            postings.by_value.entry(v).or_default().insert(id.clone());
        }

        let mut new_matches = HashSet::default();
        let syms = &self.syms;
        let mut consider = |s: &S| {
            if let Some(entry) = self.selectors.get(s)
                && entry.compiled.matches(&item.effective, syms)
            {
                new_matches.insert(s.clone());
            }
        };
        for (k, v) in &item.effective {
            if let Some(by_value) = self.selectors_by_value.get(k)
                && let Some(sels) = by_value.get(v)
            {
                sels.iter().for_each(&mut consider);
            }
            if let Some(sels) = self.selectors_by_key.get(k) {
                sels.iter().for_each(&mut consider);
            }
        }
        self.scan_selectors.iter().for_each(&mut consider);

        let old_matches = self.matches_by_item.remove(id).unwrap_or_default();
        for s in old_matches.difference(&new_matches) {
            if let Some(set) = self.matches_by_selector.get_mut(s) {
                set.remove(id);
            }
            events.push(MatchEvent::MatchStopped(s.clone(), id.clone()));
        }
        for s in new_matches.difference(&old_matches) {
            if let Some(set) = self.matches_by_selector.get_mut(s) {
                set.insert(id.clone());
            }
            events.push(MatchEvent::MatchStarted(s.clone(), id.clone()));
        }
        self.matches_by_item.insert(id.clone(), new_matches);
    }

    fn unfile_item(&mut self, id: &I, labels: &SymLabels) {
        for (k, v) in labels {
            if let Some(postings) = self.items_by_label.get_mut(k) {
                postings.with_key.remove(id);
                if let Some(set) = postings.by_value.get_mut(v) {
                    set.remove(id);
                    if set.is_empty() {
                        postings.by_value.remove(v);
                    }
                }
                if postings.with_key.is_empty() {
                    self.items_by_label.remove(k);
                }
            }
        }
    }

    /// Files the selector under the requirement with the fewest items now
    /// (ties: a value requirement with fewer values, then key order). The
    /// selector must already be compiled, so its symbols exist.
    fn choose_plan(&self, selector: &Selector) -> Plan {
        let Some(reqs) = requirements(selector.expr()) else {
            return Plan::Never;
        };
        let mut best: Option<((usize, usize), Plan)> = None;
        for (key, values) in reqs {
            let Some(key) = self.syms.lookup(&key) else {
                continue;
            };
            let postings = self.items_by_label.get(&key);
            let (cost, plan) = match values {
                Some(values) => {
                    let Some(values) = values
                        .iter()
                        .map(|v| self.syms.lookup(v))
                        .collect::<Option<Vec<Sym>>>()
                    else {
                        continue;
                    };
                    let items = postings.map_or(0, |p| {
                        values
                            .iter()
                            .filter_map(|v| p.by_value.get(v))
                            .map(HashSet::len)
                            .sum()
                    });
                    ((items, values.len()), Plan::Values { key, values })
                }
                None => {
                    let items = postings.map_or(0, |p| p.with_key.len());
                    ((items, usize::MAX), Plan::Key(key))
                }
            };
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, plan));
            }
        }
        best.map_or(Plan::Scan, |(_, plan)| plan)
    }

    fn file_selector(&mut self, id: &S, plan: &Plan) {
        match plan {
            Plan::Never => {}
            Plan::Values { key, values } => {
                let by_value = self.selectors_by_value.entry(*key).or_default();
                for v in values {
                    by_value.entry(*v).or_default().insert(id.clone());
                }
            }
            Plan::Key(key) => {
                self.selectors_by_key
                    .entry(*key)
                    .or_default()
                    .insert(id.clone());
            }
            Plan::Scan => {
                self.scan_selectors.insert(id.clone());
            }
        }
    }

    fn unfile_selector(&mut self, id: &S, plan: &Plan) {
        match plan {
            Plan::Never => {}
            Plan::Values { key, values } => {
                if let Some(by_value) = self.selectors_by_value.get_mut(key) {
                    for v in values {
                        if let Some(set) = by_value.get_mut(v) {
                            set.remove(id);
                            if set.is_empty() {
                                by_value.remove(v);
                            }
                        }
                    }
                    if by_value.is_empty() {
                        self.selectors_by_value.remove(key);
                    }
                }
            }
            Plan::Key(key) => {
                if let Some(set) = self.selectors_by_key.get_mut(key) {
                    set.remove(id);
                    if set.is_empty() {
                        self.selectors_by_key.remove(key);
                    }
                }
            }
            Plan::Scan => {
                self.scan_selectors.remove(id);
            }
        }
    }
}

fn finish<S: Ord, I: Ord>(mut events: Vec<MatchEvent<S, I>>) -> Vec<MatchEvent<S, I>> {
    events.sort_unstable();
    events
}

#[cfg(test)]
mod tests;
