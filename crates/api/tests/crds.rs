//! The CRDs under `manifests/crds/` are generated from the Rust types; this
//! test regenerates them in memory and fails when the committed files
//! differ. `TWILL_BLESS=1` rewrites them (as does the `crdgen` binary).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use twill_api::KINDS;
use twill_api::crd::{GENERATED_HEADER, all_crds, generated_files};

fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/crds")
}

fn committed_files(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .to_string();
            (name, fs::read_to_string(&p).expect("readable CRD file"))
        })
        .collect()
}

/// The first differing line of two texts, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            return format!("line {}:\n  generated: {e}\n  committed: {a}", i + 1);
        }
    }
    format!(
        "lengths differ: generated {} lines, committed {} lines",
        expected.lines().count(),
        actual.lines().count()
    )
}

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = crd_dir();
    let generated = generated_files().expect("every CRD generates");
    if std::env::var_os("TWILL_BLESS").is_some() {
        fs::create_dir_all(&dir).expect("CRD directory can be created");
        for (name, text) in committed_files(&dir) {
            if !generated.contains_key(&name) && text.starts_with(GENERATED_HEADER) {
                fs::remove_file(dir.join(&name)).expect("stale CRD can be removed");
            }
        }
        for (name, text) in &generated {
            fs::write(dir.join(name), text).expect("CRD file can be written");
        }
        return;
    }
    let committed = committed_files(&dir);
    let mut problems = Vec::new();
    for (name, text) in &generated {
        match committed.get(name) {
            None => problems.push(format!("{name}: missing")),
            Some(old) if old != text => problems.push(format!(
                "{name}: differs at {}",
                first_difference(text, old)
            )),
            Some(_) => {}
        }
    }
    for (name, text) in &committed {
        if !generated.contains_key(name) && text.starts_with(GENERATED_HEADER) {
            problems.push(format!("{name}: no longer generated"));
        }
    }
    assert!(
        problems.is_empty(),
        "manifests/crds is out of date:\n{}\nrun `cargo run -p twill-api --bin crdgen` or set TWILL_BLESS=1",
        problems.join("\n")
    );
}

#[test]
fn every_registered_kind_but_kubernetes_networkpolicy_has_a_crd() {
    let registered: BTreeSet<(String, String)> = KINDS
        .iter()
        .filter(|k| k.api_version != "networking.k8s.io/v1")
        .map(|k| (k.api_version.to_string(), k.kind.to_string()))
        .collect();
    let generated: BTreeSet<(String, String)> = all_crds()
        .expect("every CRD generates")
        .iter()
        .map(|crd| {
            let version = &crd.spec.versions[0].name;
            (
                format!("{}/{version}", crd.spec.group),
                crd.spec.names.kind.clone(),
            )
        })
        .collect();
    assert_eq!(
        registered, generated,
        "crd::all_crds() and the resource registry disagree"
    );
}

/// Walks a schema and reports what Kubernetes would reject as non-structural.
fn structural_problems(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Value::Object(node) = schema else {
        out.push(format!("{path}: not an object"));
        return;
    };
    for banned in [
        "$ref",
        "definitions",
        "$defs",
        "oneOf",
        "anyOf",
        "allOf",
        "const",
    ] {
        if node.contains_key(banned) {
            out.push(format!("{path}: has {banned}"));
        }
    }
    let typed = node.contains_key("type")
        || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !typed {
        out.push(format!("{path}: has no type"));
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: has both properties and additionalProperties"
        ));
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, inner) in properties {
            structural_problems(inner, &format!("{path}.{name}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner @ Value::Object(_)) = node.get(key) {
            structural_problems(inner, &format!("{path}.{key}"), out);
        }
    }
}

#[test]
fn every_crd_schema_is_structural_and_every_type_is_named() {
    for crd in all_crds().expect("every CRD generates") {
        let version = &crd.spec.versions[0];
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("every CRD has a schema");
        let value = serde_json::to_value(schema).expect("schemas serialize");
        let mut problems = Vec::new();
        structural_problems(&value, &crd.spec.names.kind, &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(version.served && version.storage);
        // The version itself (v3 for Calico's kinds, v1 for the operator's)
        // comes from each kind's apiVersion; the registry test checks it.
    }
}

#[test]
fn kinds_with_a_status_get_the_status_subresource() {
    let crds = all_crds().expect("every CRD generates");
    let with_status: BTreeSet<&str> = crds
        .iter()
        .filter(|c| {
            c.spec.versions[0]
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        })
        .map(|c| c.spec.names.kind.as_str())
        .collect();
    for kind in ["IPPool", "Node", "Installation"] {
        assert!(
            with_status.contains(kind),
            "{kind} lacks the status subresource"
        );
    }
    assert!(!with_status.contains("BGPPeer"), "BGPPeer has no status");
}

#[test]
fn generated_yaml_parses_back_to_the_same_crd() {
    let crds = all_crds().expect("every CRD generates");
    let files = generated_files().expect("every CRD generates");
    assert_eq!(crds.len(), files.len(), "two kinds share a file name");
    for crd in &crds {
        let text = &files[&twill_api::crd::file_name(crd)];
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", crd.spec.names.kind));
        assert_eq!(
            serde_json::to_value(&parsed).expect("CRDs serialize"),
            serde_json::to_value(crd).expect("CRDs serialize"),
            "{} does not survive YAML",
            crd.spec.names.kind
        );
    }
}

/// The `spec` schema of the CRD of `kind`, as JSON.
fn spec_schema(kind: &str) -> Value {
    let crd = all_crds()
        .expect("every CRD generates")
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every CRD has a schema");
    serde_json::to_value(schema).expect("schemas serialize")["properties"]["spec"].clone()
}

#[test]
fn schemas_carry_enums_int_or_string_and_opaque_overrides() {
    let pool = spec_schema("IPPool");
    assert_eq!(
        pool["properties"]["ipipMode"]["enum"],
        serde_json::json!(["Never", "Always", "CrossSubnet"])
    );
    assert_eq!(
        pool["properties"]["ipipMode"]["nullable"],
        Value::Bool(true)
    );
    assert_eq!(pool["properties"]["blockSize"]["type"], "integer");

    let peer = spec_schema("BGPPeer");
    assert_eq!(
        peer["properties"]["asNumber"]["x-kubernetes-int-or-string"],
        Value::Bool(true),
        "AS numbers may be written dotted"
    );

    let install = spec_schema("Installation");
    let node_ds = &install["properties"]["calicoNodeDaemonSet"];
    assert_eq!(node_ds["type"], "object");
    assert_eq!(
        node_ds["x-kubernetes-preserve-unknown-fields"],
        Value::Bool(true)
    );
    let pool_items = &install["properties"]["calicoNetwork"]["properties"]["ipPools"]["items"];
    assert_eq!(
        pool_items["properties"]["encapsulation"]["enum"],
        serde_json::json!([
            "IPIPCrossSubnet",
            "IPIP",
            "VXLAN",
            "VXLANCrossSubnet",
            "None"
        ])
    );

    let ipam = spec_schema("IPAMConfiguration");
    assert_eq!(
        ipam["properties"]["autoAllocateBlocks"]["default"],
        Value::Bool(true)
    );
}
