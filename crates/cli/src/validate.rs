//! `twill validate -f FILE...`.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::{Status, line};

/// Arguments of `twill validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files (YAML or JSON, one or many documents each); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
}

pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    let mut status = Status::Success;
    for path in &args.files {
        let source = path.display().to_string();
        let text = match read(path) {
            Ok(text) => text,
            Err(e) => {
                line(err, format_args!("error: {source}: {e}"));
                return Status::Usage;
            }
        };
        match twill_api::load_str(&source, &text) {
            Ok(resources) => {
                for resource in &resources {
                    match resource.namespace() {
                        Some(ns) => line(
                            out,
                            format_args!(
                                "ok {}/{} (namespace {ns})",
                                resource.kind(),
                                resource.name()
                            ),
                        ),
                        None => line(
                            out,
                            format_args!("ok {}/{}", resource.kind(), resource.name()),
                        ),
                    }
                }
            }
            Err(errors) => {
                for error in errors.errors() {
                    line(err, format_args!("error: {error}"));
                }
                status = Status::Invalid;
            }
        }
    }
    status
}

fn read(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}
