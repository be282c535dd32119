//! Start-to-programmed time of the daemon (root: a throwaway network
//! namespace with real nft): 250 local endpoints, 10,000 remote endpoints,
//! N policies (default 10,000; first argument overrides) in an in-memory
//! datastore; the clock runs from the daemon's start until every local
//! endpoint's status file is written (sync, render, plan, one transaction,
//! read-back verification).
//! Runs on the allocator the `felix-rs` binary uses, with the same
//! settings, so its RSS is the daemon's (plus the in-memory store,
//! measured before the start).
//! RSS is read `SETTLE` seconds after programming (default 5; second
//! argument), once the first whole-table comparison has run.
//! Run: `cargo run --release -p felix-rs --example daemon_scale [-- POLICIES [SETTLE]]`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{APPS, LOCAL, REMOTE, store};
use felix_rs::daemon::{self, DaemonConfig, health::Health};
use twill_api::Resource;
use twill_kernel::{NetlinkKernel, NetnsPath, NftConfig};
use twill_store::{AsyncDatastore, MemoryStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn endpoint(i: usize, node: &str) -> Resource {
    common::endpoint(i, node, i % APPS).into()
}

fn policy(i: usize) -> Resource {
    common::policy(i).into()
}

/// `VmRSS` / `VmHWM` of this process, in MB.
fn process_memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    felix_rs::allocator::reexec_with_settings().expect("re-executed with the allocator settings");
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    let settle: u64 = std::env::args()
        .nth(2)
        .map_or(5, |a| a.parse().expect("a number of seconds"));
    if !twill_integration::require_root() {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
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
    let rss_before = process_memory_mb("VmRSS:");
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
    // Let the first full comparison with the kernel (2 s after the first
    // apply) run too.
    std::thread::sleep(Duration::from_secs(settle));
    let (rss_after, peak) = (process_memory_mb("VmRSS:"), process_memory_mb("VmHWM:"));
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
        "{policies} policies, {LOCAL} local + {REMOTE} remote endpoints: start to programmed {programmed:?} (applies incl. verification, sum: {apply_sum} s)"
    );
    println!(
        "process RSS: {rss_before:.1} MB with the in-memory store filled, {rss_after:.1} MB with the daemon running ({:.1} MB daemon), peak {peak:.1} MB",
        rss_after - rss_before
    );
}
