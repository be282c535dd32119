#![allow(clippy::unwrap_used)]

use pretty_assertions::assert_eq;

use super::host::{ALL_INTERFACES, HostHook};
use super::*;
use crate::graph::tests::graph_from;
use crate::model::{HostPolicyMode, PolicyKind, Update};

fn bodies(ruleset: &Ruleset, chain: &str) -> Vec<String> {
    ruleset.chains[chain]
        .rules
        .iter()
        .map(|r| r.body.clone())
        .collect()
}

/// No failsafe ports: the chains below hold only what the policies give.
fn config() -> RenderConfig {
    RenderConfig {
        failsafe_inbound: Vec::new(),
        failsafe_outbound: Vec::new(),
        ..RenderConfig::default()
    }
}

fn gnp(name: &str) -> PolicyKey {
    PolicyKey {
        kind: PolicyKind::Global,
        namespace: String::new(),
        name: name.into(),
    }
}

const HEPS: &str = "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: all, labels: {role: host}}
spec: {node: node1, interfaceName: '*', profiles: [projectcalico-default-allow]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: eth0, labels: {role: host}}
spec: {node: node1, interfaceName: eth0}
";

fn policy(name: &str, flags: &str, rules: &str) -> String {
    format!(
        "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
  selector: role == 'host'
{flags}{rules}"
    )
}

const DENY_WEB_IN: &str =
    "  ingress: [{action: Deny, protocol: TCP, destination: {ports: [80]}}]\n";

#[test]
fn an_all_interfaces_host_endpoint_is_the_fallback_after_named_ones() {
    let yaml = format!("{HEPS}{}", policy("deny-web", "", DENY_WEB_IN));
    let ruleset = render(&graph_from(&yaml), &config());
    let chain = policy_chain_name(&gnp("deny-web"), Dir::Ingress);
    assert_eq!(
        bodies(&ruleset, &host_in_chain(ALL_INTERFACES)),
        [
            "ct state established,related accept".to_string(),
            "ct state invalid drop".to_string(),
            "meta mark set meta mark & 0xfffcffff".to_string(),
            format!("meta mark & 0x20000 == 0 jump {chain}"),
            "meta mark & 0x10000 != 0 return".to_string(),
            "meta mark & 0x20000 == 0 drop".to_string(),
        ]
    );
    let input = bodies(&ruleset, "input");
    assert_eq!(
        input[input.len() - 2..],
        [
            "iifname vmap @hep-in-dispatch".to_string(),
            "iifname != \"lo\" iifname != \"twl*\" goto hin--all".to_string(),
        ]
    );
    let output = bodies(&ruleset, "output");
    assert_eq!(
        output.last().unwrap(),
        "oifname != \"lo\" oifname != \"twl*\" goto hout--all"
    );
    for hook in HostHook::ALL {
        let map = &ruleset.maps[hook.map()].elements;
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["eth0"],
            "{}: the named endpoint wins for eth0, `*` is no map key",
            hook.map()
        );
    }
}

#[test]
fn without_an_all_interfaces_host_endpoint_its_chains_are_empty() {
    let graph = graph_from(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: eth0}
spec: {node: node1, interfaceName: eth0}
",
    );
    let ruleset = render(&graph, &config());
    for hook in HostHook::ALL {
        let chain = hook.chain(ALL_INTERFACES);
        assert!(ruleset.chains[&chain].rules.is_empty(), "{chain}");
    }
}

#[test]
fn a_node_without_host_endpoints_has_nothing_of_them_on_its_packet_path() {
    let ruleset = render(&graph_from(""), &config());
    for hook in HostHook::ALL {
        assert!(!ruleset.maps.contains_key(hook.map()), "{}", hook.map());
        assert!(!ruleset.chains.contains_key(&hook.chain(ALL_INTERFACES)));
    }
    for base in ["raw-prerouting", "raw-output", "prednat"] {
        assert!(!ruleset.chains.contains_key(base), "{base}");
    }
    for chain in ["input", "output", "forward"] {
        for rule in bodies(&ruleset, chain) {
            assert!(
                !rule.contains("hep-") && !rule.contains("untracked"),
                "{chain}: {rule}"
            );
        }
    }
}

#[test]
fn an_untracked_policy_is_evaluated_before_conntrack_and_untracks_what_it_allows() {
    let yaml = format!(
        "{HEPS}{}",
        policy(
            "raw",
            "  doNotTrack: true\n  applyOnForward: true\n",
            "  ingress: [{action: Allow, protocol: UDP, destination: {ports: [53]}}]\n"
        )
    );
    let ruleset = render(&graph_from(&yaml), &config());
    let chain = policy_chain_name(&gnp("raw"), Dir::Ingress);
    assert_eq!(
        bodies(&ruleset, "hrin-eth0"),
        [
            "meta mark set meta mark & 0xfffcffff".to_string(),
            format!("meta mark & 0x20000 == 0 jump {chain}"),
            "meta mark & 0x10000 != 0 notrack accept".to_string(),
        ],
        "no end-of-tier drop: the rest goes on to normal policy"
    );
    assert!(bodies(&ruleset, "hrout-eth0").is_empty(), "ingress only");
    let with_failsafes = render(&graph_from(&yaml), &RenderConfig::default());
    let raw_in = bodies(&with_failsafes, "hrin-eth0");
    for kept_tracked in [
        "meta l4proto tcp th dport 22 accept",
        "meta l4proto udp th sport 53 accept",
    ] {
        let at = raw_in.iter().position(|r| r == kept_tracked);
        let notrack = raw_in.iter().position(|r| r.contains("notrack"));
        assert!(at < notrack && at.is_some(), "{kept_tracked}: {raw_in:#?}");
    }
    for normal in ["hin-eth0", "hfin-eth0"] {
        assert!(
            !bodies(&ruleset, normal).iter().any(|r| r.contains(&chain)),
            "{normal}"
        );
    }
    assert_eq!(
        ruleset.chains["raw-prerouting"].base,
        Some(BaseChain {
            hook: Hook::Prerouting,
            priority: -300
        })
    );
    assert_eq!(
        bodies(&ruleset, &chain),
        ["meta l4proto udp th dport 53 meta mark set meta mark | 0x10000 return"]
    );
    for filter in ["input", "output", "forward"] {
        assert_eq!(
            bodies(&ruleset, filter)[0],
            "ct state untracked meta mark & 0x10000 != 0 accept",
            "{filter} accepts what untracked policy allowed"
        );
    }
}

#[test]
fn a_pre_dnat_policy_sees_new_inbound_connections_before_dnat() {
    let yaml = format!(
        "{HEPS}{}",
        policy(
            "pre",
            "  preDNAT: true\n  applyOnForward: true\n",
            DENY_WEB_IN
        )
    );
    let ruleset = render(&graph_from(&yaml), &config());
    let chain = policy_chain_name(&gnp("pre"), Dir::Ingress);
    assert_eq!(
        bodies(&ruleset, "hpre-eth0"),
        [
            "meta mark set meta mark & 0xfffcffff".to_string(),
            format!("meta mark & 0x20000 == 0 jump {chain}"),
            "meta mark & 0x10000 != 0 accept".to_string(),
        ]
    );
    assert_eq!(
        bodies(&ruleset, "prednat")[..2],
        [
            "ct state untracked meta mark & 0x10000 != 0 accept".to_string(),
            "ct state established,related accept".to_string(),
        ]
    );
    assert_eq!(ruleset.chains["prednat"].base.unwrap().priority, -110);
    assert!(
        !bodies(&ruleset, "hin-eth0")
            .iter()
            .any(|r| r.contains(&chain))
    );
}

#[test]
fn apply_on_forward_policies_also_police_forwarded_traffic() {
    let yaml = format!(
        "{HEPS}{}{}",
        policy("fwd", "  applyOnForward: true\n", DENY_WEB_IN),
        policy("host-only", "", DENY_WEB_IN)
    );
    let ruleset = render(&graph_from(&yaml), &config());
    let fwd = policy_chain_name(&gnp("fwd"), Dir::Ingress);
    let host_only = policy_chain_name(&gnp("host-only"), Dir::Ingress);
    assert_eq!(
        bodies(&ruleset, "hfin-eth0"),
        [
            "ct state established,related accept".to_string(),
            "ct state invalid drop".to_string(),
            "meta mark set meta mark & 0xfffcffff".to_string(),
            format!("meta mark & 0x20000 == 0 jump {fwd}"),
            "meta mark & 0x10000 != 0 return".to_string(),
            "meta mark & 0x20000 == 0 drop".to_string(),
        ]
    );
    let host_in = bodies(&ruleset, "hin-eth0");
    for chain in [&fwd, &host_only] {
        assert!(
            host_in.iter().any(|r| r.contains(chain.as_str())),
            "{chain}"
        );
    }
    assert!(
        bodies(&ruleset, "hfout-eth0").is_empty(),
        "no egress policy"
    );
    assert_eq!(
        bodies(&ruleset, "forward"),
        [
            "ct state untracked meta mark & 0x10000 != 0 accept",
            "jump hep-fwd-in",
            "iifname \"twl*\" jump from-wl",
            "oifname \"twl*\" jump to-wl",
            "jump hep-fwd-out",
        ]
    );
}

#[test]
fn host_policy_flags_are_validated_as_calico_does() {
    let cases: [(&str, &str, Result<HostPolicyMode, &str>); 7] = [
        ("", DENY_WEB_IN, Ok(HostPolicyMode::Normal)),
        (
            "  applyOnForward: true\n",
            DENY_WEB_IN,
            Ok(HostPolicyMode::ApplyOnForward),
        ),
        (
            "  applyOnForward: true\n  doNotTrack: true\n",
            DENY_WEB_IN,
            Ok(HostPolicyMode::Untracked),
        ),
        (
            "  applyOnForward: true\n  preDNAT: true\n",
            DENY_WEB_IN,
            Ok(HostPolicyMode::PreDnat),
        ),
        ("  doNotTrack: true\n", DENY_WEB_IN, Err("applyOnForward")),
        (
            "  applyOnForward: true\n  preDNAT: true\n  doNotTrack: true\n",
            DENY_WEB_IN,
            Err("preDNAT"),
        ),
        (
            "  applyOnForward: true\n  preDNAT: true\n",
            "  egress: [{action: Deny}]\n",
            Err("preDNAT"),
        ),
    ];
    for (flags, rules, expected) in cases {
        let yaml = policy("p", flags, rules);
        // The API loader validates too; felix-rs checks again for resources
        // that reach it another way.
        let converted = twill_api::load_str("test", &yaml)
            .map_err(|e| format!("{e:?}"))
            .and_then(|mut resources| match resources.remove(0) {
                twill_api::Resource::GlobalNetworkPolicy(gnp) => {
                    crate::model::convert_global_policy(&gnp).map_err(|e| e.to_string())
                }
                other => panic!("not a GlobalNetworkPolicy: {other:?}"),
            });
        match expected {
            Ok(mode) => assert_eq!(converted.unwrap().1.host_mode, mode, "{flags}"),
            Err(field) => {
                let message = converted.unwrap_err();
                assert!(message.contains(field), "{flags}: {message}");
            }
        }
    }
}

#[test]
fn a_host_endpoint_without_interface_name_is_enforced_where_its_address_lives() {
    let mut graph = graph_from(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: by-ip, labels: {role: host}}
spec: {node: node1, expectedIPs: [192.0.2.7]}
",
    );
    let addresses = |pairs: &[(&str, [u8; 4])]| {
        Update::HostInterfaceAddresses(
            pairs
                .iter()
                .map(|(iface, ip)| (iface.to_string(), vec![std::net::IpAddr::from(*ip)]))
                .collect(),
        )
    };
    type Interfaces<'a> = &'a [(&'a str, [u8; 4])];
    let cases: [(Interfaces, Option<&str>); 4] = [
        (&[], None),
        (
            &[("eth0", [10, 0, 0, 1]), ("eth1", [192, 0, 2, 7])],
            Some("eth1"),
        ),
        (&[("eth0", [192, 0, 2, 7])], Some("eth0")),
        (&[("eth0", [10, 0, 0, 1])], None),
    ];
    for (interfaces, expected) in cases {
        graph.on_update(addresses(interfaces)).unwrap();
        let ruleset = render(&graph, &config());
        let mapped: Vec<&String> = ruleset
            .maps
            .get(HOST_IN_DISPATCH_MAP)
            .map(|m| m.elements.keys().collect())
            .unwrap_or_default();
        match expected {
            Some(iface) => {
                assert_eq!(mapped, [iface], "{interfaces:?}");
                assert!(ruleset.chains.contains_key(&host_in_chain(iface)));
            }
            None => assert!(mapped.is_empty(), "{interfaces:?}"),
        }
    }
}

#[test]
fn the_kernels_address_list_becomes_the_host_interface_update() {
    let mut graph = graph_from(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: by-ip}
spec: {node: node1, expectedIPs: [192.0.2.7]}
",
    );
    assert!(graph.wants_host_addresses());
    let entries = [
        twill_kernel::AddressEntry {
            link: "eth0".into(),
            addr: "10.0.0.1/24".parse().unwrap(),
        },
        twill_kernel::AddressEntry {
            link: "eth1".into(),
            addr: "192.0.2.7/24".parse().unwrap(),
        },
    ];
    graph
        .on_update(Update::host_interface_addresses(&entries))
        .unwrap();
    let local: Vec<&str> = graph
        .local_host_endpoints()
        .map(|(_, hep)| hep.effective_interface())
        .collect();
    assert_eq!(local, ["eth1"]);
    assert!(!graph_from("").wants_host_addresses());
}
