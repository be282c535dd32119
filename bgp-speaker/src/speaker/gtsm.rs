//! GTSM, the Generalized TTL Security Mechanism (RFC 5082, Calico's
//! `ttlSecurity`): a session's packets leave with TTL 255 and the kernel
//! drops what arrives from the peer with a TTL showing more hops than
//! configured.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{setsockopt, sockopt};

use crate::sockopt::set_int_option;

/// The TTL (IPv6: hop limit) of every packet of a GTSM session (RFC 5082).
pub const GTSM_TTL: u8 = 255;

/// The lowest TTL (IPv6: hop limit) GTSM accepts from a peer `hops` hops
/// away: `256 - hops`, since each router on the way decrements the 255 the
/// peer sent. `None` for 0 hops (Calico's unset `ttlSecurity`: off).
pub fn gtsm_min_ttl(hops: u8) -> Option<u8> {
    hops.checked_sub(1)
        .map(|beyond_first| GTSM_TTL - beyond_first)
}

/// A GTSM socket option the kernel refused; the session does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set {option} to {value} for ttl security with peer {peer}: {source}")]
pub struct TtlSecurityError {
    /// The peer the socket is for.
    pub peer: IpAddr,
    /// The socket option (`IP_TTL`, `IP_MINTTL`, `IPV6_UNICAST_HOPS`,
    /// `IPV6_MINHOPCOUNT`).
    pub option: &'static str,
    /// The value it was set to.
    pub value: u8,
    /// Why the kernel refused it.
    #[source]
    pub source: std::io::Error,
}

/// Makes `socket` a GTSM socket for `peer`, `hops` hops away: sends with TTL
/// 255 and drops what arrives with a lower TTL than [`gtsm_min_ttl`]. Nothing
/// to do for 0 hops.
///
/// The options follow the peer's family, not the socket's: an IPv4 peer on
/// an IPv6 socket (IPv4-mapped) is reached over IPv4, and Linux accepts the
/// IPv4 options on such a socket.
///
/// # Errors
///
/// [`TtlSecurityError`] naming the peer and the option the kernel refused.
pub fn apply_ttl_security(
    socket: &(impl AsFd + AsRawFd),
    peer: IpAddr,
    hops: u8,
) -> Result<(), TtlSecurityError> {
    let Some(min_ttl) = gtsm_min_ttl(hops) else {
        return Ok(());
    };
    set_gtsm_ttl(socket, peer)?;
    let (level, option, name) = if peer.to_canonical().is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MINTTL, "IP_MINTTL")
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            "IPV6_MINHOPCOUNT",
        )
    };
    let result = set_int_option(socket, level, option, libc::c_int::from(min_ttl));
    named(peer, name, min_ttl, result)
}

/// The send half of GTSM: packets to `peer` from `socket` leave with TTL
/// (IPv6: hop limit) 255. Alone it is what a shared listener needs, so that
/// the SYN-ACK the kernel sends before `accept` reaches a GTSM peer.
pub(super) fn set_gtsm_ttl(socket: &impl AsFd, peer: IpAddr) -> Result<(), TtlSecurityError> {
    let ttl = libc::c_int::from(GTSM_TTL);
    if peer.to_canonical().is_ipv4() {
        let result = setsockopt(socket, sockopt::Ipv4Ttl, &ttl).map_err(std::io::Error::from);
        named(peer, "IP_TTL", GTSM_TTL, result)
    } else {
        let result = setsockopt(socket, sockopt::Ipv6Ttl, &ttl).map_err(std::io::Error::from);
        named(peer, "IPV6_UNICAST_HOPS", GTSM_TTL, result)
    }
}

/// Names the peer, option and value in a failure to set a GTSM option.
fn named(
    peer: IpAddr,
    option: &'static str,
    value: u8,
    result: std::io::Result<()>,
) -> Result<(), TtlSecurityError> {
    result.map_err(|source| TtlSecurityError {
        peer,
        option,
        value,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_is_256_minus_hops_and_zero_hops_is_off() {
        let cases: [(u8, Option<u8>); 6] = [
            (0, None),
            (1, Some(255)),
            (2, Some(254)),
            (3, Some(253)),
            (254, Some(2)),
            (255, Some(1)),
        ];
        for (hops, expected) in cases {
            assert_eq!(gtsm_min_ttl(hops), expected, "hops {hops}");
        }
    }
}
