//! The selector syntax tree, its normal form and its canonical text.

use std::collections::BTreeSet;
use std::fmt;

/// The longest label key Calico accepts, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// One node of a selector expression.
///
/// Trees built by [`crate::Selector::parse`] or [`crate::Selector::from_expr`]
/// are in normal form: `And`/`Or` have at least two operands and never an
/// operand of their own kind (they are flattened), `Not` never wraps a `Not`,
/// and set literals are sorted and de-duplicated (a `BTreeSet`). Two selectors
/// that differ only in whitespace, quote style, redundant parentheses, double
/// negation or set order have equal trees, equal canonical text and equal IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches non-namespaced items (see [`crate::Scope`]).
    Global,
    /// `has(key)`: the label is present, whatever its value.
    Has(String),
    /// `key == "value"`: present with exactly this value.
    Eq(String, String),
    /// `key != "value"`: absent, or present with another value.
    Ne(String, String),
    /// `key in {"a", "b"}`: present with one of these values.
    In(String, BTreeSet<String>),
    /// `key not in {"a", "b"}`: absent, or present with none of these values.
    NotIn(String, BTreeSet<String>),
    /// `key contains "s"`: present and its value contains `s`.
    Contains(String, String),
    /// `key starts with "s"`: present and its value starts with `s`.
    StartsWith(String, String),
    /// `key ends with "s"`: present and its value ends with `s`.
    EndsWith(String, String),
    /// `!expr`.
    Not(Box<Expr>),
    /// `a && b && ...` (two or more operands).
    And(Vec<Expr>),
    /// `a || b || ...` (two or more operands).
    Or(Vec<Expr>),
}

/// A tree that cannot be written as selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// A label key that is empty, longer than 512 bytes, or has a character
    /// outside `[A-Za-z0-9_./-]`.
    #[error("invalid label key {0:?}: expected 1 to 512 bytes of [A-Za-z0-9_./-]")]
    InvalidKey(String),
    /// A value holding both `'` and `"`: the language has no escapes, so no
    /// literal can spell it.
    #[error("value {0:?} contains both quote characters and cannot be written as a literal")]
    UnquotableValue(String),
}

/// Whether `b` may appear in a label key.
pub(crate) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Whether `key` is a valid label key.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(is_key_byte)
}

impl Expr {
    /// `!e`, collapsing double negation.
    pub fn negate(e: Expr) -> Expr {
        match e {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// The conjunction of `operands`, flattened; `all()` when empty.
    pub fn and(operands: Vec<Expr>) -> Expr {
        Self::junction(operands, true)
    }

    /// The disjunction of `operands`, flattened; `!all()` (matches nothing)
    /// when empty.
    pub fn or(operands: Vec<Expr>) -> Expr {
        Self::junction(operands, false)
    }

    fn junction(operands: Vec<Expr>, is_and: bool) -> Expr {
        let mut flat = Vec::with_capacity(operands.len());
        for op in operands {
            match (op, is_and) {
                (Expr::And(inner), true) | (Expr::Or(inner), false) => flat.extend(inner),
                (other, _) => flat.push(other),
            }
        }
        match flat.len() {
            0 if is_and => Expr::All,
            0 => Expr::Not(Box::new(Expr::All)),
            1 => flat.pop().expect("length checked to be one"),
            _ if is_and => Expr::And(flat),
            _ => Expr::Or(flat),
        }
    }

    /// This tree in normal form (see the type's documentation).
    pub fn normalized(self) -> Expr {
        match self {
            Expr::Not(inner) => Expr::negate(inner.normalized()),
            Expr::And(ops) => Expr::and(ops.into_iter().map(Expr::normalized).collect()),
            Expr::Or(ops) => Expr::or(ops.into_iter().map(Expr::normalized).collect()),
            leaf => leaf,
        }
    }

    /// Checks that every key and value can be written as selector text.
    pub fn validate(&self) -> Result<(), ExprError> {
        let key_ok = |k: &String| {
            if is_valid_key(k) {
                Ok(())
            } else {
                Err(ExprError::InvalidKey(k.clone()))
            }
        };
        let value_ok = |v: &String| {
            if v.contains('"') && v.contains('\'') {
                Err(ExprError::UnquotableValue(v.clone()))
            } else {
                Ok(())
            }
        };
        match self {
            Expr::All | Expr::Global => Ok(()),
            Expr::Has(k) => key_ok(k),
            Expr::Eq(k, v)
            | Expr::Ne(k, v)
            | Expr::Contains(k, v)
            | Expr::StartsWith(k, v)
            | Expr::EndsWith(k, v) => key_ok(k).and_then(|()| value_ok(v)),
            Expr::In(k, vs) | Expr::NotIn(k, vs) => {
                key_ok(k)?;
                vs.iter().try_for_each(value_ok)
            }
            Expr::Not(inner) => inner.validate(),
            Expr::And(ops) | Expr::Or(ops) => ops.iter().try_for_each(Expr::validate),
        }
    }

    /// Calls `f` on every label key the expression mentions, in order.
    pub fn for_each_key(&self, f: &mut impl FnMut(&str)) {
        match self {
            Expr::All | Expr::Global => {}
            Expr::Has(k)
            | Expr::Eq(k, _)
            | Expr::Ne(k, _)
            | Expr::Contains(k, _)
            | Expr::StartsWith(k, _)
            | Expr::EndsWith(k, _)
            | Expr::In(k, _)
            | Expr::NotIn(k, _) => f(k),
            Expr::Not(inner) => inner.for_each_key(f),
            Expr::And(ops) | Expr::Or(ops) => ops.iter().for_each(|op| op.for_each_key(f)),
        }
    }

    /// A copy with every label key passed through `rename`, and `all()` and
    /// `global()` replaced by `all_to` and `global_to`. The result is in normal
    /// form.
    pub fn rewrite(
        &self,
        rename: &impl Fn(&str) -> String,
        all_to: &Expr,
        global_to: &Expr,
    ) -> Expr {
        let r = |e: &Expr| e.rewrite(rename, all_to, global_to);
        match self {
            Expr::All => all_to.clone(),
            Expr::Global => global_to.clone(),
            Expr::Has(k) => Expr::Has(rename(k)),
            Expr::Eq(k, v) => Expr::Eq(rename(k), v.clone()),
            Expr::Ne(k, v) => Expr::Ne(rename(k), v.clone()),
            Expr::Contains(k, v) => Expr::Contains(rename(k), v.clone()),
            Expr::StartsWith(k, v) => Expr::StartsWith(rename(k), v.clone()),
            Expr::EndsWith(k, v) => Expr::EndsWith(rename(k), v.clone()),
            Expr::In(k, vs) => Expr::In(rename(k), vs.clone()),
            Expr::NotIn(k, vs) => Expr::NotIn(rename(k), vs.clone()),
            Expr::Not(inner) => Expr::negate(r(inner)),
            Expr::And(ops) => Expr::and(ops.iter().map(r).collect()),
            Expr::Or(ops) => Expr::or(ops.iter().map(r).collect()),
        }
    }
}

/// Where a sub-expression is printed, which decides its parentheses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Top,
    InOr,
    InAnd,
    InNot,
}

fn write_literal(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    write!(f, "{quote}{value}{quote}")
}

fn write_expr(f: &mut fmt::Formatter<'_>, e: &Expr, ctx: Context) -> fmt::Result {
    let comparison = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, v: &str| {
        if ctx == Context::InNot {
            f.write_str("(")?;
        }
        write!(f, "{k} {op} ")?;
        write_literal(f, v)?;
        if ctx == Context::InNot {
            f.write_str(")")?;
        }
        Ok(())
    };
    let set = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, vs: &BTreeSet<String>| {
        if ctx == Context::InNot {
            f.write_str("(")?;
        }
        write!(f, "{k} {op} {{")?;
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_literal(f, v)?;
        }
        f.write_str("}")?;
        if ctx == Context::InNot {
            f.write_str(")")?;
        }
        Ok(())
    };
    let junction =
        |f: &mut fmt::Formatter<'_>, ops: &[Expr], sep: &str, inner: Context, parens: bool| {
            if parens {
                f.write_str("(")?;
            }
            for (i, op) in ops.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write_expr(f, op, inner)?;
            }
            if parens {
                f.write_str(")")?;
            }
            Ok(())
        };
    match e {
        Expr::All => f.write_str("all()"),
        Expr::Global => f.write_str("global()"),
        Expr::Has(k) => write!(f, "has({k})"),
        Expr::Eq(k, v) => comparison(f, k, "==", v),
        Expr::Ne(k, v) => comparison(f, k, "!=", v),
        Expr::Contains(k, v) => comparison(f, k, "contains", v),
        Expr::StartsWith(k, v) => comparison(f, k, "starts with", v),
        Expr::EndsWith(k, v) => comparison(f, k, "ends with", v),
        Expr::In(k, vs) => set(f, k, "in", vs),
        Expr::NotIn(k, vs) => set(f, k, "not in", vs),
        Expr::Not(inner) => {
            f.write_str("!")?;
            write_expr(f, inner, Context::InNot)
        }
        Expr::And(ops) => junction(f, ops, " && ", Context::InAnd, ctx == Context::InNot),
        Expr::Or(ops) => junction(
            f,
            ops,
            " || ",
            Context::InOr,
            matches!(ctx, Context::InAnd | Context::InNot),
        ),
    }
}

/// The canonical text: single spaces around operators, `"` quotes unless the
/// value holds a `"`, sets sorted, and only the parentheses precedence needs
/// (plus parentheses around a negated comparison, for readability).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, Context::Top)
    }
}
