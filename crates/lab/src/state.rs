//! What a running lab remembers between commands: one JSON file in the
//! lab's state directory.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::scenario::{Encap, PortSpec, Tor};

/// How pod routes reach the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// bgp-speaker on every node (node-to-node mesh, plus the ToR).
    Bgp,
    /// Fallback without bgp-speaker: the lab installs a static `/32` route
    /// for every pod on every other node (protocol `static`).
    Static,
}

/// The daemons the lab runs on a node.
pub const DAEMONS: &[&str] = &["felix", "bgp", "ipam"];

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Its name (the Node resource's).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its fabric address.
    pub address: Ipv4Addr,
    /// Daemon (`felix`, `bgp`, `ipam`) → pid.
    pub pids: BTreeMap<String, u32>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// The CNI container id.
    pub container_id: String,
    /// Its IPv4 address.
    pub address: Ipv4Addr,
    /// Its ports.
    pub ports: Vec<PortSpec>,
    /// The listener process, when it has ports.
    pub listener: Option<u32>,
}

impl PodState {
    /// `NS/NAME`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A running lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// The ToR router.
    pub tor: Tor,
    /// The ToR's pid (BIRD, or FRR's bgpd).
    pub tor_pid: Option<u32>,
    /// The ToR's other processes (FRR's zebra).
    #[serde(default)]
    pub tor_extra_pids: Vec<u32>,
    /// Pod traffic encapsulation.
    pub encap: Encap,
    /// How pod routes are distributed.
    pub routing: Routing,
    /// Where the daemons' binaries are.
    pub bin_dir: PathBuf,
    /// The nodes.
    pub nodes: Vec<NodeState>,
    /// The pods.
    pub pods: Vec<PodState>,
    /// The next pod's number (namespace names are never reused).
    pub next_pod: u32,
    /// Namespace → labels, as declared (`kubernetes.io/metadata.name` and
    /// `projectcalico.org/name` are added).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Nodes taken out of the lab with `lab node remove`, in order.
    #[serde(default)]
    pub removed_nodes: Vec<String>,
}

impl LabState {
    /// Reads the state file.
    ///
    /// # Errors
    ///
    /// [`LabError::State`] when unreadable or malformed.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| LabError::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&text).map_err(|e| LabError::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the state file atomically.
    ///
    /// # Errors
    ///
    /// [`LabError::Io`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).expect("lab state serializes to JSON");
        std::fs::write(&tmp, text)
            .map_err(|e| LabError::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| LabError::io(format!("rename {}", tmp.display()), e))
    }

    /// The node called `name`.
    ///
    /// # Errors
    ///
    /// [`LabError::Unknown`].
    pub fn node(&self, name: &str) -> Result<&NodeState> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Unknown {
                what: "node",
                name: name.to_string(),
            })
    }

    /// The pod `NS/NAME`.
    ///
    /// # Errors
    ///
    /// [`LabError::Unknown`].
    pub fn pod(&self, id: &str) -> Result<&PodState> {
        self.pods
            .iter()
            .find(|p| p.id() == id)
            .ok_or_else(|| LabError::Unknown {
                what: "pod",
                name: id.to_string(),
            })
    }
}
