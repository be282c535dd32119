//! The plugin's errors and their CNI error codes.

use serde_json::{Value, json};

/// Everything that makes a verb fail. Each variant maps to one CNI error
/// code ([`CniError::code`]); codes below 100 are the specification's,
/// 100 and above are Twill's.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// Code 1: the configuration's `cniVersion` is not supported, or the
    /// verb does not exist in that version.
    #[error("incompatible CNI version {version:?}: {reason}")]
    IncompatibleVersion {
        /// The version asked for.
        version: String,
        /// Why it cannot be served.
        reason: String,
    },
    /// Code 2: a field (or `CNI_ARGS` key) this plugin does not support.
    #[error("unsupported field {field:?} = {value:?}: {reason}")]
    UnsupportedField {
        /// The key.
        field: String,
        /// Its value.
        value: String,
        /// What to do instead.
        reason: String,
    },
    /// Code 3: the container is unknown (the runtime need not call DEL).
    #[error("unknown container {container_id:?}: {reason}")]
    UnknownContainer {
        /// `CNI_CONTAINERID`.
        container_id: String,
        /// Why.
        reason: String,
    },
    /// Code 4: a `CNI_*` environment variable is missing or invalid.
    #[error("invalid environment variable {variable}: {reason}")]
    InvalidEnvironment {
        /// The variable's name.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Code 5: reading stdin, a file or writing stdout failed.
    #[error("i/o failure on {what}: {source}")]
    Io {
        /// What was read or written.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Code 6: stdin is not the JSON the specification describes.
    #[error("cannot decode the network configuration: {reason}")]
    Decode {
        /// The decoder's message (with the field path).
        reason: String,
    },
    /// Code 7: the configuration decodes but is not valid.
    #[error("invalid network configuration field {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Code 11: a transient condition; the runtime should retry.
    #[error("try again later: {reason}")]
    TryAgainLater {
        /// Why.
        reason: String,
    },
    /// Code 50: STATUS — the plugin cannot serve ADD now.
    #[error("plugin not available: {reason}")]
    NotAvailable {
        /// Which dependency does not answer.
        reason: String,
    },
    /// Code 100: the node IPAM service refused or failed a request.
    #[error("ipam: {operation} for handle {handle:?} failed: {reason}")]
    Ipam {
        /// The request (`allocate`, `release`, `status`).
        operation: &'static str,
        /// The IPAM handle.
        handle: String,
        /// The service's answer.
        reason: String,
    },
    /// Code 101: a kernel operation failed.
    #[error("kernel: {step}: {source}")]
    Kernel {
        /// The wiring step (`create veth twl…`, `add route …`).
        step: String,
        /// The kernel's error.
        #[source]
        source: Box<twill_kernel::KernelError>,
    },
    /// Code 102: the datastore failed.
    #[error("datastore: {operation} {key}: {reason}")]
    Datastore {
        /// What was attempted.
        operation: &'static str,
        /// The object's key.
        key: String,
        /// The store's error.
        reason: String,
    },
    /// Code 103: felix-rs did not report the endpoint programmed in time
    /// (fail closed: the pod is not started).
    #[error(
        "policy for endpoint {endpoint} was not programmed within {waited_ms} ms \
         (no status file {file} with revision >= {revision}; is felix-rs running?)"
    )]
    PolicyTimeout {
        /// `<namespace>/<wep name>`.
        endpoint: String,
        /// The status file waited for.
        file: String,
        /// The revision of the endpoint write.
        revision: u64,
        /// How long ADD waited.
        waited_ms: u128,
    },
    /// Code 104: ADD found `CNI_IFNAME` already present in the pod.
    #[error("interface {ifname} already exists in {netns}")]
    InterfaceExists {
        /// `CNI_IFNAME`.
        ifname: String,
        /// `CNI_NETNS`.
        netns: String,
    },
    /// Code 105: CHECK found state that differs from what ADD made.
    #[error("check found drift: {}", .problems.join("; "))]
    Drift {
        /// One line per difference.
        problems: Vec<String>,
    },
}

impl CniError {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            Self::IncompatibleVersion { .. } => 1,
            Self::UnsupportedField { .. } => 2,
            Self::UnknownContainer { .. } => 3,
            Self::InvalidEnvironment { .. } => 4,
            Self::Io { .. } => 5,
            Self::Decode { .. } => 6,
            Self::InvalidConfig { .. } => 7,
            Self::TryAgainLater { .. } => 11,
            Self::NotAvailable { .. } => 50,
            Self::Ipam { .. } => 100,
            Self::Kernel { .. } => 101,
            Self::Datastore { .. } => 102,
            Self::PolicyTimeout { .. } => 103,
            Self::InterfaceExists { .. } => 104,
            Self::Drift { .. } => 105,
        }
    }

    /// The specification's error object for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let details = match self {
            Self::Drift { problems } => problems.join("\n"),
            Self::Kernel { source, .. } => source.to_string(),
            _ => String::new(),
        };
        let mut object = json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": self.to_string(),
        });
        if !details.is_empty() {
            object["details"] = Value::from(details);
        }
        object
    }

    pub(crate) fn kernel(step: impl Into<String>, source: twill_kernel::KernelError) -> Self {
        Self::Kernel {
            step: step.into(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_objects_carry_the_spec_code_and_version() {
        let cases: Vec<(CniError, u32)> = vec![
            (
                CniError::IncompatibleVersion {
                    version: "0.2.0".into(),
                    reason: "x".into(),
                },
                1,
            ),
            (
                CniError::InvalidEnvironment {
                    variable: "CNI_NETNS",
                    reason: "missing".into(),
                },
                4,
            ),
            (
                CniError::Decode {
                    reason: "eof".into(),
                },
                6,
            ),
            (
                CniError::InvalidConfig {
                    field: "mtu",
                    reason: "0".into(),
                },
                7,
            ),
            (
                CniError::NotAvailable {
                    reason: "ipam".into(),
                },
                50,
            ),
            (
                CniError::Drift {
                    problems: vec!["route gone".into()],
                },
                105,
            ),
        ];
        for (error, code) in cases {
            let object = error.to_json("1.1.0");
            assert_eq!(object["code"], code, "{error}");
            assert_eq!(object["cniVersion"], "1.1.0");
            assert_eq!(object["msg"], error.to_string());
        }
    }
}
