//! TCP MD5 (RFC 2385) interop with BIRD 2: BIRD connects with a password to
//! Twill's listener, keyed through `bgp_speaker::sockopt::set_md5_key`; the
//! session reaches Established with the right key and never with a wrong one
//! (the kernel drops the unsigned or mis-signed SYNs).
//!
//! The daemon does the same end to end: a BGPPeer whose password is a
//! `secretKeyRef`, read from `--secrets-dir`, peers with BIRD.
//!
//! Needs root (network namespaces) and `bird` on PATH; skips otherwise
//! (set `TWILL_REQUIRE_ROOT=1` to make the root skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgp_speaker::sockopt::set_md5_key;
use bgp_speaker::speaker::{Command, Speaker};
use tokio::net::TcpSocket;
use twill_integration::require_root;

const TWILL: Ipv4Addr = common::VETH_TWILL;
const BIRD: Ipv4Addr = common::VETH_PEER;

fn bird_config(password: &str) -> String {
    format!(
        r#"router id {BIRD};
log stderr all;
protocol device {{ }}
protocol bgp twill {{
  local {BIRD} as 64513;
  neighbor {TWILL} as 64512;
  password "{password}";
  connect retry time 1;
  connect delay time 1;
  error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"#
    )
}

/// Runs BIRD with `bird_password` against a Twill listener keyed with
/// `twill_password`; returns whether the session came up within `within`.
fn session_comes_up(bird_password: &str, twill_password: &str, within: Duration) -> bool {
    let (netns, bird_netns) = common::veth_pair("bird-md5");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bird.conf");
    std::fs::write(&config, bird_config(bird_password)).unwrap();
    let log_path = dir.path().join("bird.log");
    let mut command = bird_netns.command("bird");
    command
        .args(["-f", "-c", config.to_str().unwrap(), "-s"])
        .arg(dir.path().join("bird.ctl"));
    let _bird = common::spawn_logged(&bird_netns, command, &log_path);
    let mut peer = common::ebgp_peer(BIRD, TWILL);
    peer.config.passive = true;
    let twill_password = twill_password.to_owned();
    common::block_on_in(&netns, || async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        set_md5_key(&socket, IpAddr::V4(BIRD), twill_password.as_bytes()).unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::V4(TWILL), 179))
            .unwrap();
        let listener = socket.listen(16).unwrap();
        let (speaker, mut rib) = Speaker::start(Some(listener));
        assert!(speaker.command(Command::AddPeer(Box::new(peer))));
        common::established(&mut rib, within).await.is_ok()
    })
}

#[test]
fn bird_session_with_the_same_md5_password_reaches_established() {
    require_root!();
    if !twill_integration::require_programs(&["bird"], "bird2") {
        return;
    }
    assert!(session_comes_up(
        "s3cret-key",
        "s3cret-key",
        Duration::from_secs(30)
    ));
}

#[test]
fn bird_session_with_a_different_md5_password_never_comes_up() {
    require_root!();
    if !twill_integration::require_programs(&["bird"], "bird2") {
        return;
    }
    assert!(!session_comes_up(
        "bird-key",
        "twill-key",
        Duration::from_secs(8)
    ));
}

#[test]
fn daemon_peers_with_bird_using_the_password_from_the_secrets_dir() {
    use serde_json::json;
    use twill_store::{Datastore, Key, SqliteStore};
    require_root!();
    if !twill_integration::require_programs(&["bird"], "bird2") {
        return;
    }
    let (netns, bird_netns) = common::veth_pair("bird-md5d");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bird.conf");
    std::fs::write(&config, bird_config("from-a-secret")).unwrap();
    let mut command = bird_netns.command("bird");
    command
        .args(["-f", "-c", config.to_str().unwrap(), "-s"])
        .arg(dir.path().join("bird.ctl"));
    let _bird = common::spawn_logged(&bird_netns, command, &dir.path().join("bird.log"));

    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("bgp-secrets")).unwrap();
    std::fs::write(secrets.join("bgp-secrets/tor"), "from-a-secret\n").unwrap();
    let datastore = dir.path().join("twill.db");
    let store = SqliteStore::open(&datastore).unwrap();
    let put = |kind: &str, name: &str, spec: serde_json::Value| {
        let value = json!({"metadata": {"name": name}, "spec": spec});
        store.create(&Key::cluster(kind, name), &value).unwrap();
    };
    put(
        "Node",
        "n1",
        json!({"bgp": {"ipv4Address": format!("{TWILL}/30")}}),
    );
    put(
        "BGPPeer",
        "tor",
        json!({
            "peerIP": BIRD.to_string(), "asNumber": 64513,
            "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}},
        }),
    );
    let socket = dir.path().join("n1.sock");
    let mut daemon = netns.command(env!("CARGO_BIN_EXE_bgp-speaker"));
    daemon
        .args(["--node", "n1", "--no-kernel", "--apply-delay-ms", "20"])
        .arg("--datastore")
        .arg(&datastore)
        .arg("--status-socket")
        .arg(&socket)
        .arg("--secrets-dir")
        .arg(&secrets);
    let log = dir.path().join("n1.log");
    let _daemon = common::spawn_logged(&netns, daemon, &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = bgp_speaker::status::query(&socket).ok();
        if status
            .as_ref()
            .is_some_and(|s| s.peers.iter().any(|p| p.state == "Established"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not established: {status:?}\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("bird.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
