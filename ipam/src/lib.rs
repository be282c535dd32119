//! Twill's IPAM: pod addresses from IP pools in blocks affine to nodes, kept
//! in the datastore, as Calico allocates them — without Calico's known
//! failures.
//!
//! # Model (Calico's, in `twill_api::ipam` and `twill_api::ippool`)
//!
//! An `IPPool` is cut into blocks (`/26` by default). A node claims a block
//! (a `BlockAffinity`, `pending` → `confirmed`) and hands out its addresses;
//! an `IPAMBlock` records per address the attribute entry (handle, pod,
//! node, `releasedAt`) and the sequence number it was handed out with, plus
//! the FIFO queue of free addresses. An `IPAMHandle` counts, per block, the
//! addresses held under one handle (`k8s-pod-network.<containerID>`).
//! `IPAMConfiguration` sets `strictAffinity`, `maxBlocksPerHost`,
//! `autoAllocateBlocks` and `ipCooldownSeconds`; `IPReservation`s are never
//! handed out.
//!
//! # Allocation ([`Ipam::allocate`])
//!
//! 1. Pools: family, not disabled, `allowedUses`, `assignmentMode`
//!    Automatic, `nodeSelector` against the `Node`'s labels,
//!    `namespaceSelector` against the namespace's labels — or exactly the
//!    pools the request names. A pool that would be used is checked first:
//!    a `blockSize` that does not fit or a CIDR overlapping another pool is
//!    refused with an error naming the pool and field, before any write.
//! 2. The node's confirmed blocks, then a newly claimed block (two-phase,
//!    see [`affinity`]; at most `maxBlocksPerHost` per family, 20 when
//!    unset), then — unless `strictAffinity` — a block of another node.
//! 3. In the block: the head of the free queue, skipping reserved
//!    addresses. The handle is counted first, then the block is written
//!    with compare-and-swap on its revision (bounded retries, re-reading on
//!    conflict).
//!
//! # How Twill avoids Calico's failures
//!
//! - **Immediate reuse** (calico#6968): released addresses cool down for
//!   `ipCooldownSeconds`, whose Twill default is 30 s rather than 0
//!   ([`pool::DEFAULT_COOLDOWN`]), and free addresses are reused FIFO.
//!   Sequence numbers refuse a stale release of a reused address.
//! - **Leaks** (calico#5339, #7382): the write order (handle before block
//!   on allocation, block before handle on release) means a crashed writer
//!   can only leave a handle that counts too much, never an address without
//!   a handle; the [`gc`] collector releases addresses whose owner has been
//!   gone for longer than a grace period (asking again right before
//!   releasing, and with the sequence number, so a reused address is never
//!   freed), corrects handle counts, releases empty blocks (a node keeps
//!   its last) and everything of deleted nodes, and finishes or removes
//!   half-done claims and releases.
//! - **The host-wide lock** (calico#5612: 100 pods on a node waiting 2–3
//!   minutes): there is none. Every write is a compare-and-swap, and the
//!   node IPAM service ([`service`]) serves a node's requests from one task
//!   with the node's blocks cached, so requests cost a few datastore round
//!   trips and never wait on a file lock or on each other's timeouts.
//!
//! The library is pure over `Datastore` (no sockets, no kernel); time and
//! "is this owner live" are injected ([`Clock`], [`Liveness`]).

pub mod affinity;
pub mod allocate;
pub mod batch;
pub mod block;
pub mod check;
pub mod client;
pub mod env;
pub mod error;
pub mod gc;
pub mod handle;
pub mod pool;
pub mod release;
pub mod service;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ipnet::IpNet;
use twill_store::Datastore;

pub use allocate::{AllocateRequest, AllocatedIp, AssignIpRequest};
pub use check::{Problem, Usage, check, usage};
pub use env::{AllocationRef, Clock, Liveness, ManualClock, StoreLiveness, SystemClock};
pub use error::{IpamError, Result};
pub use gc::{GarbageCollector, GcConfig, GcReport};
pub use pool::{DEFAULT_COOLDOWN, DEFAULT_MAX_BLOCKS_PER_HOST, EffectiveConfig};

/// The IPAM allocator over one datastore. Cheap to share; it caches which
/// blocks each node owns, those last seen with room first (a hint, always
/// re-checked against the store), and the blocks batched allocation last
/// wrote (written back only on the revision they were read at), and the
/// revision at which each full block was last seen full.
pub struct Ipam {
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    affine: Mutex<HashMap<String, Vec<IpNet>>>,
    blocks: Mutex<HashMap<String, store::Stored<twill_api::ipam::IPAMBlockSpec>>>,
    full: Mutex<HashMap<String, twill_store::Revision>>,
}

impl std::fmt::Debug for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipam").finish_non_exhaustive()
    }
}

impl Ipam {
    /// An allocator over `store` with the system clock.
    pub fn new(store: Arc<dyn Datastore>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    /// An allocator over `store` with the given clock.
    pub fn with_clock(store: Arc<dyn Datastore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            affine: Mutex::new(HashMap::new()),
            blocks: Mutex::new(HashMap::new()),
            full: Mutex::new(HashMap::new()),
        }
    }

    /// The datastore.
    pub fn store(&self) -> &dyn Datastore {
        &*self.store
    }

    /// The clock's time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn affine_cache(&self) -> MutexGuard<'_, HashMap<String, Vec<IpNet>>> {
        self.affine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks last seen full, by name, with the revision they were full at.
    fn full_blocks(&self) -> MutexGuard<'_, HashMap<String, twill_store::Revision>> {
        self.full.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn block_cache(
        &self,
    ) -> MutexGuard<'_, HashMap<String, store::Stored<twill_api::ipam::IPAMBlockSpec>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }
}
