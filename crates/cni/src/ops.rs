//! DEL, CHECK, GC and STATUS.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::endpoint::WorkloadEndpointSpec;
use twill_api::ipam::IPAMHandleSpec;
use twill_kernel::{KernelExt, NetnsPath, RouteFilter, RouteProto};

use crate::add::{HOST_MAC, host_route, host_sysctls, pod_routes, pod_sysctls};
use crate::config::{Env, NetConf};
use crate::deps::Deps;
use crate::endpoint;
use crate::error::CniError;
use crate::result::CniResult;
use crate::workload::{HANDLE_PREFIX, Workload};

/// DEL: removes the pod interface (and with it the host veth and its
/// routes), the endpoint and the addresses. Succeeds when any of them is
/// already gone, the netns included. The endpoint and the host veth are
/// removed only when the endpoint belongs to `CNI_CONTAINERID`, so a late
/// DEL of an old sandbox cannot unwire its successor.
///
/// # Errors
///
/// A failure other than "already gone".
pub fn del(env: &Env, deps: &mut Deps) -> Result<(), CniError> {
    let workload = Workload::new(env, &deps.node);
    let name = workload.endpoint_name();
    let stored = endpoint::get(&*deps.store, &workload.namespace, &name)?;
    let owned = stored
        .as_ref()
        .is_some_and(|s| s.endpoint.spec.container_id == workload.container_id);

    if let Some(path) = &env.netns {
        match deps.host.enter(&NetnsPath::from_path(path.clone())) {
            Ok(pod) => match pod.delete_link(&workload.ifname).wait() {
                Err(e) if !e.is_not_found() => {
                    return Err(CniError::kernel(
                        format!("delete pod {}", workload.ifname),
                        e,
                    ));
                }
                _ => {}
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(CniError::kernel(format!("enter {}", path.display()), e)),
        }
    }
    if owned {
        let host_if = workload.host_ifname();
        match deps.host.delete_link(&host_if).wait() {
            Err(e) if !e.is_not_found() => {
                return Err(CniError::kernel(format!("delete {host_if}"), e));
            }
            _ => {}
        }
        endpoint::delete_if_owned(
            &*deps.store,
            &workload.namespace,
            &name,
            &workload.container_id,
        )?;
    }
    let released = deps.ipam.release_handle(&workload.handle())?;
    tracing::debug!(?released, owned, "DEL done");
    Ok(())
}

/// Same destination and the same (gateway, device) next hops; the kernel
/// fills in fields (weight, onlink) that ADD never set.
fn same_path(have: &twill_kernel::Route, want: &twill_kernel::Route) -> bool {
    let hops = |r: &twill_kernel::Route| -> Vec<(Option<IpAddr>, Option<String>)> {
        r.next_hops
            .iter()
            .map(|h| (h.gateway, h.device.clone()))
            .collect()
    };
    have.destination == want.destination && hops(have) == hops(want)
}

fn check_sysctls(
    kernel: &dyn twill_kernel::Kernel,
    side: &str,
    wanted: Vec<(twill_kernel::SysctlKey, &'static str)>,
    problems: &mut Vec<String>,
) {
    for (key, value) in wanted {
        match kernel.read_sysctl(&key).wait() {
            Ok(v) if v.trim() == value => {}
            Ok(v) => problems.push(format!(
                "{side} sysctl {key} is {:?}, want {value:?}",
                v.trim()
            )),
            Err(e) => problems.push(format!("{side} sysctl {key}: {e}")),
        }
    }
}

/// CHECK: compares the pod, the host, the endpoint and the IPAM handle with
/// what ADD made (and with `prevResult`'s addresses).
///
/// # Errors
///
/// [`CniError::Drift`] listing every difference, or a lookup failure.
pub fn check(conf: &NetConf, env: &Env, deps: &mut Deps) -> Result<(), CniError> {
    let workload = Workload::new(env, &deps.node);
    let name = workload.endpoint_name();
    let host_if = workload.host_ifname();
    let mut problems = Vec::new();

    let Some(stored) = endpoint::get(&*deps.store, &workload.namespace, &name)? else {
        return Err(CniError::Drift {
            problems: vec![format!("endpoint {}/{name} is missing", workload.namespace)],
        });
    };
    let spec = &stored.endpoint.spec;
    if spec.container_id != workload.container_id {
        problems.push(format!(
            "endpoint {name} belongs to container {:?}",
            spec.container_id
        ));
    }
    let ips: Vec<IpAddr> = spec
        .ip_networks
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok().map(|n| n.addr()))
        .collect();
    let ipv4 = ips.iter().any(IpAddr::is_ipv4);
    let ipv6 = ips.iter().any(IpAddr::is_ipv6);

    if let Some(prev) = &conf.prev_result {
        let prev = CniResult::from_json(prev)?;
        let expected: BTreeSet<IpAddr> = ips.iter().copied().collect();
        let reported: BTreeSet<IpAddr> = prev.ips.iter().map(|i| i.address.addr()).collect();
        if expected != reported {
            problems.push(format!(
                "prevResult addresses {reported:?} differ from the endpoint's {expected:?}"
            ));
        }
    }

    // IPAM: the handle must still hold the addresses.
    let handle_key = twill_store::Key::cluster(
        <IPAMHandleSpec as twill_api::Spec>::STORE_KIND,
        workload.handle(),
    );
    match deps.store.get(&handle_key) {
        Ok(_) => {}
        Err(twill_store::Error::NotFound { .. }) => {
            problems.push(format!("ipam handle {} is missing", workload.handle()));
        }
        Err(e) => problems.push(format!("ipam handle {}: {e}", workload.handle())),
    }

    // Host side.
    match deps.host.get_link(&host_if).wait() {
        Ok(link) => {
            if !link.up {
                problems.push(format!("host {host_if} is down"));
            }
            if link.mac != Some(HOST_MAC) {
                problems.push(format!("host {host_if} has MAC {:?}", link.mac));
            }
            check_sysctls(
                &*deps.host,
                "host",
                host_sysctls(&host_if, ipv4, ipv6),
                &mut problems,
            );
            let routes = deps
                .host
                .list_routes(RouteFilter::protocol(RouteProto::TWILL_LOCAL))
                .wait()
                .map_err(|e| CniError::kernel("list host routes", e))?;
            for ip in &ips {
                let want = host_route(*ip, &host_if);
                if !routes.iter().any(|r| same_path(r, &want)) {
                    problems.push(format!("host route {ip} dev {host_if} is missing"));
                }
            }
        }
        Err(e) => problems.push(format!("host {host_if}: {e}")),
    }

    // Pod side.
    let netns = env.netns.clone().ok_or(CniError::InvalidEnvironment {
        variable: "CNI_NETNS",
        reason: "missing".into(),
    })?;
    let pod = deps
        .host
        .enter(&NetnsPath::from_path(netns.clone()))
        .map_err(|e| CniError::kernel(format!("enter {}", netns.display()), e))?;
    let ifname = &workload.ifname;
    match pod.get_link(ifname).wait() {
        Ok(link) => {
            if !link.up {
                problems.push(format!("pod {ifname} is down"));
            }
            let addrs = pod
                .list_addresses(Some(ifname))
                .wait()
                .map_err(|e| CniError::kernel("list pod addresses", e))?;
            for ip in &ips {
                if !addrs.iter().any(|a| a.addr.addr() == *ip) {
                    problems.push(format!("pod address {ip} on {ifname} is missing"));
                }
            }
            check_sysctls(&*pod, "pod", pod_sysctls(ifname, ipv6)?, &mut problems);
            let routes = pod
                .list_routes(RouteFilter::default())
                .wait()
                .map_err(|e| CniError::kernel("list pod routes", e))?;
            for want in pod_routes(ifname, ipv4, ipv6) {
                if !routes.iter().any(|r| same_path(r, &want)) {
                    problems.push(format!("pod route {} is missing", want.destination));
                }
            }
        }
        Err(e) => problems.push(format!("pod {ifname}: {e}")),
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::Drift { problems })
    }
}

/// GC: releases the attachments of this node that the runtime does not
/// list in `cni.dev/valid-attachments` — their addresses, host veth and
/// endpoint. Continues past failures and reports them all at the end.
///
/// A configuration without the list is refused rather than read as "nothing
/// is valid": an omission must never release every pod on the node.
///
/// # Errors
///
/// [`CniError::InvalidConfig`] without `cni.dev/valid-attachments`; else
/// the collected failures.
pub fn gc(conf: &NetConf, deps: &mut Deps) -> Result<usize, CniError> {
    let Some(attachments) = &conf.valid_attachments else {
        return Err(CniError::InvalidConfig {
            field: "cni.dev/valid-attachments",
            reason: "GC needs the list of valid attachments (an empty list releases every attachment of this node)".into(),
        });
    };
    let valid: BTreeSet<(String, String)> = attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let listed = deps
        .store
        .list(<WorkloadEndpointSpec as twill_api::Spec>::STORE_KIND, None)
        .map_err(|e| CniError::Datastore {
            operation: "list",
            key: "WorkloadEndpoint".into(),
            reason: e.to_string(),
        })?;
    let mut problems = Vec::new();
    let mut released = 0;
    for object in listed.items {
        let Some(namespace) = object.key.namespace.clone() else {
            continue;
        };
        let Some(stored) = endpoint::get(&*deps.store, &namespace, &object.key.name)? else {
            continue;
        };
        let spec = &stored.endpoint.spec;
        if spec.node != deps.node
            || spec.container_id.is_empty()
            || valid.contains(&(spec.container_id.clone(), spec.endpoint.clone()))
        {
            continue;
        }
        tracing::info!(endpoint = %object.key, container = %spec.container_id, "GC releases a stale attachment");
        if let Err(e) = deps
            .ipam
            .release_handle(&format!("{HANDLE_PREFIX}{}", spec.container_id))
        {
            problems.push(e.to_string());
            continue;
        }
        if !spec.interface_name.is_empty()
            && let Err(e) = deps.host.delete_link(&spec.interface_name).wait()
            && !e.is_not_found()
        {
            problems.push(format!("delete {}: {e}", spec.interface_name));
        }
        if let Err(e) = endpoint::delete_if_owned(
            &*deps.store,
            &namespace,
            &object.key.name,
            &spec.container_id,
        ) {
            problems.push(e.to_string());
        }
        released += 1;
    }
    if problems.is_empty() {
        Ok(released)
    } else {
        Err(CniError::TryAgainLater {
            reason: format!("gc: {}", problems.join("; ")),
        })
    }
}

/// STATUS: ready when the IPAM service and the datastore answer.
///
/// # Errors
///
/// [`CniError::NotAvailable`] (code 50) naming what does not answer.
pub fn status(deps: &mut Deps) -> Result<(), CniError> {
    deps.ipam.ping()?;
    deps.store
        .current_revision()
        .map_err(|e| CniError::NotAvailable {
            reason: format!("datastore: {e}"),
        })?;
    Ok(())
}
