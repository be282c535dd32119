//! Specification of the recording fake.

use super::*;
use crate::link::{BridgeSpec, VethSpec, VxlanSpec};
use crate::op::KernelExt;
use crate::route::{NextHop, RouteFilter, RouteProto};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("valid prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid ip")
}

/// A fresh kernel with the veth pair `tw0a`/`tw0b` on the host.
fn kernel_with_veth() -> RecordingKernel {
    let kernel = RecordingKernel::new();
    kernel
        .create_veth(VethSpec::new("tw0a", "tw0b"))
        .wait()
        .expect("veth created");
    kernel
}

fn pod_netns(kernel: &RecordingKernel) -> NetnsPath {
    let ns = NetnsPath::from_path("/var/run/netns/cni-1234");
    kernel.add_netns(&ns);
    ns
}

#[test]
fn ops_are_recorded_in_order_with_their_namespace() {
    let kernel = RecordingKernel::new();
    let ns = pod_netns(&kernel);
    kernel
        .create_veth(VethSpec::new("tw0a", "eth0").peer_in(ns.clone()))
        .wait()
        .expect("created");
    let pod = kernel.enter(&ns).expect("namespace exists");
    pod.set_link_up("eth0", true).wait().expect("up");
    let ops = kernel.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].netns, None);
    assert_eq!(ops[0].op.name(), "create_veth");
    assert_eq!(ops[1].netns, Some(ns));
    assert_eq!(
        ops[1].op,
        KernelOp::SetLinkUp {
            name: "eth0".into(),
            up: true
        }
    );
}

#[test]
fn veth_peer_is_created_in_the_target_namespace() {
    let kernel = RecordingKernel::new();
    let ns = pod_netns(&kernel);
    kernel
        .create_veth(VethSpec::new("tw0a", "eth0").peer_in(ns.clone()).mtu(1450))
        .wait()
        .expect("created");
    let pod = kernel.enter(&ns).expect("namespace exists");
    let eth0 = pod.get_link("eth0").wait().expect("peer in pod");
    assert_eq!(
        (eth0.kind.as_deref(), eth0.mtu, eth0.up),
        (Some("veth"), 1450, false)
    );
    assert!(
        kernel
            .get_link("eth0")
            .wait()
            .expect_err("not on host")
            .is_not_found()
    );
}

#[test]
fn creating_an_existing_interface_is_already_exists_and_deleting_a_missing_one_not_found() {
    let kernel = kernel_with_veth();
    let again = kernel
        .create_veth(VethSpec::new("tw0a", "tw0c"))
        .wait()
        .expect_err("exists");
    assert!(again.is_already_exists());
    assert_eq!(
        again.object(),
        Some(&KernelObject::Interface("tw0a".into()))
    );
    assert!(
        kernel
            .delete_link("tw9")
            .wait()
            .expect_err("missing")
            .is_not_found()
    );
}

#[test]
fn deleting_one_veth_end_removes_its_peer_and_everything_on_it() {
    let kernel = RecordingKernel::new();
    let ns = pod_netns(&kernel);
    kernel
        .create_veth(VethSpec::new("tw0a", "eth0").peer_in(ns.clone()))
        .wait()
        .expect("created");
    kernel
        .add_address("tw0a", net("169.254.1.1/32"))
        .wait()
        .expect("address");
    kernel
        .add_route(Route::to_device(net("10.65.0.5/32"), "tw0a").protocol(RouteProto::TWILL_LOCAL))
        .wait()
        .expect("route");
    kernel
        .add_neighbour(Neighbour {
            link: "tw0a".into(),
            ip: ip("10.65.0.5"),
            mac: "ee:ee:ee:ee:ee:01".parse().expect("mac"),
        })
        .wait()
        .expect("neighbour");
    let pod = kernel.enter(&ns).expect("namespace exists");
    pod.delete_link("eth0").wait().expect("deleted");
    assert!(
        kernel
            .get_link("tw0a")
            .wait()
            .expect_err("peer gone")
            .is_not_found()
    );
    assert!(kernel.list_addresses(None).wait().expect("list").is_empty());
    assert!(
        kernel
            .list_routes(RouteFilter::default())
            .wait()
            .expect("list")
            .is_empty()
    );
    assert!(
        kernel
            .list_neighbours(None)
            .wait()
            .expect("list")
            .is_empty()
    );
}

#[test]
fn moving_an_interface_brings_it_down_and_drops_its_addresses() {
    let kernel = RecordingKernel::new();
    let ns = pod_netns(&kernel);
    kernel
        .create_veth(VethSpec::new("tw0a", "tw0b"))
        .wait()
        .expect("created");
    kernel.set_link_up("tw0b", true).wait().expect("up");
    kernel
        .add_address("tw0b", net("10.65.0.5/32"))
        .wait()
        .expect("address");
    kernel.move_link("tw0b", &ns).wait().expect("moved");
    let pod = kernel.enter(&ns).expect("namespace exists");
    assert!(!pod.get_link("tw0b").wait().expect("moved in").up);
    assert!(kernel.list_addresses(None).wait().expect("list").is_empty());
    pod.rename_link("tw0b", "eth0").wait().expect("renamed");
    // The host end still knows where its peer went: deleting it removes eth0.
    kernel.delete_link("tw0a").wait().expect("deleted");
    assert!(
        pod.get_link("eth0")
            .wait()
            .expect_err("peer gone")
            .is_not_found()
    );
}

#[test]
fn renaming_onto_an_existing_name_fails_and_rename_carries_state() {
    let kernel = kernel_with_veth();
    assert!(
        kernel
            .rename_link("tw0a", "tw0b")
            .wait()
            .expect_err("taken")
            .is_already_exists()
    );
    kernel
        .add_address("tw0a", net("10.0.0.1/24"))
        .wait()
        .expect("address");
    kernel.rename_link("tw0a", "tw0c").wait().expect("renamed");
    let addrs = kernel.list_addresses(Some("tw0c")).wait().expect("list");
    assert_eq!(
        addrs,
        vec![AddressEntry {
            link: "tw0c".into(),
            addr: net("10.0.0.1/24")
        }]
    );
}

#[test]
fn link_attributes_read_back_after_writes() {
    let kernel = RecordingKernel::new();
    kernel
        .create_bridge(BridgeSpec {
            name: "twbr0".into(),
            mtu: None,
        })
        .wait()
        .expect("bridge");
    kernel
        .create_veth(VethSpec::new("tw0a", "tw0b"))
        .wait()
        .expect("veth");
    let mac: MacAddr = "02:00:00:00:00:aa".parse().expect("mac");
    kernel.set_link_mtu("tw0a", 9000).wait().expect("mtu");
    kernel.set_link_mac("tw0a", mac).wait().expect("mac");
    kernel
        .set_link_controller("tw0a", Some("twbr0"))
        .wait()
        .expect("port");
    let link = kernel.get_link("tw0a").wait().expect("exists");
    assert_eq!(
        (link.mtu, link.mac, link.controller.as_deref()),
        (9000, Some(mac), Some("twbr0"))
    );
    let err = kernel
        .set_link_controller("tw0b", Some("tw0a"))
        .wait()
        .expect_err("not a bridge");
    assert!(matches!(err, KernelError::Invalid { .. }));
    let names: Vec<String> = kernel
        .list_links(Some("tw0"))
        .wait()
        .expect("list")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["tw0a", "tw0b"]);
}

#[test]
fn vxlan_needs_its_underlay_and_takes_fdb_entries() {
    let kernel = RecordingKernel::new();
    let mut spec = VxlanSpec::new("twill.vxlan", 4096, 4789);
    spec.underlay = Some("eth9".into());
    assert!(
        kernel
            .create_vxlan(spec.clone())
            .wait()
            .expect_err("no eth9")
            .is_not_found()
    );
    spec.underlay = None;
    kernel.create_vxlan(spec).wait().expect("created");
    let entry = FdbEntry {
        link: "twill.vxlan".into(),
        mac: "66:77:88:99:aa:bb".parse().expect("mac"),
        dst: Some(ip("192.0.2.9")),
    };
    kernel.add_fdb(entry.clone()).wait().expect("fdb");
    kernel
        .add_fdb(entry.clone())
        .wait()
        .expect("replace is idempotent");
    assert_eq!(
        kernel.list_fdb(Some("twill.vxlan")).wait().expect("list"),
        vec![entry.clone()]
    );
    kernel.delete_fdb(entry.clone()).wait().expect("deleted");
    assert!(
        kernel
            .delete_fdb(entry)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[test]
fn routes_follow_kernel_key_rules() {
    let kernel = kernel_with_veth();
    let pod = Route::to_device(net("10.65.0.5/32"), "tw0a").protocol(RouteProto::TWILL_LOCAL);
    kernel.add_route(pod.clone()).wait().expect("added");
    assert!(
        kernel
            .add_route(pod.clone())
            .wait()
            .expect_err("same key")
            .is_already_exists()
    );
    kernel
        .replace_route(pod.clone().metric(0))
        .wait()
        .expect("replace same key");
    let other_metric = pod.clone().metric(10);
    kernel
        .add_route(other_metric.clone())
        .wait()
        .expect("different metric is a different route");
    let err = kernel
        .add_route(Route::to_device(net("10.65.0.6/32"), "tw9"))
        .wait()
        .expect_err("no device");
    assert_eq!(err.object(), Some(&KernelObject::Interface("tw9".into())));
    let bad = Route {
        next_hops: vec![NextHop::dev("tw0a")],
        ..Route::blackhole(net("10.65.0.0/26"))
    };
    assert!(matches!(
        kernel
            .add_route(bad)
            .wait()
            .expect_err("blackhole with hop"),
        KernelError::Invalid { .. }
    ));
    kernel
        .delete_route(other_metric.key())
        .wait()
        .expect("deleted by key");
    let mut wrong_proto = pod.key();
    wrong_proto.protocol = Some(RouteProto::TWILL_BGP);
    assert!(
        kernel
            .delete_route(wrong_proto)
            .wait()
            .expect_err("protocol must match")
            .is_not_found()
    );
    assert_eq!(
        kernel
            .list_routes(RouteFilter::default())
            .wait()
            .expect("list"),
        vec![pod.normalized()]
    );
}

#[test]
fn route_listing_filters_by_protocol() {
    let kernel = RecordingKernel::new();
    let block = Route::blackhole(net("10.65.0.0/26")).protocol(RouteProto::TWILL_AGGREGATE);
    let learned = Route::multipath(
        net("10.66.0.0/26"),
        vec![
            NextHop::via(ip("10.0.0.1")),
            NextHop::via(ip("10.0.0.2")).weight(2),
        ],
    )
    .protocol(RouteProto::TWILL_BGP);
    let v6 = Route::blackhole(net("fd00:65::/122")).protocol(RouteProto::TWILL_AGGREGATE);
    for route in [&block, &learned, &v6] {
        kernel.add_route(route.clone()).wait().expect("added");
    }
    let bgp = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("list");
    assert_eq!(bgp, vec![learned]);
    let aggregates = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_AGGREGATE))
        .wait()
        .expect("list");
    assert_eq!(aggregates, vec![block, v6.normalized()]);
}

#[test]
fn neighbours_are_replaced_not_duplicated() {
    let kernel = kernel_with_veth();
    let mut entry = Neighbour {
        link: "tw0a".into(),
        ip: ip("10.65.0.5"),
        mac: "ee:ee:ee:ee:ee:01".parse().expect("mac"),
    };
    kernel.add_neighbour(entry.clone()).wait().expect("added");
    entry.mac = "ee:ee:ee:ee:ee:02".parse().expect("mac");
    kernel
        .add_neighbour(entry.clone())
        .wait()
        .expect("replaced");
    assert_eq!(
        kernel.list_neighbours(Some("tw0a")).wait().expect("list"),
        vec![entry]
    );
    kernel
        .delete_neighbour("tw0a", ip("10.65.0.5"))
        .wait()
        .expect("deleted");
    assert!(
        kernel
            .delete_neighbour("tw0a", ip("10.65.0.5"))
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[test]
fn sysctls_are_per_namespace_and_per_interface_keys_need_the_interface() {
    let kernel = RecordingKernel::new();
    let ns = pod_netns(&kernel);
    let forward = SysctlKey::new("net/ipv4/ip_forward").expect("key");
    kernel.seed_sysctl(&forward, "0");
    kernel.write_sysctl(&forward, "1").wait().expect("written");
    let pod = kernel.enter(&ns).expect("namespace exists");
    assert!(
        pod.read_sysctl(&forward)
            .wait()
            .expect_err("not seeded in pod")
            .is_not_found()
    );
    assert_eq!(kernel.read_sysctl(&forward).wait().expect("read"), "1");
    let proxy_arp = SysctlKey::interface("ipv4", "conf", "tw0a", "proxy_arp").expect("key");
    assert!(
        kernel
            .write_sysctl(&proxy_arp, "1")
            .wait()
            .expect_err("no tw0a")
            .is_not_found()
    );
    kernel
        .create_veth(VethSpec::new("tw0a", "tw0b"))
        .wait()
        .expect("veth");
    kernel
        .write_sysctl(&proxy_arp, "1")
        .wait()
        .expect("written");
    kernel.delete_link("tw0a").wait().expect("deleted");
    assert!(
        kernel
            .read_sysctl(&proxy_arp)
            .wait()
            .expect_err("gone with tw0a")
            .is_not_found()
    );
}

#[test]
fn nft_scripts_apply_atomically_and_read_back() {
    let kernel = RecordingKernel::new();
    let script = "add table inet twill\nadd chain inet twill input { type filter hook input priority 0; policy accept; }\n\
                  add rule inet twill input accept comment \"twl:1\"";
    kernel.nft_apply(script).wait().expect("applied");
    let err = kernel
        .nft_apply("add rule inet twill input drop comment \"twl:2\"\nbogus line here")
        .wait()
        .expect_err("bad");
    assert!(matches!(err, KernelError::Nft { .. }));
    let table = kernel
        .nft_read_table("inet", "twill")
        .wait()
        .expect("table");
    assert_eq!(table.rule_comments("input"), vec![Some("twl:1")]);
    assert_eq!(
        kernel.nft_list_tables().wait().expect("list"),
        vec![NftTableId::new("inet", "twill")]
    );
    assert!(
        kernel
            .nft_table_text("inet", "twill")
            .expect("text")
            .contains("comment \"twl:1\"")
    );
    kernel
        .nft_delete_table("inet", "twill")
        .wait()
        .expect("deleted");
    assert!(
        kernel
            .nft_read_table("inet", "twill")
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[test]
fn injected_failures_fail_the_chosen_op_and_change_nothing() {
    let kernel = kernel_with_veth();
    kernel.fail_once(
        |op| matches!(op, KernelOp::AddRoute(_)),
        KernelError::Injected {
            reason: "route table full".into(),
        },
    );
    let route = Route::to_device(net("10.65.0.5/32"), "tw0a");
    let err = kernel
        .add_route(route.clone())
        .wait()
        .expect_err("injected");
    assert_eq!(
        err,
        KernelError::Injected {
            reason: "route table full".into()
        }
    );
    assert!(
        kernel
            .list_routes(RouteFilter::default())
            .wait()
            .expect("list")
            .is_empty()
    );
    kernel
        .add_route(route)
        .wait()
        .expect("fail_once fails once");
    kernel.fail_when(
        |op| op.name() == "delete_link",
        KernelError::Injected {
            reason: "busy".into(),
        },
    );
    assert!(kernel.delete_link("tw0a").wait().is_err());
    assert!(kernel.delete_link("tw0a").wait().is_err());
    kernel.clear_failures();
    kernel.delete_link("tw0a").wait().expect("deleted");
    let failed: Vec<bool> = kernel.ops().iter().map(|r| r.failed).collect();
    assert_eq!(failed, vec![false, true, false, false, true, true, false]);
}

#[test]
fn namespaces_are_created_entered_and_deleted_with_their_veths() {
    let kernel = RecordingKernel::new();
    kernel.create_netns("twt-pod").wait().expect("created");
    assert!(
        kernel
            .create_netns("twt-pod")
            .wait()
            .expect_err("exists")
            .is_already_exists()
    );
    let ns = NetnsPath::named("twt-pod");
    let pod = kernel.enter(&ns).expect("exists");
    assert!(!pod.get_link("lo").wait().expect("lo").up);
    kernel
        .create_veth(VethSpec::new("tw0a", "eth0").peer_in(ns.clone()))
        .wait()
        .expect("veth");
    kernel.delete_netns("twt-pod").wait().expect("deleted");
    assert!(
        kernel
            .get_link("tw0a")
            .wait()
            .expect_err("peer died with namespace")
            .is_not_found()
    );
    assert!(kernel.enter(&ns).is_err());
    assert!(
        kernel
            .delete_netns("twt-pod")
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[tokio::test]
async fn pending_results_can_be_awaited() {
    let kernel = RecordingKernel::new();
    kernel
        .create_bridge(BridgeSpec {
            name: "twbr0".into(),
            mtu: Some(1400),
        })
        .await
        .expect("created");
    assert_eq!(kernel.get_link("twbr0").await.expect("exists").mtu, 1400);
    let writes = kernel.writes();
    assert_eq!(
        writes,
        vec![KernelOp::CreateBridge(BridgeSpec {
            name: "twbr0".into(),
            mtu: Some(1400)
        })]
    );
}

#[test]
fn convenience_methods_build_the_documented_ops() {
    let kernel = RecordingKernel::new();
    let ns = NetnsPath::named("twt-x");
    let mac: MacAddr = "02:00:00:00:00:01".parse().expect("mac");
    let key = SysctlKey::new("net/ipv4/ip_forward").expect("key");
    // Results do not matter here (most fail: nothing exists); the ops do.
    let _ = kernel.move_link("tw0a", &ns).wait();
    let _ = kernel.rename_link("tw0a", "eth0").wait();
    let _ = kernel.set_link_mac("tw0a", mac).wait();
    let _ = kernel.set_link_controller("tw0a", None).wait();
    let _ = kernel.add_address("tw0a", net("10.0.0.1/24")).wait();
    let _ = kernel.delete_neighbour("tw0a", ip("10.0.0.2")).wait();
    let _ = kernel.write_sysctl(&key, "1").wait();
    let _ = kernel.nft_read_table("inet", "twill").wait();
    let _ = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait();
    let expected = vec![
        KernelOp::MoveLink {
            name: "tw0a".into(),
            netns: ns,
        },
        KernelOp::RenameLink {
            name: "tw0a".into(),
            new_name: "eth0".into(),
        },
        KernelOp::SetLinkMac {
            name: "tw0a".into(),
            mac,
        },
        KernelOp::SetLinkController {
            name: "tw0a".into(),
            controller: None,
        },
        KernelOp::AddAddress(AddressEntry {
            link: "tw0a".into(),
            addr: net("10.0.0.1/24"),
        }),
        KernelOp::DeleteNeighbour {
            link: "tw0a".into(),
            ip: ip("10.0.0.2"),
        },
        KernelOp::WriteSysctl {
            key,
            value: "1".into(),
        },
        KernelOp::NftReadTable(NftTableId::new("inet", "twill")),
        KernelOp::ListRoutes(RouteFilter {
            protocol: Some(RouteProto::TWILL_BGP),
            ..RouteFilter::default()
        }),
    ];
    let got: Vec<KernelOp> = kernel.ops().into_iter().map(|r| r.op).collect();
    assert_eq!(got, expected);
    assert_eq!(kernel.writes().len(), 7, "reads are left out of writes()");
}

#[test]
fn route_batch_applies_each_change_alone_and_lists_the_failures() {
    let kernel = kernel_with_veth();
    let bgp = |dest: &str| Route::to_device(net(dest), "tw0a").protocol(RouteProto::TWILL_BGP);
    kernel
        .add_route(bgp("10.9.0.0/24"))
        .wait()
        .expect("route added");
    // Injected failures for single route ops hit the batched changes too.
    kernel.fail_once(
        |op| matches!(op, KernelOp::ReplaceRoute(r) if r.destination == net("10.3.0.0/24")),
        KernelError::Injected {
            reason: "full table".into(),
        },
    );
    let changes = vec![
        RouteChange::Replace(bgp("10.1.0.0/24")),
        RouteChange::Replace(Route::to_device(net("10.2.0.0/24"), "nosuch")),
        RouteChange::Replace(bgp("10.3.0.0/24")),
        RouteChange::Delete(bgp("10.9.0.0/24").key()),
        RouteChange::Delete(bgp("10.8.0.0/24").key()),
    ];
    let report = kernel.apply_routes(changes).wait().expect("batch answered");
    assert_eq!(report.applied, 2);
    let failed: Vec<(usize, bool)> = report
        .failed
        .iter()
        .map(|f| (f.index, f.error.is_not_found()))
        .collect();
    assert_eq!(failed, [(1, true), (2, false), (4, true)]);
    let left: Vec<ipnet::IpNet> = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("listed")
        .into_iter()
        .map(|r| r.destination)
        .collect();
    assert_eq!(left, [net("10.1.0.0/24")]);
    assert_eq!(
        kernel.writes().last().map(KernelOp::name),
        Some("apply_routes")
    );
}

#[test]
fn address_and_link_changes_notify_the_watches_of_their_namespace() {
    use futures::FutureExt;
    let kernel = kernel_with_veth();
    let pod = pod_netns(&kernel);
    let mut host = kernel.watch_addresses().expect("watch");
    let mut in_pod = kernel
        .enter(&pod)
        .expect("the fake does this")
        .watch_addresses()
        .expect("watch");
    let noticed = |changes: &mut AddressChanges| changes.changed().now_or_never().is_some();
    assert!(!noticed(&mut host), "nothing changed yet");

    kernel
        .add_address("tw0a", net("10.0.0.1/24"))
        .wait()
        .expect("the fake does this");
    kernel
        .add_address("tw0a", net("10.0.0.2/24"))
        .wait()
        .expect("the fake does this");
    assert!(noticed(&mut host), "an added address");
    assert!(
        !noticed(&mut host),
        "two changes before a look are one notice"
    );
    assert!(
        !noticed(&mut in_pod),
        "another namespace's watch is not told"
    );

    kernel.list_addresses(None).wait().expect("op");
    assert!(!noticed(&mut host), "a read is no change");
    assert!(
        kernel
            .add_address("absent", net("10.0.0.3/24"))
            .wait()
            .is_err(),
        "no such link"
    );
    assert!(!noticed(&mut host), "a failed op is no change");

    kernel.delete_link("tw0a").wait().expect("op");
    assert!(
        noticed(&mut host),
        "a deleted interface takes its addresses"
    );
}
