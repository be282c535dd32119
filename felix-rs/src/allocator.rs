//! The heap allocator's settings. The `felix-rs` binary runs on mimalloc,
//! which, unlike glibc's malloc, hands freed pages back to the kernel; the
//! large transient buffers of a start (the datastore snapshots) and of a
//! drift check (the kernel's JSON listing of the table) would otherwise
//! stay in the resident set for good. mimalloc reads its options from the
//! environment before `main` runs, so the binary re-executes itself once
//! with them set.

use std::ffi::OsString;

/// The variable that makes mimalloc return freed pages at once (its
/// default is to wait for later allocation activity on the freeing
/// thread, which never comes on an idle kernel worker).
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// The environment the allocator wants that `current` lacks: an empty
/// list when every setting is already present (set by the operator, or
/// by an earlier re-execution).
pub fn missing_settings(
    current: impl Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, &'static str)> {
    [(PURGE_DELAY_VAR, "0")]
        .into_iter()
        .filter(|(name, _)| current(name).is_none())
        .collect()
}

/// Replaces this process with itself, same arguments, plus the settings
/// [`missing_settings`] names; returns (doing nothing) when none is
/// missing, and returns the error when the re-execution fails, in which
/// case the process carries on with the allocator's defaults.
///
/// # Errors
///
/// The executable cannot be found or executed.
pub fn reexec_with_settings() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;

    let missing = missing_settings(|name| std::env::var_os(name));
    if missing.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    if let Some(arg0) = std::env::args_os().next() {
        command.arg0(arg0);
    }
    command.envs(missing);
    // `exec` returns only when it failed.
    Err(command.exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_already_in_the_environment_are_not_missing() {
        type Setting = (&'static str, &'static str);
        let cases: [(Option<&str>, Vec<Setting>); 3] = [
            (None, vec![(PURGE_DELAY_VAR, "0")]),
            (Some("0"), vec![]),
            // An operator's own value wins.
            (Some("250"), vec![]),
        ];
        for (value, expected) in cases {
            let current = |name: &str| {
                assert_eq!(name, PURGE_DELAY_VAR);
                value.map(OsString::from)
            };
            assert_eq!(missing_settings(current), expected, "with {value:?}");
        }
    }
}
