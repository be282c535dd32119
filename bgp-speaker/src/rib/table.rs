//! The prefix table: one [`Dest`] per prefix, per family a dense vector of
//! entries with a hash index over it.
//!
//! A hash map of `(prefix, Dest)` pairs stores every entry in its bucket
//! array, which is between 1.14× and 2.3× the entries (the load factor is
//! at most 7/8 and the array doubles), so a full table pays for about one
//! empty 70-byte slot per route. Here the buckets hold only a `u32` index
//! into the vector of entries (5 bytes a bucket with its control byte). The
//! vector doubles too, but its unused tail is never written, so it takes
//! no memory until used (and glibc's `realloc` moves a large block by
//! remapping it, not copying).
//! Removal swaps the last entry into the hole and re-points its bucket, so
//! the vector stays dense.
//!
//! A [`Slot`] names an entry by position, so the decision run finds the
//! prefixes queued for it without hashing them again; positions change
//! only when an entry is removed, which only [`Table::remove`] does.
//!
//! Split by family so that a key is an `Ipv4Net` (5 bytes) or an `Ipv6Net`
//! (17 bytes) rather than an `IpNet` (18): a full table is mostly IPv4.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Dest, Path, Source, fib_next_hops, usable_next_hop};

/// The position of an entry: the family in the top bit, the index in the
/// family's entries below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot(u32);

const V6: u32 = 1 << 31;

impl Slot {
    fn v4(at: usize) -> Self {
        Self::at(at, 0)
    }

    fn v6(at: usize) -> Self {
        Self::at(at, V6)
    }

    fn at(at: usize, family: u32) -> Self {
        let at = u32::try_from(at)
            .ok()
            .filter(|at| at & V6 == 0)
            .expect("fewer than 2^31 prefixes of one family fit in memory (70 B each)");
        Slot(at | family)
    }

    fn index(self) -> usize {
        slot(self.0 & !V6)
    }
}

/// Prefix → destination, both families.
#[derive(Debug, Default)]
pub(super) struct Table {
    v4: Indexed<Ipv4Net>,
    v6: Indexed<Ipv6Net>,
}

impl Table {
    pub(super) fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p),
        }
    }

    pub(super) fn get_mut(&mut self, prefix: &IpNet) -> Option<(Slot, &mut Dest)> {
        match prefix {
            IpNet::V4(p) => {
                let at = self.v4.position(p)?;
                Some((Slot::v4(at), &mut self.v4.entries[at].1))
            }
            IpNet::V6(p) => {
                let at = self.v6.position(p)?;
                Some((Slot::v6(at), &mut self.v6.entries[at].1))
            }
        }
    }

    /// The destination of `prefix`, created empty when absent.
    pub(super) fn get_or_default(&mut self, prefix: IpNet) -> (Slot, &mut Dest) {
        match prefix {
            IpNet::V4(p) => {
                let at = self.v4.position_or_default(p);
                (Slot::v4(at), &mut self.v4.entries[at].1)
            }
            IpNet::V6(p) => {
                let at = self.v6.position_or_default(p);
                (Slot::v6(at), &mut self.v6.entries[at].1)
            }
        }
    }

    /// The destination at `slot`, which no removal has moved since it was taken.
    pub(super) fn at(&self, slot: Slot) -> Option<&Dest> {
        if slot.0 & V6 == 0 {
            self.v4.entries.get(slot.index()).map(|(_, d)| d)
        } else {
            self.v6.entries.get(slot.index()).map(|(_, d)| d)
        }
    }

    /// The entry at `slot`, which no removal has moved since it was taken.
    pub(super) fn at_mut(&mut self, slot: Slot) -> Option<(IpNet, &mut Dest)> {
        if slot.0 & V6 == 0 {
            let (p, d) = self.v4.entries.get_mut(slot.index())?;
            Some((IpNet::V4(*p), d))
        } else {
            let (p, d) = self.v6.entries.get_mut(slot.index())?;
            Some((IpNet::V6(*p), d))
        }
    }

    pub(super) fn remove(&mut self, prefix: &IpNet) {
        match prefix {
            IpNet::V4(p) => self.v4.remove(p),
            IpNet::V6(p) => self.v6.remove(p),
        }
    }

    /// Number of prefixes.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.v4.entries.len() + self.v6.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        let v4 = self.v4.entries.iter().map(|(p, d)| (IpNet::V4(*p), d));
        let v6 = self.v6.entries.iter().map(|(p, d)| (IpNet::V6(*p), d));
        v4.chain(v6)
    }

    /// Every entry's position and prefix.
    pub(super) fn slots(&self) -> impl Iterator<Item = (Slot, IpNet)> {
        let v4 =
            (self.v4.entries.iter().enumerate()).map(|(at, (p, _))| (Slot::v4(at), IpNet::V4(*p)));
        let v6 =
            (self.v6.entries.iter().enumerate()).map(|(at, (p, _))| (Slot::v6(at), IpNet::V6(*p)));
        v4.chain(v6)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (Slot, IpNet, &mut Dest)> {
        let v4 = (self.v4.entries.iter_mut().enumerate())
            .map(|(at, (p, d))| (Slot::v4(at), IpNet::V4(*p), d));
        let v6 = (self.v6.entries.iter_mut().enumerate())
            .map(|(at, (p, d))| (Slot::v6(at), IpNet::V6(*p), d));
        v4.chain(v6)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Dest> {
        let v4 = self.v4.entries.iter().map(|(_, d)| d);
        v4.chain(self.v6.entries.iter().map(|(_, d)| d))
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Dest> {
        let v4 = self.v4.entries.iter_mut().map(|(_, d)| d);
        v4.chain(self.v6.entries.iter_mut().map(|(_, d)| d))
    }
}

/// One family's entries, dense, and the index from key to position.
#[derive(Debug)]
struct Indexed<K> {
    entries: Vec<(K, Dest)>,
    /// Positions in `entries`, hashed by their entry's key.
    index: HashTable<u32>,
    // foldhash: the table is hashed once or twice per received prefix, and
    // SipHash on a prefix costs more than the rest of the lookup.
    hasher: RandomState,
}

impl<K> Default for Indexed<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::default(),
        }
    }
}

/// A position in the entries as the index stores it (with the same
/// bound as a [`Slot`]).
fn stored(at: usize) -> u32 {
    Slot::v4(at).0
}

/// A position in the entries from the index.
fn slot(at: u32) -> usize {
    usize::try_from(at).expect("a u32 fits in usize on the targets Twill builds for")
}

impl<K: Copy + Eq + Hash> Indexed<K> {
    fn position(&self, key: &K) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&at| self.entries[slot(at)].0 == *key)
            .map(|&at| slot(at))
    }

    fn get(&self, key: &K) -> Option<&Dest> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// The position of `key`, its entry created empty when absent.
    fn position_or_default(&mut self, key: K) -> usize {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        if let Some(&at) = self.index.find(hash, |&at| entries[slot(at)].0 == key) {
            return slot(at);
        }
        let at = self.entries.len();
        let index = stored(at);
        if self.index.len() == self.index.capacity() {
            self.grow_index();
        }
        self.entries.push((key, Dest::default()));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, index, |&at| hasher.hash_one(entries[slot(at)].0));
        at
    }

    /// Rebuilds the index with twice the room. The index's own rehash would
    /// visit its buckets in hash order and read each entry's key at random
    /// (a cache miss per route in a full table); this reads them in order.
    fn grow_index(&mut self) {
        let mut index = HashTable::with_capacity((self.index.capacity() * 2).max(16));
        let (entries, hasher) = (&self.entries, &self.hasher);
        for (at, (key, _)) in entries.iter().enumerate() {
            // Sized for every entry: the re-hash closure is never called.
            let rehash = |&i: &u32| hasher.hash_one(entries[slot(i)].0);
            index.insert_unique(hasher.hash_one(key), stored(at), rehash);
        }
        self.index = index;
    }

    fn remove(&mut self, key: &K) {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        let Ok(found) = self
            .index
            .find_entry(hash, |&at| entries[slot(at)].0 == *key)
        else {
            return;
        };
        let (at, _) = found.remove();
        let at = slot(at);
        let last = self.entries.len() - 1;
        self.entries.swap_remove(at);
        if at != last {
            // The last entry moved into the hole: re-point its bucket.
            let moved = self.hasher.hash_one(self.entries[at].0);
            let bucket = self
                .index
                .find_mut(moved, |&i| slot(i) == last)
                .expect("every entry has a bucket");
            *bucket = u32::try_from(at).expect("below the last position, itself a u32");
        }
    }
}

/// The next hops a prefix has in the kernel. One IPv4 next hop (the usual
/// case) is kept inline in the [`Dest`]; anything else behind one thin
/// pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Fib {
    #[default]
    None,
    V4(Ipv4Addr),
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer, as the Dest keeps it"
    )]
    Other(Box<Vec<IpAddr>>),
}

impl Fib {
    /// The kernel next hops of a multipath set (see [`super::fib_next_hops`]).
    pub(super) fn of(selected: &[Path]) -> Self {
        // One selected path, the usual case, needs no vector.
        if let [only] = selected {
            if only.source == Source::Local {
                return Fib::None;
            }
            return match only.attrs.as_ref().and_then(|a| a.next_hop) {
                Some(hop) if !usable_next_hop(&hop) => Fib::None,
                Some(IpAddr::V4(hop)) => Fib::V4(hop),
                Some(hop) => Fib::Other(Box::new(vec![hop])),
                None => Fib::None,
            };
        }
        Fib::from_hops(&fib_next_hops(selected))
    }

    pub(super) fn to_vec(&self) -> Vec<IpAddr> {
        match self {
            Fib::None => Vec::new(),
            Fib::V4(hop) => vec![IpAddr::V4(*hop)],
            Fib::Other(hops) => hops.to_vec(),
        }
    }

    fn from_hops(hops: &[IpAddr]) -> Self {
        match hops {
            [] => Fib::None,
            [IpAddr::V4(hop)] if !hop.is_unspecified() => Fib::V4(*hop),
            other => Fib::Other(Box::new(other.to_vec())),
        }
    }
}

/// A prefix's paths: one kept inline (the usual case: a prefix learned from
/// one peer), more in a vector. Empty is an empty vector, which allocates
/// nothing.
#[derive(Debug, Clone)]
pub(super) enum Paths {
    One(Path),
    Many(Vec<Path>),
}

impl Default for Paths {
    fn default() -> Self {
        Paths::Many(Vec::new())
    }
}

impl Paths {
    /// `paths` in the inline form when there is one.
    fn from_vec(mut paths: Vec<Path>) -> Self {
        match paths.len() {
            0 => Paths::default(),
            1 => Paths::One(paths.pop().expect("one path, checked above")),
            _ => Paths::Many(paths),
        }
    }

    pub(super) fn as_slice(&self) -> &[Path] {
        match self {
            Paths::One(path) => std::slice::from_ref(path),
            Paths::Many(paths) => paths,
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [Path] {
        match self {
            Paths::One(path) => std::slice::from_mut(path),
            Paths::Many(paths) => paths,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub(super) fn push(&mut self, path: Path) {
        *self = match std::mem::take(self) {
            Paths::Many(paths) if paths.is_empty() => Paths::One(path),
            Paths::Many(mut paths) => {
                // Most prefixes have few paths: do not let Vec round up to four.
                paths.reserve_exact(1);
                paths.push(path);
                Paths::Many(paths)
            }
            Paths::One(first) => Paths::Many(vec![first, path]),
        };
    }

    /// Removes and returns the path at `at` (a position in [`Paths::as_slice`]).
    pub(super) fn remove(&mut self, at: usize) -> Path {
        let (removed, rest) = match std::mem::take(self) {
            Paths::One(only) => (only, Paths::default()),
            Paths::Many(mut paths) => {
                let removed = paths.remove(at);
                (removed, Paths::from_vec(paths))
            }
        };
        *self = rest;
        removed
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        *self = match std::mem::take(self) {
            Paths::One(only) if keep(&only) => Paths::One(only),
            Paths::One(_) => Paths::default(),
            Paths::Many(mut paths) => {
                paths.retain(keep);
                Paths::from_vec(paths)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    use super::*;
    use crate::rib::{Attrs, Source};

    fn v4(i: u32) -> IpNet {
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x6440_0000 + (i << 8)), 24).unwrap())
    }

    fn v6(i: u32) -> IpNet {
        let addr = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i) << 64);
        IpNet::V6(Ipv6Net::new(addr, 64).unwrap())
    }

    fn path(peer: u8) -> Path {
        let attrs = Arc::new(Attrs::local(Vec::new(), Vec::new()));
        Path {
            source: Source::Peer(IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer))),
            received: Arc::clone(&attrs),
            attrs: Some(attrs),
            stale: false,
        }
    }

    fn peers(paths: &Paths) -> Vec<Source> {
        paths.as_slice().iter().map(|p| p.source).collect()
    }

    /// Fills a table with `n` prefixes of each family, each destination
    /// tagged with its number (in a field the table does not read).
    fn filled(n: u32) -> Table {
        let mut table = Table::default();
        for i in 0..n {
            for prefix in [v4(i), v6(i)] {
                let (_, dest) = table.get_or_default(prefix);
                assert_eq!(dest.state, 0, "{prefix} is new");
                dest.state = i + 1;
            }
        }
        table
    }

    #[test]
    fn every_prefix_is_found_across_index_growth() {
        let table = filled(5_000);
        assert_eq!(table.len(), 10_000);
        for i in 0..5_000 {
            for prefix in [v4(i), v6(i)] {
                assert_eq!(table.get(&prefix).unwrap().state, i + 1, "{prefix}");
            }
        }
        assert!(table.get(&v4(5_000)).is_none());
        assert!(table.get(&v6(5_000)).is_none());
    }

    #[test]
    fn a_prefix_seen_again_gets_its_own_destination_back() {
        let mut table = filled(100);
        let (first, _) = table.get_or_default(v4(7));
        let (again, dest) = table.get_or_default(v4(7));
        assert_eq!(first, again);
        assert_eq!(dest.state, 8);
        assert_eq!(table.len(), 200);
    }

    #[test]
    fn removal_moves_the_last_entry_and_keeps_every_other_prefix_reachable() {
        let mut table = filled(3_000);
        // Every third prefix goes, among them the last ones of each family.
        let gone: Vec<u32> = (0..3_000).filter(|i| i % 3 == 2).collect();
        for &i in &gone {
            table.remove(&v4(i));
            table.remove(&v6(i));
        }
        table.remove(&v4(9_999));
        assert_eq!(table.len(), 4_000);
        for i in 0..3_000 {
            for prefix in [v4(i), v6(i)] {
                match table.get_mut(&prefix) {
                    Some((slot, dest)) => {
                        assert_ne!(i % 3, 2, "{prefix} was removed");
                        assert_eq!(dest.state, i + 1, "{prefix}");
                        // Its position leads back to it.
                        assert_eq!(table.at_mut(slot).unwrap().0, prefix);
                        assert_eq!(table.at(slot).unwrap().state, i + 1);
                    }
                    None => assert_eq!(i % 3, 2, "{prefix} was kept"),
                }
            }
        }
        // Positions are dense: one per entry, all distinct.
        let slots: Vec<Slot> = table.slots().map(|(slot, _)| slot).collect();
        assert_eq!(slots.len(), 4_000);
        for (slot, prefix, _) in table.iter_mut().take(5) {
            assert!(slots.contains(&slot), "{prefix}");
        }
    }

    #[test]
    fn churn_keeps_the_index_sized_to_the_live_prefixes() {
        let mut table = Table::default();
        for round in 0..20 {
            let first = round * 1_000;
            for i in first..first + 1_000 {
                table.get_or_default(v4(i));
            }
            if round > 0 {
                for i in first - 1_000..first {
                    table.remove(&v4(i));
                }
            }
            assert_eq!(table.len(), 1_000, "round {round}");
        }
        for i in 19_000..20_000 {
            assert!(table.get(&v4(i)).is_some(), "{}", v4(i));
        }
        assert!(table.get(&v4(18_999)).is_none());
        assert!(
            table.v4.index.capacity() <= 4_096,
            "{}",
            table.v4.index.capacity()
        );
    }

    #[test]
    fn paths_stay_inline_for_one_and_keep_their_order_for_more() {
        let (a, b, c) = (path(1), path(2), path(3));
        let sources = |ps: &[&Path]| ps.iter().map(|p| p.source).collect::<Vec<_>>();
        let mut paths = Paths::default();
        assert!(paths.is_empty());
        paths.push(a.clone());
        assert!(matches!(paths, Paths::One(_)));
        paths.push(b.clone());
        paths.push(c.clone());
        assert_eq!(peers(&paths), sources(&[&a, &b, &c]));
        assert_eq!(paths.remove(1).source, b.source);
        assert_eq!(peers(&paths), sources(&[&a, &c]));
        paths.retain(|p| p.source != a.source);
        assert!(matches!(paths, Paths::One(_)), "back inline with one left");
        assert_eq!(peers(&paths), sources(&[&c]));
        assert_eq!(paths.remove(0).source, c.source);
        assert!(paths.is_empty());
        paths.push(a.clone());
        paths.retain(|_| false);
        assert_eq!(paths.len(), 0);
    }
}
