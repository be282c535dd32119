//! IPPool CIDRs must not overlap, and an existing pool's CIDR and block
//! size cannot change, as calicoctl enforces both.
//!
//! A pool's blocks are carved from its CIDR at its block size, and every
//! node's affinities and every allocation live in those blocks: Calico
//! refuses to change either field of an existing pool ("IPPool CIDR cannot
//! be modified"); the way to move is a new pool, the old one disabled and
//! its workloads moved. [`first_fixed_change`] checks that, for `apply` and
//! `replace`.
//!
//! Calico refuses to create a pool whose CIDR overlaps (contains, is
//! contained in, or equals) the CIDR of any other pool, disabled pools
//! included; a pool is never compared with itself, and an update that keeps
//! a pool's CIDR is not checked again (Calico checks on create only, since
//! its CIDRs cannot change). Twill checks a pool whenever it is new or its
//! CIDR differs from the stored one, against the datastore's pools and the
//! pools written earlier in the same command, in order, as calicoctl's
//! one-by-one writes would meet them.
//!
//! [`first_overlap`] and [`first_fixed_change`] are the pure checks;
//! [`check_batch`] feeds them the datastore's pools and a command's
//! manifests.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use twill_api::ippool::{DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6};
use twill_api::{Resource, Spec};
use twill_store::Datastore;

use super::write::Mode;
use crate::error::{CliError, Unwritten};

/// A pool as the checks see it: its name, network and block size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCidr {
    /// `metadata.name`.
    pub name: String,
    /// `spec.cidr`, masked.
    pub cidr: IpNet,
    /// `spec.blockSize`, or its family's default.
    pub block_size: i32,
}

impl PoolCidr {
    /// A pool named `name` over `cidr` (host bits cleared), with the
    /// family's default block size.
    pub fn new(name: impl Into<String>, cidr: IpNet) -> Self {
        let block_size = match cidr {
            IpNet::V4(_) => DEFAULT_BLOCK_SIZE_V4,
            IpNet::V6(_) => DEFAULT_BLOCK_SIZE_V6,
        };
        Self {
            name: name.into(),
            cidr: cidr.trunc(),
            block_size,
        }
    }

    /// The same pool with `spec.blockSize` `size`, when set.
    #[must_use]
    pub fn with_block_size(mut self, size: Option<i32>) -> Self {
        if let Some(size) = size {
            self.block_size = size;
        }
        self
    }
}

/// Where the pool a new pool overlaps comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Stored before the command ran.
    Datastore,
    /// Earlier in the command's manifests: the file it came from (`-` for stdin).
    Manifest(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Datastore => f.write_str("in the datastore"),
            Self::Manifest(source) if source == "-" => f.write_str("earlier in standard input"),
            Self::Manifest(source) => write!(f, "earlier in {source}"),
        }
    }
}

/// How a pool's CIDR overlaps another's. Two CIDRs that overlap at all
/// always nest, so these are the only ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The same network.
    Equals,
    /// The pool's CIDR is wider and holds the other.
    Contains,
    /// The pool's CIDR lies inside the other.
    IsContainedIn,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Equals => "equals",
            Self::Contains => "contains",
            Self::IsContainedIn => "is contained in",
        })
    }
}

/// How `cidr` overlaps `other`, or `None` when they share no address (IPv4
/// and IPv6 networks never do).
pub fn relation(cidr: IpNet, other: IpNet) -> Option<Relation> {
    let (cidr, other) = (cidr.trunc(), other.trunc());
    if cidr == other {
        Some(Relation::Equals)
    } else if cidr.contains(&other) {
        Some(Relation::Contains)
    } else if other.contains(&cidr) {
        Some(Relation::IsContainedIn)
    } else {
        None
    }
}

/// A pool of the command whose CIDR overlaps another pool's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The pool being written.
    pub pool: PoolCidr,
    /// The pool it overlaps.
    pub other: PoolCidr,
    /// Where `other` comes from.
    pub origin: Origin,
    /// How `pool.cidr` relates to `other.cidr`.
    pub relation: Relation,
}

impl fmt::Display for Overlap {
    /// `IPPool(b) spec.cidr 10.1.2.0/24 overlaps with IPPool(a) spec.cidr
    /// 10.1.0.0/16 in the datastore: 10.1.2.0/24 is contained in 10.1.0.0/16`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pool, other) = (&self.pool, &self.other);
        write!(
            f,
            "IPPool({}) spec.cidr {} overlaps with IPPool({}) spec.cidr {} {}: {} {} {}",
            pool.name,
            pool.cidr,
            other.name,
            other.cidr,
            self.origin,
            pool.cidr,
            self.relation,
            other.cidr
        )
    }
}

impl Overlap {
    /// The error that refuses the command; `written` names what stays unwritten.
    pub fn into_error(self, written: Unwritten) -> CliError {
        CliError::PoolOverlap {
            overlap: Box::new(self),
            written,
        }
    }
}

/// The first pool of `batch` (pairs of source file and pool, in the order
/// they are written) whose CIDR overlaps another pool's: one in `stored` or
/// one earlier in `batch`. A pool is never compared with itself (same name),
/// and a pool whose CIDR equals the one it already has is not checked.
/// Among several pools a new one overlaps, the first by name is reported.
pub fn first_overlap(stored: &[PoolCidr], batch: &[(String, PoolCidr)]) -> Option<Overlap> {
    // Name → the pool's CIDR and origin as the writes so far leave it.
    let mut state: BTreeMap<&str, (IpNet, Origin)> = stored
        .iter()
        .map(|p| (p.name.as_str(), (p.cidr.trunc(), Origin::Datastore)))
        .collect();
    for (source, pool) in batch {
        let cidr = pool.cidr.trunc();
        let unchanged = state
            .get(pool.name.as_str())
            .is_some_and(|(current, _)| *current == cidr);
        if !unchanged {
            let found = state
                .iter()
                .filter(|(name, _)| **name != pool.name)
                .find_map(|(name, (other, origin))| {
                    relation(cidr, *other).map(|relation| Overlap {
                        pool: PoolCidr::new(pool.name.clone(), cidr),
                        other: PoolCidr::new(*name, *other),
                        origin: origin.clone(),
                        relation,
                    })
                });
            if found.is_some() {
                return found;
            }
        }
        state.insert(&pool.name, (cidr, Origin::Manifest(source.clone())));
    }
    None
}

/// A field of an existing pool that a command would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedChange {
    /// The pool's name.
    pub pool: String,
    /// `spec.cidr` or `spec.blockSize`.
    pub field: &'static str,
    /// The value the pool has.
    pub from: String,
    /// The value the command asks for.
    pub to: String,
    /// Where the pool's current value comes from.
    pub origin: Origin,
}

impl fmt::Display for FixedChange {
    /// `IPPool(a) spec.cidr cannot change from 10.1.0.0/16 (in the
    /// datastore) to 10.7.0.0/16`, with the way to move.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPPool({}) {} cannot change from {} ({}) to {}: the pool's blocks were carved \
             with it; create a new pool, disable this one and move its workloads",
            self.pool, self.field, self.from, self.origin, self.to
        )
    }
}

impl FixedChange {
    /// The error that refuses the command; `written` names what stays unwritten.
    pub fn into_error(self, written: Unwritten) -> CliError {
        CliError::PoolFieldFixed {
            change: Box::new(self),
            written,
        }
    }
}

/// The first pool of `batch` (in write order) that already exists, stored
/// or earlier in `batch`, with another CIDR or block size.
pub fn first_fixed_change(
    stored: &[PoolCidr],
    batch: &[(String, PoolCidr)],
) -> Option<FixedChange> {
    let mut state: BTreeMap<&str, (&PoolCidr, Origin)> = stored
        .iter()
        .map(|p| (p.name.as_str(), (p, Origin::Datastore)))
        .collect();
    for (source, pool) in batch {
        if let Some((current, origin)) = state.get(pool.name.as_str()) {
            let change = |field, from: String, to: String| FixedChange {
                pool: pool.name.clone(),
                field,
                from,
                to,
                origin: origin.clone(),
            };
            if current.cidr != pool.cidr {
                return Some(change(
                    "spec.cidr",
                    current.cidr.to_string(),
                    pool.cidr.to_string(),
                ));
            }
            if current.block_size != pool.block_size {
                return Some(change(
                    "spec.blockSize",
                    current.block_size.to_string(),
                    pool.block_size.to_string(),
                ));
            }
        }
        state.insert(&pool.name, (pool, Origin::Manifest(source.clone())));
    }
    None
}

/// The IPPools of a command's manifests, in order, with their source files.
pub fn manifest_pools<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [Resource])>,
) -> Vec<(String, PoolCidr)> {
    let mut pools = Vec::new();
    for (source, resources) in files {
        for resource in resources {
            if let Resource::IPPool(pool) = resource
                && let Some(cidr) = pool.spec.network()
            {
                pools.push((
                    source.to_string(),
                    PoolCidr::new(pool.metadata.name.clone(), cidr)
                        .with_block_size(pool.spec.block_size),
                ));
            }
        }
    }
    pools
}

/// The IPPools in the datastore. A stored pool whose CIDR does not parse
/// cannot overlap anything and is left out, as Calico skips it.
pub fn stored_pools(store: &dyn Datastore) -> Result<Vec<PoolCidr>, CliError> {
    let list = store.list(twill_api::ippool::IPPoolSpec::STORE_KIND, None)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|object| {
            let cidr = object
                .value
                .pointer("/spec/cidr")
                .and_then(|c| c.as_str())
                .and_then(|c| c.parse::<IpNet>().ok())?;
            let block_size = object
                .value
                .pointer("/spec/blockSize")
                .and_then(serde_json::Value::as_i64)
                .and_then(|size| i32::try_from(size).ok());
            Some(PoolCidr::new(object.key.name, cidr).with_block_size(block_size))
        })
        .collect())
}

/// Refuses the manifests if one of their pools overlaps another pool or,
/// for `apply` and `replace`, changes an existing pool's CIDR or block
/// size; `written` is what the error reports as unwritten.
pub fn check_batch<'a>(
    store: &dyn Datastore,
    mode: Mode,
    files: impl IntoIterator<Item = (&'a str, &'a [Resource])>,
    written: impl FnOnce() -> Unwritten,
) -> Result<(), CliError> {
    let batch = manifest_pools(files);
    if batch.is_empty() {
        return Ok(());
    }
    let stored = stored_pools(store)?;
    // `create` of an existing pool is refused as existing, whatever it holds.
    if mode != Mode::Create
        && let Some(change) = first_fixed_change(&stored, &batch)
    {
        return Err(change.into_error(written()));
    }
    match first_overlap(&stored, &batch) {
        Some(overlap) => Err(overlap.into_error(written())),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests parse literal CIDRs")]
mod tests {
    use super::*;

    fn net(cidr: &str) -> IpNet {
        cidr.parse().unwrap()
    }

    fn pool(name: &str, cidr: &str) -> PoolCidr {
        PoolCidr::new(name, net(cidr))
    }

    fn batch(pools: &[(&str, &str)]) -> Vec<(String, PoolCidr)> {
        pools
            .iter()
            .map(|(name, cidr)| ("pools.yaml".to_string(), pool(name, cidr)))
            .collect()
    }

    #[test]
    fn relation_covers_nesting_equality_and_disjoint_families() {
        let cases = [
            ("10.0.0.0/16", "10.0.0.0/16", Some(Relation::Equals)),
            ("10.0.0.0/8", "10.1.0.0/16", Some(Relation::Contains)),
            ("10.1.2.0/24", "10.1.0.0/16", Some(Relation::IsContainedIn)),
            ("10.1.0.0/16", "10.2.0.0/16", None),
            ("10.0.0.0/17", "10.0.128.0/17", None),
            ("fd00::/48", "fd00:0:0:1::/64", Some(Relation::Contains)),
            ("fd00::/48", "fd01::/48", None),
            // ::/0 and 0.0.0.0/0 span everything of their own family only.
            ("0.0.0.0/0", "::/0", None),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8", None),
        ];
        for (cidr, other, want) in cases {
            assert_eq!(relation(net(cidr), net(other)), want, "{cidr} vs {other}");
        }
    }

    #[test]
    fn first_overlap_follows_calicos_rules() {
        struct Case {
            name: &'static str,
            stored: &'static [(&'static str, &'static str)],
            batch: &'static [(&'static str, &'static str)],
            /// pool, other, origin is the datastore, relation.
            want: Option<(&'static str, &'static str, bool, Relation)>,
        }
        let cases = [
            Case {
                name: "a new pool inside a stored one is refused",
                stored: &[("wide", "10.0.0.0/8")],
                batch: &[("narrow", "10.1.0.0/16")],
                want: Some(("narrow", "wide", true, Relation::IsContainedIn)),
            },
            Case {
                name: "a new pool around a stored one is refused",
                stored: &[("narrow", "10.1.0.0/16")],
                batch: &[("wide", "10.0.0.0/8")],
                want: Some(("wide", "narrow", true, Relation::Contains)),
            },
            Case {
                name: "a new pool equal to a stored one is refused",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("b", "10.1.0.0/16")],
                want: Some(("b", "a", true, Relation::Equals)),
            },
            Case {
                name: "a pool overlapping one earlier in the batch is refused",
                stored: &[],
                batch: &[
                    ("a", "10.1.0.0/16"),
                    ("c", "10.2.0.0/16"),
                    ("b", "10.1.4.0/24"),
                ],
                want: Some(("b", "a", false, Relation::IsContainedIn)),
            },
            Case {
                name: "disjoint pools are accepted",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("b", "10.2.0.0/16"), ("c", "10.3.0.0/16")],
                want: None,
            },
            Case {
                name: "ipv4 and ipv6 pools never overlap",
                stored: &[("v4", "0.0.0.0/0")],
                batch: &[("v6", "::/0")],
                want: None,
            },
            Case {
                name: "updating a pool to itself is not an overlap",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("a", "10.1.0.0/16")],
                want: None,
            },
            Case {
                name: "a pool whose cidr changes is not compared with its old cidr",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("a", "10.1.0.0/17")],
                want: None,
            },
            Case {
                name: "a pool whose cidr changes onto another pool is refused",
                stored: &[("a", "10.1.0.0/16"), ("b", "10.2.0.0/16")],
                batch: &[("a", "10.2.0.0/24")],
                want: Some(("a", "b", true, Relation::IsContainedIn)),
            },
            Case {
                name: "an unchanged pool is not blamed for overlaps already stored",
                stored: &[("a", "10.1.0.0/16"), ("legacy", "10.1.0.0/24")],
                batch: &[("a", "10.1.0.0/16")],
                want: None,
            },
            Case {
                name: "a pool moved away earlier in the batch frees its old cidr",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("a", "10.9.0.0/16"), ("b", "10.1.0.0/16")],
                want: None,
            },
            Case {
                name: "the first overlapped pool by name is reported",
                stored: &[("z", "10.0.0.0/8"), ("m", "10.1.0.0/16")],
                batch: &[("new", "10.1.1.0/24")],
                want: Some(("new", "m", true, Relation::IsContainedIn)),
            },
            Case {
                name: "host bits do not hide an overlap",
                stored: &[("a", "10.1.0.0/16")],
                batch: &[("b", "10.1.7.9/24")],
                want: Some(("b", "a", true, Relation::IsContainedIn)),
            },
        ];
        for case in cases {
            let stored: Vec<PoolCidr> = case.stored.iter().map(|(n, c)| pool(n, c)).collect();
            let got = first_overlap(&stored, &batch(case.batch)).map(|o| {
                (
                    o.pool.name,
                    o.other.name,
                    o.origin == Origin::Datastore,
                    o.relation,
                )
            });
            let want = case
                .want
                .map(|(p, o, stored, r)| (p.to_string(), o.to_string(), stored, r));
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn an_existing_pool_keeps_its_cidr_and_block_size() {
        let sized = |name, cidr, size| pool(name, cidr).with_block_size(Some(size));
        let file = |p: PoolCidr| ("pools.yaml".to_string(), p);
        // (case, stored, batch, refused field with from and to, from the datastore)
        let cases = [
            (
                "the same cidr and block size is no change",
                vec![sized("a", "10.1.0.0/16", 26)],
                vec![file(sized("a", "10.1.0.0/16", 26))],
                None,
            ),
            (
                "host bits are no change",
                vec![pool("a", "10.1.0.0/16")],
                vec![file(pool("a", "10.1.9.9/16"))],
                None,
            ),
            (
                "an unset block size is the family default",
                vec![sized("a", "10.1.0.0/16", 26)],
                vec![file(pool("a", "10.1.0.0/16"))],
                None,
            ),
            (
                "a new cidr is refused",
                vec![pool("a", "10.1.0.0/16")],
                vec![file(pool("a", "10.7.0.0/16"))],
                Some(("spec.cidr", "10.1.0.0/16", "10.7.0.0/16", true)),
            ),
            (
                "a narrower cidr is refused",
                vec![pool("a", "10.1.0.0/16")],
                vec![file(pool("a", "10.1.0.0/17"))],
                Some(("spec.cidr", "10.1.0.0/16", "10.1.0.0/17", true)),
            ),
            (
                "a new block size is refused",
                vec![sized("a", "10.1.0.0/16", 26)],
                vec![file(sized("a", "10.1.0.0/16", 28))],
                Some(("spec.blockSize", "26", "28", true)),
            ),
            (
                "a pool changed later in the same command is refused",
                vec![],
                vec![
                    file(pool("a", "10.1.0.0/16")),
                    file(pool("a", "10.2.0.0/16")),
                ],
                Some(("spec.cidr", "10.1.0.0/16", "10.2.0.0/16", false)),
            ),
            (
                "other pools are not compared",
                vec![pool("a", "10.1.0.0/16")],
                vec![file(pool("b", "10.2.0.0/16"))],
                None,
            ),
        ];
        for (name, stored, batch, want) in cases {
            let got = first_fixed_change(&stored, &batch);
            let got = got.as_ref().map(|c| {
                (
                    c.field,
                    c.from.as_str(),
                    c.to.as_str(),
                    c.origin == Origin::Datastore,
                )
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_fixed_field_error_names_the_pool_both_values_and_the_way_to_move() {
        let error =
            first_fixed_change(&[pool("a", "10.1.0.0/16")], &batch(&[("a", "10.7.0.0/16")]))
                .unwrap()
                .into_error(Unwritten(Some("pools.yaml".into())));
        assert_eq!(
            error.to_string(),
            "IPPool(a) spec.cidr cannot change from 10.1.0.0/16 (in the datastore) to \
             10.7.0.0/16: the pool's blocks were carved with it; create a new pool, disable \
             this one and move its workloads (nothing in pools.yaml was written)"
        );
        assert_eq!(error.status(), crate::Status::Refused);
    }

    #[test]
    fn an_overlap_reports_both_cidrs_masked() {
        let overlap = first_overlap(
            &[pool("wide", "10.0.0.0/8")],
            &batch(&[("narrow", "10.1.2.3/16")]),
        )
        .unwrap();
        assert_eq!(overlap.pool, pool("narrow", "10.1.0.0/16"));
        assert_eq!(overlap.other, pool("wide", "10.0.0.0/8"));
    }

    #[test]
    fn the_error_names_both_pools_the_field_both_cidrs_and_the_reason() {
        let cases = [
            (
                Origin::Datastore,
                "IPPool(narrow) spec.cidr 10.1.0.0/16 overlaps with IPPool(wide) spec.cidr \
                 10.0.0.0/8 in the datastore: 10.1.0.0/16 is contained in 10.0.0.0/8; \
                 IPPool CIDRs must not overlap (nothing in pools.yaml was written)",
            ),
            (
                Origin::Manifest("-".into()),
                "IPPool(narrow) spec.cidr 10.1.0.0/16 overlaps with IPPool(wide) spec.cidr \
                 10.0.0.0/8 earlier in standard input: 10.1.0.0/16 is contained in 10.0.0.0/8; \
                 IPPool CIDRs must not overlap (nothing in pools.yaml was written)",
            ),
        ];
        for (origin, want) in cases {
            let error = Overlap {
                pool: pool("narrow", "10.1.0.0/16"),
                other: pool("wide", "10.0.0.0/8"),
                origin,
                relation: Relation::IsContainedIn,
            }
            .into_error(Unwritten(Some("pools.yaml".into())));
            assert_eq!(error.to_string(), want);
            assert_eq!(error.status(), crate::Status::Refused);
        }
    }
}
