use super::*;

const MINIMAL: &str = r#"
nodes: 2
tor: none
pods:
  - {namespace: a, name: web, node: 1, ports: [{name: http, port: 80, protocol: TCP}]}
  - {namespace: b, name: cli, node: n2}
steps:
  - probe:
      - {from: b/cli, to: a/web, port: 80, protocol: TCP, expect: allow}
  - matrix:
      expect:
        a/web: "- A"
        b/cli: ". -"
  - wait: 2s
  - wait: programmed
"#;

#[test]
fn a_minimal_scenario_parses_with_defaults() {
    let s = Scenario::parse("minimal", MINIMAL).expect("valid scenario");
    assert_eq!(s.nodes.names(), ["n1", "n2"]);
    assert_eq!(s.tor, Tor::None);
    assert_eq!(s.encap, Encap::None);
    assert_eq!(s.pod_names(), ["a/web", "b/cli"]);
    assert_eq!(s.pods[0].ports[0].protocol, Protocol::Tcp);
    assert_eq!(s.steps.len(), 4);
    assert_eq!(s.steps[2], Step::Wait(WaitSpec::Seconds(2.0)));
    assert_eq!(s.steps[3], Step::Wait(WaitSpec::Programmed));
}

#[test]
fn node_references_resolve_by_index_or_name() {
    let nodes = Nodes::Names(vec!["rack1-a".into(), "rack1-b".into()]).names();
    let cases = [
        (NodeRef::Index(1), Some("rack1-a")),
        (NodeRef::Index(2), Some("rack1-b")),
        (NodeRef::Index(0), None),
        (NodeRef::Index(3), None),
        (NodeRef::Name("rack1-b".into()), Some("rack1-b")),
        (NodeRef::Name("n1".into()), None),
    ];
    for (reference, want) in cases {
        assert_eq!(
            reference.resolve(&nodes).ok().as_deref(),
            want,
            "{reference:?}"
        );
    }
}

#[test]
fn mistakes_are_reported_with_their_field_path() {
    let cases = [
        ("nodes: 2\nflavour: x\n", "flavour"),
        ("nodes: 0\n", "nodes"),
        ("pods: [{namespace: a, name: p, node: 9}]\n", "pods[0].node"),
        (
            "pods: [{namespace: A, name: p, node: 1}]\n",
            "pods[0].namespace",
        ),
        (
            "pods: [{namespace: a, name: p, node: 1, ports: [{port: 80, protocol: SCTP}]}]\n",
            "pods[0].ports[0].protocol",
        ),
        (
            "pods: [{namespace: a, name: p, node: 1}]\nsteps: [{probe: [{from: a/p, to: a/q, port: 1, expect: allow}]}]\n",
            "steps[0].probe[0].to",
        ),
        (
            "pods: [{namespace: a, name: p, node: 1}]\nsteps: [{probe: [{from: a/p, to: a/p, port: 1, expect: maybe}]}]\n",
            "steps[0].probe[0].expect",
        ),
        (
            "pods: [{namespace: a, name: p, node: 1}]\nsteps: [{matrix: {expect: {a/p: \"--\"}}}]\n",
            "steps[0].matrix.expect.a/p",
        ),
        ("steps: [{wait: forever}]\n", "steps[0].wait"),
        ("steps: [{dance: {}}]\n", "steps[0]"),
    ];
    for (text, path) in cases {
        match Scenario::parse("t", text) {
            Err(LabError::Scenario { path: got, .. }) => {
                assert!(
                    got.starts_with(path),
                    "{text:?}: path {got:?}, want {path:?}"
                );
            }
            other => panic!("{text:?}: expected a scenario error at {path}, got {other:?}"),
        }
    }
}

#[test]
fn matrix_rows_accept_allow_deny_and_self_ignoring_spaces() {
    assert_eq!(
        parse_row("- A .").expect("valid row"),
        [Cell::Itself, Cell::Allow, Cell::Deny]
    );
    assert!(parse_row("-?").is_err());
}

#[test]
fn the_example_scenarios_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/scenarios exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            Scenario::parse(&path.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected the example scenarios, found {seen}");
}
