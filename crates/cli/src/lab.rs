//! `twill lab …`: the multi-node lab in network namespaces (root). The
//! commands live in the `twill-lab` crate; this hands them the arguments
//! and tells the lab how to re-execute `twill` as a pod's listener.

use std::ffi::OsString;
use std::io::Write;

use crate::Status;

pub use twill_lab::cli::LabArgs as Args;

/// Runs a lab command: 1 ([`Status::Invalid`]) when a scenario had a
/// mismatch, 2 for bad input, 5 when the lab itself failed.
pub fn run(args: Args, err: &mut dyn Write) -> Status {
    let listener: Vec<OsString> = std::env::current_exe()
        .map(|exe| vec![exe.into_os_string(), "lab".into(), "listen".into()])
        .unwrap_or_default();
    match twill_lab::cli::execute(args, listener) {
        Ok(true) => Status::Success,
        Ok(false) => Status::Invalid,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            if twill_lab::cli::is_usage(&error) {
                Status::Usage
            } else {
                Status::Unavailable
            }
        }
    }
}
