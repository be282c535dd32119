//! Kubernetes `networking.k8s.io/v1` `NetworkPolicy`, built on
//! `k8s-openapi`'s types and validated as the Kubernetes API server does.
//!
//! `k8s-openapi`'s types ignore unknown fields while deserializing. To keep
//! Twill's rule that an unknown field is an error, the loader serializes the
//! typed spec back and reports every key of the input that did not survive
//! the round trip ([`Spec::find_unknown_fields`]).

use std::borrow::Cow;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{check_label_value, check_port_name, check_qualified_name, parse_cidr};
use crate::object::{NoStatus, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

/// The API group and version of Kubernetes' NetworkPolicy.
pub const NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";

/// Spec of a Kubernetes `NetworkPolicy` (`k8s-openapi`'s type, validated).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KubernetesNetworkPolicySpec(pub net::NetworkPolicySpec);

impl JsonSchema for KubernetesNetworkPolicySpec {
    fn schema_name() -> Cow<'static, str> {
        net::NetworkPolicySpec::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        net::NetworkPolicySpec::json_schema(generator)
    }
}

/// A Kubernetes `networking.k8s.io/v1` `NetworkPolicy`.
pub type KubernetesNetworkPolicy = Object<KubernetesNetworkPolicySpec>;

impl Spec for KubernetesNetworkPolicySpec {
    const API_VERSION: &'static str = NETWORKING_API_VERSION;
    const KIND: &'static str = "NetworkPolicy";
    const STORE_KIND: &'static str = "NetworkPolicy.networking.k8s.io";
    const PLURAL: &'static str = "networkpolicies";
    const SHORT_NAMES: &'static [&'static str] = &["netpol"];
    const NAMESPACED: bool = true;
    const FINDS_UNKNOWN_FIELDS: bool = true;
    type Status = NoStatus;

    /// The API server's defaults: `policyTypes` is `[Ingress]`, plus
    /// `Egress` when there are egress rules; a port's protocol is TCP.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        let spec = &mut self.0;
        if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
            let mut types = vec!["Ingress".to_string()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push("Egress".to_string());
            }
            spec.policy_types = Some(types);
        }
        let ingress_ports = spec
            .ingress
            .iter_mut()
            .flatten()
            .filter_map(|r| r.ports.as_mut());
        let egress_ports = spec
            .egress
            .iter_mut()
            .flatten()
            .filter_map(|r| r.ports.as_mut());
        for port in ingress_ports.chain(egress_ports).flatten() {
            if port.protocol.is_none() {
                port.protocol = Some("TCP".to_string());
            }
        }
    }

    fn find_unknown_fields(&self, input: &Value, v: &mut Validator) {
        match serde_json::to_value(self) {
            Ok(output) => report_unknown_keys(input, &output, v),
            Err(e) => v.error(format!("cannot re-serialize the spec: {e}")),
        }
    }
}

/// Reports keys present (and non-null) in `input` but absent from `output`.
fn report_unknown_keys(input: &Value, output: &Value, v: &mut Validator) {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, value) in input {
                match output.get(key) {
                    Some(out) => v.key(key, |v| report_unknown_keys(value, out, v)),
                    None if value.is_null() => {}
                    None => v.key(key, |v| v.error(format!("unknown field `{key}`"))),
                }
            }
        }
        (Value::Array(input), Value::Array(output)) => {
            for (i, (value, out)) in input.iter().zip(output).enumerate() {
                v.index(i, |v| report_unknown_keys(value, out, v));
            }
        }
        _ => {}
    }
}

impl Validate for KubernetesNetworkPolicySpec {
    fn validate(&self, v: &mut Validator) {
        let spec = &self.0;
        if let Some(selector) = &spec.pod_selector {
            v.field("podSelector", |v| validate_label_selector(selector, v));
        }
        v.field("ingress", |v| {
            v.each(spec.ingress.as_deref().unwrap_or_default(), |v, rule| {
                validate_ports(rule.ports.as_deref(), v);
                validate_peers("from", rule.from.as_deref(), v);
            })
        });
        v.field("egress", |v| {
            v.each(spec.egress.as_deref().unwrap_or_default(), |v, rule| {
                validate_ports(rule.ports.as_deref(), v);
                validate_peers("to", rule.to.as_deref(), v);
            })
        });
        if let Some(types) = &spec.policy_types {
            v.field("policyTypes", |v| {
                if types.len() > 2 {
                    v.error("at most two policy types (Ingress, Egress) may be listed");
                }
                v.each(types, |v, t| {
                    if t != "Ingress" && t != "Egress" {
                        v.error(format!(
                            "unsupported policy type {t:?}: must be Ingress or Egress"
                        ));
                    }
                });
                v.no_duplicates(types);
            });
        }
    }
}

/// Validates a `LabelSelector` as `metav1validation.ValidateLabelSelector` does.
pub fn validate_label_selector(selector: &LabelSelector, v: &mut Validator) {
    if let Some(labels) = &selector.match_labels {
        v.field("matchLabels", |v| {
            for (key, value) in labels {
                v.key(key, |v| {
                    v.check(check_qualified_name(key));
                    v.check(check_label_value(value));
                });
            }
        });
    }
    v.field("matchExpressions", |v| {
        v.each(
            selector.match_expressions.as_deref().unwrap_or_default(),
            |v, req| {
                v.field("key", |v| v.check(check_qualified_name(&req.key)));
                let values = req.values.as_deref().unwrap_or_default();
                match req.operator.as_str() {
                    "In" | "NotIn" if values.is_empty() => v.field("values", |v| {
                        v.error(format!(
                            "must be specified when operator is {}",
                            req.operator
                        ))
                    }),
                    "Exists" | "DoesNotExist" if !values.is_empty() => v.field("values", |v| {
                        v.error(format!(
                            "may not be specified when operator is {}",
                            req.operator
                        ))
                    }),
                    "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                    other => v.field("operator", |v| {
                        v.error(format!(
                        "unsupported operator {other:?}: must be In, NotIn, Exists or DoesNotExist"
                    ))
                    }),
                }
                v.field("values", |v| {
                    v.each(values, |v, value| v.check(check_label_value(value)))
                });
            },
        )
    });
}

fn validate_ports(ports: Option<&[net::NetworkPolicyPort]>, v: &mut Validator) {
    v.field("ports", |v| {
        v.each(ports.unwrap_or_default(), |v, port| {
            if let Some(protocol) = &port.protocol
                && !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP")
            {
                v.field("protocol", |v| {
                    v.error(format!(
                        "unsupported protocol {protocol:?}: must be TCP, UDP or SCTP"
                    ))
                });
            }
            let number = match &port.port {
                Some(IntOrString::Int(n)) => {
                    if !(1..=65535).contains(n) {
                        v.field("port", |v| {
                            v.error(format!("port {n} is out of range 1-65535"))
                        });
                    }
                    Some(*n)
                }
                Some(IntOrString::String(name)) => {
                    v.field("port", |v| v.check(check_port_name(name)));
                    None
                }
                None => None,
            };
            if let Some(end) = port.end_port {
                v.field("endPort", |v| match (&port.port, number) {
                    (None, _) => v.error("endPort may not be specified without port"),
                    (Some(_), None) => {
                        v.error("endPort may not be specified when port is a named port")
                    }
                    (Some(_), Some(start)) if end < start => v.error(format!(
                        "endPort {end} must be greater than or equal to port {start}"
                    )),
                    (Some(_), Some(_)) if end > 65535 => {
                        v.error(format!("endPort {end} is out of range 1-65535"))
                    }
                    _ => {}
                });
            }
        })
    });
}

fn validate_peers(name: &'static str, peers: Option<&[net::NetworkPolicyPeer]>, v: &mut Validator) {
    v.field(name, |v| {
        v.each(peers.unwrap_or_default(), |v, peer| {
            let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
            match (&peer.ip_block, selectors) {
                (None, false) => {
                    v.error("must specify a peer: podSelector, namespaceSelector or ipBlock")
                }
                (Some(_), true) => v.error(
                    "may not specify ipBlock together with podSelector or namespaceSelector",
                ),
                _ => {}
            }
            if let Some(selector) = &peer.pod_selector {
                v.field("podSelector", |v| validate_label_selector(selector, v));
            }
            if let Some(selector) = &peer.namespace_selector {
                v.field("namespaceSelector", |v| {
                    validate_label_selector(selector, v)
                });
            }
            if let Some(block) = &peer.ip_block {
                v.field("ipBlock", |v| validate_ip_block(block, v));
            }
        })
    });
}

/// `cidr` is a CIDR (with a prefix length, as Kubernetes requires); each
/// `except` is a CIDR strictly inside it.
fn validate_ip_block(block: &net::IPBlock, v: &mut Validator) {
    let cidr = {
        let mut parsed = None;
        v.field("cidr", |v| {
            if block.cidr.is_empty() {
                v.error("cidr is required");
            } else if !block.cidr.contains('/') {
                v.error(format!(
                    "{:?} is not a CIDR: a prefix length is required",
                    block.cidr
                ));
            } else {
                match parse_cidr(&block.cidr) {
                    Ok(net) => parsed = Some(net),
                    Err(e) => v.error(e),
                }
            }
        });
        parsed
    };
    v.field("except", |v| {
        v.each(block.except.as_deref().unwrap_or_default(), |v, text| {
            let except = match parse_cidr(text) {
                Ok(net) if text.contains('/') => net,
                Ok(_) => {
                    return v.error(format!(
                        "{text:?} is not a CIDR: a prefix length is required"
                    ));
                }
                Err(e) => return v.error(e),
            };
            if let Some(cidr) = cidr {
                let inside = cidr.trunc().contains(&except.trunc())
                    && except.prefix_len() > cidr.prefix_len();
                if !inside {
                    v.error(format!(
                        "{text:?} must be a strict subset of cidr {:?}",
                        block.cidr
                    ));
                }
            }
        })
    });
}
