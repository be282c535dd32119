//! Specification of the kernel writer: merging queued decisions, and what
//! a batch's per-route answers do to the writer's view and counters.

use std::sync::Arc;

use twill_kernel::fake::RecordingKernel;
use twill_kernel::{KernelError, KernelOp};

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("valid prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address")
}

fn change(prefix: &str, hops: &[&str]) -> FibChange {
    FibChange {
        prefix: net(prefix),
        next_hops: hops.iter().map(|h| ip(h)).collect(),
    }
}

fn bgp_routes(kernel: &RecordingKernel) -> Vec<Route> {
    kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
        .expect("listing the fake never fails")
}

/// The fake does not check gateways, so none need a link.
fn fake() -> Arc<RecordingKernel> {
    Arc::new(RecordingKernel::new())
}

#[test]
fn queued_decisions_merge_latest_per_prefix_and_stop_at_a_sweep() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tx.send(KernelJob::Changes(vec![
        change("10.1.0.0/24", &["10.0.0.3"]),
        change("10.3.0.0/24", &["10.0.0.2"]),
    ]))
    .expect("receiver alive");
    tx.send(KernelJob::Sweep(HashSet::new()))
        .expect("receiver alive");
    tx.send(KernelJob::Changes(vec![change("10.9.0.0/24", &[])]))
        .expect("receiver alive");
    let mut held = None;
    let merged = coalesce(
        vec![
            change("10.1.0.0/24", &["10.0.0.2"]),
            change("10.2.0.0/24", &["10.0.0.2"]),
        ],
        &mut rx,
        &mut held,
    );
    assert_eq!(
        merged,
        [
            change("10.1.0.0/24", &["10.0.0.3"]),
            change("10.2.0.0/24", &["10.0.0.2"]),
            change("10.3.0.0/24", &["10.0.0.2"]),
        ]
    );
    assert!(matches!(held, Some(KernelJob::Sweep(_))), "the sweep waits");
    assert!(
        matches!(rx.try_recv(), Ok(KernelJob::Changes(c)) if c == [change("10.9.0.0/24", &[])]),
        "changes after the sweep stay behind it"
    );
}

#[test]
fn one_batch_installs_replaces_and_removes_with_protocol_202() {
    let kernel = fake();
    let mut installed = HashSet::new();
    let first = install(
        kernel.as_ref(),
        &mut installed,
        vec![
            change("10.1.0.0/24", &["10.0.0.2"]),
            change("10.2.0.0/24", &["10.0.0.2", "10.0.0.3"]),
        ],
    );
    assert_eq!((first.writes, first.errors), (2, 0));
    let second = install(
        kernel.as_ref(),
        &mut installed,
        vec![
            change("10.1.0.0/24", &[]),
            change("10.2.0.0/24", &["10.0.0.3"]),
            // Never installed: nothing to delete, nothing written.
            change("10.7.0.0/24", &[]),
        ],
    );
    assert_eq!((second.writes, second.errors), (2, 0));
    assert_eq!(installed, HashSet::from([net("10.2.0.0/24")]));
    let routes = bgp_routes(&kernel);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].destination, net("10.2.0.0/24"));
    assert_eq!(routes[0].next_hops, [NextHop::via(ip("10.0.0.3"))]);
    let batches = kernel
        .writes()
        .iter()
        .filter(|op| op.name() == "apply_routes")
        .count();
    assert_eq!(batches, 2, "one kernel op per flush");
}

#[test]
fn a_refused_route_is_counted_and_forgotten_while_the_rest_install() {
    let kernel = fake();
    kernel.fail_when(
        |op| matches!(op, KernelOp::ReplaceRoute(r) if r.destination == net("10.2.0.0/24")),
        KernelError::Injected {
            reason: "gateway unreachable".into(),
        },
    );
    let mut installed = HashSet::new();
    let outcome = install(
        kernel.as_ref(),
        &mut installed,
        vec![
            change("10.1.0.0/24", &["10.0.0.2"]),
            change("10.2.0.0/24", &["10.0.0.2"]),
            change("10.3.0.0/24", &["10.0.0.2"]),
        ],
    );
    assert_eq!((outcome.writes, outcome.errors), (2, 1));
    assert_eq!(
        installed,
        HashSet::from([net("10.1.0.0/24"), net("10.3.0.0/24")])
    );
    assert_eq!(bgp_routes(&kernel).len(), 2);
}

#[test]
fn deleting_a_route_already_gone_counts_as_written() {
    let kernel = fake();
    let mut installed = HashSet::from([net("10.4.0.0/24")]);
    let outcome = install(
        kernel.as_ref(),
        &mut installed,
        vec![change("10.4.0.0/24", &[])],
    );
    assert_eq!((outcome.writes, outcome.errors), (1, 0));
    assert!(installed.is_empty());
}

#[test]
fn start_up_sweep_deletes_only_unwanted_protocol_202_routes_of_the_main_table() {
    let kernel = fake();
    for route in [
        kernel_route(net("10.1.0.0/24"), &[ip("10.0.0.2")]),
        kernel_route(net("10.2.0.0/24"), &[ip("10.0.0.2")]),
        kernel_route(net("10.3.0.0/24"), &[ip("10.0.0.2")]).table(100),
        Route::via(net("10.4.0.0/24"), ip("10.0.0.2")).protocol(RouteProto::STATIC),
    ] {
        kernel.add_route(route).wait().expect("fake route");
    }
    let outcome = sweep(kernel.as_ref(), &HashSet::from([net("10.1.0.0/24")]));
    assert!(outcome.swept);
    assert_eq!((outcome.writes, outcome.errors), (1, 0));
    let mut left: Vec<(IpNet, u32)> = kernel
        .list_routes(RouteFilter::default())
        .wait()
        .expect("listed")
        .into_iter()
        .map(|r| (r.destination, r.table))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            (net("10.1.0.0/24"), TABLE_MAIN),
            (net("10.3.0.0/24"), 100),
            (net("10.4.0.0/24"), TABLE_MAIN),
        ]
    );
}
