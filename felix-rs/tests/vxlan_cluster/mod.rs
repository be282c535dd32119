//! A cluster of nodes running the `felix-rs` binary on a fabric of two
//! subnets joined by a router, sharing one SQLite datastore; pod addresses
//! come from the IPAM library. Shared by the routing tests and benchmarks.
//!
//! The fabric's own per-pod routes on the other nodes and the router are
//! deleted, so pods on different nodes reach each other only through what
//! felix-rs programs. Encapsulation is counted by an nft counter on UDP
//! 4789 in a test-owned bridge table in the fabric namespace.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by several test crates, each using a part; tests unwrap"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use twill_integration::fabric::HOST_SIDE_MAC;
use twill_integration::{Background, Fabric, Node, Pod, TWO_SUBNETS, TestNetns};
use twill_store::{Datastore, Key, Precondition, SqliteStore};

pub const WAIT: Duration = Duration::from_secs(15);
pub const PROBE: Duration = Duration::from_millis(500);

/// A cluster: fabric, datastore, one felix-rs per node.
pub struct Cluster {
    pub fabric: Fabric,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub store: SqliteStore,
    pub nodes: BTreeMap<String, Node>,
    pub daemons: BTreeMap<String, Background>,
    pub pods: BTreeMap<String, Pod>,
    /// Pod name → (IPAM block CIDR, node).
    pub blocks: BTreeMap<String, (String, String)>,
}

impl Cluster {
    /// Nodes `(name, subnet)`; `pool` is the IPPool YAML's spec body.
    pub fn new(nodes: &[(&str, usize)], pool_spec: &str) -> Self {
        let fabric = Fabric::with_subnets(&TWO_SUBNETS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let store = SqliteStore::open(&db).unwrap();
        let mut cluster = Self {
            fabric,
            dir,
            db,
            store,
            nodes: BTreeMap::new(),
            daemons: BTreeMap::new(),
            pods: BTreeMap::new(),
            blocks: BTreeMap::new(),
        };
        for (name, subnet) in nodes {
            cluster.add_node(name, *subnet);
        }
        cluster.put(&format!(
            "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: pool}}
spec: {pool_spec}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: allow-all}}
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec: {{mtuIfacePattern: '^twt'}}
"
        ));
        cluster
    }

    /// A node on subnet `subnet` of the fabric, and its Node resource.
    pub fn add_node(&mut self, name: &str, subnet: usize) -> Node {
        let node = self.fabric.add_node_in_subnet(name, subnet).unwrap();
        // The fabric routes a new node to the pods already there: only
        // felix-rs may.
        for pod in self.pods.values() {
            node.netns()
                .ip(&["route", "del", &format!("{}/32", pod.ip())])
                .unwrap();
        }
        let prefix = TWO_SUBNETS[subnet].prefix_len();
        self.put(&format!(
            "apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec:
  bgp: {{ipv4Address: {ip}/{prefix}}}
",
            ip = node.ip()
        ));
        self.nodes.insert(name.to_string(), node.clone());
        node
    }

    pub fn put(&self, yaml: &str) {
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

    pub fn log(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("felix-{node}.log"))
    }

    pub fn mtu_file(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("mtu-{node}"))
    }

    pub fn start(&mut self, node: &str) {
        let netns = self.nodes[node].netns();
        let mut command = netns.command(env!("CARGO_BIN_EXE_felix-rs"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(node))
            .unwrap();
        command
            .args([
                "--node",
                node,
                "--apply-delay-ms",
                "5",
                "--drift-interval-s",
                "1",
            ])
            .args(["--stale-route-grace-ms", "300"])
            .arg("--datastore")
            .arg(&self.db)
            .arg("--status-dir")
            .arg(self.dir.path().join(format!("status-{node}")))
            .arg("--mtu-file")
            .arg(self.mtu_file(node))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let daemon = netns.spawn_command(command).unwrap();
        self.daemons.insert(node.to_string(), daemon);
    }

    pub fn start_all(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            self.start(&name);
        }
    }

    /// A pod on `node` with an address from IPAM and its WorkloadEndpoint;
    /// the fabric's routes to it on other nodes are removed.
    pub fn add_pod(&mut self, name: &str, node: &str) -> Pod {
        self.add_pod_from(name, node, &[])
    }

    /// [`add_pod`](Self::add_pod) with an address from one of `pools`.
    pub fn add_pod_from(&mut self, name: &str, node: &str, pools: &[&str]) -> Pod {
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&self.db).unwrap());
        let ipam = twill_ipam::Ipam::new(store);
        let mut request =
            twill_ipam::AllocateRequest::ipv4(format!("k8s-pod-network.c-{name}"), node);
        request.ipv4_pools = pools.iter().map(ToString::to_string).collect();
        let allocated = ipam.allocate(&request).unwrap();
        let IpAddr::V4(ip) = allocated[0].ip else {
            panic!("an IPv4 address")
        };
        let pod = self.nodes[node].add_pod(name, ip).unwrap();
        for (other, n) in &self.nodes {
            if other != node {
                n.netns()
                    .ip(&["route", "del", &format!("{ip}/32")])
                    .unwrap();
            }
        }
        if let Some(router) = self.fabric.router() {
            router.ip(&["route", "del", &format!("{ip}/32")]).unwrap();
        }
        self.put_endpoint(&pod, &[format!("{ip}/32")]);
        self.blocks.insert(
            name.to_string(),
            (allocated[0].block.clone(), node.to_string()),
        );
        self.pods.insert(name.to_string(), pod.clone());
        pod
    }

    /// Writes `pod`'s WorkloadEndpoint with `networks`.
    fn put_endpoint(&self, pod: &Pod, networks: &[String]) {
        let mac = pod
            .netns()
            .ip(&["-br", "link", "show", pod.link()])
            .unwrap();
        let mac = mac.split_whitespace().nth(2).unwrap().to_string();
        self.put(&format!(
            "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: ns1, labels: {{app: {name}}}}}
spec:
  node: {node}
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  containerID: c-{name}
  interfaceName: {iface}
  mac: '{mac}'
  ipNetworks: [{networks}]
",
            name = pod.name(),
            node = pod.node(),
            iface = pod.host_link(),
            networks = networks.join(", "),
        ));
    }

    /// Gives every node an IPv6 underlay address `<prefix>::<n>/64` on its
    /// fabric link (one L2 segment per subnet) with IPv6 forwarding on, and
    /// records it in its Node as `bgp.ipv6Address`. Call before starting
    /// felix-rs.
    pub fn add_ipv6_underlay(&mut self, prefix: &str) {
        for (i, (name, node)) in self.nodes.iter().enumerate() {
            let addr = format!("{prefix}::{}/64", i + 1);
            let netns = node.netns();
            netns
                .ip(&["-6", "addr", "add", &addr, "dev", node.link(), "nodad"])
                .unwrap();
            netns.sysctl("net/ipv6/conf/all/forwarding", "1").unwrap();
            self.put(&format!(
                "apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec:
  bgp: {{ipv4Address: {v4}/{len}, ipv6Address: '{addr}'}}
",
                v4 = node.ip(),
                len = TWO_SUBNETS[node.subnet()].prefix_len(),
            ));
        }
    }

    /// Adds an IPv6 address from IPAM (pool `pool`) to pod `name`: on its
    /// interface, with a default route through the host side's link-local
    /// address, and in its WorkloadEndpoint beside the IPv4 one.
    pub fn add_ipv6(&mut self, name: &str, pool: &str) -> IpAddr {
        let pod = self.pods[name].clone();
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&self.db).unwrap());
        let ipam = twill_ipam::Ipam::new(store);
        let mut request =
            twill_ipam::AllocateRequest::ipv4(format!("k8s-pod-network.c-{name}-v6"), pod.node());
        (request.ipv4, request.ipv6) = (0, 1);
        request.ipv6_pools = vec![pool.to_string()];
        let ip = ipam.allocate(&request).unwrap()[0].ip;
        assert!(ip.is_ipv6(), "{ip}");
        // The host side's EUI-64 link-local address, from its fixed MAC.
        let gateway = "fe80::ecee:eeff:feee:eeee";
        let netns = pod.netns();
        netns
            .ip(&[
                "-6",
                "addr",
                "add",
                &format!("{ip}/128"),
                "dev",
                pod.link(),
                "nodad",
            ])
            .unwrap();
        netns
            .ip(&[
                "-6",
                "neigh",
                "replace",
                gateway,
                "lladdr",
                HOST_SIDE_MAC,
                "dev",
                pod.link(),
                "nud",
                "permanent",
            ])
            .unwrap();
        netns
            .ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                gateway,
                "dev",
                pod.link(),
            ])
            .unwrap();
        self.put_endpoint(&pod, &[format!("{}/32", pod.ip()), format!("{ip}/128")]);
        ip
    }

    pub fn logs(&self) -> String {
        self.nodes
            .keys()
            .map(|n| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(self.log(n)).unwrap_or_default()
                )
            })
            .collect()
    }

    pub fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > WAIT {
                panic!("timed out waiting for {what}; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    pub fn reaches(&self, from: &str, to: &str) -> bool {
        let target = self.pods[to].ip();
        self.pods[from]
            .probe_tcp(target, 8080, PROBE)
            .unwrap()
            .is_reachable()
    }
}

/// A counter of VXLAN packets crossing the fabric's bridges.
pub struct VxlanCounter {
    pub netns: String,
    pub table: String,
}

impl VxlanCounter {
    pub fn new(fabric: &TestNetns) -> Self {
        Self::matching(fabric, "udp dport 4789")
    }

    /// Counts the bridged packets matching the nft expression `matching`.
    pub fn matching(fabric: &TestNetns, matching: &str) -> Self {
        let table = format!("twt{:08x}", std::process::id());
        fabric
            .nft(&format!(
                "table bridge {table} {{\n chain count {{\n type filter hook forward priority 0 ;\n {matching} counter\n }}\n}}\n"
            ))
            .unwrap();
        Self {
            netns: fabric.name().to_string(),
            table,
        }
    }

    pub fn nft(&self, verb: &str) -> String {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "nft",
                verb,
                "table",
                "bridge",
                &self.table,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn packets(&self) -> u64 {
        let text = self.nft("list");
        text.split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {text}"))
    }
}

impl Drop for VxlanCounter {
    fn drop(&mut self) {
        self.nft("delete");
    }
}

pub fn listen(pod: &Pod) -> twill_integration::TcpServer {
    pod.listen_tcp(8080).unwrap()
}

pub fn kernel_state(node: &Node) -> String {
    let routes = node.netns().ip(&["route", "show", "proto", "201"]).unwrap();
    let neigh = node
        .netns()
        .ip(&["neigh", "show", "dev", "twill.vxlan", "nud", "permanent"])
        .unwrap_or_default();
    let fdb = node
        .exec("bridge", &["fdb", "show", "dev", "twill.vxlan"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("{routes}{neigh}{fdb}")
}

pub fn conntrack_flows(node: &Node, ip: IpAddr) -> usize {
    let out = node
        .netns()
        .exec("conntrack", &["-L", "-d", &ip.to_string()])
        .unwrap();
    if !out.status.success() {
        eprintln!("conntrack -L: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).lines().count()
}

pub fn echo(stream: &mut TcpStream, text: &[u8]) {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(text).unwrap();
    let mut back = vec![0; text.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, text, "the stream echoes");
}
