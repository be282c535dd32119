//! `Node` and `ClusterInformation` (`projectcalico.org/v3`): what Twill
//! knows about each host, and the cluster-wide facts the node agent writes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bgp::AsNumber;
use crate::common::{Family, check_cidr, check_dns1123_subdomain, check_ip, check_mac};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, Spec};
use crate::validate::{Validate, Validator};

/// A host running Twill: its addresses, BGP identity and tunnel addresses.
pub type Node = Object<NodeSpec>;
/// Cluster-wide facts, a singleton named `default`.
pub type ClusterInformation = Object<ClusterInformationSpec>;

/// The spec of a [`Node`]. Mostly written by the node agent; an operator
/// sets `bgp.asNumber` or `bgp.routeReflectorClusterID` by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    /// BGP identity; absent on nodes that do not run BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    /// IPv4 address of the node's VXLAN tunnel device.
    #[serde(
        rename = "ipv4VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// MAC address of the IPv4 VXLAN tunnel device.
    #[serde(
        rename = "vxlanTunnelMACAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// IPv6 address of the node's VXLAN tunnel device.
    #[serde(
        rename = "ipv6VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// MAC address of the IPv6 VXLAN tunnel device.
    #[serde(
        rename = "vxlanTunnelMACAddrV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// The orchestrators that know this node, and its name there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    /// WireGuard interface addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    /// The node's addresses, as CIDRs or plain addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// The node's interfaces and their addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

/// A node's BGP identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeBGPSpec {
    /// The node's AS number (default: `BGPConfiguration.asNumber`, then 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// The node's IPv4 address and subnet, e.g. `192.0.2.10/24`.
    #[serde(
        rename = "ipv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 address and subnet.
    #[serde(
        rename = "ipv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// IPv4 address of the node's IP-in-IP tunnel device.
    #[serde(
        rename = "ipv4IPIPTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// Makes the node a route reflector with this cluster ID (IPv4 form).
    #[serde(
        rename = "routeReflectorClusterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// A node's name in one orchestrator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrchRef {
    /// The node's name there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The orchestrator, e.g. `k8s`.
    #[serde(default)]
    pub orchestrator: String,
}

/// WireGuard interface addresses of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeWireguardSpec {
    /// IPv4 address of the WireGuard interface.
    #[serde(
        rename = "interfaceIPv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    /// IPv6 address of the WireGuard interface.
    #[serde(
        rename = "interfaceIPv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

/// One address of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAddress {
    /// The address (or CIDR).
    #[serde(default)]
    pub address: String,
    /// Where it came from: `CalicoNodeIP`, `InternalIP` or `ExternalIP`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<NodeAddressType>,
}

/// The source of a node address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodeAddressType {
    /// The address the node agent detected for BGP.
    #[serde(rename = "CalicoNodeIP")]
    CalicoNodeIp,
    /// Kubernetes' InternalIP.
    #[serde(rename = "InternalIP")]
    InternalIp,
    /// Kubernetes' ExternalIP.
    #[serde(rename = "ExternalIP")]
    ExternalIp,
}

/// One interface of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInterface {
    /// The interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// What the node agent reports about a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's WireGuard public key (IPv4 tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    /// The node's WireGuard public key (IPv6 tunnel).
    #[serde(
        rename = "wireguardPublicKeyV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_public_key_v6: Option<String>,
    /// The pod CIDRs Kubernetes assigned to the node.
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl Spec for NodeSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";
    const NAMESPACED: bool = false;
    type Status = NodeStatus;
}

fn check_opt_ip(v: &mut Validator, name: &'static str, value: &Option<String>, family: Family) {
    if let Some(ip) = value {
        v.field(name, |v| check_ip(v, ip, family));
    }
}

impl Validate for NodeSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(bgp) = &self.bgp {
            v.field("bgp", |v| bgp.validate(v));
        }
        check_opt_ip(
            v,
            "ipv4VXLANTunnelAddr",
            &self.ipv4_vxlan_tunnel_addr,
            Family::V4,
        );
        check_opt_ip(
            v,
            "ipv6VXLANTunnelAddr",
            &self.ipv6_vxlan_tunnel_addr,
            Family::V6,
        );
        for (name, mac) in [
            ("vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr),
            ("vxlanTunnelMACAddrV6", &self.vxlan_tunnel_mac_addr_v6),
        ] {
            if let Some(mac) = mac {
                v.field(name, |v| v.check(check_mac(mac)));
            }
        }
        v.field("orchRefs", |v| {
            v.each(&self.orch_refs, |v, r| {
                if r.orchestrator.is_empty() {
                    v.field("orchestrator", |v| v.error("orchestrator is required"));
                }
            })
        });
        if let Some(wg) = &self.wireguard {
            v.field("wireguard", |v| {
                check_opt_ip(
                    v,
                    "interfaceIPv4Address",
                    &wg.interface_ipv4_address,
                    Family::V4,
                );
                check_opt_ip(
                    v,
                    "interfaceIPv6Address",
                    &wg.interface_ipv6_address,
                    Family::V6,
                );
            });
        }
        v.field("addresses", |v| {
            v.each(&self.addresses, |v, a| {
                v.field("address", |v| check_cidr(v, &a.address, Family::Any))
            })
        });
        v.field("interfaces", |v| {
            v.each(&self.interfaces, |v, iface| {
                if let Some(name) = &iface.name {
                    v.field("name", |v| v.check(check_dns1123_subdomain(name)));
                }
                v.field("addresses", |v| {
                    v.each(&iface.addresses, |v, a| check_cidr(v, a, Family::Any))
                });
            })
        });
    }
}

impl Validate for NodeBGPSpec {
    fn validate(&self, v: &mut Validator) {
        if *self == NodeBGPSpec::default() {
            v.error("bgp must not be empty: omit it, or set at least one field");
        }
        v.nested("asNumber", &self.as_number);
        for (name, cidr, family) in [
            ("ipv4Address", &self.ipv4_address, Family::V4),
            ("ipv6Address", &self.ipv6_address, Family::V6),
        ] {
            if let Some(cidr) = cidr {
                v.field(name, |v| check_cidr(v, cidr, family));
            }
        }
        check_opt_ip(
            v,
            "ipv4IPIPTunnelAddr",
            &self.ipv4_ipip_tunnel_addr,
            Family::V4,
        );
        check_opt_ip(
            v,
            "routeReflectorClusterID",
            &self.route_reflector_cluster_id,
            Family::V4,
        );
    }
}

/// The spec of the [`ClusterInformation`] singleton.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterInformationSpec {
    /// A unique identifier of the cluster, generated once.
    #[serde(
        rename = "clusterGUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_guid: Option<String>,
    /// Comma-separated tags describing the deployment, e.g. `k8s,bgp,kubeadm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_type: Option<String>,
    /// The version of the software that last wrote this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_version: Option<String>,
    /// False while an upgrade or migration holds the datastore; CNI refuses
    /// to wire pods until it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    /// The product variant, e.g. `Calico`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The only name a `ClusterInformation` may have.
pub const CLUSTER_INFORMATION_NAME: &str = "default";

impl Spec for ClusterInformationSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "ClusterInformation";
    const PLURAL: &'static str = "clusterinformations";
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn validate_name(name: &str, v: &mut Validator) {
        if name != CLUSTER_INFORMATION_NAME {
            v.error(format!(
                "ClusterInformation is a singleton and must be named {CLUSTER_INFORMATION_NAME:?}, not {name:?}"
            ));
        }
    }
}

impl Validate for ClusterInformationSpec {
    fn validate(&self, _v: &mut Validator) {
        // Every field is free-form text written by the node agent.
    }
}
