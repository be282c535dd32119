//! The loader's behaviour: documents, defaults, errors and serialization.

use pretty_assertions::assert_eq;
use twill_api::policy::PolicyType;
use twill_api::{LoadErrorKind, LoadErrors, Resource, find_kind_by_name, load_str, to_yaml};

fn load(text: &str) -> Vec<Resource> {
    load_str("test.yaml", text).unwrap_or_else(|e| panic!("load failed:\n{e}"))
}

fn errors(text: &str) -> LoadErrors {
    match load_str("test.yaml", text) {
        Ok(r) => panic!("expected errors, loaded {r:?}"),
        Err(e) => e,
    }
}

/// `(path, message)` of every error, for compact assertions.
fn error_paths(errors: &LoadErrors) -> Vec<(String, String)> {
    errors
        .errors()
        .iter()
        .map(|e| {
            (
                e.error.path().map(|p| p.to_string()).unwrap_or_default(),
                e.to_string(),
            )
        })
        .collect()
}

#[test]
fn namespaced_kinds_without_a_namespace_get_default() {
    let docs = [
        ("projectcalico.org/v3", "NetworkPolicy", Some("default")),
        ("projectcalico.org/v3", "NetworkSet", Some("default")),
        (
            "projectcalico.org/v3",
            "StagedNetworkPolicy",
            Some("default"),
        ),
        ("networking.k8s.io/v1", "NetworkPolicy", Some("default")),
        ("projectcalico.org/v3", "GlobalNetworkPolicy", None),
        ("projectcalico.org/v3", "GlobalNetworkSet", None),
        ("projectcalico.org/v3", "Profile", None),
    ];
    for (api_version, kind, namespace) in docs {
        let text = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: x\n");
        let resources = load(&text);
        assert_eq!(resources[0].namespace(), namespace, "{kind}");
        assert_eq!(resources[0].kind(), kind);
    }
}

#[test]
fn an_explicit_namespace_is_kept_and_a_cluster_scoped_kind_refuses_one() {
    let r = load(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: x, namespace: prod}\n",
    );
    assert_eq!(r[0].namespace(), Some("prod"));
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: x, namespace: prod}\n",
    );
    assert_eq!(error_paths(&e)[0].0, "metadata.namespace");
    assert!(e.to_string().contains("cluster-scoped"), "{e}");
}

fn policy_types(resource: &Resource) -> Vec<PolicyType> {
    match resource {
        Resource::NetworkPolicy(p) => p.spec.types.clone(),
        Resource::GlobalNetworkPolicy(p) => p.spec.types.clone(),
        other => panic!("not a policy: {other:?}"),
    }
}

#[test]
fn policy_types_default_from_the_rules_present_as_calico_does() {
    use PolicyType::{Egress, Ingress};
    let cases: [(&str, Vec<PolicyType>); 5] = [
        ("{}", vec![Ingress]),
        ("{ingress: [{action: Allow}]}", vec![Ingress]),
        ("{egress: [{action: Allow}]}", vec![Egress]),
        (
            "{ingress: [{action: Allow}], egress: [{action: Allow}]}",
            vec![Ingress, Egress],
        ),
        (
            "{types: [Egress], ingress: [{action: Allow}]}",
            vec![Egress],
        ),
    ];
    for kind in ["NetworkPolicy", "GlobalNetworkPolicy"] {
        for (spec, expected) in &cases {
            let text = format!(
                "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: p}}\nspec: {spec}\n"
            );
            assert_eq!(&policy_types(&load(&text)[0]), expected, "{kind} {spec}");
        }
    }
}

#[test]
fn policies_without_a_tier_belong_to_the_default_tier() {
    let r = load(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.p}\nspec: {tier: security}\n",
    );
    let tiers: Vec<_> = r
        .iter()
        .map(|r| match r {
            Resource::GlobalNetworkPolicy(p) => p.spec.tier.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(tiers, ["default", "security"]);
}

#[test]
fn errors_of_every_document_are_collected_with_document_kind_and_name() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad-net}
spec: {nets: [garbage]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: good}
spec: {nets: [10.0.0.0/8]}
---
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: t}
spec: {defaultAction: Log}
";
    let e = errors(text);
    let rendered: Vec<String> = e.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "test.yaml: document 1 (GlobalNetworkSet \"bad-net\"): spec.nets[0]: \"garbage\" is not a valid CIDR or IP address",
            "test.yaml: document 3 (Tier \"t\"): spec.defaultAction: defaultAction Log is invalid: must be Deny or Pass",
        ]
    );
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: a\nspec:\n  ingress:\n    - action: Allow\n      protocol: [TCP\n",
    );
    match &e.errors()[0].error {
        LoadErrorKind::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!((*line, *column), (8, 17));
            assert!(message.contains("unclosed bracket"), "{message}");
        }
        other => panic!("not a syntax error: {other:?}"),
    }
    assert!(
        e.to_string().starts_with("test.yaml:8:17: syntax error: "),
        "{e}"
    );
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    let e = errors("{\"apiVersion\": \"projectcalico.org/v3\",\n \"kind\": }");
    assert!(
        matches!(e.errors()[0].error, LoadErrorKind::Syntax { line: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn json_objects_arrays_and_concatenated_values_load() {
    let one =
        r#"{"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "a"}}"#;
    let two =
        r#"{"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "b"}}"#;
    for text in [format!("[{one}, {two}]"), format!("{one}\n{two}")] {
        let names: Vec<_> = load(&text).iter().map(|r| r.name().to_string()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}

#[test]
fn lists_expand_into_their_items_and_errors_point_inside_them() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSetList
items:
- metadata: {name: a}
  spec: {nets: [10.0.0.0/8]}
- metadata: {name: b}
  spec: {nets: [10.0.0.0/33]}
";
    let e = errors(text);
    assert_eq!(error_paths(&e)[0].0, "items[1].spec.nets[0]");
    let text = "\
apiVersion: v1
kind: List
items:
- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: a}}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: b}}
";
    let kinds: Vec<_> = load(text).iter().map(Resource::kind).collect();
    assert_eq!(kinds, ["Tier", "NetworkPolicy"]);
}

#[test]
fn unknown_kinds_and_missing_type_fields_are_reported() {
    let e = errors(
        "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n",
    );
    assert!(
        e.to_string()
            .contains("did you mean apiVersion \"projectcalico.org/v3\""),
        "{e}"
    );
    let e = errors("kind: Tier\nmetadata: {name: a}\n");
    assert!(matches!(
        e.errors()[0].error,
        LoadErrorKind::MissingTypeField {
            field: "apiVersion"
        }
    ));
    let e = errors("just a string\n");
    assert!(matches!(e.errors()[0].error, LoadErrorKind::NotAMapping));
}

#[test]
fn unknown_fields_anywhere_are_errors_naming_their_path() {
    let cases = [
        ("metadata: {name: a, nmae: b}", "metadata.nmae"),
        (
            "metadata: {name: a}\nspec: {selectr: all()}",
            "spec.selectr",
        ),
        (
            "metadata: {name: a}\nspec: {egress: [{action: Allow, destination: {nots: [10.0.0.0/8]}}]}",
            "spec.egress[0].destination.nots",
        ),
        (
            "metadata: {name: a}\nspec: {ingress: [{action: Allow, icmp: {typ: 8}, protocol: ICMP}]}",
            "spec.ingress[0].icmp.typ",
        ),
        ("metadata: {name: a}\nstatsu: {}", "statsu"),
    ];
    for (body, path) in cases {
        let text = format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n{body}\n");
        let e = errors(&text);
        assert_eq!(error_paths(&e)[0].0, path, "{e}");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}

#[test]
fn ports_and_protocols_serialize_back_as_they_were_written() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p
spec:
  ingress:
  - action: Allow
    protocol: '6'
    destination:
      ports: [80, '81', '1000:2000', http]
  - action: Allow
    protocol: 17
";
    let resources = load(text);
    let yaml = to_yaml(&resources[0]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"),
        "{yaml}"
    );
    for line in [
        "- 80\n",
        "- \"81\"\n",
        "- \"1000:2000\"\n",
        "- http\n",
        "protocol: \"6\"\n",
        "protocol: 17\n",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in\n{yaml}");
    }
    assert_eq!(load(&yaml), resources);
}

#[test]
fn every_violation_of_a_resource_is_reported_in_one_round() {
    let e = errors(
        "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: Bad_Name, labels: {'a b': c}}
spec:
  selector: global()
  ingress:
  - {action: Allow, ipVersion: 5}
  - {action: Deny, destination: {ports: [80]}}
",
    );
    let paths: Vec<String> = error_paths(&e).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "metadata.name",
            "metadata.labels[\"a b\"]",
            "spec.selector",
            "spec.ingress[0].ipVersion",
            "spec.ingress[1].destination.ports[0]",
        ]
    );
}

#[test]
fn the_command_line_finds_kinds_by_any_of_their_names() {
    for (name, kind) in [
        ("gnp", "GlobalNetworkPolicy"),
        ("networksets", "NetworkSet"),
        ("TIER", "Tier"),
        ("hep", "HostEndpoint"),
    ] {
        assert_eq!(
            find_kind_by_name(name).map(|k| k.kind),
            Some(kind),
            "{name}"
        );
    }
}

#[test]
fn yaml_1_1_booleans_stay_strings() {
    let r = load(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s, namespace: n, labels: {country: no, on: y}}\n",
    );
    let meta = r[0].metadata();
    assert_eq!(meta.namespace.as_deref(), Some("n"));
    assert_eq!(meta.labels.get("country").map(String::as_str), Some("no"));
    assert_eq!(meta.labels.get("on").map(String::as_str), Some("y"));
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let e =
        errors("apiVersion: projectcalico.org/v3\nkind: Tier\nkind: Tier\nmetadata: {name: t}\n");
    assert_eq!(
        e.to_string(),
        "test.yaml:3:1: syntax error: duplicate mapping key: kind"
    );
}

#[test]
fn large_honest_streams_load_but_alias_bombs_do_not() {
    let doc = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/8]}\n";
    let stream = vec![doc; 2_000].join("---\n");
    assert_eq!(load(&stream).len(), 2_000);

    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let prev = level - 1;
        let refs = vec![format!("*l{prev}"); 10]
            .join(", ")
            .replace("*l0", "*a");
        bomb.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    let e = errors(&bomb);
    assert!(
        matches!(e.errors()[0].error, LoadErrorKind::Syntax { .. }),
        "{e}"
    );
}

#[test]
fn resources_deserialize_from_what_they_serialize() {
    let resources = load(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n",
    );
    let json = serde_json::to_string(&resources).unwrap_or_else(|e| panic!("{e}"));
    let back: Vec<Resource> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, resources);
    let err = serde_json::from_str::<Resource>(r#"{"apiVersion": "v1", "kind": "Pod"}"#).err();
    assert!(err.is_some_and(|e| e.to_string().contains("unknown kind \"Pod\"")));
}
