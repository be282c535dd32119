//! [`TestNetns`]: a network namespace that exists for one test.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};
use crate::names;

/// Where `ip netns add` pins named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// How long teardown waits for processes in a namespace to exit.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// A named network namespace, created like `ip netns add` (so it shows in
/// `ip netns list` and `/run/netns`) and removed when dropped, also when the
/// test panics.
///
/// Loopback is up. Work happens inside it in three ways:
///
/// * [`exec`](Self::exec) / [`ip`](Self::ip): run a command to completion
///   (`ip netns exec`);
/// * [`spawn`](Self::spawn): start a background process, killed when its
///   [`Background`] guard or this namespace is dropped;
/// * [`run`](Self::run): run a closure on a thread that has `setns()` into
///   the namespace — for Rust-level probes and for netlink calls made by
///   other crates' tests. Sockets remember the namespace they were created
///   in, so a socket made inside `run` can be used from any thread.
///
/// Dropping it kills every process still inside, deletes the namespace and
/// checks that it is gone; a leftover makes the test fail.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    path: PathBuf,
    inode: u64,
    removed: Mutex<bool>,
}

impl TestNetns {
    /// Creates a namespace named `twt-<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> Result<Self> {
        let mut attempts = 0;
        let name = loop {
            let name = names::netns(role);
            // A crashed earlier run may have left a namespace with this pid
            // and counter; skip it (leak-check will report it).
            if !Path::new(NETNS_DIR).join(&name).exists() {
                break name;
            }
            attempts += 1;
            if attempts > 64 {
                return Err(Error::Netns {
                    netns: name,
                    problem: "every candidate name is taken".into(),
                });
            }
        };
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let path = Path::new(NETNS_DIR).join(&name);
        let inode = match std::fs::metadata(&path) {
            Ok(meta) => meta.ino(),
            Err(source) => {
                // Best effort: the namespace was announced but cannot be
                // seen; try to take it away again before reporting.
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
                return Err(Error::io(format!("stat {}", path.display()), source));
            }
        };
        let netns = Self {
            name,
            path,
            inode,
            removed: Mutex::new(false),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's pin, `/run/netns/<name>`; open it for `setns()`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command that runs `program` inside this namespace
    /// (`ip netns exec <name> <program>`); add arguments and run it.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args…` inside the namespace to completion and returns
    /// its output whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut command = self.command(program);
        command.args(args).stdin(Stdio::null());
        command.output().map_err(|source| Error::Spawn {
            command: describe(&command),
            source,
        })
    }

    /// Runs `ip -n <name> args…` and fails unless it succeeds; returns its
    /// stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name]).args(args);
        run_checked(&mut command)
    }

    /// Applies an nftables script (as `nft -f -` reads it) inside the
    /// namespace as one transaction; fails unless `nft` accepts it.
    pub fn nft(&self, script: &str) -> Result<()> {
        let mut command = self.command("nft");
        command
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = describe(&command);
        let spawn_error = |source| Error::Spawn {
            command: line.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // A write error shows up as nft's failure below.
            let _ = stdin.write_all(script.as_bytes());
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if !output.status.success() {
            return Err(Error::Command {
                command: line,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Starts `program args…` inside the namespace in the background, with
    /// stdin, stdout and stderr on `/dev/null`. Use
    /// [`spawn_command`](Self::spawn_command) to keep its output.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Background> {
        let mut command = self.command(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.spawn_command(command)
    }

    /// Starts a command made by [`command`](Self::command) in the
    /// background. A piped stdout or stderr must be read, or the process
    /// blocks once the pipe is full.
    pub fn spawn_command(&self, mut command: Command) -> Result<Background> {
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: describe(&command),
            source,
        })?;
        Ok(Background {
            child,
            netns: self.name.clone(),
        })
    }

    /// Runs `f` on a new thread that has entered this namespace with
    /// `setns(CLONE_NEWNET)` and returns its result. A panic in `f` is
    /// passed on to the caller.
    ///
    /// Threads started by `f` inherit the namespace; they must end before
    /// the namespace is dropped.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = File::open(&self.path)
            .map_err(|source| Error::io(format!("open {}", self.path.display()), source))?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Setns {
                    netns: self.name.clone(),
                    source: errno.into(),
                })?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Writes a sysctl of this namespace, e.g.
    /// `sysctl("net/ipv4/ip_forward", "1")` (path below `/proc/sys`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = Path::new("/proc/sys").join(key);
        // /proc/sys/net resolves against the calling thread's namespace.
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| Error::io(format!("{}: write {}", self.name, path.display()), source))
    }

    /// Reads a sysctl of this namespace (path below `/proc/sys`), trimmed.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = Path::new("/proc/sys").join(key);
        self.run(|| std::fs::read_to_string(&path))?
            .map(|value| value.trim().to_owned())
            .map_err(|source| Error::io(format!("{}: read {}", self.name, path.display()), source))
    }

    /// Kills every process still inside, deletes the namespace and checks
    /// that nothing of it is left. Idempotent; [`Drop`] calls it.
    pub fn remove(&self) -> Result<()> {
        let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        if *removed {
            return Ok(());
        }
        *removed = true;
        kill_processes_in(self.inode);
        let deleted = run_checked(Command::new("ip").args(["netns", "del", &self.name]));
        if let Err(err) = deleted
            && self.path.exists()
        {
            return Err(err);
        }
        self.verify_gone()
    }

    /// Checks that the pin is gone and no process or thread of any process
    /// is still inside the namespace.
    fn verify_gone(&self) -> Result<()> {
        if self.path.exists() {
            return Err(Error::Netns {
                netns: self.name.clone(),
                problem: format!("{} still exists after delete", self.path.display()),
            });
        }
        let deadline = Instant::now() + TEARDOWN_GRACE;
        loop {
            let inside = tasks_in(self.inode);
            if inside.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Netns {
                    netns: self.name.clone(),
                    problem: format!("tasks still inside after delete: {inside:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            fail_in_drop(&format!("leaked network namespace: {err}"));
        }
    }
}

/// Reports a teardown failure from a `Drop`: panics (failing the test)
/// unless the thread is already unwinding, where a second panic would
/// abort and hide the first.
pub(crate) fn fail_in_drop(message: &str) {
    if std::thread::panicking() {
        eprintln!("twill-integration: {message}");
    } else {
        panic!("twill-integration: {message}");
    }
}

/// A process started with [`TestNetns::spawn`]; killed and reaped on drop.
#[derive(Debug)]
pub struct Background {
    child: Child,
    netns: String,
}

impl Background {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The namespace it runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The child, to take its pipes or poll it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Already exited is fine; the wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command, failing unless it exits 0; returns stdout.
pub(crate) fn run_checked(command: &mut Command) -> Result<String> {
    command.stdin(Stdio::null());
    let output = command.output().map_err(|source| Error::Spawn {
        command: describe(command),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: describe(command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A command line for error messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The network namespace inode a task link (`/proc/…/ns/net`) points at.
fn net_inode(link: &Path) -> Option<u64> {
    std::fs::metadata(link).ok().map(|meta| meta.ino())
}

/// Every task (`pid` or `pid/task/tid`) whose network namespace is `inode`.
fn tasks_in(inode: u64) -> Vec<String> {
    let mut inside = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return inside;
    };
    for entry in procs.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().filter(|s| s.parse::<u32>().is_ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if net_inode(&task.path().join("ns/net")) == Some(inode) {
                inside.push(format!("{pid}/task/{}", task.file_name().to_string_lossy()));
            }
        }
    }
    inside
}

/// Sends SIGKILL to every process (other than this one) inside the
/// namespace `inode`: background processes the test forgot, and their
/// children.
fn kill_processes_in(inode: u64) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid.unsigned_abs() == me {
            continue;
        }
        if net_inode(&entry.path().join("ns/net")) == Some(inode) {
            // It may have exited since the scan; nothing to do then.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
