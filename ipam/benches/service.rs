//! Benchmarks of the node IPAM service through its unix socket, on the
//! embedded SQLite datastore, against the targets of the IPAM issue:
//!
//! | figure | target |
//! |---|---|
//! | single allocation latency p50 / p99 | p99 < 5 ms |
//! | 100 concurrent allocations on one node, total | < 1 s |
//! | throughput, 4 nodes allocating at once | ≥ 2,000 allocations/s per node |
//! | service RSS holding 10,000 allocations | < 20 MB |
//!
//! `cargo bench -p twill-ipam --bench service` (both durability modes);
//! `-- process-crash` or `-- power-loss` for one mode; `-- latency`,
//! `-- concurrent`, `-- four-nodes` or `-- rss` for some of the figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use twill_api::Object;
use twill_api::ippool::{IPAMConfigurationSpec, IPPoolSpec};
use twill_api::node::NodeSpec;
use twill_ipam::AllocateRequest;
use twill_ipam::client::Client;
use twill_ipam::store;
use twill_store::SqliteStore;

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(db: &Path, dir: &Path, node: &str, durability: &str) -> Self {
        let socket = dir.join(format!("{node}.sock"));
        // `TWILL_BENCH_IPAMD` runs another build of the service (an A/B
        // comparison with the same bench driver).
        let binary = std::env::var_os("TWILL_BENCH_IPAMD").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_twill-ipamd")),
            PathBuf::from,
        );
        let child = Command::new(binary)
            .args(["--node", node, "--durability", durability])
            .arg("--datastore")
            .arg(db)
            .arg("--socket")
            .arg(&socket)
            // `TWILL_BENCH_LOG=twill_ipam=debug` shows each batch's size.
            .env(
                "RUST_LOG",
                std::env::var("TWILL_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the service binary starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&socket, Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "service {node} did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, socket }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket, Duration::from_secs(30)).expect("connect")
    }

    /// CPU time the service's live threads have run so far (the first
    /// field of each thread's `schedstat`, in nanoseconds).
    fn cpu(&self) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("the service's /proc task list");
        let nanos: u64 = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the service's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(dir: &Path, nodes: usize) -> PathBuf {
    let db = dir.join("datastore.db");
    let store = SqliteStore::open(&db).expect("open store");
    let pool = IPPoolSpec {
        cidr: "10.32.0.0/12".into(),
        block_size: Some(26),
        ..IPPoolSpec::default()
    };
    store::create(&store, &Object::new("default", None, pool)).expect("pool");
    // 10,000 addresses on one node are 157 /26 blocks: above Calico's
    // default limit of 20 blocks per node.
    let config = IPAMConfigurationSpec {
        max_blocks_per_host: Some(500),
        ..IPAMConfigurationSpec::default()
    };
    store::create(&store, &Object::new("default", None, config)).expect("config");
    for n in 0..nodes {
        store::create(
            &store,
            &Object::new(format!("n{n}"), None, NodeSpec::default()),
        )
        .expect("node");
    }
    db
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn latency(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = setup(dir.path(), 1);
    let daemon = Daemon::start(&db, dir.path(), "n0", durability);
    let mut client = daemon.client();
    for i in 0..200 {
        client
            .allocate(AllocateRequest::ipv4(format!("warm-{i}"), "n0"))
            .expect("allocate");
    }
    let mut samples = Vec::with_capacity(2000);
    for i in 0..2000 {
        let start = Instant::now();
        client
            .allocate(AllocateRequest::ipv4(format!("h-{i}"), "n0"))
            .expect("allocate");
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "[{durability}] single allocation latency over 2000: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// Releases the `workers` waiting on `barrier` and measures until the last
/// of them finished (each returns when it did).
fn release_and_time(barrier: &Barrier, workers: Vec<std::thread::JoinHandle<Instant>>) -> Duration {
    barrier.wait();
    let start = Instant::now();
    let last = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .max()
        .expect("at least one worker");
    last - start
}

fn concurrent_100(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = setup(dir.path(), 1);
    let daemon = Daemon::start(&db, dir.path(), "n0", durability);
    let mut totals = Vec::new();
    for round in 0..5 {
        let barrier = Arc::new(Barrier::new(101));
        let workers: Vec<_> = (0..100)
            .map(|i| {
                let mut client = daemon.client();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    client
                        .allocate(AllocateRequest::ipv4(format!("r{round}-{i}"), "n0"))
                        .expect("allocate");
                    Instant::now()
                })
            })
            .collect();
        totals.push(release_and_time(&barrier, workers));
    }
    totals.sort();
    println!(
        "[{durability}] 100 concurrent allocations on one node: median {:?}, worst {:?} (5 rounds)",
        totals[2], totals[4]
    );
}

fn four_nodes(durability: &str) {
    const NODES: usize = 4;
    const PER_NODE: usize = 4000;
    // `TWILL_BENCH_CLIENTS` (a divisor of 4,000) shows how batching scales;
    // the figure against the target is the default, 8 clients per node.
    let clients: usize = std::env::var("TWILL_BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0 && PER_NODE.is_multiple_of(c))
        .unwrap_or(8);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = setup(dir.path(), NODES);
    let daemons: Vec<Daemon> = (0..NODES)
        .map(|n| Daemon::start(&db, dir.path(), &format!("n{n}"), durability))
        .collect();
    let barrier = Arc::new(Barrier::new(NODES * clients + 1));
    let mut workers = Vec::new();
    for (n, daemon) in daemons.iter().enumerate() {
        for c in 0..clients {
            let mut client = daemon.client();
            let barrier = Arc::clone(&barrier);
            workers.push(std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_NODE / clients {
                    client
                        .allocate(AllocateRequest::ipv4(
                            format!("n{n}-c{c}-{i}"),
                            format!("n{n}"),
                        ))
                        .expect("allocate");
                }
                Instant::now()
            }));
        }
    }
    let cpu_before: Duration = daemons.iter().map(Daemon::cpu).sum();
    let elapsed = release_and_time(&barrier, workers).as_secs_f64();
    let cpu = daemons.iter().map(Daemon::cpu).sum::<Duration>() - cpu_before;
    let total = (NODES * PER_NODE) as f64;
    println!(
        "[{durability}] 4 nodes × {PER_NODE} allocations at once, {clients} clients per node: {elapsed:.2} s, {:.0} allocations/s per node, {:.0} in total; services' CPU {:.0} µs per allocation",
        total / elapsed / NODES as f64,
        total / elapsed,
        cpu.as_secs_f64() * 1e6 / total
    );
}

fn rss(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = setup(dir.path(), 1);
    let daemon = Daemon::start(&db, dir.path(), "n0", durability);
    let idle = daemon.rss_kib();
    let mut clients: Vec<Client> = (0..8).map(|_| daemon.client()).collect();
    std::thread::scope(|s| {
        for (c, client) in clients.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..10_000 / 8 {
                    client
                        .allocate(AllocateRequest::ipv4(format!("c{c}-{i}"), "n0"))
                        .expect("allocate");
                }
            });
        }
    });
    let holding = daemon.rss_kib();
    // The status request reads every block of the node at once.
    let status = daemon.client().status().expect("status");
    let held: usize = status.blocks.iter().map(|b| b.in_use).sum();
    println!(
        "[{durability}] service RSS: {} KiB idle, {holding} KiB holding {held} allocations in {} blocks, {} KiB after a status request",
        idle,
        status.blocks.len(),
        daemon.rss_kib(),
    );
}

/// A figure's name on the command line and the function measuring it.
type Figure = (&'static str, fn(&str));

fn main() {
    // `cargo bench` passes `--bench`; anything else selects a mode or a
    // figure.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a == "process-crash" || *a == "power-loss")
        .collect();
    let modes = if chosen.is_empty() {
        vec!["power-loss", "process-crash"]
    } else {
        chosen
    };
    let figures: [Figure; 4] = [
        ("latency", latency),
        ("concurrent", concurrent_100),
        ("four-nodes", four_nodes),
        ("rss", rss),
    ];
    let any_figure = figures
        .iter()
        .any(|(name, _)| args.iter().any(|a| a == name));
    for mode in modes {
        for (name, figure) in &figures {
            if !any_figure || args.iter().any(|a| a == name) {
                figure(mode);
            }
        }
    }
}
