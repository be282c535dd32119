//! The "endpoint programmed" contract between felix-rs and the CNI plugin.
//!
//! Twill fails closed: a new pod's interface drops everything until felix-rs
//! has programmed its policy, and CNI ADD returns only then. felix-rs says
//! so with one small file per local WorkloadEndpoint in a node-local
//! directory (as Calico's `endpoint_status_dir`), written atomically
//! (temporary file + rename) after the nft transaction that programmed the
//! endpoint succeeded, and removed when the endpoint is gone. The CNI plugin
//! waits for the file of the endpoint it wrote to carry that write's
//! revision or a later one.
//!
//! Node-local files, not datastore writes: reporting must not add a datastore
//! write per pod, and a node's status only matters on that node.

use serde::{Deserialize, Serialize};

/// Where felix-rs writes endpoint status files by default.
pub const DEFAULT_ENDPOINT_STATUS_DIR: &str = "/var/run/twill/endpoint-status";

/// Where felix-rs publishes the MTU pods should use (the host MTU minus any
/// encapsulation overhead), one decimal number; twill-cni reads it when its
/// configuration sets no `mtu` (Calico's `/var/lib/calico/mtu`).
pub const DEFAULT_MTU_FILE: &str = "/var/lib/twill/mtu";

/// What felix-rs reports about one local WorkloadEndpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointStatus {
    /// The WorkloadEndpoint's namespace.
    pub namespace: String,
    /// The WorkloadEndpoint's name.
    pub name: String,
    /// The container the endpoint belongs to (`spec.containerID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The datastore revision of the WorkloadEndpoint that was programmed.
    pub revision: u64,
}

/// The file name (inside the status directory) of an endpoint's status:
/// `<namespace>.<name>.json`. Namespaces are DNS labels (no dot), so the
/// first dot separates them from the name.
pub fn endpoint_status_file_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_are_named_by_namespace_and_endpoint() {
        assert_eq!(
            endpoint_status_file_name("frontend", "node1-k8s-web--0-eth0"),
            "frontend.node1-k8s-web--0-eth0.json"
        );
    }

    #[test]
    fn status_round_trips_as_json() {
        let status = EndpointStatus {
            namespace: "frontend".into(),
            name: "node1-k8s-web-eth0".into(),
            container_id: Some("abc".into()),
            revision: 42,
        };
        let text = serde_json::to_string(&status).expect("serializes");
        assert!(text.contains("\"containerId\":\"abc\""), "{text}");
        assert_eq!(
            serde_json::from_str::<EndpointStatus>(&text).expect("parses"),
            status
        );
    }
}
