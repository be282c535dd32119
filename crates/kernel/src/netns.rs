//! Network namespaces: named ones under `/run/netns` (the `ip netns`
//! convention, so `ip netns exec` works on them), and any namespace file
//! (`/proc/PID/ns/net`, the CNI runtime's `CNI_NETNS`).
//!
//! Entering a namespace is per thread: `setns(2)` moves only the calling
//! thread. Work inside a namespace therefore runs on a dedicated thread that
//! has entered it (see [`crate::NetlinkKernel::open`]); everything that
//! thread opens (netlink sockets, `/proc/sys/net` files) and every process it
//! spawns (`nft`) belongs to that namespace.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{KernelError, KernelObject};

/// Directory holding named namespaces, as used by iproute2.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Where a network namespace lives: a file that, opened, yields a namespace
/// fd. Operations carry paths rather than fds so that they are plain values
/// that can be recorded and compared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsPath(PathBuf);

impl NetnsPath {
    /// The named namespace `name` (`/run/netns/NAME`).
    pub fn named(name: &str) -> Self {
        Self(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Any namespace file, e.g. the CNI runtime's `CNI_NETNS`.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The namespace of process `pid`.
    pub fn of_pid(pid: u32) -> Self {
        Self(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Opens the namespace file; the fd refers to the namespace while open.
    pub fn open(&self) -> Result<File, KernelError> {
        File::open(&self.0).map_err(|err| KernelError::os(self.object(), "open", &err))
    }

    pub(crate) fn object(&self) -> KernelObject {
        KernelObject::Netns(self.0.display().to_string())
    }
}

impl fmt::Display for NetnsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Checks a namespace name: one path component, no slashes.
pub(crate) fn check_name(name: &str) -> Result<(), KernelError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(KernelError::Invalid {
            object: KernelObject::Netns(name.to_string()),
            reason: "namespace names are one non-empty path component".into(),
        });
    }
    Ok(())
}

fn errno_err(object: KernelObject, operation: &'static str, errno: Errno) -> KernelError {
    KernelError::Os {
        object,
        operation,
        errno,
    }
}

/// Makes `/run/netns` a shared mount point (bind-mounting it onto itself the
/// first time), as `ip netns add` does, so namespace mounts propagate to
/// other mount namespaces (e.g. a containerised daemon's).
fn ensure_run_dir(object: &KernelObject) -> Result<(), KernelError> {
    std::fs::create_dir_all(NETNS_RUN_DIR)
        .map_err(|err| KernelError::os(object.clone(), "mkdir", &err))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|errno| errno_err(object.clone(), "bind mount netns dir", errno))?;
            shared().map_err(|errno| errno_err(object.clone(), "make netns dir shared", errno))
        }
        Err(errno) => Err(errno_err(object.clone(), "make netns dir shared", errno)),
    }
}

/// Creates the named namespace `name` like `ip netns add NAME`: a fresh
/// namespace, kept alive by a bind mount on `/run/netns/NAME`. Its loopback
/// device is down.
pub(crate) fn create_named(name: &str) -> Result<NetnsPath, KernelError> {
    check_name(name)?;
    let ns = NetnsPath::named(name);
    let object = ns.object();
    ensure_run_dir(&object)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(ns.path())
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::AlreadyExists {
                KernelError::AlreadyExists {
                    object: object.clone(),
                }
            } else {
                KernelError::os(object.clone(), "create mount point", &err)
            }
        })?;
    // unshare() moves only this thread, so do it on a thread of its own that
    // ends right after the namespace is pinned by the mount.
    let target = ns.path().to_path_buf();
    let pinned = std::thread::Builder::new()
        .name("twill-netns-add".into())
        .spawn(move || -> Result<(), (&'static str, Errno)> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ("unshare", e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| ("bind mount", e))
        })
        .map_err(|err| KernelError::os(object.clone(), "spawn thread", &err))?
        .join()
        .map_err(|_| KernelError::Unexpected {
            object: object.clone(),
            reason: "namespace thread panicked".into(),
        })?;
    if let Err((operation, errno)) = pinned {
        let _ = std::fs::remove_file(ns.path());
        return Err(errno_err(object, operation, errno));
    }
    Ok(ns)
}

/// Deletes the named namespace `name` like `ip netns del NAME`. The
/// namespace itself disappears when its last process and fd are gone.
pub(crate) fn delete_named(name: &str) -> Result<(), KernelError> {
    check_name(name)?;
    let ns = NetnsPath::named(name);
    let object = ns.object();
    if !ns.path().exists() {
        return Err(KernelError::NotFound { object });
    }
    match umount2(ns.path(), MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-created namespace); still unlink.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(errno) => return Err(errno_err(object, "unmount", errno)),
    }
    std::fs::remove_file(ns.path())
        .map_err(|err| KernelError::os(object, "remove mount point", &err))
}

/// Moves the calling thread into the namespace at `ns`. Only for threads
/// that are dedicated to that namespace for the rest of their life.
pub(crate) fn enter(ns: &NetnsPath) -> Result<(), KernelError> {
    let file = ns.open()?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| errno_err(ns.object(), "setns", errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_namespaces_live_under_run_netns() {
        assert_eq!(
            NetnsPath::named("pod1").path(),
            Path::new("/run/netns/pod1")
        );
        assert_eq!(NetnsPath::of_pid(42).path(), Path::new("/proc/42/ns/net"));
    }

    #[test]
    fn namespace_names_must_be_one_path_component() {
        for bad in ["", ".", "..", "a/b", "../etc"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("twt-1-2").is_ok());
    }
}
