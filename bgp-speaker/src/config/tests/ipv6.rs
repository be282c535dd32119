//! IPv6 and dual-stack nodes: addresses, router ID, mesh and BGPPeers per
//! family, IPv6 blocks and filters.

use std::time::Duration;

use serde_json::json;

use super::*;

fn dual_stack_world() -> World {
    World::default()
        .dual("a", Some("10.0.0.1"), Some("fd00::1"))
        .dual("b", Some("10.0.0.2"), Some("fd00::2"))
        .dual("v4only", Some("10.0.0.3"), None)
        .dual("v6only", None, Some("fd00::4"))
}

#[test]
fn node_addresses_of_both_families_are_the_sessions_source_addresses() {
    let d = dual_stack_world().compute("a").desired;
    assert_eq!(d.node_address, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(d.node_address_v6, Some("fd00::1".parse().expect("v6")));
    assert_eq!(d.router_id, Ipv4Addr::new(10, 0, 0, 1));
}

#[test]
fn ipv6_only_node_gets_a_stable_router_id_hashed_from_its_name() {
    let world = dual_stack_world();
    let d = world.compute("v6only").desired;
    assert_eq!(d.node_address, None);
    assert_eq!(d.router_id, hashed_router_id("v6only"));
    assert_eq!(d.router_id, world.compute("v6only").desired.router_id);
    for (a, b) in [("v6only", "v6only-2"), ("node-1", "node-2"), ("", "x")] {
        assert_ne!(hashed_router_id(a), hashed_router_id(b), "{a} vs {b}");
    }
    assert_ne!(hashed_router_id(""), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn mesh_runs_over_every_family_both_nodes_have() {
    // The higher address of each pair waits for the other to connect.
    // (node, [(peer address, source address, passive)])
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str, bool)]);
    let cases: [Case<'_>; 4] = [
        (
            "a",
            &[
                ("10.0.0.2", "10.0.0.1", true),
                ("10.0.0.3", "10.0.0.1", true),
                ("fd00::2", "fd00::1", true),
                ("fd00::4", "fd00::1", true),
            ],
        ),
        (
            "b",
            &[
                ("10.0.0.1", "10.0.0.2", false),
                ("10.0.0.3", "10.0.0.2", true),
                ("fd00::1", "fd00::2", false),
                ("fd00::4", "fd00::2", true),
            ],
        ),
        (
            "v4only",
            &[
                ("10.0.0.1", "10.0.0.3", false),
                ("10.0.0.2", "10.0.0.3", false),
            ],
        ),
        (
            "v6only",
            &[("fd00::1", "fd00::4", false), ("fd00::2", "fd00::4", false)],
        ),
    ];
    let world = dual_stack_world();
    for (node, expected) in cases {
        let got: Vec<(String, String, bool)> = world
            .compute(node)
            .desired
            .neighbors
            .iter()
            .map(|n| {
                assert_eq!(n.peer_type, PeerType::Mesh);
                (
                    n.address.to_string(),
                    n.local_address
                        .expect("mesh binds the node address")
                        .to_string(),
                    n.passive,
                )
            })
            .collect();
        let expected: Vec<(String, String, bool)> = expected
            .iter()
            .map(|(a, l, p)| ((*a).into(), (*l).into(), *p))
            .collect();
        assert_eq!(got, expected, "node {node}");
    }
    let names: Vec<String> = world
        .compute("a")
        .desired
        .neighbors
        .iter()
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_2",
            "Mesh_10_0_0_3",
            "Mesh_fd00__2",
            "Mesh_fd00__4"
        ]
    );
}

#[test]
fn ipv6_peer_ip_peers_from_the_node_ipv6_address() {
    let world = dual_stack_world()
        .config("default", json!({"nodeToNodeMeshEnabled": false}))
        .peer(
            "tor6",
            json!({"peerIP": "2001:db8::1", "asNumber": 65100, "keepaliveTime": "10s"}),
        )
        .peer(
            "tor6-port",
            json!({"node": "a", "peerIP": "[2001:db8::2]:1179", "asNumber": 65101}),
        );
    let a = world.compute("a");
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let n = &a.desired.neighbors;
    assert_eq!(
        addresses(&a),
        vec![
            ("2001:db8::1".into(), PeerType::Global, 65100),
            ("2001:db8::2".into(), PeerType::Node, 65101)
        ]
    );
    assert_eq!(n[0].local_address, Some(ip("fd00::1")));
    assert_eq!(n[0].name, "Global_2001_db8__1");
    assert_eq!(n[0].hold, Duration::from_secs(30));
    assert_eq!(
        (n[1].port, n[1].name.as_str()),
        (1179, "Node_2001_db8__2_port_1179")
    );
}

#[test]
fn peer_of_a_family_the_node_lacks_is_skipped_with_a_warning() {
    let world = dual_stack_world()
        .config("default", json!({"nodeToNodeMeshEnabled": false}))
        .peer("tor6", json!({"peerIP": "2001:db8::1", "asNumber": 65100}))
        .peer("tor4", json!({"peerIP": "192.0.2.1", "asNumber": 65100}));
    let v4only = world.compute("v4only");
    assert_eq!(
        addresses(&v4only),
        vec![("192.0.2.1".into(), PeerType::Global, 65100)]
    );
    let rendered: Vec<String> = v4only.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "BGPPeer tor6: field spec.peerIP: peer 2001:db8::1 needs this node's \
          spec.bgp.ipv6Address, which node v4only does not have; skipped"
        ]
    );
    let v6only = world.compute("v6only");
    assert_eq!(
        addresses(&v6only),
        vec![("2001:db8::1".into(), PeerType::Global, 65100)]
    );
    assert_eq!(v6only.warnings.len(), 1, "{:?}", v6only.warnings);
}

#[test]
fn peer_selector_peers_over_each_shared_family_and_reflectors_reflect_both() {
    let rr = json!({
        "ipv4Address": "10.0.0.10/24", "ipv6Address": "fd00::10/64",
        "routeReflectorClusterID": "224.0.0.1",
    });
    let world = World::default()
        .dual("a", Some("10.0.0.1"), Some("fd00::1"))
        .dual("v4only", Some("10.0.0.3"), None)
        .node_bgp("rr1", json!({"rr": "y"}), rr)
        .peer(
            "to-rr",
            json!({"nodeSelector": "!has(rr)", "peerSelector": "rr == 'y'"}),
        );
    let a = world.compute("a");
    assert_eq!(
        addresses(&a)
            .into_iter()
            .filter(|(_, t, _)| *t == PeerType::Node)
            .map(|(a, _, _)| a)
            .collect::<Vec<_>>(),
        ["10.0.0.10", "fd00::10"]
    );
    let v4only = world.compute("v4only");
    assert!(
        v4only.warnings.is_empty(),
        "a selected peer of a family the node lacks is silently not peered: {:?}",
        v4only.warnings
    );
    assert!(addresses(&v4only).iter().all(|(a, _, _)| a != "fd00::10"));
    // The reflector peers back over each family each client has.
    let rr = world.compute("rr1");
    assert_eq!(
        addresses(&rr),
        vec![
            ("10.0.0.1".into(), PeerType::Node, 64512),
            ("10.0.0.3".into(), PeerType::Node, 64512),
            ("fd00::1".into(), PeerType::Node, 64512),
        ]
    );
    assert!(
        rr.desired
            .neighbors
            .iter()
            .all(|n| n.route_reflector_client)
    );
    assert_eq!(rr.desired.neighbors[2].local_address, Some(ip("fd00::10")));
}

#[test]
fn reverse_peering_of_an_ipv6_peer_ip_uses_that_family_only() {
    let world = dual_stack_world()
        .config("default", json!({"nodeToNodeMeshEnabled": false}))
        .peer(
            "a-to-b6",
            json!({"node": "a", "peerIP": "fd00::2", "asNumber": 64512}),
        );
    assert_eq!(
        addresses(&world.compute("a")),
        vec![("fd00::2".into(), PeerType::Node, 64512)]
    );
    assert_eq!(
        addresses(&world.compute("b")),
        vec![("fd00::1".into(), PeerType::Node, 64512)]
    );
}

fn ipam_world_v6() -> World {
    World::default()
        .dual("a", Some("10.0.0.1"), Some("fd00::1"))
        .dual("b", Some("10.0.0.2"), Some("fd00::2"))
        .pool("default-ipv4", json!({"cidr": "10.244.0.0/16"}))
        .pool("default-ipv6", json!({"cidr": "fd00:10:244::/48"}))
        .affinity("a", "10.244.0.0/26", "confirmed")
        .affinity("a", "fd00:10:244::/122", "confirmed")
        .affinity("a", "fd00:10:244::40/122", "pending")
        .affinity("b", "fd00:10:244::80/122", "confirmed")
}

#[test]
fn ipv6_blocks_are_advertised_and_blackholed_like_ipv4_blocks() {
    let computed = ipam_world_v6().compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![
            ("10.244.0.0/26".into(), Origin::Block),
            ("fd00:10:244::/122".into(), Origin::Block),
        ]
    );
    assert_eq!(
        computed.desired.blackholes,
        vec![net("10.244.0.0/26"), net("fd00:10:244::/122")]
    );
}

#[test]
fn borrowed_ipv6_addresses_are_advertised_as_128s_and_never_blackholed() {
    let computed = ipam_world_v6()
        .block(
            "fd00:10:244::80/126",
            "b",
            &[Some("b"), Some("a"), None, Some("a")],
        )
        .affinity("a", "fd00:10:244::ff/128", "confirmed")
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![
            ("10.244.0.0/26".into(), Origin::Block),
            ("fd00:10:244::/122".into(), Origin::Block),
            ("fd00:10:244::81/128".into(), Origin::Borrowed),
            ("fd00:10:244::83/128".into(), Origin::Borrowed),
            ("fd00:10:244::ff/128".into(), Origin::Block),
        ]
    );
    assert_eq!(
        computed.desired.blackholes,
        vec![net("10.244.0.0/26"), net("fd00:10:244::/122")],
        "a /128 block is not blackholed"
    );
}

#[test]
fn ipv6_pool_without_bgp_export_is_not_advertised() {
    let computed = ipam_world_v6()
        .pool(
            "default-ipv6",
            json!({"cidr": "fd00:10:244::/48", "disableBGPExport": true}),
        )
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![("10.244.0.0/26".into(), Origin::Block)]
    );
}

#[test]
fn ipv6_filter_rules_match_ipv6_prefixes_only() {
    let world = dual_stack_world()
        .filter(
            "v6",
            json!({
                "exportV6": [{"cidr": "fd00:10:244::/48", "matchOperator": "In",
                              "prefixLength": {"min": 122, "max": 128}, "action": "Accept"}],
                "importV6": [{"cidr": "2001:db8::/32", "matchOperator": "NotIn", "action": "Reject"}],
            }),
        )
        .peer(
            "tor6",
            json!({"peerIP": "2001:db8::1", "asNumber": 65100, "filters": ["v6"]}),
        );
    let computed = world.compute("a");
    let tor = computed
        .desired
        .neighbors
        .iter()
        .find(|n| n.address == ip("2001:db8::1"))
        .expect("the v6 peering");
    let export = &tor.export.rules[0];
    for (prefix, matches) in [
        ("fd00:10:244::/122", true),
        ("fd00:10:244::5/128", true),
        ("fd00:10:244::/64", false),
        ("fd00:99::/122", false),
        ("10.244.0.0/26", false),
    ] {
        assert_eq!(
            export.matches_prefix(&net(prefix)),
            matches,
            "export {prefix}"
        );
    }
    let import = &tor.import.rules[0];
    assert_eq!(import.action, FilterAction::Reject);
    assert!(import.matches_prefix(&net("2001:db9::/48")));
    assert!(!import.matches_prefix(&net("2001:db8:1::/48")));
    assert!(
        !import.matches_prefix(&net("10.0.0.0/8")),
        "an importV6 rule ignores IPv4"
    );
}

#[test]
fn ipv4_cidr_in_an_ipv6_rule_skips_the_peering() {
    let world = dual_stack_world()
        .filter(
            "wrong",
            json!({"importV6": [{"cidr": "10.0.0.0/8", "matchOperator": "In", "action": "Reject"}]}),
        )
        .peer(
            "tor6",
            json!({"peerIP": "2001:db8::1", "asNumber": 65100, "filters": ["wrong"]}),
        );
    let computed = world.compute("a");
    assert!(
        computed
            .desired
            .neighbors
            .iter()
            .all(|n| n.address != ip("2001:db8::1"))
    );
    let rendered: Vec<String> = computed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        ["BGPFilter wrong: field importV6: cidr 10.0.0.0/8 is of the other address family"]
    );
}
