//! Typed access to the IPAM kinds in the datastore.
//!
//! Objects are stored under `Key::cluster(KIND, metadata.name)` with the full
//! document as body (`apiVersion` and `kind` first, as `twill get -o json`
//! prints it); bodies without `apiVersion`/`kind` read as well.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use twill_api::{Object, ObjectMeta, Spec};
use twill_store::{Datastore, Error as StoreError, Key, Precondition, Revision, TextOp};

use crate::error::{IpamError, Result};

/// How many times a compare-and-swap is retried after a conflict before the
/// operation gives up (Calico's `datastoreRetries`).
pub const CAS_RETRIES: u32 = 100;

/// A typed object as read, with the revision a compare-and-swap expects.
#[derive(Debug, Clone)]
pub struct Stored<S: Spec> {
    /// Where it lives.
    pub key: Key,
    /// The revision of its last write.
    pub revision: Revision,
    /// The object.
    pub object: Object<S>,
}

/// The key of a cluster-scoped object of kind `S`.
pub fn key<S: Spec>(name: &str) -> Key {
    Key::cluster(S::STORE_KIND, name)
}

/// The document stored for an object.
pub fn encode<S: Spec>(object: &Object<S>) -> Result<Value> {
    let key = key::<S>(&object.metadata.name);
    let mut value = serde_json::to_value(object).map_err(|e| IpamError::Corrupt {
        key: key.clone(),
        reason: format!("cannot encode: {e}"),
    })?;
    let Value::Object(map) = &mut value else {
        return Err(IpamError::Corrupt {
            key,
            reason: "does not encode to a JSON object".into(),
        });
    };
    let mut document = serde_json::Map::with_capacity(map.len() + 2);
    document.insert("apiVersion".into(), Value::from(S::API_VERSION));
    document.insert("kind".into(), Value::from(S::KIND));
    document.append(map);
    Ok(Value::Object(document))
}

/// The stored document as written: `apiVersion` and `kind`, then the
/// object's fields, serialized straight from the typed object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase", bound = "S: Spec")]
struct DocumentOut<'a, S: Spec> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a S,
    #[serde(skip_serializing_if = "is_none")]
    status: &'a Option<S::Status>,
}

fn is_none<T>(value: &&Option<T>) -> bool {
    value.is_none()
}

/// The stored document as read: `apiVersion` and `kind` are ignored (and
/// may be absent), the rest is [`Object`]'s shape, unknown fields rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", bound = "S: Spec")]
struct DocumentIn<S: Spec> {
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(default, rename = "kind")]
    _kind: Option<IgnoredAny>,
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default)]
    status: Option<S::Status>,
}

/// The document stored for an object, as JSON text (the same document as
/// [`encode`], without building a [`Value`] tree).
pub fn encode_text<S: Spec>(object: &Object<S>) -> Result<String> {
    let document = DocumentOut {
        api_version: S::API_VERSION,
        kind: S::KIND,
        metadata: &object.metadata,
        spec: &object.spec,
        status: &object.status,
    };
    serde_json::to_string(&document).map_err(|e| IpamError::Corrupt {
        key: key::<S>(&object.metadata.name),
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes a stored object of kind `S` straight from its JSON text.
pub fn decode_text<S: Spec>(object: twill_store::TextObject) -> Result<Stored<S>> {
    let twill_store::TextObject {
        key,
        revision,
        body,
    } = object;
    let document: DocumentIn<S> = match serde_json::from_str(&body) {
        Ok(document) => document,
        Err(e) => {
            return Err(IpamError::Corrupt {
                key,
                reason: e.to_string(),
            });
        }
    };
    Ok(Stored {
        key,
        revision,
        object: Object {
            metadata: document.metadata,
            spec: document.spec,
            status: document.status,
        },
    })
}

/// Decodes a stored object of kind `S`.
pub fn decode<S: Spec>(object: twill_store::Object) -> Result<Stored<S>> {
    let twill_store::Object {
        key,
        revision,
        mut value,
    } = object;
    if let Value::Object(map) = &mut value {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let object = serde_json::from_value(value).map_err(|e| IpamError::Corrupt {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Stored {
        key,
        revision,
        object,
    })
}

/// Reads one object; `None` when it does not exist.
pub fn get<S: Spec>(store: &dyn Datastore, name: &str) -> Result<Option<Stored<S>>> {
    match store.get_text(&key::<S>(name)) {
        Ok(object) => decode_text(object).map(Some),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Lists every object of kind `S`.
pub fn list<S: Spec>(store: &dyn Datastore) -> Result<Vec<Stored<S>>> {
    store
        .list(S::STORE_KIND, None)?
        .items
        .into_iter()
        .map(decode)
        .collect()
}

/// Creates an object; `Ok(None)` when one with the same name exists.
pub fn create<S: Spec>(store: &dyn Datastore, object: &Object<S>) -> Result<Option<Stored<S>>> {
    let key = key::<S>(&object.metadata.name);
    match store.create(&key, &encode(object)?) {
        Ok(written) => Ok(Some(Stored {
            key,
            revision: written.revision,
            object: object.clone(),
        })),
        Err(StoreError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a compare-and-swap write came to.
#[derive(Debug)]
pub enum Cas<T> {
    /// Written; the new state.
    Written(T),
    /// Someone else wrote (or deleted) the object since it was read.
    Conflict,
}

/// Writes `stored.object` if the object is still at `stored.revision`.
pub fn update<S: Spec>(store: &dyn Datastore, stored: &Stored<S>) -> Result<Cas<Stored<S>>> {
    let op = TextOp::Update {
        key: stored.key.clone(),
        body: encode_text(&stored.object)?,
        precondition: Precondition::Revision(stored.revision),
    };
    match store.txn_text(std::slice::from_ref(&op)) {
        Ok(revisions) => Ok(Cas::Written(Stored {
            key: stored.key.clone(),
            revision: *revisions
                .first()
                .expect("a transaction of one operation returns one revision"),
            object: stored.object.clone(),
        })),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(Cas::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the object if it is still at `revision`; `Conflict` when it
/// changed or is gone.
pub fn delete(store: &dyn Datastore, key: &Key, revision: Revision) -> Result<Cas<()>> {
    match store.delete(key, Precondition::Revision(revision)) {
        Ok(_) => Ok(Cas::Written(())),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(Cas::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// The error for a compare-and-swap loop that never won.
pub fn too_many_conflicts(key: Key) -> IpamError {
    IpamError::TooManyConflicts {
        key,
        attempts: CAS_RETRIES,
    }
}

/// Calico's object name for a CIDR: `10.244.0.0/26` → `10-244-0-0-26`,
/// `fd00::/122` → `fd00---122`.
pub fn cidr_name(cidr: &str) -> String {
    cidr.replace(['.', ':', '/'], "-")
}

/// The name of `node`'s affinity to the block `cidr`: `<node>-<cidr name>`,
/// shortened with a hash suffix when longer than a Kubernetes name may be.
pub fn affinity_name(node: &str, cidr: &str) -> String {
    const MAX: usize = 253;
    let name = format!("{node}-{}", cidr_name(cidr));
    if name.len() <= MAX {
        return name;
    }
    // FNV-1a over the full name keeps shortened names distinct.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = MAX - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash:016x}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Object<twill_api::ipam::IPAMBlockSpec> {
        let mut object = Object::new(
            "10-0-0-0-30",
            None,
            twill_api::ipam::IPAMBlockSpec {
                cidr: "10.0.0.0/30".into(),
                affinity: Some("host:n1".into()),
                allocations: vec![Some(0), None, None, None],
                unallocated: vec![1, 2, 3],
                attributes: vec![twill_api::ipam::AllocationAttribute {
                    handle_id: Some("k8s-pod-network.abc".into()),
                    ..Default::default()
                }],
                sequence_number: 7,
                ..Default::default()
            },
        );
        object.metadata.labels.insert("a".into(), "b".into());
        object
    }

    fn text(key: Key, body: String) -> twill_store::TextObject {
        twill_store::TextObject {
            key,
            revision: Revision(3),
            body,
        }
    }

    #[test]
    fn text_encoding_is_the_value_encoding() {
        let object = block();
        let from_text: Value =
            serde_json::from_str(&encode_text(&object).expect("encodes")).expect("is JSON");
        assert_eq!(from_text, encode(&object).expect("encodes"));
    }

    #[test]
    fn text_decoding_reads_what_either_encoding_wrote() {
        let object = block();
        let k = key::<twill_api::ipam::IPAMBlockSpec>(&object.metadata.name);
        let mut bare = encode(&object).expect("encodes");
        if let Value::Object(map) = &mut bare {
            map.remove("apiVersion");
            map.remove("kind");
        }
        for body in [
            encode_text(&object).expect("encodes"),
            encode(&object).expect("encodes").to_string(),
            bare.to_string(),
        ] {
            let stored = decode_text::<twill_api::ipam::IPAMBlockSpec>(text(k.clone(), body))
                .expect("decodes");
            assert_eq!((stored.key, stored.revision), (k.clone(), Revision(3)));
            assert_eq!(stored.object, object);
        }
    }

    #[test]
    fn text_decoding_rejects_unknown_fields_and_bad_json() {
        let k = key::<twill_api::ipam::IPAMBlockSpec>("x");
        for body in [
            r#"{"metadata":{"name":"x"},"surprise":1}"#,
            r#"{"metadata":{"name":"x"},"spec":{"cidr":"10.0.0.0/30","surprise":1}}"#,
            r#"{"metadata":"#,
        ] {
            let result =
                decode_text::<twill_api::ipam::IPAMBlockSpec>(text(k.clone(), body.into()));
            assert!(
                matches!(&result, Err(IpamError::Corrupt { key, .. }) if *key == k),
                "{body}: {result:?}"
            );
        }
    }

    #[test]
    fn names_follow_calico() {
        assert_eq!(cidr_name("10.244.0.0/26"), "10-244-0-0-26");
        assert_eq!(cidr_name("fd00::/122"), "fd00---122");
        assert_eq!(affinity_name("n1", "10.0.0.0/26"), "n1-10-0-0-0-26");
    }

    #[test]
    fn long_affinity_names_are_shortened_and_stay_distinct() {
        let a = affinity_name(&"a".repeat(300), "10.0.0.0/26");
        let b = affinity_name(&"a".repeat(300), "10.0.0.64/26");
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
    }
}
