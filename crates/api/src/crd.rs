//! CustomResourceDefinitions generated from the Rust types.
//!
//! [`crd`] turns a kind's [`Spec`] into an `apiextensions.k8s.io/v1`
//! CustomResourceDefinition: group and version from `API_VERSION`, names
//! from `KIND`/`PLURAL`/`SHORT_NAMES`, scope from `NAMESPACED`, and the
//! `spec`/`status` schemas from schemars, rewritten into Kubernetes'
//! *structural* form (see [`structural_schema`]). [`all_crds`] covers every
//! kind of the [`crate::resource`] registry except Kubernetes' own
//! NetworkPolicy; a test keeps the two lists equal. The `crdgen` binary
//! writes them to `manifests/crds/`.

use std::any::TypeId;
use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as K8sObjectMeta;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::object::{NoStatus, Spec};

/// Why a schema or CRD could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The schema of a type cannot be made structural.
    #[error("schema of {kind} is not structural at {path}: {reason}")]
    NotStructural {
        /// The kind being generated.
        kind: &'static str,
        /// JSON pointer of the offending schema node.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The schema does not fit Kubernetes' `JSONSchemaProps`.
    #[error("schema of {kind} does not convert to JSONSchemaProps: {source}")]
    Convert {
        /// The kind being generated.
        kind: &'static str,
        /// The conversion error.
        source: serde_json::Error,
    },
    /// A CRD could not be written as YAML.
    #[error("CRD {name} does not serialize to YAML: {reason}")]
    Yaml {
        /// The CRD's name.
        name: String,
        /// The serializer's message.
        reason: String,
    },
}

/// The first line of every generated file.
pub const GENERATED_HEADER: &str =
    "# Generated from the Rust types by `cargo run -p twill-api --bin crdgen`. Do not edit.\n";

/// The CRDs of every kind Twill defines, in registry order.
pub fn all_crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    macro_rules! crds {
        ($($spec:ty),* $(,)?) => {
            Ok(vec![$(crd::<$spec>()?),*])
        };
    }
    // Keep in step with the `resources!` table in `resource.rs` (a test checks).
    crds![
        crate::policy::NetworkPolicySpec,
        crate::policy::GlobalNetworkPolicySpec,
        crate::policy::StagedNetworkPolicySpec,
        crate::policy::StagedGlobalNetworkPolicySpec,
        crate::tier::TierSpec,
        crate::networkset::NetworkSetSpec,
        crate::networkset::GlobalNetworkSetSpec,
        crate::endpoint::HostEndpointSpec,
        crate::endpoint::WorkloadEndpointSpec,
        crate::profile::ProfileSpec,
        crate::ippool::IPPoolSpec,
        crate::ippool::IPReservationSpec,
        crate::ippool::IPAMConfigurationSpec,
        crate::bgp::BGPConfigurationSpec,
        crate::bgp::BGPPeerSpec,
        crate::bgp::BGPFilterSpec,
        crate::felix::FelixConfigurationSpec,
        crate::node::NodeSpec,
        crate::node::ClusterInformationSpec,
        crate::installation::InstallationSpec,
    ]
}

/// The CRD of one kind.
pub fn crd<S: Spec>() -> Result<CustomResourceDefinition, CrdError>
where
    S::Status: 'static,
{
    let (group, version) = S::API_VERSION
        .split_once('/')
        .unwrap_or(("", S::API_VERSION));
    let has_status = TypeId::of::<S::Status>() != TypeId::of::<NoStatus>();

    let mut properties = BTreeMap::new();
    properties.insert(
        "apiVersion".to_string(),
        typed("string", "The API group and version."),
    );
    properties.insert("kind".to_string(), typed("string", "The kind."));
    properties.insert(
        "metadata".to_string(),
        typed("object", "Standard object metadata."),
    );
    properties.insert("spec".to_string(), props::<S>(S::KIND)?);
    if has_status {
        properties.insert("status".to_string(), props::<S::Status>(S::KIND)?);
    }
    let root = JSONSchemaProps {
        type_: Some("object".to_string()),
        description: Some(format!("{} ({}).", S::KIND, S::API_VERSION)),
        properties: Some(properties),
        ..JSONSchemaProps::default()
    };

    Ok(CustomResourceDefinition {
        metadata: K8sObjectMeta {
            name: Some(format!("{}.{group}", S::PLURAL)),
            ..K8sObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: group.to_string(),
            names: CustomResourceDefinitionNames {
                kind: S::KIND.to_string(),
                list_kind: Some(format!("{}List", S::KIND)),
                plural: S::PLURAL.to_string(),
                singular: Some(S::KIND.to_lowercase()),
                short_names: (!S::SHORT_NAMES.is_empty())
                    .then(|| S::SHORT_NAMES.iter().map(|s| s.to_string()).collect()),
                categories: None,
            },
            scope: if S::NAMESPACED {
                "Namespaced"
            } else {
                "Cluster"
            }
            .to_string(),
            versions: vec![CustomResourceDefinitionVersion {
                name: version.to_string(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(root),
                }),
                additional_printer_columns: printer_columns(S::KIND),
                subresources: has_status.then(|| CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(Value::Object(Map::new()))),
                    scale: None,
                }),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    })
}

/// The file a CRD is written to: `<group>_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// A CRD as the YAML text of its generated file (header included).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(crd).map_err(|e| CrdError::Yaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        reason: e.to_string(),
    })?;
    Ok(format!("{GENERATED_HEADER}{body}"))
}

/// Every generated file: `(file name, contents)`, sorted by file name.
pub fn generated_files() -> Result<BTreeMap<String, String>, CrdError> {
    all_crds()?
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// The extra `kubectl get` columns of a kind, as Calico's CRDs define them.
fn printer_columns(kind: &str) -> Option<Vec<CustomResourceColumnDefinition>> {
    let columns: &[(&str, &str, &str)] = match kind {
        "IPPool" => &[
            ("CIDR", "string", ".spec.cidr"),
            ("VXLAN", "string", ".spec.vxlanMode"),
            ("IPIP", "string", ".spec.ipipMode"),
            ("NAT", "boolean", ".spec.natOutgoing"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ],
        "IPAMConfiguration" => &[
            ("StrictAffinity", "boolean", ".spec.strictAffinity"),
            ("MaxBlocksPerHost", "integer", ".spec.maxBlocksPerHost"),
            ("AutoAllocateBlocks", "boolean", ".spec.autoAllocateBlocks"),
        ],
        "BGPPeer" => &[
            ("Peer IP", "string", ".spec.peerIP"),
            ("Peer ASN", "string", ".spec.asNumber"),
            ("Node", "string", ".spec.node"),
            ("Node Selector", "string", ".spec.nodeSelector"),
            ("Peer Selector", "string", ".spec.peerSelector"),
        ],
        _ => return None,
    };
    Some(
        columns
            .iter()
            .map(|(name, type_, path)| CustomResourceColumnDefinition {
                name: name.to_string(),
                type_: type_.to_string(),
                json_path: path.to_string(),
                ..CustomResourceColumnDefinition::default()
            })
            .collect(),
    )
}

fn typed(type_: &str, description: &str) -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some(type_.to_string()),
        description: Some(description.to_string()),
        ..JSONSchemaProps::default()
    }
}

fn props<T: JsonSchema>(kind: &'static str) -> Result<JSONSchemaProps, CrdError> {
    let value = structural_schema::<T>().map_err(|(path, reason)| CrdError::NotStructural {
        kind,
        path,
        reason,
    })?;
    serde_json::from_value(value).map_err(|source| CrdError::Convert { kind, source })
}

/// The schema of `T` in Kubernetes' structural form: every subschema
/// inlined (no `$ref`, no definitions), every node typed (or marked
/// `x-kubernetes-int-or-string` / `x-kubernetes-preserve-unknown-fields`),
/// `Option`s as `nullable`, enums as `enum` lists, no `oneOf`/`anyOf`.
///
/// Errors carry the JSON pointer of the first node that cannot be rewritten.
pub fn structural_schema<T: JsonSchema>() -> Result<Value, (String, String)> {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let mut value = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Value::Object(root) = &mut value {
        for key in ["$schema", "title", "definitions", "$defs", "components"] {
            root.remove(key);
        }
    }
    rewrite(&mut value, "")?;
    Ok(value)
}

/// Formats Kubernetes knows; others (schemars' `uint32`, `uint8`, …) are dropped.
const KUBERNETES_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "int-or-string",
];

fn is_null_schema(branch: &Value) -> bool {
    branch.get("type") == Some(&json!("null"))
        || branch.get("enum") == Some(&json!([null]))
        || branch.get("const") == Some(&Value::Null)
}

fn rewrite(value: &mut Value, path: &str) -> Result<(), (String, String)> {
    let Value::Object(node) = value else {
        return Err((
            path.to_string(),
            format!("expected a schema object, found {value}"),
        ));
    };
    if node.contains_key("$ref") {
        return Err((
            path.to_string(),
            "unresolved $ref (recursive type?)".to_string(),
        ));
    }
    for key in ["title", "examples", "$id", "uniqueItems"] {
        node.remove(key);
    }
    if let Some(c) = node.remove("const") {
        node.insert("enum".to_string(), json!([c]));
    }

    // `type: [T, "null"]` → `type: T, nullable: true`.
    if let Some(Value::Array(types)) = node.get("type").cloned() {
        let mut rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        node.insert("nullable".to_string(), Value::Bool(true));
        match rest.len() {
            1 => {
                node.insert("type".to_string(), rest.remove(0));
            }
            _ => return Err((path.to_string(), "a node with several types".to_string())),
        }
    }

    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(branches)) = node.remove(key) else {
            continue;
        };
        let (nulls, mut branches): (Vec<Value>, Vec<Value>) =
            branches.into_iter().partition(is_null_schema);
        if !nulls.is_empty() {
            node.insert("nullable".to_string(), Value::Bool(true));
        }
        let enum_values = |b: &Value| -> Option<Vec<Value>> {
            let values = b.get("enum").or_else(|| b.get("const"))?;
            match values {
                Value::Array(a) if a.iter().all(Value::is_string) => Some(a.clone()),
                Value::String(_) => Some(vec![values.clone()]),
                _ => None,
            }
        };
        if branches.len() == 1 {
            // `Option<T>`: hoist T; this node's own description wins.
            if let Value::Object(inner) = branches.remove(0) {
                for (k, v) in inner {
                    node.entry(k).or_insert(v);
                }
            }
        } else if !branches.is_empty() && branches.iter().all(|b| enum_values(b).is_some()) {
            // A documented string enum: one `const` branch per variant.
            let mut all = Vec::new();
            for b in &branches {
                all.extend(enum_values(b).unwrap_or_default());
            }
            node.insert("type".to_string(), json!("string"));
            node.insert("enum".to_string(), Value::Array(all));
        } else if !branches.is_empty() {
            return Err((
                path.to_string(),
                format!(
                    "{key} with {} branches cannot be made structural",
                    branches.len()
                ),
            ));
        }
    }
    // Hoisting may have brought `const` or a nested nullable union back.
    if let Some(c) = node.remove("const") {
        node.insert("enum".to_string(), json!([c]));
    }
    if node.contains_key("oneOf") || node.contains_key("anyOf") {
        return rewrite(value, path);
    }
    if node
        .get("enum")
        .is_some_and(|e| e.as_array().is_some_and(|a| a.contains(&Value::Null)))
    {
        if let Some(Value::Array(values)) = node.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
        node.insert("nullable".to_string(), Value::Bool(true));
    }
    // An empty default (`""`, `[]`, `{}`, null) says nothing a reader or the
    // API server needs; `serde(default)` on a required-looking field would
    // otherwise advertise `cidr: ""`.
    if node.get("default").is_some_and(|d| match d {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }) {
        node.remove("default");
    }
    if let Some(Value::String(text)) = node.get_mut("description") {
        *text = plain_description(text);
    }
    if let Some(Value::String(format)) = node.get("format")
        && !KUBERNETES_FORMATS.contains(&format.as_str())
    {
        node.remove("format");
    }

    let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let has_properties = node
        .get("properties")
        .is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty()));
    match node.remove("additionalProperties") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            if !has_properties {
                node.insert(
                    "x-kubernetes-preserve-unknown-fields".to_string(),
                    Value::Bool(true),
                );
            }
        }
        Some(Value::Object(map)) if map.is_empty() => {
            node.insert(
                "x-kubernetes-preserve-unknown-fields".to_string(),
                Value::Bool(true),
            );
        }
        Some(mut schema) => {
            rewrite(&mut schema, &format!("{path}/additionalProperties"))?;
            node.insert("additionalProperties".to_string(), schema);
        }
    }
    if !node.contains_key("type") && !int_or_string {
        let inferred = if node.contains_key("properties")
            || node.contains_key("x-kubernetes-preserve-unknown-fields")
            || node.contains_key("additionalProperties")
        {
            "object"
        } else if node.contains_key("items") {
            "array"
        } else if node
            .get("enum")
            .is_some_and(|e| e.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            "string"
        } else {
            return Err((path.to_string(), "a node without a type".to_string()));
        };
        node.insert("type".to_string(), json!(inferred));
    }
    if int_or_string {
        node.remove("type");
    }

    if let Some(Value::Object(properties)) = node.get_mut("properties") {
        for (name, schema) in properties.iter_mut() {
            rewrite(schema, &format!("{path}/properties/{name}"))?;
        }
    }
    if let Some(items) = node.get_mut("items") {
        rewrite(items, &format!("{path}/items"))?;
    }
    Ok(())
}

/// Rustdoc links (`` [`IPPool`] ``, `` [`x`](path) ``) as plain code spans.
fn plain_description(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after[1..].find("`]") {
            Some(end) => {
                let code = &after[..end + 2];
                out.push_str(code);
                rest = &after[end + 3..];
                // Drop an explicit link target: `(path)`.
                if rest.starts_with('(')
                    && let Some(close) = rest.find(')')
                {
                    rest = &rest[close + 1..];
                }
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustdoc_links_become_code_spans() {
        assert_eq!(
            plain_description("The spec of an [`IPPool`]."),
            "The spec of an `IPPool`."
        );
        assert_eq!(
            plain_description("See [`Object<X>`](Object) here"),
            "See `Object<X>` here"
        );
        assert_eq!(plain_description("a [plain] link"), "a [plain] link");
    }
}
