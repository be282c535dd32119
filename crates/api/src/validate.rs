//! Field-path-aware validation.
//!
//! Every resource type implements [`Validate`]. A [`Validator`] walks the
//! value, keeping the path of the field it is in (`spec.ingress[0].ports[1]`),
//! and collects every [`Violation`] instead of stopping at the first, so a
//! user fixes a manifest in one round.

use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A named field, written as it appears in YAML (`destination`).
    Field(&'static str),
    /// A map key (`labels.app` is written `labels[app]` when the key is not an identifier).
    Key(String),
    /// A list index (`[3]`).
    Index(usize),
}

/// The path of a field inside a resource, e.g. `spec.ingress[0].destination.ports[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The empty path (the resource itself).
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses the dotted form produced by `serde_path_to_error` and by [`Display`](fmt::Display).
    pub fn from_dotted(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty() && *p != "?") {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_string()));
            }
            while let Some(end) = rest.find(']') {
                let inner = &rest[1..end];
                segments.push(match inner.parse() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Key(inner.to_string()),
                });
                rest = &rest[end + 1..];
            }
        }
        Self(segments)
    }

    /// This path with one more segment at the end.
    pub fn join(mut self, segment: Segment) -> Self {
        self.0.push(segment);
        self
    }

    /// This path inside `prefix` (e.g. a document path inside `items[2]`).
    pub fn within(mut self, prefix: &FieldPath) -> Self {
        let mut segments = prefix.0.clone();
        segments.append(&mut self.0);
        self.0 = segments;
        self
    }

    /// The segments of the path, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Segment::Key(key) => {
                    let plain = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        if i > 0 {
                            f.write_str(".")?;
                        }
                        f.write_str(key)?;
                    } else {
                        write!(f, "[{key:?}]")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One reason a resource is invalid, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where: `spec.ingress[0].destination.ports[1]`.
    pub path: FieldPath,
    /// Why, in lowercase words a user can act on.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.segments().is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Walks a value and collects violations with their field paths.
#[derive(Debug, Default)]
pub struct Validator {
    path: Vec<Segment>,
    violations: Vec<Violation>,
}

impl Validator {
    /// A validator positioned at the root of a resource.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `f` inside the field `name`.
    pub fn field(&mut self, name: &'static str, f: impl FnOnce(&mut Self)) {
        self.path.push(Segment::Field(name));
        f(self);
        self.path.pop();
    }

    /// Validates `f` inside the map entry `key`.
    pub fn key(&mut self, key: &str, f: impl FnOnce(&mut Self)) {
        self.path.push(Segment::Key(key.to_string()));
        f(self);
        self.path.pop();
    }

    /// Validates `f` inside the list element `index`.
    pub fn index(&mut self, index: usize, f: impl FnOnce(&mut Self)) {
        self.path.push(Segment::Index(index));
        f(self);
        self.path.pop();
    }

    /// Validates every element of `items` at its index.
    pub fn each<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        for (i, item) in items.iter().enumerate() {
            self.index(i, |v| f(v, item));
        }
    }

    /// Reports each element of `items` that repeats an earlier one, at its index.
    pub fn no_duplicates<T: PartialEq + fmt::Debug>(&mut self, items: &[T]) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                self.index(i, |v| v.error(format!("{item:?} is listed more than once")));
            }
        }
    }

    /// Validates `value` (a field of type `T: Validate`) inside the field `name`.
    pub fn nested<T: Validate + ?Sized>(&mut self, name: &'static str, value: &T) {
        self.field(name, |v| value.validate(v));
    }

    /// Records a violation at the current path.
    pub fn error(&mut self, reason: impl Into<String>) {
        self.violations.push(Violation {
            path: FieldPath(self.path.clone()),
            reason: reason.into(),
        });
    }

    /// Records a violation at the current path when `result` is an error.
    pub fn check<E: fmt::Display>(&mut self, result: Result<(), E>) {
        if let Err(e) = result {
            self.error(e.to_string());
        }
    }

    /// The violations collected so far.
    pub fn finish(self) -> Vec<Violation> {
        self.violations
    }
}

/// A value that can say what is wrong with it.
pub trait Validate {
    /// Records every violation of this value into `v`, at `v`'s current path.
    fn validate(&self, v: &mut Validator);
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, v: &mut Validator) {
        if let Some(inner) = self {
            inner.validate(v);
        }
    }
}

impl<T: Validate> Validate for Vec<T> {
    fn validate(&self, v: &mut Validator) {
        v.each(self, |v, item| item.validate(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_kubectl() {
        let mut v = Validator::new();
        v.field("spec", |v| {
            v.field("ingress", |v| {
                v.index(0, |v| {
                    v.field("destination", |v| {
                        v.field("ports", |v| {
                            v.index(1, |v| v.error("port 0 is out of range"))
                        })
                    })
                })
            })
        });
        let violations = v.finish();
        assert_eq!(
            violations[0].to_string(),
            "spec.ingress[0].destination.ports[1]: port 0 is out of range"
        );
    }

    #[test]
    fn dotted_paths_parse_back() {
        for text in [
            "spec.ingress[0].destination.ports[1]",
            "metadata.labels",
            "spec.ipPools[2]",
        ] {
            assert_eq!(FieldPath::from_dotted(text).to_string(), text);
        }
    }
}
