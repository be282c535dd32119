#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;

use super::*;

fn translate(spec: &str) -> Policy {
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n{spec}"
    );
    let resources = twill_api::load_str("test", &yaml).unwrap();
    let twill_api::Resource::KubernetesNetworkPolicy(p) = resources.into_iter().next().unwrap()
    else {
        panic!("not a Kubernetes NetworkPolicy")
    };
    translate_kubernetes_policy(&p).unwrap().1
}

/// Effective labels of a pod `pod` in namespace `ns` labelled `ns=<ns>`.
fn pod(ns: &str, pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("pod".to_string(), pod.to_string()),
        ("projectcalico.org/namespace".to_string(), ns.to_string()),
        (
            "projectcalico.org/orchestrator".to_string(),
            "k8s".to_string(),
        ),
        ("pcns.ns".to_string(), ns.to_string()),
    ])
}

/// Which of the pods some source selector of the ingress rules matches.
fn sources(policy: &Policy) -> Vec<Vec<&'static str>> {
    let pods = [("x", "a"), ("x", "b"), ("y", "a"), ("y", "b")];
    policy
        .ingress
        .iter()
        .map(|r| {
            pods.iter()
                .filter(|(ns, p)| {
                    r.source
                        .selector
                        .as_ref()
                        .is_none_or(|s| s.matches(&pod(ns, p)))
                })
                .map(|(ns, p)| match (*ns, *p) {
                    ("x", "a") => "x/a",
                    ("x", "b") => "x/b",
                    ("y", "a") => "y/a",
                    _ => "y/b",
                })
                .collect()
        })
        .collect()
}

#[test]
fn namespace_and_pod_selectors_in_one_peer_are_anded() {
    let policy = translate(
        "  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
      podSelector: {matchLabels: {pod: a}}
",
    );
    assert_eq!(sources(&policy), [vec!["y/a"]]);
}

#[test]
fn separate_peers_are_ored_as_separate_rules() {
    let policy = translate(
        "  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
    - podSelector: {matchLabels: {pod: a}}
",
    );
    assert_eq!(sources(&policy), [vec!["y/a", "y/b"], vec!["x/a"]]);
}

#[test]
fn a_pod_selector_only_peer_means_the_policy_namespace() {
    let policy = translate(
        "  podSelector: {}
  ingress:
  - from: [{podSelector: {}}]
",
    );
    assert_eq!(sources(&policy), [vec!["x/a", "x/b"]]);
}

#[test]
fn an_empty_namespace_selector_means_every_namespace() {
    let policy = translate(
        "  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {}}]
",
    );
    assert_eq!(sources(&policy), [vec!["x/a", "x/b", "y/a", "y/b"]]);
}

#[test]
fn the_policy_selects_pods_of_its_own_namespace_only() {
    let policy = translate("  podSelector: {matchLabels: {pod: a}}\n");
    assert!(policy.selector.matches(&pod("x", "a")));
    assert!(!policy.selector.matches(&pod("y", "a")));
    assert!(!policy.selector.matches(&pod("x", "b")));
    assert_eq!(
        (policy.ingress_enabled, policy.egress_enabled),
        (true, false)
    );
    assert!(
        policy.ingress.is_empty(),
        "no ingress rules: deny all ingress"
    );
}

#[test]
fn ip_blocks_become_nets_with_except_as_not_nets() {
    let policy = translate(
        "  podSelector: {}
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
",
    );
    assert!(policy.egress_enabled);
    let dst = &policy.egress[0].destination;
    assert_eq!(*dst.nets, ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(
        *dst.not_nets,
        ["10.1.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    assert!(dst.selector.is_none());
}

#[test]
fn ports_group_by_protocol_with_ranges_names_and_protocol_only_entries() {
    let policy = translate(
        "  podSelector: {}
  ingress:
  - ports:
    - {port: 80}
    - {port: http}
    - {protocol: TCP, port: 8000, endPort: 8080}
    - {protocol: UDP}
    - {protocol: UDP, port: 53}
",
    );
    let rules: Vec<(Option<u8>, Vec<String>)> = policy
        .ingress
        .iter()
        .map(|r| {
            (
                r.protocol.map(Protocol::number),
                r.destination
                    .ports
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                Some(6),
                vec!["80".to_string(), "http".into(), "8000:8080".into()]
            ),
            // A protocol-only entry allows every UDP port.
            (Some(17), vec![]),
        ]
    );
}

#[test]
fn rules_without_ports_or_peers_match_everything() {
    let policy = translate("  podSelector: {}\n  ingress: [{}]\n");
    assert_eq!(policy.ingress.len(), 1);
    let rule = &policy.ingress[0];
    assert_eq!(rule.protocol, None);
    assert_eq!(rule.source, EntityMatch::default());
    assert_eq!(rule.destination, EntityMatch::default());
}
