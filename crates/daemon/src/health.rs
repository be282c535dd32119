//! Health and Prometheus metrics over a minimal HTTP/1.1 server:
//! `GET /livez`, `GET /readyz`, `GET /metrics`. Requests are a few bytes
//! from a kubelet or a scraper; one short-lived connection each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the HTTP server asks a daemon.
pub trait HealthProbe: Send + Sync {
    /// Live while the daemon's owner loop turned within `stall`.
    fn is_live(&self, stall: Duration) -> bool;
    /// Ready to serve, by the daemon's own rule.
    fn is_ready(&self) -> bool;
    /// The metrics in Prometheus/OpenMetrics text format.
    fn metrics(&self) -> String;
}

/// When a daemon's owner loop last turned: the owner beats, the HTTP
/// server reads. Measured on Tokio's clock, so paused-time tests see it.
#[derive(Debug)]
pub struct Heartbeat {
    /// Milliseconds since `started`, at the owner loop's last turn.
    last_turn_ms: AtomicU64,
    started: tokio::time::Instant,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that last beat now.
    pub fn new() -> Self {
        Self {
            last_turn_ms: AtomicU64::new(0),
            started: tokio::time::Instant::now(),
        }
    }

    /// Records that the owner loop is turning.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// Live while the owner loop turned within `stall`.
    pub fn is_live(&self, stall: Duration) -> bool {
        let last = Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= stall
    }
}

/// The content type of `/metrics` responses.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/livez`, `/readyz` and `/metrics` on `listener` until dropped.
/// The owner loop must turn at least every `stall` to count as live.
pub async fn serve(listener: TcpListener, probe: Arc<dyn HealthProbe>, stall: Duration) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: do not spin.
                tracing::warn!(%error, "health accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let probe = Arc::clone(&probe);
        tokio::spawn(async move {
            if let Err(error) = respond(stream, probe.as_ref(), stall).await {
                tracing::debug!(%error, "health request failed");
            }
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    probe: &dyn HealthProbe,
    stall: Duration,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out")
            })??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = route(probe, stall, method, path);
    let content_type = if status.starts_with("200") && path == "/metrics" {
        OPENMETRICS
    } else {
        "text/plain"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The status line and body for one request.
fn route(
    probe: &dyn HealthProbe,
    stall: Duration,
    method: &str,
    path: &str,
) -> (&'static str, String) {
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", probe.metrics()),
        ("GET", "/livez") if probe.is_live(stall) => ("200 OK", "ok\n".into()),
        ("GET", "/livez") => ("503 Service Unavailable", "stalled\n".into()),
        ("GET", "/readyz") if probe.is_ready() => ("200 OK", "ok\n".into()),
        ("GET", "/readyz") => ("503 Service Unavailable", "not ready\n".into()),
        ("GET", _) => ("404 Not Found", "not found\n".into()),
        _ => ("405 Method Not Allowed", "GET only\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        live: bool,
        ready: bool,
    }

    impl HealthProbe for Fixed {
        fn is_live(&self, _stall: Duration) -> bool {
            self.live
        }
        fn is_ready(&self) -> bool {
            self.ready
        }
        fn metrics(&self) -> String {
            "up 1\n# EOF\n".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_is_live_until_the_loop_stalls_longer_than_allowed() {
        let stall = Duration::from_secs(10);
        let heartbeat = Heartbeat::new();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(
            heartbeat.is_live(stall),
            "9 s without a beat is within 10 s"
        );
        heartbeat.beat();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(heartbeat.is_live(stall), "exactly the allowed stall");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!heartbeat.is_live(stall), "11 s since the last beat");
        heartbeat.beat();
        assert!(heartbeat.is_live(stall), "a beat revives it");
    }

    /// Sends `request` to a server over `probe`; returns the whole response.
    async fn exchange(probe: Fixed, request: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let server = tokio::spawn(serve(listener, Arc::new(probe), Duration::from_secs(1)));
        let mut client = TcpStream::connect(address).await.expect("connect");
        client.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        client
            .read_to_string(&mut response)
            .await
            .expect("read the response");
        server.abort();
        response
    }

    #[tokio::test]
    async fn each_path_answers_with_its_status_type_and_body() {
        let cases = [
            // (live, ready, request line, status, content type, body)
            (true, true, "GET /livez", "200 OK", "text/plain", "ok\n"),
            (
                false,
                true,
                "GET /livez",
                "503 Service Unavailable",
                "text/plain",
                "stalled\n",
            ),
            (true, true, "GET /readyz", "200 OK", "text/plain", "ok\n"),
            (
                true,
                false,
                "GET /readyz",
                "503 Service Unavailable",
                "text/plain",
                "not ready\n",
            ),
            (
                false,
                false,
                "GET /metrics",
                "200 OK",
                OPENMETRICS,
                "up 1\n# EOF\n",
            ),
            (
                true,
                true,
                "GET /other",
                "404 Not Found",
                "text/plain",
                "not found\n",
            ),
            (
                true,
                true,
                "POST /metrics",
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            ),
        ];
        for (live, ready, line, status, content_type, body) in cases {
            let response = exchange(
                Fixed { live, ready },
                &format!("{line} HTTP/1.1\r\nhost: x\r\n\r\n"),
            )
            .await;
            let expected = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            assert_eq!(response, expected, "{line} (live {live}, ready {ready})");
        }
    }

    #[tokio::test]
    async fn a_request_split_over_several_writes_is_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let probe = Arc::new(Fixed {
            live: true,
            ready: true,
        });
        let server = tokio::spawn(serve(listener, probe, Duration::from_secs(1)));
        let mut client = TcpStream::connect(address).await.expect("connect");
        for part in ["GET /re", "adyz HTTP/1.1\r\n", "\r\n"] {
            client.write_all(part.as_bytes()).await.expect("send");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut response = String::new();
        client.read_to_string(&mut response).await.expect("read");
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
    }
}
