//! CIDR and IP address parsing as Calico does it.

use std::net::IpAddr;

pub use ipnet::IpNet;

use crate::validate::Validator;

/// Which address family a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 or IPv6.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn accepts(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Any => "IP",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Parses a CIDR, accepting a bare IP address as a full-length prefix
/// (`/32` for IPv4, `/128` for IPv6), as Calico's `ParseCIDROrIP` does.
/// Host bits are kept (`10.0.0.1/8` parses); callers that need a strictly
/// masked network compare with [`IpNet::trunc`].
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!("{text:?} is not a valid CIDR or IP address")),
    }
}

/// Parses an IP address.
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("{text:?} is not a valid IP address"))
}

/// Checks a CIDR (need not be masked) or an address of `family`.
pub fn check_cidr(v: &mut Validator, text: &str, family: Family) {
    match parse_cidr(text) {
        Err(_) => v.error(format!("{text:?} is not a valid CIDR")),
        Ok(net) if !family.accepts(&net.addr()) => {
            v.error(format!("{text} is not an {} CIDR", family.name()))
        }
        Ok(_) => {}
    }
}

/// Checks a strictly masked CIDR (or an address) of `family`.
pub fn check_network(v: &mut Validator, text: &str, family: Family) {
    match parse_cidr(text) {
        Err(_) => v.error(format!("{text:?} is not a valid CIDR")),
        Ok(net) if !family.accepts(&net.addr()) => {
            v.error(format!("{text} is not an {} CIDR", family.name()))
        }
        Ok(net) => check_masked(v, text, net),
    }
}

/// Checks that `net`, parsed from `text`, has no host bits set.
pub fn check_masked(v: &mut Validator, text: &str, net: IpNet) {
    if net.trunc() != net {
        v.error(format!(
            "{text} is not strictly masked (did you mean {}?)",
            net.trunc()
        ));
    }
}

/// Checks an address of `family`.
pub fn check_ip(v: &mut Validator, text: &str, family: Family) {
    match text.parse::<IpAddr>() {
        Ok(ip) if family.accepts(&ip) => {}
        Ok(_) => v.error(format!("{text} is not an {} address", family.name())),
        Err(_) => v.error(format!("{text:?} is not a valid {} address", family.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_full_length_prefixes() {
        assert_eq!(
            parse_cidr("10.0.0.1").map(|n| n.to_string()),
            Ok("10.0.0.1/32".into())
        );
        assert_eq!(
            parse_cidr("fd00::1").map(|n| n.to_string()),
            Ok("fd00::1/128".into())
        );
        assert_eq!(parse_cidr("10.0.0.0/8").map(|n| n.prefix_len()), Ok(8));
    }

    #[test]
    fn garbage_and_bad_prefixes_are_rejected() {
        for bad in ["garbage", "10.0.0.0/33", "10.0.0/8", "", "fd00::/129"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
