//! Calico's policy rule model, shared by NetworkPolicy, GlobalNetworkPolicy
//! and Profile, with Calico's validation rules.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::{check_dns1123_subdomain, check_selector, validate_annotations};
use super::net::parse_cidr;
use super::numorstring::{Port, Protocol};
use crate::validate::{Validate, Validator};

/// What a rule does with a packet it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    /// Accept the packet.
    Allow,
    /// Drop the packet.
    Deny,
    /// Log the packet and continue with the next rule.
    Log,
    /// Skip the rest of the tier and go to the next tier.
    Pass,
}

/// One ingress or egress rule: match criteria and an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// What to do with matching packets.
    pub action: Action,
    /// Restricts the rule to IPv4 (4) or IPv6 (6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// IP protocol to match; required for numeric ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// ICMP type and code to match (protocol must be ICMP or ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// IP protocol not to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// ICMP type and code not to match.
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// Criteria on the packet's source.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    /// Criteria on the packet's destination.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// HTTP criteria (application-layer policy; ingress Allow rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Annotations about the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// ICMP type and code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IcmpFields {
    /// ICMP type, 0-254 (e.g. 8 is echo request).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 254))]
    pub icmp_type: Option<u8>,
    /// ICMP code, 0-255; requires a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// Criteria on one end (source or destination) of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityRule {
    /// CIDRs the address must be in (a bare IP is a /32 or /128).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// CIDRs the address must not be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Endpoints (and network sets) that must match this selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Endpoints that must not match this selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    /// Namespaces the endpoint must be in (`global()` selects non-namespaced entities).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    /// Ports (numbers, ranges or names) to match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Ports not to match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// Service accounts the endpoint must run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// A Kubernetes Service whose endpoints (and ports) to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
}

impl EntityRule {
    /// Whether no criterion is set (the entity matches everything).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Matches pods by service account.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// Service account names (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A selector over service account labels (ANDed with `names`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// Matches the endpoints of a Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMatch {
    /// The Service's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The Service's namespace (defaults to the policy's namespace).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// HTTP request criteria.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    /// HTTP methods (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths (any of them), each exact or a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

/// One HTTP path criterion: exactly one of `exact` or `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPath {
    /// The path, exactly.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// A path prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Extra information attached to a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleMetadata {
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Whether rules are ingress or egress rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rules on traffic towards the selected endpoints.
    Ingress,
    /// Rules on traffic from the selected endpoints.
    Egress,
}

/// Whether the rules belong to a namespaced or a global resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    /// NetworkPolicy: Service names default to the policy's namespace.
    Namespaced,
    /// GlobalNetworkPolicy and Profile: Service matches need a namespace.
    Global,
}

const PORTS_NEED_PROTOCOL: &str =
    "rules with numeric ports or port ranges must set protocol to TCP, UDP or SCTP";
const PROTOCOL_HAS_NO_PORTS: &str =
    "rules that specify ports must set protocol to TCP, UDP or SCTP";

impl Validate for Rule {
    fn validate(&self, v: &mut Validator) {
        if let Some(version) = self.ip_version
            && version != 4
            && version != 6
        {
            v.field("ipVersion", |v| {
                v.error(format!("ipVersion {version} is invalid: must be 4 or 6"))
            });
        }
        for (name, protocol) in [
            ("protocol", self.protocol),
            ("notProtocol", self.not_protocol),
        ] {
            let Some(protocol) = protocol else { continue };
            v.field(name, |v| {
                v.check(protocol.check());
                if protocol.is_icmp() && self.ip_version == Some(6) {
                    v.error("protocol ICMP requires ipVersion 4");
                }
                if protocol.is_icmpv6() && self.ip_version == Some(4) {
                    v.error("protocol ICMPv6 requires ipVersion 6");
                }
            });
        }
        if let Some(icmp) = &self.icmp {
            v.field("icmp", |v| {
                let icmp_protocol = self.protocol.is_some_and(|p| p.is_icmp() || p.is_icmpv6());
                if !icmp_protocol {
                    v.error("ICMP fields require protocol to be ICMP or ICMPv6");
                }
                icmp.validate(v);
            });
        }
        if let Some(icmp) = &self.not_icmp {
            v.field("notICMP", |v| icmp.validate(v));
        }
        v.field("source", |v| self.validate_entity(&self.source, v));
        v.field("destination", |v| {
            self.validate_entity(&self.destination, v)
        });
        if self.destination.services.is_some() {
            for (name, ports) in [
                ("ports", &self.destination.ports),
                ("notPorts", &self.destination.not_ports),
            ] {
                if !ports.is_empty() {
                    v.field("destination", |v| {
                        v.field(name, |v| {
                            v.error("ports and notPorts cannot be specified with services")
                        })
                    });
                }
            }
        }
        self.validate_ip_versions(v);
        if let Some(http) = &self.http {
            v.field("http", |v| {
                if self.action != Action::Allow {
                    v.error("HTTP match is only valid on Allow rules");
                }
                if self.protocol.is_some_and(|p| p.number() != 6) {
                    v.error("rules with HTTP match must have protocol TCP or unset");
                }
                http.validate(v);
            });
        }
        if let Some(metadata) = &self.metadata {
            v.field("metadata", |v| {
                v.field("annotations", |v| {
                    validate_annotations(&metadata.annotations, v)
                })
            });
        }
    }
}

impl Rule {
    fn validate_entity(&self, entity: &EntityRule, v: &mut Validator) {
        for (name, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
            v.field(name, |v| {
                v.each(ports, |v, port| {
                    v.check(port.check());
                    match self.protocol {
                        None if !port.is_named() => v.error(PORTS_NEED_PROTOCOL),
                        Some(p) if !p.supports_ports() => v.error(PROTOCOL_HAS_NO_PORTS),
                        _ => {}
                    }
                })
            });
        }
        for (name, nets) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
            v.field(name, |v| {
                v.each(nets, |v, text| match parse_cidr(text) {
                    Err(e) => v.error(e),
                    Ok(net) if net.trunc() != net => v.error(format!(
                        "{text:?} is not a network address: host bits are set (did you mean {}?)",
                        net.trunc()
                    )),
                    Ok(net) if name == "notNets" && net.prefix_len() == 0 => {
                        v.error(format!("catch-all {text:?} in notNets matches no traffic"))
                    }
                    Ok(_) => {}
                })
            });
        }
        for (name, selector) in [
            ("selector", &entity.selector),
            ("notSelector", &entity.not_selector),
            ("namespaceSelector", &entity.namespace_selector),
        ] {
            if selector.is_empty() {
                continue;
            }
            v.field(name, |v| {
                v.check(check_selector(selector));
                if name != "namespaceSelector" && selector.contains("global(") {
                    v.error("global() can only be used in an entity rule's namespaceSelector");
                }
                if name == "namespaceSelector"
                    && selector.contains("global(")
                    && selector.trim() != "global()"
                {
                    v.error("global() cannot be combined with other selectors");
                }
            });
        }
        if let Some(accounts) = &entity.service_accounts
            && !accounts.selector.is_empty()
        {
            v.field("serviceAccounts", |v| {
                v.field("selector", |v| v.check(check_selector(&accounts.selector)))
            });
        }
        if let Some(services) = &entity.services {
            v.field("services", |v| {
                if services.name.is_empty() {
                    v.field("name", |v| v.error("services must specify a service name"));
                } else {
                    v.field("name", |v| v.check(check_dns1123_subdomain(&services.name)));
                }
                if !services.namespace.is_empty() {
                    v.field("namespace", |v| {
                        v.check(check_dns1123_subdomain(&services.namespace))
                    });
                }
                let conflicts = [
                    ("namespaceSelector", !entity.namespace_selector.is_empty()),
                    ("serviceAccounts", entity.service_accounts.is_some()),
                    ("selector", !entity.selector.is_empty()),
                    ("notSelector", !entity.not_selector.is_empty()),
                    ("nets", !entity.nets.is_empty()),
                    ("notNets", !entity.not_nets.is_empty()),
                ];
                for (other, set) in conflicts {
                    if set {
                        v.error(format!(
                            "services cannot be combined with {other} in the same entity rule"
                        ));
                    }
                }
            });
        }
    }

    /// Calico rejects rules whose CIDRs mix IPv4 and IPv6, or disagree with `ipVersion`.
    fn validate_ip_versions(&self, v: &mut Validator) {
        let mut seen_v4 = false;
        let mut seen_v6 = false;
        let fields = [
            ("source", "nets", &self.source.nets),
            ("source", "notNets", &self.source.not_nets),
            ("destination", "nets", &self.destination.nets),
            ("destination", "notNets", &self.destination.not_nets),
        ];
        for (end, name, nets) in fields {
            let parsed: Vec<_> = nets.iter().filter_map(|n| parse_cidr(n).ok()).collect();
            let v4 = parsed.iter().any(|n| matches!(n, ipnet::IpNet::V4(_)));
            let v6 = parsed.iter().any(|n| matches!(n, ipnet::IpNet::V6(_)));
            v.field(end, |v| {
                v.field(name, |v| {
                    if let Some(version) = self.ip_version
                        && ((v4 && version != 4) || (v6 && version != 6))
                    {
                        v.error(format!(
                            "CIDR version does not match the rule's ipVersion {version}"
                        ));
                    }
                    if (v4 && (v6 || seen_v6)) || (v6 && seen_v4) {
                        v.error("rule contains both IPv4 and IPv6 CIDRs");
                    }
                })
            });
            seen_v4 |= v4;
            seen_v6 |= v6;
        }
    }
}

impl Validate for IcmpFields {
    fn validate(&self, v: &mut Validator) {
        if let Some(t) = self.icmp_type
            && t > 254
        {
            v.field("type", |v| {
                v.error(format!("ICMP type {t} is out of range 0-254"))
            });
        }
        if self.code.is_some() && self.icmp_type.is_none() {
            v.field("code", |v| {
                v.error("ICMP code specified without an ICMP type")
            });
        }
    }
}

impl Validate for HttpMatch {
    fn validate(&self, v: &mut Validator) {
        v.field("methods", |v| v.no_duplicates(&self.methods));
        v.field("paths", |v| {
            v.each(&self.paths, |v, path| {
                let value = match (path.exact.is_empty(), path.prefix.is_empty()) {
                    (false, false) => {
                        return v.error("a path match sets exactly one of exact or prefix, not both");
                    }
                    (true, true) => return v.error("a path match must set exact or prefix"),
                    (false, true) => &path.exact,
                    (true, false) => &path.prefix,
                };
                if !value.starts_with('/') || value.contains(['?', ' ', '#']) {
                    v.error(format!("invalid path {value:?}: must start with '/' and not contain '?', '#' or spaces"));
                }
            })
        });
    }
}

/// Validates a policy's `ingress` or `egress` rules, including the rules
/// that depend on the direction and on the policy's scope.
pub fn validate_rules(rules: &[Rule], direction: Direction, scope: PolicyScope, v: &mut Validator) {
    v.each(rules, |v, rule| {
        rule.validate(v);
        let (wrong_end, wrong_name, right_end) = match direction {
            Direction::Ingress => (&rule.destination, "destination", &rule.source),
            Direction::Egress => (&rule.source, "source", &rule.destination),
        };
        if wrong_end.services.is_some() {
            let which = match direction {
                Direction::Ingress => "not allowed in an ingress rule's destination",
                Direction::Egress => "not allowed in an egress rule's source",
            };
            v.field(wrong_name, |v| v.field("services", |v| v.error(which)));
        }
        if direction == Direction::Egress && rule.http.is_some() {
            v.field("http", |v| {
                v.error("HTTP match is not allowed in egress rules")
            });
        }
        if scope == PolicyScope::Global
            && let Some(services) = &right_end.services
            && services.namespace.is_empty()
        {
            let end = if direction == Direction::Ingress {
                "source"
            } else {
                "destination"
            };
            v.field(end, |v| {
                v.field("services", |v| {
                    v.field("namespace", |v| {
                        v.error("a global policy's service match must specify a namespace")
                    })
                })
            });
        }
    });
}
