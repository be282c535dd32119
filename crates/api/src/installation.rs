//! `Installation` (`operator.tigera.io/v1`): how the operator deploys the
//! networking stack, in the shape of Tigera's operator API so existing
//! manifests load unchanged.
//!
//! Large pod-template override structs (`calicoNodeDaemonSet`,
//! `typhaDeployment`, …) are accepted as opaque objects ([`OverrideObject`]);
//! Kubernetes types (tolerations, affinities, resource requirements) come
//! from `k8s-openapi`. Those types ignore unknown fields while
//! deserializing, so [`Spec::find_unknown_fields`] compares the input with
//! what was understood and reports the difference.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::api::core::v1::{
    NodeSelector, PreferredSchedulingTerm, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bgp::EnabledDisabled;
use crate::ippool::{AssignmentMode, IPPoolAllowedUse};
use crate::object::{OPERATOR_API_VERSION, Object, Spec};
use crate::validate::Validator;

mod validation;

/// How the operator installs and configures the networking stack.
pub type Installation = Object<InstallationSpec>;

/// Names the operator accepts for an `Installation`.
pub const INSTALLATION_NAMES: &[&str] = &["default", "overlay"];

/// A Kubernetes pod-template override (e.g. `calicoNodeDaemonSet`), kept
/// as an opaque JSON object: it is passed through to the rendered workload
/// without being interpreted, and its schema preserves unknown fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OverrideObject(pub serde_json::Map<String, Value>);

impl JsonSchema for OverrideObject {
    fn schema_name() -> Cow<'static, str> {
        "OverrideObject".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A pod-template override, passed through uninterpreted.",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// The spec of an [`Installation`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallationSpec {
    /// The product variant (default `Calico`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<ProductVariant>,
    /// Image registry, e.g. `quay.io/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Path between registry and image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// Prefix of every image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_prefix: Option<String>,
    /// Secrets used to pull images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Pull policy of every image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The Kubernetes distribution, when it needs special handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_provider: Option<KubernetesProvider>,
    /// CNI plugin and IPAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CNISpec>,
    /// Pod networking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_network: Option<CalicoNetworkSpec>,
    /// Where Typha may be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typha_affinity: Option<TyphaAffinity>,
    /// Node labels control-plane pods are scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub control_plane_node_selector: BTreeMap<String, String>,
    /// Tolerations of control-plane pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane_tolerations: Vec<Toleration>,
    /// Replicas of control-plane deployments (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_replicas: Option<i32>,
    /// Port of the node agent's Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_metrics_port: Option<i32>,
    /// Port of Typha's Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typha_metrics_port: Option<i32>,
    /// FlexVolume driver path, or `None` to disable it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flex_volume_path: Option<String>,
    /// Host path of the run directory (default `/var/run/calico`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_run_host_path: Option<String>,
    /// Host path of the state directory (default `/var/lib/calico`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_lib_host_path: Option<String>,
    /// Kubelet volume plugin path, or `None` to disable the CSI driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_volume_plugin_path: Option<String>,
    /// Update strategy of the node DaemonSet (only `RollingUpdate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_update_strategy: Option<DaemonSetUpdateStrategy>,
    /// Deprecated per-component resource requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_resources: Vec<ComponentResource>,
    /// Have certificates signed by a Kubernetes signer instead of the operator's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_management: Option<CertificateManagement>,
    /// TLS cipher suites of the components' servers.
    #[serde(
        rename = "tlsCipherSuites",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tls_cipher_suites: Vec<TLSCipherSuite>,
    /// Deprecated; `Enabled` is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_privileged: Option<EnabledDisabled>,
    /// Override of the node DaemonSet (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_node_daemon_set: Option<OverrideObject>,
    /// Override of the CSI node driver DaemonSet (opaque).
    #[serde(
        rename = "csiNodeDriverDaemonSet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub csi_node_driver_daemon_set: Option<OverrideObject>,
    /// Override of the kube-controllers Deployment (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_kube_controllers_deployment: Option<OverrideObject>,
    /// Override of the Typha Deployment (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typha_deployment: Option<OverrideObject>,
    /// Override of Typha's PodDisruptionBudget (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typha_pod_disruption_budget: Option<OverrideObject>,
    /// Override of the Windows upgrade DaemonSet (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_windows_upgrade_daemon_set: Option<OverrideObject>,
    /// Override of the Windows node DaemonSet (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_node_windows_daemon_set: Option<OverrideObject>,
    /// Removed; `Enabled` is rejected.
    #[serde(rename = "fipsMode", default, skip_serializing_if = "Option::is_none")]
    pub fips_mode: Option<EnabledDisabled>,
    /// Logging of the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Windows node settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_nodes: Option<WindowsNodeSpec>,
    /// The cluster's service CIDRs (needed for Windows).
    #[serde(
        rename = "serviceCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cidrs: Vec<String>,
    /// AKS-specific settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<Azure>,
    /// HTTP proxy settings passed to the components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    /// Whether the operator manages the network policies protecting its components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<InstallationNetworkPolicy>,
}

/// A reference to an object in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// The object's name.
    #[serde(default)]
    pub name: String,
}

/// The product variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProductVariant {
    /// Open-source Calico.
    Calico,
    /// Calico Enterprise.
    CalicoEnterprise,
    /// Deprecated alias of `CalicoEnterprise`.
    TigeraSecureEnterprise,
}

/// An image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when missing.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// A Kubernetes distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KubernetesProvider {
    /// Not specified (auto-detected).
    #[serde(rename = "")]
    Unspecified,
    /// Amazon EKS.
    #[serde(rename = "EKS")]
    Eks,
    /// Google GKE.
    #[serde(rename = "GKE")]
    Gke,
    /// Azure AKS.
    #[serde(rename = "AKS")]
    Aks,
    /// Red Hat OpenShift.
    OpenShift,
    /// Docker Enterprise.
    DockerEnterprise,
    /// Rancher RKE2.
    #[serde(rename = "RKE2")]
    Rke2,
    /// VMware Tanzu.
    #[serde(rename = "TKG")]
    Tkg,
    /// kind.
    Kind,
}

/// CNI plugin settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CNISpec {
    /// The CNI plugin.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<CNIPluginType>,
    /// The IPAM plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IPAMSpec>,
    /// CNI spec version of the generated configuration: `Auto`, `0.3.1`, `0.4.0` or `1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_version: Option<String>,
    /// Host directory of CNI binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<String>,
    /// Host directory of CNI configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_dir: Option<String>,
    /// `All` or `CalicoOnly`: which CNI plugins are installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_mode: Option<String>,
}

/// A CNI plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CNIPluginType {
    /// Calico's (Twill's) plugin.
    Calico,
    /// GKE's plugin.
    #[serde(rename = "GKE")]
    Gke,
    /// The AWS VPC plugin.
    AmazonVPC,
    /// The Azure VNET plugin.
    #[serde(rename = "AzureVNET")]
    AzureVnet,
}

/// IPAM plugin settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPAMSpec {
    /// The IPAM plugin.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<IPAMPluginType>,
}

/// An IPAM plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IPAMPluginType {
    /// Calico's (Twill's) block IPAM.
    Calico,
    /// The host-local plugin with the node's pod CIDR.
    HostLocal,
    /// The AWS VPC plugin.
    AmazonVPC,
    /// The Azure VNET plugin.
    #[serde(rename = "AzureVNET")]
    AzureVnet,
}

/// Pod networking settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CalicoNetworkSpec {
    /// The Linux dataplane (default `Iptables`; Twill programs nftables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_dataplane: Option<LinuxDataplane>,
    /// The Windows dataplane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_dataplane: Option<WindowsDataplane>,
    /// eBPF network bootstrap.
    #[serde(
        rename = "bpfNetworkBootstrap",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_network_bootstrap: Option<EnabledDisabled>,
    /// Whether the operator manages kube-proxy in eBPF mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_management: Option<EnabledDisabled>,
    /// Whether BGP runs (default `Enabled` with Calico CNI and IPAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<EnabledDisabled>,
    /// Which component programs cluster routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_routing_mode: Option<ClusterRoutingMode>,
    /// IP pools to create. Unset: one default IPv4 pool; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_pools: Option<Vec<InstallationIPPool>>,
    /// MTU of pod interfaces (default: auto-detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i32>,
    /// How nodes find their IPv4 address.
    #[serde(
        rename = "nodeAddressAutodetectionV4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_address_autodetection_v4: Option<NodeAddressAutodetection>,
    /// How nodes find their IPv6 address.
    #[serde(
        rename = "nodeAddressAutodetectionV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_address_autodetection_v6: Option<NodeAddressAutodetection>,
    /// Whether `hostPort` is supported (default `Enabled`, via the portmap plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<EnabledDisabled>,
    /// `None` or `Multus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_interface_mode: Option<MultiInterfaceMode>,
    /// Whether pods may forward IP packets (default `Disabled`).
    #[serde(
        rename = "containerIPForwarding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_ip_forwarding: Option<EnabledDisabled>,
    /// Pod interface type: `Veth` (default) or `Netkit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_pod_interface_type: Option<LinuxPodInterfaceType>,
    /// Sysctls set in pods through the tuning plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctl: Vec<Sysctl>,
    /// How long CNI ADD waits for the pod's policy to be programmed (default 0: no wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_policy_setup_timeout_seconds: Option<i32>,
}

/// A Linux dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LinuxDataplane {
    /// iptables.
    Iptables,
    /// eBPF.
    #[serde(rename = "BPF")]
    Bpf,
    /// VPP.
    #[serde(rename = "VPP")]
    Vpp,
    /// nftables.
    Nftables,
}

/// A Windows dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WindowsDataplane {
    /// Host Networking Service.
    #[serde(rename = "HNS")]
    Hns,
    /// No Windows dataplane.
    Disabled,
}

/// Which component programs cluster routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterRoutingMode {
    /// The BGP daemon programs all cluster routes.
    #[serde(rename = "BIRD")]
    Bird,
    /// The policy daemon programs all cluster routes.
    Felix,
    /// The policy daemon programs IPIP routes; BGP the rest.
    #[serde(rename = "FelixIPIPOnly")]
    FelixIpipOnly,
}

/// Multi-interface mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MultiInterfaceMode {
    /// One interface per pod.
    None,
    /// Multus.
    Multus,
}

/// Pod interface type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LinuxPodInterfaceType {
    /// A veth pair.
    Veth,
    /// A netkit pair (kernel 6.7+).
    Netkit,
}

/// A sysctl set in pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sysctl {
    /// One of `net.ipv4.tcp_keepalive_intvl`, `net.ipv4.tcp_keepalive_probes`, `net.ipv4.tcp_keepalive_time`.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

const SYSCTL_KEYS: &[&str] = &[
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
];

/// An IP pool the operator creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallationIPPool {
    /// The pool's name (default derived from the CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pool's CIDR.
    #[serde(default)]
    pub cidr: String,
    /// Encapsulation (default `IPIP` with BGP, else `VXLAN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<Encapsulation>,
    /// Outgoing NAT (default `Enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<EnabledDisabled>,
    /// Nodes that may use the pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Block prefix length (default 26 for IPv4, 122 for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// Do not advertise the pool over BGP.
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    /// Stop allocating from the pool (for migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_new_allocations: Option<bool>,
    /// What the pool's addresses may be used for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<IPPoolAllowedUse>,
    /// `Automatic` or `Manual` pool selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

/// An IP pool's encapsulation, as the operator names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Encapsulation {
    /// IP-in-IP to nodes in other subnets.
    #[serde(rename = "IPIPCrossSubnet")]
    IpipCrossSubnet,
    /// Always IP-in-IP.
    #[serde(rename = "IPIP")]
    Ipip,
    /// Always VXLAN.
    #[serde(rename = "VXLAN")]
    Vxlan,
    /// VXLAN to nodes in other subnets.
    #[serde(rename = "VXLANCrossSubnet")]
    VxlanCrossSubnet,
    /// No encapsulation.
    None,
}

impl Encapsulation {
    fn is_ipip(self) -> bool {
        matches!(self, Encapsulation::Ipip | Encapsulation::IpipCrossSubnet)
    }
}

/// How a node finds its address; at most one method may be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAddressAutodetection {
    /// The first address on the first interface found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_found: Option<bool>,
    /// Kubernetes' address for the node (`NodeInternalIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesAutodetectionMethod>,
    /// The first address of an interface matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The first address of an interface not matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_interface: Option<String>,
    /// The source address used to reach this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_reach: Option<String>,
    /// The first address inside one of these CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
}

/// The Kubernetes autodetection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KubernetesAutodetectionMethod {
    /// The node's `InternalIP`.
    #[serde(rename = "NodeInternalIP")]
    NodeInternalIp,
}

/// Where Typha may be scheduled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TyphaAffinity {
    /// Node affinity of Typha pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
}

/// Node affinity terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAffinity {
    /// Preferred terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
    /// Required terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

/// Resource requirements of one component (deprecated by the operator).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentResource {
    /// `Node`, `Typha`, `KubeControllers`, `NodeWindows`, `FelixWindows` or `ConfdWindows`.
    #[serde(default)]
    pub component_name: String,
    /// Requests and limits.
    #[serde(default)]
    pub resource_requirements: ResourceRequirements,
}

const COMPONENT_NAMES: &[&str] = &[
    "Node",
    "Typha",
    "KubeControllers",
    "NodeWindows",
    "FelixWindows",
    "ConfdWindows",
];

/// Certificates signed by a Kubernetes signer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateManagement {
    /// The signer's CA certificate, base64-encoded PEM.
    #[serde(default)]
    pub ca_cert: String,
    /// The signer name, e.g. `example.com/signer`.
    #[serde(default)]
    pub signer_name: String,
    /// Key algorithm, e.g. `RSAWithSize2048` or `ECDSAWithCurve256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<String>,
    /// Signature algorithm, e.g. `SHA256WithRSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_algorithm: Option<String>,
}

/// A TLS cipher suite by its IANA name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TLSCipherSuite {
    /// E.g. `TLS_AES_256_GCM_SHA384`.
    #[serde(default)]
    pub name: String,
}

/// Logging settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    /// CNI plugin logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CNILogging>,
}

/// CNI plugin logging.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CNILogging {
    /// Log level (default `Info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity: Option<String>,
    /// Size before rotation, a binary quantity such as `100Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_max_size: Option<String>,
    /// Days rotated files are kept (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_max_age_days: Option<u32>,
    /// Rotated files kept (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_max_count: Option<u32>,
}

/// Windows node settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WindowsNodeSpec {
    /// CNI binary directory.
    #[serde(rename = "cniBinDir", default, skip_serializing_if = "Option::is_none")]
    pub cni_bin_dir: Option<String>,
    /// CNI configuration directory.
    #[serde(
        rename = "cniConfigDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_config_dir: Option<String>,
    /// CNI log directory.
    #[serde(rename = "cniLogDir", default, skip_serializing_if = "Option::is_none")]
    pub cni_log_dir: Option<String>,
    /// VXLAN MAC prefix.
    #[serde(
        rename = "vxlanMACPrefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mac_prefix: Option<String>,
    /// VXLAN adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_adapter: Option<String>,
}

/// AKS settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Azure {
    /// `Default` or `Manual`: whether namespaces get the `control-plane` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_mode: Option<String>,
}

/// HTTP proxy settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Proxy {
    /// `HTTP_PROXY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// `HTTPS_PROXY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    /// `NO_PROXY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}

/// Management of the operator's own network policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallationNetworkPolicy {
    /// `Enabled` (default) or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_policies: Option<EnabledDisabled>,
}

/// What the operator reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallationStatus {
    /// The variant installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<ProductVariant>,
    /// The MTU in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i32>,
    /// The ImageSet in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_set: Option<String>,
    /// The effective spec after defaulting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Box<InstallationSpec>>,
    /// The version installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_version: Option<String>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Spec for InstallationSpec {
    const API_VERSION: &'static str = OPERATOR_API_VERSION;
    const KIND: &'static str = "Installation";
    const PLURAL: &'static str = "installations";
    const NAMESPACED: bool = false;
    type Status = InstallationStatus;
    const FINDS_UNKNOWN_FIELDS: bool = true;

    fn validate_name(name: &str, v: &mut Validator) {
        if !INSTALLATION_NAMES.contains(&name) {
            v.error(format!(
                "an Installation must be named \"default\" (or \"overlay\"), not {name:?}"
            ));
        }
    }

    fn find_unknown_fields(&self, input: &Value, v: &mut Validator) {
        // Serializing plain data structures into a Value cannot fail.
        let understood = serde_json::to_value(self).expect("an Installation serializes to JSON");
        report_dropped(input, &understood, v);
    }
}

/// Reports keys of `input` that are missing from `understood` (what the
/// typed value serializes back to), unless their value is empty.
fn report_dropped(input: &Value, understood: &Value, v: &mut Validator) {
    match (input, understood) {
        (Value::Object(input), Value::Object(understood)) => {
            for (key, value) in input {
                match understood.get(key) {
                    Some(inner) => v.key(key, |v| report_dropped(value, inner, v)),
                    None if is_empty(value) => {}
                    None => v.key(key, |v| v.error(format!("unknown field `{key}`"))),
                }
            }
        }
        (Value::Array(input), Value::Array(understood)) => {
            for (i, (a, b)) in input.iter().zip(understood).enumerate() {
                v.index(i, |v| report_dropped(a, b, v));
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}
