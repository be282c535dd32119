//! What the RIB advertises to whom: iBGP, eBGP and route-reflector rules,
//! attributes rewritten on export, loop detection, well-known communities,
//! and import and export filters.

use super::*;

/// Propagation: who gets a route learned from whom.
#[test]
fn ibgp_ebgp_and_reflection_rules_decide_who_gets_a_route() {
    struct Case {
        name: &'static str,
        cluster_id: Option<Ipv4Addr>,
        source: (u32, bool),
        target: (u32, bool),
        sent: bool,
    }
    let cases = [
        Case {
            name: "ebgp to ibgp",
            cluster_id: None,
            source: (OTHER_AS, false),
            target: (ASN, false),
            sent: true,
        },
        Case {
            name: "ibgp to ebgp",
            cluster_id: None,
            source: (ASN, false),
            target: (65001, false),
            sent: true,
        },
        Case {
            name: "ebgp to ebgp",
            cluster_id: None,
            source: (OTHER_AS, false),
            target: (65001, false),
            sent: true,
        },
        Case {
            name: "ibgp to ibgp without reflection",
            cluster_id: None,
            source: (ASN, false),
            target: (ASN, false),
            sent: false,
        },
        Case {
            name: "reflector: client to non-client",
            cluster_id: Some(Ipv4Addr::new(1, 0, 0, 1)),
            source: (ASN, true),
            target: (ASN, false),
            sent: true,
        },
        Case {
            name: "reflector: client to client",
            cluster_id: Some(Ipv4Addr::new(1, 0, 0, 1)),
            source: (ASN, true),
            target: (ASN, true),
            sent: true,
        },
        Case {
            name: "reflector: non-client to client",
            cluster_id: Some(Ipv4Addr::new(1, 0, 0, 1)),
            source: (ASN, false),
            target: (ASN, true),
            sent: true,
        },
        Case {
            name: "reflector: non-client to non-client",
            cluster_id: Some(Ipv4Addr::new(1, 0, 0, 1)),
            source: (ASN, false),
            target: (ASN, false),
            sent: false,
        },
    ];
    for case in cases {
        let mut rib = rib_with(case.cluster_id);
        let mut source = policy(case.source.0);
        source.route_reflector_client = case.source.1;
        let mut target = policy(case.target.0);
        target.route_reflector_client = case.target.1;
        up(&mut rib, "192.0.2.1", "1.1.1.1", source);
        up(&mut rib, "192.0.2.2", "2.2.2.2", target);
        let as_path: &[u32] = if case.source.0 == ASN {
            &[]
        } else {
            &[OTHER_AS]
        };
        rib.announce(
            ip("192.0.2.1"),
            net("10.10.0.0/24"),
            attrs("192.0.2.1", path(as_path)),
        );
        let processed = rib.process();
        assert_eq!(
            !advertised(&rib, "192.0.2.2").is_empty(),
            case.sent,
            "{}",
            case.name
        );
        assert!(
            advertised(&rib, "192.0.2.1").is_empty(),
            "{}: never back to the source",
            case.name
        );
        assert_eq!(
            processed.updates.iter().any(|(p, _)| *p == ip("192.0.2.2")),
            case.sent,
            "{}: an update is encoded exactly when something is sent",
            case.name
        );
    }
}

#[test]
fn ebgp_export_prepends_sets_next_hop_self_and_strips_ibgp_attributes() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(ASN));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(OTHER_AS));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", |a| {
            a.local_pref = Some(300);
            a.med = Some(5);
            a.originator_id = Some(Ipv4Addr::new(4, 4, 4, 4));
            a.cluster_list = vec![Ipv4Addr::new(1, 0, 0, 1)];
        }),
    );
    rib.process();
    let out = &rib.adj_rib_out(&ip("192.0.2.2"))[&net("10.10.0.0/24")];
    assert_eq!(out.as_path, vec![ASN]);
    assert_eq!(out.next_hop, Some(IpAddr::V4(ME)));
    assert_eq!(out.local_pref, None);
    assert_eq!(out.med, None);
    assert_eq!(out.originator_id, None);
    assert!(out.cluster_list.is_empty());
}

#[test]
fn a_local_as_number_replaces_ours_towards_that_peer_only() {
    const LOCAL: u32 = 65010;
    let mut rib = rib_with(None);
    let mut disguised = policy(OTHER_AS);
    disguised.local_asn = Some(LOCAL);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(ASN));
    up(&mut rib, "192.0.2.2", "2.2.2.2", disguised);
    up(&mut rib, "192.0.2.3", "3.3.3.3", policy(OTHER_AS));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", |_| {}),
    );
    rib.process();
    assert_eq!(
        rib.adj_rib_out(&ip("192.0.2.2"))[&net("10.10.0.0/24")].as_path,
        vec![LOCAL],
        "the peering with localASNumber prepends it"
    );
    assert_eq!(
        rib.adj_rib_out(&ip("192.0.2.3"))[&net("10.10.0.0/24")].as_path,
        vec![ASN],
        "other eBGP peers still see our AS"
    );
    // A peer in the local AS is iBGP: it gets an eBGP-learned route with
    // no prepend and a local preference, and no iBGP-learned one.
    let mut same = policy(LOCAL);
    same.local_asn = Some(LOCAL);
    up(&mut rib, "192.0.2.4", "4.4.4.4", same);
    rib.announce(
        ip("192.0.2.3"),
        net("10.30.0.0/24"),
        attrs("192.0.2.3", |a| a.as_path = vec![OTHER_AS]),
    );
    rib.process();
    let out = rib.adj_rib_out(&ip("192.0.2.4"));
    assert_eq!(out[&net("10.30.0.0/24")].as_path, vec![OTHER_AS]);
    assert!(out[&net("10.30.0.0/24")].local_pref.is_some());
    assert!(!out.contains_key(&net("10.10.0.0/24")), "iBGP to iBGP");
    // A route carrying the local AS is a loop on that session.
    rib.receive(
        ip("192.0.2.2"),
        Received {
            announced: vec![(
                attrs("192.0.2.2", |a| a.as_path = vec![OTHER_AS, LOCAL]),
                vec![net("10.20.0.0/24")],
            )],
            withdrawn: Vec::new(),
        },
    );
    rib.process();
    assert!(
        !rib.adj_rib_out(&ip("192.0.2.1"))
            .contains_key(&net("10.20.0.0/24"))
    );
}

#[test]
fn ibgp_export_keeps_next_hop_and_sets_local_pref() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    let mut nhs = policy(ASN);
    nhs.next_hop_self = true;
    up(&mut rib, "192.0.2.3", "3.3.3.3", nhs);
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.set_originated([(net("10.65.0.0/26"), Arc::new(Attrs::local(vec![7], vec![])))].into());
    rib.process();
    let out = rib.adj_rib_out(&ip("192.0.2.2"));
    let learned = &out[&net("10.10.0.0/24")];
    assert_eq!(learned.next_hop, Some(ip("192.0.2.1")));
    assert_eq!(learned.local_pref, Some(DEFAULT_LOCAL_PREF));
    assert_eq!(learned.as_path, vec![OTHER_AS]);
    let own = &out[&net("10.65.0.0/26")];
    assert_eq!(own.next_hop, Some(IpAddr::V4(ME)));
    assert_eq!(own.communities, vec![7]);
    assert!(own.as_path.is_empty());
    let out = rib.adj_rib_out(&ip("192.0.2.3"));
    assert_eq!(
        out[&net("10.10.0.0/24")].next_hop,
        Some(IpAddr::V4(ME)),
        "next-hop-self peering"
    );
}

#[test]
fn reflected_routes_carry_originator_id_and_cluster_list_and_keep_next_hop() {
    let cluster = Ipv4Addr::new(1, 0, 0, 1);
    let mut rib = rib_with(Some(cluster));
    let mut client = policy(ASN);
    client.route_reflector_client = true;
    up(&mut rib, "192.0.2.1", "1.1.1.1", client);
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", |_| {}),
    );
    rib.process();
    let out = &rib.adj_rib_out(&ip("192.0.2.2"))[&net("10.10.0.0/24")];
    assert_eq!(out.originator_id, Some(Ipv4Addr::new(1, 1, 1, 1)));
    assert_eq!(out.cluster_list, vec![cluster]);
    assert_eq!(out.next_hop, Some(ip("192.0.2.1")));
}

#[test]
fn looped_routes_are_dropped() {
    let cluster = Ipv4Addr::new(1, 0, 0, 1);
    let cases: [CasePath; 3] = [
        (
            "own as in an ebgp as_path",
            OTHER_AS,
            Box::new(path(&[OTHER_AS, ASN])),
        ),
        (
            "originator id is this router",
            ASN,
            Box::new(|a| a.originator_id = Some(ME)),
        ),
        (
            "cluster list holds this cluster",
            ASN,
            Box::new(move |a| a.cluster_list = vec![Ipv4Addr::new(3, 3, 3, 3), cluster]),
        ),
    ];
    for (name, asn, change) in cases {
        let mut rib = rib_with(Some(cluster));
        up(&mut rib, "192.0.2.1", "1.1.1.1", policy(asn));
        let prefix = net("10.10.0.0/24");
        // A good path first: a looped replacement withdraws it.
        rib.announce(
            ip("192.0.2.1"),
            prefix,
            attrs("192.0.2.1", path(&[OTHER_AS])),
        );
        rib.receive(
            ip("192.0.2.1"),
            Received {
                announced: vec![(attrs("192.0.2.1", change), vec![prefix])],
                withdrawn: vec![],
            },
        );
        rib.process();
        assert_eq!(rib.loc_rib_len(), 0, "{name}");
    }
}

#[test]
fn well_known_communities_limit_propagation() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    up(&mut rib, "192.0.2.3", "3.3.3.3", policy(65001));
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", |a| {
            path(&[OTHER_AS])(a);
            a.communities = vec![NO_EXPORT];
        }),
    );
    rib.announce(
        ip("192.0.2.1"),
        net("10.11.0.0/24"),
        attrs("192.0.2.1", |a| {
            path(&[OTHER_AS])(a);
            a.communities = vec![NO_ADVERTISE];
        }),
    );
    rib.process();
    assert_eq!(advertised(&rib, "192.0.2.2"), vec![net("10.10.0.0/24")]);
    assert!(advertised(&rib, "192.0.2.3").is_empty());
}

fn rule(cidr: &str, op: MatchOperator, action: FilterAction) -> FilterRule {
    FilterRule {
        cidr: Some((net(cidr), op)),
        ..FilterRule::new(true, action)
    }
}

#[test]
fn import_filter_rejects_routes_which_count_as_received_not_accepted() {
    let mut rib = rib_with(None);
    let mut p = policy(OTHER_AS);
    p.import.rules = vec![rule(
        "10.10.0.0/16",
        MatchOperator::In,
        FilterAction::Reject,
    )];
    up(&mut rib, "192.0.2.1", "1.1.1.1", p.clone());
    for prefix in ["10.10.1.0/24", "10.20.0.0/24"] {
        rib.announce(
            ip("192.0.2.1"),
            net(prefix),
            attrs("192.0.2.1", path(&[OTHER_AS])),
        );
    }
    rib.process();
    let counts = rib.counts(&ip("192.0.2.1"));
    assert_eq!((counts.received, counts.accepted), (2, 1));
    assert_eq!(rib.loc_rib_len(), 1);
    assert!(best_peer(&rib, "10.10.1.0/24").is_none());

    // Dropping the rule re-imports without a refresh.
    p.import.rules.clear();
    rib.set_peer(ip("192.0.2.1"), p);
    rib.process();
    assert_eq!(rib.loc_rib_len(), 2);
    assert_eq!(rib.counts(&ip("192.0.2.1")).accepted, 2);
}

#[test]
fn export_filter_rejects_and_its_change_withdraws() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    for prefix in ["10.10.0.0/24", "10.20.0.0/24"] {
        rib.announce(
            ip("192.0.2.1"),
            net(prefix),
            attrs("192.0.2.1", path(&[OTHER_AS])),
        );
    }
    rib.process();
    assert_eq!(advertised(&rib, "192.0.2.2").len(), 2);
    let mut p = policy(ASN);
    p.export.rules = vec![rule(
        "10.20.0.0/24",
        MatchOperator::Equal,
        FilterAction::Reject,
    )];
    rib.set_peer(ip("192.0.2.2"), p);
    let processed = rib.process();
    assert_eq!(advertised(&rib, "192.0.2.2"), vec![net("10.10.0.0/24")]);
    let sent = decoded(&processed.updates[0].1);
    assert_eq!(sent.withdrawn, vec![net("10.20.0.0/24")]);
}

#[test]
fn export_filter_rejecting_every_route_of_a_family_withdraws_and_sends_nothing_more() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    up(&mut rib, "192.0.2.2", "2.2.2.2", policy(ASN));
    let announce = |rib: &mut Rib, prefix: &str| {
        rib.announce(
            ip("192.0.2.1"),
            net(prefix),
            attrs("192.0.2.1", path(&[OTHER_AS])),
        );
    };
    announce(&mut rib, "10.10.0.0/24");
    rib.process();
    assert_eq!(advertised(&rib, "192.0.2.2").len(), 1);

    let mut p = policy(ASN);
    p.export.rules = vec![FilterRule::new(true, FilterAction::Reject)];
    rib.set_peer(ip("192.0.2.2"), p);
    let processed = rib.process();
    assert!(advertised(&rib, "192.0.2.2").is_empty());
    let sent = decoded(&processed.updates[0].1);
    assert_eq!(sent.withdrawn, vec![net("10.10.0.0/24")]);

    announce(&mut rib, "10.20.0.0/24");
    let processed = rib.process();
    assert!(processed.updates.is_empty(), "{:?}", processed.updates);
    assert!(advertised(&rib, "192.0.2.2").is_empty());
}

#[test]
fn export_reject_with_a_condition_or_of_the_other_family_still_exports_the_rest() {
    let mut rib = rib_with(None);
    up(&mut rib, "192.0.2.1", "1.1.1.1", policy(OTHER_AS));
    let mut p = policy(ASN);
    let mut tagged = FilterRule::new(true, FilterAction::Reject);
    tagged.communities = vec![0xFDE8_0001];
    p.export.rules = vec![FilterRule::new(false, FilterAction::Reject), tagged];
    up(&mut rib, "192.0.2.2", "2.2.2.2", p);
    rib.announce(
        ip("192.0.2.1"),
        net("10.10.0.0/24"),
        attrs("192.0.2.1", path(&[OTHER_AS])),
    );
    rib.process();
    assert_eq!(advertised(&rib, "192.0.2.2"), vec![net("10.10.0.0/24")]);
}
