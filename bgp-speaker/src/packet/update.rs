//! UPDATE messages: decoding with RFC 7606 error handling, and encoding.
//!
//! Decoding frames every path attribute itself (flags, type, length) and hands
//! each one alone to netgauze, so an error is always tied to the attribute
//! that caused it. The action then follows RFC 7606 §7 for that attribute:
//!
//! | attribute | malformed → |
//! |---|---|
//! | ORIGIN, AS_PATH, NEXT_HOP, MED, COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST, EXTENDED/LARGE COMMUNITIES, others | treat-as-withdraw |
//! | LOCAL_PREF | treat-as-withdraw from iBGP; from eBGP it is always discarded (RFC 4271 §5.1.5) |
//! | ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR | attribute discard |
//! | MP_REACH_NLRI, MP_UNREACH_NLRI (or either twice) | session reset |
//! | unrecognized well-known, bad withdrawn/attribute/NLRI lengths | session reset |
//!
//! Flag errors take the action of their attribute (§3.c), a duplicated
//! attribute other than MP_* keeps its first copy (§3.g), a missing ORIGIN,
//! AS_PATH or (with IPv4 NLRI) NEXT_HOP means treat-as-withdraw (§3.d), an
//! attribute overrunning the attribute block means treat-as-withdraw (§4).

use std::io::Cursor;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::community::Community;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin, PathAttribute,
    PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::{AS_TRANS, DecodeOptions, EncodeError, Family, UpdateError, finish};

/// Path attribute type codes Twill knows.
pub mod attr {
    /// ORIGIN.
    pub const ORIGIN: u8 = 1;
    /// AS_PATH.
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP.
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC.
    pub const MED: u8 = 4;
    /// LOCAL_PREF.
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE.
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// IPv6 address specific extended communities (RFC 5701).
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
    /// Only to Customer (RFC 9234).
    pub const OTC: u8 = 35;
}

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_PARTIAL: u8 = 0x20;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// The outcome for the routes of an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Use the UPDATE as received (minus any discarded attributes).
    Normal,
    /// RFC 7606 treat-as-withdraw: every prefix announced is withdrawn instead.
    TreatAsWithdraw,
}

/// What happened to one bad attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemAction {
    /// The attribute was dropped; the routes stand.
    AttributeDiscard,
    /// The routes of the UPDATE are withdrawn.
    TreatAsWithdraw,
}

/// One attribute error that did not need a session reset (kept for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeProblem {
    /// Attribute type code (0 when the attribute header itself was cut short).
    pub code: u8,
    /// What was done about it.
    pub action: ProblemAction,
    /// What was wrong.
    pub reason: String,
}

/// A decoded UPDATE after RFC 7606 error handling.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The UPDATE with the usable attributes only.
    pub message: BgpUpdateMessage,
    /// Whether the announced routes stand or are withdrawn.
    pub treatment: Treatment,
    /// Attribute errors found (empty for a clean UPDATE).
    pub problems: Vec<AttributeProblem>,
}

impl Update {
    /// IPv4 prefixes announced (none under treat-as-withdraw).
    pub fn announced_v4(&self) -> Vec<Ipv4Net> {
        if self.treatment == Treatment::TreatAsWithdraw {
            return Vec::new();
        }
        self.reach_v4()
    }

    /// IPv4 prefixes withdrawn, including announced ones under treat-as-withdraw.
    pub fn withdrawn_v4(&self) -> Vec<Ipv4Net> {
        let mut out: Vec<Ipv4Net> = self
            .message
            .withdraw_routes()
            .iter()
            .map(|a| a.network().address())
            .collect();
        for value in self.values() {
            if let PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) = value {
                out.extend(nlri.iter().map(|a| a.network().address()));
            }
        }
        if self.treatment == Treatment::TreatAsWithdraw {
            out.extend(self.reach_v4());
        }
        out
    }

    /// IPv6 prefixes announced (none under treat-as-withdraw).
    pub fn announced_v6(&self) -> Vec<Ipv6Net> {
        if self.treatment == Treatment::TreatAsWithdraw {
            return Vec::new();
        }
        self.reach_v6()
    }

    /// IPv6 prefixes withdrawn, including announced ones under treat-as-withdraw.
    pub fn withdrawn_v6(&self) -> Vec<Ipv6Net> {
        let mut out = Vec::new();
        for value in self.values() {
            if let PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) = value {
                out.extend(nlri.iter().map(|a| a.network().address()));
            }
        }
        if self.treatment == Treatment::TreatAsWithdraw {
            out.extend(self.reach_v6());
        }
        out
    }

    /// Appends the announced prefixes (none under treat-as-withdraw) to
    /// `v4` and `v6`: [`Update::announced_v4`] and [`Update::announced_v6`]
    /// without vectors of their own.
    pub fn announced_into(&self, v4: &mut Vec<IpNet>, v6: &mut Vec<IpNet>) {
        if self.treatment == Treatment::TreatAsWithdraw {
            return;
        }
        self.reach_into(v4, v6);
    }

    /// Appends the withdrawn prefixes of both families, including those
    /// announced under treat-as-withdraw, to `out`: [`Update::withdrawn_v4`]
    /// then [`Update::withdrawn_v6`].
    pub fn withdrawn_into(&self, out: &mut Vec<IpNet>) {
        let v4 = |a: &Ipv4UnicastAddress| IpNet::V4(a.network().address());
        let v6 = |a: &Ipv6UnicastAddress| IpNet::V6(a.network().address());
        out.extend(self.message.withdraw_routes().iter().map(v4));
        for value in self.values() {
            if let PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { nlri }) = value {
                out.extend(nlri.iter().map(v4));
            }
        }
        let mut reach_v6 = Vec::new();
        if self.treatment == Treatment::TreatAsWithdraw {
            self.reach_into(out, &mut reach_v6);
        }
        for value in self.values() {
            if let PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) = value {
                out.extend(nlri.iter().map(v6));
            }
        }
        out.append(&mut reach_v6);
    }

    fn reach_into(&self, v4: &mut Vec<IpNet>, v6: &mut Vec<IpNet>) {
        v4.extend(
            self.message
                .nlri()
                .iter()
                .map(|a| IpNet::V4(a.network().address())),
        );
        for value in self.values() {
            match value {
                PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) => {
                    v4.extend(nlri.iter().map(|a| IpNet::V4(a.network().address())));
                }
                PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                    v6.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
                }
                _ => {}
            }
        }
    }

    /// The family whose End-of-RIB marker this is (RFC 4724 §2), if it is one.
    pub fn end_of_rib(&self) -> Option<Family> {
        self.message
            .end_of_rib()
            .and_then(Family::from_address_type)
    }

    fn values(&self) -> impl Iterator<Item = &PathAttributeValue> {
        self.message
            .path_attributes()
            .iter()
            .map(PathAttribute::value)
    }

    fn reach_v4(&self) -> Vec<Ipv4Net> {
        let mut out: Vec<Ipv4Net> = self
            .message
            .nlri()
            .iter()
            .map(|a| a.network().address())
            .collect();
        for value in self.values() {
            if let PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) = value {
                out.extend(nlri.iter().map(|a| a.network().address()));
            }
        }
        out
    }

    fn reach_v6(&self) -> Vec<Ipv6Net> {
        let mut out = Vec::new();
        for value in self.values() {
            if let PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) = value {
                out.extend(nlri.iter().map(|a| a.network().address()));
            }
        }
        out
    }
}

/// The RFC 7606 action for a malformed attribute of type `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Discard,
    Withdraw,
    Reset,
}

fn action_for(code: u8, ibgp: bool) -> Action {
    match code {
        attr::MP_REACH | attr::MP_UNREACH => Action::Reset,
        attr::ATOMIC_AGGREGATE | attr::AGGREGATOR | attr::AS4_PATH | attr::AS4_AGGREGATOR => {
            Action::Discard
        }
        attr::LOCAL_PREF if !ibgp => Action::Discard,
        _ => Action::Withdraw,
    }
}

/// Expected (optional, transitive) flags of the attributes Twill knows.
fn expected_flags(code: u8) -> Option<(bool, bool)> {
    match code {
        attr::ORIGIN
        | attr::AS_PATH
        | attr::NEXT_HOP
        | attr::LOCAL_PREF
        | attr::ATOMIC_AGGREGATE => Some((false, true)),
        attr::MED
        | attr::ORIGINATOR_ID
        | attr::CLUSTER_LIST
        | attr::MP_REACH
        | attr::MP_UNREACH => Some((true, false)),
        attr::AGGREGATOR
        | attr::COMMUNITIES
        | attr::EXTENDED_COMMUNITIES
        | attr::AS4_PATH
        | attr::AS4_AGGREGATOR
        | attr::IPV6_EXTENDED_COMMUNITIES
        | attr::LARGE_COMMUNITIES
        | attr::OTC => Some((true, true)),
        _ => None,
    }
}

fn flags_ok(code: u8, flags: u8) -> bool {
    let Some((optional, transitive)) = expected_flags(code) else {
        return true;
    };
    let partial = flags & FLAG_PARTIAL != 0;
    (flags & FLAG_OPTIONAL != 0) == optional
        && (flags & FLAG_TRANSITIVE != 0) == transitive
        // Only optional transitive attributes may be partial.
        && (!partial || (optional && transitive))
}

pub(super) fn context(options: &DecodeOptions) -> BgpParsingContext {
    BgpParsingContext::new(
        options.four_octet_as,
        Default::default(),
        Default::default(),
        false,
        false,
        false,
        true,
    )
}

fn read_u16(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
}

/// Decodes the body of an UPDATE (after the 19-octet header).
///
/// `Err` means the session must be reset with the error's NOTIFICATION; every
/// other problem is reported in the returned [`Update`].
pub fn decode_update(body: &[u8], options: &DecodeOptions) -> Result<Update, UpdateError> {
    let malformed = |reason| UpdateError::MalformedAttributeList { reason };
    let withdrawn_len = read_u16(body, 0).ok_or(malformed("update shorter than 4 octets"))?;
    let withdrawn_end = 2 + withdrawn_len;
    let attrs_len = read_u16(body, withdrawn_end)
        .ok_or(malformed("withdrawn routes length overruns the message"))?;
    let attrs_start = withdrawn_end + 2;
    let attrs_end = attrs_start + attrs_len;
    let Some(attrs) = body.get(attrs_start..attrs_end) else {
        return Err(malformed(
            "total path attribute length overruns the message",
        ));
    };
    let withdrawn = &body[2..withdrawn_end];
    let nlri = &body[attrs_end..];

    let mut ctx = context(options);
    let mut kept: Vec<PathAttribute> = Vec::with_capacity(count_attributes(attrs));
    let mut problems = Vec::new();
    let mut worst: Option<Action> = None;
    let mut seen = [false; 256];
    let mut pos = 0;
    while pos < attrs.len() {
        let flags = attrs[pos];
        let header_len = if flags & FLAG_EXTENDED_LENGTH != 0 {
            4
        } else {
            3
        };
        let value_len = match (attrs.get(pos + 1), header_len) {
            (Some(_), 4) => read_u16(attrs, pos + 2),
            (Some(_), _) => attrs.get(pos + 2).map(|&b| usize::from(b)),
            (None, _) => None,
        };
        let code = attrs.get(pos + 1).copied().unwrap_or(0);
        let end = value_len.map(|len| pos + header_len + len);
        let Some(raw) = end.and_then(|end| attrs.get(pos..end)) else {
            // RFC 7606 §4: the attribute block is relied on to find the NLRI.
            if matches!(code, attr::MP_REACH | attr::MP_UNREACH) {
                return Err(UpdateError::MalformedMultiprotocol {
                    code,
                    reason: "attribute overruns the path attribute block".to_string(),
                    attribute: attrs[pos..].to_vec(),
                });
            }
            problems.push(AttributeProblem {
                code,
                action: ProblemAction::TreatAsWithdraw,
                reason: "attribute overruns the path attribute block".to_string(),
            });
            worst = worst.max(Some(Action::Withdraw));
            break;
        };
        pos += raw.len();

        if seen[usize::from(code)] {
            if matches!(code, attr::MP_REACH | attr::MP_UNREACH) {
                return Err(malformed("mp_reach_nlri or mp_unreach_nlri appears twice"));
            }
            problems.push(AttributeProblem {
                code,
                action: ProblemAction::AttributeDiscard,
                reason: "duplicate attribute".to_string(),
            });
            continue;
        }
        seen[usize::from(code)] = true;

        if flags & FLAG_OPTIONAL == 0 && expected_flags(code).is_none() {
            return Err(UpdateError::UnrecognizedWellKnown {
                code,
                attribute: raw.to_vec(),
            });
        }
        if code == attr::LOCAL_PREF && !options.ibgp {
            // RFC 4271 §5.1.5: ignored when received from an external peer.
            continue;
        }

        let parsed = if flags_ok(code, flags) {
            let mut reader = SliceReader::new(raw);
            match PathAttribute::parse(&mut reader, &mut ctx) {
                Ok(_) if reader.remaining() != 0 => {
                    Err("attribute longer than its content".to_string())
                }
                Ok(attribute) => Ok(attribute),
                Err(error) => Err(error.to_string()),
            }
        } else {
            Err(format!(
                "attribute flags {flags:#04x} are wrong for type {code}"
            ))
        };
        match parsed {
            Ok(attribute) => kept.push(attribute),
            Err(reason) => match action_for(code, options.ibgp) {
                Action::Reset => {
                    return Err(UpdateError::MalformedMultiprotocol {
                        code,
                        reason,
                        attribute: raw.to_vec(),
                    });
                }
                action => {
                    let action_taken = if action == Action::Discard {
                        ProblemAction::AttributeDiscard
                    } else {
                        ProblemAction::TreatAsWithdraw
                    };
                    problems.push(AttributeProblem {
                        code,
                        action: action_taken,
                        reason,
                    });
                    worst = worst.max(Some(action));
                }
            },
        }
    }

    let (withdrawn_routes, nlri) = match (unicast_prefixes(withdrawn), unicast_prefixes(nlri)) {
        (Some(withdrawn), Some(nlri)) => (withdrawn, nlri),
        // Something to report or to drop: netgauze's reading, with an
        // empty attribute block, says which.
        _ => {
            let mut prefixes = Vec::with_capacity(withdrawn.len() + nlri.len() + 4);
            prefixes.extend_from_slice(&body[..withdrawn_end]);
            prefixes.extend_from_slice(&[0, 0]);
            prefixes.extend_from_slice(nlri);
            let mut reader = SliceReader::new(&prefixes);
            let routes = BgpUpdateMessage::parse(&mut reader, &mut ctx).map_err(|error| {
                UpdateError::InvalidNetworkField {
                    reason: error.to_string(),
                }
            })?;
            (routes.withdraw_routes().to_vec(), routes.nlri().to_vec())
        }
    };

    // RFC 7606 §3.d: missing well-known mandatory attributes.
    let has_v4_nlri = !nlri.is_empty();
    let announces = has_v4_nlri || seen[usize::from(attr::MP_REACH)];
    if announces {
        let mandatory: &[u8] = if has_v4_nlri {
            &[attr::ORIGIN, attr::AS_PATH, attr::NEXT_HOP]
        } else {
            &[attr::ORIGIN, attr::AS_PATH]
        };
        for &code in mandatory {
            if !seen[usize::from(code)]
                || !kept.iter().any(|a| attribute_code(a.value()) == Some(code))
            {
                problems.push(AttributeProblem {
                    code,
                    action: ProblemAction::TreatAsWithdraw,
                    reason: "missing well-known mandatory attribute".to_string(),
                });
                worst = worst.max(Some(Action::Withdraw));
            }
        }
    }

    let treatment = if worst == Some(Action::Withdraw) {
        Treatment::TreatAsWithdraw
    } else {
        Treatment::Normal
    };
    Ok(Update {
        message: BgpUpdateMessage::new(withdrawn_routes, kept, nlri),
        treatment,
        problems,
    })
}

/// How many attributes the block's headers announce (for sizing only).
fn count_attributes(attrs: &[u8]) -> usize {
    let mut count = 0;
    let mut pos = 0;
    while let (Some(&flags), Some(&len)) = (attrs.get(pos), attrs.get(pos + 2)) {
        let (header, len) = if flags & FLAG_EXTENDED_LENGTH != 0 {
            let Some(&low) = attrs.get(pos + 3) else {
                break;
            };
            (4, usize::from(u16::from_be_bytes([len, low])))
        } else {
            (3, usize::from(len))
        };
        count += 1;
        pos += header + len;
    }
    count
}

/// Unicast IPv4 prefixes (RFC 4271 §4.3, no path identifiers) read from
/// `field`, in a vector of exactly their number; `None` if any is not a
/// valid unicast prefix or the field does not end with the last one.
pub(super) fn unicast_prefixes(field: &[u8]) -> Option<Vec<Ipv4UnicastAddress>> {
    let mut count = 0;
    let mut pos = 0;
    while let Some(&bits) = field.get(pos) {
        pos += 1 + usize::from(bits).div_ceil(8);
        count += 1;
    }
    if pos != field.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut reader = SliceReader::new(field);
    while !reader.is_empty() {
        out.push(Ipv4UnicastAddress::parse(&mut reader, false).ok()?);
    }
    Some(out)
}

fn attribute_code(value: &PathAttributeValue) -> Option<u8> {
    Some(match value {
        PathAttributeValue::Origin(_) => attr::ORIGIN,
        PathAttributeValue::AsPath(_) => attr::AS_PATH,
        PathAttributeValue::NextHop(_) => attr::NEXT_HOP,
        PathAttributeValue::LocalPreference(_) => attr::LOCAL_PREF,
        _ => return None,
    })
}

/// Attributes of the routes in one UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH as one AS_SEQUENCE, nearest AS first (empty for iBGP-originated routes).
    pub as_path: Vec<u32>,
    /// NEXT_HOP for IPv4 NLRI.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Global IPv6 next hop for MP_REACH_NLRI.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Link-local IPv6 next hop, sent as the second next hop when set.
    pub next_hop_v6_link_local: Option<Ipv6Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (send to iBGP peers only).
    pub local_pref: Option<u32>,
    /// COMMUNITIES (RFC 1997) as 32-bit values.
    pub communities: Vec<u32>,
}

fn attribute(
    optional: bool,
    transitive: bool,
    extended_length: bool,
    value: PathAttributeValue,
) -> Result<PathAttribute, EncodeError> {
    PathAttribute::from(optional, transitive, false, extended_length, value).map_err(
        |(_, error)| EncodeError::Serializer {
            reason: format!("{error:?}"),
        },
    )
}

fn as_path_attributes(
    path: &[u32],
    four_octet_as: bool,
) -> Result<Vec<PathAttribute>, EncodeError> {
    // A segment holds at most 255 ASNs.
    let segments4: Vec<As4PathSegment> = path
        .chunks(255)
        .map(|chunk| As4PathSegment::new(AsPathSegmentType::AsSequence, chunk.to_vec()))
        .collect();
    let long = 2 + path.len() * 4 + path.len() / 255 * 2 > 255;
    if four_octet_as {
        let value = PathAttributeValue::AsPath(AsPath::As4PathSegments(segments4.into()));
        return Ok(vec![attribute(false, true, long, value)?]);
    }
    // RFC 6793 §4.2.2: an old speaker gets AS_TRANS, the real path in AS4_PATH.
    let segments2: Vec<As2PathSegment> = path
        .chunks(255)
        .map(|chunk| {
            let asns: Vec<u16> = chunk
                .iter()
                .map(|&asn| u16::try_from(asn).unwrap_or(AS_TRANS))
                .collect();
            As2PathSegment::new(AsPathSegmentType::AsSequence, asns)
        })
        .collect();
    let mut out = vec![attribute(
        false,
        true,
        long,
        PathAttributeValue::AsPath(AsPath::As2PathSegments(segments2.into())),
    )?];
    if path.iter().any(|&asn| asn > u32::from(u16::MAX)) {
        out.push(attribute(
            true,
            true,
            long,
            PathAttributeValue::As4Path(As4Path::new(segments4)),
        )?);
    }
    Ok(out)
}

fn common_attributes(
    attrs: &RouteAttributes,
    four_octet_as: bool,
) -> Result<Vec<PathAttribute>, EncodeError> {
    let mut out = vec![attribute(
        false,
        true,
        false,
        PathAttributeValue::Origin(attrs.origin),
    )?];
    out.extend(as_path_attributes(&attrs.as_path, four_octet_as)?);
    Ok(out)
}

fn optional_attributes(
    attrs: &RouteAttributes,
    out: &mut Vec<PathAttribute>,
) -> Result<(), EncodeError> {
    if let Some(med) = attrs.med {
        out.push(attribute(
            true,
            false,
            false,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        )?);
    }
    if let Some(local_pref) = attrs.local_pref {
        out.push(attribute(
            false,
            true,
            false,
            PathAttributeValue::LocalPreference(LocalPreference::new(local_pref)),
        )?);
    }
    if !attrs.communities.is_empty() {
        let communities: Vec<Community> = attrs
            .communities
            .iter()
            .copied()
            .map(Community::new)
            .collect();
        out.push(attribute(
            true,
            true,
            attrs.communities.len() * 4 > 255,
            PathAttributeValue::Communities(Communities::new(communities)),
        )?);
    }
    Ok(())
}

fn v4_prefixes(prefixes: &[Ipv4Net]) -> Result<Vec<Ipv4UnicastAddress>, EncodeError> {
    prefixes
        .iter()
        .map(|net| {
            Ipv4Unicast::from_net(net.trunc())
                .map(Ipv4UnicastAddress::new_no_path_id)
                .map_err(|_| EncodeError::NotUnicast {
                    prefix: net.to_string(),
                })
        })
        .collect()
}

fn v6_prefixes(prefixes: &[Ipv6Net]) -> Result<Vec<Ipv6UnicastAddress>, EncodeError> {
    prefixes
        .iter()
        .map(|net| {
            Ipv6Unicast::from_net(net.trunc())
                .map(|n| Ipv6UnicastAddress::new(None, n))
                .map_err(|_| EncodeError::NotUnicast {
                    prefix: net.to_string(),
                })
        })
        .collect()
}

fn write(update: BgpUpdateMessage) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    BgpMessage::Update(update)
        .write(&mut Cursor::new(&mut out))
        .map_err(|e| EncodeError::Serializer {
            reason: e.to_string(),
        })?;
    finish(out)
}

/// Encodes an UPDATE for IPv4 unicast: `withdraw` in the withdrawn routes
/// field, `announce` as NLRI with `attrs` (which must then carry `next_hop_v4`).
pub fn encode_update_v4(
    announce: &[Ipv4Net],
    withdraw: &[Ipv4Net],
    attrs: &RouteAttributes,
    four_octet_as: bool,
) -> Result<Vec<u8>, EncodeError> {
    let mut path_attributes = Vec::new();
    if !announce.is_empty() {
        path_attributes = common_attributes(attrs, four_octet_as)?;
        let next_hop = attrs.next_hop_v4.unwrap_or(Ipv4Addr::UNSPECIFIED);
        path_attributes.push(attribute(
            false,
            true,
            false,
            PathAttributeValue::NextHop(NextHop::new(next_hop)),
        )?);
        optional_attributes(attrs, &mut path_attributes)?;
    }
    write(BgpUpdateMessage::new(
        v4_prefixes(withdraw)?,
        path_attributes,
        v4_prefixes(announce)?,
    ))
}

/// Encodes an UPDATE for IPv6 unicast: MP_REACH_NLRI for `announce` (with
/// `attrs`, which must then carry `next_hop_v6`) and MP_UNREACH_NLRI for `withdraw`.
pub fn encode_update_v6(
    announce: &[Ipv6Net],
    withdraw: &[Ipv6Net],
    attrs: &RouteAttributes,
    four_octet_as: bool,
) -> Result<Vec<u8>, EncodeError> {
    let mut path_attributes = Vec::new();
    if !announce.is_empty() {
        path_attributes = common_attributes(attrs, four_octet_as)?;
        path_attributes.push(attribute(
            true,
            false,
            true,
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global: attrs.next_hop_v6.unwrap_or(Ipv6Addr::UNSPECIFIED),
                next_hop_local: attrs.next_hop_v6_link_local,
                nlri: v6_prefixes(announce)?.into(),
            }),
        )?);
        optional_attributes(attrs, &mut path_attributes)?;
    }
    if !withdraw.is_empty() {
        path_attributes.push(attribute(
            true,
            false,
            true,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                nlri: v6_prefixes(withdraw)?.into(),
            }),
        )?);
    }
    write(BgpUpdateMessage::new(
        Vec::new(),
        path_attributes,
        Vec::new(),
    ))
}

/// Encodes the End-of-RIB marker for `family` (RFC 4724 §2).
pub fn encode_end_of_rib(family: Family) -> Result<Vec<u8>, EncodeError> {
    let path_attributes = match family {
        Family::Ipv4Unicast => Vec::new(),
        Family::Ipv6Unicast => vec![attribute(
            true,
            false,
            true,
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast {
                nlri: Vec::new().into(),
            }),
        )?],
    };
    write(BgpUpdateMessage::new(
        Vec::new(),
        path_attributes,
        Vec::new(),
    ))
}
