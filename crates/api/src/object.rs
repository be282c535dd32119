//! The envelope every resource shares: `apiVersion`, `kind`, `metadata`, `spec`.
//!
//! Each kind is `Object<XSpec>` where `XSpec: Spec` names the kind. The loader
//! checks `apiVersion` and `kind` and then deserializes the rest into the
//! typed object, so `Object` itself only carries `metadata`, `spec` and
//! (where the kind has one) `status`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::common::{
    check_dns1123_label, check_dns1123_subdomain, validate_annotations, validate_labels,
};
use crate::validate::{Validate, Validator, Violation};

/// The API group and version of Calico's resources.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";
/// The API group and version of Tigera's operator resources.
pub const OPERATOR_API_VERSION: &str = "operator.tigera.io/v1";
/// The namespace a namespaced resource gets when its manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What every kind's spec type says about its kind.
pub trait Spec:
    Serialize + DeserializeOwned + JsonSchema + Validate + Clone + PartialEq + Default + std::fmt::Debug
{
    /// `apiVersion`, e.g. `projectcalico.org/v3`.
    const API_VERSION: &'static str;
    /// `kind`, e.g. `GlobalNetworkPolicy`.
    const KIND: &'static str;
    /// Plural resource name used in CRDs and URLs, e.g. `globalnetworkpolicies`.
    const PLURAL: &'static str;
    /// Short names for the command line, e.g. `["gnp"]`.
    const SHORT_NAMES: &'static [&'static str] = &[];
    /// Whether the kind lives in a namespace.
    const NAMESPACED: bool;
    /// The kind under which a datastore keeps objects of this kind: `KIND`,
    /// qualified with the API group where two groups share a kind name
    /// (`NetworkPolicy.networking.k8s.io` beside Calico's `NetworkPolicy`).
    const STORE_KIND: &'static str = Self::KIND;
    /// The status type (use [`NoStatus`] for kinds without one).
    type Status: Serialize
        + DeserializeOwned
        + JsonSchema
        + Clone
        + PartialEq
        + std::fmt::Debug
        + Default;

    /// Fills in Calico's defaults that are not expressible as `#[serde(default)]`
    /// (e.g. defaults that depend on other fields). Called by the loader after
    /// deserialization and before validation.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {}

    /// Checks rules that involve the metadata as well as the spec (e.g. a
    /// policy name's tier prefix). Called after [`Validate::validate`].
    fn validate_with_meta(&self, _meta: &ObjectMeta, _v: &mut Validator) {}

    /// Checks `metadata.name`. The default is Kubernetes' rule for most
    /// names (a DNS-1123 subdomain); kinds with stricter rules override it.
    fn validate_name(name: &str, v: &mut Validator) {
        v.check(check_dns1123_subdomain(name));
    }

    /// Whether the loader must call [`Spec::find_unknown_fields`] (it keeps a
    /// copy of the input spec to do so).
    const FINDS_UNKNOWN_FIELDS: bool = false;

    /// Reports fields of the input `spec` that deserialization ignored.
    /// Twill's own types reject unknown fields while deserializing
    /// (`deny_unknown_fields`); kinds built on types that silently ignore
    /// them (Kubernetes' own) override this to compare `input` with `self`.
    fn find_unknown_fields(&self, _input: &serde_json::Value, _v: &mut Validator) {}
}

/// A status for kinds that have none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoStatus {}

/// A typed resource of kind `S::KIND`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "S: Spec")]
pub struct Object<S: Spec> {
    /// Name, namespace, labels, annotations and server-set fields.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    /// An omitted spec is the kind's default spec (validation then reports
    /// any required field).
    #[serde(default)]
    pub spec: S,
    /// What the system reports; ignored on input by Twill's own components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<S::Status>,
}

impl<S: Spec> Object<S> {
    /// A new object with the given name (and, for namespaced kinds, namespace).
    pub fn new(name: impl Into<String>, namespace: Option<&str>, spec: S) -> Self {
        Self {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: namespace.map(str::to_string),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The resource's namespace (`None` for cluster-scoped kinds).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// Fills in defaults: the `default` namespace for a namespaced kind
    /// without one, then the kind's own defaults ([`Spec::apply_defaults`]).
    pub fn apply_defaults(&mut self) {
        if S::NAMESPACED && self.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            self.metadata.namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
        self.spec.apply_defaults(&self.metadata);
    }

    /// Every violation of the metadata rules (name, namespace, labels,
    /// annotations), of the spec, and of rules that involve both.
    pub fn validate(&self) -> Vec<Violation> {
        let mut v = Validator::new();
        v.field("metadata", |v| {
            v.field("name", |v| {
                if self.metadata.name.is_empty() {
                    v.error("name is required");
                } else {
                    S::validate_name(&self.metadata.name, v);
                }
            });
            match (&self.metadata.namespace, S::NAMESPACED) {
                (Some(ns), true) => v.field("namespace", |v| v.check(check_dns1123_label(ns))),
                (Some(_), false) => v.field("namespace", |v| {
                    v.error(format!(
                        "{} is cluster-scoped and takes no namespace",
                        S::KIND
                    ))
                }),
                (None, _) => {}
            }
            v.field("labels", |v| validate_labels(&self.metadata.labels, v));
            v.field("annotations", |v| {
                validate_annotations(&self.metadata.annotations, v)
            });
        });
        v.nested("spec", &self.spec);
        self.spec.validate_with_meta(&self.metadata, &mut v);
        v.finish()
    }
}

/// Kubernetes object metadata, with every field of `metadata.k8s.io/v1`
/// `ObjectMeta` so that `kubectl get -o yaml` output loads unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The resource's name, unique per kind (and namespace).
    #[serde(default)]
    pub name: String,
    /// Prefix for a server-generated name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Namespace of namespaced kinds; the loader sets `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, matched by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Opaque revision set by the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Unique ID set by the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Generation set by the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Creation time (RFC 3339) set by the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Deletion time (RFC 3339) set by the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Grace period for deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Finalizers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Owners, as Kubernetes records them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub owner_references: Vec<serde_json::Value>,
    /// Server-side apply bookkeeping, kept opaque.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub managed_fields: Vec<serde_json::Value>,
    /// Legacy self link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
}
