//! Unit tests of the RIB: the decision process step by step, multipath,
//! withdrawals, stale paths, iBGP/eBGP/route-reflector propagation, loop
//! detection, and the UPDATE encoder read back by the decoder; what is
//! advertised to whom is in `export`.

#![allow(clippy::unwrap_used, reason = "tests")]

mod export;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::*;
use crate::config::{FilterAction, FilterRule, MatchOperator};
use crate::packet::{DecodeOptions, Message, decode};

const ASN: u32 = 64512;
const OTHER_AS: u32 = 65000;
const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn rib_with(cluster_id: Option<Ipv4Addr>) -> Rib {
    Rib::new(RibConfig {
        asn: ASN,
        router_id: ME,
        cluster_id,
    })
}

fn policy(asn: u32) -> PeerPolicy {
    PeerPolicy {
        asn,
        local_asn: None,
        route_reflector_client: false,
        next_hop_self: false,
        import: Filter::default(),
        export: Filter::default(),
    }
}

/// Adds an Established peer whose BGP identifier is `router_id`.
fn up(rib: &mut Rib, address: &str, router_id: &str, policy: PeerPolicy) {
    rib.set_peer(ip(address), policy);
    rib.peer_up(
        ip(address),
        SessionInfo {
            router_id: router_id.parse().unwrap(),
            local_address: Some(IpAddr::V4(ME)),
            families: Family::ALL.into_iter().collect(),
            four_octet_as: true,
        },
    );
}

fn attrs(next_hop: &str, change: impl FnOnce(&mut Attrs)) -> Arc<Attrs> {
    let mut a = Attrs::local(Vec::new(), Vec::new());
    a.next_hop = Some(ip(next_hop));
    change(&mut a);
    Arc::new(a)
}

fn path(as_path: &[u32]) -> impl FnOnce(&mut Attrs) {
    let as_path = as_path.to_vec();
    move |a: &mut Attrs| {
        a.as_path_len = u32::try_from(as_path.len()).unwrap();
        a.as_path = as_path;
    }
}

/// A change applied to a path's attributes.
type Change = Box<dyn FnOnce(&mut Attrs)>;
/// A path in a table case: the peer's address, its AS, the change.
type CasePath = (&'static str, u32, Change);

fn advertised(rib: &Rib, peer: &str) -> Vec<IpNet> {
    rib.adj_rib_out(&ip(peer)).into_keys().collect()
}

fn best_peer(rib: &Rib, prefix: &str) -> Option<Source> {
    rib.dest(&net(prefix))?.best().map(|p| p.source)
}

/// Decision process: two paths that differ in one step; the expected winner.
#[test]
fn decision_process_prefers_each_step_in_rfc_order() {
    struct Case {
        name: &'static str,
        a: CasePath,
        b: CasePath,
        winner: &'static str,
    }
    // Peer A: 192.0.2.1 (identifier 1.1.1.1); peer B: 192.0.2.2 (identifier 2.2.2.2),
    // unless a case says otherwise. Both eBGP from AS 65000 unless the AS says iBGP.
    let cases = vec![
        Case {
            name: "highest local_pref",
            a: ("192.0.2.1", ASN, Box::new(|a| a.local_pref = Some(100))),
            b: ("192.0.2.2", ASN, Box::new(|a| a.local_pref = Some(200))),
            winner: "192.0.2.2",
        },
        Case {
            name: "shortest as_path",
            a: ("192.0.2.1", OTHER_AS, Box::new(path(&[OTHER_AS, 1, 2]))),
            b: ("192.0.2.2", OTHER_AS, Box::new(path(&[OTHER_AS, 3]))),
            winner: "192.0.2.2",
        },
        Case {
            name: "lowest origin",
            a: (
                "192.0.2.1",
                OTHER_AS,
                Box::new(|a| a.origin = Origin::Incomplete),
            ),
            b: ("192.0.2.2", OTHER_AS, Box::new(|a| a.origin = Origin::Egp)),
            winner: "192.0.2.2",
        },
        Case {
            name: "lowest med from the same neighbour as",
            a: (
                "192.0.2.1",
                OTHER_AS,
                Box::new(|a| {
                    path(&[OTHER_AS])(a);
                    a.med = Some(20);
                }),
            ),
            b: (
                "192.0.2.2",
                OTHER_AS,
                Box::new(|a| {
                    path(&[OTHER_AS])(a);
                    a.med = Some(10);
                }),
            ),
            winner: "192.0.2.2",
        },
        Case {
            name: "med is not compared across neighbour ases (router id decides)",
            a: (
                "192.0.2.1",
                OTHER_AS,
                Box::new(|a| {
                    path(&[OTHER_AS])(a);
                    a.med = Some(20);
                }),
            ),
            b: (
                "192.0.2.2",
                65001,
                Box::new(|a| {
                    path(&[65001])(a);
                    a.med = Some(10);
                }),
            ),
            winner: "192.0.2.1",
        },
        Case {
            name: "ebgp over ibgp",
            a: ("192.0.2.1", ASN, Box::new(path(&[OTHER_AS]))),
            b: ("192.0.2.2", OTHER_AS, Box::new(path(&[OTHER_AS]))),
            winner: "192.0.2.2",
        },
        Case {
            name: "lowest router id",
            a: ("192.0.2.2", ASN, Box::new(|_| {})),
            b: ("192.0.2.1", ASN, Box::new(|_| {})),
            winner: "192.0.2.1",
        },
        Case {
            name: "originator id stands in for the router id",
            a: (
                "192.0.2.1",
                ASN,
                Box::new(|a| a.originator_id = Some(Ipv4Addr::new(9, 9, 9, 9))),
            ),
            b: ("192.0.2.2", ASN, Box::new(|_| {})),
            winner: "192.0.2.2",
        },
        Case {
            name: "shortest cluster list",
            a: (
                "192.0.2.1",
                ASN,
                Box::new(|a| {
                    a.originator_id = Some(Ipv4Addr::new(5, 5, 5, 5));
                    a.cluster_list = vec![Ipv4Addr::new(7, 7, 7, 7), Ipv4Addr::new(8, 8, 8, 8)];
                }),
            ),
            b: (
                "192.0.2.2",
                ASN,
                Box::new(|a| {
                    a.originator_id = Some(Ipv4Addr::new(5, 5, 5, 5));
                    a.cluster_list = vec![Ipv4Addr::new(7, 7, 7, 7)];
                }),
            ),
            winner: "192.0.2.2",
        },
    ];
    for case in cases {
        let mut rib = rib_with(None);
        let ids = |address: &str| {
            if address.ends_with(".1") {
                "1.1.1.1"
            } else {
                "2.2.2.2"
            }
        };
        up(&mut rib, case.a.0, ids(case.a.0), policy(case.a.1));
        up(&mut rib, case.b.0, ids(case.b.0), policy(case.b.1));
        let prefix = net("10.10.0.0/24");
        rib.announce(ip(case.a.0), prefix, attrs(case.a.0, case.a.2));
        rib.announce(ip(case.b.0), prefix, attrs(case.b.0, case.b.2));
        rib.process();
        assert_eq!(
            best_peer(&rib, "10.10.0.0/24"),
            Some(Source::Peer(ip(case.winner))),
            "{}",
            case.name
        );
    }
}

#[test]
fn lowest_peer_address_breaks_the_last_tie() {
    let mut rib = rib_with(None);
    // Same identifier through two addresses (one router, two sessions).
    up(&mut rib, "192.0.2.9", "3.3.3.3", policy(ASN));
    up(&mut rib, "192.0.2.3", "3.3.3.3", policy(ASN));
    let prefix = net("10.10.0.0/24");
    rib.announce(ip("192.0.2.9"), prefix, attrs("192.0.2.9", |_| {}));
    rib.announce(ip("192.0.2.3"), prefix, attrs("192.0.2.3", |_| {}));
    rib.process();
    assert_eq!(
        best_peer(&rib, "10.10.0.0/24"),
        Some(Source::Peer(ip("192.0.2.3")))
    );
}

#[test]
fn own_prefix_beats_a_learned_path_and_is_not_installed() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(ASN));
    let prefix = net("10.65.0.0/26");
    rib.announce(
        ip("192.0.2.1"),
        prefix,
        attrs("192.0.2.1", |a| a.local_pref = Some(500)),
    );
    rib.set_originated([(prefix, Arc::new(Attrs::local(vec![], vec![])))].into());
    let processed = rib.process();
    assert_eq!(best_peer(&rib, "10.65.0.0/26"), Some(Source::Local));
    assert!(processed.fib.is_empty(), "{:?}", processed.fib);
}

#[test]
fn equal_paths_up_to_router_id_are_installed_as_ecmp() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(ASN));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    up(&mut rib, "192.0.2.3", "3.3.3.3", policy(ASN));
    let prefix = net("10.10.0.0/24");
    rib.announce(ip("192.0.2.2"), prefix, attrs("192.0.2.2", |_| {}));
    rib.announce(ip("192.0.2.1"), prefix, attrs("192.0.2.1", |_| {}));
    // A longer path is not part of the multipath set.
    rib.announce(ip("192.0.2.3"), prefix, attrs("192.0.2.3", path(&[1])));
    let processed = rib.process();
    assert_eq!(
        processed.fib,
        vec![FibChange {
            prefix,
            next_hops: vec![ip("192.0.2.1"), ip("192.0.2.2")],
        }]
    );
    let dest = rib.dest(&prefix).unwrap();
    assert_eq!(dest.selected().len(), 2);
    assert_eq!(dest.best().unwrap().source, Source::Peer(ip("192.0.2.1")));
}

#[test]
fn withdraw_removes_the_path_and_the_kernel_route() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    let prefix = net("10.10.0.0/24");
    rib.announce(
        ip("192.0.2.1"),
        prefix,
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.process();
    assert_eq!(rib.loc_rib_len(), 1);
    rib.receive(
        ip("192.0.2.1"),
        Received {
            announced: vec![],
            withdrawn: vec![prefix],
        },
    );
    let processed = rib.process();
    assert_eq!(rib.loc_rib_len(), 0);
    assert!(rib.dest(&prefix).is_none());
    assert_eq!(
        processed.fib,
        vec![FibChange {
            prefix,
            next_hops: vec![]
        }]
    );
    assert_eq!(rib.counts(&ip("192.0.2.1")).received, 0);
}

#[test]
fn graceful_restart_keeps_stale_paths_until_swept() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    let (kept, refreshed) = (net("10.10.0.0/24"), net("10.11.0.0/24"));
    for prefix in [kept, refreshed] {
        rib.announce(
            ip("192.0.2.1"),
            prefix,
            attrs("192.0.2.1", path(&[OTHER_AS])),
        );
    }
    rib.process();

    rib.peer_down(ip("192.0.2.1"), true);
    let processed = rib.process();
    assert!(processed.fib.is_empty(), "stale routes stay in the kernel");
    assert_eq!(rib.stale_count(ip("192.0.2.1")), 2);
    assert_eq!(rib.loc_rib_len(), 2);

    // The peer comes back and refreshes one route, then sends End-of-RIB.
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    rib.announce(
        ip("192.0.2.1"),
        refreshed,
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.sweep_stale(ip("192.0.2.1"), &[Family::Ipv4Unicast]);
    let processed = rib.process();
    assert_eq!(rib.stale_count(ip("192.0.2.1")), 0);
    assert_eq!(
        processed.fib,
        vec![FibChange {
            prefix: kept,
            next_hops: vec![]
        }]
    );
    assert!(rib.dest(&refreshed).unwrap().best().is_some());
}

#[test]
fn session_down_without_graceful_restart_drops_routes() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.process();
    rib.peer_down(ip("192.0.2.1"), false);
    rib.process();
    assert_eq!(rib.loc_rib_len(), 0);
}

fn decoded(messages: &[Vec<u8>]) -> Received {
    let mut all = Received::default();
    for message in messages {
        assert!(message.len() <= crate::packet::MAX_MESSAGE_LEN);
        let options = DecodeOptions {
            four_octet_as: true,
            ibgp: true,
        };
        let (Message::Update(update), len) = decode(message, &options).unwrap().unwrap() else {
            panic!("not an update");
        };
        assert_eq!(len, message.len());
        assert!(update.problems.is_empty(), "{:?}", update.problems);
        let received = Received::from_update(&update, true);
        all.withdrawn.extend(received.withdrawn);
        all.announced.extend(received.announced);
    }
    all
}

#[test]
fn encoded_updates_decode_to_the_same_routes_for_both_families() {
    let mut full = Attrs::local(vec![0xfc00_0001], vec![(64512, 1, 2)]);
    full.as_path = vec![64512, 4_200_000_001];
    full.as_path_len = 2;
    full.med = Some(7);
    full.local_pref = Some(150);
    full.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    full.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2)];
    full.origin = Origin::Egp;
    for (next_hop, prefixes) in [
        (
            "192.0.2.1",
            vec![net("10.0.0.0/8"), net("10.65.1.0/26"), net("0.0.0.0/0")],
        ),
        (
            "2001:db8::1",
            vec![net("2001:db8:1::/48"), net("2001:db8:2::/122")],
        ),
    ] {
        let mut attrs = full.clone();
        attrs.next_hop = Some(ip(next_hop));
        let family = wire::family_of(&prefixes[0]);
        let mut messages = Vec::new();
        wire::encode_announce(family, &attrs, &prefixes, true, &mut messages);
        let back = decoded(&messages);
        assert_eq!(back.announced.len(), 1);
        assert_eq!(*back.announced[0].0, attrs, "{family:?}");
        assert_eq!(back.announced[0].1, prefixes);

        let mut messages = Vec::new();
        wire::encode_withdraw(family, &prefixes, &mut messages);
        assert_eq!(decoded(&messages).withdrawn, prefixes);
    }
}

#[test]
fn large_announcements_are_split_into_messages_of_at_most_4096_octets() {
    let prefixes: Vec<IpNet> = (0..3000u32)
        .map(|i| {
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        })
        .collect();
    let attrs = attrs("192.0.2.1", path(&[OTHER_AS]));
    let mut messages = Vec::new();
    wire::encode_announce(Family::Ipv4Unicast, &attrs, &prefixes, true, &mut messages);
    assert!(messages.len() > 1);
    let back = decoded(&messages);
    let all: Vec<IpNet> = back.announced.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(all, prefixes);
    let mut messages = Vec::new();
    wire::encode_withdraw(Family::Ipv4Unicast, &prefixes, &mut messages);
    assert_eq!(decoded(&messages).withdrawn, prefixes);
}

#[test]
fn ipv6_routes_share_the_rib_and_export_with_a_v6_next_hop() {
    let mut rib = rib_with(None);
    rib.set_peer(ip("2001:db8::2"), policy(OTHER_AS));
    rib.peer_up(
        ip("2001:db8::2"),
        SessionInfo {
            router_id: Ipv4Addr::new(2, 2, 2, 2),
            local_address: Some(ip("2001:db8::1")),
            families: Family::ALL.into_iter().collect(),
            four_octet_as: true,
        },
    );
    up(&mut rib, "192.0.2.3", "3.3.3.3", policy(65001));
    rib.announce(
        ip("2001:db8::2"),
        net("2001:db8:99::/48"),
        attrs("2001:db8::2", path(&[OTHER_AS])),
    );
    let processed = rib.process();
    assert_eq!(
        processed.fib,
        vec![FibChange {
            prefix: net("2001:db8:99::/48"),
            next_hops: vec![ip("2001:db8::2")]
        }]
    );
    // Over an IPv4 session, the v6 next hop self is the IPv4-mapped address.
    let out = &rib.adj_rib_out(&ip("192.0.2.3"))[&net("2001:db8:99::/48")];
    assert_eq!(out.next_hop, Some(IpAddr::V4(ME)));
    let sent = decoded(
        &processed
            .updates
            .iter()
            .find(|(p, _)| *p == ip("192.0.2.3"))
            .unwrap()
            .1,
    );
    assert_eq!(
        sent.announced[0].0.next_hop,
        Some(IpAddr::V6(ME.to_ipv6_mapped()))
    );
}

#[test]
fn a_family_not_negotiated_is_not_sent() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    rib.set_peer(ip("192.0.2.2"), policy(65001));
    rib.peer_up(
        ip("192.0.2.2"),
        SessionInfo {
            router_id: Ipv4Addr::new(2, 2, 2, 2),
            local_address: Some(IpAddr::V4(ME)),
            families: BTreeSet::from([Family::Ipv4Unicast]),
            four_octet_as: true,
        },
    );
    rib.announce(
        ip("192.0.2.1"),
        net("2001:db8:99::/48"),
        attrs("2001:db8::2", path(&[OTHER_AS])),
    );
    rib.process();
    assert!(advertised(&rib, "192.0.2.2").is_empty());
}

#[test]
fn dump_rebuilds_the_adj_rib_out_for_a_route_refresh() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.process();
    let again = rib.dump(ip("192.0.2.2"), &[Family::Ipv4Unicast]);
    let sent = decoded(&again);
    assert_eq!(sent.announced[0].1, vec![net("10.10.0.0/24")]);
    assert!(rib.dump(ip("192.0.2.2"), &[Family::Ipv6Unicast]).is_empty());
}

#[test]
fn treat_as_withdraw_update_withdraws_the_prefixes_it_announced() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    let prefix = net("10.10.0.0/24");
    rib.announce(
        ip("192.0.2.1"),
        prefix,
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.process();
    assert_eq!(rib.loc_rib_len(), 1);

    // The same announcement with a malformed ORIGIN (value 7): RFC 7606 §7.1.
    let mut messages = Vec::new();
    wire::encode_announce(
        Family::Ipv4Unicast,
        &attrs("192.0.2.1", path(&[OTHER_AS])),
        &[prefix],
        true,
        &mut messages,
    );
    let mut message = messages.remove(0);
    // Header (19), withdrawn length (2), attribute length (2), then ORIGIN's
    // flags, type and length: its value is the 27th octet.
    assert_eq!(&message[23..26], &[0x40, 1, 1]);
    message[26] = 7;
    let options = DecodeOptions {
        four_octet_as: true,
        ibgp: false,
    };
    let (Message::Update(update), _) = decode(&message, &options).unwrap().unwrap() else {
        panic!("not an update");
    };
    assert_eq!(update.treatment, crate::packet::Treatment::TreatAsWithdraw);
    let received = Received::from_update(&update, true);
    assert!(received.announced.is_empty());
    assert_eq!(received.withdrawn, vec![prefix]);
    rib.receive(ip("192.0.2.1"), received);
    rib.process();
    assert_eq!(rib.loc_rib_len(), 0);
}

#[test]
fn a_destination_with_its_one_path_inline_stays_56_bytes_and_64_with_its_prefix() {
    assert_eq!(std::mem::size_of::<Dest>(), 56);
    assert_eq!(std::mem::size_of::<(ipnet::Ipv4Net, Dest)>(), 64);
}

/// Prefixes emptied in a decision run leave the table only after it, so
/// the entries moved into their places are decided and exported right.
#[test]
fn withdrawals_and_changes_in_one_run_reach_the_kernel_and_peers_for_the_right_prefixes() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(OTHER_AS + 1));
    let prefix = |i: u32| net(&format!("10.0.{i}.0/24"));
    let from_a = |hop: &str| attrs(hop, path(&[OTHER_AS]));
    for i in 0..10 {
        rib.announce(ip("192.0.2.1"), prefix(i), from_a("192.0.2.1"));
    }
    rib.process();
    for i in [0, 3, 9] {
        rib.withdraw(ip("192.0.2.1"), prefix(i));
    }
    rib.announce(ip("192.0.2.1"), prefix(5), from_a("192.0.2.11"));
    rib.announce(ip("192.0.2.1"), prefix(10), from_a("192.0.2.1"));
    let processed = rib.process();
    let mut fib: Vec<(IpNet, Vec<IpAddr>)> = processed
        .fib
        .into_iter()
        .map(|c| (c.prefix, c.next_hops))
        .collect();
    fib.sort();
    let expected = vec![
        (prefix(0), vec![]),
        (prefix(3), vec![]),
        (prefix(5), vec![ip("192.0.2.11")]),
        (prefix(9), vec![]),
        (prefix(10), vec![ip("192.0.2.1")]),
    ];
    assert_eq!(fib, expected);
    assert_eq!(rib.loc_rib_len(), 8);
    let to_b: Vec<IpNet> = rib.adj_rib_out(&ip("192.0.2.2")).into_keys().collect();
    let kept: Vec<IpNet> = [1, 2, 4, 5, 6, 7, 8, 10].map(prefix).into_iter().collect();
    assert_eq!(to_b, kept);
    for i in [1, 2, 4, 6, 7, 8, 10] {
        let hops = rib
            .dest(&prefix(i))
            .unwrap()
            .best()
            .unwrap()
            .attrs
            .as_ref()
            .unwrap()
            .next_hop;
        assert_eq!(hops, Some(ip("192.0.2.1")), "{}", prefix(i));
    }
    for i in [0, 3, 9] {
        assert!(
            rib.dest(&prefix(i)).is_none(),
            "{} left the table",
            prefix(i)
        );
    }
}
