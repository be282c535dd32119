//! Calico's `HostEndpoint` (a host interface under policy) and
//! `WorkloadEndpoint` (a pod's interface, namespaced).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use twill_selector::NAMESPACE_LABEL;

use crate::common::{
    IpNet, Protocol, check_dns1123_subdomain, check_interface_name, check_mac, check_port_name,
    parse_cidr, parse_ip,
};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, Spec};
use crate::validate::{Validate, Validator};

/// A named port an endpoint listens on, for named-port rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPort {
    /// The port's name, as rules refer to it.
    pub name: String,
    /// TCP, UDP or SCTP.
    pub protocol: Protocol,
    /// The port number, 1-65535.
    pub port: u16,
}

/// Spec of a Calico `HostEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostEndpointSpec {
    /// The node the interface is on (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The interface, or `*` for all of the host's interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    /// The interface's expected IPs (used to match the interface when `interfaceName` is absent).
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    /// Profiles whose rules apply to the endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// A Calico `HostEndpoint`.
pub type HostEndpoint = Object<HostEndpointSpec>;

fn validate_profiles(profiles: &[String], v: &mut Validator) {
    v.field("profiles", |v| {
        v.each(profiles, |v, p| v.check(check_dns1123_subdomain(p)))
    });
}

fn validate_port_protocol(protocol: Protocol, v: &mut Validator) {
    v.field("protocol", |v| {
        v.check(protocol.check());
        if !protocol.supports_ports() {
            v.error(format!(
                "protocol {protocol} does not support ports: must be TCP, UDP or SCTP"
            ));
        }
    });
}

impl Validate for EndpointPort {
    fn validate(&self, v: &mut Validator) {
        v.field("name", |v| v.check(check_port_name(&self.name)));
        validate_port_protocol(self.protocol, v);
        if self.port == 0 {
            v.field("port", |v| {
                v.error("port 0 is out of range: port numbers must be 1-65535")
            });
        }
    }
}

impl Validate for HostEndpointSpec {
    fn validate(&self, v: &mut Validator) {
        v.field("node", |v| {
            if self.node.is_empty() {
                v.error("node must be specified");
            } else {
                v.check(check_dns1123_subdomain(&self.node));
            }
        });
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            v.field("interfaceName", |v| {
                v.error("at least one of interfaceName or expectedIPs must be specified")
            });
        } else if !self.interface_name.is_empty() {
            v.field("interfaceName", |v| {
                v.check(check_interface_name(&self.interface_name))
            });
        }
        v.field("expectedIPs", |v| {
            v.each(&self.expected_ips, |v, ip| {
                v.check(parse_ip(ip).map(|_| ()))
            })
        });
        validate_profiles(&self.profiles, v);
        v.nested("ports", &self.ports);
    }
}

impl Spec for HostEndpointSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "HostEndpoint";
    const PLURAL: &'static str = "hostendpoints";
    const SHORT_NAMES: &'static [&'static str] = &["hep", "heps"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

/// A port of a workload endpoint (a container port, maybe with a host port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointPort {
    /// The port's name (may be empty when `hostPort` is set).
    #[serde(default)]
    pub name: String,
    /// TCP, UDP or SCTP.
    pub protocol: Protocol,
    /// The container port, 1-65535.
    pub port: u16,
    /// The host port mapped to it (0: none).
    #[serde(default)]
    pub host_port: u16,
    /// The host IP the host port binds to.
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

/// A floating IP: external address NATed to one of the endpoint's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpNat {
    /// The endpoint's own address.
    #[serde(rename = "internalIP")]
    pub internal_ip: String,
    /// The external address.
    #[serde(rename = "externalIP")]
    pub external_ip: String,
}

/// Spec of a Calico `WorkloadEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    /// The orchestrator (`k8s`, `cni`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    /// The workload's name (non-Kubernetes orchestrators).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// The node the endpoint is on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The container's ID.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The endpoint's name within the workload (e.g. `eth0`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The pod's service account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// The endpoint's addresses, each a /32 or /128.
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// Floating IPs.
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    /// IPv4 gateway of the endpoint.
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    /// IPv6 gateway of the endpoint.
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    /// Profiles whose rules apply to the endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host-side interface (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    /// The container-side MAC address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Container ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    /// Source prefixes the endpoint may send from besides its own addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
}

/// A Calico `WorkloadEndpoint`.
pub type WorkloadEndpoint = Object<WorkloadEndpointSpec>;

/// The label Calico adds to a workload endpoint with its orchestrator.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";

/// The label Calico adds to a workload endpoint with its service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";

impl WorkloadEndpoint {
    /// The labels selectors see on this endpoint, as Calico gives them: its
    /// own, plus `projectcalico.org/namespace`, `projectcalico.org/orchestrator`
    /// (`k8s` unless set) and, with a service account,
    /// `projectcalico.org/serviceaccount`. (Labels inherited from the
    /// namespace and service account profiles are not included.)
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.metadata.labels.clone();
        let namespace = self.metadata.namespace.as_deref().unwrap_or("default");
        labels.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
        let orchestrator = match self.spec.orchestrator.as_str() {
            "" => "k8s",
            other => other,
        };
        labels.insert(ORCHESTRATOR_LABEL.to_string(), orchestrator.to_string());
        if !self.spec.service_account_name.is_empty() {
            labels.insert(
                SERVICE_ACCOUNT_LABEL.to_string(),
                self.spec.service_account_name.clone(),
            );
        }
        labels
    }
}

impl Validate for WorkloadEndpointPort {
    fn validate(&self, v: &mut Validator) {
        if self.name.is_empty() {
            if self.host_port == 0 {
                v.field("name", |v| {
                    v.error("name must not be empty if no hostPort is specified")
                });
            }
        } else {
            v.field("name", |v| v.check(check_port_name(&self.name)));
        }
        validate_port_protocol(self.protocol, v);
        if self.port == 0 {
            v.field("port", |v| {
                v.error("port 0 is out of range: port numbers must be 1-65535")
            });
        }
        if !self.host_ip.is_empty() {
            v.field("hostIP", |v| v.check(parse_cidr(&self.host_ip).map(|_| ())));
        }
    }
}

fn check_name_field(name: &'static str, value: &str, v: &mut Validator) {
    if !value.is_empty() {
        v.field(name, |v| v.check(check_dns1123_subdomain(value)));
    }
}

impl Validate for WorkloadEndpointSpec {
    fn validate(&self, v: &mut Validator) {
        for (name, value) in [
            ("orchestrator", &self.orchestrator),
            ("workload", &self.workload),
            ("node", &self.node),
            ("pod", &self.pod),
            ("endpoint", &self.endpoint),
            ("serviceAccountName", &self.service_account_name),
        ] {
            check_name_field(name, value, v);
        }
        if !self.container_id.is_empty() {
            let ok = self
                .container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !self.container_id.starts_with('-')
                && !self.container_id.ends_with('-');
            if !ok {
                v.field("containerID", |v| {
                    v.error(format!(
                        "{:?} is not a valid container ID",
                        self.container_id
                    ))
                });
            }
        }
        let mut networks: Vec<IpNet> = Vec::new();
        v.field("ipNetworks", |v| {
            v.each(&self.ip_networks, |v, text| match parse_cidr(text) {
                Err(e) => v.error(e),
                Ok(net) if net.prefix_len() != net.max_prefix_len() => v.error(format!(
                    "{text:?} contains multiple addresses: must be a /32 or /128"
                )),
                Ok(net) => networks.push(net),
            })
        });
        v.field("ipNATs", |v| {
            v.each(&self.ip_nats, |v, nat| {
                let internal = v_ip(v, "internalIP", &nat.internal_ip);
                let external = v_ip(v, "externalIP", &nat.external_ip);
                if let (Some(i), Some(e)) = (internal, external) {
                    if i.is_ipv4() != e.is_ipv4() {
                        v.field("externalIP", |v| v.error("mismatched IP versions"));
                    }
                    if !networks.iter().any(|n| n.contains(&i)) {
                        v.field("internalIP", |v| {
                            v.error("NAT is not in the endpoint's ipNetworks")
                        });
                    }
                }
            })
        });
        if !self.ipv4_gateway.is_empty() {
            v.field("ipv4Gateway", |v| match parse_ip(&self.ipv4_gateway) {
                Ok(ip) if ip.is_ipv4() => {}
                Ok(_) => v.error("ipv4Gateway must be an IPv4 address"),
                Err(e) => v.error(e),
            });
        }
        if !self.ipv6_gateway.is_empty() {
            v.field("ipv6Gateway", |v| match parse_ip(&self.ipv6_gateway) {
                Ok(ip) if ip.is_ipv6() => {}
                Ok(_) => v.error("ipv6Gateway must be an IPv6 address"),
                Err(e) => v.error(e),
            });
        }
        validate_profiles(&self.profiles, v);
        v.field("interfaceName", |v| {
            if self.interface_name.is_empty() {
                v.error("interfaceName must be specified");
            } else {
                v.check(check_interface_name(&self.interface_name));
            }
        });
        if !self.mac.is_empty() {
            v.field("mac", |v| v.check(check_mac(&self.mac)));
        }
        v.nested("ports", &self.ports);
        v.field("allowSpoofedSourcePrefixes", |v| {
            v.each(&self.allow_spoofed_source_prefixes, |v, p| {
                v.check(parse_cidr(p).map(|_| ()))
            })
        });
    }
}

fn v_ip(v: &mut Validator, name: &'static str, text: &str) -> Option<std::net::IpAddr> {
    let mut out = None;
    v.field(name, |v| match parse_ip(text) {
        Ok(ip) => out = Some(ip),
        Err(e) => v.error(e),
    });
    out
}

impl Spec for WorkloadEndpointSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "WorkloadEndpoint";
    const PLURAL: &'static str = "workloadendpoints";
    const SHORT_NAMES: &'static [&'static str] = &["wep", "weps"];
    const NAMESPACED: bool = true;
    type Status = NoStatus;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn wep(namespace: Option<&str>, orchestrator: &str, sa: &str) -> WorkloadEndpoint {
        let mut wep: WorkloadEndpoint = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1-k8s-pod1-eth0", "labels": {"app": "web"}},
            "spec": {"node": "n1", "interfaceName": "twl0000000001"},
        }))
        .unwrap();
        wep.metadata.namespace = namespace.map(str::to_string);
        wep.spec.orchestrator = orchestrator.into();
        wep.spec.service_account_name = sa.into();
        wep
    }

    #[test]
    fn selectors_see_calicos_namespace_orchestrator_and_service_account_labels() {
        let cases = [
            (Some("prod"), "", "", "prod", "k8s", None),
            (None, "openstack", "", "default", "openstack", None),
            (Some("prod"), "", "api", "prod", "k8s", Some("api")),
        ];
        for (namespace, orchestrator, sa, want_ns, want_orch, want_sa) in cases {
            let labels = wep(namespace, orchestrator, sa).selector_labels();
            assert_eq!(labels["app"], "web");
            assert_eq!(labels[NAMESPACE_LABEL], want_ns);
            assert_eq!(labels[ORCHESTRATOR_LABEL], want_orch);
            assert_eq!(
                labels.get(SERVICE_ACCOUNT_LABEL).map(String::as_str),
                want_sa
            );
        }
    }
}
