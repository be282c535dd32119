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
