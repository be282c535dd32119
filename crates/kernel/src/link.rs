//! Network interfaces: veth pairs, bridges, VXLAN devices; move, rename,
//! up/down, MTU, MAC, bridge ports, delete, get, list.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::str::FromStr;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage,
};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkVxlan};

use crate::error::{KernelError, KernelObject};
use crate::netns::NetnsPath;
use crate::nl::{CHANGE, CREATE_EXCL, Nl};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

/// A 48-bit Ethernet address, printed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Error parsing a [`MacAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mac address {0:?}: expected six hex octets separated by ':'")]
pub struct MacAddrParseError(String);

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| MacAddrParseError(s.to_string()))?;
            if part.len() != 2 {
                return Err(MacAddrParseError(s.to_string()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacAddrParseError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacAddrParseError(s.to_string()));
        }
        Ok(Self(out))
    }
}

impl MacAddr {
    /// Parses the kernel's byte form; `None` unless exactly six bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Self)
    }
}

/// What the kernel reports about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index in its namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`veth`, `bridge`, `vxlan`, ...); `None` for physical and
    /// loopback devices.
    pub kind: Option<String>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Hardware address, when the device has an Ethernet one.
    pub mac: Option<MacAddr>,
    /// Administrative state (`IFF_UP`).
    pub up: bool,
    /// Name of the bridge this interface is a port of.
    pub controller: Option<String>,
    /// VNI, port and local address, for a VXLAN device.
    pub vxlan: Option<VxlanIdentity>,
}

/// What identifies a VXLAN device's tunnel: what it was created with and
/// cannot change without being created again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanIdentity {
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Local tunnel source address.
    pub local: Option<IpAddr>,
}

impl VxlanIdentity {
    /// The identity a device created from `spec` has.
    pub fn of(spec: &VxlanSpec) -> Self {
        Self {
            vni: spec.vni,
            port: spec.port,
            local: spec.local,
        }
    }
}

/// A veth pair to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// Name of the end that stays in the namespace the op runs in.
    pub name: String,
    /// Name of the other end.
    pub peer_name: String,
    /// Namespace the peer is created in; `None` keeps it beside `name`.
    pub peer_netns: Option<NetnsPath>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// MAC of the local end.
    pub mac: Option<MacAddr>,
    /// MAC of the peer end.
    pub peer_mac: Option<MacAddr>,
}

impl VethSpec {
    /// A veth pair `name` / `peer_name`, both in the current namespace.
    pub fn new(name: impl Into<String>, peer_name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            peer_name: peer_name.into(),
            peer_netns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
        }
    }

    /// Creates the peer directly inside `netns` (no move afterwards).
    pub fn peer_in(mut self, netns: NetnsPath) -> Self {
        self.peer_netns = Some(netns);
        self
    }

    /// Sets the MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

/// A VXLAN device to create (learning is always off: Twill programs the FDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Device name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port (4789 is the IANA port, Calico's default).
    pub port: u16,
    /// Local tunnel source address.
    pub local: Option<IpAddr>,
    /// Underlay interface.
    pub underlay: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// MAC of the device (Calico derives it from the node name).
    pub mac: Option<MacAddr>,
}

impl VxlanSpec {
    /// A device `name` with `vni` on UDP `port`.
    pub fn new(name: impl Into<String>, vni: u32, port: u16) -> Self {
        Self {
            name: name.into(),
            vni,
            port,
            local: None,
            underlay: None,
            mtu: None,
            mac: None,
        }
    }
}

/// A bridge to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Bridge name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
}

/// Checks an interface name the way the kernel does.
pub(crate) fn check_name(name: &str) -> Result<(), KernelError> {
    let bad = name.is_empty()
        || name.len() > IFNAMSIZ_MAX
        || name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace);
    if bad {
        return Err(KernelError::Invalid {
            object: KernelObject::Interface(name.to_string()),
            reason: "interface names are 1 to 15 bytes without '/', ':' or whitespace".into(),
        });
    }
    Ok(())
}

fn iface(name: &str) -> KernelObject {
    KernelObject::Interface(name.to_string())
}

fn decode(link: LinkMessage, names: &std::collections::BTreeMap<u32, String>) -> LinkInfo {
    let mut info = LinkInfo {
        index: link.header.index,
        name: String::new(),
        kind: None,
        mtu: 0,
        mac: None,
        up: link.header.flags.contains(LinkFlags::Up),
        controller: None,
        vxlan: None,
    };
    for attr in link.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Mtu(mtu) => info.mtu = mtu,
            LinkAttribute::Address(bytes) => info.mac = MacAddr::from_bytes(&bytes),
            LinkAttribute::Controller(index) if index != 0 => {
                info.controller = Some(
                    names
                        .get(&index)
                        .cloned()
                        .unwrap_or_else(|| format!("if{index}")),
                );
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        NlLinkInfo::Kind(kind) => info.kind = Some(kind.to_string()),
                        NlLinkInfo::Data(InfoData::Vxlan(attrs)) => {
                            info.vxlan = Some(vxlan_identity(&attrs));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn vxlan_identity(attrs: &[InfoVxlan]) -> VxlanIdentity {
    let mut identity = VxlanIdentity {
        vni: 0,
        port: 0,
        local: None,
    };
    for attr in attrs {
        match attr {
            InfoVxlan::Id(vni) => identity.vni = *vni,
            InfoVxlan::Port(port) => identity.port = *port,
            InfoVxlan::Local(ip) => identity.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => identity.local = Some(IpAddr::V6(*ip)),
            _ => {}
        }
    }
    identity
}

fn common_attrs(msg: &mut LinkMessage, mtu: Option<u32>, mac: Option<MacAddr>) {
    if let Some(mtu) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
}

async fn create(nl: &Nl, name: &str, msg: LinkMessage) -> Result<(), KernelError> {
    nl.request(RouteNetlinkMessage::NewLink(msg), CREATE_EXCL)
        .await
        .map(drop)
        .map_err(|errno| KernelError::from_errno_create(iface(name), "add", errno))
}

async fn change(
    nl: &Nl,
    name: &str,
    msg: LinkMessage,
    operation: &'static str,
) -> Result<(), KernelError> {
    nl.request(RouteNetlinkMessage::NewLink(msg), CHANGE)
        .await
        .map(drop)
        .map_err(|errno| KernelError::from_errno_existing(iface(name), operation, errno))
}

pub(crate) async fn create_veth(nl: &Nl, spec: &VethSpec) -> Result<(), KernelError> {
    check_name(&spec.name)?;
    check_name(&spec.peer_name)?;
    // Held open until the request completes: the kernel resolves the fd.
    let netns_file = spec.peer_netns.as_ref().map(NetnsPath::open).transpose()?;
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(spec.peer_name.clone()));
    if let Some(file) = &netns_file {
        peer.attributes
            .push(LinkAttribute::NetNsFd(file.as_raw_fd()));
    }
    common_attrs(&mut peer, spec.mtu, spec.peer_mac);
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.clone()));
    common_attrs(&mut msg, spec.mtu, spec.mac);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        NlLinkInfo::Kind(InfoKind::Veth),
        NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    create(nl, &spec.name, msg).await
}

pub(crate) async fn create_bridge(nl: &Nl, spec: &BridgeSpec) -> Result<(), KernelError> {
    check_name(&spec.name)?;
    let mut msg = LinkMessageBuilder::<LinkBridge>::new(&spec.name).build();
    common_attrs(&mut msg, spec.mtu, None);
    create(nl, &spec.name, msg).await
}

pub(crate) async fn create_vxlan(nl: &Nl, spec: &VxlanSpec) -> Result<(), KernelError> {
    check_name(&spec.name)?;
    let mut builder = LinkVxlan::new(&spec.name, spec.vni)
        .port(spec.port)
        .learning(false);
    match spec.local {
        Some(IpAddr::V4(v4)) => builder = builder.local(v4),
        Some(IpAddr::V6(v6)) => builder = builder.local6(v6),
        None => {}
    }
    if let Some(underlay) = &spec.underlay {
        builder = builder.dev(nl.link_index(underlay).await?);
    }
    let mut msg = builder.build();
    common_attrs(&mut msg, spec.mtu, spec.mac);
    create(nl, &spec.name, msg).await
}

fn by_index(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

pub(crate) async fn move_to_netns(
    nl: &Nl,
    name: &str,
    netns: &NetnsPath,
) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    let file = netns.open()?;
    let mut msg = by_index(index);
    msg.attributes
        .push(LinkAttribute::NetNsFd(file.as_raw_fd()));
    let result = change(nl, name, msg, "move").await;
    drop(file);
    result
}

pub(crate) async fn rename(nl: &Nl, name: &str, new_name: &str) -> Result<(), KernelError> {
    check_name(new_name)?;
    let index = nl.link_index(name).await?;
    let mut msg = by_index(index);
    msg.attributes
        .push(LinkAttribute::IfName(new_name.to_string()));
    nl.request(RouteNetlinkMessage::NewLink(msg), CHANGE)
        .await
        .map(drop)
        .map_err(|errno| {
            if errno == nix::errno::Errno::EEXIST {
                KernelError::AlreadyExists {
                    object: iface(new_name),
                }
            } else {
                KernelError::from_errno_existing(iface(name), "rename", errno)
            }
        })
}

pub(crate) async fn set_up(nl: &Nl, name: &str, up: bool) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    let mut msg = by_index(index);
    if up {
        msg.header.flags |= LinkFlags::Up;
    }
    msg.header.change_mask |= LinkFlags::Up;
    change(nl, name, msg, if up { "set up" } else { "set down" }).await
}

pub(crate) async fn set_mtu(nl: &Nl, name: &str, mtu: u32) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    let mut msg = by_index(index);
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    change(nl, name, msg, "set mtu").await
}

pub(crate) async fn set_mac(nl: &Nl, name: &str, mac: MacAddr) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    let mut msg = by_index(index);
    msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    change(nl, name, msg, "set mac").await
}

pub(crate) async fn set_controller(
    nl: &Nl,
    name: &str,
    controller: Option<&str>,
) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    let controller_index = match controller {
        Some(bridge) => nl.link_index(bridge).await?,
        None => 0,
    };
    let mut msg = by_index(index);
    msg.attributes
        .push(LinkAttribute::Controller(controller_index));
    change(nl, name, msg, "set controller").await
}

pub(crate) async fn delete(nl: &Nl, name: &str) -> Result<(), KernelError> {
    let index = nl.link_index(name).await?;
    nl.request(RouteNetlinkMessage::DelLink(by_index(index)), CHANGE)
        .await
        .map(drop)
        .map_err(|errno| KernelError::from_errno_existing(iface(name), "delete", errno))
}

pub(crate) async fn get(nl: &Nl, name: &str) -> Result<LinkInfo, KernelError> {
    let link = nl.link_by_name(name).await?;
    let controller = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(index) if *index != 0 => Some(*index),
        _ => None,
    });
    let names = match controller {
        Some(_) => nl.link_names().await?,
        None => Default::default(),
    };
    Ok(decode(link, &names))
}

pub(crate) async fn list(nl: &Nl, prefix: Option<&str>) -> Result<Vec<LinkInfo>, KernelError> {
    let links = nl.dump_links().await?;
    let names = links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((l.header.index, n.clone())),
                _ => None,
            })
        })
        .collect();
    let mut out: Vec<LinkInfo> = links
        .into_iter()
        .map(|l| decode(l, &names))
        .filter(|l| prefix.is_none_or(|p| l.name.starts_with(p)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_round_trip_through_text() {
        let mac: MacAddr = "ee:ee:ee:ee:ee:0a".parse().expect("valid mac");
        assert_eq!(mac.0, [0xee, 0xee, 0xee, 0xee, 0xee, 0x0a]);
        assert_eq!(mac.to_string(), "ee:ee:ee:ee:ee:0a");
    }

    #[test]
    fn malformed_mac_addresses_are_rejected() {
        for bad in [
            "",
            "ee:ee:ee:ee:ee",
            "ee:ee:ee:ee:ee:ee:ee",
            "gg:ee:ee:ee:ee:ee",
            "e:ee:ee:ee:ee:eee",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn interface_names_follow_kernel_rules() {
        for good in ["eth0", "cali1234567890a", "vxlan.calico"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "cali1234567890ab", "a/b", "a:b", "a b", ".", ".."] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
