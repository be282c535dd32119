//! Root tests: the real `twill-cni` binary, run inside a "node" namespace
//! against a real node IPAM service (served in this process from the
//! `twill-ipam` library over its unix socket) and a SQLite datastore, wiring
//! real pod namespaces. A thread plays felix-rs by writing endpoint status
//! files, so the fail-closed wait is real.

#![allow(clippy::unwrap_used)] // Test setup failures should panic loudly.

mod common;

use std::sync::atomic::Ordering;

use common::{Rig, VERSIONS};
use serde_json::{Value, json};
use twill_integration::{TestNetns, require_root};

fn pod_ip(result: &Value) -> String {
    let address = result["ips"][0]["address"].as_str().unwrap();
    address.split('/').next().unwrap().to_string()
}

#[test]
fn every_verb_in_every_version_wires_and_unwires_a_real_pod() {
    require_root!();
    let rig = Rig::new();
    for (i, version) in VERSIONS.iter().enumerate() {
        let pod = TestNetns::new("pod").unwrap();
        let container = format!("c{i}");
        let conf = rig.conf(version, json!({}));

        let (result, ok) = rig.cni("ADD", &container, Some(pod.path()), &conf);
        assert!(ok, "{version} ADD: {result}");
        assert_eq!(result["cniVersion"], *version);
        assert_eq!(
            result["ips"][0].get("version").is_some(),
            !version.starts_with('1'),
            "{version}: ips[].version only before 1.0.0"
        );
        let ip = pod_ip(&result);
        let pod_addrs = pod.ip(&["-4", "addr", "show", "eth0"]).unwrap();
        assert!(pod_addrs.contains(&format!("{ip}/32")), "{pod_addrs}");
        let pod_link = pod.ip(&["link", "show", "eth0"]).unwrap();
        assert!(
            pod_link.contains("mtu 1400"),
            "MTU of the node's uplink: {pod_link}"
        );
        let pod_routes = pod.ip(&["route"]).unwrap();
        assert!(
            pod_routes.contains("default via 169.254.1.1 dev eth0"),
            "{pod_routes}"
        );
        assert!(rig.node_routes().contains(&ip), "{}", rig.node_routes());
        let ping = rig.node.exec("ping", &["-c", "1", "-W", "2", &ip]).unwrap();
        assert!(
            ping.status.success(),
            "node reaches pod {ip}: {}",
            String::from_utf8_lossy(&ping.stdout)
        );

        if *version != "0.3.1" {
            let mut check = conf.clone();
            check["prevResult"] = result.clone();
            let (out, ok) = rig.cni("CHECK", &container, Some(pod.path()), &check);
            assert!(ok, "{version} CHECK right after ADD: {out}");
        }
        if *version == "1.1.0" {
            let (out, ok) = rig.cni("STATUS", "", None, &conf);
            assert!(ok, "STATUS: {out}");
        }

        for round in 0..2 {
            let (out, ok) = rig.cni("DEL", &container, Some(pod.path()), &conf);
            assert!(ok, "{version} DEL #{round}: {out}");
        }
        rig.assert_clean(&format!("{version} after DEL"), &container);
    }
}

#[test]
fn spec_edge_cases_add_twice_check_drift_del_without_netns() {
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf("1.1.0", json!({}));
    let pod = TestNetns::new("pod").unwrap();

    let (result, ok) = rig.cni("ADD", "e1", Some(pod.path()), &conf);
    assert!(ok, "{result}");
    let (again, ok) = rig.cni("ADD", "e1", Some(pod.path()), &conf);
    assert!(!ok);
    assert_eq!(again["code"], 104, "{again}");
    assert!(rig.handle_held("e1"), "the first ADD's allocation stays");

    let ip = pod_ip(&result);
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    rig.node
        .ip(&["route", "del", &format!("{ip}/32"), "proto", "201"])
        .unwrap();
    let (drift, ok) = rig.cni("CHECK", "e1", Some(pod.path()), &check);
    assert!(!ok);
    assert_eq!(drift["code"], 105, "{drift}");
    assert!(
        drift["msg"].as_str().unwrap().contains("host route"),
        "{drift}"
    );

    pod.remove().unwrap();
    let (out, ok) = rig.cni("DEL", "e1", None, &conf);
    assert!(ok, "DEL after the netns is gone: {out}");
    let (out, ok) = rig.cni("DEL", "e1", None, &conf);
    assert!(ok, "repeated DEL: {out}");
    rig.assert_clean("after DEL without netns", "e1");
}

#[test]
fn add_fails_closed_without_felix_and_succeeds_with_it() {
    require_root!();
    let rig = Rig::new();
    let pod = TestNetns::new("pod").unwrap();
    let waiting = rig.conf("1.0.0", json!({"policy_setup_timeout": 0.3}));

    let (err, ok) = rig.cni("ADD", "f1", Some(pod.path()), &waiting);
    assert!(!ok);
    assert_eq!(err["code"], 103, "{err}");
    rig.assert_clean("after the policy timeout", "f1");
    let pod_links = pod.ip(&["-o", "link"]).unwrap();
    assert!(!pod_links.contains("eth0"), "{pod_links}");

    let (stop, felix) = rig.felix();
    let (result, ok) = rig.cni("ADD", "f1", Some(pod.path()), &waiting);
    stop.store(true, Ordering::Relaxed);
    felix.join().unwrap();
    assert!(ok, "{result}");
    let (out, ok) = rig.cni("DEL", "f1", Some(pod.path()), &waiting);
    assert!(ok, "{out}");
    rig.assert_clean("after DEL", "f1");
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_lists() {
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf("1.1.0", json!({}));
    let keep = TestNetns::new("pod").unwrap();
    let lose = TestNetns::new("pod").unwrap();
    assert!(rig.cni("ADD", "g1", Some(keep.path()), &conf).1);
    assert!(rig.cni("ADD", "g2", Some(lose.path()), &conf).1);

    let gc = rig.conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "g1", "ifname": "eth0"}]}),
    );
    let (out, ok) = rig.cni("GC", "", None, &gc);
    assert!(ok, "GC: {out}");
    assert!(rig.handle_held("g1"));
    assert!(!rig.handle_held("g2"));
    assert!(rig.cni("DEL", "g1", Some(keep.path()), &conf).1);
    rig.assert_clean("after GC and DEL", "g1");
}

#[test]
fn dual_stack_pods_get_a_128_and_reach_the_node_over_ipv6() {
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "twill-ipam", "assign_ipv4": true, "assign_ipv6": true}}),
    );
    let pod = TestNetns::new("pod").unwrap();
    let (result, ok) = rig.cni("ADD", "d1", Some(pod.path()), &conf);
    assert!(ok, "{result}");
    let v6 = result["ips"][1]["address"].as_str().unwrap().to_string();
    assert!(v6.ends_with("/128"), "{result}");
    assert_eq!(result["ips"][1]["gateway"], "fe80::ecee:eeff:feee:eeee");
    let routes = pod.ip(&["-6", "route"]).unwrap();
    assert!(
        routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{routes}"
    );
    let ip = v6.split('/').next().unwrap();
    // The host veth's link-local address finishes DAD within a few seconds.
    let ping = rig
        .node
        .exec("ping", &["-6", "-c", "1", "-w", "5", ip])
        .unwrap();
    assert!(
        ping.status.success(),
        "node reaches pod {ip}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    let (out, ok) = rig.cni("CHECK", "d1", Some(pod.path()), &check);
    assert!(ok, "CHECK: {out}");
    assert!(rig.cni("DEL", "d1", Some(pod.path()), &conf).1);
    rig.assert_clean("after DEL", "d1");
}

#[test]
fn an_ipam_refusal_is_reported_and_leaves_nothing_behind() {
    require_root!();
    let rig = Rig::new();
    let pod = TestNetns::new("pod").unwrap();
    let conf = rig.conf(
        "1.0.0",
        json!({"ipam": {"type": "twill-ipam", "ipv4_pools": ["no-such-pool"]}}),
    );
    let (err, ok) = rig.cni("ADD", "x1", Some(pod.path()), &conf);
    assert!(!ok);
    assert_eq!(err["code"], 100, "{err}");
    rig.assert_clean("after the refused ADD", "x1");
    let pod_links = pod.ip(&["-o", "link"]).unwrap();
    assert!(!pod_links.contains("eth0"), "{pod_links}");
}

#[test]
fn check_fails_when_prev_result_disagrees_with_what_add_made() {
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    let pod = TestNetns::new("pod").unwrap();
    let (result, ok) = rig.cni("ADD", "m1", Some(pod.path()), &conf);
    assert!(ok, "{result}");
    let other = json!({"address": "10.77.255.254/32", "gateway": "169.254.1.1", "interface": 1});

    // (case, prevResult.ips)
    let cases: &[(&str, Value)] = &[
        ("another address", json!([other.clone()])),
        ("an extra address", {
            let mut ips = result["ips"].clone();
            ips.as_array_mut().unwrap().push(other);
            ips
        }),
        ("no address", json!([])),
    ];
    for (case, ips) in cases {
        let mut check = conf.clone();
        check["prevResult"] = result.clone();
        check["prevResult"]["ips"] = ips.clone();
        let (err, ok) = rig.cni("CHECK", "m1", Some(pod.path()), &check);
        assert!(!ok, "{case}: CHECK must fail");
        assert_eq!(err["code"], 105, "{case}: {err}");
        assert!(
            err["msg"]
                .as_str()
                .unwrap()
                .contains("prevResult addresses"),
            "{case}: {err}"
        );
    }
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    let (out, ok) = rig.cni("CHECK", "m1", Some(pod.path()), &check);
    assert!(ok, "the unchanged prevResult still passes: {out}");
    let (err, ok) = rig.cni("CHECK", "m1", None, &check);
    assert!(!ok);
    assert_eq!(err["code"], 4, "CHECK without CNI_NETNS: {err}");

    assert!(rig.cni("DEL", "m1", Some(pod.path()), &conf).1);
    rig.assert_clean("after DEL", "m1");
}

#[test]
fn del_cleans_up_with_or_without_a_prev_result() {
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf("1.0.0", json!({}));
    /// DEL's prevResult, made from the ADD result.
    type PrevResult = fn(&Value) -> Option<Value>;
    let cases: &[(&str, PrevResult)] = &[
        ("no prevResult", |_| None),
        ("the ADD result, as libcni passes it", |r| Some(r.clone())),
        ("an empty result", |_| Some(json!({"cniVersion": "1.0.0"}))),
    ];
    for (i, (case, prev)) in cases.iter().enumerate() {
        let pod = TestNetns::new("pod").unwrap();
        let container = format!("p{i}");
        let (result, ok) = rig.cni("ADD", &container, Some(pod.path()), &conf);
        assert!(ok, "{case}: {result}");
        let mut del = conf.clone();
        if let Some(prev) = prev(&result) {
            del["prevResult"] = prev;
        }
        let (out, ok) = rig.cni("DEL", &container, Some(pod.path()), &del);
        assert!(ok, "{case}: DEL: {out}");
        rig.assert_clean(case, &container);
        let links = pod.ip(&["-o", "link"]).unwrap();
        assert!(
            !links.contains("eth0"),
            "{case}: pod interface left: {links}"
        );
    }
}

#[test]
fn gc_keeps_listed_attachments_and_what_is_not_this_nodes_attachment() {
    use twill_store::Datastore;
    require_root!();
    let rig = Rig::new();
    let conf = rig.conf("1.1.0", json!({}));
    let listed = TestNetns::new("pod").unwrap();
    let wrong_ifname = TestNetns::new("pod").unwrap();
    assert!(rig.cni("ADD", "k1", Some(listed.path()), &conf).1);
    assert!(rig.cni("ADD", "k2", Some(wrong_ifname.path()), &conf).1);

    // A pre-declared endpoint (no container yet) and another node's.
    let declared = twill_api::Object::new(
        "node1-k8s-later-eth0",
        Some("test"),
        twill_api::endpoint::WorkloadEndpointSpec::default(),
    );
    twill_cni::endpoint::put(&*rig.store, &declared, None).unwrap();
    let elsewhere = twill_api::Object::new(
        "node2-k8s-remote-eth0",
        Some("test"),
        twill_api::endpoint::WorkloadEndpointSpec {
            node: "node2".into(),
            container_id: "remote".into(),
            endpoint: "eth0".into(),
            ..Default::default()
        },
    );
    twill_cni::endpoint::put(&*rig.store, &elsewhere, None).unwrap();

    // An attachment is (containerID, ifname): k2 listed under another
    // interface name is stale.
    let gc = rig.conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [
            {"containerID": "k1", "ifname": "eth0"},
            {"containerID": "k2", "ifname": "net1"},
        ]}),
    );
    let (out, ok) = rig.cni("GC", "", None, &gc);
    assert!(ok, "GC: {out}");
    assert!(
        rig.handle_held("k1"),
        "the listed attachment keeps its address"
    );
    assert!(!rig.handle_held("k2"), "the unlisted one is released");
    let names: Vec<String> = rig
        .store
        .list("WorkloadEndpoint", None)
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.key.name)
        .collect();
    assert_eq!(
        names,
        [
            "node1-k8s-later-eth0",
            "node1-k8s-pod--k1-eth0",
            "node2-k8s-remote-eth0"
        ],
        "GC deletes only the stale endpoint of this node"
    );
    assert_eq!(
        rig.node_workload_links().lines().count(),
        1,
        "the stale veth is gone: {}",
        rig.node_workload_links()
    );

    let (out, ok) = rig.cni("GC", "", None, &gc);
    assert!(ok, "a repeated GC: {out}");
    assert!(rig.handle_held("k1"));
    assert!(rig.cni("DEL", "k1", Some(listed.path()), &conf).1);
    assert!(rig.cni("DEL", "k2", Some(wrong_ifname.path()), &conf).1);
    rig.assert_clean("after GC and DEL", "k1");
}
