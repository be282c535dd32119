//! The topology builder: a [`Fabric`] of [`Node`]s that host [`Pod`]s.
//!
//! See the crate documentation for the picture. In short: the fabric
//! namespace holds one bridge per subnet; a node is a namespace with a veth
//! on one of those bridges and forwarding on; a pod is a namespace with a
//! veth to its node, addressed and routed the way Calico wires a workload
//! (a `/32` on the pod side, `default via 169.254.1.1` answered by a fixed
//! host-side MAC `ee:ee:ee:ee:ee:ee`, and a `/32` device route on the node).
//! Nodes learn every other node's pods through static routes that the
//! harness installs; the product's BGP does this for real later. With more
//! than one subnet, a router namespace sits on every subnet's bridge and
//! forwards between them.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::names;
use crate::netns::{TestNetns, fail_in_drop};

/// The fabric subnet of [`Fabric::new`] (TEST-NET-2, RFC 5737). It only
/// exists inside the fabric's namespaces.
pub const DEFAULT_SUBNET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24);

/// Two subnets for [`Fabric::with_subnets`] (TEST-NET-2 and TEST-NET-3).
pub const TWO_SUBNETS: [Ipv4Net; 2] = [
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
];

/// The gateway address every pod routes through (as Calico does); the
/// node's side of the pod veth answers for it with [`HOST_SIDE_MAC`].
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The MAC of the node's side of every pod veth (as Calico does).
pub const HOST_SIDE_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// Host number (within its subnet) of the first node; the router, when
/// there is one, takes host 1.
const FIRST_NODE_HOST: u32 = 10;

/// A test network: the fabric namespace with its bridges, an optional
/// router, and the nodes and pods added to it. Dropping it removes every
/// namespace it made (pods, nodes, router, fabric) and checks that none is
/// left; [`Node`] and [`Pod`] handles are views that stop working then.
#[derive(Debug)]
pub struct Fabric {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    netns: TestNetns,
    subnets: Vec<SubnetInfo>,
    router: Option<TestNetns>,
    topology: Mutex<Topology>,
}

#[derive(Debug)]
struct SubnetInfo {
    net: Ipv4Net,
    bridge: String,
    /// The router's address on this subnet (only with several subnets).
    router_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Default)]
struct Topology {
    nodes: Vec<Arc<NodeInner>>,
    pods: Vec<Arc<PodInner>>,
    /// Next free host number per subnet.
    next_host: Vec<u32>,
    /// Every link name the fabric created, for the drop check.
    links: BTreeSet<String>,
}

#[derive(Debug)]
struct NodeInner {
    name: String,
    netns: TestNetns,
    subnet: usize,
    ip: Ipv4Addr,
    link: String,
    fabric_link: String,
}

#[derive(Debug)]
struct PodInner {
    name: String,
    node: String,
    netns: TestNetns,
    ip: Ipv4Addr,
    link: String,
    host_link: String,
}

impl Fabric {
    /// A fabric with one subnet, [`DEFAULT_SUBNET`], and no router.
    pub fn new() -> Result<Self> {
        Self::with_subnets(&[DEFAULT_SUBNET])
    }

    /// A fabric with one bridge per subnet. With more than one subnet a
    /// router namespace joins every bridge, takes the first host address
    /// of each subnet and forwards between them; nodes get a default route
    /// through it, so nodes in different subnets reach each other only
    /// through a routed hop (what VXLAN CrossSubnet needs).
    pub fn with_subnets(subnets: &[Ipv4Net]) -> Result<Self> {
        if subnets.is_empty() {
            return Err(Error::Topology("a fabric needs at least one subnet".into()));
        }
        for (i, a) in subnets.iter().enumerate() {
            if a.prefix_len() > 28 {
                return Err(Error::Topology(format!(
                    "subnet {a} is too small for nodes"
                )));
            }
            if subnets[..i].iter().any(|b| a.contains(b) || b.contains(a)) {
                return Err(Error::Topology(format!(
                    "subnet {a} overlaps another subnet"
                )));
            }
        }
        let netns = TestNetns::new("fabric")?;
        let routed = subnets.len() > 1;
        let router = if routed {
            Some(TestNetns::new("router")?)
        } else {
            None
        };
        let mut links = BTreeSet::new();
        let mut infos = Vec::with_capacity(subnets.len());
        for net in subnets {
            let net = net.trunc();
            let bridge = names::link();
            netns.ip(&["link", "add", &bridge, "type", "bridge"])?;
            netns.ip(&["link", "set", &bridge, "up"])?;
            links.insert(bridge.clone());
            let mut router_ip = None;
            if let Some(router) = &router {
                let ip = host(net, 1)?;
                let (inside, outside) = (names::link(), names::link());
                veth(router, &inside, &netns, &outside)?;
                netns.ip(&["link", "set", &outside, "master", &bridge, "up"])?;
                router.ip(&["addr", "add", &cidr(ip, net.prefix_len()), "dev", &inside])?;
                router.ip(&["link", "set", &inside, "up"])?;
                links.extend([inside, outside]);
                router_ip = Some(ip);
            }
            infos.push(SubnetInfo {
                net,
                bridge,
                router_ip,
            });
        }
        if let Some(router) = &router {
            router.sysctl("net/ipv4/ip_forward", "1")?;
        }
        let topology = Topology {
            next_host: vec![FIRST_NODE_HOST; infos.len()],
            links,
            ..Topology::default()
        };
        Ok(Self {
            shared: Arc::new(Shared {
                netns,
                subnets: infos,
                router,
                topology: Mutex::new(topology),
            }),
        })
    }

    /// The fabric namespace (it holds the bridges).
    pub fn netns(&self) -> &TestNetns {
        &self.shared.netns
    }

    /// The router namespace, when the fabric has several subnets.
    pub fn router(&self) -> Option<&TestNetns> {
        self.shared.router.as_ref()
    }

    /// The fabric's subnets, in the order given.
    pub fn subnets(&self) -> Vec<Ipv4Net> {
        self.shared.subnets.iter().map(|s| s.net).collect()
    }

    /// The bridge (in the fabric namespace) of subnet `index`.
    pub fn bridge(&self, index: usize) -> Option<&str> {
        self.shared.subnets.get(index).map(|s| s.bridge.as_str())
    }

    /// Adds a node on the first subnet.
    pub fn add_node(&self, name: &str) -> Result<Node> {
        self.add_node_in_subnet(name, 0)
    }

    /// Adds a node on subnet `subnet` (an index into the subnets given to
    /// [`with_subnets`](Self::with_subnets)). It gets the next free host
    /// address from host 10 on, forwarding on, routes to every pod already
    /// on the fabric, and a default route through the router if there is
    /// one.
    pub fn add_node_in_subnet(&self, name: &str, subnet: usize) -> Result<Node> {
        let shared = &self.shared;
        let info = shared.subnets.get(subnet).ok_or_else(|| {
            Error::Topology(format!("node {name}: no subnet with index {subnet}"))
        })?;
        let mut topology = shared.lock();
        if topology.nodes.iter().any(|n| n.name == name) {
            return Err(Error::Topology(format!("node {name} already exists")));
        }
        let ip = host(info.net, topology.next_host[subnet])?;
        let netns = TestNetns::new(&format!("node-{name}"))?;
        let (link, fabric_link) = (names::link(), names::link());
        veth(&netns, &link, &shared.netns, &fabric_link)?;
        topology.links.extend([link.clone(), fabric_link.clone()]);
        shared
            .netns
            .ip(&["link", "set", &fabric_link, "master", &info.bridge, "up"])?;
        netns.ip(&[
            "addr",
            "add",
            &cidr(ip, info.net.prefix_len()),
            "dev",
            &link,
        ])?;
        netns.ip(&["link", "set", &link, "up"])?;
        netns.sysctl("net/ipv4/ip_forward", "1")?;
        if let Some(router_ip) = info.router_ip {
            netns.ip(&["route", "add", "default", "via", &router_ip.to_string()])?;
        }
        let node = Arc::new(NodeInner {
            name: name.to_owned(),
            netns,
            subnet,
            ip,
            link,
            fabric_link,
        });
        for pod in &topology.pods {
            let owner = topology.node(&pod.node)?;
            let via = shared.gateway(&node, owner)?;
            node.netns
                .ip(&["route", "add", &cidr(pod.ip, 32), "via", &via.to_string()])?;
        }
        topology.next_host[subnet] += 1;
        topology.nodes.push(node.clone());
        Ok(Node {
            inner: node,
            shared: shared.clone(),
        })
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let problems = self.shared.teardown();
        if !problems.is_empty() {
            fail_in_drop(&format!("fabric teardown: {}", problems.join("; ")));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Topology> {
        // A panic while holding the lock leaves the topology as it was
        // built so far; teardown must still see it.
        self.topology.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next hop from node `from` to node `to`.
    fn gateway(&self, from: &NodeInner, to: &NodeInner) -> Result<Ipv4Addr> {
        if from.subnet == to.subnet {
            return Ok(to.ip);
        }
        self.subnets[from.subnet].router_ip.ok_or_else(|| {
            Error::Topology(format!("no router between {} and {}", from.name, to.name))
        })
    }

    /// Removes pods, nodes, router and fabric (in that order) and returns
    /// what was left behind.
    fn teardown(&self) -> Vec<String> {
        let topology = self.lock();
        let namespaces = topology
            .pods
            .iter()
            .map(|p| &p.netns)
            .chain(topology.nodes.iter().map(|n| &n.netns))
            .chain(self.router.as_ref())
            .chain(std::iter::once(&self.netns));
        let mut problems: Vec<String> = namespaces
            .filter_map(|ns| ns.remove().err())
            .map(|err| err.to_string())
            .collect();
        // Every link lived inside a namespace; one in the host namespace
        // means a move went wrong.
        let host_links = crate::leak::host_links();
        problems.extend(
            topology
                .links
                .iter()
                .filter(|link| host_links.contains(*link))
                .map(|link| format!("link {link} is in the host namespace")),
        );
        problems
    }
}

impl Topology {
    fn node(&self, name: &str) -> Result<&NodeInner> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| &**n)
            .ok_or_else(|| Error::Topology(format!("node {name} is not on the fabric")))
    }
}

/// A node: a namespace on the fabric with forwarding on. Dereferences to
/// its [`TestNetns`] for commands and probes.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
    shared: Arc<Shared>,
}

impl Node {
    /// The node's name, as given to [`Fabric::add_node`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's address on its fabric subnet.
    pub fn ip(&self) -> Ipv4Addr {
        self.inner.ip
    }

    /// The index of the node's subnet.
    pub fn subnet(&self) -> usize {
        self.inner.subnet
    }

    /// The node's fabric-facing link (inside the node namespace).
    pub fn link(&self) -> &str {
        &self.inner.link
    }

    /// The peer of [`link`](Self::link), a port of the bridge in the fabric
    /// namespace.
    pub fn fabric_link(&self) -> &str {
        &self.inner.fabric_link
    }

    /// The node's namespace.
    pub fn netns(&self) -> &TestNetns {
        &self.inner.netns
    }

    /// Adds a pod with address `ip` on this node, and routes to it on every
    /// other node (and the router).
    pub fn add_pod(&self, name: &str, ip: Ipv4Addr) -> Result<Pod> {
        let shared = &self.shared;
        let mut topology = shared.lock();
        if let Some(other) = topology.pods.iter().find(|p| p.ip == ip || p.name == name) {
            return Err(Error::Topology(format!(
                "pod {name} ({ip}) clashes with pod {} ({}) on node {}",
                other.name, other.ip, other.node
            )));
        }
        let netns = TestNetns::new(&format!("pod-{name}"))?;
        let (link, host_link) = (names::link(), names::workload_link());
        veth(&netns, &link, &self.inner.netns, &host_link)?;
        topology.links.extend([link.clone(), host_link.clone()]);

        let node = &self.inner.netns;
        node.ip(&["link", "set", &host_link, "address", HOST_SIDE_MAC])?;
        node.ip(&["link", "set", &host_link, "up"])?;
        node.ip(&[
            "route",
            "add",
            &cidr(ip, 32),
            "dev",
            &host_link,
            "scope",
            "link",
        ])?;

        let gateway = POD_GATEWAY.to_string();
        netns.ip(&["addr", "add", &cidr(ip, 32), "dev", &link])?;
        netns.ip(&["link", "set", &link, "up"])?;
        netns.ip(&["route", "add", &gateway, "dev", &link, "scope", "link"])?;
        netns.ip(&["route", "add", "default", "via", &gateway, "dev", &link])?;
        netns.ip(&[
            "neigh",
            "replace",
            &gateway,
            "lladdr",
            HOST_SIDE_MAC,
            "dev",
            &link,
            "nud",
            "permanent",
        ])?;

        for other in topology.nodes.iter().filter(|n| n.name != self.inner.name) {
            let via = shared.gateway(other, &self.inner)?;
            other
                .netns
                .ip(&["route", "add", &cidr(ip, 32), "via", &via.to_string()])?;
        }
        if let Some(router) = &shared.router {
            let via = self.inner.ip.to_string();
            router.ip(&["route", "add", &cidr(ip, 32), "via", &via])?;
        }
        let pod = Arc::new(PodInner {
            name: name.to_owned(),
            node: self.inner.name.clone(),
            netns,
            ip,
            link,
            host_link,
        });
        topology.pods.push(pod.clone());
        Ok(Pod { inner: pod })
    }
}

impl Deref for Node {
    type Target = TestNetns;

    fn deref(&self) -> &TestNetns {
        &self.inner.netns
    }
}

/// A pod: a namespace with one veth to its node. Dereferences to its
/// [`TestNetns`] for commands, probes and listeners.
#[derive(Debug, Clone)]
pub struct Pod {
    inner: Arc<PodInner>,
}

impl Pod {
    /// The pod's name, as given to [`Node::add_pod`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pod's address.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.inner.ip)
    }

    /// The name of the node it runs on.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The pod's link (inside the pod namespace).
    pub fn link(&self) -> &str {
        &self.inner.link
    }

    /// The node's side of the pod veth (inside the node namespace), where
    /// the product's per-endpoint policy attaches.
    pub fn host_link(&self) -> &str {
        &self.inner.host_link
    }

    /// The pod's namespace.
    pub fn netns(&self) -> &TestNetns {
        &self.inner.netns
    }
}

impl Deref for Pod {
    type Target = TestNetns;

    fn deref(&self) -> &TestNetns {
        &self.inner.netns
    }
}

/// Creates a veth pair with one end in each namespace; nothing touches the
/// host namespace.
fn veth(a: &TestNetns, a_link: &str, b: &TestNetns, b_link: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_link,
        "type",
        "veth",
        "peer",
        "name",
        b_link,
        "netns",
        b.name(),
    ])?;
    Ok(())
}

/// Host number `n` of `net`.
fn host(net: Ipv4Net, n: u32) -> Result<Ipv4Addr> {
    let addr = u32::from(net.network())
        .checked_add(n)
        .map(Ipv4Addr::from)
        .filter(|a| net.contains(a) && *a != net.broadcast())
        .ok_or_else(|| Error::Topology(format!("subnet {net} has no host number {n}")))?;
    Ok(addr)
}

fn cidr(ip: Ipv4Addr, prefix: u8) -> String {
    format!("{ip}/{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_numbers_stay_inside_the_subnet() {
        let net: Ipv4Net = "198.51.100.0/24".parse().expect("valid cidr");
        let cases = [
            (1, Some("198.51.100.1")),
            (10, Some("198.51.100.10")),
            (254, Some("198.51.100.254")),
            (255, None), // broadcast
            (256, None),
        ];
        for (n, want) in cases {
            let got = host(net, n).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "host {n}");
        }
    }

    #[test]
    fn preset_subnets_are_documentation_ranges() {
        assert_eq!(DEFAULT_SUBNET.to_string(), "198.51.100.0/24");
        assert_eq!(TWO_SUBNETS[0].to_string(), "198.51.100.0/24");
        assert_eq!(TWO_SUBNETS[1].to_string(), "203.0.113.0/24");
    }
}
