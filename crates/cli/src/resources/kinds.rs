//! Resource types on the command line: names, aliases, datastore keys.
//!
//! A type is named by its kind, its plural or a short name, in any case:
//! `networkpolicy`, `NetworkPolicies`, `cnp`. Besides the short names the
//! registry declares (`twill_api::KINDS`), `twill` accepts calicoctl's
//! (`policy`, `np`, `pol`, `no`, `bgpp`, `ipp`, ...).
//!
//! `NetworkPolicy` alone means Calico's `projectcalico.org/v3` kind, as in
//! calicoctl. Kubernetes' `networking.k8s.io/v1` NetworkPolicy is named as
//! kubectl names it — `networkpolicies.networking.k8s.io`,
//! `networkpolicy.networking.k8s.io` or its short name `netpol` — or as
//! `k8snetworkpolicy`/`knp`.

use serde_json::Value;
use twill_api::object::CALICO_API_VERSION;
use twill_api::{KINDS, KindInfo, Resource};
use twill_store::Key;

use crate::error::CliError;

/// calicoctl's aliases that the registry does not declare, by kind.
const EXTRA_ALIASES: &[(&str, &str, &[&str])] = &[
    (
        CALICO_API_VERSION,
        "NetworkPolicy",
        &["policy", "policies", "np", "pol", "pols"],
    ),
    (CALICO_API_VERSION, "GlobalNetworkPolicy", &["gnps"]),
    (
        CALICO_API_VERSION,
        "StagedNetworkPolicy",
        &["stagedpolicy", "stagedpolicies", "snp", "spol", "spols"],
    ),
    (
        CALICO_API_VERSION,
        "StagedGlobalNetworkPolicy",
        &["sgnp", "sgnps"],
    ),
    (CALICO_API_VERSION, "NetworkSet", &["netsets"]),
    (CALICO_API_VERSION, "GlobalNetworkSet", &["gnetsets"]),
    (CALICO_API_VERSION, "Node", &["no", "nos"]),
    (
        CALICO_API_VERSION,
        "BGPPeer",
        &["bgpp", "bgpps", "bp", "bps"],
    ),
    (
        CALICO_API_VERSION,
        "BGPFilter",
        &["bgpf", "bgpfs", "bf", "bfs"],
    ),
    (
        CALICO_API_VERSION,
        "ClusterInformation",
        &["clusterinfo", "clusterinfos"],
    ),
    (
        CALICO_API_VERSION,
        "IPReservation",
        &["reservation", "reservations"],
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        &[
            "k8snetworkpolicy",
            "k8snetworkpolicies",
            "knp",
            "knps",
            "netpols",
        ],
    ),
];

/// A resource type as the command line resolved it.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The registry entry.
    pub info: &'static KindInfo,
    /// The kind under which the datastore keeps it (`Spec::STORE_KIND`).
    pub store_kind: &'static str,
}

impl Kind {
    /// The kind of a resource.
    pub fn of(resource: &Resource) -> Self {
        let info = twill_api::find_kind(resource.api_version(), resource.kind())
            .expect("every resource's kind is in the registry");
        Self {
            info,
            store_kind: resource.store_kind(),
        }
    }

    fn from_info(info: &'static KindInfo) -> Self {
        // The registry does not list STORE_KIND; an empty object of the kind
        // reports it.
        let probe = serde_json::json!({ "metadata": { "name": "probe" } });
        let store_kind = info
            .decode(probe)
            .map(|r| r.store_kind())
            .unwrap_or(info.kind);
        Self { info, store_kind }
    }

    /// The API group (`projectcalico.org`, `networking.k8s.io`, ...).
    pub fn group(&self) -> &'static str {
        group_of(self.info.api_version)
    }

    /// The kind as users read it: Calico's bare (`NetworkPolicy`), other
    /// groups' qualified (`NetworkPolicy.networking.k8s.io`).
    pub fn display(&self) -> String {
        if self.info.api_version == CALICO_API_VERSION {
            self.info.kind.to_string()
        } else {
            format!("{}.{}", self.info.kind, self.group())
        }
    }

    /// The key of the object `name` (in `namespace` for namespaced kinds).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> Key {
        match (self.info.namespaced, namespace) {
            (true, Some(ns)) => Key::namespaced(self.store_kind, ns, name),
            _ => Key::cluster(self.store_kind, name),
        }
    }

    /// `Kind(namespace/name)` or `Kind(name)`, calicoctl's way of naming a
    /// resource in messages.
    pub fn describe(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.info.namespaced) {
            Some(ns) => format!("{}({ns}/{name})", self.display()),
            None => format!("{}({name})", self.display()),
        }
    }

    /// Decodes a stored body (with or without `apiVersion` and `kind`),
    /// with `metadata.resourceVersion` set from the store's revision.
    pub fn decode(&self, object: twill_store::Object) -> Result<Resource, CliError> {
        let key = object.key.to_string();
        let mut value = object.value;
        let Value::Object(map) = &mut value else {
            return Err(CliError::Corrupt {
                key,
                reason: "the body is not a JSON object".into(),
            });
        };
        map.remove("apiVersion");
        map.remove("kind");
        let mut resource = self.info.decode(value).map_err(|violations| {
            let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
            CliError::Corrupt {
                key: key.clone(),
                reason: reasons.join("; "),
            }
        })?;
        let metadata = resource.metadata_mut();
        metadata.resource_version = Some(object.revision.0.to_string());
        if metadata.name.is_empty() {
            metadata.name = object.key.name;
        }
        if metadata.namespace.is_none() {
            metadata.namespace = object.key.namespace;
        }
        Ok(resource)
    }
}

/// The group of an `apiVersion` (`networking.k8s.io/v1` → `networking.k8s.io`).
pub fn group_of(api_version: &str) -> &str {
    api_version
        .split_once('/')
        .map_or(api_version, |(group, _)| group)
}

/// The key a resource is stored under.
pub fn key_of(resource: &Resource) -> Key {
    Kind::of(resource).key(resource.namespace(), resource.name())
}

/// `Kind(namespace/name)` for a resource.
pub fn describe(resource: &Resource) -> String {
    Kind::of(resource).describe(resource.namespace(), resource.name())
}

/// Resolves a type named on the command line.
pub fn resolve(name: &str) -> Result<Kind, CliError> {
    let lower = name.to_ascii_lowercase();
    // `networkpolicies.networking.k8s.io`: a name qualified with its group.
    let (bare, group) = match lower.split_once('.') {
        Some((bare, group)) => (bare, Some(group)),
        None => (lower.as_str(), None),
    };
    let names = |k: &KindInfo| -> Vec<String> {
        let mut names = vec![k.kind.to_ascii_lowercase(), k.plural.to_string()];
        names.extend(k.short_names.iter().map(|s| s.to_string()));
        for (api_version, kind, aliases) in EXTRA_ALIASES {
            if *api_version == k.api_version && *kind == k.kind {
                names.extend(aliases.iter().map(|s| s.to_string()));
            }
        }
        names
    };
    let found = KINDS.iter().find(|k| {
        let group_matches = match group {
            Some(g) => group_of(k.api_version) == g,
            None => true,
        };
        group_matches && names(k).iter().any(|n| n == bare)
    });
    match found {
        Some(info) => Ok(Kind::from_info(info)),
        None => Err(CliError::UnknownKind {
            given: name.to_string(),
            known: KINDS
                .iter()
                .map(|k| {
                    let kind = Kind {
                        info: k,
                        store_kind: k.kind,
                    };
                    let aliases = if k.api_version == CALICO_API_VERSION {
                        names(k)[1..].join(", ")
                    } else {
                        // A bare kind or plural names Calico's kind of that
                        // name; show the qualified spelling.
                        let mut aliases = vec![format!("{}.{}", k.plural, kind.group())];
                        aliases.extend(names(k)[2..].iter().cloned());
                        aliases.join(", ")
                    };
                    format!("\n  {} ({aliases})", kind.display())
                })
                .collect::<String>(),
        }),
    }
}
