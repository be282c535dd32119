//! Root tests: routes against the real kernel in a test namespace —
//! device routes, blackholes, ECMP weights, onlink, tables, protocols.

mod common;

use common::{ip, kernel_in, link_name, net, netns, veth_pair};
use twill_integration::require_root;
use twill_kernel::{KernelExt, NetlinkKernel, NextHop, Route, RouteFilter, RouteProto};

fn addr(s: &str) -> std::net::IpAddr {
    s.parse().expect("valid ip")
}

/// A namespace with an up veth `a` holding 10.0.0.1/24 and fd00::1/64.
fn uplink(kernel: &NetlinkKernel) -> String {
    let (a, b) = veth_pair(kernel);
    kernel.set_link_up(&b, true).wait().expect("peer up");
    kernel.set_link_up(&a, true).wait().expect("up");
    kernel
        .add_address(&a, net("10.0.0.1/24"))
        .wait()
        .expect("v4 address");
    kernel
        .add_address(&a, net("fd00::1/64"))
        .wait()
        .expect("v6 address");
    a
}

#[test]
fn twill_routes_read_back_exactly_and_filter_by_protocol() {
    require_root!();
    let ns = netns("routes");
    let kernel = kernel_in(&ns);
    let dev = uplink(&kernel);
    let local = Route::to_device(net("10.65.0.5/32"), &dev).protocol(RouteProto::TWILL_LOCAL);
    let local6 = Route::to_device(net("fd00:65::5/128"), &dev).protocol(RouteProto::TWILL_LOCAL);
    let block = Route::blackhole(net("10.65.0.0/26")).protocol(RouteProto::TWILL_AGGREGATE);
    let block6 = Route::blackhole(net("fd00:65::/122")).protocol(RouteProto::TWILL_AGGREGATE);
    let ecmp = Route::multipath(
        net("10.66.0.0/24"),
        vec![
            NextHop::via(addr("10.0.0.2")).with_dev(&dev),
            NextHop::via(addr("10.0.0.3")).with_dev(&dev).weight(2),
        ],
    )
    .protocol(RouteProto::TWILL_BGP);
    let ecmp6 = Route::multipath(
        net("fd00:66::/64"),
        vec![
            NextHop::via(addr("fd00::2")).with_dev(&dev),
            NextHop::via(addr("fd00::3")).with_dev(&dev),
        ],
    )
    .protocol(RouteProto::TWILL_BGP);
    let onlink =
        Route::via(net("10.67.0.0/26"), addr("169.254.1.1")).protocol(RouteProto::TWILL_BGP);
    let onlink = Route {
        next_hops: vec![NextHop::via(addr("169.254.1.1")).with_dev(&dev).onlink()],
        ..onlink
    };
    let in_table = Route::to_device(net("10.50.0.0/16"), &dev)
        .protocol(RouteProto::TWILL_BGP)
        .table(100)
        .metric(7);
    for route in [
        &local, &local6, &block, &block6, &ecmp, &ecmp6, &onlink, &in_table,
    ] {
        kernel
            .add_route(route.clone())
            .wait()
            .unwrap_or_else(|err| panic!("{route:?}: {err}"));
    }
    let read = |proto| {
        kernel
            .list_routes(RouteFilter::protocol(proto))
            .wait()
            .expect("list")
    };
    let mut want_local = vec![local.normalized(), local6.normalized()];
    want_local.sort();
    assert_eq!(read(RouteProto::TWILL_LOCAL), want_local);
    let mut want_blocks = vec![block.normalized(), block6.normalized()];
    want_blocks.sort();
    assert_eq!(read(RouteProto::TWILL_AGGREGATE), want_blocks);
    let mut want_bgp = vec![
        ecmp.clone().normalized(),
        ecmp6.normalized(),
        onlink.normalized(),
        in_table.clone().normalized(),
    ];
    want_bgp.sort();
    assert_eq!(read(RouteProto::TWILL_BGP), want_bgp);
    // ip prints the weight the caller asked for (the kernel stores it - 1).
    let shown = ip(&ns, &["route", "show", "10.66.0.0/24"]);
    assert!(
        shown.contains("via 10.0.0.2") && shown.contains("weight 1"),
        "{shown}"
    );
    assert!(
        shown.contains("via 10.0.0.3") && shown.contains("weight 2"),
        "{shown}"
    );
    assert!(ip(&ns, &["route", "show", "10.67.0.0/26"]).contains("onlink"));
    assert!(ip(&ns, &["route", "show", "table", "100"]).contains("proto 202"));
    // Kernel-made connected routes are not Twill's and do not show up.
    assert!(
        read(RouteProto::TWILL_LOCAL)
            .iter()
            .all(|r| r.protocol == RouteProto::TWILL_LOCAL)
    );
    let in_100 = kernel
        .list_routes(RouteFilter {
            table: Some(100),
            ..RouteFilter::default()
        })
        .wait()
        .expect("list");
    assert_eq!(in_100, vec![in_table.normalized()]);
}

#[test]
fn add_replace_delete_follow_route_keys() {
    require_root!();
    let ns = netns("routes");
    let kernel = kernel_in(&ns);
    let dev = uplink(&kernel);
    let route = Route::via(net("10.70.0.0/24"), addr("10.0.0.2")).protocol(RouteProto::TWILL_BGP);
    kernel.add_route(route.clone()).wait().expect("add");
    let again = kernel
        .add_route(route.clone())
        .wait()
        .expect_err("same key");
    assert!(again.is_already_exists(), "{again}");
    let moved = Route::via(net("10.70.0.0/24"), addr("10.0.0.3")).protocol(RouteProto::TWILL_BGP);
    kernel.replace_route(moved.clone()).wait().expect("replace");
    let listed = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].next_hops[0].gateway, Some(addr("10.0.0.3")));
    assert_eq!(
        listed[0].next_hops[0].device.as_deref(),
        Some(dev.as_str()),
        "the kernel fills in the device"
    );
    let mut wrong_owner = moved.key();
    wrong_owner.protocol = Some(RouteProto::TWILL_LOCAL);
    assert!(
        kernel
            .delete_route(wrong_owner)
            .wait()
            .expect_err("not ours to delete")
            .is_not_found()
    );
    kernel.delete_route(moved.key()).wait().expect("delete");
    assert!(
        kernel
            .delete_route(moved.key())
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
    let missing_dev = Route::to_device(net("10.71.0.0/24"), link_name());
    assert!(
        kernel
            .add_route(missing_dev)
            .wait()
            .expect_err("no device")
            .is_not_found()
    );
}
