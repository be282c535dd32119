//! `twill-ipamd`: the node IPAM service (see `twill_ipam::service`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use twill_ipam::service::{ServiceConfig, serve};
use twill_ipam::{GcConfig, Ipam};
use twill_store::{Durability, SqliteOptions, SqliteStore};

/// Serves IP address allocation for this node's pods over a unix socket.
#[derive(Debug, Parser)]
#[command(name = "twill-ipamd", version)]
struct Args {
    /// The node served.
    #[arg(long, env = "NODENAME")]
    node: String,
    /// The embedded datastore file.
    #[arg(
        long,
        env = "TWILL_DATASTORE",
        default_value = "/var/lib/twill/datastore.db"
    )]
    datastore: PathBuf,
    /// The unix socket to listen on (created with mode 0600).
    #[arg(long, default_value = "/var/run/twill/ipam.sock")]
    socket: PathBuf,
    /// What a committed allocation survives.
    #[arg(long, value_enum, default_value_t = DurabilityArg::PowerLoss)]
    durability: DurabilityArg,
    /// Seconds between garbage collection passes (0: never). By default
    /// half the grace period, as Calico's kube-controllers runs a full pass
    /// every `leakGracePeriod / 2`: leaked addresses are reclaimed without
    /// any other component deployed.
    #[arg(long)]
    gc_interval: Option<u64>,
    /// Seconds an owner must be gone before its addresses are reclaimed.
    #[arg(long, default_value_t = 900)]
    gc_grace: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Survives a crash of any process.
    ProcessCrash,
    /// Also survives a power loss (an fsync per write).
    PowerLoss,
}

fn main() -> ExitCode {
    let args = Args::parse();
    twill_daemon::init_tracing(args.log_json);
    let options = SqliteOptions {
        durability: match args.durability {
            DurabilityArg::ProcessCrash => Durability::ProcessCrash,
            DurabilityArg::PowerLoss => Durability::PowerLoss,
        },
        ..SqliteOptions::default()
    };
    let store = match SqliteStore::open_with(&args.datastore, options) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the datastore");
            return ExitCode::from(2);
        }
    };
    let ipam = Arc::new(Ipam::new(Arc::new(store)));
    let config = ServiceConfig {
        socket: args.socket,
        node: args.node,
        gc_interval: gc_interval(args.gc_interval, args.gc_grace),
        gc: GcConfig {
            grace: Duration::from_secs(args.gc_grace),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(serve(ipam, config, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ipam service failed");
            ExitCode::FAILURE
        }
    }
}

/// The time between collection passes: as asked, else half the grace
/// period; `None` (never) for 0.
fn gc_interval(asked: Option<u64>, grace: u64) -> Option<Duration> {
    match asked.unwrap_or(grace / 2) {
        0 => None,
        seconds => Some(Duration::from_secs(seconds)),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler, SIGINT alone stops the service.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_runs_every_half_grace_period_unless_asked_otherwise() {
        let cases = [
            (None, 900, Some(450)),
            (Some(60), 900, Some(60)),
            (Some(0), 900, None),
            (None, 0, None),
        ];
        for (asked, grace, expected) in cases {
            assert_eq!(
                gc_interval(asked, grace),
                expected.map(Duration::from_secs),
                "--gc-interval {asked:?} --gc-grace {grace}"
            );
        }
    }
}
