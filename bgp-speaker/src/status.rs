//! The node-status protocol: what `twill node status` shows, served by the
//! daemon on a unix socket (mode 0600).
//!
//! Newline-delimited JSON: the client sends the line `status`; the server
//! answers one line, a [`NodeStatus`] object, or `{"error": "..."}` for a
//! request it does not know, and closes the connection.
//!
//! [`NodeStatus::render_table`] prints it in the layout of
//! `calicoctl node status`, with two more columns (prefixes received and
//! advertised).

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Where the daemon serves status unless told otherwise.
pub const DEFAULT_STATUS_SOCKET: &str = "/var/run/twill/bgp.sock";

/// The one request the server knows.
pub const STATUS_REQUEST: &str = "status";

/// How long [`query`] waits for the daemon.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The BGP state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its AS number.
    pub asn: u32,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// One row per configured peering.
    pub peers: Vec<PeerRow>,
}

/// One peering, as `calicoctl node status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    /// The peer's address.
    pub address: IpAddr,
    /// `node-to-node mesh`, `global` or `node specific`.
    pub peer_type: String,
    /// The session state (`Idle`, `Connect`, `Active`, `OpenSent`,
    /// `OpenConfirm`, `Established`).
    pub state: String,
    /// When the session entered that state, in seconds since the Unix epoch.
    pub since: u64,
    /// The last error, or empty.
    pub info: String,
    /// Prefixes received from the peer.
    pub prefixes_received: usize,
    /// Prefixes received and accepted by the import filter.
    pub prefixes_accepted: usize,
    /// Prefixes advertised to the peer.
    pub prefixes_advertised: usize,
}

impl PeerRow {
    /// Seconds since the epoch of `time` (0 before the epoch).
    pub fn epoch_seconds(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

/// Why a status query failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The socket cannot be reached (the daemon is not running?).
    #[error("cannot connect to the bgp-speaker status socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("status socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The answer is not a status.
    #[error("status socket {path} answered something that is not a node status: {reason}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Asks the daemon at `path` for its status (blocking, at most a few seconds).
///
/// # Errors
///
/// [`StatusError`] naming the socket.
pub fn query(path: &Path) -> Result<NodeStatus, StatusError> {
    let io = |source| StatusError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| StatusError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(QUERY_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(QUERY_TIMEOUT)).map_err(io)?;
    stream
        .write_all(format!("{STATUS_REQUEST}\n").as_bytes())
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    parse_answer(&line).map_err(|reason| StatusError::Protocol {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse_answer(line: &str) -> Result<NodeStatus, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    if let Some(error) = value.get("error").and_then(serde_json::Value::as_str) {
        return Err(format!("error: {error}"));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Binds the status socket at `path`: replaces a stale socket file, creates
/// the parent directory, and restricts the socket to its owner (0600).
///
/// # Errors
///
/// Any I/O error.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves status requests on `listener` until the task is dropped; `source`
/// produces the current status for each request.
pub async fn serve<F, Fut>(listener: UnixListener, source: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = NodeStatus> + Send,
{
    let source = Arc::new(source);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "status accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, source.as_ref()).await {
                tracing::debug!(%error, "status request failed");
            }
        });
    }
}

async fn answer<F, Fut>(stream: UnixStream, source: &F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = NodeStatus>,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(4096);
    tokio::time::timeout(QUERY_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let reply = if line.trim() == STATUS_REQUEST {
        serde_json::to_string(&source().await).map_err(std::io::Error::other)?
    } else {
        serde_json::json!({ "error": format!("unknown request {:?}", line.trim()) }).to_string()
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

impl NodeStatus {
    /// `calicoctl node status`'s layout, with times shown relative to `now`
    /// (a time of day within the last day, a date before).
    pub fn render_table_at(&self, now: SystemTime) -> String {
        let now = PeerRow::epoch_seconds(now);
        let mut out = String::from("Twill BGP speaker is running.\n");
        for (title, ipv4) in [("IPv4 BGP status", true), ("IPv6 BGP status", false)] {
            out.push('\n');
            out.push_str(title);
            out.push('\n');
            let rows: Vec<[String; 7]> = self
                .peers
                .iter()
                .filter(|p| p.address.is_ipv4() == ipv4)
                .map(|p| {
                    [
                        p.address.to_string(),
                        p.peer_type.clone(),
                        if p.state == "Established" {
                            "up"
                        } else {
                            "start"
                        }
                        .to_string(),
                        render_since(p.since, now),
                        if p.info.is_empty() {
                            p.state.clone()
                        } else {
                            format!("{} {}", p.state, p.info)
                        },
                        p.prefixes_received.to_string(),
                        p.prefixes_advertised.to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                out.push_str(if ipv4 {
                    "No IPv4 peers found.\n"
                } else {
                    "No IPv6 peers found.\n"
                });
                continue;
            }
            let header = [
                "PEER ADDRESS",
                "PEER TYPE",
                "STATE",
                "SINCE",
                "INFO",
                "RECEIVED",
                "ADVERTISED",
            ];
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
                s.push_str(&"-".repeat(w + 2));
                s.push('+');
                s
            });
            out.push_str(&rule);
            out.push('\n');
            out.push('|');
            for (cell, width) in header.iter().zip(&widths) {
                out.push_str(&format!(" {cell:^width$} |"));
            }
            out.push('\n');
            out.push_str(&rule);
            out.push('\n');
            for row in &rows {
                out.push('|');
                for (cell, width) in row.iter().zip(&widths) {
                    out.push_str(&format!(" {cell:<width$} |"));
                }
                out.push('\n');
            }
            out.push_str(&rule);
            out.push('\n');
        }
        out
    }

    /// [`NodeStatus::render_table_at`] now.
    pub fn render_table(&self) -> String {
        self.render_table_at(SystemTime::now())
    }
}

/// BIRD's `since` column: `HH:MM:SS` (UTC) within a day, else `YYYY-MM-DD`.
fn render_since(since: u64, now: u64) -> String {
    let days = since / 86_400;
    let in_day = since % 86_400;
    if now.saturating_sub(since) < 86_400 {
        format!(
            "{:02}:{:02}:{:02}",
            in_day / 3600,
            (in_day % 3600) / 60,
            in_day % 60
        )
    } else {
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeStatus {
        NodeStatus {
            node: "node-a".into(),
            asn: 64512,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            peers: vec![
                PeerRow {
                    address: "10.0.0.2".parse().expect("ip"),
                    peer_type: "node-to-node mesh".into(),
                    state: "Established".into(),
                    since: 1_764_189_004, // 2025-11-26 20:30:04 UTC
                    info: String::new(),
                    prefixes_received: 1,
                    prefixes_accepted: 1,
                    prefixes_advertised: 2,
                },
                PeerRow {
                    address: "192.0.2.1".parse().expect("ip"),
                    peer_type: "global".into(),
                    state: "Active".into(),
                    since: 1_700_000_000, // 2023-11-14
                    info: "Connection refused".into(),
                    prefixes_received: 0,
                    prefixes_accepted: 0,
                    prefixes_advertised: 0,
                },
            ],
        }
    }

    #[test]
    fn table_follows_calicoctl_layout() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_190_000);
        let expected = "\
Twill BGP speaker is running.

IPv4 BGP status
+--------------+-------------------+-------+------------+---------------------------+----------+------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |           INFO            | RECEIVED | ADVERTISED |
+--------------+-------------------+-------+------------+---------------------------+----------+------------+
| 10.0.0.2     | node-to-node mesh | up    | 20:30:04   | Established               | 1        | 2          |
| 192.0.2.1    | global            | start | 2023-11-14 | Active Connection refused | 0        | 0          |
+--------------+-------------------+-------+------------+---------------------------+----------+------------+

IPv6 BGP status
No IPv6 peers found.
";
        assert_eq!(sample().render_table_at(now), expected);
    }

    #[test]
    fn dates_are_gregorian() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (19_675, (2023, 11, 14)),
            (11_016, (2000, 2, 29)),
        ] {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[tokio::test]
    async fn client_gets_the_status_the_server_produces_over_a_0600_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/bgp.sock");
        let listener = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = tokio::spawn(serve(listener, || async { sample() }));
        let client_path = path.clone();
        let got = tokio::task::spawn_blocking(move || query(&client_path))
            .await
            .expect("join")
            .expect("query");
        assert_eq!(got, sample());
        server.abort();
    }

    #[tokio::test]
    async fn unknown_request_is_answered_with_an_error_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bgp.sock");
        let server = tokio::spawn(serve(bind(&path).expect("bind"), || async { sample() }));
        let mut stream = UnixStream::connect(&path).await.expect("connect");
        stream.write_all(b"routes\n").await.expect("write");
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await
            .expect("read");
        assert_eq!(
            parse_answer(&line),
            Err("error: unknown request \"routes\"".into())
        );
        server.abort();
    }

    #[test]
    fn query_without_a_daemon_names_the_socket() {
        let err = query(Path::new("/nonexistent/twill-bgp.sock")).expect_err("no daemon");
        assert!(
            err.to_string().contains("/nonexistent/twill-bgp.sock"),
            "{err}"
        );
    }
}
