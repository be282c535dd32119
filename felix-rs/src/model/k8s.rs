//! Kubernetes NetworkPolicy → Felix's [`Policy`], as Calico translates it:
//! tier `default`, order 1000, the pod selector restricted to pods
//! (`projectcalico.org/orchestrator == 'k8s'`) of the policy's namespace,
//! `policyTypes` defaulting, one rule per (peer, protocol) so that peers
//! OR together while a peer's namespace and pod selectors AND together.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use twill_api::common::{Action, Port, Protocol};
use twill_api::k8s::KubernetesNetworkPolicy;
use twill_selector::{Expr, Selector};

use super::{
    EntityMatch, KUBERNETES_POLICY_ORDER, ORCHESTRATOR_LABEL, Policy, PolicyKey, PolicyKind,
    PolicyRule, expr_selector, namespace_is, parse_nets,
};
use crate::Error;

/// A Kubernetes label selector as a Calico selector expression.
fn label_selector_expr(field: &str, selector: &LabelSelector) -> Result<Expr, Error> {
    let mut ops = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        ops.push(Expr::Eq(k.clone(), v.clone()));
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.iter().flatten().cloned().collect();
        ops.push(match req.operator.as_str() {
            "In" => Expr::In(req.key.clone(), values),
            "NotIn" => Expr::NotIn(req.key.clone(), values),
            "Exists" => Expr::Has(req.key.clone()),
            "DoesNotExist" => Expr::negate(Expr::Has(req.key.clone())),
            other => {
                return Err(Error::Translation {
                    field: field.to_string(),
                    reason: format!("unknown label selector operator {other:?}"),
                });
            }
        });
    }
    Ok(match ops.len() {
        0 => Expr::All,
        1 => ops.remove(0),
        _ => Expr::and(ops),
    })
}

fn is_pod() -> Expr {
    Expr::Eq(ORCHESTRATOR_LABEL.to_string(), "k8s".to_string())
}

/// The side of a rule a peer describes.
fn peer_entity(field: &str, peer: &net::NetworkPolicyPeer, ns: &str) -> Result<EntityMatch, Error> {
    if let Some(block) = &peer.ip_block {
        return Ok(EntityMatch {
            nets: parse_nets(
                &format!("{field}.ipBlock.cidr"),
                std::slice::from_ref(&block.cidr),
            )?
            .into(),
            not_nets: parse_nets(
                &format!("{field}.ipBlock.except"),
                block.except.as_deref().unwrap_or_default(),
            )?
            .into(),
            ..EntityMatch::default()
        });
    }
    let pods = match &peer.pod_selector {
        Some(sel) => label_selector_expr(&format!("{field}.podSelector"), sel)?,
        None => Expr::All,
    };
    let scope = match &peer.namespace_selector {
        Some(sel) => {
            let expr = label_selector_expr(&format!("{field}.namespaceSelector"), sel)?;
            expr_selector(field, expr)?
                .namespace_selector_to_endpoint_selector()
                .map_err(|e| Error::Translation {
                    field: field.to_string(),
                    reason: e.to_string(),
                })?
        }
        // A peer with only a pod selector means pods of the policy's namespace.
        None => expr_selector(field, namespace_is(ns))?,
    };
    let selector = scope.and(&expr_selector(field, Expr::and(vec![is_pod(), pods]))?);
    Ok(EntityMatch {
        selector: Some(Box::new(selector)),
        ..EntityMatch::default()
    })
}

/// A protocol (none: any) and its ports (empty: every port).
type PortGroup = (Option<Protocol>, Vec<Port>);

/// Ports grouped by protocol.
fn port_groups(
    field: &str,
    ports: Option<&[net::NetworkPolicyPort]>,
) -> Result<Vec<PortGroup>, Error> {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return Ok(vec![(None, Vec::new())]);
    };
    let mut groups: BTreeMap<u8, (Protocol, Option<Vec<Port>>)> = BTreeMap::new();
    for (i, p) in ports.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let proto_text = p.protocol.as_deref().unwrap_or("TCP");
        let protocol = Protocol::parse(proto_text).map_err(|reason| Error::Translation {
            field: format!("{field}.protocol"),
            reason,
        })?;
        let port = match (&p.port, p.end_port) {
            (None, _) => None,
            (Some(IntOrString::Int(n)), end) => {
                let min = u16::try_from(*n).map_err(|_| Error::Translation {
                    field: format!("{field}.port"),
                    reason: format!("port {n} is out of range"),
                })?;
                Some(match end {
                    Some(e) => Port::Range {
                        min,
                        max: u16::try_from(e).map_err(|_| Error::Translation {
                            field: format!("{field}.endPort"),
                            reason: format!("endPort {e} is out of range"),
                        })?,
                    },
                    None => Port::number(min),
                })
            }
            (Some(IntOrString::String(s)), _) => {
                Some(Port::parse(s).map_err(|reason| Error::Translation {
                    field: format!("{field}.port"),
                    reason,
                })?)
            }
        };
        let entry = groups
            .entry(protocol.number())
            .or_insert_with(|| (protocol, Some(Vec::new())));
        match (port, &mut entry.1) {
            // A protocol-only entry allows every port of that protocol.
            (None, list) => *list = None,
            (Some(port), Some(list)) => list.push(port),
            (Some(_), None) => {}
        }
    }
    Ok(groups
        .into_values()
        .map(|(proto, ports)| (Some(proto), ports.unwrap_or_default()))
        .collect())
}

fn rules(
    field: &str,
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    ns: &str,
    ingress: bool,
) -> Result<Vec<PolicyRule>, Error> {
    let peers: Vec<EntityMatch> = match peers.filter(|p| !p.is_empty()) {
        None => vec![EntityMatch::default()],
        Some(peers) => peers
            .iter()
            .enumerate()
            .map(|(i, p)| peer_entity(&format!("{field}.peers[{i}]"), p, ns))
            .collect::<Result<_, _>>()?,
    };
    let groups = port_groups(&format!("{field}.ports"), ports)?;
    let mut out = Vec::new();
    for peer in &peers {
        for (protocol, ports) in &groups {
            let dst_ports = EntityMatch {
                ports: ports.as_slice().into(),
                ..EntityMatch::default()
            };
            let (source, destination) = if ingress {
                (peer.clone(), dst_ports)
            } else {
                let mut dst = peer.clone();
                dst.ports = ports.as_slice().into();
                (EntityMatch::default(), dst)
            };
            out.push(PolicyRule {
                action: Action::Allow,
                ip_version: None,
                protocol: *protocol,
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
            });
        }
    }
    Ok(out)
}

/// Translates a Kubernetes NetworkPolicy into Felix's policy form.
pub fn translate_kubernetes_policy(
    policy: &KubernetesNetworkPolicy,
) -> Result<(PolicyKey, Policy), Error> {
    let ns = policy.namespace().unwrap_or("default").to_string();
    let spec = &policy.spec.0;
    let pods = match &spec.pod_selector {
        Some(sel) => label_selector_expr("podSelector", sel)?,
        None => Expr::All,
    };
    let selector: Selector = expr_selector(
        "podSelector",
        Expr::and(vec![namespace_is(&ns), is_pod(), pods]),
    )?;
    let has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
    let (ingress_enabled, egress_enabled) = match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        // Ingress always; Egress only when egress rules are present.
        _ => (true, has_egress),
    };
    let mut ingress = Vec::new();
    if ingress_enabled {
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            ingress.extend(rules(
                &format!("ingress[{i}]"),
                r.from.as_deref(),
                r.ports.as_deref(),
                &ns,
                true,
            )?);
        }
    }
    let mut egress = Vec::new();
    if egress_enabled {
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            egress.extend(rules(
                &format!("egress[{i}]"),
                r.to.as_deref(),
                r.ports.as_deref(),
                &ns,
                false,
            )?);
        }
    }
    Ok((
        PolicyKey {
            kind: PolicyKind::Kubernetes,
            namespace: ns,
            name: policy.name().to_string(),
        },
        Policy {
            tier: twill_api::policy::DEFAULT_TIER.to_string(),
            order: Some(KUBERNETES_POLICY_ORDER),
            selector,
            ingress_enabled,
            egress_enabled,
            ingress,
            egress,
            unsupported: Vec::new(),
            host_mode: super::HostPolicyMode::Normal,
        },
    ))
}

#[cfg(test)]
mod tests;
