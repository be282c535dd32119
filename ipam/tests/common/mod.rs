//! Fixtures shared by the IPAM tests: a store with pools, nodes and a
//! controllable clock.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a subset.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use twill_api::Object;
use twill_api::ipam::{IPAMBlockSpec, IPAMHandleSpec};
use twill_api::ippool::{IPAMConfigurationSpec, IPPoolSpec, IPReservationSpec};
use twill_api::node::NodeSpec;
use twill_ipam::store;
use twill_ipam::{AllocationRef, Ipam, Liveness, ManualClock};
use twill_store::{Datastore, MemoryStore};

pub struct Fixture {
    pub store: Arc<dyn Datastore>,
    pub clock: Arc<ManualClock>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::over(Arc::new(MemoryStore::default()))
    }

    pub fn over(store: Arc<dyn Datastore>) -> Self {
        Self {
            store,
            clock: Arc::new(ManualClock::default()),
        }
    }

    pub fn ipam(&self) -> Ipam {
        Ipam::with_clock(self.store.clone(), self.clock.clone())
    }

    pub fn pool(&self, name: &str, cidr: &str, block_size: i32) -> &Self {
        self.pool_with(name, cidr, block_size, |_| {})
    }

    pub fn pool_with(
        &self,
        name: &str,
        cidr: &str,
        block_size: i32,
        edit: impl FnOnce(&mut IPPoolSpec),
    ) -> &Self {
        let mut spec = IPPoolSpec {
            cidr: cidr.into(),
            block_size: Some(block_size),
            ..IPPoolSpec::default()
        };
        edit(&mut spec);
        store::create(&*self.store, &Object::new(name, None, spec)).unwrap();
        self
    }

    pub fn node(&self, name: &str, labels: &[(&str, &str)]) -> &Self {
        let mut node = Object::new(name, None, NodeSpec::default());
        node.metadata.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        store::create(&*self.store, &node).unwrap();
        self
    }

    pub fn delete_node(&self, name: &str) {
        self.store
            .delete(
                &store::key::<NodeSpec>(name),
                twill_store::Precondition::Unconditional,
            )
            .unwrap();
    }

    pub fn config(&self, edit: impl FnOnce(&mut IPAMConfigurationSpec)) -> &Self {
        let mut spec = IPAMConfigurationSpec::default();
        edit(&mut spec);
        store::create(&*self.store, &Object::new("default", None, spec)).unwrap();
        self
    }

    pub fn reserve(&self, name: &str, cidrs: &[&str]) -> &Self {
        let spec = IPReservationSpec {
            reserved_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        };
        store::create(&*self.store, &Object::new(name, None, spec)).unwrap();
        self
    }

    pub fn revision(&self) -> twill_store::Revision {
        self.store.current_revision().unwrap()
    }

    pub fn blocks(&self) -> Vec<IPAMBlockSpec> {
        store::list::<IPAMBlockSpec>(&*self.store)
            .unwrap()
            .into_iter()
            .map(|b| b.object.spec)
            .collect()
    }

    pub fn handle(&self, name: &str) -> Option<IPAMHandleSpec> {
        store::get::<IPAMHandleSpec>(&*self.store, name)
            .unwrap()
            .map(|h| h.object.spec)
    }

    pub fn problems(&self) -> Vec<twill_ipam::Problem> {
        twill_ipam::check(&*self.store).unwrap()
    }
}

/// Liveness from a set of live handles; every node in `gone_nodes` is deleted.
#[derive(Default)]
pub struct LiveSet {
    pub handles: Mutex<HashSet<String>>,
    pub gone_nodes: Mutex<HashSet<String>>,
}

impl LiveSet {
    pub fn add(&self, handle: &str) {
        self.handles.lock().unwrap().insert(handle.to_string());
    }
    pub fn remove(&self, handle: &str) {
        self.handles.lock().unwrap().remove(handle);
    }
}

impl Liveness for LiveSet {
    fn is_live(&self, a: &AllocationRef<'_>) -> twill_ipam::Result<bool> {
        Ok(self.handles.lock().unwrap().contains(a.handle))
    }
    fn node_exists(&self, node: &str) -> twill_ipam::Result<bool> {
        Ok(!self.gone_nodes.lock().unwrap().contains(node))
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
