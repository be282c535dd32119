//! The session state machine driven by arbitrary input: the bytes choose a
//! peering (iBGP or eBGP, passive, graceful restart, hold time), then a
//! sequence of operations — RFC 4271 administrative, TCP and timer events,
//! time passing, a valid OPEN from the peer (so that Established is reached
//! often), or a length-prefixed frame decoded as the peer's next message.
//! `Session::fsm_event` must never panic, and what it reports must agree
//! with the state it ends in.
//!
//!   cargo +nightly fuzz run bgp_fsm

#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_speaker::fsm::{Action, Event, PeerConfig, Session, State};
use bgp_speaker::packet::{self, Family, GracefulRestart, OpenParams};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz input front to back.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

const LOCAL_AS: u32 = 64512;

fn families(bits: u8) -> Vec<Family> {
    let mut out = Vec::new();
    if bits & 1 != 0 {
        out.push(Family::Ipv4Unicast);
    }
    if bits & 2 != 0 {
        out.push(Family::Ipv6Unicast);
    }
    out
}

/// A well-formed OPEN from the peer, shaped by one byte of input.
fn peer_open(config: &PeerConfig, shape: u8) -> Vec<u8> {
    let params = OpenParams {
        // A wrong AS now and then exercises the Bad Peer AS path.
        local_as: if shape & 0x80 != 0 {
            config.remote_as + 1
        } else {
            config.remote_as
        },
        hold_time: [0, 3, 9, 90][usize::from(shape & 3)],
        bgp_id: Ipv4Addr::new(198, 51, 100, 1 + (shape >> 4 & 1)),
        families: families(shape >> 2 & 3),
        route_refresh: shape & 0x20 != 0,
        graceful_restart: (shape & 0x40 != 0).then_some(GracefulRestart {
            restarting: shape & 1 != 0,
            restart_time: 120,
            forwarding_preserved: true,
        }),
    };
    packet::encode_open(&params).expect("a well-formed OPEN encodes")
}

fn check(session: &Session, actions: &[Action]) {
    for action in actions {
        match action {
            Action::SessionUp(_) | Action::Deliver(_) | Action::ResendRoutes(_) => assert_eq!(
                session.state(),
                State::Established,
                "{action:?} outside Established"
            ),
            Action::StartTimer(_, duration) => assert!(
                *duration > Duration::ZERO,
                "timer started with zero duration"
            ),
            _ => {}
        }
    }
    if session.state() == State::Established {
        assert!(
            session.negotiated().is_some(),
            "Established without negotiated parameters"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(flags) = input.byte() else {
        return;
    };
    let hold = input.byte().unwrap_or(90);
    let mut now = Instant::now();
    let config = PeerConfig {
        local_as: LOCAL_AS,
        remote_as: if flags & 1 != 0 {
            LOCAL_AS
        } else {
            4_200_000_001
        },
        local_id: Ipv4Addr::new(192, 0, 2, 1),
        // 0, or at least 3 (what the configuration allows).
        hold_time: if hold < 3 { 0 } else { u16::from(hold) },
        connect_retry: Duration::from_secs(5),
        passive: flags & 2 != 0,
        families: families(flags >> 2 & 3),
        route_refresh: flags & 0x10 != 0,
        graceful_restart: (flags & 0x20 != 0).then_some(GracefulRestart {
            restarting: flags & 0x40 != 0,
            restart_time: 120,
            forwarding_preserved: flags & 0x80 != 0,
        }),
    };
    let mut session = Session::new(config.clone(), now);
    while let Some(op) = input.byte() {
        let event = match op % 16 {
            0 => Event::ManualStart,
            1 => Event::ManualStop,
            2 => Event::AutomaticStart,
            3 => Event::AutomaticStop,
            4 => Event::ConnectRetryTimerExpires,
            5 => Event::HoldTimerExpires,
            6 => Event::KeepaliveTimerExpires,
            7 => Event::TcpCrAcked,
            8 => Event::TcpConnectionConfirmed,
            9 => Event::TcpConnectionFails,
            10 => Event::OpenCollisionDump,
            11 => {
                now += Duration::from_millis(u64::from(op >> 4) * 997);
                continue;
            }
            12 => {
                let open = peer_open(&config, input.byte().unwrap_or(0));
                match Event::from_decoded(
                    packet::decode(&open, &session.decode_options())
                        .map(|m| m.expect("a whole message").0),
                ) {
                    Some(event) => event,
                    None => continue,
                }
            }
            13 => Event::KeepAliveMsg,
            _ => {
                // A frame: two length octets, then that many bytes (or what is left).
                let high = input.byte().unwrap_or(0);
                let low = input.byte().unwrap_or(0);
                let frame = input.take(usize::from(u16::from_be_bytes([high, low])));
                let decoded = match packet::decode(frame, &session.decode_options()) {
                    Ok(None) => continue,
                    Ok(Some((message, used))) => {
                        assert!(used >= packet::HEADER_LEN && used <= frame.len());
                        Ok(message)
                    }
                    Err(error) => Err(error),
                };
                match Event::from_decoded(decoded) {
                    Some(event) => event,
                    None => continue,
                }
            }
        };
        let actions = session.fsm_event(event, now);
        check(&session, &actions);
        for action in &actions {
            if let Action::Send(message) = action {
                // Whatever the FSM asks us to send must encode.
                let bytes = session
                    .encode(message)
                    .expect("the FSM only asks for encodable messages");
                assert!(bytes.len() >= packet::HEADER_LEN);
            }
        }
    }
});
