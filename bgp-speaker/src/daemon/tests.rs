//! The owner task's rules, with an in-memory store, the recording kernel and
//! a router double that records what it is told.

use std::sync::Mutex as StdMutex;

use serde_json::json;
use twill_kernel::fake::RecordingKernel;
use twill_store::{Datastore, Key, MemoryStore, Precondition};

use super::*;
use crate::config::MapSecrets;

/// What the router double was told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Start(Identity),
    Neighbors(Vec<String>),
    Originated(Vec<String>),
    Shutdown,
}

#[derive(Default)]
struct Recorder(StdMutex<Vec<Call>>);

impl Recorder {
    fn push(&self, call: Call) {
        self.0.lock().expect("recorder lock").push(call);
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().expect("recorder lock").clone()
    }
}

struct FakeRouting(Arc<Recorder>);

impl Routing for FakeRouting {
    fn set_neighbors(&self, neighbors: &[PeerConfig]) {
        self.0.push(Call::Neighbors(
            neighbors.iter().map(|n| n.name.clone()).collect(),
        ));
    }

    fn set_originated(&self, originated: &[Advertised]) {
        self.0.push(Call::Originated(
            originated.iter().map(|a| a.prefix.to_string()).collect(),
        ));
    }

    fn status(&self) -> BoxFuture<'_, Vec<PeerRow>> {
        Box::pin(async {
            vec![PeerRow {
                address: "10.0.0.2".parse().expect("ip"),
                peer_type: "node-to-node mesh".into(),
                state: "Established".into(),
                since: 0,
                info: String::new(),
                prefixes_received: 1,
                prefixes_accepted: 1,
                prefixes_advertised: 1,
            }]
        })
    }

    fn stats(&self) -> BoxFuture<'_, SpeakerStats> {
        Box::pin(async { SpeakerStats::default() })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.0.push(Call::Shutdown);
        Box::pin(async {})
    }
}

struct FakeStarter(Arc<Recorder>);

impl StartRouting for FakeStarter {
    fn start(&self, identity: &Identity, listeners: Listeners) -> Arc<dyn Routing> {
        assert_eq!(
            (listeners.v4.is_some(), listeners.v6.is_some()),
            (identity.listen_v4.is_some(), identity.listen_v6.is_some()),
            "one bound listener per listen address"
        );
        self.0.push(Call::Start(*identity));
        Arc::new(FakeRouting(Arc::clone(&self.0)))
    }
}

fn put(store: &dyn Datastore, kind: &str, name: &str, body: Value) {
    let value = json!({"metadata": {"name": name}, "spec": body});
    upsert(store, &Key::cluster(kind, name), &value);
}

/// Creates `key` with `value`, or replaces it.
fn upsert(store: &dyn Datastore, key: &Key, value: &Value) {
    match store.get(key) {
        Ok(_) => drop(
            store
                .update(key, value, Precondition::Unconditional)
                .expect("update"),
        ),
        Err(_) => drop(store.create(key, value).expect("create")),
    }
}

async fn eventually_blackholes(kernel: &RecordingKernel, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blackholes(kernel).await != expected {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for blackholes {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    store: Arc<dyn Datastore>,
    recorder: Arc<Recorder>,
    kernel: Arc<RecordingKernel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn seed(store: &dyn Datastore) {
    put(
        store,
        "BGPConfiguration",
        "default",
        json!({"listenPort": 0}),
    );
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
        put(
            store,
            "Node",
            name,
            json!({"bgp": {"ipv4Address": format!("{ip}/24")}}),
        );
    }
    put(store, "IPPool", "default", json!({"cidr": "10.244.0.0/16"}));
    put(
        store,
        "BlockAffinity",
        "a-10-244-0-0-26",
        json!({"node": "a", "cidr": "10.244.0.0/26", "state": "confirmed", "deleted": "false"}),
    );
}

fn start(kernel: Arc<RecordingKernel>) -> Running {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new(Duration::from_millis(100)));
    seed(store.as_ref());
    let recorder = Arc::new(Recorder::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bgp.sock");
    let mut config = DaemonConfig::new("a");
    config.apply_delay = Duration::from_millis(20);
    config.status_socket = Some(socket.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        config,
        AsyncDatastore::new(Arc::clone(&store)),
        Some(Arc::clone(&kernel) as Arc<dyn Kernel>),
        Arc::new(MapSecrets::default()),
        Arc::new(FakeStarter(Arc::clone(&recorder))),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        store,
        recorder,
        kernel,
        stop: Some(stop),
        task,
        socket,
        _dir: dir,
    }
}

async fn blackholes(kernel: &RecordingKernel) -> Vec<String> {
    kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_AGGREGATE))
        .await
        .expect("list routes")
        .into_iter()
        .map(|r| r.destination.to_string())
        .collect()
}

impl Running {
    async fn stop(mut self) -> Vec<Call> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("join").expect("daemon ends cleanly");
        self.recorder.calls()
    }
}

#[tokio::test]
async fn synced_daemon_starts_the_router_and_programs_peers_prefixes_and_blackholes() {
    let daemon = start(Arc::new(RecordingKernel::new()));
    let recorder = Arc::clone(&daemon.recorder);
    eventually("the first apply", || recorder.calls().len() >= 3).await;
    let calls = recorder.calls();
    assert!(matches!(calls[0], Call::Start(Identity { asn: 64512, .. })));
    assert_eq!(calls[1], Call::Neighbors(vec!["Mesh_10_0_0_2".into()]));
    assert_eq!(calls[2], Call::Originated(vec!["10.244.0.0/26".into()]));
    let kernel = Arc::clone(&daemon.kernel);
    eventually_blackholes(&kernel, &["10.244.0.0/26"]).await;
    let calls = daemon.stop().await;
    assert_eq!(calls.last(), Some(&Call::Shutdown));
    assert_eq!(
        blackholes(&kernel).await,
        ["10.244.0.0/26"],
        "routes stay after shutdown"
    );
}

#[tokio::test]
async fn a_peer_change_updates_the_router_and_an_as_change_restarts_it() {
    let daemon = start(Arc::new(RecordingKernel::new()));
    let recorder = Arc::clone(&daemon.recorder);
    eventually("the first apply", || recorder.calls().len() >= 3).await;
    put(
        daemon.store.as_ref(),
        "BGPPeer",
        "tor",
        json!({"peerIP": "192.0.2.1", "asNumber": 65100}),
    );
    eventually("the new peering", || {
        recorder.calls().contains(&Call::Neighbors(vec![
            "Mesh_10_0_0_2".into(),
            "Global_192_0_2_1".into(),
        ]))
    })
    .await;
    assert_eq!(
        recorder
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Start(_)))
            .count(),
        1,
        "a peering change does not restart the router"
    );
    put(
        daemon.store.as_ref(),
        "BGPConfiguration",
        "default",
        json!({"listenPort": 0, "asNumber": 65000}),
    );
    eventually("the restart", || {
        recorder
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Start(Identity { asn: 65000, .. })))
    })
    .await;
    let calls = daemon.stop().await;
    let restart = calls
        .iter()
        .position(|c| matches!(c, Call::Start(Identity { asn: 65000, .. })))
        .expect("restarted");
    assert_eq!(
        calls[restart - 1],
        Call::Shutdown,
        "the old router stops first"
    );
}

#[tokio::test]
async fn stale_aggregate_routes_are_swept_and_other_routes_kept() {
    let kernel = Arc::new(RecordingKernel::new());
    kernel
        .add_route(
            Route::blackhole("10.99.0.0/26".parse().expect("net"))
                .protocol(RouteProto::TWILL_AGGREGATE),
        )
        .await
        .expect("seed stale route");
    kernel
        .add_route(
            Route::blackhole("10.98.0.0/26".parse().expect("net")).protocol(RouteProto::STATIC),
        )
        .await
        .expect("seed foreign route");
    let daemon = start(Arc::clone(&kernel));
    eventually_blackholes(&kernel, &["10.244.0.0/26"]).await;
    let foreign = kernel
        .list_routes(RouteFilter::protocol(RouteProto::STATIC))
        .await
        .expect("list");
    assert_eq!(foreign.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn status_socket_reports_identity_and_router_rows() {
    let daemon = start(Arc::new(RecordingKernel::new()));
    let recorder = Arc::clone(&daemon.recorder);
    eventually("the first apply", || recorder.calls().len() >= 3).await;
    let path = daemon.socket.clone();
    let status = tokio::task::spawn_blocking(move || status::query(&path))
        .await
        .expect("join")
        .expect("status");
    assert_eq!(status.node, "a");
    assert_eq!(status.asn, 64512);
    assert_eq!(status.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(status.peers.len(), 1);
    daemon.stop().await;
}

// ---- IPv6 -----------------------------------------------------------------

#[tokio::test]
async fn dual_stack_node_listens_on_both_families_and_gets_both_families_peers() {
    let daemon = start(Arc::new(RecordingKernel::new()));
    let recorder = Arc::clone(&daemon.recorder);
    eventually("the first apply", || recorder.calls().len() >= 3).await;
    for (name, v4, v6) in [("a", "10.0.0.1", "fd00::1"), ("b", "10.0.0.2", "fd00::2")] {
        put(
            daemon.store.as_ref(),
            "Node",
            name,
            json!({"bgp": {"ipv4Address": format!("{v4}/24"), "ipv6Address": format!("{v6}/64")}}),
        );
    }
    put(
        daemon.store.as_ref(),
        "IPPool",
        "default-ipv6",
        json!({"cidr": "fd00:10:244::/48"}),
    );
    put(
        daemon.store.as_ref(),
        "BlockAffinity",
        "a-v6",
        json!({"node": "a", "cidr": "fd00:10:244::/122", "state": "confirmed", "deleted": "false"}),
    );
    eventually("a restart with an IPv6 listener", || {
        recorder.calls().iter().any(|c| {
            matches!(c, Call::Start(Identity { listen_v4: Some(v4), listen_v6: Some(v6), .. })
                if v4.is_ipv4() && v6.is_ipv6())
        })
    })
    .await;
    eventually("both families' peers and prefixes", || {
        let calls = recorder.calls();
        calls.contains(&Call::Neighbors(vec![
            "Mesh_10_0_0_2".into(),
            "Mesh_fd00__2".into(),
        ])) && calls.contains(&Call::Originated(vec![
            "10.244.0.0/26".into(),
            "fd00:10:244::/122".into(),
        ]))
    })
    .await;
    let kernel = Arc::clone(&daemon.kernel);
    eventually_blackholes(&kernel, &["10.244.0.0/26", "fd00:10:244::/122"]).await;
    daemon.stop().await;
}

#[tokio::test]
async fn wildcard_ipv6_listener_leaves_the_ipv4_wildcard_free() {
    // Both wildcards on one port: the IPv6 socket must be IPv6-only.
    let probe = std::net::TcpListener::bind("0.0.0.0:0").expect("probe port");
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    let identity = Identity {
        asn: 64512,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        cluster_id: None,
        listen_v4: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        listen_v6: Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)),
    };
    let listeners = Listeners::bind(&identity).await.expect("both bind");
    let v6 = listeners.v6.expect("v6 listener");
    assert_eq!(v6.local_addr().expect("addr").port(), port);
    let client = tokio::net::TcpStream::connect(("::1", port))
        .await
        .expect("connect over IPv6");
    let (_, from) = v6.accept().await.expect("accepted on the IPv6 listener");
    assert!(from.is_ipv6() && from.ip().to_canonical().is_ipv6());
    drop(client);
}

fn routed(filter: &crate::config::Filter, prefix: &str) -> bool {
    use crate::rib::Attrs;
    use crate::rib::policy::{FilterContext, apply};
    let attrs = Arc::new(Attrs::local(Vec::new(), Vec::new()));
    let ctx = FilterContext {
        ibgp: false,
        from_peer: true,
    };
    apply(filter, &prefix.parse().expect("prefix"), &attrs, ctx).is_some()
}

#[test]
fn each_session_exchanges_routes_of_its_own_family_only() {
    fn object<S: twill_api::Spec>(name: &str, spec: Value) -> Object<S> {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("object")
    }
    let mut snapshot = Snapshot::default();
    snapshot.nodes.insert(
        "a".into(),
        object(
            "a",
            json!({"bgp": {"ipv4Address": "10.0.0.1/24", "ipv6Address": "fd00::1/64"}}),
        ),
    );
    // A filter that accepts everything of both families must not let a
    // session carry the other family.
    let accept = json!([{"action": "Accept"}]);
    snapshot.bgp_filters.insert(
        "all".into(),
        object(
            "all",
            json!({"importV4": accept, "importV6": accept, "exportV4": accept, "exportV6": accept}),
        ),
    );
    for (name, address) in [("tor4", "192.0.2.1"), ("tor6", "2001:db8::1")] {
        snapshot.bgp_peers.insert(
            name.into(),
            object(
                name,
                json!({"peerIP": address, "asNumber": 65100, "filters": ["all"]}),
            ),
        );
    }
    let computed =
        crate::config::desired(&snapshot, "a", &MapSecrets::default()).expect("a runs BGP");
    let [v4, v6] = &computed.desired.neighbors[..] else {
        panic!("two peerings: {:?}", computed.desired.neighbors);
    };
    assert_eq!(v4.import.rules.len(), 2, "the BGPFilter's rules are kept");
    for (peer, own, other) in [
        (v4, "10.244.0.0/26", "fd00:10:244::/122"),
        (v6, "fd00:10:244::/122", "10.244.0.0/26"),
    ] {
        let n = neighbor(peer);
        assert!(
            routed(&n.import, own) && routed(&n.export, own),
            "{}",
            peer.name
        );
        assert!(
            !routed(&n.import, other) && !routed(&n.export, other),
            "{} carries {other}",
            peer.name
        );
    }
}

#[tokio::test]
async fn family_kernel_lists_only_its_family_routes() {
    let kernel = Arc::new(RecordingKernel::new());
    for (destination, gateway) in [("10.99.0.0/24", "10.0.0.2"), ("fd00:99::/64", "fd00::2")] {
        kernel
            .add_route(
                Route::via(
                    destination.parse().expect("net"),
                    gateway.parse().expect("gateway"),
                )
                .protocol(RouteProto::TWILL_BGP),
            )
            .await
            .expect("seed route");
    }
    for (ipv6, expected) in [(false, "10.99.0.0/24"), (true, "fd00:99::/64")] {
        let family = FamilyKernel::new(Arc::clone(&kernel) as Arc<dyn Kernel>, ipv6);
        let listed: Vec<String> = family
            .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.destination.to_string())
            .collect();
        assert_eq!(listed, [expected], "ipv6 = {ipv6}");
    }
}

/// Creates or replaces a WorkloadEndpoint `namespace/name` on `node`.
fn put_workload(store: &dyn Datastore, namespace: &str, name: &str, node: &str, ip: &str) {
    let key = Key {
        kind: WorkloadEndpointSpec::STORE_KIND.to_string(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    };
    let value = json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"role": "router"}},
        "spec": {"node": node, "orchestrator": "k8s", "workload": name, "pod": name,
                 "endpoint": "eth0", "interfaceName": format!("cali{name}"),
                 "ipNetworks": [format!("{ip}/32")]},
    });
    upsert(store, &key, &value);
}

#[tokio::test]
async fn workload_endpoints_of_this_node_drive_local_workload_peerings() {
    let daemon = start(Arc::new(RecordingKernel::new()));
    let recorder = Arc::clone(&daemon.recorder);
    eventually("the first apply", || recorder.calls().len() >= 3).await;
    put(
        daemon.store.as_ref(),
        "BGPPeer",
        "routers",
        json!({"localWorkloadSelector": "role == 'router'", "asNumber": 65401}),
    );
    // One workload here, one on node b: only this node's is peered with.
    put_workload(daemon.store.as_ref(), "vm", "r1", "b", "10.65.1.5");
    put_workload(daemon.store.as_ref(), "vm", "r0", "a", "10.65.0.5");
    // In address order.
    let with_local = Call::Neighbors(vec![
        "Mesh_10_0_0_2".into(),
        "Local_Workload_10_65_0_5".into(),
    ]);
    eventually("the local workload peering", || {
        recorder.calls().contains(&with_local)
    })
    .await;
    let key = Key {
        kind: WorkloadEndpointSpec::STORE_KIND.to_string(),
        namespace: Some("vm".into()),
        name: "r0".into(),
    };
    daemon
        .store
        .delete(&key, Precondition::Unconditional)
        .expect("delete");
    eventually("the local workload peering removed", || {
        recorder.calls().last() == Some(&Call::Neighbors(vec!["Mesh_10_0_0_2".into()]))
    })
    .await;
    let calls = daemon.stop().await;
    assert!(
        calls
            .iter()
            .all(|c| !matches!(c, Call::Neighbors(n) if n.iter().any(|p| p.contains("10_65_1_5")))),
        "a workload of another node is never peered with: {calls:?}"
    );
}
