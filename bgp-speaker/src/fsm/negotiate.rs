//! Checking a peer's OPEN against the configuration and recording what was
//! negotiated; resolving connection collisions (RFC 4271 §6.8).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::open::BgpOpenMessage;

use super::PeerConfig;
use crate::packet::{Family, OpenError};

/// The peer's graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    /// The R bit: the peer has restarted and will send End-of-RIB.
    pub restarting: bool,
    /// How long to keep the peer's routes after the session drops.
    pub restart_time: Duration,
    /// Families for which the peer preserved forwarding state (F bit set).
    pub forwarding_preserved: BTreeSet<Family>,
    /// Families the peer can restart for (listed in the capability).
    pub families: BTreeSet<Family>,
}

/// What both sides agreed on in their OPENs; recorded in the session when it
/// reaches OpenConfirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS (from the 4-octet AS capability when present).
    pub peer_as: u32,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// Negotiated hold time: the smaller proposal; zero disables keepalives.
    pub hold_time: Duration,
    /// Keepalive interval: a third of the hold time (zero when hold time is zero).
    pub keepalive: Duration,
    /// Both sides announced 4-octet AS support (RFC 6793).
    pub four_octet_as: bool,
    /// Families both sides announced (RFC 4760). A peer without the
    /// multiprotocol capability speaks IPv4 unicast only.
    pub families: BTreeSet<Family>,
    /// Both sides announced route refresh (RFC 2918).
    pub route_refresh: bool,
    /// The peer's graceful restart capability, if announced (RFC 4724).
    pub graceful_restart: Option<PeerGracefulRestart>,
}

/// Checks a peer's OPEN against `config` and computes the negotiated session
/// parameters, or the error that refuses the OPEN (RFC 4271 §6.2).
pub fn negotiate(config: &PeerConfig, open: &BgpOpenMessage) -> Result<Negotiated, OpenError> {
    if open.version() != 4 {
        return Err(OpenError::UnsupportedVersion {
            version: open.version(),
        });
    }
    let caps = open.capabilities();
    let peer_as = open.my_asn4();
    if peer_as != config.remote_as {
        return Err(OpenError::BadPeerAs {
            received: peer_as,
            expected: config.remote_as,
        });
    }
    let id = open.bgp_id();
    let ibgp = config.remote_as == config.local_as;
    // RFC 4271 §6.2 (syntax) and RFC 6286 §2.2 (same identifier inside one AS).
    if id.is_unspecified()
        || id.is_multicast()
        || id.is_broadcast()
        || (ibgp && id == config.local_id)
    {
        return Err(OpenError::BadBgpIdentifier { id });
    }
    let peer_hold = open.hold_time();
    if peer_hold == 1 || peer_hold == 2 {
        return Err(OpenError::UnacceptableHoldTime {
            hold_time: peer_hold,
        });
    }
    let hold = peer_hold.min(config.hold_time);
    let hold_time = Duration::from_secs(u64::from(hold));

    let mut peer_families = BTreeSet::new();
    let mut any_mp = false;
    let mut four_octet_as = false;
    let mut route_refresh = false;
    let mut graceful_restart = None;
    for cap in &caps {
        match cap {
            BgpCapability::MultiProtocolExtensions(mp) => {
                any_mp = true;
                peer_families.extend(Family::from_address_type(mp.address_type()));
            }
            BgpCapability::FourOctetAs(_) => four_octet_as = true,
            BgpCapability::RouteRefresh => route_refresh = true,
            BgpCapability::GracefulRestartCapability(gr) => {
                let mut families = BTreeSet::new();
                let mut forwarding_preserved = BTreeSet::new();
                for af in gr.address_families() {
                    if let Some(family) = Family::from_address_type(af.address_type()) {
                        families.insert(family);
                        if af.forwarding_state() {
                            forwarding_preserved.insert(family);
                        }
                    }
                }
                graceful_restart = Some(PeerGracefulRestart {
                    restarting: gr.restart(),
                    restart_time: Duration::from_secs(u64::from(gr.time())),
                    forwarding_preserved,
                    families,
                });
            }
            _ => {}
        }
    }
    if !any_mp {
        // RFC 4760 §8: without the capability, IPv4 unicast is implied.
        peer_families.insert(Family::Ipv4Unicast);
    }
    let families: BTreeSet<Family> = config
        .families
        .iter()
        .copied()
        .filter(|f| peer_families.contains(f))
        .collect();
    if families.is_empty() {
        // RFC 5492 §5: the data lists the capabilities we need.
        let data = config
            .families
            .iter()
            .flat_map(|f| {
                let afi = f.afi().to_be_bytes();
                [1, 4, afi[0], afi[1], 0, f.safi()]
            })
            .collect();
        return Err(OpenError::UnsupportedCapability {
            reason: "no address family in common".to_string(),
            data,
        });
    }
    Ok(Negotiated {
        peer_as,
        peer_id: id,
        hold_time,
        keepalive: hold_time / 3,
        four_octet_as,
        families,
        route_refresh: route_refresh && config.route_refresh,
        graceful_restart,
    })
}

/// Which side opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOrigin {
    /// Twill connected to the peer.
    Outbound,
    /// The peer connected to Twill.
    Inbound,
}

/// RFC 4271 §6.8: of two connections to the same peer, keep the one opened by
/// the speaker with the higher BGP identifier (compared as 32-bit integers).
/// Returns the connection to keep; the other gets OpenCollisionDump.
pub fn collision_winner(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> ConnectionOrigin {
    if u32::from(local_id) > u32::from(remote_id) {
        ConnectionOrigin::Outbound
    } else {
        ConnectionOrigin::Inbound
    }
}
