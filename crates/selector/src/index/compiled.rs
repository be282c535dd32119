//! Interned labels and selectors compiled against them, so that evaluation
//! inside the index compares integers in a small contiguous array instead of
//! chasing string pointers.

use foldhash::HashMap;

use crate::ast::Expr;

/// A label key or value, interned.
pub(super) type Sym = u32;

/// Effective labels: (key, value) symbols sorted by key.
pub(super) type SymLabels = Vec<(Sym, Sym)>;

/// Reference-counted string interning: a symbol lives while an item's labels
/// or a selector refer to it, so churn (e.g. unique pod-template hashes) does
/// not grow the table forever.
#[derive(Debug, Default)]
pub(super) struct Interner {
    ids: HashMap<Box<str>, Sym>,
    strings: Vec<Box<str>>,
    refs: Vec<u32>,
    free: Vec<Sym>,
}

impl Interner {
    /// The symbol for `s`, taking a reference to it.
    pub(super) fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = s.into();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                let id =
                    Sym::try_from(self.strings.len()).expect("fewer than 2^32 distinct strings");
                self.strings.push(s.into());
                self.refs.push(1);
                id
            }
        };
        self.ids.insert(s.into(), id);
        id
    }

    /// Takes one more reference to a live symbol.
    pub(super) fn retain(&mut self, id: Sym) {
        self.refs[id as usize] += 1;
    }

    /// Drops one reference to `id`.
    pub(super) fn release(&mut self, id: Sym) {
        let refs = &mut self.refs[id as usize];
        *refs -= 1;
        if *refs == 0 {
            let s = std::mem::take(&mut self.strings[id as usize]);
            self.ids.remove(&s);
            self.free.push(id);
        }
    }

    /// The symbol for `s` if it is interned (takes no reference).
    pub(super) fn lookup(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    /// The string behind a live symbol.
    pub(super) fn resolve(&self, id: Sym) -> &str {
        &self.strings[id as usize]
    }

    /// Number of live symbols.
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.ids.len()
    }
}

/// A selector with its keys and values replaced by symbols.
#[derive(Debug)]
pub(super) enum Compiled {
    True,
    Has(Sym),
    Eq(Sym, Sym),
    Ne(Sym, Sym),
    In(Sym, Vec<Sym>),
    NotIn(Sym, Vec<Sym>),
    Contains(Sym, Box<str>),
    StartsWith(Sym, Box<str>),
    EndsWith(Sym, Box<str>),
    Not(Box<Compiled>),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
}

impl Compiled {
    /// Compiles `expr` (with `global()` true, as [`crate::Selector::matches`]
    /// does), taking a reference on every symbol it uses.
    pub(super) fn new(expr: &Expr, syms: &mut Interner) -> Compiled {
        let set = |vs: &std::collections::BTreeSet<String>, syms: &mut Interner| {
            let mut ids: Vec<Sym> = vs.iter().map(|v| syms.intern(v)).collect();
            ids.sort_unstable();
            ids
        };
        match expr {
            Expr::All | Expr::Global => Compiled::True,
            Expr::Has(k) => Compiled::Has(syms.intern(k)),
            Expr::Eq(k, v) => Compiled::Eq(syms.intern(k), syms.intern(v)),
            Expr::Ne(k, v) => Compiled::Ne(syms.intern(k), syms.intern(v)),
            Expr::In(k, vs) => Compiled::In(syms.intern(k), set(vs, syms)),
            Expr::NotIn(k, vs) => Compiled::NotIn(syms.intern(k), set(vs, syms)),
            Expr::Contains(k, v) => Compiled::Contains(syms.intern(k), v.as_str().into()),
            Expr::StartsWith(k, v) => Compiled::StartsWith(syms.intern(k), v.as_str().into()),
            Expr::EndsWith(k, v) => Compiled::EndsWith(syms.intern(k), v.as_str().into()),
            Expr::Not(inner) => Compiled::Not(Box::new(Compiled::new(inner, syms))),
            Expr::And(ops) => Compiled::And(ops.iter().map(|op| Compiled::new(op, syms)).collect()),
            Expr::Or(ops) => Compiled::Or(ops.iter().map(|op| Compiled::new(op, syms)).collect()),
        }
    }

    /// Drops the references [`Compiled::new`] took.
    pub(super) fn release(&self, syms: &mut Interner) {
        match self {
            Compiled::True => {}
            Compiled::Has(k)
            | Compiled::Contains(k, _)
            | Compiled::StartsWith(k, _)
            | Compiled::EndsWith(k, _) => syms.release(*k),
            Compiled::Eq(k, v) | Compiled::Ne(k, v) => {
                syms.release(*k);
                syms.release(*v);
            }
            Compiled::In(k, vs) | Compiled::NotIn(k, vs) => {
                syms.release(*k);
                vs.iter().for_each(|v| syms.release(*v));
            }
            Compiled::Not(inner) => inner.release(syms),
            Compiled::And(ops) | Compiled::Or(ops) => ops.iter().for_each(|op| op.release(syms)),
        }
    }

    /// Evaluates against interned effective labels.
    pub(super) fn matches(&self, labels: &[(Sym, Sym)], syms: &Interner) -> bool {
        let get = |k: &Sym| {
            labels
                .binary_search_by_key(k, |&(key, _)| key)
                .ok()
                .map(|i| labels[i].1)
        };
        match self {
            Compiled::True => true,
            Compiled::Has(k) => get(k).is_some(),
            Compiled::Eq(k, v) => get(k) == Some(*v),
            Compiled::Ne(k, v) => get(k) != Some(*v),
            Compiled::In(k, vs) => get(k).is_some_and(|x| vs.binary_search(&x).is_ok()),
            Compiled::NotIn(k, vs) => get(k).is_none_or(|x| vs.binary_search(&x).is_err()),
            Compiled::Contains(k, s) => get(k).is_some_and(|x| syms.resolve(x).contains(&**s)),
            Compiled::StartsWith(k, s) => get(k).is_some_and(|x| syms.resolve(x).starts_with(&**s)),
            Compiled::EndsWith(k, s) => get(k).is_some_and(|x| syms.resolve(x).ends_with(&**s)),
            Compiled::Not(inner) => !inner.matches(labels, syms),
            Compiled::And(ops) => ops.iter().all(|op| op.matches(labels, syms)),
            Compiled::Or(ops) => ops.iter().any(|op| op.matches(labels, syms)),
        }
    }
}
