#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::Ipv4Net;
use netgauze_bgp_pkt::path_attribute::Origin;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::packet::{OpenParams, RouteAttributes, encode_keepalive, encode_open, encode_update_v4};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// More UPDATEs than [`READS_IN_FLIGHT`] reads can hold (about 1 MB).
const FEED: usize = 20_000;

fn config() -> PeerConfig {
    PeerConfig {
        local_as: 64512,
        remote_as: 64512,
        local_id: Ipv4Addr::new(10, 0, 0, 1),
        hold_time: 90,
        connect_retry: Duration::from_millis(200),
        passive: false,
        families: vec![Family::Ipv4Unicast],
        route_refresh: true,
        graceful_restart: None,
    }
}

/// The `i`th prefix of the feed: /24s counted up from 100.64.0.0.
fn prefix(i: usize) -> Ipv4Net {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let i = u32::try_from(i).unwrap();
    Ipv4Net::new(Ipv4Addr::from(base + (i << 8)), 24).unwrap()
}

/// FEED UPDATEs of one prefix each, back to back.
fn feed() -> Vec<u8> {
    let attrs = RouteAttributes {
        origin: Origin::IGP,
        as_path: vec![],
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop_v6: None,
        next_hop_v6_link_local: None,
        med: None,
        local_pref: Some(100),
        communities: vec![],
    };
    (0..FEED)
        .flat_map(|i| encode_update_v4(&[prefix(i)], &[], &attrs, true).unwrap())
        .collect()
}

async fn next(rib: &mut UnboundedReceiver<RibMsg>, wait: Duration) -> Option<RibMsg> {
    tokio::time::timeout(wait, rib.recv()).await.ok().flatten()
}

/// The prefixes of a batch, in order.
fn prefixes(msg: &RibMsg) -> Vec<Ipv4Net> {
    let RibMsg::Updates { updates, .. } = msg else {
        panic!("not a batch of UPDATEs: {msg:?}");
    };
    updates.iter().flat_map(Update::announced_v4).collect()
}

#[tokio::test]
async fn batched_updates_keep_their_order_and_a_held_back_rib_stops_the_reads() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (speaker, mut rib) = Speaker::start_batched(None);
    speaker.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port,
        local_address: None,
        ttl_security: None,
        config: config(),
    })));
    let (mut stream, _) = listener.accept().await.unwrap();
    let open = OpenParams {
        local_as: 64512,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(10, 0, 0, 9),
        families: vec![Family::Ipv4Unicast],
        route_refresh: false,
        graceful_restart: None,
    };
    stream
        .write_all(&encode_open(&open).unwrap())
        .await
        .unwrap();
    stream.write_all(&encode_keepalive()).await.unwrap();
    let up = next(&mut rib, Duration::from_secs(10)).await;
    assert!(matches!(up, Some(RibMsg::Up { .. })), "{up:?}");

    let bytes = feed();
    let writer = tokio::spawn(async move {
        stream.write_all(&bytes).await.unwrap();
        stream
    });

    // Held, not dropped: after READS_IN_FLIGHT batches the connection has
    // no credit left to read on, and nothing more comes.
    let mut held = Vec::new();
    while held.len() < READS_IN_FLIGHT {
        let msg = next(&mut rib, Duration::from_secs(10)).await;
        held.push(msg.expect("a batch while credit is left"));
    }
    let more = next(&mut rib, Duration::from_millis(300)).await;
    assert!(more.is_none(), "read on without credit: {more:?}");
    let first: Vec<Ipv4Net> = held.iter().flat_map(prefixes).collect();
    assert!(first.len() < FEED, "all {FEED} read without credit");
    assert!(first.len() > READS_IN_FLIGHT, "one UPDATE per batch");

    // Dropping the batches lets the rest of the feed through.
    drop(held);
    let mut all = first;
    while all.len() < FEED {
        let msg = next(&mut rib, Duration::from_secs(10))
            .await
            .expect("the rest of the feed once the batches are dropped");
        all.extend(prefixes(&msg));
    }
    let sent: Vec<Ipv4Net> = (0..FEED).map(prefix).collect();
    assert_eq!(all, sent);
    let _stream = writer.await.unwrap();
}
