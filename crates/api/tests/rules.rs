//! Calico's (and the Kubernetes API server's) validation rules, one table
//! row per rule: a manifest, the field path it must fail at and a fragment
//! of the reason. A second table lists manifests that must be accepted.

use twill_api::load_str;

/// A `projectcalico.org/v3` manifest of `kind` named `name` with `spec` (flow YAML).
fn calico(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn k8s(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np}}\nspec: {spec}\n"
    )
}

fn gnp(spec: &str) -> String {
    calico("GlobalNetworkPolicy", "p", spec)
}

fn ingress(rule: &str) -> String {
    gnp(&format!("{{ingress: [{rule}]}}"))
}

#[test]
fn invalid_manifests_fail_at_the_field_with_the_reason() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // Ports and protocols.
        ("numeric port without protocol", ingress("{action: Allow, destination: {ports: [80]}}"), "spec.ingress[0].destination.ports[0]", "must set protocol to TCP, UDP or SCTP"),
        ("port with a portless protocol", ingress("{action: Allow, protocol: ICMP, source: {notPorts: [http]}}"), "spec.ingress[0].source.notPorts[0]", "rules that specify ports must set protocol"),
        ("UDPLite carries no ports in Calico", ingress("{action: Allow, protocol: UDPLite, destination: {ports: [53]}}"), "spec.ingress[0].destination.ports[0]", "must set protocol to TCP, UDP or SCTP"),
        ("reversed port range", ingress("{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}"), "spec.ingress[0].destination.ports[0]", "is reversed"),
        ("port above 65535", ingress("{action: Allow, protocol: TCP, destination: {ports: [65536]}}"), "spec.ingress[0].destination.ports[0]", "out of range 1-65535"),
        ("lowercase protocol", ingress("{action: Allow, protocol: tcp}"), "spec.ingress[0].protocol", "did you mean TCP"),
        ("protocol number 0", ingress("{action: Allow, protocol: 0}"), "spec.ingress[0].protocol", "protocol number 0 is invalid"),
        ("protocol number above 255", ingress("{action: Allow, notProtocol: 256}"), "spec.ingress[0].notProtocol", "out of range 1-255"),
        ("ipVersion 5", ingress("{action: Allow, ipVersion: 5}"), "spec.ingress[0].ipVersion", "must be 4 or 6"),
        // ICMP.
        ("icmp without an ICMP protocol", ingress("{action: Allow, protocol: TCP, icmp: {type: 8}}"), "spec.ingress[0].icmp", "require protocol to be ICMP or ICMPv6"),
        ("icmp code without type", ingress("{action: Allow, protocol: ICMP, icmp: {code: 0}}"), "spec.ingress[0].icmp.code", "without an ICMP type"),
        ("icmp type 255", ingress("{action: Allow, protocol: ICMP, icmp: {type: 255}}"), "spec.ingress[0].icmp.type", "out of range 0-254"),
        ("ICMP with ipVersion 6", ingress("{action: Allow, protocol: ICMP, ipVersion: 6}"), "spec.ingress[0].protocol", "requires ipVersion 4"),
        ("ICMPv6 with ipVersion 4", ingress("{action: Allow, protocol: ICMPv6, ipVersion: 4}"), "spec.ingress[0].protocol", "requires ipVersion 6"),
        // Nets.
        ("nets mixing IPv4 and IPv6", ingress("{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/8']}}"), "spec.ingress[0].destination.nets", "both IPv4 and IPv6"),
        ("nets disagreeing with ipVersion", ingress("{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}"), "spec.ingress[0].source.nets", "does not match the rule's ipVersion 6"),
        ("catch-all notNets", ingress("{action: Allow, source: {notNets: [0.0.0.0/0]}}"), "spec.ingress[0].source.notNets[0]", "matches no traffic"),
        // Selectors.
        ("selector syntax", gnp("{selector: \"role == 'db' &&\"}"), "spec.selector", "invalid selector"),
        ("rule selector syntax", ingress("{action: Allow, source: {notSelector: 'has(a'}}"), "spec.ingress[0].source.notSelector", "invalid selector"),
        ("global() in a policy selector", gnp("{selector: global()}"), "spec.selector", "global() can only be used"),
        ("global() in a rule selector", ingress("{action: Allow, source: {selector: global()}}"), "spec.ingress[0].source.selector", "global() can only be used"),
        ("global() combined in a namespaceSelector", ingress("{action: Allow, source: {namespaceSelector: \"global() && a == 'b'\"}}"), "spec.ingress[0].source.namespaceSelector", "cannot be combined"),
        ("service account selector syntax", ingress("{action: Allow, source: {serviceAccounts: {selector: '=='}}}"), "spec.ingress[0].source.serviceAccounts.selector", "invalid selector"),
        // Services and HTTP.
        ("services with a selector", ingress("{action: Allow, source: {services: {name: s, namespace: n}, selector: a == 'b'}}"), "spec.ingress[0].source.services", "cannot be combined with selector"),
        ("services in an ingress destination", ingress("{action: Allow, destination: {services: {name: s, namespace: n}}}"), "spec.ingress[0].destination.services", "not allowed in an ingress rule's destination"),
        ("services in an egress source", gnp("{egress: [{action: Allow, source: {services: {name: s, namespace: n}}}]}"), "spec.egress[0].source.services", "not allowed in an egress rule's source"),
        ("global service match without namespace", gnp("{egress: [{action: Allow, destination: {services: {name: s}}}]}"), "spec.egress[0].destination.services.namespace", "must specify a namespace"),
        ("services without a name", calico("NetworkPolicy", "p", "{egress: [{action: Allow, destination: {services: {namespace: n}}}]}"), "spec.egress[0].destination.services.name", "must specify a service name"),
        ("destination ports with services", calico("NetworkPolicy", "p", "{egress: [{action: Allow, protocol: TCP, destination: {services: {name: s}, ports: [80]}}]}"), "spec.egress[0].destination.ports", "cannot be specified with services"),
        ("http on a Deny rule", ingress("{action: Deny, http: {methods: [GET]}}"), "spec.ingress[0].http", "only valid on Allow rules"),
        ("http in egress", gnp("{egress: [{action: Allow, http: {methods: [GET]}}]}"), "spec.egress[0].http", "not allowed in egress rules"),
        ("http path with both exact and prefix", ingress("{action: Allow, http: {paths: [{exact: /a, prefix: /b}]}}"), "spec.ingress[0].http.paths[0]", "not both"),
        ("http path not starting with /", ingress("{action: Allow, http: {paths: [{prefix: a}]}}"), "spec.ingress[0].http.paths[0]", "must start with '/'"),
        ("duplicate http methods", ingress("{action: Allow, http: {methods: [GET, GET]}}"), "spec.ingress[0].http.methods[1]", "listed more than once"),
        // Policy-level rules.
        ("preDNAT with doNotTrack", gnp("{preDNAT: true, doNotTrack: true, applyOnForward: true}"), "spec.preDNAT", "cannot both be true"),
        ("preDNAT with egress rules", gnp("{preDNAT: true, applyOnForward: true, egress: [{action: Allow}]}"), "spec.egress", "cannot have egress rules"),
        ("preDNAT with the Egress type", gnp("{preDNAT: true, applyOnForward: true, types: [Ingress, Egress]}"), "spec.types", "cannot have the Egress type"),
        ("doNotTrack without applyOnForward", gnp("{doNotTrack: true}"), "spec.applyOnForward", "must be true"),
        ("duplicate policy types", gnp("{types: [Ingress, Ingress]}"), "spec.types[1]", "listed more than once"),
        ("unknown policy type", gnp("{types: [Both]}"), "spec.types[0]", "unknown variant `Both`"),
        ("unknown action", ingress("{action: Accept}"), "spec.ingress[0].action", "unknown variant `Accept`"),
        ("missing action", ingress("{protocol: TCP}"), "spec.ingress[0]", "missing field `action`"),
        ("tier name with a dot", gnp("{tier: a.b}"), "spec.tier", "alphanumeric"),
        ("global policy name with two dots", calico("GlobalNetworkPolicy", "a.b.c", "{}"), "metadata.name", "optionally with one '.'"),
        ("uppercase policy name", calico("NetworkPolicy", "Allow", "{}"), "metadata.name", "lower case"),
        ("missing name", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {}\n".to_string(), "metadata.name", "name is required"),
        ("bad label value", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t, labels: {a: 'b c'}}\n".to_string(), "metadata.labels.a", "not a valid label value"),
        ("staged delete with rules", calico("StagedGlobalNetworkPolicy", "p", "{stagedAction: Delete, ingress: [{action: Allow}]}"), "spec.stagedAction", "except tier must be empty"),
        // Tiers.
        ("tier name with a dot", calico("Tier", "a.b", "{}"), "metadata.name", "lower case alphanumeric characters or '-'"),
        ("tier default action Log", calico("Tier", "t", "{defaultAction: Log}"), "spec.defaultAction", "must be Deny or Pass"),
        ("default tier with another order", calico("Tier", "default", "{order: 5}"), "spec.order", "must be 1000000"),
        ("kube-admin tier denying", calico("Tier", "kube-admin", "{defaultAction: Deny}"), "spec.defaultAction", "must be Pass"),
        // Network sets.
        ("network set with a bad CIDR", calico("GlobalNetworkSet", "s", "{nets: [10.0.0.256/24]}"), "spec.nets[0]", "not a valid CIDR"),
        ("network set with Calico's reserved label", "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s, labels: {projectcalico.org/namespace: x}}\n".to_string(), "metadata.labels[\"projectcalico.org/namespace\"]", "reserved"),
        // Endpoints.
        ("host endpoint without node", calico("HostEndpoint", "h", "{interfaceName: eth0}"), "spec.node", "node must be specified"),
        ("host endpoint without interface or IPs", calico("HostEndpoint", "h", "{node: n}"), "spec.interfaceName", "at least one of interfaceName or expectedIPs"),
        ("host endpoint interface name too long", calico("HostEndpoint", "h", "{node: n, interfaceName: abcdefghijklmnop}"), "spec.interfaceName", "1-15 characters"),
        ("host endpoint expected IP with prefix", calico("HostEndpoint", "h", "{node: n, expectedIPs: [10.0.0.1/32]}"), "spec.expectedIPs[0]", "not a valid IP address"),
        ("endpoint port with ICMP", calico("HostEndpoint", "h", "{node: n, interfaceName: eth0, ports: [{name: p, protocol: ICMP, port: 1}]}"), "spec.ports[0].protocol", "does not support ports"),
        ("endpoint port name with uppercase", calico("HostEndpoint", "h", "{node: n, interfaceName: eth0, ports: [{name: Web, protocol: TCP, port: 80}]}"), "spec.ports[0].name", "not a valid port name"),
        ("workload address that is a network", calico("WorkloadEndpoint", "w", "{interfaceName: cali1, ipNetworks: [10.0.0.0/24]}"), "spec.ipNetworks[0]", "must be a /32 or /128"),
        ("workload without interface", calico("WorkloadEndpoint", "w", "{}"), "spec.interfaceName", "must be specified"),
        ("workload with a bad MAC", calico("WorkloadEndpoint", "w", "{interfaceName: cali1, mac: 'zz:00'}"), "spec.mac", "not a MAC address"),
        ("workload NAT outside its networks", calico("WorkloadEndpoint", "w", "{interfaceName: cali1, ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.2, externalIP: 1.2.3.4}]}"), "spec.ipNATs[0].internalIP", "not in the endpoint's ipNetworks"),
        ("workload IPv4 gateway that is IPv6", calico("WorkloadEndpoint", "w", "{interfaceName: cali1, ipv4Gateway: 'fe80::1'}"), "spec.ipv4Gateway", "must be an IPv4 address"),
        // Profiles.
        ("profile label to apply with a bad key", calico("Profile", "p", "{labelsToApply: {'-a': b}}"), "spec.labelsToApply.-a", "not a qualified name"),
        // Kubernetes NetworkPolicy.
        ("In without values", k8s("{podSelector: {matchExpressions: [{key: a, operator: In}]}}"), "spec.podSelector.matchExpressions[0].values", "must be specified when operator is In"),
        ("Exists with values", k8s("{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}"), "spec.podSelector.matchExpressions[0].values", "may not be specified when operator is Exists"),
        ("unknown operator", k8s("{podSelector: {matchExpressions: [{key: a, operator: Equals, values: [x]}]}}"), "spec.podSelector.matchExpressions[0].operator", "unsupported operator"),
        ("bad label key", k8s("{podSelector: {matchLabels: {'a/b/c': x}}}"), "spec.podSelector.matchLabels[\"a/b/c\"]", "not a qualified name"),
        ("bad label value", k8s("{ingress: [{from: [{namespaceSelector: {matchLabels: {a: '-x'}}}]}]}"), "spec.ingress[0].from[0].namespaceSelector.matchLabels.a", "not a valid label value"),
        ("ICMP port protocol", k8s("{ingress: [{ports: [{protocol: ICMP, port: 1}]}]}"), "spec.ingress[0].ports[0].protocol", "must be TCP, UDP or SCTP"),
        ("port above 65535", k8s("{ingress: [{ports: [{port: 70000}]}]}"), "spec.ingress[0].ports[0].port", "out of range 1-65535"),
        ("bad named port", k8s("{ingress: [{ports: [{port: Web_1}]}]}"), "spec.ingress[0].ports[0].port", "not a valid port name"),
        ("endPort with a named port", k8s("{egress: [{ports: [{port: http, endPort: 90}]}]}"), "spec.egress[0].ports[0].endPort", "named port"),
        ("endPort without port", k8s("{egress: [{ports: [{endPort: 90}]}]}"), "spec.egress[0].ports[0].endPort", "without port"),
        ("ipBlock cidr without prefix", k8s("{egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}"), "spec.egress[0].to[0].ipBlock.cidr", "prefix length is required"),
        ("ipBlock with a selector", k8s("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}"), "spec.egress[0].to[0]", "may not specify ipBlock together"),
        ("empty peer", k8s("{egress: [{to: [{}]}]}"), "spec.egress[0].to[0]", "must specify a peer"),
        ("unknown policy type", k8s("{policyTypes: [Both]}"), "spec.policyTypes[0]", "unsupported policy type"),
        ("unknown field inside a peer", k8s("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, expect: [10.1.0.0/16]}}]}]}"), "spec.ingress[0].from[0].ipBlock.expect", "unknown field `expect`"),
    ];
    let mut failures = Vec::new();
    for (what, text, path, fragment) in &cases {
        match load_str("case.yaml", text) {
            Ok(_) => failures.push(format!("{what}: loaded, but must fail at {path}")),
            Err(errors) => {
                let found = errors.errors().iter().any(|e| {
                    e.error.path().is_some_and(|p| p.to_string() == *path)
                        && e.to_string().contains(fragment)
                });
                if !found {
                    failures.push(format!(
                        "{what}: want `{path}` with {fragment:?}, got:\n{errors}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_manifests_are_accepted() {
    let cases: Vec<(&str, String)> = vec![
        ("named ports need no protocol", ingress("{action: Allow, destination: {ports: [http, metrics]}}")),
        ("a bare IP in nets is a /32", ingress("{action: Allow, source: {nets: [192.0.2.1, '2001:db8::1']}, destination: {nets: []}}").replace(", '2001:db8::1'", "")),
        ("protocol as a numeric string", ingress("{action: Allow, protocol: '6', destination: {ports: ['8000:8080']}}")),
        ("ICMP type and code", ingress("{action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}, notICMP: {type: 3}}")),
        ("ICMPv6 by number", ingress("{action: Allow, protocol: 58, ipVersion: 6, icmp: {type: 128}}")),
        ("SCTP port range", ingress("{action: Allow, protocol: SCTP, destination: {ports: ['1:65535']}}")),
        ("service match in an ingress source", ingress("{action: Allow, protocol: TCP, source: {services: {name: s, namespace: n}}, destination: {ports: [80]}}")),
        ("global() alone in a namespaceSelector", ingress("{action: Allow, source: {namespaceSelector: global(), selector: a == 'b'}}")),
        ("http match on an ingress Allow rule", ingress("{action: Allow, protocol: TCP, http: {methods: [GET], paths: [{exact: /a}, {prefix: /b}]}}")),
        ("preDNAT with applyOnForward", gnp("{preDNAT: true, applyOnForward: true, ingress: [{action: Deny}]}")),
        ("performance hint", gnp("{performanceHints: [AssumeNeededOnEveryNode]}")),
        ("staged delete with only a tier", calico("StagedGlobalNetworkPolicy", "p", "{stagedAction: Delete, tier: security}")),
        ("converted Kubernetes policy name", calico("NetworkPolicy", "knp.default.allow-web.v2", "{}")),
        ("well-known tiers get their fixed order and action", calico("Tier", "kube-baseline", "{}")),
        ("wildcard host endpoint", calico("HostEndpoint", "h", "{node: n, interfaceName: '*'}")),
        ("host endpoint by expected IPs", calico("HostEndpoint", "h", "{node: n, expectedIPs: ['10.0.0.1', 'fd00::1']}")),
        ("network set with host bits and bare IPs", calico("GlobalNetworkSet", "s", "{nets: [10.0.0.1/8, 10.0.0.1, 'dead:beef::']}")),
        ("workload with a NAT inside its networks", calico("WorkloadEndpoint", "w", "{interfaceName: cali1, ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.1, externalIP: 1.2.3.4}], ports: [{protocol: TCP, port: 80, hostPort: 8080}]}")),
        ("Kubernetes match expressions", k8s("{podSelector: {matchExpressions: [{key: a, operator: In, values: [x, y]}, {key: b, operator: DoesNotExist}]}}")),
        ("Kubernetes named port and endPort range", k8s("{egress: [{ports: [{port: dns, protocol: UDP}, {port: 1000, endPort: 1000}]}]}")),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(what, text)| {
            load_str("case.yaml", text)
                .err()
                .map(|e| format!("{what}:\n{e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
