//! IPAMHandle counts.
//!
//! The write order makes crashes safe: an allocation adds to its handle
//! *before* it writes the block, a release writes the block *before* it
//! subtracts from the handle. A writer that dies in between leaves a handle
//! that counts more than the blocks hold — never an address without a
//! handle — and the garbage collector corrects the count later. Batched
//! allocations ([`crate::batch`]) write handles and block in one
//! transaction, so for them the question does not arise.

use twill_api::Object;
use twill_api::ipam::IPAMHandleSpec;
use twill_store::{Datastore, Op, Precondition};

use crate::error::Result;
use crate::store::{self, CAS_RETRIES, Cas, Stored};

/// Adds `delta` (which may be negative) to the handle's count for `block`,
/// creating the handle when needed and deleting it when it counts nothing.
///
/// # Errors
///
/// The datastore's, or too many conflicts.
pub fn adjust(store: &dyn Datastore, handle: &str, block: &str, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    // A new handle is the common case (one per pod): try to create it
    // before reading.
    if delta > 0 && create(store, handle, block, delta)? {
        return Ok(());
    }
    for _ in 0..CAS_RETRIES {
        let Some(mut stored) = store::get::<IPAMHandleSpec>(store, handle)? else {
            if delta < 0 {
                return Ok(());
            }
            if create(store, handle, block, delta)? {
                return Ok(());
            }
            continue;
        };
        let spec = &mut stored.object.spec;
        spec.deleted = false;
        let count = i64::from(spec.block.get(block).copied().unwrap_or(0)) + delta;
        if count > 0 {
            spec.block
                .insert(block.to_string(), u32::try_from(count).unwrap_or(u32::MAX));
        } else {
            spec.block.remove(block);
        }
        let written = if spec.block.is_empty() {
            store::delete(store, &stored.key, stored.revision)?
        } else {
            match store::update(store, &stored)? {
                Cas::Written(_) => Cas::Written(()),
                Cas::Conflict => Cas::Conflict,
            }
        };
        if let Cas::Written(()) = written {
            return Ok(());
        }
    }
    Err(store::too_many_conflicts(store::key::<IPAMHandleSpec>(
        handle,
    )))
}

/// Creates the handle counting `count` in `block`; `false` when it exists.
fn create(store: &dyn Datastore, handle: &str, block: &str, count: i64) -> Result<bool> {
    let mut spec = IPAMHandleSpec {
        handle_id: handle.to_string(),
        ..IPAMHandleSpec::default()
    };
    spec.block
        .insert(block.to_string(), u32::try_from(count).unwrap_or(u32::MAX));
    Ok(store::create(store, &Object::new(handle, None, spec))?.is_some())
}

/// The write that adds `count` to the handle's count for `block`, for a
/// transaction: a create when the handle was not found (`known` is `None`),
/// otherwise a compare-and-swap update of the handle as it was read.
///
/// # Errors
///
/// [`crate::IpamError::Corrupt`] if the handle cannot be encoded.
pub fn count_op(
    handle: &str,
    known: Option<&Stored<IPAMHandleSpec>>,
    block: &str,
    count: i64,
) -> Result<Op> {
    let add = |spec: &mut IPAMHandleSpec| {
        let total = i64::from(spec.block.get(block).copied().unwrap_or(0)) + count;
        spec.block
            .insert(block.to_string(), u32::try_from(total).unwrap_or(u32::MAX));
    };
    Ok(match known {
        None => {
            let mut object = Object::new(
                handle,
                None,
                IPAMHandleSpec {
                    handle_id: handle.to_string(),
                    ..IPAMHandleSpec::default()
                },
            );
            add(&mut object.spec);
            Op::Create {
                key: store::key::<IPAMHandleSpec>(handle),
                value: store::encode(&object)?,
            }
        }
        Some(stored) => {
            let mut object = stored.object.clone();
            object.spec.deleted = false;
            add(&mut object.spec);
            Op::Update {
                key: stored.key.clone(),
                value: store::encode(&object)?,
                precondition: Precondition::Revision(stored.revision),
            }
        }
    })
}
