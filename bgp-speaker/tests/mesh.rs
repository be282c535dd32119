//! Three nodes, each running the `bgp-speaker` daemon in its own network
//! namespace, peer eBGP with a BIRD top-of-rack router (node-to-node mesh
//! off, one AS per node, the ToR keeping next hops): every node learns the
//! other nodes' blocks as kernel routes (protocol 202) and pods on
//! different nodes reach each other through them.
//!
//! Needs root and `bird` (Debian package `bird2`); skips otherwise (set
//! `TWILL_REQUIRE_ROOT=1` to make a skip a failure).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twill_integration::fabric::Fabric;
use twill_integration::{Background, TestNetns, require_root};
use twill_store::{Datastore, Key, SqliteStore};

const TOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const TOR_AS: u32 = 65000;
const PORT: u16 = 8080;

fn put(store: &dyn Datastore, kind: &str, name: &str, spec: Value) {
    let value = json!({"metadata": {"name": name}, "spec": spec});
    store.create(&Key::cluster(kind, name), &value).unwrap();
}

fn bird_config(nodes: &[(Ipv4Addr, u32)]) -> String {
    let mut config = format!("router id {TOR};\nlog stderr all;\nprotocol device {{ }}\n");
    for (i, (ip, asn)) in nodes.iter().enumerate() {
        // eBGP needs explicit filters in BIRD 2 (RFC 8212); `next hop keep`
        // lets nodes route to each other directly on the shared subnet.
        config.push_str(&format!(
            "protocol bgp node{i} {{\n  local {TOR} as {TOR_AS};\n  neighbor {ip} as {asn};\n  \
             connect retry time 1;\n  ipv4 {{ import all; export all; next hop keep; }};\n}}\n"
        ));
    }
    config
}

fn routes(netns: &TestNetns) -> String {
    netns
        .ip(&["route", "show", "proto", "202"])
        .unwrap_or_default()
}

fn spawn_daemon(node: &TestNetns, name: &str, datastore: &Path, dir: &Path) -> Background {
    let mut command = node.command(env!("CARGO_BIN_EXE_bgp-speaker"));
    command
        .args(["--node", name, "--apply-delay-ms", "20"])
        .arg("--datastore")
        .arg(datastore)
        .arg("--status-socket")
        .arg(dir.join(format!("{name}.sock")))
        .env("RUST_LOG", "info");
    common::spawn_logged(node, command, &dir.join(format!("{name}.log")))
}

#[test]
fn three_nodes_and_a_tor_learn_each_others_blocks_and_pods_reach_across_nodes() {
    require_root!();
    if !twill_integration::require_programs(&["bird"], "bird2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fabric = Fabric::new().unwrap();
    let bridge = fabric.bridge(0).unwrap().to_owned();
    fabric
        .netns()
        .ip(&["addr", "add", &format!("{TOR}/24"), "dev", &bridge])
        .unwrap();

    let names = ["n1", "n2", "n3"];
    let nodes: Vec<_> = names.iter().map(|n| fabric.add_node(n).unwrap()).collect();
    let blocks = ["10.244.0.0/26", "10.244.0.64/26", "10.244.0.128/26"];
    let pod_ips = [
        Ipv4Addr::new(10, 244, 0, 5),
        Ipv4Addr::new(10, 244, 0, 70),
        Ipv4Addr::new(10, 244, 0, 133),
    ];

    let datastore = dir.path().join("twill.db");
    let store = SqliteStore::open(&datastore).unwrap();
    put(
        &store,
        "BGPConfiguration",
        "default",
        json!({"nodeToNodeMeshEnabled": false}),
    );
    put(
        &store,
        "IPPool",
        "default",
        json!({"cidr": "10.244.0.0/16"}),
    );
    put(
        &store,
        "BGPPeer",
        "tor",
        json!({"peerIP": TOR.to_string(), "asNumber": TOR_AS}),
    );
    let mut peers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let asn = 64601 + u32::try_from(i).unwrap();
        peers.push((node.ip(), asn));
        put(
            &store,
            "Node",
            names[i],
            json!({"bgp": {"ipv4Address": format!("{}/24", node.ip()), "asNumber": asn}}),
        );
        put(
            &store,
            "BlockAffinity",
            &format!("{}-block", names[i]),
            json!({"node": names[i], "cidr": blocks[i], "state": "confirmed", "deleted": "false"}),
        );
    }

    let config = dir.path().join("bird.conf");
    std::fs::write(&config, bird_config(&peers)).unwrap();
    let mut bird = fabric.netns().command("bird");
    bird.args(["-f", "-c", config.to_str().unwrap(), "-s"])
        .arg(dir.path().join("bird.ctl"));
    let _bird = common::spawn_logged(fabric.netns(), bird, &dir.path().join("bird.log"));

    let pods: Vec<_> = nodes
        .iter()
        .zip(pod_ips)
        .enumerate()
        .map(|(i, (node, ip))| node.add_pod(&format!("p{}", i + 1), ip).unwrap())
        .collect();
    // The harness routes every pod statically on the other nodes; remove
    // those so that only BGP-learned routes can carry the traffic.
    for (i, node) in nodes.iter().enumerate() {
        for (j, ip) in pod_ips.iter().enumerate() {
            if i != j {
                node.netns()
                    .ip(&["route", "del", &format!("{ip}/32")])
                    .unwrap();
            }
        }
    }

    let _daemons: Vec<Background> = nodes
        .iter()
        .zip(names)
        .map(|(node, name)| spawn_daemon(node, name, &datastore, dir.path()))
        .collect();

    let logs = || {
        let mut text = String::new();
        for file in ["bird.log", "n1.log", "n2.log", "n3.log"] {
            text.push_str(&format!("---- {file}\n"));
            text.push_str(&std::fs::read_to_string(dir.path().join(file)).unwrap_or_default());
        }
        text
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = nodes.iter().enumerate().all(|(i, node)| {
            let table = routes(node);
            (0..3)
                .filter(|j| *j != i)
                .all(|j| table.contains(blocks[j]))
        });
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocks not learned within 60 s: {:?}\n{}",
            nodes.iter().map(|n| routes(n)).collect::<Vec<_>>(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for (i, node) in nodes.iter().enumerate() {
        let blackholes = node.netns().ip(&["route", "show", "proto", "203"]).unwrap();
        assert!(
            blackholes.contains(&format!("blackhole {}", blocks[i])),
            "{blackholes}"
        );
    }

    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i == j {
                continue;
            }
            let server = to.listen_tcp(PORT).unwrap();
            let outcome = from
                .probe_tcp(
                    IpAddr::V4(pod_ips[j]),
                    server.port(),
                    Duration::from_secs(3),
                )
                .unwrap();
            assert!(
                outcome.is_reachable(),
                "p{} -> p{}: {outcome:?}\n{}",
                i + 1,
                j + 1,
                logs()
            );
        }
    }
}
