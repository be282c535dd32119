//! Resource commands, like calicoctl's, on the configured datastore:
//! `apply`, `create`, `replace`, `delete`, `get` and `label`.
//!
//! Resources are stored as their full documents (`apiVersion` and `kind`
//! first, as `twill get -o json` prints them) under
//! `(Spec::STORE_KIND, namespace, name)`, the keys every Twill component
//! reads. The datastore's revision is the object's `resourceVersion`; a
//! manifest that carries one is written only if the object is still at that
//! revision.

pub mod columns;
pub mod get;
pub mod kinds;
pub mod label;
pub mod pools;
pub mod write;

use std::io::Write;

use crate::error::CliError;
use crate::{Status, line};

/// Prints the outcome of a resource command and returns its exit status.
pub fn finish(
    result: Result<String, CliError>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Status {
    match result {
        Ok(message) => {
            if !message.is_empty() {
                line(out, format_args!("{message}"));
            }
            Status::Success
        }
        Err(e) => {
            line(err, format_args!("error: {e}"));
            e.status()
        }
    }
}
