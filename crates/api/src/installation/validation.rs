//! Validation of the `Installation` spec: the rules Tigera's operator
//! applies before rendering, where they do not depend on its defaults.

use super::*;
use crate::common::{Family, check_cidr, check_log_level, check_range, check_selector_field};
use crate::ippool::{check_block_size, check_pool_cidr};
use crate::validate::{Validate, Validator};

impl Validate for InstallationSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(cni) = &self.cni {
            v.field("cni", |v| cni.validate(v));
        }
        if let Some(network) = &self.calico_network {
            v.field("calicoNetwork", |v| network.validate(v));
        }
        for (name, path) in [
            ("flexVolumePath", &self.flex_volume_path),
            ("kubeletVolumePluginPath", &self.kubelet_volume_plugin_path),
            ("calicoRunHostPath", &self.calico_run_host_path),
            ("calicoLibHostPath", &self.calico_lib_host_path),
        ] {
            if let Some(path) = path
                && path != "None"
                && !path.starts_with('/')
            {
                v.field(name, |v| {
                    v.error(format!("{path:?} is not an absolute path (or \"None\")"))
                });
            }
        }
        if let Some(strategy) = &self.node_update_strategy
            && strategy
                .type_
                .as_deref()
                .is_some_and(|t| t != "RollingUpdate")
        {
            v.field("nodeUpdateStrategy", |v| {
                v.field("type", |v| v.error("only RollingUpdate is supported"))
            });
        }
        for key in ["kubernetes.io/os", "beta.kubernetes.io/os"] {
            if let Some(os) = self.control_plane_node_selector.get(key)
                && os != "linux"
            {
                v.field("controlPlaneNodeSelector", |v| {
                    v.key(key, |v| {
                        v.error(format!("control-plane pods run on linux, not {os:?}"))
                    })
                });
            }
        }
        if let Some(replicas) = self.control_plane_replicas {
            v.field("controlPlaneReplicas", |v| {
                check_range(v, i64::from(replicas), 1, i64::from(i32::MAX))
            });
        }
        for (name, port) in [
            ("nodeMetricsPort", self.node_metrics_port),
            ("typhaMetricsPort", self.typha_metrics_port),
        ] {
            if let Some(port) = port {
                v.field(name, |v| check_range(v, i64::from(port), 1, 65535));
            }
        }
        v.field("componentResources", |v| {
            v.each(&self.component_resources, |v, c| {
                if !COMPONENT_NAMES.contains(&c.component_name.as_str()) {
                    v.field("componentName", |v| {
                        v.error(format!(
                            "unknown component {:?}; use one of {}",
                            c.component_name,
                            COMPONENT_NAMES.join(", ")
                        ))
                    });
                }
            })
        });
        if self.non_privileged == Some(EnabledDisabled::Enabled) {
            v.field("nonPrivileged", |v| {
                v.error("non-privileged mode was removed and cannot be Enabled")
            });
        }
        if self.fips_mode == Some(EnabledDisabled::Enabled) {
            v.field("fipsMode", |v| {
                v.error("FIPS mode was removed and cannot be Enabled")
            });
        }
        if let Some(cni) = self.logging.as_ref().and_then(|l| l.cni.as_ref()) {
            v.field("logging", |v| v.field("cni", |v| cni.validate(v)));
        }
        v.field("serviceCIDRs", |v| {
            v.each(&self.service_cidrs, |v, c| check_cidr(v, c, Family::Any))
        });
        if self.azure.is_some() && self.kubernetes_provider != Some(KubernetesProvider::Aks) {
            v.field("azure", |v| {
                v.error("azure may only be set when kubernetesProvider is AKS")
            });
        }
    }
}

impl Validate for CNISpec {
    fn validate(&self, v: &mut Validator) {
        let calico = matches!(self.type_, None | Some(CNIPluginType::Calico));
        if let Some(version) = &self.spec_version {
            v.field("specVersion", |v| {
                if !["Auto", "0.3.1", "0.4.0", "1.0.0"].contains(&version.as_str()) {
                    v.error(format!(
                        "{version:?} is not one of Auto, 0.3.1, 0.4.0, 1.0.0"
                    ));
                }
                if !calico {
                    v.error("specVersion is only valid when cni.type is Calico");
                }
            });
        }
        if calico
            && let Some(ipam) = self.ipam.as_ref().and_then(|i| i.type_)
            && !matches!(ipam, IPAMPluginType::Calico | IPAMPluginType::HostLocal)
        {
            v.field("ipam", |v| {
                v.field("type", |v| {
                    v.error(format!("IPAM {ipam:?} is not compatible with the Calico CNI plugin; use Calico or HostLocal"))
                })
            });
        }
        if let Some(mode) = &self.install_mode
            && !["All", "CalicoOnly"].contains(&mode.as_str())
        {
            v.field("installMode", |v| {
                v.error(format!("{mode:?} is not one of All, CalicoOnly"))
            });
        }
    }
}

impl Validate for CNILogging {
    fn validate(&self, v: &mut Validator) {
        if let Some(level) = &self.log_severity {
            v.field("logSeverity", |v| {
                check_log_level(v, level, &["Error", "Warning", "Info", "Debug"])
            });
        }
        if let Some(size) = &self.log_file_max_size {
            v.field("logFileMaxSize", |v| {
                let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let suffix = &size[digits.len()..];
                let ok = !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && digits.parse::<u64>().is_ok_and(|n| n > 0)
                    && ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&suffix);
                if !ok {
                    v.error(format!("{size:?} is not a positive binary size such as 100Mi (Ki, Mi, Gi, Ti, Pi, Ei)"));
                }
            });
        }
        if self.log_file_max_age_days == Some(0) {
            v.field("logFileMaxAgeDays", |v| v.error("must be at least 1"));
        }
        if self.log_file_max_count == Some(0) {
            v.field("logFileMaxCount", |v| v.error("must be at least 1"));
        }
    }
}

impl Validate for CalicoNetworkSpec {
    fn validate(&self, v: &mut Validator) {
        let bgp_disabled = self.bgp == Some(EnabledDisabled::Disabled);
        let felix_ipip = matches!(
            self.cluster_routing_mode,
            Some(ClusterRoutingMode::Felix | ClusterRoutingMode::FelixIpipOnly)
        );
        let felix_no_encap = self.cluster_routing_mode == Some(ClusterRoutingMode::Felix);
        if let Some(pools) = &self.ip_pools {
            v.field("ipPools", |v| {
                if pools.len() > 25 {
                    v.error(format!("at most 25 IP pools are allowed, found {}", pools.len()));
                }
                v.each(pools, |v, pool| {
                    pool.validate(v);
                    v.field("encapsulation", |v| match pool.encapsulation {
                        Some(e) if e.is_ipip() && bgp_disabled && !felix_ipip => {
                            v.error("IPIP encapsulation needs BGP enabled unless clusterRoutingMode is Felix or FelixIPIPOnly")
                        }
                        Some(Encapsulation::None) if bgp_disabled && !felix_no_encap => {
                            v.error("unencapsulated pools need BGP enabled unless clusterRoutingMode is Felix")
                        }
                        _ => {}
                    });
                });
            });
        }
        if let Some(mtu) = self.mtu {
            v.field("mtu", |v| check_range(v, i64::from(mtu), 68, 65535));
        }
        for (name, detection, family) in [
            (
                "nodeAddressAutodetectionV4",
                &self.node_address_autodetection_v4,
                Family::V4,
            ),
            (
                "nodeAddressAutodetectionV6",
                &self.node_address_autodetection_v6,
                Family::V6,
            ),
        ] {
            if let Some(detection) = detection {
                v.field(name, |v| detection.validate_for(v, family));
            }
        }
        v.field("sysctl", |v| {
            v.each(&self.sysctl, |v, s| {
                if !SYSCTL_KEYS.contains(&s.key.as_str()) {
                    v.field("key", |v| {
                        v.error(format!(
                            "{:?} is not one of {}",
                            s.key,
                            SYSCTL_KEYS.join(", ")
                        ))
                    });
                }
            })
        });
        if let Some(timeout) = self.linux_policy_setup_timeout_seconds {
            v.field("linuxPolicySetupTimeoutSeconds", |v| {
                if timeout < 0 {
                    v.error(format!("{timeout} is negative"));
                }
                if self.linux_dataplane == Some(LinuxDataplane::Vpp) {
                    v.error("not supported with the VPP dataplane");
                }
            });
        }
    }
}

impl Validate for InstallationIPPool {
    fn validate(&self, v: &mut Validator) {
        let mut network = None;
        v.field("cidr", |v| network = check_pool_cidr(v, &self.cidr));
        let v6 = matches!(network, Some(ipnet::IpNet::V6(_)));
        if let (Some(net), Some(size)) = (network, self.block_size) {
            check_block_size(v, net, size);
        }
        if v6 && self.encapsulation.is_some_and(Encapsulation::is_ipip) {
            v.field("encapsulation", |v| {
                v.error(format!("IPIP is not supported on IPv6 pool {}", self.cidr))
            });
        }
        if let Some(selector) = &self.node_selector {
            v.field("nodeSelector", |v| check_selector_field(v, selector));
        }
        if self.allowed_uses.contains(&IPPoolAllowedUse::LoadBalancer)
            && self.encapsulation.is_some_and(|e| e != Encapsulation::None)
        {
            v.field("encapsulation", |v| {
                v.error("a LoadBalancer pool cannot be encapsulated")
            });
        }
    }
}

impl NodeAddressAutodetection {
    fn validate_for(&self, v: &mut Validator, family: Family) {
        let set = [
            self.first_found == Some(true),
            self.kubernetes.is_some(),
            self.interface.as_deref().is_some_and(|s| !s.is_empty()),
            self.skip_interface
                .as_deref()
                .is_some_and(|s| !s.is_empty()),
            self.can_reach.as_deref().is_some_and(|s| !s.is_empty()),
            !self.cidrs.is_empty(),
        ];
        let count = set.iter().filter(|s| **s).count();
        if count > 1 {
            v.error(format!(
                "{count} autodetection methods are set; choose one of firstFound, kubernetes, interface, skipInterface, canReach, cidrs"
            ));
        }
        v.field("cidrs", |v| {
            v.each(&self.cidrs, |v, c| check_cidr(v, c, family))
        });
    }
}
