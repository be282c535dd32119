//! The lab end to end, as a user drives it: the `twill-lab` binary (the
//! same commands as `twill lab`) with Twill's real daemons. Root tests:
//! they print `skipped: needs root` otherwise. The daemons must be built
//! next to the binary (`cargo build -p felix-rs -p bgp-speaker -p
//! twill-ipam -p twill-cni`).

#![allow(clippy::unwrap_used)] // Setup failures panic, which fails the test.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// The BIRD a test runs inside a pod; stopped (and its files removed) when
/// dropped, before the lab is torn down.
struct PodBird {
    pid: u32,
    dir: std::path::PathBuf,
}

impl PodBird {
    fn start(netns: &str, dir: std::path::PathBuf, config: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bird.conf"), config).unwrap();
        let mut command = twill_lab::sys::in_netns(netns, "bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(dir.join("bird.conf"))
            .arg("-s")
            .arg(dir.join("bird.ctl"));
        let pid = twill_lab::sys::spawn_detached(command, &dir.join("bird.log")).unwrap();
        Self { pid, dir }
    }

    fn birdc(&self, args: &[&str]) -> String {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for PodBird {
    fn drop(&mut self) {
        twill_lab::sys::stop_pid(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calico's peering with a local workload, both halves at once, from the
/// same YAML a Calico user applies: `localWorkloadPeeringIPV4` in the
/// BGPConfiguration and a BGPPeer whose `localWorkloadSelector` picks the
/// pod. felix-rs puts the peering address on the pod's host-side
/// interface; bgp-speaker peers from it with the BIRD that runs inside the
/// pod; the node's block reaches the pod and the pod's route reaches the
/// node's kernel through the pod.
#[test]
fn a_pod_picked_by_a_local_workload_selector_peers_with_its_node() {
    if !ready() {
        return;
    }
    const PEERING_IP: &str = "169.254.0.179";
    const POD_AS: u32 = 65401;
    const POD_BLOCK: &str = "10.123.0.0/26";
    let lab = TestLab::new();
    lab.ok(&["up", "--nodes", "1", "--tor", "none"]);
    let node_as = twill_lab::lab::NODE_AS;
    lab.open()
        .apply(
            "local-workload",
            &format!(
                "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  nodeToNodeMeshEnabled: true
  asNumber: {node_as}
  localWorkloadPeeringIPV4: {PEERING_IP}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: routers
spec:
  localWorkloadSelector: role == 'router'
  asNumber: {POD_AS}
"
            ),
        )
        .unwrap();
    lab.ok(&[
        "pod",
        "add",
        "vm/router",
        "--node",
        "n1",
        "--labels",
        "role=router",
    ]);
    // A pod the selector does not pick gets no peering address.
    lab.ok(&["pod", "add", "vm/other", "--node", "n1"]);
    let state = lab.state();
    let pod = state.pod("vm/router").unwrap();
    let node = state.node("n1").unwrap();
    let bird = PodBird::start(
        &pod.netns,
        lab.root.with_extension("bird"),
        &format!(
            "router id {address};
log stderr all;
protocol device {{ }}
protocol static child {{ ipv4; route {POD_BLOCK} blackhole; }}
protocol bgp parent {{
  local {address} as {POD_AS};
  neighbor {PEERING_IP} as {node_as};
  # The peering address is not on a connected prefix of eth0 (a /32).
  multihop;
  passive on;
  ipv4 {{ import all; export where proto = \"child\"; }};
}}
",
            address = pod.address
        ),
    );
    let context = || {
        format!(
            "---- bird log\n{}\n---- birdc show protocols all\n{}\n---- lab status\n{}",
            bird.log(),
            bird.birdc(&["show", "protocols", "all"]),
            lab.ok(&["status"])
        )
    };

    // felix-rs: the peering address on the picked pod's interface alone.
    let on = twill_lab::sys::wait_for("the peering address", Duration::from_secs(30), || {
        let on = twill_lab::sys::ip(
            &node.netns,
            &["-o", "addr", "show", "to", &format!("{PEERING_IP}/32")],
        )
        .ok()?;
        (!on.is_empty()).then_some(on)
    })
    .unwrap_or_default();
    assert_eq!(on.lines().count(), 1, "one interface carries it: {on}");
    let route =
        twill_lab::sys::ip(&node.netns, &["route", "get", &pod.address.to_string()]).unwrap();
    let interface = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap();
    assert!(
        on.contains(&format!(" {interface} ")),
        "the address is on {interface}, the pod's host side: {on}"
    );

    // bgp-speaker: the session, and routes both ways.
    let established =
        twill_lab::sys::wait_for("the pod's session", Duration::from_secs(30), || {
            let status = lab.open().bgp_status("n1").ok()?;
            status
                .peers
                .iter()
                .any(|p| p.address == std::net::IpAddr::V4(pod.address) && p.state == "Established")
                .then_some(())
        });
    assert!(established.is_ok(), "{}", context());
    let installed = twill_lab::sys::wait_for("the pod's block", Duration::from_secs(30), || {
        let routes = twill_lab::sys::ip(&node.netns, &["route", "show", POD_BLOCK]).ok()?;
        routes
            .contains(&format!("via {} ", pod.address))
            .then_some(())
    });
    assert!(installed.is_ok(), "{POD_BLOCK} via the pod: {}", context());
    let learned =
        twill_lab::sys::wait_for("the node's block in BIRD", Duration::from_secs(30), || {
            bird.birdc(&["show", "route", "protocol", "parent"])
                .contains("10.244.")
                .then_some(())
        });
    assert!(
        learned.is_ok(),
        "the node's block in the pod: {}",
        context()
    );

    drop(bird);
    let pids = lab.pids();
    lab.ok(&["down"]);
    lab.assert_gone(&pids);
}
