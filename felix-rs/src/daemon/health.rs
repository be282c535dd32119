//! Health and Prometheus metrics over a minimal HTTP/1.1 server:
//! `GET /livez`, `GET /readyz`, `GET /metrics`. Requests are a few bytes
//! from a kubelet or a scraper; one short-lived connection each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Felix's `felix_resync_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncState {
    /// Waiting for the first snapshot of every kind.
    WaitingForDatastore = 1,
    /// Every kind listed; the first apply has not succeeded yet.
    ResyncInProgress = 2,
    /// Programmed from a complete view of the datastore.
    InSync = 3,
}

/// The daemon's metrics and health, shared by the owner task (which
/// updates them) and the HTTP server (which reads them).
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    /// Time per apply (render, plan, transaction, verify), seconds.
    pub apply_time: Histogram,
    /// Local WorkloadEndpoints whose chains are programmed.
    pub active_local_endpoints: Gauge,
    /// Policies rendered for local endpoints.
    pub active_local_policies: Gauge,
    /// Distinct rule selectors (named sets).
    pub active_local_selectors: Gauge,
    /// Failed nft transactions, reads and verifications.
    pub nft_errors: Counter,
    /// [`ResyncState`] as a number.
    pub resync_state: Gauge,
    ready: AtomicBool,
    /// Milliseconds since the daemon started, at the owner loop's last turn.
    last_turn_ms: AtomicU64,
    started: tokio::time::Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Fresh metrics, registered under Felix's names.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let apply_time = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let active_local_endpoints = Gauge::default();
        let active_local_policies = Gauge::default();
        let active_local_selectors = Gauge::default();
        let nft_errors = Counter::default();
        let resync_state = Gauge::default();
        registry.register(
            "felix_int_dataplane_apply_time_seconds",
            "Time to render, plan, apply and verify one nft transaction",
            apply_time.clone(),
        );
        registry.register(
            "felix_active_local_endpoints",
            "Local workload endpoints whose policy is programmed",
            active_local_endpoints.clone(),
        );
        registry.register(
            "felix_active_local_policies",
            "Policies programmed for local endpoints",
            active_local_policies.clone(),
        );
        registry.register(
            "felix_active_local_selectors",
            "Distinct rule selectors programmed as sets",
            active_local_selectors.clone(),
        );
        registry.register(
            "felix_nft_errors",
            "Failed nft transactions, read-backs and verifications",
            nft_errors.clone(),
        );
        registry.register(
            "felix_resync_state",
            "1: waiting for the datastore, 2: resync in progress, 3: in sync",
            resync_state.clone(),
        );
        resync_state.set(ResyncState::WaitingForDatastore as i64);
        Self {
            registry,
            apply_time,
            active_local_endpoints,
            active_local_policies,
            active_local_selectors,
            nft_errors,
            resync_state,
            ready: AtomicBool::new(false),
            last_turn_ms: AtomicU64::new(0),
            started: tokio::time::Instant::now(),
        }
    }

    /// Sets the resync state; ready means in sync with the last apply
    /// successful.
    pub fn set_state(&self, state: ResyncState, last_apply_ok: bool) {
        self.resync_state.set(state as i64);
        self.ready.store(
            state == ResyncState::InSync && last_apply_ok,
            Ordering::Relaxed,
        );
    }

    /// Whether the daemon is ready (see [`Health::set_state`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Records that the owner loop is turning.
    pub fn heartbeat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// Live while the owner loop turned within `stall`.
    pub fn is_live(&self, stall: Duration) -> bool {
        let now = self.started.elapsed();
        let last = Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed));
        now.saturating_sub(last) <= stall
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `/livez`, `/readyz` and `/metrics` on `listener` until dropped.
/// The owner loop must turn at least every `stall` to count as live.
pub async fn serve(listener: TcpListener, health: Arc<Health>, stall: Duration) {
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
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            if let Err(error) = respond(stream, &health, stall).await {
                tracing::debug!(%error, "health request failed");
            }
        });
    }
}

async fn respond(mut stream: TcpStream, health: &Health, stall: Duration) -> std::io::Result<()> {
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
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            health.encode(),
        ),
        ("GET", "/livez") if health.is_live(stall) => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/livez") => ("503 Service Unavailable", "text/plain", "stalled\n".into()),
        ("GET", "/readyz") if health.is_ready() => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".into(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
