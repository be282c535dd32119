//! `twill node status`: the BGP sessions of this node, asked from the
//! bgp-speaker daemon over its status socket, in `calicoctl node status`'s
//! layout.

use std::io::Write;
use std::path::PathBuf;

use crate::{Status, line};

/// `twill node ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The BGP peerings of this node and their state.
    Status {
        /// The bgp-speaker's status socket.
        #[arg(long, default_value = bgp_speaker::status::DEFAULT_STATUS_SOCKET)]
        socket: PathBuf,
        /// Print the status as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `twill node` command.
pub fn run(command: &Command, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    match command {
        Command::Status { socket, json } => match bgp_speaker::status::query(socket) {
            Ok(status) if *json => match serde_json::to_string_pretty(&status) {
                Ok(text) => {
                    line(out, format_args!("{text}"));
                    Status::Success
                }
                Err(e) => {
                    line(err, format_args!("error: cannot format the status: {e}"));
                    Status::Datastore
                }
            },
            Ok(status) => {
                let _ = write!(out, "{}", status.render_table());
                Status::Success
            }
            Err(e) => {
                line(err, format_args!("error: {e}"));
                line(
                    err,
                    format_args!(
                        "is the bgp-speaker running on this node? (--socket names its status socket)"
                    ),
                );
                Status::Unavailable
            }
        },
    }
}
