//! The network and infrastructure kinds (IP pools, IPAM, BGP, Felix, nodes,
//! the operator's Installation): defaults, and the exact field and reason
//! of every rule Calico enforces. The documentation examples themselves are
//! loaded by `corpus.rs`.

use twill_api::bgp::AsNumber;
use twill_api::felix::DEFAULT_FAILSAFE_INBOUND;
use twill_api::ippool::{IPIPMode, IPPoolAllowedUse, VXLANMode};
use twill_api::{Resource, load_str};

fn calico(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn installation(spec: &str) -> String {
    format!(
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {{name: default}}\nspec: {spec}\n"
    )
}

fn load_one(text: &str) -> Resource {
    let mut resources =
        load_str("test.yaml", text).unwrap_or_else(|e| panic!("does not load:\n{e}\n{text}"));
    assert_eq!(resources.len(), 1);
    resources.remove(0)
}

/// `(behaviour, manifest, field path, fragment of the reason)`.
fn rejected_cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        // IPPool
        ("block size below 20 is rejected", calico("IPPool", "p", "{cidr: 10.0.0.0/16, blockSize: 19}"), "spec.blockSize", "20 to 32"),
        ("IPv6 block size below 116 is rejected", calico("IPPool", "p", "{cidr: 'fd00::/48', blockSize: 112}"), "spec.blockSize", "116 to 128"),
        ("pool smaller than a block is rejected", calico("IPPool", "p", "{cidr: 10.0.0.0/27}"), "spec.blockSize", "smaller than one block"),
        ("unmasked CIDR is rejected", calico("IPPool", "p", "{cidr: 10.0.0.1/16}"), "spec.cidr", "not strictly masked (did you mean 10.0.0.0/16?)"),
        ("missing CIDR is rejected", calico("IPPool", "p", "{natOutgoing: true}"), "spec.cidr", "cidr is required"),
        ("link-local pool is rejected", calico("IPPool", "p", "{cidr: 169.254.0.0/16}"), "spec.cidr", "link-local"),
        ("IPv6 pool with IPIP is rejected", calico("IPPool", "p", "{cidr: 'fd00::/64', ipipMode: Always}"), "spec.ipipMode", "not supported on IPv6"),
        ("IPIP and VXLAN together are rejected", calico("IPPool", "p", "{cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: CrossSubnet}"), "spec.vxlanMode", "cannot both be enabled"),
        ("unknown encapsulation mode is rejected", calico("IPPool", "p", "{cidr: 10.0.0.0/16, ipipMode: Sometimes}"), "spec.ipipMode", "unknown variant `Sometimes`"),
        ("LoadBalancer pool cannot be encapsulated", calico("IPPool", "p", "{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], vxlanMode: Always}"), "spec.allowedUses", "cannot have IPIP or VXLAN"),
        ("LoadBalancer cannot be combined with Workload", calico("IPPool", "p", "{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer, Workload]}"), "spec.allowedUses", "cannot be combined"),
        ("LoadBalancer pool must select all nodes", calico("IPPool", "p", "{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], nodeSelector: zone == 'a'}"), "spec.nodeSelector", "must have nodeSelector all()"),
        ("LoadBalancer pool cannot disable BGP export", calico("IPPool", "p", "{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], disableBGPExport: true}"), "spec.disableBGPExport", "cannot disable BGP export"),
        ("Tunnel pool cannot select namespaces", calico("IPPool", "p", "{cidr: 10.0.0.0/16, allowedUses: [Tunnel], namespaceSelector: a == 'b'}"), "spec.namespaceSelector", "Tunnel"),
        ("global() is not a pool selector", calico("IPPool", "p", "{cidr: 10.0.0.0/16, nodeSelector: global()}"), "spec.nodeSelector", "global()"),
        ("unknown pool field is rejected", calico("IPPool", "p", "{cidr: 10.0.0.0/16, ipipmode: Always}"), "spec.ipipmode", "unknown field"),
        // IPReservation
        ("reserved CIDR must parse", calico("IPReservation", "r", "{reservedCIDRs: [10.0.0.0/8, 10.0.0.256]}"), "spec.reservedCIDRs[1]", "not a valid CIDR"),
        // IPAMConfiguration
        ("IP cooldown above 1200 s is rejected", calico("IPAMConfiguration", "default", "{ipCooldownSeconds: 1201}"), "spec.ipCooldownSeconds", "out of range 0 to 1200"),
        ("negative IP cooldown is rejected", calico("IPAMConfiguration", "default", "{ipCooldownSeconds: -1}"), "spec.ipCooldownSeconds", "out of range 0 to 1200"),
        ("blocks per host above a million are rejected", calico("IPAMConfiguration", "default", "{maxBlocksPerHost: 1000001}"), "spec.maxBlocksPerHost", "out of range"),
        ("IPAM needs strict affinity or automatic blocks", calico("IPAMConfiguration", "default", "{strictAffinity: false, autoAllocateBlocks: false}"), "spec.autoAllocateBlocks", "cannot both be false"),
        ("IPAM configuration is a singleton", calico("IPAMConfiguration", "other", "{strictAffinity: true}"), "metadata.name", "must be named \"default\""),
        // AS numbers
        ("AS number 0 is rejected", calico("BGPConfiguration", "default", "{asNumber: 0}"), "spec.asNumber", "AS number 0 is reserved"),
        ("AS number above 2^32-1 is rejected", calico("BGPConfiguration", "default", "{asNumber: 4294967296}"), "spec.asNumber", "above the 4-byte maximum"),
        ("dotted AS part above 65535 is rejected", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: '65536.1'}"), "spec.asNumber", "invalid AS number \"65536.1\""),
        ("unquoted dotted AS number is rejected", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: 65000.5}"), "spec.asNumber", "quote dotted AS numbers"),
        ("node AS number 0 is rejected", calico("Node", "n", "{bgp: {asNumber: 0, ipv4Address: 10.0.0.1/24}}"), "spec.bgp.asNumber", "AS number 0 is reserved"),
        // BGPConfiguration
        ("community values are 16-bit pairs or 32-bit triples", calico("BGPConfiguration", "default", "{communities: [{name: c, value: '65536:1'}], prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [c]}]}"), "spec.communities[0].value", "not a community"),
        ("communities must be used", calico("BGPConfiguration", "default", "{communities: [{name: c, value: '65000:1'}]}"), "spec.communities", "not used in prefixAdvertisements"),
        ("advertised communities must be values or defined names", calico("BGPConfiguration", "default", "{prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]}"), "spec.prefixAdvertisements[0].communities[0]", "neither a community value nor a name"),
        ("mesh password needs the mesh", calico("BGPConfiguration", "default", "{nodeToNodeMeshEnabled: false, nodeMeshPassword: {secretKeyRef: {name: s, key: k}}}"), "spec.nodeMeshPassword", "nodeToNodeMeshEnabled is false"),
        ("mesh restart time must be a duration", calico("BGPConfiguration", "default", "{nodeMeshMaxRestartTime: 2 minutes}"), "spec.nodeMeshMaxRestartTime", "unknown unit"),
        ("listen port 0 is rejected", calico("BGPConfiguration", "default", "{listenPort: 0}"), "spec.listenPort", "out of range"),
        ("local workload peering IPv4 must be IPv4", calico("BGPConfiguration", "default", "{localWorkloadPeeringIPV4: 'fd00::1'}"), "spec.localWorkloadPeeringIPV4", "not an IPv4 address"),
        ("log severity must be a known level", calico("BGPConfiguration", "default", "{logSeverityScreen: Chatty}"), "spec.logSeverityScreen", "unknown log level"),
        // BGPPeer
        ("peerIP and peerSelector are exclusive", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, peerSelector: rr == 'true'}"), "spec.peerIP", "peerIP and peerSelector cannot both be set"),
        ("node and nodeSelector are exclusive", calico("BGPPeer", "p", "{node: n1, nodeSelector: all(), peerIP: 192.0.2.1, asNumber: 64512}"), "spec.node", "node and nodeSelector cannot both be set"),
        ("peerIP must be an address with an optional port", calico("BGPPeer", "p", "{peerIP: 'router.example:179', asNumber: 64512}"), "spec.peerIP", "IPv4:port or [IPv6]:port"),
        ("peerIP port 0 is rejected", calico("BGPPeer", "p", "{peerIP: '192.0.2.1:0', asNumber: 64512}"), "spec.peerIP", "is not an address"),
        ("peerSelector peers bring their own AS", calico("BGPPeer", "p", "{peerSelector: rr == 'true', asNumber: 64512}"), "spec.asNumber", "must be empty when peerSelector is set"),
        ("reachableBy needs the same family as peerIP", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: 64512, reachableBy: 'fd00::1'}"), "spec.reachableBy", "different address families"),
        ("reachableBy needs a peerIP", calico("BGPPeer", "p", "{peerSelector: a == 'b', reachableBy: 10.0.0.1}"), "spec.reachableBy", "must be empty when peerIP is empty"),
        ("keepOriginalNextHop and nextHopMode are exclusive", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: 1, keepOriginalNextHop: true, nextHopMode: Keep}"), "spec.nextHopMode", "cannot both be set"),
        ("local workload peering needs an AS number", calico("BGPPeer", "p", "{localWorkloadSelector: a == 'b'}"), "spec.asNumber", "required when localWorkloadSelector is set"),
        ("keepalive must be a duration", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: 1, keepaliveTime: '10'}"), "spec.keepaliveTime", "missing a unit"),
        ("password needs a secret key", calico("BGPPeer", "p", "{peerIP: 192.0.2.1, asNumber: 1, password: {secretKeyRef: {name: s}}}"), "spec.password.secretKeyRef.key", "secret key is required"),
        ("unknown peer field is rejected", calico("BGPPeer", "p", "{peerIp: 192.0.2.1}"), "spec.peerIp", "unknown field"),
        // BGPFilter
        ("filter CIDR must match the list's family", calico("BGPFilter", "f", "{exportV4: [{action: Accept, cidr: 'fd00::/8', matchOperator: In}]}"), "spec.exportV4[0].cidr", "not an IPv4 CIDR"),
        ("filter CIDR needs a match operator", calico("BGPFilter", "f", "{importV6: [{action: Reject, cidr: 'fd00::/8'}]}"), "spec.importV6[0].matchOperator", "both be set or both be empty"),
        ("prefix length needs a CIDR", calico("BGPFilter", "f", "{importV4: [{action: Accept, prefixLength: {min: 24}}]}"), "spec.importV4[0].prefixLength", "cidr is required"),
        ("IPv4 prefix length is at most 32", calico("BGPFilter", "f", "{importV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {max: 33}}]}"), "spec.importV4[0].prefixLength.max", "out of range 0 to 32"),
        ("filter rules need an action", calico("BGPFilter", "f", "{exportV4: [{cidr: 10.0.0.0/8, matchOperator: In}]}"), "spec.exportV4[0]", "missing field `action`"),
        ("unknown match operator is rejected", calico("BGPFilter", "f", "{exportV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: Within}]}"), "spec.exportV4[0].matchOperator", "unknown variant"),
        ("operations only with Accept", calico("BGPFilter", "f", "{exportV4: [{action: Reject, operations: [{setPriority: {value: 10}}]}]}"), "spec.exportV4[0].operations", "only be used with action Accept"),
        // FelixConfiguration
        ("Felix durations are validated", calico("FelixConfiguration", "default", "{routeRefreshInterval: '90'}"), "spec.routeRefreshInterval", "missing a unit"),
        ("Felix log level is validated", calico("FelixConfiguration", "default", "{logSeverityScreen: Loud}"), "spec.logSeverityScreen", "not one of"),
        ("failsafe protocol must be TCP, UDP or SCTP", calico("FelixConfiguration", "default", "{failsafeInboundHostPorts: [{protocol: icmp, port: 1}]}"), "spec.failsafeInboundHostPorts[0].protocol", "not one of TCP, UDP, SCTP"),
        ("VXLAN port must be a port", calico("FelixConfiguration", "default", "{wireguardListeningPort: 70000}"), "spec.wireguardListeningPort", "out of range 1 to 65535"),
        ("NAT outgoing address must be IPv4", calico("FelixConfiguration", "default", "{natOutgoingAddress: 'fd00::1'}"), "spec.natOutgoingAddress", "not an IPv4 address"),
        ("node port ranges hold numbers only", calico("FelixConfiguration", "default", "{kubeNodePortRanges: [http]}"), "spec.kubeNodePortRanges[0]", "named port"),
        ("route table range stays within 1..250", calico("FelixConfiguration", "default", "{routeTableRange: {min: 0, max: 250}}"), "spec.routeTableRange", "within 1..250"),
        ("routeTableRange and routeTableRanges are exclusive", calico("FelixConfiguration", "default", "{routeTableRange: {min: 1, max: 2}, routeTableRanges: [{min: 3, max: 4}]}"), "spec.routeTableRanges", "cannot both be set"),
        ("nodeSelector is not for the global configuration", calico("FelixConfiguration", "default", "{nodeSelector: all()}"), "spec.nodeSelector", "not allowed on \"default\""),
        ("unknown Felix field is rejected", calico("FelixConfiguration", "default", "{ipipEnable: true}"), "spec.ipipEnable", "unknown field"),
        // Node and ClusterInformation
        ("route reflector cluster ID is an IPv4 address", calico("Node", "n", "{bgp: {routeReflectorClusterID: 'fd00::1'}}"), "spec.bgp.routeReflectorClusterID", "not an IPv4 address"),
        ("VXLAN MAC must be a MAC", calico("Node", "n", "{vxlanTunnelMACAddr: 'zz:00:00:00:00:01'}"), "spec.vxlanTunnelMACAddr", "not a MAC address"),
        ("empty bgp block is rejected", calico("Node", "n", "{bgp: {}}"), "spec.bgp", "must not be empty"),
        ("cluster information is a singleton", calico("ClusterInformation", "x", "{datastoreReady: true}"), "metadata.name", "must be named \"default\""),
        // Installation
        ("IPv6 operator pool cannot use IPIP", installation("{calicoNetwork: {ipPools: [{cidr: 'fd00::/48', encapsulation: IPIP}]}}"), "spec.calicoNetwork.ipPools[0].encapsulation", "IPIP is not supported on IPv6"),
        ("unknown encapsulation is rejected", installation("{calicoNetwork: {ipPools: [{cidr: 10.0.0.0/16, encapsulation: GRE}]}}"), "spec.calicoNetwork.ipPools[0].encapsulation", "unknown variant `GRE`"),
        ("operator pool block size is checked", installation("{calicoNetwork: {ipPools: [{cidr: 10.0.0.0/16, blockSize: 33}]}}"), "spec.calicoNetwork.ipPools[0].blockSize", "20 to 32"),
        ("IPIP without BGP needs Felix routing", installation("{calicoNetwork: {bgp: Disabled, ipPools: [{cidr: 10.0.0.0/16, encapsulation: IPIP}]}}"), "spec.calicoNetwork.ipPools[0].encapsulation", "needs BGP enabled"),
        ("one autodetection method per family", installation("{calicoNetwork: {nodeAddressAutodetectionV4: {firstFound: true, interface: eth0}}}"), "spec.calicoNetwork.nodeAddressAutodetectionV4", "2 autodetection methods"),
        ("policy setup timeout is not negative", installation("{calicoNetwork: {linuxPolicySetupTimeoutSeconds: -1}}"), "spec.calicoNetwork.linuxPolicySetupTimeoutSeconds", "negative"),
        ("at most 25 operator pools", installation(&format!("{{calicoNetwork: {{ipPools: [{}]}}}}", vec!["{cidr: 10.0.0.0/16, encapsulation: VXLAN}"; 26].join(", "))), "spec.calicoNetwork.ipPools", "at most 25"),
        ("CNI log size needs a binary suffix", installation("{logging: {cni: {logFileMaxSize: 100MB}}}"), "spec.logging.cni.logFileMaxSize", "binary size"),
        ("FIPS mode was removed", installation("{fipsMode: Enabled}"), "spec.fipsMode", "removed"),
        ("Installation must be named default", "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: mine}\nspec: {}\n".to_string(), "metadata.name", "must be named \"default\""),
        ("unknown field inside a Kubernetes toleration is rejected", installation("{controlPlaneTolerations: [{key: k, operator: Exists, efect: NoSchedule}]}"), "spec.controlPlaneTolerations[0].efect", "unknown field"),
        ("unknown Installation field is rejected", installation("{calicoNetwork: {ipPool: []}}"), "spec.calicoNetwork.ipPool", "unknown field"),
    ]
}

#[test]
fn invalid_network_manifests_fail_at_the_exact_field() {
    let mut failures = Vec::new();
    for (behaviour, text, path, fragment) in rejected_cases() {
        let errors = match load_str("test.yaml", &text) {
            Ok(_) => {
                failures.push(format!("{behaviour}: loaded, but must fail"));
                continue;
            }
            Err(errors) => errors,
        };
        let matched = errors.errors().iter().any(|e| {
            e.error.path().map(ToString::to_string).as_deref() == Some(path)
                && e.to_string().contains(fragment)
        });
        if !matched {
            failures.push(format!(
                "{behaviour}: no error at `{path}` containing {fragment:?}; got:\n{errors}"
            ));
        } else if errors.errors().len() != 1 {
            failures.push(format!("{behaviour}: expected one error, got:\n{errors}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn pool_defaults_depend_on_the_address_family() {
    for (cidr, block) in [("10.0.0.0/16", 26), ("'fd00::/64'", 122)] {
        let Resource::IPPool(pool) = load_one(&calico("IPPool", "p", &format!("{{cidr: {cidr}}}")))
        else {
            panic!("not an IPPool");
        };
        assert_eq!(pool.spec.block_size, Some(block), "{cidr}");
        assert_eq!(pool.spec.node_selector.as_deref(), Some("all()"));
        assert_eq!(pool.spec.ipip_mode, Some(IPIPMode::Never));
        assert_eq!(pool.spec.vxlan_mode, Some(VXLANMode::Never));
        assert_eq!(
            pool.spec.effective_allowed_uses(),
            vec![IPPoolAllowedUse::Workload, IPPoolAllowedUse::Tunnel]
        );
    }
}

#[test]
fn ipam_configuration_defaults_to_automatic_blocks() {
    let Resource::IPAMConfiguration(config) =
        load_one(&calico("IPAMConfiguration", "default", "{}"))
    else {
        panic!("not an IPAMConfiguration");
    };
    assert!(config.spec.auto_allocate_blocks);
    assert!(!config.spec.strict_affinity);
}

#[test]
fn dotted_and_plain_as_numbers_mean_the_same_number() {
    let dotted = load_one(&calico(
        "BGPPeer",
        "p",
        "{peerIP: 192.0.2.1, asNumber: '1.10'}",
    ));
    let plain = load_one(&calico(
        "BGPPeer",
        "p",
        "{peerIP: 192.0.2.1, asNumber: 65546}",
    ));
    let (Resource::BGPPeer(dotted), Resource::BGPPeer(plain)) = (dotted, plain) else {
        panic!("not BGPPeers");
    };
    assert_eq!(dotted.spec.as_number, Some(AsNumber(65546)));
    assert_eq!(dotted, plain);
}

#[test]
fn felix_failsafe_ports_default_to_calicos_list_only_when_unset() {
    let Resource::FelixConfiguration(unset) =
        load_one(&calico("FelixConfiguration", "default", "{}"))
    else {
        panic!("not a FelixConfiguration");
    };
    let ports: Vec<(String, u16)> = unset
        .spec
        .effective_failsafe_inbound()
        .into_iter()
        .map(|p| (p.protocol, p.port))
        .collect();
    let expected: Vec<(String, u16)> = DEFAULT_FAILSAFE_INBOUND
        .iter()
        .map(|(p, n)| (p.to_string(), *n))
        .collect();
    assert_eq!(ports, expected);
    assert!(
        ports.contains(&("tcp".to_string(), 22)),
        "SSH stays reachable by default"
    );

    let Resource::FelixConfiguration(empty) = load_one(&calico(
        "FelixConfiguration",
        "default",
        "{failsafeInboundHostPorts: []}",
    )) else {
        panic!("not a FelixConfiguration");
    };
    assert!(
        empty.spec.effective_failsafe_inbound().is_empty(),
        "an explicit empty list disables failsafes"
    );
}

#[test]
fn installation_overrides_pass_through_unchanged() {
    let text = installation(
        "{calicoNodeDaemonSet: {spec: {template: {spec: {nodeSelector: {disk: ssd}, futureField: [1, 2]}}}}}",
    );
    let Resource::Installation(install) = load_one(&text) else {
        panic!("not an Installation");
    };
    let kept = install.spec.calico_node_daemon_set.expect("override kept");
    let value = serde_json::Value::Object(kept.0);
    assert_eq!(
        value["spec"]["template"]["spec"]["futureField"],
        serde_json::json!([1, 2])
    );
    assert_eq!(
        value["spec"]["template"]["spec"]["nodeSelector"]["disk"],
        "ssd"
    );
}
