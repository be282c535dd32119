//! The routing side of the `felix-rs` binary on real nodes (root): local
//! pod routes, the VXLAN overlay (Always and CrossSubnet), nodes leaving,
//! restarts, and NAT outgoing, with real traffic (see [`vxlan_cluster`]).

#![allow(clippy::unwrap_used)]

mod vxlan_cluster;

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use twill_integration::TestNetns;
use twill_store::{Datastore, Key, Precondition};
use vxlan_cluster::*;

#[test]
fn vxlan_always_carries_pod_traffic_between_all_nodes_and_follows_node_changes() {
    twill_integration::require_root!();
    let mut c = Cluster::new(
        &[("n1", 0), ("n2", 0), ("n3", 1)],
        "{cidr: 10.65.0.0/16, vxlanMode: Always, blockSize: 26}",
    );
    for (pod, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n3")] {
        c.add_pod(pod, node);
    }
    let _servers: Vec<_> = c.pods.values().map(listen).collect();
    c.start_all();
    let counter = VxlanCounter::new(c.fabric.netns());
    let pairs = [("p1", "p2"), ("p1", "p3"), ("p2", "p3"), ("p3", "p1")];
    for (from, to) in pairs {
        c.eventually(&format!("{from} reaches {to}"), || c.reaches(from, to));
    }
    assert!(counter.packets() > 0, "pod traffic was encapsulated");
    let before = counter.packets();
    assert!(c.reaches("p1", "p2"));
    assert!(
        counter.packets() > before,
        "same-subnet traffic is encapsulated too"
    );

    // The tunnel address came from the pool through IPAM and is in the Node.
    let n1 = c.store.get(&Key::cluster("Node", "n1")).unwrap().value;
    let tunnel: Ipv4Addr = n1["spec"]["ipv4VXLANTunnelAddr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        "10.65.0.0/16"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&tunnel)
    );
    assert!(n1["spec"]["vxlanTunnelMACAddr"].is_string());
    let addr = c.nodes["n1"]
        .netns()
        .ip(&["-br", "addr", "show", "twill.vxlan"])
        .unwrap();
    assert!(addr.contains(&format!("{tunnel}/32")), "{addr}");
    // The pod MTU is published with the VXLAN overhead taken off.
    assert_eq!(
        std::fs::read_to_string(c.mtu_file("n1")).unwrap().trim(),
        "1450"
    );

    // felix-rs restarts: nothing flaps, an established stream survives.
    let p3_ip = c.pods["p3"].ip();
    let mut stream = c.pods["p1"]
        .run(move || TcpStream::connect_timeout(&(p3_ip, 8080).into(), WAIT))
        .unwrap()
        .unwrap();
    echo(&mut stream, b"before");
    let state = kernel_state(&c.nodes["n1"]);
    let mut monitor = c.nodes["n1"].netns().command("ip");
    let monitor_log = c.dir.path().join("monitor-n1");
    monitor
        .args(["monitor", "route", "neigh"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&monitor_log).unwrap())
        .stderr(Stdio::null());
    let monitor = c.nodes["n1"].netns().spawn_command(monitor).unwrap();
    let applies_before = std::fs::read_to_string(c.log("n1"))
        .unwrap()
        .matches("routes applied")
        .count();
    assert!(applies_before > 0, "the first run programmed routes");
    drop(c.daemons.remove("n1"));
    c.start("n1");
    let log = c.log("n1");
    c.eventually("the restarted daemon lists once", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("every watch has listed once")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(monitor);
    let events = std::fs::read_to_string(&monitor_log).unwrap();
    let ours: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("proto 201") || l.contains("PERMANENT") || l.contains("twill.vxlan"))
        // The kernel's own IPv6 link-local routes arrive late on fresh links.
        .filter(|l| !l.contains("proto kernel"))
        .collect();
    assert!(ours.is_empty(), "entries flapped on restart: {ours:?}");
    let applies = |c: &Cluster| {
        std::fs::read_to_string(c.log("n1"))
            .unwrap()
            .matches("routes applied")
            .count()
    };
    assert_eq!(applies(&c), applies_before, "the restart wrote routes");
    assert_eq!(kernel_state(&c.nodes["n1"]), state);
    echo(&mut stream, b"after the restart");

    // A new VNI from FelixConfiguration: every device is recreated with it.
    c.put(
        "apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {mtuIfacePattern: '^twt', vxlanVNI: 5000}
",
    );
    for node in ["n1", "n2", "n3"] {
        let n = c.nodes[node].clone();
        c.eventually(&format!("{node} uses VNI 5000"), || {
            n.netns()
                .ip(&["-d", "link", "show", "twill.vxlan"])
                .is_ok_and(|out| out.contains("vxlan id 5000"))
        });
    }
    c.eventually("p1 reaches p3 over the new VNI", || c.reaches("p1", "p3"));

    // n3 leaves: the others drop its VTEP and its block within a second.
    let n3_mac =
        c.store.get(&Key::cluster("Node", "n3")).unwrap().value["spec"]["vxlanTunnelMACAddr"]
            .as_str()
            .unwrap()
            .to_string();
    let (n3_block, _) = c.blocks["p3"].clone();
    let affinities: Vec<Key> = c
        .store
        .list("BlockAffinity", None)
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.value["spec"]["node"] == "n3")
        .map(|o| o.key)
        .collect();
    let started = Instant::now();
    c.store
        .delete(&Key::cluster("Node", "n3"), Precondition::Unconditional)
        .unwrap();
    for key in affinities {
        c.store.delete(&key, Precondition::Unconditional).unwrap();
    }
    for node in ["n1", "n2"] {
        let n = c.nodes[node].clone();
        c.eventually(&format!("{node} forgets n3"), || {
            let state = kernel_state(&n);
            !state.contains(&n3_mac) && !state.contains(&n3_block)
        });
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(c.reaches("p1", "p2"), "the others still reach each other");
    drop(counter);
}

#[test]
fn cross_subnet_encapsulates_only_between_subnets() {
    twill_integration::require_root!();
    let mut c = Cluster::new(
        &[("n1", 0), ("n2", 0), ("n3", 1)],
        "{cidr: 10.66.0.0/16, vxlanMode: CrossSubnet, blockSize: 26}",
    );
    for (pod, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n3")] {
        c.add_pod(pod, node);
    }
    let _servers: Vec<_> = c.pods.values().map(listen).collect();
    c.start_all();
    let counter = VxlanCounter::new(c.fabric.netns());
    for (from, to) in [("p1", "p2"), ("p1", "p3"), ("p3", "p2")] {
        c.eventually(&format!("{from} reaches {to}"), || c.reaches(from, to));
    }
    let routes = c.nodes["n1"]
        .netns()
        .ip(&["route", "show", "proto", "201"])
        .unwrap();
    let (p2_block, _) = &c.blocks["p2"];
    assert!(
        routes.contains(&format!("{p2_block} via {}", c.nodes["n2"].ip())),
        "same subnet is routed natively: {routes}"
    );
    // Closing handshakes of the probes above may still be crossing.
    std::thread::sleep(Duration::from_millis(500));
    let before = counter.packets();
    assert!(c.reaches("p1", "p2"));
    assert_eq!(
        counter.packets(),
        before,
        "same-subnet traffic is not encapsulated"
    );
    assert!(c.reaches("p1", "p3"));
    assert!(
        counter.packets() > before,
        "cross-subnet traffic is encapsulated"
    );
    drop(counter);
}

#[test]
fn ipv6_pools_get_their_own_overlay_beside_the_ipv4_one() {
    twill_integration::require_root!();
    let mut c = Cluster::new(
        &[("n1", 0), ("n2", 0)],
        "{cidr: 10.67.0.0/16, vxlanMode: Always, blockSize: 26}",
    );
    c.put(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-v6}
spec: {cidr: 'fd00:67::/48', vxlanMode: Always, blockSize: 122}
",
    );
    c.add_ipv6_underlay("2001:db8:67");
    let mut v6 = std::collections::BTreeMap::new();
    for (pod, node) in [("p1", "n1"), ("p2", "n2")] {
        c.add_pod(pod, node);
        v6.insert(pod, c.add_ipv6(pod, "pool-v6"));
    }
    let _servers: Vec<_> = c.pods.values().map(listen).collect();
    assert!(
        !c.pods["p1"]
            .probe_tcp(v6["p2"], 8080, PROBE)
            .unwrap()
            .is_reachable(),
        "nothing routes IPv6 between the nodes but felix-rs"
    );
    c.start_all();
    let outer_ipv6 = VxlanCounter::matching(c.fabric.netns(), "ip6 nexthdr udp udp dport 4789");
    let reaches_v6 = |from: &str, to: &str| {
        c.pods[from]
            .probe_tcp(v6[to], 8080, PROBE)
            .unwrap()
            .is_reachable()
    };
    for (from, to) in [("p1", "p2"), ("p2", "p1")] {
        c.eventually(&format!("{from} reaches {to} over IPv6"), || {
            reaches_v6(from, to)
        });
        c.eventually(&format!("{from} reaches {to} over IPv4"), || {
            c.reaches(from, to)
        });
    }
    assert!(
        outer_ipv6.packets() > 0,
        "IPv6 pod traffic was encapsulated in IPv6"
    );

    // The IPv6 tunnel address came from the IPv6 pool and is in the Node.
    let n1 = c.store.get(&Key::cluster("Node", "n1")).unwrap().value;
    let tunnel: std::net::Ipv6Addr = n1["spec"]["ipv6VXLANTunnelAddr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        "fd00:67::/48"
            .parse::<ipnet::Ipv6Net>()
            .unwrap()
            .contains(&tunnel)
    );
    assert_ne!(
        n1["spec"]["vxlanTunnelMACAddrV6"],
        n1["spec"]["vxlanTunnelMACAddr"]
    );
    let links = c.nodes["n1"].netns().ip(&["-br", "addr", "show"]).unwrap();
    assert!(links.contains(&format!("{tunnel}/128")), "{links}");
    assert!(links.contains("twill.vxlan "), "both overlays: {links}");
    // Pods get the smaller MTU of the two devices (1500 - 70).
    assert_eq!(
        std::fs::read_to_string(c.mtu_file("n1")).unwrap().trim(),
        "1430"
    );
    drop(outer_ipv6);
}

#[test]
fn nat_outgoing_lets_pods_reach_a_network_that_only_knows_the_node() {
    twill_integration::require_root!();
    let mut c = Cluster::new(
        &[("n1", 0)],
        "{cidr: 10.67.0.0/16, blockSize: 26, natOutgoing: false}",
    );
    c.add_pod("p1", "n1");
    // An external network: one veth from n1, no route back to pods.
    let external = TestNetns::new("ext").unwrap();
    let (inside, outside) = (
        twill_integration::names::link(),
        twill_integration::names::link(),
    );
    let node = c.nodes["n1"].clone();
    node.netns()
        .ip(&[
            "link",
            "add",
            &inside,
            "type",
            "veth",
            "peer",
            "name",
            &outside,
            "netns",
            external.name(),
        ])
        .unwrap();
    node.netns()
        .ip(&["addr", "add", "192.0.2.1/24", "dev", &inside])
        .unwrap();
    node.netns().ip(&["link", "set", &inside, "up"]).unwrap();
    external
        .ip(&["addr", "add", "192.0.2.2/24", "dev", &outside])
        .unwrap();
    external.ip(&["link", "set", &outside, "up"]).unwrap();
    let _server = external.listen_tcp(8080).unwrap();
    c.start_all();
    let target: IpAddr = "192.0.2.2".parse().unwrap();
    let reaches = |c: &Cluster| {
        c.pods["p1"]
            .probe_tcp(target, 8080, PROBE)
            .unwrap()
            .is_reachable()
    };
    c.eventually("felix-rs programs the pod", || {
        c.nodes["n1"]
            .netns()
            .ip(&["route", "show", "proto", "201"])
            .unwrap()
            .contains(c.pods["p1"].host_link())
    });
    assert!(!reaches(&c), "without NAT the reply has no way back");
    c.put(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.67.0.0/16, blockSize: 26, natOutgoing: true}
",
    );
    c.eventually("the pod reaches the external network", || reaches(&c));
    // Traffic to other pool addresses keeps its source: the rule excludes pools.
    let table = node
        .exec(
            "nft",
            &["list", "chain", "inet", "twill", "nat-postrouting"],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("masquerade"), "{text}");
    drop(external);
}

#[test]
fn local_pod_routes_are_owned_repaired_and_removed_with_their_flows() {
    twill_integration::require_root!();
    if !twill_integration::require_programs(&["conntrack"], "conntrack") {
        return;
    }
    let mut c = Cluster::new(&[("n1", 0)], "{cidr: 10.68.0.0/16, blockSize: 26}");
    let p1 = c.add_pod("p1", "n1");
    let p2 = c.add_pod("p2", "n1");
    let _server = listen(&p2);
    c.start_all();
    let node = c.nodes["n1"].clone();
    let route = |ip: IpAddr| {
        node.netns()
            .ip(&["route", "show", &format!("{ip}/32"), "proto", "201"])
            .unwrap()
    };
    c.eventually("felix-rs owns the pod routes", || {
        route(p2.ip()).contains(p2.host_link())
    });
    let neigh = node
        .netns()
        .ip(&["neigh", "show", "dev", p2.host_link()])
        .unwrap();
    assert!(
        neigh.contains("PERMANENT"),
        "static neighbour for the pod: {neigh}"
    );

    // Deleted and altered routes come back.
    node.netns()
        .ip(&["route", "del", &format!("{}/32", p2.ip())])
        .unwrap();
    c.eventually("a deleted route is repaired", || {
        route(p2.ip()).contains(p2.host_link())
    });
    node.netns()
        .ip(&[
            "route",
            "replace",
            &format!("{}/32", p2.ip()),
            "dev",
            p1.host_link(),
            "proto",
            "201",
        ])
        .unwrap();
    c.eventually("an altered route is repaired", || {
        route(p2.ip()).contains(p2.host_link())
    });
    assert!(c.reaches("p1", "p2"));

    // The endpoint goes: its route and its flows go after the grace period.
    let p2_ip = p2.ip();
    // The repair above moved p2's route back, which flushes p2's flows
    // right after: let that finish before opening the stream.
    std::thread::sleep(Duration::from_millis(500));
    let mut stream = p1
        .run(move || TcpStream::connect_timeout(&(p2_ip, 8080).into(), WAIT))
        .unwrap()
        .unwrap();
    echo(&mut stream, b"tracked");
    assert!(conntrack_flows(&node, p2.ip()) > 0, "the stream is tracked");
    c.store
        .delete(
            &Key::namespaced("WorkloadEndpoint", "ns1", "p2"),
            Precondition::Unconditional,
        )
        .unwrap();
    c.eventually("the gone endpoint's route is removed", || {
        route(p2.ip()).is_empty()
    });
    c.eventually("its flows are removed", || {
        conntrack_flows(&node, p2.ip()) == 0
    });
    assert!(
        route(p1.ip()).contains(p1.host_link()),
        "the other pod keeps its route"
    );
}
