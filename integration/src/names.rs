//! Names of every kernel object the harness creates, and the prefixes that
//! mark an object as Twill's.
//!
//! Tests run in parallel: nextest runs each test in its own process, `cargo
//! test` runs them as threads of one process. A name therefore carries the
//! process id and a per-process counter, so two tests never ask the kernel
//! for the same name.
//!
//! | object | form | example |
//! |---|---|---|
//! | network namespace | `twt-<pid>-<n>-<role>` | `twt-4242-3-node-n1` |
//! | link | `twt<pid as 6 hex digits><n in hex>` (at most 15 bytes) | `twt00109a7` |
//!
//! The prefix lists below are the single place that says what is ours; the
//! `leak-check` binary and the harness's own drop checks both read them.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every network namespace the harness creates (`twt-…`).
pub const TEST_NETNS_PREFIX: &str = "twt-";

/// Prefix of every link the harness creates (`twt…`).
pub const TEST_LINK_PREFIX: &str = "twt";

/// Network namespace names (in `/run/netns`) that belong to Twill: the
/// harness's own and the product's (`twill…`, used by the lab).
pub const OWNED_NETNS_PREFIXES: &[&str] = &[TEST_NETNS_PREFIX, "twill"];

/// Prefix of host-side workload interfaces, the product's (`twl…`, as
/// `twill_kernel::WORKLOAD_INTERFACE_PREFIX`; the harness does not depend on
/// the kernel crate, whose tests depend on it). Pods' host-side links carry
/// it, so felix-rs treats harness pods as workloads.
pub const WORKLOAD_LINK_PREFIX: &str = "twl";

/// Link names that belong to Twill: the harness's `twt…`, the product's
/// host-side workload interfaces `twl…` and its own devices `twill…`
/// (e.g. `twill.vxlan`).
pub const OWNED_LINK_PREFIXES: &[&str] = &[TEST_LINK_PREFIX, WORKLOAD_LINK_PREFIX, "twill"];

/// nftables table names that belong to Twill: the harness's `twt…` and the
/// product's `twill…`.
pub const OWNED_NFT_TABLE_PREFIXES: &[&str] = &[TEST_LINK_PREFIX, "twill"];

/// Longest link name the kernel accepts (`IFNAMSIZ` minus the NUL byte).
pub const MAX_LINK_NAME_LEN: usize = 15;

/// Whether `name` is a network namespace name Twill owns.
pub fn is_owned_netns(name: &str) -> bool {
    OWNED_NETNS_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name` is a link name Twill owns.
pub fn is_owned_link(name: &str) -> bool {
    OWNED_LINK_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name` is an nftables table name Twill owns.
pub fn is_owned_nft_table(name: &str) -> bool {
    OWNED_NFT_TABLE_PREFIXES.iter().any(|p| name.starts_with(p))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh network namespace name, `twt-<pid>-<n>-<role>`.
///
/// `role` says what the namespace is for (`fabric`, `node-n1`, `pod-a`); it
/// is kept readable for `ip netns list` and only characters that are safe in
/// a file name are kept.
pub fn netns(role: &str) -> String {
    let role: String = role
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{TEST_NETNS_PREFIX}{}-{}-{role}",
        std::process::id(),
        next()
    )
}

/// A fresh link name, `twt<pid:06x><n:x>`, at most 15 bytes.
pub fn link() -> String {
    unique_link(TEST_LINK_PREFIX)
}

/// A fresh host-side pod link name, `twl<pid:06x><n:x>`: shaped like the
/// product's workload interfaces (see [`WORKLOAD_LINK_PREFIX`]).
pub fn workload_link() -> String {
    unique_link(WORKLOAD_LINK_PREFIX)
}

fn unique_link(prefix: &str) -> String {
    // pid_max is at most 2^22, so six hex digits hold any pid; six more hold
    // the counter. The fixed width keeps (pid, n) pairs from colliding.
    let name = format!(
        "{prefix}{:06x}{:x}",
        std::process::id() & 0xff_ffff,
        next() & 0xff_ffff
    );
    debug_assert!(name.len() <= MAX_LINK_NAME_LEN, "link name {name} too long");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_ifnamsiz_and_carry_their_prefix() {
        for _ in 0..1000 {
            for (name, prefix) in [
                (link(), TEST_LINK_PREFIX),
                (workload_link(), WORKLOAD_LINK_PREFIX),
            ] {
                assert!(name.len() <= MAX_LINK_NAME_LEN, "{name}");
                assert!(name.starts_with(prefix), "{name}");
                assert!(is_owned_link(&name), "{name}");
            }
        }
    }

    #[test]
    fn names_are_unique_within_a_process() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(link()));
            assert!(seen.insert(netns("pod-a")));
        }
    }

    #[test]
    fn netns_names_keep_the_role_and_replace_unsafe_characters() {
        let name = netns("node n1/x");
        assert!(name.starts_with(TEST_NETNS_PREFIX), "{name}");
        assert!(name.ends_with("-node_n1_x"), "{name}");
        assert!(is_owned_netns(&name));
    }

    #[test]
    fn ownership_is_decided_by_prefix() {
        let cases = [
            ("twt-1-2-fabric", true, true, true),
            ("twill-lab-n1", true, true, true),
            ("twl3f2a9c", false, true, false),
            ("tw3f2a9c", false, false, false),
            ("eth0", false, false, false),
            ("cali1234", false, false, false),
            ("filter", false, false, false),
        ];
        for (name, netns, link, table) in cases {
            assert_eq!(is_owned_netns(name), netns, "netns {name}");
            assert_eq!(is_owned_link(name), link, "link {name}");
            assert_eq!(is_owned_nft_table(name), table, "table {name}");
        }
    }
}
