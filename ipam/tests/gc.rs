//! Garbage collection, as specifications.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Fixture, LiveSet};
use twill_api::Object;
use twill_api::ipam::{BlockAffinitySpec, BlockAffinityState};
use twill_ipam::store::{self, affinity_name};
use twill_ipam::{AllocateRequest, GarbageCollector, GcConfig, affinity, handle};

const GRACE: Duration = Duration::from_secs(600);

fn collector() -> GarbageCollector {
    GarbageCollector::new(GcConfig { grace: GRACE })
}

#[test]
fn a_leak_is_released_only_after_the_grace_period() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let live = LiveSet::default();
    let ipam = f.ipam();
    let kept = ipam.allocate(&AllocateRequest::ipv4("kept", "n1")).unwrap();
    live.add("kept");
    let leaked = ipam
        .allocate(&AllocateRequest::ipv4("leaked", "n1"))
        .unwrap();
    let mut gc = collector();

    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.candidates, 1);
    assert!(report.released.is_empty());

    f.clock.advance(GRACE - Duration::from_secs(1));
    assert!(gc.run(&ipam, &live).unwrap().released.is_empty());

    f.clock.advance(Duration::from_secs(1));
    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.released, vec![leaked[0].ip]);
    assert!(f.handle("leaked").is_none());
    assert_eq!(f.handle("kept").unwrap().total(), 1, "{:?}", kept);
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn an_owner_that_comes_back_within_the_grace_period_keeps_its_address() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let live = LiveSet::default();
    let ipam = f.ipam();
    ipam.allocate(&AllocateRequest::ipv4("slow-pod", "n1"))
        .unwrap();
    let mut gc = collector();
    gc.run(&ipam, &live).unwrap();
    live.add("slow-pod");
    f.clock.advance(GRACE * 2);
    gc.run(&ipam, &live).unwrap();
    live.remove("slow-pod");
    // Gone again: the grace period starts over.
    let report = gc.run(&ipam, &live).unwrap();
    assert!(report.released.is_empty());
    assert_eq!(report.candidates, 1);
}

#[test]
fn everything_of_a_deleted_node_is_released_without_waiting() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26)
        .node("n1", &[])
        .config(|c| c.ip_cooldown_seconds = Some(0));
    let live = LiveSet::default();
    let ipam = f.ipam();
    ipam.allocate(&AllocateRequest::ipv4("pod", "n1")).unwrap();
    live.add("pod"); // Still "live" as far as endpoints go.
    live.gone_nodes.lock().unwrap().insert("n1".into());
    let mut gc = collector();
    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.released.len(), 1);
    assert_eq!(report.blocks_released.len(), 1);
    assert!(f.blocks().is_empty());
    assert!(affinity::all(&*f.store).unwrap().is_empty());
}

#[test]
fn empty_blocks_are_released_but_a_node_keeps_its_last() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 30)
        .node("n1", &[])
        .config(|c| c.ip_cooldown_seconds = Some(0));
    let live = LiveSet::default();
    let ipam = f.ipam();
    for i in 0..8 {
        ipam.allocate(&AllocateRequest::ipv4(format!("h{i}"), "n1"))
            .unwrap();
    }
    assert_eq!(f.blocks().len(), 2);
    for i in 0..8 {
        ipam.release_handle(&format!("h{i}")).unwrap();
    }
    let mut gc = collector();
    assert!(gc.run(&ipam, &live).unwrap().blocks_released.is_empty());
    f.clock.advance(GRACE);
    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.blocks_released.len(), 1);
    f.clock.advance(GRACE);
    assert!(gc.run(&ipam, &live).unwrap().blocks_released.is_empty());
    assert_eq!(f.blocks().len(), 1, "the node's last block stays");
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn a_handle_left_counting_by_a_crashed_writer_is_corrected() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    // A writer counted the handle and died before writing the block.
    handle::adjust(&*f.store, "orphan", "10.0.0.0/26", 1).unwrap();
    assert_eq!(f.problems().len(), 1);
    let live = LiveSet::default();
    let ipam = f.ipam();
    let mut gc = collector();
    assert_eq!(gc.run(&ipam, &live).unwrap().handles_repaired, 0);
    f.clock.advance(GRACE);
    assert_eq!(gc.run(&ipam, &live).unwrap().handles_repaired, 1);
    assert!(f.handle("orphan").is_none());
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn half_done_claims_are_finished_or_removed() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26)
        .node("n1", &[])
        .node("n2", &[]);
    let ipam = f.ipam();
    let got = ipam.allocate(&AllocateRequest::ipv4("h", "n1")).unwrap();
    // n1's affinity set back to pending (a crash before confirming), and n2
    // left a pending claim on the same block (it lost the race and died).
    let name = affinity_name("n1", &got[0].block);
    let mut mine = store::get::<BlockAffinitySpec>(&*f.store, &name)
        .unwrap()
        .unwrap();
    mine.object.spec.state = BlockAffinityState::Pending;
    store::update(&*f.store, &mine).unwrap();
    let loser = BlockAffinitySpec {
        state: BlockAffinityState::Pending,
        node: "n2".into(),
        cidr: got[0].block.clone(),
        deleted: "false".into(),
        type_: None,
    };
    store::create(
        &*f.store,
        &Object::new(affinity_name("n2", &got[0].block), None, loser),
    )
    .unwrap();

    let live = LiveSet::default();
    live.add("h");
    let mut gc = collector();
    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.affinities_confirmed, 1);
    assert_eq!(
        report.affinities_removed, 0,
        "the loser's claim waits for the grace period"
    );
    f.clock.advance(GRACE);
    let report = gc.run(&ipam, &live).unwrap();
    assert_eq!(report.affinities_removed, 1);
    let left = affinity::all(&*f.store).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].object.spec.node, "n1");
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn cooled_down_addresses_in_idle_blocks_are_swept() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let ipam = f.ipam();
    ipam.allocate(&AllocateRequest::ipv4("h", "n1")).unwrap();
    ipam.release_handle("h").unwrap();
    let live = LiveSet::default();
    let mut gc = collector();
    assert_eq!(gc.run(&ipam, &live).unwrap().swept, 0);
    f.clock.advance(Duration::from_secs(30));
    assert_eq!(gc.run(&ipam, &live).unwrap().swept, 1);
    assert!(f.blocks()[0].attributes.is_empty());
}
