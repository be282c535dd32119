//! Twill's own typed nftables ruleset: one `inet` table of chains, named
//! sets and verdict maps, BTreeMap-ordered so that rendering is
//! deterministic; the operations that change it ([`Op`]); and their nft
//! script text, one command per line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use twill_kernel::NFT_TABLE;

use crate::Error;

/// Family of Twill's table.
pub const TABLE_FAMILY: &str = "inet";

/// Most elements written on one `add element` / `delete element` line.
pub const ELEMENTS_PER_LINE: usize = 512;

/// The netfilter hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Forwarded packets.
    Forward,
    /// Packets to the host.
    Input,
    /// Packets from the host.
    Output,
    /// Packets arriving, before routing.
    Prerouting,
    /// Packets leaving, after routing.
    Postrouting,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Forward => "forward",
            Hook::Input => "input",
            Hook::Output => "output",
            Hook::Prerouting => "prerouting",
            Hook::Postrouting => "postrouting",
        }
    }

    /// The chain type Twill gives a base chain on this hook: `nat` on
    /// postrouting (NAT outgoing, see `render::nat`), `filter` elsewhere.
    pub fn chain_type(self) -> &'static str {
        match self {
            Hook::Postrouting => "nat",
            _ => "filter",
        }
    }

    /// The hook named `name` in nft's notation.
    pub fn parse(name: &str) -> Option<Hook> {
        Some(match name {
            "forward" => Hook::Forward,
            "input" => Hook::Input,
            "output" => Hook::Output,
            "prerouting" => Hook::Prerouting,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// What makes a chain a base chain: a filter chain on a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Priority (0 = `filter`).
    pub priority: i32,
}

/// One rule: nft statement text and the content hash its comment carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// The rule's expressions and verdict, without the comment.
    pub body: String,
    /// The content hash (also depends on the rules before it in the chain).
    pub hash: String,
}

/// A chain: a base chain (policy accept) or a regular one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// Hook and priority for a base chain.
    pub base: Option<BaseChain>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// Whether two chains hold the same rules, compared by hash (the only
    /// thing the kernel's read-back can be trusted to keep).
    pub fn same_rules(&self, other: &Chain) -> bool {
        self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.hash == b.hash)
    }
}

/// Key type of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// IPv4 addresses and prefixes (interval set).
    Ipv4,
    /// IPv6 addresses and prefixes (interval set).
    Ipv6,
    /// Ports and port ranges (interval set).
    Ports,
    /// `ipv4_addr . inet_proto . inet_service` (named ports).
    Ipv4NamedPort,
    /// `ipv6_addr . inet_proto . inet_service` (named ports).
    Ipv6NamedPort,
    /// `ifname . ipv4_addr` with intervals (anti-spoofing).
    IfaceIpv4,
    /// `ifname . ipv6_addr` with intervals (anti-spoofing).
    IfaceIpv6,
    /// A set read back from the kernel whose type Twill never creates;
    /// the planner replaces the table when it meets one it wants to reuse.
    Foreign,
}

impl SetKind {
    fn declaration(self) -> &'static str {
        match self {
            SetKind::Ipv4 => "type ipv4_addr ; flags interval ;",
            SetKind::Ipv6 => "type ipv6_addr ; flags interval ;",
            SetKind::Ports => "type inet_service ; flags interval ;",
            SetKind::Ipv4NamedPort => "type ipv4_addr . inet_proto . inet_service ;",
            SetKind::Ipv6NamedPort => "type ipv6_addr . inet_proto . inet_service ;",
            SetKind::IfaceIpv4 => "type ifname . ipv4_addr ; flags interval ;",
            SetKind::IfaceIpv6 => "type ifname . ipv6_addr ; flags interval ;",
            // Never rendered: the planner only creates the kinds above.
            SetKind::Foreign => "type ipv4_addr ;",
        }
    }

    /// The kind of a set with this key type and flags, as nft lists them.
    pub fn from_listing(key_type: &str, flags: &[String]) -> SetKind {
        let interval = flags.iter().any(|f| f == "interval");
        match (key_type, interval) {
            ("ipv4_addr", true) => SetKind::Ipv4,
            ("ipv6_addr", true) => SetKind::Ipv6,
            ("inet_service", true) => SetKind::Ports,
            ("ipv4_addr . inet_proto . inet_service", false) => SetKind::Ipv4NamedPort,
            ("ipv6_addr . inet_proto . inet_service", false) => SetKind::Ipv6NamedPort,
            ("ifname . ipv4_addr", true) => SetKind::IfaceIpv4,
            ("ifname . ipv6_addr", true) => SetKind::IfaceIpv6,
            _ => SetKind::Foreign,
        }
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its key type.
    pub kind: SetKind,
    /// Its elements, as nft writes them.
    pub elements: BTreeSet<String>,
}

/// A verdict map keyed by interface name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerdictMap {
    /// Interface name → verdict (`goto <chain>`).
    pub elements: BTreeMap<String, String>,
}

/// The whole of Twill's table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Named sets by name.
    pub sets: BTreeMap<String, Set>,
    /// Verdict maps by name.
    pub maps: BTreeMap<String, VerdictMap>,
}

/// One change to the table; a plan is a list of them, applied in order as
/// one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates the table if it is missing.
    AddTable,
    /// Deletes the table and everything in it.
    DeleteTable,
    /// Creates a chain.
    AddChain {
        /// Its name.
        name: String,
        /// Base chain settings.
        base: Option<BaseChain>,
    },
    /// Removes every rule of a chain.
    FlushChain(String),
    /// Deletes an empty, unreferenced chain.
    DeleteChain(String),
    /// Appends a rule.
    AddRule {
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// Creates a set.
    AddSet {
        /// Its name.
        name: String,
        /// Its key type.
        kind: SetKind,
    },
    /// Deletes a set.
    DeleteSet(String),
    /// Adds elements to a set.
    AddElements {
        /// The set.
        set: String,
        /// The elements.
        elements: Vec<String>,
    },
    /// Removes elements from a set.
    DeleteElements {
        /// The set.
        set: String,
        /// The elements.
        elements: Vec<String>,
    },
    /// Creates a verdict map.
    AddMap(String),
    /// Deletes a verdict map.
    DeleteMap(String),
    /// Adds map elements (key, verdict).
    AddMapElements {
        /// The map.
        map: String,
        /// Key and verdict pairs.
        elements: Vec<(String, String)>,
    },
    /// Removes map elements by key.
    DeleteMapElements {
        /// The map.
        map: String,
        /// The keys.
        keys: Vec<String>,
    },
}

fn quote(text: &str) -> String {
    format!("\"{text}\"")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = format!("{TABLE_FAMILY} {NFT_TABLE}");
        match self {
            Op::AddTable => writeln!(f, "add table {t}"),
            Op::DeleteTable => writeln!(f, "delete table {t}"),
            Op::AddChain { name, base: None } => writeln!(f, "add chain {t} {name}"),
            Op::AddChain {
                name,
                base: Some(b),
            } => writeln!(
                f,
                "add chain {t} {name} {{ type {} hook {} priority {} ; policy accept ; }}",
                b.hook.chain_type(),
                b.hook.name(),
                b.priority
            ),
            Op::FlushChain(name) => writeln!(f, "flush chain {t} {name}"),
            Op::DeleteChain(name) => writeln!(f, "delete chain {t} {name}"),
            Op::AddRule { chain, rule } => writeln!(
                f,
                "add rule {t} {chain} {} comment {}",
                rule.body,
                quote(&format!("tw:{}", rule.hash))
            ),
            Op::AddSet { name, kind } => {
                writeln!(f, "add set {t} {name} {{ {} }}", kind.declaration())
            }
            Op::DeleteSet(name) => writeln!(f, "delete set {t} {name}"),
            Op::AddElements { set, elements } | Op::DeleteElements { set, elements } => {
                let verb = if matches!(self, Op::AddElements { .. }) {
                    "add"
                } else {
                    "delete"
                };
                for chunk in elements.chunks(ELEMENTS_PER_LINE) {
                    writeln!(f, "{verb} element {t} {set} {{ {} }}", chunk.join(", "))?;
                }
                Ok(())
            }
            Op::AddMap(name) => writeln!(f, "add map {t} {name} {{ type ifname : verdict ; }}"),
            Op::DeleteMap(name) => writeln!(f, "delete map {t} {name}"),
            Op::AddMapElements { map, elements } => {
                for chunk in elements.chunks(ELEMENTS_PER_LINE) {
                    let items: Vec<String> = chunk
                        .iter()
                        .map(|(k, v)| format!("{} : {v}", quote(k)))
                        .collect();
                    writeln!(f, "add element {t} {map} {{ {} }}", items.join(", "))?;
                }
                Ok(())
            }
            Op::DeleteMapElements { map, keys } => {
                for chunk in keys.chunks(ELEMENTS_PER_LINE) {
                    let items: Vec<String> = chunk.iter().map(|k| quote(k)).collect();
                    writeln!(f, "delete element {t} {map} {{ {} }}", items.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// The nft script (one command per line) for a list of operations.
pub fn script(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        write!(out, "{op}").expect("writing to a String cannot fail");
    }
    out
}

fn missing(what: &str, name: &str) -> Error {
    Error::Apply(format!("{what} {name} does not exist"))
}

impl Ruleset {
    /// Applies operations in order, with nft's checks on existence; on error
    /// `self` is left unchanged.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut next = self.clone();
        for op in ops {
            next.apply_one(op)?;
        }
        *self = next;
        Ok(())
    }

    fn apply_one(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::AddTable => {}
            Op::DeleteTable => *self = Ruleset::default(),
            Op::AddChain { name, base } => {
                self.chains.entry(name.clone()).or_insert_with(|| Chain {
                    base: *base,
                    rules: Vec::new(),
                });
            }
            Op::FlushChain(name) => {
                self.chains
                    .get_mut(name)
                    .ok_or_else(|| missing("chain", name))?
                    .rules
                    .clear();
            }
            Op::DeleteChain(name) => {
                let chain = self
                    .chains
                    .get(name)
                    .ok_or_else(|| missing("chain", name))?;
                if !chain.rules.is_empty() {
                    return Err(Error::Apply(format!("chain {name} is not empty")));
                }
                self.chains.remove(name);
            }
            Op::AddRule { chain, rule } => self
                .chains
                .get_mut(chain)
                .ok_or_else(|| missing("chain", chain))?
                .rules
                .push(rule.clone()),
            Op::AddSet { name, kind } => {
                self.sets.entry(name.clone()).or_insert_with(|| Set {
                    kind: *kind,
                    elements: BTreeSet::new(),
                });
            }
            Op::DeleteSet(name) => {
                self.sets.remove(name).ok_or_else(|| missing("set", name))?;
            }
            Op::AddElements { set, elements } => {
                let s = self.sets.get_mut(set).ok_or_else(|| missing("set", set))?;
                s.elements.extend(elements.iter().cloned());
            }
            Op::DeleteElements { set, elements } => {
                let s = self.sets.get_mut(set).ok_or_else(|| missing("set", set))?;
                for e in elements {
                    if !s.elements.remove(e) {
                        return Err(missing("element", e));
                    }
                }
            }
            Op::AddMap(name) => {
                self.maps.entry(name.clone()).or_default();
            }
            Op::DeleteMap(name) => {
                self.maps.remove(name).ok_or_else(|| missing("map", name))?;
            }
            Op::AddMapElements { map, elements } => {
                let m = self.maps.get_mut(map).ok_or_else(|| missing("map", map))?;
                for (k, v) in elements {
                    if m.elements.contains_key(k) {
                        return Err(Error::Apply(format!("map {map} already has key {k}")));
                    }
                    m.elements.insert(k.clone(), v.clone());
                }
            }
            Op::DeleteMapElements { map, keys } => {
                let m = self.maps.get_mut(map).ok_or_else(|| missing("map", map))?;
                for k in keys {
                    m.elements.remove(k).ok_or_else(|| missing("map key", k))?;
                }
            }
        }
        Ok(())
    }

    /// Number of rules in every chain.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }

    /// Makes the parts of `self` that `touched` names equal to those of
    /// `desired` (what the kernel holds after a plan over them applied).
    pub fn copy_touched(&mut self, desired: &Ruleset, touched: &Touched) {
        if touched.all {
            self.clone_from(desired);
            return;
        }
        fn copy<V: Clone>(
            to: &mut BTreeMap<String, V>,
            from: &BTreeMap<String, V>,
            names: &BTreeSet<String>,
        ) {
            for name in names {
                match from.get(name) {
                    Some(value) => {
                        to.insert(name.clone(), value.clone());
                    }
                    None => {
                        to.remove(name);
                    }
                }
            }
        }
        copy(&mut self.chains, &desired.chains, &touched.chains);
        copy(&mut self.sets, &desired.sets, &touched.sets);
        copy(&mut self.maps, &desired.maps, &touched.maps);
    }
}

/// The names of the chains, sets and maps that may differ between the
/// desired ruleset and what the kernel was last given: all a plan needs to
/// look at. Everything else is known to be equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Anything may differ: plan over the whole ruleset.
    pub all: bool,
    /// Chains that may differ.
    pub chains: BTreeSet<String>,
    /// Sets that may differ.
    pub sets: BTreeSet<String>,
    /// Verdict maps that may differ.
    pub maps: BTreeSet<String>,
}

impl Touched {
    /// Everything may differ.
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Whether nothing may differ.
    pub fn is_empty(&self) -> bool {
        !self.all && self.chains.is_empty() && self.sets.is_empty() && self.maps.is_empty()
    }

    /// Adds what `other` names.
    pub fn merge(&mut self, other: Touched) {
        self.all |= other.all;
        if self.all {
            self.chains.clear();
            self.sets.clear();
            self.maps.clear();
            return;
        }
        self.chains.extend(other.chains);
        self.sets.extend(other.sets);
        self.maps.extend(other.maps);
    }
}
