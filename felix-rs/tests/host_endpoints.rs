//! HostEndpoint policy on real traffic (root). A client and a server
//! namespace are routed through a host namespace over two plain veth links
//! (not workload interfaces); the host carries an all-interfaces
//! HostEndpoint (`interfaceName: "*"`) and each case programs a set of
//! GlobalNetworkPolicies, then probes:
//!
//! ```text
//! client 10.77.1.2 ── 10.77.1.1 host 10.77.2.1 ── 10.77.2.2 server
//!                     (DNAT 10.77.9.9:80 → 10.77.2.2:8080)
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, plan, render, script};
use twill_integration::{TcpServer, TestNetns, names};

const ALLOWED_WAIT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(500);

const HOST_ON_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
const DNAT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 9, 9);

const ALL_INTERFACES_HEP: &str = "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: all, labels: {role: host}}
spec: {node: node1, interfaceName: '*'}
";

struct Lab {
    host: TestNetns,
    client: TestNetns,
    _server: TestNetns,
    graph: CalcGraph,
    actual: Ruleset,
    policies: Vec<String>,
    _servers: Vec<TcpServer>,
}

/// Links `a` and `b`; returns `a`'s side.
fn veth(a: &TestNetns, a_addr: &str, b: &TestNetns, b_addr: &str) -> String {
    let (a_link, b_link) = (names::link(), names::link());
    a.ip(&[
        "link",
        "add",
        &a_link,
        "type",
        "veth",
        "peer",
        "name",
        &b_link,
        "netns",
        b.name(),
    ])
    .expect("veth");
    a.ip(&["addr", "add", a_addr, "dev", &a_link])
        .expect("addr");
    a.ip(&["link", "set", &a_link, "up"]).expect("up");
    b.ip(&["addr", "add", b_addr, "dev", &b_link])
        .expect("addr");
    b.ip(&["link", "set", &b_link, "up"]).expect("up");
    a_link
}

impl Lab {
    /// The lab with `host_endpoints` on the host.
    fn new(host_endpoints: &str) -> Self {
        let host = TestNetns::new("hep-host").expect("netns");
        let client = TestNetns::new("hep-client").expect("netns");
        let server = TestNetns::new("hep-server").expect("netns");
        let client_link = veth(&host, "10.77.1.1/24", &client, "10.77.1.2/24");
        let server_link = veth(&host, "10.77.2.1/24", &server, "10.77.2.2/24");
        client
            .ip(&["route", "add", "default", "via", "10.77.1.1"])
            .expect("route");
        server
            .ip(&["route", "add", "default", "via", "10.77.2.1"])
            .expect("route");
        host.sysctl("net/ipv4/ip_forward", "1").expect("forwarding");
        host.nft(
            "add table ip twtnat
add chain ip twtnat prerouting { type nat hook prerouting priority dstnat ; }
add rule ip twtnat prerouting ip daddr 10.77.9.9 tcp dport 80 dnat to 10.77.2.2:8080
",
        )
        .expect("dnat");
        let mut servers = Vec::new();
        for port in [8080, 8081, 8082] {
            servers.push(host.listen_tcp(port).expect("listen"));
        }
        servers.push(server.listen_tcp(8080).expect("listen"));
        let mut graph = CalcGraph::new("node1");
        load(&mut graph, host_endpoints);
        graph
            .on_update(Update::HostInterfaceAddresses(
                [
                    (client_link, vec![IpAddr::V4(HOST_ON_CLIENT_SIDE)]),
                    (server_link, vec![IpAddr::V4(Ipv4Addr::new(10, 77, 2, 1))]),
                ]
                .into(),
            ))
            .expect("addresses");
        graph.on_update(Update::InSync).expect("in sync");
        Lab {
            host,
            client,
            _server: server,
            graph,
            actual: Ruleset::default(),
            policies: Vec::new(),
            _servers: servers,
        }
    }

    /// Replaces the previous case's policies with `yaml` and programs.
    fn policies(&mut self, yaml: &str) {
        for name in self.policies.drain(..) {
            self.graph
                .on_update(Update::GlobalPolicyDeleted { name })
                .expect("delete");
        }
        for resource in twill_api::load_str("case", yaml).expect("yaml") {
            self.policies.push(resource.name().to_string());
            self.graph
                .on_update(Update::from_resource(resource).expect("update"))
                .expect("apply");
        }
        let desired = render(&self.graph, &RenderConfig::default());
        let ops = plan(&desired, &self.actual);
        self.host.nft(&script(&ops)).expect("nft accepts the plan");
        self.actual = desired;
        self.conntrack_flush();
    }

    fn reachable(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.client
            .probe_tcp(IpAddr::V4(addr), port, ALLOWED_WAIT)
            .expect("probe")
            .is_reachable()
    }

    fn denied(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.client
            .probe_tcp(IpAddr::V4(addr), port, DENIED_WAIT)
            .expect("probe")
            .is_denied()
    }

    fn conntrack_flush(&self) {
        // Nothing to flush exits non-zero: only the state afterwards matters.
        let _ = self.host.exec("conntrack", &["-F"]);
    }

    /// The host's conntrack entries for TCP to `port`.
    fn conntrack_entries(&self, port: u16) -> usize {
        let out = self
            .host
            .exec(
                "conntrack",
                &["-L", "-p", "tcp", "--dport", &port.to_string()],
            )
            .expect("conntrack -L");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("tcp"))
            .count()
    }
}

fn load(graph: &mut CalcGraph, yaml: &str) {
    for resource in twill_api::load_str("test", yaml).expect("yaml") {
        graph
            .on_update(Update::from_resource(resource).expect("update"))
            .expect("apply");
    }
}

fn policy(name: &str, order: u32, flags: &str, rules: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
  order: {order}
  selector: role == 'host'
{flags}{rules}---
"
    )
}

const ALLOW_ALL: &str = "  ingress: [{action: Allow}]\n  egress: [{action: Allow}]\n";
const AOF: &str = "  applyOnForward: true\n";

#[test]
fn host_endpoint_policies_police_host_and_forwarded_traffic() {
    twill_integration::require_root!();
    if !twill_integration::require_programs(&["conntrack"], "conntrack") {
        return;
    }
    let mut lab = Lab::new(ALL_INTERFACES_HEP);

    // An all-interfaces HostEndpoint: its policy applies on every
    // non-workload interface, and what it does not allow is dropped.
    lab.policies(&policy(
        "web",
        10,
        "",
        "  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n",
    ));
    assert!(
        lab.reachable(HOST_ON_CLIENT_SIDE, 8080),
        "* HEP allows 8080"
    );
    assert!(
        lab.denied(HOST_ON_CLIENT_SIDE, 8081),
        "* HEP drops the rest"
    );
    assert!(
        lab.reachable(SERVER, 8080),
        "forwarded traffic is not host traffic without applyOnForward"
    );

    // doNotTrack: allowed both ways before conntrack, so no entry; its
    // Deny drops even what normal policy allows.
    let untracked = policy(
        "untracked",
        1,
        "  doNotTrack: true\n  applyOnForward: true\n",
        "  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [8082]}}
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  egress: [{action: Allow, protocol: TCP, source: {ports: [8080]}}]
",
    );
    lab.policies(&format!(
        "{untracked}{}",
        policy("normal", 10, "", ALLOW_ALL)
    ));
    assert!(
        lab.reachable(HOST_ON_CLIENT_SIDE, 8081),
        "normal policy allows"
    );
    assert!(lab.conntrack_entries(8081) > 0, "tracked flows are tracked");
    assert!(lab.reachable(HOST_ON_CLIENT_SIDE, 8080), "untracked allow");
    assert_eq!(
        lab.conntrack_entries(8080),
        0,
        "an untracked flow has no entry"
    );
    assert!(
        lab.denied(HOST_ON_CLIENT_SIDE, 8082),
        "untracked deny drops"
    );

    // preDNAT: the rule sees the address before DNAT rewrites it.
    let pre = policy(
        "pre",
        1,
        "  preDNAT: true\n  applyOnForward: true\n",
        "  ingress: [{action: Deny, destination: {nets: [10.77.9.9/32]}}]\n",
    );
    lab.policies(&policy("normal", 10, AOF, ALLOW_ALL));
    assert!(
        lab.reachable(DNAT_ADDR, 80),
        "DNAT works without preDNAT policy"
    );
    lab.policies(&format!("{pre}{}", policy("normal", 10, AOF, ALLOW_ALL)));
    assert!(lab.denied(DNAT_ADDR, 80), "preDNAT deny drops before DNAT");
    assert!(
        lab.reachable(SERVER, 8080),
        "the DNAT target itself is not denied"
    );

    // applyOnForward: the HostEndpoint's policy also polices traffic the
    // host forwards between the two namespaces.
    let deny_forward = policy(
        "deny-forward",
        1,
        AOF,
        "  ingress: [{action: Deny, protocol: TCP, destination: {nets: [10.77.2.2/32], ports: [8080]}}]\n",
    );
    lab.policies(&format!(
        "{deny_forward}{}",
        policy("normal", 10, AOF, ALLOW_ALL)
    ));
    assert!(
        lab.denied(SERVER, 8080),
        "applyOnForward deny drops forwarded traffic"
    );
    assert!(
        lab.reachable(HOST_ON_CLIENT_SIDE, 8080),
        "other traffic flows"
    );
}

#[test]
fn a_host_endpoint_with_only_expected_ips_polices_the_interface_carrying_them() {
    twill_integration::require_root!();
    let mut lab = Lab::new(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: by-ip, labels: {role: host}}
spec: {node: node1, expectedIPs: [10.77.1.1]}
",
    );
    lab.policies(&policy(
        "web",
        10,
        "",
        "  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n",
    ));
    assert!(
        lab.reachable(HOST_ON_CLIENT_SIDE, 8080),
        "policy allows 8080"
    );
    assert!(
        lab.denied(HOST_ON_CLIENT_SIDE, 8081),
        "the client-side interface is policed"
    );
}
