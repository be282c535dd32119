//! Specification of route encoding, decoding and filtering.

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("valid prefix")
}

#[test]
fn twill_protocol_numbers_are_unused_by_kernel_and_iproute2() {
    // include/uapi/linux/rtnetlink.h and /etc/iproute2/rt_protos assign
    // 0-4, 8-18, 42, 99, 186-189 and 192; Calico's felix uses 80.
    let taken = [
        0u8, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 80, 99, 186, 187, 188, 189,
        192,
    ];
    for proto in [
        RouteProto::TWILL_LOCAL,
        RouteProto::TWILL_BGP,
        RouteProto::TWILL_AGGREGATE,
    ] {
        assert!(!taken.contains(&proto.0), "{proto} is taken");
        assert!(proto.is_twill());
    }
    assert!(!RouteProto::BOOT.is_twill());
}

#[test]
fn constructors_truncate_host_bits_and_pick_scope() {
    let route = Route::to_device(net("10.65.0.7/32"), "cali1");
    assert_eq!(route.scope, RouteScope::Link);
    assert_eq!(route.table, TABLE_MAIN);
    let block = Route::blackhole(net("10.65.0.77/26"));
    assert_eq!(block.destination, net("10.65.0.64/26"));
    assert!(block.next_hops.is_empty());
    assert_eq!(
        Route::via(net("0.0.0.0/0"), "169.254.1.1".parse().expect("ip")).scope,
        RouteScope::Universe
    );
}

#[test]
fn normalized_metric_matches_kernel_defaults() {
    let cases = [
        ("10.0.0.0/24", None, None),
        ("10.0.0.0/24", Some(0), None),
        ("10.0.0.0/24", Some(5), Some(5)),
        ("fd00::/64", None, Some(1024)),
        ("fd00::/64", Some(7), Some(7)),
    ];
    for (dest, metric, want) in cases {
        assert_eq!(
            normalize_metric(&net(dest), metric),
            want,
            "{dest} {metric:?}"
        );
    }
}

#[test]
fn filter_selects_by_protocol_table_and_family() {
    let bgp = Route::via(net("10.1.0.0/16"), "10.0.0.1".parse().expect("ip"))
        .protocol(RouteProto::TWILL_BGP);
    let local6 = Route::to_device(net("fd00::5/128"), "cali1")
        .protocol(RouteProto::TWILL_LOCAL)
        .table(100);
    let by_proto = RouteFilter::protocol(RouteProto::TWILL_BGP);
    assert!(by_proto.matches(&bgp) && !by_proto.matches(&local6));
    let by_table = RouteFilter {
        table: Some(100),
        ..RouteFilter::default()
    };
    assert!(by_table.matches(&local6) && !by_table.matches(&bgp));
    let v6 = RouteFilter {
        ipv6: Some(true),
        ..RouteFilter::default()
    };
    assert!(v6.matches(&local6) && !v6.matches(&bgp));
}

fn devices() -> BTreeMap<String, u32> {
    BTreeMap::from([("eth0".to_string(), 2), ("eth1".to_string(), 3)])
}

#[test]
fn encoding_sets_protocol_scope_type_and_table() {
    let route = Route::to_device(net("10.65.0.5/32"), "eth0")
        .protocol(RouteProto::TWILL_LOCAL)
        .table(100)
        .metric(9);
    let msg = encode(&route, &devices()).expect("valid route");
    assert_eq!(msg.header.protocol, NlProtocol::from(201));
    assert_eq!(
        (msg.header.scope, msg.header.kind, msg.header.table),
        (NlScope::Link, RouteType::Unicast, 100)
    );
    assert_eq!(msg.header.destination_prefix_length, 32);
    assert!(msg.attributes.contains(&RouteAttribute::Oif(2)));
    assert!(msg.attributes.contains(&RouteAttribute::Priority(9)));
    let big_table = encode(&route.clone().table(1000), &devices()).expect("valid route");
    assert_eq!(big_table.header.table, RouteHeader::RT_TABLE_UNSPEC);
    assert!(big_table.attributes.contains(&RouteAttribute::Table(1000)));
}

#[test]
fn encoding_blackholes_carries_no_next_hop_and_default_routes_no_destination() {
    let msg = encode(&Route::blackhole(net("10.65.0.0/26")), &devices()).expect("valid");
    assert_eq!(msg.header.kind, RouteType::BlackHole);
    assert!(
        !msg.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(_) | RouteAttribute::Gateway(_)))
    );
    let default = encode(
        &Route::via(net("0.0.0.0/0"), "169.254.1.1".parse().expect("ip")),
        &devices(),
    )
    .expect("valid");
    assert!(
        !default
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_)))
    );
    assert!(
        default
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                "169.254.1.1".parse().expect("ip")
            )))
    );
}

#[test]
fn encoding_multipath_stores_weight_minus_one_and_onlink_per_hop() {
    let route = Route::multipath(
        net("10.66.0.0/24"),
        vec![
            NextHop::via("10.0.0.2".parse().expect("ip")).with_dev("eth0"),
            NextHop::via("10.0.0.3".parse().expect("ip"))
                .with_dev("eth1")
                .weight(3)
                .onlink(),
        ],
    );
    let msg = encode(&route, &devices()).expect("valid");
    let hops = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::MultiPath(hops) => Some(hops.clone()),
            _ => None,
        })
        .expect("multipath attribute");
    let got: Vec<_> = hops
        .iter()
        .map(|h| {
            (
                h.interface_index,
                h.hops,
                h.flags.contains(RouteNextHopFlags::Onlink),
            )
        })
        .collect();
    assert_eq!(got, vec![(2, 0, false), (3, 2, true)]);
}

#[test]
fn encoding_rejects_malformed_routes() {
    let cases = [
        Route {
            next_hops: vec![NextHop::dev("eth0")],
            ..Route::blackhole(net("10.0.0.0/24"))
        },
        Route {
            next_hops: Vec::new(),
            ..Route::to_device(net("10.0.0.0/24"), "eth0")
        },
        Route::multipath(
            net("10.0.0.0/24"),
            vec![NextHop::dev("eth0").weight(0), NextHop::dev("eth1")],
        ),
        Route::multipath(
            net("10.0.0.0/24"),
            vec![NextHop::dev("eth0").weight(257), NextHop::dev("eth1")],
        ),
    ];
    for route in cases {
        let err = encode(&route, &devices()).expect_err("malformed");
        assert!(
            matches!(err, KernelError::Invalid { .. }),
            "{route:?}: {err}"
        );
    }
    let unknown = encode(&Route::to_device(net("10.0.0.0/24"), "eth7"), &devices())
        .expect_err("unknown device");
    assert!(unknown.is_not_found());
}

#[test]
fn decoding_reads_back_multipath_weights_as_ip_prints_them() {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = 24;
    msg.header.table = 254;
    msg.header.protocol = NlProtocol::from(202);
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            "10.9.0.0".parse().expect("ip"),
        )));
    let mut hops = Vec::new();
    for (gw, kernel_hops, index) in [("10.0.0.1", 0u8, 2u32), ("10.0.0.2", 1, 3)] {
        let mut nh = RouteNextHop::default();
        nh.hops = kernel_hops;
        nh.interface_index = index;
        nh.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                gw.parse().expect("ip"),
            )));
        hops.push(nh);
    }
    msg.attributes.push(RouteAttribute::MultiPath(hops));
    let names = BTreeMap::from([(2, "eth0".to_string()), (3, "eth1".to_string())]);
    let route = decode(msg, &names).expect("an ipv4 route");
    assert_eq!(route.protocol, RouteProto::TWILL_BGP);
    let got: Vec<_> = route
        .next_hops
        .iter()
        .map(|h| (h.device.clone().expect("dev"), h.weight))
        .collect();
    assert_eq!(got, vec![("eth0".to_string(), 1), ("eth1".to_string(), 2)]);
}
