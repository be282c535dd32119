//! The kernel writer: BGP decisions become protocol-202 routes, one
//! `KernelOp::ApplyRoutes` batch per flush.

use std::collections::HashSet;
use std::net::IpAddr;

use foldhash::HashMap;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};
use twill_kernel::route::TABLE_MAIN;
use twill_kernel::route_batch::spread_key;
use twill_kernel::{
    Kernel, KernelExt, NextHop, Route, RouteChange, RouteFilter, RouteKey, RouteProto,
};

use super::RouterMsg;
use crate::rib::FibChange;

/// What the kernel writer reports back.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KernelReport {
    /// Route writes that succeeded.
    pub(super) writes: u64,
    /// Route writes that failed.
    pub(super) errors: u64,
    /// Routes the writer has in the kernel.
    pub(super) installed: usize,
    /// The start-up sweep has run.
    pub(super) swept: bool,
}

/// Work for the kernel writer.
pub(super) enum KernelJob {
    /// Decisions to install (next hops) or remove (none).
    Changes(Vec<FibChange>),
    /// Delete protocol-202 routes of the main table not in the set.
    Sweep(HashSet<IpNet>),
}

fn kernel_route(prefix: IpNet, hops: &[IpAddr]) -> Route {
    let route = match hops {
        [hop] => Route::via(prefix, *hop),
        _ => Route::multipath(prefix, hops.iter().map(|h| NextHop::via(*h)).collect()),
    };
    route.protocol(RouteProto::TWILL_BGP)
}

fn route_key(prefix: IpNet) -> RouteKey {
    RouteKey {
        destination: prefix,
        table: TABLE_MAIN,
        metric: None,
        protocol: Some(RouteProto::TWILL_BGP),
    }
}

/// The kernel writer: runs until the owner drops its job sender. Blocks
/// on each batch (`Pending::wait`), so it runs outside the runtime.
pub(super) fn kernel_writer(
    kernel: &dyn Kernel,
    mut jobs: mpsc::UnboundedReceiver<KernelJob>,
    report: mpsc::WeakUnboundedSender<RouterMsg>,
) {
    let mut installed: HashSet<IpNet> = HashSet::new();
    let mut held: Option<KernelJob> = None;
    loop {
        let job = match held.take() {
            Some(job) => job,
            None => match jobs.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        let outcome = match job {
            KernelJob::Changes(changes) => {
                let changes = coalesce(changes, &mut jobs, &mut held);
                install(kernel, &mut installed, changes)
            }
            KernelJob::Sweep(wanted) => sweep(kernel, &wanted),
        };
        let Some(report) = report.upgrade() else {
            return;
        };
        let sent = report.send(RouterMsg::Kernel(KernelReport {
            installed: installed.len(),
            ..outcome
        }));
        if sent.is_err() {
            return;
        }
    }
}

/// Merges `first` with every change batch already queued behind it (the
/// latest decision per prefix wins, in first-seen order), so that one
/// kernel batch carries everything decided while the previous one ran. A
/// queued sweep stops the merge and is kept in `held`: it must see the
/// changes before it applied.
fn coalesce(
    first: Vec<FibChange>,
    jobs: &mut mpsc::UnboundedReceiver<KernelJob>,
    held: &mut Option<KernelJob>,
) -> Vec<FibChange> {
    let mut merged = first;
    let mut at: Option<HashMap<IpNet, usize>> = None;
    while let Ok(job) = jobs.try_recv() {
        let KernelJob::Changes(more) = job else {
            *held = Some(job);
            break;
        };
        let at = at.get_or_insert_with(|| {
            merged
                .iter()
                .enumerate()
                .map(|(i, c)| (c.prefix, i))
                .collect()
        });
        for change in more {
            match at.get(&change.prefix) {
                Some(&i) => merged[i] = change,
                None => {
                    at.insert(change.prefix, merged.len());
                    merged.push(change);
                }
            }
        }
    }
    merged
}

/// Routes per kernel batch. A batch is pipelined, so a full table in
/// chunks of this size costs one round trip per chunk more than in one
/// batch, while the `Route`s of a chunk (a few hundred bytes each) are all
/// that is held beside the decisions.
const CHUNK: usize = 16 * 1024;

/// Writes FIB changes as kernel route batches; `installed` follows what
/// the writer has put in the kernel.
fn install(
    kernel: &dyn Kernel,
    installed: &mut HashSet<IpNet>,
    mut changes: Vec<FibChange>,
) -> KernelReport {
    let mut outcome = KernelReport::default();
    // One change per prefix (a decision run and `coalesce` see to that), so
    // the order is free: this one is cheaper for the kernel's FIB trie.
    changes.sort_unstable_by_key(|change| spread_key(change.prefix));
    let mut changes = changes.into_iter();
    loop {
        let chunk: Vec<FibChange> = changes.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            return outcome;
        }
        let part = install_chunk(kernel, installed, chunk);
        outcome.writes += part.writes;
        outcome.errors += part.errors;
    }
}

/// Writes one chunk of FIB changes as one kernel route batch.
fn install_chunk(
    kernel: &dyn Kernel,
    installed: &mut HashSet<IpNet>,
    changes: Vec<FibChange>,
) -> KernelReport {
    let mut outcome = KernelReport::default();
    // Per batch entry: its prefix, and whether it is a replace.
    let mut prefixes = Vec::with_capacity(changes.len());
    let mut batch = Vec::with_capacity(changes.len());
    for change in changes {
        if change.next_hops.is_empty() {
            if !installed.remove(&change.prefix) {
                continue;
            }
            batch.push(RouteChange::Delete(route_key(change.prefix)));
            prefixes.push((change.prefix, false));
        } else {
            installed.insert(change.prefix);
            batch.push(RouteChange::Replace(kernel_route(
                change.prefix,
                &change.next_hops,
            )));
            prefixes.push((change.prefix, true));
        }
    }
    if batch.is_empty() {
        return outcome;
    }
    let count = batch.len();
    match kernel.apply_routes(batch).wait() {
        Ok(report) => {
            outcome.writes += report.applied as u64;
            for failure in report.failed {
                let (prefix, replace) = prefixes[failure.index];
                if !replace && failure.error.is_not_found() {
                    // Already gone: what the delete wanted.
                    outcome.writes += 1;
                    continue;
                }
                outcome.errors += 1;
                installed.remove(&prefix);
                warn!(%prefix, error = %failure.error, "kernel route write failed");
            }
        }
        Err(error) => {
            outcome.errors += count as u64;
            for (prefix, _) in &prefixes {
                installed.remove(prefix);
            }
            warn!(routes = count, %error, "kernel route batch failed");
        }
    }
    outcome
}

/// The start-up sweep: deletes the protocol-202 routes of the main table
/// that are not `wanted`.
fn sweep(kernel: &dyn Kernel, wanted: &HashSet<IpNet>) -> KernelReport {
    let mut outcome = KernelReport {
        swept: true,
        ..KernelReport::default()
    };
    let routes = match kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_BGP))
        .wait()
    {
        Ok(routes) => routes,
        Err(error) => {
            outcome.errors += 1;
            warn!(%error, "cannot list protocol-202 routes for the start-up sweep");
            return outcome;
        }
    };
    let stale: Vec<RouteChange> = routes
        .into_iter()
        .filter(|r| r.table == TABLE_MAIN && !wanted.contains(&r.destination))
        .map(|r| RouteChange::Delete(route_key(r.destination)))
        .collect();
    info!(routes = stale.len(), "removing stale protocol-202 routes");
    if stale.is_empty() {
        return outcome;
    }
    let count = stale.len();
    match kernel.apply_routes(stale).wait() {
        Ok(report) => {
            outcome.writes += report.applied as u64;
            for failure in report.failed {
                if !failure.error.is_not_found() {
                    outcome.errors += 1;
                    warn!(error = %failure.error, "stale kernel route delete failed");
                }
            }
        }
        Err(error) => {
            outcome.errors += count as u64;
            warn!(%error, "stale kernel route delete batch failed");
        }
    }
    outcome
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
