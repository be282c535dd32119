//! The `lab` command line, shared by `twill lab` and the `twill-lab`
//! binary.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::error::{LabError, Result};
use crate::lab::{DEFAULT_STATE_ROOT, Daemon, Lab, LabOptions, PodRequest, UpOptions};
use crate::scenario::{Encap, PortSpec, Protocol, Scenario, Tor};
use crate::state::Routing;

/// `lab`: a multi-node Twill lab in network namespaces (root).
#[derive(Debug, Args)]
pub struct LabArgs {
    /// The lab's name (several labs can run side by side).
    #[arg(long, global = true, default_value = "lab", env = "TWILL_LAB")]
    pub name: String,
    /// Where lab state directories live.
    #[arg(long, global = true, default_value = DEFAULT_STATE_ROOT, env = "TWILL_LAB_STATE")]
    pub state_root: PathBuf,
    /// Directory of felix-rs, bgp-speaker, twill-ipamd and twill-cni
    /// (default: next to this program).
    #[arg(long, global = true, env = "TWILL_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab's subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Builds the lab: nodes, ToR, daemons, IP pool.
    Up {
        /// How many nodes (n1, n2, ...).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The top-of-rack router.
        #[arg(long, value_enum, default_value_t = Tor::Bird)]
        tor: Tor,
        /// Pod traffic between nodes.
        #[arg(long, value_enum, default_value_t = Encap::None)]
        encap: Encap,
        /// Route distribution (default: bgp when bgp-speaker is installed).
        #[arg(long, value_enum)]
        routing: Option<Routing>,
    },
    /// Removes everything the lab made.
    Down,
    /// Nodes, daemons, pods, BGP sessions and routes.
    Status,
    /// Prints a daemon's log (`felix`, `bgp`, `ipam`, `cni`; node `tor` for BIRD).
    Logs {
        /// The node.
        node: String,
        /// The daemon.
        #[arg(default_value = "felix")]
        daemon: String,
    },
    /// Pods.
    #[command(subcommand)]
    Pod(PodCommand),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stops a daemon on a node (SIGTERM, or SIGKILL with --kill), starts
    /// it again with the same arguments and waits until it is ready.
    Restart {
        /// The node.
        node: String,
        /// The daemon.
        #[arg(value_enum)]
        daemon: Daemon,
        /// Kill it (SIGKILL) instead of asking it to stop.
        #[arg(long)]
        kill: bool,
    },
    /// Probes one pod from another; prints allow or deny.
    Probe {
        /// Client pod, NS/NAME.
        from: String,
        /// Server pod, NS/NAME.
        to: String,
        /// Port (default: the server's first port of the protocol).
        #[arg(long)]
        port: Option<u16>,
        /// Protocol.
        #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
        proto: Protocol,
        /// Milliseconds to wait for an answer.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Probes every pod from every pod.
    Matrix {
        /// Port (default: each destination's first port).
        #[arg(long)]
        port: Option<u16>,
        /// Protocol with --port.
        #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
        proto: Protocol,
    },
    /// Runs a scenario file; exits non-zero on any mismatch.
    Run {
        /// The scenario (YAML).
        scenario: PathBuf,
        /// Leave the lab up afterwards (tear it down with `lab down`).
        #[arg(long)]
        keep: bool,
    },
    /// Serves TCP and UDP ports (the pods' listener; started by the lab).
    #[command(hide = true)]
    Listen {
        /// TCP port to accept on.
        #[arg(long)]
        tcp: Vec<u16>,
        /// UDP port to echo on.
        #[arg(long)]
        udp: Vec<u16>,
    },
}

/// `lab pod …`.
#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Creates a pod through the CNI plugin and starts its listeners.
    Add {
        /// NS/NAME.
        pod: String,
        /// The node.
        #[arg(long)]
        node: String,
        /// Labels, k=v,k2=v2.
        #[arg(long, default_value = "")]
        labels: String,
        /// Ports, name:port/proto,... (name and proto optional).
        #[arg(long, default_value = "")]
        ports: String,
        /// Service account.
        #[arg(long)]
        service_account: Option<String>,
    },
    /// Deletes a pod (CNI DEL).
    Del {
        /// NS/NAME.
        pod: String,
    },
}

/// `lab node …`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Removes a node as deleting a Kubernetes node does: its pods, its
    /// Node resource, its daemons, its ToR peering and its namespace go;
    /// IPAM garbage collection reclaims its blocks and addresses.
    Remove {
        /// The node.
        node: String,
    },
}

/// Parses `k=v,k2=v2`.
///
/// # Errors
///
/// [`LabError::Invalid`] for an item without `=`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| LabError::Invalid {
                    what: "label",
                    value: item.to_string(),
                    reason: "expected key=value".into(),
                })
        })
        .collect()
}

/// Parses `name:port/proto,...` (name and `/proto` optional, proto TCP).
///
/// # Errors
///
/// [`LabError::Invalid`] for a bad port or protocol.
pub fn parse_ports(text: &str) -> Result<Vec<PortSpec>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let bad = |reason: &str| LabError::Invalid {
                what: "port",
                value: item.to_string(),
                reason: reason.to_string(),
            };
            let (name, rest) = match item.split_once(':') {
                Some((n, r)) => (Some(n.trim().to_string()), r),
                None => (None, item),
            };
            let (port, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
            let port: u16 = port
                .trim()
                .parse()
                .map_err(|_| bad("the port is not a number 1-65535"))?;
            let protocol = match proto.trim().to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return Err(bad("the protocol is not tcp or udp")),
            };
            if port == 0 {
                return Err(bad("port 0"));
            }
            Ok(PortSpec {
                name,
                port,
                protocol,
            })
        })
        .collect()
}

/// Runs a `lab` command and maps the outcome to an exit status: 0, 1 when
/// a scenario had a mismatch, 2 for a usage error (bad argument, unknown
/// pod, invalid scenario or manifest), 3 for any other failure.
/// `listener` is how this program re-executes itself as a listener (the
/// program and the arguments before `--tcp`).
pub fn main(args: LabArgs, listener: Vec<OsString>) -> ExitCode {
    match execute(args, listener) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(if is_usage(&error) { 2 } else { 3 })
        }
    }
}

/// Whether an error is the user's input rather than the system's state.
pub fn is_usage(error: &LabError) -> bool {
    matches!(
        error,
        LabError::Invalid { .. }
            | LabError::Unknown { .. }
            | LabError::Scenario { .. }
            | LabError::Manifest { .. }
            | LabError::NotUp { .. }
            | LabError::AlreadyUp { .. }
    )
}

/// Runs a `lab` command; `Ok(false)` when a scenario had a mismatch.
///
/// # Errors
///
/// Whatever the command failed with.
pub fn execute(args: LabArgs, listener: Vec<OsString>) -> Result<bool> {
    let options = LabOptions {
        name: args.name,
        state_root: args.state_root,
        bin_dir: args.bin_dir,
        listener,
        progress: true,
    };
    let mut stdout = std::io::stdout().lock();
    match args.command {
        LabCommand::Listen { tcp, udp } => crate::probe::listen(&tcp, &udp)?,
        LabCommand::Up {
            nodes,
            tor,
            encap,
            routing,
        } => {
            let up = UpOptions {
                nodes: (1..=nodes).map(|i| format!("n{i}")).collect(),
                tor,
                encap,
                routing,
            };
            let lab = Lab::up(options, &up)?;
            let _ = writeln!(stdout, "{}", lab.status());
        }
        LabCommand::Down => {
            let removed = Lab::down(&options)?;
            let _ = writeln!(
                stdout,
                "lab {} down: removed {} objects",
                options.name,
                removed.len()
            );
        }
        LabCommand::Status => {
            let _ = write!(stdout, "{}", Lab::open(options)?.status());
        }
        LabCommand::Logs { node, daemon } => {
            let lab = Lab::open(options)?;
            let path = lab.log_path(&node, &daemon)?;
            let text = std::fs::read(&path)
                .map_err(|e| LabError::io(format!("read {}", path.display()), e))?;
            let _ = stdout.write_all(&text);
        }
        LabCommand::Pod(PodCommand::Add {
            pod,
            node,
            labels,
            ports,
            service_account,
        }) => {
            let (namespace, name) = split_pod(&pod)?;
            let mut lab = Lab::open(options)?;
            let request = PodRequest {
                namespace,
                name,
                node,
                labels: parse_labels(&labels)?,
                service_account,
                ports: parse_ports(&ports)?,
            };
            let state = lab.pod_add(&request, true)?;
            let _ = writeln!(
                stdout,
                "{} on {}: {}",
                state.id(),
                state.node,
                state.address
            );
        }
        LabCommand::Pod(PodCommand::Del { pod }) => {
            let mut lab = Lab::open(options)?;
            lab.pod_del(&pod)?;
            let _ = writeln!(stdout, "{pod} deleted");
        }
        LabCommand::Restart { node, daemon, kill } => {
            let mut lab = Lab::open(options)?;
            let pid = lab.restart(&node, daemon, kill)?;
            let _ = writeln!(
                stdout,
                "{} on {node} restarted (pid {pid})",
                daemon.as_str()
            );
        }
        LabCommand::Node(NodeCommand::Remove { node }) => {
            let mut lab = Lab::open(options)?;
            let removal = lab.node_remove(&node)?;
            let _ = writeln!(
                stdout,
                "node {node} removed: {} pods deleted; IPAM GC released {} addresses, {} blocks, {} affinities",
                removal.pods.len(),
                removal.gc.released.len(),
                removal.gc.blocks_released.len(),
                removal.gc.affinities_removed
            );
        }
        LabCommand::Probe {
            from,
            to,
            port,
            proto,
            timeout_ms,
        } => {
            let lab = Lab::open(options)?;
            let outcome = lab.probe(&from, &to, port, proto, Duration::from_millis(timeout_ms))?;
            let _ = writeln!(
                stdout,
                "{} ({})",
                outcome.verdict().as_str(),
                outcome.as_str()
            );
        }
        LabCommand::Matrix { port, proto } => {
            let lab = Lab::open(options)?;
            let matrix = lab.matrix(port.map(|p| (p, proto)), crate::run::PROBE_TIMEOUT)?;
            let _ = writeln!(stdout, "{matrix}");
        }
        LabCommand::Run { scenario, keep } => {
            let text = std::fs::read_to_string(&scenario)
                .map_err(|e| LabError::io(format!("read {}", scenario.display()), e))?;
            let parsed = Scenario::parse(&scenario.display().to_string(), &text)?;
            let report = crate::run::run(options, &parsed, keep, &mut stdout)?;
            return Ok(report.mismatches == 0);
        }
    }
    Ok(true)
}

fn split_pod(pod: &str) -> Result<(String, String)> {
    pod.split_once('/')
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| LabError::Invalid {
            what: "pod",
            value: pod.to_string(),
            reason: "expected NAMESPACE/NAME".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_optional_name_and_protocol() {
        let ports = parse_ports("http:8080/tcp,53/udp,5432").expect("valid ports");
        assert_eq!(
            ports,
            vec![
                PortSpec {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp
                },
                PortSpec {
                    name: None,
                    port: 53,
                    protocol: Protocol::Udp
                },
                PortSpec {
                    name: None,
                    port: 5432,
                    protocol: Protocol::Tcp
                },
            ]
        );
    }

    #[test]
    fn bad_ports_and_labels_are_refused() {
        for bad in ["x:http", "80/sctp", "0", "70000"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
        assert!(parse_labels("app").is_err());
        assert_eq!(parse_labels("app=web, tier=1").expect("valid")["tier"], "1");
    }
}
