//! The `felix-rs` binary on a real node (root): a node namespace with two
//! pods, a SQLite datastore shared with the test, real nft. Policies written
//! to the datastore flip real probes; killing and restarting the daemon
//! keeps the ruleset and an established TCP stream; a deleted endpoint
//! loses its status file.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use twill_integration::{Background, Fabric, Node, Pod};
use twill_store::{Datastore, Key, Precondition, SqliteStore};

const WAIT: Duration = Duration::from_secs(10);
const ALLOWED_WAIT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(700);

struct Setup {
    store: SqliteStore,
    db: PathBuf,
    status: PathBuf,
    log: PathBuf,
}

impl Setup {
    fn spawn(&self, node: &Node) -> Background {
        let mut command = node.netns().command(env!("CARGO_BIN_EXE_felix-rs"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        command
            .args(["--node", "node1", "--apply-delay-ms", "5", "--datastore"])
            .arg(&self.db)
            .arg("--status-dir")
            .arg(&self.status)
            // The MTU file is the host's; keep the test's beside its store.
            .arg("--mtu-file")
            .arg(self.db.with_extension("mtu"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        node.netns().spawn_command(command).unwrap()
    }

    fn put(&self, yaml: &str) {
        for resource in twill_api::load_str("test", yaml).unwrap() {
            let meta = resource.metadata();
            let key = match meta.namespace.as_deref() {
                Some(ns) => Key::namespaced(resource.store_kind(), ns, meta.name.as_str()),
                None => Key::cluster(resource.store_kind(), meta.name.as_str()),
            };
            let value = resource.to_json();
            if self.store.get(&key).is_ok() {
                self.store
                    .update(&key, &value, Precondition::Unconditional)
                    .unwrap();
            } else {
                self.store.create(&key, &value).unwrap();
            }
        }
    }

    fn delete(&self, kind: &str, name: &str) {
        self.store
            .delete(
                &Key::namespaced(kind, "ns1", name),
                Precondition::Unconditional,
            )
            .unwrap();
    }

    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > WAIT {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("timed out waiting for {what}; daemon log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wep(name: &str, pod: &Pod) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: ns1, labels: {{app: {name}}}}}
spec:
  node: node1
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  containerID: c-{name}
  interfaceName: {iface}
  ipNetworks: [{ip}/32]
---
",
        iface = pod.host_link(),
        ip = pod.ip()
    )
}

const DENY_81_TO_B: &str = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-81, namespace: ns1}
spec:
  selector: app == 'b'
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [81]}}
  - {action: Allow}
";

fn reachable(client: &Pod, server: &Pod, port: u16, expected: bool) -> bool {
    let wait = if expected { ALLOWED_WAIT } else { DENIED_WAIT };
    client
        .probe_tcp(server.ip(), port, wait)
        .unwrap()
        .is_reachable()
}

fn echo(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).unwrap();
    let mut back = vec![0; text.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, text, "the stream echoes");
}

fn has_status(dir: &Path, name: &str) -> bool {
    dir.join(format!("ns1.{name}.json")).exists()
}

#[test]
fn the_daemon_enforces_datastore_policy_and_survives_a_restart() {
    twill_integration::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("store.db");
    let setup = Setup {
        store: SqliteStore::open(&db).unwrap(),
        db,
        status: tmp.path().join("status"),
        log: tmp.path().join("felix.log"),
    };
    let fabric = Fabric::new().unwrap();
    let node = fabric.add_node("n1").unwrap();
    let a = node.add_pod("a", Ipv4Addr::new(10, 201, 0, 1)).unwrap();
    let b = node.add_pod("b", Ipv4Addr::new(10, 201, 0, 2)).unwrap();
    let _servers = [b.listen_tcp(80).unwrap(), b.listen_tcp(81).unwrap()];
    setup.put(&(wep("a", &a) + &wep("b", &b)));

    let daemon = setup.spawn(&node);
    setup.eventually("both endpoints programmed", || {
        has_status(&setup.status, "a") && has_status(&setup.status, "b")
    });
    assert!(reachable(&a, &b, 81, true), "no policy: 81 open");
    let b_ip = b.ip();
    let mut stream = a
        .run(move || TcpStream::connect_timeout(&(b_ip, 80).into(), ALLOWED_WAIT))
        .unwrap()
        .unwrap();
    stream.set_read_timeout(Some(ALLOWED_WAIT)).unwrap();
    echo(&mut stream, b"before the policy");

    setup.put(DENY_81_TO_B);
    setup.eventually("81 denied", || !reachable(&a, &b, 81, false));
    assert!(reachable(&a, &b, 80, true), "80 stays open");
    echo(&mut stream, b"after the policy");

    // felix-rs dies: the kernel keeps its ruleset.
    drop(daemon);
    assert!(
        !reachable(&a, &b, 81, false),
        "the ruleset went with the daemon"
    );
    echo(&mut stream, b"while the daemon is down");

    let _daemon = setup.spawn(&node);
    setup.delete("NetworkPolicy", "deny-81");
    setup.eventually("81 open again", || reachable(&a, &b, 81, true));
    echo(&mut stream, b"after the restart");

    setup.delete("WorkloadEndpoint", "b");
    setup.eventually("b's status removed", || !has_status(&setup.status, "b"));
    assert!(has_status(&setup.status, "a"));
    // b's interface is ours and no longer programmed: fail closed.
    assert!(
        !reachable(&a, &b, 80, false),
        "an unprogrammed pod is reachable"
    );

    // Every transaction verified against the kernel's own listing.
    let log = std::fs::read_to_string(&setup.log).unwrap();
    assert!(log.contains("ruleset applied"), "{log}");
    assert!(!log.contains("apply failed"), "{log}");
}
