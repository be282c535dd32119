//! CIDR and IP address parsing as Calico does it.

use std::net::IpAddr;

pub use ipnet::IpNet;

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
