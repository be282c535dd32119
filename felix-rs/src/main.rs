//! `felix-rs`: Twill's policy daemon. Flags become a [`DaemonConfig`],
//! validated before anything else happens; then the daemon runs until
//! SIGINT or SIGTERM, leaving the kernel's ruleset in place.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use felix_rs::daemon::{self, DaemonConfig};
use twill_kernel::{NetlinkKernel, NftConfig};
use twill_store::{AsyncDatastore, SqliteStore};

/// See [`felix_rs::allocator`]: mimalloc returns the transient buffers of
/// a start and of a drift check to the kernel; glibc's malloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Twill's policy daemon: programs Calico and Kubernetes policy for this
/// node's workloads into the nftables table `inet twill`.
#[derive(Debug, Parser)]
#[command(name = "felix-rs", version)]
struct Args {
    /// This node's name (WorkloadEndpoints with this `spec.node` are local).
    #[arg(long, env = "NODENAME")]
    node: String,
    /// The SQLite datastore file.
    #[arg(long, env = "TWILL_DATASTORE")]
    datastore: PathBuf,
    /// Where endpoint status files are written for the CNI plugin.
    #[arg(long, default_value = twill_api::status::DEFAULT_ENDPOINT_STATUS_DIR)]
    status_dir: PathBuf,
    /// Milliseconds changes are coalesced before one transaction.
    #[arg(long, default_value_t = 10)]
    apply_delay_ms: u64,
    /// Seconds between drift checks of the kernel's table.
    #[arg(long, default_value_t = 90)]
    drift_interval_s: u64,
    /// Milliseconds before the first retry of a failed apply (doubled per failure).
    #[arg(long, default_value_t = 100)]
    retry_min_ms: u64,
    /// The longest retry delay, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    retry_max_ms: u64,
    /// Where to serve /livez, /readyz and /metrics (e.g. 127.0.0.1:9091).
    #[arg(long)]
    health_address: Option<std::net::SocketAddr>,
    /// Do not program routes, the VXLAN overlay or the pod MTU file.
    #[arg(long)]
    no_routing: bool,
    /// Where the pod MTU is published for twill-cni.
    #[arg(long, default_value = twill_api::status::DEFAULT_MTU_FILE)]
    mtu_file: PathBuf,
    /// Milliseconds a local pod route may exist without its endpoint.
    #[arg(long, default_value_t = 5_000)]
    stale_route_grace_ms: u64,
    /// The `nft` binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

impl Args {
    fn config(&self) -> DaemonConfig {
        DaemonConfig {
            node: self.node.clone(),
            status_dir: self.status_dir.clone(),
            apply_delay: Duration::from_millis(self.apply_delay_ms),
            drift_interval: Duration::from_secs(self.drift_interval_s),
            retry_min: Duration::from_millis(self.retry_min_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            health_address: self.health_address,
            routing: (!self.no_routing).then(|| daemon::routes::RoutingConfig {
                mtu_file: self.mtu_file.clone(),
                stale_route_grace: Duration::from_millis(self.stale_route_grace_ms),
            }),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let reexec = felix_rs::allocator::reexec_with_settings();
    twill_daemon::init_tracing(args.log_json);
    if let Err(error) = reexec {
        tracing::warn!(%error, "cannot re-execute with the allocator settings; using its defaults");
    }
    let config = args.config();
    if let Err(error) = config.validate() {
        tracing::error!(%error, "bad configuration");
        return ExitCode::from(2);
    }
    let store = match SqliteStore::open(&args.datastore) {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, path = %args.datastore.display(), "cannot open the datastore");
            return ExitCode::from(3);
        }
    };
    let kernel = match NetlinkKernel::current(NftConfig {
        binary: args.nft.clone(),
    }) {
        Ok(kernel) => kernel,
        Err(error) => {
            tracing::error!(%error, "cannot open the kernel");
            return ExitCode::from(3);
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
    let store = AsyncDatastore::new(Arc::new(store));
    match runtime.block_on(daemon::run(
        config,
        store,
        Arc::new(kernel),
        twill_daemon::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "felix-rs stopped");
            ExitCode::from(1)
        }
    }
}
