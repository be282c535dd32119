//! The `twill-cni` binary: reads the CNI environment and stdin, runs the
//! verb, prints the result or error object. See the `twill_cni` crate docs.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use twill_cni::{CniError, Deps, NetConf, SocketIpam};
use twill_kernel::{NetlinkKernel, NftConfig};
use twill_store::SqliteStore;

/// How long one IPAM service call may take.
const IPAM_TIMEOUT: Duration = Duration::from_secs(30);

fn init_logging(stdin: &[u8]) {
    let conf: serde_json::Value = serde_json::from_slice(stdin).unwrap_or_default();
    let level = conf
        .get("log_level")
        .and_then(serde_json::Value::as_str)
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let file = conf
        .get("log_file")
        .and_then(serde_json::Value::as_str)
        .and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false);
    // stdout is the protocol channel: logs go to stderr or the log file.
    let _ = match file {
        Some(file) => builder.with_writer(Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

fn node_name(conf: &NetConf) -> Result<String, CniError> {
    if let Some(name) = &conf.nodename {
        return Ok(name.clone());
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .map_err(|source| CniError::Io {
            what: "/proc/sys/kernel/hostname".into(),
            source,
        })
}

fn make_deps(conf: &NetConf) -> Result<Deps, CniError> {
    let host = NetlinkKernel::current(NftConfig::default()).map_err(|e| CniError::Kernel {
        step: "open the host namespace".into(),
        source: Box::new(e),
    })?;
    let store = SqliteStore::open(&conf.datastore_path).map_err(|e| CniError::Datastore {
        operation: "open",
        key: conf.datastore_path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Deps {
        host: Arc::new(host),
        ipam: Box::new(SocketIpam::new(conf.ipam_socket.clone(), IPAM_TIMEOUT)),
        store: Arc::new(store),
        node: node_name(conf)?,
    })
}

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    init_logging(&stdin);
    let output = match read {
        Ok(_) => twill_cni::run(|k| std::env::var(k).ok(), &stdin, make_deps),
        Err(source) => twill_cni::Output {
            stdout: serde_json::to_vec(
                &CniError::Io {
                    what: "stdin".into(),
                    source,
                }
                .to_json(twill_cni::LATEST_VERSION),
            )
            .expect("JSON values always serialize"),
            exit_code: 1,
        },
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(&output.stdout)
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
    std::process::exit(output.exit_code);
}
