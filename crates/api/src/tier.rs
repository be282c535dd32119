//! Calico's `Tier`: an ordered group of policies with a default action.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Action, check_dns1123_label};
use crate::object::{CALICO_API_VERSION, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

/// Tiers whose order and default action Calico fixes:
/// (name, order, default action).
pub const WELL_KNOWN_TIERS: [(&str, f64, Action); 3] = [
    ("kube-admin", 1_000.0, Action::Pass),
    ("default", 1_000_000.0, Action::Deny),
    ("kube-baseline", 10_000_000.0, Action::Pass),
];

/// Spec of a Calico `Tier`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierSpec {
    /// Order among tiers: lower applies first; none means last.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::common::serialize_order"
    )]
    pub order: Option<f64>,
    /// What happens to traffic that a policy of the tier selects but no rule
    /// matches: `Deny` (default) or `Pass` to the next tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

/// Status of a `Tier`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierStatus {
    /// Conditions reported by the tier controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Calico `Tier`.
pub type Tier = Object<TierSpec>;

fn well_known(name: &str) -> Option<(f64, Action)> {
    WELL_KNOWN_TIERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, order, action)| (*order, *action))
}

impl Validate for TierSpec {
    fn validate(&self, v: &mut Validator) {
        if let Some(order) = self.order
            && !order.is_finite()
        {
            v.field("order", |v| v.error("order must be a finite number"));
        }
        if let Some(action) = self.default_action
            && !matches!(action, Action::Deny | Action::Pass)
        {
            v.field("defaultAction", |v| {
                v.error(format!(
                    "defaultAction {action:?} is invalid: must be Deny or Pass"
                ))
            });
        }
    }
}

impl Spec for TierSpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "Tier";
    const PLURAL: &'static str = "tiers";
    const NAMESPACED: bool = false;
    type Status = TierStatus;

    /// `defaultAction` defaults to `Deny`. The well-known tiers get the
    /// order and action Calico requires of them when the manifest omits them
    /// (Calico itself rejects such a manifest).
    fn apply_defaults(&mut self, meta: &ObjectMeta) {
        let fixed = well_known(&meta.name);
        if self.order.is_none() {
            self.order = fixed.map(|(order, _)| order);
        }
        if self.default_action.is_none() {
            self.default_action = Some(fixed.map_or(Action::Deny, |(_, action)| action));
        }
    }

    fn validate_with_meta(&self, meta: &ObjectMeta, v: &mut Validator) {
        let Some((order, action)) = well_known(&meta.name) else {
            return;
        };
        v.field("spec", |v| {
            if self.order != Some(order) {
                v.field("order", |v| {
                    v.error(format!("the {:?} tier's order must be {order}", meta.name))
                });
            }
            if self.default_action != Some(action) {
                v.field("defaultAction", |v| {
                    v.error(format!(
                        "the {:?} tier's defaultAction must be {action:?}",
                        meta.name
                    ))
                });
            }
        });
    }

    /// Tier names are DNS-1123 labels (no dots): they appear inside policy names and labels.
    fn validate_name(name: &str, v: &mut Validator) {
        v.check(check_dns1123_label(name));
    }
}
