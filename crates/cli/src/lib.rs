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
//! - `twill apply|create|replace -f FILE...`, `twill delete`, `twill get`
//!   and `twill label` manage resources on the datastore, like calicoctl
//!   (see [`resources`]); every file is written all or nothing.
//! - `twill node status [--socket PATH]` shows this node's BGP sessions,
//!   asked from the bgp-speaker daemon, like `calicoctl node status`.
//! - `twill completion bash|zsh|fish|elvish|powershell` prints a shell
//!   completion script.
//!
//! The datastore is the embedded SQLite file given by `--datastore` or
//! `TWILL_DATASTORE` (default `/var/lib/twill/datastore.db`).
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a manifest was read and is invalid (nothing was written) |
//! | 2 | the command line could not be understood: bad flags, an unreadable file, an unknown resource type, a namespace for a cluster-scoped type, a missing datastore file, a selector that does not parse |
//! | 3 | the datastore's state refused the change: `create` of an existing resource, `replace`/`delete`/`get`/`label` of a missing one, a stale `resourceVersion`, a label already set (without `--overwrite`) |
//! | 4 | the datastore failed (locked, unreadable, an object that does not decode) |
//! | 5 | a daemon could not be reached (`twill node status` without a running bgp-speaker), or the lab itself failed (`twill lab`) |

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod datastore;
mod error;
mod ipam;
mod lab;
mod node;
pub mod resources;
mod selector;
mod validate;

pub use error::CliError;

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
    /// Create or replace resources from manifests (YAML or JSON).
    Apply(resources::write::WriteArgs),
    /// Create resources from manifests; fails if one exists.
    Create(resources::write::WriteArgs),
    /// Replace resources from manifests; fails if one does not exist.
    Replace(resources::write::WriteArgs),
    /// Delete resources named in manifests or on the command line.
    Delete(resources::write::DeleteArgs),
    /// Print resources as a table, YAML, JSON or names.
    Get(resources::get::GetArgs),
    /// Set or remove labels of a resource.
    Label(resources::label::LabelArgs),
    /// IP address management: show, check, release, configure.
    #[command(subcommand)]
    Ipam(ipam::Command),
    /// This node's daemons: `twill node status` shows its BGP sessions.
    #[command(subcommand)]
    Node(node::Command),
    /// A multi-node lab in network namespaces: nodes, ToR, pods, probes, scenarios (root).
    Lab(lab::Args),
    /// Print a shell completion script, e.g. `twill completion bash > /etc/bash_completion.d/twill`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Exit status of a command that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done and was valid.
    Success,
    /// A manifest was read and is invalid.
    Invalid,
    /// The command line could not be understood (bad flags, an unreadable
    /// file, a selector that does not parse, an unknown resource type).
    Usage,
    /// The datastore's state refused the change (exists, does not exist,
    /// changed concurrently, label already set).
    Refused,
    /// The datastore failed.
    Datastore,
    /// A daemon the command talks to could not be reached, or the lab
    /// itself failed.
    Unavailable,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => ExitCode::SUCCESS,
            Status::Invalid => ExitCode::from(1),
            Status::Usage => ExitCode::from(2),
            Status::Refused => ExitCode::from(3),
            Status::Datastore => ExitCode::from(4),
            Status::Unavailable => ExitCode::from(5),
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
        Command::Node(command) => node::run(&command, &mut out, &mut err),
        Command::Lab(args) => lab::run(args, &mut err),
        Command::Apply(args) => {
            let result =
                resources::write::run_write(resources::write::Mode::Apply, &args, &mut err);
            resources::finish(result, &mut out, &mut err)
        }
        Command::Create(args) => {
            let result =
                resources::write::run_write(resources::write::Mode::Create, &args, &mut err);
            resources::finish(result, &mut out, &mut err)
        }
        Command::Replace(args) => {
            let result =
                resources::write::run_write(resources::write::Mode::Replace, &args, &mut err);
            resources::finish(result, &mut out, &mut err)
        }
        Command::Delete(args) => {
            let result = resources::write::run_delete(&args, &mut err);
            resources::finish(result, &mut out, &mut err)
        }
        Command::Get(args) => {
            let result = resources::get::run(&args, &mut out).map(|()| String::new());
            resources::finish(result, &mut out, &mut err)
        }
        Command::Label(args) => resources::finish(resources::label::run(&args), &mut out, &mut err),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "twill", &mut out);
            Status::Success
        }
    };
    let _ = out.flush();
    status.into()
}

/// Writes a line, ignoring a closed pipe (`twill validate ... | head`).
fn line(w: &mut dyn Write, text: std::fmt::Arguments<'_>) {
    let _ = writeln!(w, "{text}");
}
