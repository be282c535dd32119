//! IPAM state kinds: `IPAMBlock`, `BlockAffinity` and `IPAMHandle`, in the
//! shapes of Calico's `crd.projectcalico.org/v1` resources.
//!
//! Users do not write these: the IPAM allocator (the `twill-ipam` crate)
//! keeps them in the datastore. They are typed here so that the allocator,
//! the CLI (`twill ipam show|check`) and a Kubernetes backend share one shape,
//! and so that a Calico cluster's IPAM state reads unchanged.
//!
//! - An [`IPAMBlock`] is one block of a pool (a /26 by default), named after
//!   its CIDR (`10-244-0-0-26`). `allocations[ordinal]` is the index of the
//!   ordinal's entry in `attributes` (or null when free); `unallocated` is the
//!   FIFO queue of free ordinals; `sequenceNumber` moves forward on every
//!   write and `sequenceNumberForAllocation[ordinal]` records it at the time
//!   the ordinal was handed out, so that a release can prove it is about
//!   *this* allocation and not a later one of the same address.
//! - A [`BlockAffinity`] says that a node owns a block: `pending` while the
//!   node is claiming it, `confirmed` once the block exists with the node's
//!   affinity, `pendingDeletion` while it is being released.
//! - An [`IPAMHandle`] counts, per block, the addresses held under one handle
//!   (e.g. `k8s-pod-network.<containerID>`), so that a release by handle
//!   visits only those blocks.

use std::collections::BTreeMap;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::object::{NoStatus, Object, Spec};
use crate::validate::{Validate, Validator};

/// The API group and version of Calico's IPAM state kinds.
pub const CALICO_CRD_API_VERSION: &str = "crd.projectcalico.org/v1";

/// One block of addresses of an IP pool, optionally affine to a node.
pub type IPAMBlock = Object<IPAMBlockSpec>;
/// A node's claim on a block.
pub type BlockAffinity = Object<BlockAffinitySpec>;
/// The addresses held under one handle, counted per block.
pub type IPAMHandle = Object<IPAMHandleSpec>;

/// The spec of an [`IPAMBlock`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    /// The block's CIDR, e.g. `10.244.0.0/26`.
    pub cidr: String,
    /// `host:<node>` for a block affine to a node; absent for an unaffine block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// When the affinity was claimed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// Deprecated in Calico and ignored: `IPAMConfiguration.strictAffinity` rules.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Per ordinal: the index of its entry in `attributes`, or null when free.
    #[serde(default)]
    pub allocations: Vec<Option<u32>>,
    /// Free ordinals in the order they are handed out (released ones join the tail).
    #[serde(default)]
    pub unallocated: Vec<u32>,
    /// Metadata of the allocations (handle, pod, node, release time).
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Moves forward on every write of the block.
    #[serde(default)]
    pub sequence_number: u64,
    /// Per allocated ordinal (as a decimal string), the block's sequence
    /// number when the ordinal was handed out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    /// Soft-delete marker: the block is being deleted; readers ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The metadata of one allocation in an [`IPAMBlock`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationAttribute {
    /// The handle the address is held under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Free-form metadata: `node`, `pod`, `namespace`, `timestamp`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
    /// When the address was released (RFC 3339); it is not handed out again
    /// before the IPAM cooldown has passed.
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

impl IPAMBlockSpec {
    /// The block's network, when `cidr` parses.
    pub fn network(&self) -> Option<IpNet> {
        self.cidr.parse().ok()
    }

    /// The node this block is affine to, if any (`host:<node>`).
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }
}

impl Spec for IPAMBlockSpec {
    const API_VERSION: &'static str = CALICO_CRD_API_VERSION;
    const KIND: &'static str = "IPAMBlock";
    const PLURAL: &'static str = "ipamblocks";
    const SHORT_NAMES: &'static [&'static str] = &["ipamblk", "ipamblks"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

impl Validate for IPAMBlockSpec {
    fn validate(&self, v: &mut Validator) {
        let size = match self.network() {
            Some(net) if net.trunc() == net => {
                let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
                // Blocks are at most a /20 (IPv4) or a /116 (IPv6): 4096 ordinals.
                (host_bits <= 12).then(|| 1usize << host_bits)
            }
            _ => None,
        };
        v.field("cidr", |v| {
            if size.is_none() {
                v.error(format!(
                    "{:?} is not a masked block CIDR of at most 4096 addresses",
                    self.cidr
                ));
            }
        });
        let Some(size) = size else { return };
        v.field("allocations", |v| {
            if self.allocations.len() != size {
                v.error(format!(
                    "has {} entries, the block has {size} addresses",
                    self.allocations.len()
                ));
            }
            for (ordinal, entry) in self.allocations.iter().enumerate() {
                if let Some(index) = entry
                    && *index as usize >= self.attributes.len()
                {
                    v.index(ordinal, |v| {
                        v.error(format!("attribute index {index} is out of range"))
                    });
                }
            }
        });
        v.field("unallocated", |v| {
            for (i, ordinal) in self.unallocated.iter().enumerate() {
                let allocated = self
                    .allocations
                    .get(*ordinal as usize)
                    .is_none_or(Option::is_some);
                if allocated || self.unallocated[..i].contains(ordinal) {
                    v.index(i, |v| {
                        v.error(format!(
                            "ordinal {ordinal} is out of range, allocated or listed twice"
                        ))
                    });
                }
            }
        });
        if let Some(affinity) = &self.affinity {
            v.field("affinity", |v| {
                if !(affinity.starts_with("host:") || affinity.starts_with("virtual:")) {
                    v.error(format!(
                        "{affinity:?} is neither host:<node> nor virtual:<name>"
                    ));
                }
            });
        }
    }
}

/// The state of a [`BlockAffinity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BlockAffinityState {
    /// The node is claiming the block; the block may not exist yet.
    #[default]
    Pending,
    /// The block exists and is affine to the node.
    Confirmed,
    /// The affinity is being released.
    PendingDeletion,
}

/// The spec of a [`BlockAffinity`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlockAffinitySpec {
    /// Where the claim stands.
    pub state: BlockAffinityState,
    /// The node that owns (or claims) the block.
    pub node: String,
    /// The block's CIDR.
    pub cidr: String,
    /// `"true"` while the affinity is being deleted. A string, as in Calico
    /// (older releases wrote it as one).
    #[serde(default = "false_string")]
    pub deleted: String,
    /// `host` (the default) or `virtual`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

fn false_string() -> String {
    "false".to_string()
}

impl BlockAffinitySpec {
    /// Whether the affinity is marked as being deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.eq_ignore_ascii_case("true")
    }
}

impl Spec for BlockAffinitySpec {
    const API_VERSION: &'static str = CALICO_CRD_API_VERSION;
    const KIND: &'static str = "BlockAffinity";
    const PLURAL: &'static str = "blockaffinities";
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

impl Validate for BlockAffinitySpec {
    fn validate(&self, v: &mut Validator) {
        v.field("node", |v| {
            if self.node.is_empty() {
                v.error("node is required");
            }
        });
        v.field("cidr", |v| {
            if self.cidr.parse::<IpNet>().is_err() {
                v.error(format!("{:?} is not a valid CIDR", self.cidr));
            }
        });
        v.field("deleted", |v| {
            if !matches!(self.deleted.to_ascii_lowercase().as_str(), "true" | "false") {
                v.error(format!(
                    "{:?} is neither \"true\" nor \"false\"",
                    self.deleted
                ));
            }
        });
    }
}

/// The spec of an [`IPAMHandle`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IPAMHandleSpec {
    /// The handle, e.g. `k8s-pod-network.<containerID>`.
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Per block CIDR, how many addresses the handle holds in it.
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    /// Soft-delete marker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl IPAMHandleSpec {
    /// The number of addresses held under the handle.
    pub fn total(&self) -> u32 {
        self.block.values().sum()
    }
}

impl Spec for IPAMHandleSpec {
    const API_VERSION: &'static str = CALICO_CRD_API_VERSION;
    const KIND: &'static str = "IPAMHandle";
    const PLURAL: &'static str = "ipamhandles";
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}

impl Validate for IPAMHandleSpec {
    fn validate(&self, v: &mut Validator) {
        v.field("handleID", |v| {
            if self.handle_id.is_empty() {
                v.error("handleID is required");
            }
        });
        v.field("block", |v| {
            for cidr in self.block.keys() {
                if cidr.parse::<IpNet>().is_err() {
                    v.key(cidr, |v| v.error(format!("{cidr:?} is not a valid CIDR")));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations<T: Validate>(spec: &T) -> Vec<String> {
        let mut v = Validator::new();
        spec.validate(&mut v);
        v.finish().into_iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_calico_block_document_round_trips() {
        let json = serde_json::json!({
            "cidr": "10.0.0.0/30",
            "affinity": "host:node-1",
            "strictAffinity": false,
            "allocations": [0, null, null, null],
            "unallocated": [1, 2, 3],
            "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": {"node": "node-1"}}],
            "sequenceNumber": 3,
            "sequenceNumberForAllocation": {"0": 2}
        });
        let spec: IPAMBlockSpec = serde_json::from_value(json.clone()).expect("decodes");
        assert_eq!(spec.host(), Some("node-1"));
        assert!(violations(&spec).is_empty(), "{:?}", violations(&spec));
        assert_eq!(serde_json::to_value(&spec).expect("encodes"), json);
    }

    #[test]
    fn a_block_whose_free_list_names_an_allocated_ordinal_is_invalid() {
        let spec = IPAMBlockSpec {
            cidr: "10.0.0.0/31".into(),
            allocations: vec![Some(0), None],
            unallocated: vec![0, 1],
            attributes: vec![AllocationAttribute::default()],
            ..IPAMBlockSpec::default()
        };
        let found = violations(&spec);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("unallocated[0]"), "{found:?}");
    }

    #[test]
    fn affinity_deleted_is_a_string_as_in_calico() {
        let spec: BlockAffinitySpec = serde_json::from_value(serde_json::json!({
            "state": "pendingDeletion", "node": "n1", "cidr": "10.0.0.0/26", "deleted": "false"
        }))
        .expect("decodes");
        assert_eq!(spec.state, BlockAffinityState::PendingDeletion);
        assert!(!spec.is_deleted());
        assert!(violations(&spec).is_empty());
    }

    #[test]
    fn a_handle_counts_its_addresses_over_blocks() {
        let spec: IPAMHandleSpec = serde_json::from_value(serde_json::json!({
            "handleID": "h", "block": {"10.0.0.0/26": 1, "fd00::/122": 1}
        }))
        .expect("decodes");
        assert_eq!(spec.total(), 2);
    }
}
