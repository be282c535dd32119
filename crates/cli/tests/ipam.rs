//! `twill ipam` against an embedded datastore that the IPAM library filled.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use twill_api::Object;
use twill_api::ippool::{IPAM_CONFIGURATION_NAME, IPAMConfigurationSpec, IPPoolSpec};
use twill_api::node::{ClusterInformationSpec, NodeSpec};
use twill_ipam::{AllocateRequest, Ipam};
use twill_store::{Datastore, SqliteStore};

fn twill(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(["ipam"])
        .args(args)
        .env("TWILL_DATASTORE", db)
        .output()
        .expect("twill runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A datastore with one /24 pool of /26 blocks, a node, and three pods'
/// addresses allocated on it. Returns the addresses.
fn datastore_with_three_pods(db: &Path) -> Vec<String> {
    let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(db).expect("open datastore"));
    let pool = IPPoolSpec {
        cidr: "10.66.0.0/24".into(),
        block_size: Some(26),
        ..IPPoolSpec::default()
    };
    twill_ipam::store::create(&*store, &Object::new("pool-a", None, pool)).expect("create pool");
    twill_ipam::store::create(&*store, &Object::new("node-1", None, NodeSpec::default()))
        .expect("create node");
    let ipam = Ipam::new(store);
    (1..=3)
        .map(|i| {
            let allocated = ipam
                .allocate(&AllocateRequest::ipv4(
                    format!("k8s-pod-network.c{i}"),
                    "node-1",
                ))
                .expect("allocate");
            allocated[0].ip.to_string()
        })
        .collect()
}

fn pool_usage(db: &Path) -> serde_json::Value {
    let out = twill(db, &["show", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let usage: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show prints JSON");
    let pools = usage.get("pools").unwrap_or(&usage);
    pools
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["pool"] == "pool-a"))
        .cloned()
        .unwrap_or_else(|| panic!("pool-a missing from {usage}"))
}

#[test]
fn show_counts_the_addresses_in_use_per_pool() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    datastore_with_three_pods(&db);
    let pool = pool_usage(&db);
    assert_eq!(pool["inUse"], 3, "{pool}");
    // Totals are strings: an IPv6 pool holds more addresses than JSON numbers can.
    assert_eq!(pool["total"], "256", "{pool}");

    let table = twill(&db, &["show"]);
    assert_eq!(table.status.code(), Some(0));
    assert!(
        text(&table.stdout).contains("10.66.0.0/24"),
        "{}",
        text(&table.stdout)
    );
}

#[test]
fn show_ip_names_the_handle_that_holds_an_address() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let ips = datastore_with_three_pods(&db);
    let out = twill(&db, &["show", "--ip", &ips[1], "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("k8s-pod-network.c2"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn release_ip_frees_one_address_and_configure_writes_the_configuration() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let ips = datastore_with_three_pods(&db);

    let out = twill(&db, &["release", "--ip", &ips[0]]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(pool_usage(&db)["inUse"], 2);

    let out = twill(&db, &["configure", "--ip-cooldown-seconds", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let store = SqliteStore::open(&db).expect("open datastore");
    let config = twill_ipam::store::get::<IPAMConfigurationSpec>(&store, IPAM_CONFIGURATION_NAME)
        .expect("read configuration")
        .expect("configuration written");
    assert_eq!(config.object.spec.ip_cooldown_seconds, Some(60));
}

#[test]
fn a_missing_datastore_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = twill(&dir.path().join("absent.db"), &["show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not exist"));
}

#[test]
fn show_borrowed_lists_addresses_taken_from_another_nodes_block() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&db).expect("open datastore"));
    // One block in the pool: the second node can only borrow.
    let pool = IPPoolSpec {
        cidr: "10.67.0.0/26".into(),
        block_size: Some(26),
        ..IPPoolSpec::default()
    };
    twill_ipam::store::create(&*store, &Object::new("tiny", None, pool)).expect("create pool");
    for node in ["node-1", "node-2"] {
        twill_ipam::store::create(&*store, &Object::new(node, None, NodeSpec::default()))
            .expect("create node");
    }
    let ipam = Ipam::new(store);
    let own = ipam
        .allocate(&AllocateRequest::ipv4("k8s-pod-network.own", "node-1"))
        .expect("node-1 claims the block");
    let mut request = AllocateRequest::ipv4("k8s-pod-network.borrower", "node-2");
    request.attributes.extend([
        ("namespace".into(), "shop".into()),
        ("pod".into(), "web-0".into()),
    ]);
    let lent = ipam.allocate(&request).expect("node-2 borrows");
    assert!(lent[0].borrowed, "{lent:?}");

    let out = twill(&db, &["show", "--show-borrowed", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["borrowed"],
        serde_json::json!([{
            "ip": lent[0].ip.to_string(),
            "borrowingNode": "node-2",
            "block": "10.67.0.0/26",
            "blockOwner": "node-1",
            "type": "pod",
            "allocatedTo": "shop/web-0",
        }]),
        "the own address {} is not listed",
        own[0].ip
    );

    let table = twill(&db, &["show", "--show-borrowed"]);
    let stdout = text(&table.stdout);
    assert!(
        stdout.contains("| IP ")
            && stdout.contains("BORROWING-NODE")
            && stdout.contains("shop/web-0"),
        "{stdout}"
    );
}

#[test]
fn show_configuration_prints_the_values_in_effect() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    datastore_with_three_pods(&db);
    let shown = |db: &Path| {
        let out = twill(db, &["show", "--show-configuration", "-o", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    assert_eq!(
        shown(&db),
        serde_json::json!({
            "StrictAffinity": false,
            "AutoAllocateBlocks": true,
            "MaxBlocksPerHost": 20,
            "IPCooldownSeconds": 30,
        }),
        "Twill's defaults when no IPAMConfiguration exists"
    );
    let out = twill(
        &db,
        &[
            "configure",
            "--strictaffinity",
            "true",
            "--ip-cooldown-seconds",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = shown(&db);
    assert_eq!(config["StrictAffinity"], true);
    assert_eq!(config["IPCooldownSeconds"], 0);
    let table = text(&twill(&db, &["show", "--show-configuration"]).stdout);
    assert!(
        table.contains("| PROPERTY ") && table.contains("| StrictAffinity "),
        "{table}"
    );
}

#[test]
fn release_from_report_refuses_a_report_of_another_cluster() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("twill.db");
    datastore_with_three_pods(&db);
    let store = SqliteStore::open(&db).expect("open datastore");
    let info = |guid: &str| {
        Object::new(
            "default",
            None,
            ClusterInformationSpec {
                cluster_guid: Some(guid.into()),
                ..ClusterInformationSpec::default()
            },
        )
    };
    twill_ipam::store::create(&store, &info("guid-a")).expect("cluster information");
    let report = dir.path().join("report.json");
    let out = twill(&db, &["check", "-o", report.to_str().expect("utf-8 path")]);
    assert!(
        text(&out.stdout).contains("cluster GUID: guid-a"),
        "{}",
        text(&out.stdout)
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(written["clusterGUID"], "guid-a");

    let out = twill(
        &db,
        &[
            "release",
            "--from-report",
            report.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut stored = twill_ipam::store::get::<ClusterInformationSpec>(&store, "default")
        .expect("read")
        .expect("exists");
    stored.object = info("guid-b");
    twill_ipam::store::update(&store, &stored).expect("change the GUID");
    let out = twill(
        &db,
        &[
            "release",
            "--from-report",
            report.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("made on another cluster (clusterGUID guid-a, this datastore has guid-b)"),
        "{}",
        text(&out.stderr)
    );
}
