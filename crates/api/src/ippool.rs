//! IP address management kinds: `IPPool`, `IPReservation` and the
//! `IPAMConfiguration` singleton (`projectcalico.org/v3`).

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Family, check_cidr, check_masked, check_range, check_selector_field, is_false, parse_cidr,
};
use crate::object::{CALICO_API_VERSION, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

/// An IP pool: a CIDR that pod, tunnel or load-balancer addresses are allocated from.
pub type IPPool = Object<IPPoolSpec>;
/// Addresses that IPAM must never hand out.
pub type IPReservation = Object<IPReservationSpec>;
/// Cluster-wide IPAM settings; a singleton named `default`.
pub type IPAMConfiguration = Object<IPAMConfigurationSpec>;

/// Block size used for IPv4 pools that do not set `blockSize` (a /26: 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V4: i32 = 26;
/// Block size used for IPv6 pools that do not set `blockSize` (a /122: 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V6: i32 = 122;

/// The spec of an [`IPPool`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pool's CIDR, IPv4 or IPv6; must be strictly masked and outside the
    /// link-local ranges. Cannot be changed once the pool exists.
    #[serde(default)]
    pub cidr: String,
    /// When to encapsulate traffic between workloads in VXLAN (default `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<VXLANMode>,
    /// When to encapsulate traffic between workloads in IP-in-IP (IPv4 only; default `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<IPIPMode>,
    /// Masquerade traffic from this pool to destinations outside all pools.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat_outgoing: bool,
    /// No new addresses are allocated from a disabled pool.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Do not advertise this pool's routes over BGP.
    #[serde(rename = "disableBGPExport", default, skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    /// Prefix length of the blocks handed to nodes (default 26 for IPv4, 122 for
    /// IPv6; IPv4 20–32, IPv6 116–128). Cannot be changed once the pool exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// Nodes that may allocate from this pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Namespaces whose pods may allocate from this pool (empty: all namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// What addresses from this pool may be used for (empty: the default
    /// `[Workload, Tunnel]`, see [`IPPoolSpec::effective_allowed_uses`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<IPPoolAllowedUse>,
    /// Whether IPAM picks this pool automatically or only when asked by name (default `Automatic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

/// An encapsulation mode for VXLAN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VXLANMode {
    /// Never encapsulate.
    #[default]
    Never,
    /// Always encapsulate.
    Always,
    /// Encapsulate only when the destination node is in another subnet.
    CrossSubnet,
}

/// An encapsulation mode for IP-in-IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IPIPMode {
    /// Never encapsulate.
    #[default]
    Never,
    /// Always encapsulate.
    Always,
    /// Encapsulate only when the destination node is in another subnet.
    CrossSubnet,
}

/// A use an IP pool's addresses may be put to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum IPPoolAllowedUse {
    /// Pod (workload) addresses.
    Workload,
    /// Node tunnel addresses (IPIP, VXLAN, WireGuard).
    Tunnel,
    /// Kubernetes `LoadBalancer` service addresses.
    LoadBalancer,
}

/// How IPAM selects a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AssignmentMode {
    /// Any matching pool may be used.
    #[default]
    Automatic,
    /// Only used when a pod or service names the pool explicitly.
    Manual,
}

/// What the IPAM controller reports about a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// Conditions, notably `Allocatable` (reasons `CIDROverlap`, `Terminating`, `PoolDisabled`, `OK`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

impl IPPoolSpec {
    /// The pool's network, when `cidr` parses.
    pub fn network(&self) -> Option<IpNet> {
        parse_cidr(&self.cidr).ok()
    }

    /// The block size, with the family default when unset.
    pub fn effective_block_size(&self) -> Option<i32> {
        self.block_size.or_else(|| {
            self.network().map(|net| match net {
                IpNet::V4(_) => DEFAULT_BLOCK_SIZE_V4,
                IpNet::V6(_) => DEFAULT_BLOCK_SIZE_V6,
            })
        })
    }

    /// The uses, with the default `[Workload, Tunnel]` when unset.
    pub fn effective_allowed_uses(&self) -> Vec<IPPoolAllowedUse> {
        if self.allowed_uses.is_empty() {
            vec![IPPoolAllowedUse::Workload, IPPoolAllowedUse::Tunnel]
        } else {
            self.allowed_uses.clone()
        }
    }

    fn ipip_enabled(&self) -> bool {
        matches!(
            self.ipip_mode,
            Some(IPIPMode::Always | IPIPMode::CrossSubnet)
        )
    }

    fn vxlan_enabled(&self) -> bool {
        matches!(
            self.vxlan_mode,
            Some(VXLANMode::Always | VXLANMode::CrossSubnet)
        )
    }
}

impl Spec for IPPoolSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "IPPool";
    const PLURAL: &'static str = "ippools";
    const SHORT_NAMES: &'static [&'static str] = &["ipp", "ipps", "pool", "pools"];
    const NAMESPACED: bool = false;
    type Status = IPPoolStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        if self.block_size.is_none() {
            self.block_size = self.effective_block_size();
        }
        if self.vxlan_mode.is_none() {
            self.vxlan_mode = Some(VXLANMode::Never);
        }
        if self.ipip_mode.is_none() {
            self.ipip_mode = Some(IPIPMode::Never);
        }
        if self.node_selector.as_deref().is_none_or(str::is_empty) {
            self.node_selector = Some("all()".to_string());
        }
        // `allowedUses` stays empty when unset: Calico's rules (e.g. "a Tunnel
        // pool cannot have a namespaceSelector") apply to explicit uses only.
        // Read it through `effective_allowed_uses`.
        if self.assignment_mode.is_none() {
            self.assignment_mode = Some(AssignmentMode::Automatic);
        }
    }
}

impl Validate for IPPoolSpec {
    fn validate(&self, v: &mut Validator) {
        let network = self.validate_cidr(v);

        if let (Some(net), Some(size)) = (network, self.block_size) {
            check_block_size(v, net, size);
        }
        if let (Some(net), Some(size)) = (network, self.effective_block_size())
            && !self.disabled
            && i32::from(net.prefix_len()) > size
        {
            v.field("blockSize", |v| {
                v.error(format!(
                    "pool {net} is smaller than one block (/{size}): the pool prefix must be at most the block size"
                ))
            });
        }

        if matches!(network, Some(IpNet::V6(_))) && self.ipip_enabled() {
            v.field("ipipMode", |v| {
                v.error("IPIP is not supported on IPv6 pools")
            });
        }
        if self.ipip_enabled() && self.vxlan_enabled() {
            v.field("vxlanMode", |v| {
                v.error("ipipMode and vxlanMode cannot both be enabled")
            });
        }

        for (name, selector) in [
            ("nodeSelector", &self.node_selector),
            ("namespaceSelector", &self.namespace_selector),
        ] {
            if let Some(text) = selector {
                v.field(name, |v| {
                    if text.contains("global(") {
                        v.error("global() is not valid in an IP pool selector");
                    } else {
                        check_selector_field(v, text);
                    }
                });
            }
        }

        self.validate_uses(v);
    }
}

impl IPPoolSpec {
    fn validate_cidr(&self, v: &mut Validator) -> Option<IpNet> {
        let mut network = None;
        v.field("cidr", |v| {
            let Some(net) = check_pool_cidr(v, &self.cidr) else {
                return;
            };
            network = Some(net);
            let link_local: IpNet = match net {
                IpNet::V4(_) => "169.254.0.0/16".parse().expect("a valid literal CIDR"),
                IpNet::V6(_) => "fe80::/10".parse().expect("a valid literal CIDR"),
            };
            if link_local.contains(&net.network()) || net.contains(&link_local.network()) {
                v.error(format!("{net} overlaps the link-local range {link_local}"));
            }
        });
        network
    }

    fn validate_uses(&self, v: &mut Validator) {
        let uses = &self.allowed_uses;
        v.field("allowedUses", |v| {
            if uses.len() > 10 {
                v.error(format!("at most 10 uses are allowed, found {}", uses.len()));
            }
            for (i, used) in uses.iter().enumerate() {
                if uses[..i].contains(used) {
                    v.index(i, |v| v.error(format!("{used:?} is listed twice")));
                }
            }
        });
        if !uses.contains(&IPPoolAllowedUse::LoadBalancer) {
            if uses.contains(&IPPoolAllowedUse::Tunnel)
                && self
                    .namespace_selector
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
            {
                v.field("namespaceSelector", |v| {
                    v.error("a pool with allowed use Tunnel cannot have a namespaceSelector")
                });
            }
            return;
        }
        if uses
            .iter()
            .any(|u| matches!(u, IPPoolAllowedUse::Workload | IPPoolAllowedUse::Tunnel))
        {
            v.field("allowedUses", |v| {
                v.error("LoadBalancer cannot be combined with Workload or Tunnel")
            });
        }
        if self.ipip_enabled() || self.vxlan_enabled() {
            v.field("allowedUses", |v| {
                v.error("a LoadBalancer pool cannot have IPIP or VXLAN enabled")
            });
        }
        if self.disable_bgp_export {
            v.field("disableBGPExport", |v| {
                v.error("a LoadBalancer pool cannot disable BGP export")
            });
        }
        if self.node_selector.as_deref().is_some_and(|s| s != "all()") {
            v.field("nodeSelector", |v| {
                v.error("a LoadBalancer pool must have nodeSelector all()")
            });
        }
    }
}

/// The spec of an [`IPReservation`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPReservationSpec {
    /// CIDRs (or single addresses) that IPAM skips when allocating.
    #[serde(
        rename = "reservedCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
}

impl Spec for IPReservationSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "IPReservation";
    const PLURAL: &'static str = "ipreservations";
    const NAMESPACED: bool = false;
    type Status = crate::object::NoStatus;
}

/// Checks a pool CIDR (required, valid, strictly masked), returning the
/// network when it parses. Shared with the `Installation`'s pools.
pub(crate) fn check_pool_cidr(v: &mut Validator, cidr: &str) -> Option<IpNet> {
    if cidr.is_empty() {
        v.error("cidr is required");
        return None;
    }
    let Ok(net) = parse_cidr(cidr) else {
        v.error(format!("{cidr:?} is not a valid CIDR"));
        return None;
    };
    check_masked(v, cidr, net);
    Some(net)
}

/// Checks a pool's block size against the range its family allows.
/// Shared with the `Installation`'s pools.
pub(crate) fn check_block_size(v: &mut Validator, network: IpNet, size: i32) {
    let (family, min, max) = match network {
        IpNet::V4(_) => ("IPv4", 20, 32),
        IpNet::V6(_) => ("IPv6", 116, 128),
    };
    if !(min..=max).contains(&size) {
        v.field("blockSize", |v| {
            v.error(format!(
                "block size {size} is out of range: {family} pools need {min} to {max}"
            ))
        });
    }
}

impl Validate for IPReservationSpec {
    fn validate(&self, v: &mut Validator) {
        v.field("reservedCIDRs", |v| {
            v.each(&self.reserved_cidrs, |v, cidr| {
                check_cidr(v, cidr, Family::Any)
            })
        });
    }
}

/// The spec of the [`IPAMConfiguration`] singleton.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPAMConfigurationSpec {
    /// Never borrow addresses from blocks affine to other nodes (default false).
    #[serde(default)]
    pub strict_affinity: bool,
    /// Upper bound on blocks affine to one node (0–1000000); 0, the
    /// default, means Calico's built-in limit of 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i32>,
    /// Claim new blocks for a node when its blocks are full (default true).
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// Whether KubeVirt VMs keep their addresses across pod re-creation (default `Enabled`).
    #[serde(
        rename = "kubeVirtVMAddressPersistence",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_virt_vm_address_persistence: Option<VMAddressPersistence>,
    /// Minimum age in seconds of a released address before it is reused (0–1200, default 0).
    #[serde(
        rename = "ipCooldownSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_cooldown_seconds: Option<i32>,
}

fn default_true() -> bool {
    true
}

impl Default for IPAMConfigurationSpec {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            max_blocks_per_host: None,
            auto_allocate_blocks: true,
            kube_virt_vm_address_persistence: None,
            ip_cooldown_seconds: None,
        }
    }
}

/// Whether KubeVirt VMs keep their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VMAddressPersistence {
    /// VMs keep their addresses when their pods are re-created.
    Enabled,
    /// VMs get new addresses; live migration is not supported.
    Disabled,
}

/// The only name an `IPAMConfiguration` may have.
pub const IPAM_CONFIGURATION_NAME: &str = "default";

impl Spec for IPAMConfigurationSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "IPAMConfiguration";
    const PLURAL: &'static str = "ipamconfigurations";
    const SHORT_NAMES: &'static [&'static str] = &["ipamconfig", "ipamconfigs"];
    const NAMESPACED: bool = false;
    type Status = crate::object::NoStatus;

    fn validate_name(name: &str, v: &mut Validator) {
        if name != IPAM_CONFIGURATION_NAME {
            v.error(format!(
                "IPAMConfiguration is a singleton and must be named {IPAM_CONFIGURATION_NAME:?}, not {name:?}"
            ));
        }
    }
}

impl Validate for IPAMConfigurationSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(max) = self.max_blocks_per_host {
            v.field("maxBlocksPerHost", |v| {
                // Calico's IPAM library also refuses a limit without
                // `strictAffinity` when configured through `calicoctl ipam
                // configure`, but the resource itself (and Calico's own
                // sample, `strictAffinity: false, maxBlocksPerHost: 4`) is
                // accepted; the allocator decides what the pair means.
                check_range(v, i64::from(max), 0, 1_000_000);
            });
        }
        if let Some(seconds) = self.ip_cooldown_seconds {
            v.field("ipCooldownSeconds", |v| {
                check_range(v, i64::from(seconds), 0, 1200)
            });
        }
        if !self.strict_affinity && !self.auto_allocate_blocks {
            v.field("autoAllocateBlocks", |v| {
                v.error("strictAffinity and autoAllocateBlocks cannot both be false")
            });
        }
    }
}
