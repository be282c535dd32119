//! What the watch threads hand the owner task: datastore objects decoded
//! and converted where they were listed, so the owner only indexes them.

use twill_api::felix::FelixConfigurationSpec;
use twill_api::{Resource, Spec};
use twill_store::{Key, Object, TextObject};

use crate::graph::Prepared;
use crate::model::Update;

/// One datastore object, decoded by the watch task.
#[derive(Debug)]
pub struct Item {
    /// Its key.
    pub key: Key,
    /// Its revision.
    pub revision: u64,
    /// What the owner task needs of the decoded resource, or why it does
    /// not decode.
    pub resource: Result<Decoded, String>,
}

impl Item {
    fn decode(object: Object) -> Self {
        Self {
            resource: decode(object.value),
            key: object.key,
            revision: object.revision.0,
        }
    }

    /// Decodes and converts an object listed as text; its text and JSON
    /// value are dropped here. A body that is not JSON is an object that
    /// does not decode.
    pub(super) fn decode_text(object: TextObject) -> Self {
        let resource = serde_json::from_str(&object.body)
            .map_err(|error| format!("the stored body is not JSON: {error}"))
            .and_then(decode);
        Self {
            key: object.key,
            revision: object.revision.0,
            resource,
        }
    }
}

/// A resource's JSON decoded and converted, or why it does not decode.
fn decode(value: serde_json::Value) -> Result<Decoded, String> {
    Resource::from_json(value)
        .map(Decoded::from_resource)
        .map_err(|violations| {
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// What the owner task keeps of a decoded resource: for the graph, the
/// update already converted (on the watch thread, in parallel with the
/// owner); for configuration, the spec. The resource itself is dropped
/// where it was decoded.
#[derive(Debug)]
pub enum Decoded {
    /// A resource the calculation graph takes.
    Graph {
        /// The update, converted.
        update: Prepared,
        /// For a WorkloadEndpoint, what its status file needs.
        endpoint: Option<EndpointFields>,
    },
    /// A FelixConfiguration.
    FelixConfiguration(Box<FelixConfigurationSpec>),
    /// An IP pool.
    IpPool(Box<twill_api::ippool::IPPoolSpec>),
    /// A kind felix-rs does not use.
    Ignored,
}

/// The fields of a WorkloadEndpoint the daemon itself reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFields {
    /// `spec.node`.
    pub node: String,
    /// `spec.containerID`.
    pub container_id: String,
    /// `spec.interfaceName`.
    pub interface: String,
}

impl Decoded {
    /// Converts a decoded resource.
    pub fn from_resource(resource: Resource) -> Self {
        let endpoint = match &resource {
            Resource::WorkloadEndpoint(wep) => Some(EndpointFields {
                node: wep.spec.node.clone(),
                container_id: wep.spec.container_id.clone(),
                interface: wep.spec.interface_name.clone(),
            }),
            Resource::FelixConfiguration(fc) => {
                return Decoded::FelixConfiguration(Box::new(fc.spec.clone()));
            }
            Resource::IPPool(pool) => return Decoded::IpPool(Box::new(pool.spec.clone())),
            _ => None,
        };
        match Update::from_resource(resource) {
            Some(update) => Decoded::Graph {
                update: Prepared::from(update),
                endpoint,
            },
            None => Decoded::Ignored,
        }
    }
}

/// What the child tasks tell the owner task.
#[derive(Debug)]
pub enum FelixMsg {
    /// The complete state of a kind: replaces what was known of it.
    Snapshot {
        /// The datastore kind.
        kind: &'static str,
        /// Every object of the kind.
        items: Vec<Item>,
    },
    /// An object was created or changed.
    Upserted {
        /// The datastore kind.
        kind: &'static str,
        /// The object.
        item: Item,
    },
    /// An object was deleted.
    Deleted {
        /// The datastore kind.
        kind: &'static str,
        /// Its key.
        key: Key,
    },
    /// A watch reported an error (it retries on its own).
    WatchError {
        /// The datastore kind.
        kind: &'static str,
        /// The error.
        error: String,
    },
}

impl twill_daemon::WatchMsg for FelixMsg {
    fn snapshot(kind: &'static str, items: Vec<Object>) -> Self {
        Self::Snapshot {
            kind,
            items: items.into_iter().map(Item::decode).collect(),
        }
    }

    fn upserted(kind: &'static str, object: Object) -> Self {
        Self::Upserted {
            kind,
            item: Item::decode(object),
        }
    }

    fn deleted(kind: &'static str, object: Object) -> Self {
        Self::Deleted {
            kind,
            key: object.key,
        }
    }

    fn watch_error(kind: &'static str, error: twill_store::Error) -> Self {
        Self::WatchError {
            kind,
            error: error.to_string(),
        }
    }
}

/// The update that removes an object of `kind` from the graph.
pub(super) fn deleted_update(kind: &str, key: &Key) -> Option<Update> {
    let namespace = || key.namespace.clone().unwrap_or_else(|| "default".into());
    let name = key.name.clone();
    use twill_api::endpoint::{HostEndpointSpec, WorkloadEndpointSpec};
    use twill_api::networkset::{GlobalNetworkSetSpec, NetworkSetSpec};
    use twill_api::policy::{GlobalNetworkPolicySpec, NetworkPolicySpec};
    Some(match kind {
        WorkloadEndpointSpec::STORE_KIND => Update::WorkloadEndpointDeleted {
            namespace: namespace(),
            name,
        },
        NetworkPolicySpec::STORE_KIND => Update::PolicyDeleted {
            namespace: namespace(),
            name,
        },
        GlobalNetworkPolicySpec::STORE_KIND => Update::GlobalPolicyDeleted { name },
        twill_api::k8s::KubernetesNetworkPolicySpec::STORE_KIND => {
            Update::KubernetesPolicyDeleted {
                namespace: namespace(),
                name,
            }
        }
        twill_api::tier::TierSpec::STORE_KIND => Update::TierDeleted { name },
        NetworkSetSpec::STORE_KIND => Update::NetworkSetDeleted {
            namespace: namespace(),
            name,
        },
        GlobalNetworkSetSpec::STORE_KIND => Update::GlobalNetworkSetDeleted { name },
        HostEndpointSpec::STORE_KIND => Update::HostEndpointDeleted { name },
        twill_api::profile::ProfileSpec::STORE_KIND => {
            if let Some(ns) = name.strip_prefix("kns.") {
                Update::NamespaceDeleted { name: ns.into() }
            } else if let Some((ns, sa)) = name.strip_prefix("ksa.").and_then(|r| r.split_once('.'))
            {
                Update::ServiceAccountDeleted {
                    namespace: ns.into(),
                    name: sa.into(),
                }
            } else {
                Update::ProfileDeleted { name }
            }
        }
        _ => return None,
    })
}
