#![allow(clippy::unwrap_used)]

use pretty_assertions::assert_eq;

use super::*;
use crate::graph::tests::{graph_from, pod};

fn bodies(ruleset: &Ruleset, chain: &str) -> Vec<String> {
    ruleset.chains[chain]
        .rules
        .iter()
        .map(|r| r.body.clone())
        .collect()
}

fn policy_rules(yaml_rules: &str) -> Vec<String> {
    let yaml = format!(
        "{}apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p
spec:
  ingress:
{yaml_rules}
",
        pod("x", "a", "node1", "10.0.0.1", "app: web")
    );
    let graph = graph_from(&yaml);
    let ruleset = render(&graph, &RenderConfig::default());
    let key = PolicyKey {
        kind: crate::model::PolicyKind::Global,
        namespace: String::new(),
        name: "p".into(),
    };
    bodies(&ruleset, &policy_chain_name(&key, Dir::Ingress))
}

#[test]
fn an_endpoint_no_policy_selects_is_allowed_by_its_profile() {
    let graph = graph_from(&pod("x", "a", "node1", "10.0.0.1", "app: web"));
    let ruleset = render(&graph, &RenderConfig::default());
    for chain in ["from-twa", "to-twa"] {
        assert_eq!(
            bodies(&ruleset, chain),
            ["meta mark set meta mark & 0xfffcffff"]
        );
    }
}

#[test]
fn unprogrammed_workload_interfaces_are_dropped() {
    let ruleset = render(&graph_from(""), &RenderConfig::default());
    for chain in [FROM_WORKLOAD_CHAIN, TO_WORKLOAD_CHAIN] {
        assert_eq!(bodies(&ruleset, chain).last().unwrap(), "drop", "{chain}");
    }
    assert!(ruleset.maps[FROM_DISPATCH_MAP].elements.is_empty());
}

#[test]
fn a_tier_with_default_action_pass_has_no_end_of_tier_drop() {
    let yaml = format!(
        "{}apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: admin}}
spec: {{order: 1, defaultAction: Pass}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: admin.p}}
spec:
  tier: admin
  ingress: [{{action: Deny, source: {{nets: [10.9.0.0/16]}}}}]
",
        pod("x", "a", "node1", "10.0.0.1", "app: web")
    );
    let ruleset = render(&graph_from(&yaml), &RenderConfig::default());
    let rules = bodies(&ruleset, "to-twa");
    assert_eq!(rules.len(), 3, "{rules:#?}");
    assert!(!rules.iter().any(|r| r.ends_with(" drop")), "{rules:#?}");
}

#[test]
fn rules_render_per_family_only_where_they_can_match() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "  - {action: Allow}",
            &["meta mark set meta mark | 0x10000 return"],
        ),
        (
            "  - {action: Deny, ipVersion: 6}",
            &["meta nfproto ipv6 drop"],
        ),
        (
            "  - {action: Deny, protocol: ICMP, icmp: {type: 8}}",
            &["meta l4proto icmp icmp type 8 drop"],
        ),
        (
            "  - {action: Deny, source: {nets: [fd00::/8], selector: app == 'web'}}",
            &["ip6 saddr fd00::/8 ip6 saddr @v6-s_SEL drop"],
        ),
        (
            "  - {action: Deny, source: {nets: [10.0.0.0/8]}}",
            &["ip saddr 10.0.0.0/8 drop"],
        ),
        (
            "  - {action: Pass, protocol: TCP, destination: {ports: [80, \"90:99\", 100]}}",
            &["meta l4proto tcp th dport @p_PORTS meta mark set meta mark | 0x20000 return"],
        ),
    ];
    for (rule, expected) in cases {
        let got: Vec<String> = policy_rules(rule)
            .into_iter()
            .map(|r| {
                // Set names hash their contents: mask them.
                let mut r = r;
                for (prefix, mask) in [("@p_", "PORTS"), ("@v6-s_", "SEL")] {
                    if let Some(i) = r.find(prefix).map(|i| i + prefix.len()) {
                        r = format!("{}{mask}{}", &r[..i], &r[i + 22..]);
                    }
                }
                r
            })
            .collect();
        assert_eq!(got, expected, "{rule}");
    }
}

#[test]
fn rules_with_the_same_port_list_share_one_named_set() {
    let rules = policy_rules(
        "  - {action: Allow, protocol: TCP, destination: {ports: [80, 443]}}
  - {action: Allow, protocol: UDP, destination: {ports: [443, 80]}}",
    );
    let set = |r: &String| {
        r.split_whitespace()
            .find(|w| w.starts_with("@p_"))
            .unwrap()
            .to_string()
    };
    assert_eq!(set(&rules[0]), set(&rules[1]));
}

#[test]
fn overlapping_members_are_merged_for_interval_sets() {
    let nets: Vec<IpNet> = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3/32",
        "192.168.0.0/24",
        "10.0.0.0/8",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    let texts: Vec<String> = disjoint(nets).iter().map(net_text).collect();
    assert_eq!(texts, ["10.0.0.0/8", "192.168.0.0/24"]);
    let ports = [
        Port::number(80),
        Port::Range { min: 79, max: 85 },
        Port::number(86),
        Port::number(443),
    ];
    assert_eq!(port_intervals(&ports), [(79, 86), (443, 443)]);
}

#[test]
fn every_rule_hash_depends_on_its_chain_and_predecessors() {
    let graph = graph_from(
        &[
            pod("x", "a", "node1", "10.0.0.1", "app: web"),
            pod("x", "b", "node1", "10.0.0.2", "app: web"),
        ]
        .concat(),
    );
    let ruleset = render(&graph, &RenderConfig::default());
    let a = &ruleset.chains["to-twa"].rules[0];
    let b = &ruleset.chains["to-twb"].rules[0];
    assert_eq!(a.body, b.body);
    assert_ne!(a.hash, b.hash);
    let hashes: std::collections::BTreeSet<&str> = ruleset
        .chains
        .values()
        .flat_map(|c| c.rules.iter().map(|r| r.hash.as_str()))
        .collect();
    assert_eq!(hashes.len(), ruleset.rule_count(), "hashes are unique");
}

#[test]
fn a_render_reusing_cached_policy_chains_equals_a_fresh_render() {
    let policy = |port: u16| {
        format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: p}}
spec:
  ingress:
  - {{action: Allow, protocol: TCP, source: {{selector: app == 'db'}}, destination: {{ports: [{port}, http]}}}}
---
"
        )
    };
    let mut graph =
        graph_from(&[pod("x", "a", "node1", "10.0.0.1", "app: web"), policy(80)].concat());
    let config = RenderConfig::default();
    let mut cache = RenderCache::default();
    let steps: [&dyn Fn(&mut CalcGraph); 4] = [
        // Set members change under a cached chain.
        &|g| crate::graph::tests::apply_yaml(g, &pod("x", "d", "node2", "10.0.0.9", "app: db")),
        // The policy changes: its cached chain must not be reused.
        &|g| crate::graph::tests::apply_yaml(g, &policy(81)),
        // A policy in an earlier tier starts to apply: endpoint chains
        // are redone.
        &|g| {
            crate::graph::tests::apply_yaml(
                g,
                "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: admin}
spec: {order: 1, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: admin.log}
spec:
  tier: admin
  ingress: [{action: Log}]
",
            )
        },
        // A second local endpoint reuses the policy chain.
        &|g| crate::graph::tests::apply_yaml(g, &pod("x", "b", "node1", "10.0.0.2", "app: web")),
    ];
    assert_eq!(
        render_with_cache(&graph, &config, &mut cache),
        render(&graph, &config)
    );
    for step in steps {
        step(&mut graph);
        assert_eq!(
            render_with_cache(&graph, &config, &mut cache),
            render(&graph, &config)
        );
    }
}

#[test]
fn twills_vxlan_device_is_not_taken_for_a_workload() {
    let excluded = format!("!= \"{}\"", twill_kernel::VXLAN_INTERFACE);
    // Twill's own prefix `twl` cannot match `twill.vxlan`: no exclusion needed.
    let ruleset = render(&graph_from(""), &RenderConfig::default());
    for rule in &ruleset.chains["forward"].rules {
        assert!(!rule.body.contains(&excluded), "{}", rule.body);
    }
    // An operator's prefix that the device shares gets it excluded by name.
    let config = RenderConfig {
        interface_prefix: "tw".into(),
        ..RenderConfig::default()
    };
    let ruleset = render(&graph_from(""), &config);
    let workload_rules: Vec<_> = ruleset.chains["forward"]
        .rules
        .iter()
        .filter(|rule| rule.body.contains("\"tw*\""))
        .collect();
    assert!(!workload_rules.is_empty());
    for rule in workload_rules {
        assert!(rule.body.contains(&excluded), "{}", rule.body);
    }
}

#[test]
fn felix_configuration_sets_the_workload_to_host_action_and_prefix() {
    let cases = [
        (None, None, EndpointToHost::Drop, "twl"),
        (
            Some("Accept"),
            Some("cali,tap"),
            EndpointToHost::Accept,
            "cali",
        ),
        (Some("Return"), Some(""), EndpointToHost::Return, "twl"),
        (Some("Drop"), None, EndpointToHost::Drop, "twl"),
    ];
    for (action, prefix, expected_action, expected_prefix) in cases {
        let spec = twill_api::felix::FelixConfigurationSpec {
            default_endpoint_to_host_action: action.map(String::from),
            interface_prefix: prefix.map(String::from),
            ..Default::default()
        };
        let config = RenderConfig::from_felix_configuration(&spec);
        assert_eq!(config.endpoint_to_host, expected_action, "{action:?}");
        assert_eq!(config.interface_prefix, expected_prefix, "{prefix:?}");
    }
}
