//! Pods: CNI ADD/DEL as a runtime runs them, listeners, static fallback
//! routes, probes and the reachability matrix.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Lab, PodRequest};
use crate::error::{LabError, Result};
use crate::probe::{self, Outcome};
use crate::scenario::{Encap, PortSpec, Protocol};
use crate::state::{NodeState, PodState, Routing};
use crate::store;
use crate::sys;

impl Lab {
    fn cni_conf(&self, node: &str, pod: &PodRequest) -> Value {
        let dir = self.node_dir(node);
        let ports: Vec<Value> = pod
            .ports
            .iter()
            .filter(|p| p.protocol != Protocol::Icmp)
            .map(|p| {
                let mut port = json!({ "protocol": p.protocol.as_str(), "port": p.port });
                if let Some(name) = &p.name {
                    port["name"] = Value::from(name.clone());
                }
                port
            })
            .collect();
        let mut runtime = json!({ "labels": pod.labels, "ports": ports });
        if let Some(sa) = &pod.service_account {
            runtime["serviceAccountName"] = Value::from(sa.clone());
        }
        json!({
            "cniVersion": "1.0.0",
            "name": "twill",
            "type": "twill-cni",
            "nodename": node,
            "ipam": { "type": "twill-ipam" },
            "ipam_socket": dir.join("ipam.sock"),
            "datastore_path": self.datastore(),
            "endpoint_status_dir": dir.join("status"),
            "mtu_file": dir.join("mtu"),
            "policy_setup_timeout": 10,
            "log_level": "warn",
            "log_file": dir.join("cni.log"),
            "runtimeConfig": runtime,
        })
    }

    fn run_cni(
        &self,
        verb: &str,
        node: &NodeState,
        pod: &PodRequest,
        container: &str,
        netns: &str,
    ) -> Result<Value> {
        use std::io::Write;
        let mut command = sys::in_netns(&node.netns, self.state.bin_dir.join("twill-cni"));
        command
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", Path::new(sys::NETNS_DIR).join(netns))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.state.bin_dir)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                    pod.namespace, pod.name
                ),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let line = format!("twill-cni {verb} {}/{}", pod.namespace, pod.name);
        let mut child = command
            .spawn()
            .map_err(|e| LabError::io(format!("start {line}"), e))?;
        let conf = serde_json::to_vec(&self.cni_conf(&node.name, pod)).expect("JSON serializes");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&conf)
                .map_err(|e| LabError::io(format!("write {line} stdin"), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| LabError::io(format!("wait {line}"), e))?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: line,
                status: out.status.to_string(),
                stderr: format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        if out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| LabError::Command {
            command: line,
            status: "bad result".into(),
            stderr: e.to_string(),
        })
    }

    /// Creates a pod through the real CNI plugin, starts its listeners,
    /// and (with `settle`) waits until every node routes to it and felix-rs
    /// everywhere has programmed it.
    ///
    /// # Errors
    ///
    /// An unknown node, a pod that exists, or the plugin's error (the pod's
    /// namespace is removed again then).
    pub fn pod_add(&mut self, pod: &PodRequest, settle: bool) -> Result<PodState> {
        let id = format!("{}/{}", pod.namespace, pod.name);
        crate::check_dns_label(&pod.namespace).map_err(|reason| LabError::Invalid {
            what: "namespace",
            value: pod.namespace.clone(),
            reason,
        })?;
        crate::check_dns_label(&pod.name).map_err(|reason| LabError::Invalid {
            what: "pod name",
            value: pod.name.clone(),
            reason,
        })?;
        if self.state.pod(&id).is_ok() {
            return Err(LabError::Invalid {
                what: "pod",
                value: id,
                reason: "already exists".into(),
            });
        }
        let node = self.state.node(&pod.node)?.clone();
        if !self.state.namespaces.contains_key(&pod.namespace) {
            self.set_namespace(&pod.namespace, BTreeMap::new())?;
        }
        if let Some(sa) = &pod.service_account {
            self.apply("lab", &store::service_account_profile(&pod.namespace, sa))?;
        }
        let number = self.state.next_pod;
        self.state.next_pod += 1;
        let netns = format!("{}pod-{number}", self.options.netns_prefix());
        let container = format!("twill-lab-{}-{number}", self.options.name);
        sys::add_netns(&netns)?;
        let result = match self.run_cni("ADD", &node, pod, &container, &netns) {
            Ok(result) => result,
            Err(e) => {
                let _ = sys::delete_netns(&netns);
                self.save()?;
                return Err(e);
            }
        };
        let address = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
            .next()
            .ok_or_else(|| LabError::Command {
                command: format!("twill-cni ADD {id}"),
                status: "no IPv4 address".into(),
                stderr: result.to_string(),
            })?;
        let listener = self.start_listener(&node.name, &netns, &pod.ports)?;
        let state = PodState {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: node.name.clone(),
            netns,
            container_id: container,
            address,
            ports: pod.ports.clone(),
            listener,
        };
        self.state.pods.push(state.clone());
        self.save()?;
        if self.state.routing == Routing::Static && self.state.encap == Encap::None {
            self.static_routes(&state, true)?;
        }
        if settle {
            self.settle()?;
        }
        Ok(state)
    }

    fn start_listener(&self, node: &str, netns: &str, ports: &[PortSpec]) -> Result<Option<u32>> {
        let serving: Vec<&PortSpec> = ports
            .iter()
            .filter(|p| p.protocol != Protocol::Icmp)
            .collect();
        if serving.is_empty() {
            return Ok(None);
        }
        let Some((program, args)) = self.options.listener.split_first() else {
            return Err(LabError::Invalid {
                what: "listener command",
                value: String::new(),
                reason: "empty: the lab cannot start listeners".into(),
            });
        };
        let mut command = sys::in_netns(netns, program);
        command.args(args);
        for port in &serving {
            let flag = if port.protocol == Protocol::Udp {
                "--udp"
            } else {
                "--tcp"
            };
            command.arg(flag).arg(port.port.to_string());
        }
        let log = self.node_dir(node).join(format!("listener-{netns}.log"));
        let pid = sys::spawn_detached(command, &log)?;
        for port in serving.iter().filter(|p| p.protocol == Protocol::Tcp) {
            sys::wait_for(
                &format!("the listener on port {} in {netns}", port.port),
                Duration::from_secs(5),
                || {
                    let ss = sys::run(sys::in_netns(netns, "ss").args(["-Htln"])).ok()?;
                    ss.contains(&format!(":{} ", port.port)).then_some(())
                },
            )?;
        }
        Ok(Some(pid))
    }

    fn static_routes(&self, pod: &PodState, add: bool) -> Result<()> {
        let owner = self.state.node(&pod.node)?;
        for node in self.state.nodes.iter().filter(|n| n.name != pod.node) {
            let dst = format!("{}/32", pod.address);
            if add {
                sys::ip(
                    &node.netns,
                    &[
                        "route",
                        "replace",
                        &dst,
                        "via",
                        &owner.address.to_string(),
                        "proto",
                        "static",
                    ],
                )?;
            } else {
                let _ = sys::ip(&node.netns, &["route", "del", &dst, "proto", "static"]);
            }
        }
        Ok(())
    }

    /// Deletes a pod: stops its listener, runs CNI DEL, removes its
    /// namespace.
    ///
    /// # Errors
    ///
    /// An unknown pod or the plugin's error.
    pub fn pod_del(&mut self, id: &str) -> Result<()> {
        let pod = self.state.pod(id)?.clone();
        if let Some(pid) = pod.listener {
            sys::stop_pid(pid);
        }
        let node = self.state.node(&pod.node)?.clone();
        let request = PodRequest {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node.clone(),
            ..PodRequest::default()
        };
        self.run_cni("DEL", &node, &request, &pod.container_id, &pod.netns)?;
        if self.state.routing == Routing::Static {
            self.static_routes(&pod, false)?;
        }
        sys::delete_netns(&pod.netns)?;
        self.state.pods.retain(|p| p.id() != id);
        self.save()
    }

    /// Probes `to` from `from`. `port` defaults to the destination's first
    /// port of that protocol.
    ///
    /// # Errors
    ///
    /// An unknown pod, a TCP/UDP probe without a port, or a namespace that
    /// cannot be entered.
    pub fn probe(
        &self,
        from: &str,
        to: &str,
        port: Option<u16>,
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<Outcome> {
        let source = self.state.pod(from)?;
        let target = self.state.pod(to)?;
        let port = match (port, protocol) {
            (Some(p), _) => p,
            (None, Protocol::Icmp) => 0,
            (None, _) => target
                .ports
                .iter()
                .find(|p| p.protocol == protocol)
                .map(|p| p.port)
                .ok_or_else(|| LabError::Invalid {
                    what: "probe",
                    value: format!("{from} -> {to}"),
                    reason: format!("{to} has no {} port; give --port", protocol.as_str()),
                })?,
        };
        probe::probe(
            &source.netns,
            IpAddr::V4(target.address),
            port,
            protocol,
            timeout,
        )
    }

    /// Probes every pod from every other pod, in parallel. `target` fixes
    /// the port and protocol; without it each destination is probed on its
    /// first port (ICMP when it has none). Rows and columns follow the
    /// pods' creation order; the diagonal is `None`.
    ///
    /// # Errors
    ///
    /// The first probe that could not run.
    pub fn matrix(&self, target: Option<(u16, Protocol)>, timeout: Duration) -> Result<Matrix> {
        let pods = &self.state.pods;
        let results: Vec<Vec<Option<Result<Outcome>>>> = std::thread::scope(|scope| {
            let rows: Vec<Vec<_>> = pods
                .iter()
                .map(|from| {
                    pods.iter()
                        .map(|to| {
                            (from.id() != to.id()).then(|| {
                                let (port, protocol) = target.unwrap_or_else(|| {
                                    to.ports
                                        .first()
                                        .map_or((0, Protocol::Icmp), |p| (p.port, p.protocol))
                                });
                                let from = from.netns.clone();
                                let addr = IpAddr::V4(to.address);
                                scope.spawn(move || {
                                    probe::probe(&from, addr, port, protocol, timeout)
                                })
                            })
                        })
                        .collect()
                })
                .collect();
            rows.into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|cell| {
                            cell.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        })
                        .collect()
                })
                .collect()
        });
        let mut cells = Vec::new();
        for row in results {
            let mut out = Vec::new();
            for cell in row {
                out.push(cell.transpose()?);
            }
            cells.push(out);
        }
        Ok(Matrix {
            pods: pods.iter().map(PodState::id).collect(),
            targets: pods
                .iter()
                .map(|p| match target {
                    Some((port, protocol)) => format!("{port}/{}", protocol.as_str()),
                    None => p.ports.first().map_or("ICMP".into(), |p| {
                        format!("{}/{}", p.port, p.protocol.as_str())
                    }),
                })
                .collect(),
            cells,
        })
    }
}

/// A reachability matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Pods, `NS/NAME`, as rows and columns.
    pub pods: Vec<String>,
    /// What each column was probed on (`8080/TCP`).
    pub targets: Vec<String>,
    /// `cells[from][to]`; `None` on the diagonal.
    pub cells: Vec<Vec<Option<Outcome>>>,
}

impl std::fmt::Display for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self.pods.iter().map(String::len).max().unwrap_or(4).max(4);
        writeln!(f, "{:width$}  to →", "from ↓")?;
        for (i, (pod, target)) in self.pods.iter().zip(&self.targets).enumerate() {
            writeln!(f, "{:width$}  [{i}] {pod} ({target})", "")?;
        }
        write!(f, "{:width$} ", "")?;
        for i in 0..self.pods.len() {
            write!(f, " [{i}]")?;
        }
        writeln!(f)?;
        for (pod, row) in self.pods.iter().zip(&self.cells) {
            write!(f, "{pod:width$} ")?;
            for cell in row {
                let mark = match cell {
                    None => "-",
                    Some(Outcome::Reachable) => "A",
                    Some(_) => ".",
                };
                write!(f, "  {mark} ")?;
            }
            writeln!(f)?;
        }
        write!(f, "A: allowed, .: denied, -: itself")
    }
}
