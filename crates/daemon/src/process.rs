//! Process setup every daemon binary does the same way.

/// Installs the global `tracing` subscriber: the filter comes from
/// `RUST_LOG` (default `info`), lines go to stderr, as JSON lines when
/// `json` is set.
///
/// # Panics
///
/// If a global subscriber is already installed (call it once, first thing
/// in `main`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on the first SIGINT or SIGTERM.
///
/// # Panics
///
/// If the SIGTERM handler cannot be installed (only outside a Tokio
/// runtime with signal support).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
