//! Value types of `FelixConfiguration` fields: enums, failsafe ports,
//! route-table ranges, eBPF conntrack timeouts and DSCP values.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::check_one_of;
use crate::common::{Family, check_cidr, check_duration};
use crate::validate::{Validate, Validator};

/// Values of the Felix setting that takes a `AWSSrcDstCheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AWSSrcDstCheck {
    /// `DoNothing`.
    DoNothing,
    /// `Enable`.
    Enable,
    /// `Disable`.
    Disable,
}

/// Values of the Felix setting that takes a `BPFAttach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFAttach {
    /// `TC`.
    #[serde(rename = "TC")]
    Tc,
    /// `TCX`.
    #[serde(rename = "TCX")]
    Tcx,
    /// `Netkit`.
    Netkit,
}

/// Values of the Felix setting that takes a `BPFConnectTimeLB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFConnectTimeLB {
    /// `TCP`.
    #[serde(rename = "TCP")]
    Tcp,
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
}

/// Values of the Felix setting that takes a `BPFConntrackMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFConntrackMode {
    /// `Auto`.
    Auto,
    /// `Userspace`.
    Userspace,
    /// `BPFProgram`.
    #[serde(rename = "BPFProgram")]
    BpfProgram,
}

/// Values of the Felix setting that takes a `BPFConntrackTimeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFConntrackTimeout {}

/// Values of the Felix setting that takes a `BPFHostNetworkedNAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFHostNetworkedNAT {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
}

/// Values of the Felix setting that takes a `BPFJITHardening`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFJITHardening {
    /// `Auto`.
    Auto,
    /// `Strict`.
    Strict,
}

/// Values of the Felix setting that takes a `BPFOverlayHostSourceIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BPFOverlayHostSourceIP {
    /// `TunnelAddress`.
    TunnelAddress,
    /// `HostAddress`.
    HostAddress,
}

/// Values of the Felix setting that takes a `FloatingIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FloatingIP {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
}

/// Values of the Felix setting that takes a `FlowLogsPolicyEvaluationMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FlowLogsPolicyEvaluationMode {
    /// `None`.
    None,
    /// `Continuous`.
    Continuous,
}

/// Values of the Felix setting that takes a `IstioAmbientMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IstioAmbientMode {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
}

/// Values of the Felix setting that takes a `LocalSubnetL2ReachabilityMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LocalSubnetL2ReachabilityMode {
    /// `Disabled`.
    Disabled,
    /// `PodsAndLoadBalancers`.
    PodsAndLoadBalancers,
}

/// Values of the Felix setting that takes a `NATOutgoingExclusions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NATOutgoingExclusions {
    /// `IPPoolsOnly`.
    #[serde(rename = "IPPoolsOnly")]
    IpPoolsOnly,
    /// `IPPoolsAndHostIPs`.
    #[serde(rename = "IPPoolsAndHostIPs")]
    IpPoolsAndHostIPs,
}

/// Values of the Felix setting that takes a `NFTablesFlowTableOffload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NFTablesFlowTableOffload {
    /// `All`.
    All,
    /// `Disabled`.
    Disabled,
}

/// Values of the Felix setting that takes a `NFTablesMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NFTablesMode {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
    /// `Auto`.
    Auto,
}

/// Values of the Felix setting that takes a `PrometheusMetricsClientAuth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PrometheusMetricsClientAuth {
    /// `RequireAndVerifyClientCert`.
    RequireAndVerifyClientCert,
    /// `RequireAnyClientCert`.
    RequireAnyClientCert,
    /// `VerifyClientCertIfGiven`.
    VerifyClientCertIfGiven,
    /// `NoClientCert`.
    NoClientCert,
}

/// Values of the Felix setting that takes a `WindowsManageFirewallRulesMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WindowsManageFirewallRulesMode {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
}

/// A protocol, port and optional network, as used by the failsafe port lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtoPort {
    /// `TCP`, `UDP` or `SCTP` (any case).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The port number.
    pub port: u16,
    /// Restrict the exception to this peer network (a CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

impl ProtoPort {
    /// A protocol and port without a network.
    pub fn new(protocol: &str, port: u16) -> Self {
        Self {
            protocol: protocol.to_string(),
            port,
            net: None,
        }
    }
}

impl Validate for ProtoPort {
    fn validate(&self, v: &mut Validator) {
        v.field("protocol", |v| {
            check_one_of(v, &self.protocol, &["TCP", "UDP", "SCTP"], true);
            if self.protocol.is_empty() {
                v.error("protocol is required: TCP, UDP or SCTP");
            }
        });
        if let Some(net) = &self.net {
            v.field("net", |v| check_cidr(v, net, Family::Any));
        }
    }
}

/// Calico's default inbound failsafe ports (SSH, DHCP, BGP, etcd, Typha,
/// the Kubernetes API server and its alternatives).
pub const DEFAULT_FAILSAFE_INBOUND: &[(&str, u16)] = &[
    ("tcp", 22),
    ("udp", 68),
    ("tcp", 179),
    ("tcp", 2379),
    ("tcp", 2380),
    ("tcp", 5473),
    ("tcp", 6443),
    ("tcp", 6666),
    ("tcp", 6667),
];

/// Calico's default outbound failsafe ports (DNS, DHCP, BGP, etcd, Typha,
/// the Kubernetes API server and its alternatives).
pub const DEFAULT_FAILSAFE_OUTBOUND: &[(&str, u16)] = &[
    ("udp", 53),
    ("udp", 67),
    ("tcp", 179),
    ("tcp", 2379),
    ("tcp", 2380),
    ("tcp", 5473),
    ("tcp", 6443),
    ("tcp", 6666),
    ("tcp", 6667),
];

/// A health-check timeout override for one Felix subcomponent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthTimeoutOverride {
    /// The subcomponent's name as Felix logs it.
    #[serde(default)]
    pub name: String,
    /// The timeout, as a duration.
    #[serde(default)]
    pub timeout: String,
}

impl Validate for HealthTimeoutOverride {
    fn validate(&self, v: &mut Validator) {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '-'));
        if !name_ok {
            v.field("name", |v| {
                v.error(format!(
                    "{:?} is not a subcomponent name (letters, digits, '_', ' ', '-')",
                    self.name
                ))
            });
        }
        v.field("timeout", |v| check_duration(v, &self.timeout));
    }
}

/// A range of routing-table indices, 1–250 (legacy form of `routeTableRanges`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTableRange {
    /// First table index.
    pub min: i64,
    /// Last table index.
    pub max: i64,
}

/// A range of routing-table indices, 1–4294967295.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTableIDRange {
    /// First table index.
    pub min: i64,
    /// Last table index.
    pub max: i64,
}

/// eBPF conntrack timeouts, each a duration or `Auto` (use the kernel's value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BPFConntrackTimeouts {
    /// Grace period for new connections (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_grace_period: Option<String>,
    /// After an unanswered SYN (default 20s).
    #[serde(
        rename = "tcpSynSent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_syn_sent: Option<String>,
    /// Idle established TCP connections (default 1h).
    #[serde(
        rename = "tcpEstablished",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_established: Option<String>,
    /// After both FINs (default Auto).
    #[serde(
        rename = "tcpFinsSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_fins_seen: Option<String>,
    /// After a RST (default 40s).
    #[serde(
        rename = "tcpResetSeen",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_reset_seen: Option<String>,
    /// Idle UDP flows (default 60s).
    #[serde(
        rename = "udpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub udp_timeout: Option<String>,
    /// Other idle flows (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_timeout: Option<String>,
    /// Idle ICMP flows (default 5s).
    #[serde(
        rename = "icmpTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub icmp_timeout: Option<String>,
}

impl Validate for BPFConntrackTimeouts {
    fn validate(&self, v: &mut Validator) {
        for (name, value) in [
            ("creationGracePeriod", &self.creation_grace_period),
            ("tcpSynSent", &self.tcp_syn_sent),
            ("tcpEstablished", &self.tcp_established),
            ("tcpFinsSeen", &self.tcp_fins_seen),
            ("tcpResetSeen", &self.tcp_reset_seen),
            ("udpTimeout", &self.udp_timeout),
            ("genericTimeout", &self.generic_timeout),
            ("icmpTimeout", &self.icmp_timeout),
        ] {
            if let Some(value) = value
                && value != "Auto"
            {
                v.field(name, |v| check_duration(v, value));
            }
        }
    }
}

/// A DSCP value: a number 0–63 or a name such as `EF`, `AF11` or `CS3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dscp {
    /// A numeric code point.
    Number(u8),
    /// A named code point.
    Name(String),
}

const DSCP_NAMES: &[(&str, u8)] = &[
    ("DF", 0),
    ("EF", 46),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS0", 0),
    ("CS1", 8),
    ("CS2", 16),
    ("CS3", 24),
    ("CS4", 32),
    ("CS5", 40),
    ("CS6", 48),
];

impl Dscp {
    /// The numeric code point, if the value is valid.
    pub fn value(&self) -> Option<u8> {
        match self {
            Dscp::Number(n) if *n <= 63 => Some(*n),
            Dscp::Number(_) => None,
            Dscp::Name(name) => DSCP_NAMES
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|(_, n)| *n),
        }
    }
}

impl Validate for Dscp {
    fn validate(&self, v: &mut Validator) {
        if self.value().is_none() {
            v.error(format!(
                "{} is not a DSCP value: use 0-63 or a name such as EF, AF11 or CS3",
                match self {
                    Dscp::Number(n) => n.to_string(),
                    Dscp::Name(s) => format!("{s:?}"),
                }
            ));
        }
    }
}

impl Serialize for Dscp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Dscp::Number(n) => serializer.serialize_u8(*n),
            Dscp::Name(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Dscp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DscpVisitor;
        impl Visitor<'_> for DscpVisitor {
            type Value = Dscp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DSCP number (0-63) or name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dscp, E> {
                u8::try_from(n)
                    .map(Dscp::Number)
                    .map_err(|_| E::custom(format!("DSCP value {n} is out of range 0-63")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dscp, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("DSCP value {n} is out of range 0-63")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dscp, E> {
                Ok(Dscp::Name(s.to_string()))
            }
        }
        deserializer.deserialize_any(DscpVisitor)
    }
}

impl JsonSchema for Dscp {
    fn schema_name() -> Cow<'static, str> {
        "Dscp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A DSCP value: a number 0-63 or a name such as EF, AF11 or CS3.",
            "x-kubernetes-int-or-string": true
        })
    }
}
