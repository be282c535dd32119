//! IP address management kinds: `IPPool`, `IPReservation` and the
//! `IPAMConfiguration` singleton (`projectcalico.org/v3`).
//!
//! The module also holds, crate-private in `checks`, the small field checks
//! the network kinds share (CIDRs, IP addresses, durations, selectors).

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::object::{CALICO_API_VERSION, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

use checks::{Family, check_selector, is_false, parse_ip_or_cidr};

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
        parse_ip_or_cidr(&self.cidr)
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

        if let Some(size) = self.block_size {
            let (min, max) = match network {
                Some(IpNet::V6(_)) => (116, 128),
                _ => (20, 32),
            };
            if network.is_some() && !(min..=max).contains(&size) {
                let family = if min == 20 { "IPv4" } else { "IPv6" };
                v.field("blockSize", |v| {
                    v.error(format!(
                        "block size {size} is out of range: {family} pools need {min} to {max}"
                    ))
                });
            }
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
                        check_selector(v, text);
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
            if self.cidr.is_empty() {
                v.error("cidr is required");
                return;
            }
            let Some(net) = parse_ip_or_cidr(&self.cidr) else {
                v.error(format!("{:?} is not a valid CIDR", self.cidr));
                return;
            };
            network = Some(net);
            if net.trunc() != net {
                v.error(format!(
                    "{} is not strictly masked (did you mean {}?)",
                    self.cidr,
                    net.trunc()
                ));
            }
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

impl Validate for IPReservationSpec {
    fn validate(&self, v: &mut Validator) {
        v.field("reservedCIDRs", |v| {
            v.each(&self.reserved_cidrs, |v, cidr| {
                checks::check_cidr(v, cidr, Family::Any)
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
                checks::check_range(v, i64::from(max), 0, 1_000_000);
            });
        }
        if let Some(seconds) = self.ip_cooldown_seconds {
            v.field("ipCooldownSeconds", |v| {
                checks::check_range(v, i64::from(seconds), 0, 1200)
            });
        }
        if !self.strict_affinity && !self.auto_allocate_blocks {
            v.field("autoAllocateBlocks", |v| {
                v.error("strictAffinity and autoAllocateBlocks cannot both be false")
            });
        }
    }
}

/// Field checks shared by the network kinds.
///
/// Thin, family-aware wrappers over [`crate::common`], plus the checks only
/// the network kinds need (durations, interface globs, secret references).
pub(crate) mod checks {
    use std::net::IpAddr;

    use ipnet::IpNet;

    use crate::validate::Validator;

    /// Which address family a field accepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Family {
        Any,
        V4,
        V6,
    }

    impl Family {
        fn accepts(self, ip: &IpAddr) -> bool {
            match self {
                Family::Any => true,
                Family::V4 => ip.is_ipv4(),
                Family::V6 => ip.is_ipv6(),
            }
        }

        fn name(self) -> &'static str {
            match self {
                Family::Any => "IP",
                Family::V4 => "IPv4",
                Family::V6 => "IPv6",
            }
        }
    }

    /// For `skip_serializing_if` on plain booleans.
    pub(crate) fn is_false(value: &bool) -> bool {
        !*value
    }

    /// A CIDR, or a bare address taken as a full-length prefix.
    pub(crate) fn parse_ip_or_cidr(text: &str) -> Option<IpNet> {
        crate::common::parse_cidr(text).ok()
    }

    /// A CIDR (need not be masked) or an address of `family`.
    pub(crate) fn check_cidr(v: &mut Validator, text: &str, family: Family) {
        match parse_ip_or_cidr(text) {
            None => v.error(format!("{text:?} is not a valid CIDR")),
            Some(net) if !family.accepts(&net.addr()) => {
                v.error(format!("{text} is not an {} CIDR", family.name()))
            }
            Some(_) => {}
        }
    }

    /// A strictly masked CIDR (or an address) of `family`.
    pub(crate) fn check_network(v: &mut Validator, text: &str, family: Family) {
        match parse_ip_or_cidr(text) {
            None => v.error(format!("{text:?} is not a valid CIDR")),
            Some(net) if !family.accepts(&net.addr()) => {
                v.error(format!("{text} is not an {} CIDR", family.name()))
            }
            Some(net) if net.trunc() != net => v.error(format!(
                "{text} is not strictly masked (did you mean {}?)",
                net.trunc()
            )),
            Some(_) => {}
        }
    }

    /// An address of `family`.
    pub(crate) fn check_ip(v: &mut Validator, text: &str, family: Family) {
        match text.parse::<IpAddr>() {
            Ok(ip) if family.accepts(&ip) => {}
            Ok(_) => v.error(format!("{text} is not an {} address", family.name())),
            Err(_) => v.error(format!("{text:?} is not a valid {} address", family.name())),
        }
    }

    /// A Calico label selector, at most 1024 characters.
    pub(crate) fn check_selector(v: &mut Validator, text: &str) {
        if text.len() > 1024 {
            v.error(format!(
                "selector is {} characters long; the limit is 1024",
                text.len()
            ));
        }
        v.check(crate::common::check_selector(text));
    }

    /// A resource name: a DNS-1123 subdomain.
    pub(crate) fn check_name(v: &mut Validator, text: &str) {
        v.check(crate::common::check_dns1123_subdomain(text));
    }

    /// An integer within `min..=max`.
    pub(crate) fn check_range(v: &mut Validator, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            v.error(format!("{value} is out of range {min} to {max}"));
        }
    }

    /// A Linux interface name (1–15 of `[a-zA-Z0-9_.-]`, plus `*` when `wildcard`).
    pub(crate) fn check_interface(v: &mut Validator, text: &str, wildcard: bool) {
        let ok = !text.is_empty()
            && text.len() <= 15
            && text.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'_' | b'.' | b'-')
                    || (wildcard && b == b'*')
            });
        if !ok {
            v.error(format!("{text:?} is not a valid interface name or pattern"));
        }
    }

    /// Parses a Kubernetes (Go) duration such as `90s`, `1m30s`, `1.5h`,
    /// `300ms` or `0`, returning seconds.
    pub(crate) fn parse_duration(text: &str) -> Result<f64, String> {
        let body = text.strip_prefix(['-', '+']).unwrap_or(text);
        if body == "0" {
            return Ok(0.0);
        }
        if body.is_empty() {
            return Err("empty duration".to_string());
        }
        let negative = text.starts_with('-');
        let mut rest = body;
        let mut total = 0.0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("{text:?} is missing a unit (ns, us, ms, s, m, h)"))?;
            let number = &rest[..number_len];
            if number.is_empty() || number == "." || number.matches('.').count() > 1 {
                return Err(format!("{text:?} is not a duration like 90s or 1m30s"));
            }
            let value: f64 = number
                .parse()
                .map_err(|_| format!("{text:?} is not a duration like 90s or 1m30s"))?;
            rest = &rest[number_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                unit => {
                    return Err(format!(
                        "{text:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                    ));
                }
            };
            total += value * scale;
            rest = &rest[unit_len..];
        }
        Ok(if negative { -total } else { total })
    }

    /// A non-negative Kubernetes duration.
    pub(crate) fn check_duration(v: &mut Validator, text: &str) {
        match parse_duration(text) {
            Ok(seconds) if seconds < 0.0 => v.error(format!("duration {text} is negative")),
            Ok(_) => {}
            Err(e) => v.error(e),
        }
    }

    /// A reference to a key of a Kubernetes Secret.
    #[derive(
        Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
    )]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct SecretKeySelector {
        /// The Secret's name (in the namespace Twill runs in).
        #[serde(default)]
        pub name: String,
        /// The key within the Secret.
        #[serde(default)]
        pub key: String,
        /// Whether a missing Secret or key is acceptable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub optional: Option<bool>,
    }

    impl crate::validate::Validate for SecretKeySelector {
        fn validate(&self, v: &mut Validator) {
            if self.name.is_empty() {
                v.field("name", |v| v.error("secret name is required"));
            }
            if self.key.is_empty() {
                v.field("key", |v| v.error("secret key is required"));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn durations_parse_like_kubernetes() {
            for (text, seconds) in [
                ("90s", 90.0),
                ("1m30s", 90.0),
                ("1.5h", 5400.0),
                ("300ms", 0.3),
                ("0", 0.0),
                ("2h45m", 9900.0),
            ] {
                let parsed = parse_duration(text).expect("a valid duration");
                assert!((parsed - seconds).abs() < 1e-9, "{text} -> {parsed}");
            }
        }

        #[test]
        fn hours_minutes_and_seconds_add_up() {
            for total in (0..200_000u32).step_by(37) {
                let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
                let text = format!("{h}h{m}m{s}s");
                let parsed = parse_duration(&text).expect("a valid duration");
                assert!(
                    (parsed - f64::from(total)).abs() < 1e-6,
                    "{text} -> {parsed}"
                );
            }
        }

        #[test]
        fn malformed_durations_are_rejected() {
            for text in ["", "90", "s", "1x", "1..5s", "ten seconds", "1m 30s"] {
                assert!(parse_duration(text).is_err(), "{text:?} was accepted");
            }
        }
    }
}
