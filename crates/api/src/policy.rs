//! Calico's `NetworkPolicy` and `GlobalNetworkPolicy`, and their staged
//! (what-if) variants `StagedNetworkPolicy` and `StagedGlobalNetworkPolicy`.
//!
//! Since Calico v3.32 a policy's name no longer carries its tier as a
//! prefix (`default.allow-dns` became `allow-dns`); Twill follows that:
//! names are a DNS-1123 label, optionally with one dot (the old
//! `<tier>.<name>` form still loads), as Calico's validator allows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Direction, PolicyScope, Rule, check_dns1123_label, check_dns1123_subdomain, check_selector,
    validate_rules,
};
use crate::object::{CALICO_API_VERSION, NoStatus, Object, ObjectMeta, Spec};
use crate::validate::{Validate, Validator};

/// The tier a policy without `tier` belongs to.
pub const DEFAULT_TIER: &str = "default";

/// Which traffic directions a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PolicyType {
    /// Traffic towards the selected endpoints.
    Ingress,
    /// Traffic from the selected endpoints.
    Egress,
}

/// Hints to the policy engine; they never change what a policy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PerformanceHint {
    /// Program the policy on every node, as if it matched a local endpoint.
    AssumeNeededOnEveryNode,
}

/// What a staged policy would do to its enforced counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum StagedAction {
    /// Create or replace the enforced policy with this spec.
    #[default]
    Set,
    /// Delete the enforced policy (the spec must then be empty but for its tier).
    Delete,
    /// Learn (reserved by Calico).
    Learn,
    /// Ignore (reserved by Calico).
    Ignore,
}

impl StagedAction {
    fn is_set(&self) -> bool {
        *self == Self::Set
    }
}

/// The fields every policy kind shares, borrowed for validation and defaulting.
struct Common<'a> {
    tier: &'a str,
    order: Option<f64>,
    selector: &'a str,
    service_account_selector: &'a str,
    ingress: &'a [Rule],
    egress: &'a [Rule],
    types: &'a [PolicyType],
    performance_hints: &'a [PerformanceHint],
}

/// Calico's default for `types`: `[Ingress]` without egress rules (even
/// without any rules), `[Egress]` with only egress rules, both with both.
pub fn default_policy_types(has_ingress: bool, has_egress: bool) -> Vec<PolicyType> {
    match (has_ingress, has_egress) {
        (_, false) => vec![PolicyType::Ingress],
        (false, true) => vec![PolicyType::Egress],
        (true, true) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

impl Common<'_> {
    fn validate(&self, scope: PolicyScope, v: &mut Validator) {
        if !self.tier.is_empty() {
            v.field("tier", |v| v.check(check_dns1123_label(self.tier)));
        }
        if let Some(order) = self.order
            && !order.is_finite()
        {
            v.field("order", |v| v.error("order must be a finite number"));
        }
        for (name, selector) in [
            ("selector", self.selector),
            ("serviceAccountSelector", self.service_account_selector),
        ] {
            validate_endpoint_selector(name, selector, v);
        }
        v.field("ingress", |v| {
            validate_rules(self.ingress, Direction::Ingress, scope, v)
        });
        v.field("egress", |v| {
            validate_rules(self.egress, Direction::Egress, scope, v)
        });
        v.field("types", |v| v.no_duplicates(self.types));
        v.field("performanceHints", |v| {
            v.no_duplicates(self.performance_hints)
        });
    }
}

fn validate_endpoint_selector(name: &'static str, selector: &str, v: &mut Validator) {
    if selector.is_empty() {
        return;
    }
    v.field(name, |v| {
        v.check(check_selector(selector));
        if selector.contains("global(") {
            v.error("global() can only be used in an entity rule's namespaceSelector");
        }
    });
}

/// Checks the `doNotTrack`/`preDNAT`/`applyOnForward` combination rules.
fn validate_untracked_and_pre_dnat(
    do_not_track: bool,
    pre_dnat: bool,
    apply_on_forward: bool,
    has_egress_rules: bool,
    types: &[PolicyType],
    v: &mut Validator,
) {
    if do_not_track && pre_dnat {
        v.field("preDNAT", |v| {
            v.error("preDNAT and doNotTrack cannot both be true")
        });
    }
    if pre_dnat && has_egress_rules {
        v.field("egress", |v| {
            v.error("a preDNAT policy cannot have egress rules")
        });
    }
    if pre_dnat && types.contains(&PolicyType::Egress) {
        v.field("types", |v| {
            v.error("a preDNAT policy cannot have the Egress type")
        });
    }
    if (do_not_track || pre_dnat) && !apply_on_forward {
        v.field("applyOnForward", |v| {
            v.error("applyOnForward must be true if either preDNAT or doNotTrack is true")
        });
    }
}

/// A namespaced policy name: a DNS-1123 label, optionally `<label>.<label>`,
/// or `knp.default.<subdomain>` / `ossg.default.<subdomain>` (Calico's names
/// for converted Kubernetes policies).
fn validate_namespaced_policy_name(name: &str, v: &mut Validator) {
    for prefix in ["knp.default.", "ossg.default."] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return v.check(check_dns1123_subdomain(rest));
        }
    }
    validate_global_policy_name(name, v);
}

/// A global policy name: a DNS-1123 label, optionally `<label>.<label>`.
fn validate_global_policy_name(name: &str, v: &mut Validator) {
    if name.len() > 253 {
        return v.error(format!(
            "name is longer than 253 characters ({})",
            name.len()
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    let ok = parts.len() <= 2 && parts.iter().all(|p| check_dns1123_label(p).is_ok());
    if !ok {
        v.error(format!(
            "policy name {name:?} must be a lower case DNS-1123 label (alphanumerics and '-'), optionally with one '.'"
        ));
    }
}

macro_rules! policy_spec {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// The tier the policy belongs to (default `default`).
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub tier: String,
            /// Order within the tier: lower applies first; none means last.
            #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::common::serialize_order")]
            pub order: Option<f64>,
            /// Endpoints the policy applies to (empty: all).
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub selector: String,
            /// Pods whose service account matches this selector.
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub service_account_selector: String,
            /// Ordered ingress rules.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 1024))]
            pub ingress: Vec<Rule>,
            /// Ordered egress rules.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 1024))]
            pub egress: Vec<Rule>,
            /// Directions the policy applies to; defaulted from the rules.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 2))]
            pub types: Vec<PolicyType>,
            /// Hints to the policy engine.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub performance_hints: Vec<PerformanceHint>,
        }

        impl $name {
            fn common(&self) -> Common<'_> {
                Common {
                    tier: &self.tier,
                    order: self.order,
                    selector: &self.selector,
                    service_account_selector: &self.service_account_selector,
                    ingress: &self.ingress,
                    egress: &self.egress,
                    types: &self.types,
                    performance_hints: &self.performance_hints,
                }
            }

            /// Defaults `tier` to `default` and `types` from the rules present.
            fn apply_common_defaults(&mut self) {
                if self.tier.is_empty() {
                    self.tier = DEFAULT_TIER.to_string();
                }
                if self.types.is_empty() {
                    self.types = default_policy_types(!self.ingress.is_empty(), !self.egress.is_empty());
                }
            }

            fn validate_common(&self, scope: PolicyScope, v: &mut Validator) {
                self.common().validate(scope, v);
            }
        }
    };
}

policy_spec! {
    /// Spec of a Calico `NetworkPolicy`: rules for endpoints in one namespace.
    NetworkPolicySpec {}
}

policy_spec! {
    /// Spec of a Calico `GlobalNetworkPolicy`: rules for endpoints in every
    /// namespace and for host endpoints.
    GlobalNetworkPolicySpec {
        /// Namespaces whose endpoints the policy applies to.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        namespace_selector: String,
        /// Apply before connection tracking (host endpoints; no reply traffic allowed implicitly).
        #[serde(default, rename = "doNotTrack", skip_serializing_if = "std::ops::Not::not")]
        do_not_track: bool,
        /// Apply before DNAT (host endpoints; ingress only).
        #[serde(default, rename = "preDNAT", skip_serializing_if = "std::ops::Not::not")]
        pre_dnat: bool,
        /// Also apply to traffic forwarded through host endpoints.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        apply_on_forward: bool,
    }
}

policy_spec! {
    /// Spec of a Calico `StagedNetworkPolicy`: a `NetworkPolicy` change
    /// that is evaluated but not enforced.
    StagedNetworkPolicySpec {
        /// What the staged policy would do.
        #[serde(default, skip_serializing_if = "StagedAction::is_set")]
        staged_action: StagedAction,
    }
}

policy_spec! {
    /// Spec of a Calico `StagedGlobalNetworkPolicy`.
    StagedGlobalNetworkPolicySpec {
        /// What the staged policy would do.
        #[serde(default, skip_serializing_if = "StagedAction::is_set")]
        staged_action: StagedAction,
        /// Namespaces whose endpoints the policy applies to.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        namespace_selector: String,
        /// Apply before connection tracking.
        #[serde(default, rename = "doNotTrack", skip_serializing_if = "std::ops::Not::not")]
        do_not_track: bool,
        /// Apply before DNAT.
        #[serde(default, rename = "preDNAT", skip_serializing_if = "std::ops::Not::not")]
        pre_dnat: bool,
        /// Also apply to forwarded traffic.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        apply_on_forward: bool,
    }
}

/// A Calico `NetworkPolicy`.
pub type NetworkPolicy = Object<NetworkPolicySpec>;
/// A Calico `GlobalNetworkPolicy`.
pub type GlobalNetworkPolicy = Object<GlobalNetworkPolicySpec>;
/// A Calico `StagedNetworkPolicy`.
pub type StagedNetworkPolicy = Object<StagedNetworkPolicySpec>;
/// A Calico `StagedGlobalNetworkPolicy`.
pub type StagedGlobalNetworkPolicy = Object<StagedGlobalNetworkPolicySpec>;

impl Validate for NetworkPolicySpec {
    fn validate(&self, v: &mut Validator) {
        self.validate_common(PolicyScope::Namespaced, v);
    }
}

impl Spec for NetworkPolicySpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "NetworkPolicy";
    const PLURAL: &'static str = "networkpolicies";
    const SHORT_NAMES: &'static [&'static str] =
        &["cnp", "caliconetworkpolicy", "caliconetworkpolicies"];
    const NAMESPACED: bool = true;
    type Status = NoStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.apply_common_defaults();
    }

    fn validate_name(name: &str, v: &mut Validator) {
        validate_namespaced_policy_name(name, v);
    }
}

impl Validate for GlobalNetworkPolicySpec {
    fn validate(&self, v: &mut Validator) {
        self.validate_global(v);
    }
}

impl Spec for GlobalNetworkPolicySpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "GlobalNetworkPolicy";
    const PLURAL: &'static str = "globalnetworkpolicies";
    const SHORT_NAMES: &'static [&'static str] = &["gnp", "cgnp", "calicoglobalnetworkpolicies"];
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.apply_common_defaults();
    }

    fn validate_name(name: &str, v: &mut Validator) {
        validate_global_policy_name(name, v);
    }
}

/// Validation both global kinds share.
macro_rules! global_policy {
    ($($name:ident),*) => {$(
        impl $name {
            /// The common rules at global scope, the namespace selector, and
            /// the `doNotTrack`/`preDNAT`/`applyOnForward` combinations.
            fn validate_global(&self, v: &mut Validator) {
                self.validate_common(PolicyScope::Global, v);
                validate_endpoint_selector("namespaceSelector", &self.namespace_selector, v);
                validate_untracked_and_pre_dnat(
                    self.do_not_track,
                    self.pre_dnat,
                    self.apply_on_forward,
                    !self.egress.is_empty(),
                    &self.types,
                    v,
                );
            }
        }
    )*};
}

global_policy!(GlobalNetworkPolicySpec, StagedGlobalNetworkPolicySpec);

/// What both staged kinds do with `stagedAction: Delete`.
macro_rules! staged_delete {
    ($($name:ident),*) => {$(
        impl $name {
            /// A staged Delete carries only the tier: every other field must
            /// be empty. Returns whether this is a Delete (checked here).
            fn validate_staged_delete(&self, v: &mut Validator) -> bool {
                if self.staged_action != StagedAction::Delete {
                    return false;
                }
                let bare = Self {
                    staged_action: StagedAction::Delete,
                    tier: self.tier.clone(),
                    types: self.types.clone(),
                    ..Self::default()
                };
                if *self != bare {
                    v.field("stagedAction", |v| {
                        v.error("with stagedAction Delete every spec field except tier must be empty")
                    });
                }
                true
            }

            /// A staged Delete gets only its tier defaulted; any other
            /// action gets the common defaults.
            fn apply_staged_defaults(&mut self) {
                if self.staged_action == StagedAction::Delete {
                    if self.tier.is_empty() {
                        self.tier = DEFAULT_TIER.to_string();
                    }
                } else {
                    self.apply_common_defaults();
                }
            }
        }
    )*};
}

staged_delete!(StagedNetworkPolicySpec, StagedGlobalNetworkPolicySpec);

impl Validate for StagedNetworkPolicySpec {
    fn validate(&self, v: &mut Validator) {
        if !self.validate_staged_delete(v) {
            self.validate_common(PolicyScope::Namespaced, v);
        }
    }
}

impl Spec for StagedNetworkPolicySpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "StagedNetworkPolicy";
    const PLURAL: &'static str = "stagednetworkpolicies";
    const NAMESPACED: bool = true;
    type Status = NoStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.apply_staged_defaults();
    }

    fn validate_name(name: &str, v: &mut Validator) {
        validate_namespaced_policy_name(name, v);
    }
}

impl Validate for StagedGlobalNetworkPolicySpec {
    fn validate(&self, v: &mut Validator) {
        if self.validate_staged_delete(v) {
            return;
        }
        self.validate_global(v);
    }
}

impl Spec for StagedGlobalNetworkPolicySpec {
    const API_VERSION: &'static str = CALICO_API_VERSION;
    const KIND: &'static str = "StagedGlobalNetworkPolicy";
    const PLURAL: &'static str = "stagedglobalnetworkpolicies";
    const NAMESPACED: bool = false;
    type Status = NoStatus;

    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.apply_staged_defaults();
    }

    fn validate_name(name: &str, v: &mut Validator) {
        validate_global_policy_name(name, v);
    }
}
