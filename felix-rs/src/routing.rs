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
//! * **VXLAN**, one device per IP family as in Calico. IPv4 (some enabled
//!   IPv4 pool has `vxlanMode` `Always` or `CrossSubnet`, or
//!   FelixConfiguration `vxlanEnabled: true`): the device
//!   [`VXLAN_INTERFACE`] with local address the node's `bgp.ipv4Address`,
//!   the MAC `vxlanTunnelMACAddr` and the `/32` `ipv4VXLANTunnelAddr` of
//!   this node's `Node` resource. IPv6 (some IPv6 pool encapsulates, and
//!   `vxlanEnabled` is not `false`): [`VXLAN_V6_INTERFACE`] over
//!   `bgp.ipv6Address`, with `vxlanTunnelMACAddrV6` and the `/128`
//!   `ipv6VXLANTunnelAddr`. Both use VNI `vxlanVNI` (default 4096) and UDP
//!   port `vxlanPort` (default 4789); the kernel keeps the families apart.
//!   For each other node with a VTEP of the family (node address, tunnel
//!   address, MAC): a permanent FDB entry `<mac> dst <node ip>` and a
//!   permanent neighbour entry `<tunnel ip> lladdr <mac>` on the device.
//! * **Remote blocks** of VXLAN pools, from each other node's confirmed
//!   block affinities: `<block> via <tunnel ip> dev twill.vxlan[6] onlink
//!   proto 201`; in `CrossSubnet` pools, a node whose address of the
//!   block's family is inside this node's subnet is routed natively
//!   instead: `<block> via <node ip> proto 201`. Blocks of `Never` pools
//!   are the BGP speaker's.
//! * **Local workload peering**: with BGPConfiguration
//!   `localWorkloadPeeringIPV4`/`IPV6` set, the host side of each local
//!   workload interface some BGPPeer's `localWorkloadSelector` (for this
//!   node) matches carries that address as a host prefix ([`LocalPeering`]).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sha2::{Digest, Sha256};
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::felix::FelixConfigurationSpec;
use twill_api::ipam::{BlockAffinitySpec, BlockAffinityState};
use twill_api::ippool::{IPPoolSpec, VXLANMode};
use twill_api::node::NodeSpec;
use twill_kernel::{
    AddressEntry, FdbEntry, MacAddr, Neighbour, NextHop, Route, RouteProto, VXLAN_INTERFACE,
    VxlanSpec,
};
use twill_selector::Selector;

pub use plan::{Actual, VxlanLink, plan};

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
/// The IPv6 VXLAN device (Calico's `vxlan-v6.calico`); the IPv4 one is
/// [`VXLAN_INTERFACE`].
pub const VXLAN_V6_INTERFACE: &str = "twill.vxlan6";

/// An IP family of the overlay. Each has its own VXLAN device, tunnel
/// address and MAC, carried over the underlay of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 pods over the IPv4 underlay.
    V4,
    /// IPv6 pods over the IPv6 underlay.
    V6,
}

impl Family {
    /// Both, in the order they are planned.
    pub const ALL: [Self; 2] = [Self::V4, Self::V6];

    /// The family of an address.
    pub const fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// Its VXLAN device.
    pub const fn interface(self) -> &'static str {
        match self {
            Self::V4 => VXLAN_INTERFACE,
            Self::V6 => VXLAN_V6_INTERFACE,
        }
    }

    /// What encapsulation adds to a packet.
    pub const fn overhead(self) -> u32 {
        match self {
            Self::V4 => VXLAN_OVERHEAD_V4,
            Self::V6 => VXLAN_OVERHEAD_V6,
        }
    }

    /// The `Node` spec fields of its tunnel address and device MAC.
    pub const fn node_fields(self) -> (&'static str, &'static str) {
        match self {
            Self::V4 => ("ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr"),
            Self::V6 => ("ipv6VXLANTunnelAddr", "vxlanTunnelMACAddrV6"),
        }
    }
}

/// The IPAM handle of a node's VXLAN tunnel address (Calico's names).
pub fn tunnel_handle(node: &str, family: Family) -> String {
    match family {
        Family::V4 => format!("vxlan-tunnel-addr-{node}"),
        Family::V6 => format!("vxlan-v6-tunnel-addr-{node}"),
    }
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
    /// The labels selectors see (for BGPPeer `localWorkloadSelector`).
    pub labels: BTreeMap<String, String>,
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
            labels: BTreeMap::new(),
        })
    }

    /// The endpoint of a WorkloadEndpoint, with the labels selectors see;
    /// `None` without an interface.
    pub fn from_workload(wep: &WorkloadEndpoint) -> Option<Self> {
        Self::from_spec(&wep.spec).map(|endpoint| Self {
            labels: wep.selector_labels(),
            ..endpoint
        })
    }
}

/// Peering with local workloads (Calico's BGPPeer `localWorkloadSelector`):
/// the host side of each matching workload's interface carries the
/// peering address, so that the workload can reach the node's BGP speaker
/// there and the speaker can bind its session to it, as Calico's Felix does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPeering {
    /// BGPConfiguration `default`'s `localWorkloadPeeringIPV4`.
    pub v4: Option<Ipv4Addr>,
    /// BGPConfiguration `default`'s `localWorkloadPeeringIPV6`.
    pub v6: Option<Ipv6Addr>,
    /// The `localWorkloadSelector` of each BGPPeer that applies to this
    /// node, by BGPPeer name.
    pub selectors: BTreeMap<String, Selector>,
}

impl LocalPeering {
    /// The peering addresses `endpoint` should find on the host side of its
    /// interface: none unless some selector matches it.
    pub fn addresses(&self, endpoint: &LocalEndpoint) -> Vec<IpNet> {
        if !self.selectors.values().any(|s| s.matches(&endpoint.labels)) {
            return Vec::new();
        }
        let v4 = self.v4.map(|a| IpNet::from(IpAddr::V4(a)));
        let v6 = self.v6.map(|a| IpNet::from(IpAddr::V6(a)));
        v4.into_iter().chain(v6).collect()
    }
}

/// What routing knows of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's IPv4 address and subnet (`bgp.ipv4Address`).
    pub ipv4: Option<Ipv4Net>,
    /// Its IPv4 VXLAN tunnel address.
    pub vxlan_tunnel: Option<Ipv4Addr>,
    /// Its IPv4 VXLAN device MAC.
    pub vxlan_mac: Option<MacAddr>,
    /// The node's IPv6 address and subnet (`bgp.ipv6Address`).
    pub ipv6: Option<Ipv6Net>,
    /// Its IPv6 VXLAN tunnel address.
    pub vxlan_tunnel_v6: Option<Ipv6Addr>,
    /// Its IPv6 VXLAN device MAC.
    pub vxlan_mac_v6: Option<MacAddr>,
}

/// A node's VXLAN tunnel endpoint in one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vtep {
    /// The node's underlay address.
    pub node_ip: IpAddr,
    /// Its tunnel address.
    pub tunnel: IpAddr,
    /// Its device MAC.
    pub mac: MacAddr,
}

/// `addr/len` or a bare address (a host prefix); `None` when neither.
fn parse_net<N, A>(text: Option<&str>) -> Option<N>
where
    N: std::str::FromStr + From<A>,
    A: std::str::FromStr,
{
    let text = text?;
    text.parse::<N>()
        .ok()
        .or_else(|| text.parse::<A>().ok().map(N::from))
}

fn parse<T: std::str::FromStr>(text: Option<&String>) -> Option<T> {
    text.and_then(|t| t.parse().ok())
}

impl NodeInfo {
    /// The facts of a Node spec; unparsable fields count as absent.
    pub fn from_spec(spec: &NodeSpec) -> Self {
        let bgp = spec.bgp.as_ref();
        Self {
            ipv4: parse_net::<Ipv4Net, Ipv4Addr>(bgp.and_then(|b| b.ipv4_address.as_deref())),
            vxlan_tunnel: parse(spec.ipv4_vxlan_tunnel_addr.as_ref()),
            vxlan_mac: parse(spec.vxlan_tunnel_mac_addr.as_ref()),
            ipv6: parse_net::<Ipv6Net, Ipv6Addr>(bgp.and_then(|b| b.ipv6_address.as_deref())),
            vxlan_tunnel_v6: parse(spec.ipv6_vxlan_tunnel_addr.as_ref()),
            vxlan_mac_v6: parse(spec.vxlan_tunnel_mac_addr_v6.as_ref()),
        }
    }

    /// Its underlay address and subnet in `family`.
    pub fn address(&self, family: Family) -> Option<IpNet> {
        match family {
            Family::V4 => self.ipv4.map(IpNet::V4),
            Family::V6 => self.ipv6.map(IpNet::V6),
        }
    }

    /// Its tunnel address in `family`.
    pub fn tunnel(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.vxlan_tunnel.map(IpAddr::V4),
            Family::V6 => self.vxlan_tunnel_v6.map(IpAddr::V6),
        }
    }

    /// Its device MAC in `family`.
    pub const fn mac(&self, family: Family) -> Option<MacAddr> {
        match family {
            Family::V4 => self.vxlan_mac,
            Family::V6 => self.vxlan_mac_v6,
        }
    }

    /// Its VTEP in `family`, when complete.
    pub fn vtep(&self, family: Family) -> Option<Vtep> {
        Some(Vtep {
            node_ip: self.address(family)?.addr(),
            tunnel: self.tunnel(family)?,
            mac: self.mac(family)?,
        })
    }

    /// The same node with `family`'s tunnel address and MAC set.
    pub fn with_vtep(mut self, family: Family, tunnel: IpAddr, mac: MacAddr) -> Self {
        match (family, tunnel) {
            (Family::V4, IpAddr::V4(t)) => {
                self.vxlan_tunnel = Some(t);
                self.vxlan_mac = Some(mac);
            }
            (Family::V6, IpAddr::V6(t)) => {
                self.vxlan_tunnel_v6 = Some(t);
                self.vxlan_mac_v6 = Some(mac);
            }
            _ => {}
        }
        self
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
    /// `vxlanMTUV6` (0 or unset: host MTU minus the IPv6 overhead).
    pub vxlan_mtu_v6: Option<u32>,
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
            vxlan_mtu_v6: None,
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
        let mtu = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v != 0);
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
            vxlan_mtu: mtu(spec.vxlan_mtu),
            vxlan_mtu_v6: mtu(spec.vxlan_mtu_v6),
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
    /// Peering with local workloads.
    pub local_peering: LocalPeering,
}

/// A VXLAN device this node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    /// How to create it.
    pub spec: VxlanSpec,
    /// Its tunnel address (a host prefix on the device).
    pub address: IpAddr,
}

/// Everything the routing core wants in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The VXLAN devices: a family's is here when its VXLAN is in use and
    /// this node's VTEP of that family is known.
    pub vxlan: BTreeMap<Family, VxlanDevice>,
    /// Routes (protocol [`ROUTE_PROTOCOL`]) by destination.
    pub routes: BTreeMap<IpNet, Route>,
    /// Permanent neighbour entries by (interface, address).
    pub neighbours: BTreeMap<(String, IpAddr), Neighbour>,
    /// FDB entries of the VXLAN devices.
    pub fdb: BTreeSet<FdbEntry>,
    /// Addresses on the host side of workload interfaces (the local
    /// workload peering address, see [`LocalPeering`]).
    pub workload_addresses: BTreeSet<AddressEntry>,
}

/// The stable, locally administered MAC Twill gives a node's VXLAN device
/// of `family` (Calico picks a random one; a derived one survives a lost
/// Node write).
pub fn vxlan_mac(node: &str, family: Family) -> MacAddr {
    let seed = match family {
        Family::V4 => format!("twill-vxlan:{node}"),
        Family::V6 => format!("twill-vxlan6:{node}"),
    };
    let digest = Sha256::digest(seed.as_bytes());
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

    /// Whether this node runs the VXLAN device of `family`. IPv4:
    /// FelixConfiguration `vxlanEnabled` when set, else some IPv4 pool
    /// encapsulates. IPv6: some IPv6 pool encapsulates and `vxlanEnabled`
    /// is not `false`.
    pub fn vxlan_wanted(&self, family: Family) -> bool {
        let pools = || {
            self.pools
                .values()
                .any(|p| Family::of(p.cidr.addr()) == family && p.vxlan != VXLANMode::Never)
        };
        match family {
            Family::V4 => self.settings.vxlan_enabled.unwrap_or_else(pools),
            Family::V6 => self.settings.vxlan_enabled != Some(false) && pools(),
        }
    }

    /// The MTU of `family`'s VXLAN device: `vxlanMTU` / `vxlanMTUV6`, else
    /// the host MTU minus the family's overhead.
    pub fn vxlan_mtu(&self, family: Family) -> u32 {
        let configured = match family {
            Family::V4 => self.settings.vxlan_mtu,
            Family::V6 => self.settings.vxlan_mtu_v6,
        };
        configured.unwrap_or_else(|| self.host_mtu.saturating_sub(family.overhead()))
    }

    /// The MTU pods should use: the smallest of the VXLAN devices' in use,
    /// else the host's.
    pub fn pod_mtu(&self) -> u32 {
        Family::ALL
            .into_iter()
            .filter(|f| self.vxlan_wanted(*f))
            .map(|f| self.vxlan_mtu(f))
            .min()
            .unwrap_or(self.host_mtu)
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
            for addr in self.local_peering.addresses(endpoint) {
                out.workload_addresses.insert(AddressEntry {
                    link: endpoint.interface.clone(),
                    addr,
                });
            }
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
        for family in Family::ALL {
            let Some(vtep) = me
                .and_then(|n| n.vtep(family))
                .filter(|_| self.vxlan_wanted(family))
            else {
                continue;
            };
            let device = family.interface();
            let mut spec = VxlanSpec::new(device, self.settings.vni, self.settings.port);
            spec.local = Some(vtep.node_ip);
            spec.mtu = Some(self.vxlan_mtu(family));
            spec.mac = Some(vtep.mac);
            out.vxlan.insert(
                family,
                VxlanDevice {
                    spec,
                    address: vtep.tunnel,
                },
            );
            for (name, node) in &self.nodes {
                let Some(remote) = node.vtep(family).filter(|_| *name != self.node) else {
                    continue;
                };
                out.fdb.insert(FdbEntry {
                    link: device.into(),
                    mac: remote.mac,
                    dst: Some(remote.node_ip),
                });
                out.neighbours.insert(
                    (device.into(), remote.tunnel),
                    Neighbour {
                        link: device.into(),
                        ip: remote.tunnel,
                        mac: remote.mac,
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
            let family = Family::of(block.addr());
            let theirs = node.address(family);
            let same_subnet = match (me.and_then(|n| n.address(family)), theirs) {
                (Some(mine), Some(theirs)) => mine.trunc().contains(&theirs.addr()),
                _ => false,
            };
            let route = match pool.vxlan {
                VXLANMode::Never => None,
                VXLANMode::CrossSubnet if same_subnet => {
                    theirs.map(|n| Route::via(*block, n.addr()))
                }
                VXLANMode::Always | VXLANMode::CrossSubnet => node
                    .vtep(family)
                    .filter(|_| out.vxlan.contains_key(&family))
                    .map(|remote| {
                        let mut route = Route::via(*block, remote.tunnel);
                        route.next_hops = vec![
                            NextHop::via(remote.tunnel)
                                .with_dev(family.interface())
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
