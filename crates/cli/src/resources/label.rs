//! `twill label KIND NAME key=value... key-... [--overwrite] [-n NS]`:
//! change `metadata.labels` of one resource, as `calicoctl label` and
//! `kubectl label` do.

use std::collections::BTreeMap;

use twill_api::Resource;
use twill_store::{Datastore, Error as StoreError, Op, Precondition};

use super::kinds;
use super::write::namespace_for;
use crate::datastore::StoreArgs;
use crate::error::{CliError, Unwritten};

/// How often a label change is tried again when another writer changed the
/// resource between reading and writing.
const RETRIES: usize = 5;

/// Arguments of `twill label`.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// The resource type (kind, plural or short name), e.g. `nodes`, `wep`.
    kind: String,
    /// The resource's name.
    name: String,
    /// `key=value` sets a label, `key-` removes one.
    #[arg(required_unless_present = "remove", num_args = 0..)]
    changes: Vec<String>,
    /// Remove this label (calicoctl's spelling of `key-`).
    #[arg(long, value_name = "KEY")]
    remove: Vec<String>,
    /// Change a label that is already set to another value.
    #[arg(long)]
    overwrite: bool,
    /// The namespace of a namespaced resource (default: `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set `key` to `value`.
    Set(String, String),
    /// Remove `key`.
    Remove(String),
}

/// Parses `key=value` and `key-`.
pub fn parse_change(arg: &str) -> Result<Change, CliError> {
    let bad = || CliError::LabelArgument {
        arg: arg.to_string(),
    };
    if let Some((key, value)) = arg.split_once('=') {
        if key.is_empty() {
            return Err(bad());
        }
        return Ok(Change::Set(key.to_string(), value.to_string()));
    }
    match arg.strip_suffix('-') {
        Some(key) if !key.is_empty() => Ok(Change::Remove(key.to_string())),
        _ => Err(bad()),
    }
}

/// Applies the changes to a label set; returns whether anything changed.
pub fn relabel(
    labels: &mut BTreeMap<String, String>,
    changes: &[Change],
    overwrite: bool,
    resource: &str,
) -> Result<bool, CliError> {
    let before = labels.clone();
    for change in changes {
        match change {
            Change::Set(key, value) => {
                if let Some(current) = labels.get(key)
                    && current != value
                    && !overwrite
                {
                    return Err(CliError::LabelPresent {
                        resource: resource.to_string(),
                        key: key.clone(),
                        value: current.clone(),
                    });
                }
                labels.insert(key.clone(), value.clone());
            }
            Change::Remove(key) => {
                labels.remove(key);
            }
        }
    }
    Ok(*labels != before)
}

/// Runs `twill label`; returns the message to print.
pub fn run(args: &LabelArgs) -> Result<String, CliError> {
    let kind = kinds::resolve(&args.kind)?;
    let namespace = namespace_for(kind, args.namespace.as_deref())?;
    let mut changes = args
        .changes
        .iter()
        .map(|a| parse_change(a))
        .collect::<Result<Vec<_>, _>>()?;
    changes.extend(args.remove.iter().cloned().map(Change::Remove));
    let store = args.store.open()?;
    let what = kind.describe(namespace.as_deref(), &args.name);
    let key = kind.key(namespace.as_deref(), &args.name);
    for _ in 0..RETRIES {
        let object = match store.get(&key) {
            Ok(object) => object,
            Err(StoreError::NotFound { .. }) => {
                return Err(CliError::NotFound {
                    resource: what,
                    hint: "",
                    written: Unwritten::default(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let revision = object.revision;
        let stored = object.value.clone();
        let mut resource = kind.decode(object)?;
        let changed = relabel(
            &mut resource.metadata_mut().labels,
            &changes,
            args.overwrite,
            &what,
        )?;
        if !changed {
            return Ok(format!("{what} unchanged"));
        }
        check_labels(&resource, &what)?;
        let value = with_labels(stored, &resource);
        match store.txn(&[Op::Update {
            key: key.clone(),
            value,
            precondition: Precondition::Revision(revision),
        }]) {
            Ok(_) => return Ok(format!("Successfully updated labels of {what}")),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => {
                return Err(CliError::NotFound {
                    resource: what,
                    hint: "; it was deleted concurrently",
                    written: Unwritten::default(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::Usage(format!(
        "{what} kept changing while its labels were written; try again"
    )))
}

/// Calico's label rules (key and value syntax) for the new label set.
fn check_labels(resource: &Resource, what: &str) -> Result<(), CliError> {
    let reasons: Vec<String> = resource
        .validate()
        .into_iter()
        .filter(|v| v.path.to_string().starts_with("metadata.labels"))
        .map(|v| v.to_string())
        .collect();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(CliError::InvalidLabels {
            resource: what.to_string(),
            reasons: reasons.join("; "),
        })
    }
}

/// The stored body with only `metadata.labels` replaced: nothing else of
/// the object (including fields written by other components) changes.
fn with_labels(mut stored: serde_json::Value, resource: &Resource) -> serde_json::Value {
    let labels = &resource.metadata().labels;
    if let Some(meta) = stored
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        if labels.is_empty() {
            meta.remove("labels");
        } else {
            let map = labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
            meta.insert("labels".into(), serde_json::Value::Object(map));
        }
    }
    stored
}
