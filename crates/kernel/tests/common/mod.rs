//! Shared utilities of the root tests: every test works in namespaces made by
//! the harness and never touches the host's.

#![allow(dead_code, reason = "each test file uses a subset of these functions")]

use twill_integration::TestNetns;
use twill_kernel::{KernelExt, NetlinkKernel, NetnsPath, NftConfig, VethSpec};

/// A fresh test namespace (`twt-…`), removed on drop.
pub fn netns(role: &str) -> TestNetns {
    TestNetns::new(role).expect("create test namespace")
}

/// The namespace's path as the kernel crate names it.
pub fn path(ns: &TestNetns) -> NetnsPath {
    NetnsPath::from_path(ns.path())
}

/// A real kernel bound to `ns`. Declare it after the namespace so that it
/// (and its worker thread) is gone before the namespace is removed.
pub fn kernel_in(ns: &TestNetns) -> NetlinkKernel {
    NetlinkKernel::open(&path(ns), NftConfig::default()).expect("open kernel in test namespace")
}

/// A fresh interface name (`twt…`, unique per process and call).
pub fn link_name() -> String {
    twill_integration::names::link()
}

/// `ip -n NS ARGS…` output, to cross-check what the kernel crate reads.
pub fn ip(ns: &TestNetns, args: &[&str]) -> String {
    ns.ip(args).expect("ip command")
}

/// Parses a prefix written in a test.
pub fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("valid prefix")
}

/// Creates a veth pair with fresh names on `kernel`'s namespace; returns
/// the two ends' names.
pub fn veth_pair(kernel: &NetlinkKernel) -> (String, String) {
    let (a, b) = (link_name(), link_name());
    kernel
        .create_veth(VethSpec::new(&a, &b))
        .wait()
        .expect("veth");
    (a, b)
}
