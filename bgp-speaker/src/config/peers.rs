//! The peerings of one node: the mesh, BGPPeers and their reverse peerings
//! (rules in the module docs of [`super`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use twill_api::Object;
use twill_api::bgp::{
    BGPConfigurationSpec, BGPPassword, BGPPeerSpec, NextHopMode, ReversePeering, SourceAddress,
    parse_peer_ip,
};
use twill_selector::Selector;

use super::filter::{Direction, append_rules};
use super::{
    ConfigError, DEFAULT_HOLD, DEFAULT_LISTEN_PORT, Filter, NextHop, NodeInfo, PeerConfig,
    PeerType, Secrets, Snapshot, listen_port, parse_duration,
};

/// What the peer computation needs to know about this node.
pub(super) struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub node_name: &'a str,
    pub local: &'a NodeInfo,
    pub asn: u32,
    pub default_asn: u32,
    pub cluster_id: Option<Ipv4Addr>,
    pub global: &'a BGPConfigurationSpec,
    pub secrets: &'a dyn Secrets,
    /// `localWorkloadPeeringIPV4`/`IPV6`: the local workload sessions' source.
    pub local_workload_peering: (Option<Ipv4Addr>, Option<Ipv6Addr>),
}

/// The remote end of a peering before the BGPPeer's settings are applied.
struct Remote {
    address: IpAddr,
    port: u16,
    asn: u32,
    /// The address is a Calico node's.
    calico_node: bool,
    /// The remote node's route-reflector cluster ID.
    rr_cluster_id: Option<String>,
    /// Chosen by a selector (not named by `peerIP`).
    from_selector: bool,
}

type Peerings = BTreeMap<(IpAddr, u16), PeerConfig>;

/// Every peering of this node, ordered by address and port.
pub(super) fn neighbors(ctx: &Context<'_>, warnings: &mut Vec<ConfigError>) -> Vec<PeerConfig> {
    let nodes: Vec<NodeInfo> = ctx
        .snapshot
        .nodes
        .values()
        .filter_map(NodeInfo::of)
        .collect();
    let mut out = Peerings::new();
    mesh(ctx, &nodes, &mut out, warnings);
    // Global BGPPeers first, so that node-specific duplicates lose to them.
    for global_pass in [true, false] {
        for (name, peer) in &ctx.snapshot.bgp_peers {
            let spec = &peer.spec;
            let is_global = empty(&spec.node) && empty(&spec.node_selector);
            if is_global != global_pass {
                continue;
            }
            if !global_pass && !applies_here(ctx, name, spec, warnings) {
                continue;
            }
            let peer_type = if !empty(&spec.local_workload_selector) {
                PeerType::LocalWorkload
            } else if global_pass {
                PeerType::Global
            } else {
                PeerType::Node
            };
            for remote in remotes(ctx, &nodes, name, spec, warnings) {
                // A node-selected remote of a family this node lacks is no
                // peering (Calico renders it only into the other BIRD).
                if remote.from_selector && ctx.local.address_like(remote.address).is_none() {
                    continue;
                }
                add(ctx, &mut out, peer_type, name, spec, remote, warnings);
            }
        }
    }
    for (name, peer) in &ctx.snapshot.bgp_peers {
        reverse(ctx, &nodes, name, peer, &mut out, warnings);
    }
    out.into_values().collect()
}

fn empty(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(str::is_empty)
}

fn selector(
    kind_name: &str,
    field: &'static str,
    text: &str,
    warnings: &mut Vec<ConfigError>,
) -> Option<Selector> {
    match Selector::parse(text) {
        Ok(selector) => Some(selector),
        Err(e) => {
            warnings.push(ConfigError::Invalid {
                kind: "BGPPeer",
                name: kind_name.to_string(),
                field,
                reason: e.to_string(),
            });
            None
        }
    }
}

/// Whether a node-specific BGPPeer (`node` or `nodeSelector`) selects this node.
fn applies_here(
    ctx: &Context<'_>,
    name: &str,
    spec: &BGPPeerSpec,
    warnings: &mut Vec<ConfigError>,
) -> bool {
    if let Some(text) = spec.node_selector.as_deref().filter(|s| !s.is_empty()) {
        return selector(name, "spec.nodeSelector", text, warnings)
            .is_some_and(|s| s.matches(&ctx.local.labels));
    }
    spec.node.as_deref() == Some(ctx.node_name)
}

/// The node-to-node mesh.
fn mesh(
    ctx: &Context<'_>,
    nodes: &[NodeInfo],
    out: &mut Peerings,
    warnings: &mut Vec<ConfigError>,
) {
    if ctx.global.node_to_node_mesh_enabled == Some(false) || ctx.cluster_id.is_some() {
        return;
    }
    let Ok(password) = password(
        ctx,
        "BGPConfiguration default (nodeMeshPassword)",
        ctx.global.node_mesh_password.as_ref(),
    )
    .map_err(|e| warnings.push(e)) else {
        return;
    };
    let max_restart_time = match ctx.global.node_mesh_max_restart_time.as_deref() {
        None => None,
        Some(text) => match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                warnings.push(ConfigError::Invalid {
                    kind: "BGPConfiguration",
                    name: "default".into(),
                    field: "spec.nodeMeshMaxRestartTime",
                    reason: format!("{text:?} is not a duration; using the default"),
                });
                None
            }
        },
    };
    for node in nodes {
        if node.name == ctx.local.name || node.cluster_id.is_some() {
            continue;
        }
        for address in node.addresses() {
            let Some(local) = ctx.local.address_like(address) else {
                continue;
            };
            if address == local {
                continue;
            }
            let port = listen_port(ctx.snapshot, &node.name);
            out.entry((address, port)).or_insert_with(|| PeerConfig {
                name: protocol_name(PeerType::Mesh, address, DEFAULT_LISTEN_PORT),
                peer_type: PeerType::Mesh,
                resource: None,
                address,
                port,
                asn: node.asn.unwrap_or(ctx.default_asn),
                local_asn: None,
                local_address: Some(local),
                passive: address.to_string() > local.to_string(),
                route_reflector_client: false,
                keepalive: DEFAULT_HOLD / 3,
                hold: DEFAULT_HOLD,
                password: password.clone(),
                max_restart_time,
                next_hop: NextHop::Auto,
                ttl_security: None,
                import: Filter::default(),
                export: Filter::default(),
            });
        }
    }
}

/// Calico's BIRD protocol name: `Mesh_10_0_0_2`, `Node_192_0_2_1_port_1179`.
pub(super) fn protocol_name(peer_type: PeerType, address: IpAddr, port: u16) -> String {
    let ip = address.to_string().replace(['.', ':'], "_");
    if port == DEFAULT_LISTEN_PORT {
        format!("{}_{ip}", peer_type.prefix())
    } else {
        format!("{}_{ip}_port_{port}", peer_type.prefix())
    }
}

/// A node as the remote end of peerings: one per address it has.
fn node_remotes(ctx: &Context<'_>, node: &NodeInfo) -> Vec<Remote> {
    node.addresses()
        .map(|address| Remote {
            address,
            port: listen_port(ctx.snapshot, &node.name),
            asn: node.asn.unwrap_or(ctx.default_asn),
            calico_node: true,
            rr_cluster_id: node.cluster_id.clone(),
            from_selector: true,
        })
        .collect()
}

/// The remote ends a BGPPeer names: `peerIP`, or the nodes `peerSelector` matches.
fn remotes(
    ctx: &Context<'_>,
    nodes: &[NodeInfo],
    name: &str,
    spec: &BGPPeerSpec,
    warnings: &mut Vec<ConfigError>,
) -> Vec<Remote> {
    let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
        kind: "BGPPeer",
        name: name.to_string(),
        field,
        reason,
    };
    if let Some(text) = spec
        .local_workload_selector
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let Some(selector) = selector(name, "spec.localWorkloadSelector", text, warnings) else {
            return Vec::new();
        };
        let Some(asn) = spec.as_number.map(|a| a.0) else {
            warnings.push(invalid(
                "spec.asNumber",
                "an AS number is required with localWorkloadSelector".into(),
            ));
            return Vec::new();
        };
        return local_workloads(ctx, &selector)
            .into_iter()
            .map(|address| Remote {
                address,
                port: DEFAULT_LISTEN_PORT,
                asn,
                calico_node: false,
                rr_cluster_id: None,
                from_selector: true,
            })
            .collect();
    }
    if let Some(text) = spec.peer_selector.as_deref().filter(|s| !s.is_empty()) {
        let Some(selector) = selector(name, "spec.peerSelector", text, warnings) else {
            return Vec::new();
        };
        return nodes
            .iter()
            .filter(|n| selector.matches(&n.labels))
            .flat_map(|n| node_remotes(ctx, n))
            .collect();
    }
    let Some(text) = spec.peer_ip.as_deref().filter(|s| !s.is_empty()) else {
        warnings.push(invalid(
            "spec.peerIP",
            "neither peerIP nor peerSelector is set".into(),
        ));
        return Vec::new();
    };
    let Some((address, port)) = parse_peer_ip(text) else {
        warnings.push(invalid(
            "spec.peerIP",
            format!("{text:?} is not IP, IPv4:port or [IPv6]:port"),
        ));
        return Vec::new();
    };
    let Some(asn) = spec.as_number.map(|a| a.0) else {
        warnings.push(invalid(
            "spec.asNumber",
            "an AS number is required with peerIP".into(),
        ));
        return Vec::new();
    };
    let node = nodes.iter().find(|n| n.has_address(address));
    // Without an explicit port, a Calico node is reached on its listen port.
    let port = port.unwrap_or_else(|| {
        node.filter(|n| n.asn.unwrap_or(ctx.default_asn) == asn)
            .map_or(DEFAULT_LISTEN_PORT, |n| listen_port(ctx.snapshot, &n.name))
    });
    vec![Remote {
        address,
        port,
        asn,
        calico_node: node.is_some(),
        rr_cluster_id: None,
        from_selector: false,
    }]
}

/// The addresses of this node's workloads `selector` matches: each one's
/// first IPv4 and first IPv6 address, as Calico peers with them.
fn local_workloads(ctx: &Context<'_>, selector: &Selector) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for wep in ctx.snapshot.workload_endpoints.values() {
        if wep.spec.node != ctx.node_name || !selector.matches(&wep.selector_labels()) {
            continue;
        }
        let ips: Vec<IpAddr> = wep
            .spec
            .ip_networks
            .iter()
            .filter_map(|net| net.split('/').next()?.parse().ok())
            .collect();
        addresses.extend(ips.iter().find(|a| a.is_ipv4()));
        addresses.extend(ips.iter().find(|a| a.is_ipv6()));
    }
    addresses
}

/// Adds the reverse peerings of `peer` when this node is its remote side.
fn reverse(
    ctx: &Context<'_>,
    nodes: &[NodeInfo],
    name: &str,
    peer: &Object<BGPPeerSpec>,
    out: &mut Peerings,
    warnings: &mut Vec<ConfigError>,
) {
    let spec = &peer.spec;
    if spec.reverse_peering == Some(ReversePeering::Manual) || !empty(&spec.local_workload_selector)
    {
        return;
    }
    // The families to peer back over: every one for a selector, the
    // family of `peerIP` otherwise.
    let (selected, only_family) =
        if let Some(text) = spec.peer_selector.as_deref().filter(|s| !s.is_empty()) {
            // Warnings for a bad selector were given in the forward pass.
            let selected = Selector::parse(text).is_ok_and(|s| s.matches(&ctx.local.labels));
            (selected, None)
        } else {
            match spec.peer_ip.as_deref().and_then(parse_peer_ip) {
                Some((address, port)) => {
                    let asn = spec.as_number.map_or(ctx.default_asn, |a| a.0);
                    let selected = ctx.local.has_address(address)
                        && asn == ctx.asn
                        && port.is_none_or(|p| p == listen_port(ctx.snapshot, ctx.node_name));
                    (selected, Some(address.is_ipv4()))
                }
                None => (false, None),
            }
        };
    if !selected {
        return;
    }
    let peers: Vec<&NodeInfo> =
        if let Some(text) = spec.node_selector.as_deref().filter(|s| !s.is_empty()) {
            match Selector::parse(text) {
                Ok(s) => nodes.iter().filter(|n| s.matches(&n.labels)).collect(),
                Err(_) => Vec::new(),
            }
        } else if let Some(node) = spec.node.as_deref().filter(|s| !s.is_empty()) {
            nodes.iter().filter(|n| n.name == node).collect()
        } else {
            nodes.iter().collect()
        };
    for node in peers {
        for remote in node_remotes(ctx, node) {
            if only_family.is_some_and(|v4| v4 != remote.address.is_ipv4())
                || ctx.local.address_like(remote.address).is_none()
            {
                continue;
            }
            add(ctx, out, PeerType::Node, name, spec, remote, warnings);
        }
    }
}

/// Applies a BGPPeer's settings to `remote` and adds the peering unless one
/// to the same address and port exists (or it is this node).
fn add(
    ctx: &Context<'_>,
    out: &mut Peerings,
    peer_type: PeerType,
    name: &str,
    spec: &BGPPeerSpec,
    remote: Remote,
    warnings: &mut Vec<ConfigError>,
) {
    if ctx.local.has_address(remote.address) || out.contains_key(&(remote.address, remote.port)) {
        return;
    }
    if ctx.local.address_like(remote.address).is_none() {
        let family = if remote.address.is_ipv4() {
            "spec.bgp.ipv4Address"
        } else {
            "spec.bgp.ipv6Address"
        };
        warnings.push(ConfigError::Invalid {
            kind: "BGPPeer",
            name: name.to_string(),
            field: "spec.peerIP",
            reason: format!(
                "peer {} needs this node's {family}, which node {} does not have; skipped",
                remote.address, ctx.node_name
            ),
        });
        return;
    }
    match build(ctx, peer_type, name, spec, remote) {
        Ok(peer) => {
            out.insert((peer.address, peer.port), peer);
        }
        Err(e) => warnings.push(e),
    }
}

fn build(
    ctx: &Context<'_>,
    peer_type: PeerType,
    name: &str,
    spec: &BGPPeerSpec,
    remote: Remote,
) -> Result<PeerConfig, ConfigError> {
    let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
        kind: "BGPPeer",
        name: name.to_string(),
        field,
        reason,
    };
    let duration = |field: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| {
                parse_duration(text)
                    .filter(|d| !d.is_zero() || field == "spec.maxRestartTime")
                    .ok_or_else(|| invalid(field, format!("{text:?} is not a positive duration")))
            })
            .transpose()
    };
    let keepalive = duration("spec.keepaliveTime", &spec.keepalive_time)?;
    let max_restart_time = duration("spec.maxRestartTime", &spec.max_restart_time)?;
    let (keepalive, hold) = match keepalive {
        Some(k) => (k, k * 3),
        None => (DEFAULT_HOLD / 3, DEFAULT_HOLD),
    };
    let password = password(ctx, &format!("BGPPeer {name}"), spec.password.as_ref())?;
    let mut import = Filter::default();
    let mut export = Filter::default();
    for filter_name in &spec.filters {
        let filter = ctx.snapshot.bgp_filters.get(filter_name).ok_or_else(|| {
            ConfigError::MissingFilter {
                peer: name.to_string(),
                filter: filter_name.clone(),
            }
        })?;
        append_rules(filter_name, &filter.spec, Direction::Import, &mut import)?;
        append_rules(filter_name, &filter.spec, Direction::Export, &mut export)?;
    }
    let local_asn = spec.local_as_number.map(|a| a.0);
    let effective_asn = local_asn.unwrap_or(ctx.asn);
    let next_hop = match spec.next_hop_mode {
        Some(NextHopMode::SelfAddress) => NextHop::SelfAddress,
        Some(NextHopMode::Keep) => NextHop::Keep,
        Some(NextHopMode::Auto) => NextHop::Auto,
        // The deprecated field only ever applied to eBGP peers.
        None if spec.keep_original_next_hop && remote.asn != effective_asn => NextHop::Keep,
        None => NextHop::Auto,
    };
    let local_cluster = ctx.local.cluster_id.as_deref();
    let route_reflector_client = remote.asn == effective_asn
        && ctx.cluster_id.is_some()
        && remote.rr_cluster_id.as_deref() != local_cluster;
    let local = ctx
        .local
        .address_like(remote.address)
        .expect("add() skips remotes of a family this node has no address of");
    let peering_ip = match remote.address {
        IpAddr::V4(_) => ctx.local_workload_peering.0.map(IpAddr::V4),
        IpAddr::V6(_) => ctx.local_workload_peering.1.map(IpAddr::V6),
    };
    let local_address = match (peer_type, peering_ip, spec.source_address) {
        (PeerType::LocalWorkload, Some(peering_ip), _) => Some(peering_ip),
        (_, _, Some(SourceAddress::None)) => None,
        (_, _, Some(SourceAddress::UseNodeIp) | None) => Some(local),
    };
    let passive = peer_type == PeerType::Global
        && remote.calico_node
        && remote.address.to_string() > local.to_string();
    Ok(PeerConfig {
        name: protocol_name(peer_type, remote.address, remote.port),
        peer_type,
        resource: Some(name.to_string()),
        address: remote.address,
        port: remote.port,
        asn: remote.asn,
        local_asn,
        local_address,
        passive,
        route_reflector_client,
        keepalive,
        hold,
        password,
        max_restart_time,
        next_hop,
        ttl_security: spec.ttl_security,
        import,
        export,
    })
}

/// Reads a password reference; `Ok(None)` without one (or when an optional
/// secret is missing).
fn password(
    ctx: &Context<'_>,
    owner: &str,
    reference: Option<&BGPPassword>,
) -> Result<Option<String>, ConfigError> {
    let Some(selector) = reference.and_then(|p| p.secret_key_ref.as_ref()) else {
        return Ok(None);
    };
    match ctx.secrets.get(&selector.name, &selector.key) {
        Some(value) => Ok(Some(value)),
        None if selector.optional == Some(true) => Ok(None),
        None => Err(ConfigError::MissingSecret {
            peer: owner.to_string(),
            secret: selector.name.clone(),
            key: selector.key.clone(),
        }),
    }
}
