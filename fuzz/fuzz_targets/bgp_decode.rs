//! Any byte stream, read as what a peer sends on one connection: decoding
//! never panics, every error yields a NOTIFICATION that itself encodes and
//! decodes back unchanged, and the session FSM accepts whatever events the
//! decoded stream produces.

#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_speaker::fsm::{Event, PeerConfig, Session, State};
use bgp_speaker::packet::{self, DecodeOptions, Family, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut stream)) = data.split_first() else {
        return;
    };
    let options = DecodeOptions {
        four_octet_as: flags & 1 != 0,
        ibgp: flags & 2 != 0,
    };
    let now = Instant::now();
    let mut session = Session::new(
        PeerConfig {
            local_as: 64512,
            remote_as: if options.ibgp { 64512 } else { 64513 },
            local_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            passive: flags & 4 != 0,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            route_refresh: true,
            graceful_restart: None,
        },
        now,
    );
    session.fsm_event(Event::AutomaticStart, now);
    session.fsm_event(Event::TcpConnectionConfirmed, now);

    while !stream.is_empty() && session.state() != State::Idle {
        let decoded = match packet::decode(stream, &options) {
            Ok(None) => break,
            Ok(Some((message, used))) => {
                assert!(used >= packet::HEADER_LEN && used <= stream.len());
                stream = &stream[used..];
                if let Message::Update(update) = &message {
                    let _ = (update.announced_v4(), update.withdrawn_v4());
                    let _ = (
                        update.announced_v6(),
                        update.withdrawn_v6(),
                        update.end_of_rib(),
                    );
                }
                Ok(message)
            }
            Err(error) => {
                let notification = error.notification();
                let bytes = packet::encode_notification(&notification);
                let back = packet::decode(&bytes, &options).expect("our notification decodes");
                assert_eq!(
                    back.map(|(m, _)| m),
                    Some(Message::Notification(notification))
                );
                stream = &[];
                Err(error)
            }
        };
        if let Some(event) = Event::from_decoded(decoded) {
            session.fsm_event(event, now);
        }
    }
});
