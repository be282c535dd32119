//! `twill`, the operator's tool (Twill's `calicoctl`).
//!
//! Commands so far:
//!
//! - `twill validate -f FILE...` loads and validates resources and prints
//!   `ok <Kind>/<name>` for each, or every error with its field path.
//! - `twill selector match EXPR --labels k=v,...` evaluates a Calico selector
//!   against a label set, for policy authors checking a selector.
//! - `twill ipam show|check|release|configure` inspects and repairs IP
//!   address management on the datastore, like `calicoctl ipam`.
//!
//! Exit codes: `0` success, `1` a manifest was read and is invalid, `2` the
//! command line could not be understood (bad flags, an unreadable file, a
//! selector given on the command line that does not parse).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ipam;
mod selector;
mod validate;

/// The top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "twill",
    version,
    about = "Twill: a Calico-compatible, BGP-routing Kubernetes CNI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate resource manifests (YAML or JSON, one or many documents).
    Validate(validate::Args),
    /// Work with Calico label selectors.
    #[command(subcommand)]
    Selector(selector::Command),
    /// IP address management: show, check, release, configure.
    #[command(subcommand)]
    Ipam(ipam::Command),
}

/// Exit status of a command that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done and was valid.
    Success,
    /// A manifest was read and is invalid.
    Invalid,
    /// The command line could not be understood (bad flags, an unreadable
    /// file, a selector that does not parse).
    Usage,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => ExitCode::SUCCESS,
            Status::Invalid => ExitCode::from(1),
            Status::Usage => ExitCode::from(2),
        }
    }
}

/// Runs `twill` with the given arguments (the first is the program name).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Status::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let status = match cli.command {
        Command::Validate(args) => validate::run(&args, &mut out, &mut err),
        Command::Selector(command) => selector::run(&command, &mut out, &mut err),
        Command::Ipam(command) => ipam::run(&command, &mut out, &mut err),
    };
    let _ = out.flush();
    status.into()
}

/// Writes a line, ignoring a closed pipe (`twill validate ... | head`).
fn line(w: &mut dyn Write, text: std::fmt::Arguments<'_>) {
    let _ = writeln!(w, "{text}");
}
