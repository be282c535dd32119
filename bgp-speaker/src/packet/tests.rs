#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::path_attribute::{Origin, PathAttributeValue};
use proptest::prelude::*;

use super::update::attr;
use super::*;

/// A message with a correct header around `body`.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn decode_one(bytes: &[u8], options: DecodeOptions) -> Result<Message, DecodeError> {
    let (message, used) = decode(bytes, &options)?.expect("complete message");
    assert_eq!(used, bytes.len());
    Ok(message)
}

/// A NOTIFICATION as (code, subcode, data).
type Expected = (u8, u8, Vec<u8>);

fn notification_of(bytes: &[u8], options: DecodeOptions) -> Expected {
    let error = decode_one(bytes, options).expect_err("must be refused");
    let n = error.notification();
    (n.code, n.subcode, n.data)
}

#[test]
fn header_errors_map_to_message_header_notifications() {
    let mut bad_marker = message(kind::KEEPALIVE, &[]);
    bad_marker[3] = 0;
    let mut short = message(kind::KEEPALIVE, &[]);
    short[16..18].copy_from_slice(&18u16.to_be_bytes());
    let mut long = message(kind::UPDATE, &[0, 0, 0, 0]);
    long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("marker not all ones", bad_marker, (1, 1, vec![])),
        ("length below 19", short, (1, 2, vec![0, 18])),
        ("length above 4096", long, (1, 2, vec![0x10, 0x01])),
        (
            "keepalive with a body",
            message(kind::KEEPALIVE, &[0]),
            (1, 2, vec![0, 20]),
        ),
        (
            "open shorter than 29",
            message(kind::OPEN, &[4; 9]),
            (1, 2, vec![0, 28]),
        ),
        (
            "update shorter than 23",
            message(kind::UPDATE, &[0, 0, 0]),
            (1, 2, vec![0, 22]),
        ),
        (
            "notification shorter than 21",
            message(kind::NOTIFICATION, &[6]),
            (1, 2, vec![0, 20]),
        ),
        ("unknown type", message(6, &[]), (1, 3, vec![6])),
        ("type zero", message(0, &[]), (1, 3, vec![0])),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(
            notification_of(&bytes, DecodeOptions::default()),
            expected,
            "{name}"
        );
        let error = decode_one(&bytes, DecodeOptions::default()).unwrap_err();
        assert!(error.is_header_error(), "{name}");
    }
}

#[test]
fn incomplete_messages_ask_for_more_bytes() {
    let keepalive = encode_keepalive();
    for len in 0..keepalive.len() {
        assert_eq!(
            decode(&keepalive[..len], &DecodeOptions::default()),
            Ok(None),
            "{len} bytes"
        );
    }
    let mut two = keepalive.clone();
    two.extend_from_slice(&keepalive);
    let (first, used) = decode(&two, &DecodeOptions::default()).unwrap().unwrap();
    assert_eq!((first, used), (Message::Keepalive, 19));
}

#[test]
fn a_bad_length_is_reported_before_the_body_arrives() {
    let mut header = vec![0xff; 16];
    header.extend_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        frame(&header),
        Err(DecodeError::BadMessageLength { length: 5000 })
    );
}

fn open_params() -> OpenParams {
    OpenParams {
        local_as: 4_200_000_001,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        route_refresh: true,
        graceful_restart: Some(GracefulRestart {
            restarting: true,
            restart_time: 120,
            forwarding_preserved: true,
        }),
    }
}

#[test]
fn open_with_a_4_octet_as_carries_as_trans_and_every_capability() {
    let bytes = encode_open(&open_params()).unwrap();
    // My Autonomous System field (after version) is AS_TRANS.
    assert_eq!(&bytes[20..22], &AS_TRANS.to_be_bytes());
    let Message::Open(open) = decode_one(&bytes, DecodeOptions::default()).unwrap() else {
        panic!("not an open");
    };
    assert_eq!(open, open_params().to_message());
    assert_eq!(open.my_asn4(), 4_200_000_001);
    assert_eq!(open.hold_time(), 90);
    let caps = open.capabilities();
    assert_eq!(
        caps.iter()
            .filter(|c| matches!(c, BgpCapability::MultiProtocolExtensions(_)))
            .count(),
        2
    );
    assert!(
        caps.iter()
            .any(|c| matches!(c, BgpCapability::RouteRefresh))
    );
    assert!(
        caps.iter()
            .any(|c| matches!(c, BgpCapability::FourOctetAs(_)))
    );
    let gr = caps
        .iter()
        .find_map(|c| match c {
            BgpCapability::GracefulRestartCapability(gr) => Some(gr),
            _ => None,
        })
        .unwrap();
    assert!(gr.restart());
    assert_eq!(gr.time(), 120);
    assert_eq!(gr.address_families().len(), 2);
}

fn open_body(version: u8, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut body = vec![version];
    body.extend_from_slice(&65001u16.to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&id);
    body.push(u8::try_from(params.len()).unwrap());
    body.extend_from_slice(params);
    body
}

#[test]
fn bad_opens_are_refused_with_the_rfc_4271_subcode() {
    let id = [192, 0, 2, 2];
    let mut trailing = open_body(4, 90, id, &[]);
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("version 3", open_body(3, 90, id, &[]), (2, 1, vec![0, 4])),
        ("hold time 1", open_body(4, 1, id, &[]), (2, 6, vec![])),
        ("hold time 2", open_body(4, 2, id, &[]), (2, 6, vec![])),
        (
            "identifier 0.0.0.0",
            open_body(4, 90, [0; 4], &[]),
            (2, 3, vec![]),
        ),
        (
            "multicast identifier",
            open_body(4, 90, [224, 0, 0, 1], &[]),
            (2, 3, vec![]),
        ),
        (
            "optional parameter type 3",
            open_body(4, 90, id, &[3, 0]),
            (2, 4, vec![]),
        ),
        (
            "parameter overruns",
            open_body(4, 90, id, &[2, 9, 1]),
            (2, 0, vec![]),
        ),
        ("octets after the parameters", trailing, (2, 0, vec![])),
    ];
    for (name, body, expected) in cases {
        assert_eq!(
            notification_of(&message(kind::OPEN, &body), DecodeOptions::default()),
            expected,
            "{name}"
        );
    }
}

#[test]
fn an_unknown_capability_is_ignored() {
    // Capability 200 with two octets of value.
    let open = message(
        kind::OPEN,
        &open_body(4, 90, [192, 0, 2, 2], &[2, 4, 200, 2, 1, 2]),
    );
    assert!(matches!(
        decode_one(&open, DecodeOptions::default()),
        Ok(Message::Open(_))
    ));
}

fn attrs_v4() -> RouteAttributes {
    RouteAttributes {
        origin: Origin::IGP,
        as_path: vec![64512, 4_200_000_001],
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop_v6: Some("2001:db8::1".parse().unwrap()),
        next_hop_v6_link_local: None,
        med: Some(10),
        local_pref: Some(200),
        communities: vec![0xfde8_0064],
    }
}

fn v4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn update_of(bytes: &[u8], options: DecodeOptions) -> Update {
    match decode_one(bytes, options).unwrap() {
        Message::Update(update) => update,
        other => panic!("not an update: {other:?}"),
    }
}

const IBGP: DecodeOptions = DecodeOptions {
    four_octet_as: true,
    ibgp: true,
};
const EBGP: DecodeOptions = DecodeOptions {
    four_octet_as: true,
    ibgp: false,
};

#[test]
fn as_path_is_sent_as_an_as_sequence_segment() {
    let bytes = encode_update_v4(&[v4("10.0.0.0/24")], &[], &attrs_v4(), true).unwrap();
    // Find the AS_PATH attribute: flags 0x40, type 2, length 10, then the segment.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x40, attr::AS_PATH, 10])
        .expect("as_path present");
    assert_eq!(
        bytes[at + 3],
        2,
        "segment type 2 is AS_SEQUENCE (1 would be AS_SET)"
    );
    assert_eq!(bytes[at + 4], 2, "two ASNs");
    assert_eq!(&bytes[at + 5..at + 9], &64512u32.to_be_bytes());
    assert_eq!(&bytes[at + 9..at + 13], &4_200_000_001u32.to_be_bytes());
}

#[test]
fn ipv4_update_round_trips_with_every_attribute() {
    let announce = [v4("10.0.0.0/24"), v4("10.244.1.0/26")];
    let withdraw = [v4("10.9.0.0/16")];
    let bytes = encode_update_v4(&announce, &withdraw, &attrs_v4(), true).unwrap();
    let update = update_of(&bytes, IBGP);
    assert_eq!(update.treatment, Treatment::Normal);
    assert!(update.problems.is_empty(), "{:?}", update.problems);
    assert_eq!(update.announced_v4(), announce);
    assert_eq!(update.withdrawn_v4(), withdraw);
    let values: Vec<_> = update
        .message
        .path_attributes()
        .iter()
        .map(|a| a.value().clone())
        .collect();
    assert!(values.contains(&PathAttributeValue::Origin(Origin::IGP)));
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::NextHop(n) if n.next_hop() == Ipv4Addr::new(192, 0, 2, 1))));
    assert!(
        values
            .iter()
            .any(|v| matches!(v, PathAttributeValue::LocalPreference(l) if l.metric() == 200))
    );
    assert!(
        values.iter().any(
            |v| matches!(v, PathAttributeValue::MultiExitDiscriminator(m) if m.metric() == 10)
        )
    );
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::Communities(c) if c.communities()[0].value() == 0xfde8_0064)));
}

#[test]
fn local_pref_from_an_external_peer_is_ignored() {
    let bytes = encode_update_v4(&[v4("10.0.0.0/24")], &[], &attrs_v4(), true).unwrap();
    let update = update_of(&bytes, EBGP);
    assert_eq!(update.treatment, Treatment::Normal);
    assert!(
        !update
            .message
            .path_attributes()
            .iter()
            .any(|a| matches!(a.value(), PathAttributeValue::LocalPreference(_)))
    );
}

#[test]
fn two_octet_session_gets_as_trans_and_as4_path() {
    let bytes = encode_update_v4(&[v4("10.0.0.0/24")], &[], &attrs_v4(), false).unwrap();
    let options = DecodeOptions {
        four_octet_as: false,
        ibgp: true,
    };
    let update = update_of(&bytes, options);
    assert_eq!(update.treatment, Treatment::Normal, "{:?}", update.problems);
    // AS_PATH: one AS_SEQUENCE of 2 two-octet ASNs, the second AS_TRANS.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x40, attr::AS_PATH, 6])
        .expect("as_path present");
    assert_eq!(&bytes[at + 3..at + 9], &[2, 2, 0xfc, 0x00, 0x5b, 0xa0]);
    assert!(
        update
            .message
            .path_attributes()
            .iter()
            .any(|a| matches!(a.value(), PathAttributeValue::As4Path(_)))
    );
}

#[test]
fn ipv6_update_round_trips_through_mp_reach_and_mp_unreach() {
    let announce = [v6("2001:db8:1::/64"), v6("fd00:10:244::/122")];
    let withdraw = [v6("2001:db8:2::/48")];
    let mut attrs = attrs_v4();
    attrs.next_hop_v6_link_local = Some("fe80::1".parse().unwrap());
    let bytes = encode_update_v6(&announce, &withdraw, &attrs, true).unwrap();
    let update = update_of(&bytes, IBGP);
    assert_eq!(update.treatment, Treatment::Normal, "{:?}", update.problems);
    assert_eq!(update.announced_v6(), announce);
    assert_eq!(update.withdrawn_v6(), withdraw);
    assert!(update.announced_v4().is_empty());
    let next_hops = update
        .message
        .path_attributes()
        .iter()
        .find_map(|a| match a.value() {
            PathAttributeValue::MpReach(
                netgauze_bgp_pkt::path_attribute::MpReach::Ipv6Unicast {
                    next_hop_global,
                    next_hop_local,
                    ..
                },
            ) => Some((*next_hop_global, *next_hop_local)),
            _ => None,
        });
    let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(next_hops, Some((global, Some("fe80::1".parse().unwrap()))));
}

#[test]
fn end_of_rib_markers_are_recognised_per_family() {
    let eor4 = encode_end_of_rib(Family::Ipv4Unicast).unwrap();
    assert_eq!(eor4.len(), 23, "the IPv4 marker is the minimum UPDATE");
    assert_eq!(
        update_of(&eor4, EBGP).end_of_rib(),
        Some(Family::Ipv4Unicast)
    );
    let eor6 = encode_end_of_rib(Family::Ipv6Unicast).unwrap();
    assert_eq!(
        update_of(&eor6, EBGP).end_of_rib(),
        Some(Family::Ipv6Unicast)
    );
    let routes = encode_update_v4(&[v4("10.0.0.0/24")], &[], &attrs_v4(), true).unwrap();
    assert_eq!(update_of(&routes, EBGP).end_of_rib(), None);
}

#[test]
fn keepalive_notification_and_route_refresh_round_trip() {
    assert_eq!(
        decode_one(&encode_keepalive(), EBGP),
        Ok(Message::Keepalive)
    );
    let shutdown = Notification::with_data(6, 2, b"maintenance".to_vec());
    assert_eq!(
        decode_one(&encode_notification(&shutdown), EBGP),
        Ok(Message::Notification(shutdown))
    );
    let Message::RouteRefresh(rr) =
        decode_one(&encode_route_refresh(Family::Ipv6Unicast), EBGP).unwrap()
    else {
        panic!("not a route refresh");
    };
    assert_eq!(rr.family(), Some(Family::Ipv6Unicast));
    assert_eq!(rr.subtype, 0);
}

#[test]
fn route_refresh_of_the_wrong_length_returns_the_message_as_data() {
    let bytes = message(kind::ROUTE_REFRESH, &[0, 1, 0, 1, 0]);
    assert_eq!(notification_of(&bytes, EBGP), (7, 1, bytes.clone()));
}

// ---- RFC 7606 ----------------------------------------------------------

fn a(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code, u8::try_from(value.len()).unwrap()];
    out.extend_from_slice(value);
    out
}

fn origin() -> Vec<u8> {
    a(0x40, attr::ORIGIN, &[0])
}
fn as_path() -> Vec<u8> {
    a(0x40, attr::AS_PATH, &[2, 1, 0, 0, 0xfd, 0xe8])
}
fn next_hop() -> Vec<u8> {
    a(0x40, attr::NEXT_HOP, &[192, 0, 2, 1])
}

/// An UPDATE body announcing 10.0.0.0/24 with `attrs`.
fn update_body(attrs: &[Vec<u8>]) -> Vec<u8> {
    let attrs: Vec<u8> = attrs.concat();
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&[24, 10, 0, 0]);
    body
}

#[derive(Debug, PartialEq)]
enum Expect {
    Normal,
    Discarded(u8),
    Withdrawn(u8),
    Reset(u8, u8),
}

#[test]
fn attribute_errors_get_the_rfc_7606_treatment_of_their_attribute() {
    let mp_reach_bad = a(0x90, attr::MP_REACH, &[0, 2, 1, 16]);
    let mp_unreach = a(0x80, attr::MP_UNREACH, &[0, 2, 1]);
    let cases: Vec<(&str, Vec<Vec<u8>>, DecodeOptions, Expect)> = vec![
        (
            "clean",
            vec![origin(), as_path(), next_hop()],
            EBGP,
            Expect::Normal,
        ),
        (
            "origin value 7",
            vec![a(0x40, 1, &[7]), as_path(), next_hop()],
            EBGP,
            Expect::Withdrawn(1),
        ),
        (
            "origin flagged optional",
            vec![a(0xc0, 1, &[0]), as_path(), next_hop()],
            EBGP,
            Expect::Withdrawn(1),
        ),
        (
            "as_path segment type 9",
            vec![origin(), a(0x40, 2, &[9, 1, 0, 0, 0, 1]), next_hop()],
            EBGP,
            Expect::Withdrawn(2),
        ),
        (
            "as_path segment overruns",
            vec![origin(), a(0x40, 2, &[2, 3, 0, 0, 0, 1]), next_hop()],
            EBGP,
            Expect::Withdrawn(2),
        ),
        (
            "next_hop of 5 octets",
            vec![origin(), as_path(), a(0x40, 3, &[1, 2, 3, 4, 5])],
            EBGP,
            Expect::Withdrawn(3),
        ),
        (
            "med of 2 octets",
            vec![origin(), as_path(), next_hop(), a(0x80, 4, &[0, 1])],
            EBGP,
            Expect::Withdrawn(4),
        ),
        (
            "local_pref of 3 octets from ibgp",
            vec![origin(), as_path(), next_hop(), a(0x40, 5, &[0, 0, 1])],
            IBGP,
            Expect::Withdrawn(5),
        ),
        (
            "local_pref of 3 octets from ebgp",
            vec![origin(), as_path(), next_hop(), a(0x40, 5, &[0, 0, 1])],
            EBGP,
            Expect::Normal,
        ),
        (
            "atomic_aggregate with a value",
            vec![origin(), as_path(), next_hop(), a(0x40, 6, &[1])],
            EBGP,
            Expect::Discarded(6),
        ),
        (
            "aggregator of 3 octets",
            vec![origin(), as_path(), next_hop(), a(0xc0, 7, &[1, 2, 3])],
            EBGP,
            Expect::Discarded(7),
        ),
        (
            "communities of 3 octets",
            vec![origin(), as_path(), next_hop(), a(0xc0, 8, &[1, 2, 3])],
            EBGP,
            Expect::Withdrawn(8),
        ),
        (
            "large communities of 5 octets",
            vec![
                origin(),
                as_path(),
                next_hop(),
                a(0xc0, 32, &[1, 2, 3, 4, 5]),
            ],
            EBGP,
            Expect::Withdrawn(32),
        ),
        (
            "duplicate origin",
            vec![origin(), as_path(), next_hop(), a(0x40, 1, &[2])],
            EBGP,
            Expect::Discarded(1),
        ),
        (
            "missing origin",
            vec![as_path(), next_hop()],
            EBGP,
            Expect::Withdrawn(1),
        ),
        (
            "missing next_hop",
            vec![origin(), as_path()],
            EBGP,
            Expect::Withdrawn(3),
        ),
        ("no attributes at all", vec![], EBGP, Expect::Withdrawn(1)),
        (
            "unknown optional transitive",
            vec![origin(), as_path(), next_hop(), a(0xc0, 99, &[1, 2])],
            EBGP,
            Expect::Normal,
        ),
        (
            "malformed mp_reach",
            vec![origin(), as_path(), next_hop(), mp_reach_bad],
            EBGP,
            Expect::Reset(3, 9),
        ),
        (
            "mp_unreach twice",
            vec![
                origin(),
                as_path(),
                next_hop(),
                mp_unreach.clone(),
                mp_unreach,
            ],
            EBGP,
            Expect::Reset(3, 1),
        ),
        (
            "unrecognized well-known",
            vec![origin(), as_path(), next_hop(), a(0x40, 99, &[1])],
            EBGP,
            Expect::Reset(3, 2),
        ),
    ];
    for (name, attrs, options, expected) in cases {
        let bytes = message(kind::UPDATE, &update_body(&attrs));
        let got = match decode_one(&bytes, options) {
            Err(error) => {
                let n = error.notification();
                Expect::Reset(n.code, n.subcode)
            }
            Ok(Message::Update(update)) => match (update.treatment, update.problems.first()) {
                (Treatment::TreatAsWithdraw, Some(p)) => {
                    assert!(update.announced_v4().is_empty(), "{name}");
                    assert_eq!(update.withdrawn_v4(), vec![v4("10.0.0.0/24")], "{name}");
                    Expect::Withdrawn(p.code)
                }
                (Treatment::Normal, Some(p)) => {
                    assert_eq!(p.action, update::ProblemAction::AttributeDiscard, "{name}");
                    assert_eq!(update.announced_v4(), vec![v4("10.0.0.0/24")], "{name}");
                    Expect::Discarded(p.code)
                }
                (Treatment::Normal, None) => Expect::Normal,
                (Treatment::TreatAsWithdraw, None) => panic!("{name}: withdrawn without a reason"),
            },
            Ok(other) => panic!("{name}: {other:?}"),
        };
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn unrecognized_well_known_attribute_is_returned_as_notification_data() {
    let bad = a(0x40, 99, &[1]);
    let bytes = message(
        kind::UPDATE,
        &update_body(&[origin(), as_path(), next_hop(), bad.clone()]),
    );
    assert_eq!(notification_of(&bytes, EBGP), (3, 2, bad));
}

#[test]
fn length_errors_in_the_update_layout() {
    // An attribute whose length runs past the attribute block: treat-as-withdraw (RFC 7606 §4).
    let mut body = update_body(&[origin(), as_path(), next_hop()]);
    let attrs_len = u16::from_be_bytes([body[2], body[3]]);
    body[2..4].copy_from_slice(&(attrs_len - 1).to_be_bytes());
    let update = update_of(&message(kind::UPDATE, &body), EBGP);
    assert_eq!(update.treatment, Treatment::TreatAsWithdraw);

    // Total attribute length past the end of the message: session reset.
    let mut body = update_body(&[origin(), as_path(), next_hop()]);
    body[2..4].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(
        notification_of(&message(kind::UPDATE, &body), EBGP),
        (3, 1, vec![])
    );

    // Withdrawn routes length past the end: session reset.
    let mut body = update_body(&[origin(), as_path(), next_hop()]);
    body[0..2].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(
        notification_of(&message(kind::UPDATE, &body), EBGP),
        (3, 1, vec![])
    );

    // A /33 in the NLRI: invalid network field.
    let mut body = update_body(&[origin(), as_path(), next_hop()]);
    let nlri_at = body.len() - 4;
    body[nlri_at] = 33;
    assert_eq!(
        notification_of(&message(kind::UPDATE, &body), EBGP),
        (3, 10, vec![])
    );
}

/// The withdrawn routes and NLRI netgauze reads from `field` used as both
/// (the decoder's fallback for fields the fast reader refuses).
fn netgauze_prefixes(field: &[u8]) -> Option<(Vec<Ipv4Net>, Vec<Ipv4Net>)> {
    let mut bytes = u16::try_from(field.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(field);
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(field);
    let mut reader = netgauze_parse_utils::reader::SliceReader::new(&bytes);
    let mut ctx = update::context(&DecodeOptions::default());
    let message = <netgauze_bgp_pkt::update::BgpUpdateMessage as netgauze_parse_utils::traits::ParseFromWithOneInput<'_, _>>::parse(&mut reader, &mut ctx).ok()?;
    let nets = |list: &[netgauze_bgp_pkt::nlri::Ipv4UnicastAddress]| {
        list.iter().map(|a| a.network().address()).collect()
    };
    Some((nets(message.withdraw_routes()), nets(message.nlri())))
}

fn fast_prefixes(field: &[u8]) -> Option<Vec<Ipv4Net>> {
    update::unicast_prefixes(field).map(|list| list.iter().map(|a| a.network().address()).collect())
}

/// A prefix field, and what the fast reader makes of it (`None`: it leaves
/// the field to netgauze).
type PrefixCase = (&'static str, Vec<u8>, Option<Vec<Ipv4Net>>);

#[test]
fn well_formed_unicast_prefix_fields_take_the_fast_reader_and_odd_ones_fall_back() {
    let cases: Vec<PrefixCase> = vec![
        ("empty field", vec![], Some(vec![])),
        (
            "one /24",
            vec![24, 100, 64, 1],
            Some(vec![v4("100.64.1.0/24")]),
        ),
        (
            "default route and a host route",
            vec![0, 32, 10, 0, 0, 1],
            Some(vec![v4("0.0.0.0/0"), v4("10.0.0.1/32")]),
        ),
        (
            "odd length /17",
            vec![17, 10, 1, 128],
            Some(vec![v4("10.1.128.0/17")]),
        ),
        ("prefix longer than 32 bits", vec![33, 10, 0, 0, 1, 0], None),
        ("prefix cut short", vec![24, 100, 64], None),
        ("multicast prefix", vec![8, 224], None),
    ];
    for (name, field, expected) in cases {
        assert_eq!(fast_prefixes(&field), expected, "{name}");
    }
}

// ---- properties -------------------------------------------------------

fn any_options() -> impl Strategy<Value = DecodeOptions> {
    (any::<bool>(), any::<bool>()).prop_map(|(four_octet_as, ibgp)| DecodeOptions {
        four_octet_as,
        ibgp,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), options in any_options()) {
        if let Err(error) = decode(&bytes, &options) {
            let n = error.notification();
            prop_assert!((1..=7).contains(&n.code));
        }
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        kind in 1u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..600),
        options in any_options(),
    ) {
        let bytes = message(kind, &body);
        if let Err(error) = decode(&bytes, &options) {
            let n = error.notification();
            prop_assert!((1..=7).contains(&n.code));
        }
    }

    #[test]
    fn arbitrary_attribute_blocks_never_panic(
        attrs in proptest::collection::vec((any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        options in any_options(),
    ) {
        let attrs: Vec<Vec<u8>> = attrs.iter().map(|(flags, code, value)| a(flags & !0x10, *code, value)).collect();
        let _ = decode(&message(kind::UPDATE, &update_body(&attrs)), &options);
    }

    #[test]
    fn the_fast_prefix_reader_agrees_with_netgauze_wherever_it_answers(
        prefixes in proptest::collection::vec((0u8..=40, any::<[u8; 5]>()), 0..12),
        tail in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut field = Vec::new();
        for (bits, octets) in &prefixes {
            field.push(*bits);
            field.extend_from_slice(&octets[..usize::from(*bits).div_ceil(8).min(5)]);
        }
        field.extend_from_slice(&tail);
        if let Some(fast) = fast_prefixes(&field) {
            let reference = netgauze_prefixes(&field);
            prop_assert_eq!(reference, Some((fast.clone(), fast)));
        }
    }

    #[test]
    fn ipv4_updates_round_trip(
        prefixes in proptest::collection::vec((1u8..=223, any::<[u8; 3]>(), 0u8..=32), 1..100),
        path in proptest::collection::vec(1u32..=u32::MAX, 0..20),
        four_octet_as in any::<bool>(),
    ) {
        let announce: Vec<Ipv4Net> = prefixes
            .iter()
            .map(|(first, rest, len)| Ipv4Net::new(Ipv4Addr::new(*first, rest[0], rest[1], rest[2]), *len).unwrap().trunc())
            .collect();
        let mut attrs = attrs_v4();
        attrs.as_path = path;
        let bytes = encode_update_v4(&announce, &[], &attrs, four_octet_as).unwrap();
        let update = update_of(&bytes, DecodeOptions { four_octet_as, ibgp: true });
        prop_assert_eq!(update.treatment, Treatment::Normal);
        prop_assert_eq!(update.announced_v4(), announce);
    }
}

#[test]
fn notifications_print_their_rfc_names() {
    for (code, subcode, shown) in [
        (4, 0, "Hold Timer Expired"),
        (6, 2, "Cease: Administrative Shutdown"),
        (6, 3, "Cease: Peer De-configured"),
        (3, 11, "UPDATE Message Error: Malformed AS_PATH"),
        (2, 2, "OPEN Message Error: Bad Peer AS"),
        (6, 42, "Cease: subcode 42"),
        (9, 1, "notification 9/1"),
    ] {
        assert_eq!(Notification::new(code, subcode).to_string(), shown);
    }
}
