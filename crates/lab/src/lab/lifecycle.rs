//! Daemon restarts and node removal: how the lab exercises Twill's
//! reliability (a daemon killed under load, a node taken out of the
//! cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use twill_api::ipam::{BlockAffinitySpec, IPAMBlockSpec};
use twill_ipam::{EffectiveConfig, GarbageCollector, GcConfig, GcReport, Ipam, StoreLiveness};
use twill_store::{Datastore, Key, Precondition};

use super::{Lab, SETTLE_TIMEOUT};
use crate::error::{LabError, Result};
use crate::scenario::Tor;
use crate::state::{NodeState, PodState, Routing};
use crate::store;
use crate::sys;

/// How often node removal runs an IPAM garbage collection pass while the
/// removed node still holds blocks.
const GC_INTERVAL: Duration = Duration::from_secs(1);

/// A daemon the lab runs on each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Daemon {
    /// felix-rs: policy and the dataplane.
    Felix,
    /// bgp-speaker: route distribution.
    Bgp,
    /// twill-ipamd: the node's IPAM service.
    Ipam,
}

impl Daemon {
    /// The name the lab's state file and log files use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Felix => "felix",
            Self::Bgp => "bgp",
            Self::Ipam => "ipam",
        }
    }
}

/// What removing a node did.
#[derive(Debug, Clone, Default)]
pub struct NodeRemoval {
    /// The pods that ran on it (`NS/NAME`), deleted with it.
    pub pods: Vec<String>,
    /// What IPAM garbage collection reclaimed, summed over its passes.
    pub gc: GcReport,
}

impl Lab {
    /// The daemons every node runs, in start order.
    pub(super) fn daemons(&self) -> Vec<&'static str> {
        let mut daemons = vec![Daemon::Ipam.as_str(), Daemon::Felix.as_str()];
        if self.state.routing == Routing::Bgp {
            daemons.push(Daemon::Bgp.as_str());
        }
        daemons
    }

    /// Starts one daemon of `node` (detached, logging to its log file) and
    /// returns its pid.
    pub(super) fn spawn_daemon(&self, node: &NodeState, daemon: &str) -> Result<u32> {
        let db = self.datastore();
        let bin = &self.state.bin_dir;
        let dir = self.node_dir(&node.name);
        let command = match daemon {
            "ipam" => {
                let mut ipam = sys::in_netns(&node.netns, bin.join("twill-ipamd"));
                ipam.arg("--node")
                    .arg(&node.name)
                    .arg("--datastore")
                    .arg(&db);
                ipam.arg("--socket")
                    .arg(dir.join("ipam.sock"))
                    .args(["--durability", "process-crash"]);
                ipam
            }
            "felix" => {
                let mut felix = sys::in_netns(&node.netns, bin.join("felix-rs"));
                felix
                    .arg("--node")
                    .arg(&node.name)
                    .arg("--datastore")
                    .arg(&db);
                felix.arg("--status-dir").arg(dir.join("status"));
                felix.arg("--mtu-file").arg(dir.join("mtu"));
                felix.args(["--health-address", "127.0.0.1:9091"]);
                felix
            }
            "bgp" => {
                let mut bgp = sys::in_netns(&node.netns, bin.join("bgp-speaker"));
                bgp.arg("--node")
                    .arg(&node.name)
                    .arg("--datastore")
                    .arg(&db);
                bgp.arg("--status-socket").arg(dir.join("bgp.sock"));
                bgp.args(["--metrics-listen", "127.0.0.1:9093"]);
                bgp
            }
            other => {
                return Err(LabError::Unknown {
                    what: "daemon",
                    name: other.to_string(),
                });
            }
        };
        sys::spawn_detached(command, &dir.join(format!("{daemon}.log")))
    }

    /// Stops `daemon` on `node` — SIGKILL with `kill`, else SIGTERM — and
    /// starts it again with the same arguments; waits until it is ready
    /// (IPAM: its socket is back; felix-rs: it programmed a new barrier on
    /// every node; bgp-speaker: every session it has — mesh and ToR — is
    /// Established, also as the BIRD ToR sees it). Returns the new
    /// pid, which the state file records.
    ///
    /// # Errors
    ///
    /// An unknown node, `bgp` in a lab without BGP, a daemon that does not
    /// start, or [`LabError::Timeout`] when it does not become ready.
    pub fn restart(&mut self, node: &str, daemon: Daemon, kill: bool) -> Result<u32> {
        let state = self.state.node(node)?.clone();
        let name = daemon.as_str();
        if !self.daemons().contains(&name) {
            return Err(LabError::Invalid {
                what: "daemon",
                value: name.to_string(),
                reason: "the lab routes statically: no bgp-speaker runs".into(),
            });
        }
        if let Some(pid) = state.pids.get(name).copied() {
            stop(pid, kill)?;
        }
        let dir = self.node_dir(node);
        // The readiness signal of IPAM and BGP is their socket appearing;
        // a killed daemon leaves its socket file behind.
        let socket = match daemon {
            Daemon::Ipam => Some(dir.join("ipam.sock")),
            Daemon::Bgp => Some(dir.join("bgp.sock")),
            Daemon::Felix => None,
        };
        if let Some(socket) = &socket {
            match std::fs::remove_file(socket) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(LabError::io(format!("remove {}", socket.display()), e));
                }
            }
        }
        let pid = self.spawn_daemon(&state, name)?;
        if let Some(entry) = self.state.nodes.iter_mut().find(|n| n.name == node) {
            entry.pids.insert(name.to_string(), pid);
        }
        self.save()?;
        let exited = |lab: &Self| LabError::Command {
            command: format!("{name} on node {node}"),
            status: "exited after restart".into(),
            stderr: lab.log_tail(node, name),
        };
        if let Some(socket) = &socket {
            sys::wait_for(
                &format!("{name} on {node} to open {}", socket.display()),
                SETTLE_TIMEOUT,
                || (socket.exists() || !sys::alive(pid)).then_some(()),
            )?;
        }
        if !sys::alive(pid) {
            return Err(exited(self));
        }
        match daemon {
            Daemon::Felix => self.barrier()?,
            Daemon::Bgp => {
                self.wait_bgp_established(node)?;
                if self.state.tor != Tor::None {
                    self.wait_tor_session(node)?;
                }
            }
            Daemon::Ipam => {}
        }
        if !sys::alive(pid) {
            return Err(exited(self));
        }
        Ok(pid)
    }

    /// The BGP sessions of `node`, from its bgp-speaker's status socket.
    ///
    /// # Errors
    ///
    /// An unknown node, or [`LabError::Command`] when the speaker does not
    /// answer.
    pub fn bgp_status(&self, node: &str) -> Result<bgp_speaker::status::NodeStatus> {
        self.state.node(node)?;
        let socket = self.node_dir(node).join("bgp.sock");
        bgp_speaker::status::query(&socket).map_err(|e| LabError::Command {
            command: format!("bgp-speaker status on {node}"),
            status: "no answer".into(),
            stderr: e.to_string(),
        })
    }

    fn wait_bgp_established(&self, node: &str) -> Result<()> {
        // The mesh peers every other node; the ToR is one more peer.
        let want = self.state.nodes.len() - 1 + usize::from(self.state.tor != Tor::None);
        sys::wait_for(
            &format!("{want} BGP sessions of {node} to be Established"),
            SETTLE_TIMEOUT,
            || {
                let status = self.bgp_status(node).ok()?;
                let up = status
                    .peers
                    .iter()
                    .filter(|p| p.state == "Established")
                    .count();
                (up >= want).then_some(())
            },
        )
    }

    fn wait_tor_session(&self, node: &str) -> Result<()> {
        sys::wait_for(
            &format!("{node}'s BGP session with the ToR to be Established"),
            SETTLE_TIMEOUT,
            || {
                self.tor_established()
                    .iter()
                    .any(|n| n == node)
                    .then_some(())
            },
        )
    }

    /// Takes `node` out of the cluster as deleting a Kubernetes node does:
    /// its pods' endpoints and the `Node` resource leave the datastore, its
    /// daemons stop, the ToR drops its peering, its pods' namespaces and
    /// its own namespace go; then IPAM garbage collection (the cluster-wide
    /// collector's pass, which releases a deleted node's addresses at once
    /// and its blocks and affinities once the addresses have cooled down)
    /// runs every second until the node holds no block. First waits until
    /// no remaining node and not the ToR routes via the removed node or to
    /// a block it held.
    ///
    /// # Errors
    ///
    /// An unknown node, the lab's last node, a datastore or IPAM failure,
    /// or [`LabError::Timeout`] when routes via the node stay.
    pub fn node_remove(&mut self, node: &str) -> Result<NodeRemoval> {
        let removed = self.state.node(node)?.clone();
        if self.state.nodes.len() == 1 {
            return Err(LabError::Invalid {
                what: "node",
                value: node.to_string(),
                reason: "it is the lab's last node; use `lab down`".into(),
            });
        }
        let path = self.datastore();
        let db = store::open(&path)?;
        let blocks: Vec<String> = twill_ipam::store::list::<BlockAffinitySpec>(&db)
            .map_err(|source| LabError::Ipam {
                datastore: path.clone(),
                source: Box::new(source),
            })?
            .into_iter()
            .filter(|a| a.object.spec.node == node)
            .map(|a| a.object.spec.cidr)
            .collect();
        let pods: Vec<PodState> = self
            .state
            .pods
            .iter()
            .filter(|p| p.node == node)
            .cloned()
            .collect();
        // Kubernetes' pod garbage collector deletes a deleted node's pods;
        // their WorkloadEndpoints go with them. The kubelet is gone, so no
        // CNI DEL runs: the addresses are left to IPAM GC.
        for pod in &pods {
            if let Some(pid) = pod.listener {
                sys::stop_pid(pid);
            }
            delete_if_present(
                &db,
                &path,
                &Key::namespaced(
                    "WorkloadEndpoint",
                    &pod.namespace,
                    store::endpoint_name(node, &pod.name),
                ),
            )?;
            sys::delete_netns(&pod.netns)?;
        }
        delete_if_present(
            &db,
            &path,
            &Key::namespaced(
                "WorkloadEndpoint",
                store::LAB_NAMESPACE,
                store::endpoint_name(node, "barrier"),
            ),
        )?;
        delete_if_present(&db, &path, &Key::cluster("Node", node))?;
        for pid in removed.pids.values() {
            sys::stop_pid(*pid);
        }
        self.state.pods.retain(|p| p.node != node);
        self.state.nodes.retain(|n| n.name != node);
        self.state.removed_nodes.push(node.to_string());
        self.save()?;
        match self.state.tor {
            Tor::Bird => self.reconfigure_bird()?,
            Tor::Frr => self.frr_remove_peer(&removed)?,
            Tor::None => {}
        }
        sys::delete_netns(&removed.netns)?;
        self.wait_no_routes_to(&removed, &blocks)?;
        let gc = collect_garbage(&path, db, node)?;
        Ok(NodeRemoval {
            pods: pods.iter().map(PodState::id).collect(),
            gc,
        })
    }

    /// Rewrites BIRD's configuration for the current nodes and reloads it
    /// (`birdc configure`); a removed peering's routes are flushed.
    fn reconfigure_bird(&self) -> Result<()> {
        let path = self.tor_dir().join("bird.conf");
        std::fs::write(&path, self.bird_conf())
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        let birdc = sys::find_program("birdc", None).ok_or_else(|| super::missing("birdc"))?;
        let out = sys::run(
            std::process::Command::new(birdc)
                .arg("-s")
                .arg(self.tor_dir().join("bird.ctl"))
                .arg("configure"),
        )?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(LabError::Command {
                command: "birdc configure".into(),
                status: "not reconfigured".into(),
                stderr: out.trim().to_string(),
            })
        }
    }

    /// Waits until no remaining node and not the ToR has a route via the
    /// removed node or to one of its blocks.
    fn wait_no_routes_to(&self, removed: &NodeState, blocks: &[String]) -> Result<()> {
        let via = format!("via {} ", removed.address);
        let mut places: Vec<String> = self.state.nodes.iter().map(|n| n.netns.clone()).collect();
        if self.state.tor != Tor::None {
            places.push(self.tor_netns());
        }
        for netns in places {
            sys::wait_for(
                &format!("{netns} to drop its routes to {}", removed.name),
                SETTLE_TIMEOUT,
                || {
                    let routes = sys::ip(&netns, &["-4", "route", "show"]).ok()?;
                    let stale = routes.lines().any(|l| {
                        l.contains(&via)
                            || blocks
                                .iter()
                                .any(|b| l.split_whitespace().next() == Some(b.as_str()))
                    });
                    (!stale).then_some(())
                },
            )?;
        }
        Ok(())
    }
}

/// Stops `pid`: SIGKILL and wait for it to die, or SIGTERM (SIGKILL after
/// two seconds). Dead means every thread has exited ([`sys::alive`]): until
/// then the process still holds its ports, which its successor binds.
fn stop(pid: u32, hard: bool) -> Result<()> {
    if !hard {
        sys::stop_pid(pid);
        return Ok(());
    }
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    if kill(Pid::from_raw(raw), Signal::SIGKILL).is_err() {
        return Ok(());
    }
    sys::wait_for(
        &format!("process {pid} to die"),
        // A thread in an uninterruptible wait (an fsync) dies only when
        // the wait ends: over ten seconds behind a build's writeback.
        SETTLE_TIMEOUT,
        || {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(raw),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            (!sys::alive(pid)).then_some(())
        },
    )
}

fn delete_if_present(db: &dyn Datastore, path: &std::path::Path, key: &Key) -> Result<()> {
    match db.delete(key, Precondition::Unconditional) {
        Ok(_) | Err(twill_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(LabError::Store {
            path: path.to_path_buf(),
            source: Box::new(source),
        }),
    }
}

/// Runs IPAM garbage collection passes, as a cluster's periodic collector
/// would, until the deleted `node` holds no block and no affinity. Its
/// addresses are released at once, but a block only counts as empty once
/// they have cooled down (`ipCooldownSeconds`, 30 s by default).
fn collect_garbage(
    path: &std::path::Path,
    db: twill_store::SqliteStore,
    node: &str,
) -> Result<GcReport> {
    let store: Arc<dyn Datastore> = Arc::new(db);
    let ipam = Ipam::new(Arc::clone(&store));
    let mut collector = GarbageCollector::new(GcConfig::default());
    let mut total = GcReport::default();
    let ipam_error = |source| LabError::Ipam {
        datastore: path.to_path_buf(),
        source: Box::new(source),
    };
    let cooldown = EffectiveConfig::load(store.as_ref())
        .map_err(ipam_error)?
        .cooldown;
    let deadline = Instant::now() + cooldown + SETTLE_TIMEOUT;
    loop {
        let liveness = StoreLiveness::load(store.as_ref()).map_err(ipam_error)?;
        let pass = collector.run(&ipam, &liveness).map_err(ipam_error)?;
        total.swept += pass.swept;
        total.candidates = pass.candidates;
        total.released.extend(pass.released);
        total.handles_repaired += pass.handles_repaired;
        total.blocks_released.extend(pass.blocks_released);
        total.affinities_removed += pass.affinities_removed;
        total.affinities_confirmed += pass.affinities_confirmed;
        let held = twill_ipam::store::list::<BlockAffinitySpec>(store.as_ref())
            .map_err(ipam_error)?
            .iter()
            .any(|a| a.object.spec.node == node)
            || twill_ipam::store::list::<IPAMBlockSpec>(store.as_ref())
                .map_err(ipam_error)?
                .iter()
                .any(|b| b.object.spec.host() == Some(node));
        if !held {
            return Ok(total);
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("IPAM garbage collection to release the blocks of node {node}"),
                seconds: (cooldown + SETTLE_TIMEOUT).as_secs_f64(),
            });
        }
        std::thread::sleep(GC_INTERVAL);
    }
}
