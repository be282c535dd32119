#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{DecodeOptions, Message, OpenParams, Update, codes, decode, encode_end_of_rib};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn config() -> PeerConfig {
    PeerConfig {
        local_as: 64512,
        remote_as: 64513,
        local_id: LOCAL_ID,
        hold_time: 90,
        connect_retry: Duration::from_secs(5),
        passive: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        route_refresh: true,
        graceful_restart: None,
    }
}

fn peer_open(hold_time: u16) -> OpenParams {
    OpenParams {
        local_as: 64513,
        hold_time,
        bgp_id: PEER_ID,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        route_refresh: true,
        graceful_restart: None,
    }
}

fn open_event(params: &OpenParams) -> Event {
    Event::BgpOpen(Box::new(params.to_message()))
}

/// A session driven into `state` through the normal path.
fn session_in(state: State) -> Session {
    session_with(config(), &peer_open(180), state)
}

fn session_with(config: PeerConfig, peer: &OpenParams, state: State) -> Session {
    let now = Instant::now();
    let mut s = Session::new(config, now);
    let path = [
        (State::Connect, Event::ManualStart),
        (State::OpenSent, Event::TcpCrAcked),
        (State::OpenConfirm, open_event(peer)),
        (State::Established, Event::KeepAliveMsg),
    ];
    for (reached, event) in path {
        if s.state() == state {
            break;
        }
        s.fsm_event(event, now);
        assert_eq!(s.state(), reached, "on the way to {state:?}");
    }
    assert_eq!(s.state(), state);
    s
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Send(Outgoing::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn now() -> Instant {
    Instant::now()
}

#[test]
fn manual_start_of_an_active_peer_connects_and_starts_the_connect_retry_timer() {
    let mut s = Session::new(config(), now());
    let actions = s.fsm_event(Event::ManualStart, now());
    assert_eq!(s.state(), State::Connect);
    assert_eq!(
        actions,
        vec![
            Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5)),
            Action::Connect
        ]
    );
}

#[test]
fn automatic_start_of_a_passive_peer_waits_in_active_without_connecting() {
    let mut s = Session::new(
        PeerConfig {
            passive: true,
            ..config()
        },
        now(),
    );
    let actions = s.fsm_event(Event::AutomaticStart, now());
    assert_eq!(s.state(), State::Active);
    assert!(!actions.contains(&Action::Connect));
    // Its retry timer expiring does not make it connect either.
    let actions = s.fsm_event(Event::ConnectRetryTimerExpires, now());
    assert_eq!(s.state(), State::Active);
    assert!(!actions.contains(&Action::Connect));
}

#[test]
fn events_other_than_start_are_ignored_in_idle() {
    for event in [
        Event::ManualStop,
        Event::HoldTimerExpires,
        Event::KeepAliveMsg,
        Event::TcpConnectionFails,
        Event::ConnectRetryTimerExpires,
    ] {
        let mut s = Session::new(config(), now());
        assert_eq!(s.fsm_event(event.clone(), now()), vec![], "{event:?}");
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn connect_retry_expiry_in_connect_retries_the_connection() {
    let mut s = session_in(State::Connect);
    let actions = s.fsm_event(Event::ConnectRetryTimerExpires, now());
    assert_eq!(s.state(), State::Connect);
    assert!(actions.contains(&Action::Connect));
    assert!(actions.contains(&Action::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(5)
    )));
}

#[test]
fn tcp_failure_in_connect_falls_back_to_active() {
    let mut s = session_in(State::Connect);
    s.fsm_event(Event::TcpConnectionFails, now());
    assert_eq!(s.state(), State::Active);
    // The retry timer then makes an active peer try again.
    let actions = s.fsm_event(Event::ConnectRetryTimerExpires, now());
    assert_eq!(s.state(), State::Connect);
    assert!(actions.contains(&Action::Connect));
}

#[test]
fn an_accepted_connection_in_active_sends_open_and_sets_a_large_hold_timer() {
    let mut s = Session::new(
        PeerConfig {
            passive: true,
            ..config()
        },
        now(),
    );
    s.fsm_event(Event::AutomaticStart, now());
    let actions = s.fsm_event(Event::TcpConnectionConfirmed, now());
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(
        actions,
        vec![
            Action::StopTimer(Timer::ConnectRetry),
            Action::Send(Outgoing::Open),
            Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME),
        ]
    );
}

#[test]
fn open_in_open_sent_negotiates_the_smaller_hold_time_and_keepalive_a_third_of_it() {
    let mut s = session_in(State::OpenSent);
    let actions = s.fsm_event(open_event(&peer_open(30)), now());
    assert_eq!(s.state(), State::OpenConfirm);
    let n = s.negotiated().unwrap();
    assert_eq!(n.hold_time, Duration::from_secs(30));
    assert_eq!(n.keepalive, Duration::from_secs(10));
    assert_eq!(
        actions,
        vec![
            Action::StopTimer(Timer::ConnectRetry),
            Action::Send(Outgoing::Keepalive),
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(10)),
            Action::StartTimer(Timer::Hold, Duration::from_secs(30)),
        ]
    );
}

#[test]
fn hold_time_zero_from_the_peer_disables_keepalives_and_the_hold_timer() {
    let mut s = session_in(State::OpenSent);
    let actions = s.fsm_event(open_event(&peer_open(0)), now());
    assert_eq!(s.negotiated().unwrap().hold_time, Duration::ZERO);
    assert!(actions.contains(&Action::StopTimer(Timer::Hold)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartTimer(Timer::Keepalive | Timer::Hold, _)))
    );
    let actions = s.fsm_event(Event::KeepAliveMsg, now());
    assert_eq!(s.state(), State::Established);
    assert!(!actions.iter().any(|a| matches!(a, Action::StartTimer(..))));
}

#[test]
fn open_with_unacceptable_hold_time_is_refused_with_subcode_6() {
    for hold in [1u16, 2] {
        let mut s = session_in(State::OpenSent);
        // netgauze refuses to build such an OPEN only when parsing; construct it directly.
        let open = netgauze_bgp_pkt::open::BgpOpenMessage::new(64513, hold, PEER_ID, vec![]);
        let actions = s.fsm_event(Event::BgpOpen(Box::new(open)), now());
        assert_eq!(
            sent_notification(&actions),
            Some((2, 6)),
            "hold time {hold}"
        );
        assert_eq!(s.state(), State::Idle);
        assert!(actions.contains(&Action::Disconnect));
    }
}

#[test]
fn open_from_the_wrong_as_is_refused_with_bad_peer_as() {
    let mut s = session_in(State::OpenSent);
    let actions = s.fsm_event(
        open_event(&OpenParams {
            local_as: 65000,
            ..peer_open(90)
        }),
        now(),
    );
    assert_eq!(sent_notification(&actions), Some((2, 2)));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.connect_retry_counter(), 1);
}

#[test]
fn a_4_octet_peer_as_is_read_from_the_capability() {
    let cfg = PeerConfig {
        remote_as: 4_200_000_001,
        ..config()
    };
    let peer = OpenParams {
        local_as: 4_200_000_001,
        ..peer_open(90)
    };
    let s = session_with(cfg, &peer, State::OpenConfirm);
    let n = s.negotiated().unwrap();
    assert_eq!(n.peer_as, 4_200_000_001);
    assert!(n.four_octet_as);
}

#[test]
fn ibgp_open_with_our_own_identifier_is_refused_with_bad_bgp_identifier() {
    let cfg = PeerConfig {
        remote_as: 64512,
        ..config()
    };
    let mut s = session_with(cfg, &peer_open(90), State::OpenSent);
    let peer = OpenParams {
        local_as: 64512,
        bgp_id: LOCAL_ID,
        ..peer_open(90)
    };
    let actions = s.fsm_event(open_event(&peer), now());
    assert_eq!(sent_notification(&actions), Some((2, 3)));
}

#[test]
fn open_without_a_common_family_is_refused_with_unsupported_capability() {
    let cfg = PeerConfig {
        families: vec![Family::Ipv6Unicast],
        ..config()
    };
    let mut s = session_with(cfg, &peer_open(90), State::OpenSent);
    let peer = OpenParams {
        families: vec![Family::Ipv4Unicast],
        ..peer_open(90)
    };
    let actions = s.fsm_event(open_event(&peer), now());
    let Some(Action::Send(Outgoing::Notification(n))) = actions
        .iter()
        .find(|a| matches!(a, Action::Send(Outgoing::Notification(_))))
    else {
        panic!("no notification");
    };
    assert_eq!((n.code, n.subcode), (2, 7));
    // The data names the capability we need: MP-BGP (code 1, length 4) for AFI 2 SAFI 1.
    assert_eq!(n.data, vec![1, 4, 0, 2, 0, 1]);
}

#[test]
fn capabilities_negotiation_is_recorded_in_the_session() {
    let peer = OpenParams {
        families: vec![Family::Ipv4Unicast],
        route_refresh: false,
        graceful_restart: Some(crate::packet::GracefulRestart {
            restarting: true,
            restart_time: 120,
            forwarding_preserved: true,
        }),
        ..peer_open(90)
    };
    let s = session_with(config(), &peer, State::OpenConfirm);
    let n = s.negotiated().unwrap();
    assert_eq!(
        n.families.iter().copied().collect::<Vec<_>>(),
        vec![Family::Ipv4Unicast]
    );
    assert!(!n.route_refresh, "route refresh needs both sides");
    let gr = n.graceful_restart.as_ref().unwrap();
    assert!(gr.restarting);
    assert_eq!(gr.restart_time, Duration::from_secs(120));
    assert!(gr.forwarding_preserved.contains(&Family::Ipv4Unicast));
    assert_eq!(n.peer_id, PEER_ID);
}

#[test]
fn keepalive_in_open_confirm_establishes_the_session_and_tells_the_rib() {
    let mut s = session_in(State::OpenConfirm);
    let actions = s.fsm_event(Event::KeepAliveMsg, now());
    assert_eq!(s.state(), State::Established);
    assert!(actions.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(90))));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SessionUp(n) if n.peer_as == 64513))
    );
}

#[test]
fn hold_timer_expiry_in_established_sends_notification_hold_timer_expired_and_goes_idle() {
    let mut s = session_in(State::Established);
    let actions = s.fsm_event(Event::HoldTimerExpires, now());
    assert_eq!(s.state(), State::Idle);
    assert_eq!(
        sent_notification(&actions),
        Some((codes::HOLD_TIMER_EXPIRED, 0))
    );
    assert!(actions.contains(&Action::Disconnect));
    assert!(actions.contains(&Action::SessionDown { stale_for: None }));
    assert_eq!(
        s.last_error().map(ToString::to_string).as_deref(),
        Some("Error: Hold Timer Expired")
    );
}

#[test]
fn hold_timer_expiry_before_established_also_notifies_but_has_no_session_to_take_down() {
    for state in [State::OpenSent, State::OpenConfirm] {
        let mut s = session_in(state);
        let actions = s.fsm_event(Event::HoldTimerExpires, now());
        assert_eq!(sent_notification(&actions), Some((4, 0)), "{state:?}");
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SessionDown { .. })),
            "{state:?}"
        );
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn keepalive_timer_expiry_sends_a_keepalive_and_restarts_the_timer() {
    for state in [State::OpenConfirm, State::Established] {
        let mut s = session_in(state);
        let actions = s.fsm_event(Event::KeepaliveTimerExpires, now());
        assert_eq!(
            actions,
            vec![
                Action::Send(Outgoing::Keepalive),
                Action::StartTimer(Timer::Keepalive, Duration::from_secs(30)),
            ],
            "{state:?}"
        );
        assert_eq!(s.state(), state);
    }
}

fn an_update() -> Update {
    let bytes = encode_end_of_rib(Family::Ipv4Unicast).unwrap();
    match decode(&bytes, &DecodeOptions::default())
        .unwrap()
        .unwrap()
        .0
    {
        Message::Update(u) => u,
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_in_established_restarts_the_hold_timer_and_goes_to_the_rib() {
    let mut s = session_in(State::Established);
    let actions = s.fsm_event(Event::UpdateMsg(Box::new(an_update())), now());
    assert_eq!(
        actions[0],
        Action::StartTimer(Timer::Hold, Duration::from_secs(90))
    );
    assert!(matches!(actions[1], Action::Deliver(_)));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn messages_out_of_place_are_fsm_errors_with_the_rfc_6608_subcode() {
    let cases = [
        (State::OpenSent, Event::KeepAliveMsg, 1),
        (State::OpenSent, Event::UpdateMsg(Box::new(an_update())), 1),
        (
            State::OpenConfirm,
            Event::UpdateMsg(Box::new(an_update())),
            2,
        ),
        (State::OpenConfirm, open_event(&peer_open(90)), 2),
        (State::Established, open_event(&peer_open(90)), 3),
        (State::Established, Event::ConnectRetryTimerExpires, 3),
    ];
    for (state, event, subcode) in cases {
        let mut s = session_in(state);
        let actions = s.fsm_event(event.clone(), now());
        assert_eq!(
            sent_notification(&actions),
            Some((codes::FSM, subcode)),
            "{state:?} {event:?}"
        );
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn decode_errors_send_their_notification_and_go_idle() {
    let cases = [
        (
            State::OpenSent,
            Event::BgpHeaderErr(Notification::new(1, 2)),
        ),
        (
            State::OpenSent,
            Event::BgpOpenMsgErr(Notification::new(2, 1)),
        ),
        (
            State::Established,
            Event::UpdateMsgErr(Notification::new(3, 1)),
        ),
        (
            State::Established,
            Event::BgpHeaderErr(Notification::new(1, 1)),
        ),
    ];
    for (state, event) in cases {
        let expected = match &event {
            Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) | Event::UpdateMsgErr(n) => {
                (n.code, n.subcode)
            }
            _ => unreachable!(),
        };
        let mut s = session_in(state);
        let actions = s.fsm_event(event, now());
        assert_eq!(sent_notification(&actions), Some(expected));
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn notification_from_the_peer_drops_the_session_without_answering() {
    let mut s = session_in(State::Established);
    let cease = Notification::new(6, 2);
    let actions = s.fsm_event(Event::NotifMsg(cease.clone()), now());
    assert_eq!(sent_notification(&actions), None);
    assert!(actions.contains(&Action::SessionDown { stale_for: None }));
    assert_eq!(s.last_error(), Some(&LastError::Received(cease)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn manual_stop_sends_cease_administrative_shutdown_and_resets_the_retry_counter() {
    let mut s = session_in(State::Established);
    let actions = s.fsm_event(Event::ManualStop, now());
    assert_eq!(sent_notification(&actions), Some((6, 2)));
    assert!(actions.contains(&Action::SessionDown { stale_for: None }));
    assert_eq!(s.connect_retry_counter(), 0);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn tcp_failure_with_a_graceful_restart_peer_keeps_its_routes_stale_for_the_restart_time() {
    let peer = OpenParams {
        graceful_restart: Some(crate::packet::GracefulRestart {
            restarting: false,
            restart_time: 120,
            forwarding_preserved: true,
        }),
        ..peer_open(90)
    };
    let mut s = session_with(config(), &peer, State::Established);
    let actions = s.fsm_event(Event::TcpConnectionFails, now());
    assert!(actions.contains(&Action::SessionDown {
        stale_for: Some(Duration::from_secs(120))
    }));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn tcp_failure_in_open_sent_goes_back_to_active_and_listens() {
    let mut s = session_in(State::OpenSent);
    let actions = s.fsm_event(Event::TcpConnectionFails, now());
    assert_eq!(s.state(), State::Active);
    assert!(actions.contains(&Action::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(5)
    )));
}

#[test]
fn route_refresh_is_answered_only_for_negotiated_families() {
    let mut s = session_in(State::Established);
    assert_eq!(
        s.fsm_event(Event::RouteRefreshMsg(Family::Ipv6Unicast), now()),
        vec![Action::ResendRoutes(Family::Ipv6Unicast)]
    );
    let peer = OpenParams {
        families: vec![Family::Ipv4Unicast],
        ..peer_open(90)
    };
    let mut s = session_with(config(), &peer, State::Established);
    assert_eq!(
        s.fsm_event(Event::RouteRefreshMsg(Family::Ipv6Unicast), now()),
        vec![]
    );
}

#[test]
fn collision_keeps_the_connection_opened_by_the_higher_bgp_identifier() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 2);
    // Local ID higher: our outbound connection survives.
    assert_eq!(collision_winner(high, low), ConnectionOrigin::Outbound);
    // Local ID lower: the peer's (inbound) connection survives.
    assert_eq!(collision_winner(low, high), ConnectionOrigin::Inbound);
    // Compared as integers, not bytewise strings: 10.0.0.10 > 10.0.0.9.
    assert_eq!(
        collision_winner(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 9)),
        ConnectionOrigin::Outbound
    );
}

#[test]
fn the_collision_loser_sends_cease_collision_resolution() {
    for state in [State::OpenSent, State::OpenConfirm] {
        let mut s = session_in(state);
        let actions = s.fsm_event(Event::OpenCollisionDump, now());
        assert_eq!(sent_notification(&actions), Some((6, 7)), "{state:?}");
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn a_second_connection_does_not_disturb_an_open_session() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut s = session_in(state);
        assert_eq!(
            s.fsm_event(Event::TcpConnectionConfirmed, now()),
            vec![],
            "{state:?}"
        );
        assert_eq!(s.state(), state);
    }
}

#[test]
fn our_open_and_keepalive_encode_to_what_the_decoder_reads() {
    let s = session_in(State::OpenSent);
    let bytes = s.encode(&Outgoing::Open).unwrap();
    let Message::Open(open) = decode(&bytes, &DecodeOptions::default())
        .unwrap()
        .unwrap()
        .0
    else {
        panic!("not an open");
    };
    assert_eq!(open.bgp_id(), LOCAL_ID);
    assert_eq!(open.my_asn4(), 64512);
    assert_eq!(s.encode(&Outgoing::Keepalive).unwrap().len(), 19);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn any_event() -> impl Strategy<Value = Event> {
        let opens = prop_oneof![
            Just(peer_open(90)),
            Just(peer_open(0)),
            Just(OpenParams {
                local_as: 65000,
                ..peer_open(90)
            }),
            Just(OpenParams {
                families: vec![],
                ..peer_open(3)
            }),
        ];
        prop_oneof![
            Just(Event::ManualStart),
            Just(Event::ManualStop),
            Just(Event::AutomaticStart),
            Just(Event::AutomaticStop),
            Just(Event::ConnectRetryTimerExpires),
            Just(Event::HoldTimerExpires),
            Just(Event::KeepaliveTimerExpires),
            Just(Event::TcpCrAcked),
            Just(Event::TcpConnectionConfirmed),
            Just(Event::TcpConnectionFails),
            opens.prop_map(|o| open_event(&o)),
            Just(Event::BgpHeaderErr(Notification::new(1, 1))),
            Just(Event::BgpOpenMsgErr(Notification::new(2, 2))),
            Just(Event::OpenCollisionDump),
            Just(Event::NotifMsgVerErr),
            Just(Event::NotifMsg(Notification::new(6, 2))),
            Just(Event::KeepAliveMsg),
            Just(Event::UpdateMsg(Box::new(an_update()))),
            Just(Event::UpdateMsgErr(Notification::new(3, 1))),
            Just(Event::RouteRefreshMsg(Family::Ipv4Unicast)),
        ]
    }

    proptest! {
        /// Whatever the order of events: the session is Established exactly
        /// between one SessionUp and one SessionDown, negotiation results
        /// exist from OpenConfirm on, and nothing reaches the RIB otherwise.
        #[test]
        fn any_event_sequence_keeps_the_session_consistent(
            passive in any::<bool>(),
            events in proptest::collection::vec(any_event(), 0..60),
        ) {
            let now = Instant::now();
            let mut s = Session::new(PeerConfig { passive, ..config() }, now);
            let mut up = false;
            for event in events {
                let before = s.state();
                let actions = s.fsm_event(event, now);
                let ups = actions.iter().filter(|a| matches!(a, Action::SessionUp(_))).count();
                let downs = actions.iter().filter(|a| matches!(a, Action::SessionDown { .. })).count();
                let delivers = actions.iter().any(|a| matches!(a, Action::Deliver(_)));
                if ups == 1 {
                    prop_assert!(!up);
                    up = true;
                }
                if downs == 1 {
                    prop_assert!(up);
                    prop_assert_eq!(before, State::Established);
                    up = false;
                }
                prop_assert!(ups <= 1 && downs <= 1);
                prop_assert!(!delivers || s.state() == State::Established);
                prop_assert_eq!(up, s.state() == State::Established);
                prop_assert_eq!(
                    s.negotiated().is_some(),
                    matches!(s.state(), State::OpenConfirm | State::Established)
                );
                if passive {
                    prop_assert!(!actions.contains(&Action::Connect));
                }
            }
        }
    }
}
