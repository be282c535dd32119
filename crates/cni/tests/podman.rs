//! Root test: a real container runtime drives the plugin. podman, with its
//! CNI network backend, runs containers on a Twill network whose list
//! chains `portmap`, `bandwidth` and `tuning` (from containernetworking-
//! plugins) after `twill-cni` — the way a user installs Twill.
//!
//! podman runs inside the rig's "node" namespace (entered with `setns`, so
//! the host's mount namespace and `/run/netns` stay shared), with a private
//! `containers.conf` (`CONTAINERS_CONF`), network config directory, plugin
//! directory and storage root, so nothing global on the machine changes.
//! The container image is imported from a tarball holding the static
//! busybox of the `busybox-static` package; nothing is pulled.
//!
//! One thing is outside the test's control: podman's CNI backend keeps its
//! result cache in `/var/lib/cni/results` (libcni's fixed default). The
//! test checks that its entries are gone after the containers are removed.

#![allow(clippy::unwrap_used)] // Test setup failures should panic loudly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Rig;
use serde_json::{Value, json};
use twill_integration::{require_programs, require_root};

/// The conflist's network name, as `podman run --network` takes it.
const NETWORK: &str = "twill";
/// The node address the rig puts on its uplink; `portmap` publishes on it.
const NODE_IP: &str = "192.0.2.10";
const HOST_PORT: u16 = 18080;
const IMAGE: &str = "localhost/twill-test-busybox";
const PAGE: &str = "served by a twill pod";
/// podman's default limits (nofile 1048576) make runc fail where the hard
/// limits are lower, as inside a container; these fit under any host's.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

/// A podman with private configuration and storage, running its commands
/// in the rig's node namespace. Dropping it removes every container and
/// image it made.
struct Podman<'rig> {
    rig: &'rig Rig,
    dir: PathBuf,
}

impl<'rig> Podman<'rig> {
    fn new(rig: &'rig Rig, chained: &[Value]) -> Self {
        let dir = rig.dir.path().join("podman");
        let bin = dir.join("bin");
        let net = dir.join("net.d");
        for d in [&bin, &net] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_twill-cni"), bin.join("twill-cni")).unwrap();

        let mut twill = rig.conf("1.0.0", json!({"policy_setup_timeout": 10}));
        let twill_map = twill.as_object_mut().unwrap();
        twill_map.remove("cniVersion");
        twill_map.remove("name");
        let mut plugins = vec![twill];
        plugins.extend(chained.iter().cloned());
        let list = json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": plugins});
        std::fs::write(
            net.join("10-twill.conflist"),
            serde_json::to_vec_pretty(&list).unwrap(),
        )
        .unwrap();

        let conf = format!(
            "[engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{events}\"\n\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{bin}\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{net}\"\n",
            events = dir.join("events.log").display(),
            bin = bin.display(),
            net = net.display(),
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();

        let podman = Self { rig, dir };
        podman.import_image();
        podman
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            // vfs needs no overlay mount, which a nested overlay root refuses.
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `podman args…` in the node namespace.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        self.rig.node.run(move || cmd.output().unwrap()).unwrap()
    }

    /// Runs `podman args…` and returns its trimmed stdout; fails the test
    /// unless it succeeds.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A root filesystem of one static busybox, its applets, and a page.
    fn import_image(&self) {
        let rootfs = self.dir.join("rootfs");
        for d in ["bin", "www", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "httpd", "wget", "cat", "sleep", "seq", "ip"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("www/index.html"), PAGE).unwrap();
        let tarball = self.dir.join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success(), "tar of the rootfs");
        self.ok(&["import", &tarball.to_string_lossy(), IMAGE]);
    }

    /// `podman run args…` with the limits this machine allows.
    fn run_container(&self, args: &[&str]) -> Output {
        let mut all = vec!["run"];
        all.extend(ULIMITS);
        all.extend(["--network", NETWORK]);
        all.extend(args);
        self.run(&all)
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

fn cni_cache_entries(container_id: &str) -> Vec<String> {
    std::fs::read_dir("/var/lib/cni/results")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.contains(container_id))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /` over plain TCP from the node namespace; returns the response.
fn http_get_from_node(rig: &Rig, address: &str) -> std::io::Result<String> {
    let address = address.to_string();
    rig.node
        .run(move || {
            let mut stream = TcpStream::connect_timeout(
                &address.parse().expect("a socket address"),
                Duration::from_secs(5),
            )?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: node\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })
        .unwrap()
}

fn host_veth(rig: &Rig) -> String {
    let links = rig.node_workload_links();
    let line = links
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no twl link on the node"));
    line.split(": ")
        .nth(1)
        .and_then(|name| name.split('@').next())
        .unwrap()
        .to_string()
}

fn ipam_handles(rig: &Rig) -> usize {
    use twill_store::Datastore;
    let kind = <twill_api::ipam::IPAMHandleSpec as twill_api::Spec>::STORE_KIND;
    rig.store.list(kind, None).unwrap().items.len()
}

/// The WorkloadEndpoints of a container: (namespace, stored document).
fn endpoints_of(rig: &Rig, container_id: &str) -> Vec<(String, Value)> {
    use twill_store::Datastore;
    rig.store
        .list("WorkloadEndpoint", None)
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.value["spec"]["containerID"] == container_id)
        .map(|o| (o.key.namespace.unwrap_or_default(), o.value))
        .collect()
}

fn in_pool(ip: &str) -> bool {
    let pool: ipnet::Ipv4Net = "10.77.0.0/16".parse().unwrap();
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| pool.contains(&ip))
}

#[test]
fn podman_runs_containers_on_twill_with_portmap_bandwidth_and_tuning_chained() {
    require_root!();
    if !require_programs(&["podman", "runc", "conmon"], "podman")
        || !require_programs(
            &[
                "/usr/lib/cni/portmap",
                "/usr/lib/cni/bandwidth",
                "/usr/lib/cni/tuning",
                "iptables-save",
            ],
            "containernetworking-plugins",
        )
        || !require_programs(&["/bin/busybox"], "busybox-static")
        || !require_programs(&["tar"], "tar")
    {
        return;
    }
    let rig = Rig::new();
    let (stop_felix, felix) = rig.felix();
    let podman = Podman::new(
        &rig,
        &[
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
                   "egressRate": 100_000_000, "egressBurst": 1_000_000}),
            json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "777"}}),
        ],
    );
    let backend = podman.ok(&["info", "--format", "{{.Host.NetworkBackend}}"]);
    assert_eq!(backend, "cni", "podman must run its CNI backend");

    // A server container, its port published on the node by portmap.
    // podman passes no labels to CNI: a WorkloadEndpoint pre-declared under
    // the name ADD uses (`<node>-k8s-<pod>-eth0`, dashes doubled) supplies
    // them.
    let server_name = format!("twt-{}-server", std::process::id());
    let mut declared = twill_api::Object::new(
        format!(
            "{}-k8s-{}-eth0",
            common::NODE,
            server_name.replace('-', "--")
        ),
        Some("default"),
        twill_api::endpoint::WorkloadEndpointSpec::default(),
    );
    declared.metadata.labels.insert("app".into(), "web".into());
    twill_cni::endpoint::put(&*rig.store, &declared, None).unwrap();
    let published = format!("{HOST_PORT}:8080");
    let out = podman.run_container(&[
        "-d",
        "--name",
        &server_name,
        "-p",
        &published,
        IMAGE,
        "/bin/httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    assert!(
        out.status.success(),
        "podman run with the twill network: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_id = podman.ok(&["inspect", "--format", "{{.Id}}", &server_name]);
    let template = format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}");
    let server_ip = podman.ok(&["inspect", "--format", &template, &server_name]);
    assert!(in_pool(&server_ip), "address {server_ip:?} from the pool");
    let sandbox = podman.ok(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        &server_name,
    ]);
    assert!(
        Path::new(&sandbox).exists(),
        "podman's netns pin {sandbox:?}"
    );
    assert!(
        rig.handle_held(&server_id),
        "IPAM handle k8s-pod-network.<podman container ID>"
    );
    // podman passes only K8S_POD_NAME (the container's name) in CNI_ARGS.
    let endpoints = endpoints_of(&rig, &server_id);
    assert_eq!(endpoints.len(), 1, "one WorkloadEndpoint: {endpoints:?}");
    let (namespace, endpoint) = &endpoints[0];
    assert_eq!(namespace, "default", "{endpoint}");
    assert_eq!(endpoint["spec"]["pod"], server_name.as_str(), "{endpoint}");
    assert_eq!(endpoint["metadata"]["labels"]["app"], "web", "{endpoint}");
    assert_eq!(
        endpoint["spec"]["ipNetworks"],
        json!([format!("{server_ip}/32")]),
        "{endpoint}"
    );
    let in_pod = podman.ok(&[
        "exec",
        &server_name,
        "/bin/ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(in_pod.contains(&format!("{server_ip}/32")), "{in_pod}");

    // tuning ran in the pod namespace.
    let somaxconn = podman.ok(&[
        "exec",
        &server_name,
        "/bin/cat",
        "/proc/sys/net/core/somaxconn",
    ]);
    assert_eq!(somaxconn, "777", "tuning's sysctl in the pod");
    // bandwidth shaped the host veth Twill reported (ingress: tbf on it;
    // egress: an ifb device fed from it).
    let veth = host_veth(&rig);
    let qdiscs = rig
        .node
        .exec("tc", &["qdisc", "show", "dev", &veth])
        .unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout).to_string();
    assert!(
        qdiscs.contains("tbf"),
        "bandwidth's tbf on {veth}: {qdiscs}"
    );
    let links = rig.node.ip(&["-o", "link", "show", "type", "ifb"]).unwrap();
    assert_eq!(links.lines().count(), 1, "bandwidth's ifb device: {links}");

    // A second container on the same host reaches the first.
    let url = format!("http://{server_ip}:8080/");
    // `podman run -d` returns once the process started, maybe before httpd
    // listens: the client retries for up to 5 s.
    let fetch =
        format!("for i in $(seq 50); do wget -q -O - {url} && exit 0; sleep 0.1; done; exit 1");
    let client = podman.run_container(&["--rm", IMAGE, "/bin/sh", "-c", &fetch]);
    assert!(
        client.status.success(),
        "a second container reaches {url}: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&client.stdout), PAGE);

    // The published port answers on the node's address.
    let response = http_get_from_node(&rig, &format!("{NODE_IP}:{HOST_PORT}"))
        .unwrap_or_else(|e| panic!("{NODE_IP}:{HOST_PORT} from the node: {e}"));
    assert!(response.contains(PAGE), "{response}");
    let dnat = rig.node.exec("iptables-save", &["-t", "nat"]).unwrap();
    assert!(String::from_utf8_lossy(&dnat.stdout).contains(&server_id));

    // Removing the container runs DEL through the chain: nothing is left.
    podman.ok(&["rm", "--force", "--time", "0", &server_name]);
    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "", "no containers");
    rig.assert_clean("after podman rm", &server_id);
    assert_eq!(ipam_handles(&rig), 0, "every address released");
    assert_eq!(endpoints_of(&rig, &server_id), [], "endpoint deleted");
    let links = rig.node.ip(&["-o", "link", "show", "type", "ifb"]).unwrap();
    assert_eq!(links, "", "bandwidth's ifb device removed");
    let nat = rig.node.exec("iptables-save", &["-t", "nat"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains(&server_id),
        "portmap's rules removed"
    );
    assert!(
        !Path::new(&sandbox).exists(),
        "podman's netns pin {sandbox:?} removed"
    );
    assert_eq!(cni_cache_entries(&server_id), Vec::<String>::new());

    drop(podman);
    stop_felix.store(true, Ordering::Relaxed);
    felix.join().unwrap();
}
