//! `bgp-speaker`: Twill's BGP daemon. Flags become a [`DaemonConfig`]; the
//! daemon then runs until SIGINT or SIGTERM. Kernel routes stay on exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bgp_speaker::config::DirSecrets;
use bgp_speaker::daemon::{self, DaemonConfig, RouterStarter};
use clap::Parser;
use twill_kernel::{Kernel, NetlinkKernel, NftConfig};
use twill_store::{AsyncDatastore, SqliteStore};

/// Twill's BGP speaker: peers as Calico's BGPConfiguration, BGPPeer and
/// Node resources say, advertises this node's IPAM blocks, and programs the
/// routes it learns.
#[derive(Debug, Parser)]
#[command(name = "bgp-speaker", version)]
struct Args {
    /// This node's name (its Node resource).
    #[arg(long, env = "NODENAME")]
    node: String,
    /// The SQLite datastore file.
    #[arg(long, env = "TWILL_DATASTORE")]
    datastore: PathBuf,
    /// Where to serve `twill node status` (a unix socket, mode 0600).
    #[arg(long, default_value = bgp_speaker::status::DEFAULT_STATUS_SOCKET)]
    status_socket: PathBuf,
    /// Where to serve /livez, /readyz and /metrics (e.g. 127.0.0.1:9093).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Directory of mounted Secrets: a password `secretKeyRef {name, key}`
    /// is read from the file `<dir>/<name>/<key>`.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// Do not touch the kernel: no learned routes, no blackholes.
    #[arg(long)]
    no_kernel: bool,
    /// Milliseconds datastore changes are coalesced before an apply.
    #[arg(long, default_value_t = 100)]
    apply_delay_ms: u64,
    /// Seconds route selection waits after a restart (routes of the
    /// previous run still in the kernel) for every peer's End-of-RIB before
    /// the first decision pass (RFC 4724 §4.1; Calico has no field for
    /// it). Also bounds the sweep of the previous run's kernel routes.
    #[arg(long, default_value_t = daemon::SELECTION_DEFERRAL_TIME.as_secs())]
    selection_deferral_time: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    twill_daemon::init_tracing(args.log_json);
    if args.node.is_empty() {
        tracing::error!("--node must not be empty");
        return ExitCode::from(2);
    }
    let config = DaemonConfig {
        status_socket: Some(args.status_socket.clone()),
        metrics_listen: args.metrics_listen,
        apply_delay: Duration::from_millis(args.apply_delay_ms),
        ..DaemonConfig::new(args.node.clone())
    };
    let store = match SqliteStore::open(&args.datastore) {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, path = %args.datastore.display(), "cannot open the datastore");
            return ExitCode::from(3);
        }
    };
    let kernel: Option<Arc<dyn Kernel>> = if args.no_kernel {
        None
    } else {
        match NetlinkKernel::current(NftConfig::default()) {
            Ok(kernel) => Some(Arc::new(kernel)),
            Err(error) => {
                tracing::error!(%error, "cannot open the kernel");
                return ExitCode::from(3);
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    let starter = Arc::new(
        RouterStarter::new(kernel.clone())
            .with_selection_deferral(Duration::from_secs(args.selection_deferral_time)),
    );
    let secrets = Arc::new(DirSecrets::new(args.secrets_dir.clone()));
    match runtime.block_on(daemon::run(
        config,
        AsyncDatastore::new(Arc::new(store)),
        kernel,
        secrets,
        starter,
        twill_daemon::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "bgp-speaker stopped");
            ExitCode::from(1)
        }
    }
}
