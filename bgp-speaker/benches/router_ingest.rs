//! Receive-side benchmark of the router: an in-process injector streams N
//! IPv4 /24s over one eBGP session (loopback TCP) to a `Router`; the time
//! from Established until all N are best paths in the Loc-RIB, and the
//! router's RSS growth per route, are printed.
//!
//! The feed has the shape of `scripts/bench/bgp-peers.sh` (the BIRD/FRR/GoBGP anchor):
//! /24s counted up from 100.64.0.0, five consecutive prefixes per AS path
//! (`65000 646xx 42000xxxxx`), five NLRI per UPDATE, ORIGIN/AS_PATH/NEXT_HOP
//! only. The UPDATEs are encoded before the clock starts, so the injector
//! costs almost nothing while the router works.
//!
//! ```text
//! cargo bench -p bgp-speaker --bench router_ingest -- [N ...] [--kernel]
//! ```
//!
//! `--kernel` (root) runs the router in a private network namespace with a
//! `NetlinkKernel` and also times until every route is in the kernel FIB.

#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp_speaker::packet::{
    self, DecodeOptions, Family, Message, OpenParams, encode_end_of_rib, encode_keepalive,
    encode_open,
};
use bgp_speaker::rib::{Attrs, wire};
use bgp_speaker::router::{Neighbor, Router, RouterConfig};
use ipnet::{IpNet, Ipv4Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

const INJECTOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Next hop of the injected routes: on the veth link of the kernel run.
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const GROUP: usize = 5;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The feed: one buffer of UPDATEs (and End-of-RIB).
fn feed(n: usize) -> Vec<u8> {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let prefixes: Vec<IpNet> = (0..n)
        .map(|i| {
            let addr = Ipv4Addr::from(base + (u32::try_from(i).unwrap() << 8));
            IpNet::V4(Ipv4Net::new(addr, 24).unwrap())
        })
        .collect();
    let mut messages = Vec::with_capacity(n / GROUP + 1);
    for (g, chunk) in prefixes.chunks(GROUP).enumerate() {
        let g = u32::try_from(g).unwrap();
        let mut attrs = Attrs::local(Vec::new(), Vec::new());
        attrs.as_path = vec![65000, 64600 + g % 100, 4_200_000_000 + g];
        attrs.as_path_len = 3;
        attrs.next_hop = Some(IpAddr::V4(NEXT_HOP));
        wire::encode_announce(Family::Ipv4Unicast, &attrs, chunk, true, &mut messages);
    }
    messages.push(encode_end_of_rib(Family::Ipv4Unicast).unwrap());
    messages.concat()
}

/// A passive speaker at INJECTOR: OPEN, KEEPALIVE, then the whole feed;
/// afterwards it only answers with keepalives.
async fn inject(listener: TcpListener, feed: Arc<Vec<u8>>) {
    let (mut stream, _) = listener.accept().await.unwrap();
    stream.set_nodelay(true).unwrap();
    let open = encode_open(&OpenParams {
        local_as: 65000,
        hold_time: 240,
        bgp_id: INJECTOR,
        families: vec![Family::Ipv4Unicast],
        route_refresh: true,
        graceful_restart: None,
    })
    .unwrap();
    stream.write_all(&open).await.unwrap();
    stream.write_all(&encode_keepalive()).await.unwrap();
    // Wait for the router's OPEN and KEEPALIVE before streaming.
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut keepalives = 0;
    while keepalives == 0 {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "router closed the session");
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((message, len))) = packet::decode(&buf, &DecodeOptions::default()) {
            buf.drain(..len);
            if matches!(message, Message::Keepalive) {
                keepalives += 1;
            }
        }
    }
    let (mut read, mut write) = stream.into_split();
    tokio::spawn(async move { while read.read(&mut chunk).await.is_ok_and(|n| n > 0) {} });
    write.write_all(&feed).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        if write.write_all(&encode_keepalive()).await.is_err() {
            return;
        }
    }
}

struct Figures {
    rib_secs: f64,
    fib_secs: Option<f64>,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

async fn run(n: usize, kernel: Option<Arc<dyn Kernel>>) -> Figures {
    let feed = Arc::new(feed(n));
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(INJECTOR), 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(inject(listener, Arc::clone(&feed)));
    let with_kernel = kernel.is_some();
    let rss_before_kib = rss_kib();
    let router = Router::start(
        RouterConfig {
            asn: 65001,
            router_id: RECEIVER,
            cluster_id: None,
            kernel,
            graceful_restart_time: None,
            stale_sweep_after: Duration::from_secs(3600),
        },
        None,
    );
    let mut neighbor = Neighbor::new(IpAddr::V4(INJECTOR), 65000);
    neighbor.port = port;
    neighbor.local_address = Some(IpAddr::V4(RECEIVER));
    neighbor.hold = Duration::from_secs(240);
    router.set_neighbors(vec![neighbor]);
    let poll = Duration::from_millis(20);
    loop {
        let stats = router.stats().await;
        if stats.sessions.get("Established") == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let mut rib_secs = None;
    let fib_secs = loop {
        let stats = router.stats().await;
        if rib_secs.is_none() && stats.loc_rib_prefixes >= n {
            rib_secs = Some(start.elapsed().as_secs_f64());
        }
        if rib_secs.is_some() && (!with_kernel || stats.kernel_routes >= n) {
            assert_eq!(stats.kernel_errors, 0, "{stats:?}");
            break with_kernel.then(|| start.elapsed().as_secs_f64());
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{stats:?}");
        tokio::time::sleep(poll).await;
    };
    let rss_after_kib = rss_kib();
    router.shutdown().await;
    Figures {
        rib_secs: rib_secs.expect("set before the loop ends"),
        fib_secs,
        rss_before_kib,
        rss_after_kib,
    }
}

fn report(n: usize, f: &Figures) {
    let delta = f.rss_after_kib.saturating_sub(f.rss_before_kib) * 1024;
    println!(
        "twill router  N={n:>8}  s to full RIB {:>6.2}  s to kernel FIB {:>6}  RSS after {:>7.1} MB  bytes/route {:>5}",
        f.rib_secs,
        f.fib_secs.map_or("-".to_string(), |s| format!("{s:.2}")),
        f.rss_after_kib as f64 / 1024.0,
        delta / n as u64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_kernel = args.iter().any(|a| a == "--kernel");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100_000];
    }
    for n in sizes {
        let figures = if with_kernel {
            let netns = twill_integration::TestNetns::new("bench").unwrap();
            netns.ip(&["link", "set", "lo", "up"]).unwrap();
            // The next hop's subnet on a veth pair (no dummy driver needed).
            for args in [
                &[
                    "link", "add", "twtb0", "type", "veth", "peer", "name", "twtb1",
                ][..],
                &["addr", "add", "10.255.0.2/24", "dev", "twtb0"],
                &["link", "set", "twtb0", "up"],
                &["link", "set", "twtb1", "up"],
            ] {
                netns.ip(args).unwrap();
            }
            let kernel: Arc<dyn Kernel> = Arc::new(
                NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default())
                    .unwrap(),
            );
            netns
                .run(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(run(n, Some(kernel)))
                })
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(n, None))
        };
        report(n, &figures);
    }
}
