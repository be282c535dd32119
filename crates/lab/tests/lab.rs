//! The lab end to end, as a user drives it: the `twill-lab` binary (the
//! same commands as `twill lab`) with Twill's real daemons. Root tests:
//! they print `skipped: needs root` otherwise. The daemons must be built
//! next to the binary (`cargo build -p felix-rs -p bgp-speaker -p
//! twill-ipam -p twill-cni`).

#![allow(clippy::unwrap_used)] // Setup failures panic, which fails the test.

mod common;

use std::path::Path;
use std::process::Command;

use common::{LAB, REPO, TestLab, bin_dir, ready};

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
