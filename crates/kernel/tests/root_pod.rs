//! Root test: wiring a pod the way twill-cni does, with this crate's ops
//! only, and checking that packets flow (the pieces work together).

mod common;

use common::{kernel_in, link_name, net, netns, path};
use twill_integration::require_root;
use twill_kernel::{KernelExt, MacAddr, NextHop, Route, RouteProto, SysctlKey, VethSpec};

#[test]
fn pod_wired_like_cni_reaches_its_node_through_proxy_arp() {
    require_root!();
    let node_ns = netns("node");
    let pod_ns = netns("pod");
    let node = kernel_in(&node_ns);
    let pod = kernel_in(&pod_ns);

    // The node's uplink: proxy ARP answers only for destinations the node
    // routes out of another interface, so give it a default route.
    let (uplink, far_end) = (link_name(), link_name());
    node.create_veth(VethSpec::new(&uplink, &far_end))
        .wait()
        .expect("uplink");
    node.set_link_up(&far_end, true).wait().expect("up");
    node.set_link_up(&uplink, true).wait().expect("up");
    node.add_address(&uplink, net("10.98.0.1/24"))
        .wait()
        .expect("uplink address");
    node.add_route(Route::via(
        net("0.0.0.0/0"),
        "10.98.0.2".parse().expect("ip"),
    ))
    .wait()
    .expect("default");
    node.add_address("lo", net("10.99.0.1/32"))
        .wait()
        .expect("node address");
    node.write_sysctl(&SysctlKey::new("net/ipv4/ip_forward").expect("key"), "1")
        .wait()
        .expect("forwarding");

    // CNI ADD: veth with its peer created as eth0 inside the pod.
    let host_if = link_name();
    let mut spec = VethSpec::new(&host_if, "eth0").peer_in(path(&pod_ns));
    spec.mac = Some("ee:ee:ee:ee:ee:ee".parse::<MacAddr>().expect("mac"));
    node.create_veth(spec).wait().expect("veth");
    node.write_sysctl(
        &SysctlKey::interface("ipv4", "conf", &host_if, "proxy_arp").expect("key"),
        "1",
    )
    .wait()
    .expect("proxy_arp");
    node.write_sysctl(
        &SysctlKey::interface("ipv4", "neigh", &host_if, "proxy_delay").expect("key"),
        "0",
    )
    .wait()
    .expect("proxy_delay");
    node.set_link_up(&host_if, true)
        .wait()
        .expect("host side up");
    pod.set_link_up("eth0", true).wait().expect("pod side up");
    pod.add_address("eth0", net("10.65.0.5/32"))
        .wait()
        .expect("pod address");
    pod.add_route(Route::to_device(net("169.254.1.1/32"), "eth0"))
        .wait()
        .expect("gateway route");
    let default = Route::multipath(
        net("0.0.0.0/0"),
        vec![NextHop::via("169.254.1.1".parse().expect("ip")).with_dev("eth0")],
    );
    pod.add_route(default).wait().expect("pod default route");
    node.add_route(
        Route::to_device(net("10.65.0.5/32"), &host_if).protocol(RouteProto::TWILL_LOCAL),
    )
    .wait()
    .expect("host route");

    let ping = pod_ns
        .exec("ping", &["-c", "1", "-W", "2", "10.99.0.1"])
        .expect("run ping");
    assert!(
        ping.status.success(),
        "pod cannot reach its node: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // CNI DEL: deleting the host end takes eth0 and the pod route with it;
    // a second DEL finds nothing, which the plugin treats as success.
    node.delete_link(&host_if).wait().expect("delete");
    assert!(
        node.delete_link(&host_if)
            .wait()
            .expect_err("already gone")
            .is_not_found()
    );
    assert!(
        pod.get_link("eth0")
            .wait()
            .expect_err("peer gone")
            .is_not_found()
    );
    let left = node
        .list_routes(twill_kernel::RouteFilter::protocol(RouteProto::TWILL_LOCAL))
        .wait()
        .expect("list");
    assert!(
        left.is_empty(),
        "the kernel drops routes of a deleted device: {left:?}"
    );
}
