//! A stress tool for the datastore's multi-process tests: it hammers one
//! SQLite file the way a CNI plugin and daemons racing each other would.
//!
//! ```text
//! twill-store-torture increment <db> <count>   CAS-increment Counter/shared <count> times
//! twill-store-torture write <db> <prefix>      create Probe/<prefix>-<n> forever, printing
//!                                              "<name> <revision>" after each commit
//! ```

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use twill_store::{Datastore, DatastoreExt, Error, Key, SqliteStore};

fn increment(path: &str, count: u64) -> Result<(), Error> {
    let store = SqliteStore::open(path)?;
    let key = Key::cluster("Counter", "shared");
    match store.create(&key, &json!({"count": 0})) {
        Ok(_) | Err(Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut conflicts = 0;
    for _ in 0..count {
        let (_, retried) = store.update_with(&key, |v: &mut serde_json::Value| {
            let current = v["count"].as_u64().unwrap_or(0);
            v["count"] = json!(current + 1);
            Ok(())
        })?;
        conflicts += retried;
    }
    println!("done conflicts={conflicts}");
    Ok(())
}

fn write(path: &str, prefix: &str) -> Result<(), Error> {
    let store = SqliteStore::open(path)?;
    let stdout = std::io::stdout();
    for n in 0u64.. {
        let name = format!("{prefix}-{n}");
        let object = store.create(&Key::namespaced("Probe", "crash", &name), &json!({"n": n}))?;
        let mut out = stdout.lock();
        // The parent may be gone (it kills us); nothing to do about it then.
        if writeln!(out, "{name} {}", object.revision)
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["increment", path, count] => match count.parse() {
            Ok(count) => increment(path, count),
            Err(_) => {
                eprintln!("count must be a number, got {count:?}");
                return ExitCode::from(2);
            }
        },
        ["write", path, prefix] => write(path, prefix),
        _ => {
            eprintln!("usage: twill-store-torture increment <db> <count> | write <db> <prefix>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twill-store-torture: {e}");
            ExitCode::FAILURE
        }
    }
}
