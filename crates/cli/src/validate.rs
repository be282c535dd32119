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
                    let kind = qualified_kind(resource);
                    match resource.namespace() {
                        Some(ns) => line(
                            out,
                            format_args!("ok {kind}/{} (namespace {ns})", resource.name()),
                        ),
                        None => line(out, format_args!("ok {kind}/{}", resource.name())),
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

/// The kind as a user reads it: Calico's kinds bare (`NetworkPolicy`), other
/// groups' kinds qualified as kubectl does (`NetworkPolicy.networking.k8s.io`),
/// so the two NetworkPolicy kinds cannot be confused.
fn qualified_kind(resource: &twill_api::Resource) -> String {
    match resource.api_version() {
        twill_api::object::CALICO_API_VERSION => resource.kind().to_string(),
        other => {
            let group = other.split_once('/').map_or(other, |(group, _)| group);
            format!("{}.{group}", resource.kind())
        }
    }
}

pub(crate) fn read(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}
