//! Root tests: routes against the real kernel in a test namespace —
//! device routes, blackholes, ECMP weights, onlink, tables, protocols.

mod common;

use common::{ip, kernel_in, link_name, net, netns, veth_pair};
use twill_integration::require_root;
use twill_kernel::{
    KernelExt, NetlinkKernel, NextHop, Route, RouteChange, RouteFilter, RouteProto,
};

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

/// `count` BGP routes 10.128.0.0/24, 10.128.1.0/24, … via `gateway`.
fn bgp_batch(count: u32, gateway: &str) -> Vec<Route> {
    (0..count)
        .map(|i| {
            let prefix = std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(10, 128, 0, 0)) + (i << 8),
            );
            Route::via(
                ipnet::IpNet::V4(ipnet::Ipv4Net::new(prefix, 24).expect("valid /24")),
                addr(gateway),
            )
            .protocol(RouteProto::TWILL_BGP)
        })
        .collect()
}

/// `routes` as the kernel lists them: normalized, with the device it
/// resolved the gateway to, sorted.
fn as_listed(routes: &[Route], dev: &str) -> Vec<Route> {
    let mut out: Vec<Route> = routes
        .iter()
        .cloned()
        .map(|mut r| {
            r.next_hops[0].device = Some(dev.to_string());
            r.normalized()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn ten_thousand_routes_replaced_in_one_batch_are_all_present() {
    require_root!();
    let ns = netns("batch");
    let kernel = kernel_in(&ns);
    let dev = uplink(&kernel);
    let routes = bgp_batch(10_000, "10.0.0.2");
    let changes: Vec<RouteChange> = routes.iter().cloned().map(RouteChange::Replace).collect();
    let report = kernel.apply_routes(changes.clone()).wait().expect("batch");
    assert_eq!(report.failed, []);
    assert_eq!(report.applied, 10_000);
    let read = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("list");
    assert_eq!(read.len(), 10_000);
    assert!(read == as_listed(&routes, &dev), "listed routes differ");
    // Replacing again is idempotent: same routes, no failures.
    let again = kernel.apply_routes(changes).wait().expect("batch");
    assert!(again.all_applied(), "{again:?}");
    assert_eq!(
        ip(&ns, &["route", "show", "proto", "202"]).lines().count(),
        10_000
    );
}

#[test]
fn invalid_routes_in_a_batch_fail_alone_and_the_others_are_installed() {
    require_root!();
    let ns = netns("batchbad");
    let kernel = kernel_in(&ns);
    let dev = uplink(&kernel);
    let mut changes: Vec<RouteChange> = bgp_batch(1_000, "10.0.0.2")
        .into_iter()
        .map(RouteChange::Replace)
        .collect();
    // A next hop through a device that does not exist (caught before the
    // kernel), and a gateway the kernel cannot reach (refused by it).
    let missing_dev =
        Route::to_device(net("10.200.0.0/24"), link_name()).protocol(RouteProto::TWILL_BGP);
    let unreachable =
        Route::via(net("10.201.0.0/24"), addr("192.0.2.1")).protocol(RouteProto::TWILL_BGP);
    changes.insert(10, RouteChange::Replace(missing_dev));
    changes.insert(500, RouteChange::Replace(unreachable));
    let report = kernel.apply_routes(changes).wait().expect("batch");
    let failed: Vec<usize> = report.failed.iter().map(|f| f.index).collect();
    assert_eq!(failed, [10, 500], "{report:?}");
    assert!(
        report.failed[0].error.is_not_found(),
        "{}",
        report.failed[0].error
    );
    assert!(
        report.failed[1].error.to_string().contains("10.201.0.0/24")
            && report.failed[1].error.to_string().contains("ENETUNREACH"),
        "{}",
        report.failed[1].error
    );
    assert_eq!(report.applied, 1_000);
    let read = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("list");
    assert_eq!(read.len(), 1_000);
    assert!(
        read.iter()
            .all(|r| r.next_hops[0].gateway == Some(addr("10.0.0.2")))
    );
    assert!(
        read.iter()
            .all(|r| r.next_hops[0].device.as_deref() == Some(dev.as_str()))
    );
}

#[test]
fn delete_batch_removes_the_routes_and_reports_the_missing_one() {
    require_root!();
    let ns = netns("batchdel");
    let kernel = kernel_in(&ns);
    let dev = uplink(&kernel);
    let routes = bgp_batch(5_000, "10.0.0.2");
    let installed = kernel
        .apply_routes(routes.iter().cloned().map(RouteChange::Replace).collect())
        .wait()
        .expect("batch");
    assert!(installed.all_applied(), "{installed:?}");
    // Keep the last 100; delete the rest plus one route never installed.
    let mut deletes: Vec<RouteChange> = routes[..4_900]
        .iter()
        .map(|r| RouteChange::Delete(r.key()))
        .collect();
    deletes.push(RouteChange::Delete(
        Route::via(net("10.250.0.0/24"), addr("10.0.0.2"))
            .protocol(RouteProto::TWILL_BGP)
            .key(),
    ));
    let report = kernel.apply_routes(deletes).wait().expect("batch");
    assert_eq!(report.applied, 4_900);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].index, 4_900);
    assert!(
        report.failed[0].error.is_not_found(),
        "{}",
        report.failed[0].error
    );
    let left = kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("list");
    assert_eq!(left, as_listed(&routes[4_900..], &dev));
}
