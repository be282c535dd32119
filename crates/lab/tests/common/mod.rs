//! What the lab's root tests share: the `twill-lab` binary, the check that
//! root, BIRD and the built daemons are there, and a lab of the test's own
//! that is torn down when dropped (also when the test fails).

#![allow(dead_code, reason = "each test crate uses a part")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use twill_lab::{Lab, LabOptions, LabState};

pub const LAB: &str = env!("CARGO_BIN_EXE_twill-lab");
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

pub fn bin_dir() -> PathBuf {
    Path::new(LAB).parent().unwrap().to_path_buf()
}

/// Root, BIRD and the built daemons, or a skip (a failure in CI).
pub fn ready() -> bool {
    if !twill_integration::require_root() {
        return false;
    }
    let dir = bin_dir();
    let daemons: Vec<String> = ["felix-rs", "bgp-speaker", "twill-ipamd", "twill-cni"]
        .iter()
        .map(|d| dir.join(d).display().to_string())
        .collect();
    let daemons: Vec<&str> = daemons.iter().map(String::as_str).collect();
    twill_integration::require_programs(
        &daemons,
        "none: cargo build -p felix-rs -p bgp-speaker -p twill-ipam -p twill-cni",
    ) && twill_integration::require_programs(&["bird", "birdc", "ss"], "bird2, iproute2")
}

/// A lab of its own: a unique name and state root, torn down on drop (also
/// when the test fails).
pub struct TestLab {
    pub name: String,
    pub root: PathBuf,
}

impl TestLab {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(format!("twill-lab-test-{name}"));
        Self { name, root }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(LAB);
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--state-root")
            .arg(&self.root)
            .arg("--bin-dir")
            .arg(bin_dir())
            .current_dir(REPO);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        eprintln!(
            "$ twill-lab {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "twill-lab {args:?} failed");
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn state(&self) -> LabState {
        LabState::load(&self.root.join(&self.name).join("state.json")).unwrap()
    }

    /// The lab as the library sees it (for BGP status queries).
    pub fn open(&self) -> Lab {
        Lab::open(LabOptions {
            name: self.name.clone(),
            state_root: self.root.clone(),
            bin_dir: Some(bin_dir()),
            listener: Vec::new(),
            progress: false,
        })
        .unwrap()
    }

    pub fn netns(&self, what: &str) -> String {
        format!("twill-{}-{what}", self.name)
    }

    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("twill-{}-", self.name);
        twill_integration::leak::netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        let state = self.state();
        state
            .nodes
            .iter()
            .flat_map(|n| n.pids.values().copied())
            .chain(state.tor_pid)
            .chain(state.pods.iter().filter_map(|p| p.listener))
            .collect()
    }

    pub fn assert_gone(&self, pids: &[u32]) {
        assert_eq!(self.namespaces(), Vec::<String>::new(), "namespaces left");
        for pid in pids {
            assert!(!twill_lab::sys::alive(*pid), "process {pid} left");
        }
        assert!(!self.root.join(&self.name).exists(), "state directory left");
        let host: Vec<String> = twill_integration::leak::survivors()
            .unwrap()
            .into_iter()
            .map(|s| s.to_string())
            .filter(|s| s.contains(&self.name))
            .collect();
        assert_eq!(host, Vec::<String>::new(), "host objects left");
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.command().arg("down").output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
