//! Path attributes as the RIB keeps them, and how they are read from a
//! decoded UPDATE.
//!
//! One UPDATE yields at most two attribute sets: one for its IPv4 NLRI (with
//! NEXT_HOP) and one for its MP_REACH_NLRI (with the MP next hop). Every
//! route of the set shares one [`Arc<Attrs>`], so a feed with few distinct
//! paths costs one attribute set per UPDATE, not per prefix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use netgauze_bgp_pkt::path_attribute::{AsPath, AsPathSegmentType, MpReach, PathAttributeValue};

use crate::packet::Update;

/// ORIGIN (RFC 4271 §5.1.1), ordered as the decision process prefers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Learned from an interior protocol (or originated here).
    Igp,
    /// Learned via EGP.
    Egp,
    /// Learned some other way.
    Incomplete,
}

impl Origin {
    /// The wire value.
    pub const fn code(self) -> u8 {
        match self {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }
    }
}

/// The attributes of one path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH flattened, nearest AS first. AS_SET members are included (for
    /// loop detection); [`Attrs::as_path_len`] counts a set as one.
    pub as_path: Vec<u32>,
    /// AS_PATH length for the decision process (RFC 4271 §9.1.2.2 a).
    pub as_path_len: u32,
    /// NEXT_HOP, or the global MP_REACH_NLRI next hop; `None` for locally
    /// originated paths (next hop self).
    pub next_hop: Option<IpAddr>,
    /// Link-local IPv6 next hop, when the peer sent one.
    pub next_hop_link_local: Option<Ipv6Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (only ever set from iBGP peers or locally).
    pub local_pref: Option<u32>,
    /// COMMUNITIES.
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<(u32, u32, u32)>,
    /// ORIGINATOR_ID (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), nearest cluster first.
    pub cluster_list: Vec<Ipv4Addr>,
    /// ATOMIC_AGGREGATE was present.
    pub atomic_aggregate: bool,
}

impl Attrs {
    /// Attributes of a path this node originates: ORIGIN IGP, empty AS_PATH,
    /// next hop self.
    pub fn local(communities: Vec<u32>, large_communities: Vec<(u32, u32, u32)>) -> Self {
        Self {
            origin: Origin::Igp,
            as_path: Vec::new(),
            as_path_len: 0,
            next_hop: None,
            next_hop_link_local: None,
            med: None,
            local_pref: None,
            communities,
            large_communities,
            originator_id: None,
            cluster_list: Vec::new(),
            atomic_aggregate: false,
        }
    }

    /// The neighbouring AS for MED comparison: the first AS of the path
    /// (`None` for a path from inside this AS).
    pub fn neighbor_as(&self) -> Option<u32> {
        self.as_path.first().copied()
    }

    /// LOCAL_PREF as the decision process sees it (RFC 4271 §9.1.1: 100 when absent).
    pub fn effective_local_pref(&self) -> u32 {
        self.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }
}

/// LOCAL_PREF assumed when a path carries none, and sent to iBGP peers.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The routes one UPDATE carries, split by family, with shared attributes.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Prefixes announced with their attributes (two groups at most).
    pub announced: Vec<(Arc<Attrs>, Vec<IpNet>)>,
    /// Prefixes withdrawn (including RFC 7606 treat-as-withdraw).
    pub withdrawn: Vec<IpNet>,
}

impl Received {
    /// Reads an UPDATE decoded for a session; `four_octet_as` says whether
    /// AS_PATH carried 4-octet numbers (AS4_PATH is merged in otherwise,
    /// RFC 6793 §4.2.3).
    pub fn from_update(update: &Update, four_octet_as: bool) -> Self {
        let mut withdrawn = Vec::new();
        update.withdrawn_into(&mut withdrawn);
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        update.announced_into(&mut v4, &mut v6);
        if v4.is_empty() && v6.is_empty() {
            return Self {
                announced: Vec::new(),
                withdrawn,
            };
        }
        let mut base = Attrs::local(Vec::new(), Vec::new());
        let mut as2: Option<(Vec<u32>, u32)> = None;
        let mut as4: Option<(Vec<u32>, u32)> = None;
        let mut next_hop_v4 = None;
        let mut mp_next_hop: Option<(IpAddr, Option<Ipv6Addr>)> = None;
        for attribute in update.message.path_attributes() {
            match attribute.value() {
                PathAttributeValue::Origin(origin) => {
                    base.origin = match u8::from(*origin) {
                        0 => Origin::Igp,
                        1 => Origin::Egp,
                        _ => Origin::Incomplete,
                    };
                }
                PathAttributeValue::AsPath(path) => as2 = Some(flatten_as_path(path)),
                PathAttributeValue::As4Path(path) => {
                    let mut asns = Vec::new();
                    let mut len = 0;
                    for segment in path.segments() {
                        len += segment_len(segment.segment_type(), segment.as_numbers().len());
                        asns.extend_from_slice(segment.as_numbers());
                    }
                    as4 = Some((asns, len));
                }
                PathAttributeValue::NextHop(hop) => next_hop_v4 = Some(hop.next_hop()),
                PathAttributeValue::MultiExitDiscriminator(med) => base.med = Some(med.metric()),
                PathAttributeValue::LocalPreference(pref) => base.local_pref = Some(pref.metric()),
                PathAttributeValue::AtomicAggregate(_) => base.atomic_aggregate = true,
                PathAttributeValue::Communities(c) => {
                    base.communities = c.communities().iter().map(|c| c.value()).collect();
                }
                PathAttributeValue::LargeCommunities(c) => {
                    base.large_communities = c
                        .communities()
                        .iter()
                        .map(|c| (c.global_admin(), c.local_data1(), c.local_data2()))
                        .collect();
                }
                PathAttributeValue::Originator(o) => base.originator_id = Some(o.id()),
                PathAttributeValue::ClusterList(list) => {
                    base.cluster_list = list.cluster_list().iter().map(|c| c.id()).collect();
                }
                PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                    next_hop_global,
                    next_hop_local,
                    ..
                }) => mp_next_hop = Some((IpAddr::V6(*next_hop_global), *next_hop_local)),
                PathAttributeValue::MpReach(MpReach::Ipv4Unicast {
                    next_hop,
                    next_hop_local,
                    ..
                }) => mp_next_hop = Some((*next_hop, *next_hop_local)),
                _ => {}
            }
        }
        let (path, len) = match (as2, as4) {
            (Some((path2, len2)), Some((path4, len4))) if !four_octet_as && len4 <= len2 => {
                // RFC 6793 §4.2.3: the leading ASes of AS_PATH the AS4_PATH lacks, then AS4_PATH.
                let keep = path2.len().saturating_sub(path4.len());
                let mut merged = path2[..keep].to_vec();
                merged.extend(path4);
                (merged, len2)
            }
            (Some(path), _) => path,
            (None, _) => (Vec::new(), 0),
        };
        base.as_path = path;
        base.as_path_len = len;

        let mut announced =
            Vec::with_capacity(usize::from(!v4.is_empty()) + usize::from(!v6.is_empty()));
        // A copy only when the UPDATE carries both families (an UPDATE
        // with neither returned above).
        let (for_v4, for_v6) = match (v4.is_empty(), v6.is_empty()) {
            (false, false) => (Some(base.clone()), Some(base)),
            (false, true) => (Some(base), None),
            (true, _) => (None, Some(base)),
        };
        if let Some(mut attrs) = for_v4 {
            attrs.next_hop = next_hop_v4
                .map(IpAddr::V4)
                .or(mp_next_hop.map(|(hop, _)| hop));
            announced.push((Arc::new(attrs), v4));
        }
        if let Some(mut attrs) = for_v6 {
            if let Some((hop, link_local)) = mp_next_hop {
                attrs.next_hop = Some(hop);
                attrs.next_hop_link_local = link_local;
            }
            announced.push((Arc::new(attrs), v6));
        }
        Self {
            announced,
            withdrawn,
        }
    }
}

fn segment_len(kind: AsPathSegmentType, count: usize) -> u32 {
    match kind {
        AsPathSegmentType::AsSet => 1,
        AsPathSegmentType::AsSequence => u32::try_from(count).unwrap_or(u32::MAX),
    }
}

fn flatten_as_path(path: &AsPath) -> (Vec<u32>, u32) {
    let mut asns = Vec::new();
    let mut len = 0;
    match path {
        AsPath::As2PathSegments(segments) => {
            for segment in segments {
                len += segment_len(segment.segment_type(), segment.as_numbers().len());
                asns.extend(segment.as_numbers().iter().copied().map(u32::from));
            }
        }
        AsPath::As4PathSegments(segments) => {
            for segment in segments {
                len += segment_len(segment.segment_type(), segment.as_numbers().len());
                asns.extend_from_slice(segment.as_numbers());
            }
        }
    }
    (asns, len)
}
