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
//! `sessions PxM` is the mesh-like load instead: P injectors, each from its
//! own loopback address (127.0.1.x, eBGP AS 65100+i), connect to the
//! router (passive neighbours) and each sends M /24s of its own in one
//! UPDATE (one attribute set per peer, next hop its own); the time from
//! the first connect until all P sessions are Established, and until all
//! P×M prefixes are in the Loc-RIB (and the kernel), is printed.
//! `scripts/bench/bgp-peers.sh` with `MODE=sessions` is its BIRD/FRR/GoBGP
//! anchor.
//!
//! ```text
//! cargo bench -p bgp-speaker --bench router_ingest -- [N ...] [--kernel]
//! cargo bench -p bgp-speaker --bench router_ingest -- sessions [100x64] [--kernel]
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
use bgp_speaker::router::{Filter, FilterAction, FilterRule, Neighbor, Router, RouterConfig};
use ipnet::{IpNet, Ipv4Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use twill_kernel::{Kernel, NetlinkKernel, NetnsPath, NftConfig};

const INJECTOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Next hop of the injected routes: on the veth link of the kernel run.
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const GROUP: usize = 5;

/// The receiving router: AS 65001, no graceful restart, no start-up sweep
/// during a run.
fn receiver_config(kernel: Option<Arc<dyn Kernel>>) -> RouterConfig {
    RouterConfig {
        asn: 65001,
        router_id: RECEIVER,
        cluster_id: None,
        kernel,
        graceful_restart_time: None,
        stale_sweep_after: Duration::from_secs(3600),
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes the allocator has handed out and not had back (every arena, and
/// its direct mappings at their mapped size, touched or not): about what
/// RSS would be if no free memory were kept.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's own counters.
    #[allow(
        unsafe_code,
        reason = "glibc's allocator statistics have no safe wrapper"
    )]
    let info = unsafe { libc::mallinfo2() };
    u64::try_from(info.uordblks + info.hblkhd).unwrap_or(u64::MAX)
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
/// afterwards it only answers with keepalives. `established` gets the
/// moment the router's KEEPALIVE arrived (the session is up on both ends).
async fn inject(
    listener: TcpListener,
    feed: Arc<Vec<u8>>,
    established: tokio::sync::oneshot::Sender<Instant>,
) {
    let (mut stream, _) = listener.accept().await.unwrap();
    stream.set_nodelay(true).unwrap();
    open_session(&mut stream, 65000, INJECTOR).await;
    let _ = established.send(Instant::now());
    let mut chunk = vec![0u8; 4096];
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

/// Sends an IPv4-unicast OPEN (AS `asn`, identifier `id`) and a KEEPALIVE
/// on `stream`, then reads until the router's KEEPALIVE: the session is
/// Established for both sides.
async fn open_session(stream: &mut TcpStream, asn: u32, id: Ipv4Addr) {
    let open = encode_open(&OpenParams {
        local_as: asn,
        hold_time: 240,
        bgp_id: id,
        families: vec![Family::Ipv4Unicast],
        route_refresh: true,
        graceful_restart: None,
    })
    .unwrap();
    stream.write_all(&open).await.unwrap();
    stream.write_all(&encode_keepalive()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "router {id} closed the session");
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((message, len))) = packet::decode(&buf, &DecodeOptions::default()) {
            buf.drain(..len);
            if matches!(message, Message::Keepalive) {
                return;
            }
        }
    }
}

struct Figures {
    rib_secs: f64,
    fib_secs: Option<f64>,
    rss_before_kib: u64,
    rss_after_kib: u64,
    heap_before: u64,
    heap_after: u64,
}

async fn run(n: usize, kernel: Option<Arc<dyn Kernel>>) -> Figures {
    let feed = Arc::new(feed(n));
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(INJECTOR), 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (established_tx, established) = tokio::sync::oneshot::channel();
    tokio::spawn(inject(listener, Arc::clone(&feed), established_tx));
    let with_kernel = kernel.is_some();
    let rss_before_kib = rss_kib();
    let heap_before = heap_in_use();
    let router = Router::start(receiver_config(kernel), None);
    let mut neighbor = Neighbor::new(IpAddr::V4(INJECTOR), 65000);
    neighbor.port = port;
    neighbor.local_address = Some(IpAddr::V4(RECEIVER));
    neighbor.hold = Duration::from_secs(240);
    router.set_neighbors(vec![neighbor]);
    // Timed from the injector's view of Established, as the anchors' raw
    // injector does: the router's own answers lag while it is busy.
    let poll = Duration::from_millis(20);
    let start = established.await.unwrap();
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
    let heap_after = heap_in_use();
    router.shutdown().await;
    Figures {
        rib_secs: rib_secs.expect("set before the loop ends"),
        fib_secs,
        rss_before_kib,
        rss_after_kib,
        heap_before,
        heap_after,
    }
}

fn report(n: usize, f: &Figures) {
    let delta = f.rss_after_kib.saturating_sub(f.rss_before_kib) * 1024;
    let live = f.heap_after.saturating_sub(f.heap_before);
    println!(
        "twill router  N={n:>8}  s to full RIB {:>6.2}  s to kernel FIB {:>6}  RSS after {:>7.1} MB  bytes/route {:>5}  (heap in use {:>5})",
        f.rib_secs,
        f.fib_secs.map_or("-".to_string(), |s| format!("{s:.2}")),
        f.rss_after_kib as f64 / 1024.0,
        delta / n as u64,
        live / n as u64,
    );
}

/// Runs `work` on a fresh runtime: in a private namespace with a
/// `NetlinkKernel` (veth 10.255.0.2/24 holding the next hops' subnet) when
/// `with_kernel`, else in the caller's namespace without a kernel.
fn in_bench_netns<T: Send + 'static, F>(
    with_kernel: bool,
    work: impl FnOnce(Option<Arc<dyn Kernel>>) -> F + Send + 'static,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    if !with_kernel {
        return runtime().block_on(work(None));
    }
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
        NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default()).unwrap(),
    );
    netns
        .run(move || runtime().block_on(work(Some(kernel))))
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_kernel = args.iter().any(|a| a == "--kernel");
    if args.iter().any(|a| a == "sessions") {
        let (peers, prefixes) = args
            .iter()
            .find_map(|a| a.split_once('x'))
            .map_or((100, 64), |(p, m)| (p.parse().unwrap(), m.parse().unwrap()));
        let figures = in_bench_netns(with_kernel, move |kernel| {
            sessions::run(peers, prefixes, kernel)
        });
        sessions::report(peers, prefixes, &figures);
        return;
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100_000];
    }
    for n in sizes {
        let figures = in_bench_netns(with_kernel, move |kernel| run(n, kernel));
        report(n, &figures);
    }
}

mod sessions {
    //! The mesh-like load: many sessions, few prefixes each.

    use super::*;

    /// Router's listening address; injectors connect from 127.0.1.x.
    fn injector_address(i: usize) -> Ipv4Addr {
        let i = u8::try_from(i).unwrap();
        Ipv4Addr::new(127, 0, 1, i + 1)
    }

    fn injector_as(i: usize) -> u32 {
        65100 + u32::try_from(i).unwrap()
    }

    /// Peer `i`'s UPDATE (its `m` /24s, one attribute set, next hop on the
    /// veth subnet) and End-of-RIB.
    fn feed(i: usize, m: usize) -> Vec<u8> {
        let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
        let prefixes: Vec<IpNet> = (i * m..(i + 1) * m)
            .map(|k| {
                let addr = Ipv4Addr::from(base + (u32::try_from(k).unwrap() << 8));
                IpNet::V4(Ipv4Net::new(addr, 24).unwrap())
            })
            .collect();
        let mut attrs = Attrs::local(Vec::new(), Vec::new());
        attrs.as_path = vec![injector_as(i)];
        attrs.as_path_len = 1;
        attrs.next_hop = Some(IpAddr::V4(Ipv4Addr::new(
            10,
            255,
            0,
            10 + u8::try_from(i % 200).unwrap(),
        )));
        let mut messages = Vec::new();
        wire::encode_announce(Family::Ipv4Unicast, &attrs, &prefixes, true, &mut messages);
        messages.push(encode_end_of_rib(Family::Ipv4Unicast).unwrap());
        messages.concat()
    }

    /// An active speaker from `injector_address(i)`: OPEN, KEEPALIVE, then
    /// its feed once the router's KEEPALIVE came; then it only drains.
    async fn inject(
        i: usize,
        router: SocketAddr,
        feed: Vec<u8>,
        established: tokio::sync::mpsc::UnboundedSender<Instant>,
    ) {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::V4(injector_address(i)), 0))
            .unwrap();
        let mut stream: TcpStream = socket.connect(router).await.unwrap();
        stream.set_nodelay(true).unwrap();
        open_session(&mut stream, injector_as(i), injector_address(i)).await;
        let _ = established.send(Instant::now());
        let mut chunk = vec![0u8; 4096];
        stream.write_all(&feed).await.unwrap();
        while stream.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
    }

    /// An export filter that rejects every IPv4 route: the anchors receive
    /// only (BIRD `export none`, FRR a deny-all route-map, GoBGP reject).
    fn export_none() -> Filter {
        Filter {
            rules: vec![FilterRule::new(true, FilterAction::Reject)],
        }
    }

    /// Seconds from the first connect.
    pub(super) struct Figures {
        established_secs: f64,
        rib_secs: f64,
        fib_secs: Option<f64>,
    }

    pub(super) async fn run(p: usize, m: usize, kernel: Option<Arc<dyn Kernel>>) -> Figures {
        assert!(p <= 200, "injector addresses are 127.0.1.1-200");
        let with_kernel = kernel.is_some();
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(RECEIVER), 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::start(receiver_config(kernel), Some(listener));
        let neighbors = (0..p)
            .map(|i| {
                let mut neighbor = Neighbor::new(IpAddr::V4(injector_address(i)), injector_as(i));
                neighbor.passive = true;
                neighbor.hold = Duration::from_secs(240);
                neighbor.export = export_none();
                neighbor
            })
            .collect();
        router.set_neighbors(neighbors);
        while router.status().await.len() < p {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Passive sessions reach Active on their own; let them settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let feeds: Vec<Vec<u8>> = (0..p).map(|i| feed(i, m)).collect();
        let (established_tx, mut established) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let injectors: Vec<_> = feeds
            .into_iter()
            .enumerate()
            .map(|(i, feed)| tokio::spawn(inject(i, address, feed, established_tx.clone())))
            .collect();
        let total = p * m;
        let (mut established_secs, mut rib_secs) = (None, None);
        let mut up = Vec::with_capacity(p);
        let fib_secs = loop {
            let stats = router.stats().await;
            let elapsed = start.elapsed().as_secs_f64();
            // The injectors' view: each saw the router's KEEPALIVE.
            while let Ok(at) = established.try_recv() {
                up.push(at.duration_since(start).as_secs_f64());
            }
            if established_secs.is_none() && up.len() == p {
                established_secs = up.iter().copied().reduce(f64::max);
            }
            if rib_secs.is_none() && stats.loc_rib_prefixes >= total {
                rib_secs = Some(elapsed);
            }
            if established_secs.is_some()
                && rib_secs.is_some()
                && (!with_kernel || stats.kernel_routes >= total)
            {
                assert_eq!(stats.kernel_errors, 0, "{stats:?}");
                break with_kernel.then_some(elapsed);
            }
            assert!(start.elapsed() < Duration::from_secs(120), "{stats:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        router.shutdown().await;
        for injector in injectors {
            injector.abort();
        }
        Figures {
            established_secs: established_secs.expect("set before the loop ends"),
            rib_secs: rib_secs.expect("set before the loop ends"),
            fib_secs,
        }
    }

    pub(super) fn report(p: usize, m: usize, f: &Figures) {
        println!(
            "twill router  sessions {p}x{m}  s to all Established {:>6.3}  s to full RIB {:>6.3}  s to kernel FIB {:>6}",
            f.established_secs,
            f.rib_secs,
            f.fib_secs.map_or("-".to_string(), |s| format!("{s:.3}")),
        );
    }
}
