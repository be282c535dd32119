//! Calico's `NetworkSet` (namespaced) and `GlobalNetworkSet`: named sets of
//! CIDRs that policy selectors can match by label.
//!
//! Calico Enterprise's `allowedEgressDomains` is not part of Calico's open
//! source API and is not accepted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::parse_cidr;
use crate::object::{CALICO_API_VERSION, NoStatus, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

/// A label Calico reserves for its own use on network sets.
const RESERVED_NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

/// Spec of a Calico `NetworkSet`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSetSpec {
    /// CIDRs (a bare IP is a /32 or /128; host bits are allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

/// Spec of a Calico `GlobalNetworkSet`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GlobalNetworkSetSpec {
    /// CIDRs (a bare IP is a /32 or /128; host bits are allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

/// A Calico `NetworkSet`.
pub type NetworkSet = Object<NetworkSetSpec>;
/// A Calico `GlobalNetworkSet`.
pub type GlobalNetworkSet = Object<GlobalNetworkSetSpec>;

fn validate_nets(nets: &[String], v: &mut Validator) {
    v.field("nets", |v| {
        v.each(nets, |v, net| v.check(parse_cidr(net).map(|_| ())))
    });
}

fn validate_reserved_label(meta: &ObjectMeta, v: &mut Validator) {
    if meta.labels.contains_key(RESERVED_NAMESPACE_LABEL) {
        v.field("metadata", |v| {
            v.field("labels", |v| {
                v.key(RESERVED_NAMESPACE_LABEL, |v| {
                    v.error("projectcalico.org/namespace is reserved and cannot be set on a network set")
                })
            })
        });
    }
}

impl Validate for NetworkSetSpec {
    fn validate(&self, v: &mut Validator) {
        validate_nets(&self.nets, v);
    }
}

impl Validate for GlobalNetworkSetSpec {
    fn validate(&self, v: &mut Validator) {
        validate_nets(&self.nets, v);
    }
}

impl Spec for NetworkSetSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "NetworkSet";
    const PLURAL: &'static str = "networksets";
    const SHORT_NAMES: &'static [&'static str] = &["netset"];
    const NAMESPACED: bool = true;
    type Status = NoStatus;

    fn validate_with_meta(&self, meta: &ObjectMeta, v: &mut Validator) {
        validate_reserved_label(meta, v);
    }
}

impl Spec for GlobalNetworkSetSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "GlobalNetworkSet";
    const PLURAL: &'static str = "globalnetworksets";
    const SHORT_NAMES: &'static [&'static str] = &["gnetset"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn validate_with_meta(&self, meta: &ObjectMeta, v: &mut Validator) {
        validate_reserved_label(meta, v);
    }
}
