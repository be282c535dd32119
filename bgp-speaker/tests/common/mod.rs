//! What the interop tests share: namespaces wired to a peer daemon, the
//! daemon spawned with its log, Twill's side of the session, and waits on
//! the speaker's RIB feed.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "tests; each interop test uses its own part"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bgp_speaker::fsm::{Negotiated, PeerConfig};
use bgp_speaker::packet::{Family, Update};
use bgp_speaker::speaker::{Command as SpeakerCommand, PeerSpec, RibMsg, Speaker};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::error::Elapsed;
use twill_integration::{Background, TestNetns};

/// Twill's address on its end of the veth pair.
pub const VETH_TWILL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The peer's address on its end of the veth pair.
pub const VETH_PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Twill's namespace and the peer's (named after `peer`), joined by a veth
/// pair: `tw0` with [`VETH_TWILL`]/30 and `tw1` with [`VETH_PEER`]/30.
pub fn veth_pair(peer: &str) -> (TestNetns, TestNetns) {
    let netns = TestNetns::new("twill").unwrap();
    let peer_netns = TestNetns::new(peer).unwrap();
    netns
        .ip(&[
            "link",
            "add",
            "tw0",
            "type",
            "veth",
            "peer",
            "name",
            "tw1",
            "netns",
            peer_netns.name(),
        ])
        .unwrap();
    netns
        .ip(&["addr", "add", &format!("{VETH_TWILL}/30"), "dev", "tw0"])
        .unwrap();
    netns.ip(&["link", "set", "tw0", "up"]).unwrap();
    peer_netns
        .ip(&["addr", "add", &format!("{VETH_PEER}/30"), "dev", "tw1"])
        .unwrap();
    peer_netns.ip(&["link", "set", "tw1", "up"]).unwrap();
    (netns, peer_netns)
}

/// Spawns `command` in `netns` with stdin closed and stdout and stderr
/// written to a new file at `log`.
pub fn spawn_logged(netns: &TestNetns, mut command: Command, log: &Path) -> Background {
    let log = std::fs::File::create(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    netns.spawn_command(command).unwrap()
}

/// Twill (AS 64512, identifier 192.0.2.1) actively peering from `local`
/// with AS 64513 at `address`: both unicast families, hold time 90 s.
pub fn ebgp_peer(address: Ipv4Addr, local: Ipv4Addr) -> PeerSpec {
    PeerSpec {
        address: IpAddr::V4(address),
        port: 179,
        local_address: Some(IpAddr::V4(local)),
        ttl_security: None,
        config: PeerConfig {
            local_as: 64512,
            remote_as: 64513,
            local_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            passive: false,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            route_refresh: true,
            graceful_restart: None,
        },
    }
}

/// Runs the future `test` makes on a current-thread runtime inside `netns`.
pub fn block_on_in<F, Fut>(netns: &TestNetns, test: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: Future,
    Fut::Output: Send,
{
    netns
        .run(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(test())
        })
        .unwrap()
}

/// A speaker (no listener) running a session with `peer`.
pub fn speaker_with(peer: PeerSpec) -> (Speaker, UnboundedReceiver<RibMsg>) {
    let (speaker, rib) = Speaker::start(None);
    assert!(speaker.command(SpeakerCommand::AddPeer(Box::new(peer))));
    (speaker, rib)
}

/// What was negotiated once a session comes up, if one does `within`.
pub async fn established(
    rib: &mut UnboundedReceiver<RibMsg>,
    within: Duration,
) -> Result<Box<Negotiated>, Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            if let Some(RibMsg::Up { negotiated, .. }) = rib.recv().await {
                return negotiated;
            }
        }
    })
    .await
}

/// What `pick` finds in the first UPDATE it finds anything in, if one
/// arrives `within`.
pub async fn first_update<T>(
    rib: &mut UnboundedReceiver<RibMsg>,
    within: Duration,
    mut pick: impl FnMut(&Update) -> Option<T>,
) -> Result<T, Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            if let Some(RibMsg::Update { update, .. }) = rib.recv().await
                && let Some(found) = pick(&update)
            {
                return found;
            }
        }
    })
    .await
}

/// The update's announced IPv4 prefixes, if there are any.
pub fn announced_v4(update: &Update) -> Option<Vec<ipnet::Ipv4Net>> {
    Some(update.announced_v4()).filter(|routes| !routes.is_empty())
}

/// A GoBGP configuration: AS 64513 on `gobgp`, passively peering with
/// Twill (AS 64512) at `twill` over IPv4 and IPv6 unicast, hold time 9 s;
/// with `graceful_restart`, as a restarting speaker with a 120 s restart
/// time on both families.
pub fn gobgp_config(gobgp: Ipv4Addr, twill: Ipv4Addr, graceful_restart: bool) -> String {
    let (restart, family_restart) = if graceful_restart {
        (
            "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n",
            "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
        )
    } else {
        ("", "")
    };
    format!(
        r#"[global.config]
  as = 64513
  router-id = "{gobgp}"
  port = 179
  local-address-list = ["{gobgp}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{twill}"
    peer-as = 64512
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
  [neighbors.transport.config]
    passive-mode = true
    local-address = "{gobgp}"
{restart}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
{family_restart}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
{family_restart}"#
    )
}
