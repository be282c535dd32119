//! Sysctls under `/proc/sys`.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the
//! file, so these run on the namespace's worker thread like every other op.

use std::fmt;
use std::path::PathBuf;

use crate::error::{KernelError, KernelObject};

/// Root of the sysctl tree.
pub const PROC_SYS: &str = "/proc/sys";

/// A sysctl key as a path below `/proc/sys`, e.g. `net/ipv4/ip_forward`.
/// Slashes, not dots, separate components because interface names may
/// contain dots (`vxlan.calico`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlKey(String);

impl SysctlKey {
    /// A key from its slash-separated path below `/proc/sys`.
    pub fn new(path: impl Into<String>) -> Result<Self, KernelError> {
        let path = path.into();
        let bad = path.is_empty()
            || path.starts_with('/')
            || path.ends_with('/')
            || path
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            || path.contains('\0');
        if bad {
            return Err(KernelError::Invalid {
                object: KernelObject::Sysctl(Self(path)),
                reason:
                    "sysctl keys are relative paths below /proc/sys without '.' or '..' components"
                        .into(),
            });
        }
        Ok(Self(path))
    }

    /// A key from the dotted `sysctl` form (`net.ipv4.ip_forward`); not for
    /// keys that contain an interface name with a dot.
    pub fn dotted(key: &str) -> Result<Self, KernelError> {
        Self::new(key.replace('.', "/"))
    }

    /// A per-interface key: `net/{family}/{section}/{interface}/{leaf}`, e.g.
    /// `interface("ipv4", "conf", "cali1", "proxy_arp")`.
    pub fn interface(
        family: &str,
        section: &str,
        interface: &str,
        leaf: &str,
    ) -> Result<Self, KernelError> {
        crate::link::check_name(interface)?;
        Self::new(format!("net/{family}/{section}/{interface}/{leaf}"))
    }

    /// The path below `/proc/sys`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn file(&self) -> PathBuf {
        PathBuf::from(PROC_SYS).join(&self.0)
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a sysctl; the trailing newline is removed.
pub(crate) fn read(key: &SysctlKey) -> Result<String, KernelError> {
    let text = std::fs::read_to_string(key.file())
        .map_err(|err| KernelError::os(KernelObject::Sysctl(key.clone()), "read", &err))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Writes a sysctl.
pub(crate) fn write(key: &SysctlKey, value: &str) -> Result<(), KernelError> {
    std::fs::write(key.file(), value)
        .map_err(|err| KernelError::os(KernelObject::Sysctl(key.clone()), "write", &err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_without_traversal() {
        for bad in [
            "",
            "/net/ipv4/ip_forward",
            "net/../../etc/passwd",
            "net//ipv4",
            "net/ipv4/",
        ] {
            assert!(SysctlKey::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SysctlKey::dotted("net.ipv4.ip_forward")
                .expect("valid")
                .as_str(),
            "net/ipv4/ip_forward"
        );
    }

    #[test]
    fn interface_keys_keep_dots_in_interface_names() {
        let key = SysctlKey::interface("ipv4", "conf", "vxlan.calico", "rp_filter").expect("valid");
        assert_eq!(key.as_str(), "net/ipv4/conf/vxlan.calico/rp_filter");
        assert!(SysctlKey::interface("ipv4", "conf", "../x", "rp_filter").is_err());
    }
}
