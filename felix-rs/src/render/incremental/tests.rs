#![allow(clippy::unwrap_used)]

use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::graph::tests::apply_yaml;
use crate::model::Update;
use crate::plan::{plan, plan_touched};
use crate::render::render;

/// One input change, small enough that random sequences of them collide
/// often: endpoints sharing interfaces, selectors, addresses and tiers.
#[derive(Debug, Clone)]
enum Step {
    Pod {
        n: u8,
        local: bool,
        iface: u8,
        app: u8,
        ip: u8,
        named_port: Option<u16>,
    },
    DeletePod(u8),
    Policy {
        n: u8,
        tier: bool,
        order: u8,
        app: u8,
        peer: u8,
        named: bool,
        egress: bool,
        /// 0 normal, 1 applyOnForward, 2 doNotTrack, 3 preDNAT (ingress).
        host_mode: u8,
    },
    DeletePolicy(u8),
    Tier {
        order: u8,
        pass: bool,
    },
    DeleteTier,
    Namespace {
        env: u8,
    },
    NetSet {
        n: u8,
        app: u8,
        net: u8,
    },
    DeleteNetSet(u8),
    HostEndpoint {
        n: u8,
        iface: u8,
        app: u8,
        ip: u8,
        profiles: bool,
    },
    DeleteHostEndpoint(u8),
    /// The host's interfaces: 172.16.0.{ip} on eth{iface}.
    HostAddresses {
        iface: u8,
        ip: u8,
    },
    Profile {
        n: u8,
        peer: u8,
    },
    DeleteProfile(u8),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6u8, any::<bool>(), 0..4u8, 0..3u8, 0..4u8, prop::option::of(80..82u16)).prop_map(
            |(n, local, iface, app, ip, named_port)| Step::Pod { n, local, iface, app, ip, named_port }
        ),
        1 => (0..6u8).prop_map(Step::DeletePod),
        4 => (0..5u8, any::<bool>(), 0..3u8, 0..3u8, 0..3u8, any::<bool>(), any::<bool>(), 0..4u8).prop_map(
            |(n, tier, order, app, peer, named, egress, host_mode)| Step::Policy { n, tier, order, app, peer, named, egress, host_mode }
        ),
        1 => (0..5u8).prop_map(Step::DeletePolicy),
        1 => (0..3u8, any::<bool>()).prop_map(|(order, pass)| Step::Tier { order, pass }),
        1 => Just(Step::DeleteTier),
        1 => (0..2u8).prop_map(|env| Step::Namespace { env }),
        1 => (0..2u8, 0..3u8, 0..3u8).prop_map(|(n, app, net)| Step::NetSet { n, app, net }),
        1 => (0..2u8).prop_map(Step::DeleteNetSet),
        1 => (0..2u8, 0..4u8, 0..3u8, 0..3u8, any::<bool>()).prop_map(
            |(n, iface, app, ip, profiles)| Step::HostEndpoint { n, iface, app, ip, profiles }
        ),
        1 => (0..2u8).prop_map(Step::DeleteHostEndpoint),
        1 => (0..2u8, 0..3u8).prop_map(|(iface, ip)| Step::HostAddresses { iface, ip }),
        1 => (0..2u8, 0..3u8).prop_map(|(n, peer)| Step::Profile { n, peer }),
        1 => (0..2u8).prop_map(Step::DeleteProfile),
    ]
}

fn apply(graph: &mut CalcGraph, step: &Step) {
    let yaml = match step {
        Step::Pod {
            n,
            local,
            iface,
            app,
            ip,
            named_port,
        } => {
            let node = if *local { "node1" } else { "node2" };
            let ports = named_port.map_or(String::new(), |p| {
                format!("  ports: [{{name: http, protocol: TCP, port: {p}}}]\n")
            });
            // Some pods list user-defined profiles (present or not).
            let profiles = match ip {
                0 => "  profiles: [prof0, kns.x]\n",
                1 => "  profiles: [prof1]\n",
                _ => "",
            };
            format!(
                "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: wep{n}, namespace: x, labels: {{app: a{app}}}}}
spec:
  node: {node}
  orchestrator: k8s
  interfaceName: tw{iface}
  ipNetworks: [10.0.0.{ip}/32]
{ports}{profiles}"
            )
        }
        Step::DeletePod(n) => {
            graph
                .on_update(Update::WorkloadEndpointDeleted {
                    namespace: "x".into(),
                    name: format!("wep{n}"),
                })
                .unwrap();
            return;
        }
        Step::Policy {
            n,
            tier,
            order,
            app,
            peer,
            named,
            egress,
            host_mode,
        } => {
            let (tier, name) = if *tier {
                ("t1", format!("t1.p{n}"))
            } else {
                ("default", format!("p{n}"))
            };
            let port = if *named { "http" } else { "80" };
            let direction = if *egress { "egress" } else { "ingress" };
            let flags = match (host_mode, egress) {
                (1, _) => "  applyOnForward: true\n",
                (2, _) => "  applyOnForward: true\n  doNotTrack: true\n",
                (3, false) => "  applyOnForward: true\n  preDNAT: true\n",
                _ => "",
            };
            format!(
                "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
  tier: {tier}
  order: {order}
{flags}  selector: app == 'a{app}'
  {direction}:
  - action: Allow
    protocol: TCP
    source: {{selector: app == 'a{peer}'}}
    destination: {{ports: [{port}]}}
  - action: Deny
    source: {{namespaceSelector: env == 'e1'}}
"
            )
        }
        Step::DeletePolicy(n) => {
            for name in [format!("p{n}"), format!("t1.p{n}")] {
                graph
                    .on_update(Update::GlobalPolicyDeleted { name })
                    .unwrap();
            }
            return;
        }
        Step::Tier { order, pass } => {
            let action = if *pass { "Pass" } else { "Deny" };
            format!(
                "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: t1}}
spec: {{order: {order}, defaultAction: {action}}}
"
            )
        }
        Step::DeleteTier => {
            graph
                .on_update(Update::TierDeleted { name: "t1".into() })
                .unwrap();
            return;
        }
        Step::Namespace { env } => {
            graph
                .on_update(Update::NamespaceLabels {
                    name: "x".into(),
                    labels: [("env".to_string(), format!("e{env}"))].into(),
                })
                .unwrap();
            return;
        }
        Step::NetSet { n, app, net } => format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {{name: s{n}, labels: {{app: a{app}}}}}
spec: {{nets: [192.168.{net}.0/24]}}
"
        ),
        Step::DeleteNetSet(n) => {
            graph
                .on_update(Update::GlobalNetworkSetDeleted {
                    name: format!("s{n}"),
                })
                .unwrap();
            return;
        }
        Step::HostEndpoint {
            n,
            iface,
            app,
            ip,
            profiles,
        } => {
            // "": no interfaceName, found by its expected address.
            let iface = ["eth0", "eth1", "*", ""][usize::from(*iface)];
            let profiles = if *profiles {
                "[projectcalico-default-allow, prof1]"
            } else {
                "[prof0]"
            };
            format!(
                "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: h{n}, labels: {{app: a{app}}}}}
spec:
  node: node1
  interfaceName: '{iface}'
  expectedIPs: [172.16.0.{ip}]
  profiles: {profiles}
"
            )
        }
        Step::Profile { n, peer } => format!(
            "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: prof{n}}}
spec:
  ingress: [{{action: Allow, source: {{selector: app == 'a{peer}'}}}}]
  egress: [{{action: Deny, destination: {{nets: [192.168.{peer}.0/24]}}}}]
"
        ),
        Step::DeleteProfile(n) => {
            graph
                .on_update(Update::ProfileDeleted {
                    name: format!("prof{n}"),
                })
                .unwrap();
            return;
        }
        Step::HostAddresses { iface, ip } => {
            let addr = std::net::IpAddr::from([172, 16, 0, *ip]);
            graph
                .on_update(Update::HostInterfaceAddresses(
                    [(format!("eth{iface}"), vec![addr])].into(),
                ))
                .unwrap();
            return;
        }
        Step::DeleteHostEndpoint(n) => {
            graph
                .on_update(Update::HostEndpointDeleted {
                    name: format!("h{n}"),
                })
                .unwrap();
            return;
        }
    };
    apply_yaml(graph, &yaml);
}

/// Renders incrementally after each batch and checks it against the full
/// render, and that the touched names cover every difference.
fn check(batches: &[Vec<Step>]) {
    let config = RenderConfig::default();
    let mut graph = CalcGraph::new("node1");
    let mut incremental = IncrementalRender::new(config.clone());
    let mut previous = Ruleset::default();
    for batch in batches {
        for step in batch {
            apply(&mut graph, step);
        }
        incremental.sync(&mut graph);
        let full = render(&graph, &config);
        assert_eq!(incremental.ruleset(), &full, "after {batch:?}");
        let touched = incremental.take_touched();
        assert_eq!(
            plan_touched(&full, &previous, &touched),
            plan(&full, &previous),
            "touched {touched:?} misses a difference after {batch:?}"
        );
        previous = full;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn incremental_render_equals_full_render_after_any_updates(
        batches in prop::collection::vec(prop::collection::vec(step_strategy(), 1..4), 1..25)
    ) {
        check(&batches);
    }
}

#[test]
fn an_unchanged_graph_touches_nothing() {
    let mut graph = CalcGraph::new("node1");
    apply(
        &mut graph,
        &Step::Pod {
            n: 0,
            local: true,
            iface: 0,
            app: 0,
            ip: 1,
            named_port: None,
        },
    );
    let mut incremental = IncrementalRender::new(RenderConfig::default());
    incremental.sync(&mut graph);
    assert!(incremental.take_touched().all);
    incremental.sync(&mut graph);
    assert!(incremental.take_touched().is_empty());
}

#[test]
fn a_remote_label_change_touches_only_the_sets_of_its_selectors() {
    let mut graph = CalcGraph::new("node1");
    let pod = |n, local, app, ip| Step::Pod {
        n,
        local,
        iface: n,
        app,
        ip,
        named_port: None,
    };
    for step in [
        pod(0, true, 0, 1),
        pod(1, false, 1, 2),
        Step::Policy {
            n: 0,
            tier: false,
            order: 1,
            app: 0,
            peer: 1,
            named: false,
            egress: false,
            host_mode: 0,
        },
    ] {
        apply(&mut graph, &step);
    }
    let mut incremental = IncrementalRender::new(RenderConfig::default());
    incremental.sync(&mut graph);
    incremental.take_touched();
    apply(&mut graph, &pod(1, false, 2, 2));
    incremental.sync(&mut graph);
    let touched = incremental.take_touched();
    assert!(touched.chains.is_empty(), "{touched:?}");
    assert!(touched.maps.is_empty(), "{touched:?}");
    assert_eq!(touched.sets.len(), 1, "{touched:?}");
    assert_eq!(
        incremental.ruleset(),
        &render(&graph, &RenderConfig::default())
    );
}
