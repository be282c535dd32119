//! The FRR top-of-rack router: zebra and bgpd in the ToR namespace, with
//! the same eBGP peering as the BIRD ToR (every node, import all, export
//! nothing, learned routes into the ToR's kernel through zebra).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use super::{Lab, NODE_AS, SETTLE_TIMEOUT, TOR_ADDRESS, TOR_AS};
use crate::error::{LabError, Result};
use crate::state::NodeState;
use crate::sys;

/// Where Debian's `frr` package installs its daemons.
const FRR_DIR: &str = "/usr/lib/frr";

/// The user FRR's daemons run as (Debian's `frr` package creates it).
const FRR_USER: &str = "frr";

/// The FRR programs the ToR needs.
pub(super) const FRR_PROGRAMS: &[&str] = &["zebra", "bgpd"];

impl Lab {
    fn frr_dir(&self) -> PathBuf {
        self.tor_dir()
    }

    /// bgpd's configuration: one eBGP neighbor per node.
    fn frr_conf(&self) -> String {
        let mut conf = format!(
            "! The lab's top-of-rack router: eBGP with every node.\nhostname tor\nlog stdout\nroute-map export-none deny 10\nrouter bgp {TOR_AS}\n bgp router-id {TOR_ADDRESS}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n"
        );
        for node in &self.state.nodes {
            let _ = writeln!(conf, " neighbor {} remote-as {NODE_AS}", node.address);
        }
        conf.push_str(" address-family ipv4 unicast\n");
        for node in &self.state.nodes {
            let _ = writeln!(conf, "  neighbor {} activate", node.address);
            let _ = writeln!(
                conf,
                "  neighbor {} route-map export-none out",
                node.address
            );
        }
        conf.push_str(" exit-address-family\n");
        conf
    }

    /// Starts zebra, then bgpd (connected to zebra, which installs the
    /// learned routes), and waits until bgpd answers `vtysh`.
    pub(super) fn start_frr(&mut self) -> Result<()> {
        let dir = self.frr_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let zebra_conf = dir.join("zebra.conf");
        std::fs::write(&zebra_conf, "hostname tor\n")
            .map_err(|e| LabError::io(format!("write {}", zebra_conf.display()), e))?;
        let bgpd_conf = dir.join("bgpd.conf");
        std::fs::write(&bgpd_conf, self.frr_conf())
            .map_err(|e| LabError::io(format!("write {}", bgpd_conf.display()), e))?;
        // FRR drops to its own user (root is not in its vty group); its
        // pid files and sockets go in this directory.
        sys::run(
            Command::new("chown")
                .arg(format!("{FRR_USER}:{FRR_USER}"))
                .arg(&dir),
        )?;
        let zserv = dir.join("zserv.api");
        let common = |command: &mut Command, daemon: &str, conf: &PathBuf| {
            command
                .arg("-f")
                .arg(conf)
                .arg("-i")
                .arg(dir.join(format!("{daemon}.pid")))
                .arg("-z")
                .arg(&zserv)
                .arg("--vty_socket")
                .arg(&dir)
                .args(["-P", "0", "-u", FRR_USER, "-g", FRR_USER])
                .args(["--log", "stdout", "--limit-fds", "1024"]);
        };
        let mut zebra = sys::in_netns(&self.tor_netns(), frr_program("zebra")?);
        common(&mut zebra, "zebra", &zebra_conf);
        let zebra_pid = sys::spawn_detached(zebra, &dir.join("zebra.log"))?;
        self.state.tor_extra_pids.push(zebra_pid);
        self.save()?;
        sys::wait_for("zebra's socket", SETTLE_TIMEOUT, || {
            zserv.exists().then_some(())
        })?;
        let mut bgpd = sys::in_netns(&self.tor_netns(), frr_program("bgpd")?);
        common(&mut bgpd, "bgpd", &bgpd_conf);
        self.state.tor_pid = Some(sys::spawn_detached(bgpd, &dir.join("bgpd.log"))?);
        self.save()?;
        sys::wait_for("FRR bgpd to answer vtysh", SETTLE_TIMEOUT, || {
            self.vtysh(&["show bgp summary json"])
                .ok()
                .filter(|out| out.trim_start().starts_with('{'))
                .map(|_| ())
        })
    }

    /// `vtysh` against the ToR's bgpd, one `-c` per command.
    pub(super) fn vtysh(&self, commands: &[&str]) -> Result<String> {
        let vtysh = sys::find_program("vtysh", None).ok_or_else(|| super::missing("vtysh"))?;
        let mut command = Command::new(vtysh);
        command
            .arg("--vty_socket")
            .arg(self.frr_dir())
            .args(["-d", "bgpd"]);
        for c in commands {
            command.args(["-c", c]);
        }
        sys::run(&mut command)
    }

    /// The nodes whose session with the FRR ToR is Established.
    pub(super) fn frr_established(&self) -> Vec<String> {
        let Ok(text) = self.vtysh(&["show bgp summary json"]) else {
            return Vec::new();
        };
        let Ok(summary) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        let peers = &summary["ipv4Unicast"]["peers"];
        self.state
            .nodes
            .iter()
            .filter(|n| peers[n.address.to_string()]["state"] == "Established")
            .map(|n| n.name.clone())
            .collect()
    }

    /// Removes a node's neighbor from the running bgpd (its routes go).
    pub(super) fn frr_remove_peer(&self, node: &NodeState) -> Result<()> {
        let address: Ipv4Addr = node.address;
        self.vtysh(&[
            "configure terminal",
            &format!("router bgp {TOR_AS}"),
            &format!("no neighbor {address}"),
        ])?;
        let path = self.frr_dir().join("bgpd.conf");
        std::fs::write(&path, self.frr_conf())
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))
    }

    /// `show bgp summary` on the FRR ToR (empty when it does not answer).
    pub(super) fn frr_summary(&self) -> String {
        self.vtysh(&["show bgp summary"]).unwrap_or_default()
    }
}

/// The path of an FRR daemon.
///
/// # Errors
///
/// [`LabError::Missing`].
pub(super) fn frr_program(program: &str) -> Result<PathBuf> {
    let dir = std::path::Path::new(FRR_DIR);
    sys::find_program(program, Some(dir)).ok_or_else(|| LabError::Missing {
        program: program.to_string(),
        looked: FRR_DIR.into(),
        hint: "install the Debian package frr",
    })
}
