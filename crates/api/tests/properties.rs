//! Properties of the loader over generated input: it never panics, and what
//! it serializes loads back to the same resources.

use proptest::prelude::*;
use twill_api::common::{Port, Protocol};
use twill_api::{load_str, to_json, to_yaml};

fn port() -> impl Strategy<Value = Port> {
    prop_oneof![
        (1u16.., any::<bool>()).prop_map(|(port, quoted)| Port::Single { port, quoted }),
        (1u16.., 1u16..).prop_map(|(a, b)| Port::Range {
            min: a.min(b),
            max: a.max(b)
        }),
        "[a-z][a-z0-9-]{0,14}".prop_map(Port::Named),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::IcmpV6),
        Just(Protocol::Sctp),
        Just(Protocol::UdpLite),
        (1u8.., any::<bool>()).prop_map(|(number, quoted)| Protocol::Number { number, quoted }),
    ]
}

/// Protocols that carry ports, by name or by number.
fn port_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp),
        (prop::sample::select(vec![6u8, 17, 132]), any::<bool>())
            .prop_map(|(number, quoted)| Protocol::Number { number, quoted }),
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    (any::<[u8; 4]>(), 0u8..=32).prop_map(|(octets, len)| {
        let net = ipnet::Ipv4Net::new(octets.into(), len).expect("prefix length is at most 32");
        net.trunc().to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load_str("fuzz.yaml", &text);
    }

    #[test]
    fn arbitrary_yaml_shaped_text_never_panics(text in "(apiVersion: projectcalico.org/v3\nkind: (NetworkPolicy|Tier)\n)?([a-zA-Z:{}\\[\\], \n-]|  |'|\"|[0-9]){0,120}") {
        let _ = load_str("fuzz.yaml", &text);
    }

    #[test]
    fn ports_and_protocols_round_trip_through_json(port in port(), protocol in protocol()) {
        let json = serde_json::to_value(&port).expect("ports serialize");
        prop_assert_eq!(serde_json::from_value::<Port>(json).expect("ports deserialize"), port);
        let json = serde_json::to_value(protocol).expect("protocols serialize");
        prop_assert_eq!(serde_json::from_value::<Protocol>(json).expect("protocols deserialize"), protocol);
    }

    #[test]
    fn generated_policies_round_trip_through_yaml_and_json(
        ports in prop::collection::vec(port(), 1..5),
        protocol in port_protocol(),
        nets in prop::collection::vec(cidr(), 0..4),
        order in prop::option::of(-1e6f64..1e6),
    ) {
        let ports: Vec<String> = ports.iter().map(|p| serde_json::to_string(p).expect("ports serialize")).collect();
        let protocol = serde_json::to_string(&protocol).expect("protocols serialize");
        let nets: Vec<String> = nets.iter().map(|n| format!("{n:?}")).collect();
        let order = order.map(|o| format!("\"order\": {o},")).unwrap_or_default();
        let text = format!(
            r#"{{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {{"name": "p"}},
                "spec": {{{order} "ingress": [{{"action": "Allow", "protocol": {protocol},
                "destination": {{"ports": [{}], "nets": [{}]}}}}]}}}}"#,
            ports.join(","),
            nets.join(","),
        );
        let loaded = load_str("gen.json", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let yaml = to_yaml(&loaded[0]).expect("resources serialize to YAML");
        let again = load_str("again.yaml", &yaml).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(&again, &loaded);
        let again = load_str("again.json", &to_json(&loaded[0])).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again, &loaded);
    }
}
