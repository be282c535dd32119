//! The BGP finite state machine of RFC 4271 §8, without I/O.
//!
//! One [`Session`] runs one connection's FSM. The caller feeds it [`Event`]s
//! (decoded messages, TCP outcomes, timer expiries) through
//! [`Session::fsm_event`] and carries out the [`Action`]s it returns: send a
//! message, start or stop a timer, connect, drop the connection, tell the RIB
//! the session went up or down. Timers are the caller's: the FSM names them
//! and says how long they run.
//!
//! ```text
//!             ManualStart/AutomaticStart
//!   +------+  (active) ------------------> +---------+
//!   | Idle |                               | Connect |--TCP fails--+
//!   +------+  (passive) ---------------+   +---------+             |
//!      ^                               |        | TCP up           v
//!      | errors, NOTIFICATION,         +------------------------> +--------+
//!      | hold timer, ManualStop                 | TCP up          | Active |
//!      |                                        v                 +--------+
//!      |                                  +----------+  TCP up       |
//!      +----------------------------------| OpenSent |<--------------+
//!      |                                  +----------+
//!      |                                        | OPEN ok: send KEEPALIVE
//!      |                                        v
//!      |                                +-------------+
//!      +--------------------------------| OpenConfirm |
//!      |                                +-------------+
//!      |                                        | KEEPALIVE
//!      |                                        v
//!      |                                +-------------+
//!      +--------------------------------| Established |  UPDATE, KEEPALIVE,
//!                                       +-------------+  keepalive timer
//! ```
//!
//! Simplifications, each deliberate: DelayOpen, IdleHold damping and the
//! optional TcpConnection_Valid/Invalid events are not modelled; a passive peer
//! (configuration, not events 4/5) never initiates a connection; collision
//! detection across the two connections of one peer is the caller's (see
//! [`collision_winner`]), which delivers [`Event::OpenCollisionDump`] to the
//! loser.

mod negotiate;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use negotiate::{
    ConnectionOrigin, Negotiated, PeerGracefulRestart, collision_winner, negotiate,
};

use netgauze_bgp_pkt::open::BgpOpenMessage;

use crate::packet::{
    DecodeError, DecodeOptions, EncodeError, Family, GracefulRestart, Message, Notification,
    OpenParams, Update, codes, encode_keepalive, encode_notification, encode_open,
};

/// The hold timer set while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// FSM states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections; waits for a start event.
    Idle,
    /// Waiting for an outgoing TCP connection to complete.
    Connect,
    /// Waiting for the peer to connect (or for the ConnectRetry timer).
    Active,
    /// OPEN sent, waiting for the peer's OPEN.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Routes are exchanged.
    Established,
}

/// The FSM's timers (RFC 4271 §8); the caller runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer.
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
}

/// FSM input events, numbered as in RFC 4271 §8.1.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Event 1: ManualStart.
    ManualStart,
    /// Event 2: ManualStop (the operator or a configuration change).
    ManualStop,
    /// Event 3: AutomaticStart (restart after an error or at boot).
    AutomaticStart,
    /// Event 8: AutomaticStop (e.g. too many prefixes).
    AutomaticStop,
    /// Event 9: ConnectRetryTimer_Expires.
    ConnectRetryTimerExpires,
    /// Event 10: HoldTimer_Expires.
    HoldTimerExpires,
    /// Event 11: KeepaliveTimer_Expires.
    KeepaliveTimerExpires,
    /// Event 16: Tcp_CR_Acked (our outgoing connection completed).
    TcpCrAcked,
    /// Event 17: TcpConnectionConfirmed (the peer's incoming connection was accepted).
    TcpConnectionConfirmed,
    /// Event 18: TcpConnectionFails.
    TcpConnectionFails,
    /// Event 19: BGPOpen (a valid OPEN was received).
    BgpOpen(Box<BgpOpenMessage>),
    /// Event 21: BGPHeaderErr, with the NOTIFICATION it calls for.
    BgpHeaderErr(Notification),
    /// Event 22: BGPOpenMsgErr, with the NOTIFICATION it calls for.
    BgpOpenMsgErr(Notification),
    /// Event 23: OpenCollisionDump (this connection lost a collision).
    OpenCollisionDump,
    /// Event 24: NotifMsgVerErr (a NOTIFICATION about an unsupported version).
    NotifMsgVerErr,
    /// Event 25: NotifMsg.
    NotifMsg(Notification),
    /// Event 26: KeepAliveMsg.
    KeepAliveMsg,
    /// Event 27: UpdateMsg.
    UpdateMsg(Box<Update>),
    /// Event 28: UpdateMsgErr, with the NOTIFICATION it calls for.
    UpdateMsgErr(Notification),
    /// ROUTE-REFRESH received (RFC 2918; not an RFC 4271 event).
    RouteRefreshMsg(Family),
}

impl Event {
    /// The event for what the decoder made of the next message: a message
    /// event (19, 24–27), or the error event (21, 22, 28) carrying the
    /// NOTIFICATION to send. `None` for a ROUTE-REFRESH of a family Twill
    /// does not speak, which RFC 2918 §4 says to ignore.
    pub fn from_decoded(decoded: Result<Message, DecodeError>) -> Option<Event> {
        Some(match decoded {
            Ok(Message::Open(open)) => Event::BgpOpen(Box::new(open)),
            Ok(Message::Update(update)) => Event::UpdateMsg(Box::new(update)),
            Ok(Message::Notification(n))
                if n.code == codes::OPEN_MESSAGE && n.subcode == codes::UNSUPPORTED_VERSION =>
            {
                Event::NotifMsgVerErr
            }
            Ok(Message::Notification(n)) => Event::NotifMsg(n),
            Ok(Message::Keepalive) => Event::KeepAliveMsg,
            Ok(Message::RouteRefresh(rr)) => Event::RouteRefreshMsg(rr.family()?),
            Err(error) if error.is_header_error() => Event::BgpHeaderErr(error.notification()),
            Err(error @ DecodeError::Open(_)) => Event::BgpOpenMsgErr(error.notification()),
            Err(error) => Event::UpdateMsgErr(error.notification()),
        })
    }
}

/// Messages the FSM asks the caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Our OPEN (see [`Session::open_params`]).
    Open,
    /// KEEPALIVE.
    Keepalive,
    /// NOTIFICATION.
    Notification(Notification),
}

/// What the caller must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Initiate a TCP connection to the peer.
    Connect,
    /// Close the TCP connection (after sending what precedes this action).
    Disconnect,
    /// Send a message.
    Send(Outgoing),
    /// (Re)start a timer.
    StartTimer(Timer, Duration),
    /// Stop a timer.
    StopTimer(Timer),
    /// The session is Established: the RIB may send to and accept from the peer.
    SessionUp(Box<Negotiated>),
    /// The session left Established. The RIB drops the peer's routes, or,
    /// when `stale_for` is set (the peer announced graceful restart and the
    /// session ended without a NOTIFICATION, RFC 4724 §4.2), keeps them as
    /// stale for that long or until the peer's End-of-RIB.
    SessionDown {
        /// How long to keep the peer's routes as stale.
        stale_for: Option<Duration>,
    },
    /// An UPDATE for the RIB.
    Deliver(Box<Update>),
    /// The peer asked for our routes of this family again.
    ResendRoutes(Family),
}

/// Configuration of one peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Our AS.
    pub local_as: u32,
    /// The peer's AS; equal to `local_as` for iBGP.
    pub remote_as: u32,
    /// Our BGP identifier.
    pub local_id: Ipv4Addr,
    /// Hold time we propose, in seconds (0, or at least 3).
    pub hold_time: u16,
    /// ConnectRetry timer.
    pub connect_retry: Duration,
    /// Wait for the peer to connect; never initiate.
    pub passive: bool,
    /// Families we announce.
    pub families: Vec<Family>,
    /// Announce route refresh.
    pub route_refresh: bool,
    /// Announce graceful restart.
    pub graceful_restart: Option<GracefulRestart>,
}

impl PeerConfig {
    /// True when the peer is in our AS.
    pub const fn is_ibgp(&self) -> bool {
        self.local_as == self.remote_as
    }
}

/// One connection's FSM and what it has learned.
#[derive(Debug, Clone)]
pub struct Session {
    config: PeerConfig,
    state: State,
    since: Instant,
    connect_retry_counter: u32,
    negotiated: Option<Negotiated>,
    last_error: Option<LastError>,
}

/// Why a session last went down: the NOTIFICATION this speaker sent, or
/// the one the peer sent. Shown in `twill node status` the way BIRD shows
/// it ("Error: Hold Timer Expired", "Received: Cease: Peer De-configured").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastError {
    /// This speaker sent it.
    Sent(Notification),
    /// The peer sent it.
    Received(Notification),
}

impl LastError {
    /// The NOTIFICATION, whoever sent it.
    pub const fn notification(&self) -> &Notification {
        match self {
            Self::Sent(n) | Self::Received(n) => n,
        }
    }
}

impl std::fmt::Display for LastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sent(n) => write!(f, "Error: {n}"),
            Self::Received(n) => write!(f, "Received: {n}"),
        }
    }
}

impl Session {
    /// A session in Idle.
    pub fn new(config: PeerConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Idle,
            since: now,
            connect_retry_counter: 0,
            negotiated: None,
            last_error: None,
        }
    }

    /// The current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered.
    pub const fn since(&self) -> Instant {
        self.since
    }

    /// RFC 4271's ConnectRetryCounter: failed attempts since the last ManualStart/Stop.
    pub const fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// What was negotiated, from OpenConfirm on.
    pub const fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The last NOTIFICATION sent or received when the session went down.
    pub const fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }

    /// The configuration.
    pub const fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// What the decoder should assume for this session's messages.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            four_octet_as: self.negotiated.as_ref().is_none_or(|n| n.four_octet_as),
            ibgp: self.config.is_ibgp(),
        }
    }

    /// The content of our OPEN.
    pub fn open_params(&self) -> OpenParams {
        OpenParams {
            local_as: self.config.local_as,
            hold_time: self.config.hold_time,
            bgp_id: self.config.local_id,
            families: self.config.families.clone(),
            route_refresh: self.config.route_refresh,
            graceful_restart: self.config.graceful_restart,
        }
    }

    /// The wire bytes of an outgoing message.
    pub fn encode(&self, message: &Outgoing) -> Result<Vec<u8>, EncodeError> {
        match message {
            Outgoing::Open => encode_open(&self.open_params()),
            Outgoing::Keepalive => Ok(encode_keepalive()),
            Outgoing::Notification(n) => Ok(encode_notification(n)),
        }
    }

    fn go(&mut self, state: State, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    /// Leaves for Idle after an error: stop timers, send `notification` if
    /// any, drop the connection, count the failure.
    fn fail(&mut self, notification: Option<Notification>, now: Instant) -> Vec<Action> {
        self.down(notification, None, now)
    }

    /// As [`fail`](Self::fail), also recording a NOTIFICATION received from the peer.
    fn down(
        &mut self,
        notification: Option<Notification>,
        received: Option<Notification>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = vec![
            Action::StopTimer(Timer::ConnectRetry),
            Action::StopTimer(Timer::Hold),
            Action::StopTimer(Timer::Keepalive),
        ];
        if let Some(n) = &notification {
            actions.push(Action::Send(Outgoing::Notification(n.clone())));
        }
        actions.push(Action::Disconnect);
        if self.state == State::Established {
            let quiet = notification.is_none() && received.is_none();
            let stale_for = self
                .negotiated
                .as_ref()
                .and_then(|n| n.graceful_restart.as_ref())
                .filter(|_| quiet)
                .map(|gr| gr.restart_time);
            actions.push(Action::SessionDown { stale_for });
        }
        if let Some(error) = notification
            .map(LastError::Sent)
            .or(received.map(LastError::Received))
        {
            self.last_error = Some(error);
        }
        self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        self.negotiated = None;
        self.go(State::Idle, now);
        actions
    }

    /// ManualStop: Cease/Administrative Shutdown, counter reset.
    fn stop(&mut self, now: Instant) -> Vec<Action> {
        let notify = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
        .then(|| Notification::new(codes::CEASE, codes::CEASE_ADMIN_SHUTDOWN));
        let actions = self.fail(notify, now);
        self.connect_retry_counter = 0;
        actions
    }

    /// The TCP connection is up: send OPEN, wait for the peer's.
    fn connected(&mut self, now: Instant) -> Vec<Action> {
        self.go(State::OpenSent, now);
        vec![
            Action::StopTimer(Timer::ConnectRetry),
            Action::Send(Outgoing::Open),
            Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME),
        ]
    }

    fn retry_timer(&self) -> Action {
        Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry)
    }

    /// Restarts the hold timer after a KEEPALIVE or UPDATE (none when hold time is 0).
    fn hold_restart(&self) -> Vec<Action> {
        match &self.negotiated {
            Some(n) if !n.hold_time.is_zero() => vec![Action::StartTimer(Timer::Hold, n.hold_time)],
            _ => Vec::new(),
        }
    }

    fn unexpected(&mut self, now: Instant) -> Vec<Action> {
        // RFC 6608 subcodes name the state the message was unexpected in.
        let subcode = match self.state {
            State::OpenSent => codes::FSM_UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => codes::FSM_UNEXPECTED_IN_OPEN_CONFIRM,
            State::Established => codes::FSM_UNEXPECTED_IN_ESTABLISHED,
            _ => 0,
        };
        self.fail(Some(Notification::new(codes::FSM, subcode)), now)
    }

    /// Runs one event through the FSM and returns the actions to carry out, in order.
    pub fn fsm_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Event as E;
        use State as S;
        match (self.state, event) {
            // Idle: only start events matter (RFC 4271 §8.2.2 "Idle state").
            (S::Idle, E::ManualStart | E::AutomaticStart) => {
                if self.config.passive {
                    self.go(S::Active, now);
                    vec![self.retry_timer()]
                } else {
                    self.go(S::Connect, now);
                    vec![self.retry_timer(), Action::Connect]
                }
            }
            (S::Idle, _) => Vec::new(),

            // Any state but Idle.
            (_, E::ManualStop) => self.stop(now),
            (_, E::ManualStart | E::AutomaticStart) => Vec::new(),
            (_, E::NotifMsgVerErr) => {
                let actions = self.fail(None, now);
                // A version mismatch is not counted as a failure.
                self.connect_retry_counter = self.connect_retry_counter.saturating_sub(1);
                actions
            }

            // Connect and Active: waiting for TCP.
            (S::Connect | S::Active, E::TcpCrAcked | E::TcpConnectionConfirmed) => {
                self.connected(now)
            }
            (S::Connect, E::ConnectRetryTimerExpires) => {
                vec![Action::Disconnect, self.retry_timer(), Action::Connect]
            }
            (S::Connect, E::TcpConnectionFails) => {
                self.go(S::Active, now);
                vec![self.retry_timer()]
            }
            (S::Active, E::ConnectRetryTimerExpires) => {
                if self.config.passive {
                    vec![self.retry_timer()]
                } else {
                    self.go(S::Connect, now);
                    vec![self.retry_timer(), Action::Connect]
                }
            }
            (S::Connect | S::Active, _) => self.fail(None, now),

            // Hold timer, header and OPEN errors, collisions: the same in the three open states.
            (S::OpenSent | S::OpenConfirm | S::Established, E::HoldTimerExpires) => {
                self.fail(Some(Notification::new(codes::HOLD_TIMER_EXPIRED, 0)), now)
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::AutomaticStop) => self.fail(
                Some(Notification::new(codes::CEASE, codes::CEASE_ADMIN_SHUTDOWN)),
                now,
            ),
            (
                S::OpenSent | S::OpenConfirm | S::Established,
                E::BgpHeaderErr(n) | E::BgpOpenMsgErr(n) | E::UpdateMsgErr(n),
            ) => self.fail(Some(n), now),
            (S::OpenSent | S::OpenConfirm | S::Established, E::OpenCollisionDump) => self.fail(
                Some(Notification::new(
                    codes::CEASE,
                    codes::CEASE_COLLISION_RESOLUTION,
                )),
                now,
            ),
            (S::OpenSent | S::OpenConfirm | S::Established, E::NotifMsg(n)) => {
                self.down(None, Some(n), now)
            }

            // OpenSent: waiting for the peer's OPEN.
            (S::OpenSent, E::TcpConnectionFails) => {
                // RFC 4271: back to Active, listening, with the retry timer running.
                self.go(S::Active, now);
                vec![
                    Action::StopTimer(Timer::Hold),
                    Action::Disconnect,
                    self.retry_timer(),
                ]
            }
            (S::OpenSent | S::OpenConfirm, E::TcpCrAcked | E::TcpConnectionConfirmed) => {
                // A second connection to the same peer: the caller runs it in
                // its own session and resolves the collision when its OPEN arrives.
                Vec::new()
            }
            (S::OpenSent, E::BgpOpen(open)) => match negotiate(&self.config, &open) {
                Err(error) => self.fail(Some(error.notification()), now),
                Ok(negotiated) => {
                    let mut actions = vec![
                        Action::StopTimer(Timer::ConnectRetry),
                        Action::Send(Outgoing::Keepalive),
                    ];
                    if negotiated.hold_time.is_zero() {
                        actions.push(Action::StopTimer(Timer::Hold));
                        actions.push(Action::StopTimer(Timer::Keepalive));
                    } else {
                        actions.push(Action::StartTimer(Timer::Keepalive, negotiated.keepalive));
                        actions.push(Action::StartTimer(Timer::Hold, negotiated.hold_time));
                    }
                    self.negotiated = Some(negotiated);
                    self.go(S::OpenConfirm, now);
                    actions
                }
            },

            // OpenConfirm and Established: keepalives.
            (S::OpenConfirm | S::Established, E::KeepaliveTimerExpires) => {
                let mut actions = vec![Action::Send(Outgoing::Keepalive)];
                if let Some(n) = &self.negotiated
                    && !n.keepalive.is_zero()
                {
                    actions.push(Action::StartTimer(Timer::Keepalive, n.keepalive));
                }
                actions
            }
            (S::OpenConfirm | S::Established, E::TcpConnectionFails) => self.fail(None, now),
            (S::OpenConfirm, E::KeepAliveMsg) => {
                let mut actions = self.hold_restart();
                let negotiated = self
                    .negotiated
                    .clone()
                    .expect("OpenConfirm is entered with a negotiated OPEN");
                actions.push(Action::SessionUp(Box::new(negotiated)));
                self.connect_retry_counter = 0;
                self.last_error = None;
                self.go(S::Established, now);
                actions
            }

            // Established.
            (S::Established, E::KeepAliveMsg) => self.hold_restart(),
            (S::Established, E::UpdateMsg(update)) => {
                let mut actions = self.hold_restart();
                actions.push(Action::Deliver(update));
                actions
            }
            (S::Established, E::RouteRefreshMsg(family)) => {
                let wanted = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.route_refresh && n.families.contains(&family));
                // RFC 2918 §4: a request for a family not negotiated is ignored.
                if wanted {
                    vec![Action::ResendRoutes(family)]
                } else {
                    Vec::new()
                }
            }
            (S::Established, E::TcpConnectionConfirmed | E::TcpCrAcked) => {
                // A second connection while Established is the caller's to refuse.
                Vec::new()
            }

            // Anything else is an FSM error (RFC 4271 §8.2.2, RFC 6608).
            (S::OpenSent | S::OpenConfirm | S::Established, _) => self.unexpected(now),
        }
    }
}
