//! `FelixConfiguration` (`projectcalico.org/v3`): the policy daemon's settings.
//!
//! A configuration named `default` applies to every node; one named
//! `node.<nodename>` overrides it for one node, and any other name applies
//! to the nodes its `nodeSelector` matches. Every field is optional: an unset
//! field inherits from the less specific configuration, then Calico's
//! default (noted on each field). Defaults are therefore *not* filled into
//! the resource; use the `effective_*` methods to read a value with its
//! default.
//!
//! The struct carries every field of Calico's current `FelixConfigurationSpec`
//! so that any manifest Calico accepts loads here, including settings of
//! dataplanes Twill does not implement (iptables, eBPF, Windows), which are
//! accepted and ignored.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Family, LOG_LEVELS, Port, check_cidr, check_dns1123_label, check_duration,
    check_interface_name, check_ip, check_range, check_selector_field,
};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

mod types;

pub use types::*;

/// Settings of the policy daemon, globally or for some nodes.
pub type FelixConfiguration = Object<FelixConfigurationSpec>;

/// The spec of a [`FelixConfiguration`]. Field docs give Calico's setting
/// name and default; see Calico's Felix configuration reference for details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Felix `NodeSelector`: Apply this configuration to the nodes this selector matches (only on configurations not named `default` or `node.<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Felix `UseInternalDataplaneDriver`: use internal dataplane driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_internal_dataplane_driver: Option<bool>,
    /// Felix `DataplaneDriver`: dataplane driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_driver: Option<String>,
    /// Felix `DataplaneWatchdogTimeout`: dataplane watchdog timeout, as a duration such as `90s`. Deprecated in Calico.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_watchdog_timeout: Option<String>,
    /// Felix `IPv6Support`: I Pv6 support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    /// Felix `RouteRefreshInterval`: How often routes are re-checked against the kernel, as a duration; `0` disables (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// Felix `InterfaceRefreshInterval`: interface refresh interval, as a duration such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_refresh_interval: Option<String>,
    /// Felix `IptablesRefreshInterval`: How often iptables rules are re-checked, as a duration (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_refresh_interval: Option<String>,
    /// Felix `IptablesPostWriteCheckInterval`: iptables post write check interval, as a duration such as `90s` (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_post_write_check_interval: Option<String>,
    /// Felix `IptablesLockProbeInterval`: iptables lock probe interval, as a duration such as `90s` (default 50ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_lock_probe_interval: Option<String>,
    /// Felix `FeatureDetectOverride`: feature detect override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_detect_override: Option<String>,
    /// Felix `FeatureGates`: feature gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_gates: Option<String>,
    /// Felix `IpsetsRefreshInterval`: ipsets refresh interval, as a duration such as `90s` (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsets_refresh_interval: Option<String>,
    /// Felix `MaxIpsetSize`: max ipset size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ipset_size: Option<i64>,
    /// Felix `IptablesBackend`: iptables backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend: Option<String>,
    /// Felix `XDPRefreshInterval`: XDP refresh interval, as a duration such as `90s` (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_refresh_interval: Option<String>,
    /// Felix `NetlinkTimeout`: netlink timeout, as a duration such as `90s` (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netlink_timeout: Option<String>,
    /// Felix `MetadataAddr`: metadata addr (default 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_addr: Option<String>,
    /// Felix `MetadataPort`: metadata port (default 8775).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_port: Option<i64>,
    /// Felix `OpenstackRegion`: openstack region (default Empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_region: Option<String>,
    /// Felix `InterfacePrefix`: Name prefix of workload interfaces, comma-separated when several (default `cali`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    /// Felix `InterfaceExclude`: interface exclude (default kube-ipvs0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_exclude: Option<String>,
    /// Felix `ChainInsertMode`: chain insert mode (default insert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_insert_mode: Option<String>,
    /// Felix `DefaultEndpointToHostAction`: What happens to traffic from workloads to the host after host-endpoint policy: Drop, Accept or Return, any case (default Drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    /// Felix `IptablesFilterAllowAction`: iptables filter allow action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_allow_action: Option<String>,
    /// Felix `IptablesMangleAllowAction`: iptables mangle allow action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_mangle_allow_action: Option<String>,
    /// Felix `IptablesFilterDenyAction`: iptables filter deny action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_deny_action: Option<String>,
    /// Felix `LogPrefix`: log prefix (default calico-packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    /// Felix `LogActionRateLimit`: log action rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_action_rate_limit: Option<String>,
    /// Felix `LogActionRateLimitBurst`: log action rate limit burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_action_rate_limit_burst: Option<i64>,
    /// Felix `LogFilePath`: log file path (default /var/log/calico/felix.log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_path: Option<String>,
    /// Felix `LogSeverityFile`: log severity file (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_file: Option<String>,
    /// Felix `LogSeverityScreen`: Log level on stderr: Trace, Debug, Info, Warning, Error or Fatal, any case (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Felix `LogSeveritySys`: log severity sys (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_sys: Option<String>,
    /// Felix `LogDebugFilenameRegex`: log debug filename regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_debug_filename_regex: Option<String>,
    /// Felix `IPIPEnabled`: Whether the IP-in-IP device is set up (default: decided from the IP pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    /// Felix `IPIPMTU`: MTU of the IP-in-IP device (default 0: auto-detect).
    #[serde(rename = "ipipMTU", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i64>,
    /// Felix `VXLANEnabled`: Whether the VXLAN device is set up (default: decided from the IP pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    /// Felix `VXLANMTU`: MTU of the IPv4 VXLAN device (default 0: auto-detect).
    #[serde(rename = "vxlanMTU", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    /// Felix `VXLANMTUV6`: MTU of the IPv6 VXLAN device (default 0: auto-detect).
    #[serde(
        rename = "vxlanMTUV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<i64>,
    /// Felix `VXLANPort`: UDP port of VXLAN traffic (default 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    /// Felix `VXLANVNI`: VXLAN network identifier (default 4096).
    #[serde(rename = "vxlanVNI", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    /// Felix `AllowVXLANPacketsFromWorkloads`: allow VXLAN packets from workloads (default false).
    #[serde(
        rename = "allowVXLANPacketsFromWorkloads",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    /// Felix `AllowIPIPPacketsFromWorkloads`: allow IPIP packets from workloads (default false).
    #[serde(
        rename = "allowIPIPPacketsFromWorkloads",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    /// Felix `ReportingInterval`: How often the node reports its status to the datastore, as a duration; `0s` disables reporting (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
    /// Felix `ReportingTTL`: reporting TTL, as a duration such as `90s` (default 90s).
    #[serde(
        rename = "reportingTTL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_ttl: Option<String>,
    /// Felix `EndpointReportingEnabled`: endpoint reporting enabled (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_reporting_enabled: Option<bool>,
    /// Felix `EndpointReportingDelay`: endpoint reporting delay, as a duration such as `90s` (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_reporting_delay: Option<String>,
    /// Felix `EndpointStatusPathPrefix`: Directory where per-endpoint status files are written (default /var/run/calico).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_status_path_prefix: Option<String>,
    /// Felix `IptablesMarkMask`: iptables mark mask (default 0xffff0000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_mark_mask: Option<i64>,
    /// Felix `DisableConntrackInvalidCheck`: disable conntrack invalid check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_conntrack_invalid_check: Option<bool>,
    /// Felix `HealthEnabled`: Serve the liveness and readiness endpoints (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    /// Felix `HealthHost`: Address the health endpoints listen on (default localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    /// Felix `HealthPort`: Port of the health endpoints (default 9099).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<i64>,
    /// Felix `HealthTimeoutOverrides`: health timeout overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_timeout_overrides: Vec<HealthTimeoutOverride>,
    /// Felix `PrometheusMetricsEnabled`: Serve Prometheus metrics (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    /// Felix `PrometheusMetricsHost`: prometheus metrics host (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_host: Option<String>,
    /// Felix `PrometheusMetricsPort`: Port of the Prometheus metrics endpoint (default 9091).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i64>,
    /// Felix `PrometheusGoMetricsEnabled`: prometheus go metrics enabled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_go_metrics_enabled: Option<bool>,
    /// Felix `PrometheusProcessMetricsEnabled`: prometheus process metrics enabled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_process_metrics_enabled: Option<bool>,
    /// Felix `PrometheusWireGuardMetricsEnabled`: prometheus wire guard metrics enabled (default true).
    #[serde(
        rename = "prometheusWireGuardMetricsEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_wireguard_metrics_enabled: Option<bool>,
    /// Felix `PrometheusMetricsCAFile`: prometheus metrics CA file.
    #[serde(
        rename = "prometheusMetricsCAFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_ca_file: Option<String>,
    /// Felix `PrometheusMetricsCertFile`: prometheus metrics cert file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_cert_file: Option<String>,
    /// Felix `PrometheusMetricsKeyFile`: prometheus metrics key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_key_file: Option<String>,
    /// Felix `PrometheusMetricsClientAuth`: prometheus metrics client auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_client_auth: Option<PrometheusMetricsClientAuth>,
    /// Felix `FailsafeInboundHostPorts`: Host ports always open inbound despite host-endpoint policy; unset means Calico's list (see `DEFAULT_FAILSAFE_INBOUND`), empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Felix `FailsafeOutboundHostPorts`: Host ports always open outbound despite host-endpoint policy; unset means Calico's list (see `DEFAULT_FAILSAFE_OUTBOUND`), empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// Felix `KubeNodePortRanges`: Kubernetes NodePort ranges (at most 7, numbers or `min:max`; default 30000:32767).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_node_port_ranges: Option<Vec<Port>>,
    /// Felix `PolicySyncPathPrefix`: Directory of the per-workload policy sync sockets; empty disables the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sync_path_prefix: Option<String>,
    /// Felix `UsageReportingEnabled`: usage reporting enabled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_enabled: Option<bool>,
    /// Felix `UsageReportingInitialDelay`: usage reporting initial delay, as a duration such as `90s` (default 300s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_initial_delay: Option<String>,
    /// Felix `UsageReportingInterval`: usage reporting interval, as a duration such as `90s` (default 86400s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_interval: Option<String>,
    /// Felix `NATPortRange`: Source port range used by outgoing NAT, e.g. `32768:65000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_port_range: Option<Port>,
    /// Felix `NATOutgoingAddress`: Source address for outgoing NAT instead of masquerading (an IPv4 address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_address: Option<String>,
    /// Felix `NATOutgoingExclusions`: NAT outgoing exclusions (default IPPoolsOnly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_exclusions: Option<NATOutgoingExclusions>,
    /// Felix `DeviceRouteSourceAddress`: device route source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_source_address: Option<String>,
    /// Felix `DeviceRouteSourceAddressIPv6`: device route source address I Pv6.
    #[serde(
        rename = "deviceRouteSourceAddressIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    /// Felix `DeviceRouteProtocol`: Routing protocol number set on routes to workload interfaces (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<i64>,
    /// Felix `RemoveExternalRoutes`: Remove routes to workload interfaces that Felix did not program (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_external_routes: Option<bool>,
    /// Felix `ProgramClusterRoutes`: Which cluster routes Felix programs: Enabled, Disabled, EnabledIPIPOnly or EnabledNoEncapOnly (default EnabledIPIPOnly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<String>,
    /// Felix `IPForwarding`: IP forwarding (default Enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_forwarding: Option<String>,
    /// Felix `ExternalNodesCIDRList`: external nodes CIDR list.
    #[serde(
        rename = "externalNodesList",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_nodes_cidr_list: Option<Vec<String>>,
    /// Felix `DebugMemoryProfilePath`: debug memory profile path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_memory_profile_path: Option<String>,
    /// Felix `DebugDisableLogDropping`: debug disable log dropping (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_disable_log_dropping: Option<bool>,
    /// Felix `DebugSimulateCalcGraphHangAfter`: debug simulate calc graph hang after, as a duration such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_calc_graph_hang_after: Option<String>,
    /// Felix `DebugSimulateDataplaneHangAfter`: debug simulate dataplane hang after, as a duration such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_dataplane_hang_after: Option<String>,
    /// Felix `DebugSimulateDataplaneApplyDelay`: debug simulate dataplane apply delay, as a duration such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_dataplane_apply_delay: Option<String>,
    /// Felix `DebugHost`: debug host (default localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_host: Option<String>,
    /// Felix `DebugPort`: debug port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_port: Option<i64>,
    /// Felix `IptablesNATOutgoingInterfaceFilter`: iptables NAT outgoing interface filter.
    #[serde(
        rename = "iptablesNATOutgoingInterfaceFilter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_nat_outgoing_interface_filter: Option<String>,
    /// Felix `SidecarAccelerationEnabled`: sidecar acceleration enabled (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_acceleration_enabled: Option<bool>,
    /// Felix `XDPEnabled`: XDP enabled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_enabled: Option<bool>,
    /// Felix `GenericXDPEnabled`: generic XDP enabled (default false).
    #[serde(
        rename = "genericXDPEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_xdp_enabled: Option<bool>,
    /// Felix `NFTablesMode`: Whether the nftables dataplane is used: Enabled, Disabled or Auto (default Auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mode: Option<NFTablesMode>,
    /// Felix `NFTablesFlowTableOffload`: NF tables flow table offload (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_flow_table_offload: Option<NFTablesFlowTableOffload>,
    /// Felix `NFTablesFlowTableDataIfacePattern`: NF tables flow table data iface pattern (default "").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_flow_table_data_iface_pattern: Option<String>,
    /// Felix `NftablesRefreshInterval`: How often the nftables ruleset is re-checked, as a duration (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_refresh_interval: Option<String>,
    /// Felix `NftablesFilterAllowAction`: nftables filter allow action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_filter_allow_action: Option<String>,
    /// Felix `NftablesMangleAllowAction`: nftables mangle allow action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mangle_allow_action: Option<String>,
    /// Felix `NftablesFilterDenyAction`: nftables filter deny action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_filter_deny_action: Option<String>,
    /// Felix `NftablesMarkMask`: nftables mark mask (default 0xffff0000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mark_mask: Option<i64>,
    /// Felix `BPFEnabled`: Whether the eBPF dataplane is used (default false; Twill does not implement it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_enabled: Option<bool>,
    /// Felix `BPFOverlayHostSourceIP`: BPF overlay host source IP (default TunnelAddress).
    #[serde(
        rename = "bpfOverlayHostSourceIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_overlay_host_source_ip: Option<BPFOverlayHostSourceIP>,
    /// Felix `BPFDisableUnprivileged`: BPF disable unprivileged (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_disable_unprivileged: Option<bool>,
    /// Felix `BPFJITHardening`: BPFJIT hardening (default Auto).
    #[serde(
        rename = "bpfJITHardening",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_jit_hardening: Option<BPFJITHardening>,
    /// Felix `BPFLogLevel`: BPF log level (default Off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_log_level: Option<String>,
    /// Felix `BPFConntrackLogLevel`: BPF conntrack log level (default Off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_log_level: Option<String>,
    /// Felix `BPFConntrackCleanupMode`: BPF conntrack cleanup mode (default Userspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_mode: Option<BPFConntrackMode>,
    /// Felix `BPFConntrackTimeouts`: BPF conntrack timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_timeouts: Option<BPFConntrackTimeouts>,
    /// Felix `BPFIPFragTimeout`: BPFIP frag timeout, as a duration such as `90s`.
    #[serde(
        rename = "bpfIPFragTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_frag_timeout: Option<String>,
    /// Felix `BPFLogFilters`: BPF log filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_log_filters: Option<BTreeMap<String, String>>,
    /// Felix `BPFCTLBLogFilter`: BPFCTLB log filter.
    #[serde(
        rename = "bpfCTLBLogFilter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ctlb_log_filter: Option<String>,
    /// Felix `BPFDataIfacePattern`: BPF data iface pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_data_iface_pattern: Option<String>,
    /// Felix `BPFL3IfacePattern`: BPFL3 iface pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_l3_iface_pattern: Option<String>,
    /// Felix `BPFConnectTimeLoadBalancingEnabled`: BPF connect time load balancing enabled (default true). Deprecated in Calico.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_connect_time_load_balancing_enabled: Option<bool>,
    /// Felix `BPFConnectTimeLoadBalancing`: BPF connect time load balancing (default TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_connect_time_load_balancing: Option<BPFConnectTimeLB>,
    /// Felix `BPFHostNetworkedNATWithoutCTLB`: BPF host networked NAT without CTLB (default Enabled).
    #[serde(
        rename = "bpfHostNetworkedNATWithoutCTLB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_networked_nat_without_ctlb: Option<BPFHostNetworkedNAT>,
    /// Felix `BPFExternalServiceMode`: BPF external service mode (default Tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_external_service_mode: Option<String>,
    /// Felix `BPFDSROptoutCIDRs`: BPFDSR optout CID rs.
    #[serde(
        rename = "bpfDSROptoutCIDRs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_dsr_optout_cidrs: Option<Vec<String>>,
    /// Felix `BPFExtToServiceConnmark`: BPF ext to service connmark (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_ext_to_service_connmark: Option<i64>,
    /// Felix `BPFKubeProxyIptablesCleanupEnabled`: BPF kube proxy iptables cleanup enabled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_iptables_cleanup_enabled: Option<bool>,
    /// Felix `BPFKubeProxyMinSyncPeriod`: BPF kube proxy min sync period, as a duration such as `90s` (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_min_sync_period: Option<String>,
    /// Felix `BPFKubeProxyHealthzPort`: BPF kube proxy healthz port (default 10256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_healthz_port: Option<i64>,
    /// Felix `BPFPSNATPorts`: BPFPSNAT ports (default 20000:29999).
    #[serde(
        rename = "bpfPSNATPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_psnat_ports: Option<Port>,
    /// Felix `BPFMapSizeNATFrontend`: BPF map size NAT frontend.
    #[serde(
        rename = "bpfMapSizeNATFrontend",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_frontend: Option<i64>,
    /// Felix `BPFMapSizeNATBackend`: BPF map size NAT backend.
    #[serde(
        rename = "bpfMapSizeNATBackend",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_backend: Option<i64>,
    /// Felix `BPFMapSizeNATAffinity`: BPF map size NAT affinity.
    #[serde(
        rename = "bpfMapSizeNATAffinity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_affinity: Option<i64>,
    /// Felix `BPFMapSizeRoute`: BPF map size route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_route: Option<i64>,
    /// Felix `BPFMapSizeConntrack`: BPF map size conntrack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack: Option<i64>,
    /// Felix `BPFMapSizePerCPUConntrack`: BPF map size per CPU conntrack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_per_cpu_conntrack: Option<i64>,
    /// Felix `BPFMapSizeConntrackScaling`: BPF map size conntrack scaling (default DoubleIfFull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack_scaling: Option<String>,
    /// Felix `BPFMapSizeConntrackCleanupQueue`: BPF map size conntrack cleanup queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack_cleanup_queue: Option<i64>,
    /// Felix `BPFMapSizeIPSets`: BPF map size IP sets.
    #[serde(
        rename = "bpfMapSizeIPSets",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_ip_sets: Option<i64>,
    /// Felix `BPFMapSizeIfState`: BPF map size if state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_if_state: Option<i64>,
    /// Felix `BPFHostConntrackBypass`: BPF host conntrack bypass (default true - bypass Linux conntrack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_host_conntrack_bypass: Option<bool>,
    /// Felix `BPFIPFragmentReassemblyEnabled`: BPFIP fragment reassembly enabled (default true).
    #[serde(
        rename = "bpfIPFragmentReassemblyEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_fragment_reassembly_enabled: Option<bool>,
    /// Felix `BPFEnforceRPF`: BPF enforce RPF (default Loose).
    #[serde(
        rename = "bpfEnforceRPF",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enforce_rpf: Option<String>,
    /// Felix `BPFPolicyDebugEnabled`: BPF policy debug enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_policy_debug_enabled: Option<bool>,
    /// Felix `BPFForceTrackPacketsFromIfaces`: BPF force track packets from ifaces (default docker+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_force_track_packets_from_ifaces: Option<Vec<String>>,
    /// Felix `BPFDisableGROForIfaces`: BPF disable GRO for ifaces.
    #[serde(
        rename = "bpfDisableGROForIfaces",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_gro_for_ifaces: Option<String>,
    /// Felix `BPFExcludeCIDRsFromNAT`: BPF exclude CID rs from NAT.
    #[serde(
        rename = "bpfExcludeCIDRsFromNAT",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_exclude_cidrs_from_nat: Option<Vec<String>>,
    /// Felix `BPFExportBufferSizeMB`: BPF export buffer size MB (default 1).
    #[serde(
        rename = "bpfExportBufferSizeMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_export_buffer_size_mb: Option<i64>,
    /// Felix `IstioAmbientMode`: istio ambient mode (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_ambient_mode: Option<IstioAmbientMode>,
    /// Felix `IstioDSCPMark`: istio DSCP mark (default 23).
    #[serde(
        rename = "istioDSCPMark",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub istio_dscp_mark: Option<Dscp>,
    /// Felix `CgroupV2Path`: cgroup V2 path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_v2_path: Option<String>,
    /// Felix `FlowLogsPolicyEvaluationMode`: flow logs policy evaluation mode (default Continuous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_policy_evaluation_mode: Option<FlowLogsPolicyEvaluationMode>,
    /// Felix `BPFRedirectToPeer`: BPF redirect to peer (default Enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_redirect_to_peer: Option<String>,
    /// Felix `BPFAttachType`: BPF attach type (default Netkit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_attach_type: Option<BPFAttach>,
    /// Felix `FlowLogsFlushInterval`: flow logs flush interval, as a duration such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_flush_interval: Option<String>,
    /// Felix `FlowLogsCollectorDebugTrace`: flow logs collector debug trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_collector_debug_trace: Option<bool>,
    /// Felix `FlowLogsGoldmaneServer`: flow logs goldmane server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_goldmane_server: Option<String>,
    /// Felix `FlowLogsLocalReporter`: flow logs local reporter (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_local_reporter: Option<String>,
    /// Felix `BPFProfiling`: BPF profiling (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_profiling: Option<String>,
    /// Felix `RouteSource`: route source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<String>,
    /// Felix `RouteTableRanges`: Ranges of routing tables Felix may use (each 1-4294967295, at most 65535 tables in all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_ranges: Option<Vec<RouteTableIDRange>>,
    /// Felix `RouteTableRange`: Legacy: one range (1-250) of routing tables Felix may use; exclusive with `routeTableRanges`. Deprecated in Calico.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_range: Option<RouteTableRange>,
    /// Felix `RouteSyncDisabled`: route sync disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_sync_disabled: Option<bool>,
    /// Felix `IPv4NormalRoutePriority`: I Pv4 normal route priority (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<i64>,
    /// Felix `IPv4ElevatedRoutePriority`: I Pv4 elevated route priority (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_elevated_route_priority: Option<i64>,
    /// Felix `IPv6NormalRoutePriority`: I Pv6 normal route priority (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<i64>,
    /// Felix `IPv6ElevatedRoutePriority`: I Pv6 elevated route priority (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_elevated_route_priority: Option<i64>,
    /// Felix `LiveMigrationRouteConvergenceTime`: live migration route convergence time, as a duration such as `90s` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_migration_route_convergence_time: Option<String>,
    /// Felix `WireguardEnabled`: Encrypt IPv4 pod traffic between nodes with WireGuard (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    /// Felix `WireguardEnabledV6`: wireguard enabled V6 (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled_v6: Option<bool>,
    /// Felix `WireguardThreadingEnabled`: wireguard threading enabled (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_threading_enabled: Option<bool>,
    /// Felix `WireguardListeningPort`: wireguard listening port (default 51820).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port: Option<i64>,
    /// Felix `WireguardListeningPortV6`: wireguard listening port V6 (default 51821).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port_v6: Option<i64>,
    /// Felix `WireguardRoutingRulePriority`: wireguard routing rule priority (default 99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_routing_rule_priority: Option<i64>,
    /// Felix `WireguardInterfaceName`: wireguard interface name (default wireguard.cali).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name: Option<String>,
    /// Felix `WireguardInterfaceNameV6`: wireguard interface name V6 (default wg-v6.cali).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name_v6: Option<String>,
    /// Felix `WireguardMTU`: wireguard MTU (default 1440).
    #[serde(
        rename = "wireguardMTU",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i64>,
    /// Felix `WireguardMTUV6`: wireguard MTUV6 (default 1420).
    #[serde(
        rename = "wireguardMTUV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu_v6: Option<i64>,
    /// Felix `WireguardHostEncryptionEnabled`: wireguard host encryption enabled (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_host_encryption_enabled: Option<bool>,
    /// Felix `WireguardPersistentKeepAlive`: wireguard persistent keep alive, as a duration such as `90s` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_keep_alive: Option<String>,
    /// Felix `AWSSrcDstCheck`: AWS src dst check (default DoNothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_src_dst_check: Option<AWSSrcDstCheck>,
    /// Felix `ServiceLoopPrevention`: service loop prevention (default Drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_loop_prevention: Option<String>,
    /// Felix `WorkloadSourceSpoofing`: Whether pods may send from addresses not their own when annotated: Disabled or Any (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_source_spoofing: Option<String>,
    /// Felix `MTUIfacePattern`: Regular expression of the host interfaces whose smallest MTU is the detected host MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    /// Felix `FloatingIPs`: Whether floating IPs in workload annotations are programmed (default Disabled).
    #[serde(
        rename = "floatingIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<FloatingIP>,
    /// Felix `LocalSubnetL2Reachability`: local subnet L2 reachability (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subnet_l2_reachability: Option<LocalSubnetL2ReachabilityMode>,
    /// Felix `LocalSubnetL2ReachabilityRefreshInterval`: local subnet L2 reachability refresh interval, as a duration such as `90s` (default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subnet_l2_reachability_refresh_interval: Option<String>,
    /// Felix `WindowsManageFirewallRules`: windows manage firewall rules (default Disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_manage_firewall_rules: Option<WindowsManageFirewallRulesMode>,
    /// Felix `GoGCThreshold`: go GC threshold (default 40).
    #[serde(
        rename = "goGCThreshold",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub go_gc_threshold: Option<i64>,
    /// Felix `GoMemoryLimitMB`: go memory limit MB (default -1).
    #[serde(
        rename = "goMemoryLimitMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub go_memory_limit_mb: Option<i64>,
    /// Felix `GoMaxProcs`: go max procs (default -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_max_procs: Option<i64>,
    /// Felix `RequireMTUFile`: require MTU file (default false).
    #[serde(
        rename = "requireMTUFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub require_mtu_file: Option<bool>,
    /// Felix `BPFMaglevMaxEndpointsPerService`: BPF maglev max endpoints per service (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_maglev_max_endpoints_per_service: Option<i64>,
    /// Felix `BPFMaglevMaxServices`: BPF maglev max services (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_maglev_max_services: Option<i64>,
}

impl FelixConfigurationSpec {
    /// The inbound failsafe ports, with Calico's defaults when unset.
    pub fn effective_failsafe_inbound(&self) -> Vec<ProtoPort> {
        self.failsafe_inbound_host_ports.clone().unwrap_or_else(|| {
            DEFAULT_FAILSAFE_INBOUND
                .iter()
                .map(|(p, n)| ProtoPort::new(p, *n))
                .collect()
        })
    }

    /// The outbound failsafe ports, with Calico's defaults when unset.
    pub fn effective_failsafe_outbound(&self) -> Vec<ProtoPort> {
        self.failsafe_outbound_host_ports
            .clone()
            .unwrap_or_else(|| {
                DEFAULT_FAILSAFE_OUTBOUND
                    .iter()
                    .map(|(p, n)| ProtoPort::new(p, *n))
                    .collect()
            })
    }

    /// The prefix of workload interface names (default `cali`; the setting
    /// may list several, comma-separated, of which the first names new ones).
    pub fn effective_interface_prefix(&self) -> &str {
        self.interface_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("cali")
    }
}

/// `default`: the global configuration.
pub const GLOBAL_CONFIGURATION_NAME: &str = "default";
/// Prefix of per-node configuration names: `node.<nodename>`.
pub const NODE_CONFIGURATION_PREFIX: &str = "node.";

impl Spec for FelixConfigurationSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "FelixConfiguration";
    const PLURAL: &'static str = "felixconfigurations";
    const SHORT_NAMES: &'static [&'static str] = &["felixconfig", "felixconfigs"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn validate_with_meta(&self, meta: &ObjectMeta, v: &mut Validator) {
        let scoped_by_name = meta.name == GLOBAL_CONFIGURATION_NAME
            || meta.name.starts_with(NODE_CONFIGURATION_PREFIX);
        if scoped_by_name && self.node_selector.as_deref().is_some_and(|s| !s.is_empty()) {
            v.field("spec", |v| {
                v.field("nodeSelector", |v| {
                    v.error(format!(
                        "nodeSelector is not allowed on {:?}: it applies to {}",
                        meta.name,
                        if meta.name == GLOBAL_CONFIGURATION_NAME {
                            "every node"
                        } else {
                            "the named node"
                        }
                    ))
                })
            });
        }
    }
}

impl Validate for FelixConfigurationSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(value) = &self.dataplane_watchdog_timeout {
            v.field("dataplaneWatchdogTimeout", |v| check_duration(v, value));
        }
        if let Some(value) = &self.route_refresh_interval {
            v.field("routeRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.interface_refresh_interval {
            v.field("interfaceRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.iptables_refresh_interval {
            v.field("iptablesRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.iptables_post_write_check_interval {
            v.field("iptablesPostWriteCheckInterval", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.iptables_lock_probe_interval {
            v.field("iptablesLockProbeInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.feature_detect_override {
            v.field("featureDetectOverride", |v| check_key_value_list(v, value));
        }
        if let Some(value) = &self.feature_gates {
            v.field("featureGates", |v| check_key_value_list(v, value));
        }
        if let Some(value) = &self.ipsets_refresh_interval {
            v.field("ipsetsRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.iptables_backend {
            v.field("iptablesBackend", |v| {
                check_one_of(v, value, &["Auto", "Legacy", "NFT"], true)
            });
        }
        if let Some(value) = &self.xdp_refresh_interval {
            v.field("xdpRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.netlink_timeout {
            v.field("netlinkTimeout", |v| check_duration(v, value));
        }
        if let Some(value) = &self.chain_insert_mode {
            v.field("chainInsertMode", |v| {
                check_one_of(v, value, &["Insert", "Append"], true)
            });
        }
        if let Some(value) = &self.default_endpoint_to_host_action {
            v.field("defaultEndpointToHostAction", |v| {
                check_one_of(v, value, &["Drop", "Accept", "Return"], true)
            });
        }
        if let Some(value) = &self.iptables_filter_allow_action {
            v.field("iptablesFilterAllowAction", |v| {
                check_one_of(v, value, &["Accept", "Return"], true)
            });
        }
        if let Some(value) = &self.iptables_mangle_allow_action {
            v.field("iptablesMangleAllowAction", |v| {
                check_one_of(v, value, &["Accept", "Return"], true)
            });
        }
        if let Some(value) = &self.iptables_filter_deny_action {
            v.field("iptablesFilterDenyAction", |v| {
                check_one_of(v, value, &["Drop", "Reject"], true)
            });
        }
        if let Some(value) = &self.log_prefix {
            v.field("logPrefix", |v| check_log_prefix(v, value));
        }
        if let Some(value) = &self.log_action_rate_limit {
            v.field("logActionRateLimit", |v| check_rate_limit(v, value));
        }
        if let Some(value) = &self.log_action_rate_limit_burst {
            v.field("logActionRateLimitBurst", |v| {
                check_range(v, *value, 0, 9999)
            });
        }
        if let Some(value) = &self.log_severity_file {
            v.field("logSeverityFile", |v| {
                check_one_of(v, value, LOG_LEVELS, true)
            });
        }
        if let Some(value) = &self.log_severity_screen {
            v.field("logSeverityScreen", |v| {
                check_one_of(v, value, LOG_LEVELS, true)
            });
        }
        if let Some(value) = &self.log_severity_sys {
            v.field("logSeveritySys", |v| {
                check_one_of(v, value, LOG_LEVELS, true)
            });
        }
        if let Some(value) = &self.reporting_interval {
            v.field("reportingInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.reporting_ttl {
            v.field("reportingTTL", |v| check_duration(v, value));
        }
        if let Some(value) = &self.endpoint_reporting_delay {
            v.field("endpointReportingDelay", |v| check_duration(v, value));
        }
        if let Some(value) = &self.iptables_mark_mask {
            v.field("iptablesMarkMask", |v| {
                check_range(v, *value, 0, 4294967295)
            });
        }
        if let Some(value) = &self.prometheus_metrics_host {
            v.field("prometheusMetricsHost", |v| check_token(v, value, 64));
        }
        if let Some(value) = &self.usage_reporting_initial_delay {
            v.field("usageReportingInitialDelay", |v| check_duration(v, value));
        }
        if let Some(value) = &self.usage_reporting_interval {
            v.field("usageReportingInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.program_cluster_routes {
            v.field("programClusterRoutes", |v| {
                check_one_of(
                    v,
                    value,
                    &[
                        "Enabled",
                        "Disabled",
                        "EnabledIPIPOnly",
                        "EnabledNoEncapOnly",
                    ],
                    false,
                )
            });
        }
        if let Some(value) = &self.ip_forwarding {
            v.field("ipForwarding", |v| {
                check_one_of(v, value, &["Enabled", "Disabled"], false)
            });
        }
        if let Some(value) = &self.debug_simulate_calc_graph_hang_after {
            v.field("debugSimulateCalcGraphHangAfter", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.debug_simulate_dataplane_hang_after {
            v.field("debugSimulateDataplaneHangAfter", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.debug_simulate_dataplane_apply_delay {
            v.field("debugSimulateDataplaneApplyDelay", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.debug_port {
            v.field("debugPort", |v| check_range(v, *value, 0, 65535));
        }
        if let Some(value) = &self.iptables_nat_outgoing_interface_filter {
            v.field("iptablesNATOutgoingInterfaceFilter", |v| {
                check_token(v, value, 15)
            });
        }
        if let Some(value) = &self.nftables_refresh_interval {
            v.field("nftablesRefreshInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.nftables_filter_allow_action {
            v.field("nftablesFilterAllowAction", |v| {
                check_one_of(v, value, &["Accept", "Return"], true)
            });
        }
        if let Some(value) = &self.nftables_mangle_allow_action {
            v.field("nftablesMangleAllowAction", |v| {
                check_one_of(v, value, &["Accept", "Return"], true)
            });
        }
        if let Some(value) = &self.nftables_filter_deny_action {
            v.field("nftablesFilterDenyAction", |v| {
                check_one_of(v, value, &["Drop", "Reject"], true)
            });
        }
        if let Some(value) = &self.nftables_mark_mask {
            v.field("nftablesMarkMask", |v| {
                check_range(v, *value, 0, 4294967295)
            });
        }
        if let Some(value) = &self.bpf_log_level {
            v.field("bpfLogLevel", |v| {
                check_one_of(v, value, &["Off", "Info", "Debug"], true)
            });
        }
        if let Some(value) = &self.bpf_conntrack_log_level {
            v.field("bpfConntrackLogLevel", |v| {
                check_one_of(v, value, &["Off", "Debug"], false)
            });
        }
        if let Some(value) = &self.bpf_ip_frag_timeout {
            v.field("bpfIPFragTimeout", |v| check_duration(v, value));
        }
        if let Some(value) = &self.bpf_external_service_mode {
            v.field("bpfExternalServiceMode", |v| {
                check_one_of(v, value, &["Tunnel", "DSR"], true)
            });
        }
        if let Some(value) = &self.bpf_dsr_optout_cidrs {
            v.field("bpfDSROptoutCIDRs", |v| {
                v.each(value, |v, cidr| check_cidr(v, cidr, Family::Any))
            });
        }
        if let Some(value) = &self.bpf_ext_to_service_connmark {
            v.field("bpfExtToServiceConnmark", |v| {
                check_range(v, *value, 0, 4294967295)
            });
        }
        if let Some(value) = &self.bpf_kube_proxy_min_sync_period {
            v.field("bpfKubeProxyMinSyncPeriod", |v| check_duration(v, value));
        }
        if let Some(value) = &self.bpf_kube_proxy_healthz_port {
            v.field("bpfKubeProxyHealthzPort", |v| {
                check_range(v, *value, 0, 65535)
            });
        }
        if let Some(value) = &self.bpf_map_size_conntrack_scaling {
            v.field("bpfMapSizeConntrackScaling", |v| {
                check_one_of(v, value, &["Disabled", "DoubleIfFull"], true)
            });
        }
        if let Some(value) = &self.bpf_map_size_conntrack_cleanup_queue {
            v.field("bpfMapSizeConntrackCleanupQueue", |v| {
                check_range(v, *value, 1, i64::MAX)
            });
        }
        if let Some(value) = &self.bpf_enforce_rpf {
            v.field("bpfEnforceRPF", |v| {
                check_one_of(v, value, &["Disabled", "Strict", "Loose"], true)
            });
        }
        if let Some(value) = &self.bpf_force_track_packets_from_ifaces {
            v.field("bpfForceTrackPacketsFromIfaces", |v| {
                v.each(value, |v, iface| check_token(v, iface, 15))
            });
        }
        if let Some(value) = &self.bpf_exclude_cidrs_from_nat {
            v.field("bpfExcludeCIDRsFromNAT", |v| {
                v.each(value, |v, cidr| check_cidr(v, cidr, Family::Any))
            });
        }
        if let Some(value) = &self.bpf_redirect_to_peer {
            v.field("bpfRedirectToPeer", |v| {
                check_one_of(v, value, &["Enabled", "Disabled"], false)
            });
        }
        if let Some(value) = &self.flow_logs_flush_interval {
            v.field("flowLogsFlushInterval", |v| check_duration(v, value));
        }
        if let Some(value) = &self.flow_logs_local_reporter {
            v.field("flowLogsLocalReporter", |v| {
                check_one_of(v, value, &["Disabled", "Enabled"], false)
            });
        }
        if let Some(value) = &self.bpf_profiling {
            v.field("bpfProfiling", |v| {
                check_one_of(v, value, &["Enabled", "Disabled"], false)
            });
        }
        if let Some(value) = &self.route_source {
            v.field("routeSource", |v| {
                check_one_of(v, value, &["WorkloadIPs", "CalicoIPAM"], true)
            });
        }
        if let Some(value) = &self.ipv4_normal_route_priority {
            v.field("ipv4NormalRoutePriority", |v| {
                check_range(v, *value, 1, 2147483646)
            });
        }
        if let Some(value) = &self.ipv4_elevated_route_priority {
            v.field("ipv4ElevatedRoutePriority", |v| {
                check_range(v, *value, 1, 2147483646)
            });
        }
        if let Some(value) = &self.ipv6_normal_route_priority {
            v.field("ipv6NormalRoutePriority", |v| {
                check_range(v, *value, 1, 2147483646)
            });
        }
        if let Some(value) = &self.ipv6_elevated_route_priority {
            v.field("ipv6ElevatedRoutePriority", |v| {
                check_range(v, *value, 1, 2147483646)
            });
        }
        if let Some(value) = &self.live_migration_route_convergence_time {
            v.field("liveMigrationRouteConvergenceTime", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.wireguard_listening_port {
            v.field("wireguardListeningPort", |v| {
                check_range(v, *value, 1, 65535)
            });
        }
        if let Some(value) = &self.wireguard_listening_port_v6 {
            v.field("wireguardListeningPortV6", |v| {
                check_range(v, *value, 1, 65535)
            });
        }
        if let Some(value) = &self.wireguard_routing_rule_priority {
            v.field("wireguardRoutingRulePriority", |v| {
                check_range(v, *value, 1, 32765)
            });
        }
        if let Some(value) = &self.wireguard_interface_name {
            v.field("wireguardInterfaceName", |v| {
                v.check(check_interface_name(value))
            });
        }
        if let Some(value) = &self.wireguard_interface_name_v6 {
            v.field("wireguardInterfaceNameV6", |v| {
                v.check(check_interface_name(value))
            });
        }
        if let Some(value) = &self.wireguard_keep_alive {
            v.field("wireguardKeepAlive", |v| check_duration(v, value));
        }
        if let Some(value) = &self.service_loop_prevention {
            v.field("serviceLoopPrevention", |v| {
                check_one_of(v, value, &["Drop", "Reject", "Disabled"], true)
            });
        }
        if let Some(value) = &self.workload_source_spoofing {
            v.field("workloadSourceSpoofing", |v| {
                check_one_of(v, value, &["Disabled", "Any"], true)
            });
        }
        if let Some(value) = &self.local_subnet_l2_reachability_refresh_interval {
            v.field("localSubnetL2ReachabilityRefreshInterval", |v| {
                check_duration(v, value)
            });
        }
        if let Some(value) = &self.go_gc_threshold {
            v.field("goGCThreshold", |v| check_range(v, *value, -1, i64::MAX));
        }
        if let Some(value) = &self.go_memory_limit_mb {
            v.field("goMemoryLimitMB", |v| check_range(v, *value, -1, i64::MAX));
        }
        if let Some(value) = &self.go_max_procs {
            v.field("goMaxProcs", |v| check_range(v, *value, -1, i64::MAX));
        }
        if let Some(value) = &self.bpf_maglev_max_endpoints_per_service {
            v.field("bpfMaglevMaxEndpointsPerService", |v| {
                check_range(v, *value, 1, 3000)
            });
        }
        if let Some(value) = &self.bpf_maglev_max_services {
            v.field("bpfMaglevMaxServices", |v| check_range(v, *value, 1, 3000));
        }
        self.validate_cross_field(v);
    }
}

impl FelixConfigurationSpec {
    fn validate_cross_field(&self, v: &mut Validator) {
        if let Some(selector) = &self.node_selector {
            v.field("nodeSelector", |v| check_selector_field(v, selector));
        }
        for (name, ports) in [
            (
                "failsafeInboundHostPorts",
                &self.failsafe_inbound_host_ports,
            ),
            (
                "failsafeOutboundHostPorts",
                &self.failsafe_outbound_host_ports,
            ),
        ] {
            if let Some(ports) = ports {
                v.field(name, |v| v.each(ports, |v, port| port.validate(v)));
            }
        }
        v.field("healthTimeoutOverrides", |v| {
            v.each(&self.health_timeout_overrides, |v, o| o.validate(v))
        });
        if let Some(ranges) = &self.kube_node_port_ranges {
            v.field("kubeNodePortRanges", |v| {
                if ranges.len() > 7 {
                    v.error(format!(
                        "at most 7 node port ranges are allowed, found {}",
                        ranges.len()
                    ));
                }
                v.each(ranges, check_port_range);
            });
        }
        for (name, port) in [
            ("natPortRange", &self.nat_port_range),
            ("bpfPSNATPorts", &self.bpf_psnat_ports),
        ] {
            if let Some(port) = port {
                v.field(name, |v| check_port_range(v, port));
            }
        }
        for (name, address, family) in [
            ("natOutgoingAddress", &self.nat_outgoing_address, Family::V4),
            (
                "deviceRouteSourceAddress",
                &self.device_route_source_address,
                Family::V4,
            ),
            (
                "deviceRouteSourceAddressIPv6",
                &self.device_route_source_address_ipv6,
                Family::V6,
            ),
        ] {
            if let Some(address) = address.as_deref().filter(|a| !a.is_empty()) {
                v.field(name, |v| check_ip(v, address, family));
            }
        }
        if let Some(cidrs) = &self.external_nodes_cidr_list {
            v.field("externalNodesList", |v| {
                v.each(cidrs, |v, cidr| check_cidr(v, cidr, Family::V4))
            });
        }
        if let Some(region) = self.openstack_region.as_deref().filter(|r| !r.is_empty()) {
            v.field("openstackRegion", |v| {
                // The region becomes part of a namespace name `openstack-region-<region>`.
                if region.len() > 63 - "openstack-region-".len() {
                    v.error(format!(
                        "region {region:?} is too long (at most 46 characters)"
                    ));
                } else {
                    v.check(check_dns1123_label(region));
                }
            });
        }
        if self.route_table_range.is_some() && self.route_table_ranges.is_some() {
            v.field("routeTableRanges", |v| {
                v.error("routeTableRange and routeTableRanges cannot both be set")
            });
        }
        if let Some(range) = &self.route_table_range {
            v.field("routeTableRange", |v| {
                if !(range.min >= 1 && range.max >= range.min && range.max <= 250) {
                    v.error(format!(
                        "{}-{} is not a range of route table indices within 1..250",
                        range.min, range.max
                    ));
                }
            });
        }
        if let Some(ranges) = &self.route_table_ranges {
            v.field("routeTableRanges", |v| {
                let mut tables: i64 = 0;
                v.each(ranges, |v, range| {
                    if range.min < 1 {
                        v.field("min", |v| v.error("route table indices start at 1"));
                    }
                    if range.min > range.max {
                        v.error(format!(
                            "min {} is greater than max {}",
                            range.min, range.max
                        ));
                    }
                    if range.max > i64::from(u32::MAX) {
                        v.field("max", |v| {
                            v.error(format!(
                                "{} is above the highest table index 4294967295",
                                range.max
                            ))
                        });
                    }
                    tables += (range.max - range.min + 1).max(0);
                });
                if tables > 0xffff {
                    v.error(format!(
                        "the ranges designate {tables} tables; at most 65535 are allowed"
                    ));
                }
            });
        }
        v.nested("bpfConntrackTimeouts", &self.bpf_conntrack_timeouts);
        v.nested("istioDSCPMark", &self.istio_dscp_mark);
    }
}

fn check_port_range(v: &mut Validator, port: &Port) {
    if port.is_named() {
        v.error(format!(
            "{port} is a named port; only numbers and ranges are allowed here"
        ));
    } else {
        v.check(port.check());
    }
}

/// One of `allowed` (case-insensitively when `any_case`); empty is allowed
/// and means "unset".
fn check_one_of(v: &mut Validator, value: &str, allowed: &[&str], any_case: bool) {
    let ok = value.is_empty()
        || allowed.iter().any(|a| {
            if any_case {
                a.eq_ignore_ascii_case(value)
            } else {
                *a == value
            }
        });
    if !ok {
        v.error(format!("{value:?} is not one of {}", allowed.join(", ")));
    }
}

/// Up to `max` characters of `[a-zA-Z0-9:._+-]` (host names, interface filters).
fn check_token(v: &mut Validator, value: &str, max: usize) {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '+' | '-'));
    if !ok {
        v.error(format!(
            "{value:?} must be 1-{max} characters of letters, digits, ':', '.', '_', '+' or '-'"
        ));
    }
}

fn check_log_prefix(v: &mut Validator, value: &str) {
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | ':' | ' ' | '/' | '_' | '-'))
    {
        v.error(format!(
            "{value:?} may only contain letters, digits and % : / _ - and spaces"
        ));
    }
}

/// `N/second`, `N/minute`, `N/hour` or `N/day` with N in 1–9999.
fn check_rate_limit(v: &mut Validator, value: &str) {
    let ok = value.split_once('/').is_some_and(|(n, unit)| {
        !n.is_empty()
            && n.len() <= 4
            && !n.starts_with('0')
            && n.chars().all(|c| c.is_ascii_digit())
            && matches!(unit, "second" | "minute" | "hour" | "day")
    });
    if !ok {
        v.error(format!(
            "{value:?} is not a rate such as 10/second (1-9999 per second, minute, hour or day)"
        ));
    }
}

/// `key=value,key=value` with keys of `[a-zA-Z0-9_-]`.
fn check_key_value_list(v: &mut Validator, value: &str) {
    for item in value.split(',').filter(|i| !i.is_empty()) {
        let ok = item.split_once('=').is_some_and(|(k, val)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                && !val.contains('=')
        });
        if !ok {
            v.error(format!("{item:?} is not a key=value pair"));
        }
    }
}
