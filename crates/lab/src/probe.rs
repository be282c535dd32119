//! Probes (a real connection attempt from a pod's namespace) and the
//! listener a pod runs on its ports (TCP accept, UDP echo).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::error::Result;
use crate::scenario::{Protocol, Verdict};
use crate::sys;

/// What a probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Connected (TCP), echoed (UDP) or answered (ICMP).
    Reachable,
    /// The destination answered with a reset or port unreachable: the
    /// packet arrived but nothing listens.
    Refused,
    /// Nothing came back in time (a drop).
    TimedOut,
    /// An ICMP host or network unreachable, or no route.
    Unreachable,
}

impl Outcome {
    /// Allow when reachable; every other outcome is a deny.
    pub fn verdict(self) -> Verdict {
        if self == Self::Reachable {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }

    /// A word for the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::Refused => "refused",
            Self::TimedOut => "timed out",
            Self::Unreachable => "unreachable",
        }
    }

    fn from_io(error: &std::io::Error) -> Self {
        match error.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Self::Refused,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Self::Unreachable,
            _ => Self::TimedOut,
        }
    }
}

/// The payload prefix the UDP echo answers.
const UDP_PAYLOAD: &[u8] = b"twill-lab-probe";

/// Probes `addr:port` from inside `netns`.
///
/// # Errors
///
/// When the namespace cannot be entered or `ping` cannot run.
pub fn probe(
    netns: &str,
    addr: IpAddr,
    port: u16,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Outcome> {
    match protocol {
        Protocol::Tcp => sys::run_in_netns(netns, || {
            match TcpStream::connect_timeout(&SocketAddr::new(addr, port), timeout) {
                Ok(_) => Outcome::Reachable,
                Err(e) => Outcome::from_io(&e),
            }
        }),
        Protocol::Udp => sys::run_in_netns(netns, || udp_round_trip(addr, port, timeout)),
        Protocol::Icmp => {
            let wait = format!("{:.1}", timeout.as_secs_f64().max(0.1));
            let output = sys::in_netns(netns, "ping")
                .args(["-n", "-q", "-c1", "-W", &wait, &addr.to_string()])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| crate::LabError::io(format!("ping {addr} from {netns}"), e))?;
            let text = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase()
                + &String::from_utf8_lossy(&output.stderr).to_ascii_lowercase();
            Ok(if output.status.success() {
                Outcome::Reachable
            } else if text.contains("unreachable") || text.contains("filtered") {
                Outcome::Unreachable
            } else {
                Outcome::TimedOut
            })
        }
    }
}

fn udp_round_trip(addr: IpAddr, port: u16, timeout: Duration) -> Outcome {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let attempt = || -> std::io::Result<Outcome> {
        let socket = UdpSocket::bind(bind)?;
        socket.connect(SocketAddr::new(addr, port))?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send(UDP_PAYLOAD)?;
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf)?;
        Ok(if buf[..n] == *UDP_PAYLOAD {
            Outcome::Reachable
        } else {
            Outcome::TimedOut
        })
    };
    attempt().unwrap_or_else(|e| Outcome::from_io(&e))
}

/// Serves the given ports until killed: every TCP connection is accepted
/// and echoed, every UDP datagram sent back. Runs inside a pod's
/// namespace as a process of its own (`twill lab listen`).
///
/// # Errors
///
/// When a port cannot be bound.
pub fn listen(tcp: &[u16], udp: &[u16]) -> Result<()> {
    let mut threads = Vec::new();
    for &port in tcp {
        let listener = TcpListener::bind(("0.0.0.0", port))
            .map_err(|e| crate::LabError::io(format!("bind tcp port {port}"), e))?;
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || echo_tcp(stream));
            }
        }));
    }
    for &port in udp {
        let socket = UdpSocket::bind(("0.0.0.0", port))
            .map_err(|e| crate::LabError::io(format!("bind udp port {port}"), e))?;
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn echo_tcp(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 2048];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}
