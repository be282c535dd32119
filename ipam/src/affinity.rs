//! Block affinities: the two-phase claim of a block by a node and the
//! ordered release of a block.
//!
//! Claim: create the `BlockAffinity` as `pending` → create the `IPAMBlock`
//! with `affinity: host:<node>` → mark the affinity `confirmed`. The block's
//! create-if-absent is the arbiter between nodes racing for one CIDR: the
//! loser deletes its pending affinity. A node that dies mid-claim finds its
//! pending affinity on the next claim of the same block and completes it;
//! the garbage collector removes pending affinities nobody completes.
//! When neither the affinity nor the block exists (the common case), both
//! are created in one datastore transaction with the affinity already
//! `confirmed`: the end state of the three steps, with no state in between
//! to recover from, in one commit instead of three. If either exists by
//! then, the transaction writes nothing and the three steps run.
//!
//! Release: mark the affinity `pendingDeletion` → delete the block with
//! compare-and-swap on the revision at which it was seen empty (an
//! allocation in between makes the delete fail) → delete the affinity.

use std::time::SystemTime;

use ipnet::IpNet;
use twill_api::Object;
use twill_api::ipam::{BlockAffinitySpec, BlockAffinityState, IPAMBlockSpec};
use twill_store::{Datastore, Error as StoreError, TextOp};

use crate::block::{BlockExt, new_block};
use crate::error::Result;
use crate::store::{self, CAS_RETRIES, Cas, Stored, affinity_name, cidr_name};

/// What a claim came to.
#[derive(Debug)]
pub enum Claim {
    /// The block is this node's.
    Claimed(Box<Stored<IPAMBlockSpec>>),
    /// The block exists and is not this node's (its affinity, if any).
    Taken(Option<String>),
}

/// The live (not deleted) affinities of every node.
///
/// # Errors
///
/// The datastore's.
pub fn all(store: &dyn Datastore) -> Result<Vec<Stored<BlockAffinitySpec>>> {
    Ok(store::list::<BlockAffinitySpec>(store)?
        .into_iter()
        .filter(|a| !a.object.spec.is_deleted())
        .collect())
}

/// Claims the block `net` for `node` (see the module docs).
///
/// # Errors
///
/// The datastore's, or too many conflicts.
pub fn claim(store: &dyn Datastore, node: &str, net: IpNet, now: SystemTime) -> Result<Claim> {
    let cidr = net.to_string();
    let name = affinity_name(node, &cidr);
    let mut affinity = match store::get::<BlockAffinitySpec>(store, &name)? {
        Some(a) => a,
        None => {
            if let Some(block) = claim_at_once(store, node, net, &name, now)? {
                return Ok(Claim::Claimed(Box::new(block)));
            }
            let spec = BlockAffinitySpec {
                state: BlockAffinityState::Pending,
                node: node.to_string(),
                cidr: cidr.clone(),
                deleted: "false".into(),
                type_: Some("host".into()),
            };
            match store::create(store, &Object::new(name.as_str(), None, spec))? {
                Some(created) => created,
                None => match store::get::<BlockAffinitySpec>(store, &name)? {
                    Some(a) => a,
                    None => return Ok(Claim::Taken(None)),
                },
            }
        }
    };
    if affinity.object.spec.state == BlockAffinityState::PendingDeletion {
        // The collector is releasing this very block: let it finish.
        return Ok(Claim::Taken(Some(node.to_string())));
    }

    let fresh = Object::new(cidr_name(&cidr), None, new_block(net, Some(node), now));
    let block = match store::create(store, &fresh)? {
        Some(created) => created,
        None => match store::get::<IPAMBlockSpec>(store, &cidr_name(&cidr))? {
            Some(existing)
                if existing.object.spec.host() == Some(node) && !existing.object.spec.deleted =>
            {
                existing
            }
            existing => {
                let owner = existing.and_then(|b| b.object.spec.affinity.clone());
                if affinity.object.spec.state == BlockAffinityState::Pending {
                    store::delete(store, &affinity.key, affinity.revision)?;
                }
                return Ok(Claim::Taken(owner));
            }
        },
    };

    for _ in 0..CAS_RETRIES {
        if affinity.object.spec.state == BlockAffinityState::Confirmed {
            return Ok(Claim::Claimed(Box::new(block)));
        }
        affinity.object.spec.state = BlockAffinityState::Confirmed;
        match store::update(store, &affinity)? {
            Cas::Written(_) => return Ok(Claim::Claimed(Box::new(block))),
            Cas::Conflict => match store::get::<BlockAffinitySpec>(store, &name)? {
                Some(a) if a.object.spec.state != BlockAffinityState::PendingDeletion => {
                    affinity = a;
                }
                _ => return Ok(Claim::Taken(Some(node.to_string()))),
            },
        }
    }
    Err(store::too_many_conflicts(affinity.key))
}

/// Creates the confirmed affinity `name` and the block `net` in one
/// transaction; `None` when either exists already (nothing written).
fn claim_at_once(
    store: &dyn Datastore,
    node: &str,
    net: IpNet,
    name: &str,
    now: SystemTime,
) -> Result<Option<Stored<IPAMBlockSpec>>> {
    let cidr = net.to_string();
    let affinity = Object::new(
        name,
        None,
        BlockAffinitySpec {
            state: BlockAffinityState::Confirmed,
            node: node.to_string(),
            cidr: cidr.clone(),
            deleted: "false".into(),
            type_: Some("host".into()),
        },
    );
    let block = Object::new(cidr_name(&cidr), None, new_block(net, Some(node), now));
    let block_key = store::key::<IPAMBlockSpec>(&block.metadata.name);
    let ops = [
        TextOp::Create {
            key: store::key::<BlockAffinitySpec>(name),
            body: store::encode_text(&affinity)?,
        },
        TextOp::Create {
            key: block_key.clone(),
            body: store::encode_text(&block)?,
        },
    ];
    match store.txn_text(&ops) {
        Ok(revisions) => {
            let revision = *revisions
                .last()
                .expect("a transaction returns one revision per operation");
            Ok(Some(Stored {
                key: block_key,
                revision,
                object: block,
            }))
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Releases an empty block and its owner's affinity (see the module docs).
/// Returns whether the block was deleted; `false` when it changed since it
/// was read (e.g. an address was handed out from it) or is not empty.
///
/// # Errors
///
/// The datastore's.
pub fn release_block(store: &dyn Datastore, block: &Stored<IPAMBlockSpec>) -> Result<bool> {
    let spec = &block.object.spec;
    if !spec.is_empty() {
        return Ok(false);
    }
    let affinity = match spec.host() {
        Some(node) => store::get::<BlockAffinitySpec>(store, &affinity_name(node, &spec.cidr))?,
        None => None,
    };
    let mut marked = None;
    if let Some(mut a) = affinity.clone()
        && a.object.spec.state != BlockAffinityState::PendingDeletion
    {
        a.object.spec.state = BlockAffinityState::PendingDeletion;
        match store::update(store, &a)? {
            Cas::Written(written) => marked = Some(written),
            Cas::Conflict => return Ok(false),
        }
    }
    let deleted = matches!(
        store::delete(store, &block.key, block.revision)?,
        Cas::Written(())
    );
    if !deleted {
        // The block is in use again: hand the affinity back to its node.
        if let Some(mut a) = marked {
            a.object.spec.state = BlockAffinityState::Confirmed;
            store::update(store, &a)?;
        }
        return Ok(false);
    }
    if let Some(a) = affinity {
        // The affinity's revision moved when it was marked; delete whatever
        // state it has now, it belongs to a block that no longer exists.
        if let Some(current) = store::get::<BlockAffinitySpec>(store, a.key.name.as_str())? {
            store::delete(store, &current.key, current.revision)?;
        }
    }
    Ok(true)
}
