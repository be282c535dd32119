//! `twill-lab`: the lab on its own (the same commands as `twill lab`).

use std::process::ExitCode;

use clap::Parser;

/// A multi-node Twill lab in network namespaces (run as root).
#[derive(Debug, Parser)]
#[command(name = "twill-lab", version)]
struct Cli {
    #[command(flatten)]
    lab: twill_lab::cli::LabArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = std::env::current_exe()
        .map(|exe| vec![exe.into_os_string(), "listen".into()])
        .unwrap_or_default();
    twill_lab::cli::main(cli.lab, listener)
}
