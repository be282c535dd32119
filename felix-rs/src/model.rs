//! Felix's inputs as plain data, and the typed messages that change them.
//!
//! Datastore objects are converted here into the form the calculation graph
//! works on: a [`Policy`] whose selectors are parsed and scoped (a namespaced
//! policy only selects endpoints of its namespace; a rule's selectors get
//! the namespace and service-account restrictions Calico gives them), and
//! an [`Endpoint`] with its addresses and named ports. Kubernetes
//! NetworkPolicy is translated into the same [`Policy`] as Calico does.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use twill_api::common::{Action, IcmpFields, Port, Protocol, Rule};
use twill_api::endpoint::WorkloadEndpoint;
use twill_api::networkset::{GlobalNetworkSet, NetworkSet};
use twill_api::policy::{GlobalNetworkPolicy, NetworkPolicy, PolicyType, default_policy_types};
use twill_api::tier::{Tier, WELL_KNOWN_TIERS};
use twill_selector::{Expr, NAMESPACE_LABEL, Selector};

use crate::Error;

mod k8s;
pub use k8s::translate_kubernetes_policy;

pub use twill_api::endpoint::{ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL};
/// Prefix of service-account labels inherited by endpoints.
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// Label Calico's profiles add with the namespace's or service account's name
/// (under the `pcns.` / `pcsa.` prefix).
pub const NAME_LABEL: &str = "projectcalico.org/name";
/// The immutable namespace label the Kubernetes API server adds.
pub const K8S_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Order of translated Kubernetes NetworkPolicies in the default tier.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;

/// Which kind of resource a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    /// Calico `NetworkPolicy` (namespaced).
    Calico,
    /// Calico `GlobalNetworkPolicy`.
    Global,
    /// Kubernetes `NetworkPolicy`.
    Kubernetes,
    /// A Calico `Profile`'s rules, which endpoints listing the profile
    /// reach after every tier (never selected by a selector).
    Profile,
}

/// Identity of a policy: (kind, namespace, name), as Calico keys them since v3.32.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// The resource kind.
    pub kind: PolicyKind,
    /// The namespace; empty for global policies.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PolicyKind::Calico => "np",
            PolicyKind::Global => "gnp",
            PolicyKind::Kubernetes => "knp",
            PolicyKind::Profile => "profile",
        };
        if self.namespace.is_empty() {
            write!(f, "{kind}/{}", self.name)
        } else {
            write!(f, "{kind}/{}/{}", self.namespace, self.name)
        }
    }
}

/// Identity of a workload endpoint: (namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    /// The namespace.
    pub namespace: String,
    /// The WorkloadEndpoint's name.
    pub name: String,
}

impl fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One side (source or destination) of a rule, with selectors scoped.
/// Every policy's rules stay in memory, two sides each, and most fields
/// are empty: lists are boxed slices (no spare capacity field) and the
/// selectors boxed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityMatch {
    /// Addresses the side must be in (any of).
    pub nets: Box<[IpNet]>,
    /// Addresses the side must not be in.
    pub not_nets: Box<[IpNet]>,
    /// Endpoints/network sets the side must be one of: the rule's selector
    /// ANDed with its namespace and service-account restrictions.
    pub selector: Option<Box<Selector>>,
    /// Endpoints/network sets the side must not be one of.
    pub not_selector: Option<Box<Selector>>,
    /// Ports (numbers, ranges, names) the side must use (any of).
    pub ports: Box<[Port]>,
    /// Ports the side must not use.
    pub not_ports: Box<[Port]>,
}

/// A rule with parsed nets and scoped selectors.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    /// What to do on a match.
    pub action: Action,
    /// Restricts the rule to one IP version.
    pub ip_version: Option<u8>,
    /// The protocol the packet must carry.
    pub protocol: Option<Protocol>,
    /// A protocol the packet must not carry.
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code the packet must carry.
    pub icmp: Option<IcmpFields>,
    /// ICMP type/code the packet must not carry.
    pub not_icmp: Option<IcmpFields>,
    /// The source side.
    pub source: EntityMatch,
    /// The destination side.
    pub destination: EntityMatch,
}

/// A policy in the form the calculation graph uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The tier it belongs to.
    pub tier: String,
    /// Its order in the tier (`None` = after every ordered policy).
    pub order: Option<f64>,
    /// The endpoints it applies to, namespace restriction included.
    pub selector: Selector,
    /// Whether it applies to ingress traffic.
    pub ingress_enabled: bool,
    /// Whether it applies to egress traffic.
    pub egress_enabled: bool,
    /// Ingress rules, in order.
    pub ingress: Vec<PolicyRule>,
    /// Egress rules, in order.
    pub egress: Vec<PolicyRule>,
    /// Fields felix-rs cannot enforce as written, with why and what it
    /// enforces instead (a rule's `services` match, see
    /// [`SERVICES_UNSUPPORTED`]).
    pub unsupported: Vec<(String, &'static str)>,
    /// Where a GlobalNetworkPolicy applies to HostEndpoints.
    pub host_mode: HostPolicyMode,
}

/// Where a GlobalNetworkPolicy selecting HostEndpoints is enforced
/// (Calico's `doNotTrack`, `preDNAT` and `applyOnForward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostPolicyMode {
    /// Traffic to and from the host (the filter input and output hooks).
    #[default]
    Normal,
    /// As [`HostPolicyMode::Normal`], and traffic forwarded through the
    /// HostEndpoint's interface (`applyOnForward: true`).
    ApplyOnForward,
    /// Before connection tracking (`doNotTrack: true`): Allow makes the
    /// packet untracked, so replies need their own rules.
    Untracked,
    /// Ingress traffic arriving through the interface, before DNAT
    /// (`preDNAT: true`).
    PreDnat,
}

/// Why a rule's `services` match is not enforced as written.
pub const SERVICES_UNSUPPORTED: &str = "services matches need Kubernetes Services and their \
     endpoints, which Twill's datastore does not hold yet; such a rule is enforced fail closed \
     (Allow, Pass and Log rules with services never match; Deny rules with services deny \
     whatever else they match)";

/// A tier's ordering and default action.
#[derive(Debug, Clone, PartialEq)]
pub struct TierInfo {
    /// Order among tiers (`None` = last).
    pub order: Option<f64>,
    /// What happens at the end of the tier to traffic of an endpoint some
    /// policy of the tier applies to: `Deny` or `Pass`.
    pub default_action: Action,
}

impl TierInfo {
    /// The tier's settings when no Tier resource exists: Calico's fixed
    /// values for its well-known tiers, else order last and `Deny`.
    pub fn implicit(name: &str) -> Self {
        match WELL_KNOWN_TIERS.iter().find(|(n, _, _)| *n == name) {
            Some((_, order, action)) => Self {
                order: Some(*order),
                default_action: *action,
            },
            None => Self {
                order: None,
                default_action: Action::Deny,
            },
        }
    }

    /// From a Tier resource (defaults as Calico applies them).
    pub fn from_tier(tier: &Tier) -> Self {
        let implicit = Self::implicit(tier.name());
        Self {
            order: tier.spec.order.or(implicit.order),
            default_action: tier.spec.default_action.unwrap_or(implicit.default_action),
        }
    }
}

/// A named port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// IP protocol number.
    pub protocol: u8,
    /// Port number.
    pub port: u16,
}

/// A workload endpoint, local or remote.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The node it runs on.
    pub node: String,
    /// Its host-side interface (meaningful for local endpoints).
    pub interface: String,
    /// Its own labels plus Calico's `projectcalico.org/*` labels. The
    /// calculation graph moves them into its label indexes (read them back
    /// with `CalcGraph::endpoint_labels`).
    pub labels: BTreeMap<String, String>,
    /// Its namespace.
    pub namespace: String,
    /// Its service account, if any.
    pub service_account: Option<String>,
    /// Its addresses (host prefixes).
    pub addrs: Vec<IpNet>,
    /// Extra source prefixes it may send from.
    pub allow_spoofed: Vec<IpNet>,
    /// Its named ports.
    pub ports: Vec<NamedPort>,
    /// The profiles whose rules apply after every tier, in order: the
    /// WorkloadEndpoint's `profiles`, or else what Calico gives a pod
    /// (`kns.<namespace>`, then `ksa.<namespace>.<serviceaccount>`).
    pub profiles: Vec<String>,
}

/// Prefix of the namespace profiles Calico derives from Namespaces.
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";
/// Prefix of the service-account profiles Calico derives from ServiceAccounts.
pub const SERVICE_ACCOUNT_PROFILE_PREFIX: &str = "ksa.";
/// The profile Calico's auto-created HostEndpoints list: allows everything.
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

/// What an endpoint's profile contributes after the tiers, as Calico
/// derives or defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileStep {
    /// Allows everything: `kns.<namespace>` (Calico generates it with one
    /// Allow rule per direction, whatever the stored resource says) and
    /// `projectcalico-default-allow` when no resource of that name exists.
    AllowAll,
    /// No rules: `ksa.<namespace>.<serviceaccount>` (labels only, as Calico
    /// generates it).
    NoRules,
    /// A Profile resource's rules, rendered as their own chains.
    Rules(PolicyKey),
    /// A profile that does not exist: Calico drops (a stand-in with one
    /// Deny rule), so a missing profile never opens anything.
    Missing,
}

/// A HostEndpoint: one of the host's interfaces (or just its addresses),
/// selected by GlobalNetworkPolicies like a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEndpointInfo {
    /// The node it belongs to.
    pub node: String,
    /// The interface it covers (empty: addresses only; `*`: every
    /// interface that no named HostEndpoint covers).
    pub interface: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its expected addresses (members of selector sets).
    pub addrs: Vec<IpNet>,
    /// The profiles whose rules apply after every tier, in order.
    pub profiles: Vec<String>,
    /// For a HostEndpoint without `interfaceName`: the host interface that
    /// carries one of its expected addresses (empty: none found yet).
    pub resolved_interface: String,
}

impl HostEndpointInfo {
    /// The interface it is enforced on: `interfaceName`, else the one
    /// carrying its expected addresses (empty: none).
    pub fn effective_interface(&self) -> &str {
        if self.interface.is_empty() {
            &self.resolved_interface
        } else {
            &self.interface
        }
    }
}

impl Update {
    /// [`Update::HostInterfaceAddresses`] from the kernel's address list
    /// (`list_addresses(None)`).
    pub fn host_interface_addresses(entries: &[twill_kernel::AddressEntry]) -> Self {
        let mut interfaces: BTreeMap<String, Vec<std::net::IpAddr>> = BTreeMap::new();
        for entry in entries {
            interfaces
                .entry(entry.link.clone())
                .or_default()
                .push(entry.addr.addr());
        }
        Update::HostInterfaceAddresses(interfaces)
    }
}

/// A NetworkSet or GlobalNetworkSet: labelled CIDRs selectors can match.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSet {
    /// The namespace (empty for a GlobalNetworkSet).
    pub namespace: String,
    /// Labels (plus `projectcalico.org/namespace` when namespaced).
    pub labels: BTreeMap<String, String>,
    /// The networks.
    pub nets: Vec<IpNet>,
}

/// A change to Felix's inputs.
#[derive(Debug, Clone)]
pub enum Update {
    /// A Calico NetworkPolicy was created or changed.
    PolicyUpserted(Box<NetworkPolicy>),
    /// A Calico NetworkPolicy was deleted.
    PolicyDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A GlobalNetworkPolicy was created or changed.
    GlobalPolicyUpserted(Box<GlobalNetworkPolicy>),
    /// A GlobalNetworkPolicy was deleted.
    GlobalPolicyDeleted {
        /// Its name.
        name: String,
    },
    /// A Kubernetes NetworkPolicy was created or changed.
    KubernetesPolicyUpserted(Box<twill_api::k8s::KubernetesNetworkPolicy>),
    /// A Kubernetes NetworkPolicy was deleted.
    KubernetesPolicyDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A Tier was created or changed.
    TierUpserted(Box<Tier>),
    /// A Tier was deleted.
    TierDeleted {
        /// Its name.
        name: String,
    },
    /// A WorkloadEndpoint was created or changed.
    WorkloadEndpointUpserted(Box<WorkloadEndpoint>),
    /// A WorkloadEndpoint was deleted.
    WorkloadEndpointDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A namespace's labels (the namespace profile `kns.<name>`).
    NamespaceLabels {
        /// The namespace.
        name: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
    },
    /// A namespace was deleted.
    NamespaceDeleted {
        /// The namespace.
        name: String,
    },
    /// A service account's labels (the profile `ksa.<namespace>.<name>`).
    ServiceAccountLabels {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
    },
    /// A service account was deleted.
    ServiceAccountDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A NetworkSet was created or changed.
    NetworkSetUpserted(Box<NetworkSet>),
    /// A NetworkSet was deleted.
    NetworkSetDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A GlobalNetworkSet was created or changed.
    GlobalNetworkSetUpserted(Box<GlobalNetworkSet>),
    /// A GlobalNetworkSet was deleted.
    GlobalNetworkSetDeleted {
        /// Its name.
        name: String,
    },
    /// A Profile other than `kns.*` / `ksa.*` was created or changed.
    ProfileUpserted(Box<twill_api::profile::Profile>),
    /// A Profile other than `kns.*` / `ksa.*` was deleted.
    ProfileDeleted {
        /// Its name.
        name: String,
    },
    /// A HostEndpoint was created or changed.
    HostEndpointUpserted(Box<twill_api::endpoint::HostEndpoint>),
    /// A HostEndpoint was deleted.
    HostEndpointDeleted {
        /// Its name.
        name: String,
    },
    /// The host's interfaces and their addresses (from the kernel): a
    /// HostEndpoint without `interfaceName` is enforced on the interface
    /// carrying one of its `expectedIPs`.
    HostInterfaceAddresses(BTreeMap<String, Vec<std::net::IpAddr>>),
    /// The datastore has been listed completely once.
    InSync,
}

/// Parses a selector field; empty means `all()`.
pub(crate) fn parse_selector(field: &str, text: &str) -> Result<Selector, Error> {
    Selector::parse(text).map_err(|e| Error::Selector {
        field: field.to_string(),
        selector: text.to_string(),
        reason: e.to_string(),
    })
}

fn expr_selector(field: &str, expr: Expr) -> Result<Selector, Error> {
    Selector::from_expr(expr).map_err(|e| Error::Selector {
        field: field.to_string(),
        selector: String::new(),
        reason: e.to_string(),
    })
}

/// `projectcalico.org/namespace == '<ns>'`.
pub(crate) fn namespace_is(namespace: &str) -> Expr {
    Expr::Eq(NAMESPACE_LABEL.to_string(), namespace.to_string())
}

fn prefixed(field: &str, text: &str, prefix: &str) -> Result<Selector, Error> {
    let selector = parse_selector(field, text)?;
    selector
        .with_key_prefix(prefix)
        .map_err(|e| Error::Selector {
            field: field.to_string(),
            selector: text.to_string(),
            reason: e.to_string(),
        })
}

fn namespace_selector(field: &str, text: &str) -> Result<Selector, Error> {
    let selector = parse_selector(field, text)?;
    selector
        .namespace_selector_to_endpoint_selector()
        .map_err(|e| Error::Selector {
            field: field.to_string(),
            selector: text.to_string(),
            reason: e.to_string(),
        })
}

fn parse_nets(field: &str, nets: &[String]) -> Result<Vec<IpNet>, Error> {
    nets.iter()
        .map(|n| {
            twill_api::common::parse_cidr(n)
                .map(|net| net.trunc())
                .map_err(|reason| Error::Net {
                    field: field.to_string(),
                    net: n.clone(),
                    reason,
                })
        })
        .collect()
}

/// Converts one side of a Calico rule, as Calico's rule conversion does:
/// in a namespaced policy, a side with a selector, notSelector or service
/// accounts but no namespaceSelector is restricted to the policy's namespace.
fn convert_entity(
    field: &str,
    entity: &twill_api::common::EntityRule,
    namespace: Option<&str>,
) -> Result<EntityMatch, Error> {
    let mut positive: Vec<Selector> = Vec::new();
    let has_sa = entity
        .service_accounts
        .as_ref()
        .is_some_and(|sa| !sa.names.is_empty() || !sa.selector.is_empty());
    if !entity.namespace_selector.is_empty() {
        positive.push(namespace_selector(
            &format!("{field}.namespaceSelector"),
            &entity.namespace_selector,
        )?);
    } else if let Some(ns) = namespace
        && (!entity.selector.is_empty() || !entity.not_selector.is_empty() || has_sa)
    {
        positive.push(expr_selector(field, namespace_is(ns))?);
    }
    if !entity.selector.is_empty() {
        positive.push(parse_selector(
            &format!("{field}.selector"),
            &entity.selector,
        )?);
    }
    if let Some(sa) = &entity.service_accounts {
        if !sa.names.is_empty() {
            let key = format!("{SERVICE_ACCOUNT_LABEL_PREFIX}{NAME_LABEL}");
            let names = sa.names.iter().cloned().collect();
            positive.push(expr_selector(
                &format!("{field}.serviceAccounts.names"),
                Expr::In(key, names),
            )?);
        }
        if !sa.selector.is_empty() {
            positive.push(prefixed(
                &format!("{field}.serviceAccounts.selector"),
                &sa.selector,
                SERVICE_ACCOUNT_LABEL_PREFIX,
            )?);
        }
    }
    let selector = positive.into_iter().reduce(|a, b| a.and(&b));
    let not_selector = if entity.not_selector.is_empty() {
        None
    } else {
        Some(Box::new(parse_selector(
            &format!("{field}.notSelector"),
            &entity.not_selector,
        )?))
    };
    Ok(EntityMatch {
        nets: parse_nets(&format!("{field}.nets"), &entity.nets)?.into(),
        not_nets: parse_nets(&format!("{field}.notNets"), &entity.not_nets)?.into(),
        selector: selector.map(Box::new),
        not_selector,
        ports: entity.ports.as_slice().into(),
        not_ports: entity.not_ports.as_slice().into(),
    })
}

/// Converts a Calico rule of a policy in `namespace` (None: global).
pub fn convert_rule(
    field: &str,
    rule: &Rule,
    namespace: Option<&str>,
) -> Result<PolicyRule, Error> {
    Ok(PolicyRule {
        action: rule.action,
        ip_version: rule.ip_version,
        protocol: rule.protocol,
        not_protocol: rule.not_protocol,
        icmp: rule.icmp.clone(),
        not_icmp: rule.not_icmp.clone(),
        source: convert_entity(&format!("{field}.source"), &rule.source, namespace)?,
        destination: convert_entity(
            &format!("{field}.destination"),
            &rule.destination,
            namespace,
        )?,
    })
}

/// Converts a policy's rules. felix-rs does not match `services` yet; so
/// that this never fails open, a rule with a services match is dropped when
/// it would allow, pass or log, and kept without the services restriction
/// (denying more) when it denies; its field path goes into `unsupported`.
pub(crate) fn convert_rules(
    field: &str,
    rules: &[Rule],
    ns: Option<&str>,
    unsupported: &mut Vec<(String, &'static str)>,
) -> Result<Vec<PolicyRule>, Error> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let uses_services = r.source.services.is_some() || r.destination.services.is_some();
        if uses_services {
            let side = if r.source.services.is_some() {
                "source"
            } else {
                "destination"
            };
            unsupported.push((
                format!("{field}[{i}].{side}.services"),
                SERVICES_UNSUPPORTED,
            ));
            if r.action != Action::Deny {
                continue;
            }
        }
        out.push(convert_rule(&format!("{field}[{i}]"), r, ns)?);
    }
    Ok(out)
}

fn types_enabled(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> (bool, bool) {
    let types = if types.is_empty() {
        default_policy_types(!ingress.is_empty(), !egress.is_empty())
    } else {
        types.to_vec()
    };
    (
        types.contains(&PolicyType::Ingress),
        types.contains(&PolicyType::Egress),
    )
}

fn tier_or_default(tier: &str) -> String {
    if tier.is_empty() {
        twill_api::policy::DEFAULT_TIER.to_string()
    } else {
        tier.to_string()
    }
}

/// Converts a Calico NetworkPolicy: its selector is restricted to its namespace.
pub fn convert_network_policy(policy: &NetworkPolicy) -> Result<(PolicyKey, Policy), Error> {
    let ns = policy.namespace().unwrap_or("default").to_string();
    let spec = &policy.spec;
    let mut selector = expr_selector("selector", namespace_is(&ns))?
        .and(&parse_selector("selector", &spec.selector)?);
    if !spec.service_account_selector.is_empty() {
        selector = selector.and(&prefixed(
            "serviceAccountSelector",
            &spec.service_account_selector,
            SERVICE_ACCOUNT_LABEL_PREFIX,
        )?);
    }
    let (ingress_enabled, egress_enabled) = types_enabled(&spec.types, &spec.ingress, &spec.egress);
    let key = PolicyKey {
        kind: PolicyKind::Calico,
        namespace: ns.clone(),
        name: policy.name().to_string(),
    };
    let mut unsupported = Vec::new();
    let ingress = convert_rules("ingress", &spec.ingress, Some(&ns), &mut unsupported)?;
    let egress = convert_rules("egress", &spec.egress, Some(&ns), &mut unsupported)?;
    Ok((
        key,
        Policy {
            tier: tier_or_default(&spec.tier),
            order: spec.order,
            selector,
            ingress_enabled,
            egress_enabled,
            ingress,
            egress,
            unsupported,
            host_mode: HostPolicyMode::Normal,
        },
    ))
}

/// Converts a GlobalNetworkPolicy (its namespaceSelector restricts the
/// endpoints it applies to).
pub fn convert_global_policy(policy: &GlobalNetworkPolicy) -> Result<(PolicyKey, Policy), Error> {
    let spec = &policy.spec;
    let mut selector = parse_selector("selector", &spec.selector)?;
    if !spec.namespace_selector.is_empty() {
        selector = selector.and(&namespace_selector(
            "namespaceSelector",
            &spec.namespace_selector,
        )?);
    }
    if !spec.service_account_selector.is_empty() {
        selector = selector.and(&prefixed(
            "serviceAccountSelector",
            &spec.service_account_selector,
            SERVICE_ACCOUNT_LABEL_PREFIX,
        )?);
    }
    let (ingress_enabled, egress_enabled) = types_enabled(&spec.types, &spec.ingress, &spec.egress);
    let key = PolicyKey {
        kind: PolicyKind::Global,
        namespace: String::new(),
        name: policy.name().to_string(),
    };
    let mut unsupported = Vec::new();
    let ingress = convert_rules("ingress", &spec.ingress, None, &mut unsupported)?;
    let egress = convert_rules("egress", &spec.egress, None, &mut unsupported)?;
    let host_mode = host_policy_mode(spec, egress_enabled)?;
    Ok((
        key,
        Policy {
            tier: tier_or_default(&spec.tier),
            order: spec.order,
            selector,
            ingress_enabled,
            egress_enabled,
            ingress,
            egress,
            unsupported,
            host_mode,
        },
    ))
}

/// A GlobalNetworkPolicy's [`HostPolicyMode`], validated as Calico does:
/// `doNotTrack` and `preDNAT` exclude each other and need
/// `applyOnForward`; a `preDNAT` policy has no egress.
fn host_policy_mode(
    spec: &twill_api::policy::GlobalNetworkPolicySpec,
    egress_enabled: bool,
) -> Result<HostPolicyMode, Error> {
    let invalid = |field: &str, reason: &str| Error::Translation {
        field: field.to_string(),
        reason: reason.to_string(),
    };
    if spec.do_not_track && spec.pre_dnat {
        return Err(invalid(
            "preDNAT",
            "preDNAT and doNotTrack cannot both be true",
        ));
    }
    if (spec.do_not_track || spec.pre_dnat) && !spec.apply_on_forward {
        let field = if spec.pre_dnat {
            "preDNAT"
        } else {
            "doNotTrack"
        };
        return Err(invalid(
            "applyOnForward",
            &format!("applyOnForward must be true when {field} is true"),
        ));
    }
    if spec.pre_dnat && (egress_enabled || !spec.egress.is_empty()) {
        return Err(invalid(
            "preDNAT",
            "a preDNAT policy cannot have egress rules or the Egress type",
        ));
    }
    Ok(if spec.do_not_track {
        HostPolicyMode::Untracked
    } else if spec.pre_dnat {
        HostPolicyMode::PreDnat
    } else if spec.apply_on_forward {
        HostPolicyMode::ApplyOnForward
    } else {
        HostPolicyMode::Normal
    })
}

/// Converts a WorkloadEndpoint; Calico's `projectcalico.org/*` labels are
/// added (orchestrator defaults to `k8s`).
pub fn convert_endpoint(wep: &WorkloadEndpoint) -> Result<(EndpointKey, Endpoint), Error> {
    let namespace = wep.namespace().unwrap_or("default").to_string();
    let spec = &wep.spec;
    let labels = wep.selector_labels();
    let service_account =
        (!spec.service_account_name.is_empty()).then(|| spec.service_account_name.clone());
    let ports = spec
        .ports
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| NamedPort {
            name: p.name.clone(),
            protocol: p.protocol.number(),
            port: p.port,
        })
        .collect();
    let profiles = if spec.profiles.is_empty() {
        let mut profiles = vec![format!("{NAMESPACE_PROFILE_PREFIX}{namespace}")];
        if let Some(sa) = &service_account {
            profiles.push(format!("{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{sa}"));
        }
        profiles
    } else {
        spec.profiles.clone()
    };
    Ok((
        EndpointKey {
            namespace: namespace.clone(),
            name: wep.name().to_string(),
        },
        Endpoint {
            node: spec.node.clone(),
            interface: spec.interface_name.clone(),
            labels,
            namespace,
            service_account,
            addrs: parse_nets("ipNetworks", &spec.ip_networks)?,
            allow_spoofed: parse_nets(
                "allowSpoofedSourcePrefixes",
                &spec.allow_spoofed_source_prefixes,
            )?,
            ports,
            profiles,
        },
    ))
}

/// Converts a NetworkSet (it gets the `projectcalico.org/namespace` label).
pub fn convert_network_set(set: &NetworkSet) -> Result<NetSet, Error> {
    let namespace = set.namespace().unwrap_or("default").to_string();
    let mut labels = set.metadata.labels.clone();
    labels.insert(NAMESPACE_LABEL.to_string(), namespace.clone());
    Ok(NetSet {
        namespace,
        labels,
        nets: parse_nets("nets", &set.spec.nets)?,
    })
}

/// Converts a GlobalNetworkSet.
pub fn convert_global_network_set(set: &GlobalNetworkSet) -> Result<NetSet, Error> {
    Ok(NetSet {
        namespace: String::new(),
        labels: set.metadata.labels.clone(),
        nets: parse_nets("nets", &set.spec.nets)?,
    })
}

impl Update {
    /// The update a datastore resource stands for, if felix-rs uses that
    /// kind. Namespaces and service accounts arrive as Calico's profiles
    /// `kns.<namespace>` and `ksa.<namespace>.<name>`, whose `labelsToApply`
    /// carry the `pcns.` / `pcsa.` prefixed labels.
    pub fn from_resource(resource: twill_api::Resource) -> Option<Update> {
        use twill_api::Resource as R;
        Some(match resource {
            R::NetworkPolicy(p) => Update::PolicyUpserted(p),
            R::GlobalNetworkPolicy(p) => Update::GlobalPolicyUpserted(p),
            R::KubernetesNetworkPolicy(p) => Update::KubernetesPolicyUpserted(p),
            R::Tier(t) => Update::TierUpserted(t),
            R::WorkloadEndpoint(w) => Update::WorkloadEndpointUpserted(w),
            R::NetworkSet(s) => Update::NetworkSetUpserted(s),
            R::GlobalNetworkSet(s) => Update::GlobalNetworkSetUpserted(s),
            R::HostEndpoint(h) => Update::HostEndpointUpserted(h),
            R::Profile(p) => {
                let strip = |prefix: &str| -> BTreeMap<String, String> {
                    p.spec
                        .labels_to_apply
                        .iter()
                        .map(|(k, v)| (k.strip_prefix(prefix).unwrap_or(k).to_string(), v.clone()))
                        .filter(|(k, _)| k != NAME_LABEL)
                        .collect()
                };
                let name = p.name().to_string();
                if let Some(ns) = name.strip_prefix("kns.") {
                    Update::NamespaceLabels {
                        name: ns.to_string(),
                        labels: strip(twill_selector::NAMESPACE_LABEL_PREFIX),
                    }
                } else if let Some((ns, sa)) = name
                    .strip_prefix("ksa.")
                    .and_then(|rest| rest.split_once('.'))
                {
                    Update::ServiceAccountLabels {
                        namespace: ns.to_string(),
                        name: sa.to_string(),
                        labels: strip(SERVICE_ACCOUNT_LABEL_PREFIX),
                    }
                } else {
                    Update::ProfileUpserted(p)
                }
            }
            _ => return None,
        })
    }
}

/// Converts a user-defined Profile's rules (profiles are global: their
/// selectors are not restricted to a namespace).
pub fn convert_profile(
    profile: &twill_api::profile::Profile,
) -> Result<(PolicyKey, Policy), Error> {
    let spec = &profile.spec;
    let mut unsupported = Vec::new();
    let ingress = convert_rules("ingress", &spec.ingress, None, &mut unsupported)?;
    let egress = convert_rules("egress", &spec.egress, None, &mut unsupported)?;
    Ok((
        PolicyKey {
            kind: PolicyKind::Profile,
            namespace: String::new(),
            name: profile.name().to_string(),
        },
        Policy {
            tier: String::new(),
            order: None,
            selector: Selector::all(),
            ingress_enabled: true,
            egress_enabled: true,
            ingress,
            egress,
            unsupported,
            host_mode: HostPolicyMode::Normal,
        },
    ))
}

/// Converts a HostEndpoint.
pub fn convert_host_endpoint(
    hep: &twill_api::endpoint::HostEndpoint,
) -> Result<HostEndpointInfo, Error> {
    let spec = &hep.spec;
    let addrs = spec
        .expected_ips
        .iter()
        .map(|ip| {
            twill_api::common::parse_ip(ip)
                .map(IpNet::from)
                .map_err(|reason| Error::Net {
                    field: "expectedIPs".to_string(),
                    net: ip.clone(),
                    reason,
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(HostEndpointInfo {
        node: spec.node.clone(),
        interface: spec.interface_name.clone(),
        labels: hep.metadata.labels.clone(),
        addrs,
        profiles: spec.profiles.clone(),
        resolved_interface: String::new(),
    })
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every policy keeps its rules in memory (30,000 rules at 10,000
    /// policies) and most of a side's fields are empty: each is a pointer
    /// (four boxed slices of two words, two boxed selectors of one), with
    /// nothing inline.
    #[test]
    fn a_rule_side_holds_only_pointers() {
        let word = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<EntityMatch>(), 10 * word);
        assert_eq!(std::mem::size_of::<Option<Box<Selector>>>(), word);
    }
}
