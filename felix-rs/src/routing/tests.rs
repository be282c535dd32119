#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use pretty_assertions::assert_eq;
use twill_api::ippool::VXLANMode;
use twill_kernel::{
    AddressEntry, FdbEntry, Kernel, KernelExt, KernelOp, LinkInfo, MacAddr, Neighbour, Route,
    RouteFilter, VXLAN_INTERFACE, fake::RecordingKernel,
};

use super::mtu::{self, DEFAULT_MTU_IFACE_PATTERN};
use super::*;

const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xb]);
const MAC_C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc]);
const POD_MAC: MacAddr = MacAddr([0x0a, 0x58, 0, 0, 0, 1]);

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn node(addr: &str, tunnel: Option<&str>, mac: Option<MacAddr>) -> NodeInfo {
    NodeInfo {
        ipv4: Some(addr.parse().unwrap()),
        vxlan_tunnel: tunnel.map(|t| t.parse().unwrap()),
        vxlan_mac: mac,
        ..NodeInfo::default()
    }
}

/// Three nodes: a and b on 198.51.100.0/24, c on 203.0.113.0/24; blocks
/// 10.65.0.0/26 (a), 10.65.0.64/26 (b), 10.65.0.128/26 (c); one local pod.
fn model(mode: VXLANMode) -> RoutingModel {
    let mut m = RoutingModel::new("a");
    m.host_mtu = 1500;
    m.nodes.insert(
        "a".into(),
        node("198.51.100.10/24", Some("10.65.0.1"), Some(MAC_A)),
    );
    m.nodes.insert(
        "b".into(),
        node("198.51.100.11/24", Some("10.65.0.65"), Some(MAC_B)),
    );
    m.nodes.insert(
        "c".into(),
        node("203.0.113.10/24", Some("10.65.0.129"), Some(MAC_C)),
    );
    for (name, owner, block) in [
        ("a-0", "a", "10.65.0.0/26"),
        ("b-64", "b", "10.65.0.64/26"),
        ("c-128", "c", "10.65.0.128/26"),
    ] {
        m.affinities.insert(name.into(), (owner.into(), net(block)));
    }
    m.pools.insert(
        "pool".into(),
        PoolInfo {
            cidr: net("10.65.0.0/16"),
            vxlan: mode,
        },
    );
    m.endpoints.insert(
        ("ns".into(), "pod1".into()),
        LocalEndpoint {
            interface: "twl0000000001".into(),
            ips: vec![ip("10.65.0.5")],
            mac: Some(POD_MAC),
            labels: BTreeMap::new(),
        },
    );
    m
}

fn vxlan_route(block: &str, tunnel: &str) -> Route {
    let mut route = Route::via(net(block), ip(tunnel));
    route.next_hops = vec![NextHop::via(ip(tunnel)).with_dev(VXLAN_INTERFACE).onlink()];
    route.protocol(ROUTE_PROTOCOL)
}

fn local_route(addr: &str, iface: &str) -> Route {
    Route::to_device(net(addr), iface).protocol(ROUTE_PROTOCOL)
}

#[test]
fn local_pods_get_a_host_route_and_a_static_neighbour() {
    let d = model(VXLANMode::Never).desired();
    assert_eq!(
        d.routes.get(&net("10.65.0.5/32")),
        Some(&local_route("10.65.0.5/32", "twl0000000001"))
    );
    assert_eq!(
        d.neighbours.values().cloned().collect::<Vec<_>>(),
        vec![Neighbour {
            link: "twl0000000001".into(),
            ip: ip("10.65.0.5"),
            mac: POD_MAC
        }]
    );
}

#[test]
fn never_pools_have_no_device_and_no_block_routes() {
    let d = model(VXLANMode::Never).desired();
    assert!(d.vxlan.is_empty());
    assert!(d.fdb.is_empty());
    assert_eq!(d.routes.len(), 1, "only the local pod: {:?}", d.routes);
}

#[test]
fn always_routes_every_remote_block_through_the_tunnel() {
    let d = model(VXLANMode::Always).desired();
    assert_eq!(d.vxlan.keys().collect::<Vec<_>>(), [&Family::V4]);
    let device = &d.vxlan[&Family::V4];
    assert_eq!(device.address, ip("10.65.0.1"));
    assert_eq!(device.spec.vni, DEFAULT_VXLAN_VNI);
    assert_eq!(device.spec.port, DEFAULT_VXLAN_PORT);
    assert_eq!(device.spec.local, Some(ip("198.51.100.10")));
    assert_eq!(device.spec.mac, Some(MAC_A));
    assert_eq!(device.spec.mtu, Some(1450));
    assert_eq!(
        d.routes.get(&net("10.65.0.64/26")),
        Some(&vxlan_route("10.65.0.64/26", "10.65.0.65"))
    );
    assert_eq!(
        d.routes.get(&net("10.65.0.128/26")),
        Some(&vxlan_route("10.65.0.128/26", "10.65.0.129"))
    );
    assert!(
        !d.routes.contains_key(&net("10.65.0.0/26")),
        "no route to our own block"
    );
    let fdb: Vec<(MacAddr, Option<IpAddr>)> = d.fdb.iter().map(|e| (e.mac, e.dst)).collect();
    assert_eq!(
        fdb,
        vec![
            (MAC_B, Some(ip("198.51.100.11"))),
            (MAC_C, Some(ip("203.0.113.10")))
        ]
    );
    assert!(
        d.neighbours
            .contains_key(&(VXLAN_INTERFACE.to_string(), ip("10.65.0.65")))
    );
}

#[test]
fn cross_subnet_routes_same_subnet_natively_and_others_through_the_tunnel() {
    let d = model(VXLANMode::CrossSubnet).desired();
    assert_eq!(
        d.routes.get(&net("10.65.0.64/26")),
        Some(&Route::via(net("10.65.0.64/26"), ip("198.51.100.11")).protocol(ROUTE_PROTOCOL)),
        "b shares a's subnet"
    );
    assert_eq!(
        d.routes.get(&net("10.65.0.128/26")),
        Some(&vxlan_route("10.65.0.128/26", "10.65.0.129")),
        "c is in another subnet"
    );
    assert!(
        d.vxlan.contains_key(&Family::V4),
        "the device exists for cross-subnet peers"
    );
}

#[test]
fn incomplete_vteps_are_skipped() {
    let cases = [
        ("remote without tunnel address", "b", None, Some(MAC_B)),
        ("remote without mac", "b", Some("10.65.0.65"), None),
    ];
    for (what, name, tunnel, mac) in cases {
        let mut m = model(VXLANMode::Always);
        m.nodes
            .insert(name.into(), node("198.51.100.11/24", tunnel, mac));
        let d = m.desired();
        assert!(!d.routes.contains_key(&net("10.65.0.64/26")), "{what}");
        assert!(d.fdb.iter().all(|e| e.mac != MAC_B), "{what}");
    }
    let mut m = model(VXLANMode::Always);
    m.nodes
        .insert("a".into(), node("198.51.100.10/24", None, None));
    let d = m.desired();
    assert!(d.vxlan.is_empty(), "no device until this node has a VTEP");
    assert_eq!(d.routes.len(), 1, "and no tunnel routes: {:?}", d.routes);
}

#[test]
fn felix_configuration_overrides_vni_port_and_mtu() {
    let mut m = model(VXLANMode::Always);
    m.settings = RoutingSettings::from_felix_configuration(&FelixConfigurationSpec {
        vxlan_vni: Some(7),
        vxlan_port: Some(8472),
        vxlan_mtu: Some(1400),
        ..FelixConfigurationSpec::default()
    });
    let spec = m.desired().vxlan[&Family::V4].spec.clone();
    assert_eq!((spec.vni, spec.port, spec.mtu), (7, 8472, Some(1400)));
    assert_eq!(m.pod_mtu(), 1400);
}

#[test]
fn pod_mtu_subtracts_the_vxlan_overhead_only_when_vxlan_is_on() {
    let cases = [
        (VXLANMode::Never, 9000, 9000),
        (VXLANMode::Always, 9000, 8950),
        (VXLANMode::CrossSubnet, 1500, 1450),
    ];
    for (mode, host, pod) in cases {
        let mut m = model(mode);
        m.host_mtu = host;
        assert_eq!(m.pod_mtu(), pod, "{mode:?} host {host}");
    }
}

#[test]
fn only_confirmed_live_affinities_count() {
    let spec = |state, deleted: &str| BlockAffinitySpec {
        state,
        node: "b".into(),
        cidr: "10.65.0.64/26".into(),
        deleted: deleted.into(),
        type_: None,
    };
    assert_eq!(
        affinity(&spec(BlockAffinityState::Confirmed, "false")),
        Some(("b".into(), net("10.65.0.64/26")))
    );
    assert_eq!(affinity(&spec(BlockAffinityState::Pending, "false")), None);
    assert_eq!(affinity(&spec(BlockAffinityState::Confirmed, "true")), None);
}

fn link(name: &str, mtu: u32) -> LinkInfo {
    LinkInfo {
        index: 1,
        name: name.into(),
        kind: None,
        mtu,
        mac: None,
        up: true,
        controller: None,
        vxlan: None,
    }
}

#[test]
fn host_mtu_is_the_smallest_among_matching_interfaces() {
    let links = [
        link("lo", 65536),
        link("eth0", 9000),
        link("eno1", 1460),
        link("ens3", 1200),
        link("docker0", 1400),
        link("twt0a1b", 1300),
    ];
    assert_eq!(mtu::host_mtu(&links, None).unwrap(), 1460);
    assert_eq!(mtu::host_mtu(&links, Some("^twt")).unwrap(), 1300);
    assert_eq!(
        mtu::host_mtu(&links, Some("^nomatch$")).unwrap(),
        mtu::FALLBACK_MTU
    );
    assert!(mtu::host_mtu(&links, Some("(")).is_err());
    assert!(DEFAULT_MTU_IFACE_PATTERN.starts_with('^'));
}

#[test]
fn the_mtu_file_is_written_once_per_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/mtu");
    assert!(mtu::publish(&path, 1450).unwrap());
    assert!(!mtu::publish(&path, 1450).unwrap(), "unchanged: no write");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1450\n");
    assert!(mtu::publish(&path, 1500).unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1500\n");
}

#[test]
fn vxlan_macs_are_stable_and_locally_administered() {
    let v4 = |node| vxlan_mac(node, Family::V4);
    assert_eq!(v4("node1"), v4("node1"));
    assert_ne!(v4("node1"), v4("node2"));
    assert_ne!(
        v4("node1"),
        vxlan_mac("node1", Family::V6),
        "one per device"
    );
    for family in Family::ALL {
        let first = vxlan_mac("node1", family).0[0];
        assert_eq!(first & 0x03, 0x02, "unicast, locally administered");
    }
}

// ---- plan ----

async fn actual(kernel: &RecordingKernel) -> Actual {
    let mut vxlan = BTreeMap::new();
    for family in Family::ALL {
        if let Ok(link) = kernel.get_link(family.interface()).await {
            let addresses = kernel
                .list_addresses(Some(family.interface()))
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.addr)
                .collect();
            vxlan.insert(family, VxlanLink { link, addresses });
        }
    }
    Actual {
        vxlan,
        routes: kernel
            .list_routes(RouteFilter::protocol(ROUTE_PROTOCOL))
            .await
            .unwrap(),
        neighbours: kernel.list_neighbours(None).await.unwrap(),
        fdb: kernel.list_fdb(None).await.unwrap(),
        workload_addresses: kernel
            .list_addresses(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.link.starts_with(twill_kernel::WORKLOAD_INTERFACE_PREFIX))
            .collect(),
    }
}

async fn apply(kernel: &RecordingKernel, ops: Vec<KernelOp>) {
    for op in ops {
        kernel
            .submit(op.clone())
            .await
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
}

async fn kernel_with_pod() -> RecordingKernel {
    let kernel = RecordingKernel::new();
    let mut veth = twill_kernel::VethSpec::new("twl0000000001", "twt-peer1");
    veth.mac = Some(MacAddr([0xee; 6]));
    kernel.create_veth(veth).await.unwrap();
    kernel
}

#[tokio::test]
async fn applying_the_plan_converges_and_a_second_plan_is_empty() {
    let models = [VXLANMode::Always, VXLANMode::CrossSubnet, VXLANMode::Never]
        .into_iter()
        .flat_map(|mode| [model(mode), dual_stack(mode)]);
    for m in models {
        let mode = m.pools["pool"].vxlan;
        let kernel = kernel_with_pod().await;
        let desired = m.desired();
        let ops = plan(&desired, &actual(&kernel).await, |_| true);
        assert!(!ops.is_empty(), "{mode:?}");
        apply(&kernel, ops).await;
        let again = plan(&desired, &actual(&kernel).await, |_| true);
        assert_eq!(again, Vec::new(), "{mode:?}: converged");
    }
}

#[tokio::test]
async fn a_leaving_node_loses_its_fdb_neighbour_and_routes() {
    let kernel = kernel_with_pod().await;
    let mut m = model(VXLANMode::Always);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    m.nodes.remove("c");
    m.affinities.remove("c-128");
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    assert_eq!(
        ops,
        vec![
            KernelOp::DeleteRoute(vxlan_route("10.65.0.128/26", "10.65.0.129").key()),
            KernelOp::DeleteNeighbour {
                link: VXLAN_INTERFACE.into(),
                ip: ip("10.65.0.129")
            },
            KernelOp::DeleteFdb(FdbEntry {
                link: VXLAN_INTERFACE.into(),
                mac: MAC_C,
                dst: Some(ip("203.0.113.10"))
            }),
        ]
    );
}

#[tokio::test]
async fn drift_is_repaired_and_foreign_objects_are_left_alone() {
    let kernel = kernel_with_pod().await;
    let desired = model(VXLANMode::Always).desired();
    apply(&kernel, plan(&desired, &actual(&kernel).await, |_| true)).await;
    // Someone deletes a tunnel route and adds routes and entries of their own.
    kernel
        .delete_route(vxlan_route("10.65.0.64/26", "10.65.0.65").key())
        .await
        .unwrap();
    kernel
        .add_route(Route::via(net("192.0.2.0/24"), ip("198.51.100.1")))
        .await
        .unwrap();
    let ops = plan(&desired, &actual(&kernel).await, |_| true);
    assert_eq!(
        ops,
        vec![KernelOp::ReplaceRoute(vxlan_route(
            "10.65.0.64/26",
            "10.65.0.65"
        ))]
    );
}

#[tokio::test]
async fn an_address_moving_interfaces_flushes_its_flows() {
    let kernel = kernel_with_pod().await;
    let mut m = model(VXLANMode::Never);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    let mut veth = twill_kernel::VethSpec::new("twl0000000002", "twt-peer2");
    veth.mac = Some(MacAddr([0xee; 6]));
    kernel.create_veth(veth).await.unwrap();
    m.endpoints
        .get_mut(&("ns".into(), "pod1".into()))
        .unwrap()
        .interface = "twl0000000002".into();
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    assert!(ops.contains(&KernelOp::ReplaceRoute(local_route(
        "10.65.0.5/32",
        "twl0000000002"
    ))));
    assert_eq!(
        ops.last(),
        Some(&KernelOp::DeleteConntrack {
            ip: ip("10.65.0.5")
        })
    );
}

#[tokio::test]
async fn a_gone_endpoint_loses_its_route_only_when_allowed() {
    let kernel = kernel_with_pod().await;
    let mut m = model(VXLANMode::Never);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    m.endpoints.clear();
    let now = actual(&kernel).await;
    let kept = plan(&m.desired(), &now, |_| false);
    assert!(
        kept.iter()
            .all(|op| !matches!(op, KernelOp::DeleteRoute(_))),
        "{kept:?}"
    );
    let removed = plan(&m.desired(), &now, |_| true);
    assert!(removed.contains(&KernelOp::DeleteRoute(
        local_route("10.65.0.5/32", "twl0000000001").key()
    )));
    assert!(removed.contains(&KernelOp::DeleteNeighbour {
        link: "twl0000000001".into(),
        ip: ip("10.65.0.5")
    }));
    assert_eq!(
        removed.last(),
        Some(&KernelOp::DeleteConntrack {
            ip: ip("10.65.0.5")
        })
    );
}

#[tokio::test]
async fn vxlan_turned_off_removes_the_device_last() {
    let kernel = kernel_with_pod().await;
    let mut m = model(VXLANMode::Always);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    m.pools.get_mut("pool").unwrap().vxlan = VXLANMode::Never;
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    assert_eq!(
        ops.last(),
        Some(&KernelOp::DeleteLink {
            name: VXLAN_INTERFACE.into()
        })
    );
    apply(&kernel, ops).await;
    assert!(kernel.get_link(VXLAN_INTERFACE).await.is_err());
    assert_eq!(
        plan(&m.desired(), &actual(&kernel).await, |_| true),
        Vec::new()
    );
}

#[tokio::test]
async fn a_wrong_tunnel_address_is_replaced() {
    let kernel = kernel_with_pod().await;
    let desired = model(VXLANMode::Always).desired();
    apply(&kernel, plan(&desired, &actual(&kernel).await, |_| true)).await;
    kernel
        .add_address(VXLAN_INTERFACE, net("10.99.0.1/32"))
        .await
        .unwrap();
    let ops = plan(&desired, &actual(&kernel).await, |_| true);
    assert_eq!(
        ops,
        vec![KernelOp::DeleteAddress(AddressEntry {
            link: VXLAN_INTERFACE.into(),
            addr: net("10.99.0.1/32")
        })]
    );
}

// ---- IPv6 ----

const MAC_A6: MacAddr = MacAddr([0x02, 0, 0, 0, 6, 0xa]);
const MAC_B6: MacAddr = MacAddr([0x02, 0, 0, 0, 6, 0xb]);
const MAC_C6: MacAddr = MacAddr([0x02, 0, 0, 0, 6, 0xc]);

/// [`model`] plus IPv6: a and b on 2001:db8:1::/64, c on 2001:db8:2::/64;
/// a pool fd00:65::/48 in `mode`, blocks fd00:65::/122 (a), fd00:65::40/122
/// (b), fd00:65::80/122 (c); the pod has an IPv6 address too.
fn dual_stack(mode: VXLANMode) -> RoutingModel {
    let mut m = model(mode);
    for (name, addr, tunnel, mac) in [
        ("a", "2001:db8:1::a/64", "fd00:65::1", MAC_A6),
        ("b", "2001:db8:1::b/64", "fd00:65::41", MAC_B6),
        ("c", "2001:db8:2::c/64", "fd00:65::81", MAC_C6),
    ] {
        let n = m.nodes.get_mut(name).unwrap();
        n.ipv6 = Some(addr.parse().unwrap());
        n.vxlan_tunnel_v6 = Some(tunnel.parse().unwrap());
        n.vxlan_mac_v6 = Some(mac);
    }
    for (name, owner, block) in [
        ("a-v6", "a", "fd00:65::/122"),
        ("b-v6", "b", "fd00:65::40/122"),
        ("c-v6", "c", "fd00:65::80/122"),
    ] {
        m.affinities.insert(name.into(), (owner.into(), net(block)));
    }
    m.pools.insert(
        "pool-v6".into(),
        PoolInfo {
            cidr: net("fd00:65::/48"),
            vxlan: mode,
        },
    );
    m.endpoints
        .get_mut(&("ns".into(), "pod1".into()))
        .unwrap()
        .ips
        .push(ip("fd00:65::5"));
    m
}

fn vxlan6_route(block: &str, tunnel: &str) -> Route {
    let mut route = Route::via(net(block), ip(tunnel));
    route.next_hops = vec![
        NextHop::via(ip(tunnel))
            .with_dev(VXLAN_V6_INTERFACE)
            .onlink(),
    ];
    route.protocol(ROUTE_PROTOCOL)
}

#[test]
fn ipv6_pools_get_their_own_device_over_the_ipv6_underlay() {
    let d = dual_stack(VXLANMode::Always).desired();
    let device = &d.vxlan[&Family::V6];
    assert_eq!(device.spec.name, VXLAN_V6_INTERFACE);
    assert_eq!(device.address, ip("fd00:65::1"));
    assert_eq!(device.spec.local, Some(ip("2001:db8:1::a")));
    assert_eq!(device.spec.mac, Some(MAC_A6));
    assert_eq!(device.spec.mtu, Some(1430), "IPv6 overhead is 70");
    assert_eq!(
        (device.spec.vni, device.spec.port),
        (DEFAULT_VXLAN_VNI, DEFAULT_VXLAN_PORT),
        "the families share VNI and port, as in Calico"
    );
    assert_eq!(d.vxlan[&Family::V4].spec.name, VXLAN_INTERFACE);
    assert_eq!(
        d.routes.get(&net("fd00:65::80/122")),
        Some(&vxlan6_route("fd00:65::80/122", "fd00:65::81"))
    );
    assert_eq!(
        d.routes.get(&net("fd00:65::5/128")),
        Some(&local_route("fd00:65::5/128", "twl0000000001"))
    );
    assert!(d.fdb.contains(&FdbEntry {
        link: VXLAN_V6_INTERFACE.into(),
        mac: MAC_C6,
        dst: Some(ip("2001:db8:2::c")),
    }));
    assert_eq!(
        d.neighbours
            .get(&(VXLAN_V6_INTERFACE.to_string(), ip("fd00:65::41")))
            .map(|n| n.mac),
        Some(MAC_B6)
    );
    assert_eq!(
        dual_stack(VXLANMode::Always).pod_mtu(),
        1430,
        "pods get the smaller of the two device MTUs"
    );
}

#[test]
fn ipv6_cross_subnet_compares_ipv6_subnets() {
    let d = dual_stack(VXLANMode::CrossSubnet).desired();
    assert_eq!(
        d.routes.get(&net("fd00:65::40/122")),
        Some(&Route::via(net("fd00:65::40/122"), ip("2001:db8:1::b")).protocol(ROUTE_PROTOCOL)),
        "b shares a's IPv6 subnet"
    );
    assert_eq!(
        d.routes.get(&net("fd00:65::80/122")),
        Some(&vxlan6_route("fd00:65::80/122", "fd00:65::81"))
    );
}

#[test]
fn each_family_is_decided_on_its_own() {
    // IPv4 native, IPv6 encapsulated: only the IPv6 device.
    let mut m = dual_stack(VXLANMode::Always);
    m.pools.get_mut("pool").unwrap().vxlan = VXLANMode::Never;
    assert_eq!(m.desired().vxlan.keys().collect::<Vec<_>>(), [&Family::V6]);
    assert_eq!(m.pod_mtu(), 1430);
    // vxlanEnabled: false turns both off.
    m.settings.vxlan_enabled = Some(false);
    assert!(m.desired().vxlan.is_empty());
    // A node without an IPv6 address has no IPv6 VTEP.
    let mut m = dual_stack(VXLANMode::Always);
    m.nodes.get_mut("a").unwrap().ipv6 = None;
    let d = m.desired();
    assert_eq!(d.vxlan.keys().collect::<Vec<_>>(), [&Family::V4]);
    assert!(!d.routes.contains_key(&net("fd00:65::80/122")));
}

#[tokio::test]
async fn removing_the_ipv6_pool_removes_only_the_ipv6_device() {
    let kernel = kernel_with_pod().await;
    let mut m = dual_stack(VXLANMode::Always);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    assert!(kernel.get_link(VXLAN_V6_INTERFACE).await.is_ok());
    m.pools.remove("pool-v6");
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    assert_eq!(
        ops.last(),
        Some(&KernelOp::DeleteLink {
            name: VXLAN_V6_INTERFACE.into()
        })
    );
    assert!(
        !ops.iter().any(|op| matches!(
            op,
            KernelOp::DeleteFdb(e) if e.link == VXLAN_INTERFACE
        )),
        "the IPv4 overlay is untouched: {ops:?}"
    );
    apply(&kernel, ops).await;
    assert!(kernel.get_link(VXLAN_V6_INTERFACE).await.is_err());
    assert!(kernel.get_link(VXLAN_INTERFACE).await.is_ok());
    assert_eq!(
        plan(&m.desired(), &actual(&kernel).await, |_| true),
        Vec::new()
    );
}

#[test]
fn node_specs_yield_both_families() {
    let spec: NodeSpec = serde_json::from_value(serde_json::json!({
        "bgp": {"ipv4Address": "198.51.100.10/24", "ipv6Address": "2001:db8:1::a/64"},
        "ipv4VXLANTunnelAddr": "10.65.0.1",
        "vxlanTunnelMACAddr": "02:00:00:00:00:0a",
        "ipv6VXLANTunnelAddr": "fd00:65::1",
        "vxlanTunnelMACAddrV6": "02:00:00:00:06:0a",
    }))
    .unwrap();
    let info = NodeInfo::from_spec(&spec);
    assert_eq!(
        info.vtep(Family::V6),
        Some(Vtep {
            node_ip: ip("2001:db8:1::a"),
            tunnel: ip("fd00:65::1"),
            mac: MAC_A6,
        })
    );
    assert_eq!(info.vtep(Family::V4).map(|v| v.mac), Some(MAC_A));
    assert_eq!(info.address(Family::V6), Some(net("2001:db8:1::a/64")));
}

#[tokio::test]
async fn a_device_with_another_vni_port_or_address_is_recreated() {
    let kernel = kernel_with_pod().await;
    let mut m = model(VXLANMode::Always);
    apply(
        &kernel,
        plan(&m.desired(), &actual(&kernel).await, |_| true),
    )
    .await;
    // What the kernel lists, not what this process remembers, so a change
    // made while felix-rs was down is seen too.
    m.settings.vni = 7;
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    let spec = m.desired().vxlan[&Family::V4].spec.clone();
    assert_eq!(
        ops[..2],
        [
            KernelOp::DeleteLink {
                name: VXLAN_INTERFACE.into()
            },
            KernelOp::CreateVxlan(spec)
        ]
    );
    apply(&kernel, ops).await;
    assert_eq!(
        plan(&m.desired(), &actual(&kernel).await, |_| true),
        Vec::new(),
        "recreated with its address, FDB and neighbours"
    );
}

// ---- local workload peering ----

fn peering(selector: &str) -> LocalPeering {
    LocalPeering {
        v4: Some("10.0.255.1".parse().unwrap()),
        v6: Some("fd00::ff:1".parse().unwrap()),
        selectors: [("bird-in-pod".to_string(), selector.parse().unwrap())].into(),
    }
}

fn peering_model(selector: &str, color: &str) -> RoutingModel {
    let mut m = model(VXLANMode::Never);
    let pod = m.endpoints.get_mut(&("ns".into(), "pod1".into())).unwrap();
    pod.labels = [("color".to_string(), color.to_string())].into();
    m.local_peering = peering(selector);
    m
}

fn on_pod(addr: &str) -> AddressEntry {
    AddressEntry {
        link: "twl0000000001".into(),
        addr: net(addr),
    }
}

#[test]
fn matching_workloads_get_the_peering_addresses_on_their_host_side() {
    let cases = [
        (
            "color == 'red'",
            "red",
            vec![on_pod("10.0.255.1/32"), on_pod("fd00::ff:1/128")],
        ),
        ("color == 'red'", "blue", vec![]),
        (
            "has(color)",
            "blue",
            vec![on_pod("10.0.255.1/32"), on_pod("fd00::ff:1/128")],
        ),
    ];
    for (selector, color, want) in cases {
        let got: Vec<AddressEntry> = peering_model(selector, color)
            .desired()
            .workload_addresses
            .into_iter()
            .collect();
        assert_eq!(got, want, "{selector} on color={color}");
    }
}

#[test]
fn without_a_peering_address_or_selector_nothing_is_added() {
    let mut m = peering_model("all()", "red");
    m.local_peering.v4 = None;
    m.local_peering.v6 = None;
    assert!(m.desired().workload_addresses.is_empty());
    let mut m = peering_model("all()", "red");
    m.local_peering.selectors.clear();
    assert!(m.desired().workload_addresses.is_empty());
}

#[tokio::test]
async fn peering_addresses_come_and_go_with_the_selector_and_link_local_ones_stay() {
    let kernel = kernel_with_pod().await;
    let link_local = on_pod("fe80::1/64");
    kernel
        .add_address("twl0000000001", link_local.addr)
        .await
        .unwrap();
    let m = peering_model("color == 'red'", "red");
    let ops = plan(&m.desired(), &actual(&kernel).await, |_| true);
    assert!(ops.contains(&KernelOp::AddAddress(on_pod("10.0.255.1/32"))));
    apply(&kernel, ops).await;
    assert_eq!(plan(&m.desired(), &actual(&kernel).await, |_| true), vec![]);

    let relabelled = peering_model("color == 'red'", "blue");
    let ops = plan(&relabelled.desired(), &actual(&kernel).await, |_| true);
    assert_eq!(
        ops,
        vec![
            KernelOp::DeleteAddress(on_pod("10.0.255.1/32")),
            KernelOp::DeleteAddress(on_pod("fd00::ff:1/128")),
        ],
        "the link-local address is not Twill's"
    );
}
