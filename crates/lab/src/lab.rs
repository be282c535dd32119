//! A running lab: bring-up, pods, probes, status and tear-down.
//!
//! ```text
//!                fabric netns: bridge br0 (192.0.2.0/24)
//!        +------------------------------------------------+
//!        |  vtor        vn1         vn2    ...            |
//!        +---|-----------|-----------|--------------------+
//!     eth0 .1|      eth0 .10    eth0 .11
//!        +---+---+  +----+-----+  +----+-----+
//!        |  tor  |  | node n1  |  | node n2  |  felix-rs, bgp-speaker,
//!        | BIRD  |  | (netns)  |  | (netns)  |  twill-ipamd in each node;
//!        +-------+  +--|----|--+  +----|-----+  one SQLite datastore
//!                      |    |          |
//!                   pod netns (wired by twill-cni, listener process)
//! ```
//!
//! Everything lives in network namespaces named `twill-<lab>-…`; nothing
//! is added to the host's namespace. The state directory
//! (`/run/twill-lab/<lab>` by default) holds the datastore, the state file,
//! configs, sockets and logs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::scenario::{Encap, PortSpec, Tor};
use crate::state::{LabState, NodeState, Routing};
use crate::store;
use crate::sys;

mod frr;
mod lifecycle;
mod pods;

pub use lifecycle::{Daemon, NodeRemoval};
pub use pods::Matrix;

/// The fabric subnet (RFC 5737 TEST-NET-1, inside the lab's namespaces only).
pub const FABRIC_PREFIX_LEN: u8 = 24;
/// The ToR's fabric address.
pub const TOR_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The IP pool pods get addresses from.
pub const POOL_CIDR: &str = "10.244.0.0/16";
/// The nodes' AS number.
pub const NODE_AS: u32 = 64512;
/// The ToR's AS number.
pub const TOR_AS: u32 = 65001;
/// Default root of lab state directories.
pub const DEFAULT_STATE_ROOT: &str = "/run/twill-lab";
/// How long the lab waits for a daemon, a route or a barrier.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a lab lives and how it finds its programs.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The lab's name: `[a-z0-9]`, at most 12 characters.
    pub name: String,
    /// Directory holding one state directory per lab.
    pub state_root: PathBuf,
    /// Directory with `felix-rs`, `bgp-speaker`, `twill-ipamd` and
    /// `twill-cni` (default: the directory of the running program).
    pub bin_dir: Option<PathBuf>,
    /// The command line that starts a listener (the running program and
    /// the arguments of its `listen` subcommand); `--tcp P` / `--udp P`
    /// are appended.
    pub listener: Vec<OsString>,
    /// Print progress lines on stderr.
    pub progress: bool,
}

impl LabOptions {
    /// The lab's state directory.
    pub fn dir(&self) -> PathBuf {
        self.state_root.join(&self.name)
    }

    fn state_file(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    /// Prefix of every namespace of this lab.
    pub fn netns_prefix(&self) -> String {
        format!("twill-{}-", self.name)
    }

    fn check(&self) -> Result<()> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 12
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(())
        } else {
            Err(LabError::Invalid {
                what: "lab name",
                value: self.name.clone(),
                reason: "1 to 12 characters a-z, 0-9".into(),
            })
        }
    }
}

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Node names.
    pub nodes: Vec<String>,
    /// The ToR router.
    pub tor: Tor,
    /// Pod encapsulation.
    pub encap: Encap,
    /// Route distribution; `None` picks BGP when `bgp-speaker` is
    /// installed, else the static fallback.
    pub routing: Option<Routing>,
}

/// One pod to create.
#[derive(Debug, Clone, Default)]
pub struct PodRequest {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node name.
    pub node: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: Option<String>,
    /// Ports (each gets a listener).
    pub ports: Vec<PortSpec>,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    options: LabOptions,
    state: LabState,
}

fn progress(options: &LabOptions, line: impl std::fmt::Display) {
    if options.progress {
        eprintln!("  {line}");
    }
}

impl Lab {
    /// Builds a lab: fabric, nodes, ToR, datastore, daemons. On failure
    /// everything built so far is removed.
    ///
    /// # Errors
    ///
    /// [`LabError::AlreadyUp`], a missing program, or the first failing step.
    pub fn up(options: LabOptions, up: &UpOptions) -> Result<Self> {
        options.check()?;
        let dir = options.dir();
        if options.state_file().exists()
            || !sys::netns_with_prefix(&options.netns_prefix()).is_empty()
        {
            return Err(LabError::AlreadyUp {
                name: options.name.clone(),
                dir,
            });
        }
        if up.nodes.is_empty() || up.nodes.len() > crate::MAX_NODES {
            return Err(LabError::Invalid {
                what: "node count",
                value: up.nodes.len().to_string(),
                reason: format!("between 1 and {}", crate::MAX_NODES),
            });
        }
        for node in &up.nodes {
            crate::check_dns_label(node).map_err(|reason| LabError::Invalid {
                what: "node name",
                value: node.clone(),
                reason,
            })?;
        }
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        for program in ["felix-rs", "twill-ipamd", "twill-cni"] {
            require(program, Some(&bin_dir))?;
        }
        let routing = match up.routing {
            Some(r) => r,
            None if bin_dir.join("bgp-speaker").exists() => Routing::Bgp,
            None => Routing::Static,
        };
        if routing == Routing::Bgp {
            require("bgp-speaker", Some(&bin_dir))?;
        }
        match up.tor {
            Tor::Bird => {
                require("bird", None)?;
            }
            Tor::Frr => {
                for program in frr::FRR_PROGRAMS {
                    frr::frr_program(program)?;
                }
                require("vtysh", None)?;
            }
            Tor::None => {}
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let prefix = options.netns_prefix();
        let nodes = up
            .nodes
            .iter()
            .enumerate()
            .map(|(i, name)| NodeState {
                name: name.clone(),
                netns: format!("{prefix}node-{name}"),
                address: Ipv4Addr::new(192, 0, 2, 10 + u8::try_from(i).expect("at most MAX_NODES")),
                pids: BTreeMap::new(),
            })
            .collect();
        let state = LabState {
            name: options.name.clone(),
            tor: up.tor,
            tor_pid: None,
            tor_extra_pids: Vec::new(),
            encap: up.encap,
            routing,
            bin_dir,
            nodes,
            pods: Vec::new(),
            next_pod: 1,
            namespaces: BTreeMap::new(),
            removed_nodes: Vec::new(),
        };
        let mut lab = Self { options, state };
        lab.save()?;
        match lab.build() {
            Ok(()) => Ok(lab),
            Err(error) => {
                let _ = Self::down(&lab.options);
                Err(error)
            }
        }
    }

    fn build(&mut self) -> Result<()> {
        let started = Instant::now();
        let options = self.options.clone();
        let step = |what: &str| {
            progress(
                &options,
                format!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64()),
            );
        };
        step("fabric: bridge and node namespaces");
        self.build_fabric()?;
        step("datastore: IP pool, BGP configuration, nodes");
        self.seed_datastore()?;
        // The ToR listens before the speakers start, so their first
        // connection attempts succeed instead of waiting out a retry timer.
        if self.state.tor == Tor::Bird {
            step("ToR: BIRD, eBGP with every node");
            self.start_bird()?;
        }
        if self.state.tor == Tor::Frr {
            step("ToR: FRR (zebra, bgpd), eBGP with every node");
            self.start_frr()?;
        }
        step(&format!(
            "daemons: felix-rs, twill-ipamd{} on {} nodes",
            if self.state.routing == Routing::Bgp {
                ", bgp-speaker"
            } else {
                ""
            },
            self.state.nodes.len()
        ));
        self.start_daemons()?;
        if self.state.routing == Routing::Static {
            step(
                "routing: static fallback (bgp-speaker not used): the lab installs pod routes itself",
            );
        }
        step("waiting for felix-rs on every node");
        self.barrier()?;
        if self.state.routing == Routing::Bgp && self.state.tor != Tor::None {
            step("waiting for BGP sessions with the ToR");
            self.wait_tor_sessions()?;
        }
        step("up");
        self.save()
    }

    fn fabric(&self) -> String {
        format!("{}fabric", self.options.netns_prefix())
    }

    fn tor_netns(&self) -> String {
        format!("{}tor", self.options.netns_prefix())
    }

    fn build_fabric(&self) -> Result<()> {
        let fabric = self.fabric();
        sys::add_netns(&fabric)?;
        sys::ip(&fabric, &["link", "add", "br0", "type", "bridge"])?;
        sys::ip(&fabric, &["link", "set", "br0", "up"])?;
        let mut members: Vec<(String, String, Ipv4Addr, bool)> = self
            .state
            .nodes
            .iter()
            .map(|n| (n.netns.clone(), format!("v{}", n.name), n.address, true))
            .collect();
        if self.state.tor != Tor::None {
            members.push((self.tor_netns(), "vtor".into(), TOR_ADDRESS, false));
        }
        for (netns, port, address, is_node) in members {
            sys::add_netns(&netns)?;
            let port = crate::truncate_link(&port);
            sys::ip(
                &fabric,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns,
                ],
            )?;
            sys::ip(&fabric, &["link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{address}/{FABRIC_PREFIX_LEN}");
            sys::ip(&netns, &["addr", "add", &cidr, "dev", "eth0"])?;
            sys::ip(&netns, &["link", "set", "eth0", "up"])?;
            sys::sysctl(&netns, "net.ipv4.ip_forward", "1")?;
            if is_node {
                // A node is a host with a default route: the CNI plugin's
                // proxy ARP answers pods only for routable destinations.
                sys::ip(
                    &netns,
                    &[
                        "route",
                        "add",
                        "default",
                        "via",
                        &TOR_ADDRESS.to_string(),
                        "dev",
                        "eth0",
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn datastore(&self) -> PathBuf {
        self.options.dir().join("datastore.db")
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.options.dir().join("nodes").join(node)
    }

    fn seed_datastore(&self) -> Result<()> {
        let path = self.datastore();
        let db = store::open(&path)?;
        let vxlan = match self.state.encap {
            Encap::None => "Never",
            Encap::Vxlan => "Always",
        };
        let mut yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: lab-pool\nspec:\n  cidr: {POOL_CIDR}\n  blockSize: 26\n  ipipMode: Never\n  vxlanMode: {vxlan}\n  natOutgoing: false\n  nodeSelector: all()\n---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: true\n  asNumber: {NODE_AS}\n"
        );
        if self.state.tor != Tor::None {
            let _ = write!(
                yaml,
                "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor\nspec:\n  peerIP: {TOR_ADDRESS}\n  asNumber: {TOR_AS}\n"
            );
        }
        for node in &self.state.nodes {
            let _ = write!(
                yaml,
                "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    kubernetes.io/hostname: {}\nspec:\n  bgp:\n    ipv4Address: {}/{FABRIC_PREFIX_LEN}\n",
                node.name, node.name, node.address
            );
        }
        store::apply(&db, &path, "lab", &yaml)?;
        store::apply(
            &db,
            &path,
            "lab",
            &store::namespace_profile(store::LAB_NAMESPACE, &BTreeMap::new()),
        )?;
        for node in &self.state.nodes {
            store::apply(&db, &path, "lab", &store::barrier_endpoint(&node.name, 0))?;
        }
        Ok(())
    }

    fn start_daemons(&mut self) -> Result<()> {
        for i in 0..self.state.nodes.len() {
            let node = self.state.nodes[i].clone();
            let dir = self.node_dir(&node.name);
            std::fs::create_dir_all(dir.join("status"))
                .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
            let mut pids = BTreeMap::new();
            for daemon in self.daemons() {
                pids.insert(daemon.to_string(), self.spawn_daemon(&node, daemon)?);
            }
            self.state.nodes[i].pids = pids;
            self.save()?;
        }
        for node in &self.state.nodes {
            let socket = self.node_dir(&node.name).join("ipam.sock");
            sys::wait_for(
                &format!("twill-ipamd on {}", node.name),
                SETTLE_TIMEOUT,
                || socket.exists().then_some(()),
            )?;
            for (daemon, pid) in &node.pids {
                if !sys::alive(*pid) {
                    return Err(LabError::Command {
                        command: format!("{daemon} on node {}", node.name),
                        status: "exited".into(),
                        stderr: self.log_tail(&node.name, daemon),
                    });
                }
            }
        }
        Ok(())
    }

    fn log_tail(&self, node: &str, daemon: &str) -> String {
        let text = std::fs::read_to_string(self.node_dir(node).join(format!("{daemon}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    fn tor_dir(&self) -> PathBuf {
        self.options.dir().join("tor")
    }

    fn start_bird(&mut self) -> Result<()> {
        let dir = self.tor_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let conf = self.bird_conf();
        let path = dir.join("bird.conf");
        std::fs::write(&path, conf)
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        let bird = sys::find_program("bird", None).ok_or_else(|| missing("bird"))?;
        let mut command = sys::in_netns(&self.tor_netns(), bird);
        command
            .arg("-f")
            .arg("-c")
            .arg(&path)
            .arg("-s")
            .arg(dir.join("bird.ctl"));
        self.state.tor_pid = Some(sys::spawn_detached(command, &dir.join("bird.log"))?);
        self.save()?;
        let socket = dir.join("bird.ctl");
        sys::wait_for("BIRD's control socket", SETTLE_TIMEOUT, || {
            socket.exists().then_some(())
        })
    }

    /// BIRD's configuration: eBGP with every node of the lab.
    fn bird_conf(&self) -> String {
        let mut conf = format!(
            "# The lab's top-of-rack router: eBGP with every node.\nrouter id {TOR_ADDRESS};\nlog stderr all;\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; }}\n"
        );
        for node in &self.state.nodes {
            let _ = writeln!(
                conf,
                "protocol bgp {} {{ local {TOR_ADDRESS} as {TOR_AS}; neighbor {} as {NODE_AS}; ipv4 {{ import all; export none; }}; }}",
                bird_name(&node.name),
                node.address
            );
        }
        conf
    }

    /// BIRD's `show protocols` on the ToR (empty without a ToR).
    pub fn tor_protocols(&self) -> String {
        if self.state.tor != Tor::Bird {
            return String::new();
        }
        let Some(birdc) = sys::find_program("birdc", None) else {
            return String::new();
        };
        sys::run(
            std::process::Command::new(birdc)
                .arg("-s")
                .arg(self.tor_dir().join("bird.ctl"))
                .args(["show", "protocols"]),
        )
        .unwrap_or_default()
    }

    /// The nodes whose BGP session with the ToR is Established.
    fn tor_established(&self) -> Vec<String> {
        match self.state.tor {
            Tor::Bird => {
                let text = self.tor_protocols();
                self.state
                    .nodes
                    .iter()
                    .filter(|n| {
                        let protocol = bird_name(&n.name);
                        text.lines().any(|l| {
                            l.split_whitespace().next() == Some(protocol.as_str())
                                && l.contains("Established")
                        })
                    })
                    .map(|n| n.name.clone())
                    .collect()
            }
            Tor::Frr => self.frr_established(),
            Tor::None => Vec::new(),
        }
    }

    fn wait_tor_sessions(&self) -> Result<()> {
        let want = self.state.nodes.len();
        sys::wait_for(
            "every node's BGP session with the ToR to be Established",
            SETTLE_TIMEOUT,
            || (self.tor_established().len() == want).then_some(()),
        )
    }

    /// Opens the running lab named in `options`.
    ///
    /// # Errors
    ///
    /// [`LabError::NotUp`] or an unreadable state file.
    pub fn open(options: LabOptions) -> Result<Self> {
        options.check()?;
        let file = options.state_file();
        if !file.exists() {
            return Err(LabError::NotUp {
                name: options.name.clone(),
                dir: options.dir(),
            });
        }
        let state = LabState::load(&file)?;
        Ok(Self { options, state })
    }

    fn save(&self) -> Result<()> {
        self.state.save(&self.options.state_file())
    }

    /// The lab's state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The lab's options.
    pub fn options(&self) -> &LabOptions {
        &self.options
    }

    /// Removes everything the lab named in `options` made: processes,
    /// namespaces (with their links, routes and nftables tables) and the
    /// state directory. Works from the state file when there is one and
    /// from the namespace prefix either way. Returns what was removed.
    ///
    /// # Errors
    ///
    /// When a namespace or the state directory cannot be removed.
    pub fn down(options: &LabOptions) -> Result<Vec<String>> {
        options.check()?;
        let mut removed = Vec::new();
        if let Ok(state) = LabState::load(&options.state_file()) {
            let pids = state
                .pods
                .iter()
                .filter_map(|p| p.listener)
                .chain(state.tor_pid)
                .chain(state.tor_extra_pids.iter().copied())
                .chain(state.nodes.iter().flat_map(|n| n.pids.values().copied()));
            for pid in pids {
                if sys::alive(pid) {
                    sys::stop_pid(pid);
                    removed.push(format!("process {pid}"));
                }
            }
        }
        // Pods first, so their veths go before the node that holds the
        // other ends; the fabric last.
        let mut namespaces = sys::netns_with_prefix(&options.netns_prefix());
        namespaces.sort_by_key(|n| (!n.contains("-pod-"), n.ends_with("-fabric")));
        let mut first_error = None;
        for netns in namespaces {
            match sys::delete_netns(&netns) {
                Ok(()) => removed.push(format!("netns {netns}")),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let dir = options.dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| LabError::io(format!("remove {}", dir.display()), e))?;
            removed.push(format!("state {}", dir.display()));
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Declares a namespace's labels (its `kns.` profile).
    ///
    /// # Errors
    ///
    /// [`LabError::Store`].
    pub fn set_namespace(
        &mut self,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
        let path = self.datastore();
        let db = store::open(&path)?;
        store::apply(
            &db,
            &path,
            "lab",
            &store::namespace_profile(namespace, &labels),
        )?;
        self.state.namespaces.insert(namespace.to_string(), labels);
        self.save()
    }

    /// Changes a namespace's labels.
    ///
    /// # Errors
    ///
    /// [`LabError::Store`].
    pub fn relabel_namespace(
        &mut self,
        namespace: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let mut labels = self
            .state
            .namespaces
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        labels.extend(set.clone());
        for key in remove {
            labels.remove(key);
        }
        self.set_namespace(namespace, labels)
    }

    /// Changes a pod's labels (its WorkloadEndpoint's).
    ///
    /// # Errors
    ///
    /// [`LabError::Unknown`] or [`LabError::Store`].
    pub fn relabel_pod(
        &self,
        id: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let pod = self.state.pod(id)?;
        let path = self.datastore();
        let db = store::open(&path)?;
        let key = twill_store::Key::namespaced(
            "WorkloadEndpoint",
            &pod.namespace,
            store::endpoint_name(&pod.node, &pod.name),
        );
        store::relabel_endpoint(&db, &path, &key, set, remove)?;
        Ok(())
    }

    /// Applies YAML resources to the datastore.
    ///
    /// # Errors
    ///
    /// [`LabError::Manifest`] or [`LabError::Store`].
    pub fn apply(&self, source: &str, yaml: &str) -> Result<()> {
        let path = self.datastore();
        let db = store::open(&path)?;
        store::apply(&db, &path, source, yaml)?;
        Ok(())
    }

    /// Deletes one resource.
    ///
    /// # Errors
    ///
    /// [`LabError::Store`] or an unknown kind.
    pub fn delete(
        &self,
        api_version: Option<&str>,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<()> {
        let path = self.datastore();
        let db = store::open(&path)?;
        store::delete(&db, &path, api_version, kind, namespace, name)
    }

    /// Waits until every node's felix-rs has processed every datastore
    /// change made so far: bumps each node's barrier endpoint and waits for
    /// felix-rs to report it programmed at the new revision.
    ///
    /// # Errors
    ///
    /// [`LabError::Timeout`] or a datastore error.
    pub fn barrier(&self) -> Result<()> {
        // felix-rs watches each kind on its own, so one barrier could be
        // processed before a change of another kind written just before
        // it. The second barrier is written after the first was
        // programmed, by which time every watch has polled past the change.
        self.barrier_once()?;
        self.barrier_once()
    }

    fn barrier_once(&self) -> Result<()> {
        let path = self.datastore();
        let db = store::open(&path)?;
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut wanted = Vec::new();
        for node in &self.state.nodes {
            let revision = store::apply(
                &db,
                &path,
                "lab",
                &store::barrier_endpoint(&node.name, generation),
            )?;
            let file = self.node_dir(&node.name).join("status").join(
                twill_api::status::endpoint_status_file_name(
                    store::LAB_NAMESPACE,
                    &store::endpoint_name(&node.name, "barrier"),
                ),
            );
            let felix = node.pids.get(Daemon::Felix.as_str()).copied();
            wanted.push((node.name.clone(), felix, file, revision.0));
        }
        for (node, felix, file, revision) in wanted {
            sys::wait_for(
                &format!("felix-rs on {node} to program revision {revision}"),
                SETTLE_TIMEOUT,
                || {
                    // A felix-rs that exited programs nothing: say so now,
                    // with its last words, rather than time out.
                    if felix.is_some_and(|pid| !sys::alive(pid)) {
                        return Some(Err(LabError::Command {
                            command: format!("felix-rs on node {node}"),
                            status: "exited".into(),
                            stderr: self.log_tail(&node, Daemon::Felix.as_str()),
                        }));
                    }
                    let text = std::fs::read(&file).ok()?;
                    let status: twill_api::status::EndpointStatus =
                        serde_json::from_slice(&text).ok()?;
                    (status.revision >= revision).then_some(Ok(()))
                },
            )??;
        }
        Ok(())
    }

    /// Waits until every node routes every pod's address towards the pod's
    /// node (not through the default route): BGP has converged, or the
    /// static routes or the VXLAN overlay are in place.
    ///
    /// # Errors
    ///
    /// [`LabError::Timeout`].
    pub fn wait_routes(&self) -> Result<()> {
        for node in &self.state.nodes {
            for pod in self.state.pods.iter().filter(|p| p.node != node.name) {
                let what = format!(
                    "a route to {} ({}) on node {}",
                    pod.id(),
                    pod.address,
                    node.name
                );
                sys::wait_for(&what, SETTLE_TIMEOUT, || {
                    let out = sys::ip(
                        &node.netns,
                        &["-4", "route", "get", &pod.address.to_string()],
                    )
                    .ok()?;
                    (!out.contains(&format!("via {TOR_ADDRESS} "))).then_some(())
                })?;
            }
        }
        Ok(())
    }

    /// Makes every change so far take effect: routes, then felix-rs.
    ///
    /// # Errors
    ///
    /// As [`Lab::wait_routes`] and [`Lab::barrier`].
    pub fn settle(&self) -> Result<()> {
        self.wait_routes()?;
        self.barrier()
    }

    /// A summary: nodes, daemons, pods, BGP sessions and routes.
    pub fn status(&self) -> String {
        let s = &self.state;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lab {}: {} nodes, ToR {}, encap {}, routing {}{}",
            s.name,
            s.nodes.len(),
            format!("{:?}", s.tor).to_lowercase(),
            format!("{:?}", s.encap).to_lowercase(),
            format!("{:?}", s.routing).to_lowercase(),
            if s.routing == Routing::Static {
                " (fallback: static routes installed by the lab)"
            } else {
                ""
            },
        );
        let _ = writeln!(out, "state: {}", self.options.dir().display());
        if !s.removed_nodes.is_empty() {
            let _ = writeln!(out, "removed nodes: {}", s.removed_nodes.join(", "));
        }
        let _ = writeln!(
            out,
            "\nNODE         ADDRESS        DAEMONS                                PODS"
        );
        for node in &s.nodes {
            let daemons: Vec<String> = node
                .pids
                .iter()
                .map(|(d, pid)| {
                    format!(
                        "{d}:{}",
                        if sys::alive(*pid) {
                            pid.to_string()
                        } else {
                            "DEAD".into()
                        }
                    )
                })
                .collect();
            let pods = s.pods.iter().filter(|p| p.node == node.name).count();
            let _ = writeln!(
                out,
                "{:<12} {:<14} {:<38} {pods}",
                node.name,
                node.address,
                daemons.join(" ")
            );
        }
        if !s.pods.is_empty() {
            let _ = writeln!(
                out,
                "\nPOD                          NODE         ADDRESS        PORTS"
            );
            for pod in &s.pods {
                let ports: Vec<String> = pod
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.port, p.protocol.as_str()))
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<28} {:<12} {:<14} {}",
                    pod.id(),
                    pod.node,
                    pod.address,
                    ports.join(",")
                );
            }
        }
        if self.state.tor == Tor::Frr {
            let _ = writeln!(out, "\nBGP sessions on the ToR (vtysh show bgp summary):");
            for line in self.frr_summary().lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "  {line}");
            }
        }
        let tor = self.tor_protocols();
        if !tor.is_empty() {
            let _ = writeln!(out, "\nBGP sessions on the ToR (birdc show protocols):");
            for line in tor
                .lines()
                .filter(|l| l.contains("BGP") || l.starts_with("Name"))
            {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(out, "\nPod routes per node (ip route, pool {POOL_CIDR}):");
        for node in &s.nodes {
            let routes = sys::ip(&node.netns, &["-4", "route", "show"]).unwrap_or_default();
            let _ = writeln!(out, "  {}:", node.name);
            for line in routes
                .lines()
                .filter(|l| l.starts_with("10.244.") || l.starts_with("blackhole 10.244."))
            {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// The log file of `daemon` (`felix`, `bgp`, `ipam`, `cni`) on `node`,
    /// or of the ToR with node `tor`.
    ///
    /// # Errors
    ///
    /// [`LabError::Unknown`].
    pub fn log_path(&self, node: &str, daemon: &str) -> Result<PathBuf> {
        if node == "tor" {
            let file = match (self.state.tor, daemon) {
                (Tor::Frr, "zebra") => "zebra.log",
                (Tor::Frr, _) => "bgpd.log",
                _ => "bird.log",
            };
            return Ok(self.tor_dir().join(file));
        }
        self.state.node(node)?;
        if !["felix", "bgp", "ipam", "cni"].contains(&daemon) {
            return Err(LabError::Unknown {
                what: "daemon",
                name: daemon.to_string(),
            });
        }
        Ok(self.node_dir(node).join(format!("{daemon}.log")))
    }
}

fn bird_name(node: &str) -> String {
    format!(
        "node_{}",
        node.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

fn missing(program: &str) -> LabError {
    let hint = match program {
        "bird" | "birdc" => "install the Debian package bird2",
        "vtysh" => "install the Debian package frr",
        _ => {
            "build it: cargo build -p felix-rs -p bgp-speaker -p twill-ipam -p twill-cni (or pass --bin-dir)"
        }
    };
    LabError::Missing {
        program: program.to_string(),
        looked: "PATH".into(),
        hint,
    }
}

fn require(program: &str, dir: Option<&Path>) -> Result<PathBuf> {
    sys::find_program(program, dir).ok_or_else(|| {
        let mut error = missing(program);
        if let (LabError::Missing { looked, .. }, Some(dir)) = (&mut error, dir) {
            *looked = dir.display().to_string();
        }
        error
    })
}
