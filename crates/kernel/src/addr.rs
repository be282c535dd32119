//! Interface addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{KernelError, KernelObject};
use crate::nl::{CHANGE, CREATE_EXCL, Nl};

/// An address assigned to an interface (host bits kept: `10.0.0.5/24`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressEntry {
    /// Interface name.
    pub link: String,
    /// Address and prefix length.
    pub addr: IpNet,
}

fn object(link: &str, addr: IpNet) -> KernelObject {
    KernelObject::Address {
        link: link.to_string(),
        addr,
    }
}

fn message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.scope = if addr.addr().is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    msg.header.family = match addr {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    // As `ip addr add`: IPv4 carries IFA_LOCAL (the address) and IFA_ADDRESS
    // (the peer, the same on broadcast links); IPv6 only IFA_ADDRESS.
    if addr.addr().is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
    }
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

pub(crate) async fn add(nl: &Nl, link: &str, addr: IpNet) -> Result<(), KernelError> {
    let index = nl.link_index(link).await?;
    nl.request(
        RouteNetlinkMessage::NewAddress(message(index, addr)),
        CREATE_EXCL,
    )
    .await
    .map(drop)
    .map_err(|errno| KernelError::from_errno_create(object(link, addr), "add", errno))
}

pub(crate) async fn delete(nl: &Nl, link: &str, addr: IpNet) -> Result<(), KernelError> {
    let index = nl.link_index(link).await?;
    nl.request(
        RouteNetlinkMessage::DelAddress(message(index, addr)),
        CHANGE,
    )
    .await
    .map(drop)
    .map_err(|errno| KernelError::from_errno_existing(object(link, addr), "delete", errno))
}

/// All addresses, or those of `link`. Includes what the kernel assigns by
/// itself (`127.0.0.1/8` on `lo`, `fe80::/64` link-local on up interfaces).
pub(crate) async fn list(nl: &Nl, link: Option<&str>) -> Result<Vec<AddressEntry>, KernelError> {
    let dump = nl
        .dump_for_link(
            link,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "dump addresses",
        )
        .await?;
    let mut out = Vec::new();
    for answer in &dump.answers {
        let RouteNetlinkMessage::NewAddress(msg) = answer else {
            continue;
        };
        // IFA_LOCAL is the interface's own address on point-to-point links;
        // prefer it, as `ip addr` does.
        let mut ip: Option<IpAddr> = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(local) => ip = Some(*local),
                AddressAttribute::Address(address) if ip.is_none() => ip = Some(*address),
                _ => {}
            }
        }
        let (Some(ip), Some(name)) = (ip, dump.link_name(msg.header.index)) else {
            continue;
        };
        let Ok(addr) = IpNet::new(ip, msg.header.prefix_len) else {
            continue;
        };
        out.push(AddressEntry {
            link: name.clone(),
            addr,
        });
    }
    out.sort();
    Ok(out)
}
