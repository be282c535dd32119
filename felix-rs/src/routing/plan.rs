//! Desired vs listed: the kernel operations that make this node's routes,
//! neighbour entries, FDB entries and VXLAN device what [`Desired`] says,
//! touching only what is Twill's.
//!
//! Ownership, without remembering anything:
//!
//! * routes with protocol [`ROUTE_PROTOCOL`] in the main table;
//! * permanent neighbour entries on workload interfaces (`twl…`) and on
//!   the VXLAN devices;
//! * FDB entries and addresses of the VXLAN devices, and the devices;
//! * addresses on workload interfaces, but for IPv6 link-local ones.
//!
//! Order: device (create, MTU, MAC, up, address), FDB, neighbours, routes;
//! then removals in reverse (routes, neighbours, FDB, device). A local
//! route that moves to another interface, or goes away, is followed by the
//! removal of the conntrack flows of its address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use twill_kernel::{
    AddressEntry, FdbEntry, KernelOp, LinkInfo, Neighbour, Route, VxlanIdentity,
    WORKLOAD_INTERFACE_PREFIX,
};

use super::{Desired, Family, ROUTE_PROTOCOL, VxlanDevice};

/// A VXLAN device as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    /// The link.
    pub link: LinkInfo,
    /// Its addresses.
    pub addresses: Vec<IpNet>,
}

/// What the kernel has of the objects the routing core owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actual {
    /// The VXLAN devices that exist, by family.
    pub vxlan: BTreeMap<Family, VxlanLink>,
    /// Routes of protocol [`ROUTE_PROTOCOL`] (other routes are ignored).
    pub routes: Vec<Route>,
    /// Permanent neighbour entries (those on foreign interfaces are ignored).
    pub neighbours: Vec<Neighbour>,
    /// FDB entries (those of other devices are ignored).
    pub fdb: Vec<FdbEntry>,
    /// Addresses on workload interfaces (IPv6 link-local ones are ignored).
    pub workload_addresses: Vec<AddressEntry>,
}

/// Whether a neighbour entry on `link` is Twill's.
pub fn owns_neighbour_link(link: &str) -> bool {
    is_vxlan_device(link) || link.starts_with(WORKLOAD_INTERFACE_PREFIX)
}

fn is_vxlan_device(link: &str) -> bool {
    Family::ALL.iter().any(|f| f.interface() == link)
}

/// Whether `route` is a local workload route (a host prefix onto a
/// workload interface).
pub fn is_workload_route(route: &Route) -> bool {
    route.destination.prefix_len() == route.destination.max_prefix_len()
        && route.next_hops.len() == 1
        && route.next_hops[0]
            .device
            .as_deref()
            .is_some_and(|d| d.starts_with(WORKLOAD_INTERFACE_PREFIX))
}

fn workload_device(route: &Route) -> Option<&str> {
    is_workload_route(route)
        .then(|| route.next_hops[0].device.as_deref())
        .flatten()
}

/// Whether the listed route `actual` is what `desired` asks for. A desired
/// next hop without a device accepts any device (the kernel resolves it).
pub fn route_matches(desired: &Route, actual: &Route) -> bool {
    let want = desired.clone().normalized();
    let have = actual.clone().normalized();
    want.destination == have.destination
        && want.kind == have.kind
        && want.table == have.table
        && want.protocol == have.protocol
        && want.metric == have.metric
        && want.next_hops.len() == have.next_hops.len()
        && want.next_hops.iter().zip(&have.next_hops).all(|(w, h)| {
            w.gateway == h.gateway
                && w.onlink == h.onlink
                && (w.device.is_none() || w.device == h.device)
        })
}

/// The operations that turn `actual` into `desired`. `may_delete` is asked
/// before an unwanted route is removed (the daemon uses it to give
/// twill-cni's fresh pod routes a grace period before their endpoint shows
/// up).
pub fn plan(
    desired: &Desired,
    actual: &Actual,
    may_delete: impl Fn(&Route) -> bool,
) -> Vec<KernelOp> {
    let mut ops = Vec::new();
    let mut removals = Vec::new();

    // The devices; `gone` are those whose FDB and neighbour entries go
    // (or went) with them.
    let mut gone = BTreeSet::new();
    for family in Family::ALL {
        let want = desired.vxlan.get(&family);
        let have = actual.vxlan.get(&family);
        if !plan_device(family, want, have, &mut ops, &mut removals) {
            gone.insert(family.interface());
        }
    }

    // FDB.
    let have_fdb: BTreeSet<&FdbEntry> = actual
        .fdb
        .iter()
        .filter(|e| is_vxlan_device(&e.link) && !gone.contains(e.link.as_str()))
        .collect();
    for entry in &desired.fdb {
        if !have_fdb.contains(entry) {
            ops.push(KernelOp::AddFdb(entry.clone()));
        }
    }
    let fdb_removals: Vec<KernelOp> = have_fdb
        .iter()
        .filter(|e| !desired.fdb.contains(**e))
        .map(|e| KernelOp::DeleteFdb((*e).clone()))
        .collect();

    // Neighbours.
    let have_neigh: BTreeMap<(&str, IpAddr), &Neighbour> = actual
        .neighbours
        .iter()
        .filter(|n| owns_neighbour_link(&n.link) && !gone.contains(n.link.as_str()))
        .map(|n| ((n.link.as_str(), n.ip), n))
        .collect();
    for ((link, ip), want) in &desired.neighbours {
        if have_neigh.get(&(link.as_str(), *ip)) != Some(&want) {
            ops.push(KernelOp::AddNeighbour(want.clone()));
        }
    }
    for ((link, ip), have) in &have_neigh {
        if !desired.neighbours.contains_key(&((*link).to_string(), *ip)) {
            removals.push(KernelOp::DeleteNeighbour {
                link: have.link.clone(),
                ip: have.ip,
            });
        }
    }

    // Addresses on the host side of workload interfaces.
    let have_addresses: BTreeSet<&AddressEntry> = actual
        .workload_addresses
        .iter()
        .filter(|a| a.link.starts_with(WORKLOAD_INTERFACE_PREFIX) && !is_link_local(&a.addr))
        .collect();
    for entry in &desired.workload_addresses {
        if !have_addresses.contains(entry) {
            ops.push(KernelOp::AddAddress(entry.clone()));
        }
    }
    for entry in have_addresses {
        if !desired.workload_addresses.contains(entry) {
            removals.push(KernelOp::DeleteAddress(entry.clone()));
        }
    }

    // Routes.
    // Routes through a device that goes (or is replaced) go with it.
    let have_routes: BTreeMap<IpNet, &Route> = actual
        .routes
        .iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .filter(|r| {
            !r.next_hops
                .iter()
                .any(|h| h.device.as_deref().is_some_and(|d| gone.contains(d)))
        })
        .map(|r| (r.destination, r))
        .collect();
    let mut flows = Vec::new();
    for (destination, want) in &desired.routes {
        match have_routes.get(destination) {
            Some(have) if route_matches(want, have) => {}
            have => {
                ops.push(KernelOp::ReplaceRoute(want.clone()));
                let moved = have.and_then(|h| workload_device(h)) != workload_device(want);
                if moved && have.is_some_and(|h| workload_device(h).is_some()) {
                    flows.push(destination.addr());
                }
            }
        }
    }
    let mut route_removals = Vec::new();
    for (destination, have) in &have_routes {
        if desired.routes.contains_key(destination) || !may_delete(have) {
            continue;
        }
        route_removals.push(KernelOp::DeleteRoute(have.key()));
        if workload_device(have).is_some() {
            flows.push(destination.addr());
        }
    }
    // Routes go before the neighbours, FDB entries and device they use.
    removals.extend(fdb_removals);
    removals.splice(0..0, route_removals);
    // A device deletion goes last, after everything on it.
    removals.sort_by_key(|op| matches!(op, KernelOp::DeleteLink { .. }));
    ops.extend(removals);
    ops.extend(flows.into_iter().map(|ip| KernelOp::DeleteConntrack { ip }));
    ops
}

/// Plans one family's device: kept and corrected, created, replaced or
/// deleted. Returns whether the listed device stays, i.e. whether its
/// listed FDB and neighbour entries still exist after the plan.
fn plan_device(
    family: Family,
    want: Option<&VxlanDevice>,
    have: Option<&VxlanLink>,
    ops: &mut Vec<KernelOp>,
    removals: &mut Vec<KernelOp>,
) -> bool {
    let name = family.interface();
    // VNI, port and local address cannot be changed in place.
    let same_identity = |want: &VxlanDevice, have: &VxlanLink| {
        have.link.kind.as_deref() == Some("vxlan")
            && have.link.vxlan == Some(VxlanIdentity::of(&want.spec))
    };
    let kept = match (want, have) {
        (Some(want), Some(have)) if same_identity(want, have) => {
            if let Some(mtu) = want.spec.mtu.filter(|m| *m != have.link.mtu) {
                ops.push(KernelOp::SetLinkMtu {
                    name: name.into(),
                    mtu,
                });
            }
            if let Some(mac) = want.spec.mac.filter(|m| Some(*m) != have.link.mac) {
                ops.push(KernelOp::SetLinkMac {
                    name: name.into(),
                    mac,
                });
            }
            if !have.link.up {
                ops.push(KernelOp::SetLinkUp {
                    name: name.into(),
                    up: true,
                });
            }
            true
        }
        (Some(_), Some(_)) => {
            // Our name on a device of another kind or identity: replace it.
            ops.push(KernelOp::DeleteLink { name: name.into() });
            false
        }
        (None, Some(_)) => {
            removals.push(KernelOp::DeleteLink { name: name.into() });
            return false;
        }
        (_, None) => false,
    };
    let Some(want) = want else {
        return kept;
    };
    let address = IpNet::from(want.address);
    let listed: &[IpNet] = match have {
        Some(have) if kept => &have.addresses,
        _ => {
            ops.push(KernelOp::CreateVxlan(want.spec.clone()));
            ops.push(KernelOp::SetLinkUp {
                name: name.into(),
                up: true,
            });
            &[]
        }
    };
    // Kernel-made IPv6 link-local addresses are left alone.
    for stale in listed
        .iter()
        .filter(|a| **a != address && !is_link_local(a))
    {
        ops.push(KernelOp::DeleteAddress(AddressEntry {
            link: name.into(),
            addr: *stale,
        }));
    }
    if !listed.contains(&address) {
        ops.push(KernelOp::AddAddress(AddressEntry {
            link: name.into(),
            addr: address,
        }));
    }
    kept
}

fn is_link_local(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.addr().is_link_local(),
        IpNet::V6(n) => n.addr().segments()[0] & 0xffc0 == 0xfe80,
    }
}
