//! Three `bgp-speaker` daemons on loopback addresses share one SQLite
//! datastore (no root, `--no-kernel`): their sessions reach Established,
//! each receives the others' blocks, and changing one BGPPeer restarts only
//! the session it describes.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp_speaker::status::{NodeStatus, query};
use serde_json::{Value, json};
use twill_store::{Datastore, Key, Precondition, SqliteStore};

const NODES: [(&str, &str); 3] = [
    ("node-a", "127.0.0.11"),
    ("node-b", "127.0.0.12"),
    ("node-c", "127.0.0.13"),
];

fn put(store: &dyn Datastore, kind: &str, name: &str, spec: Value) {
    let key = Key::cluster(kind, name);
    let value = json!({"metadata": {"name": name}, "spec": spec});
    match store.get(&key) {
        Ok(_) => drop(
            store
                .update(&key, &value, Precondition::Unconditional)
                .unwrap(),
        ),
        Err(_) => drop(store.create(&key, &value).unwrap()),
    }
}

/// A port unlikely to clash with another test run (above 1024, no root).
fn test_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, datastore: &Path, node: &str, metrics: Option<u16>) -> Daemon {
    let socket = dir.join(format!("{node}.sock"));
    let log = dir.join(format!("{node}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bgp-speaker"));
    if let Some(port) = metrics {
        command
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"));
    }
    let child = command
        .args(["--node", node, "--no-kernel", "--apply-delay-ms", "20"])
        .arg("--datastore")
        .arg(datastore)
        .arg("--status-socket")
        .arg(&socket)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Daemon { child, socket, log }
}

fn wait_for(
    daemons: &[&Daemon],
    what: &str,
    mut check: impl FnMut(&[NodeStatus]) -> bool,
) -> Vec<NodeStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses: Vec<NodeStatus> = daemons
            .iter()
            .filter_map(|d| query(&d.socket).ok())
            .collect();
        if statuses.len() == daemons.len() && check(&statuses) {
            return statuses;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = daemons
                .iter()
                .map(|d| std::fs::read_to_string(&d.log).unwrap_or_default())
                .collect();
            panic!(
                "timed out waiting for {what}; statuses: {statuses:#?}\nlogs:\n{}",
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_established_with_prefixes(statuses: &[NodeStatus], peers: usize) -> bool {
    statuses.iter().all(|s| {
        s.peers.len() == peers
            && s.peers
                .iter()
                .all(|p| p.state == "Established" && p.prefixes_received >= 1)
    })
}

#[test]
fn daemons_on_loopback_peer_exchange_blocks_and_restart_only_the_changed_session() {
    let dir = tempfile::tempdir().unwrap();
    let datastore = dir.path().join("twill.db");
    let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&datastore).unwrap());
    let port = test_port();
    let metrics_port = test_port();
    put(
        store.as_ref(),
        "BGPConfiguration",
        "default",
        json!({"listenPort": port, "bindMode": "NodeIP", "nodeToNodeMeshEnabled": false}),
    );
    put(
        store.as_ref(),
        "IPPool",
        "default",
        json!({"cidr": "10.244.0.0/16"}),
    );
    for (i, (name, ip)) in NODES.iter().enumerate() {
        put(
            store.as_ref(),
            "Node",
            name,
            json!({"bgp": {"ipv4Address": format!("{ip}/8")}}),
        );
        let block = format!("10.244.{i}.0/26");
        put(
            store.as_ref(),
            "BlockAffinity",
            &format!("{name}-block"),
            json!({"node": name, "cidr": block, "state": "confirmed", "deleted": "false"}),
        );
    }
    // a peers with b and with c; b and c peer back (automatic reverse peering).
    put(
        store.as_ref(),
        "BGPPeer",
        "a-to-b",
        json!({"node": "node-a", "peerIP": "127.0.0.12", "asNumber": 64512}),
    );
    put(
        store.as_ref(),
        "BGPPeer",
        "a-to-c",
        json!({"node": "node-a", "peerIP": "127.0.0.13", "asNumber": 64512}),
    );

    let daemons: Vec<Daemon> = NODES
        .iter()
        .zip([Some(metrics_port), None, None])
        .map(|((n, _), metrics)| spawn(dir.path(), &datastore, n, metrics))
        .collect();
    let (a, b, c) = (&daemons[0], &daemons[1], &daemons[2]);
    let before = wait_for(&[a], "node-a's two sessions", |s| {
        all_established_with_prefixes(s, 2)
    });
    wait_for(&[b, c], "b's and c's session with a", |s| {
        all_established_with_prefixes(s, 1)
    });
    let since = |status: &NodeStatus, ip: &str| {
        status
            .peers
            .iter()
            .find(|p| p.address.to_string() == ip)
            .map(|p| (p.state.clone(), p.since))
    };
    let b_before = since(&before[0], "127.0.0.12").unwrap();
    let c_before = since(&before[0], "127.0.0.13").unwrap();

    // `since` has a one-second resolution.
    std::thread::sleep(Duration::from_millis(1500));
    put(
        store.as_ref(),
        "BGPPeer",
        "a-to-c",
        json!({"node": "node-a", "peerIP": "127.0.0.13", "asNumber": 64512, "keepaliveTime": "10s"}),
    );
    let after = wait_for(&[a], "the a-c session to restart", |s| {
        since(&s[0], "127.0.0.13")
            .is_some_and(|(state, t)| state == "Established" && t > c_before.1)
    });
    assert_eq!(
        since(&after[0], "127.0.0.12").unwrap(),
        b_before,
        "the a-b session was not touched"
    );

    // Health and metrics of node-a (metrics refresh every 2 s).
    assert!(http_get(metrics_port, "/readyz").starts_with("HTTP/1.1 200"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http_get(metrics_port, "/metrics");
        if metrics.contains("twill_bgp_sessions{state=\"Established\"} 2")
            && metrics.contains("twill_bgp_prefixes_received 2")
            && metrics.contains("twill_bgp_datastore_synced 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the sessions:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM: a clean exit that removes the status socket.
    let mut daemons = daemons;
    let a = &mut daemons[0];
    let pid = nix::unistd::Pid::from_raw(i32::try_from(a.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = a.child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}");
    assert!(!a.socket.exists(), "status socket left behind");
}

/// `GET path` on 127.0.0.1:`port`: the status line and the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}
