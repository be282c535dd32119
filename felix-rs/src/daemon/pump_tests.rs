//! One kind's list-then-watch, driven call by call on an in-memory store.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use twill_api::Spec;
use twill_api::policy::GlobalNetworkPolicySpec;
use twill_store::{Key, MemoryStore, Precondition};

use super::*;
use crate::daemon::Decoded;

const KIND: &str = GlobalNetworkPolicySpec::STORE_KIND;
const WAIT: Duration = Duration::from_secs(2);

fn policy_json(name: &str) -> serde_json::Value {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
  selector: all()
  ingress: [{{action: Allow}}]
"
    );
    twill_api::load_str("test", &yaml)
        .unwrap()
        .remove(0)
        .to_json()
}

fn pump_over(store: &MemoryStore) -> Pump {
    Pump::new(Arc::new(store.clone()), KIND)
}

/// The names a snapshot lists, each with whether it decoded.
fn snapshot_names(msg: FelixMsg) -> Vec<(String, bool)> {
    match msg {
        FelixMsg::Snapshot { kind, items } => {
            assert_eq!(kind, KIND);
            items
                .into_iter()
                .map(|item| (item.key.name, item.resource.is_ok()))
                .collect()
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn the_first_message_is_the_decoded_snapshot_and_changes_follow() {
    let store = MemoryStore::new(Duration::from_secs(60));
    store
        .create(&Key::cluster(KIND, "a"), &policy_json("a"))
        .unwrap();
    store
        .create(
            &Key::cluster(KIND, "broken"),
            &serde_json::json!({"spec": 7}),
        )
        .unwrap();
    let mut pump = pump_over(&store);
    assert_eq!(
        snapshot_names(pump.next(WAIT).unwrap().unwrap()),
        [("a".to_owned(), true), ("broken".to_owned(), false)]
    );

    store
        .create(&Key::cluster(KIND, "b"), &policy_json("b"))
        .unwrap();
    match pump.next(WAIT).unwrap().unwrap() {
        FelixMsg::Upserted { kind, item } => {
            assert_eq!((kind, item.key.name.as_str()), (KIND, "b"));
            assert!(matches!(item.resource, Ok(Decoded::Graph { .. })));
        }
        other => panic!("expected b upserted, got {other:?}"),
    }
    store
        .delete(&Key::cluster(KIND, "a"), Precondition::Unconditional)
        .unwrap();
    match pump.next(WAIT).unwrap().unwrap() {
        FelixMsg::Deleted { kind, key } => assert_eq!((kind, key.name.as_str()), (KIND, "a")),
        other => panic!("expected a deleted, got {other:?}"),
    }
}

#[test]
fn bookmarks_and_quiet_waits_send_nothing() {
    let store = MemoryStore::new(Duration::from_millis(1));
    let mut pump = pump_over(&store);
    assert!(snapshot_names(pump.next(WAIT).unwrap().unwrap()).is_empty());
    for _ in 0..3 {
        // Each wait outlasts the bookmark interval.
        assert!(pump.next(Duration::from_millis(20)).unwrap().is_none());
    }
}

#[test]
fn a_watch_overtaken_by_compaction_lists_again() {
    let store = MemoryStore::new(Duration::from_secs(60));
    store
        .create(&Key::cluster(KIND, "a"), &policy_json("a"))
        .unwrap();
    let mut pump = pump_over(&store);
    assert_eq!(snapshot_names(pump.next(WAIT).unwrap().unwrap()).len(), 1);

    store
        .create(&Key::cluster(KIND, "b"), &policy_json("b"))
        .unwrap();
    store
        .delete(&Key::cluster(KIND, "a"), Precondition::Unconditional)
        .unwrap();
    store.compact(store.current_revision().unwrap());
    assert_eq!(
        snapshot_names(pump.next(WAIT).unwrap().unwrap()),
        [("b".to_owned(), true)],
        "the relist replaces what was known"
    );
    store
        .create(&Key::cluster(KIND, "c"), &policy_json("c"))
        .unwrap();
    assert!(matches!(
        pump.next(WAIT).unwrap().unwrap(),
        FelixMsg::Upserted { item, .. } if item.key.name == "c"
    ));
}

#[test]
fn the_thread_sends_to_the_owner_channel() {
    let store = MemoryStore::new(Duration::from_secs(60));
    store
        .create(&Key::cluster(KIND, "a"), &policy_json("a"))
        .unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    spawn(Arc::new(store.clone()), KIND, tx, tracing::Span::none()).unwrap();
    let first = rx.blocking_recv().unwrap();
    assert_eq!(snapshot_names(first), [("a".to_owned(), true)]);
    store
        .create(&Key::cluster(KIND, "b"), &policy_json("b"))
        .unwrap();
    assert!(matches!(
        rx.blocking_recv().unwrap(),
        FelixMsg::Upserted { item, .. } if item.key.name == "b"
    ));
}
