//! Routes: unicast (device, gateway, ECMP), blackhole and other types, in
//! any table, tagged with a route protocol number so Twill can recognise its
//! own routes without remembering them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol as NlProtocol, RouteScope as NlScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{KernelError, KernelObject};
use crate::nl::{CHANGE, CREATE_EXCL, CREATE_REPLACE, DUMP, Nl};

/// A route protocol number (`proto` in `ip route`). It records who owns a
/// route; the kernel does not interpret values above 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteProto(pub u8);

impl RouteProto {
    /// Routes added by the kernel (connected prefixes).
    pub const KERNEL: Self = Self(2);
    /// Routes added at boot / by hand without a protocol (`ip route` default).
    pub const BOOT: Self = Self(3);
    /// Static routes from administrators.
    pub const STATIC: Self = Self(4);
    /// Twill's local routes: pod `/32` and `/128` routes onto host veths,
    /// written by twill-cni and kept by felix-rs.
    pub const TWILL_LOCAL: Self = Self(201);
    /// Routes learned by Twill's BGP speaker from peers.
    pub const TWILL_BGP: Self = Self(202);
    /// Twill's blackhole / aggregate routes for the node's own IPAM blocks.
    pub const TWILL_AGGREGATE: Self = Self(203);

    /// True for the three numbers Twill owns.
    pub fn is_twill(self) -> bool {
        matches!(
            self,
            Self::TWILL_LOCAL | Self::TWILL_BGP | Self::TWILL_AGGREGATE
        )
    }
}

/// Lines for `/etc/iproute2/rt_protos.d/twill.conf`, so `ip route` prints
/// Twill's protocol numbers by name.
pub const RT_PROTOS_CONF: &str = "201\ttwill-local\n202\ttwill-bgp\n203\ttwill-aggregate\n";

impl fmt::Display for RouteProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// The local routing table (addresses of this host).
pub const TABLE_LOCAL: u32 = 255;

/// Route type (`ip route add TYPE ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// Forward via next hops.
    Unicast,
    /// Drop silently (Twill's IPAM block aggregates).
    Blackhole,
    /// Drop with ICMP unreachable.
    Unreachable,
    /// Drop with ICMP administratively prohibited.
    Prohibit,
    /// Stop the lookup in this table.
    Throw,
    /// A local address (table local).
    Local,
    /// Any other kernel route type.
    Other(u8),
}

impl RouteKind {
    fn to_nl(self) -> RouteType {
        match self {
            Self::Unicast => RouteType::Unicast,
            Self::Blackhole => RouteType::BlackHole,
            Self::Unreachable => RouteType::Unreachable,
            Self::Prohibit => RouteType::Prohibit,
            Self::Throw => RouteType::Throw,
            Self::Local => RouteType::Local,
            Self::Other(v) => RouteType::from(v),
        }
    }

    fn from_nl(kind: RouteType) -> Self {
        match kind {
            RouteType::Unicast => Self::Unicast,
            RouteType::BlackHole => Self::Blackhole,
            RouteType::Unreachable => Self::Unreachable,
            RouteType::Prohibit => Self::Prohibit,
            RouteType::Throw => Self::Throw,
            RouteType::Local => Self::Local,
            other => Self::Other(u8::from(other)),
        }
    }

    /// True for types that carry no next hop.
    pub fn is_reject(self) -> bool {
        matches!(
            self,
            Self::Blackhole | Self::Unreachable | Self::Prohibit | Self::Throw
        )
    }
}

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteScope {
    /// Reachable via a gateway (`global`).
    Universe,
    /// Directly on a link.
    Link,
    /// On this host.
    Host,
    /// Any other scope value.
    Other(u8),
}

impl RouteScope {
    fn to_nl(self) -> NlScope {
        match self {
            Self::Universe => NlScope::Universe,
            Self::Link => NlScope::Link,
            Self::Host => NlScope::Host,
            Self::Other(v) => NlScope::from(v),
        }
    }

    fn from_nl(scope: NlScope) -> Self {
        match scope {
            NlScope::Universe => Self::Universe,
            NlScope::Link => Self::Link,
            NlScope::Host => Self::Host,
            other => Self::Other(u8::from(other)),
        }
    }
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop {
    /// Gateway address; `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub device: Option<String>,
    /// Treat the gateway as on-link even without a covering prefix.
    pub onlink: bool,
    /// ECMP weight as `ip route` prints it (1 to 256; the kernel stores it
    /// minus one). Ignored for single-path routes.
    pub weight: u16,
}

impl NextHop {
    /// Next hop through `gateway` (device resolved by the kernel).
    pub fn via(gateway: IpAddr) -> Self {
        Self {
            gateway: Some(gateway),
            device: None,
            onlink: false,
            weight: 1,
        }
    }

    /// Next hop directly out of `device`.
    pub fn dev(device: impl Into<String>) -> Self {
        Self {
            gateway: None,
            device: Some(device.into()),
            onlink: false,
            weight: 1,
        }
    }

    /// Adds the output device.
    pub fn with_dev(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Marks the gateway on-link.
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    /// Sets the ECMP weight (1 to 256, as `ip route`).
    pub fn weight(mut self, weight: u16) -> Self {
        self.weight = weight;
        self
    }
}

/// A route as Twill writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination prefix (host bits must be zero).
    pub destination: IpNet,
    /// Route type.
    pub kind: RouteKind,
    /// Routing table id.
    pub table: u32,
    /// Owner protocol.
    pub protocol: RouteProto,
    /// Scope.
    pub scope: RouteScope,
    /// Metric (`priority`); `None` is 0 for IPv4 and 1024 for IPv6.
    pub metric: Option<u32>,
    /// Preferred source address.
    pub source: Option<IpAddr>,
    /// Next hops: one for a plain route, several for ECMP, none for rejects.
    pub next_hops: Vec<NextHop>,
}

/// What identifies a route for deletion: destination, table, metric, and
/// optionally the owner protocol (the kernel then deletes only a route with
/// that protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    /// Destination prefix.
    pub destination: IpNet,
    /// Routing table id.
    pub table: u32,
    /// Metric; `None` is the family default.
    pub metric: Option<u32>,
    /// Only delete a route with this protocol.
    pub protocol: Option<RouteProto>,
}

/// Selects routes in a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// Only this table (`None`: every table).
    pub table: Option<u32>,
    /// Only this protocol.
    pub protocol: Option<RouteProto>,
    /// Only IPv4 (`Some(false)`) or IPv6 (`Some(true)`).
    pub ipv6: Option<bool>,
}

impl RouteFilter {
    /// Routes of `protocol` in any table.
    pub fn protocol(protocol: RouteProto) -> Self {
        Self {
            protocol: Some(protocol),
            ..Self::default()
        }
    }

    /// True when `route` passes the filter.
    pub fn matches(&self, route: &Route) -> bool {
        self.table.is_none_or(|t| t == route.table)
            && self.protocol.is_none_or(|p| p == route.protocol)
            && self
                .ipv6
                .is_none_or(|v6| v6 == route.destination.addr().is_ipv6())
    }
}

impl Route {
    fn base(
        destination: IpNet,
        kind: RouteKind,
        scope: RouteScope,
        next_hops: Vec<NextHop>,
    ) -> Self {
        Self {
            destination: destination.trunc(),
            kind,
            table: TABLE_MAIN,
            protocol: RouteProto::BOOT,
            scope,
            metric: None,
            source: None,
            next_hops,
        }
    }

    /// `DEST dev DEVICE scope link` (a pod route onto its host veth).
    pub fn to_device(destination: IpNet, device: impl Into<String>) -> Self {
        Self::base(
            destination,
            RouteKind::Unicast,
            RouteScope::Link,
            vec![NextHop::dev(device)],
        )
    }

    /// `DEST via GATEWAY`.
    pub fn via(destination: IpNet, gateway: IpAddr) -> Self {
        Self::base(
            destination,
            RouteKind::Unicast,
            RouteScope::Universe,
            vec![NextHop::via(gateway)],
        )
    }

    /// `DEST nexthop ... nexthop ...` (ECMP).
    pub fn multipath(destination: IpNet, next_hops: Vec<NextHop>) -> Self {
        Self::base(
            destination,
            RouteKind::Unicast,
            RouteScope::Universe,
            next_hops,
        )
    }

    /// `blackhole DEST`.
    pub fn blackhole(destination: IpNet) -> Self {
        Self::base(
            destination,
            RouteKind::Blackhole,
            RouteScope::Universe,
            Vec::new(),
        )
    }

    /// Sets the owner protocol.
    pub fn protocol(mut self, protocol: RouteProto) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the table.
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Sets the metric.
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: RouteScope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the preferred source address.
    pub fn source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Marks every next hop on-link.
    pub fn onlink(mut self) -> Self {
        for hop in &mut self.next_hops {
            hop.onlink = true;
        }
        self
    }

    /// The key that deletes exactly this route.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            destination: self.destination,
            table: self.table,
            metric: self.metric,
            protocol: Some(self.protocol),
        }
    }

    /// The route as the kernel reports it back: metric spelled out as the
    /// kernel prints it (none for IPv4 0, 1024 for IPv6 by default), scope
    /// `Universe` for IPv6 (the kernel keeps no scope on IPv6 routes),
    /// weight 1 on single-path routes.
    pub fn normalized(mut self) -> Self {
        self.destination = self.destination.trunc();
        self.metric = normalize_metric(&self.destination, self.metric);
        if self.destination.addr().is_ipv6() {
            self.scope = RouteScope::Universe;
        }
        if self.next_hops.len() == 1 {
            self.next_hops[0].weight = 1;
        }
        self
    }

    pub(crate) fn object(&self) -> KernelObject {
        KernelObject::Route {
            destination: self.destination,
            table: self.table,
        }
    }
}

/// IPv4 metric 0 is "no metric"; IPv6 routes always have one (default 1024).
pub(crate) fn normalize_metric(destination: &IpNet, metric: Option<u32>) -> Option<u32> {
    match (destination, metric) {
        (IpNet::V4(_), Some(0)) => None,
        (IpNet::V6(_), None) => Some(1024),
        (_, m) => m,
    }
}

impl RouteKey {
    pub(crate) fn object(&self) -> KernelObject {
        KernelObject::Route {
            destination: self.destination,
            table: self.table,
        }
    }
}

fn family(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

fn header(msg: &mut RouteMessage, destination: IpNet, table: u32) {
    msg.header.address_family = family(&destination);
    msg.header.destination_prefix_length = destination.prefix_len();
    if destination.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(destination.addr().into()));
    }
    if table > 255 {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        msg.attributes.push(RouteAttribute::Table(table));
    } else {
        msg.header.table = u8::try_from(table).expect("checked: table <= 255");
    }
}

fn gateway_attr(destination: &IpNet, gateway: IpAddr) -> RouteAttribute {
    match (destination, gateway) {
        (IpNet::V4(_), IpAddr::V6(v6)) => RouteAttribute::Via(RouteVia::Inet6(v6)),
        (_, gw) => RouteAttribute::Gateway(gw.into()),
    }
}

/// Interface indices of the devices a route names.
async fn resolve_devices(nl: &Nl, route: &Route) -> Result<BTreeMap<String, u32>, KernelError> {
    let mut out = BTreeMap::new();
    for device in route.next_hops.iter().filter_map(|h| h.device.as_ref()) {
        if !out.contains_key(device) {
            out.insert(device.clone(), nl.link_index(device).await?);
        }
    }
    Ok(out)
}

/// Builds the RTM_NEWROUTE message for `route`; `devices` maps every
/// device it names to its index.
pub(crate) fn encode(
    route: &Route,
    devices: &BTreeMap<String, u32>,
) -> Result<RouteMessage, KernelError> {
    let index = |device: &String| {
        devices
            .get(device)
            .copied()
            .ok_or_else(|| KernelError::NotFound {
                object: KernelObject::Interface(device.clone()),
            })
    };
    let invalid = |reason: &str| KernelError::Invalid {
        object: route.object(),
        reason: reason.into(),
    };
    if route.kind.is_reject() && !route.next_hops.is_empty() {
        return Err(invalid(
            "reject routes (blackhole, unreachable, prohibit, throw) take no next hop",
        ));
    }
    if route.kind == RouteKind::Unicast && route.next_hops.is_empty() {
        return Err(invalid("a unicast route needs a next hop"));
    }
    let mut msg = RouteMessage::default();
    header(&mut msg, route.destination, route.table);
    msg.header.protocol = NlProtocol::from(route.protocol.0);
    msg.header.scope = route.scope.to_nl();
    msg.header.kind = route.kind.to_nl();
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    if let Some(source) = route.source {
        msg.attributes
            .push(RouteAttribute::PrefSource(source.into()));
    }
    match route.next_hops.as_slice() {
        [] => {}
        [hop] => {
            if let Some(gateway) = hop.gateway {
                msg.attributes
                    .push(gateway_attr(&route.destination, gateway));
            }
            if let Some(device) = &hop.device {
                msg.attributes.push(RouteAttribute::Oif(index(device)?));
            }
            if hop.onlink {
                msg.header.flags |= RouteFlags::Onlink;
            }
        }
        hops => {
            let mut encoded = Vec::with_capacity(hops.len());
            for hop in hops {
                if !(1..=256).contains(&hop.weight) {
                    return Err(invalid("next hop weights are 1 to 256"));
                }
                let mut nh = RouteNextHop::default();
                // The kernel stores weight - 1 (rtnh_hops); ip prints +1.
                nh.hops = u8::try_from(hop.weight - 1).expect("checked: weight in 1..=256");
                if let Some(device) = &hop.device {
                    nh.interface_index = index(device)?;
                }
                if let Some(gateway) = hop.gateway {
                    nh.attributes
                        .push(gateway_attr(&route.destination, gateway));
                }
                if hop.onlink {
                    nh.flags |= RouteNextHopFlags::Onlink;
                }
                encoded.push(nh);
            }
            msg.attributes.push(RouteAttribute::MultiPath(encoded));
        }
    }
    Ok(msg)
}

pub(crate) async fn add(nl: &Nl, route: &Route, replace: bool) -> Result<(), KernelError> {
    let msg = encode(route, &resolve_devices(nl, route).await?)?;
    let flags = if replace { CREATE_REPLACE } else { CREATE_EXCL };
    nl.request(RouteNetlinkMessage::NewRoute(msg), flags)
        .await
        .map(drop)
        .map_err(|errno| {
            KernelError::from_errno_create(
                route.object(),
                if replace { "replace" } else { "add" },
                errno,
            )
        })
}

/// Builds the RTM_DELROUTE message for `key`.
pub(crate) fn delete_message(key: &RouteKey) -> RouteMessage {
    let mut msg = RouteMessage::default();
    header(&mut msg, key.destination.trunc(), key.table);
    // As `ip route del`: scope NOWHERE and type UNSPEC match any route.
    msg.header.scope = NlScope::NoWhere;
    msg.header.kind = RouteType::Unspec;
    msg.header.protocol = key
        .protocol
        .map_or(NlProtocol::Unspec, |p| NlProtocol::from(p.0));
    if let Some(metric) = key.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

pub(crate) async fn delete(nl: &Nl, key: &RouteKey) -> Result<(), KernelError> {
    nl.request(RouteNetlinkMessage::DelRoute(delete_message(key)), CHANGE)
        .await
        .map(drop)
        .map_err(|errno| KernelError::from_errno_existing(key.object(), "delete", errno))
}

fn address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn decode(msg: RouteMessage, names: &BTreeMap<u32, String>) -> Option<Route> {
    let is_v6 = match msg.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    if msg.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let name = |index: u32| {
        names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    };
    let mut table = u32::from(msg.header.table);
    let mut dest: Option<IpAddr> = None;
    let mut single = NextHop {
        gateway: None,
        device: None,
        onlink: false,
        weight: 1,
    };
    let mut multipath: Vec<NextHop> = Vec::new();
    let mut metric = None;
    let mut source = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dest = address(a),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::PrefSource(a) => source = address(a),
            RouteAttribute::Gateway(a) => single.gateway = address(a),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => single.gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(index) => single.device = Some(name(*index)),
            RouteAttribute::MultiPath(hops) => {
                for nh in hops {
                    let mut hop = NextHop {
                        gateway: None,
                        device: (nh.interface_index != 0).then(|| name(nh.interface_index)),
                        onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
                        weight: u16::from(nh.hops) + 1,
                    };
                    for a in &nh.attributes {
                        match a {
                            RouteAttribute::Gateway(g) => hop.gateway = address(g),
                            RouteAttribute::Via(RouteVia::Inet6(v6)) => {
                                hop.gateway = Some(IpAddr::V6(*v6))
                            }
                            _ => {}
                        }
                    }
                    multipath.push(hop);
                }
            }
            _ => {}
        }
    }
    let dest = dest.unwrap_or(if is_v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    });
    let destination = IpNet::new(dest, msg.header.destination_prefix_length).ok()?;
    single.onlink = msg.header.flags.contains(RouteFlags::Onlink);
    let kind = RouteKind::from_nl(msg.header.kind);
    // IPv6 reject routes come back bound to `lo`; they have no next hop.
    let next_hops = if kind.is_reject() {
        Vec::new()
    } else if !multipath.is_empty() {
        multipath
    } else if single.gateway.is_some() || single.device.is_some() {
        vec![single]
    } else {
        Vec::new()
    };
    let route = Route {
        destination,
        kind,
        table,
        protocol: RouteProto(u8::from(msg.header.protocol)),
        scope: RouteScope::from_nl(msg.header.scope),
        metric,
        source,
        next_hops,
    };
    Some(route.normalized())
}

pub(crate) async fn list(nl: &Nl, filter: &RouteFilter) -> Result<Vec<Route>, KernelError> {
    let names = nl.link_names().await?;
    let mut out = Vec::new();
    let families: &[bool] = match filter.ipv6 {
        Some(true) => &[true],
        Some(false) => &[false],
        None => &[false, true],
    };
    for &v6 in families {
        let mut req = RouteMessage::default();
        req.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let answers = nl
            .request(RouteNetlinkMessage::GetRoute(req), DUMP)
            .await
            .map_err(|errno| KernelError::Netlink {
                object: KernelObject::Route {
                    destination: if v6 {
                        "::/0".parse().expect("valid")
                    } else {
                        "0.0.0.0/0".parse().expect("valid")
                    },
                    table: filter.table.unwrap_or(0),
                },
                operation: "dump",
                errno,
            })?;
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(msg) = answer else {
                continue;
            };
            if let Some(route) = decode(msg, &names)
                && filter.matches(&route)
            {
                out.push(route);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
