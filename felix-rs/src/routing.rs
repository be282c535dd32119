//! The routing core: which routes, neighbour entries, FDB entries and VXLAN
//! device this node should have, as a pure function of the datastore, and
//! the kernel operations that get it there ([`plan`](mod@plan)).
//!
//! ```text
//!  WorkloadEndpoints (local) ─┐
//!  Nodes (addresses, VTEPs) ──┤
//!  BlockAffinities ───────────┼─► RoutingModel ──► desired() ──► Desired ─┐
//!  IPPools (vxlanMode) ───────┤                                           ├─► plan() ──► Vec<KernelOp>
//!  FelixConfiguration ────────┘                    Actual (listed) ───────┘
//! ```
//!
//! What this node programs (everything recognisably Twill's):
//!
//! * **Local pods**: `<ip>/32 dev twl… scope link proto 201` and, when the
//!   endpoint records its MAC, a permanent neighbour entry `<ip> lladdr
//!   <pod mac> dev twl…` (as Calico does: no ARP towards pods).
//! * **VXLAN** (some enabled pool has `vxlanMode` `Always` or
//!   `CrossSubnet`, or FelixConfiguration `vxlanEnabled: true`): the device
//!   [`VXLAN_INTERFACE`] (VNI `vxlanVNI`, default 4096; UDP `vxlanPort`,
//!   default 4789; local address the node's `bgp.ipv4Address`; the MAC
//!   and the `/32` tunnel address of this node's `Node` resource). For each
//!   other node with a VTEP (node address, `ipv4VXLANTunnelAddr`,
//!   `vxlanTunnelMACAddr`): a permanent FDB entry `<mac> dst <node ip>` and
//!   a permanent neighbour entry `<tunnel ip> lladdr <mac>` on the device.
//! * **Remote blocks** of VXLAN pools, from each other node's confirmed
//!   block affinities: `<block> via <tunnel ip> dev twill.vxlan onlink
//!   proto 201`; in `CrossSubnet` pools, a node whose address is inside
//!   this node's subnet is routed natively instead: `<block> via <node ip>
//!   proto 201`. Blocks of `Never` pools are the BGP speaker's.
//!
//! Route protocol 201 ([`RouteProto::TWILL_LOCAL`]) marks every route
//! felix-rs owns: local pod routes (which twill-cni writes first) and the
//! block routes above. felix-rs never touches 202 (BGP) or 203 (the BGP
//! speaker's blackholes).

pub mod mtu;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_api::felix::FelixConfigurationSpec;
use twill_api::ipam::{BlockAffinitySpec, BlockAffinityState};
use twill_api::ippool::{IPPoolSpec, VXLANMode};
use twill_api::node::NodeSpec;
use twill_kernel::{
    FdbEntry, MacAddr, Neighbour, NextHop, Route, RouteProto, VXLAN_INTERFACE, VxlanSpec,
};

pub use plan::{Actual, plan};

/// The route protocol of every route the routing core owns.
pub const ROUTE_PROTOCOL: RouteProto = RouteProto::TWILL_LOCAL;
/// Calico's default VXLAN network identifier.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// The IANA VXLAN port, Calico's default.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN over IPv4 adds to a packet (outer IPv4 20, UDP 8, VXLAN 8,
/// inner Ethernet 14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Bytes VXLAN over IPv6 adds (outer IPv6 40).
pub const VXLAN_OVERHEAD_V6: u32 = 70;
/// The IPAM handle of a node's VXLAN tunnel address (Calico's name).
pub fn tunnel_handle(node: &str) -> String {
    format!("vxlan-tunnel-addr-{node}")
}

/// A local workload endpoint, as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Host-side interface.
    pub interface: String,
    /// The endpoint's addresses (host prefixes).
    pub ips: Vec<IpAddr>,
    /// The pod's MAC, when the endpoint records one.
    pub mac: Option<MacAddr>,
}

impl LocalEndpoint {
    /// The endpoint of a WorkloadEndpoint spec; `None` without an interface.
    pub fn from_spec(spec: &WorkloadEndpointSpec) -> Option<Self> {
        if spec.interface_name.is_empty() {
            return None;
        }
        let ips = spec
            .ip_networks
            .iter()
            .filter_map(|n| {
                n.parse::<IpNet>()
                    .ok()
                    .filter(|n| n.prefix_len() == n.max_prefix_len())
                    .map(|n| n.addr())
                    .or_else(|| n.parse::<IpAddr>().ok())
            })
            .collect();
        Some(Self {
            interface: spec.interface_name.clone(),
            ips,
            mac: spec.mac.parse().ok(),
        })
    }
}

/// What routing knows of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's IPv4 address and subnet (`bgp.ipv4Address`).
    pub ipv4: Option<Ipv4Net>,
    /// Its VXLAN tunnel address.
    pub vxlan_tunnel: Option<Ipv4Addr>,
    /// Its VXLAN device MAC.
    pub vxlan_mac: Option<MacAddr>,
}

impl NodeInfo {
    /// The facts of a Node spec; unparsable fields count as absent.
    pub fn from_spec(spec: &NodeSpec) -> Self {
        let ipv4 = spec
            .bgp
            .as_ref()
            .and_then(|b| b.ipv4_address.as_deref())
            .and_then(|a| {
                a.parse::<Ipv4Net>()
                    .ok()
                    .or_else(|| a.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
            });
        Self {
            ipv4,
            vxlan_tunnel: spec
                .ipv4_vxlan_tunnel_addr
                .as_deref()
                .and_then(|a| a.parse().ok()),
            vxlan_mac: spec
                .vxlan_tunnel_mac_addr
                .as_deref()
                .and_then(|m| m.parse().ok()),
        }
    }

    /// Its VTEP, when complete.
    pub fn vtep(&self) -> Option<(Ipv4Addr, Ipv4Addr, MacAddr)> {
        Some((self.ipv4?.addr(), self.vxlan_tunnel?, self.vxlan_mac?))
    }
}

/// What routing needs of an IP pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolInfo {
    /// The pool's network.
    pub cidr: IpNet,
    /// Its VXLAN mode.
    pub vxlan: VXLANMode,
}

impl PoolInfo {
    /// The pool of a spec; `None` when its CIDR does not parse.
    pub fn from_spec(spec: &IPPoolSpec) -> Option<Self> {
        Some(Self {
            cidr: spec.network()?,
            vxlan: spec.vxlan_mode.unwrap_or_default(),
        })
    }
}

/// A confirmed block affinity: `node` owns `block`.
pub fn affinity(spec: &BlockAffinitySpec) -> Option<(String, IpNet)> {
    let live = spec.state == BlockAffinityState::Confirmed && !spec.is_deleted();
    let block = spec.cidr.parse::<IpNet>().ok()?.trunc();
    live.then(|| (spec.node.clone(), block))
}

/// FelixConfiguration settings routing uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    /// `vxlanVNI`.
    pub vni: u32,
    /// `vxlanPort`.
    pub port: u16,
    /// `vxlanMTU` (0 or unset: host MTU minus the overhead).
    pub vxlan_mtu: Option<u32>,
    /// `vxlanEnabled`: `None` decides from the pools.
    pub vxlan_enabled: Option<bool>,
    /// `mtuIfacePattern`.
    pub mtu_iface_pattern: Option<String>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            vni: DEFAULT_VXLAN_VNI,
            port: DEFAULT_VXLAN_PORT,
            vxlan_mtu: None,
            vxlan_enabled: None,
            mtu_iface_pattern: None,
        }
    }
}

impl RoutingSettings {
    /// The settings of a FelixConfiguration; out-of-range numbers fall back
    /// to the defaults (validation refuses them earlier).
    pub fn from_felix_configuration(spec: &FelixConfigurationSpec) -> Self {
        let defaults = Self::default();
        Self {
            vni: spec
                .vxlan_vni
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| (1..(1 << 24)).contains(v))
                .unwrap_or(defaults.vni),
            port: spec
                .vxlan_port
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| *v != 0)
                .unwrap_or(defaults.port),
            vxlan_mtu: spec
                .vxlan_mtu
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v != 0),
            vxlan_enabled: spec.vxlan_enabled,
            mtu_iface_pattern: spec.mtu_iface_pattern.clone(),
        }
    }
}

/// The inputs of the routing core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingModel {
    /// This node's name.
    pub node: String,
    /// Local workload endpoints by `(namespace, name)`.
    pub endpoints: BTreeMap<(String, String), LocalEndpoint>,
    /// Every node by name (this one included).
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Confirmed affinities: affinity name → (node, block).
    pub affinities: BTreeMap<String, (String, IpNet)>,
    /// IP pools by name.
    pub pools: BTreeMap<String, PoolInfo>,
    /// FelixConfiguration settings.
    pub settings: RoutingSettings,
    /// The detected host MTU.
    pub host_mtu: u32,
}

/// The VXLAN device this node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    /// How to create it.
    pub spec: VxlanSpec,
    /// Its `/32` tunnel address.
    pub address: Ipv4Addr,
}

/// Everything the routing core wants in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The VXLAN device, when VXLAN is in use and this node's VTEP is known.
    pub vxlan: Option<VxlanDevice>,
    /// Routes (protocol [`ROUTE_PROTOCOL`]) by destination.
    pub routes: BTreeMap<IpNet, Route>,
    /// Permanent neighbour entries by (interface, address).
    pub neighbours: BTreeMap<(String, IpAddr), Neighbour>,
    /// FDB entries of the VXLAN device.
    pub fdb: BTreeSet<FdbEntry>,
}

/// The stable, locally administered MAC Twill gives a node's VXLAN device
/// (Calico picks a random one; a derived one survives a lost Node write).
pub fn vxlan_mac(node: &str) -> MacAddr {
    let digest = Sha256::digest(format!("twill-vxlan:{node}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    MacAddr(mac)
}

impl RoutingModel {
    /// A model for node `node` with nothing known yet.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            host_mtu: mtu::FALLBACK_MTU,
            ..Self::default()
        }
    }

    /// Whether this node runs a VXLAN device: FelixConfiguration
    /// `vxlanEnabled` when set, else some IPv4 pool encapsulates.
    pub fn vxlan_wanted(&self) -> bool {
        self.settings.vxlan_enabled.unwrap_or_else(|| {
            self.pools
                .values()
                .any(|p| p.cidr.addr().is_ipv4() && p.vxlan != VXLANMode::Never)
        })
    }

    /// The VXLAN device's MTU: `vxlanMTU`, else the host MTU minus the
    /// IPv4 overhead.
    pub fn vxlan_mtu(&self) -> u32 {
        self.settings
            .vxlan_mtu
            .unwrap_or_else(|| self.host_mtu.saturating_sub(VXLAN_OVERHEAD_V4))
    }

    /// The MTU pods should use: the VXLAN device's when VXLAN is in use,
    /// else the host's.
    pub fn pod_mtu(&self) -> u32 {
        if self.vxlan_wanted() {
            self.vxlan_mtu()
        } else {
            self.host_mtu
        }
    }

    fn pool_of(&self, block: &IpNet) -> Option<&PoolInfo> {
        // The most specific pool containing the block.
        self.pools
            .values()
            .filter(|p| p.cidr.contains(block))
            .max_by_key(|p| p.cidr.prefix_len())
    }

    /// The desired kernel state.
    pub fn desired(&self) -> Desired {
        let mut out = Desired::default();
        for endpoint in self.endpoints.values() {
            for ip in &endpoint.ips {
                let route = Route::to_device(IpNet::from(*ip), &endpoint.interface)
                    .protocol(ROUTE_PROTOCOL);
                out.routes.insert(route.destination, route);
                if let Some(mac) = endpoint.mac {
                    out.neighbours.insert(
                        (endpoint.interface.clone(), *ip),
                        Neighbour {
                            link: endpoint.interface.clone(),
                            ip: *ip,
                            mac,
                        },
                    );
                }
            }
        }
        let me = self.nodes.get(&self.node);
        let my_subnet = me.and_then(|n| n.ipv4).map(|n| n.trunc());
        let vxlan_up = self.vxlan_wanted()
            && me
                .and_then(NodeInfo::vtep)
                .is_some_and(|(local, address, mac)| {
                    let mut spec =
                        VxlanSpec::new(VXLAN_INTERFACE, self.settings.vni, self.settings.port);
                    spec.local = Some(IpAddr::V4(local));
                    spec.mtu = Some(self.vxlan_mtu());
                    spec.mac = Some(mac);
                    out.vxlan = Some(VxlanDevice { spec, address });
                    true
                });
        if vxlan_up {
            for (name, node) in &self.nodes {
                let Some((node_ip, tunnel, mac)) = node.vtep().filter(|_| *name != self.node)
                else {
                    continue;
                };
                out.fdb.insert(FdbEntry {
                    link: VXLAN_INTERFACE.into(),
                    mac,
                    dst: Some(IpAddr::V4(node_ip)),
                });
                out.neighbours.insert(
                    (VXLAN_INTERFACE.into(), IpAddr::V4(tunnel)),
                    Neighbour {
                        link: VXLAN_INTERFACE.into(),
                        ip: IpAddr::V4(tunnel),
                        mac,
                    },
                );
            }
        }
        for (owner, block) in self.affinities.values() {
            if *owner == self.node || out.routes.contains_key(block) {
                continue;
            }
            let (Some(pool), Some(node)) = (self.pool_of(block), self.nodes.get(owner)) else {
                continue;
            };
            let same_subnet = match (my_subnet, node.ipv4) {
                (Some(mine), Some(theirs)) => mine.contains(&theirs.addr()),
                _ => false,
            };
            let route = match pool.vxlan {
                VXLANMode::Never => None,
                VXLANMode::CrossSubnet if same_subnet => {
                    node.ipv4.map(|n| Route::via(*block, IpAddr::V4(n.addr())))
                }
                VXLANMode::Always | VXLANMode::CrossSubnet => node
                    .vxlan_tunnel
                    .filter(|_| vxlan_up && node.vtep().is_some())
                    .map(|tunnel| {
                        let mut route = Route::via(*block, IpAddr::V4(tunnel));
                        route.next_hops = vec![
                            NextHop::via(IpAddr::V4(tunnel))
                                .with_dev(VXLAN_INTERFACE)
                                .onlink(),
                        ];
                        route
                    }),
            };
            if let Some(route) = route {
                out.routes
                    .insert(route.destination, route.protocol(ROUTE_PROTOCOL));
            }
        }
        out
    }
}
