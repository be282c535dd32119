//! Probes (TCP connect, UDP echo, ICMP echo) from a namespace, and the
//! listeners that answer them.
//!
//! A probe is decisive: it returns a [`ProbeOutcome`] that is either
//! [`Reachable`](ProbeOutcome::Reachable) or one of three denials that tell
//! *how* the traffic was denied — a reset or port-unreachable
//! ([`Refused`](ProbeOutcome::Refused)), silence until the timeout
//! ([`TimedOut`](ProbeOutcome::TimedOut), a drop), or an ICMP
//! host/network unreachable or missing route
//! ([`HostUnreachable`](ProbeOutcome::HostUnreachable)). A policy test can
//! therefore tell a `Deny` that drops from one that rejects.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::TestNetns;

/// How often listener threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// The peer answered: TCP handshake completed, UDP echo came back, ICMP
    /// echo reply arrived.
    Reachable,
    /// Actively refused: TCP RST, or ICMP port unreachable for UDP.
    Refused,
    /// No answer before the timeout: the traffic (or its answer) was dropped.
    TimedOut,
    /// ICMP host/network unreachable or administratively prohibited, or no
    /// route in the probing namespace.
    HostUnreachable,
}

impl ProbeOutcome {
    /// Whether traffic got through (policy allowed it).
    pub fn is_reachable(self) -> bool {
        self == Self::Reachable
    }

    /// Whether traffic was denied, whichever way.
    pub fn is_denied(self) -> bool {
        !self.is_reachable()
    }

    /// Maps a socket error to the denial it means; `None` for errors that
    /// say nothing about the path (the harness reports those as errors).
    fn from_io(err: &io::Error) -> Option<Self> {
        match err.kind() {
            ErrorKind::ConnectionRefused => Some(Self::Refused),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Some(Self::TimedOut),
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                Some(Self::HostUnreachable)
            }
            _ => None,
        }
    }
}

impl TestNetns {
    /// Opens a TCP connection from this namespace to `addr:port`.
    pub fn probe_tcp(&self, addr: IpAddr, port: u16, timeout: Duration) -> Result<ProbeOutcome> {
        let target = SocketAddr::new(addr, port);
        match self.run(|| TcpStream::connect_timeout(&target, timeout))? {
            Ok(_stream) => Ok(ProbeOutcome::Reachable),
            Err(err) => ProbeOutcome::from_io(&err)
                .ok_or_else(|| Error::io(format!("{}: tcp connect to {target}", self.name()), err)),
        }
    }

    /// Sends one UDP datagram from this namespace to `addr:port` and waits
    /// for the same bytes to come back (see [`UdpEchoServer`]).
    pub fn probe_udp(&self, addr: IpAddr, port: u16, timeout: Duration) -> Result<ProbeOutcome> {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let target = SocketAddr::new(addr, port);
        let payload = format!(
            "twill-probe-{}-{}",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::Relaxed)
        );
        let outcome = self.run(|| udp_round_trip(target, payload.as_bytes(), timeout))?;
        match outcome {
            Ok(outcome) => Ok(outcome),
            Err(err) => ProbeOutcome::from_io(&err)
                .ok_or_else(|| Error::io(format!("{}: udp probe to {target}", self.name()), err)),
        }
    }

    /// Sends one ICMP echo request (`ping -c1`) from this namespace.
    pub fn probe_icmp(&self, addr: IpAddr, timeout: Duration) -> Result<ProbeOutcome> {
        let wait = format!("{:.3}", timeout.as_secs_f64().max(0.001));
        let target = addr.to_string();
        let output = self.exec("ping", &["-n", "-c1", "-W", &wait, &target])?;
        if output.status.success() {
            return Ok(ProbeOutcome::Reachable);
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // iputils prints "Destination Host Unreachable", "Destination Net
        // Unreachable", "Packet filtered" for ICMP errors and "connect:
        // Network is unreachable" without a route; plain silence otherwise.
        let lower = text.to_ascii_lowercase();
        if lower.contains("unreachable") || lower.contains("filtered") {
            Ok(ProbeOutcome::HostUnreachable)
        } else if output.status.code() == Some(1) {
            Ok(ProbeOutcome::TimedOut)
        } else {
            Err(Error::Command {
                command: format!("ip netns exec {} ping {target}", self.name()),
                status: output.status.to_string(),
                stderr: text.trim().to_owned(),
            })
        }
    }

    /// Starts a TCP server on `port` (all addresses, IPv4 and IPv6) in this
    /// namespace that accepts every connection and echoes what it receives,
    /// until dropped. Port 0 picks a free port ([`TcpServer::port`]).
    pub fn listen_tcp(&self, port: u16) -> Result<TcpServer> {
        let listener = self
            .run(|| bind_any(port, TcpListener::bind))?
            .map_err(|err| Error::io(format!("{}: tcp bind port {port}", self.name()), err))?;
        TcpServer::start(listener)
            .map_err(|err| Error::io(format!("{}: tcp server on port {port}", self.name()), err))
    }

    /// Starts a UDP echo server on `port` (all addresses, IPv4 and IPv6) in
    /// this namespace, until dropped. Port 0 picks a free port
    /// ([`UdpEchoServer::port`]).
    pub fn udp_echo(&self, port: u16) -> Result<UdpEchoServer> {
        let socket = self
            .run(|| bind_any(port, UdpSocket::bind))?
            .map_err(|err| Error::io(format!("{}: udp bind port {port}", self.name()), err))?;
        UdpEchoServer::start(socket)
            .map_err(|err| Error::io(format!("{}: udp echo on port {port}", self.name()), err))
    }
}

/// Binds `[::]:port`, which also takes IPv4 (`bindv6only` is 0 in a fresh
/// namespace), or `0.0.0.0:port` where IPv6 is off.
fn bind_any<T>(port: u16, bind: impl Fn(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        .or_else(|_| bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
}

fn udp_round_trip(
    target: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> io::Result<ProbeOutcome> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local)?;
    // A connected socket reports ICMP port unreachable as ECONNREFUSED.
    socket.connect(target)?;
    socket.send(payload)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ProbeOutcome::TimedOut);
        }
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(&mut buf)?;
        if &buf[..n] == payload {
            return Ok(ProbeOutcome::Reachable);
        }
        // Anything else is a late answer to an earlier probe; keep waiting.
    }
}

/// A TCP echo server running in a namespace; stops when dropped.
#[derive(Debug)]
pub struct TcpServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(listener: TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, &accepted, &stop))
        };
        Ok(Self {
            port,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it has accepted so far. A client's connect
    /// completes in the kernel before the server accepts, so this lags a
    /// successful probe; use [`wait_accepted`](Self::wait_accepted) to
    /// count a connection that was just made.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` connections were accepted or `timeout`
    /// passed; returns the number accepted.
    pub fn wait_accepted(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if accepted >= count || Instant::now() >= deadline {
                return accepted;
            }
            std::thread::sleep(POLL / 4);
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, accepted: &AtomicUsize, stop: &Arc<AtomicBool>) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                connections.push(std::thread::spawn(move || echo(stream, &stop)));
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
        connections.retain(|c: &JoinHandle<()>| !c.is_finished());
    }
    // Every socket closes before the server is reported stopped, so no
    // socket keeps the namespace alive after the test drops it.
    for connection in connections {
        let _ = connection.join();
    }
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A UDP echo server running in a namespace; stops when dropped.
#[derive(Debug)]
pub struct UdpEchoServer {
    port: u16,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEchoServer {
    fn start(socket: UdpSocket) -> io::Result<Self> {
        socket.set_read_timeout(Some(POLL))?;
        let port = socket.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        received.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
        };
        Ok(Self {
            port,
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many datagrams it has received (and echoed) so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
