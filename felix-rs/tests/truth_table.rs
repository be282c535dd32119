//! Truth tables on real traffic (root): namespaces x and y, pods a and b in
//! each, serving TCP on 80 and 81 (the port named `web` is 80, but 81 on
//! y/b). Each case applies a Kubernetes NetworkPolicy as a plan on top of
//! the previous case, probes every (client, server, port) and compares the
//! whole matrix with the expected one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, render, script};
use twill_integration::{Fabric, Node, Pod, TcpServer};

const ALLOWED_WAIT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(500);
const PORTS: [u16; 2] = [80, 81];
const SUBNET: [u8; 3] = [10, 202, 0];

struct Lab {
    node: Node,
    pods: BTreeMap<String, Pod>,
    graph: CalcGraph,
    actual: Ruleset,
    _servers: Vec<TcpServer>,
    // Last: torn down after the pods and servers that live in it.
    _fabric: Fabric,
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], n)
}

impl Lab {
    fn new() -> Self {
        let fabric = Fabric::new().expect("fabric");
        let node = fabric.add_node("n1").expect("node");
        let mut graph = CalcGraph::new("node1");
        let mut pods = BTreeMap::new();
        let mut servers = Vec::new();
        let mut yaml = String::new();
        for ns in ["x", "y"] {
            yaml.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.{ns}}}\nspec: {{labelsToApply: {{pcns.ns: {ns}}}}}\n---\n"
            ));
        }
        for (i, name) in ["x/a", "x/b", "y/a", "y/b"].into_iter().enumerate() {
            let (ns, pod_name) = name.split_once('/').expect("ns/pod");
            let octet = u8::try_from(i + 1).expect("small");
            let pod = node
                .add_pod(&format!("{ns}{pod_name}"), ip(octet))
                .expect("pod");
            for port in PORTS {
                servers.push(pod.listen_tcp(port).expect("listen"));
            }
            let web = if name == "y/b" { 81 } else { 80 };
            yaml.push_str(&format!(
                "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-{pod_name}-eth0
  namespace: {ns}
  labels: {{pod: {pod_name}}}
spec:
  node: node1
  orchestrator: k8s
  pod: {pod_name}
  endpoint: eth0
  interfaceName: {iface}
  ipNetworks: [{addr}/32]
  ports: [{{name: web, port: {web}, protocol: TCP}}]
---
",
                iface = pod.host_link(),
                addr = pod.ip(),
            ));
            pods.insert(name.to_string(), pod);
        }
        load(&mut graph, &yaml);
        graph.on_update(Update::InSync).expect("in sync");
        let mut lab = Lab {
            node,
            pods,
            graph,
            actual: Ruleset::default(),
            _servers: servers,
            _fabric: fabric,
        };
        lab.program();
        lab
    }

    fn program(&mut self) {
        let desired = render(&self.graph, &RenderConfig::default());
        let ops = plan(&desired, &self.actual);
        self.node.nft(&script(&ops)).expect("nft accepts the plan");
        self.actual = desired;
    }

    /// Applies `yaml` (replacing the previous case's policy) and checks the matrix.
    fn case(&mut self, name: &str, yaml: &str, expect: impl Fn(&str, &str, u16) -> bool) {
        self.graph
            .on_update(Update::KubernetesPolicyDeleted {
                namespace: "x".into(),
                name: "case".into(),
            })
            .expect("delete");
        self.graph
            .on_update(Update::KubernetesPolicyDeleted {
                namespace: "y".into(),
                name: "case".into(),
            })
            .expect("delete");
        load(&mut self.graph, yaml);
        self.program();
        let mut wrong = Vec::new();
        for (client_name, client) in &self.pods {
            for (server_name, server) in &self.pods {
                if client_name == server_name {
                    continue;
                }
                for port in PORTS {
                    let allowed = expect(client_name, server_name, port);
                    let wait = if allowed { ALLOWED_WAIT } else { DENIED_WAIT };
                    let outcome = client.probe_tcp(server.ip(), port, wait).expect("probe");
                    if outcome.is_reachable() != allowed {
                        wrong.push(format!(
                            "{client_name} -> {server_name}:{port}: expected {}, got {outcome:?}",
                            if allowed { "allowed" } else { "denied" }
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "case {name}:\n{}", wrong.join("\n"));
    }
}

fn load(graph: &mut CalcGraph, yaml: &str) {
    if yaml.trim().is_empty() {
        return;
    }
    for resource in twill_api::load_str("truth-table", yaml).expect("fixture loads") {
        let update = Update::from_resource(resource).expect("policy input");
        graph.on_update(update).expect("fixture converts");
    }
}

fn ns(pod: &str) -> &str {
    &pod[..1]
}

fn policy(ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: case, namespace: {ns}}}\nspec:\n{spec}"
    )
}

#[test]
fn kubernetes_network_policy_truth_tables() {
    twill_integration::require_root!();
    let mut lab = Lab::new();

    lab.case("no policy", "", |_, _, _| true);

    lab.case(
        "deny all ingress in x",
        &policy("x", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
        |_, server, _| ns(server) != "x",
    );

    lab.case(
        "allow x from namespace y",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
        ),
        |client, server, _| ns(server) != "x" || ns(client) == "y",
    );

    lab.case(
        "namespace and pod selector in one peer are ANDed",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: a}}\n",
        ),
        |client, server, _| ns(server) != "x" || client == "y/a",
    );

    lab.case(
        "named port resolves on each destination pod",
        &policy(
            "y",
            "  podSelector: {}\n  ingress:\n  - ports: [{port: web}]\n",
        ),
        |_, server, port| match server {
            "y/a" => port == 80,
            "y/b" => port == 81,
            _ => true,
        },
    );

    lab.case(
        "egress from x only to x",
        &policy(
            "x",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {}}]\n",
        ),
        |client, server, _| ns(client) != "x" || ns(server) == "x",
    );

    lab.case(
        "ipBlock with except",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.202.0.0/24, except: [10.202.0.3/32]}}]\n",
        ),
        |client, server, _| ns(server) != "x" || client != "y/a",
    );

    lab.case(
        "port range with endPort",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - ports: [{port: 81, endPort: 90}]\n",
        ),
        |_, server, port| ns(server) != "x" || port == 81,
    );

    // The namespace label changes: the same policy must be re-evaluated.
    lab.case(
        "allow x from namespace y, before relabel",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
        ),
        |client, server, _| ns(server) != "x" || ns(client) == "y",
    );
    lab.graph
        .on_update(Update::NamespaceLabels {
            name: "y".into(),
            labels: BTreeMap::from([("ns".to_string(), "z".to_string())]),
        })
        .expect("relabel");
    lab.case(
        "allow x from namespace y, after y is relabelled",
        &policy(
            "x",
            "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
        ),
        |_, server, _| ns(server) != "x",
    );
}
