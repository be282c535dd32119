//! [`Resource`]: one enum over every kind Twill accepts, and the registry
//! that finds a kind by `apiVersion` and `kind`.
//!
//! Adding a kind is one line in the `resources!` table at the bottom of
//! this file: `Variant => SpecType,`.

use serde::Serialize;
use serde_json::Value;

use crate::object::{Object, ObjectMeta, Spec};
use crate::validate::{FieldPath, Segment, Validator, Violation};

/// What the registry knows about one kind.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    /// `apiVersion`, e.g. `projectcalico.org/v3`.
    pub api_version: &'static str,
    /// `kind`, e.g. `GlobalNetworkPolicy`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `globalnetworkpolicies`.
    pub plural: &'static str,
    /// Short names, e.g. `["gnp"]`.
    pub short_names: &'static [&'static str],
    /// Whether the kind lives in a namespace.
    pub namespaced: bool,
    /// Deserializes a document (without `apiVersion` and `kind`) into the kind.
    decode: fn(Value) -> Result<Resource, Vec<Violation>>,
}

impl KindInfo {
    const fn of<S: Spec>(decode: fn(Value) -> Result<Resource, Vec<Violation>>) -> Self {
        Self {
            api_version: S::API_VERSION,
            kind: S::KIND,
            plural: S::PLURAL,
            short_names: S::SHORT_NAMES,
            namespaced: S::NAMESPACED,
            decode,
        }
    }

    /// Deserializes a document whose `apiVersion` and `kind` have been
    /// removed. Errors name the field path; no defaults or validation yet.
    pub fn decode(&self, body: Value) -> Result<Resource, Vec<Violation>> {
        (self.decode)(body)
    }
}

/// Looks a kind up by `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

/// Looks a kind up by kind name, plural or short name, case-insensitively
/// (for the command line: `gnp`, `globalnetworkpolicies`, `GlobalNetworkPolicy`).
/// `NetworkPolicy` names Calico's kind; Kubernetes' is found by its apiVersion.
pub fn find_kind_by_name(name: &str) -> Option<&'static KindInfo> {
    let matches = |k: &&KindInfo| {
        k.kind.eq_ignore_ascii_case(name)
            || k.plural.eq_ignore_ascii_case(name)
            || k.short_names.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    KINDS.iter().find(matches)
}

/// Deserializes one document body into `Object<S>`, reporting the field
/// path of the first shape error (serde stops at the first).
fn decode<S: Spec>(body: Value) -> Result<Object<S>, Vec<Violation>> {
    let spec_input = if S::FINDS_UNKNOWN_FIELDS {
        body.get("spec").cloned()
    } else {
        None
    };
    let object: Object<S> = serde_path_to_error::deserialize(body).map_err(|e| {
        let mut path = FieldPath::from_dotted(&e.path().to_string());
        let reason = e.inner().to_string();
        // Make sure an unknown field's path ends with the field itself.
        if let Some(rest) = reason.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            let field = Segment::Key(rest[..end].to_string());
            if path.segments().last() != Some(&field) {
                path = path.join(field);
            }
        }
        vec![Violation { path, reason }]
    })?;
    if let Some(input) = spec_input {
        let mut v = Validator::new();
        v.field("spec", |v| object.spec.find_unknown_fields(&input, v));
        let unknown = v.finish();
        if !unknown.is_empty() {
            return Err(unknown);
        }
    }
    Ok(object)
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    object: &'a T,
}

macro_rules! resources {
    ($($(#[doc = $doc:literal])* $variant:ident => $spec:ty,)*) => {
        /// A typed resource of any kind Twill accepts. Variants are boxed:
        /// kinds differ in size by kilobytes (FelixConfiguration is large).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource {
            $($(#[doc = $doc])* $variant(Box<Object<$spec>>),)*
        }

        /// Every kind, in the order of the table.
        pub static KINDS: &[KindInfo] = &[
            $(KindInfo::of::<$spec>(|body| decode::<$spec>(body).map(Resource::from)),)*
        ];

        $(impl From<Object<$spec>> for Resource {
            fn from(object: Object<$spec>) -> Self {
                Self::$variant(Box::new(object))
            }
        })*

        impl Resource {
            /// `kind`, e.g. `GlobalNetworkPolicy`.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => <$spec as Spec>::KIND,)* }
            }

            /// The kind a datastore keeps this resource under ([`Spec::STORE_KIND`]).
            pub fn store_kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => <$spec as Spec>::STORE_KIND,)* }
            }

            /// `apiVersion`, e.g. `projectcalico.org/v3`.
            pub fn api_version(&self) -> &'static str {
                match self { $(Self::$variant(_) => <$spec as Spec>::API_VERSION,)* }
            }

            /// Whether the kind lives in a namespace.
            pub fn namespaced(&self) -> bool {
                match self { $(Self::$variant(_) => <$spec as Spec>::NAMESPACED,)* }
            }

            /// Name, namespace, labels and annotations.
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $(Self::$variant(o) => &o.metadata,)* }
            }

            /// Mutable metadata (e.g. for a datastore to set `resourceVersion`).
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Self::$variant(o) => &mut o.metadata,)* }
            }

            /// Fills in the namespace and the kind's defaults.
            pub fn apply_defaults(&mut self) {
                match self { $(Self::$variant(o) => o.apply_defaults(),)* }
            }

            /// Every validation rule the resource breaks.
            pub fn validate(&self) -> Vec<Violation> {
                match self { $(Self::$variant(o) => o.validate(),)* }
            }

            /// The full document, `apiVersion` and `kind` first.
            pub fn to_json(&self) -> Value {
                // Serializing plain data structures into a Value cannot fail.
                serde_json::to_value(self).expect("resources serialize to JSON")
            }
        }

        /// Deserializes like [`Resource::from_json`]: no defaults, no validation.
        impl<'de> serde::Deserialize<'de> for Resource {
            fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
                let value = Value::deserialize(deserializer)?;
                Resource::from_json(value).map_err(|violations| {
                    let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
                    <De::Error as serde::de::Error>::custom(reasons.join("; "))
                })
            }
        }

        impl Serialize for Resource {
            fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
                match self {
                    $(Self::$variant(o) => Envelope {
                        api_version: <$spec as Spec>::API_VERSION,
                        kind: <$spec as Spec>::KIND,
                        object: &**o,
                    }.serialize(serializer),)*
                }
            }
        }
    };
}

impl Resource {
    /// Decodes a full document (with `apiVersion` and `kind`) into its kind,
    /// without defaults or validation (for data a datastore wrote; use
    /// [`crate::load_str`] for user input).
    pub fn from_json(mut value: Value) -> Result<Self, Vec<Violation>> {
        let field = |value: &mut Value, name: &'static str| match value
            .as_object_mut()
            .and_then(|m| m.remove(name))
        {
            Some(Value::String(s)) => Ok(s),
            _ => Err(vec![Violation {
                path: FieldPath::root().join(Segment::Key(name.to_string())),
                reason: format!("{name} is missing or not a string"),
            }]),
        };
        let api_version = field(&mut value, "apiVersion")?;
        let kind = field(&mut value, "kind")?;
        let info = find_kind(&api_version, &kind).ok_or_else(|| {
            vec![Violation {
                path: FieldPath::root().join(Segment::Key("kind".to_string())),
                reason: format!("unknown kind {kind:?} in apiVersion {api_version:?}"),
            }]
        })?;
        info.decode(value)
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The resource's namespace (`None` for cluster-scoped kinds).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

resources! {
    /// Calico `NetworkPolicy` (namespaced).
    NetworkPolicy => crate::policy::NetworkPolicySpec,
    /// Calico `GlobalNetworkPolicy`.
    GlobalNetworkPolicy => crate::policy::GlobalNetworkPolicySpec,
    /// Calico `StagedNetworkPolicy` (namespaced).
    StagedNetworkPolicy => crate::policy::StagedNetworkPolicySpec,
    /// Calico `StagedGlobalNetworkPolicy`.
    StagedGlobalNetworkPolicy => crate::policy::StagedGlobalNetworkPolicySpec,
    /// Calico `Tier`.
    Tier => crate::tier::TierSpec,
    /// Calico `NetworkSet` (namespaced).
    NetworkSet => crate::networkset::NetworkSetSpec,
    /// Calico `GlobalNetworkSet`.
    GlobalNetworkSet => crate::networkset::GlobalNetworkSetSpec,
    /// Calico `HostEndpoint`.
    HostEndpoint => crate::endpoint::HostEndpointSpec,
    /// Calico `WorkloadEndpoint` (namespaced).
    WorkloadEndpoint => crate::endpoint::WorkloadEndpointSpec,
    /// Calico `Profile`.
    Profile => crate::profile::ProfileSpec,
    /// Kubernetes `networking.k8s.io/v1` `NetworkPolicy` (namespaced).
    KubernetesNetworkPolicy => crate::k8s::KubernetesNetworkPolicySpec,
    /// Calico `IPPool`.
    IPPool => crate::ippool::IPPoolSpec,
    /// Calico `IPReservation`.
    IPReservation => crate::ippool::IPReservationSpec,
    /// Calico `IPAMConfiguration` (singleton `default`).
    IPAMConfiguration => crate::ippool::IPAMConfigurationSpec,
    /// Calico `BGPConfiguration`.
    BGPConfiguration => crate::bgp::BGPConfigurationSpec,
    /// Calico `BGPPeer`.
    BGPPeer => crate::bgp::BGPPeerSpec,
    /// Calico `BGPFilter`.
    BGPFilter => crate::bgp::BGPFilterSpec,
    /// Calico `FelixConfiguration`.
    FelixConfiguration => crate::felix::FelixConfigurationSpec,
    /// Calico `Node`.
    Node => crate::node::NodeSpec,
    /// Calico `ClusterInformation` (singleton `default`).
    ClusterInformation => crate::node::ClusterInformationSpec,
    /// Tigera operator `Installation`.
    Installation => crate::installation::InstallationSpec,
}
