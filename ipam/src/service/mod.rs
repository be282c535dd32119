//! The node IPAM service: serves the CNI plugin over a unix socket.
//!
//! ```text
//!  listener task --accept--> connection task (one per client)
//!                               | reads a line, sends ServiceMsg::Request
//!                               v          with a oneshot for the reply
//!  gc timer task --Gc-->  state owner (one blocking thread: owns the Ipam,
//!                          its cache of the node's blocks and the counters;
//!                          writes to the datastore, then replies)
//! ```
//!
//! The owner handles one message at a time, so a node's requests never race
//! each other for the same block (no conflicts, no retries) and there is no
//! lock file; the datastore write of every allocation completes before the
//! reply is sent. Requests that queue up while the owner works are drained
//! and served together: the allocations among them with one datastore
//! transaction per block (group commit, [`crate::batch`]), so one commit —
//! one fsync with `--durability power-loss` — persists the whole batch
//! before any of its replies is sent. When a batch is smaller than the last
//! one, the owner waits up to 200 µs for the clients just answered to send
//! their next requests, so that steady load is served with few commits.
//! The socket is created with mode 0600 (root, or whoever runs the service,
//! only). The protocol is in [`protocol`].

pub mod protocol;
mod state;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::Ipam;
use crate::gc::GcConfig;
use protocol::{ErrorReply, MAX_LINE, Request, Response};
pub use state::ServiceMsg;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The unix socket to listen on.
    pub socket: PathBuf,
    /// The node served.
    pub node: String,
    /// How often to collect garbage (`None`: never; a cluster-wide
    /// collector does it).
    pub gc_interval: Option<Duration>,
    /// The collector's settings.
    pub gc: GcConfig,
}

/// Binds the socket with mode 0600, replacing a stale socket file.
///
/// # Errors
///
/// The socket cannot be created or its mode set.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Create the socket inaccessible to others from the start, then make
    // the mode explicit whatever the umask was.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until `shutdown` completes.
///
/// # Errors
///
/// The socket cannot be bound.
pub async fn serve(
    ipam: Arc<Ipam>,
    config: ServiceConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let listener = bind(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), node = %config.node, "ipam service listening");
    let (tx, rx) = mpsc::channel::<ServiceMsg>(1024);
    let owner = state::spawn_owner(ipam, config.node.clone(), config.gc, rx);

    let gc_task = config.gc_interval.map(|every| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if tx.send(ServiceMsg::Gc).await.is_err() {
                    break;
                }
            }
        })
    });

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, tx.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
        }
    }
    if let Some(task) = gc_task {
        task.abort();
    }
    drop(tx);
    // The owner finishes the request in hand; queued ones get no reply.
    let _ = owner.await;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

async fn connection(stream: UnixStream, tx: mpsc::Sender<ServiceMsg>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await;
        match read {
            Ok(0) => return,
            Ok(n) if n > MAX_LINE => {
                tracing::warn!("request line too long; closing connection");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "connection read failed");
                return;
            }
        }
        let response = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(request) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                let id = request.id;
                if tx
                    .send(ServiceMsg::Request {
                        request,
                        reply: reply_tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                match reply_rx.await {
                    Ok(response) => response,
                    Err(_) => Response {
                        id,
                        result: None,
                        error: Some(ErrorReply {
                            kind: "shuttingDown".into(),
                            refusal: false,
                            message: "the ipam service is shutting down".into(),
                        }),
                    },
                }
            }
            Err(e) => Response {
                id: 0,
                result: None,
                error: Some(ErrorReply {
                    kind: "badRequest".into(),
                    refusal: true,
                    message: format!("cannot read request: {e}"),
                }),
            },
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize to JSON");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}
