//! Scenario files: what a lab run brings up and the steps it checks.
//! The format is documented in `docs/scenarios.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// A sentence printed before the run.
    #[serde(default)]
    pub description: Option<String>,
    /// How many nodes (named `n1`, `n2`, ...), or their names.
    #[serde(default = "default_nodes")]
    pub nodes: Nodes,
    /// The top-of-rack router.
    #[serde(default)]
    pub tor: Tor,
    /// Pod traffic between nodes: routed natively or over VXLAN.
    #[serde(default)]
    pub encap: Encap,
    /// Namespaces and their labels (pods' namespaces are created even when
    /// not listed).
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceSpec>,
    /// The pods, created in order before the first step.
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    /// The steps, run in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

fn default_nodes() -> Nodes {
    Nodes::Count(2)
}

/// `nodes`: a count or a list of names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Nodes {
    /// `nodes: 3` — nodes `n1`, `n2`, `n3`.
    Count(usize),
    /// `nodes: [a, b]`.
    Names(Vec<String>),
}

impl Nodes {
    /// The node names.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Count(n) => (1..=*n).map(|i| format!("n{i}")).collect(),
            Self::Names(names) => names.clone(),
        }
    }
}

/// `tor`: which router plays the top-of-rack switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tor {
    /// BIRD 2, eBGP with every node.
    #[default]
    Bird,
    /// FRR 8 (zebra and bgpd), eBGP with every node.
    Frr,
    /// No router: nodes peer with each other only.
    None,
}

/// `encap`: how pod traffic crosses the fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// Native routing (BGP-learned or static routes).
    #[default]
    None,
    /// The IP pool's `vxlanMode: Always` (felix-rs programs the overlay).
    Vxlan,
}

/// One namespace.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The node: a name or a 1-based index.
    pub node: NodeRef,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Its ports; each gets a listener (TCP accept, UDP echo).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// A node named by name or by 1-based index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NodeRef {
    /// `node: 2`.
    Index(usize),
    /// `node: n2`.
    Name(String),
}

impl NodeRef {
    /// The node's name among `nodes`.
    ///
    /// # Errors
    ///
    /// [`LabError::Unknown`] when no such node exists.
    pub fn resolve(&self, nodes: &[String]) -> Result<String> {
        let found = match self {
            Self::Index(i) => i.checked_sub(1).and_then(|i| nodes.get(i)).cloned(),
            Self::Name(name) => nodes.iter().find(|n| *n == name).cloned(),
        };
        found.ok_or_else(|| LabError::Unknown {
            what: "node",
            name: match self {
                Self::Index(i) => i.to_string(),
                Self::Name(name) => name.clone(),
            },
        })
    }
}

/// A transport protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Protocol {
    /// TCP: a connection is accepted.
    #[serde(rename = "TCP", alias = "tcp")]
    Tcp,
    /// UDP: a datagram is echoed.
    #[serde(rename = "UDP", alias = "udp")]
    Udp,
    /// ICMP: an echo request is answered.
    #[serde(rename = "ICMP", alias = "icmp")]
    Icmp,
}

impl Protocol {
    /// `TCP`, `UDP` or `ICMP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Icmp => "ICMP",
        }
    }
}

/// One port of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    /// The port's name (a named port for policies).
    #[serde(default)]
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// TCP (default) or UDP.
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// What a probe should observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The connection (echo) succeeds.
    Allow,
    /// It does not.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One step; each is a single key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Step {
    /// Applies resources (a string of YAML documents).
    Apply(String),
    /// Deletes one resource.
    Delete(DeleteSpec),
    /// Changes a pod's or a namespace's labels.
    Label(LabelSpec),
    /// Runs probes and compares them with what is expected.
    Probe(Vec<ProbeSpec>),
    /// Probes every pod from every pod and compares the grid.
    Matrix(MatrixSpec),
    /// Waits for something.
    Wait(WaitSpec),
}

/// `delete`: one resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteSpec {
    /// Its kind (`NetworkPolicy`, `GlobalNetworkPolicy`, ...).
    pub kind: String,
    /// Its `apiVersion` (default `projectcalico.org/v3`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Its namespace (namespaced kinds).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// `label`: a pod (`NS/NAME`) or a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSpec {
    /// The pod, `NS/NAME`.
    #[serde(default)]
    pub pod: Option<String>,
    /// The namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels to set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Labels to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeSpec {
    /// The client pod, `NS/NAME`.
    pub from: String,
    /// The server pod, `NS/NAME`.
    pub to: String,
    /// The port (ignored for ICMP).
    #[serde(default)]
    pub port: Option<u16>,
    /// The protocol.
    #[serde(default = "tcp")]
    pub protocol: Protocol,
    /// The expected verdict.
    pub expect: Verdict,
}

/// `matrix`: every pod to every other pod.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatrixSpec {
    /// The port probed; without it each destination is probed on its first
    /// declared port and that port's protocol.
    #[serde(default)]
    pub port: Option<u16>,
    /// The protocol with `port` (default TCP).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Per source pod (`NS/NAME`), one character per destination pod in
    /// the order the pods are declared: `A` allow, `.` deny, `-` itself
    /// (not probed). Spaces are ignored.
    pub expect: BTreeMap<String, String>,
}

/// `wait`: `bgp` (every pod route learned on every node), `programmed`
/// (felix-rs on every node caught up), or a duration such as `2s`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum WaitSpec {
    /// Every pod's address is routed to its node from every other node.
    Bgp,
    /// Every node's felix-rs has programmed every change so far.
    Programmed,
    /// A fixed pause (seconds).
    Seconds(f64),
}

impl TryFrom<String> for WaitSpec {
    type Error = String;

    fn try_from(value: String) -> std::result::Result<Self, String> {
        match value.as_str() {
            "bgp" | "routes" => Ok(Self::Bgp),
            "programmed" => Ok(Self::Programmed),
            other => other
                .strip_suffix('s')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|s| s.is_finite() && (0.0..=600.0).contains(s))
                .map(Self::Seconds)
                .ok_or_else(|| {
                    format!(
                        "{other:?}: expected bgp, programmed or a duration like 2s (at most 600s)"
                    )
                }),
        }
    }
}

/// One matrix cell as written in `expect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `A`.
    Allow,
    /// `.`.
    Deny,
    /// `-`: the pod itself, not probed.
    Itself,
}

/// Parses one row of a matrix expectation.
///
/// # Errors
///
/// A message naming the first character that is not `A`, `.` or `-`.
pub fn parse_row(row: &str) -> std::result::Result<Vec<Cell>, String> {
    row.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'A' | 'a' => Ok(Cell::Allow),
            '.' | 'x' | 'X' => Ok(Cell::Deny),
            '-' => Ok(Cell::Itself),
            other => Err(format!(
                "{other:?} is not A (allow), . (deny) or - (itself)"
            )),
        })
        .collect()
}

impl Scenario {
    /// Parses and checks a scenario; `source` names it in errors.
    ///
    /// # Errors
    ///
    /// [`LabError::Scenario`] with the field path of the first problem.
    pub fn parse(source: &str, text: &str) -> Result<Self> {
        let error = |path: String, reason: String| LabError::Scenario {
            source_name: source.to_string(),
            path,
            reason,
        };
        let mut documents = twill_api::load::parse_documents(text)
            .map_err(|e| error("(document)".into(), e.to_string()))?;
        if documents.len() != 1 {
            return Err(error(
                "(document)".into(),
                format!("expected one YAML document, found {}", documents.len()),
            ));
        }
        let document = documents.remove(0);
        let scenario: Scenario = serde_path_to_error::deserialize(document).map_err(|e| {
            let path = e.path().to_string();
            error(path, e.into_inner().to_string())
        })?;
        scenario
            .check()
            .map_err(|(path, reason)| error(path, reason))?;
        Ok(scenario)
    }

    /// The pods as `NS/NAME`, in declared order.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect()
    }

    fn check(&self) -> std::result::Result<(), (String, String)> {
        let nodes = self.nodes.names();
        if nodes.is_empty() || nodes.len() > crate::MAX_NODES {
            return Err((
                "nodes".into(),
                format!("between 1 and {} nodes", crate::MAX_NODES),
            ));
        }
        for (i, name) in nodes.iter().enumerate() {
            crate::check_dns_label(name).map_err(|r| (format!("nodes[{i}]"), r))?;
        }
        let pods = self.pod_names();
        for (i, pod) in self.pods.iter().enumerate() {
            let at = |field: &str| format!("pods[{i}].{field}");
            crate::check_dns_label(&pod.namespace).map_err(|r| (at("namespace"), r))?;
            crate::check_dns_label(&pod.name).map_err(|r| (at("name"), r))?;
            pod.node
                .resolve(&nodes)
                .map_err(|e| (at("node"), e.to_string()))?;
            if pods[..i].contains(&pods[i]) {
                return Err((at("name"), format!("pod {} is declared twice", pods[i])));
            }
        }
        let known = |field: String, pod: &str| {
            if pods.iter().any(|p| p == pod) {
                Ok(())
            } else {
                Err((field, format!("no pod {pod:?} is declared")))
            }
        };
        for (s, step) in self.steps.iter().enumerate() {
            match step {
                Step::Probe(probes) => {
                    for (p, probe) in probes.iter().enumerate() {
                        let at = |f: &str| format!("steps[{s}].probe[{p}].{f}");
                        known(at("from"), &probe.from)?;
                        known(at("to"), &probe.to)?;
                        if probe.protocol != Protocol::Icmp && probe.port.is_none() {
                            return Err((at("port"), "TCP and UDP probes need a port".into()));
                        }
                    }
                }
                Step::Matrix(matrix) => {
                    let at = format!("steps[{s}].matrix.expect");
                    for pod in &pods {
                        let row = matrix
                            .expect
                            .get(pod)
                            .ok_or_else(|| (at.clone(), format!("no row for pod {pod}")))?;
                        let cells = parse_row(row).map_err(|r| (format!("{at}.{pod}"), r))?;
                        if cells.len() != pods.len() {
                            return Err((
                                format!("{at}.{pod}"),
                                format!("{} cells for {} pods", cells.len(), pods.len()),
                            ));
                        }
                    }
                    if let Some(extra) = matrix.expect.keys().find(|k| !pods.contains(k)) {
                        return Err((at, format!("no pod {extra:?} is declared")));
                    }
                }
                Step::Label(label) => {
                    let at = format!("steps[{s}].label");
                    match (&label.pod, &label.namespace) {
                        (Some(pod), None) => known(format!("{at}.pod"), pod)?,
                        (None, Some(_)) => {}
                        _ => {
                            return Err((at, "exactly one of pod and namespace".into()));
                        }
                    }
                }
                Step::Apply(_) | Step::Delete(_) | Step::Wait(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
