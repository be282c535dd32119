//! Typed access on top of the JSON core: (de)serialization with the key in
//! every error, and a compare-and-swap retry loop.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Datastore, Error, Key, Object, Precondition, Result, Revision};

/// A typed object with its key and revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// Where the object lives.
    pub key: Key,
    /// The revision of its last write.
    pub revision: Revision,
    /// The typed body.
    pub value: T,
}

impl<T: DeserializeOwned> Versioned<T> {
    /// Decodes a raw object.
    ///
    /// # Errors
    ///
    /// [`Error::Serde`] if the body does not match `T`.
    pub fn decode(object: Object) -> Result<Self> {
        let value = serde_json::from_value(object.value).map_err(|source| Error::Serde {
            key: object.key.clone(),
            source,
        })?;
        Ok(Self {
            key: object.key,
            revision: object.revision,
            value,
        })
    }
}

fn encode<T: Serialize>(key: &Key, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| Error::Serde {
        key: key.clone(),
        source,
    })
}

/// Typed convenience methods for every [`Datastore`], including
/// `dyn Datastore` and `Arc<dyn Datastore>`.
pub trait DatastoreExt: Datastore {
    /// Reads and decodes one object.
    ///
    /// # Errors
    ///
    /// As [`Datastore::get`], plus [`Error::Serde`].
    fn get_as<T: DeserializeOwned>(&self, key: &Key) -> Result<Versioned<T>> {
        Versioned::decode(self.get(key)?)
    }

    /// Encodes and creates one object; returns its revision.
    ///
    /// # Errors
    ///
    /// As [`Datastore::create`], plus [`Error::Serde`].
    fn create_as<T: Serialize>(&self, key: &Key, value: &T) -> Result<Revision> {
        Ok(self.create(key, &encode(key, value)?)?.revision)
    }

    /// Encodes and updates one object; returns its new revision.
    ///
    /// # Errors
    ///
    /// As [`Datastore::update`], plus [`Error::Serde`].
    fn update_as<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        precondition: Precondition,
    ) -> Result<Revision> {
        Ok(self
            .update(key, &encode(key, value)?, precondition)?
            .revision)
    }

    /// Lists and decodes the objects of a kind; returns them and the list
    /// revision.
    ///
    /// # Errors
    ///
    /// As [`Datastore::list`], plus [`Error::Serde`] for the first object
    /// that does not decode.
    fn list_as<T: DeserializeOwned>(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Versioned<T>>, Revision)> {
        let list = self.list(kind, namespace)?;
        let items = list
            .items
            .into_iter()
            .map(Versioned::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok((items, list.revision))
    }

    /// Read-modify-write with compare-and-swap: reads the object, lets
    /// `change` modify it, and writes it back if nobody wrote in between;
    /// on [`Error::Conflict`] it starts over with the fresh object. Returns
    /// the written object and how many conflicts it retried.
    ///
    /// # Errors
    ///
    /// Whatever `change` returns, or the errors of `get` and `update` other
    /// than a conflict.
    fn update_with<T, F>(&self, key: &Key, mut change: F) -> Result<(Versioned<T>, u64)>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut T) -> Result<()>,
    {
        let mut conflicts = 0;
        loop {
            let mut current: Versioned<T> = self.get_as(key)?;
            change(&mut current.value)?;
            match self.update_as(
                key,
                &current.value,
                Precondition::Revision(current.revision),
            ) {
                Ok(revision) => {
                    current.revision = revision;
                    return Ok((current, conflicts));
                }
                Err(Error::Conflict { .. }) => conflicts += 1,
                Err(other) => return Err(other),
            }
        }
    }
}

impl<S: Datastore + ?Sized> DatastoreExt for S {}
