//! The lab's datastore writes: resources as YAML, upserted like `twill
//! apply`, plus the namespace profiles and the per-node barrier endpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use twill_api::Resource;
use twill_store::{Datastore, Key, Precondition, Revision, SqliteStore};

use crate::error::{LabError, Result};

/// The namespace holding the lab's own barrier endpoints.
pub const LAB_NAMESPACE: &str = "twill-lab";
/// The annotation bumped on a barrier endpoint.
pub const BARRIER_ANNOTATION: &str = "lab.twill.dev/barrier";

/// Opens (creating) the lab's SQLite datastore.
///
/// # Errors
///
/// [`LabError::Store`].
pub fn open(path: &Path) -> Result<SqliteStore> {
    SqliteStore::open(path).map_err(|source| LabError::Store {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn store_error(path: &Path) -> impl Fn(twill_store::Error) -> LabError + '_ {
    move |source| LabError::Store {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// The key a resource is stored under.
pub fn key_of(resource: &Resource) -> Key {
    match resource.namespace() {
        Some(ns) => Key::namespaced(resource.store_kind(), ns, resource.name()),
        None => Key::cluster(resource.store_kind(), resource.name()),
    }
}

/// Creates or replaces one resource; returns the revision written.
///
/// # Errors
///
/// [`LabError::Store`].
pub fn put(store: &dyn Datastore, path: &Path, resource: &Resource) -> Result<Revision> {
    let key = key_of(resource);
    let mut value = resource.to_json();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let written = match store.get(&key) {
        Ok(_) => store.update(&key, &value, Precondition::Unconditional),
        Err(twill_store::Error::NotFound { .. }) => store.create(&key, &value),
        Err(e) => Err(e),
    }
    .map_err(store_error(path))?;
    Ok(written.revision)
}

/// Loads, validates and stores every resource in `yaml`.
///
/// # Errors
///
/// [`LabError::Manifest`] (nothing is written then) or [`LabError::Store`].
pub fn apply(store: &dyn Datastore, path: &Path, source: &str, yaml: &str) -> Result<Revision> {
    let resources = twill_api::load_str(source, yaml).map_err(|e| LabError::Manifest {
        source_name: source.to_string(),
        reason: e.to_string(),
    })?;
    let mut last = Revision(0);
    for resource in &resources {
        last = put(store, path, resource)?;
    }
    Ok(last)
}

/// Deletes one resource named by kind (`apiVersion` default
/// `projectcalico.org/v3`), namespace and name.
///
/// # Errors
///
/// [`LabError::Unknown`] for an unknown kind; [`LabError::Store`] (also
/// when the resource does not exist).
pub fn delete(
    store: &dyn Datastore,
    path: &Path,
    api_version: Option<&str>,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<()> {
    let api_version = api_version.unwrap_or("projectcalico.org/v3");
    let info = twill_api::find_kind(api_version, kind).ok_or_else(|| LabError::Unknown {
        what: "kind",
        name: format!("{api_version}/{kind}"),
    })?;
    let store_kind = info
        .decode(json!({ "metadata": { "name": name } }))
        .map(|r| r.store_kind())
        .unwrap_or(info.kind);
    let key = match (info.namespaced, namespace) {
        (true, ns) => Key::namespaced(store_kind, ns.unwrap_or("default"), name),
        (false, _) => Key::cluster(store_kind, name),
    };
    store
        .delete(&key, Precondition::Unconditional)
        .map_err(store_error(path))?;
    Ok(())
}

/// The `kns.<namespace>` profile Calico derives from a Namespace: its
/// labels, prefixed `pcns.`, plus the name labels Kubernetes and Calico add.
pub fn namespace_profile(namespace: &str, labels: &BTreeMap<String, String>) -> String {
    let mut all = labels.clone();
    all.insert("kubernetes.io/metadata.name".into(), namespace.into());
    all.insert("projectcalico.org/name".into(), namespace.into());
    let labels: BTreeMap<String, String> = all
        .into_iter()
        .map(|(k, v)| (format!("pcns.{k}"), v))
        .collect();
    serde_json::to_string(&json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": { "name": format!("kns.{namespace}") },
        "spec": { "labelsToApply": labels },
    }))
    .expect("a JSON value serializes")
}

/// The `ksa.<namespace>.<name>` profile of a service account.
pub fn service_account_profile(namespace: &str, name: &str) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": { "name": format!("ksa.{namespace}.{name}") },
        "spec": { "labelsToApply": { "pcsa.projectcalico.org/name": name } },
    }))
    .expect("a JSON value serializes")
}

/// The WorkloadEndpoint name Calico gives `pod` on `node` (dashes doubled).
pub fn endpoint_name(node: &str, pod: &str) -> String {
    let esc = |s: &str| s.replace('-', "--");
    format!("{}-k8s-{}-eth0", esc(node), esc(pod))
}

/// The barrier endpoint of `node`: a WorkloadEndpoint with no address and
/// no interface, which felix-rs programs like any local endpoint and
/// reports in its status directory. Bumping its annotation after a change
/// and waiting for felix-rs to report the new revision tells the lab the
/// change before it was processed.
pub fn barrier_endpoint(node: &str, generation: u64) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": endpoint_name(node, "barrier"),
            "namespace": LAB_NAMESPACE,
            "annotations": { BARRIER_ANNOTATION: generation.to_string() },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": "barrier",
            "endpoint": "eth0",
            "interfaceName": format!("twlb{}", short_hash(node)),
            "profiles": [format!("kns.{LAB_NAMESPACE}")],
        },
    }))
    .expect("a JSON value serializes")
}

/// Eight hex digits derived from `text` (FNV-1a), for interface names.
pub fn short_hash(text: &str) -> String {
    let hash = text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

/// Changes a pod's WorkloadEndpoint labels (`set`, then `remove`), keeping
/// the `projectcalico.org/` labels the CNI plugin wrote.
///
/// # Errors
///
/// [`LabError::Store`] (also when the endpoint does not exist).
pub fn relabel_endpoint(
    store: &dyn Datastore,
    path: &Path,
    key: &Key,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<Revision> {
    let object = store.get(key).map_err(store_error(path))?;
    let mut value = object.value;
    let labels = value
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| LabError::State {
            path: path.to_path_buf(),
            reason: format!("{key}: metadata is not an object"),
        })?;
    for (k, v) in set {
        labels.insert(k.clone(), Value::from(v.clone()));
    }
    for k in remove {
        if !k.starts_with("projectcalico.org/") {
            labels.remove(k);
        }
    }
    let written = store
        .update(key, &value, Precondition::Revision(object.revision))
        .map_err(store_error(path))?;
    Ok(written.revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_double_dashes_as_calico_does() {
        for (node, pod, want) in [
            ("n1", "web", "n1-k8s-web-eth0"),
            ("node-1", "web-0", "node--1-k8s-web--0-eth0"),
        ] {
            assert_eq!(endpoint_name(node, pod), want);
        }
    }

    #[test]
    fn namespace_profiles_carry_prefixed_labels_and_name_labels() {
        let labels = BTreeMap::from([("tier".to_string(), "web".to_string())]);
        let resources = twill_api::load_str("test", &namespace_profile("shop", &labels))
            .expect("the profile loads");
        let json = resources[0].to_json();
        let applied = &json["spec"]["labelsToApply"];
        assert_eq!(applied["pcns.tier"], "web");
        assert_eq!(applied["pcns.kubernetes.io/metadata.name"], "shop");
        assert_eq!(json["metadata"]["name"], "kns.shop");
    }

    #[test]
    fn barrier_endpoints_load_as_workload_endpoints() {
        let resources = twill_api::load_str("test", &barrier_endpoint("n-1", 7))
            .expect("the barrier endpoint validates");
        assert_eq!(resources[0].namespace(), Some(LAB_NAMESPACE));
        assert_eq!(resources[0].name(), "n--1-k8s-barrier-eth0");
        let json = resources[0].to_json();
        assert_eq!(json["metadata"]["annotations"][BARRIER_ANNOTATION], "7");
        let interface = json["spec"]["interfaceName"].as_str().expect("a string");
        assert!(
            interface.starts_with("twl") && interface.len() <= 15,
            "{interface}"
        );
    }
}
