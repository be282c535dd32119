//! Plumbing shared by Twill's daemons (felix-rs, bgp-speaker): the
//! `/livez`, `/readyz`, `/metrics` HTTP endpoint, the list-watch task that
//! feeds an owner task, and process setup (logging, shutdown signals).
//! Each daemon keeps its own metrics and readiness rules behind
//! [`HealthProbe`] and its own message type behind [`WatchMsg`].

pub mod health;
pub mod process;
pub mod watch;

pub use health::{HealthProbe, Heartbeat, serve};
pub use process::{init_tracing, shutdown_signal};
pub use watch::{KnownKeys, WatchMsg, forward_watch};
