//! Latency of kernel ops through the chokepoint, in a scratch namespace
//! (needs root). Run: `cargo run --release -p twill-kernel --example op_latency`.
//!
//! Prints the median and 99th percentile per op for the real backend (sync
//! `.wait()` and async `.await`) and for the recording fake.

use std::time::{Duration, Instant};

use twill_integration::TestNetns;
use twill_kernel::fake::RecordingKernel;
use twill_kernel::{KernelExt, NetlinkKernel, NetnsPath, NftConfig, Route, RouteProto, VethSpec};

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<44} n={:<6} median={:>9.1?} p99={:>9.1?}",
        samples.len(),
        at(0.5),
        at(0.99)
    );
}

fn time(n: usize, mut f: impl FnMut(usize)) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect()
}

fn pod_route(i: usize, dev: &str) -> Route {
    let ip = std::net::Ipv4Addr::from(0x0a41_0000 + u32::try_from(i).expect("small"));
    Route::to_device(ipnet::IpNet::from(ipnet::Ipv4Net::from(ip)), dev)
        .protocol(RouteProto::TWILL_LOCAL)
}

fn main() {
    if !twill_integration::require_root() {
        return;
    }
    let ns = TestNetns::new("bench").expect("scratch namespace");
    let kernel = NetlinkKernel::open(&NetnsPath::from_path(ns.path()), NftConfig::default())
        .expect("kernel");
    let (a, b) = (
        twill_integration::names::link(),
        twill_integration::names::link(),
    );
    kernel
        .create_veth(VethSpec::new(&a, &b))
        .wait()
        .expect("veth");
    kernel.set_link_up(&a, true).wait().expect("up");

    report(
        "real: add_route + delete_route (wait)",
        time(2000, |i| {
            let route = pod_route(i, &a);
            kernel.add_route(route.clone()).wait().expect("add");
            kernel.delete_route(route.key()).wait().expect("delete");
        }),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    report(
        "real: add_route + delete_route (await)",
        runtime.block_on(async {
            let mut samples = Vec::new();
            for i in 0..2000 {
                let start = Instant::now();
                let route = pod_route(i, &a);
                kernel.add_route(route.clone()).await.expect("add");
                kernel.delete_route(route.key()).await.expect("delete");
                samples.push(start.elapsed());
            }
            samples
        }),
    );
    report(
        "real: get_link",
        time(2000, |_| drop(kernel.get_link(&a).wait().expect("get"))),
    );
    report(
        "real: create_veth + delete_link",
        time(200, |_| {
            let (x, y) = (
                twill_integration::names::link(),
                twill_integration::names::link(),
            );
            kernel
                .create_veth(VethSpec::new(&x, &y))
                .wait()
                .expect("veth");
            kernel.delete_link(&x).wait().expect("delete");
        }),
    );
    let table = twill_integration::names::link();
    kernel
        .nft_apply(&format!(
            "add table inet {table}\nadd set inet {table} s {{ type ipv4_addr; }}"
        ))
        .wait()
        .expect("nft table");
    report(
        "real: nft_apply (one set element)",
        time(200, |i| {
            let ip = std::net::Ipv4Addr::from(0x0a42_0000 + u32::try_from(i).expect("small"));
            kernel
                .nft_apply(&format!("add element inet {table} s {{ {ip} }}"))
                .wait()
                .expect("element");
        }),
    );

    let fake = RecordingKernel::new();
    fake.create_veth(VethSpec::new(&a, &b))
        .wait()
        .expect("veth");
    report(
        "fake: add_route + delete_route",
        time(20000, |i| {
            let route = pod_route(i, &a);
            fake.add_route(route.clone()).wait().expect("add");
            fake.delete_route(route.key()).wait().expect("delete");
        }),
    );
    drop(fake.take_ops());
    // The kernel's worker leaves the namespace before the namespace is removed.
    drop(kernel);
    drop(ns);
}
