//! Twill's multi-node lab: nodes as network namespaces on a shared fabric,
//! a top-of-rack router (BIRD) peered over eBGP with every node, Twill's
//! real daemons (felix-rs, bgp-speaker, twill-ipamd) on each node against
//! one SQLite datastore, pods created through the real CNI plugin, probes,
//! reachability matrices and scenario files.
//!
//! The command line is `twill lab …` (or the `twill-lab` binary); see
//! `docs/lab.md` and `docs/scenarios.md`. The library is what those use:
//!
//! * [`Lab::up`] builds a lab and [`Lab::down`] removes everything it made;
//!   [`Lab::open`] finds a running one from its state directory.
//! * [`Lab::pod_add`] / [`Lab::pod_del`] run the CNI plugin as a runtime
//!   does; [`Lab::probe`] and [`Lab::matrix`] make real connections.
//! * [`Lab::settle`] waits until a change took effect: pod routes on every
//!   node and every felix-rs caught up ([`Lab::barrier`]).
//! * [`run::run`] runs a [`Scenario`].
//!
//! Root is required. BGP is one pluggable part ([`Routing`]): without
//! `bgp-speaker` the lab falls back to static routes it installs itself.

pub mod cli;
pub mod error;
pub mod lab;
pub mod probe;
pub mod run;
pub mod scenario;
pub mod state;
pub mod store;
pub mod sys;

pub use error::{LabError, Result};
pub use lab::{Daemon, Lab, LabOptions, Matrix, NodeRemoval, PodRequest, UpOptions};
pub use probe::Outcome;
pub use scenario::{Encap, Protocol, Scenario, Tor, Verdict};
pub use state::{LabState, Routing};

/// The most nodes a lab has (fabric addresses `.10` to `.109`).
pub const MAX_NODES: usize = 100;

/// Checks a Kubernetes-style name: 1 to 63 characters `a-z`, `0-9`, `-`,
/// starting and ending alphanumeric.
///
/// # Errors
///
/// A sentence saying what is wrong.
pub fn check_dns_label(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a DNS label (1-63 characters a-z, 0-9, -)"
        ))
    }
}

/// Shortens a link name to the kernel's 15 bytes.
pub fn truncate_link(name: &str) -> String {
    name.chars().take(15).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        for (name, ok) in [
            ("n1", true),
            ("rack1-a", true),
            ("kube-system", true),
            ("", false),
            ("N1", false),
            ("-n1", false),
            ("n1-", false),
            ("n_1", false),
            ("a.b", false),
        ] {
            assert_eq!(check_dns_label(name).is_ok(), ok, "{name:?}");
        }
        assert!(check_dns_label(&"a".repeat(64)).is_err());
    }

    #[test]
    fn link_names_are_cut_to_fifteen_bytes() {
        assert_eq!(truncate_link("vn1"), "vn1");
        assert_eq!(truncate_link("vrack1-a-very-long"), "vrack1-a-very-l");
    }
}
