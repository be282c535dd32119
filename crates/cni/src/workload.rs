//! Who the attachment is for: names derived from the pod (or container),
//! as Calico derives them, and where its metadata comes from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use twill_api::endpoint::{WorkloadEndpointPort, WorkloadEndpointSpec};
use twill_kernel::WORKLOAD_INTERFACE_PREFIX;

use crate::config::{Env, NetConf};

/// Prefix of IPAM handles; the container ID follows.
pub const HANDLE_PREFIX: &str = "k8s-pod-network.";

/// The workload an invocation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `k8s` when `CNI_ARGS` names a pod, `cni` otherwise.
    pub orchestrator: &'static str,
    /// The pod's namespace (`default` without `K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// The pod's name; the container ID for plain CNI runtimes.
    pub pod: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// This node.
    pub node: String,
}

/// Doubles every `-` so that `-` can join name parts unambiguously
/// (Calico's WorkloadEndpoint naming).
fn escape(part: &str) -> String {
    part.replace('-', "--")
}

impl Workload {
    /// The workload of this invocation.
    pub fn new(env: &Env, node: &str) -> Self {
        let k8s = env.args.pod_name.is_some();
        Self {
            orchestrator: if k8s { "k8s" } else { "cni" },
            namespace: env
                .args
                .pod_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod: env
                .args
                .pod_name
                .clone()
                .unwrap_or_else(|| env.container_id.clone()),
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            node: node.to_string(),
        }
    }

    /// The WorkloadEndpoint's name: `<node>-<orchestrator>-<pod>-<ifname>`
    /// with dashes inside each part doubled.
    pub fn endpoint_name(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            escape(&self.node),
            self.orchestrator,
            escape(&self.pod),
            escape(&self.ifname)
        )
    }

    /// The host-side veth: `twl` + the first 11 hex digits of
    /// sha256(`<namespace>.<pod>`) — plus `.<ifname>` for interfaces other
    /// than `eth0`, so a pod's second network gets its own veth.
    pub fn host_ifname(&self) -> String {
        let mut seed = format!("{}.{}", self.namespace, self.pod);
        if self.ifname != "eth0" {
            seed.push('.');
            seed.push_str(&self.ifname);
        }
        let digest = Sha256::digest(seed.as_bytes());
        let mut name = String::from(WORKLOAD_INTERFACE_PREFIX);
        for byte in digest.iter() {
            let _ = write!(name, "{byte:02x}");
        }
        name.truncate(WORKLOAD_INTERFACE_PREFIX.len() + 11);
        name
    }

    /// The IPAM handle: `k8s-pod-network.<containerID>`.
    pub fn handle(&self) -> String {
        format!("{HANDLE_PREFIX}{}", self.container_id)
    }
}

/// Labels, service account and ports of the workload, merged from the
/// three sources Twill knows without a Kubernetes API. Precedence, per
/// field: `runtimeConfig` > `CNI_ARGS` (`TWILL_LABELS`,
/// `TWILL_SERVICE_ACCOUNT`) > a pre-declared WorkloadEndpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Service account (empty: none).
    pub service_account: String,
    /// Named ports.
    pub ports: Vec<WorkloadEndpointPort>,
}

impl Metadata {
    /// Merges the sources in precedence order.
    pub fn resolve(
        conf: &NetConf,
        env: &Env,
        declared: Option<(&BTreeMap<String, String>, &WorkloadEndpointSpec)>,
    ) -> Self {
        let rc = conf.runtime_config.as_ref();
        let labels = rc
            .and_then(|r| r.labels.clone())
            .or_else(|| env.args.labels.clone())
            .or_else(|| declared.map(|(labels, _)| labels.clone()))
            .unwrap_or_default();
        let service_account = rc
            .and_then(|r| r.service_account_name.clone())
            .or_else(|| env.args.service_account.clone())
            .or_else(|| declared.map(|(_, spec)| spec.service_account_name.clone()))
            .unwrap_or_default();
        let ports = rc
            .and_then(|r| r.ports.clone())
            .or_else(|| declared.map(|(_, spec)| spec.ports.clone()))
            .unwrap_or_default();
        Self {
            labels,
            service_account,
            ports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CniArgs, Command, RuntimeConfig};

    fn env(args: &str) -> Env {
        Env {
            command: Command::Add,
            container_id: "c0ffee".into(),
            netns: None,
            ifname: "eth0".into(),
            args: CniArgs::parse(args).expect("valid args"),
        }
    }

    #[test]
    fn kubernetes_pods_are_named_like_calico_names_them() {
        let w = Workload::new(&env("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"), "node-1");
        assert_eq!(w.orchestrator, "k8s");
        assert_eq!(w.endpoint_name(), "node--1-k8s-web--0-eth0");
        assert_eq!(w.handle(), "k8s-pod-network.c0ffee");
        let host = w.host_ifname();
        assert_eq!(host.len(), 14);
        assert!(host.starts_with("twl"));
        // sha256("shop.web-0"), first 11 hex digits.
        let digest = Sha256::digest(b"shop.web-0");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&host[3..], &hex[..11]);
    }

    #[test]
    fn plain_cni_containers_use_the_container_id() {
        let w = Workload::new(&env(""), "n1");
        assert_eq!(w.orchestrator, "cni");
        assert_eq!(w.namespace, "default");
        assert_eq!(w.endpoint_name(), "n1-cni-c0ffee-eth0");
    }

    #[test]
    fn a_second_interface_gets_its_own_host_veth() {
        let mut w = Workload::new(&env("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"), "n");
        let eth0 = w.host_ifname();
        w.ifname = "net1".into();
        assert_ne!(eth0, w.host_ifname());
    }

    #[test]
    fn runtime_config_wins_over_cni_args_over_a_declared_endpoint() {
        let conf = |rc: Option<RuntimeConfig>| NetConf {
            runtime_config: rc,
            ..NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#).expect("valid")
        };
        let declared_labels = BTreeMap::from([("from".to_string(), "declared".to_string())]);
        let declared_spec = WorkloadEndpointSpec {
            service_account_name: "declared-sa".into(),
            ..Default::default()
        };
        let declared = Some((&declared_labels, &declared_spec));

        let only_declared = Metadata::resolve(&conf(None), &env(""), declared);
        assert_eq!(only_declared.labels["from"], "declared");
        assert_eq!(only_declared.service_account, "declared-sa");

        let args = env("TWILL_LABELS=from=args;TWILL_SERVICE_ACCOUNT=args-sa");
        let from_args = Metadata::resolve(&conf(None), &args, declared);
        assert_eq!(from_args.labels["from"], "args");
        assert_eq!(from_args.service_account, "args-sa");

        let rc = RuntimeConfig {
            labels: Some(BTreeMap::from([("from".into(), "runtime".into())])),
            ..Default::default()
        };
        let from_rc = Metadata::resolve(&conf(Some(rc)), &args, declared);
        assert_eq!(from_rc.labels["from"], "runtime");
        assert_eq!(from_rc.service_account, "args-sa", "per field");
    }
}
