//! nftables through the `nft` binary: one transaction per call on stdin
//! (`nft -f -`, atomic: all or nothing), and a typed read-back of a table
//! from `nft -j list table`.
//!
//! The read-back is the JSON form parsed into [`NftTable`] because what
//! felix-rs verifies after an apply is structural: which chains exist (and
//! their hooks and policies), the ordered rule comments in each chain (each
//! rule carries a content hash in its comment), and set/map elements. The
//! JSON schema (libnftables-json) is documented and stable; nft's text form
//! would need a parser for a pretty-printer that changes between releases.
//! Rule expressions are deliberately not modelled: the comment hash stands
//! for the rule's content. They are skipped while parsing, never built as
//! JSON values: at 10,000 rules a full parse into `serde_json::Value` held
//! over 200 MB for a second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{KernelError, KernelObject};

/// nftables address families.
pub const NFT_FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];

/// Identifies a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NftTableId {
    /// Family (`inet`, `ip`, `ip6`, ...).
    pub family: String,
    /// Name.
    pub name: String,
}

impl NftTableId {
    /// Table `family name`.
    pub fn new(family: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            family: family.into(),
            name: name.into(),
        }
    }

    pub(crate) fn object(&self) -> KernelObject {
        KernelObject::NftTable {
            family: self.family.clone(),
            name: self.name.clone(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), KernelError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 255
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !NFT_FAMILIES.contains(&self.family.as_str()) || !name_ok {
            return Err(KernelError::Invalid {
                object: self.object(),
                reason: format!(
                    "family must be one of {NFT_FAMILIES:?} and the name [A-Za-z0-9_.-]"
                ),
            });
        }
        Ok(())
    }
}

/// A base chain's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftBaseChain {
    /// Chain type (`filter`, `nat`, `route`).
    pub kind: String,
    /// Hook (`input`, `forward`, `output`, `prerouting`, `postrouting`, ...).
    pub hook: String,
    /// Priority as a number.
    pub priority: i64,
    /// Policy (`accept` or `drop`).
    pub policy: String,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftChain {
    /// Chain name.
    pub name: String,
    /// Hook details when it is a base chain.
    pub base: Option<NftBaseChain>,
}

/// A rule: where it is and its comment (Twill puts a content hash there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    /// Chain name.
    pub chain: String,
    /// Kernel rule handle.
    pub handle: u64,
    /// Rule comment.
    pub comment: Option<String>,
}

/// A set or map with its elements in nft's text notation (`10.0.0.0/24`,
/// `10.0.0.1-10.0.0.9`, `10.0.0.1 . tcp . 80`, `"cali1" : goto cali-fw-x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    /// Set name.
    pub name: String,
    /// Key type (`ipv4_addr`, `ipv4_addr . inet_proto . inet_service`).
    pub key_type: String,
    /// For maps, the value type (`verdict`, `ipv4_addr`, ...).
    pub map_type: Option<String>,
    /// Flags (`interval`, `constant`, `timeout`, ...).
    pub flags: Vec<String>,
    /// Elements, sorted.
    pub elements: Vec<String>,
}

/// The typed view of one table, enough to verify an applied ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftTable {
    /// Which table.
    pub id: NftTableId,
    /// Chains, by name.
    pub chains: Vec<NftChain>,
    /// Rules, in chain order as the kernel lists them.
    pub rules: Vec<NftRule>,
    /// Sets and maps, by name.
    pub sets: Vec<NftSet>,
}

impl NftTable {
    /// The comments of the rules of `chain`, in order.
    pub fn rule_comments(&self, chain: &str) -> Vec<Option<&str>> {
        self.rules
            .iter()
            .filter(|r| r.chain == chain)
            .map(|r| r.comment.as_deref())
            .collect()
    }

    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&NftChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set or map called `name`.
    pub fn set(&self, name: &str) -> Option<&NftSet> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// Where the `nft` binary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftConfig {
    /// Path of `nft` (looked up in `PATH` when not absolute).
    pub binary: PathBuf,
}

impl Default for NftConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("nft"),
        }
    }
}

/// Runs `nft ARGS` with `stdin` as input; returns stdout, or the error
/// built from stderr when nft fails.
fn run(
    binary: &Path,
    args: &[&str],
    stdin: Option<&str>,
    object: &KernelObject,
) -> Result<String, KernelError> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            KernelError::os(KernelObject::NftBinary(binary.to_path_buf()), "spawn", &err)
        })?;
    let output = std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
            // Written from another thread so a large script cannot deadlock
            // against nft filling its stdout/stderr pipes.
            scope.spawn(move || {
                // A write error means nft exited early; its stderr says why.
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .map_err(|err| KernelError::os(KernelObject::NftBinary(binary.to_path_buf()), "wait", &err))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(KernelError::Nft {
        object: object.clone(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string(),
    })
}

fn is_missing(err: &KernelError) -> bool {
    matches!(err, KernelError::Nft { stderr, .. } if stderr.contains("No such file or directory"))
}

/// Applies `script` as one atomic transaction.
pub(crate) fn apply(config: &NftConfig, script: &str) -> Result<(), KernelError> {
    run(
        &config.binary,
        &["-f", "-"],
        Some(script),
        &KernelObject::NftTransaction,
    )
    .map(drop)
}

/// Runs `nft` with `args` on the existing table `id`: a missing table is
/// [`KernelError::NotFound`].
fn run_on_table(config: &NftConfig, id: &NftTableId, args: &[&str]) -> Result<String, KernelError> {
    id.check()?;
    run(&config.binary, args, None, &id.object()).map_err(|err| {
        if is_missing(&err) {
            KernelError::NotFound {
                object: id.object(),
            }
        } else {
            err
        }
    })
}

/// Lists one table.
pub(crate) fn read_table(config: &NftConfig, id: &NftTableId) -> Result<NftTable, KernelError> {
    let json = run_on_table(config, id, &["-j", "list", "table", &id.family, &id.name])?;
    parse_table(id, &json)
}

/// Deletes one table.
pub(crate) fn delete_table(config: &NftConfig, id: &NftTableId) -> Result<(), KernelError> {
    run_on_table(config, id, &["delete", "table", &id.family, &id.name]).map(drop)
}

/// Lists every table.
pub(crate) fn list_tables(config: &NftConfig) -> Result<Vec<NftTableId>, KernelError> {
    let json = run(
        &config.binary,
        &["-j", "list", "tables"],
        None,
        &KernelObject::NftTransaction,
    )?;
    let mut out: Vec<NftTableId> = listing::<Value>(&json, &KernelObject::NftTransaction)?
        .iter()
        .filter_map(|o| o.get("table"))
        .filter_map(|t| {
            Some(NftTableId::new(
                t.get("family")?.as_str()?,
                t.get("name")?.as_str()?,
            ))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The `nftables` array of a JSON listing, each item parsed as `T`.
fn listing<T: serde::de::DeserializeOwned>(
    json: &str,
    object: &KernelObject,
) -> Result<Vec<T>, KernelError> {
    #[derive(Deserialize)]
    struct Listing<T> {
        nftables: Vec<T>,
    }
    serde_json::from_str::<Listing<T>>(json)
        .map(|l| l.nftables)
        .map_err(|e| KernelError::NftOutput {
            object: object.clone(),
            reason: format!("not an nft json listing with a top-level \"nftables\" array: {e}"),
        })
}

/// One item of a table listing; the other kinds (`metainfo`, `table`,
/// ...) and every field not named here, rule expressions above all, are
/// skipped unparsed.
#[derive(Deserialize)]
struct ItemJson {
    chain: Option<ChainJson>,
    rule: Option<RuleJson>,
    set: Option<SetJson>,
    map: Option<SetJson>,
}

#[derive(Deserialize)]
struct ChainJson {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    hook: Option<Value>,
    prio: Option<i64>,
    policy: Option<String>,
}

#[derive(Deserialize)]
struct RuleJson {
    chain: Option<String>,
    handle: Option<u64>,
    comment: Option<String>,
}

#[derive(Deserialize)]
struct SetJson {
    name: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<Value>,
    map: Option<Value>,
    flags: Option<Value>,
    elem: Option<Vec<Value>>,
}

/// Renders a JSON set key/type/element in nft's text notation.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(" . "),
        Value::Object(map) => {
            if let Some(p) = map.get("prefix") {
                return format!("{}/{}", render(&p["addr"]), render(&p["len"]));
            }
            if let Some(Value::Array(r)) = map.get("range") {
                return r.iter().map(render).collect::<Vec<_>>().join("-");
            }
            if let Some(Value::Array(c)) = map.get("concat") {
                return c.iter().map(render).collect::<Vec<_>>().join(" . ");
            }
            if let Some(e) = map.get("elem") {
                return render(&e["val"]);
            }
            for verdict in ["goto", "jump"] {
                if let Some(target) = map.get(verdict) {
                    return format!("{verdict} {}", render(&target["target"]));
                }
            }
            // accept / drop / return / continue: {"accept": null}.
            map.keys().next().cloned().unwrap_or_default()
        }
    }
}

/// Parses `nft -j list table` output.
pub(crate) fn parse_table(id: &NftTableId, json: &str) -> Result<NftTable, KernelError> {
    let mut table = NftTable {
        id: id.clone(),
        chains: Vec::new(),
        rules: Vec::new(),
        sets: Vec::new(),
    };
    for item in listing::<ItemJson>(json, &id.object())? {
        if let Some(c) = item.chain {
            let Some(name) = c.name else {
                continue;
            };
            let base = c.hook.map(|hook| NftBaseChain {
                kind: c.kind.unwrap_or_default(),
                hook: render(&hook),
                priority: c.prio.unwrap_or(0),
                policy: c.policy.unwrap_or_else(|| "accept".into()),
            });
            table.chains.push(NftChain { name, base });
        } else if let Some(r) = item.rule {
            table.rules.push(NftRule {
                chain: r.chain.unwrap_or_default(),
                handle: r.handle.unwrap_or(0),
                comment: r.comment,
            });
        } else if let Some((s, is_map)) =
            item.set.map(|s| (s, false)).or(item.map.map(|m| (m, true)))
        {
            let Some(name) = s.name else {
                continue;
            };
            let flags = match s.flags {
                Some(Value::Array(f)) => f.iter().map(render).collect(),
                Some(single) => vec![render(&single)],
                None => Vec::new(),
            };
            let mut elements: Vec<String> = s
                .elem
                .unwrap_or_default()
                .iter()
                .map(|e| match e {
                    // Map elements are [key, value] pairs.
                    Value::Array(pair) if is_map && pair.len() == 2 => {
                        format!("{} : {}", render(&pair[0]), render(&pair[1]))
                    }
                    other => render(other),
                })
                .collect();
            elements.sort();
            table.sets.push(NftSet {
                name,
                key_type: s.key_type.as_ref().map(render).unwrap_or_default(),
                map_type: s.map.as_ref().map(render),
                flags,
                elements,
            });
        }
    }
    table.chains.sort_by(|a, b| a.name.cmp(&b.name));
    table.sets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "twill", "handle": 3}},
      {"set": {"family": "inet", "name": "pods", "table": "twill", "type": "ipv4_addr", "handle": 2,
               "flags": ["interval"], "elem": [{"prefix": {"addr": "10.65.0.0", "len": 26}},
               {"range": ["10.0.0.1", "10.0.0.9"]}, "192.0.2.1"]}},
      {"set": {"family": "inet", "name": "svc", "table": "twill", "type": ["ipv4_addr", "inet_proto", "inet_service"],
               "handle": 4, "elem": [{"concat": ["10.0.0.1", "tcp", 80]}]}},
      {"map": {"family": "inet", "name": "dispatch", "table": "twill", "type": "ifname", "handle": 5, "map": "verdict",
               "elem": [["cali1", {"goto": {"target": "cali-fw-cali1"}}], ["cali2", {"drop": null}]]}},
      {"chain": {"family": "inet", "table": "twill", "name": "input", "handle": 1, "type": "filter",
                 "hook": "input", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "twill", "name": "cali-fw-cali1", "handle": 6}},
      {"rule": {"family": "inet", "table": "twill", "chain": "input", "handle": 7, "comment": "twl:abc",
                "expr": [{"accept": null}]}},
      {"rule": {"family": "inet", "table": "twill", "chain": "input", "handle": 8, "expr": [{"drop": null}]}}
    ]}"#;

    #[test]
    fn json_listing_becomes_a_typed_table() {
        let id = NftTableId::new("inet", "twill");
        let table = parse_table(&id, LISTING).expect("valid listing");
        let input = table.chain("input").expect("input chain");
        assert_eq!(
            input.base,
            Some(NftBaseChain {
                kind: "filter".into(),
                hook: "input".into(),
                priority: 0,
                policy: "drop".into()
            })
        );
        assert_eq!(
            table.chain("cali-fw-cali1").expect("regular chain").base,
            None
        );
        assert_eq!(table.rule_comments("input"), vec![Some("twl:abc"), None]);
        let pods = table.set("pods").expect("pods set");
        assert_eq!(pods.flags, vec!["interval"]);
        assert_eq!(
            pods.elements,
            vec!["10.0.0.1-10.0.0.9", "10.65.0.0/26", "192.0.2.1"]
        );
        let svc = table.set("svc").expect("svc set");
        assert_eq!(svc.key_type, "ipv4_addr . inet_proto . inet_service");
        assert_eq!(svc.elements, vec!["10.0.0.1 . tcp . 80"]);
        let dispatch = table.set("dispatch").expect("dispatch map");
        assert_eq!(dispatch.map_type.as_deref(), Some("verdict"));
        assert_eq!(
            dispatch.elements,
            vec!["cali1 : goto cali-fw-cali1", "cali2 : drop"]
        );
    }

    #[test]
    fn malformed_json_is_an_output_error_naming_the_table() {
        let id = NftTableId::new("inet", "twill");
        let err = parse_table(&id, "{}").expect_err("no nftables array");
        assert!(matches!(err, KernelError::NftOutput { .. }));
        assert!(err.to_string().starts_with("nft table inet twill"));
    }

    #[test]
    fn table_ids_are_checked_before_nft_runs() {
        assert!(NftTableId::new("inet", "twill").check().is_ok());
        assert!(NftTableId::new("inet6", "twill").check().is_err());
        assert!(NftTableId::new("inet", "a b").check().is_err());
        assert!(NftTableId::new("inet", "").check().is_err());
    }
}
