//! A BGPPeer `localWorkloadSelector` against a real workload: BIRD 2 runs in
//! a pod-like network namespace (its address a /32 on `eth0`, the host side
//! a veth with the `localWorkloadPeeringIPV4` address, as Calico wires it).
//! The node's peerings are computed from Calico resources (a BGPPeer
//! selecting the workload by label, its WorkloadEndpoint, the default
//! BGPConfiguration) and run by a [`Router`] in the node's namespace: the
//! session comes up from the peering address to the workload's address,
//! and the workload's route lands in the node's kernel via the workload.
//!
//! Needs root and `bird`/`birdc`; skips otherwise (`TWILL_REQUIRE_ROOT=1`
//! makes a skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod interop_support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgp_speaker::config::{MapSecrets, PeerType, Snapshot, desired};
use bgp_speaker::daemon::neighbor;
use bgp_speaker::router::{Router, RouterConfig};
use interop_support::{Bird, WAIT, block_on_in, established, eventually, has_line, kernel_routes};
use serde_json::{Value, json};
use twill_integration::{TestNetns, require_root};
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

const PEERING_IP: &str = "169.254.0.179";
const WORKLOAD_IP: &str = "10.65.0.5";
const WORKLOAD_AS: u32 = 65401;
const NODE_AS: u32 = 64512;
const CHILD_BLOCK: &str = "10.123.0.0/26";

fn object<S: twill_api::Spec>(metadata: Value, spec: Value) -> twill_api::Object<S> {
    serde_json::from_value(json!({"metadata": metadata, "spec": spec})).unwrap()
}

/// Node `a` with a BGPPeer selecting `role == 'router'` workloads and one
/// such workload on it.
fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.nodes.insert(
        "a".into(),
        object(
            json!({"name": "a"}),
            json!({"bgp": {"ipv4Address": "10.0.0.1/24"}}),
        ),
    );
    s.bgp_configurations.insert(
        "default".into(),
        object(
            json!({"name": "default"}),
            json!({"nodeToNodeMeshEnabled": false, "asNumber": NODE_AS,
                   "localWorkloadPeeringIPV4": PEERING_IP}),
        ),
    );
    s.bgp_peers.insert(
        "routers".into(),
        object(
            json!({"name": "routers"}),
            json!({"localWorkloadSelector": "role == 'router'", "asNumber": WORKLOAD_AS}),
        ),
    );
    s.workload_endpoints.insert(
        "vm/child".into(),
        object(
            json!({"name": "child", "namespace": "vm", "labels": {"role": "router"}}),
            json!({"node": "a", "orchestrator": "k8s", "workload": "child", "pod": "child",
                   "endpoint": "eth0", "interfaceName": "caliw0",
                   "ipNetworks": [format!("{WORKLOAD_IP}/32")]}),
        ),
    );
    s
}

/// The workload's BIRD: eBGP to the node's peering address, exporting one block.
fn bird_config() -> String {
    format!(
        r#"router id {WORKLOAD_IP};
log stderr all;
protocol device {{ }}
protocol static child {{ ipv4; route {CHILD_BLOCK} blackhole; }}
protocol bgp parent {{
  local {WORKLOAD_IP} as {WORKLOAD_AS};
  neighbor {PEERING_IP} as {NODE_AS};
  # The peering address is not on a connected prefix of eth0 (a /32).
  multihop;
  passive on;
  hold time 9;
  ipv4 {{ import all; export where proto = "child"; }};
}}
"#
    )
}

#[test]
fn a_selected_workload_peers_with_its_node_and_its_routes_are_installed() {
    if !(require_root() && twill_integration::require_programs(&["bird", "birdc"], "bird2")) {
        return;
    }
    let node = TestNetns::new("twill").unwrap();
    let pod = TestNetns::new("pod").unwrap();
    // Calico's wiring: a veth whose host end carries the peering address,
    // a /32 route to the workload, and the workload's /32 on its eth0.
    node.ip(&[
        "link",
        "add",
        "caliw0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])
    .unwrap();
    node.ip(&["addr", "add", &format!("{PEERING_IP}/32"), "dev", "caliw0"])
        .unwrap();
    node.ip(&["link", "set", "caliw0", "up"]).unwrap();
    node.ip(&[
        "route",
        "add",
        &format!("{WORKLOAD_IP}/32"),
        "dev",
        "caliw0",
    ])
    .unwrap();
    pod.ip(&["addr", "add", &format!("{WORKLOAD_IP}/32"), "dev", "eth0"])
        .unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
    pod.ip(&[
        "route",
        "add",
        &format!("{PEERING_IP}/32"),
        "dev",
        "eth0",
        "scope",
        "link",
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bird = Bird::start(&pod, dir.path(), "child", &bird_config());
    let context = || {
        format!(
            "---- bird log\n{}\n---- birdc show protocols\n{}\n---- kernel\n{}",
            bird.daemon.log(),
            bird.birdc(&["show", "protocols"]),
            kernel_routes(&node, false)
        )
    };

    let computed = desired(&snapshot(), "a", &MapSecrets::default()).unwrap();
    assert!(computed.warnings.is_empty(), "{:?}", computed.warnings);
    let peers = computed.desired.neighbors;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].peer_type, PeerType::LocalWorkload);
    let workload: IpAddr = WORKLOAD_IP.parse().unwrap();

    block_on_in(&node, || async {
        let kernel: Arc<dyn Kernel> = Arc::new(
            NetlinkKernel::open(&NetnsPath::from_path(node.path()), NftConfig::default()).unwrap(),
        );
        let router = Router::start(
            RouterConfig {
                asn: NODE_AS,
                router_id: Ipv4Addr::new(10, 0, 0, 1),
                cluster_id: None,
                kernel: Some(kernel),
                graceful_restart_time: None,
                stale_sweep_after: Duration::from_secs(60),
            },
            None,
        );
        router.set_neighbors(peers.iter().map(neighbor).collect());
        established(&router, &[workload], context).await;
        let status = router.status().await;
        assert_eq!(status[0].description, "Local_Workload_10_65_0_5");
        eventually(
            "the workload's block in the node's kernel via the workload",
            WAIT,
            async || {
                let table = kernel_routes(&node, false);
                has_line(&table, &[CHILD_BLOCK, &format!("via {WORKLOAD_IP}")])
                    .then_some(())
                    .ok_or(table)
            },
            context,
        )
        .await;
        let protocols = bird.birdc(&["show", "protocols", "parent"]);
        assert!(protocols.contains("Established"), "{protocols}");
        router.shutdown().await;
    });
}
