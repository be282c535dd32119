//! What the runtime hands the plugin: the network configuration on stdin,
//! the `CNI_*` environment and the `CNI_ARGS` keys. Everything is parsed
//! and validated here, before the first side effect.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use twill_api::endpoint::WorkloadEndpointPort;

use crate::error::CniError;

/// The configuration versions this plugin serves, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Default socket of the node IPAM service.
pub const DEFAULT_IPAM_SOCKET: &str = "/var/run/twill/ipam.sock";
/// Default datastore file.
pub const DEFAULT_DATASTORE: &str = "/var/lib/twill/datastore.db";
/// Default time ADD waits for felix-rs to program the endpoint.
pub const DEFAULT_POLICY_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify (≥ 0.4.0).
    Check,
    /// Report versions.
    Version,
    /// Readiness (≥ 1.1.0).
    Status,
    /// Release everything not in `cni.dev/valid-attachments` (≥ 1.1.0).
    Gc,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    ///
    /// # Errors
    ///
    /// [`CniError::InvalidEnvironment`] for an unknown verb.
    pub fn parse(value: &str) -> Result<Self, CniError> {
        Ok(match value {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            other => {
                return Err(CniError::InvalidEnvironment {
                    variable: "CNI_COMMAND",
                    reason: format!(
                        "unknown verb {other:?}; expected ADD, DEL, CHECK, STATUS, GC or VERSION"
                    ),
                });
            }
        })
    }

    /// The oldest configuration version that has this verb.
    pub fn min_version(self) -> &'static str {
        match self {
            Self::Add | Self::Del | Self::Version => "0.3.0",
            Self::Check => "0.4.0",
            Self::Status | Self::Gc => "1.1.0",
        }
    }
}

/// Compares two `major.minor.patch` versions (unparseable parts are 0).
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(version) >= parse(minimum)
}

/// Checks that `version` is supported and has `command`.
///
/// # Errors
///
/// [`CniError::IncompatibleVersion`].
pub fn check_version(version: &str, command: Command) -> Result<(), CniError> {
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::IncompatibleVersion {
            version: version.into(),
            reason: format!("supported versions are {}", SUPPORTED_VERSIONS.join(", ")),
        });
    }
    if !version_at_least(version, command.min_version()) {
        return Err(CniError::IncompatibleVersion {
            version: version.into(),
            reason: format!(
                "{command:?} needs configuration version {} or later",
                command.min_version()
            ),
        });
    }
    Ok(())
}

/// The `ipam` section: which addresses to ask the node IPAM service for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct IpamConf {
    /// Must be `twill-ipam` (the service is not a delegated plugin).
    #[serde(rename = "type")]
    pub ipam_type: String,
    /// Ask for one IPv4 address (default true).
    #[serde(default = "yes")]
    pub assign_ipv4: bool,
    /// Ask for one IPv6 address (default false).
    #[serde(default)]
    pub assign_ipv6: bool,
    /// IPv4 pools to use, by name or CIDR (empty: every matching pool).
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    /// IPv6 pools to use.
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for IpamConf {
    fn default() -> Self {
        Self {
            ipam_type: "twill-ipam".into(),
            assign_ipv4: true,
            assign_ipv6: false,
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
        }
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The container.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface in it.
    pub ifname: String,
}

/// The network configuration on stdin (one plugin object of a list, as
/// the runtime hands it to the plugin).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConf {
    /// Configuration version.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The network's name.
    pub name: String,
    /// The plugin's type (`twill-cni`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Pod interface MTU (default: the number felix-rs publishes in
    /// `mtu_file`, which accounts for VXLAN; without it the MTU of the
    /// host's default-route interface, else 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Where felix-rs publishes the pod MTU (default
    /// `twill_api::status::DEFAULT_MTU_FILE`).
    #[serde(default = "default_mtu_file")]
    pub mtu_file: PathBuf,
    /// The IPAM section.
    #[serde(default)]
    pub ipam: IpamConf,
    /// Socket of the node IPAM service.
    #[serde(default = "default_ipam_socket")]
    pub ipam_socket: PathBuf,
    /// The datastore file.
    #[serde(default = "default_datastore")]
    pub datastore_path: PathBuf,
    /// This node's name (default: the host name).
    #[serde(default)]
    pub nodename: Option<String>,
    /// Where felix-rs reports programmed endpoints.
    #[serde(default = "default_status_dir")]
    pub endpoint_status_dir: PathBuf,
    /// Seconds ADD waits for the endpoint to be programmed; 0 turns the
    /// wait off (fail open — not recommended). Default 10.
    #[serde(default)]
    pub policy_setup_timeout: Option<f64>,
    /// `error`, `warn`, `info`, `debug` or `trace` (default `info`).
    #[serde(default)]
    pub log_level: Option<String>,
    /// Append logs to this file as well as stderr.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// The previous plugin's result (chaining).
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// Runtime-supplied values for the capabilities below.
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: Option<RuntimeConfig>,
    /// Capabilities this plugin asks for (`portMappings`, ...).
    #[serde(default)]
    pub capabilities: Option<BTreeMap<String, bool>>,
    /// Conventional `args` (passed through, unused).
    #[serde(default)]
    pub args: Option<Value>,
    /// DNS settings echoed into the result.
    #[serde(default)]
    pub dns: Option<Value>,
    /// GC: the attachments to keep.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// List-level keys some runtimes copy into each plugin's object.
    #[serde(default, rename = "disableCheck")]
    pub disable_check: Option<bool>,
    /// See `disableCheck`.
    #[serde(default, rename = "disableGC")]
    pub disable_gc: Option<bool>,
}

/// `runtimeConfig`: the standard capabilities plus Twill's workload
/// metadata for runtimes without a Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Workload labels (win over `CNI_ARGS` and a pre-declared endpoint).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Service account.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Named container ports.
    #[serde(default)]
    pub ports: Option<Vec<WorkloadEndpointPort>>,
    /// Every other capability (`portMappings`, `bandwidth`, ...), for the
    /// chained plugins; not interpreted.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn default_ipam_socket() -> PathBuf {
    PathBuf::from(DEFAULT_IPAM_SOCKET)
}
fn default_mtu_file() -> PathBuf {
    PathBuf::from(twill_api::status::DEFAULT_MTU_FILE)
}
fn default_datastore() -> PathBuf {
    PathBuf::from(DEFAULT_DATASTORE)
}
fn default_status_dir() -> PathBuf {
    PathBuf::from(twill_api::status::DEFAULT_ENDPOINT_STATUS_DIR)
}

impl NetConf {
    /// Decodes and validates stdin.
    ///
    /// # Errors
    ///
    /// [`CniError::Decode`] (with the field path) or
    /// [`CniError::InvalidConfig`].
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let mut de = serde_json::Deserializer::from_slice(stdin);
        let conf: Self = decode_whole(&mut de)?;
        conf.validate()?;
        Ok(conf)
    }

    fn validate(&self) -> Result<(), CniError> {
        if self.name.is_empty() {
            return Err(CniError::InvalidConfig {
                field: "name",
                reason: "must not be empty".into(),
            });
        }
        if let Some(mtu) = self.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(CniError::InvalidConfig {
                field: "mtu",
                reason: format!("{mtu} is outside 576-65535"),
            });
        }
        if self.ipam.ipam_type != "twill-ipam" {
            return Err(CniError::InvalidConfig {
                field: "ipam.type",
                reason: format!(
                    "{:?} is not supported; use \"twill-ipam\" (the node IPAM service)",
                    self.ipam.ipam_type
                ),
            });
        }
        if !self.ipam.assign_ipv4 && !self.ipam.assign_ipv6 {
            return Err(CniError::InvalidConfig {
                field: "ipam",
                reason: "assign_ipv4 and assign_ipv6 are both false".into(),
            });
        }
        if let Some(t) = self.policy_setup_timeout
            && !(t.is_finite() && (0.0..=600.0).contains(&t))
        {
            return Err(CniError::InvalidConfig {
                field: "policy_setup_timeout",
                reason: format!("{t} is outside 0-600 seconds"),
            });
        }
        Ok(())
    }

    /// How long ADD waits for the endpoint to be programmed (`None`: no
    /// wait).
    pub fn policy_wait(&self) -> Option<Duration> {
        match self.policy_setup_timeout {
            None => Some(DEFAULT_POLICY_SETUP_TIMEOUT),
            Some(0.0) => None,
            Some(t) => Some(Duration::from_secs_f64(t)),
        }
    }
}

fn decode_whole<'de, T: Deserialize<'de>>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, CniError> {
    let value = T::deserialize(&mut *de).map_err(|e| CniError::Decode {
        reason: e.to_string(),
    })?;
    de.end().map_err(|e| CniError::Decode {
        reason: e.to_string(),
    })?;
    Ok(value)
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS` (optional for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed.
    pub args: CniArgs,
}

impl Env {
    /// Reads the environment through `get` (tests pass a map).
    ///
    /// # Errors
    ///
    /// [`CniError::InvalidEnvironment`] naming the variable, or
    /// [`CniError::UnsupportedField`] for an unknown `CNI_ARGS` key.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = Command::parse(&get("CNI_COMMAND").ok_or(CniError::InvalidEnvironment {
            variable: "CNI_COMMAND",
            reason: "missing".into(),
        })?)?;
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let netns = get("CNI_NETNS")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if needs_container {
            check_container_id(&container_id)?;
            check_ifname(&ifname)?;
            if netns.is_none() && command != Command::Del {
                return Err(CniError::InvalidEnvironment {
                    variable: "CNI_NETNS",
                    reason: "missing (required for ADD and CHECK)".into(),
                });
            }
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

fn check_container_id(id: &str) -> Result<(), CniError> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidEnvironment {
            variable: "CNI_CONTAINERID",
            reason: format!(
                "{id:?} must be non-empty, start with a letter or digit and contain only [A-Za-z0-9_.-]"
            ),
        })
    }
}

fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':']) // ':' is taken by alias names
        && !name.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(CniError::InvalidEnvironment {
            variable: "CNI_IFNAME",
            reason: format!(
                "{name:?} is not a valid interface name (1-15 chars, no '/', ':', spaces)"
            ),
        })
    }
}

/// The `CNI_ARGS` keys Twill reads (`K=V;K2=V2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `TWILL_SERVICE_ACCOUNT`.
    pub service_account: Option<String>,
    /// `TWILL_LABELS` (`k=v,k2=v2`).
    pub labels: Option<BTreeMap<String, String>>,
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Unknown keys are an error unless
    /// `IgnoreUnknown=1` (or `true`) is among them, as the conventions say.
    ///
    /// # Errors
    ///
    /// [`CniError::UnsupportedField`] or [`CniError::InvalidEnvironment`].
    pub fn parse(text: &str) -> Result<Self, CniError> {
        let mut args = Self::default();
        let pairs: Vec<(&str, &str)> = text
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once('=').ok_or(CniError::InvalidEnvironment {
                    variable: "CNI_ARGS",
                    reason: format!("{p:?} is not KEY=VALUE"),
                })
            })
            .collect::<Result<_, _>>()?;
        let ignore_unknown = pairs
            .iter()
            .any(|(k, v)| *k == "IgnoreUnknown" && matches!(*v, "1" | "true" | "True"));
        for (key, value) in pairs {
            let value = value.to_string();
            match key {
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value),
                "K8S_POD_NAME" => args.pod_name = Some(value),
                "K8S_POD_INFRA_CONTAINER_ID" => args.infra_container_id = Some(value),
                "K8S_POD_UID" => args.pod_uid = Some(value),
                "TWILL_SERVICE_ACCOUNT" => args.service_account = Some(value),
                "TWILL_LABELS" => args.labels = Some(parse_labels(&value)?),
                "IgnoreUnknown" => {}
                _ if ignore_unknown => {}
                _ => {
                    return Err(CniError::UnsupportedField {
                        field: format!("CNI_ARGS {key}"),
                        value,
                        reason: "unknown key; add IgnoreUnknown=1 to pass it through".into(),
                    });
                }
            }
        }
        Ok(args)
    }
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or(CniError::InvalidEnvironment {
                    variable: "CNI_ARGS",
                    reason: format!("TWILL_LABELS entry {p:?} is not key=value"),
                })
        })
        .collect()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
