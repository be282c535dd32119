//! Start-to-programmed time of the daemon (root: a throwaway network
//! namespace with real nft): 250 local endpoints, 10,000 remote endpoints,
//! N policies (default 10,000; first argument overrides) in an in-memory
//! datastore; the clock runs from the daemon's start until every local
//! endpoint's status file is written (sync, render, plan, one transaction,
//! read-back verification).
//! Run: `cargo run --release -p felix-rs --example daemon_scale [-- POLICIES]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_rs::daemon::{self, DaemonConfig, health::Health};
use twill_api::Resource;
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::policy::{GlobalNetworkPolicy, GlobalNetworkPolicySpec};
use twill_kernel::{NetlinkKernel, NetnsPath, NftConfig};
use twill_store::{AsyncDatastore, Datastore, Key, MemoryStore};

const LOCAL: usize = 250;
const REMOTE: usize = 10_000;
const APPS: usize = 2_000;

fn endpoint(i: usize, node: &str) -> Resource {
    let mut wep = WorkloadEndpoint::new(
        format!("{node}-k8s-p{i}-eth0"),
        Some("ns"),
        WorkloadEndpointSpec {
            node: node.into(),
            orchestrator: "k8s".into(),
            interface_name: format!("twl{i:08x}"),
            ip_networks: vec![format!(
                "10.{}.{}.{}/32",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            )],
            ..Default::default()
        },
    );
    wep.metadata.labels = BTreeMap::from([("app".to_string(), format!("app{}", i % APPS))]);
    wep.into()
}

fn policy(i: usize) -> Resource {
    let rule = |peer: usize| twill_api::common::Rule {
        action: twill_api::common::Action::Allow,
        ip_version: None,
        protocol: Some(twill_api::common::Protocol::Tcp),
        icmp: None,
        not_protocol: None,
        not_icmp: None,
        source: twill_api::common::EntityRule {
            selector: format!("app == 'app{peer}'"),
            ..Default::default()
        },
        destination: twill_api::common::EntityRule {
            ports: vec![twill_api::common::Port::number(80 + (i % 3) as u16)],
            ..Default::default()
        },
        http: None,
        metadata: None,
    };
    let spec = GlobalNetworkPolicySpec {
        order: Some(i as f64),
        selector: format!("app == 'app{}'", i % APPS),
        ingress: vec![
            rule((i + 1) % APPS),
            rule((i + 2) % APPS),
            rule((i + 7) % APPS),
        ],
        ..Default::default()
    };
    GlobalNetworkPolicy::new(format!("p{i}"), None, spec).into()
}

fn store(resource: &Resource, store: &MemoryStore) {
    let name = resource.metadata().name.as_str();
    let key = match resource.metadata().namespace.as_deref() {
        Some(ns) => Key::namespaced(resource.store_kind(), ns, name),
        None => Key::cluster(resource.store_kind(), name),
    };
    store
        .create(&key, &resource.to_json())
        .expect("a fresh key");
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    if !twill_integration::require_root() {
        return;
    }
    let netns = twill_integration::TestNetns::new("felixbench").expect("namespace");
    let kernel = NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default())
        .expect("kernel");
    let memory = MemoryStore::default();
    for i in 0..LOCAL {
        store(&endpoint(i, "node1"), &memory);
    }
    for i in LOCAL..LOCAL + REMOTE {
        store(&endpoint(i, "node2"), &memory);
    }
    for i in 0..policies {
        store(&policy(i), &memory);
    }
    let dir = tempfile::tempdir().expect("status dir");
    let mut config = DaemonConfig::new("node1");
    config.status_dir = dir.path().to_path_buf();
    let health = Arc::new(Health::new());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = Instant::now();
    let task = runtime.spawn(daemon::run_with_health(
        config,
        AsyncDatastore::new(Arc::new(memory)),
        Arc::new(kernel),
        Arc::clone(&health),
        async {
            let _ = stopped.await;
        },
    ));
    loop {
        let written = std::fs::read_dir(dir.path()).expect("status dir").count();
        if written >= LOCAL {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "not programmed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let programmed = start.elapsed();
    let metrics = health.encode();
    let apply_sum = metrics
        .lines()
        .find_map(|l| l.strip_prefix("felix_int_dataplane_apply_time_seconds_sum "))
        .unwrap_or("?")
        .to_string();
    stop.send(()).expect("daemon running");
    runtime
        .block_on(task)
        .expect("daemon task")
        .expect("daemon ran");
    println!(
        "{policies} policies, {LOCAL} local + {REMOTE} remote endpoints: start to programmed {programmed:?} (apply incl. verify: {apply_sum} s)"
    );
}
