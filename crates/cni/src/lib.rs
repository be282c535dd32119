//! Twill's CNI plugin: what a container runtime executes for every pod.
//!
//! It implements the CNI specification's six verbs for configuration
//! versions 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0 (result shapes in
//! [`result`]) and wires pods as Calico does, with Calico's names
//! ([`workload`]) — but its CHECK really checks, and ADD fails closed.
//!
//! # ADD ([`add::add`])
//!
//! 1. Parse and validate stdin ([`config::NetConf`], unknown fields refused),
//!    the `CNI_*` environment and `CNI_ARGS` — before any side effect.
//! 2. Refuse if `CNI_IFNAME` already exists in the pod (code 104).
//! 3. Allocate from the node IPAM service, handle
//!    `k8s-pod-network.<containerID>`.
//! 4. Create the veth (MTU from the configuration, else the one felix-rs
//!    publishes in `mtu_file`, else the host's default-route interface's):
//!    host side `twl` + 11 hex digits of sha256(`<namespace>.<pod>`), MAC
//!    `ee:ee:ee:ee:ee:ee`; the peer is
//!    created directly in the pod namespace as `CNI_IFNAME`.
//! 5. Host sysctls: `forwarding=1`, `proxy_arp=1`, `neigh/proxy_delay=0`;
//!    for IPv6 `disable_ipv6=0`, `accept_ra=0`, `forwarding=1`,
//!    `proxy_ndp=1`. Host side up.
//! 6. Pod: IPv6 `accept_dad=0` (never wait for DAD), up, /32 and /128
//!    addresses, `169.254.1.1 dev eth0 scope link` and `default via
//!    169.254.1.1`; IPv6 `default via fe80::ecee:eeff:feee:eeee` (the host
//!    veth's link-local address, derived from its fixed MAC).
//! 7. Host routes `<ip>/32 dev twl… proto 201` (`RouteProto::TWILL_LOCAL`).
//! 8. Write the WorkloadEndpoint (namespace, pod, labels, service account,
//!    profiles `kns.<ns>` / `ksa.<ns>.<sa>`, named ports, IPs, interface,
//!    MAC, container ID).
//! 9. Fail closed: wait until felix-rs's status file
//!    `<endpoint_status_dir>/<namespace>.<endpoint>.json` reports the
//!    endpoint write's revision (default 10 s, `policy_setup_timeout`;
//!    0 turns it off).
//!
//! Any failure undoes what was done, in reverse order: endpoint restored
//! (or deleted), host routes and veth deleted, addresses released.
//!
//! # Where workload labels come from
//!
//! Labels, service account and named ports are resolved per field
//! ([`workload::Metadata::resolve`]), the first source that has the field
//! winning:
//!
//! 1. `runtimeConfig`: `labels`, `serviceAccountName`, `ports`. A runtime
//!    fills `runtimeConfig` only with the capabilities a plugin declares,
//!    and no common runtime (containerd, CRI-O, podman) supplies these
//!    three; they are for runtimes and tools that can.
//! 2. `CNI_ARGS`: `TWILL_LABELS=k=v,k2=v2` and `TWILL_SERVICE_ACCOUNT`
//!    (named ports cannot be passed this way).
//! 3. A WorkloadEndpoint pre-declared in the datastore under the name ADD
//!    will use: namespace `K8S_POD_NAMESPACE` (else `default`), name
//!    `<node>-k8s-<pod>-<ifname>` with the dashes inside each part doubled
//!    (`cni` and the container ID instead of `k8s` and the pod without
//!    `K8S_POD_NAME`). ADD keeps its labels, fills in the rest and takes it
//!    over; DEL deletes it with the attachment.
//!
//! Without any of them the endpoint has no labels, no service account and
//! no named ports, and policies selecting on labels do not match it.
//!
//! **There is no Kubernetes mode yet.** Calico's plugin, given
//! `policy.type: k8s`, reads the Pod and its Namespace from the API server
//! (labels, annotations, service account, named container ports). Twill's
//! plugin never contacts an API server, and kubelet with containerd or
//! CRI-O fills none of the sources above, so in a Kubernetes cluster today
//! pods get endpoints without labels unless something pre-declares them.
//! podman, driven in `tests/podman.rs`, passes only `K8S_POD_NAME` (the
//! container's name): its endpoints land in namespace `default`, and their
//! labels can come only from a pre-declared endpoint.
//!
//! # DEL, CHECK, GC, STATUS ([`ops`])
//!
//! DEL is idempotent and succeeds without a netns, endpoint or allocation;
//! it removes the endpoint and host veth only if the endpoint belongs to
//! `CNI_CONTAINERID`. CHECK compares interface, addresses, routes, sysctls,
//! the IPAM handle and the endpoint with what ADD made and lists every
//! difference (code 105). GC releases this node's attachments missing from
//! `cni.dev/valid-attachments`. STATUS is ready when the IPAM service and
//! the datastore answer (else code 50).
//!
//! # Error codes
//!
//! | code | meaning |
//! |---|---|
//! | 1 | unsupported `cniVersion`, or verb not in that version |
//! | 2 | unsupported field (unknown `CNI_ARGS` key without `IgnoreUnknown`) |
//! | 3 | unknown container (ADD: the netns does not exist) |
//! | 4 | missing or invalid `CNI_*` variable (named) |
//! | 5 | I/O failure (stdin, stdout) |
//! | 6 | stdin is not valid JSON / unknown field / wrong type (path named) |
//! | 7 | invalid network configuration value |
//! | 11 | try again later (IPAM service unreachable, GC partial failure) |
//! | 50 | STATUS: not available (IPAM service or datastore down) |
//! | 100 | the IPAM service refused (e.g. pool exhausted) |
//! | 101 | a kernel operation failed (step named) |
//! | 102 | the datastore failed |
//! | 103 | felix-rs did not report the endpoint programmed in time |
//! | 104 | ADD: `CNI_IFNAME` already exists in the pod |
//! | 105 | CHECK: drift (every difference in `details`) |

pub mod add;
pub mod config;
pub mod deps;
pub mod endpoint;
pub mod error;
pub mod ops;
pub mod result;
pub mod workload;

use serde_json::{Value, json};

pub use config::{Command, Env, NetConf, SUPPORTED_VERSIONS};
pub use deps::{Deps, IpamService, SocketIpam};
pub use error::CniError;
pub use result::CniResult;

/// What the process prints and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Bytes for stdout (a result, a version report, an error object, or
    /// nothing).
    pub stdout: Vec<u8>,
    /// Exit status.
    pub exit_code: i32,
}

/// The newest configuration version, used for reports when the input's
/// cannot be read.
pub const LATEST_VERSION: &str = "1.1.0";

/// Runs one invocation: `env` looks up environment variables, `stdin` is
/// the configuration, `make_deps` opens the kernel, IPAM client and
/// datastore (only after the input is valid).
pub fn run(
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    make_deps: impl FnOnce(&NetConf) -> Result<Deps, CniError>,
) -> Output {
    let mut version = LATEST_VERSION.to_string();
    match dispatch(&env, stdin, make_deps, &mut version) {
        Ok(None) => Output {
            stdout: Vec::new(),
            exit_code: 0,
        },
        Ok(Some(value)) => Output {
            stdout: to_bytes(&value),
            exit_code: 0,
        },
        Err(e) => {
            tracing::error!(code = e.code(), error = %e, "CNI call failed");
            Output {
                stdout: to_bytes(&e.to_json(&version)),
                exit_code: 1,
            }
        }
    }
}

fn to_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("JSON values always serialize");
    bytes.push(b'\n');
    bytes
}

/// The VERSION report for `requested` (from stdin, if any).
pub fn version_report(requested: Option<&str>) -> Value {
    json!({
        "cniVersion": requested.unwrap_or(LATEST_VERSION),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

fn dispatch(
    env: &impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    make_deps: impl FnOnce(&NetConf) -> Result<Deps, CniError>,
    version: &mut String,
) -> Result<Option<Value>, CniError> {
    let command = Command::parse(&env("CNI_COMMAND").ok_or(CniError::InvalidEnvironment {
        variable: "CNI_COMMAND",
        reason: "missing".into(),
    })?)?;
    if command == Command::Version {
        let requested: Option<String> = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        return Ok(Some(version_report(requested.as_deref())));
    }
    let conf = NetConf::parse(stdin)?;
    if SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        version.clone_from(&conf.cni_version);
    }
    config::check_version(&conf.cni_version, command)?;
    let env = Env::from_lookup(env)?;
    let mut deps = make_deps(&conf).map_err(|e| match (command, e) {
        (Command::Status, e) => CniError::NotAvailable {
            reason: e.to_string(),
        },
        (_, e) => e,
    })?;
    let span = tracing::info_span!("cni", command = ?command, container = %env.container_id, ifname = %env.ifname);
    let _entered = span.enter();
    match command {
        Command::Add => {
            let ours = add::add(&conf, &env, &mut deps)?;
            let result = match &conf.prev_result {
                Some(prev) => CniResult::from_json(prev)?.merge(ours),
                None => ours,
            };
            Ok(Some(result.to_json(&conf.cni_version)))
        }
        Command::Del => ops::del(&env, &mut deps).map(|()| None),
        Command::Check => ops::check(&conf, &env, &mut deps).map(|()| None),
        Command::Gc => ops::gc(&conf, &mut deps).map(|_| None),
        Command::Status => ops::status(&mut deps).map(|()| None),
        Command::Version => Ok(Some(version_report(Some(&conf.cni_version)))),
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod run_tests;
