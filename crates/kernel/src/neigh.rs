//! Permanent neighbour (ARP/NDP) entries and bridge/VXLAN forwarding
//! database entries.
//!
//! Adds are create-or-replace: the kernel learns neighbours on its own
//! (STALE/REACHABLE entries appear with traffic), so a strict create would
//! fail spuriously on an entry Twill has never written.

use std::net::IpAddr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{KernelError, KernelObject};
use crate::link::MacAddr;
use crate::nl::{CHANGE, CREATE_REPLACE, Nl};

/// A permanent neighbour entry (`ip neigh replace IP lladdr MAC dev LINK nud permanent`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    /// Interface name.
    pub link: String,
    /// Neighbour IP address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: MacAddr,
}

/// A permanent forwarding-database entry on a device itself
/// (`bridge fdb replace MAC dev LINK [dst IP] self permanent`), the form
/// VXLAN devices use to map a remote VTEP MAC to its underlay address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    /// Interface name (a VXLAN device or a bridge port).
    pub link: String,
    /// Link-layer address.
    pub mac: MacAddr,
    /// Remote tunnel endpoint, for VXLAN devices.
    pub dst: Option<IpAddr>,
}

fn neigh_object(link: &str, ip: IpAddr) -> KernelObject {
    KernelObject::Neighbour {
        link: link.to_string(),
        ip,
    }
}

fn fdb_object(link: &str, mac: MacAddr) -> KernelObject {
    KernelObject::Fdb {
        link: link.to_string(),
        mac,
    }
}

fn nl_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

fn ip_of(addr: &NeighbourAddress) -> Option<IpAddr> {
    match addr {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        // In AF_BRIDGE (FDB) messages the family says nothing about NDA_DST,
        // so it arrives as raw bytes: 4 for an IPv4 VTEP, 16 for IPv6.
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn neigh_message(index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::Destination(nl_address(ip)));
    msg
}

pub(crate) async fn add_neighbour(nl: &Nl, entry: &Neighbour) -> Result<(), KernelError> {
    let index = nl.link_index(&entry.link).await?;
    let mut msg = neigh_message(index, entry.ip);
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.0.to_vec()));
    nl.request(RouteNetlinkMessage::NewNeighbour(msg), CREATE_REPLACE)
        .await
        .map(drop)
        .map_err(|errno| {
            KernelError::from_errno_create(neigh_object(&entry.link, entry.ip), "add", errno)
        })
}

pub(crate) async fn delete_neighbour(nl: &Nl, link: &str, ip: IpAddr) -> Result<(), KernelError> {
    let index = nl.link_index(link).await?;
    nl.request(
        RouteNetlinkMessage::DelNeighbour(neigh_message(index, ip)),
        CHANGE,
    )
    .await
    .map(drop)
    .map_err(|errno| KernelError::from_errno_existing(neigh_object(link, ip), "delete", errno))
}

/// Permanent IPv4/IPv6 neighbour entries (learned entries are not Twill's
/// and are left out), of every interface or of `link`.
pub(crate) async fn list_neighbours(
    nl: &Nl,
    link: Option<&str>,
) -> Result<Vec<Neighbour>, KernelError> {
    let dump = nl
        .dump_for_link(
            link,
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            "dump neighbours",
        )
        .await?;
    let mut out = Vec::new();
    for answer in &dump.answers {
        let RouteNetlinkMessage::NewNeighbour(msg) = answer else {
            continue;
        };
        let family_ok = matches!(
            msg.header.family,
            AddressFamily::Inet | AddressFamily::Inet6
        );
        if !family_ok || msg.header.state != NeighbourState::Permanent {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(a) => ip = ip_of(a),
                NeighbourAttribute::LinkLayerAddress(bytes) => mac = MacAddr::from_bytes(bytes),
                _ => {}
            }
        }
        if let (Some(ip), Some(mac), Some(name)) = (ip, mac, dump.link_name(msg.header.ifindex)) {
            out.push(Neighbour {
                link: name.clone(),
                ip,
                mac,
            });
        }
    }
    out.sort();
    Ok(out)
}

fn fdb_message(index: u32, mac: MacAddr, dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    if let Some(dst) = dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(nl_address(dst)));
    }
    msg
}

pub(crate) async fn add_fdb(nl: &Nl, entry: &FdbEntry) -> Result<(), KernelError> {
    let index = nl.link_index(&entry.link).await?;
    nl.request(
        RouteNetlinkMessage::NewNeighbour(fdb_message(index, entry.mac, entry.dst)),
        CREATE_REPLACE,
    )
    .await
    .map(drop)
    .map_err(|errno| {
        KernelError::from_errno_create(fdb_object(&entry.link, entry.mac), "add", errno)
    })
}

pub(crate) async fn delete_fdb(nl: &Nl, entry: &FdbEntry) -> Result<(), KernelError> {
    let index = nl.link_index(&entry.link).await?;
    nl.request(
        RouteNetlinkMessage::DelNeighbour(fdb_message(index, entry.mac, entry.dst)),
        CHANGE,
    )
    .await
    .map(drop)
    .map_err(|errno| {
        KernelError::from_errno_existing(fdb_object(&entry.link, entry.mac), "delete", errno)
    })
}

/// Permanent `self` FDB entries with a link-layer address, of every device
/// or of `link`. On bridge ports this includes the kernel's own entries for
/// the port's MAC and multicast addresses.
pub(crate) async fn list_fdb(nl: &Nl, link: Option<&str>) -> Result<Vec<FdbEntry>, KernelError> {
    let mut req = NeighbourMessage::default();
    req.header.family = AddressFamily::Bridge;
    let dump = nl
        .dump_for_link(link, RouteNetlinkMessage::GetNeighbour(req), "dump fdb")
        .await?;
    let mut out = Vec::new();
    for answer in &dump.answers {
        let RouteNetlinkMessage::NewNeighbour(msg) = answer else {
            continue;
        };
        if msg.header.family != AddressFamily::Bridge
            || msg.header.state != NeighbourState::Permanent
            || !msg.header.flags.contains(NeighbourFlags::Own)
        {
            continue;
        }
        let mut mac = None;
        let mut dst = None;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::LinkLayerAddress(bytes) => mac = MacAddr::from_bytes(bytes),
                NeighbourAttribute::Destination(a) => dst = ip_of(a),
                _ => {}
            }
        }
        if let (Some(mac), Some(name)) = (mac, dump.link_name(msg.header.ifindex)) {
            out.push(FdbEntry {
                link: name.clone(),
                mac,
                dst,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
