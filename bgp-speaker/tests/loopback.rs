//! Two Twill speakers over loopback (no root needed): a passive listener and
//! an active peer reach Established over iBGP, an UPDATE crosses, and a
//! ManualStop on one side takes the other down with Cease.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_speaker::fsm::{PeerConfig, State};
use bgp_speaker::packet::{Family, RouteAttributes, encode_update_v4};
use bgp_speaker::speaker::{Command, PeerSpec, RibMsg, Speaker};
use netgauze_bgp_pkt::path_attribute::Origin;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(local_id: Ipv4Addr, passive: bool, hold_time: u16) -> PeerConfig {
    PeerConfig {
        local_as: 64512,
        remote_as: 64512,
        local_id,
        hold_time,
        connect_retry: Duration::from_millis(200),
        passive,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        route_refresh: true,
        graceful_restart: None,
    }
}

async fn next(rib: &mut UnboundedReceiver<RibMsg>) -> RibMsg {
    tokio::time::timeout(Duration::from_secs(10), rib.recv())
        .await
        .expect("a rib message within 10 s")
        .expect("speaker running")
}

#[tokio::test]
async fn passive_and_active_twill_speakers_establish_exchange_an_update_and_cease() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (passive, mut passive_rib) = Speaker::start(Some(listener));
    let (active, mut active_rib) = Speaker::start(None);
    passive.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port: 179,
        local_address: None,
        ttl_security: None,
        config: config(Ipv4Addr::new(10, 0, 0, 1), true, 30),
    })));
    active.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port,
        local_address: Some(LOOPBACK),
        ttl_security: None,
        config: config(Ipv4Addr::new(10, 0, 0, 2), false, 90),
    })));

    let RibMsg::Up { negotiated, .. } = next(&mut passive_rib).await else {
        panic!("passive side not up first");
    };
    assert_eq!(
        negotiated.hold_time,
        Duration::from_secs(30),
        "the smaller hold time"
    );
    assert_eq!(negotiated.keepalive, Duration::from_secs(10));
    assert_eq!(negotiated.peer_id, Ipv4Addr::new(10, 0, 0, 2));
    let RibMsg::Up { negotiated, .. } = next(&mut active_rib).await else {
        panic!("active side not up");
    };
    assert_eq!(negotiated.hold_time, Duration::from_secs(30));
    assert!(negotiated.route_refresh);
    assert_eq!(active.status().await, vec![(LOOPBACK, State::Established)]);

    let attrs = RouteAttributes {
        origin: Origin::IGP,
        as_path: vec![],
        next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 2)),
        next_hop_v6: None,
        next_hop_v6_link_local: None,
        med: None,
        local_pref: Some(100),
        communities: vec![],
    };
    let block = ["10.244.7.0/26".parse().unwrap()];
    let message = encode_update_v4(&block, &[], &attrs, true).unwrap();
    assert!(active.command(Command::SendUpdate {
        peer: LOOPBACK,
        message
    }));
    let RibMsg::Update { update, .. } = next(&mut passive_rib).await else {
        panic!("no update");
    };
    assert_eq!(update.announced_v4(), block);
    assert!(update.problems.is_empty(), "{:?}", update.problems);

    active.command(Command::RemovePeer(LOOPBACK));
    let RibMsg::Down { stale_for, .. } = next(&mut passive_rib).await else {
        panic!("passive side did not go down");
    };
    assert_eq!(stale_for, None, "a Cease flushes routes");
    let states = passive.status().await;
    assert!(
        matches!(states.as_slice(), [(_, State::Idle | State::Active)]),
        "{states:?}"
    );
}

/// A scripted peer that completes the OPEN exchange, then falls silent.
#[tokio::test]
async fn a_silent_peer_is_dropped_with_hold_timer_expired_after_the_negotiated_hold_time() {
    use bgp_speaker::packet::{
        DecodeOptions, Message, OpenParams, decode, encode_keepalive, encode_open,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (speaker, mut rib) = Speaker::start(None);
    speaker.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port,
        local_address: None,
        ttl_security: None,
        config: config(Ipv4Addr::new(10, 0, 0, 1), false, 90),
    })));
    let (mut stream, _) = listener.accept().await.unwrap();
    let open = OpenParams {
        local_as: 64512,
        hold_time: 3,
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
    let started = tokio::time::Instant::now();

    let RibMsg::Up { negotiated, .. } = next(&mut rib).await else {
        panic!("not up");
    };
    assert_eq!(negotiated.hold_time, Duration::from_secs(3));
    let RibMsg::Down { .. } = next(&mut rib).await else {
        panic!("not down");
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(5),
        "dropped after {elapsed:?}"
    );

    // What the speaker sent: OPEN, KEEPALIVE(s), then NOTIFICATION 4/0.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut received)).await;
    let mut messages = Vec::new();
    let mut rest = received.as_slice();
    while let Ok(Some((message, used))) = decode(rest, &DecodeOptions::default()) {
        messages.push(message);
        rest = &rest[used..];
    }
    assert!(
        matches!(messages.first(), Some(Message::Open(_))),
        "{messages:?}"
    );
    let Some(Message::Notification(n)) = messages.last() else {
        panic!("no notification last: {messages:?}");
    };
    assert_eq!((n.code, n.subcode), (4, 0));
}

/// Both sides active and listening, started together: however their
/// connection attempts race, exactly one session comes up and stays.
#[tokio::test]
async fn two_active_speakers_converge_on_one_established_session() {
    let listener_a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let listener_b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port_a = listener_a.local_addr().unwrap().port();
    let port_b = listener_b.local_addr().unwrap().port();
    let (a, mut rib_a) = Speaker::start(Some(listener_a));
    let (b, mut rib_b) = Speaker::start(Some(listener_b));
    a.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port: port_b,
        local_address: Some(LOOPBACK),
        ttl_security: None,
        config: config(Ipv4Addr::new(10, 0, 0, 1), false, 90),
    })));
    b.command(Command::AddPeer(Box::new(PeerSpec {
        address: LOOPBACK,
        port: port_a,
        local_address: Some(LOOPBACK),
        ttl_security: None,
        config: config(Ipv4Addr::new(10, 0, 0, 2), false, 90),
    })));
    assert!(matches!(next(&mut rib_a).await, RibMsg::Up { .. }));
    assert!(matches!(next(&mut rib_b).await, RibMsg::Up { .. }));
    // And it stays up: no second session replaces or tears down the first.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rib_a.try_recv().is_err(), "unexpected rib message on a");
    assert!(rib_b.try_recv().is_err(), "unexpected rib message on b");
    assert_eq!(a.status().await, vec![(LOOPBACK, State::Established)]);
    assert_eq!(b.status().await, vec![(LOOPBACK, State::Established)]);
}

/// Reads messages from a scripted peer's connection until `want` matches one.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    want: impl Fn(&bgp_speaker::packet::Message) -> bool,
) -> bgp_speaker::packet::Message {
    use bgp_speaker::packet::{DecodeOptions, decode};
    use tokio::io::AsyncReadExt;
    loop {
        while let Ok(Some((message, used))) = decode(buf, &DecodeOptions::default()) {
            buf.drain(..used);
            if want(&message) {
                return message;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a message within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed while waiting");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A scripted peer opens a second connection while ours is in OpenSent, then
/// sends OPEN on both: the connection opened by the higher BGP identifier
/// survives, the other gets Cease/Connection Collision Resolution (6/7).
#[tokio::test]
async fn a_connection_collision_keeps_the_connection_of_the_higher_bgp_identifier() {
    use bgp_speaker::packet::{Message, OpenParams, encode_keepalive, encode_open};
    use tokio::io::AsyncWriteExt;

    for (peer_id, survivor) in [
        (Ipv4Addr::new(10, 0, 0, 9), "theirs"),
        (Ipv4Addr::new(10, 0, 0, 0), "ours"),
    ] {
        let ours = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let our_port = ours.local_addr().unwrap().port();
        let theirs = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let their_port = theirs.local_addr().unwrap().port();
        let (speaker, mut rib) = Speaker::start(Some(ours));
        speaker.command(Command::AddPeer(Box::new(PeerSpec {
            address: LOOPBACK,
            port: their_port,
            local_address: None,
            ttl_security: None,
            config: config(Ipv4Addr::new(10, 0, 0, 1), false, 90),
        })));
        // Connection 1: opened by the speaker.
        let (mut c1, _) = theirs.accept().await.unwrap();
        let mut buf1 = Vec::new();
        read_until(&mut c1, &mut buf1, |m| matches!(m, Message::Open(_))).await;
        // Connection 2: opened by the peer.
        let mut c2 = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, our_port))
            .await
            .unwrap();
        let mut buf2 = Vec::new();
        read_until(&mut c2, &mut buf2, |m| matches!(m, Message::Open(_))).await;

        let open = encode_open(&OpenParams {
            local_as: 64512,
            hold_time: 90,
            bgp_id: peer_id,
            families: vec![Family::Ipv4Unicast],
            route_refresh: false,
            graceful_restart: None,
        })
        .unwrap();
        c1.write_all(&open).await.unwrap();
        c2.write_all(&open).await.unwrap();
        let (mut keep, mut keep_buf, mut lose, mut lose_buf) = if survivor == "theirs" {
            (c2, buf2, c1, buf1)
        } else {
            (c1, buf1, c2, buf2)
        };
        let cease = read_until(&mut lose, &mut lose_buf, |m| {
            matches!(m, Message::Notification(_))
        })
        .await;
        let Message::Notification(cease) = cease else {
            unreachable!()
        };
        assert_eq!((cease.code, cease.subcode), (6, 7), "survivor {survivor}");
        read_until(&mut keep, &mut keep_buf, |m| {
            matches!(m, Message::Keepalive)
        })
        .await;
        keep.write_all(&encode_keepalive()).await.unwrap();
        assert!(
            matches!(next(&mut rib).await, RibMsg::Up { .. }),
            "survivor {survivor}"
        );
        assert_eq!(
            speaker.status().await,
            vec![(LOOPBACK, State::Established)],
            "survivor {survivor}"
        );
    }
}
