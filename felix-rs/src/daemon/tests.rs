//! The owner task's state machine, driven message by message.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use twill_kernel::KernelOp;
use twill_kernel::fake::RecordingKernel;
use twill_store::Key;

use super::*;

fn felix(kernel: &RecordingKernel, dir: &std::path::Path) -> Felix {
    let mut config = DaemonConfig::new("node1");
    config.status_dir = dir.to_path_buf();
    let status = StatusDir::open(dir).unwrap();
    Felix::new(
        config,
        Arc::new(kernel.clone()),
        status,
        Arc::new(Health::new()),
    )
}

fn wep_item(name: &str, node: &str, revision: u64) -> Item {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: ns1, labels: {{app: web}}}}
spec:
  node: {node}
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  containerID: c-{name}
  interfaceName: twl{name}
  ipNetworks: [10.0.0.{revision}/32]
"
    );
    let resource = twill_api::load_str("test", &yaml).unwrap().remove(0);
    Item {
        key: Key::namespaced(resource.store_kind(), "ns1", name),
        revision,
        resource: Ok(Decoded::from_resource(resource)),
    }
}

fn snapshot(kind: &'static str, items: Vec<Item>) -> FelixMsg {
    FelixMsg::Snapshot { kind, items }
}

fn nft_writes(kernel: &RecordingKernel) -> usize {
    kernel
        .ops()
        .iter()
        .filter(|r| matches!(r.op, KernelOp::NftApply { .. }) && !r.failed)
        .count()
}

#[tokio::test]
async fn nothing_is_scheduled_until_every_kind_has_listed() {
    let kernel = RecordingKernel::new();
    let dir = tempfile::tempdir().unwrap();
    let mut felix = felix(&kernel, dir.path());
    let (last, first) = WATCHED_KINDS.split_last().unwrap();
    for kind in first {
        let items = if *kind == twill_api::endpoint::WorkloadEndpointSpec::STORE_KIND {
            vec![wep_item("a", "node1", 7)]
        } else {
            Vec::new()
        };
        felix.on_msg(snapshot(kind, items));
        assert!(
            felix.apply_at.is_none(),
            "apply scheduled before {last} listed"
        );
    }
    assert!(
        kernel.ops().is_empty(),
        "the kernel was touched before sync"
    );
    felix.on_msg(snapshot(last, Vec::new()));
    assert!(felix.apply_at.is_some(), "no apply scheduled once in sync");
    assert!(felix.graph.in_sync());

    felix.apply().await;
    assert_eq!(
        nft_writes(&kernel),
        1,
        "one transaction programs everything"
    );
    let status = std::fs::read_to_string(dir.path().join("ns1.a.json")).unwrap();
    assert!(status.contains("\"revision\":7"), "{status}");
}

#[test]
fn only_workload_endpoints_of_this_node_are_local() {
    let kernel = RecordingKernel::new();
    let dir = tempfile::tempdir().unwrap();
    let mut felix = felix(&kernel, dir.path());
    let kind = twill_api::endpoint::WorkloadEndpointSpec::STORE_KIND;
    felix.on_msg(snapshot(
        kind,
        vec![wep_item("a", "node1", 1), wep_item("b", "node2", 2)],
    ));
    let local: Vec<&String> = felix.local_weps.keys().map(|(_, name)| name).collect();
    assert_eq!(local, ["a"]);

    // A WEP that moves away stops being local.
    felix.on_msg(FelixMsg::Upserted {
        kind,
        item: wep_item("a", "node3", 3),
    });
    assert!(felix.local_weps.is_empty());
}

#[test]
fn a_relist_deletes_what_is_no_longer_listed() {
    let kernel = RecordingKernel::new();
    let dir = tempfile::tempdir().unwrap();
    let mut felix = felix(&kernel, dir.path());
    let kind = twill_api::endpoint::WorkloadEndpointSpec::STORE_KIND;
    felix.on_msg(snapshot(
        kind,
        vec![wep_item("a", "node1", 1), wep_item("b", "node1", 2)],
    ));
    felix.on_msg(snapshot(kind, vec![wep_item("b", "node1", 3)]));
    let local: Vec<&String> = felix.local_weps.keys().map(|(_, name)| name).collect();
    assert_eq!(local, ["b"]);
    assert_eq!(felix.graph.local_endpoints().count(), 1);
    assert_eq!(felix.known.count(kind), 1);
}

#[test]
fn deletions_map_to_the_graph_update_of_their_kind() {
    let ns = |name: &str| Key::namespaced("x", "ns1", name);
    let cluster = |name: &str| Key::cluster("x", name);
    let cases: Vec<(&str, Key, Option<&str>)> = vec![
        ("WorkloadEndpoint", ns("w"), Some("WorkloadEndpointDeleted")),
        ("NetworkPolicy", ns("p"), Some("PolicyDeleted")),
        (
            "GlobalNetworkPolicy",
            cluster("g"),
            Some("GlobalPolicyDeleted"),
        ),
        (
            "NetworkPolicy.networking.k8s.io",
            ns("k"),
            Some("KubernetesPolicyDeleted"),
        ),
        ("Tier", cluster("t"), Some("TierDeleted")),
        ("NetworkSet", ns("s"), Some("NetworkSetDeleted")),
        (
            "GlobalNetworkSet",
            cluster("s"),
            Some("GlobalNetworkSetDeleted"),
        ),
        ("HostEndpoint", cluster("h"), Some("HostEndpointDeleted")),
        ("Profile", cluster("kns.ns1"), Some("NamespaceDeleted")),
        (
            "Profile",
            cluster("ksa.ns1.sa"),
            Some("ServiceAccountDeleted"),
        ),
        ("Profile", cluster("custom"), Some("ProfileDeleted")),
        ("IPPool", cluster("pool"), None),
    ];
    for (kind, key, expected) in cases {
        let got = deleted_update(kind, &key).map(|u| {
            let text = format!("{u:?}");
            text.split([' ', '(', '{']).next().unwrap().to_string()
        });
        assert_eq!(got.as_deref(), expected, "{kind} {key:?}");
    }
}

#[test]
fn invalid_configurations_are_refused_before_anything_runs() {
    type Break = fn(&mut DaemonConfig);
    let cases: [(&str, Break); 5] = [
        ("node", |c| c.node.clear()),
        ("statusDir", |c| c.status_dir = PathBuf::new()),
        ("driftInterval", |c| c.drift_interval = Duration::ZERO),
        ("retryMin", |c| c.retry_min = Duration::ZERO),
        ("retryMax", |c| c.retry_max = Duration::from_millis(1)),
    ];
    assert!(DaemonConfig::new("node1").validate().is_ok());
    for (field, breaks) in cases {
        let mut config = DaemonConfig::new("node1");
        breaks(&mut config);
        match config.validate() {
            Err(DaemonError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn configuration_files_reject_unknown_fields() {
    let good = r#"{"node":"n1","statusDir":"s","applyDelay":5,"driftInterval":1000,"retryMin":10,"retryMax":100}"#;
    let config: DaemonConfig = serde_json::from_str(good).unwrap();
    assert_eq!(config.apply_delay, Duration::from_millis(5));
    let bad = r#"{"node":"n1","statusDir":"s","applyDelay":5,"driftInterval":1000,"retryMin":10,"retryMax":100,"extra":1}"#;
    assert!(serde_json::from_str::<DaemonConfig>(bad).is_err());
}
