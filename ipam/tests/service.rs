//! The node IPAM service over its unix socket, in process.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Fixture;
use twill_ipam::client::{Client, ClientError};
use twill_ipam::service::{ServiceConfig, serve};
use twill_ipam::{AllocateRequest, GcConfig};

/// Runs the service on a background thread until the returned sender drops.
fn start(f: &Fixture, socket: &Path, node: &str) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ipam = Arc::new(f.ipam());
    let config = ServiceConfig {
        socket: socket.to_path_buf(),
        node: node.into(),
        gc_interval: None,
        gc: GcConfig::default(),
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(serve(ipam, config, async {
                let _ = stopped.await;
            }))
            .unwrap();
    });
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop
}

#[test]
fn the_service_allocates_releases_and_reports_over_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipam.sock");
    let f = Fixture::new();
    f.pool("default", "10.0.0.0/24", 26).node("n1", &[]);
    let _stop = start(&f, &socket, "n1");

    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private to its owner");

    let mut client = Client::connect(&socket, Duration::from_secs(5)).unwrap();
    let got = client
        .allocate(AllocateRequest::ipv4("k8s-pod-network.abc", "n1"))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].pool, "default");
    // Persisted before the answer.
    assert_eq!(f.handle("k8s-pod-network.abc").unwrap().total(), 1);

    let status = client.status().unwrap();
    assert_eq!(status.node, "n1");
    assert_eq!(status.blocks.len(), 1);
    assert_eq!(status.blocks[0].in_use, 1);

    assert_eq!(
        client.release_handle("k8s-pod-network.abc").unwrap(),
        vec![got[0].ip]
    );
    assert!(!client.release_ip(got[0].ip, None, None).unwrap());
}

#[test]
fn refusals_come_back_typed_and_naming_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipam.sock");
    let f = Fixture::new();
    f.pool("default", "10.0.0.0/24", 26).node("n1", &[]);
    let _stop = start(&f, &socket, "n1");
    let mut client = Client::connect(&socket, Duration::from_secs(5)).unwrap();
    let mut request = AllocateRequest::ipv4("h", "n1");
    request.ipv4_pools = vec!["missing".into()];
    match client.allocate(request) {
        Err(ClientError::Service(e)) => {
            assert_eq!(e.kind, "poolNotUsable");
            assert!(e.refusal);
            assert!(e.message.contains("ip pool missing"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The connection stays usable after an error.
    assert_eq!(
        client.status().unwrap().requests,
        1,
        "answered before the status"
    );
}

#[test]
fn concurrent_clients_on_one_node_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipam.sock");
    let f = Fixture::new();
    f.pool("default", "10.0.0.0/22", 26).node("n1", &[]);
    let _stop = start(&f, &socket, "n1");
    let ips: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|t| {
                let socket = &socket;
                s.spawn(move || {
                    let mut client = Client::connect(socket, Duration::from_secs(10)).unwrap();
                    (0..10)
                        .map(|i| {
                            client
                                .allocate(AllocateRequest::ipv4(format!("h{t}-{i}"), "n1"))
                                .unwrap()[0]
                                .ip
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let distinct: std::collections::HashSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), 100);
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}
