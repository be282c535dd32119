//! `twill apply|create|replace -f FILE...` and `twill delete`.
//!
//! Every manifest is loaded and validated before anything is written: one
//! invalid document anywhere writes nothing, and neither does an IPPool
//! whose CIDR overlaps another pool's, stored or earlier in the command,
//! nor one that changes an existing pool's CIDR or block size (see
//! [`super::pools`]). Then each file is written as
//! one datastore transaction, all of its resources or none of them: a
//! `create` that finds its third resource taken writes neither the first
//! two nor the rest.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;
use twill_api::Resource;
use twill_store::{Datastore, Error as StoreError, Key, Op, Precondition, Revision};

use super::kinds::{self, Kind};
use super::pools;
use crate::datastore::StoreArgs;
use crate::error::{CliError, Unwritten};
use crate::line;

/// How often a file is planned again when another writer changed one of
/// its resources between reading and writing.
const RETRIES: usize = 5;

/// What a write command does with each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create or replace.
    Apply,
    /// Create; fail if it exists.
    Create,
    /// Replace; fail if it does not exist.
    Replace,
}

impl Mode {
    fn past_tense(self) -> &'static str {
        match self {
            Self::Apply => "applied",
            Self::Create => "created",
            Self::Replace => "replaced",
        }
    }
}

/// Arguments of `apply`, `create` and `replace`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Manifest files (YAML or JSON, one or many documents each); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Delete the resources these manifests name.
    #[arg(short = 'f', long = "filename", num_args = 1.., conflicts_with_all = ["kind", "names"])]
    files: Vec<PathBuf>,
    /// The resource type (kind, plural or short name), e.g. `ippool`, `gnp`.
    #[arg(required_unless_present = "files")]
    kind: Option<String>,
    /// Names of the resources to delete.
    #[arg(requires = "kind")]
    names: Vec<String>,
    /// The namespace of namespaced resources (default: `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Resources that do not exist are skipped instead of failing the file.
    #[arg(long)]
    skip_not_exists: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Loads every file; prints every error and fails if any file is
/// unreadable or invalid.
pub(crate) fn load_all(
    files: &[PathBuf],
    err: &mut dyn Write,
) -> Result<Vec<(String, Vec<Resource>)>, CliError> {
    let mut loaded = Vec::new();
    let mut errors = 0;
    for path in files {
        let source = path.display().to_string();
        let text = crate::validate::read(path).map_err(|e| CliError::Read {
            path: source.clone(),
            source: e,
        })?;
        match twill_api::load_str(&source, &text) {
            Ok(resources) => loaded.push((source, resources)),
            Err(e) => {
                for error in e.errors() {
                    line(err, format_args!("error: {error}"));
                    errors += 1;
                }
            }
        }
    }
    if errors > 0 {
        return Err(CliError::Invalid { count: errors });
    }
    Ok(loaded)
}

/// `twill apply|create|replace`; returns the success message.
pub fn run_write(mode: Mode, args: &WriteArgs, err: &mut dyn Write) -> Result<String, CliError> {
    let loaded = load_all(&args.files, err)?;
    let store = match mode {
        Mode::Replace => args.store.open()?,
        Mode::Apply | Mode::Create => args.store.open_or_create()?,
    };
    pools::check_batch(
        &store,
        mode,
        loaded.iter().map(|(s, r)| (s.as_str(), r.as_slice())),
        || {
            let sources: Vec<&str> = loaded.iter().map(|(s, _)| s.as_str()).collect();
            Unwritten(Some(sources.join(", ")))
        },
    )?;
    let mut written: Vec<&Resource> = Vec::new();
    for (source, resources) in &loaded {
        write_file(&store, mode, source, resources)?;
        written.extend(resources);
    }
    Ok(summary(
        mode.past_tense(),
        written.iter().map(|r| Kind::of(r)),
    ))
}

/// `Successfully applied 3 'NetworkPolicy' resource(s)`, as calicoctl says it.
fn summary(verb: &str, kinds: impl Iterator<Item = Kind>) -> String {
    let names: Vec<String> = kinds.map(|k| k.display()).collect();
    let first = names.first();
    match first {
        Some(kind) if names.iter().all(|n| n == kind) => {
            format!("Successfully {verb} {} '{kind}' resource(s)", names.len())
        }
        _ => format!("Successfully {verb} {} resource(s)", names.len()),
    }
}

/// The precondition a manifest's `metadata.resourceVersion` asks for.
fn user_revision(resource: &Resource) -> Result<Option<Revision>, CliError> {
    match resource.metadata().resource_version.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(|r| Some(Revision(r)))
            .map_err(|_| CliError::BadResourceVersion {
                resource: kinds::describe(resource),
                value: v.to_string(),
            }),
    }
}

/// The body stored for a resource: the full document, without the
/// datastore's own `resourceVersion`, keeping `uid`, `creationTimestamp`
/// and `status` of the object it replaces (those are the system's, not
/// the manifest's).
fn body(resource: &Resource, current: Option<&Value>) -> Value {
    let mut value = resource.to_json();
    let Some(document) = value.as_object_mut() else {
        return value;
    };
    if let Some(Value::Object(meta)) = document.get_mut("metadata") {
        meta.remove("resourceVersion");
        let kept = |field: &str| {
            current
                .and_then(|c| c.get("metadata"))
                .and_then(|m| m.get(field))
                .cloned()
        };
        let uid = kept("uid").unwrap_or_else(|| Value::from(new_uid()));
        meta.insert("uid".into(), uid);
        let created = kept("creationTimestamp").unwrap_or_else(|| Value::from(now()));
        meta.insert("creationTimestamp".into(), created);
    }
    if !document.contains_key("status")
        && let Some(status) = current.and_then(|c| c.get("status"))
    {
        document.insert("status".into(), status.clone());
    }
    value
}

/// The current time as Kubernetes writes `creationTimestamp`.
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random (version 4) UUID, as Kubernetes gives every object.
fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        // No /dev/urandom: the time still makes collisions unlikely; the
        // uid is informational (keys are kind, namespace and name).
        let nanos = jiff::Timestamp::now().as_nanosecond();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn get_optional(store: &dyn Datastore, key: &Key) -> Result<Option<twill_store::Object>, CliError> {
    match store.get(key) {
        Ok(object) => Ok(Some(object)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The operations that write one file's resources.
fn plan(store: &dyn Datastore, mode: Mode, resources: &[Resource]) -> Result<Vec<Op>, CliError> {
    // Keys written earlier in this file, and the body they will have.
    let mut staged: HashMap<Key, Value> = HashMap::new();
    let mut ops = Vec::with_capacity(resources.len());
    for resource in resources {
        let key = kinds::key_of(resource);
        let wanted = user_revision(resource)?;
        let current = match staged.get(&key) {
            Some(body) => Some((None, body.clone())),
            None => get_optional(store, &key)?.map(|o| (Some(o.revision), o.value)),
        };
        let op = match (mode, current) {
            (Mode::Create, _) | (Mode::Apply, None) => Op::Create {
                key: key.clone(),
                value: body(resource, None),
            },
            (Mode::Replace, None) => {
                return Err(CliError::NotFound {
                    resource: kinds::describe(resource),
                    hint: "; use `twill create` or `twill apply` to create it",
                    written: Unwritten::default(),
                });
            }
            (Mode::Apply | Mode::Replace, Some((revision, current))) => {
                let precondition = match (wanted, revision) {
                    (Some(r), _) | (None, Some(r)) => Precondition::Revision(r),
                    (None, None) => Precondition::Unconditional,
                };
                Op::Update {
                    key: key.clone(),
                    value: body(resource, Some(&current)),
                    precondition,
                }
            }
        };
        if let Op::Create { value, .. } | Op::Update { value, .. } = &op {
            staged.insert(key, value.clone());
        }
        ops.push(op);
    }
    Ok(ops)
}

/// Writes one file's resources in one transaction.
fn write_file(
    store: &dyn Datastore,
    mode: Mode,
    source: &str,
    resources: &[Resource],
) -> Result<(), CliError> {
    let pinned = resources
        .iter()
        .any(|r| r.metadata().resource_version.is_some());
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Checked again on every attempt: another writer may have added a
        // pool since the command's first check or the last attempt.
        pools::check_batch(store, mode, [(source, resources)], || {
            Unwritten(Some(source.to_string()))
        })?;
        let ops = plan(store, mode, resources).map_err(|e| unwritten(e, source))?;
        match store.txn(&ops) {
            Ok(_) => return Ok(()),
            // Another writer got in between the read and the write: plan
            // again from what is there now (unless the manifest pinned a
            // revision, which is then simply stale).
            Err(StoreError::Conflict { .. }) if !pinned && attempt < RETRIES => {}
            Err(e) => {
                return Err(refusal(e, resources, mode, source));
            }
        }
    }
}

fn unwritten(error: CliError, source: &str) -> CliError {
    let written = Unwritten(Some(source.to_string()));
    match error {
        CliError::NotFound { resource, hint, .. } => CliError::NotFound {
            resource,
            hint,
            written,
        },
        other => other,
    }
}

/// Names the resource a datastore refusal is about, with the fix.
fn refusal(error: StoreError, resources: &[Resource], mode: Mode, source: &str) -> CliError {
    let name = |key: &Key| {
        resources
            .iter()
            .find(|r| kinds::key_of(r) == *key)
            .map_or_else(|| key.to_string(), kinds::describe)
    };
    let written = Unwritten(Some(source.to_string()));
    match error {
        StoreError::AlreadyExists { key } => CliError::AlreadyExists {
            resource: name(&key),
            written,
        },
        StoreError::NotFound { key } => CliError::NotFound {
            resource: name(&key),
            hint: match mode {
                Mode::Apply | Mode::Create => "; it was deleted concurrently, try again",
                Mode::Replace => "; use `twill create` or `twill apply` to create it",
            },
            written,
        },
        StoreError::Conflict {
            key,
            expected,
            actual,
        } => CliError::Conflict {
            resource: name(&key),
            expected: expected.0,
            actual: actual.0,
            written,
        },
        other => other.into(),
    }
}

/// One resource `delete` removes.
struct Target {
    kind: Kind,
    key: Key,
    /// The revision the manifest pins, if any.
    revision: Option<Revision>,
    /// `Kind(namespace/name)`, for messages.
    name: String,
}

/// `twill delete`; returns the success message.
pub fn run_delete(args: &DeleteArgs, err: &mut dyn Write) -> Result<String, CliError> {
    let groups: Vec<(String, Vec<Target>)> = if args.files.is_empty() {
        let kind_name = args
            .kind
            .as_deref()
            .ok_or_else(|| CliError::Usage("give -f FILE or KIND NAME...".into()))?;
        if args.names.is_empty() {
            return Err(CliError::Usage(format!(
                "name the {kind_name} resources to delete: twill delete {kind_name} NAME..."
            )));
        }
        let kind = kinds::resolve(kind_name)?;
        let namespace = namespace_for(kind, args.namespace.as_deref())?;
        let targets = args
            .names
            .iter()
            .map(|name| {
                let key = kind.key(namespace.as_deref(), name);
                let what = kind.describe(namespace.as_deref(), name);
                Target {
                    kind,
                    key,
                    revision: None,
                    name: what,
                }
            })
            .collect();
        vec![("the command line".to_string(), targets)]
    } else {
        let mut groups = Vec::new();
        for (source, resources) in load_all(&args.files, err)? {
            let mut targets = Vec::new();
            for r in &resources {
                targets.push(Target {
                    kind: Kind::of(r),
                    key: kinds::key_of(r),
                    revision: user_revision(r)?,
                    name: kinds::describe(r),
                });
            }
            groups.push((source, targets));
        }
        groups
    };
    let store = args.store.open()?;
    let mut deleted = Vec::new();
    for (source, targets) in &groups {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut ops = Vec::new();
            let mut kinds_deleted = Vec::new();
            for target in targets {
                if args.skip_not_exists && get_optional(&store, &target.key)?.is_none() {
                    continue;
                }
                ops.push(Op::Delete {
                    key: target.key.clone(),
                    precondition: target
                        .revision
                        .map_or(Precondition::Unconditional, Precondition::Revision),
                });
                kinds_deleted.push(target.kind);
            }
            let name = |key: &Key| {
                targets
                    .iter()
                    .find(|t| t.key == *key)
                    .map_or_else(|| key.to_string(), |t| t.name.clone())
            };
            let written = Unwritten(Some(source.clone()));
            match store.txn(&ops) {
                Ok(_) => {
                    deleted.extend(kinds_deleted);
                    break;
                }
                Err(StoreError::NotFound { .. }) if args.skip_not_exists && attempt < RETRIES => {}
                Err(StoreError::NotFound { key }) => {
                    return Err(CliError::NotFound {
                        resource: name(&key),
                        hint: "; pass --skip-not-exists to ignore resources that are gone",
                        written,
                    });
                }
                Err(StoreError::Conflict {
                    key,
                    expected,
                    actual,
                }) => {
                    return Err(CliError::Conflict {
                        resource: name(&key),
                        expected: expected.0,
                        actual: actual.0,
                        written,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(summary("deleted", deleted.into_iter()))
}

/// The namespace a command addresses for `kind`: the one given or
/// `default` for namespaced kinds; none (and none allowed) for the others.
pub(crate) fn namespace_for(kind: Kind, given: Option<&str>) -> Result<Option<String>, CliError> {
    match (kind.info.namespaced, given) {
        (true, ns) => Ok(Some(
            ns.unwrap_or(twill_api::object::DEFAULT_NAMESPACE)
                .to_string(),
        )),
        (false, None) => Ok(None),
        (false, Some(ns)) => Err(CliError::NotNamespaced {
            kind: kind.info.kind,
            namespace: ns.to_string(),
        }),
    }
}
