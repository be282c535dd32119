//! Encoding the Adj-RIB-Out: UPDATEs packed with as many NLRI as fit in
//! 4,096 octets, one attribute block per group of prefixes.
//!
//! The attributes are written here rather than through netgauze's object
//! model because a table dump writes one attribute block per group and then
//! only prefixes; building a typed message per UPDATE would cost an
//! allocation per prefix. The layout follows RFC 4271 §4.3, RFC 4760 (MP
//! attributes), RFC 6793 (AS4_PATH), RFC 4456 (ORIGINATOR_ID, CLUSTER_LIST)
//! and RFC 8092 (LARGE_COMMUNITY). The decoder in [`crate::packet`] reads
//! these messages back in the tests.

use std::net::IpAddr;

use ipnet::IpNet;

use super::attrs::Attrs;
use crate::packet::update::attr;
use crate::packet::{AS_TRANS, Family, HEADER_LEN, MAX_MESSAGE_LEN, kind};

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED: u8 = 0x10;
const AS_SEQUENCE: u8 = 2;

fn put_attr(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | EXTENDED);
        out.push(code);
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(flags);
        out.push(code);
        out.push(u8::try_from(value.len()).expect("checked: at most 255"));
    }
    out.extend_from_slice(value);
}

fn as_path_value(path: &[u32], four_octet: bool) -> Vec<u8> {
    let mut value = Vec::with_capacity(2 + path.len() * 4);
    for chunk in path.chunks(255) {
        value.push(AS_SEQUENCE);
        value.push(u8::try_from(chunk.len()).expect("chunks of at most 255"));
        for &asn in chunk {
            if four_octet {
                value.extend_from_slice(&asn.to_be_bytes());
            } else {
                let short = u16::try_from(asn).unwrap_or(AS_TRANS);
                value.extend_from_slice(&short.to_be_bytes());
            }
        }
    }
    value
}

/// The path attributes of `attrs` except NEXT_HOP and MP_REACH_NLRI.
fn common_attributes(attrs: &Attrs, four_octet_as: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_attr(&mut out, TRANSITIVE, attr::ORIGIN, &[attrs.origin.code()]);
    put_attr(
        &mut out,
        TRANSITIVE,
        attr::AS_PATH,
        &as_path_value(&attrs.as_path, four_octet_as),
    );
    if !four_octet_as && attrs.as_path.iter().any(|&asn| asn > u32::from(u16::MAX)) {
        put_attr(
            &mut out,
            OPTIONAL | TRANSITIVE,
            attr::AS4_PATH,
            &as_path_value(&attrs.as_path, true),
        );
    }
    if let Some(med) = attrs.med {
        put_attr(&mut out, OPTIONAL, attr::MED, &med.to_be_bytes());
    }
    if let Some(pref) = attrs.local_pref {
        put_attr(&mut out, TRANSITIVE, attr::LOCAL_PREF, &pref.to_be_bytes());
    }
    if attrs.atomic_aggregate {
        put_attr(&mut out, TRANSITIVE, attr::ATOMIC_AGGREGATE, &[]);
    }
    if !attrs.communities.is_empty() {
        let value: Vec<u8> = attrs
            .communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        put_attr(&mut out, OPTIONAL | TRANSITIVE, attr::COMMUNITIES, &value);
    }
    if let Some(id) = attrs.originator_id {
        put_attr(&mut out, OPTIONAL, attr::ORIGINATOR_ID, &id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        let value: Vec<u8> = attrs.cluster_list.iter().flat_map(|c| c.octets()).collect();
        put_attr(&mut out, OPTIONAL, attr::CLUSTER_LIST, &value);
    }
    if !attrs.large_communities.is_empty() {
        let value: Vec<u8> = attrs
            .large_communities
            .iter()
            .flat_map(|&(a, b, c)| {
                let mut bytes = [0u8; 12];
                bytes[..4].copy_from_slice(&a.to_be_bytes());
                bytes[4..8].copy_from_slice(&b.to_be_bytes());
                bytes[8..].copy_from_slice(&c.to_be_bytes());
                bytes
            })
            .collect();
        put_attr(
            &mut out,
            OPTIONAL | TRANSITIVE,
            attr::LARGE_COMMUNITIES,
            &value,
        );
    }
    out
}

/// Appends `prefix` as NLRI (length in bits, then the significant octets).
fn put_prefix(out: &mut Vec<u8>, prefix: &IpNet) {
    let len = prefix.prefix_len();
    out.push(len);
    let octets = usize::from(len).div_ceil(8);
    match prefix.trunc().addr() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..octets]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..octets]),
    }
}

fn prefix_len_on_wire(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

fn message(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let total = HEADER_LEN + 2 + withdrawn.len() + 2 + attributes.len() + nlri.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(
        &u16::try_from(total)
            .expect("callers keep messages within 4096 octets")
            .to_be_bytes(),
    );
    out.push(kind::UPDATE);
    out.extend_from_slice(
        &u16::try_from(withdrawn.len())
            .expect("within one message")
            .to_be_bytes(),
    );
    out.extend_from_slice(withdrawn);
    out.extend_from_slice(
        &u16::try_from(attributes.len())
            .expect("within one message")
            .to_be_bytes(),
    );
    out.extend_from_slice(attributes);
    out.extend_from_slice(nlri);
    out
}

/// Splits `prefixes` into runs whose encoding fits in `room` octets each.
fn runs<'a>(prefixes: &'a [IpNet], room: usize) -> impl Iterator<Item = &'a [IpNet]> + 'a {
    let mut rest = prefixes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let mut n = 0;
        for prefix in rest {
            let len = prefix_len_on_wire(prefix);
            if used + len > room && n > 0 {
                break;
            }
            used += len;
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// UPDATEs announcing `prefixes` (all of `family`) with `attrs`, whose
/// `next_hop` must be set (the exporter resolved it).
pub fn encode_announce(
    family: Family,
    attrs: &Attrs,
    prefixes: &[IpNet],
    four_octet_as: bool,
    out: &mut Vec<Vec<u8>>,
) {
    let mut attributes = common_attributes(attrs, four_octet_as);
    match family {
        Family::Ipv4Unicast => {
            let hop = match attrs.next_hop {
                Some(IpAddr::V4(hop)) => hop,
                _ => std::net::Ipv4Addr::UNSPECIFIED,
            };
            put_attr(&mut attributes, TRANSITIVE, attr::NEXT_HOP, &hop.octets());
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - attributes.len();
            for run in runs(prefixes, room) {
                let mut nlri = Vec::with_capacity(room);
                for prefix in run {
                    put_prefix(&mut nlri, prefix);
                }
                out.push(message(&[], &attributes, &nlri));
            }
        }
        Family::Ipv6Unicast => {
            let global = match attrs.next_hop {
                Some(IpAddr::V6(hop)) => hop,
                Some(IpAddr::V4(hop)) => hop.to_ipv6_mapped(),
                None => std::net::Ipv6Addr::UNSPECIFIED,
            };
            let mut head = Vec::with_capacity(40);
            head.extend_from_slice(&family.afi().to_be_bytes());
            head.push(family.safi());
            match attrs.next_hop_link_local {
                Some(local) => {
                    head.push(32);
                    head.extend_from_slice(&global.octets());
                    head.extend_from_slice(&local.octets());
                }
                None => {
                    head.push(16);
                    head.extend_from_slice(&global.octets());
                }
            }
            head.push(0);
            // The MP_REACH_NLRI header (4 octets, extended length) and `head`.
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - attributes.len() - 4 - head.len();
            for run in runs(prefixes, room) {
                let mut value = head.clone();
                for prefix in run {
                    put_prefix(&mut value, prefix);
                }
                let mut block = Vec::with_capacity(attributes.len() + value.len() + 4);
                // MP_REACH_NLRI first, as most speakers send it.
                put_attr_extended(&mut block, OPTIONAL, attr::MP_REACH, &value);
                block.extend_from_slice(&attributes);
                out.push(message(&[], &block, &[]));
            }
        }
    }
}

fn put_attr_extended(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    out.push(flags | EXTENDED);
    out.push(code);
    let len = u16::try_from(value.len()).expect("within one message");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// UPDATEs withdrawing `prefixes` (all of `family`).
pub fn encode_withdraw(family: Family, prefixes: &[IpNet], out: &mut Vec<Vec<u8>>) {
    match family {
        Family::Ipv4Unicast => {
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 4;
            for run in runs(prefixes, room) {
                let mut withdrawn = Vec::with_capacity(room);
                for prefix in run {
                    put_prefix(&mut withdrawn, prefix);
                }
                out.push(message(&withdrawn, &[], &[]));
            }
        }
        Family::Ipv6Unicast => {
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - 4 - 3;
            for run in runs(prefixes, room) {
                let mut value = Vec::with_capacity(room);
                value.extend_from_slice(&family.afi().to_be_bytes());
                value.push(family.safi());
                for prefix in run {
                    put_prefix(&mut value, prefix);
                }
                let mut block = Vec::with_capacity(value.len() + 4);
                put_attr_extended(&mut block, OPTIONAL, attr::MP_UNREACH, &value);
                out.push(message(&[], &block, &[]));
            }
        }
    }
}

/// The family of a prefix.
pub fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::Ipv4Unicast,
        IpNet::V6(_) => Family::Ipv6Unicast,
    }
}
