//! Where an allocation's time goes, in process and without the socket:
//! one allocation at a time, batches of 8, and 4 "nodes" (each with its own
//! store connection, as separate service processes have) writing at once.
//!
//! `cargo run --release -p twill-ipam --example store_profile -- [power-loss|process-crash]`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use twill_api::Object;
use twill_api::ippool::{IPAMConfigurationSpec, IPPoolSpec};
use twill_api::node::NodeSpec;
use twill_ipam::store;
use twill_ipam::{AllocateRequest, Ipam};
use twill_store::{Datastore, Durability, SqliteOptions, SqliteStore};

fn open(db: &Path, durability: Durability) -> Arc<dyn Datastore> {
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    Arc::new(SqliteStore::open_with(db, options).expect("open store"))
}

fn setup(db: &Path, durability: Durability, nodes: usize) {
    let store = open(db, durability);
    let pool = IPPoolSpec {
        cidr: "10.32.0.0/12".into(),
        block_size: Some(26),
        ..IPPoolSpec::default()
    };
    store::create(&*store, &Object::new("default", None, pool)).expect("pool");
    let config = IPAMConfigurationSpec {
        max_blocks_per_host: Some(500),
        ..IPAMConfigurationSpec::default()
    };
    store::create(&*store, &Object::new("default", None, config)).expect("config");
    for n in 0..nodes {
        store::create(
            &*store,
            &Object::new(format!("n{n}"), None, NodeSpec::default()),
        )
        .expect("node");
    }
}

fn run(ipam: &Ipam, node: &str, total: usize, batch: usize) {
    let mut i = 0;
    while i < total {
        let requests: Vec<AllocateRequest> = (i..i + batch)
            .map(|k| AllocateRequest::ipv4(format!("{node}-{k}"), node))
            .collect();
        if batch == 1 {
            ipam.allocate(&requests[0]).expect("allocate");
        } else {
            for r in ipam.allocate_many(&requests) {
                r.expect("allocate");
            }
        }
        i += batch;
    }
}

fn main() {
    let durability = match std::env::args().nth(1).as_deref() {
        Some("process-crash") => Durability::ProcessCrash,
        _ => Durability::PowerLoss,
    };
    const TOTAL: usize = 2000;
    for batch in [1, 8] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("datastore.db");
        setup(&db, durability, 1);
        let ipam = Ipam::new(open(&db, durability));
        let started = Instant::now();
        run(&ipam, "n0", TOTAL, batch);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "[{durability:?}] one node, batches of {batch}: {:.0} allocations/s",
            TOTAL as f64 / secs
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("datastore.db");
    setup(&db, durability, 4);
    let started = Instant::now();
    std::thread::scope(|s| {
        for n in 0..4 {
            let db = &db;
            s.spawn(move || {
                let ipam = Ipam::new(open(db, durability));
                run(&ipam, &format!("n{n}"), TOTAL, 8);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[{durability:?}] 4 nodes at once, batches of 8: {:.0} allocations/s per node",
        TOTAL as f64 / secs
    );
}
