//! The lab end to end, as a user drives it: the `twill-lab` binary (the
//! same commands as `twill lab`) with Twill's real daemons. Root tests:
//! they print `skipped: needs root` otherwise. The daemons must be built
//! next to the binary (`cargo build -p felix-rs -p bgp-speaker -p
//! twill-ipam -p twill-cni`).

#![allow(clippy::unwrap_used)] // Setup failures panic, which fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const LAB: &str = env!("CARGO_BIN_EXE_twill-lab");
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn bin_dir() -> PathBuf {
    Path::new(LAB).parent().unwrap().to_path_buf()
}

/// Root, BIRD and the built daemons, or a skip (a failure in CI).
fn ready() -> bool {
    if !twill_integration::require_root() {
        return false;
    }
    let dir = bin_dir();
    let daemons: Vec<String> = ["felix-rs", "bgp-speaker", "twill-ipamd", "twill-cni"]
        .iter()
        .map(|d| dir.join(d).display().to_string())
        .collect();
    let daemons: Vec<&str> = daemons.iter().map(String::as_str).collect();
    twill_integration::require_programs(
        &daemons,
        "none: cargo build -p felix-rs -p bgp-speaker -p twill-ipam -p twill-cni",
    ) && twill_integration::require_programs(&["bird", "birdc", "ss"], "bird2, iproute2")
}

/// A lab of its own: a unique name and state root, removed on drop.
struct TestLab {
    name: String,
    root: PathBuf,
}

impl TestLab {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(format!("twill-lab-test-{name}"));
        Self { name, root }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(LAB);
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--state-root")
            .arg(&self.root)
            .arg("--bin-dir")
            .arg(bin_dir())
            .current_dir(REPO);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        eprintln!(
            "$ twill-lab {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "twill-lab {args:?} failed");
        String::from_utf8(output.stdout).unwrap()
    }

    fn namespaces(&self) -> Vec<String> {
        let prefix = format!("twill-{}-", self.name);
        twill_integration::leak::netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Every pid the lab's state file records.
    fn pids(&self) -> Vec<u32> {
        let state = std::fs::read(self.root.join(&self.name).join("state.json")).unwrap();
        let state: twill_lab::LabState = serde_json::from_slice(&state).unwrap();
        state
            .nodes
            .iter()
            .flat_map(|n| n.pids.values().copied())
            .chain(state.tor_pid)
            .chain(state.pods.iter().filter_map(|p| p.listener))
            .collect()
    }

    fn assert_gone(&self, pids: &[u32]) {
        assert_eq!(self.namespaces(), Vec::<String>::new(), "namespaces left");
        for pid in pids {
            assert!(!twill_lab::sys::alive(*pid), "process {pid} left");
        }
        assert!(!self.root.join(&self.name).exists(), "state directory left");
        let host: Vec<String> = twill_integration::leak::survivors()
            .unwrap()
            .into_iter()
            .map(|s| s.to_string())
            .filter(|s| s.contains(&self.name))
            .collect();
        assert_eq!(host, Vec::<String>::new(), "host objects left");
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.command().arg("down").output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn lab_up_pods_probes_and_down_leave_nothing_behind() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let status = lab.ok(&["up", "--nodes", "2", "--tor", "bird"]);
    assert!(
        status.contains("Established"),
        "BGP sessions with the ToR: {status}"
    );
    lab.ok(&[
        "pod",
        "add",
        "demo/server",
        "--node",
        "n1",
        "--labels",
        "app=server",
        "--ports",
        "http:8080/tcp,dns:53/udp",
    ]);
    lab.ok(&["pod", "add", "demo/client", "--node", "n2"]);
    for (args, want) in [
        (&["--port", "8080", "--proto", "tcp"][..], "allow"),
        (&["--port", "53", "--proto", "udp"][..], "allow"),
        (&["--proto", "icmp"][..], "allow"),
        (&["--port", "9", "--proto", "tcp"][..], "deny"),
    ] {
        let mut command = vec!["probe", "demo/client", "demo/server"];
        command.extend_from_slice(args);
        let out = lab.ok(&command);
        assert!(out.starts_with(want), "{args:?}: {out}");
    }
    let status = lab.ok(&["status"]);
    assert!(
        status.contains("proto 202"),
        "a BGP-learned route: {status}"
    );
    assert_eq!(lab.namespaces().len(), 6, "fabric, tor, 2 nodes, 2 pods");
    lab.ok(&["pod", "del", "demo/server"]);
    assert_eq!(lab.namespaces().len(), 5, "the pod's namespace is gone");
    let pids = lab.pids();
    lab.ok(&["down"]);
    lab.assert_gone(&pids);
}

#[test]
fn a_scenario_with_a_mismatch_exits_non_zero_and_tears_down() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let output = lab.run(&["run", "examples/scenarios/mismatch.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL demo/client -> demo/server:8080/TCP: expected deny, observed allow"),
        "{stdout}"
    );
    assert!(stdout.contains("2 checks, 1 mismatches"), "{stdout}");
    lab.assert_gone(&[]);
}

#[test]
fn the_three_tier_scenario_passes() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let output = lab.run(&["run", "examples/scenarios/three-tier.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("22 checks, 0 mismatches"), "{stdout}");
    lab.assert_gone(&[]);
}

#[test]
fn the_label_change_scenario_passes() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let output = lab.run(&["run", "examples/scenarios/label-change.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("4 checks, 0 mismatches"), "{stdout}");
    lab.assert_gone(&[]);
}

#[test]
fn the_static_fallback_routes_pods_without_bgp() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let status = lab.ok(&["up", "--nodes", "2", "--tor", "none", "--routing", "static"]);
    assert!(status.contains("routing static (fallback"), "{status}");
    lab.ok(&["pod", "add", "a/server", "--node", "n1", "--ports", "80"]);
    lab.ok(&["pod", "add", "a/client", "--node", "n2"]);
    assert!(
        lab.ok(&["probe", "a/client", "a/server"])
            .starts_with("allow")
    );
    let pids = lab.pids();
    lab.ok(&["down"]);
    lab.assert_gone(&pids);
}

#[test]
fn the_demo_runs_and_tears_down_cleanly() {
    if !ready() {
        return;
    }
    let lab = TestLab::new();
    let output = Command::new(Path::new(REPO).join("scripts/demo"))
        .current_dir(REPO)
        .env("TWILL_DEMO_SKIP_INSTALL", "1")
        .env("TWILL_DEMO_SKIP_BUILD", "1")
        .env("TWILL_DEMO_TEARDOWN", "1")
        .env("TWILL_BIN_DIR", bin_dir())
        .env("TWILL_LAB_CMD", LAB)
        .env("TWILL_LAB", &lab.name)
        .env("TWILL_LAB_STATE", &lab.root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the demo failed");
    assert!(stdout.contains("0 mismatches"), "{stdout}");
    assert!(stdout.contains("Established"), "{stdout}");
    lab.assert_gone(&[]);
}
