//! ADD: address, wire, record, wait — undoing everything on any failure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value;
use twill_api::Object;
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_ipam::AllocateRequest;
use twill_kernel::{
    Kernel, KernelExt, MacAddr, NetnsPath, NextHop, Route, RouteKey, RouteProto, SysctlKey,
    VethSpec,
};

use crate::config::{Env, NetConf};
use crate::deps::Deps;
use crate::endpoint;
use crate::error::CniError;
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};
use crate::workload::{Metadata, Workload};

/// MAC of every host-side veth (as Calico): the pod only ever talks to it
/// through proxy ARP / NDP, so one well-known address serves all.
pub const HOST_MAC: MacAddr = MacAddr([0xee; 6]);

/// The pod's IPv4 next hop: a link-local address nobody owns, answered by
/// proxy ARP on the host veth.
pub const IPV4_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The pod's IPv6 next hop: the host veth's EUI-64 link-local address,
/// derived from [`HOST_MAC`].
pub const IPV6_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// `(key, value)` pairs of the host veth's sysctls.
pub(crate) fn host_sysctls(
    host_if: &str,
    ipv4: bool,
    ipv6: bool,
) -> Vec<(SysctlKey, &'static str)> {
    let key = |family: &str, section: &str, leaf: &str| {
        SysctlKey::interface(family, section, host_if, leaf).expect("host names are valid")
    };
    let mut keys = Vec::new();
    if ipv4 {
        keys.push((key("ipv4", "conf", "forwarding"), "1"));
        keys.push((key("ipv4", "conf", "proxy_arp"), "1"));
        keys.push((key("ipv4", "neigh", "proxy_delay"), "0"));
    }
    if ipv6 {
        keys.push((key("ipv6", "conf", "disable_ipv6"), "0"));
        keys.push((key("ipv6", "conf", "accept_ra"), "0"));
        keys.push((key("ipv6", "conf", "forwarding"), "1"));
        keys.push((key("ipv6", "conf", "proxy_ndp"), "1"));
    }
    keys
}

/// `(key, value)` pairs of the pod interface's sysctls: no duplicate
/// address detection (ADD must not wait for DAD), no router advertisements.
pub(crate) fn pod_sysctls(
    ifname: &str,
    ipv6: bool,
) -> Result<Vec<(SysctlKey, &'static str)>, CniError> {
    if !ipv6 {
        return Ok(Vec::new());
    }
    let key = |leaf: &str| {
        SysctlKey::interface("ipv6", "conf", ifname, leaf)
            .map_err(|e| CniError::kernel(format!("sysctl of {ifname}"), e))
    };
    Ok(vec![
        (key("disable_ipv6")?, "0"),
        (key("accept_dad")?, "0"),
        (key("accept_ra")?, "0"),
    ])
}

/// The pod's routes: to the gateway on the link, then the default via it.
pub(crate) fn pod_routes(ifname: &str, ipv4: bool, ipv6: bool) -> Vec<Route> {
    let mut routes = Vec::new();
    if ipv4 {
        let gw = IpAddr::V4(IPV4_GATEWAY);
        routes.push(Route::to_device(IpNet::from(gw), ifname));
        let mut default = Route::via("0.0.0.0/0".parse().expect("literal"), gw);
        default.next_hops = vec![NextHop::via(gw).with_dev(ifname)];
        routes.push(default);
    }
    if ipv6 {
        let gw = IpAddr::V6(IPV6_GATEWAY);
        let mut default = Route::via("::/0".parse().expect("literal"), gw);
        default.next_hops = vec![NextHop::via(gw).with_dev(ifname)];
        routes.push(default);
    }
    routes
}

/// The host's route to one pod address.
pub(crate) fn host_route(ip: IpAddr, host_if: &str) -> Route {
    Route::to_device(IpNet::from(ip), host_if).protocol(RouteProto::TWILL_LOCAL)
}

/// One thing ADD did, with what undoes it.
#[derive(Debug, Clone, PartialEq)]
enum Undo {
    ReleaseHandle(String),
    DeleteLink(String),
    DeleteHostRoute(RouteKey),
    RestoreEndpoint {
        namespace: String,
        name: String,
        previous: Option<Value>,
    },
}

struct Rollback<'a> {
    deps: &'a mut Deps,
    done: Vec<Undo>,
}

impl Rollback<'_> {
    /// Undoes everything in reverse order, continuing past failures (each
    /// is logged; the first error of ADD is what the runtime sees).
    fn undo(&mut self) {
        while let Some(step) = self.done.pop() {
            let outcome = match &step {
                Undo::ReleaseHandle(handle) => self.deps.ipam.release_handle(handle).map(drop),
                Undo::DeleteLink(name) => match self.deps.host.delete_link(name).wait() {
                    Err(e) if !e.is_not_found() => {
                        Err(CniError::kernel(format!("delete {name}"), e))
                    }
                    _ => Ok(()),
                },
                Undo::DeleteHostRoute(key) => match self.deps.host.delete_route(key.clone()).wait()
                {
                    Err(e) if !e.is_not_found() => Err(CniError::kernel(
                        format!("delete route {}", key.destination),
                        e,
                    )),
                    _ => Ok(()),
                },
                Undo::RestoreEndpoint {
                    namespace,
                    name,
                    previous,
                } => endpoint::restore(&*self.deps.store, namespace, name, previous.as_ref()),
            };
            if let Err(e) = outcome {
                tracing::error!(step = ?step, error = %e, "rollback step failed");
            }
        }
    }
}

fn kernel<T>(
    step: impl FnOnce() -> String,
    r: Result<T, twill_kernel::KernelError>,
) -> Result<T, CniError> {
    r.map_err(|e| CniError::kernel(step(), e))
}

/// Runs ADD and returns the result document (not yet merged with
/// `prevResult`).
///
/// # Errors
///
/// Any [`CniError`]; nothing ADD made is left behind.
pub fn add(conf: &NetConf, env: &Env, deps: &mut Deps) -> Result<CniResult, CniError> {
    let workload = Workload::new(env, &deps.node);
    let netns_path = env.netns.clone().ok_or(CniError::InvalidEnvironment {
        variable: "CNI_NETNS",
        reason: "missing".into(),
    })?;
    let netns = NetnsPath::from_path(netns_path.clone());
    let pod = deps.host.enter(&netns).map_err(|e| {
        if e.is_not_found() {
            CniError::UnknownContainer {
                container_id: env.container_id.clone(),
                reason: format!("network namespace {} does not exist", netns_path.display()),
            }
        } else {
            CniError::kernel(format!("enter {}", netns_path.display()), e)
        }
    })?;
    match pod.get_link(&workload.ifname).wait() {
        Ok(_) => {
            return Err(CniError::InterfaceExists {
                ifname: workload.ifname.clone(),
                netns: netns_path.display().to_string(),
            });
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(CniError::kernel(format!("look up {}", workload.ifname), e)),
    }
    let name = workload.endpoint_name();
    let declared = endpoint::get(&*deps.store, &workload.namespace, &name)?;
    let metadata = Metadata::resolve(
        conf,
        env,
        declared
            .as_ref()
            .map(|d| (&d.endpoint.metadata.labels, &d.endpoint.spec)),
    );

    let mut rollback = Rollback {
        deps,
        done: Vec::new(),
    };
    match wire(
        conf,
        &workload,
        &netns,
        &pod,
        declared.as_ref(),
        &metadata,
        &mut rollback,
    ) {
        Ok(result) => Ok(result),
        Err(e) => {
            tracing::warn!(error = %e, undo = rollback.done.len(), "ADD failed; rolling back");
            rollback.undo();
            Err(e)
        }
    }
}

fn wire(
    conf: &NetConf,
    workload: &Workload,
    netns: &NetnsPath,
    pod: &Arc<dyn Kernel>,
    declared: Option<&endpoint::StoredEndpoint>,
    metadata: &Metadata,
    rb: &mut Rollback<'_>,
) -> Result<CniResult, CniError> {
    let host_if = workload.host_ifname();
    let ifname = &workload.ifname;
    let mtu = conf
        .mtu
        .or_else(|| published_mtu(&conf.mtu_file))
        .unwrap_or_else(|| detect_mtu(&*rb.deps.host));

    // A host veth of this pod without the pod side is debris of an earlier
    // sandbox (its namespace is gone); the name is needed now.
    match rb.deps.host.delete_link(&host_if).wait() {
        Err(e) if !e.is_not_found() => {
            return Err(CniError::kernel(format!("delete stale {host_if}"), e));
        }
        _ => {}
    }

    let handle = workload.handle();
    let mut request = AllocateRequest::ipv4(handle.clone(), workload.node.clone());
    request.ipv4 = u32::from(conf.ipam.assign_ipv4);
    request.ipv6 = u32::from(conf.ipam.assign_ipv6);
    request.ipv4_pools.clone_from(&conf.ipam.ipv4_pools);
    request.ipv6_pools.clone_from(&conf.ipam.ipv6_pools);
    request
        .attributes
        .insert("namespace".into(), workload.namespace.clone());
    request
        .attributes
        .insert("pod".into(), workload.pod.clone());
    // Registered before the call: a reply lost after the service committed
    // must still be released.
    rb.done.push(Undo::ReleaseHandle(handle.clone()));
    let ips: Vec<IpAddr> = rb
        .deps
        .ipam
        .allocate(request)?
        .into_iter()
        .map(|a| a.ip)
        .collect();
    let ipv4 = ips.iter().any(IpAddr::is_ipv4);
    let ipv6 = ips.iter().any(IpAddr::is_ipv6);

    let mut veth = VethSpec::new(host_if.clone(), ifname.clone())
        .peer_in(netns.clone())
        .mtu(mtu);
    veth.mac = Some(HOST_MAC);
    kernel(
        || format!("create veth {host_if}/{ifname}"),
        rb.deps.host.create_veth(veth).wait(),
    )?;
    rb.done.push(Undo::DeleteLink(host_if.clone()));

    for (key, value) in host_sysctls(&host_if, ipv4, ipv6) {
        kernel(
            || format!("sysctl {key}={value}"),
            rb.deps.host.write_sysctl(&key, value).wait(),
        )?;
    }
    kernel(
        || format!("set {host_if} up"),
        rb.deps.host.set_link_up(&host_if, true).wait(),
    )?;

    for (key, value) in pod_sysctls(ifname, ipv6)? {
        kernel(
            || format!("pod sysctl {key}={value}"),
            pod.write_sysctl(&key, value).wait(),
        )?;
    }
    let pod_link = kernel(
        || format!("look up pod {ifname}"),
        pod.get_link(ifname).wait(),
    )?;
    kernel(
        || format!("set pod {ifname} up"),
        pod.set_link_up(ifname, true).wait(),
    )?;
    for ip in &ips {
        let addr = IpNet::from(*ip);
        kernel(
            || format!("add {addr} to pod {ifname}"),
            pod.add_address(ifname, addr).wait(),
        )?;
    }
    for route in pod_routes(ifname, ipv4, ipv6) {
        let dst = route.destination;
        kernel(
            || format!("add pod route {dst}"),
            pod.add_route(route).wait(),
        )?;
    }
    for ip in &ips {
        let route = host_route(*ip, &host_if);
        let key = route.key();
        kernel(
            || format!("add host route {ip} dev {host_if}"),
            rb.deps.host.add_route(route).wait(),
        )?;
        rb.done.push(Undo::DeleteHostRoute(key));
    }

    let pod_mac = pod_link.mac.map(|m| m.to_string()).unwrap_or_default();
    let wep = build_endpoint(workload, &host_if, &pod_mac, &ips, metadata, declared);
    let name = workload.endpoint_name();
    rb.done.push(Undo::RestoreEndpoint {
        namespace: workload.namespace.clone(),
        name: name.clone(),
        previous: declared.map(|d| d.raw.clone()),
    });
    let revision = endpoint::put(&*rb.deps.store, &wep, declared)?;

    if let Some(timeout) = conf.policy_wait() {
        let waited = endpoint::wait_programmed(
            &conf.endpoint_status_dir,
            &workload.namespace,
            &name,
            revision,
            timeout,
        )?;
        tracing::debug!(waited_ms = waited.as_millis(), "endpoint programmed");
    }

    Ok(CniResult {
        interfaces: vec![
            Interface {
                name: host_if,
                mac: HOST_MAC.to_string(),
                mtu: Some(mtu),
                sandbox: None,
            },
            Interface {
                name: ifname.clone(),
                mac: pod_mac,
                mtu: Some(mtu),
                sandbox: Some(path_text(netns.path())),
            },
        ],
        ips: ips
            .iter()
            .map(|ip| IpConfig {
                address: IpNet::from(*ip),
                gateway: Some(match ip {
                    IpAddr::V4(_) => IpAddr::V4(IPV4_GATEWAY),
                    IpAddr::V6(_) => IpAddr::V6(IPV6_GATEWAY),
                }),
                interface: Some(1),
            })
            .collect(),
        routes: [
            (ipv4, "0.0.0.0/0", IpAddr::V4(IPV4_GATEWAY)),
            (ipv6, "::/0", IpAddr::V6(IPV6_GATEWAY)),
        ]
        .into_iter()
        .filter(|(on, _, _)| *on)
        .map(|(_, dst, gw)| RouteConfig {
            dst: dst.parse().expect("literal"),
            gw: Some(gw),
        })
        .collect(),
        dns: conf.dns.clone(),
    })
}

/// The pod MTU felix-rs published in `path` (one decimal number), when the
/// file exists and holds a valid MTU (576 to 65535).
pub fn published_mtu(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|mtu| (576..=65535).contains(mtu))
}

/// MTU used when the configuration sets none.
pub const FALLBACK_MTU: u32 = 1500;

/// The MTU of the host's IPv4 default-route interface (pods are routed, not
/// encapsulated, so they can use all of it); [`FALLBACK_MTU`] when there is
/// no default route.
pub fn detect_mtu(host: &dyn Kernel) -> u32 {
    let filter = twill_kernel::RouteFilter {
        table: Some(twill_kernel::route::TABLE_MAIN),
        ipv6: Some(false),
        ..Default::default()
    };
    let device = host.list_routes(filter).wait().ok().and_then(|routes| {
        routes
            .into_iter()
            .find(|r| r.destination.prefix_len() == 0)
            .and_then(|r| r.next_hops.into_iter().find_map(|h| h.device))
    });
    device
        .and_then(|d| host.get_link(&d).wait().ok())
        .map_or(FALLBACK_MTU, |link| link.mtu)
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn build_endpoint(
    workload: &Workload,
    host_if: &str,
    pod_mac: &str,
    ips: &[IpAddr],
    metadata: &Metadata,
    declared: Option<&endpoint::StoredEndpoint>,
) -> Object<WorkloadEndpointSpec> {
    let ns = &workload.namespace;
    let mut profiles = vec![format!("kns.{ns}")];
    if !metadata.service_account.is_empty() {
        profiles.push(format!("ksa.{ns}.{}", metadata.service_account));
    }
    let spec = WorkloadEndpointSpec {
        orchestrator: workload.orchestrator.into(),
        workload: if workload.orchestrator == "k8s" {
            String::new()
        } else {
            workload.pod.clone()
        },
        node: workload.node.clone(),
        container_id: workload.container_id.clone(),
        pod: workload.pod.clone(),
        endpoint: workload.ifname.clone(),
        service_account_name: metadata.service_account.clone(),
        ip_networks: ips.iter().map(|ip| IpNet::from(*ip).to_string()).collect(),
        ipv4_gateway: String::new(),
        ipv6_gateway: String::new(),
        profiles,
        interface_name: host_if.into(),
        mac: pod_mac.into(),
        ports: metadata.ports.clone(),
        ..declared
            .map(|d| d.endpoint.spec.clone())
            .unwrap_or_default()
    };
    let mut wep = Object::new(workload.endpoint_name(), Some(ns), spec);
    if let Some(d) = declared {
        wep.metadata.annotations = d.endpoint.metadata.annotations.clone();
    }
    let mut labels = metadata.labels.clone();
    labels.insert("projectcalico.org/namespace".into(), ns.clone());
    labels.insert(
        "projectcalico.org/orchestrator".into(),
        workload.orchestrator.into(),
    );
    if !metadata.service_account.is_empty() {
        labels.insert(
            "projectcalico.org/serviceaccount".into(),
            metadata.service_account.clone(),
        );
    }
    wep.metadata.labels = labels;
    wep
}

#[cfg(test)]
#[path = "add_tests.rs"]
mod tests;
