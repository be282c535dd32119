//! The synthetic workload the scale examples load: endpoints spread over
//! `APPS` app labels and global policies allowing TCP between apps.

use std::collections::BTreeMap;

use twill_api::Resource;
use twill_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::policy::{GlobalNetworkPolicy, GlobalNetworkPolicySpec};
use twill_store::{Datastore, Key};

/// Endpoints on the node under test.
pub const LOCAL: usize = 250;
/// Endpoints on another node.
pub const REMOTE: usize = 10_000;
/// Distinct `app` label values.
pub const APPS: usize = 2_000;

/// Endpoint `i` on `node`, labelled `app=app{app}`, with a unique /32.
pub fn endpoint(i: usize, node: &str, app: usize) -> WorkloadEndpoint {
    let mut wep = WorkloadEndpoint::new(
        format!("{node}-k8s-p{i}-eth0"),
        Some("ns"),
        WorkloadEndpointSpec {
            node: node.into(),
            orchestrator: "k8s".into(),
            interface_name: format!("twl{i:08x}"),
            ip_networks: vec![format!(
                "10.{}.{}.{}/32",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            )],
            ..Default::default()
        },
    );
    wep.metadata.labels = BTreeMap::from([("app".to_string(), format!("app{app}"))]);
    wep
}

/// Policy `i`: selects one app and allows TCP ingress from three others.
pub fn policy(i: usize) -> GlobalNetworkPolicy {
    let rule = |peer: usize| twill_api::common::Rule {
        action: twill_api::common::Action::Allow,
        ip_version: None,
        protocol: Some(twill_api::common::Protocol::Tcp),
        icmp: None,
        not_protocol: None,
        not_icmp: None,
        source: twill_api::common::EntityRule {
            selector: format!("app == 'app{peer}'"),
            ..Default::default()
        },
        destination: twill_api::common::EntityRule {
            ports: vec![twill_api::common::Port::number(80 + (i % 3) as u16)],
            ..Default::default()
        },
        http: None,
        metadata: None,
    };
    let spec = GlobalNetworkPolicySpec {
        order: Some(i as f64),
        selector: format!("app == 'app{}'", i % APPS),
        ingress: vec![
            rule((i + 1) % APPS),
            rule((i + 2) % APPS),
            rule((i + 7) % APPS),
        ],
        ..Default::default()
    };
    GlobalNetworkPolicy::new(format!("p{i}"), None, spec)
}

/// Writes `resource` into `store` under its key (a fresh one).
#[allow(
    dead_code,
    reason = "the examples that start the daemon use it; the pure ones do not"
)]
pub fn store(resource: &Resource, store: &dyn Datastore) {
    let name = resource.metadata().name.as_str();
    let key = match resource.metadata().namespace.as_deref() {
        Some(ns) => Key::namespaced(resource.store_kind(), ns, name),
        None => Key::cluster(resource.store_kind(), name),
    };
    store
        .create(&key, &resource.to_json())
        .expect("a fresh key");
}
