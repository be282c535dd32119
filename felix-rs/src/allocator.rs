//! The heap allocator's settings. The `felix-rs` binary runs on mimalloc,
//! which, unlike glibc's malloc, hands freed pages back to the kernel; the
//! large transient buffers of a start (the datastore snapshots) and of a
//! drift check (the kernel's JSON listing of the table) would otherwise
//! stay in the resident set for good. Transparent huge pages are off for
//! the heap: with them, a few live objects keep a whole 2 MiB page
//! resident (some 20 MB of the RSS at 10,000 policies). SQLite, in C,
//! allocates through glibc's malloc, which would give each watch thread an
//! arena of its own; one arena is enough for its small buffers (about 1 MB
//! less). Both allocators read their options from the environment before
//! `main` runs, so the binary re-executes itself once with them set.

use std::ffi::OsString;

/// The variable that makes mimalloc return freed pages at once (its
/// default is to wait for later allocation activity on the freeing
/// thread, which never comes on an idle kernel worker).
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// The variable that keeps mimalloc from asking for transparent huge
/// pages (`madvise`), which a sparsely used heap would hold whole.
pub const ALLOW_THP_VAR: &str = "MIMALLOC_ALLOW_THP";

/// The variable that caps glibc's malloc arenas (used by SQLite only).
pub const GLIBC_ARENAS_VAR: &str = "MALLOC_ARENA_MAX";

/// Every setting the binary wants, with its value.
pub const SETTINGS: [(&str, &str); 3] = [
    (PURGE_DELAY_VAR, "0"),
    (ALLOW_THP_VAR, "0"),
    (GLIBC_ARENAS_VAR, "1"),
];

/// The environment the allocator wants that `current` lacks: an empty
/// list when every setting is already present (set by the operator, or
/// by an earlier re-execution).
pub fn missing_settings(
    current: impl Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, &'static str)> {
    SETTINGS
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
        let purge = (PURGE_DELAY_VAR, "0");
        let thp = (ALLOW_THP_VAR, "0");
        let arenas = (GLIBC_ARENAS_VAR, "1");
        let cases: [(&[Setting], Vec<Setting>); 5] = [
            (&[], vec![purge, thp, arenas]),
            (&[(PURGE_DELAY_VAR, "0")], vec![thp, arenas]),
            (
                &[(ALLOW_THP_VAR, "0"), (GLIBC_ARENAS_VAR, "4")],
                vec![purge],
            ),
            (&[purge, thp, arenas], vec![]),
            // An operator's own values win.
            (
                &[
                    (PURGE_DELAY_VAR, "250"),
                    (ALLOW_THP_VAR, "1"),
                    (GLIBC_ARENAS_VAR, "8"),
                ],
                vec![],
            ),
        ];
        for (environment, expected) in cases {
            let current = |name: &str| {
                environment
                    .iter()
                    .find(|(set, _)| *set == name)
                    .map(|(_, value)| OsString::from(value))
            };
            assert_eq!(missing_settings(current), expected, "with {environment:?}");
        }
    }
}
