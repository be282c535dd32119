//! The daemon end to end against an in-memory datastore and the recording
//! fake kernel: sync before any kernel access, one transaction per change,
//! retries that keep the old ruleset, endpoint status files, drift repair,
//! restarts that change nothing.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_rs::daemon::{self, DaemonConfig, TABLE_FAMILY, TABLE_NAME};
use felix_rs::{Ruleset, from_kernel};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use twill_kernel::fake::RecordingKernel;
use twill_kernel::{KernelError, KernelExt, KernelObject, KernelOp};
use twill_store::{AsyncDatastore, Datastore, Key, MemoryStore, Precondition};

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn config(dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig::new("node1");
    config.status_dir = dir.to_path_buf();
    config.apply_delay = Duration::from_millis(20);
    config.retry_min = Duration::from_millis(50);
    config
}

fn start(config: DaemonConfig, store: &MemoryStore, kernel: &RecordingKernel) -> Running {
    let (stop, stopped) = oneshot::channel();
    let store = AsyncDatastore::new(Arc::new(store.clone()));
    let kernel = Arc::new(kernel.clone());
    let task = tokio::spawn(daemon::run(config, store, kernel, async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

fn key_of(resource: &twill_api::Resource) -> Key {
    match resource.metadata().namespace.as_deref() {
        Some(ns) => Key::namespaced(resource.store_kind(), ns, resource.metadata().name.as_str()),
        None => Key::cluster(resource.store_kind(), resource.metadata().name.as_str()),
    }
}

/// Creates or replaces every resource in `yaml`.
fn put(store: &MemoryStore, yaml: &str) {
    for resource in twill_api::load_str("test", yaml).unwrap() {
        let key = key_of(&resource);
        let value = resource.to_json();
        if store.get(&key).is_ok() {
            store
                .update(&key, &value, Precondition::Unconditional)
                .unwrap();
        } else {
            store.create(&key, &value).unwrap();
        }
    }
}

fn wep(name: &str, ip: u8) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: ns1, labels: {{app: {name}}}}}
spec:
  node: node1
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  containerID: c-{name}
  interfaceName: twl{name}
  ipNetworks: [10.0.0.{ip}/32]
---
"
    )
}

const DENY_TO_A: &str = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-a, namespace: ns1}
spec:
  selector: app == 'a'
  types: [Ingress]
  ingress: [{action: Deny}]
";

fn successful_applies(kernel: &RecordingKernel) -> Vec<String> {
    kernel
        .ops()
        .into_iter()
        .filter(|r| !r.failed)
        .filter_map(|r| match r.op {
            KernelOp::NftApply { script } => Some(script),
            _ => None,
        })
        .collect()
}

fn failed_applies(kernel: &RecordingKernel) -> usize {
    kernel
        .ops()
        .iter()
        .filter(|r| r.failed && matches!(r.op, KernelOp::NftApply { .. }))
        .count()
}

async fn table(kernel: &RecordingKernel) -> Ruleset {
    from_kernel(
        &kernel
            .nft_read_table(TABLE_FAMILY, TABLE_NAME)
            .await
            .unwrap(),
    )
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn status_revision(dir: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(format!("ns1.{name}.json"))).ok()?;
    let status: twill_api::status::EndpointStatus = serde_json::from_str(&text).unwrap();
    Some(status.revision)
}

fn revision(store: &MemoryStore, name: &str) -> u64 {
    store
        .get(&Key::namespaced("WorkloadEndpoint", "ns1", name))
        .unwrap()
        .revision
        .0
}

fn status_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status");
    (dir, path)
}

#[tokio::test]
async fn a_policy_change_is_one_transaction_after_the_initial_one() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + &wep("b", 2)));
    let running = start(config(&dir), &store, &kernel);
    eventually("both endpoints programmed", || {
        status_revision(&dir, "a").is_some() && status_revision(&dir, "b").is_some()
    })
    .await;
    assert_eq!(
        successful_applies(&kernel).len(),
        1,
        "initial sync is one transaction"
    );

    put(&store, DENY_TO_A);
    eventually("the policy applied", || {
        successful_applies(&kernel).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let applies = successful_applies(&kernel);
    assert_eq!(applies.len(), 2, "one policy change, one transaction");
    assert!(applies[1].contains("drop"), "{}", applies[1]);
    running.stop().await;
}

#[tokio::test]
async fn status_files_follow_the_programmed_revision_and_stale_ones_are_swept() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // Left by an earlier run for an endpoint that no longer exists, and
    // half written by an earlier run that was killed.
    std::fs::write(dir.join("ns1.gone.json"), "{}").unwrap();
    std::fs::write(dir.join(".ns1.a.json.tmp"), "{").unwrap();
    put(&store, &wep("a", 1));
    let running = start(config(&dir), &store, &kernel);
    let first = revision(&store, "a");
    eventually("a programmed", || status_revision(&dir, "a") == Some(first)).await;
    assert!(
        !dir.join("ns1.gone.json").exists(),
        "stale status file swept"
    );
    assert!(
        !dir.join(".ns1.a.json.tmp").exists(),
        "half-written status file swept"
    );

    put(&store, &wep("a", 9));
    let second = revision(&store, "a");
    eventually("a reprogrammed", || {
        status_revision(&dir, "a") == Some(second)
    })
    .await;

    // Removal after deletion is checked against the real kernel in
    // tests/daemon_e2e.rs: the fake cannot delete a map element by key.
    running.stop().await;
}

#[tokio::test]
async fn a_failed_transaction_keeps_the_old_ruleset_and_is_retried() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &wep("a", 1));
    let running = start(config(&dir), &store, &kernel);
    eventually("a programmed", || status_revision(&dir, "a").is_some()).await;
    let before = table(&kernel).await;

    kernel.fail_when(
        |op| matches!(op, KernelOp::NftApply { .. }),
        KernelError::NotFound {
            object: KernelObject::NftTransaction,
        },
    );
    put(&store, DENY_TO_A);
    eventually("two failed attempts", || failed_applies(&kernel) >= 2).await;
    assert_eq!(
        table(&kernel).await,
        before,
        "a failed apply changed the table"
    );

    kernel.clear_failures();
    eventually("the retry succeeded", || {
        successful_applies(&kernel).len() == 2
    })
    .await;
    assert_ne!(table(&kernel).await, before);
    assert!(successful_applies(&kernel)[1].contains("drop"));
    running.stop().await;
}

#[tokio::test]
async fn drift_is_repaired_on_the_drift_timer() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + DENY_TO_A));
    let mut config = config(&dir);
    config.drift_interval = Duration::from_millis(150);
    let running = start(config, &store, &kernel);
    eventually("a programmed", || status_revision(&dir, "a").is_some()).await;
    let programmed = table(&kernel).await;

    // Someone else adds a chain to our table and empties one of ours.
    let victim = programmed
        .chains
        .iter()
        .find(|(name, chain)| name.starts_with("pi-") && !chain.rules.is_empty())
        .map(|(name, _)| name.clone())
        .unwrap();
    kernel
        .nft_apply(&format!(
            "add chain inet twill intruder\nflush chain inet twill {victim}\n"
        ))
        .await
        .unwrap();
    assert_ne!(table(&kernel).await, programmed);

    let start = Instant::now();
    loop {
        if table(&kernel).await == programmed {
            break;
        }
        assert!(start.elapsed() < WAIT, "drift not repaired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn a_restart_with_an_unchanged_datastore_writes_nothing() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + &wep("b", 2) + DENY_TO_A));
    let running = start(config(&dir), &store, &kernel);
    eventually("programmed", || status_revision(&dir, "b").is_some()).await;
    running.stop().await;
    let programmed = table(&kernel).await;
    kernel.take_ops();

    let running = start(config(&dir), &store, &kernel);
    eventually("the table read back", || {
        kernel
            .ops()
            .iter()
            .any(|r| matches!(r.op, KernelOp::NftReadTable(_)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        successful_applies(&kernel).is_empty(),
        "a restart rewrote the table"
    );
    assert_eq!(table(&kernel).await, programmed);
    assert!(
        status_revision(&dir, "a").is_some(),
        "status kept across restart"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_restart_sweeps_what_was_deleted_while_down() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + DENY_TO_A));
    let running = start(config(&dir), &store, &kernel);
    eventually("programmed", || status_revision(&dir, "a").is_some()).await;
    running.stop().await;
    assert!(
        table(&kernel)
            .await
            .chains
            .keys()
            .any(|c| c.starts_with("pi-"))
    );

    store
        .delete(
            &Key::namespaced("NetworkPolicy", "ns1", "deny-a"),
            Precondition::Unconditional,
        )
        .unwrap();
    let running = start(config(&dir), &store, &kernel);
    let start = Instant::now();
    while table(&kernel)
        .await
        .chains
        .keys()
        .any(|c| c.starts_with("pi-"))
    {
        assert!(
            start.elapsed() < WAIT,
            "the deleted policy's chain was not swept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (code, body)
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn health_and_metrics_follow_sync_and_failures() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + &wep("b", 2) + DENY_TO_A));
    let mut config = config(&dir);
    let address = free_port();
    config.health_address = Some(address);
    let running = start(config, &store, &kernel);
    eventually("programmed", || status_revision(&dir, "b").is_some()).await;

    assert_eq!(http_get(address, "/livez").await.0, 200);
    assert_eq!(http_get(address, "/readyz").await.0, 200);
    let (code, metrics) = http_get(address, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "felix_active_local_endpoints 2",
        "felix_active_local_policies 1",
        "felix_resync_state 3",
        "felix_nft_errors_total 0",
        "felix_int_dataplane_apply_time_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    assert_eq!(http_get(address, "/nothing").await.0, 404);

    kernel.fail_when(
        |op| matches!(op, KernelOp::NftApply { .. }),
        KernelError::NotFound {
            object: KernelObject::NftTransaction,
        },
    );
    put(&store, &wep("c", 3));
    eventually("a failed apply", || failed_applies(&kernel) >= 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        http_get(address, "/readyz").await.0,
        503,
        "ready while failing"
    );
    let (_, metrics) = http_get(address, "/metrics").await;
    assert!(!metrics.contains("felix_nft_errors_total 0"), "{metrics}");
    kernel.clear_failures();
    let start = Instant::now();
    while http_get(address, "/readyz").await.0 != 200 {
        assert!(start.elapsed() < WAIT, "not ready again after recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn a_burst_of_changes_is_coalesced_into_one_transaction() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &wep("a", 1));
    let mut config = config(&dir);
    config.apply_delay = Duration::from_millis(300);
    let running = start(config, &store, &kernel);
    eventually("a programmed", || status_revision(&dir, "a").is_some()).await;

    let burst: String = (0..10)
        .map(|i| {
            format!(
                "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: p{i}, namespace: ns1}}
spec:
  selector: app == 'a'
  types: [Ingress]
  ingress: [{{action: Deny, protocol: TCP, destination: {{ports: [{port}]}}}}]
---
",
                port = 1000 + i
            )
        })
        .collect();
    put(&store, &burst);
    eventually("the burst applied", || {
        successful_applies(&kernel).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let applies = successful_applies(&kernel);
    assert_eq!(applies.len(), 2, "ten policies, one transaction");
    assert!(applies[1].contains("1009"), "{}", applies[1]);
    running.stop().await;
}

#[tokio::test]
async fn a_table_deleted_behind_the_daemons_back_is_rebuilt_whole() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    let (_tmp, dir) = status_dir();
    put(&store, &(wep("a", 1) + &wep("b", 2)));
    let running = start(config(&dir), &store, &kernel);
    eventually("programmed", || status_revision(&dir, "b").is_some()).await;
    let programmed = table(&kernel).await;

    kernel
        .nft_delete_table(TABLE_FAMILY, TABLE_NAME)
        .await
        .unwrap();
    // The next change is planned against the daemon's record, fails on the
    // missing table, and the retry rebuilds everything from a read-back.
    put(&store, DENY_TO_A);
    let began = Instant::now();
    loop {
        let now = kernel
            .nft_read_table(TABLE_FAMILY, TABLE_NAME)
            .await
            .map(|t| from_kernel(&t))
            .unwrap_or_default();
        if now.chains.len() > programmed.chains.len()
            && programmed.chains.keys().all(|c| now.chains.contains_key(c))
        {
            break;
        }
        assert!(began.elapsed() < WAIT, "the table was not rebuilt whole");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The daemon's record of the rebuilt table is whole too: a later
    // change planned against it leaves a table a restart has nothing to
    // add to.
    put(&store, &wep("c", 3));
    eventually("c programmed", || status_revision(&dir, "c").is_some()).await;
    running.stop().await;
    kernel.take_ops();
    let running = start(config(&dir), &store, &kernel);
    eventually("the table read back", || {
        kernel
            .ops()
            .iter()
            .any(|r| matches!(r.op, KernelOp::NftReadTable(_)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        successful_applies(&kernel).is_empty(),
        "the table after the rebuild and one more change was not what the daemon wanted"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_host_endpoint_by_expected_ip_follows_its_address_to_another_interface_at_once() {
    let store = MemoryStore::default();
    let kernel = RecordingKernel::new();
    for (link, peer) in [("eth0", "peer0"), ("eth1", "peer1")] {
        kernel
            .create_veth(twill_kernel::VethSpec::new(link, peer))
            .await
            .unwrap();
    }
    let address: ipnet::IpNet = "192.168.1.10/24".parse().unwrap();
    kernel.add_address("eth0", address).await.unwrap();
    let (_tmp, dir) = status_dir();
    put(
        &store,
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: by-ip, labels: {role: host}}
spec: {node: node1, expectedIPs: [192.168.1.10]}
",
    );
    let mut config = config(&dir);
    // No drift check comes to the rescue within the test.
    config.drift_interval = Duration::from_secs(3600);
    let running = start(config, &store, &kernel);
    let polices = |link: &str| {
        let chain = format!("hin-{link}");
        move |kernel: &RecordingKernel| {
            successful_applies(kernel)
                .last()
                .is_some_and(|script| script.contains(&chain))
        }
    };
    let on_eth0 = polices("eth0");
    eventually("eth0 policed", || on_eth0(&kernel)).await;
    // The first drift check (two seconds after the first apply) reads the
    // table back; the address moves after it, so only the address watch
    // can tell felix-rs.
    let reads = |kernel: &RecordingKernel| {
        kernel
            .ops()
            .iter()
            .filter(|r| matches!(r.op, KernelOp::NftReadTable(_)))
            .count()
    };
    let before = reads(&kernel);
    eventually("the first drift check", || reads(&kernel) > before).await;

    kernel.delete_address("eth0", address).await.unwrap();
    kernel.add_address("eth1", address).await.unwrap();
    let on_eth1 = polices("eth1");
    eventually("eth1 policed once the address moved", || on_eth1(&kernel)).await;
    let table = table(&kernel).await;
    assert!(table.chains.contains_key("hin-eth1"));
    assert!(
        !table.chains.contains_key("hin-eth0"),
        "eth0 is no longer policed"
    );
    running.stop().await;
}
