//! The task that owns the service's state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::protocol::{BlockStatus, ErrorReply, Op, Reply, Request, Response, Status};
use crate::block::BlockExt;
use crate::env::StoreLiveness;
use crate::error::Result;
use crate::gc::{GarbageCollector, GcConfig};
use crate::pool::Snapshot;
use crate::store;
use crate::{Ipam, affinity};

/// A message to the state owner.
#[derive(Debug)]
pub enum ServiceMsg {
    /// A client request and where to send its response.
    Request {
        /// The request.
        request: Request,
        /// The connection waiting for the response.
        reply: oneshot::Sender<Response>,
    },
    /// Time for a garbage collection pass.
    Gc,
}

/// The most queued messages served in one batch.
const MAX_BATCH: usize = 128;

/// How long the owner waits at most for a batch to reach the last batch's
/// size, and how often it looks.
const GATHER_WAIT: Duration = Duration::from_micros(200);
const GATHER_POLL: Duration = Duration::from_micros(50);

/// Moves queued messages into `batch`, up to [`MAX_BATCH`].
fn drain(rx: &mut mpsc::Receiver<ServiceMsg>, batch: &mut Vec<ServiceMsg>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(msg) => batch.push(msg),
            Err(_) => break,
        }
    }
}

struct Owner {
    ipam: Arc<Ipam>,
    node: String,
    gc: GarbageCollector,
    requests: u64,
    failures: u64,
}

/// Starts the owner on a blocking thread (datastore calls block).
pub(super) fn spawn_owner(
    ipam: Arc<Ipam>,
    node: String,
    gc: GcConfig,
    mut rx: mpsc::Receiver<ServiceMsg>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let mut owner = Owner {
            ipam,
            node,
            gc: GarbageCollector::new(gc),
            requests: 0,
            failures: 0,
        };
        let mut last = 1;
        while let Some(first) = rx.blocking_recv() {
            // Requests that queued up while the last batch was written are
            // served together (see `Ipam::allocate_many`).
            let mut batch = vec![first];
            drain(&mut rx, &mut batch);
            // The clients just answered are likely sending their next
            // requests: wait a moment for as many as the last batch held,
            // so that one commit serves them all.
            let target = last.min(MAX_BATCH);
            let mut waited = Duration::ZERO;
            while batch.len() < target && waited < GATHER_WAIT {
                std::thread::sleep(GATHER_POLL);
                waited += GATHER_POLL;
                drain(&mut rx, &mut batch);
            }
            last = batch.len();
            owner.handle_batch(batch);
        }
    })
}

impl Owner {
    fn handle_batch(&mut self, batch: Vec<ServiceMsg>) {
        let mut allocations = Vec::new();
        let mut rest = Vec::new();
        for msg in batch {
            match msg {
                ServiceMsg::Request {
                    request:
                        Request {
                            id,
                            op: Op::Allocate { request },
                        },
                    reply,
                } => allocations.push((id, request, reply)),
                other => rest.push(other),
            }
        }
        // Even a lone allocation goes this way: its handle and block are
        // then written in one transaction (one commit instead of two).
        if !allocations.is_empty() {
            let requests: Vec<_> = allocations.iter().map(|(_, r, _)| r.clone()).collect();
            let results = self.ipam.allocate_many(&requests);
            tracing::debug!(batch = requests.len(), "served allocations");
            for ((id, _, reply), result) in allocations.into_iter().zip(results) {
                let response = self.respond(id, result.map(|ips| Reply::Allocated { ips }));
                let _ = reply.send(response);
            }
        }
        for msg in rest {
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: ServiceMsg) {
        match msg {
            ServiceMsg::Request { request, reply } => {
                let _span = tracing::debug_span!("request", id = request.id).entered();
                let response = self.serve(request);
                // The client may have gone; the allocation is persisted
                // either way and the collector reclaims it if nobody uses it.
                let _ = reply.send(response);
            }
            ServiceMsg::Gc => {
                let ipam = Arc::clone(&self.ipam);
                let result = StoreLiveness::load(ipam.store())
                    .and_then(|liveness| self.gc.run(&ipam, &liveness));
                match result {
                    Ok(report) => tracing::info!(?report, "garbage collection pass"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection pass failed"),
                }
            }
        }
    }

    fn serve(&mut self, request: Request) -> Response {
        let result = match request.op {
            Op::Allocate { request } => self
                .ipam
                .allocate(&request)
                .map(|ips| Reply::Allocated { ips }),
            Op::AssignIp { request } => self
                .ipam
                .assign_ip(&request)
                .map(|ip| Reply::Allocated { ips: vec![ip] }),
            Op::ReleaseHandle { handle } => self
                .ipam
                .release_handle(&handle)
                .map(|released| Reply::Released { released }),
            Op::ReleaseIp {
                ip,
                handle,
                sequence,
            } => self
                .ipam
                .release_ip(ip, handle.as_deref(), sequence)
                .map(|held| Reply::Released {
                    released: held.map(|_| ip).into_iter().collect(),
                }),
            Op::Status => self.status().map(Reply::Status),
        };
        self.respond(request.id, result)
    }

    fn respond(&mut self, id: u64, result: Result<Reply>) -> Response {
        self.requests += 1;
        match result {
            Ok(reply) => Response {
                id,
                result: Some(reply),
                error: None,
            },
            Err(e) => {
                self.failures += 1;
                tracing::info!(error = %e, "request failed");
                Response {
                    id,
                    result: None,
                    error: Some(ErrorReply::from(&e)),
                }
            }
        }
    }

    fn status(&self) -> Result<Status> {
        let snapshot = Snapshot::load(self.ipam.store())?;
        // The node's blocks are found through its affinities (small
        // documents) and read one at a time: listing every block at once
        // held all of their bodies in memory together, which left the
        // service's RSS up to 15 MB higher after a status request on a node
        // with 157 blocks.
        let names: BTreeSet<String> = affinity::all(self.ipam.store())?
            .into_iter()
            .filter(|a| a.object.spec.node == self.node)
            .map(|a| store::cidr_name(&a.object.spec.cidr))
            .collect();
        let mut blocks = Vec::new();
        for name in names {
            let Some(b) = store::get::<twill_api::ipam::IPAMBlockSpec>(self.ipam.store(), &name)?
            else {
                continue;
            };
            let spec = &b.object.spec;
            if spec.deleted || spec.host() != Some(self.node.as_str()) || spec.network().is_none() {
                continue;
            }
            blocks.push(BlockStatus {
                cidr: spec.cidr.clone(),
                in_use: spec.in_use(),
                free: spec.free(&snapshot.reserved_in(&spec.net())),
            });
        }
        Ok(Status {
            node: self.node.clone(),
            requests: self.requests,
            failures: self.failures,
            blocks,
        })
    }
}
