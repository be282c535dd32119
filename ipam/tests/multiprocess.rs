//! Four `twill-ipamd` processes ("four nodes") share one embedded SQLite
//! datastore and hand out 2,000 addresses from one pool at once; one of
//! them is killed (SIGKILL) halfway through its share and restarted. No
//! address may be handed out twice, and after garbage collection nothing
//! may be left but the addresses whose allocation was answered.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fixture, LiveSet};
use twill_ipam::block::BlockExt;
use twill_ipam::client::{Client, ClientError};
use twill_ipam::{AllocateRequest, GarbageCollector, GcConfig, Problem};
use twill_store::SqliteStore;

const NODES: usize = 4;
const CLIENTS_PER_NODE: usize = 5;
const PER_CLIENT: usize = 100; // 4 × 5 × 100 = 2,000
const VICTIM: usize = 2;

fn spawn_daemon(db: &Path, socket: &Path, node: &str) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_twill-ipamd"))
        .args(["--node", node, "--durability", "process-crash"])
        .arg("--datastore")
        .arg(db)
        .arg("--socket")
        .arg(socket)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Client::connect(socket, Duration::from_secs(1)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{node}'s service did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

struct Outcome {
    /// Answered allocations: address → handle.
    held: Mutex<HashMap<IpAddr, String>>,
    duplicates: Mutex<Vec<String>>,
    /// Handles whose request got no answer (the service died under it).
    unanswered: Mutex<Vec<String>>,
}

fn client_loop(socket: &Path, node: &str, client_id: usize, out: &Outcome, done: &AtomicUsize) {
    let mut client: Option<Client> = None;
    let mut i = 0;
    while i < PER_CLIENT {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(socket, Duration::from_secs(30)) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let handle = format!("{node}-c{client_id}-{i}");
        match c.allocate(AllocateRequest::ipv4(handle.clone(), node)) {
            Ok(ips) => {
                let mut held = out.held.lock().unwrap();
                for ip in ips {
                    if let Some(other) = held.insert(ip.ip, handle.clone()) {
                        out.duplicates
                            .lock()
                            .unwrap()
                            .push(format!("{} to {handle} and {other}", ip.ip));
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Err(ClientError::Service(e)) => panic!("{handle}: {}", e.message),
            Err(_) => {
                // The service died mid-request: like a failed CNI ADD, the
                // runtime retries with a new container (a new handle).
                out.unanswered.lock().unwrap().push(handle);
                client = None;
                i += 1;
            }
        }
    }
}

#[test]
fn four_service_processes_hand_out_2000_addresses_with_one_killed_halfway() {
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("datastore.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let f = Fixture::over(store.clone());
    f.pool("default", "10.16.0.0/16", 26);
    for n in 0..NODES {
        f.node(&format!("n{n}"), &[]);
    }
    let sockets: Vec<PathBuf> = (0..NODES)
        .map(|n| dir.path().join(format!("n{n}.sock")))
        .collect();
    let mut daemons: Vec<Child> = (0..NODES)
        .map(|n| spawn_daemon(&db, &sockets[n], &format!("n{n}")))
        .collect();

    let out = Outcome {
        held: Mutex::default(),
        duplicates: Mutex::default(),
        unanswered: Mutex::default(),
    };
    let victim_done = AtomicUsize::new(0);
    let others_done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for (n, socket) in sockets.iter().enumerate() {
            for c in 0..CLIENTS_PER_NODE {
                let out = &out;
                let done = if n == VICTIM {
                    &victim_done
                } else {
                    &others_done
                };
                s.spawn(move || client_loop(socket, &format!("n{n}"), c, out, done));
            }
        }
        // Halfway through the victim's share: kill it, then restart it.
        let half = CLIENTS_PER_NODE * PER_CLIENT / 2;
        while victim_done.load(Ordering::Relaxed) < half {
            std::thread::sleep(Duration::from_millis(1));
        }
        daemons[VICTIM].kill().unwrap();
        daemons[VICTIM].wait().unwrap();
        daemons[VICTIM] = spawn_daemon(&db, &sockets[VICTIM], &format!("n{VICTIM}"));
    });
    let elapsed = started.elapsed();
    for mut d in daemons {
        d.kill().unwrap();
        d.wait().unwrap();
    }

    let duplicates = out.duplicates.lock().unwrap();
    assert!(duplicates.is_empty(), "handed out twice: {duplicates:?}");
    let held = out.held.lock().unwrap();
    let unanswered = out.unanswered.lock().unwrap();
    assert_eq!(
        held.len() + unanswered.len(),
        NODES * CLIENTS_PER_NODE * PER_CLIENT
    );
    eprintln!(
        "{} answered, {} unanswered (killed mid-request), in {elapsed:?}",
        held.len(),
        unanswered.len()
    );

    // Right after the kill: every address has a handle; a handle may only
    // count too much.
    for problem in f.problems() {
        assert!(
            matches!(problem, Problem::HandleCountMismatch { recorded, actual, .. } if recorded > actual),
            "{problem}"
        );
    }

    // Collect garbage: the owners of answered allocations are live.
    let live = LiveSet::default();
    for handle in held.values() {
        live.add(handle);
    }
    let ipam = f.ipam();
    let mut gc = GarbageCollector::new(GcConfig {
        grace: Duration::ZERO,
    });
    gc.run(&ipam, &live).unwrap();
    f.clock.advance(Duration::from_secs(60));
    gc.run(&ipam, &live).unwrap();
    assert!(f.problems().is_empty(), "{:?}", f.problems());

    let mut in_store: HashMap<IpAddr, String> = HashMap::new();
    for b in f.blocks() {
        let net = b.net();
        for slot in b.slots().iter().filter(|s| !s.released()) {
            in_store.insert(
                twill_ipam::block::ip_at(&net, slot.ordinal),
                slot.handle().unwrap().to_string(),
            );
        }
    }
    assert_eq!(&in_store, &*held, "exactly the answered allocations remain");
    let unanswered: HashSet<&String> = unanswered.iter().collect();
    assert!(in_store.values().all(|h| !unanswered.contains(h)));
}
