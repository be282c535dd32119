//! Test harness for Twill's root tests: network namespaces as nodes and
//! pods, probes and listeners, root gating, and leak checks.
//!
//! # Root gating
//!
//! Every test that needs root starts with [`require_root!`]:
//!
//! ```no_run
//! #[test]
//! fn pods_on_two_nodes_reach_each_other() {
//!     twill_integration::require_root!();
//!     // ...
//! }
//! ```
//!
//! Not root: the test prints `skipped: needs root` and returns (it passes).
//! With `TWILL_REQUIRE_ROOT=1` in the environment (CI sets it) a skip is a
//! failure: the test panics instead. [`require_root()`] is the same check as
//! a function returning `bool`.
//!
//! # The model
//!
//! Every object lives in a network namespace the harness creates; nothing
//! is added to the host's namespace.
//!
//! ```text
//!                     fabric netns: bridge per subnet (an L2 switch)
//!            +--------------------------------------------------+
//!            |  [bridge twt…]  ................  [bridge twt…]  |  <- second subnet
//!            +----|--------|----------------------|------|-----+     only with
//!                 | veth   | veth            veth |      | veth      with_subnets
//!          +------+--+  +--+------+      +--------+-+  +-+-------+
//!          | node n1 |  | node n2 |      |  router  |  | node n3 |
//!          | .10/24  |  | .11/24  |      | .1   .1  |  | .10/24  |
//!          | fwd on  |  | fwd on  |      +----------+  +---------+
//!          +--|---|--+  +---|-----+
//!        veth |   | veth    | veth         every node: pod/32 via <owning node>
//!     +-------+-+ +-+-----+ +-+-------+    (or via the router across subnets)
//!     | pod a   | | pod b | | pod c   |
//!     | ip/32   | | ip/32 | | ip/32   |    every pod: default via 169.254.1.1,
//!     +---------+ +-------+ +---------+    answered by ee:ee:ee:ee:ee:ee
//! ```
//!
//! * [`Fabric`] owns the fabric namespace, its bridges, the optional
//!   router, and everything added to it. [`Fabric::new`] has one subnet
//!   ([`DEFAULT_SUBNET`]); [`Fabric::with_subnets`] has one bridge per
//!   subnet and a router namespace between them, so nodes in different
//!   subnets are a routed hop apart (for VXLAN CrossSubnet tests).
//! * A [`Node`] is a namespace with a veth on its subnet's bridge, the next
//!   host address (from `.10`), and forwarding on.
//! * A [`Pod`] is a namespace with a veth to its node, wired as Calico wires
//!   a workload: its address as a `/32`, `default via 169.254.1.1` with a
//!   permanent neighbour entry for the host side's fixed MAC, and a `/32`
//!   device route on the node. The harness installs static routes for
//!   every pod on every other node (and the router); Twill's CNI and BGP
//!   do this for real in the product's own tests.
//! * [`Node`] and [`Pod`] dereference to [`TestNetns`], which runs
//!   commands ([`TestNetns::exec`], [`TestNetns::spawn`]), closures
//!   ([`TestNetns::run`], after `setns()`), probes
//!   ([`TestNetns::probe_tcp`], [`TestNetns::probe_udp`],
//!   [`TestNetns::probe_icmp`], each returning a [`ProbeOutcome`]) and
//!   listeners ([`TestNetns::listen_tcp`], [`TestNetns::udp_echo`]).
//!
//! ```no_run
//! # fn main() -> Result<(), twill_integration::Error> {
//! use std::time::Duration;
//! use twill_integration::{Fabric, ProbeOutcome};
//!
//! let fabric = Fabric::new()?;
//! let n1 = fabric.add_node("n1")?;
//! let n2 = fabric.add_node("n2")?;
//! let a = n1.add_pod("a", "10.65.1.2".parse().expect("an address"))?;
//! let b = n2.add_pod("b", "10.65.2.2".parse().expect("an address"))?;
//! let _server = b.listen_tcp(80)?;
//! assert_eq!(a.probe_tcp(b.ip(), 80, Duration::from_secs(1))?, ProbeOutcome::Reachable);
//! assert_eq!(a.probe_tcp(b.ip(), 81, Duration::from_secs(1))?, ProbeOutcome::Refused);
//! # Ok(())
//! # }
//! ```
//!
//! Addresses are IPv4. Fabric subnets are documentation ranges (RFC 5737);
//! pod addresses are the test's choice. They exist only inside the
//! harness's namespaces.
//!
//! # Names and parallel tests
//!
//! Namespaces are named `twt-<pid>-<n>-<role>` and links `twt<pid><n>` (at
//! most 15 bytes), so tests in parallel processes and threads never clash,
//! and everything the harness makes is recognisably a Twill test object.
//! A pod's host-side link is named like the product's workload interfaces,
//! `twl<pid><n>`, so felix-rs polices harness pods as it polices real ones.
//! [`names`] keeps the prefixes that mark an object as Twill's — the
//! harness's `twt` and the product's `twl`/`twill` — in one place.
//!
//! # Cleanup and leak checks
//!
//! Dropping a [`TestNetns`] (also while a test panics) kills the processes
//! inside it, deletes it and checks that neither the pin nor any task in it
//! survives; dropping a [`Fabric`] does that for every namespace in it,
//! pods first, and checks that none of its links ended up in the host
//! namespace. A leftover fails the test.
//!
//! The `leak-check` binary lists every Twill network namespace in
//! `/run/netns`, and every Twill link, nftables table and route in the host
//! namespace, and exits non-zero naming each one. Run it after the root
//! tests: `cargo run -p twill-integration --bin leak-check`.

pub mod error;
pub mod fabric;
pub mod leak;
pub mod names;
pub mod netns;
pub mod probe;

pub use error::{Error, Result};
pub use fabric::{DEFAULT_SUBNET, Fabric, Node, Pod, TWO_SUBNETS};
pub use netns::{Background, TestNetns};
pub use probe::{ProbeOutcome, TcpServer, UdpEchoServer};

/// Environment variable that turns a root skip into a failure (set to `1`).
pub const REQUIRE_ROOT_ENV: &str = "TWILL_REQUIRE_ROOT";

/// Whether the test may go on: `true` when running as root. Otherwise
/// prints `skipped: needs root` and returns `false` — or panics when
/// `TWILL_REQUIRE_ROOT=1`, because then a skip must fail the run.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
        panic!("needs root, and {REQUIRE_ROOT_ENV}=1 forbids skipping");
    }
    eprintln!("skipped: needs root");
    false
}

/// Whether every program a test needs is installed (a name found on `PATH`,
/// or an absolute path). When one is missing it prints
/// `skipped: needs <program> (Debian package <package>)` and returns false;
/// under `TWILL_REQUIRE_ROOT=1` (CI, which installs every peer) it panics
/// instead, so a broken install step cannot pass as a skip.
pub fn require_programs(programs: &[&str], package: &str) -> bool {
    let found = |program: &str| {
        let path = std::path::Path::new(program);
        if path.is_absolute() {
            return path.exists();
        }
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).exists())
        })
    };
    let Some(missing) = programs.iter().find(|p| !found(p)) else {
        return true;
    };
    if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "needs {missing} (Debian package {package}), and {REQUIRE_ROOT_ENV}=1 forbids skipping"
        );
    }
    eprintln!("skipped: needs {missing} (Debian package {package})");
    false
}

/// Returns from the calling test unless it runs as root (see
/// [`require_root()`]). `require_root!()` returns `()`;
/// `require_root!(value)` returns `value`, e.g. `require_root!(Ok(()))` in a
/// test that returns a `Result`.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
    ($skipped:expr) => {
        if !$crate::require_root() {
            return $skipped;
        }
    };
}
