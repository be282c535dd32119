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
    let cases: [(&str, &[&str]); 8] = [
        (
            "  - {action: Allow}",
            &["meta mark set meta mark | 0x10000 return"],
        ),
        // notNets of one family: the other family's copy is pinned to its
        // family, or it would match everything (failing open).
        (
            "  - {action: Allow, source: {notNets: [10.9.0.0/16]}}",
            &[
                "ip saddr != 10.9.0.0/16 meta mark set meta mark | 0x10000 return",
                "meta nfproto ipv6 meta mark set meta mark | 0x10000 return",
            ],
        ),
        (
            "  - {action: Deny, destination: {notNets: [fd00::/8]}}",
            &["meta nfproto ipv4 drop", "ip6 daddr != fd00::/8 drop"],
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

fn profile_pod(profiles: &str) -> String {
    pod("x", "a", "node1", "10.0.0.1", "app: web").replace(
        "  ipNetworks: [10.0.0.1/32]\n",
        &format!("  ipNetworks: [10.0.0.1/32]\n  profiles: {profiles}\n"),
    )
}

const WEB_PROFILE: &str = "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: web}
spec:
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
  egress: [{action: Deny}]
---
";

fn profile_key(name: &str) -> PolicyKey {
    PolicyKey {
        kind: crate::model::PolicyKind::Profile,
        namespace: String::new(),
        name: name.into(),
    }
}

#[test]
fn a_profiles_rules_apply_to_an_endpoint_no_policy_selects_then_the_rest_is_dropped() {
    let graph = graph_from(&[profile_pod("[web]"), WEB_PROFILE.into()].concat());
    let ruleset = render(&graph, &RenderConfig::default());
    let ingress = policy_chain_name(&profile_key("web"), Dir::Ingress);
    assert!(ingress.starts_with("pri-"), "{ingress}");
    assert_eq!(
        bodies(&ruleset, "to-twa"),
        [
            "meta mark set meta mark & 0xfffcffff".to_string(),
            format!("jump {ingress}"),
            "meta mark & 0x10000 != 0 return".into(),
            "drop".into(),
        ]
    );
    assert_eq!(
        bodies(&ruleset, &ingress),
        ["meta l4proto tcp th dport 80 meta mark set meta mark | 0x10000 return"]
    );
    let egress = policy_chain_name(&profile_key("web"), Dir::Egress);
    assert!(egress.starts_with("pro-"), "{egress}");
    assert_eq!(bodies(&ruleset, &egress), ["drop"]);
}

#[test]
fn profiles_come_after_the_tiers_and_only_when_the_last_tier_passes() {
    let yaml = [
        profile_pod("[web]"),
        WEB_PROFILE.into(),
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
"
        .into(),
    ]
    .concat();
    let rules = bodies(
        &render(&graph_from(&yaml), &RenderConfig::default()),
        "to-twa",
    );
    let tier_jump = rules.iter().position(|r| r.contains("jump pi-")).unwrap();
    let profile_jump = rules.iter().position(|r| r.contains("jump pri-")).unwrap();
    assert!(tier_jump < profile_jump, "{rules:#?}");
    assert_eq!(rules.last().unwrap(), "drop");
}

#[test]
fn profile_kinds_follow_calico() {
    // (profiles listed, does the ingress chain end in a drop, does it jump to a profile chain)
    let cases = [
        ("[kns.x]", false, false),
        ("[ksa.x.api]", true, false),
        ("[ksa.x.api, kns.x]", false, false),
        ("[missing]", true, false),
        ("[missing, kns.x]", true, false),
        ("[web, kns.x]", false, true),
        ("[projectcalico-default-allow]", false, false),
    ];
    for (profiles, drops, jumps) in cases {
        let graph = graph_from(&[profile_pod(profiles), WEB_PROFILE.into()].concat());
        let rules = bodies(&render(&graph, &RenderConfig::default()), "to-twa");
        assert_eq!(
            rules.last().is_some_and(|r| r == "drop"),
            drops,
            "{profiles}: {rules:#?}"
        );
        assert_eq!(
            rules.iter().any(|r| r.starts_with("jump pri-")),
            jumps,
            "{profiles}: {rules:#?}"
        );
    }
}

#[test]
fn a_pod_without_profiles_gets_its_namespace_and_service_account_profiles() {
    let yaml = pod("x", "a", "node1", "10.0.0.1", "app: web")
        .replace("  ipNetworks:", "  serviceAccountName: api\n  ipNetworks:");
    let graph = graph_from(&yaml);
    let (_, ep) = graph.local_endpoints().next().unwrap();
    assert_eq!(ep.profiles, ["kns.x", "ksa.x.api"]);
}

#[test]
fn a_host_endpoints_profiles_decide_after_its_tiers() {
    let hep = |profiles: &str| {
        format!(
            "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: h, labels: {{role: host}}}}
spec: {{node: node1, interfaceName: eth0, profiles: {profiles}}}
---
{WEB_PROFILE}"
        )
    };
    let cases = [
        ("[]", true, false),
        ("[projectcalico-default-allow]", false, false),
        ("[web]", true, true),
        ("[missing]", true, false),
    ];
    for (profiles, drops, jumps) in cases {
        let ruleset = render(&graph_from(&hep(profiles)), &RenderConfig::default());
        let rules = bodies(&ruleset, &host_in_chain("eth0"));
        assert_eq!(
            rules.last().is_some_and(|r| r == "drop"),
            drops,
            "{profiles}: {rules:#?}"
        );
        assert_eq!(
            rules.iter().any(|r| r.starts_with("jump pri-")),
            jumps,
            "{profiles}: {rules:#?}"
        );
    }
}

#[test]
fn host_endpoints_keep_calicos_default_failsafe_ports_open() {
    // Calico's FailsafeInboundHostPorts / FailsafeOutboundHostPorts defaults.
    let inbound = [
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
    let outbound = [
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
    let graph = graph_from(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h}
spec: {node: node1, interfaceName: eth0}
",
    );
    let ruleset = render(&graph, &RenderConfig::default());
    for (chain, ports) in [
        (host_in_chain("eth0"), &inbound),
        (host_out_chain("eth0"), &outbound),
    ] {
        let rules = bodies(&ruleset, &chain);
        let open: Vec<String> = rules
            .iter()
            .filter(|r| r.ends_with(" accept") && r.contains("th dport"))
            .cloned()
            .collect();
        let expected: Vec<String> = ports
            .iter()
            .map(|(proto, port)| format!("meta l4proto {proto} th dport {port} accept"))
            .collect();
        assert_eq!(open, expected, "{chain}");
        assert_eq!(rules.last().unwrap(), "drop", "{chain}");
    }
}
