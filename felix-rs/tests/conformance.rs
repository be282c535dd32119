//! Real traffic through a rendered ruleset (root): pods in network
//! namespaces on one node, policies applied as plans on top of each other,
//! TCP probes compared with what the policies allow.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, render, script};
use twill_integration::{Fabric, Pod, TcpServer};

const ALLOWED_WAIT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(700);

fn load(graph: &mut CalcGraph, yaml: &str) {
    for resource in twill_api::load_str("conformance", yaml).expect("fixture loads") {
        let update = Update::from_resource(resource).expect("policy input");
        graph.on_update(update).expect("fixture converts");
    }
}

fn endpoint(ns: &str, name: &str, pod: &Pod) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-{name}-eth0
  namespace: {ns}
  labels: {{pod: {name}}}
spec:
  node: node1
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  interfaceName: {iface}
  ipNetworks: [{ip}/32]
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
",
        iface = pod.host_link(),
        ip = pod.ip()
    )
}

fn namespace(name: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: kns.{name}}}
spec:
  labelsToApply: {{pcns.ns: {name}}}
---
"
    )
}

struct Cluster {
    node: twill_integration::Node,
    actual: Ruleset,
    config: RenderConfig,
}

impl Cluster {
    fn new(node: twill_integration::Node) -> Self {
        Self {
            node,
            actual: Ruleset::default(),
            config: RenderConfig::default(),
        }
    }

    fn program(&mut self, graph: &CalcGraph) {
        let desired = render(graph, &self.config);
        let ops = plan(&desired, &self.actual);
        self.node.nft(&script(&ops)).expect("nft accepts the plan");
        self.actual = desired;
    }
}

/// `(client, server, port, allowed)` rows checked against real probes.
fn check(rows: &[(&Pod, &Pod, u16, bool)], step: &str) {
    let mut wrong = Vec::new();
    for (client, server, port, allowed) in rows {
        let wait = if *allowed { ALLOWED_WAIT } else { DENIED_WAIT };
        let outcome = client
            .probe_tcp(server.ip(), *port, wait)
            .expect("probe runs");
        if outcome.is_reachable() != *allowed {
            wrong.push(format!(
                "{} -> {}:{port}: expected {}, got {outcome:?}",
                client.name(),
                server.name(),
                if *allowed { "allowed" } else { "denied" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{step}:\n{}", wrong.join("\n"));
}

fn serve(pod: &Pod) -> Vec<TcpServer> {
    [80, 81]
        .into_iter()
        .map(|p| pod.listen_tcp(p).expect("listen"))
        .collect()
}

/// Pods x/a, x/b and y/a at `ip(1)`–`ip(3)`, each serving TCP 80 and 81.
struct ThreePods {
    // Declared first so the servers stop before their pods go.
    _servers: Vec<TcpServer>,
    xa: Pod,
    xb: Pod,
    ya: Pod,
}

impl ThreePods {
    fn new(node: &twill_integration::Node, ip: impl Fn(u8) -> Ipv4Addr) -> Self {
        let xa = node.add_pod("xa", ip(1)).expect("pod");
        let xb = node.add_pod("xb", ip(2)).expect("pod");
        let ya = node.add_pod("ya", ip(3)).expect("pod");
        let _servers = [&xa, &xb, &ya].into_iter().flat_map(serve).collect();
        Self {
            _servers,
            xa,
            xb,
            ya,
        }
    }

    /// The namespace profiles of x and y and the three pods' endpoints.
    fn fixtures(&self) -> String {
        [
            namespace("x"),
            namespace("y"),
            endpoint("x", "a", &self.xa),
            endpoint("x", "b", &self.xb),
            endpoint("y", "a", &self.ya),
        ]
        .concat()
    }
}

#[test]
fn kubernetes_default_deny_with_an_allow_enforces_on_real_traffic() {
    twill_integration::require_root!();
    let fabric = Fabric::new().expect("fabric");
    let node = fabric.add_node("n1").expect("node");
    let ip = |n: u8| Ipv4Addr::new(10, 200, 0, n);
    let pods = ThreePods::new(&node, ip);
    let ThreePods { xa, xb, ya, .. } = &pods;

    let mut graph = CalcGraph::new("node1");
    load(&mut graph, &pods.fixtures());
    graph.on_update(Update::InSync).expect("in sync");
    let mut cluster = Cluster::new(node);

    cluster.program(&graph);
    check(
        &[(xb, xa, 80, true), (ya, xa, 81, true), (xa, ya, 80, true)],
        "no policy: the namespace profiles allow everything",
    );

    load(
        &mut graph,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b-http, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: http}]
",
    );
    cluster.program(&graph);
    check(
        &[
            (xb, xa, 80, true),
            (xb, xa, 81, false),
            (ya, xa, 80, false),
            (xa, xb, 80, false),
            (xa, ya, 80, true),
            (ya, xb, 81, false),
        ],
        "x isolated for ingress; only pod b may reach the named port",
    );

    // A connection established while allowed, used after the deny below.
    let target = std::net::SocketAddr::new(xa.ip(), 80);
    let mut established = xb
        .run(|| std::net::TcpStream::connect_timeout(&target, ALLOWED_WAIT))
        .expect("enter pod namespace")
        .expect("connect while allowed");
    established
        .set_read_timeout(Some(ALLOWED_WAIT))
        .expect("read timeout");

    load(
        &mut graph,
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-egress-from-b}
spec:
  order: 1
  selector: pod == 'b'
  egress:
  - action: Deny
    protocol: TCP
    destination: {ports: [80]}
  - action: Allow
",
    );
    cluster.program(&graph);
    check(
        &[(xb, xa, 80, false), (xb, ya, 81, true), (xb, ya, 80, false)],
        "the client's egress Deny wins over the server's ingress Allow",
    );
    established.write_all(b"still-here").expect("write");
    let mut echo = [0u8; 10];
    established
        .read_exact(&mut echo)
        .expect("an established connection keeps flowing after a deny");
    assert_eq!(&echo, b"still-here");

    // A pod whose interface has the workload prefix but no endpoint yet.
    let stranger = cluster
        .node
        .add_pod("zz", ip(9))
        .expect("pod without endpoint");
    let _stranger_servers = serve(&stranger);
    cluster.program(&graph);
    check(
        &[(&stranger, ya, 80, false), (ya, &stranger, 80, false)],
        "an unprogrammed workload interface is dropped both ways",
    );

    graph
        .on_update(Update::KubernetesPolicyDeleted {
            namespace: "x".into(),
            name: "allow-b-http".into(),
        })
        .expect("delete");
    graph
        .on_update(Update::GlobalPolicyDeleted {
            name: "deny-egress-from-b".into(),
        })
        .expect("delete");
    cluster.program(&graph);
    check(
        &[(ya, xa, 80, true), (xb, xa, 81, true)],
        "policies deleted: allowed again",
    );
}

#[test]
fn a_deny_in_an_earlier_tier_wins_and_pass_defers_to_the_next_tier() {
    twill_integration::require_root!();
    let fabric = Fabric::new().expect("fabric");
    let node = fabric.add_node("n1").expect("node");
    let ip = |n: u8| Ipv4Addr::new(10, 201, 0, n);
    let pods = ThreePods::new(&node, ip);
    let ThreePods { xa, xb, ya, .. } = &pods;
    let mut graph = CalcGraph::new("node1");
    load(
        &mut graph,
        &[
            pods.fixtures(),
            "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.guard-x}
spec:
  tier: security
  namespaceSelector: ns == 'x'
  ingress:
  - action: Deny
    source: {namespaceSelector: ns == 'y', selector: pod == 'a'}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-only, namespace: x}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
"
            .to_string(),
        ]
        .concat(),
    );
    let mut cluster = Cluster::new(node);
    cluster.program(&graph);
    check(
        &[
            (xb, xa, 80, true),
            (ya, xa, 80, false),
            (xb, xa, 81, false),
            (xa, ya, 81, true),
        ],
        "security tier denies y/a, passes the rest to the default tier",
    );
}

/// Sends one datagram from `source` in the pod's namespace.
fn send_from(pod: &Pod, source: Ipv4Addr, target: std::net::SocketAddr) {
    pod.run(|| {
        let socket = std::net::UdpSocket::bind((source, 0)).expect("bind the source address");
        socket.send_to(b"who-am-i", target).expect("send");
    })
    .expect("enter pod namespace");
}

/// Datagrams the server receives from each of `sources` (one sent from each).
fn received_from(
    pod: &Pod,
    sources: &[Ipv4Addr],
    server: &twill_integration::UdpEchoServer,
    target: std::net::SocketAddr,
) -> Vec<bool> {
    sources
        .iter()
        .map(|source| {
            let before = server.received();
            send_from(pod, *source, target);
            std::thread::sleep(Duration::from_millis(300));
            server.received() > before
        })
        .collect()
}

#[test]
fn a_pod_may_only_send_from_its_own_addresses() {
    twill_integration::require_root!();
    let fabric = Fabric::new().expect("fabric");
    let node = fabric.add_node("n1").expect("node");
    let ip = |n: u8| Ipv4Addr::new(10, 203, 0, n);
    let client = node.add_pod("xa", ip(1)).expect("pod");
    let server = node.add_pod("xb", ip(2)).expect("pod");
    let spoofed = ip(50);
    client
        .netns()
        .ip(&[
            "addr",
            "add",
            &format!("{spoofed}/32"),
            "dev",
            client.link(),
        ])
        .expect("second address in the pod");
    // Without reverse-path filtering only Twill's rules can stop the packet.
    for key in [
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/default/rp_filter",
    ] {
        cluster_sysctl(&node, key);
    }
    cluster_sysctl(
        &node,
        &format!("net/ipv4/conf/{}/rp_filter", client.host_link()),
    );
    let echo = server.udp_echo(5000).expect("udp server");
    let target = std::net::SocketAddr::new(server.ip(), 5000);

    let mut graph = CalcGraph::new("node1");
    load(
        &mut graph,
        &[
            namespace("x"),
            endpoint("x", "a", &client),
            endpoint("x", "b", &server),
        ]
        .concat(),
    );
    let mut cluster = Cluster::new(node);
    cluster.program(&graph);
    assert_eq!(
        received_from(&client, &[ip(1), spoofed], &echo, target),
        [true, false],
        "own address delivered, spoofed one dropped"
    );

    load(
        &mut graph,
        &endpoint("x", "a", &client).replace(
            "ipNetworks: [10.203.0.1/32]",
            "ipNetworks: [10.203.0.1/32]\n  allowSpoofedSourcePrefixes: [10.203.0.50/32]",
        ),
    );
    cluster.program(&graph);
    assert_eq!(
        received_from(&client, &[spoofed], &echo, target),
        [true],
        "an allowed spoofed prefix is delivered"
    );
}

fn cluster_sysctl(node: &twill_integration::Node, key: &str) {
    node.sysctl(key, "0").expect("sysctl");
}

#[test]
fn a_host_endpoint_isolates_the_host_except_for_failsafe_ports() {
    twill_integration::require_root!();
    let fabric = Fabric::new().expect("fabric");
    let host = fabric.add_node("n1").expect("node");
    let peer = fabric.add_node("n2").expect("node");
    let _servers: Vec<TcpServer> = [22, 8080]
        .into_iter()
        .map(|p| host.listen_tcp(p).expect("listen on the host"))
        .collect();
    let mut graph = CalcGraph::new("node1");
    load(
        &mut graph,
        &format!(
            "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node1-fabric
  labels: {{role: node}}
spec:
  node: node1
  interfaceName: {iface}
  expectedIPs: [{ip}]
",
            iface = host.link(),
            ip = host.ip()
        ),
    );
    let host_ip = std::net::IpAddr::V4(host.ip());
    let mut cluster = Cluster::new(host);
    let probe = |port: u16, allowed: bool| {
        let wait = if allowed { ALLOWED_WAIT } else { DENIED_WAIT };
        let outcome = peer.probe_tcp(host_ip, port, wait).expect("probe");
        assert_eq!(outcome.is_reachable(), allowed, "port {port}: {outcome:?}");
    };
    cluster.program(&graph);
    probe(22, true);
    probe(8080, false);

    load(
        &mut graph,
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-8080}
spec:
  selector: role == 'node'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
",
    );
    cluster.program(&graph);
    probe(8080, true);
    probe(22, true);

    graph
        .on_update(Update::HostEndpointDeleted {
            name: "node1-fabric".into(),
        })
        .expect("delete");
    cluster.program(&graph);
    probe(8080, true);
}

#[test]
fn a_user_defined_profile_allows_only_what_its_rules_allow_after_the_tiers() {
    twill_integration::require_root!();
    let fabric = Fabric::new().expect("fabric");
    let node = fabric.add_node("n1").expect("node");
    let ip = |n: u8| Ipv4Addr::new(10, 207, 0, n);
    let pods = ThreePods::new(&node, ip);
    let ThreePods { xa, xb, ya, .. } = &pods;

    let mut graph = CalcGraph::new("node1");
    // x/a lists the profile `web` instead of its namespace profile.
    let xa_endpoint = endpoint("x", "a", xa).replace(
        "  ports: [{name: http, port: 80, protocol: TCP}]\n",
        "  ports: [{name: http, port: 80, protocol: TCP}]\n  profiles: [web]\n",
    );
    assert!(xa_endpoint.contains("profiles: [web]"), "{xa_endpoint}");
    load(
        &mut graph,
        &[
            namespace("x"),
            namespace("y"),
            xa_endpoint,
            endpoint("x", "b", xb),
            endpoint("y", "a", ya),
        ]
        .concat(),
    );
    graph.on_update(Update::InSync).expect("in sync");
    let mut cluster = Cluster::new(node);

    cluster.program(&graph);
    check(
        &[
            (xb, xa, 80, false),
            (ya, xa, 80, false),
            (xa, xb, 80, false),
            (ya, xb, 80, true),
        ],
        "x/a lists a profile that does not exist: it drops both ways",
    );

    load(
        &mut graph,
        "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: web}
spec:
  ingress: [{action: Allow, protocol: TCP, source: {selector: pod == 'b'}, destination: {ports: [80]}}]
  egress: [{action: Allow}]
",
    );
    cluster.program(&graph);
    check(
        &[
            (xb, xa, 80, true),
            (xb, xa, 81, false),
            (ya, xa, 80, false),
            (xa, xb, 80, true),
        ],
        "the profile's rules: ingress from pod b on 80 only, egress anywhere",
    );

    load(
        &mut graph,
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-y}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, source: {selector: pod == 'a'}}]
  egress: [{action: Allow}]
",
    );
    cluster.program(&graph);
    check(
        &[(ya, xa, 80, true), (xb, xa, 80, false)],
        "a policy selects x/a: its tier decides and the profile is no longer reached",
    );
}
