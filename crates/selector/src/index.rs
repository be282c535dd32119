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
//! Memory: items and selectors get dense slot numbers inside the index, so a
//! caller's ID is stored once (in its slot and its lookup table); postings
//! and matches hold slot numbers. An item's own labels are held interned, not
//! as strings. Each match is stored twice (by selector and by item).

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

/// An item's or a selector's place inside the index.
type Slot = u32;

/// Caller IDs mapped to dense slots, each ID stored once per table.
#[derive(Debug)]
struct Slots<K, V> {
    ids: HashMap<K, Slot>,
    entries: Vec<Option<(K, V)>>,
    free: Vec<Slot>,
}

impl<K: IndexId, V> Slots<K, V> {
    fn new() -> Self {
        Self {
            ids: HashMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn slot(&self, key: &K) -> Option<Slot> {
        self.ids.get(key).copied()
    }

    fn entry(&self, slot: Slot) -> Option<&(K, V)> {
        self.entries.get(slot as usize).and_then(Option::as_ref)
    }

    fn key(&self, slot: Slot) -> &K {
        &self.entry(slot).expect("a filed slot is live").0
    }

    fn value(&self, slot: Slot) -> &V {
        &self.entry(slot).expect("a filed slot is live").1
    }

    fn value_mut(&mut self, slot: Slot) -> &mut V {
        &mut self
            .entries
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .expect("a filed slot is live")
            .1
    }

    /// Files a key that is not filed yet.
    fn insert(&mut self, key: K, value: V) -> Slot {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                Slot::try_from(self.entries.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        self.ids.insert(key.clone(), slot);
        self.entries[slot as usize] = Some((key, value));
        slot
    }

    fn remove(&mut self, key: &K) -> Option<(Slot, V)> {
        let slot = self.ids.remove(key)?;
        let (_, value) = self.entries[slot as usize]
            .take()
            .expect("a filed slot is live");
        self.free.push(slot);
        Some((slot, value))
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn iter(&self) -> impl Iterator<Item = (Slot, &V)> {
        self.entries.iter().enumerate().filter_map(|(slot, entry)| {
            entry
                .as_ref()
                .map(|(_, value)| (Slot::try_from(slot).expect("slots fit u32"), value))
        })
    }
}

#[derive(Debug)]
struct Item<P> {
    /// The item's own labels, interned (holding a reference each).
    own: SymLabels,
    parents: Vec<P>,
    effective: SymLabels,
    /// The selectors (slots) matching it.
    matches: HashSet<Slot>,
}

#[derive(Debug)]
struct Parent {
    /// `None` until the parent is defined (items may name it earlier).
    labels: Option<Labels>,
    /// Item slots.
    children: HashSet<Slot>,
}

/// The items (slots) holding one key, and by value.
#[derive(Debug, Default)]
struct KeyPostings {
    with_key: HashSet<Slot>,
    by_value: HashMap<Sym, HashSet<Slot>>,
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
    /// The items (slots) it matches.
    matches: HashSet<Slot>,
}

/// The incremental label index.
///
/// `S` identifies selectors, `I` items and `P` parents. Every mutating method
/// returns the resulting [`MatchEvent`]s, sorted, each (selector, item) pair at
/// most once.
#[derive(Debug)]
pub struct LabelIndex<S, I, P> {
    syms: Interner,
    items: Slots<I, Item<P>>,
    parents: HashMap<P, Parent>,
    selectors: Slots<S, SelectorEntry>,
    items_by_label: HashMap<Sym, KeyPostings>,
    selectors_by_value: HashMap<Sym, HashMap<Sym, HashSet<Slot>>>,
    selectors_by_key: HashMap<Sym, HashSet<Slot>>,
    scan_selectors: HashSet<Slot>,
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
            items: Slots::new(),
            parents: HashMap::default(),
            selectors: Slots::new(),
            items_by_label: HashMap::default(),
            selectors_by_value: HashMap::default(),
            selectors_by_key: HashMap::default(),
            scan_selectors: HashSet::default(),
        }
    }

    /// Adds or replaces an item with its own labels and its parents (earlier
    /// parents win label conflicts; the item's own labels win over all).
    pub fn update_item(&mut self, id: I, labels: Labels, parents: Vec<P>) -> Vec<MatchEvent<S, I>> {
        let mut events = Vec::new();
        let mut own: SymLabels = labels
            .iter()
            .map(|(k, v)| (self.syms.intern(k), self.syms.intern(v)))
            .collect();
        own.sort_unstable();
        let (slot, is_new) = match self.items.slot(&id) {
            Some(slot) => (slot, false),
            None => {
                let item = Item {
                    own: Vec::new(),
                    parents: Vec::new(),
                    effective: Vec::new(),
                    matches: HashSet::default(),
                };
                (self.items.insert(id, item), true)
            }
        };
        let item = self.items.value_mut(slot);
        let old_own = std::mem::replace(&mut item.own, own);
        let old_parents =
            (item.parents != parents).then(|| std::mem::replace(&mut item.parents, parents));
        self.release_labels(&old_own);
        if let Some(old_parents) = old_parents {
            for p in &old_parents {
                self.detach_child(p, slot);
            }
            for p in &self.items.value(slot).parents {
                self.parents
                    .entry(p.clone())
                    .or_insert_with(|| Parent {
                        labels: None,
                        children: HashSet::default(),
                    })
                    .children
                    .insert(slot);
            }
        }
        let effective = self.intern_effective(slot);
        self.set_effective(slot, effective, is_new, &mut events);
        finish(events)
    }

    /// Removes an item; every selector that matched it stops matching.
    pub fn remove_item(&mut self, id: &I) -> Vec<MatchEvent<S, I>> {
        let mut events = Vec::new();
        let Some((slot, item)) = self.items.remove(id) else {
            return events;
        };
        for p in &item.parents {
            self.detach_child(p, slot);
        }
        self.unfile_item(slot, &item.effective);
        self.release_labels(&item.effective);
        self.release_labels(&item.own);
        for s in item.matches {
            self.selectors.value_mut(s).matches.remove(&slot);
            events.push(MatchEvent::MatchStopped(
                self.selectors.key(s).clone(),
                id.clone(),
            ));
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
        let existing = self.selectors.slot(&id);
        if existing.is_some_and(|slot| self.selectors.value(slot).selector == selector) {
            return Vec::new();
        }
        // Compile before releasing the old version, so shared symbols stay.
        let compiled = Compiled::new(selector.expr(), &mut self.syms);
        let (slot, old_matches) = match existing {
            Some(slot) => {
                let entry = self.selectors.value_mut(slot);
                entry.selector = selector;
                let old_compiled = std::mem::replace(&mut entry.compiled, compiled);
                let old_plan = std::mem::replace(&mut entry.plan, Plan::Never);
                let old_matches = std::mem::take(&mut entry.matches);
                self.unfile_selector(slot, &old_plan);
                old_compiled.release(&mut self.syms);
                (slot, old_matches)
            }
            None => {
                let entry = SelectorEntry {
                    selector,
                    compiled,
                    plan: Plan::Never,
                    matches: HashSet::default(),
                };
                (self.selectors.insert(id, entry), HashSet::default())
            }
        };
        let plan = self.choose_plan(&self.selectors.value(slot).selector);
        self.file_selector(slot, &plan);

        let mut new_matches = HashSet::default();
        {
            let syms = &self.syms;
            let items = &self.items;
            let compiled = &self.selectors.value(slot).compiled;
            let mut consider = |item: &Slot| {
                if compiled.matches(&items.value(*item).effective, syms) {
                    new_matches.insert(*item);
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
                    for (item, entry) in items.iter() {
                        if compiled.matches(&entry.effective, syms) {
                            new_matches.insert(item);
                        }
                    }
                }
            }
        }

        let id = self.selectors.key(slot).clone();
        let mut events = Vec::with_capacity(new_matches.len());
        for &item in old_matches.difference(&new_matches) {
            self.items.value_mut(item).matches.remove(&slot);
            events.push(MatchEvent::MatchStopped(
                id.clone(),
                self.items.key(item).clone(),
            ));
        }
        for &item in new_matches.difference(&old_matches) {
            self.items.value_mut(item).matches.insert(slot);
            events.push(MatchEvent::MatchStarted(
                id.clone(),
                self.items.key(item).clone(),
            ));
        }
        let entry = self.selectors.value_mut(slot);
        entry.plan = plan;
        entry.matches = new_matches;
        finish(events)
    }

    /// Removes a selector; it stops matching everything it matched.
    pub fn remove_selector(&mut self, id: &S) -> Vec<MatchEvent<S, I>> {
        let Some((slot, entry)) = self.selectors.remove(id) else {
            return Vec::new();
        };
        self.unfile_selector(slot, &entry.plan);
        entry.compiled.release(&mut self.syms);
        let mut events = Vec::with_capacity(entry.matches.len());
        for item in entry.matches {
            self.items.value_mut(item).matches.remove(&slot);
            events.push(MatchEvent::MatchStopped(
                id.clone(),
                self.items.key(item).clone(),
            ));
        }
        finish(events)
    }

    /// The items selector `id` matches, in no particular order.
    pub fn items_matching(&self, id: &S) -> impl Iterator<Item = &I> {
        let items = &self.items;
        self.selectors
            .slot(id)
            .into_iter()
            .flat_map(move |slot| self.selectors.value(slot).matches.iter())
            .map(move |&item| items.key(item))
    }

    /// The selectors matching item `id`, in no particular order.
    pub fn selectors_matching(&self, id: &I) -> impl Iterator<Item = &S> {
        let selectors = &self.selectors;
        self.items
            .slot(id)
            .into_iter()
            .flat_map(move |slot| self.items.value(slot).matches.iter())
            .map(move |&s| selectors.key(s))
    }

    /// Whether selector `selector` matches item `item`.
    pub fn is_match(&self, selector: &S, item: &I) -> bool {
        match (self.selectors.slot(selector), self.items.slot(item)) {
            (Some(s), Some(i)) => self.selectors.value(s).matches.contains(&i),
            _ => false,
        }
    }

    /// An item's effective labels (own labels plus inherited ones).
    pub fn effective_labels(&self, id: &I) -> Option<BTreeMap<String, String>> {
        let slot = self.items.slot(id)?;
        Some(self.resolve_labels(&self.items.value(slot).effective))
    }

    /// An item's own labels, as last given to [`LabelIndex::update_item`].
    pub fn own_labels(&self, id: &I) -> Option<BTreeMap<String, String>> {
        let slot = self.items.slot(id)?;
        Some(self.resolve_labels(&self.items.value(slot).own))
    }

    /// Interned labels as strings.
    fn resolve_labels(&self, labels: &SymLabels) -> BTreeMap<String, String> {
        labels
            .iter()
            .map(|&(k, v)| {
                (
                    self.syms.resolve(k).to_string(),
                    self.syms.resolve(v).to_string(),
                )
            })
            .collect()
    }

    /// The selector stored under `id`.
    pub fn selector(&self, id: &S) -> Option<&Selector> {
        self.selectors
            .slot(id)
            .map(|slot| &self.selectors.value(slot).selector)
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
        self.selectors.iter().map(|(_, e)| e.matches.len()).sum()
    }

    fn detach_child(&mut self, parent: &P, child: Slot) {
        if let Some(p) = self.parents.get_mut(parent) {
            p.children.remove(&child);
            if p.children.is_empty() && p.labels.is_none() {
                self.parents.remove(parent);
            }
        }
    }

    /// The effective labels of item `slot` (its own, then each parent's
    /// labels it lacks), interned (taking a reference on each symbol) and
    /// sorted by key.
    fn intern_effective(&mut self, slot: Slot) -> SymLabels {
        let item = self.items.value(slot);
        let syms = &mut self.syms;
        let mut effective = item.own.clone();
        for &(k, v) in &effective {
            syms.retain(k);
            syms.retain(v);
        }
        for p in &item.parents {
            let Some(labels) = self.parents.get(p).and_then(|p| p.labels.as_ref()) else {
                continue;
            };
            for (k, v) in labels {
                let present = syms
                    .lookup(k)
                    .is_some_and(|k| effective.iter().any(|&(have, _)| have == k));
                if !present {
                    effective.push((syms.intern(k), syms.intern(v)));
                }
            }
        }
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
        let children: Vec<Slot> = self
            .parents
            .get(parent)
            .map(|p| p.children.iter().copied().collect())
            .unwrap_or_default();
        for child in children {
            let effective = self.intern_effective(child);
            self.set_effective(child, effective, false, &mut events);
        }
        finish(events)
    }

    /// Installs an item's new (interned) effective labels and, if they
    /// changed (or `force`), re-evaluates the selectors that could be
    /// affected. Consumes the references `effective` holds.
    fn set_effective(
        &mut self,
        slot: Slot,
        effective: SymLabels,
        force: bool,
        events: &mut Vec<MatchEvent<S, I>>,
    ) {
        let item = self.items.value_mut(slot);
        if item.effective == effective && !force {
            self.release_labels(&effective);
            return;
        }
        let old = std::mem::replace(&mut item.effective, effective);
        self.unfile_item(slot, &old);
        self.release_labels(&old);
        let item = self.items.value(slot);
        for &(k, v) in &item.effective {
            let postings = self.items_by_label.entry(k).or_default();
            postings.with_key.insert(slot);
            postings.by_value.entry(v).or_default().insert(slot);
        }

        let mut new_matches = HashSet::default();
        let syms = &self.syms;
        let selectors = &self.selectors;
        let mut consider = |s: &Slot| {
            if selectors.value(*s).compiled.matches(&item.effective, syms) {
                new_matches.insert(*s);
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

        let old_matches = std::mem::take(&mut self.items.value_mut(slot).matches);
        let id = self.items.key(slot).clone();
        for &s in old_matches.difference(&new_matches) {
            self.selectors.value_mut(s).matches.remove(&slot);
            events.push(MatchEvent::MatchStopped(
                self.selectors.key(s).clone(),
                id.clone(),
            ));
        }
        for &s in new_matches.difference(&old_matches) {
            self.selectors.value_mut(s).matches.insert(slot);
            events.push(MatchEvent::MatchStarted(
                self.selectors.key(s).clone(),
                id.clone(),
            ));
        }
        self.items.value_mut(slot).matches = new_matches;
    }

    fn unfile_item(&mut self, slot: Slot, labels: &SymLabels) {
        for (k, v) in labels {
            if let Some(postings) = self.items_by_label.get_mut(k) {
                postings.with_key.remove(&slot);
                if let Some(set) = postings.by_value.get_mut(v) {
                    set.remove(&slot);
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

    fn file_selector(&mut self, id: Slot, plan: &Plan) {
        match plan {
            Plan::Never => {}
            Plan::Values { key, values } => {
                let by_value = self.selectors_by_value.entry(*key).or_default();
                for v in values {
                    by_value.entry(*v).or_default().insert(id);
                }
            }
            Plan::Key(key) => {
                self.selectors_by_key.entry(*key).or_default().insert(id);
            }
            Plan::Scan => {
                self.scan_selectors.insert(id);
            }
        }
    }

    fn unfile_selector(&mut self, id: Slot, plan: &Plan) {
        match plan {
            Plan::Never => {}
            Plan::Values { key, values } => {
                if let Some(by_value) = self.selectors_by_value.get_mut(key) {
                    for v in values {
                        if let Some(set) = by_value.get_mut(v) {
                            set.remove(&id);
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
                    set.remove(&id);
                    if set.is_empty() {
                        self.selectors_by_key.remove(key);
                    }
                }
            }
            Plan::Scan => {
                self.scan_selectors.remove(&id);
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
