//! BGPPeer `localWorkloadSelector`: peerings with this node's own
//! workloads, chosen by their labels.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use super::*;

impl World {
    /// A WorkloadEndpoint `namespace/name` on `node` with `labels` and `ips`.
    fn workload(
        mut self,
        namespace: &str,
        name: &str,
        node: &str,
        labels: Value,
        ips: &[&str],
    ) -> Self {
        let wep: Object<twill_api::endpoint::WorkloadEndpointSpec> =
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {
                    "node": node, "orchestrator": "k8s", "workload": name, "pod": name,
                    "endpoint": "eth0", "interfaceName": format!("cali{name}"),
                    "ipNetworks": ips, "serviceAccountName": "router",
                },
            }))
            .expect("test workload decodes");
        self.0
            .workload_endpoints
            .insert(format!("{namespace}/{name}"), wep);
        self
    }
}

/// Two nodes without a mesh; node a runs a red and a blue router pod, node
/// b a red one.
fn world() -> World {
    World::default()
        .dual("a", Some("10.0.0.1"), Some("fd00::1"))
        .dual("b", Some("10.0.0.2"), Some("fd00::2"))
        .config(
            "default",
            json!({"nodeToNodeMeshEnabled": false, "asNumber": 64512,
                   "localWorkloadPeeringIPV4": "169.254.0.179",
                   "localWorkloadPeeringIPV6": "fd12::179"}),
        )
        .workload(
            "vm",
            "red-a",
            "a",
            json!({"color": "red"}),
            &["10.65.0.5/32", "fd00:65::5/128", "10.65.0.6/32"],
        )
        .workload(
            "vm",
            "blue-a",
            "a",
            json!({"color": "blue"}),
            &["10.65.0.7/32"],
        )
        .workload(
            "vm",
            "red-b",
            "b",
            json!({"color": "red"}),
            &["10.65.1.5/32"],
        )
}

fn local_peers(computed: &Computed) -> Vec<(String, String, u32, Option<IpAddr>, bool)> {
    computed
        .desired
        .neighbors
        .iter()
        .filter(|n| n.peer_type == PeerType::LocalWorkload)
        .map(|n| {
            (
                n.address.to_string(),
                n.name.clone(),
                n.asn,
                n.local_address,
                n.passive,
            )
        })
        .collect()
}

#[test]
fn a_selector_peers_with_matching_workloads_of_this_node_only() {
    let computed = world()
        .peer(
            "red",
            json!({"localWorkloadSelector": "color == 'red'", "asNumber": 65401}),
        )
        .compute("a");
    assert!(computed.warnings.is_empty(), "{:?}", computed.warnings);
    let v4_source = Some(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 179)));
    let v6_source = Some(ip("fd12::179"));
    assert_eq!(
        local_peers(&computed),
        vec![
            // The first address of each family; active (a workload is no Calico node).
            (
                "10.65.0.5".into(),
                "Local_Workload_10_65_0_5".into(),
                65401,
                v4_source,
                false
            ),
            (
                "fd00:65::5".into(),
                "Local_Workload_fd00_65__5".into(),
                65401,
                v6_source,
                false
            ),
        ]
    );
    let on_b = world()
        .peer(
            "red",
            json!({"localWorkloadSelector": "color == 'red'", "asNumber": 65401}),
        )
        .compute("b");
    assert_eq!(local_peers(&on_b)[0].0, "10.65.1.5");
    assert_eq!(local_peers(&on_b).len(), 1);
}

#[test]
fn calico_workload_labels_are_matched_too() {
    let cases = [
        ("projectcalico.org/namespace == 'vm'", 3),
        (
            "projectcalico.org/orchestrator == 'k8s' && color == 'blue'",
            1,
        ),
        ("projectcalico.org/serviceaccount == 'router'", 3),
        ("projectcalico.org/namespace == 'other'", 0),
        ("has(color)", 3),
    ];
    for (selector, peers) in cases {
        let computed = world()
            .peer(
                "p",
                json!({"localWorkloadSelector": selector, "asNumber": 65401}),
            )
            .compute("a");
        assert_eq!(local_peers(&computed).len(), peers, "{selector}");
    }
}

#[test]
fn a_node_specific_selector_peer_applies_only_where_it_selects() {
    let world = world().peer(
        "red-on-b",
        json!({"node": "b", "localWorkloadSelector": "color == 'red'", "asNumber": 65401}),
    );
    assert!(local_peers(&world.compute("a")).is_empty());
    assert_eq!(local_peers(&world.compute("b")).len(), 1);
}

#[test]
fn without_a_peering_ip_the_session_uses_the_node_address() {
    let computed = World::default()
        .nodes(&[("a", "10.0.0.1")])
        .config("default", json!({"nodeToNodeMeshEnabled": false}))
        .workload(
            "vm",
            "red-a",
            "a",
            json!({"color": "red"}),
            &["10.65.0.5/32"],
        )
        .peer(
            "red",
            json!({"localWorkloadSelector": "color == 'red'", "asNumber": 65401}),
        )
        .compute("a");
    assert_eq!(
        local_peers(&computed),
        vec![(
            "10.65.0.5".into(),
            "Local_Workload_10_65_0_5".into(),
            65401,
            Some(ip("10.0.0.1")),
            false
        )]
    );
}

#[test]
fn unusable_local_workload_peers_are_skipped_with_a_warning() {
    let cases = [
        (
            json!({"localWorkloadSelector": "color == 'red'"}),
            "spec.asNumber",
        ),
        (
            json!({"localWorkloadSelector": "color ==", "asNumber": 65401}),
            "spec.localWorkloadSelector",
        ),
    ];
    for (spec, field) in cases {
        let computed = world().peer("bad", spec.clone()).compute("a");
        assert!(local_peers(&computed).is_empty(), "{spec}");
        assert!(
            computed.warnings.iter().any(|w| matches!(
                w,
                ConfigError::Invalid { name, field: f, .. } if name == "bad" && *f == field
            )),
            "{spec}: {:?}",
            computed.warnings
        );
    }
    let bad_ip = world()
        .config("default", json!({"localWorkloadPeeringIPV4": "fd00::1"}))
        .compute("a");
    assert!(
        bad_ip.warnings.iter().any(|w| matches!(
            w,
            ConfigError::Invalid {
                field: "spec.localWorkloadPeeringIPV4",
                ..
            }
        )),
        "{:?}",
        bad_ip.warnings
    );
}

#[test]
fn local_workload_protocol_names_map_back_to_their_type() {
    let cases = [
        ("Local_Workload_10_65_0_5", Some(PeerType::LocalWorkload)),
        ("Mesh_10_0_0_2", Some(PeerType::Mesh)),
        ("Node_192_0_2_1_port_1179", Some(PeerType::Node)),
        ("Global_192_0_2_1", Some(PeerType::Global)),
        ("Local_10_0_0_1", None),
        ("Meshy_10_0_0_1", None),
    ];
    for (name, expected) in cases {
        assert_eq!(PeerType::from_name(name), expected, "{name}");
    }
}
