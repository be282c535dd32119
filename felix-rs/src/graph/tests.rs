#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;

use super::*;
use crate::model::PolicyKind;

/// A graph for node1 holding the resources in `yaml`.
pub(crate) fn graph_from(yaml: &str) -> CalcGraph {
    let mut graph = CalcGraph::new("node1");
    apply_yaml(&mut graph, yaml);
    graph
}

pub(crate) fn apply_yaml(graph: &mut CalcGraph, yaml: &str) {
    for resource in twill_api::load_str("test", yaml).unwrap() {
        graph
            .on_update(Update::from_resource(resource).unwrap())
            .unwrap();
    }
}

pub(crate) fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {node}-k8s-{name}-eth0
  namespace: {ns}
  labels: {{{labels}}}
spec:
  node: {node}
  orchestrator: k8s
  pod: {name}
  endpoint: eth0
  interfaceName: tw{name}
  ipNetworks: [{ip}/32]
---
"
    )
}

fn key(ns: &str, name: &str) -> EndpointKey {
    EndpointKey {
        namespace: ns.into(),
        name: format!("node1-k8s-{name}-eth0"),
    }
}

fn names(tiers: &[TierPolicies]) -> Vec<(String, Vec<String>)> {
    tiers
        .iter()
        .map(|t| {
            (
                t.tier.clone(),
                t.policies.iter().map(|p| p.name.clone()).collect(),
            )
        })
        .collect()
}

fn gnp(name: &str, tier: &str, order: Option<f64>) -> String {
    let order = order.map_or(String::new(), |o| format!("\n  order: {o}"));
    let tier = if tier.is_empty() {
        String::new()
    } else {
        format!("\n  tier: {tier}")
    };
    format!(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: {name}
spec:{tier}{order}
  selector: all()
  ingress: [{{action: Allow}}]
---
"
    )
}

#[test]
fn policies_are_ordered_by_tier_order_then_policy_order_then_name() {
    let yaml = [
        pod("x", "a", "node1", "10.0.0.1", "app: web"),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: first\nspec:\n  order: 10\n---\n".into(),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: unordered\nspec: {}\n---\n".into(),
        gnp("z-no-order", "", None),
        gnp("b-order-5", "", Some(5.0)),
        gnp("a-order-5", "", Some(5.0)),
        gnp("c-order-1", "", Some(1.0)),
        gnp("first.p", "first", Some(100.0)),
        gnp("unordered.p", "unordered", None),
    ]
    .concat();
    let graph = graph_from(&yaml);
    assert_eq!(
        names(&graph.policies_for(&key("x", "a"), Dir::Ingress)),
        vec![
            ("first".to_string(), vec!["first.p".to_string()]),
            (
                "default".to_string(),
                vec![
                    "c-order-1".to_string(),
                    "a-order-5".to_string(),
                    "b-order-5".to_string(),
                    "z-no-order".to_string()
                ]
            ),
            ("unordered".to_string(), vec!["unordered.p".to_string()]),
        ]
    );
}

#[test]
fn a_namespaced_policy_selects_only_endpoints_of_its_namespace() {
    let yaml = [
        pod("x", "a", "node1", "10.0.0.1", "app: web"),
        pod("y", "b", "node1", "10.0.0.2", "app: web"),
        "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web
  namespace: x
spec:
  selector: app == 'web'
  ingress: [{action: Allow}]
"
        .into(),
    ]
    .concat();
    let graph = graph_from(&yaml);
    assert_eq!(graph.policies_for(&key("x", "a"), Dir::Ingress).len(), 1);
    assert!(graph.policies_for(&key("y", "b"), Dir::Ingress).is_empty());
}

#[test]
fn policy_types_default_from_the_rules_present() {
    let cases = [
        // (spec, applies to ingress, applies to egress)
        ("ingress: [{action: Allow}]", true, false),
        ("egress: [{action: Allow}]", false, true),
        (
            "ingress: [{action: Allow}]\n  egress: [{action: Allow}]",
            true,
            true,
        ),
        ("selector: all()", true, false),
        ("types: [Egress]", false, true),
    ];
    for (spec, ingress, egress) in cases {
        let yaml = format!(
            "{}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  {spec}\n",
            pod("x", "a", "node1", "10.0.0.1", "app: web")
        );
        let graph = graph_from(&yaml);
        let k = key("x", "a");
        assert_eq!(
            !graph.policies_for(&k, Dir::Ingress).is_empty(),
            ingress,
            "{spec}"
        );
        assert_eq!(
            !graph.policies_for(&k, Dir::Egress).is_empty(),
            egress,
            "{spec}"
        );
    }
}

#[test]
fn kubernetes_egress_only_policy_does_not_isolate_ingress() {
    let yaml = format!(
        "{}apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: egress-only
  namespace: x
spec:
  podSelector: {{}}
  policyTypes: [Egress]
",
        pod("x", "a", "node1", "10.0.0.1", "app: web")
    );
    let graph = graph_from(&yaml);
    assert!(graph.policies_for(&key("x", "a"), Dir::Ingress).is_empty());
    assert_eq!(graph.policies_for(&key("x", "a"), Dir::Egress).len(), 1);
}

#[test]
fn kubernetes_policy_without_policy_types_isolates_egress_only_with_egress_rules() {
    let yaml = format!(
        "{}apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: both
  namespace: x
spec:
  podSelector: {{}}
  egress: [{{}}]
",
        pod("x", "a", "node1", "10.0.0.1", "app: web")
    );
    let mut graph = graph_from(&yaml);
    // The API's defaulting fills policyTypes in; convert the raw form too.
    assert_eq!(graph.policies_for(&key("x", "a"), Dir::Egress).len(), 1);
    assert_eq!(graph.policies_for(&key("x", "a"), Dir::Ingress).len(), 1);
    let policy = graph
        .policy(&PolicyKey {
            kind: PolicyKind::Kubernetes,
            namespace: "x".into(),
            name: "both".into(),
        })
        .unwrap();
    assert_eq!(policy.order, Some(1000.0));
    assert_eq!(policy.tier, "default");
    graph
        .on_update(Update::KubernetesPolicyDeleted {
            namespace: "x".into(),
            name: "both".into(),
        })
        .unwrap();
    assert!(graph.policies_for(&key("x", "a"), Dir::Egress).is_empty());
}

#[test]
fn remote_endpoints_get_no_policy_but_are_members_of_selector_sets() {
    let yaml = [
        pod("x", "a", "node1", "10.0.0.1", "app: web"),
        pod("x", "r", "node2", "10.0.9.1", "app: web"),
    ]
    .concat();
    let graph = graph_from(&yaml);
    assert_eq!(graph.local_endpoints().count(), 1);
    let sel = Selector::parse("app == 'web'").unwrap();
    let mut g = graph;
    g.add_rule_selector(sel.clone());
    let members: Vec<String> = g
        .selector_members(&sel.id())
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(members, ["10.0.0.1/32", "10.0.9.1/32"]);
}

#[test]
fn namespace_label_changes_move_endpoints_in_and_out_of_namespace_selectors() {
    let mut graph = graph_from(&pod("x", "a", "node2", "10.0.0.1", "app: web"));
    let sel = Selector::parse("team == 'blue'")
        .unwrap()
        .namespace_selector_to_endpoint_selector()
        .unwrap();
    graph.add_rule_selector(sel.clone());
    assert!(graph.selector_members(&sel.id()).is_empty());
    let labels = |team: &str| BTreeMap::from([("team".to_string(), team.to_string())]);
    graph
        .on_update(Update::NamespaceLabels {
            name: "x".into(),
            labels: labels("blue"),
        })
        .unwrap();
    assert_eq!(graph.selector_members(&sel.id()).len(), 1);
    graph
        .on_update(Update::NamespaceLabels {
            name: "x".into(),
            labels: labels("red"),
        })
        .unwrap();
    assert!(graph.selector_members(&sel.id()).is_empty());
}

#[test]
fn the_namespace_name_labels_are_inherited() {
    let mut graph = graph_from(&pod("x", "a", "node2", "10.0.0.1", "app: web"));
    graph
        .on_update(Update::NamespaceLabels {
            name: "x".into(),
            labels: BTreeMap::new(),
        })
        .unwrap();
    for text in [
        "kubernetes.io/metadata.name == 'x'",
        "projectcalico.org/name == 'x'",
    ] {
        let sel = Selector::parse(text)
            .unwrap()
            .namespace_selector_to_endpoint_selector()
            .unwrap();
        graph.add_rule_selector(sel.clone());
        assert_eq!(graph.selector_members(&sel.id()).len(), 1, "{text}");
    }
}

#[test]
fn policies_sharing_a_selector_share_one_index_entry_until_the_last_goes() {
    let policy = |name: &str| {
        format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: {name}
spec:
  ingress: [{{action: Allow, source: {{selector: app == 'db'}}}}]
---
"
        )
    };
    let mut graph = graph_from(&[policy("one"), policy("two")].concat());
    assert_eq!(graph.rule_selector_count(), 1);
    graph
        .on_update(Update::GlobalPolicyDeleted { name: "one".into() })
        .unwrap();
    assert_eq!(graph.rule_selector_count(), 1);
    graph
        .on_update(Update::GlobalPolicyDeleted { name: "two".into() })
        .unwrap();
    assert_eq!(graph.rule_selector_count(), 0);
}

#[test]
fn a_policy_that_does_not_convert_is_removed_and_reported() {
    let mut graph = graph_from(
        &[
            pod("x", "a", "node1", "10.0.0.1", "app: web"),
            gnp("p", "", None),
        ]
        .concat(),
    );
    assert_eq!(graph.policies_for(&key("x", "a"), Dir::Ingress).len(), 1);
    let mut bad: twill_api::policy::GlobalNetworkPolicy =
        twill_api::Object::new("p", None, Default::default());
    bad.spec.selector = "app ==".into();
    let err = graph
        .on_update(Update::GlobalPolicyUpserted(Box::new(bad)))
        .unwrap_err();
    assert!(matches!(err, crate::Error::Selector { .. }), "{err}");
    assert!(graph.policies_for(&key("x", "a"), Dir::Ingress).is_empty());
}

#[test]
fn named_ports_resolve_per_endpoint_and_protocol() {
    let yaml = "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node2-k8s-a-eth0, namespace: x}
spec:
  node: node2
  pod: a
  endpoint: eth0
  interfaceName: twa
  ipNetworks: [10.0.0.1/32]
  ports: [{name: web, port: 80, protocol: TCP}, {name: web, port: 80, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node2-k8s-b-eth0, namespace: x}
spec:
  node: node2
  pod: b
  endpoint: eth0
  interfaceName: twb
  ipNetworks: [10.0.0.2/32]
  ports: [{name: web, port: 8080, protocol: TCP}]
";
    let mut graph = graph_from(yaml);
    graph.add_rule_selector(Selector::all());
    let members = |proto| {
        graph
            .named_port_members(&Selector::all().id(), proto, "web")
            .into_iter()
            .map(|(a, p, n)| format!("{} {p} {n}", a.addr()))
            .collect::<Vec<_>>()
    };
    assert_eq!(members(Some(6)), ["10.0.0.1 6 80", "10.0.0.2 6 8080"]);
    assert_eq!(
        members(None),
        ["10.0.0.1 6 80", "10.0.0.1 17 80", "10.0.0.2 6 8080"]
    );
}

#[test]
fn rules_matching_services_are_refused_with_the_reason_and_enforced_fail_closed() {
    let mut graph = CalcGraph::new("node1");
    let yaml = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: svc}
spec:
  ingress:
  - {action: Allow, source: {services: {name: web, namespace: x}}}
  - {action: Deny, source: {services: {name: web, namespace: x}}}
";
    let resource = twill_api::load_str("test", yaml).unwrap().remove(0);
    let error = graph
        .on_update(Update::from_resource(resource).unwrap())
        .unwrap_err();
    assert!(matches!(error, Error::Unsupported { .. }), "{error}");
    let message = error.to_string();
    for needle in [
        "gnp/svc",
        "ingress[0].source.services",
        "ingress[1].source.services",
        "fail closed",
    ] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    let policy = graph
        .policy(&PolicyKey {
            kind: PolicyKind::Global,
            namespace: String::new(),
            name: "svc".into(),
        })
        .unwrap();
    let actions: Vec<Action> = policy.ingress.iter().map(|r| r.action).collect();
    assert_eq!(actions, [Action::Deny]);
    assert_eq!(
        policy.ingress[0].source,
        crate::model::EntityMatch::default()
    );
}

#[test]
fn host_endpoints_get_global_policies_only_and_lend_their_addresses_to_sets() {
    let yaml = [
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-eth0, labels: {role: node}}
spec: {node: node1, interfaceName: eth0, expectedIPs: [192.168.1.10]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node2-eth0, labels: {role: node}}
spec: {node: node2, interfaceName: eth0, expectedIPs: [192.168.1.11]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: namespaced, namespace: x}
spec: {selector: all(), ingress: [{action: Allow}]}
---
"
        .to_string(),
        gnp("global", "", None),
    ]
    .concat();
    let mut graph = graph_from(&yaml);
    let local: Vec<&String> = graph.local_host_endpoints().map(|(n, _)| n).collect();
    assert_eq!(local, ["node1-eth0"]);
    assert_eq!(
        names(&graph.policies_for_host("node1-eth0", Dir::Ingress)),
        [("default".to_string(), vec!["global".to_string()])]
    );
    let sel = Selector::parse("role == 'node'").unwrap();
    graph.add_rule_selector(sel.clone());
    assert_eq!(graph.selector_members(&sel.id()).len(), 2);
}

#[test]
fn host_policy_flags_are_enforced_without_a_warning() {
    let mut graph = CalcGraph::new("node1");
    let yaml = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'host'
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Deny, source: {nets: [192.0.2.0/24]}}]
";
    let resource = twill_api::load_str("test", yaml).unwrap().remove(0);
    graph
        .on_update(Update::from_resource(resource).unwrap())
        .unwrap();
    let policy = graph
        .policy(&PolicyKey {
            kind: PolicyKind::Global,
            namespace: String::new(),
            name: "untracked".into(),
        })
        .unwrap();
    assert_eq!(policy.host_mode, crate::model::HostPolicyMode::Untracked);
    assert!(policy.unsupported.is_empty());
}

#[test]
fn endpoint_labels_are_held_by_the_index_and_read_back_from_it() {
    let mut graph = graph_from(&pod("x", "a", "node1", "10.0.0.1", "app: web"));
    let key = key("x", "a");
    assert!(graph.endpoint(&key).unwrap().labels.is_empty());
    let labels = graph.endpoint_labels(&key).unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(
        labels
            .get("projectcalico.org/namespace")
            .map(String::as_str),
        Some("x")
    );
    apply_yaml(&mut graph, &pod("x", "a", "node1", "10.0.0.1", "app: db"));
    let labels = graph.endpoint_labels(&key).unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("db"));
    graph
        .on_update(Update::WorkloadEndpointDeleted {
            namespace: "x".into(),
            name: key.name.clone(),
        })
        .unwrap();
    assert_eq!(graph.endpoint_labels(&key), None);
}
