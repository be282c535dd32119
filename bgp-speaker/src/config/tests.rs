//! The configuration rules, case by case, with Calico-shaped resources.
//! IPv6 and dual-stack cases are in [`ipv6`], local workload peers in
//! [`local_workload`].

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use twill_api::{Object, Spec};

use super::*;

mod ipv6;
mod local_workload;

fn object<S: Spec>(name: &str, labels: Value, spec: Value) -> Object<S> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("test resource decodes")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

/// A snapshot being built.
#[derive(Default)]
struct World(Snapshot);

impl World {
    fn node(mut self, name: &str, address: &str, labels: Value, bgp: Value) -> Self {
        let mut bgp = bgp;
        if let Value::Object(map) = &mut bgp {
            map.insert("ipv4Address".into(), json!(format!("{address}/24")));
        }
        self.0
            .nodes
            .insert(name.into(), object(name, labels, json!({ "bgp": bgp })));
        self
    }

    /// A node with `bgp` as given (addresses included), no labels.
    fn node_bgp(mut self, name: &str, labels: Value, bgp: Value) -> Self {
        self.0
            .nodes
            .insert(name.into(), object(name, labels, json!({ "bgp": bgp })));
        self
    }

    /// A node with an IPv4 address, an IPv6 address, or both.
    fn dual(self, name: &str, v4: Option<&str>, v6: Option<&str>) -> Self {
        let mut bgp = serde_json::Map::new();
        if let Some(v4) = v4 {
            bgp.insert("ipv4Address".into(), json!(format!("{v4}/24")));
        }
        if let Some(v6) = v6 {
            bgp.insert("ipv6Address".into(), json!(format!("{v6}/64")));
        }
        self.node_bgp(name, json!({}), Value::Object(bgp))
    }

    fn nodes(mut self, names: &[(&str, &str)]) -> Self {
        for (name, address) in names {
            self = self.node(name, address, json!({}), json!({}));
        }
        self
    }

    fn config(mut self, name: &str, spec: Value) -> Self {
        self.0
            .bgp_configurations
            .insert(name.into(), object(name, json!({}), spec));
        self
    }

    fn peer(mut self, name: &str, spec: Value) -> Self {
        self.0
            .bgp_peers
            .insert(name.into(), object(name, json!({}), spec));
        self
    }

    fn filter(mut self, name: &str, spec: Value) -> Self {
        self.0
            .bgp_filters
            .insert(name.into(), object(name, json!({}), spec));
        self
    }

    fn pool(mut self, name: &str, spec: Value) -> Self {
        self.0
            .ip_pools
            .insert(name.into(), object(name, json!({}), spec));
        self
    }

    fn affinity(mut self, node: &str, cidr: &str, state: &str) -> Self {
        let name = format!("{node}-{}", cidr.replace(['.', '/'], "-"));
        self.0.block_affinities.insert(
            name.clone(),
            object(
                &name,
                json!({}),
                json!({"node": node, "cidr": cidr, "state": state, "deleted": "false"}),
            ),
        );
        self
    }

    /// A /30 block affine to `owner` whose ordinals are held by `holders`.
    fn block(mut self, cidr: &str, owner: &str, holders: &[Option<&str>]) -> Self {
        let attributes: Vec<Value> = holders
            .iter()
            .flatten()
            .map(|n| json!({"handle_id": "h", "secondary": {"node": n}}))
            .collect();
        let mut next = 0u32;
        let allocations: Vec<Value> = holders
            .iter()
            .map(|h| {
                h.map_or(Value::Null, |_| {
                    next += 1;
                    json!(next - 1)
                })
            })
            .collect();
        let name = cidr.replace(['.', '/'], "-");
        self.0.ipam_blocks.insert(
            name.clone(),
            object(
                &name,
                json!({}),
                json!({
                    "cidr": cidr, "affinity": format!("host:{owner}"),
                    "allocations": allocations, "unallocated": [], "attributes": attributes,
                }),
            ),
        );
        self
    }

    fn compute(&self, node: &str) -> Computed {
        self.compute_with(node, &MapSecrets::default())
    }

    fn compute_with(&self, node: &str, secrets: &dyn Secrets) -> Computed {
        desired(&self.0, node, secrets).expect("node can run BGP")
    }
}

fn addresses(computed: &Computed) -> Vec<(String, PeerType, u32)> {
    computed
        .desired
        .neighbors
        .iter()
        .map(|n| (n.address.to_string(), n.peer_type, n.asn))
        .collect()
}

fn prefixes(computed: &Computed) -> Vec<(String, Origin)> {
    computed
        .desired
        .originated
        .iter()
        .map(|a| (a.prefix.to_string(), a.origin))
        .collect()
}

const THREE: [(&str, &str); 3] = [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")];

#[test]
fn identity_defaults_to_as_64512_port_179_and_the_node_address() {
    let world = World::default().nodes(&THREE);
    let d = world.compute("a").desired;
    assert_eq!(d.asn, 64512);
    assert_eq!(d.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(d.listen_port, 179);
    assert_eq!(d.cluster_id, None);
}

#[test]
fn node_as_beats_global_as_and_node_config_port_beats_global_port() {
    let world = World::default()
        .nodes(&[("b", "10.0.0.2")])
        .node("a", "10.0.0.1", json!({}), json!({"asNumber": 65001}))
        .config("default", json!({"asNumber": 65000, "listenPort": 1179}))
        .config("node.a", json!({"listenPort": 2179}));
    let a = world.compute("a").desired;
    assert_eq!((a.asn, a.listen_port), (65001, 2179));
    let b = world.compute("b");
    assert_eq!((b.desired.asn, b.desired.listen_port), (65000, 1179));
    // b reaches a on a's own port, with a's own AS.
    assert_eq!(b.desired.neighbors[0].port, 2179);
    assert_eq!(b.desired.neighbors[0].asn, 65001);
}

#[test]
fn missing_node_or_address_is_an_error_naming_the_node() {
    let world = World::default().node("a", "10.0.0.1", json!({}), json!({}));
    let mut snapshot = world.0.clone();
    assert_eq!(
        desired(&snapshot, "zz", &MapSecrets::default()),
        Err(ConfigError::NoNode { node: "zz".into() })
    );
    snapshot.nodes.get_mut("a").expect("a").spec.bgp = None;
    assert_eq!(
        desired(&snapshot, "a", &MapSecrets::default()),
        Err(ConfigError::NoNodeAddress { node: "a".into() })
    );
    let neither = World::default().node_bgp("a", json!({}), json!({"ipv4Address": "nope"}));
    assert_eq!(
        desired(&neither.0, "a", &MapSecrets::default()),
        Err(ConfigError::NoNodeAddress { node: "a".into() })
    );
}

#[test]
fn mesh_peers_with_every_other_node_and_the_higher_address_is_passive() {
    let computed = World::default().nodes(&THREE).compute("b");
    assert_eq!(
        addresses(&computed),
        vec![
            ("10.0.0.1".into(), PeerType::Mesh, 64512),
            ("10.0.0.3".into(), PeerType::Mesh, 64512)
        ]
    );
    let n = &computed.desired.neighbors;
    assert_eq!((n[0].name.as_str(), n[0].passive), ("Mesh_10_0_0_1", false));
    assert_eq!((n[1].name.as_str(), n[1].passive), ("Mesh_10_0_0_3", true));
    assert_eq!(n[0].local_address, Some(ip("10.0.0.2")));
    assert_eq!(
        (n[0].keepalive, n[0].hold),
        (Duration::from_secs(80), Duration::from_secs(240))
    );
}

#[test]
fn mesh_disabled_means_no_mesh_peers() {
    let world = World::default()
        .nodes(&THREE)
        .config("default", json!({"nodeToNodeMeshEnabled": false}));
    assert!(world.compute("a").desired.neighbors.is_empty());
}

#[test]
fn mesh_password_and_restart_time_come_from_the_bgp_configuration() {
    let world = World::default().nodes(&THREE).config(
        "default",
        json!({
            "nodeMeshPassword": {"secretKeyRef": {"name": "bgp", "key": "mesh"}},
            "nodeMeshMaxRestartTime": "2m",
        }),
    );
    let secrets = MapSecrets::default().with("bgp", "mesh", "pw");
    let computed = world.compute_with("a", &secrets);
    for n in &computed.desired.neighbors {
        assert_eq!(n.password.as_deref(), Some("pw"));
        assert_eq!(n.max_restart_time, Some(Duration::from_secs(120)));
    }
    // Without the secret the mesh is skipped with a warning naming it.
    let computed = world.compute("a");
    assert!(computed.desired.neighbors.is_empty());
    assert!(matches!(
        &computed.warnings[..],
        [ConfigError::MissingSecret { secret, key, .. }] if secret == "bgp" && key == "mesh"
    ));
}

#[test]
fn route_reflector_topology_follows_calico() {
    // rr1 is a reflector; a and b are clients; the mesh stays between non-RR nodes.
    let world = World::default()
        .nodes(&[("a", "10.0.0.1"), ("b", "10.0.0.2")])
        .node(
            "rr1",
            "10.0.0.10",
            json!({"route-reflector": "true"}),
            json!({"routeReflectorClusterID": "224.0.0.1"}),
        )
        .peer(
            "peer-with-rrs",
            json!({"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}),
        );
    let a = world.compute("a");
    assert_eq!(
        addresses(&a),
        vec![
            ("10.0.0.2".into(), PeerType::Mesh, 64512),
            ("10.0.0.10".into(), PeerType::Node, 64512)
        ]
    );
    assert!(!a.desired.neighbors[1].route_reflector_client);
    // The reflector skips the mesh, peers back with every node, and reflects to them.
    let rr = world.compute("rr1");
    assert_eq!(rr.desired.cluster_id, Some(Ipv4Addr::new(224, 0, 0, 1)));
    assert_eq!(
        addresses(&rr),
        vec![
            ("10.0.0.1".into(), PeerType::Node, 64512),
            ("10.0.0.2".into(), PeerType::Node, 64512)
        ]
    );
    assert!(
        rr.desired
            .neighbors
            .iter()
            .all(|n| n.route_reflector_client)
    );
}

#[test]
fn reflectors_of_the_same_cluster_are_not_each_others_clients() {
    let rr = json!({"routeReflectorClusterID": "224.0.0.1"});
    let world = World::default()
        .node("rr1", "10.0.0.10", json!({"rr": "y"}), rr.clone())
        .node("rr2", "10.0.0.11", json!({"rr": "y"}), rr)
        .peer(
            "rrs",
            json!({"nodeSelector": "rr == 'y'", "peerSelector": "rr == 'y'"}),
        );
    let rr1 = world.compute("rr1");
    assert_eq!(
        addresses(&rr1),
        vec![("10.0.0.11".into(), PeerType::Node, 64512)]
    );
    assert!(!rr1.desired.neighbors[0].route_reflector_client);
}

#[test]
fn global_node_and_selector_peers_apply_where_calico_applies_them() {
    let world = World::default()
        .node("a", "10.0.0.1", json!({"rack": "r1"}), json!({}))
        .node("b", "10.0.0.2", json!({"rack": "r2"}), json!({}))
        .config("default", json!({"nodeToNodeMeshEnabled": false}))
        .peer("tor-all", json!({"peerIP": "192.0.2.1", "asNumber": 65100}))
        .peer(
            "tor-a",
            json!({"node": "a", "peerIP": "192.0.2.2:1179", "asNumber": 65101}),
        )
        .peer(
            "tor-r2",
            json!({"nodeSelector": "rack == 'r2'", "peerIP": "192.0.2.3", "asNumber": 65102}),
        );
    let a = world.compute("a");
    assert_eq!(
        addresses(&a),
        vec![
            ("192.0.2.1".into(), PeerType::Global, 65100),
            ("192.0.2.2".into(), PeerType::Node, 65101)
        ]
    );
    assert_eq!(a.desired.neighbors[1].port, 1179);
    assert_eq!(a.desired.neighbors[1].name, "Node_192_0_2_2_port_1179");
    let b = world.compute("b");
    assert_eq!(
        addresses(&b),
        vec![
            ("192.0.2.1".into(), PeerType::Global, 65100),
            ("192.0.2.3".into(), PeerType::Node, 65102)
        ]
    );
}

#[test]
fn node_specific_duplicate_of_a_global_peering_is_skipped() {
    let world = World::default()
        .nodes(&[("a", "10.0.0.1")])
        .peer(
            "z-global",
            json!({"peerIP": "192.0.2.1", "asNumber": 65100}),
        )
        .peer(
            "a-node",
            json!({"node": "a", "peerIP": "192.0.2.1", "asNumber": 65999}),
        );
    let a = world.compute("a");
    assert_eq!(
        addresses(&a),
        vec![("192.0.2.1".into(), PeerType::Global, 65100)]
    );
}

#[test]
fn peer_ip_of_another_node_gets_a_reverse_peering_unless_manual() {
    let base = World::default()
        .nodes(&[("a", "10.0.0.1"), ("b", "10.0.0.2")])
        .config("default", json!({"nodeToNodeMeshEnabled": false}));
    let auto = base.peer(
        "a-to-b",
        json!({"node": "a", "peerIP": "10.0.0.2", "asNumber": 64512}),
    );
    assert_eq!(
        addresses(&auto.compute("b")),
        vec![("10.0.0.1".into(), PeerType::Node, 64512)]
    );
    let manual = World(auto.0.clone()).peer(
        "a-to-b",
        json!({"node": "a", "peerIP": "10.0.0.2", "asNumber": 64512, "reversePeering": "Manual"}),
    );
    assert!(manual.compute("b").desired.neighbors.is_empty());
}

#[test]
fn peer_settings_are_carried_to_the_session() {
    let world = World::default().nodes(&[("a", "10.0.0.1")]).peer(
        "tor",
        json!({
            "peerIP": "192.0.2.1", "asNumber": 65100, "localASNumber": 65001,
            "keepaliveTime": "10s", "maxRestartTime": "90s", "sourceAddress": "None",
            "nextHopMode": "Self", "ttlSecurity": 1,
            "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}},
        }),
    );
    let secrets = MapSecrets::default().with("bgp", "tor", "s3cret");
    let n = &world.compute_with("a", &secrets).desired.neighbors[0];
    assert_eq!(n.local_asn, Some(65001));
    assert_eq!(
        (n.keepalive, n.hold),
        (Duration::from_secs(10), Duration::from_secs(30))
    );
    assert_eq!(n.max_restart_time, Some(Duration::from_secs(90)));
    assert_eq!(n.local_address, None);
    assert_eq!(n.next_hop, NextHop::SelfAddress);
    assert_eq!(n.ttl_security, Some(1));
    assert_eq!(n.password.as_deref(), Some("s3cret"));
}

#[test]
fn unusable_peers_are_skipped_with_a_warning_naming_resource_and_field() {
    let world = World::default()
        .nodes(&[("a", "10.0.0.1")])
        .peer("no-as", json!({"peerIP": "192.0.2.1"}))
        .peer(
            "bad-keepalive",
            json!({"peerIP": "192.0.2.2", "asNumber": 1, "keepaliveTime": "soon"}),
        )
        .peer(
            "no-secret",
            json!({"peerIP": "192.0.2.3", "asNumber": 1,
            "password": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        )
        .peer(
            "optional-secret",
            json!({"peerIP": "192.0.2.4", "asNumber": 1,
            "password": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}),
        )
        .peer(
            "no-filter",
            json!({"peerIP": "192.0.2.5", "asNumber": 1, "filters": ["nope"]}),
        );
    let computed = world.compute("a");
    assert_eq!(
        addresses(&computed),
        vec![("192.0.2.4".into(), PeerType::Global, 1)]
    );
    let rendered: Vec<String> = computed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        vec![
            "BGPPeer bad-keepalive: field spec.keepaliveTime: \"soon\" is not a positive duration",
            "BGPPeer no-as: field spec.asNumber: an AS number is required with peerIP",
            "BGPPeer no-filter: field filters: BGPFilter nope does not exist",
            "BGPPeer no-secret: password secret s/k is not available",
        ]
    );
}

#[test]
fn bgp_filters_become_ordered_import_and_export_rules() {
    let world = World::default()
        .nodes(&[("a", "10.0.0.1")])
        .filter(
            "f1",
            json!({
                "importV4": [{"cidr": "10.0.0.0/8", "matchOperator": "In", "action": "Reject"}],
                "exportV4": [{"cidr": "10.244.0.0/16", "matchOperator": "In",
                              "prefixLength": {"max": 26}, "action": "Accept",
                              "operations": [{"addCommunity": {"value": "65000:100"}}]}],
            }),
        )
        .filter(
            "f2",
            json!({"importV4": [{"action": "Accept", "peerType": "eBGP"}]}),
        )
        .peer(
            "tor",
            json!({"peerIP": "192.0.2.1", "asNumber": 65100, "filters": ["f1", "f2"]}),
        );
    let n = &world.compute("a").desired.neighbors[0];
    assert_eq!(n.import.rules.len(), 2);
    assert_eq!(n.import.rules[0].action, FilterAction::Reject);
    assert_eq!(n.import.rules[1].peer_type, Some(PeerTypeMatch::Ebgp));
    let export = &n.export.rules[0];
    assert_eq!(export.add_communities, vec![(65000 << 16) | 100]);
    for (prefix, matches) in [
        ("10.244.1.0/26", true),
        ("10.244.1.0/27", false),
        ("10.245.0.0/26", false),
        ("10.244.0.0/16", true),
    ] {
        assert_eq!(export.matches_prefix(&net(prefix)), matches, "{prefix}");
    }
}

fn ipam_world() -> World {
    World::default()
        .nodes(&[("a", "10.0.0.1"), ("b", "10.0.0.2")])
        .pool("default", json!({"cidr": "10.244.0.0/16"}))
        .affinity("a", "10.244.0.0/26", "confirmed")
        .affinity("a", "10.244.0.64/26", "pending")
        .affinity("b", "10.244.1.0/26", "confirmed")
}

#[test]
fn confirmed_blocks_are_advertised_and_blackholed() {
    let computed = ipam_world().compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![("10.244.0.0/26".into(), Origin::Block)]
    );
    assert_eq!(computed.desired.blackholes, vec![net("10.244.0.0/26")]);
}

#[test]
fn borrowed_addresses_are_advertised_as_host_routes() {
    let computed = ipam_world()
        .block(
            "10.244.1.0/30",
            "b",
            &[Some("b"), Some("a"), None, Some("a")],
        )
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![
            ("10.244.0.0/26".into(), Origin::Block),
            ("10.244.1.1/32".into(), Origin::Borrowed),
            ("10.244.1.3/32".into(), Origin::Borrowed),
        ]
    );
}

#[test]
fn no_export_and_vxlan_pools_are_not_advertised_but_still_blackholed() {
    for (name, pool) in [
        (
            "no export",
            json!({"cidr": "10.244.0.0/16", "disableBGPExport": true}),
        ),
        (
            "vxlan always",
            json!({"cidr": "10.244.0.0/16", "vxlanMode": "Always"}),
        ),
        (
            "vxlan cross-subnet",
            json!({"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet"}),
        ),
    ] {
        let computed = ipam_world().pool("default", pool).compute("a");
        assert!(computed.desired.originated.is_empty(), "{name}");
        assert_eq!(
            computed.desired.blackholes,
            vec![net("10.244.0.0/26")],
            "{name}"
        );
    }
    let ipip = ipam_world()
        .pool(
            "default",
            json!({"cidr": "10.244.0.0/16", "ipipMode": "Always"}),
        )
        .compute("a");
    assert_eq!(prefixes(&ipip).len(), 1, "IPIP pools are advertised");
}

#[test]
fn disabled_pools_stay_advertised_for_the_pods_already_in_them() {
    let computed = ipam_world()
        .pool(
            "default",
            json!({"cidr": "10.244.0.0/16", "disabled": true}),
        )
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![("10.244.0.0/26".into(), Origin::Block)]
    );
}

#[test]
fn blocks_outside_every_pool_are_not_advertised() {
    let computed = ipam_world()
        .affinity("a", "10.99.0.0/26", "confirmed")
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![("10.244.0.0/26".into(), Origin::Block)]
    );
}

#[test]
fn service_ranges_and_prefix_communities_come_from_the_bgp_configuration() {
    let computed = ipam_world()
        .config(
            "default",
            json!({
                "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
                "serviceLoadBalancerIPs": [{"cidr": "192.0.2.0/24"}],
                "communities": [{"name": "pods", "value": "65000:300:400"}],
                "prefixAdvertisements": [
                    {"cidr": "10.244.0.0/16", "communities": ["pods", "65000:100"]},
                    {"cidr": "192.0.2.0/24", "communities": ["65000:200"]},
                ],
            }),
        )
        .compute("a");
    assert_eq!(
        prefixes(&computed),
        vec![
            ("10.96.0.0/12".into(), Origin::Service),
            ("10.244.0.0/26".into(), Origin::Block),
            ("192.0.2.0/24".into(), Origin::Service),
        ]
    );
    let block = &computed.desired.originated[1];
    assert_eq!(block.communities, vec![(65000 << 16) | 100]);
    assert_eq!(block.large_communities, vec![(65000, 300, 400)]);
    assert_eq!(
        computed.desired.originated[2].communities,
        vec![(65000 << 16) | 200]
    );
    assert!(computed.desired.originated[0].communities.is_empty());
}

#[test]
fn durations_parse_in_go_form() {
    for (text, expected) in [
        ("90s", Some(Duration::from_secs(90))),
        ("2m", Some(Duration::from_secs(120))),
        ("1h30m", Some(Duration::from_secs(5400))),
        ("500ms", Some(Duration::from_millis(500))),
        ("0", Some(Duration::ZERO)),
        ("10", None),
        ("soon", None),
    ] {
        assert_eq!(parse_duration(text), expected, "{text}");
    }
}

#[test]
fn peer_type_is_recovered_from_the_protocol_name() {
    assert_eq!(PeerType::from_name("Mesh_10_0_0_1"), Some(PeerType::Mesh));
    assert_eq!(
        PeerType::from_name("Node_192_0_2_1_port_1179"),
        Some(PeerType::Node)
    );
    assert_eq!(
        PeerType::from_name("Global_192_0_2_1"),
        Some(PeerType::Global)
    );
    assert_eq!(PeerType::from_name("kernel1"), None);
}
