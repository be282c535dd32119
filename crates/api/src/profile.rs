//! Calico's `Profile`: rules and labels that endpoints inherit by naming
//! the profile (Kubernetes namespaces and service accounts become profiles).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Direction, PolicyScope, Rule, validate_labels, validate_rules};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, Spec};
use crate::validate::{Validate, Validator};

/// Spec of a Calico `Profile`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileSpec {
    /// Ingress rules of endpoints with this profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub ingress: Vec<Rule>,
    /// Egress rules of endpoints with this profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub egress: Vec<Rule>,
    /// Labels added to every endpoint with this profile.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

/// A Calico `Profile`.
pub type Profile = Object<ProfileSpec>;

impl Validate for ProfileSpec {
    fn validate(&self, v: &mut Validator) {
        v.field("ingress", |v| {
            validate_rules(&self.ingress, Direction::Ingress, PolicyScope::Global, v)
        });
        v.field("egress", |v| {
            validate_rules(&self.egress, Direction::Egress, PolicyScope::Global, v)
        });
        v.field("labelsToApply", |v| {
            validate_labels(&self.labels_to_apply, v)
        });
    }
}

impl Spec for ProfileSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "Profile";
    const PLURAL: &'static str = "profiles";
    const SHORT_NAMES: &'static [&'static str] = &["pro", "pros"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;
}
