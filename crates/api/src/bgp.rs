//! BGP kinds: `BGPConfiguration`, `BGPPeer` and `BGPFilter`
//! (`projectcalico.org/v3`), and the [`AsNumber`] type they share.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::common::{
    Family, LOG_LEVELS, SecretKeySelector, check_dns1123_subdomain, check_duration,
    check_interface_pattern, check_ip, check_log_level, check_network, check_range,
    check_selector_field, is_false,
};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

mod filter;

pub use filter::*;

/// Global or per-node BGP settings (`default`, or `node.<nodename>`).
pub type BGPConfiguration = Object<BGPConfigurationSpec>;
/// A BGP peering: with an external router, or between selected nodes.
pub type BGPPeer = Object<BGPPeerSpec>;

/// The AS number Calico uses when neither the node nor the global configuration sets one.
pub const DEFAULT_AS_NUMBER: AsNumber = AsNumber(64512);

/// A BGP autonomous system number, written as a plain number (`64512`,
/// `4200000001`) or in dotted 4-byte notation (`"65000.100"`, that is
/// 65000 × 65536 + 100). Serialized as a plain number.
///
/// Deserialization rejects values that are not AS numbers at all
/// (negative, above 2³²−1, malformed dotted form); the reserved value 0 is
/// accepted by the parser and reported by [`Validate`] so the error names
/// the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// Parses the plain or dotted text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u64>() {
            return u32::try_from(n)
                .map(AsNumber)
                .map_err(|_| format!("AS number {n} is above the 4-byte maximum 4294967295"));
        }
        let bad = || {
            format!(
                "invalid AS number {text:?}: expected a number or dotted form like \"65000.100\" (each part 0-65535)"
            )
        };
        let (high, low) = text.split_once('.').ok_or_else(bad)?;
        let high: u16 = high.parse().map_err(|_| bad())?;
        let low: u16 = low.parse().map_err(|_| bad())?;
        Ok(AsNumber((u32::from(high) << 16) | u32::from(low)))
    }

    /// The dotted (`asdot`) form, e.g. `65000.100`.
    pub fn to_dotted(self) -> String {
        format!("{}.{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AsNumberVisitor;

        impl Visitor<'_> for AsNumberVisitor {
            type Value = AsNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an AS number (1-4294967295) or a quoted dotted AS number like \"65000.100\"",
                )
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AsNumber, E> {
                u32::try_from(n).map(AsNumber).map_err(|_| {
                    E::custom(format!(
                        "AS number {n} is above the 4-byte maximum 4294967295"
                    ))
                })
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AsNumber, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("AS number {n} is negative")))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<AsNumber, E> {
                Err(E::custom(format!(
                    "AS number {n} is not an integer; quote dotted AS numbers (\"65000.100\")"
                )))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<AsNumber, E> {
                AsNumber::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(AsNumberVisitor)
    }
}

impl JsonSchema for AsNumber {
    fn schema_name() -> Cow<'static, str> {
        "AsNumber".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A BGP AS number: a plain number or a dotted 4-byte form such as \"65000.100\".",
            "x-kubernetes-int-or-string": true
        })
    }
}

impl Validate for AsNumber {
    fn validate(&self, v: &mut Validator) {
        if self.0 == 0 {
            v.error("AS number 0 is reserved; use 1 to 4294967295");
        }
    }
}

/// A reference to a BGP password kept in a Kubernetes Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPPassword {
    /// The Secret key that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

impl Validate for BGPPassword {
    fn validate(&self, v: &mut Validator) {
        v.nested("secretKeyRef", &self.secret_key_ref);
    }
}

// ---------------------------------------------------------------------------
// BGPConfiguration

/// The spec of a [`BGPConfiguration`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// Log level of the BGP daemon: Trace, Debug, Info, Warning, Error or Fatal (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Whether every node peers with every other node (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The default AS number of nodes that do not set their own (default 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// LoadBalancer service address ranges to advertise.
    #[serde(
        rename = "serviceLoadBalancerIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceIPBlock>,
    /// External service address ranges to advertise.
    #[serde(
        rename = "serviceExternalIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceIPBlock>,
    /// Cluster service address ranges to advertise.
    #[serde(
        rename = "serviceClusterIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceIPBlock>,
    /// Whether LoadBalancer addresses are advertised as their ranges (`Enabled`, the default)
    /// or one /32 (/128) per service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<EnabledDisabled>,
    /// Named community values for use in `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities attached to advertised prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// TCP port the BGP daemon listens on (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Password for the node-to-node mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time for mesh sessions, as a duration (default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// `NodeIP` listens only on the node's address; `None` (the default) on all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// Interfaces whose addresses are not imported as direct routes (globs allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    /// IPv4 address local workloads peer with (see `BGPPeer.localWorkloadSelector`).
    #[serde(
        rename = "localWorkloadPeeringIPV4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv4: Option<String>,
    /// IPv6 address local workloads peer with.
    #[serde(
        rename = "localWorkloadPeeringIPV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv6: Option<String>,
    /// Which cluster routes the BGP daemon programs (default `EnabledNoEncapOnly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
    /// Kernel metric of IPv4 routes the BGP daemon programs (1–2147483646).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<i64>,
    /// Kernel metric of IPv6 routes the BGP daemon programs (1–2147483646).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<i64>,
}

/// A service address range to advertise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceIPBlock {
    /// The range, as a masked CIDR.
    #[serde(default)]
    pub cidr: String,
}

/// A named BGP community value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Community {
    /// The name `prefixAdvertisements` refer to.
    #[serde(default)]
    pub name: String,
    /// `aa:nn` (standard, 16-bit parts) or `aa:nn:mm` (large, 32-bit parts).
    #[serde(default)]
    pub value: String,
}

/// Communities attached to one advertised prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixAdvertisement {
    /// The prefix.
    #[serde(default)]
    pub cidr: String,
    /// Community values or names from `communities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A two-valued switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnabledDisabled {
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

/// Which addresses the BGP daemon listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BindMode {
    /// All addresses.
    None,
    /// The node's own address only.
    #[serde(rename = "NodeIP")]
    NodeIp,
}

/// Which cluster routes a component programs into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProgramClusterRoutes {
    /// All cluster routes.
    Enabled,
    /// None.
    Disabled,
    /// Only routes of IPIP pools.
    #[serde(rename = "EnabledIPIPOnly")]
    EnabledIpipOnly,
    /// Only routes of unencapsulated pools.
    EnabledNoEncapOnly,
}

impl Spec for BGPConfigurationSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "BGPConfiguration";
    const PLURAL: &'static str = "bgpconfigurations";
    const SHORT_NAMES: &'static [&'static str] = &["bgpconfig", "bgpconfigs"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        // The two defaults Calico's CRD schema applies on admission.
        if self
            .log_severity_screen
            .as_deref()
            .is_none_or(str::is_empty)
        {
            self.log_severity_screen = Some("Info".to_string());
        }
        if self.service_load_balancer_aggregation.is_none() {
            self.service_load_balancer_aggregation = Some(EnabledDisabled::Enabled);
        }
    }
}

/// Whether `value` is a standard (`aa:nn`, 16-bit parts) or large
/// (`aa:nn:mm`, 32-bit parts) BGP community.
pub fn is_community_value(value: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.len() {
        2 => parts.iter().all(|p| digits(p) && p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| digits(p) && p.parse::<u32>().is_ok()),
        _ => false,
    }
}

fn check_route_priority(v: &mut Validator, name: &'static str, value: Option<i64>) {
    if let Some(value) = value {
        v.field(name, |v| check_range(v, value, 1, 2_147_483_646));
    }
}

impl Validate for BGPConfigurationSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(level) = &self.log_severity_screen {
            v.field("logSeverityScreen", |v| {
                check_log_level(v, level, LOG_LEVELS)
            });
        }
        v.nested("asNumber", &self.as_number);
        for (name, blocks) in [
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceClusterIPs", &self.service_cluster_ips),
        ] {
            v.field(name, |v| {
                v.each(blocks, |v, block| {
                    v.field("cidr", |v| check_network(v, &block.cidr, Family::Any))
                })
            });
        }
        v.field("communities", |v| {
            if self.communities.len() > 500 {
                v.error("at most 500 communities are allowed");
            }
            v.each(&self.communities, |v, community| {
                v.field("name", |v| v.check(check_dns1123_subdomain(&community.name)));
                v.field("value", |v| {
                    if !is_community_value(&community.value) {
                        v.error(format!(
                            "{:?} is not a community: use aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)",
                            community.value
                        ));
                    }
                });
            });
            if !self.communities.is_empty() && self.prefix_advertisements.is_empty() {
                v.error("communities are defined but not used in prefixAdvertisements");
            }
        });
        v.field("prefixAdvertisements", |v| {
            if self.prefix_advertisements.len() > 500 {
                v.error("at most 500 prefix advertisements are allowed");
            }
            v.each(&self.prefix_advertisements, |v, advert| {
                v.field("cidr", |v| check_network(v, &advert.cidr, Family::Any));
                v.field("communities", |v| {
                    if advert.communities.is_empty() {
                        v.error("at least one community is required");
                    }
                    v.each(&advert.communities, |v, community| {
                        let named = self.communities.iter().any(|c| &c.name == community);
                        if !named && !is_community_value(community) {
                            v.error(format!(
                                "{community:?} is neither a community value nor a name defined in communities"
                            ));
                        }
                    });
                });
            });
        });
        if self.listen_port == Some(0) {
            v.field("listenPort", |v| {
                v.error("port 0 is out of range 1 to 65535")
            });
        }
        let mesh_disabled = self.node_to_node_mesh_enabled == Some(false);
        if self.node_mesh_password.is_some() && mesh_disabled {
            v.field("nodeMeshPassword", |v| {
                v.error("nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false")
            });
        }
        v.nested("nodeMeshPassword", &self.node_mesh_password);
        if let Some(time) = &self.node_mesh_max_restart_time {
            v.field("nodeMeshMaxRestartTime", |v| {
                check_duration(v, time);
                if mesh_disabled {
                    v.error(
                        "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
                    );
                }
            });
        }
        v.field("ignoredInterfaces", |v| {
            v.each(&self.ignored_interfaces, |v, iface| {
                if iface == "*" {
                    v.error("\"*\" would ignore every interface");
                } else {
                    v.check(check_interface_pattern(iface));
                }
            })
        });
        if let Some(ip) = &self.local_workload_peering_ipv4 {
            v.field("localWorkloadPeeringIPV4", |v| check_ip(v, ip, Family::V4));
        }
        if let Some(ip) = &self.local_workload_peering_ipv6 {
            v.field("localWorkloadPeeringIPV6", |v| check_ip(v, ip, Family::V6));
        }
        check_route_priority(
            v,
            "ipv4NormalRoutePriority",
            self.ipv4_normal_route_priority,
        );
        check_route_priority(
            v,
            "ipv6NormalRoutePriority",
            self.ipv6_normal_route_priority,
        );
    }
}

// ---------------------------------------------------------------------------
// BGPPeer

/// The spec of a [`BGPPeer`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The one node this peering applies to (exclusive with `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The local nodes this peering applies to (empty with no `node`: all nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The peer's address: `IP`, `IPv4:port` or `[IPv6]:port`.
    #[serde(rename = "peerIP", default, skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// The peer's AS number (not with `peerSelector`: selected nodes bring their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// The local AS number to present to this peer instead of the node's.
    #[serde(
        rename = "localASNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    /// Peer with the Calico nodes this selector matches (exclusive with `peerIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// Deprecated: use `nextHopMode: Keep`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_original_next_hop: bool,
    /// How the next hop of routes sent to this peer is set (default `Auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    /// The session's TCP MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// Source address of the session: `UseNodeIP` (default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Graceful-restart time advertised to the peer, as a duration (default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Keepalive time for the session, as a duration (default 20s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// How many times the local AS may appear in received AS paths.
    #[serde(
        rename = "numAllowedLocalASNumbers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// Enable GTSM: the peer must be at most this many hops away.
    #[serde(
        rename = "ttlSecurity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_security: Option<u8>,
    /// Gateway through which the peer is reached (a static route to the peer is added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// Names of `BGPFilter`s applied to this peering, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Peer with local workloads this selector matches (at `localWorkloadPeeringIPV4/6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<String>,
    /// Whether the reverse peering for `peerSelector` is created automatically (default `Auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

/// How a peer's next hop is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NextHopMode {
    /// eBGP: self; iBGP: keep.
    Auto,
    /// Always the local address.
    #[serde(rename = "Self")]
    SelfAddress,
    /// Always keep the received next hop.
    Keep,
}

/// Which source address a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceAddress {
    /// The node's address.
    #[serde(rename = "UseNodeIP")]
    UseNodeIp,
    /// Let the kernel choose.
    None,
}

/// Whether reverse peerings are made automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReversePeering {
    /// Selected nodes peer back automatically.
    Auto,
    /// A matching BGPPeer must exist on the other side.
    Manual,
}

/// A parsed `peerIP`: the address and the port, if one was given.
pub fn parse_peer_ip(text: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse() {
        return Some((ip, None));
    }
    let addr: std::net::SocketAddr = text.parse().ok()?;
    (addr.port() != 0).then(|| (addr.ip(), Some(addr.port())))
}

fn non_empty(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|s| !s.is_empty())
}

impl Spec for BGPPeerSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "BGPPeer";
    const PLURAL: &'static str = "bgppeers";
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

impl Validate for BGPPeerSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(node) = &self.node {
            v.field("node", |v| {
                v.check(check_dns1123_subdomain(node));
                if non_empty(&self.node_selector) {
                    v.error("node and nodeSelector cannot both be set");
                }
            });
        }
        for (name, selector) in [
            ("nodeSelector", &self.node_selector),
            ("peerSelector", &self.peer_selector),
            ("localWorkloadSelector", &self.local_workload_selector),
        ] {
            if let Some(text) = selector {
                v.field(name, |v| check_selector_field(v, text));
            }
        }
        let peer = self.peer_ip.as_deref().and_then(parse_peer_ip);
        if let Some(text) = &self.peer_ip {
            v.field("peerIP", |v| {
                if peer.is_none() {
                    v.error(format!(
                        "{text:?} is not an address: use IP, IPv4:port or [IPv6]:port"
                    ));
                }
                if non_empty(&self.peer_selector) {
                    v.error("peerIP and peerSelector cannot both be set");
                }
                if non_empty(&self.local_workload_selector) {
                    v.error("peerIP must be empty when localWorkloadSelector is set");
                }
            });
        }
        v.field("asNumber", |v| {
            self.as_number.validate(v);
            if self.as_number.is_some() && non_empty(&self.peer_selector) {
                v.error(
                    "asNumber must be empty when peerSelector is set: selected nodes use their own",
                );
            }
            if self.as_number.is_none() && non_empty(&self.local_workload_selector) {
                v.error("asNumber is required when localWorkloadSelector is set");
            }
        });
        v.nested("localASNumber", &self.local_as_number);
        if non_empty(&self.local_workload_selector) && non_empty(&self.peer_selector) {
            v.field("peerSelector", |v| {
                v.error("peerSelector must be empty when localWorkloadSelector is set")
            });
        }
        if self.keep_original_next_hop && self.next_hop_mode.is_some() {
            v.field("nextHopMode", |v| {
                v.error("keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated")
            });
        }
        v.nested("password", &self.password);
        for (name, time) in [
            ("maxRestartTime", &self.max_restart_time),
            ("keepaliveTime", &self.keepalive_time),
        ] {
            if let Some(time) = time {
                v.field(name, |v| check_duration(v, time));
            }
        }
        if let Some(n) = self.num_allowed_local_as_numbers {
            v.field("numAllowedLocalASNumbers", |v| {
                check_range(v, i64::from(n), 0, i64::from(i32::MAX))
            });
        }
        if let Some(gateway) = &self.reachable_by {
            v.field("reachableBy", |v| {
                match gateway.parse::<std::net::IpAddr>() {
                    Err(_) => v.error(format!("{gateway:?} is not an IP address")),
                    Ok(_) if !non_empty(&self.peer_ip) => {
                        v.error("reachableBy must be empty when peerIP is empty")
                    }
                    Ok(gw) => {
                        if let Some((ip, _)) = peer
                            && ip.is_ipv4() != gw.is_ipv4()
                        {
                            v.error("reachableBy and peerIP have different address families");
                        }
                    }
                }
            });
        }
        v.field("filters", |v| {
            v.each(&self.filters, |v, name| {
                v.check(check_dns1123_subdomain(name))
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers_parse_plain_and_dotted() {
        for (text, expected) in [
            ("64512", 64512),
            ("4294967295", u32::MAX),
            ("65000.100", 65000 * 65536 + 100),
            ("0.1", 1),
            ("65535.65535", u32::MAX),
        ] {
            assert_eq!(AsNumber::parse(text), Ok(AsNumber(expected)), "{text}");
        }
    }

    #[test]
    fn malformed_as_numbers_are_rejected() {
        for text in [
            "4294967296",
            "65536.1",
            "1.65536",
            "1.2.3",
            "",
            "-1",
            "as100",
        ] {
            assert!(AsNumber::parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn every_plain_and_dotted_rendering_parses_back() {
        // A stride coprime with 2^32 visits values across the whole range.
        let mut n: u32 = 0;
        for _ in 0..100_000 {
            assert_eq!(AsNumber::parse(&n.to_string()), Ok(AsNumber(n)));
            assert_eq!(AsNumber::parse(&AsNumber(n).to_dotted()), Ok(AsNumber(n)));
            n = n.wrapping_add(42_949_673);
        }
    }

    #[test]
    fn dotted_form_round_trips() {
        assert_eq!(
            AsNumber::parse("65000.100").map(AsNumber::to_dotted),
            Ok("65000.100".into())
        );
    }

    #[test]
    fn peer_addresses_accept_calico_forms() {
        assert!(parse_peer_ip("192.0.2.1").is_some());
        assert_eq!(
            parse_peer_ip("192.0.2.1:1179").and_then(|p| p.1),
            Some(1179)
        );
        assert_eq!(
            parse_peer_ip("[2001:db8::1]:179").and_then(|p| p.1),
            Some(179)
        );
        assert!(parse_peer_ip("2001:db8::1").is_some());
        for bad in [
            "192.0.2.1:0",
            "192.0.2.1:70000",
            "2001:db8::1:179x",
            "peer.example",
        ] {
            assert!(parse_peer_ip(bad).is_none(), "{bad} was accepted");
        }
    }

    #[test]
    fn communities_follow_standard_and_large_forms() {
        assert!(is_community_value("65001:100"));
        assert!(is_community_value("4200000000:1:2"));
        assert!(!is_community_value("65536:1"));
        assert!(!is_community_value("1"));
        assert!(!is_community_value("a:b"));
    }
}
