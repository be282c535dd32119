//! What this node's BGP speaker should do, computed from the datastore —
//! pure: no I/O, no clock, so every rule below is unit-tested.
//!
//! [`desired`] takes a [`Snapshot`] of the watched kinds (BGPConfiguration,
//! BGPPeer, BGPFilter, Node, IPPool, IPAMBlock, BlockAffinity, and this
//! node's WorkloadEndpoints), this node's
//! name and a [`Secrets`] source, and returns a [`Desired`] configuration plus
//! warnings for the resources it had to skip. The semantics are Calico's
//! (confd's `bgp_processor.go` and the BIRD templates):
//!
//! # Identity
//!
//! * **AS number**: the Node's `spec.bgp.asNumber`, else the `default`
//!   BGPConfiguration's `asNumber`, else 64512.
//! * **Addresses**: `spec.bgp.ipv4Address` and `spec.bgp.ipv6Address` (the
//!   masks dropped); a node needs at least one to run the speaker
//!   ([`ConfigError::NoNodeAddress`]).
//! * **Router ID**: the node's IPv4 address. An IPv6-only node has none, so
//!   its identifier is derived from its name ([`hashed_router_id`]: stable
//!   across restarts, never 0.0.0.0), as Calico does with
//!   `CALICO_ROUTER_ID=hash`.
//! * **Listen port**: `listenPort` of the node's own BGPConfiguration
//!   (`node.<name>`), else of `default`, else 179.
//! * **Route reflector**: a Node with `spec.bgp.routeReflectorClusterID` is a
//!   route reflector with that cluster ID.
//!
//! # Peers
//!
//! * **One family per session.** As with Calico's BIRD and BIRD6, an IPv4
//!   peering carries this node's IPv4 routes and an IPv6 peering its IPv6
//!   routes; a node with both addresses peers twice with a dual-stack peer.
//!   A session's source address (and so its next hop) is the node's address
//!   of the peer's family; a node without one has no peerings of that family.
//! * **Node-to-node mesh** (`nodeToNodeMeshEnabled`, default true): every
//!   other Node that is not a route reflector, over each family both nodes
//!   have an address of, unless this node is itself a route reflector. The peer's AS is its own (or the global
//!   default), its port is its listen port, the password is
//!   `nodeMeshPassword`, the restart time `nodeMeshMaxRestartTime`. Of each
//!   pair, the node with the (textually) higher address is passive.
//!   A peer selected by `peerSelector` is likewise peered over each family
//!   both nodes have; a `peerIP` names one address, so one family.
//! * **BGPPeer** resources apply to this node when they have neither `node`
//!   nor `nodeSelector` (global), when `node` names it, or when
//!   `nodeSelector` matches its labels (node-specific). The remote side is
//!   `peerIP` (`IP` or `IP:port`, with `asNumber`) or every Node matched by
//!   `peerSelector` (each with its own AS and listen port); this node itself
//!   is never its own peer. Global peerings are taken first; a node-specific
//!   one to the same address and port is then skipped, and the first of two
//!   peerings to one address and port wins.
//! * **Reverse peerings** (`reversePeering: Auto`, the default): when this
//!   node is the *remote* side of a BGPPeer (matched by its `peerSelector`,
//!   or its address and AS equal `peerIP`/`asNumber`), it peers back with the
//!   nodes on the local side (`node`, `nodeSelector`, or every node).
//! * Per peering: `keepaliveTime` (hold time is three times it; without it
//!   Twill uses BIRD's 240 s hold and 80 s keepalive), `maxRestartTime`,
//!   `sourceAddress` (`UseNodeIP`, the default, binds the node's address;
//!   `None` lets the kernel choose), `nextHopMode`/`keepOriginalNextHop`,
//!   `localASNumber`, `ttlSecurity` (GTSM, RFC 5082: the session's packets
//!   leave with TTL 255 and arrive with at least `256 - ttlSecurity`, else
//!   they are dropped; 0 is off), `filters`.
//! * **Local workloads** (`localWorkloadSelector`, Calico ≥ 3.29): a global
//!   or node-specific BGPPeer with a selector peers this node with each of
//!   its own WorkloadEndpoints whose labels match (with Calico's
//!   `projectcalico.org/namespace`, `…/orchestrator` and `…/serviceaccount`
//!   labels added), at the endpoint's first IPv4 and first IPv6 address,
//!   in the BGPPeer's `asNumber` (required), port 179, named
//!   `Local_Workload_<ip>`. The session's source address is the
//!   `default` BGPConfiguration's `localWorkloadPeeringIPV4`/`IPV6` — the
//!   address the workload peers with, which must be on the host side of
//!   the workload's interface — else the node's address as `sourceAddress`
//!   says. No reverse peering is made for such a BGPPeer.
//! * **Route-reflector clients**: when this node is a route reflector, an
//!   iBGP peer (same AS) that is not a reflector of the same cluster is a
//!   client.
//! * **Passwords**: `password.secretKeyRef` names a Kubernetes Secret. Twill
//!   reads it from the directory given by `--secrets-dir`, as the file
//!   `<secret name>/<key>` (the layout of a Secret mounted as a volume);
//!   trailing newlines are dropped. A missing secret skips the peering with a
//!   warning (unless the reference is `optional`, then no password is used).
//! * **Filters**: the BGPFilters a peering names, in order, become its
//!   import and export [`Filter`]s (`importV4`/`importV6`,
//!   `exportV4`/`exportV6`). A missing filter skips the peering.
//!
//! A BGPPeer that cannot be used (bad `peerIP`, missing AS number, missing
//! secret or filter) is skipped and reported in [`Computed::warnings`]; it
//! never stops the daemon.
//!
//! # Advertised prefixes
//!
//! * Every block with a **confirmed**, not deleted BlockAffinity to this
//!   node (IPv4 /26 and IPv6 /122 by default, whatever the pool's
//!   `blockSize`), as the aggregate; each such block (other than a /32 or /128) also
//!   gets a local **blackhole** route, so that unallocated addresses in it are
//!   dropped here rather than bounced back to the sender.
//! * **Borrowed addresses**: each address this node holds (allocation
//!   attribute `node`) in a block affine to another node, as a /32 (/128).
//! * Nothing from a pool that has `disableBGPExport` or uses VXLAN
//!   (`vxlanMode` `Always` or `CrossSubnet`), nor from a block that lies in
//!   no pool. A `disabled` pool is still advertised, as in Calico: disabling
//!   only stops new allocations, and the pods already in it (during a pool
//!   migration) must stay reachable. (Calico's current confd still exports VXLAN pools' blocks
//!   and only keeps BIRD from programming them into the kernel; Twill's
//!   speaker would program whatever it learns, which would fight Felix's
//!   VXLAN routes, so it does not advertise them at all.)
//! * `serviceClusterIPs`, `serviceExternalIPs` and `serviceLoadBalancerIPs`
//!   of the `default` BGPConfiguration, as ranges.
//! * Communities from `prefixAdvertisements`: every advertised prefix inside
//!   a listed CIDR gets its communities (values, or names from `communities`).

mod advertise;
mod filter;
mod peers;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use twill_api::bgp::{BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec, DEFAULT_AS_NUMBER};
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_api::ipam::{BlockAffinitySpec, IPAMBlockSpec};
use twill_api::ippool::IPPoolSpec;
use twill_api::node::NodeSpec;
use twill_api::{Object, Spec};

pub use filter::{Filter, FilterAction, FilterRule, MatchOperator, PeerTypeMatch};
pub use secrets::{DirSecrets, MapSecrets, Secrets};

/// BGP's well-known port, Calico's default `listenPort`.
pub const DEFAULT_LISTEN_PORT: u16 = 179;
/// BIRD's default hold time, used when a peering sets no `keepaliveTime`.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(240);

/// Every object of the watched kinds, by name: the input of [`desired`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// BGPConfigurations (`default`, `node.<name>`).
    pub bgp_configurations: BTreeMap<String, Object<BGPConfigurationSpec>>,
    /// BGPPeers.
    pub bgp_peers: BTreeMap<String, Object<BGPPeerSpec>>,
    /// BGPFilters.
    pub bgp_filters: BTreeMap<String, Object<BGPFilterSpec>>,
    /// Nodes.
    pub nodes: BTreeMap<String, Object<NodeSpec>>,
    /// IPPools.
    pub ip_pools: BTreeMap<String, Object<IPPoolSpec>>,
    /// IPAMBlocks.
    pub ipam_blocks: BTreeMap<String, Object<IPAMBlockSpec>>,
    /// BlockAffinities.
    pub block_affinities: BTreeMap<String, Object<BlockAffinitySpec>>,
    /// WorkloadEndpoints by `namespace/name`; only this node's are used
    /// (the daemon keeps no others).
    pub workload_endpoints: BTreeMap<String, Object<WorkloadEndpointSpec>>,
}

/// The datastore kinds a [`Snapshot`] holds (`Spec::STORE_KIND`).
pub const WATCHED_KINDS: [&str; 8] = [
    BGPConfigurationSpec::STORE_KIND,
    BGPPeerSpec::STORE_KIND,
    BGPFilterSpec::STORE_KIND,
    NodeSpec::STORE_KIND,
    IPPoolSpec::STORE_KIND,
    IPAMBlockSpec::STORE_KIND,
    BlockAffinitySpec::STORE_KIND,
    WorkloadEndpointSpec::STORE_KIND,
];

/// Which rule made a peering, as `calicoctl node status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerType {
    /// The node-to-node mesh.
    Mesh,
    /// A BGPPeer without `node`/`nodeSelector`.
    Global,
    /// A BGPPeer for this node (or a reverse peering).
    Node,
    /// A workload on this node, chosen by a BGPPeer's `localWorkloadSelector`.
    LocalWorkload,
}

impl PeerType {
    /// Calico's BIRD protocol-name prefix: `Mesh`, `Global`, `Node`,
    /// `Local_Workload`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::Global => "Global",
            Self::Node => "Node",
            Self::LocalWorkload => "Local_Workload",
        }
    }

    /// The PEER TYPE column of `calicoctl node status`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mesh => "node-to-node mesh",
            Self::Global => "global",
            Self::Node => "node specific",
            Self::LocalWorkload => "local workload",
        }
    }

    /// The type whose [`PeerType::prefix`] starts `name` (`Mesh_10_0_0_1`).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Mesh, Self::Global, Self::Node, Self::LocalWorkload]
            .into_iter()
            .find(|t| {
                name.strip_prefix(t.prefix())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
            })
    }
}

/// How the next hop of routes sent to a peer is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NextHop {
    /// eBGP: this node; iBGP: unchanged.
    #[default]
    Auto,
    /// Always this node.
    SelfAddress,
    /// Always unchanged.
    Keep,
}

/// One BGP session this node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Calico's protocol name: `Mesh_10_0_0_2`, `Global_192_0_2_1_port_1179`.
    pub name: String,
    /// Which rule made it.
    pub peer_type: PeerType,
    /// The BGPPeer it comes from (`None` for the mesh).
    pub resource: Option<String>,
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's TCP port.
    pub port: u16,
    /// The peer's AS number.
    pub asn: u32,
    /// The AS this node presents to the peer, when not its own.
    pub local_asn: Option<u32>,
    /// The source address of the session (`None`: the kernel chooses).
    pub local_address: Option<IpAddr>,
    /// Wait for the peer to connect (Calico: the higher address of a mesh pair).
    pub passive: bool,
    /// This node reflects routes to the peer (it is a route-reflector client).
    pub route_reflector_client: bool,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Hold time.
    pub hold: Duration,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// Graceful-restart time announced to the peer.
    pub max_restart_time: Option<Duration>,
    /// Next-hop handling for routes sent to the peer.
    pub next_hop: NextHop,
    /// GTSM: the peer is at most this many hops away (0: off).
    pub ttl_security: Option<u8>,
    /// Routes accepted from the peer.
    pub import: Filter,
    /// Routes sent to the peer.
    pub export: Filter,
}

/// One prefix this node advertises.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Advertised {
    /// The prefix.
    pub prefix: IpNet,
    /// Why it is advertised.
    pub origin: Origin,
    /// Standard communities (`aa:nn` as `aa << 16 | nn`).
    pub communities: Vec<u32>,
    /// Large communities.
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// Why a prefix is advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A block affine to this node.
    Block,
    /// An address this node holds in another node's block.
    Borrowed,
    /// A service range from the BGPConfiguration.
    Service,
}

/// The speaker's complete configuration for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// This node's AS number.
    pub asn: u32,
    /// The BGP identifier (the node's IPv4 address, or [`hashed_router_id`]).
    pub router_id: Ipv4Addr,
    /// The node's IPv4 address (IPv4 sessions' source address).
    pub node_address: Option<Ipv4Addr>,
    /// The node's IPv6 address (IPv6 sessions' source address).
    pub node_address_v6: Option<Ipv6Addr>,
    /// The TCP port to listen on.
    pub listen_port: u16,
    /// The route-reflector cluster ID, when this node is a reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// The sessions, ordered by address and port.
    pub neighbors: Vec<PeerConfig>,
    /// What is advertised, ordered by prefix.
    pub originated: Vec<Advertised>,
    /// Blackhole routes for this node's blocks.
    pub blackholes: Vec<IpNet>,
}

/// The result of [`desired`]: the configuration and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The configuration.
    pub desired: Desired,
    /// Resources or fields that were skipped, each naming what and why.
    pub warnings: Vec<ConfigError>,
}

/// Why a resource (or the whole configuration) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// This node has no Node resource.
    #[error("node {node} does not exist in the datastore")]
    NoNode {
        /// The node name.
        node: String,
    },
    /// This node has neither a usable IPv4 nor a usable IPv6 address.
    #[error(
        "node {node} has neither a usable spec.bgp.ipv4Address nor a usable spec.bgp.ipv6Address"
    )]
    NoNodeAddress {
        /// The node name.
        node: String,
    },
    /// A field of a resource has a value Twill cannot use.
    #[error("{kind} {name}: field {field}: {reason}")]
    Invalid {
        /// The resource kind.
        kind: &'static str,
        /// The resource name.
        name: String,
        /// The field path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A peering names a secret that cannot be read.
    #[error("{peer}: password secret {secret}/{key} is not available")]
    MissingSecret {
        /// The resource (`BGPPeer <name>`, or the mesh's BGPConfiguration).
        peer: String,
        /// The secret name.
        secret: String,
        /// The key in the secret.
        key: String,
    },
    /// A peering names a BGPFilter that does not exist.
    #[error("BGPPeer {peer}: field filters: BGPFilter {filter} does not exist")]
    MissingFilter {
        /// The BGPPeer.
        peer: String,
        /// The filter name.
        filter: String,
    },
}

/// Computes this node's configuration (see the module docs for the rules).
///
/// # Errors
///
/// [`ConfigError::NoNode`] or [`ConfigError::NoNodeAddress`] when this
/// node cannot run BGP at all; everything else is a warning in
/// [`Computed::warnings`].
pub fn desired(
    snapshot: &Snapshot,
    node_name: &str,
    secrets: &dyn Secrets,
) -> Result<Computed, ConfigError> {
    let node = snapshot
        .nodes
        .get(node_name)
        .ok_or_else(|| ConfigError::NoNode {
            node: node_name.to_string(),
        })?;
    let local = NodeInfo::of(node).ok_or_else(|| ConfigError::NoNodeAddress {
        node: node_name.to_string(),
    })?;
    let mut warnings = Vec::new();
    let global = snapshot
        .bgp_configurations
        .get("default")
        .map(|c| c.spec.clone())
        .unwrap_or_default();
    let default_asn = global.as_number.unwrap_or(DEFAULT_AS_NUMBER).0;
    let asn = local.asn.unwrap_or(default_asn);
    let cluster_id = match local.cluster_id.as_deref() {
        None => None,
        Some(text) => match text.parse::<Ipv4Addr>() {
            Ok(id) => Some(id),
            Err(_) => {
                warnings.push(ConfigError::Invalid {
                    kind: "Node",
                    name: node_name.to_string(),
                    field: "spec.bgp.routeReflectorClusterID",
                    reason: format!(
                        "{text:?} is not in IPv4 form; not acting as a route reflector"
                    ),
                });
                None
            }
        },
    };
    let local_workload_peering = (
        peering_ip(
            global.local_workload_peering_ipv4.as_deref(),
            "spec.localWorkloadPeeringIPV4",
            &mut warnings,
        ),
        peering_ip(
            global.local_workload_peering_ipv6.as_deref(),
            "spec.localWorkloadPeeringIPV6",
            &mut warnings,
        ),
    );
    let context = peers::Context {
        snapshot,
        node_name,
        local: &local,
        asn,
        default_asn,
        cluster_id,
        global: &global,
        secrets,
        local_workload_peering,
    };
    let neighbors = peers::neighbors(&context, &mut warnings);
    let (originated, blackholes) =
        advertise::advertised(snapshot, node_name, &global, &mut warnings);
    Ok(Computed {
        desired: Desired {
            asn,
            router_id: local.ipv4.unwrap_or_else(|| hashed_router_id(node_name)),
            node_address: local.ipv4,
            node_address_v6: local.ipv6,
            listen_port: listen_port(snapshot, node_name),
            cluster_id,
            neighbors,
            originated,
            blackholes,
        },
        warnings,
    })
}

/// A `localWorkloadPeeringIPV4`/`IPV6` of the `default` BGPConfiguration.
fn peering_ip<A: std::str::FromStr>(
    text: Option<&str>,
    field: &'static str,
    warnings: &mut Vec<ConfigError>,
) -> Option<A> {
    let text = text.filter(|t| !t.is_empty())?;
    let parsed = text.parse().ok();
    if parsed.is_none() {
        warnings.push(ConfigError::Invalid {
            kind: "BGPConfiguration",
            name: "default".into(),
            field,
            reason: format!("{text:?} is not an address of the field's family; ignored"),
        });
    }
    parsed
}

/// The listen port of `node`: its own BGPConfiguration, the default, 179.
fn listen_port(snapshot: &Snapshot, node: &str) -> u16 {
    let port = |name: &str| {
        snapshot
            .bgp_configurations
            .get(name)
            .and_then(|c| c.spec.listen_port)
    };
    port(&format!("node.{node}"))
        .or_else(|| port("default"))
        .unwrap_or(DEFAULT_LISTEN_PORT)
}

/// A BGP identifier for a node without an IPv4 address: the 32-bit FNV-1a
/// hash of its name, as an address (never 0.0.0.0, which RFC 6286 forbids).
pub fn hashed_router_id(node_name: &str) -> Ipv4Addr {
    let hash = node_name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    Ipv4Addr::from(hash.max(1))
}

/// The BGP facts of one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeInfo {
    name: String,
    labels: BTreeMap<String, String>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    asn: Option<u32>,
    cluster_id: Option<String>,
}

impl NodeInfo {
    /// `None` for nodes without BGP or without any usable address.
    fn of(node: &Object<NodeSpec>) -> Option<Self> {
        let bgp = node.spec.bgp.as_ref()?;
        fn address<A: std::str::FromStr>(text: Option<&str>) -> Option<A> {
            text?.split('/').next()?.parse().ok()
        }
        let ipv4: Option<Ipv4Addr> = address(bgp.ipv4_address.as_deref());
        let ipv6: Option<Ipv6Addr> = address(bgp.ipv6_address.as_deref());
        if ipv4.is_none() && ipv6.is_none() {
            return None;
        }
        Some(Self {
            name: node.metadata.name.clone(),
            labels: node.metadata.labels.clone(),
            ipv4,
            ipv6,
            asn: bgp.as_number.map(|a| a.0),
            cluster_id: bgp
                .route_reflector_cluster_id
                .clone()
                .filter(|id| !id.is_empty()),
        })
    }

    /// The node's addresses, IPv4 first.
    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
    }

    /// The node's address of the family of `other`.
    fn address_like(&self, other: IpAddr) -> Option<IpAddr> {
        match other {
            IpAddr::V4(_) => self.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.ipv6.map(IpAddr::V6),
        }
    }

    /// True when `address` is one of the node's.
    fn has_address(&self, address: IpAddr) -> bool {
        self.addresses().any(|a| a == address)
    }
}

/// Parses a Go-style duration (`90s`, `2m`, `1h30m`, `500ms`).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * scale).ok()?;
    }
    Some(total)
}
