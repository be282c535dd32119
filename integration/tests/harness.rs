//! The harness's own specification: namespaces come and go (also on
//! panic), pods reach each other across nodes and subnets, probes tell
//! reachable from refused from dropped, and parallel tests do not collide.
//! Every test needs root.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on any error")]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twill_integration::leak::{self, SurvivorKind};
use twill_integration::{Fabric, Pod, ProbeOutcome, TWO_SUBNETS, TestNetns, require_root};

const TIMEOUT: Duration = Duration::from_millis(700);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Waits until `done` holds, for at most two seconds.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie has left every namespace; only its parent's reaping
        // remains.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Two pods on two nodes of one fabric: `a` on n1, `b` on n2.
fn two_pods(fabric: &Fabric) -> (Pod, Pod) {
    let n1 = fabric.add_node("n1").unwrap();
    let n2 = fabric.add_node("n2").unwrap();
    let a = n1.add_pod("a", ip("10.65.1.2")).unwrap();
    let b = n2.add_pod("b", ip("10.65.2.2")).unwrap();
    (a, b)
}

#[test]
fn namespace_is_pinned_in_run_netns_until_dropped() {
    require_root!();
    let netns = TestNetns::new("pinned").unwrap();
    let path = netns.path().to_owned();
    assert!(path.exists(), "{} missing", path.display());
    assert!(netns.name().starts_with("twt-"), "{}", netns.name());
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(netns.name()));
    assert_eq!(netns.read_sysctl("net/ipv4/ip_forward").unwrap(), "0");
    drop(netns);
    assert!(!path.exists(), "{} survived drop", path.display());
}

#[test]
fn namespace_is_removed_when_the_test_panics() {
    require_root!();
    let (sender, receiver) = std::sync::mpsc::channel::<PathBuf>();
    let result = std::panic::catch_unwind(move || {
        let netns = TestNetns::new("panics").unwrap();
        sender.send(netns.path().to_owned()).unwrap();
        panic!("the test body fails while the namespace exists");
    });
    assert!(result.is_err(), "the closure must have panicked");
    let path = receiver.recv().unwrap();
    assert!(!path.exists(), "{} survived the panic", path.display());
}

#[test]
fn fabric_is_removed_when_the_test_panics() {
    require_root!();
    let (sender, receiver) = std::sync::mpsc::channel::<Vec<PathBuf>>();
    let result = std::panic::catch_unwind(move || {
        let fabric = Fabric::new().unwrap();
        let (a, b) = two_pods(&fabric);
        let paths = [fabric.netns().path(), a.path(), b.path()];
        sender
            .send(paths.iter().map(|p| p.to_path_buf()).collect())
            .unwrap();
        panic!("the test body fails while the fabric exists");
    });
    assert!(result.is_err(), "the closure must have panicked");
    for path in receiver.recv().unwrap() {
        assert!(!path.exists(), "{} survived the panic", path.display());
    }
}

#[test]
fn run_executes_inside_the_namespace_and_leaves_the_caller_outside() {
    require_root!();
    let netns = TestNetns::new("run").unwrap();
    let want = std::fs::metadata(netns.path()).unwrap().ino();
    let inside = netns
        .run(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
        .unwrap();
    assert_eq!(inside, want);
    let caller = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    assert_ne!(caller, want);
}

#[test]
fn run_passes_a_panic_on_to_the_caller() {
    require_root!();
    let netns = TestNetns::new("run-panic").unwrap();
    let result = std::panic::catch_unwind(|| netns.run(|| panic!("probe failed")));
    assert!(result.is_err());
}

#[test]
fn background_process_is_killed_when_its_guard_drops() {
    require_root!();
    let netns = TestNetns::new("bg").unwrap();
    let background = netns.spawn("sleep", &["60"]).unwrap();
    let pid = background.id();
    assert!(!process_is_gone(pid));
    drop(background);
    assert!(eventually(|| process_is_gone(pid)), "pid {pid} survived");
}

#[test]
fn processes_left_in_a_namespace_are_killed_with_it() {
    require_root!();
    let netns = TestNetns::new("orphan").unwrap();
    // A daemonised grandchild that no guard knows about.
    let output = netns
        .exec("sh", &["-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(!process_is_gone(pid));
    drop(netns);
    assert!(eventually(|| process_is_gone(pid)), "pid {pid} survived");
}

#[test]
fn removal_fails_while_a_thread_is_still_inside() {
    require_root!();
    let netns = TestNetns::new("stuck").unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    // A thread started inside `run` inherits the namespace and outlives it.
    let stuck = netns
        .run(move || {
            std::thread::spawn(move || {
                let _ = wait.recv();
            })
        })
        .unwrap();
    let err = netns.remove().unwrap_err();
    assert!(err.to_string().contains("tasks still inside"), "{err}");
    release.send(()).unwrap();
    stuck.join().unwrap();
}

#[test]
fn leak_scan_sees_a_live_namespace_and_not_a_dropped_one() {
    require_root!();
    let netns = TestNetns::new("leak").unwrap();
    let name = netns.name().to_owned();
    let is_listed = |name: &str| {
        leak::survivors()
            .unwrap()
            .iter()
            .any(|s| s.kind == SurvivorKind::Netns && s.name == name)
    };
    assert!(is_listed(&name));
    drop(netns);
    assert!(!is_listed(&name));
}

#[test]
fn pods_on_two_nodes_reach_each_other_over_tcp_udp_and_icmp() {
    require_root!();
    let fabric = Fabric::new().unwrap();
    let (a, b) = two_pods(&fabric);
    let tcp = b.listen_tcp(8080).unwrap();
    let udp = b.udp_echo(5353).unwrap();
    let a_tcp = a.listen_tcp(8080).unwrap();

    type Probe = fn(&Pod, IpAddr) -> ProbeOutcome;
    let cases: [(&str, &Pod, &Pod, Probe); 5] = [
        ("tcp a->b", &a, &b, |from, to| {
            from.probe_tcp(to, 8080, TIMEOUT).unwrap()
        }),
        ("tcp b->a", &b, &a, |from, to| {
            from.probe_tcp(to, 8080, TIMEOUT).unwrap()
        }),
        ("udp a->b", &a, &b, |from, to| {
            from.probe_udp(to, 5353, TIMEOUT).unwrap()
        }),
        ("icmp a->b", &a, &b, |from, to| {
            from.probe_icmp(to, TIMEOUT).unwrap()
        }),
        ("icmp b->a", &b, &a, |from, to| {
            from.probe_icmp(to, TIMEOUT).unwrap()
        }),
    ];
    for (name, from, to, probe) in cases {
        assert_eq!(probe(from, to.ip()), ProbeOutcome::Reachable, "{name}");
    }
    assert_eq!(
        tcp.wait_accepted(1, TIMEOUT),
        1,
        "b's server saw a's connection"
    );
    assert_eq!(
        a_tcp.wait_accepted(1, TIMEOUT),
        1,
        "a's server saw b's connection"
    );
    assert_eq!(udp.received(), 1, "b's echo server saw a's datagram");
}

#[test]
fn tcp_server_echoes_what_it_receives() {
    use std::io::{Read, Write};
    require_root!();
    let fabric = Fabric::new().unwrap();
    let (a, b) = two_pods(&fabric);
    let _server = b.listen_tcp(7).unwrap();
    let target = std::net::SocketAddr::new(b.ip(), 7);
    let mut stream = a
        .run(|| std::net::TcpStream::connect_timeout(&target, TIMEOUT))
        .unwrap()
        .unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"twill").unwrap();
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"twill");
}

#[test]
fn probe_without_a_listener_is_refused() {
    require_root!();
    let fabric = Fabric::new().unwrap();
    let (a, b) = two_pods(&fabric);
    assert_eq!(
        a.probe_tcp(b.ip(), 9, TIMEOUT).unwrap(),
        ProbeOutcome::Refused
    );
    assert_eq!(
        a.probe_udp(b.ip(), 9, TIMEOUT).unwrap(),
        ProbeOutcome::Refused
    );
}

#[test]
fn probe_tells_drop_from_reset_from_prohibited() {
    require_root!();
    let cases = [
        ("drop", "drop", ProbeOutcome::TimedOut),
        ("reset", "reject with tcp reset", ProbeOutcome::Refused),
        (
            "prohibited",
            "reject with icmp type admin-prohibited",
            ProbeOutcome::HostUnreachable,
        ),
        ("accept", "accept", ProbeOutcome::Reachable),
    ];
    let fabric = Fabric::new().unwrap();
    let (a, b) = two_pods(&fabric);
    let _server = b.listen_tcp(80).unwrap();
    for (name, verdict, want) in cases {
        b.nft(&format!(
            "table inet twt_probe {{
                 chain input {{
                     type filter hook input priority 0;
                     tcp dport 80 {verdict}
                 }}
             }}"
        ))
        .unwrap();
        let started = Instant::now();
        let got = a.probe_tcp(b.ip(), 80, TIMEOUT).unwrap();
        assert_eq!(got, want, "{name}");
        if want != ProbeOutcome::TimedOut {
            assert!(
                started.elapsed() < TIMEOUT,
                "{name}: answered, not timed out"
            );
        }
        b.nft("delete table inet twt_probe").unwrap();
    }
}

#[test]
fn nft_rejects_a_bad_script_with_its_error() {
    require_root!();
    let netns = TestNetns::new("nft").unwrap();
    let err = netns
        .nft("table inet twt_bad { chain c { nonsense } }")
        .unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");
}

#[test]
fn address_without_a_route_is_host_unreachable() {
    require_root!();
    let netns = TestNetns::new("no-route").unwrap();
    let nowhere = IpAddr::V4(ip("10.65.9.9"));
    assert_eq!(
        netns.probe_tcp(nowhere, 80, TIMEOUT).unwrap(),
        ProbeOutcome::HostUnreachable
    );
    assert_eq!(
        netns.probe_udp(nowhere, 80, TIMEOUT).unwrap(),
        ProbeOutcome::HostUnreachable
    );
    assert_eq!(
        netns.probe_icmp(nowhere, TIMEOUT).unwrap(),
        ProbeOutcome::HostUnreachable
    );
}

#[test]
fn node_added_after_pods_learns_their_routes() {
    require_root!();
    let fabric = Fabric::new().unwrap();
    let (a, _b) = two_pods(&fabric);
    let n3 = fabric.add_node("n3").unwrap();
    let c = n3.add_pod("c", ip("10.65.3.2")).unwrap();
    assert_eq!(
        c.probe_icmp(a.ip(), TIMEOUT).unwrap(),
        ProbeOutcome::Reachable
    );
    assert_eq!(
        a.probe_icmp(c.ip(), TIMEOUT).unwrap(),
        ProbeOutcome::Reachable
    );
}

#[test]
fn pods_in_two_subnets_reach_each_other_only_through_the_router() {
    require_root!();
    let fabric = Fabric::with_subnets(&TWO_SUBNETS).unwrap();
    let n1 = fabric.add_node_in_subnet("n1", 0).unwrap();
    let n2 = fabric.add_node_in_subnet("n2", 1).unwrap();
    assert!(TWO_SUBNETS[0].contains(&n1.ip()), "{}", n1.ip());
    assert!(TWO_SUBNETS[1].contains(&n2.ip()), "{}", n2.ip());
    let a = n1.add_pod("a", ip("10.65.1.2")).unwrap();
    let b = n2.add_pod("b", ip("10.65.2.2")).unwrap();
    let _server = b.listen_tcp(80).unwrap();
    assert_eq!(
        a.probe_tcp(b.ip(), 80, TIMEOUT).unwrap(),
        ProbeOutcome::Reachable
    );
    assert_eq!(
        n1.probe_icmp(IpAddr::V4(n2.ip()), TIMEOUT).unwrap(),
        ProbeOutcome::Reachable
    );

    let router = fabric.router().unwrap();
    router.sysctl("net/ipv4/ip_forward", "0").unwrap();
    assert_eq!(
        a.probe_tcp(b.ip(), 80, TIMEOUT).unwrap(),
        ProbeOutcome::TimedOut
    );
    router.sysctl("net/ipv4/ip_forward", "1").unwrap();
    assert_eq!(
        a.probe_tcp(b.ip(), 80, TIMEOUT).unwrap(),
        ProbeOutcome::Reachable
    );
}

#[test]
fn topology_rejects_clashing_pods_and_unknown_subnets() {
    require_root!();
    let fabric = Fabric::new().unwrap();
    let (a, _b) = two_pods(&fabric);
    let n1 = fabric.add_node("n9").unwrap();
    assert!(
        n1.add_pod("again", a.ip().to_string().parse().unwrap())
            .is_err()
    );
    assert!(n1.add_pod("a", ip("10.65.9.9")).is_err());
    assert!(fabric.add_node("n1").is_err());
    assert!(fabric.add_node_in_subnet("far", 1).is_err());
}

#[test]
fn parallel_fabrics_with_the_same_names_and_addresses_do_not_collide() {
    require_root!();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let fabric = Fabric::new().unwrap();
                let (a, b) = two_pods(&fabric);
                let _server = b.listen_tcp(80).unwrap();
                let got = a.probe_tcp(b.ip(), 80, TIMEOUT).unwrap();
                let names = [fabric.netns(), &*a, &*b].map(|ns| ns.name().to_owned());
                (got, names)
            })
        })
        .collect();
    let mut all_names = std::collections::BTreeSet::new();
    for thread in threads {
        let (got, names) = thread.join().unwrap();
        assert_eq!(got, ProbeOutcome::Reachable);
        for name in names {
            assert!(all_names.insert(name.clone()), "{name} used twice");
            assert!(
                !Path::new("/run/netns").join(&name).exists(),
                "{name} survived"
            );
        }
    }
}

/// Run as an unprivileged user by `root_gate_skips_or_fails_when_not_root`;
/// as root it checks nothing beyond passing the gate.
#[test]
fn root_gate_probe() {
    require_root!();
}

#[test]
fn root_gate_skips_or_fails_when_not_root() {
    use std::os::unix::fs::PermissionsExt;
    require_root!();
    // The build directory may be closed to other users; run a copy.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("harness");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |require: Option<&str>| {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .args([
                "--exact",
                "root_gate_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_remove("TWILL_REQUIRE_ROOT");
        if let Some(value) = require {
            command.env("TWILL_REQUIRE_ROOT", value);
        }
        command.output().unwrap()
    };

    let skipped = as_nobody(None);
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "a skip passes: {stderr}");
    assert!(stderr.contains("skipped: needs root"), "{stderr}");

    let required = as_nobody(Some("1"));
    let stderr = String::from_utf8_lossy(&required.stderr);
    assert!(
        !required.status.success(),
        "a required skip fails: {stderr}"
    );
    assert!(
        stderr.contains("TWILL_REQUIRE_ROOT=1 forbids skipping"),
        "{stderr}"
    );
}
