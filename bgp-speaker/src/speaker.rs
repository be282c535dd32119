//! The session runner: one tokio task owns every peer's [`Session`]; socket
//! and timer tasks only move bytes and ticks to it as typed messages.
//!
//! ```text
//!   TcpListener accept loop --Msg::Accepted--------------------+
//!   connect task (per attempt) --Msg::Connected----------------+
//!   reader task (per connection) --Msg::Frames / Msg::Closed---+
//!   timer task (one per timer) --Msg::Timer / Msg::Restart-----+
//!   Speaker handle --Msg::Command------------------------------+
//!                                                              v
//!                                          +-------------------------------+
//!                                          | owner task: Peer { Session }  |
//!                                          | decode -> Event -> fsm_event  |
//!                                          | -> actions                    |
//!                                          +-------------------------------+
//!          writer task (per connection) <--bytes--|      |--RibMsg--> RIB
//! ```
//!
//! A frame is decoded by the owner, not the reader, because how an UPDATE
//! decodes depends on what the session negotiated (4-octet AS, iBGP).
//!
//! Hand-off in batches: the reader sends every complete message of one
//! socket read in one `Msg::Frames`; a [`Speaker::start_batched`] owner
//! delivers the UPDATEs decoded from it in one [`RibMsg::Updates`], so the
//! RIB's task wakes once per read, not once per UPDATE. Each batch carries
//! one of the connection's [`READS_IN_FLIGHT`] credits until the RIB has
//! taken its UPDATEs (or, unbatched, until the owner has delivered them): a
//! RIB that falls behind stops the socket reads, and TCP flow control then
//! holds the peer back, instead of decoded UPDATEs piling up. Messages keep
//! their order per session, and every one still restarts the hold timer.
//!
//! Connection collisions (RFC 4271 §6.8): a connection from the peer that
//! arrives while its session is in OpenSent or OpenConfirm runs alongside in
//! a second FSM; when an OPEN arrives on either, the connection opened by the
//! speaker with the higher BGP identifier is kept and the other gets
//! OpenCollisionDump (Cease 6/7). A connection arriving while Established (or
//! while a collision is already being resolved) is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fsm::{
    Action, ConnectionOrigin, Event, Negotiated, PeerConfig, Session, State, Timer,
    collision_winner,
};
use crate::packet::{self, DecodeError, Family, Update};

mod connection;
mod gtsm;

use connection::{Connection, attach};
pub use connection::{Credit, READS_IN_FLIGHT};
use gtsm::set_gtsm_ttl;
pub use gtsm::{GTSM_TTL, TtlSecurityError, apply_ttl_security, gtsm_min_ttl};

/// One peer to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's address; also how inbound connections are matched to it.
    pub address: IpAddr,
    /// The peer's TCP port (179 unless configured otherwise).
    pub port: u16,
    /// Local address to connect from, if any.
    pub local_address: Option<IpAddr>,
    /// GTSM (RFC 5082): the peer is at most this many hops away; session
    /// packets are sent with TTL 255 and received ones below `256 - hops`
    /// dropped. `None` (or 0) turns it off.
    pub ttl_security: Option<u8>,
    /// Session configuration.
    pub config: PeerConfig,
}

/// What the runner tells the RIB.
#[derive(Debug, Clone, PartialEq)]
pub enum RibMsg {
    /// The session with `peer` is Established.
    Up {
        /// The peer.
        peer: IpAddr,
        /// What was negotiated.
        negotiated: Box<Negotiated>,
        /// Our end of the connection (the address for next hop self).
        local: Option<SocketAddr>,
    },
    /// The session with `peer` went down (see [`Action::SessionDown`]).
    Down {
        /// The peer.
        peer: IpAddr,
        /// How long to keep its routes as stale, if at all.
        stale_for: Option<std::time::Duration>,
    },
    /// An UPDATE from `peer`.
    Update {
        /// The peer.
        peer: IpAddr,
        /// The decoded UPDATE.
        update: Box<Update>,
    },
    /// Consecutive UPDATEs from `peer`, in the order received (from a
    /// [`Speaker::start_batched`] speaker).
    Updates {
        /// The peer.
        peer: IpAddr,
        /// The decoded UPDATEs.
        updates: Vec<Update>,
        /// Lets the peer's connection read on once this message is dropped.
        credit: Credit,
    },
    /// `peer` asked for our routes of `family` again.
    RouteRefresh {
        /// The peer.
        peer: IpAddr,
        /// The family.
        family: Family,
    },
}

/// Commands to a running speaker.
#[derive(Debug)]
pub enum Command {
    /// Start a peer (ManualStart).
    AddPeer(Box<PeerSpec>),
    /// Stop and forget a peer (ManualStop).
    RemovePeer(IpAddr),
    /// Send raw UPDATE bytes to an Established peer (for the RIB's Adj-RIB-Out).
    SendUpdate {
        /// The peer.
        peer: IpAddr,
        /// An encoded UPDATE message.
        message: Vec<u8>,
    },
    /// Report the state of every peer.
    Status(tokio::sync::oneshot::Sender<Vec<(IpAddr, State)>>),
    /// Report the state of every peer with when it was entered and the last error.
    Details(tokio::sync::oneshot::Sender<Vec<PeerDetail>>),
    /// Set (or with `None`, clear) the TCP MD5 key (RFC 2385) for a peer's
    /// connections; send before [`Command::AddPeer`].
    SetPassword {
        /// The peer.
        peer: IpAddr,
        /// The key.
        password: Option<Vec<u8>>,
    },
}

/// The state of one peer's session.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerDetail {
    /// The peer.
    pub address: IpAddr,
    /// FSM state of its session.
    pub state: State,
    /// When the state was entered.
    pub since: Instant,
    /// The last NOTIFICATION sent or received when the session went down.
    pub last_error: Option<crate::fsm::LastError>,
}

/// Handle to a running speaker; dropping it stops the owner task.
#[derive(Debug)]
pub struct Speaker {
    commands: mpsc::UnboundedSender<Msg>,
    owner: JoinHandle<()>,
    listener: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Starts the owner task, and an accept loop if `listener` is given.
    /// Returns the handle and the stream of messages for the RIB; every
    /// UPDATE comes in its own [`RibMsg::Update`].
    pub fn start(listener: Option<TcpListener>) -> (Speaker, mpsc::UnboundedReceiver<RibMsg>) {
        Self::start_with(listener, false)
    }

    /// As [`Speaker::start`], but the UPDATEs decoded from one socket read
    /// come together in one [`RibMsg::Updates`], and a connection reads on
    /// only as its batches are dropped (see [`READS_IN_FLIGHT`]).
    pub fn start_batched(
        listener: Option<TcpListener>,
    ) -> (Speaker, mpsc::UnboundedReceiver<RibMsg>) {
        Self::start_with(listener, true)
    }

    fn start_with(
        listener: Option<TcpListener>,
        batching: bool,
    ) -> (Speaker, mpsc::UnboundedReceiver<RibMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (rib_tx, rib_rx) = mpsc::unbounded_channel();
        let listener = listener.map(Arc::new);
        let shared_listener = listener.clone();
        let listener = listener.map(|listener| {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Ok((stream, from)) = listener.accept().await {
                    if tx.send(Msg::Accepted(stream, from)).is_err() {
                        break;
                    }
                }
            })
        });
        let owner = Owner {
            tx: tx.clone(),
            rib: rib_tx,
            peers: HashMap::new(),
            next_id: 0,
            passwords: HashMap::new(),
            listener: shared_listener,
            batching,
            pending: None,
        };
        let owner = tokio::spawn(owner.run(rx));
        (
            Speaker {
                commands: tx,
                owner,
                listener,
            },
            rib_rx,
        )
    }

    /// Sends a command; false if the speaker has stopped.
    pub fn command(&self, command: Command) -> bool {
        self.commands.send(Msg::Command(command)).is_ok()
    }

    /// The state of every peer.
    pub async fn status(&self) -> Vec<(IpAddr, State)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.command(Command::Status(tx)) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The state of every peer, with when it was entered and the last error.
    pub async fn details(&self) -> Vec<PeerDetail> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.command(Command::Details(tx)) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.owner.abort();
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

#[derive(Debug)]
enum Msg {
    Command(Command),
    Accepted(TcpStream, SocketAddr),
    Connected {
        peer: IpAddr,
        attempt: u64,
        stream: std::io::Result<TcpStream>,
    },
    /// The complete messages of one read, back to back.
    Frames {
        peer: IpAddr,
        conn: u64,
        bytes: Vec<u8>,
        credit: Credit,
    },
    /// The stream cannot be framed; nothing more comes from the connection.
    FrameError {
        peer: IpAddr,
        conn: u64,
        error: DecodeError,
    },
    Closed {
        peer: IpAddr,
        conn: u64,
    },
    Timer {
        peer: IpAddr,
        sid: u64,
        timer: Timer,
        generation: u64,
    },
    Restart {
        peer: IpAddr,
        generation: u64,
    },
}

/// Which of a peer's connections an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// The connection the peer normally runs on.
    Primary,
    /// A second connection from the peer while the primary is past Active
    /// (a collision in the making, RFC 4271 §6.8).
    Second,
}

/// One connection's FSM, its connection and its running timers.
#[derive(Debug)]
struct Slot {
    sid: u64,
    session: Session,
    connection: Option<Connection>,
    origin: ConnectionOrigin,
    timers: HashMap<Timer, Running>,
}

/// A started timer. Restarting it (the hold timer, on every message
/// received) only moves `deadline`: the sleeper already waiting wakes at
/// `wakes`, finds the deadline later and sleeps again, so a peer has one
/// sleeping task per timer however many UPDATEs it sends.
#[derive(Debug, Clone, Copy)]
struct Running {
    /// Tells this start's sleeper from an earlier, stopped one's.
    generation: u64,
    /// When the timer expires.
    deadline: tokio::time::Instant,
    /// When its sleeper wakes (never after `deadline`).
    wakes: tokio::time::Instant,
}

/// Sends `Msg::Timer` for this start of `timer` at `at`.
fn spawn_sleeper(
    tx: &mpsc::UnboundedSender<Msg>,
    peer: IpAddr,
    sid: u64,
    timer: Timer,
    generation: u64,
    at: tokio::time::Instant,
) {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let _ = tx.send(Msg::Timer {
            peer,
            sid,
            timer,
            generation,
        });
    });
}

impl Slot {
    fn new(sid: u64, session: Session) -> Self {
        Self {
            sid,
            session,
            connection: None,
            origin: ConnectionOrigin::Outbound,
            timers: HashMap::new(),
        }
    }

    fn conn_id(&self) -> Option<u64> {
        self.connection.as_ref().map(|c| c.id)
    }
}

#[derive(Debug)]
struct Peer {
    spec: PeerSpec,
    primary: Slot,
    second: Option<Slot>,
    attempt: Option<u64>,
    restart: Option<u64>,
}

impl Peer {
    fn slot(&self, which: Which) -> Option<&Slot> {
        match which {
            Which::Primary => Some(&self.primary),
            Which::Second => self.second.as_ref(),
        }
    }

    /// The slot whose session speaks for the peer: an Established one (a
    /// collision's second connection can get there while the primary is
    /// still connecting), else the primary.
    fn current(&self) -> &Slot {
        [Which::Primary, Which::Second]
            .into_iter()
            .filter_map(|w| self.slot(w))
            .find(|s| s.session.state() == State::Established)
            .unwrap_or(&self.primary)
    }

    fn by_conn(&self, conn: u64) -> Option<Which> {
        if self.primary.conn_id() == Some(conn) {
            Some(Which::Primary)
        } else if self.second.as_ref().and_then(Slot::conn_id) == Some(conn) {
            Some(Which::Second)
        } else {
            None
        }
    }

    fn by_sid(&self, sid: u64) -> Option<Which> {
        if self.primary.sid == sid {
            Some(Which::Primary)
        } else if self.second.as_ref().is_some_and(|s| s.sid == sid) {
            Some(Which::Second)
        } else {
            None
        }
    }
}

struct Owner {
    tx: mpsc::UnboundedSender<Msg>,
    rib: mpsc::UnboundedSender<RibMsg>,
    peers: HashMap<IpAddr, Peer>,
    next_id: u64,
    passwords: HashMap<IpAddr, Vec<u8>>,
    listener: Option<Arc<TcpListener>>,
    /// Deliver UPDATEs in batches ([`RibMsg::Updates`]).
    batching: bool,
    /// UPDATEs delivered and not yet sent to the RIB, and their peer.
    pending: Option<(IpAddr, Vec<Update>)>,
}

/// Sends `pending` UPDATEs to the RIB in one [`RibMsg::Updates`] with `credit`.
fn flush(
    rib: &mpsc::UnboundedSender<RibMsg>,
    pending: &mut Option<(IpAddr, Vec<Update>)>,
    credit: Credit,
) {
    let Some((peer, updates)) = pending.take() else {
        return;
    };
    let _ = rib.send(RibMsg::Updates {
        peer,
        updates,
        credit,
    });
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.handle(msg);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Command(Command::AddPeer(spec)) => {
                let address = spec.address;
                let sid = self.id();
                let session = Session::new(spec.config.clone(), Instant::now());
                let peer = Peer {
                    spec: *spec,
                    primary: Slot::new(sid, session),
                    second: None,
                    attempt: None,
                    restart: None,
                };
                // The kernel answers a SYN from the listener, before our
                // accept: a GTSM peer drops that SYN-ACK unless the listener
                // sends with TTL 255 too.
                if let Some(listener) = &self.listener
                    && gtsm_min_ttl(peer.spec.ttl_security.unwrap_or(0)).is_some()
                    && let Err(error) = set_gtsm_ttl(listener.as_ref(), address)
                {
                    tracing::warn!(peer = %address, %error, "cannot set the gtsm ttl on the listener");
                }
                self.peers.insert(address, peer);
                self.event(address, Which::Primary, Event::ManualStart);
            }
            Msg::Command(Command::RemovePeer(address)) => {
                self.event(address, Which::Second, Event::ManualStop);
                self.event(address, Which::Primary, Event::ManualStop);
                self.peers.remove(&address);
            }
            Msg::Command(Command::SendUpdate { peer, message }) => {
                let Some(p) = self.peers.get(&peer) else {
                    return;
                };
                let current = p.current();
                if current.session.state() == State::Established
                    && let Some(c) = &current.connection
                {
                    let _ = c.writer.send(message);
                }
            }
            Msg::Command(Command::Details(reply)) => {
                let mut details: Vec<_> = self
                    .peers
                    .iter()
                    .map(|(a, p)| {
                        let session = &p.current().session;
                        PeerDetail {
                            address: *a,
                            state: session.state(),
                            since: session.since(),
                            last_error: session.last_error().cloned(),
                        }
                    })
                    .collect();
                details.sort_by_key(|d| d.address);
                let _ = reply.send(details);
            }
            Msg::Command(Command::SetPassword { peer, password }) => {
                if let Some(listener) = &self.listener {
                    let key = password.as_deref().unwrap_or_default();
                    if let Err(error) = crate::sockopt::set_md5_key(listener.as_ref(), peer, key) {
                        tracing::warn!(%peer, %error, "cannot set the tcp md5 key on the listener");
                    }
                }
                match password {
                    Some(key) => drop(self.passwords.insert(peer, key)),
                    None => drop(self.passwords.remove(&peer)),
                }
            }
            Msg::Command(Command::Status(reply)) => {
                let mut states: Vec<_> = self
                    .peers
                    .iter()
                    .map(|(a, p)| (*a, p.current().session.state()))
                    .collect();
                states.sort_by_key(|(address, _)| *address);
                let _ = reply.send(states);
            }
            Msg::Accepted(stream, from) => self.accepted(stream, from),
            Msg::Connected {
                peer,
                attempt,
                stream,
            } => {
                let id = self.id();
                let tx = self.tx.clone();
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if p.attempt != Some(attempt) {
                    return;
                }
                p.attempt = None;
                match stream {
                    Ok(stream) => {
                        p.primary.connection = Some(attach(peer, id, stream, tx));
                        p.primary.origin = ConnectionOrigin::Outbound;
                        self.event(peer, Which::Primary, Event::TcpCrAcked);
                    }
                    Err(_) => self.event(peer, Which::Primary, Event::TcpConnectionFails),
                }
            }
            Msg::Frames {
                peer,
                conn,
                bytes,
                credit,
            } => {
                let mut at = 0;
                while at < bytes.len() {
                    let len = match packet::frame(&bytes[at..]) {
                        Ok(Some(frame)) => frame.len,
                        _ => unreachable!("the reader only sends complete frames"),
                    };
                    self.frame(peer, conn, Ok(&bytes[at..at + len]));
                    at += len;
                }
                flush(&self.rib, &mut self.pending, credit);
            }
            Msg::FrameError { peer, conn, error } => self.frame(peer, conn, Err(error)),
            Msg::Closed { peer, conn } => {
                if let Some(which) = self.peers.get(&peer).and_then(|p| p.by_conn(conn)) {
                    self.event(peer, which, Event::TcpConnectionFails);
                }
            }
            Msg::Timer {
                peer,
                sid,
                timer,
                generation,
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let Some(which) = p.by_sid(sid) else { return };
                let slot = match which {
                    Which::Primary => &mut p.primary,
                    Which::Second => p.second.as_mut().expect("by_sid found it"),
                };
                let Some(running) = slot.timers.get_mut(&timer) else {
                    return;
                };
                if running.generation != generation {
                    return;
                }
                if running.deadline > tokio::time::Instant::now() {
                    // Restarted since this sleeper began: sleep on.
                    running.wakes = running.deadline;
                    spawn_sleeper(&self.tx, peer, sid, timer, generation, running.deadline);
                    return;
                }
                slot.timers.remove(&timer);
                let event = match timer {
                    Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
                    Timer::Hold => Event::HoldTimerExpires,
                    Timer::Keepalive => Event::KeepaliveTimerExpires,
                };
                self.event(peer, which, event);
            }
            Msg::Restart { peer, generation } => {
                let sid = self.id();
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if p.restart != Some(generation) || p.primary.session.state() != State::Idle {
                    return;
                }
                // A fresh session: a promoted second connection ran as passive.
                p.primary = Slot::new(sid, Session::new(p.spec.config.clone(), Instant::now()));
                self.event(peer, Which::Primary, Event::AutomaticStart);
            }
        }
    }

    fn accepted(&mut self, stream: TcpStream, from: SocketAddr) {
        let id = self.id();
        let sid = self.id();
        let tx = self.tx.clone();
        let address = from.ip().to_canonical();
        // Not a configured peer: dropping the stream closes it.
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        // The listener is shared by all peers: GTSM goes on the accepted
        // socket before anything is read from it. A segment the kernel queued
        // before this (at most the peer's OPEN) still gets through; nothing
        // after it does, so such a session never reaches Established here.
        if let Some(hops) = peer.spec.ttl_security
            && let Err(error) = apply_ttl_security(&stream, address, hops)
        {
            tracing::warn!(%address, %error, "refusing the connection: ttl security not set");
            return;
        }
        match peer.primary.session.state() {
            State::Connect | State::Active => {
                peer.attempt = None;
                peer.primary.connection = Some(attach(address, id, stream, tx));
                peer.primary.origin = ConnectionOrigin::Inbound;
                self.event(address, Which::Primary, Event::TcpConnectionConfirmed);
            }
            State::OpenSent | State::OpenConfirm if peer.second.is_none() => {
                // Run it alongside until an OPEN tells which one to keep.
                let config = PeerConfig {
                    passive: true,
                    ..peer.spec.config.clone()
                };
                let mut slot = Slot::new(sid, Session::new(config, Instant::now()));
                slot.connection = Some(attach(address, id, stream, tx));
                slot.origin = ConnectionOrigin::Inbound;
                peer.second = Some(slot);
                self.event(address, Which::Second, Event::AutomaticStart);
                self.event(address, Which::Second, Event::TcpConnectionConfirmed);
            }
            // Idle refuses connections; an Established session keeps its own.
            _ => {}
        }
    }

    fn frame(&mut self, address: IpAddr, conn: u64, frame: Result<&[u8], DecodeError>) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let Some(which) = peer.by_conn(conn) else {
            return;
        };
        let Some(slot) = peer.slot(which) else { return };
        let decoded = frame.and_then(|bytes| {
            let decoded = packet::decode(bytes, &slot.session.decode_options())?;
            Ok(decoded.expect("the reader only sends complete frames").0)
        });
        let Some(event) = Event::from_decoded(decoded) else {
            return;
        };
        if let Event::BgpOpen(open) = &event {
            let other = match which {
                Which::Primary => Which::Second,
                Which::Second => Which::Primary,
            };
            if let Some(other_slot) = peer.slot(other) {
                // RFC 4271 §6.8: the peer's identifier is in this OPEN.
                let loser = match other_slot.session.state() {
                    State::Established => Some(which),
                    State::OpenSent | State::OpenConfirm => {
                        let keep = collision_winner(peer.spec.config.local_id, open.bgp_id());
                        Some(if slot.origin == keep { other } else { which })
                    }
                    _ => None,
                };
                if let Some(loser) = loser {
                    self.event(address, loser, Event::OpenCollisionDump);
                    if loser == which {
                        return;
                    }
                }
            }
        }
        // The loser's exit may have promoted this connection to primary.
        if let Some(which) = self.peers.get(&address).and_then(|p| p.by_conn(conn)) {
            self.event(address, which, event);
        }
    }

    /// Runs `event` through one of the peer's FSMs and carries out the actions.
    fn event(&mut self, address: IpAddr, which: Which, event: Event) {
        let Owner {
            tx,
            rib,
            peers,
            next_id,
            passwords,
            listener: _,
            batching,
            pending,
        } = self;
        let Some(peer) = peers.get_mut(&address) else {
            return;
        };
        let slot = match which {
            Which::Primary => &mut peer.primary,
            Which::Second => match peer.second.as_mut() {
                Some(slot) => slot,
                None => return,
            },
        };
        let was_idle = slot.session.state() == State::Idle;
        let sid = slot.sid;
        let actions = slot.session.fsm_event(event, Instant::now());
        for action in actions {
            match action {
                Action::Connect => {
                    *next_id += 1;
                    let attempt = *next_id;
                    peer.attempt = Some(attempt);
                    let tx = tx.clone();
                    let spec = peer.spec.clone();
                    let password = passwords.get(&address).cloned();
                    tokio::spawn(async move {
                        let stream = connect(&spec, password.as_deref()).await;
                        let _ = tx.send(Msg::Connected {
                            peer: spec.address,
                            attempt,
                            stream,
                        });
                    });
                }
                Action::Disconnect => {
                    slot.connection = None;
                    if which == Which::Primary {
                        peer.attempt = None;
                    }
                }
                Action::Send(outgoing) => {
                    if let (Some(c), Ok(bytes)) = (&slot.connection, slot.session.encode(&outgoing))
                    {
                        let _ = c.writer.send(bytes);
                    }
                }
                Action::StartTimer(timer, duration) => {
                    let deadline = tokio::time::Instant::now() + duration;
                    match slot.timers.get_mut(&timer) {
                        // Its sleeper wakes before the new deadline and
                        // re-arms itself then.
                        Some(running) if running.wakes <= deadline => running.deadline = deadline,
                        _ => {
                            // Unique per start, so a stopped timer's sleeper
                            // can never pass for a later start of the same timer.
                            *next_id += 1;
                            let generation = *next_id;
                            let running = Running {
                                generation,
                                deadline,
                                wakes: deadline,
                            };
                            slot.timers.insert(timer, running);
                            spawn_sleeper(tx, address, sid, timer, generation, deadline);
                        }
                    }
                }
                Action::StopTimer(timer) => {
                    slot.timers.remove(&timer);
                }
                Action::SessionUp(negotiated) => {
                    flush(rib, pending, Credit::default());
                    let _ = rib.send(RibMsg::Up {
                        peer: address,
                        negotiated,
                        local: slot.connection.as_ref().and_then(|c| c.local),
                    });
                }
                Action::SessionDown { stale_for } => {
                    flush(rib, pending, Credit::default());
                    let _ = rib.send(RibMsg::Down {
                        peer: address,
                        stale_for,
                    });
                }
                Action::Deliver(update) if *batching => {
                    if pending.as_ref().is_some_and(|(peer, _)| *peer != address) {
                        flush(rib, pending, Credit::default());
                    }
                    pending
                        .get_or_insert_with(|| (address, Vec::new()))
                        .1
                        .push(*update);
                }
                Action::Deliver(update) => {
                    let _ = rib.send(RibMsg::Update {
                        peer: address,
                        update,
                    });
                }
                Action::ResendRoutes(family) => {
                    flush(rib, pending, Credit::default());
                    let _ = rib.send(RibMsg::RouteRefresh {
                        peer: address,
                        family,
                    });
                }
            }
        }
        let state = slot.session.state();
        let failures = slot.session.connect_retry_counter();
        let connected = slot.connection.is_some();
        match which {
            // A second connection only lives while it has a connection.
            Which::Second => {
                if !connected {
                    peer.second = None;
                }
            }
            Which::Primary if !was_idle && state == State::Idle => {
                if let Some(second) = peer.second.take() {
                    // The collision winner carries on as the peer's session.
                    peer.primary = second;
                } else if failures > 0 {
                    // Back in Idle after an error: start again after the retry
                    // interval (RFC 4271 automatic restart; no damping yet).
                    *next_id += 1;
                    let generation = *next_id;
                    peer.restart = Some(generation);
                    let tx = tx.clone();
                    let delay = peer.spec.config.connect_retry;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(Msg::Restart {
                            peer: address,
                            generation,
                        });
                    });
                }
            }
            Which::Primary => {}
        }
    }
}

async fn connect(spec: &PeerSpec, password: Option<&[u8]>) -> std::io::Result<TcpStream> {
    let remote = SocketAddr::new(spec.address, spec.port);
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(key) = password {
        crate::sockopt::set_md5_key(&socket, spec.address, key)?;
    }
    if let Some(hops) = spec.ttl_security
        && let Err(error) = apply_ttl_security(&socket, spec.address, hops)
    {
        tracing::warn!(peer = %spec.address, %error, "not connecting: ttl security not set");
        return Err(std::io::Error::other(error));
    }
    if let Some(local) = spec.local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(remote).await
}

#[cfg(test)]
mod tests;
