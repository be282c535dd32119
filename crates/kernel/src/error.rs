//! Typed errors of the kernel chokepoint.
//!
//! Every variant names the kernel object it is about, so a caller can log
//! one line that an operator understands, and `NotFound` / `AlreadyExists`
//! are variants (not strings) so that idempotent callers can match on them:
//! CNI DEL treats `NotFound` as success, CNI ADD treats `AlreadyExists` on
//! its interface as a failure.

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use nix::errno::Errno;

use crate::link::MacAddr;
use crate::sysctl::SysctlKey;

/// The kernel object an operation was about; printed at the start of every
/// error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelObject {
    /// A network interface, by name.
    Interface(String),
    /// An address on an interface.
    Address {
        /// Interface name.
        link: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// A route, by destination and table.
    Route {
        /// Destination prefix.
        destination: IpNet,
        /// Routing table id.
        table: u32,
    },
    /// A permanent neighbour entry.
    Neighbour {
        /// Interface name.
        link: String,
        /// Neighbour IP address.
        ip: std::net::IpAddr,
    },
    /// A bridge/VXLAN forwarding database entry.
    Fdb {
        /// Interface name.
        link: String,
        /// Link-layer address.
        mac: MacAddr,
    },
    /// A network namespace (name or path).
    Netns(String),
    /// A sysctl key under `/proc/sys`.
    Sysctl(SysctlKey),
    /// An nftables table.
    NftTable {
        /// Family (`inet`, `ip`, `ip6`, ...).
        family: String,
        /// Table name.
        name: String,
    },
    /// An nftables transaction fed to `nft -f -`.
    NftTransaction,
    /// The `nft` binary itself.
    NftBinary(PathBuf),
    /// The connection-tracking entries of an address.
    Conntrack(std::net::IpAddr),
}

impl fmt::Display for KernelObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interface(name) => write!(f, "interface {name}"),
            Self::Address { link, addr } => write!(f, "address {addr} on {link}"),
            Self::Route { destination, table } => write!(f, "route {destination} table {table}"),
            Self::Neighbour { link, ip } => write!(f, "neighbour {ip} on {link}"),
            Self::Fdb { link, mac } => write!(f, "fdb entry {mac} on {link}"),
            Self::Netns(name) => write!(f, "network namespace {name}"),
            Self::Sysctl(key) => write!(f, "sysctl {key}"),
            Self::NftTable { family, name } => write!(f, "nft table {family} {name}"),
            Self::NftTransaction => write!(f, "nft transaction"),
            Self::NftBinary(path) => write!(f, "nft binary {}", path.display()),
            Self::Conntrack(ip) => write!(f, "conntrack entries of {ip}"),
        }
    }
}

/// Errors returned by [`crate::Kernel`] implementations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The object does not exist (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL, a
    /// missing nft table, a missing namespace file).
    #[error("{object}: not found")]
    NotFound {
        /// What was missing.
        object: KernelObject,
    },
    /// The object exists already (EEXIST).
    #[error("{object}: already exists")]
    AlreadyExists {
        /// What existed.
        object: KernelObject,
    },
    /// The kernel refused a netlink request for another reason.
    #[error("{object}: netlink {operation} failed: {errno}")]
    Netlink {
        /// The object of the request.
        object: KernelObject,
        /// Short name of the request (`add`, `delete`, `dump`, `set`).
        operation: &'static str,
        /// The errno the kernel returned.
        errno: Errno,
    },
    /// A system call or file operation failed (namespaces, sysctls).
    #[error("{object}: {operation} failed: {errno}")]
    Os {
        /// The object of the operation.
        object: KernelObject,
        /// What was attempted (`setns`, `unshare`, `mount`, `write`, ...).
        operation: &'static str,
        /// The errno of the failed call.
        errno: Errno,
    },
    /// `nft` rejected a command or transaction; the kernel is unchanged.
    #[error("{object}: nft exited with {status}: {stderr}")]
    Nft {
        /// The table or transaction.
        object: KernelObject,
        /// Exit status text of `nft`.
        status: String,
        /// What `nft` printed on stderr.
        stderr: String,
    },
    /// The output of `nft -j` could not be understood.
    #[error("{object}: cannot parse nft json output: {reason}")]
    NftOutput {
        /// The table that was listed.
        object: KernelObject,
        /// What was wrong.
        reason: String,
    },
    /// The request itself is malformed (bad name, mismatched families, ...).
    #[error("{object}: invalid request: {reason}")]
    Invalid {
        /// The object of the request.
        object: KernelObject,
        /// Why it is invalid.
        reason: String,
    },
    /// The kernel answered something this crate cannot represent.
    #[error("{object}: unexpected kernel answer: {reason}")]
    Unexpected {
        /// The object of the request.
        object: KernelObject,
        /// What was unexpected.
        reason: String,
    },
    /// A [`crate::Kernel`] implementation answered an op with a reply of the
    /// wrong kind (a bug in that implementation).
    #[error("{operation}: mismatched reply {reply}")]
    ReplyMismatch {
        /// Type name of the value the caller expected.
        operation: &'static str,
        /// The reply that came instead.
        reply: String,
    },
    /// The worker thread serving a namespace has stopped.
    #[error("kernel worker for {netns} has stopped")]
    WorkerGone {
        /// Namespace the worker served (`host` for the caller's own).
        netns: String,
    },
    /// A failure injected into [`crate::fake::RecordingKernel`] by a test.
    #[error("injected failure: {reason}")]
    Injected {
        /// Text chosen by the test.
        reason: String,
    },
}

impl KernelError {
    /// True for [`KernelError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for [`KernelError::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// The object the error is about, when it names one.
    pub fn object(&self) -> Option<&KernelObject> {
        match self {
            Self::NotFound { object }
            | Self::AlreadyExists { object }
            | Self::Netlink { object, .. }
            | Self::Os { object, .. }
            | Self::Nft { object, .. }
            | Self::NftOutput { object, .. }
            | Self::Invalid { object, .. }
            | Self::Unexpected { object, .. } => Some(object),
            Self::WorkerGone { .. } | Self::Injected { .. } | Self::ReplyMismatch { .. } => None,
        }
    }

    /// Classifies an errno from a request that reads, changes or deletes an
    /// existing object: the "missing" errnos become [`KernelError::NotFound`].
    pub(crate) fn from_errno_existing(
        object: KernelObject,
        operation: &'static str,
        errno: Errno,
    ) -> Self {
        match errno {
            Errno::ENOENT | Errno::ENODEV | Errno::ESRCH | Errno::EADDRNOTAVAIL => {
                Self::NotFound { object }
            }
            Errno::EEXIST => Self::AlreadyExists { object },
            _ => Self::Netlink {
                object,
                operation,
                errno,
            },
        }
    }

    /// Classifies an errno from a request that creates an object: EEXIST
    /// becomes [`KernelError::AlreadyExists`].
    pub(crate) fn from_errno_create(
        object: KernelObject,
        operation: &'static str,
        errno: Errno,
    ) -> Self {
        match errno {
            Errno::EEXIST => Self::AlreadyExists { object },
            _ => Self::Netlink {
                object,
                operation,
                errno,
            },
        }
    }

    /// An error from a file or system call.
    pub(crate) fn os(object: KernelObject, operation: &'static str, err: &std::io::Error) -> Self {
        let errno = Errno::from_raw(err.raw_os_error().unwrap_or(Errno::EIO as i32));
        if errno == Errno::ENOENT {
            return Self::NotFound { object };
        }
        Self::Os {
            object,
            operation,
            errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_object_errnos_are_not_found_for_existing_objects() {
        for errno in [
            Errno::ENOENT,
            Errno::ENODEV,
            Errno::ESRCH,
            Errno::EADDRNOTAVAIL,
        ] {
            let err = KernelError::from_errno_existing(
                KernelObject::Interface("cali1".into()),
                "delete",
                errno,
            );
            assert!(err.is_not_found(), "{errno} should be not found");
        }
        let err = KernelError::from_errno_existing(
            KernelObject::Interface("cali1".into()),
            "delete",
            Errno::EBUSY,
        );
        assert!(!err.is_not_found());
    }

    #[test]
    fn eexist_on_create_is_already_exists_and_names_the_object() {
        let err = KernelError::from_errno_create(
            KernelObject::Interface("cali1".into()),
            "add",
            Errno::EEXIST,
        );
        assert!(err.is_already_exists());
        assert_eq!(err.to_string(), "interface cali1: already exists");
    }

    #[test]
    fn other_errnos_keep_the_errno_and_operation() {
        let object = KernelObject::Route {
            destination: "10.0.0.0/24".parse().expect("valid"),
            table: 254,
        };
        let err = KernelError::from_errno_create(object, "add", Errno::ENETUNREACH);
        assert_eq!(
            err.to_string(),
            "route 10.0.0.0/24 table 254: netlink add failed: ENETUNREACH: Network is unreachable"
        );
    }
}
