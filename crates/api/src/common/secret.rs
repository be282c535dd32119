//! References to Kubernetes Secrets.

use crate::validate::{Validate, Validator};

/// A reference to a key of a Kubernetes Secret.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name (in the namespace Twill runs in).
    #[serde(default)]
    pub name: String,
    /// The key within the Secret.
    #[serde(default)]
    pub key: String,
    /// Whether a missing Secret or key is acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Validate for SecretKeySelector {
    fn validate(&self, v: &mut Validator) {
        if self.name.is_empty() {
            v.field("name", |v| v.error("secret name is required"));
        }
        if self.key.is_empty() {
            v.field("key", |v| v.error("secret key is required"));
        }
    }
}
