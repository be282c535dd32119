//! The root-test rig shared by the tests and the benchmark: a "node"
//! namespace with an uplink, a SQLite datastore with an IPv4 and an IPv6
//! pool, the node IPAM service served in this process from the
//! `twill-ipam` library, and a thread that can play felix-rs.

#![allow(dead_code, clippy::unwrap_used)] // Each target uses a subset; setup failures panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use twill_api::Object;
use twill_api::ippool::IPPoolSpec;
use twill_api::node::NodeSpec;
use twill_api::status::{EndpointStatus, endpoint_status_file_name};
use twill_integration::TestNetns;
use twill_ipam::Ipam;
use twill_ipam::service::{ServiceConfig, serve};
use twill_store::{Datastore, Key, SqliteStore};

/// Sets the CNI environment on `cmd`, writes `conf` to its stdin and
/// returns the running child.
pub fn spawn_plugin(
    mut cmd: Command,
    command: &str,
    container: &str,
    pod: Option<&Path>,
    conf: &Value,
) -> Child {
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=pod-{container}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match pod {
        Some(p) => cmd.env("CNI_NETNS", p),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    child
}

/// Waits for a plugin process: (stdout JSON or null, exit success).
pub fn finish(child: Child) -> (Value, bool) {
    let out = child.wait_with_output().unwrap();
    let value = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    (value, out.status.success())
}

pub const NODE: &str = "node1";
pub const VERSIONS: &[&str] = &["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub node: TestNetns,
    pub store: Arc<SqliteStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    service: Option<std::thread::JoinHandle<()>>,
}

impl Rig {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("datastore.db");
        let store = Arc::new(SqliteStore::open(&db).unwrap());
        let pool = IPPoolSpec {
            cidr: "10.77.0.0/16".into(),
            block_size: Some(26),
            ..IPPoolSpec::default()
        };
        twill_ipam::store::create(&*store, &Object::new("default", None, pool)).unwrap();
        let pool6 = IPPoolSpec {
            cidr: "fd77::/112".into(),
            block_size: Some(122),
            ..IPPoolSpec::default()
        };
        twill_ipam::store::create(&*store, &Object::new("default-v6", None, pool6)).unwrap();
        twill_ipam::store::create(&*store, &Object::new(NODE, None, NodeSpec::default())).unwrap();

        let socket = dir.path().join("ipam.sock");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ipam = Arc::new(Ipam::new(store.clone()));
        let config = ServiceConfig {
            socket: socket.clone(),
            node: NODE.into(),
            gc_interval: None,
            gc: twill_ipam::GcConfig::default(),
        };
        let service = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(ipam, config, async {
                let _ = rx.await;
            }))
            .unwrap();
        });
        for _ in 0..500 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(socket.exists(), "the IPAM service came up");
        std::fs::create_dir_all(dir.path().join("status")).unwrap();
        // A node as a real host is: an address and a default route (proxy
        // ARP answers the pods' 169.254.1.1 only for routable targets).
        let node = TestNetns::new("node").unwrap();
        for args in [
            &["link", "set", "lo", "up"][..],
            &[
                "link",
                "add",
                "uplink",
                "type",
                "veth",
                "peer",
                "name",
                "uplink-peer",
            ],
            &["link", "set", "uplink-peer", "up"],
            &["addr", "add", "192.0.2.10/24", "dev", "uplink"],
            &["link", "set", "uplink", "mtu", "1400"],
            &["link", "set", "uplink", "up"],
            &[
                "route",
                "add",
                "default",
                "via",
                "192.0.2.1",
                "dev",
                "uplink",
            ],
            &[
                "-6",
                "addr",
                "add",
                "2001:db8::10/64",
                "dev",
                "uplink",
                "nodad",
            ],
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                "2001:db8::1",
                "dev",
                "uplink",
            ],
        ] {
            node.ip(args).unwrap();
        }
        Self {
            node,
            dir,
            store,
            shutdown: Some(tx),
            service: Some(service),
        }
    }

    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": version,
            "name": "twill",
            "type": "twill-cni",
            "nodename": NODE,
            "ipam_socket": self.dir.path().join("ipam.sock"),
            "datastore_path": self.dir.path().join("datastore.db"),
            "endpoint_status_dir": self.dir.path().join("status"),
            // felix-rs publishes the MTU here; the host's file must not count.
            "mtu_file": self.dir.path().join("mtu"),
            "policy_setup_timeout": 0,
            "log_level": "warn",
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut conf, extra) {
            c.extend(e);
        }
        conf
    }

    /// Runs the plugin in the node namespace; returns (stdout JSON or
    /// null, exit success).
    pub fn cni(
        &self,
        command: &str,
        container: &str,
        pod: Option<&Path>,
        conf: &Value,
    ) -> (Value, bool) {
        let cmd = self.node.command(env!("CARGO_BIN_EXE_twill-cni"));
        finish(spawn_plugin(cmd, command, container, pod, conf))
    }

    pub fn handle_held(&self, container: &str) -> bool {
        let key = Key::cluster(
            <twill_api::ipam::IPAMHandleSpec as twill_api::Spec>::STORE_KIND,
            format!("k8s-pod-network.{container}"),
        );
        self.store.get(&key).is_ok()
    }

    pub fn node_workload_links(&self) -> String {
        self.node
            .ip(&["-o", "link", "show"])
            .unwrap()
            .lines()
            .filter(|l| l.contains(": twl"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn node_routes(&self) -> String {
        self.node.ip(&["route", "show", "proto", "201"]).unwrap()
    }

    pub fn assert_clean(&self, why: &str, container: &str) {
        assert_eq!(
            self.node_workload_links(),
            "",
            "{why}: veth left on the node"
        );
        assert_eq!(
            self.node_routes().trim(),
            "",
            "{why}: route left on the node"
        );
        assert!(!self.handle_held(container), "{why}: allocation left");
    }

    /// Plays felix-rs until stopped: reports every endpoint programmed at
    /// its current revision.
    pub fn felix(&self) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let store = self.store.clone();
        let dir: PathBuf = self.dir.path().join("status");
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for object in store.list("WorkloadEndpoint", None).unwrap().items {
                    let ns = object.key.namespace.clone().unwrap_or_default();
                    let status = EndpointStatus {
                        namespace: ns.clone(),
                        name: object.key.name.clone(),
                        container_id: None,
                        revision: object.revision.0,
                    };
                    let file = dir.join(endpoint_status_file_name(&ns, &object.key.name));
                    let tmp = file.with_extension("tmp");
                    std::fs::write(&tmp, serde_json::to_vec(&status).unwrap()).unwrap();
                    std::fs::rename(&tmp, &file).unwrap();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        (stop, handle)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(service) = self.service.take() {
            let _ = service.join();
        }
    }
}
