//! Commands, processes and network namespaces: the lab's thin layer over
//! `ip`, `kill` and `setns`.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{LabError, Result};

/// Where `ip netns` pins namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Runs `command` and returns its stdout; a non-zero exit is an error
/// carrying stderr.
///
/// # Errors
///
/// [`LabError::Command`] or [`LabError::Io`] when it cannot start.
pub fn run(command: &mut Command) -> Result<String> {
    let line = describe(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(format!("run {line}"), e))?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: line,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The command line, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ip ARGS` in the namespace `netns` (`ip -n NETNS ARGS`).
///
/// # Errors
///
/// As [`run`].
pub fn ip(netns: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip").arg("-n").arg(netns).args(args))
}

/// A command that runs `program` inside `netns` (`ip netns exec`).
pub fn in_netns(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns]).arg(program);
    command
}

/// Creates a network namespace with its loopback up.
///
/// # Errors
///
/// As [`run`].
pub fn add_netns(netns: &str) -> Result<()> {
    run(Command::new("ip").args(["netns", "add", netns]))?;
    ip(netns, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Writes a sysctl inside `netns` (`key` as `net.ipv4.ip_forward`).
///
/// # Errors
///
/// As [`run`].
pub fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    run(in_netns(netns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))?;
    Ok(())
}

/// Namespaces pinned in `/run/netns` whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Kills every process inside `netns`, then deletes the namespace.
///
/// # Errors
///
/// When `ip netns del` fails.
pub fn delete_netns(netns: &str) -> Result<()> {
    if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", netns])) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
            stop_pid(pid);
        }
    }
    run(Command::new("ip").args(["netns", "del", netns]))?;
    Ok(())
}

/// Starts `command` detached (own process group, stdin closed, stdout and
/// stderr appended to `log`) and returns its pid. `ip netns exec` replaces
/// itself with the program, so the pid is the program's.
///
/// # Errors
///
/// [`LabError::Io`] when the log cannot be opened or the program not
/// started.
pub fn spawn_detached(mut command: Command, log: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::io(format!("open {}", log.display()), e))?;
    let err = file
        .try_clone()
        .map_err(|e| LabError::io(format!("open {}", log.display()), e))?;
    let line = describe(&command);
    let child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(format!("start {line}"), e))?;
    Ok(child.id())
}

/// Whether `pid` is a live process: one of its threads has not exited.
///
/// The main thread of a process killed with SIGKILL turns zombie at once,
/// while its other threads may run on for a while (one in an
/// uninterruptible wait, such as an fsync, dies only when the wait ends;
/// on a loaded machine that took seconds). The process keeps its files,
/// sockets and ports until its last thread is gone, so it counts as alive
/// until then: a successor started earlier cannot bind its ports.
pub fn alive(pid: u32) -> bool {
    alive_in(Path::new("/proc"), pid)
}

/// [`alive`], reading the process table under `proc` (`/proc`).
fn alive_in(proc: &Path, pid: u32) -> bool {
    let dir = proc.join(pid.to_string());
    let Some(main) = thread_state(&dir.join("stat")) else {
        return false;
    };
    if running(main) {
        return true;
    }
    let Ok(threads) = std::fs::read_dir(dir.join("task")) else {
        return false;
    };
    threads
        .flatten()
        .any(|thread| thread_state(&thread.path().join("stat")).is_some_and(running))
}

/// The state letter in a `stat` file, or `None` when it cannot be read.
fn thread_state(stat: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Whether a thread in `state` has not exited (zombie or dead).
fn running(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x')
}

/// Sends SIGTERM, waits up to two seconds, then SIGKILL; reaps the process
/// when it is this process's child.
pub fn stop_pid(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let target = Pid::from_raw(raw);
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        reap(target);
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    reap(target);
}

fn reap(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

/// Runs `f` on a thread that has entered `netns` and returns its result.
///
/// # Errors
///
/// [`LabError::Io`] when the namespace cannot be opened or entered.
pub fn run_in_netns<F, T>(netns: &str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = Path::new(NETNS_DIR).join(netns);
    let file =
        File::open(&path).map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
    std::thread::scope(|scope| {
        let thread = scope.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|errno| LabError::io(format!("enter netns {netns}"), errno.into()))?;
            Ok(f())
        });
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
///
/// # Errors
///
/// [`LabError::Timeout`] naming `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Finds `program`: in `dir` when given, else on `PATH`.
pub fn find_program(program: &str, dir: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(dir) = dir {
        let path = dir.join(program);
        return path.exists().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process table of one process: its own `stat` state and its
    /// threads' (`None`: the file is missing).
    fn fake_proc(root: &Path, pid: u32, main: Option<char>, threads: &[char]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("create the fake process");
        let stat = |state: char| format!("{pid} (felix rs) {state} 1 {pid} {pid} 0 -1\n");
        if let Some(state) = main {
            std::fs::write(dir.join("stat"), stat(state)).expect("write stat");
        }
        for (i, state) in threads.iter().enumerate() {
            let thread = dir
                .join("task")
                .join((u32::try_from(i).expect("few") + pid).to_string());
            std::fs::create_dir_all(&thread).expect("create the fake thread");
            std::fs::write(thread.join("stat"), stat(*state)).expect("write stat");
        }
    }

    #[test]
    fn a_process_is_alive_until_its_last_thread_has_exited() {
        let root = std::env::temp_dir().join(format!("twill-lab-proc-{}", std::process::id()));
        let cases: [(&str, Option<char>, &[char], bool); 7] = [
            ("running", Some('R'), &['R', 'S'], true),
            ("sleeping, no thread list", Some('S'), &[], true),
            ("killed, a thread in an fsync", Some('Z'), &['Z', 'D'], true),
            (
                "killed, a thread still sleeping",
                Some('Z'),
                &['Z', 'S'],
                true,
            ),
            ("every thread exited", Some('Z'), &['Z'], false),
            ("exited threads only", Some('Z'), &['Z', 'X'], false),
            ("no such process", None, &[], false),
        ];
        for (i, (what, main, threads, want)) in cases.into_iter().enumerate() {
            let pid = 1000 * (u32::try_from(i).expect("few") + 1);
            fake_proc(&root, pid, main, threads);
            assert_eq!(alive_in(&root, pid), want, "{what}");
        }
        std::fs::remove_dir_all(&root).expect("remove the fake process table");
    }

    /// The kernel's side of it: a process whose main thread has exited
    /// while another waits on its stdin. Needs python3 (for a portable
    /// `pthread_exit`); skipped without it.
    #[test]
    fn a_process_whose_main_thread_exited_is_alive_while_another_thread_runs() {
        const SCRIPT: &str = "import ctypes, os, threading\n\
            def wait():\n    os.read(0, 1)\n    os._exit(0)\n\
            threading.Thread(target=wait).start()\n\
            ctypes.CDLL(None).pthread_exit(None)\n";
        let Some(python) = find_program("python3", None) else {
            eprintln!("skipped: no python3");
            return;
        };
        let mut child = Command::new(python)
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start python3");
        let pid = child.id();
        let main_exited = wait_for("the main thread to exit", Duration::from_secs(10), || {
            (thread_state(Path::new(&format!("/proc/{pid}/stat"))) == Some('Z')).then_some(())
        });
        let lingering = alive(pid);
        drop(child.stdin.take());
        let gone = wait_for("the last thread to exit", Duration::from_secs(10), || {
            (!alive(pid)).then_some(())
        });
        let status = child.wait().expect("reap python3");
        main_exited.expect("the main thread exits");
        assert!(lingering, "alive while a thread runs");
        gone.expect("not alive once every thread has exited");
        assert!(status.success(), "{status}");
    }
}
