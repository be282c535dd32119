//! `twill`: the operator's command-line tool. All logic lives in the library;
//! this file only hands the process arguments to it.

fn main() -> std::process::ExitCode {
    twill_cli::main(std::env::args_os())
}
