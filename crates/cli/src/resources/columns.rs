//! The table columns of `twill get`, per kind: calicoctl's headings and
//! values (and kubectl's for Kubernetes' NetworkPolicy), read from the
//! resource's JSON document so that names match the manifests.

use serde_json::Value;
use twill_api::object::CALICO_API_VERSION;

/// How a column turns the fields it reads into text.
#[derive(Debug, Clone, Copy)]
enum Render {
    /// The first field present, as text (lists joined with `,`).
    First,
    /// The length of the first field present (0 when absent).
    Count,
    /// As `First`, cut to 80 characters (calicoctl's `joinAndTruncate`).
    Truncated,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The heading.
    pub heading: &'static str,
    /// JSON pointers into the document; the first present is shown.
    fields: &'static [&'static str],
    /// Shown when no field is present.
    missing: &'static str,
    render: Render,
    /// Only with `-o wide`.
    pub wide_only: bool,
}

const fn col(heading: &'static str, fields: &'static [&'static str]) -> Column {
    Column {
        heading,
        fields,
        missing: "",
        render: Render::First,
        wide_only: false,
    }
}

impl Column {
    const fn or(mut self, missing: &'static str) -> Self {
        self.missing = missing;
        self
    }

    const fn wide(mut self) -> Self {
        self.wide_only = true;
        self
    }

    const fn count(mut self) -> Self {
        self.render = Render::Count;
        self
    }

    const fn truncated(mut self) -> Self {
        self.render = Render::Truncated;
        self
    }

    /// The cell for one resource document.
    pub fn cell(&self, document: &Value) -> String {
        let found = self
            .fields
            .iter()
            .filter_map(|p| document.pointer(p))
            .find(|v| !v.is_null() && v.as_str() != Some(""));
        match (self.render, found) {
            (Render::Count, v) => v.and_then(Value::as_array).map_or(0, Vec::len).to_string(),
            (_, None) => self.missing.to_string(),
            (Render::First, Some(v)) => text(v),
            (Render::Truncated, Some(v)) => {
                let t = text(v);
                if t.chars().count() > 80 {
                    let cut: String = t.chars().take(77).collect();
                    format!("{cut}...")
                } else {
                    t
                }
            }
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

const NAME: Column = col("NAME", &["/metadata/name"]);

/// The columns for a kind (without NAMESPACE, which the caller adds for
/// namespaced kinds), wide-only ones included.
pub fn for_kind(api_version: &str, kind: &str) -> Vec<Column> {
    let policy = [
        NAME,
        col("TIER", &["/spec/tier"]).or("default"),
        col("ORDER", &["/spec/order"]).wide(),
        col("SELECTOR", &["/spec/selector"]).wide(),
    ];
    if api_version != CALICO_API_VERSION {
        return match kind {
            "NetworkPolicy" => vec![
                NAME,
                col("POD-SELECTOR", &["/spec/podSelector/matchLabels"]).or("<none>"),
                col("POLICY-TYPES", &["/spec/policyTypes"]).wide(),
            ],
            _ => vec![NAME],
        };
    }
    match kind {
        "NetworkPolicy"
        | "GlobalNetworkPolicy"
        | "StagedNetworkPolicy"
        | "StagedGlobalNetworkPolicy" => policy.to_vec(),
        "Tier" => vec![NAME, col("ORDER", &["/spec/order"])],
        "IPPool" => vec![
            NAME,
            col("CIDR", &["/spec/cidr"]),
            col("NAT", &["/spec/natOutgoing"]).or("false").wide(),
            col("IPIPMODE", &["/spec/ipipMode"]).or("Never").wide(),
            col("VXLANMODE", &["/spec/vxlanMode"]).or("Never").wide(),
            col("DISABLED", &["/spec/disabled"]).or("false").wide(),
            col("DISABLEBGPEXPORT", &["/spec/disableBGPExport"])
                .or("false")
                .wide(),
            col("SELECTOR", &["/spec/nodeSelector"]).or("all()"),
            col("ASSIGNMENTMODE", &["/spec/assignmentMode"])
                .or("Automatic")
                .wide(),
        ],
        "IPReservation" => vec![
            NAME,
            col("CIDRS", &["/spec/reservedCIDRs"]).truncated().wide(),
        ],
        "IPAMConfiguration" => vec![
            NAME,
            col("STRICTAFFINITY", &["/spec/strictAffinity"]).or("false"),
            col("AUTOALLOCATEBLOCKS", &["/spec/autoAllocateBlocks"]).or("true"),
            col("MAXBLOCKSPERHOST", &["/spec/maxBlocksPerHost"])
                .or("0")
                .wide(),
        ],
        "Node" => vec![
            NAME,
            col("ASN", &["/spec/bgp/asNumber"]).or("(default)").wide(),
            col("IPV4", &["/spec/bgp/ipv4Address"]).wide(),
            col("IPV6", &["/spec/bgp/ipv6Address"]).wide(),
        ],
        "BGPPeer" => vec![
            NAME,
            col("PEERIP", &["/spec/peerIP"]),
            col("NODE", &["/spec/node", "/spec/nodeSelector"]).or("(global)"),
            col("ASN", &["/spec/asNumber"]),
        ],
        "BGPConfiguration" => vec![
            NAME,
            col("LOGSEVERITY", &["/spec/logSeverityScreen"]),
            col("MESHENABLED", &["/spec/nodeToNodeMeshEnabled"]).or("-"),
            col("ASNUMBER", &["/spec/asNumber"]).or("-"),
        ],
        "BGPFilter" => vec![
            NAME,
            col("NUMEXPORTV4", &["/spec/exportV4"]).count(),
            col("NUMIMPORTV4", &["/spec/importV4"]).count(),
            col("NUMEXPORTV6", &["/spec/exportV6"]).count(),
            col("NUMIMPORTV6", &["/spec/importV6"]).count(),
        ],
        "ClusterInformation" => vec![
            NAME,
            col("CLUSTERGUID", &["/spec/clusterGUID"]),
            col("CLUSTERTYPE", &["/spec/clusterType"]),
            col("CALICOVERSION", &["/spec/calicoVersion"]),
            col("DATASTOREREADY", &["/spec/datastoreReady"]),
        ],
        "HostEndpoint" => vec![
            NAME,
            col("NODE", &["/spec/node"]),
            col("INTERFACE", &["/spec/interfaceName"]).wide(),
            col("IPS", &["/spec/expectedIPs"]).wide(),
            col("PROFILES", &["/spec/profiles"]).wide(),
        ],
        "WorkloadEndpoint" => vec![
            col("NAME", &["/metadata/name"]).wide(),
            col("WORKLOAD", &["/spec/workload", "/spec/pod"]),
            col("NODE", &["/spec/node"]),
            col("NETWORKS", &["/spec/ipNetworks"]),
            col("INTERFACE", &["/spec/interfaceName"]),
            col("PROFILES", &["/spec/profiles"]).wide(),
            col("NATS", &["/spec/ipNATs"]).wide(),
        ],
        "NetworkSet" | "GlobalNetworkSet" => {
            vec![NAME, col("NETS", &["/spec/nets"]).truncated().wide()]
        }
        "Profile" => vec![NAME, col("LABELS", &["/spec/labelsToApply"]).wide()],
        _ => vec![NAME],
    }
}
