//! The decision process of RFC 4271 §9.1.2, with multipath.
//!
//! Candidates are the paths accepted by import policy. Steps, each keeping
//! only the paths that survive it:
//!
//! 0. a path originated by this node (as BIRD and FRR prefer their own);
//! 1. highest LOCAL_PREF (100 when absent);
//! 2. shortest AS_PATH (an AS_SET counts as one);
//! 3. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 4. lowest MED among paths from the same neighbouring AS (absent MED is 0);
//!    compared pairwise over the whole set, as §9.1.2.2 c) prescribes, since
//!    MED is not a total order;
//! 5. paths from eBGP peers over paths from iBGP peers;
//! 6. (lowest IGP cost to the next hop: skipped; Twill has no IGP.)
//!
//! The survivors are the multipath set: equal up to the tie-breaks below.
//! They are ordered by
//!
//! 7. lowest BGP identifier of the advertising router (ORIGINATOR_ID when
//!    present, RFC 4456 §9);
//! 8. shortest CLUSTER_LIST (RFC 4456 §9);
//! 9. lowest peer address,
//!
//! and the first is the best path, the one advertised to peers.

use std::net::{IpAddr, Ipv4Addr};

use super::attrs::Attrs;
use super::{Path, Source};

/// What the decision process needs to know about a path's source peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    /// The peer is in this AS.
    pub ibgp: bool,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
}

fn med(attrs: &Attrs) -> u32 {
    attrs.med.unwrap_or(0)
}

/// Keeps the items of `set` for which `key` is best (smallest).
fn keep_min<K: Ord>(set: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    let Some(best) = set.iter().map(|&i| key(i)).min() else {
        return;
    };
    set.retain(|&i| key(i) == best);
}

/// Orders `paths` so that the selected ones come first, best first, and
/// returns how many are selected (0 when no path is usable). `info` gives
/// the source peer of a learned path (`None`: unknown peer; treated as eBGP
/// with identifier 0.0.0.0).
pub fn select(
    paths: &mut [Path],
    local_id: Ipv4Addr,
    info: impl Fn(IpAddr) -> Option<SourceInfo>,
) -> usize {
    let source_info = |path: &Path| match path.source {
        Source::Local => SourceInfo {
            ibgp: true,
            router_id: local_id,
        },
        Source::Peer(address) => info(address).unwrap_or(SourceInfo {
            ibgp: false,
            router_id: Ipv4Addr::UNSPECIFIED,
        }),
    };
    // The common case, one path: nothing to compare.
    if let [only] = paths {
        return usize::from(only.attrs.is_some());
    }
    let mut set: Vec<usize> = (0..paths.len())
        .filter(|&i| paths[i].attrs.is_some())
        .collect();
    if set.is_empty() {
        return 0;
    }
    let attrs = |i: usize| paths[i].attrs.as_deref().expect("candidates are accepted");
    // Step 0.
    if set.iter().any(|&i| paths[i].source == Source::Local) {
        set.retain(|&i| paths[i].source == Source::Local);
    }
    // Steps 1-3.
    keep_min(&mut set, |i| {
        std::cmp::Reverse(attrs(i).effective_local_pref())
    });
    keep_min(&mut set, |i| attrs(i).as_path_len);
    keep_min(&mut set, |i| attrs(i).origin);
    // Step 4: drop every path beaten on MED by one from the same neighbour AS.
    let snapshot = set.clone();
    set.retain(|&i| {
        !snapshot.iter().any(|&j| {
            attrs(j).neighbor_as() == attrs(i).neighbor_as() && med(attrs(j)) < med(attrs(i))
        })
    });
    // Step 5.
    if set.iter().any(|&i| !source_info(&paths[i]).ibgp) {
        set.retain(|&i| !source_info(&paths[i]).ibgp);
    }
    // Steps 7-9 order the multipath set.
    let key = |i: usize| {
        let path = &paths[i];
        let a = attrs(i);
        let id = a
            .originator_id
            .unwrap_or_else(|| source_info(path).router_id);
        let address = match path.source {
            Source::Local => None,
            Source::Peer(address) => Some(address),
        };
        (u32::from(id), a.cluster_list.len(), address)
    };
    set.sort_by_key(|&i| key(i));
    let selected = set.len();
    // Move the selected paths to the front, in order.
    let rest: Vec<usize> = (0..paths.len()).filter(|i| !set.contains(i)).collect();
    let mut order = set;
    order.extend(rest);
    if order.iter().enumerate().any(|(at, &from)| at != from) {
        let reordered: Vec<Path> = order.iter().map(|&i| paths[i].clone()).collect();
        paths.clone_from_slice(&reordered);
    }
    selected
}
