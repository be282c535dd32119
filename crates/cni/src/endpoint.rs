//! The WorkloadEndpoint in the datastore and the wait for felix-rs to
//! report it programmed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::status::{EndpointStatus, endpoint_status_file_name};
use twill_api::{Object, Spec};
use twill_store::{Datastore, Error as StoreError, Key, Precondition};

use crate::error::CniError;

/// How often the status file is re-read while waiting.
pub const STATUS_POLL: Duration = Duration::from_millis(5);

/// The datastore key of an endpoint.
pub fn key(namespace: &str, name: &str) -> Key {
    Key::namespaced(WorkloadEndpointSpec::STORE_KIND, namespace, name)
}

fn store_err(operation: &'static str, key: &Key, e: impl std::fmt::Display) -> CniError {
    CniError::Datastore {
        operation,
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// The stored document: `apiVersion` and `kind` first, as the other
/// components store objects.
pub fn encode(endpoint: &WorkloadEndpoint) -> Result<Value, CniError> {
    let namespace = endpoint.namespace().unwrap_or_default();
    let k = key(namespace, endpoint.name());
    let value = serde_json::to_value(endpoint).map_err(|e| store_err("encode", &k, e))?;
    let Value::Object(mut map) = value else {
        return Err(store_err("encode", &k, "not a JSON object"));
    };
    let mut document = serde_json::Map::with_capacity(map.len() + 2);
    document.insert(
        "apiVersion".into(),
        Value::from(WorkloadEndpointSpec::API_VERSION),
    );
    document.insert("kind".into(), Value::from(WorkloadEndpointSpec::KIND));
    document.append(&mut map);
    Ok(Value::Object(document))
}

/// An endpoint as read, with its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEndpoint {
    /// The object.
    pub endpoint: WorkloadEndpoint,
    /// Its revision.
    pub revision: u64,
    /// The raw document (to restore it exactly on rollback).
    pub raw: Value,
}

/// Reads an endpoint; `None` when there is none.
///
/// # Errors
///
/// [`CniError::Datastore`].
pub fn get(
    store: &dyn Datastore,
    namespace: &str,
    name: &str,
) -> Result<Option<StoredEndpoint>, CniError> {
    let k = key(namespace, name);
    match store.get(&k) {
        Ok(object) => {
            let mut value = object.value.clone();
            if let Value::Object(map) = &mut value {
                map.remove("apiVersion");
                map.remove("kind");
            }
            let endpoint: WorkloadEndpoint =
                serde_json::from_value(value).map_err(|e| store_err("decode", &k, e))?;
            Ok(Some(StoredEndpoint {
                endpoint,
                revision: object.revision.0,
                raw: object.value,
            }))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err("get", &k, e)),
    }
}

/// Creates or replaces the endpoint; returns the write's revision.
///
/// # Errors
///
/// [`CniError::Datastore`] (including a concurrent write since `previous`
/// was read).
pub fn put(
    store: &dyn Datastore,
    endpoint: &Object<WorkloadEndpointSpec>,
    previous: Option<&StoredEndpoint>,
) -> Result<u64, CniError> {
    let k = key(endpoint.namespace().unwrap_or_default(), endpoint.name());
    let document = encode(endpoint)?;
    let written = match previous {
        None => store.create(&k, &document),
        Some(p) => store.update(
            &k,
            &document,
            Precondition::Revision(twill_store::Revision(p.revision)),
        ),
    }
    .map_err(|e| store_err("write", &k, e))?;
    Ok(written.revision.0)
}

/// Puts back what was there before ADD (`None`: deletes the endpoint).
///
/// # Errors
///
/// [`CniError::Datastore`].
pub fn restore(
    store: &dyn Datastore,
    namespace: &str,
    name: &str,
    previous: Option<&Value>,
) -> Result<(), CniError> {
    let k = key(namespace, name);
    let result = match previous {
        Some(raw) => store.update(&k, raw, Precondition::Unconditional).map(drop),
        None => store.delete(&k, Precondition::Unconditional).map(drop),
    };
    match result {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err("restore", &k, e)),
    }
}

/// Deletes the endpoint if it belongs to `container_id`; `Ok(false)` when
/// there was none or it belongs to another container.
///
/// # Errors
///
/// [`CniError::Datastore`].
pub fn delete_if_owned(
    store: &dyn Datastore,
    namespace: &str,
    name: &str,
    container_id: &str,
) -> Result<bool, CniError> {
    let Some(stored) = get(store, namespace, name)? else {
        return Ok(false);
    };
    if stored.endpoint.spec.container_id != container_id {
        return Ok(false);
    }
    let k = key(namespace, name);
    match store.delete(
        &k,
        Precondition::Revision(twill_store::Revision(stored.revision)),
    ) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(store_err("delete", &k, e)),
    }
}

/// Waits until `<dir>/<namespace>.<name>.json` reports `revision` or a
/// later one, re-reading it every [`STATUS_POLL`].
///
/// # Errors
///
/// [`CniError::PolicyTimeout`] after `timeout`.
pub fn wait_programmed(
    dir: &Path,
    namespace: &str,
    name: &str,
    revision: u64,
    timeout: Duration,
) -> Result<Duration, CniError> {
    let file = dir.join(endpoint_status_file_name(namespace, name));
    let start = Instant::now();
    loop {
        // A missing or half-visible file is "not yet": felix-rs writes
        // atomically, so a parse failure can only be a stale foreign file.
        if let Ok(text) = std::fs::read(&file)
            && let Ok(status) = serde_json::from_slice::<EndpointStatus>(&text)
            && status.revision >= revision
        {
            return Ok(start.elapsed());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(CniError::PolicyTimeout {
                endpoint: format!("{namespace}/{name}"),
                file: file.display().to_string(),
                revision,
                waited_ms: waited.as_millis(),
            });
        }
        std::thread::sleep(STATUS_POLL.min(timeout - waited));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use twill_store::MemoryStore;

    use super::*;

    fn wep(container: &str) -> WorkloadEndpoint {
        Object::new(
            "n-k8s-web-eth0",
            Some("shop"),
            WorkloadEndpointSpec {
                container_id: container.into(),
                ..Default::default()
            },
        )
    }

    fn write_status(dir: &Path, revision: u64) {
        let status = EndpointStatus {
            namespace: "shop".into(),
            name: "n-k8s-web-eth0".into(),
            container_id: None,
            revision,
        };
        std::fs::write(
            dir.join(endpoint_status_file_name("shop", "n-k8s-web-eth0")),
            serde_json::to_vec(&status).expect("serializes"),
        )
        .expect("writes");
    }

    #[test]
    fn endpoints_are_stored_as_full_documents_and_read_back() {
        let store = Arc::new(MemoryStore::new(Duration::from_secs(60)));
        let revision = put(&*store, &wep("c1"), None).expect("created");
        let raw = store.get(&key("shop", "n-k8s-web-eth0")).expect("stored");
        assert_eq!(raw.value["kind"], "WorkloadEndpoint");
        let read = get(&*store, "shop", "n-k8s-web-eth0")
            .expect("reads")
            .expect("exists");
        assert_eq!(read.revision, revision);
        assert_eq!(read.endpoint.spec.container_id, "c1");
    }

    #[test]
    fn only_the_owning_container_deletes_an_endpoint() {
        let store = MemoryStore::new(Duration::from_secs(60));
        put(&store, &wep("c1"), None).expect("created");
        assert!(!delete_if_owned(&store, "shop", "n-k8s-web-eth0", "c2").expect("no error"));
        assert!(
            get(&store, "shop", "n-k8s-web-eth0")
                .expect("reads")
                .is_some()
        );
        assert!(delete_if_owned(&store, "shop", "n-k8s-web-eth0", "c1").expect("deleted"));
        assert!(!delete_if_owned(&store, "shop", "n-k8s-web-eth0", "c1").expect("idempotent"));
    }

    #[test]
    fn the_wait_ends_when_the_status_reaches_the_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_status(dir.path(), 4);
        let err = wait_programmed(
            dir.path(),
            "shop",
            "n-k8s-web-eth0",
            5,
            Duration::from_millis(30),
        )
        .expect_err("revision 4 is older than the write");
        assert_eq!(err.code(), 103);

        let path = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            write_status(&path, 5);
        });
        let waited = wait_programmed(
            dir.path(),
            "shop",
            "n-k8s-web-eth0",
            5,
            Duration::from_secs(5),
        )
        .expect("programmed");
        writer.join().expect("writer");
        assert!(waited >= Duration::from_millis(15), "{waited:?}");
    }
}
