//! Root tests: namespaces, links, addresses, neighbours, FDB entries and
//! sysctls against the real kernel, each in its own test namespaces.

mod common;

use std::time::Duration;

use common::{ip, kernel_in, link_name, net, netns, path, veth_pair};
use twill_integration::require_root;
use twill_kernel::{
    AddressEntry, BridgeSpec, FdbEntry, Kernel, KernelExt, MacAddr, Neighbour, NetlinkKernel,
    NetnsPath, NftConfig, SysctlKey, VethSpec, VxlanSpec,
};

#[test]
fn veth_peer_is_created_directly_in_the_pod_namespace() {
    require_root!();
    let host_ns = netns("host");
    let pod_ns = netns("pod");
    let host = kernel_in(&host_ns);
    let pod = kernel_in(&pod_ns);
    let (host_end, pod_end) = (link_name(), link_name());
    host.create_veth(
        VethSpec::new(&host_end, &pod_end)
            .peer_in(path(&pod_ns))
            .mtu(1410),
    )
    .wait()
    .expect("veth");
    let host_link = host.get_link(&host_end).wait().expect("host end");
    let pod_link = pod.get_link(&pod_end).wait().expect("pod end");
    assert_eq!(
        (host_link.kind.as_deref(), host_link.mtu),
        (Some("veth"), 1410)
    );
    assert_eq!(
        (pod_link.kind.as_deref(), pod_link.mtu),
        (Some("veth"), 1410)
    );
    assert!(
        host.get_link(&pod_end)
            .wait()
            .expect_err("not on the host side")
            .is_not_found()
    );
    host.delete_link(&host_end).wait().expect("delete host end");
    assert!(
        pod.get_link(&pod_end)
            .wait()
            .expect_err("peer goes with it")
            .is_not_found()
    );
}

#[test]
fn veth_moved_renamed_and_configured_reads_back() {
    require_root!();
    let host_ns = netns("host");
    let pod_ns = netns("pod");
    let host = kernel_in(&host_ns);
    let pod = kernel_in(&pod_ns);
    let (host_end, pod_end) = (link_name(), link_name());
    host.create_veth(VethSpec::new(&host_end, &pod_end))
        .wait()
        .expect("veth");
    host.move_link(&pod_end, &path(&pod_ns))
        .wait()
        .expect("move");
    pod.rename_link(&pod_end, "eth0").wait().expect("rename");
    let mac: MacAddr = "02:11:22:33:44:55".parse().expect("mac");
    pod.set_link_mac("eth0", mac).wait().expect("mac");
    pod.set_link_mtu("eth0", 1300).wait().expect("mtu");
    pod.set_link_up("eth0", true).wait().expect("up");
    let eth0 = pod.get_link("eth0").wait().expect("eth0");
    assert_eq!((eth0.mac, eth0.mtu, eth0.up), (Some(mac), 1300, true));
    assert!(ip(&pod_ns, &["link", "show", "eth0"]).contains("02:11:22:33:44:55"));
    pod.set_link_up("eth0", false).wait().expect("down");
    assert!(!pod.get_link("eth0").wait().expect("eth0").up);
    let names: Vec<String> = pod
        .list_links(None)
        .wait()
        .expect("list")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["eth0", "lo"]);
}

#[test]
fn cni_idempotency_errors_are_typed() {
    require_root!();
    let ns = netns("host");
    let kernel = kernel_in(&ns);
    let (a, b) = veth_pair(&kernel);
    let again = kernel
        .create_veth(VethSpec::new(&a, link_name()))
        .wait()
        .expect_err("exists");
    assert!(again.is_already_exists(), "{again}");
    assert!(again.to_string().contains(&a));
    let missing = link_name();
    let err = kernel.delete_link(&missing).wait().expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    assert!(
        kernel
            .rename_link(&a, &b)
            .wait()
            .expect_err("name taken")
            .is_already_exists()
    );
}

#[test]
fn bridge_ports_and_link_listing_by_prefix() {
    require_root!();
    let ns = netns("host");
    let kernel = kernel_in(&ns);
    let bridge = link_name();
    kernel
        .create_bridge(BridgeSpec {
            name: bridge.clone(),
            mtu: None,
        })
        .wait()
        .expect("bridge");
    let (a, b) = veth_pair(&kernel);
    kernel
        .set_link_controller(&a, Some(&bridge))
        .wait()
        .expect("port");
    assert_eq!(
        kernel
            .get_link(&a)
            .wait()
            .expect("port")
            .controller
            .as_deref(),
        Some(bridge.as_str())
    );
    kernel.set_link_controller(&a, None).wait().expect("detach");
    assert_eq!(kernel.get_link(&a).wait().expect("port").controller, None);
    let listed: Vec<String> = kernel
        .list_links(Some("twt"))
        .wait()
        .expect("list")
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut expected = vec![bridge, a, b];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn addresses_add_list_delete() {
    require_root!();
    let ns = netns("host");
    let kernel = kernel_in(&ns);
    let (a, _) = veth_pair(&kernel);
    for addr in ["10.65.0.1/24", "fd00:65::1/64"] {
        kernel.add_address(&a, net(addr)).wait().expect("add");
    }
    let got = kernel.list_addresses(Some(&a)).wait().expect("list");
    let want = vec![
        AddressEntry {
            link: a.clone(),
            addr: net("10.65.0.1/24"),
        },
        AddressEntry {
            link: a.clone(),
            addr: net("fd00:65::1/64"),
        },
    ];
    assert_eq!(got, want);
    assert!(
        kernel
            .add_address(&a, net("10.65.0.1/24"))
            .wait()
            .expect_err("dup")
            .is_already_exists()
    );
    kernel
        .delete_address(&a, net("10.65.0.1/24"))
        .wait()
        .expect("delete");
    assert!(
        kernel
            .delete_address(&a, net("10.65.0.1/24"))
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
    assert!(
        kernel
            .add_address(&link_name(), net("10.0.0.1/32"))
            .wait()
            .expect_err("no link")
            .is_not_found()
    );
}

#[test]
fn permanent_neighbours_and_vxlan_fdb_entries() {
    require_root!();
    let ns = netns("host");
    let kernel = kernel_in(&ns);
    let (a, _) = veth_pair(&kernel);
    let neighbour = Neighbour {
        link: a.clone(),
        ip: "10.65.0.9".parse().expect("ip"),
        mac: "ee:ee:ee:ee:ee:09".parse().expect("mac"),
    };
    kernel
        .add_neighbour(neighbour.clone())
        .wait()
        .expect("neighbour");
    kernel
        .add_neighbour(neighbour.clone())
        .wait()
        .expect("replace is idempotent");
    assert_eq!(
        kernel.list_neighbours(Some(&a)).wait().expect("list"),
        vec![neighbour.clone()]
    );
    assert!(
        ip(&ns, &["neigh", "show", "dev", &a])
            .contains("10.65.0.9 lladdr ee:ee:ee:ee:ee:09 PERMANENT")
    );
    kernel
        .delete_neighbour(&a, neighbour.ip)
        .wait()
        .expect("delete");
    assert!(
        kernel
            .delete_neighbour(&a, neighbour.ip)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );

    let vxlan = link_name();
    let mut spec = VxlanSpec::new(&vxlan, 4096, 4789);
    spec.local = Some("192.0.2.1".parse().expect("ip"));
    spec.mtu = Some(1450);
    kernel.create_vxlan(spec.clone()).wait().expect("vxlan");
    assert_eq!(
        kernel.get_link(&vxlan).wait().expect("listed").vxlan,
        Some(twill_kernel::VxlanIdentity::of(&spec)),
        "the listing tells VNI, port and local address"
    );
    let details = ip(&ns, &["-d", "link", "show", &vxlan]);
    assert!(
        details.contains("vxlan id 4096")
            && details.contains("dstport 4789")
            && details.contains("nolearning"),
        "{details}"
    );
    let entry = FdbEntry {
        link: vxlan.clone(),
        mac: "66:77:88:99:aa:bb".parse().expect("mac"),
        dst: Some("192.0.2.9".parse().expect("ip")),
    };
    kernel.add_fdb(entry.clone()).wait().expect("fdb");
    assert_eq!(
        kernel.list_fdb(Some(&vxlan)).wait().expect("list"),
        vec![entry.clone()]
    );
    kernel.delete_fdb(entry.clone()).wait().expect("delete");
    assert!(
        kernel
            .list_fdb(Some(&vxlan))
            .wait()
            .expect("list")
            .is_empty()
    );
    assert!(
        kernel
            .delete_fdb(entry)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[test]
fn sysctls_are_read_and_written_inside_the_namespace() {
    require_root!();
    let ns = netns("node");
    let kernel = kernel_in(&ns);
    let forward = SysctlKey::new("net/ipv4/ip_forward").expect("key");
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host value");
    let flipped = if host_before.trim() == "1" { "0" } else { "1" };
    kernel
        .write_sysctl(&forward, flipped)
        .wait()
        .expect("write");
    assert_eq!(kernel.read_sysctl(&forward).wait().expect("read"), flipped);
    assert_eq!(
        ns.read_sysctl("net/ipv4/ip_forward").expect("harness read"),
        flipped
    );
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host value");
    assert_eq!(
        host_before, host_after,
        "the host namespace must not change"
    );
    let (a, _) = veth_pair(&kernel);
    let proxy_arp = SysctlKey::interface("ipv4", "conf", &a, "proxy_arp").expect("key");
    kernel.write_sysctl(&proxy_arp, "1").wait().expect("write");
    assert_eq!(kernel.read_sysctl(&proxy_arp).wait().expect("read"), "1");
    let missing = SysctlKey::interface("ipv4", "conf", &link_name(), "proxy_arp").expect("key");
    assert!(
        kernel
            .read_sysctl(&missing)
            .wait()
            .expect_err("no such interface")
            .is_not_found()
    );
}

/// Removes a named namespace left by a failed test.
struct NetnsCleanup(String);

impl Drop for NetnsCleanup {
    fn drop(&mut self) {
        let pin = NetnsPath::named(&self.0);
        if pin.path().exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
}

#[test]
fn named_namespaces_are_created_entered_and_deleted() {
    require_root!();
    let name = twill_integration::names::netns("kernel-netns");
    let _cleanup = NetnsCleanup(name.clone());
    // The op does not depend on the namespace it is submitted to; use one
    // bound to a test namespace so nothing runs in the host's.
    let scratch = netns("scratch");
    let kernel = kernel_in(&scratch);
    kernel.create_netns(&name).wait().expect("create");
    assert!(
        kernel
            .create_netns(&name)
            .wait()
            .expect_err("exists")
            .is_already_exists()
    );
    let pin = NetnsPath::named(&name);
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&name))
            .expect("ip netns list")
    );
    {
        let inside = kernel.enter(&pin).expect("enter");
        let links = inside.list_links(None).wait().expect("list");
        assert_eq!(
            links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            vec!["lo"]
        );
        assert!(!links[0].up);
    }
    kernel.delete_netns(&name).wait().expect("delete");
    assert!(!pin.path().exists());
    assert!(
        kernel
            .delete_netns(&name)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
    let err = NetlinkKernel::open(&pin, NftConfig::default()).expect_err("no such namespace");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn real_kernel_ops_can_be_awaited_from_a_runtime() {
    require_root!();
    let ns = netns("async");
    let kernel = kernel_in(&ns);
    let (a, b) = (link_name(), link_name());
    kernel
        .create_veth(VethSpec::new(&a, &b))
        .await
        .expect("veth");
    kernel.set_link_up(&a, true).await.expect("up");
    assert!(kernel.get_link(&a).await.expect("link").up);
    drop(kernel);
}

/// Whether `changes` tells of a change within `wait`.
fn noticed(changes: &mut twill_kernel::watch::AddressChanges, wait: Duration) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async { tokio::time::timeout(wait, changes.changed()).await.is_ok() })
}

#[test]
fn address_changes_in_the_namespace_are_noticed_and_those_elsewhere_are_not() {
    require_root!();
    let watched = netns("watched");
    let other = netns("other");
    let kernel = kernel_in(&watched);
    let elsewhere = kernel_in(&other);
    let (a, _) = veth_pair(&kernel);
    let (b, _) = veth_pair(&elsewhere);
    let mut changes = kernel.watch_addresses().expect("watch");
    // The veths' own creation may still be reported; drain it.
    while noticed(&mut changes, Duration::from_millis(200)) {}

    elsewhere
        .add_address(&b, net("10.66.0.1/24"))
        .wait()
        .expect("add elsewhere");
    assert!(
        !noticed(&mut changes, Duration::from_millis(300)),
        "a change in another namespace is not this one's"
    );
    kernel
        .add_address(&a, net("10.65.0.1/24"))
        .wait()
        .expect("add");
    assert!(
        noticed(&mut changes, Duration::from_secs(5)),
        "an added address is noticed"
    );
    while noticed(&mut changes, Duration::from_millis(200)) {}
    kernel
        .delete_address(&a, net("10.65.0.1/24"))
        .wait()
        .expect("delete");
    assert!(
        noticed(&mut changes, Duration::from_secs(5)),
        "a deleted address is noticed"
    );
}
