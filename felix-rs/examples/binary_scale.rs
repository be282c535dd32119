//! The `felix-rs` binary itself at scale (root): the synthetic workload
//! (250 local endpoints, 10,000 remote endpoints, N policies; default
//! 10,000, first argument overrides) in a SQLite datastore file, the
//! binary started in a throwaway network namespace; prints the time from
//! spawn until every local endpoint's status file exists, and the
//! process's RSS and peak `SETTLE` seconds later (default 5; second
//! argument), once the first whole-table comparison has run.
//! Build the binary first:
//! `cargo build --release -p felix-rs --bin felix-rs && cargo run --release -p felix-rs --example binary_scale [-- POLICIES [SETTLE]]`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{APPS, LOCAL, REMOTE, store};
use twill_store::SqliteStore;

/// `VmRSS` / `VmHWM` of process `pid`, in MB.
fn process_memory_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The release binary next to this example's directory.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("this example's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("examples live one level below the binaries");
    dir.join("felix-rs")
}

fn main() {
    let policies: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number"));
    let settle: u64 = std::env::args()
        .nth(2)
        .map_or(5, |a| a.parse().expect("a number of seconds"));
    if !twill_integration::require_root() {
        return;
    }
    let binary = binary();
    assert!(
        binary.exists(),
        "{} is missing: cargo build --release -p felix-rs --bin felix-rs",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("scratch dir");
    let db = dir.path().join("store.db");
    {
        let sqlite = SqliteStore::open(&db).expect("datastore");
        for i in 0..LOCAL + REMOTE {
            let node = if i < LOCAL { "node1" } else { "node2" };
            store(&common::endpoint(i, node, i % APPS).into(), &sqlite);
        }
        for i in 0..policies {
            store(&common::policy(i).into(), &sqlite);
        }
    }
    let status = dir.path().join("status");
    let netns = twill_integration::TestNetns::new("felixbin").expect("namespace");
    let start = Instant::now();
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", netns.path().display()))
        .arg(&binary)
        .args(["--node", "node1", "--no-routing", "--datastore"])
        .arg(&db)
        .arg("--status-dir")
        .arg(&status)
        .stdout(Stdio::null())
        // The daemon's log, when asked for (`RUST_LOG`).
        .stderr(if std::env::var_os("RUST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("nsenter felix-rs");
    let programmed = loop {
        let written = std::fs::read_dir(&status).map_or(0, Iterator::count);
        if written >= LOCAL {
            break start.elapsed();
        }
        if let Some(exit) = child.try_wait().expect("daemon state") {
            panic!("felix-rs exited: {exit}");
        }
        assert!(start.elapsed() < Duration::from_secs(300), "not programmed");
        std::thread::sleep(Duration::from_millis(5));
    };
    // nsenter and the allocator settings both exec: the pid is the daemon's.
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(settle));
    let (rss, peak) = (
        process_memory_mb(pid, "VmRSS:"),
        process_memory_mb(pid, "VmHWM:"),
    );
    let (anon, file) = (
        process_memory_mb(pid, "RssAnon:"),
        process_memory_mb(pid, "RssFile:"),
    );
    child.kill().expect("stop the daemon");
    child.wait().expect("daemon reaped");
    println!(
        "felix-rs binary, {policies} policies, {LOCAL} local + {REMOTE} remote endpoints, SQLite store: spawn to programmed {programmed:?}; RSS {rss:.1} MB {settle} s later ({anon:.1} MB anonymous, {file:.1} MB file-backed), peak {peak:.1} MB"
    );
}
