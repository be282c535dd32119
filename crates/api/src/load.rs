//! Turning YAML or JSON text into validated [`Resource`]s, and back.
//!
//! The pipeline, per document:
//!
//! 1. **Parse** the text into JSON-like documents: YAML (one or more
//!    documents separated by `---`; empty documents are skipped) or JSON
//!    (one or more concatenated values). A top-level array, and a list
//!    (`kind: List` or `kind: <Kind>List` with `items`), is expanded into
//!    its elements.
//! 2. **Dispatch** on `apiVersion` and `kind` through the registry
//!    ([`crate::resource::find_kind`]).
//! 3. **Decode** into the kind's typed object with `serde_path_to_error`;
//!    unknown fields and wrong types are errors naming the field path.
//! 4. **Default**: a namespaced kind without a namespace gets `default`, then
//!    the kind's own defaults ([`crate::Spec::apply_defaults`]).
//! 5. **Validate**: metadata rules, the spec's rules and rules that involve
//!    both; every violation is collected.
//!
//! Documents are numbered from 1 in the order they appear, after empty YAML
//! documents are skipped and arrays are expanded; a list counts as one
//! document and paths inside it start with `items[i]`. Errors of every
//! document are collected; the load succeeds only if there are none.

use std::path::Path;

use serde_json::Value;

use crate::error::{LoadError, LoadErrorKind, LoadErrors};
use crate::resource::{KINDS, Resource, find_kind};
use crate::validate::{FieldPath, Segment};

/// Parses, decodes, defaults and validates every resource in `text`.
/// `source` names the text in errors (a file name, `-` for stdin).
pub fn load_str(source: &str, text: &str) -> Result<Vec<Resource>, LoadErrors> {
    let documents = match parse_documents(text) {
        Ok(documents) => documents,
        Err(error) => {
            return Err(LoadErrors(vec![LoadError {
                source: source.to_string(),
                document: None,
                kind: None,
                name: None,
                error,
            }]));
        }
    };
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        load_document(source, index + 1, document, &mut resources, &mut errors);
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Reads and loads each file, collecting the errors of all of them.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Resource>, LoadErrors> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let source = path.as_ref().display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => match load_str(&source, &text) {
                Ok(mut loaded) => resources.append(&mut loaded),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(LoadError {
                source,
                document: None,
                kind: None,
                name: None,
                error: LoadErrorKind::Io(e.to_string()),
            }),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Parses YAML or JSON text into documents (step 1 of the pipeline).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, LoadErrorKind> {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| LoadErrorKind::Syntax {
                line: e.line() as u64,
                column: e.column() as u64,
                message: e.to_string(),
            })?
    } else {
        serde_saphyr::from_multiple_with_options::<Value>(text, yaml_options(text.len())).map_err(
            |e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                LoadErrorKind::Syntax {
                    line,
                    column,
                    message: first_line(&e.to_string()),
                }
            },
        )?
    };
    let mut documents = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Value::Array(items) => documents.extend(items),
            Value::Null => {}
            other => documents.push(other),
        }
    }
    Ok(documents)
}

/// YAML 1.2 scalars: only `true`/`false` are booleans, so `namespace: n` or a
/// label value `no` stays a string (YAML 1.1, which Kubernetes' own reader
/// follows, would turn them into booleans and reject the manifest).
/// Duplicate keys are errors.
///
/// The parser's budget (against "billion laughs" inputs) is scaled to the
/// input: without aliases, a YAML node or event needs at least a byte of
/// text, so a large but honest manifest (10,000 policies) stays within it,
/// while the alias limits keep their defaults.
fn yaml_options(input_len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = budget.max_documents.max(input_len / 8);
    budget.max_nodes = budget.max_nodes.max(input_len);
    budget.max_events = budget.max_events.max(input_len.saturating_mul(2));
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.strict_booleans = true;
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

/// The parser's message without its own location prefix (`error: line 8 column 17: `),
/// which [`LoadError`]'s display already gives as `source:line:column`.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or_default().trim();
    if line.starts_with("error: line ")
        && let Some(column) = line.find(" column ")
        && let Some(colon) = line[column..].find(": ")
    {
        line = &line[column + colon + 2..];
    }
    // The parser's advice is for programmers configuring it, not for users.
    if let Some(advice) = line.find(", set DuplicateKeyPolicy") {
        line = &line[..advice];
    }
    line.to_string()
}

fn string_field(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_string)
}

/// Whether `kind` is a list kind: `List` or `<Kind>List` of a known kind.
fn list_item_kind(kind: &str) -> Option<Option<&'static str>> {
    if kind == "List" {
        return Some(None);
    }
    let item = kind.strip_suffix("List")?;
    KINDS.iter().find(|k| k.kind == item).map(|k| Some(k.kind))
}

fn load_document(
    source: &str,
    document: usize,
    value: Value,
    resources: &mut Vec<Resource>,
    errors: &mut Vec<LoadError>,
) {
    let list = string_field(&value, "kind")
        .as_deref()
        .and_then(list_item_kind);
    let value = match (list, value) {
        (Some(item_kind), Value::Object(mut map)) => match map.remove("items") {
            Some(Value::Array(items)) => {
                let api_version = map
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                for (i, mut item) in items.into_iter().enumerate() {
                    // Items of a typed list may leave out apiVersion and kind.
                    if let (Some(fields), Some(item_kind)) = (item.as_object_mut(), item_kind) {
                        fields
                            .entry("kind")
                            .or_insert_with(|| Value::from(item_kind));
                        if let Some(api_version) = &api_version {
                            fields
                                .entry("apiVersion")
                                .or_insert_with(|| Value::from(api_version.clone()));
                        }
                    }
                    let prefix = FieldPath::root()
                        .join(Segment::Key("items".into()))
                        .join(Segment::Index(i));
                    load_one(source, document, &prefix, item, resources, errors);
                }
                return;
            }
            other => {
                if let Some(other) = other {
                    map.insert("items".into(), other);
                }
                Value::Object(map)
            }
        },
        (_, value) => value,
    };
    load_one(
        source,
        document,
        &FieldPath::root(),
        value,
        resources,
        errors,
    );
}

fn load_one(
    source: &str,
    document: usize,
    prefix: &FieldPath,
    value: Value,
    resources: &mut Vec<Resource>,
    errors: &mut Vec<LoadError>,
) {
    let kind = string_field(&value, "kind");
    let name = value.get("metadata").and_then(|m| string_field(m, "name"));
    let mut push = |kind: Option<String>, error: LoadErrorKind| {
        errors.push(LoadError {
            source: source.to_string(),
            document: Some(document),
            kind,
            name: name.clone(),
            error,
        });
    };
    let Value::Object(mut body) = value else {
        return push(None, LoadErrorKind::NotAMapping);
    };
    let api_version = match body.remove("apiVersion") {
        Some(Value::String(s)) => s,
        _ => {
            return push(
                kind,
                LoadErrorKind::MissingTypeField {
                    field: "apiVersion",
                },
            );
        }
    };
    let kind = match body.remove("kind") {
        Some(Value::String(s)) => s,
        _ => return push(None, LoadErrorKind::MissingTypeField { field: "kind" }),
    };
    let Some(info) = find_kind(&api_version, &kind) else {
        let hint = KINDS
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| format!(" (did you mean apiVersion {:?}?)", k.api_version))
            .unwrap_or_default();
        return push(
            Some(kind.clone()),
            LoadErrorKind::UnknownKind {
                api_version,
                kind,
                hint,
            },
        );
    };
    let mut resource = match info.decode(Value::Object(body)) {
        Ok(resource) => resource,
        Err(violations) => {
            for violation in violations {
                push(
                    Some(kind.clone()),
                    LoadErrorKind::Decode {
                        path: violation.path.within(prefix),
                        reason: violation.reason,
                    },
                );
            }
            return;
        }
    };
    resource.apply_defaults();
    let violations = resource.validate();
    if violations.is_empty() {
        resources.push(resource);
    } else {
        for violation in violations {
            push(
                Some(kind.clone()),
                LoadErrorKind::Invalid {
                    path: violation.path.within(prefix),
                    reason: violation.reason,
                },
            );
        }
    }
}

/// Serializes a resource as one YAML document, `apiVersion` and `kind` first.
pub fn to_yaml(resource: &Resource) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(resource)
}

/// Serializes resources as a YAML stream, documents separated by `---`.
pub fn to_yaml_documents(resources: &[Resource]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(resource)?);
    }
    Ok(out)
}

/// Serializes a resource as pretty-printed JSON, `apiVersion` and `kind` first.
pub fn to_json(resource: &Resource) -> String {
    // Plain data structures with string keys always serialize to JSON.
    serde_json::to_string_pretty(resource).expect("resources serialize to JSON")
}
