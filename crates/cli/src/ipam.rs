//! `twill ipam show|check|release|configure`: IP address management on the
//! embedded datastore, in the layouts of `calicoctl ipam`.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use twill_api::Object;
use twill_api::ipam::IPAMBlockSpec;
use twill_api::ippool::{IPAM_CONFIGURATION_NAME, IPAMConfigurationSpec};
use twill_api::node::{CLUSTER_INFORMATION_NAME, ClusterInformationSpec};
use twill_ipam::block::{BlockExt, ip_at};
use twill_ipam::store::{self, Cas};
use twill_ipam::{AllocationRef, Ipam, Liveness, StoreLiveness};
use twill_store::{Datastore, SqliteStore};

use crate::datastore::StoreArgs;
use crate::{Status, line};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `twill ipam ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per pool: addresses in total, in use, reserved, free.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// Also list every block with its node and usage.
        #[arg(long)]
        show_blocks: bool,
        /// Who holds this address?
        #[arg(long)]
        ip: Option<IpAddr>,
        /// List the addresses nodes use from blocks affine to other nodes.
        #[arg(long, conflicts_with_all = ["ip", "show_configuration"])]
        show_borrowed: bool,
        /// Print the IPAMConfiguration in effect (Twill's defaults filled in).
        #[arg(long, conflicts_with = "ip")]
        show_configuration: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Find inconsistencies and addresses whose owner is gone.
    Check {
        #[command(flatten)]
        store: StoreArgs,
        /// Write the report (JSON) to this file, for `release --from-report`.
        #[arg(short = 'o', long = "output")]
        report: Option<PathBuf>,
    },
    /// Release addresses.
    Release {
        #[command(flatten)]
        store: StoreArgs,
        /// One address.
        #[arg(long, conflicts_with = "from_report")]
        ip: Option<IpAddr>,
        /// Every address a `check` report lists as having no live owner
        /// (each only if still held under the same handle and sequence).
        #[arg(long)]
        from_report: Option<PathBuf>,
    },
    /// Change the IPAMConfiguration.
    Configure {
        #[command(flatten)]
        store: StoreArgs,
        /// Never borrow addresses from other nodes' blocks.
        #[arg(long = "strictaffinity")]
        strict_affinity: Option<bool>,
        /// Blocks one node may hold (0: Calico's default, 20).
        #[arg(long)]
        max_blocks_per_host: Option<i32>,
        /// Seconds a released address waits before reuse (0–1200).
        #[arg(long)]
        ip_cooldown_seconds: Option<i32>,
    },
}

/// The report `check` writes and `release --from-report` reads.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// The report format's version.
    version: String,
    /// Inconsistencies, as `twill_ipam::Problem` renders them.
    problems: Vec<String>,
    /// Addresses held for an owner that no longer exists.
    allocations_without_owner: Vec<Orphan>,
    /// `ClusterInformation` `default`'s `clusterGUID` when the report was
    /// written (`None`: the datastore has none); a report is only released
    /// on the cluster it was made on.
    #[serde(rename = "clusterGUID", default)]
    cluster_guid: Option<String>,
    /// The revision of `ClusterInformation` `default` then.
    #[serde(default)]
    cluster_info_revision: Option<u64>,
}

const REPORT_VERSION: &str = "twill-ipam-check/v1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Orphan {
    ip: IpAddr,
    handle: String,
    sequence: u64,
    node: Option<String>,
}

/// Runs one `twill ipam` command.
pub fn run(command: &Command, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    let result = match command {
        Command::Show {
            store,
            show_blocks,
            ip,
            show_borrowed,
            show_configuration,
            output,
        } => open(&store.datastore).and_then(|s| {
            if *show_configuration {
                show_configuration_table(&*s, *output, out)
            } else if *show_borrowed {
                show_borrowed_table(&*s, *output, out)
            } else {
                show(&*s, *show_blocks, *ip, *output, out)
            }
        }),
        Command::Check { store, report } => {
            open(&store.datastore).and_then(|s| check(&*s, report.as_deref(), out))
        }
        Command::Release {
            store,
            ip,
            from_report,
        } => open(&store.datastore).and_then(|s| release(s, *ip, from_report.as_deref(), out)),
        Command::Configure {
            store,
            strict_affinity,
            max_blocks_per_host,
            ip_cooldown_seconds,
        } => open(&store.datastore).and_then(|s| {
            configure(
                &*s,
                *strict_affinity,
                *max_blocks_per_host,
                *ip_cooldown_seconds,
                out,
            )
        }),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            line(err, format_args!("error: {e:#}"));
            Status::Usage
        }
    }
}

fn open(path: &Path) -> anyhow::Result<Arc<dyn Datastore>> {
    if !path.exists() {
        anyhow::bail!("datastore {} does not exist", path.display());
    }
    Ok(Arc::new(SqliteStore::open(path)?))
}

fn print_structured<T: Serialize>(
    value: &T,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match output {
        Output::Json => line(
            out,
            format_args!("{}", serde_json::to_string_pretty(value)?),
        ),
        Output::Yaml => {
            let _ = write!(out, "{}", serde_saphyr::to_string(value)?);
        }
        Output::Table => unreachable!("tables are printed by the caller"),
    }
    Ok(())
}

fn show(
    store: &dyn Datastore,
    show_blocks: bool,
    ip: Option<IpAddr>,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let blocks = store::list::<IPAMBlockSpec>(store)?;
    if let Some(ip) = ip {
        let holder = blocks.iter().find_map(|b| {
            let net = b.object.spec.network()?;
            let ordinal = twill_ipam::block::ordinal_of(&net, ip)?;
            let slot = b.object.spec.slot(ordinal)?;
            Some(serde_json::json!({
                "ip": ip,
                "block": b.object.spec.cidr,
                "handle": slot.handle(),
                "attributes": slot.attribute.secondary,
                "releasedAt": slot.attribute.released_at,
            }))
        });
        match (holder, output) {
            (Some(h), Output::Table) => {
                let state = if h["releasedAt"].is_null() {
                    "in use"
                } else {
                    "released, cooling down"
                };
                line(out, format_args!("IP {ip} is {state}"));
                line(
                    out,
                    format_args!("  handle: {}", h["handle"].as_str().unwrap_or("-")),
                );
                if let Some(attrs) = h["attributes"].as_object() {
                    for (k, v) in attrs {
                        line(
                            out,
                            format_args!("  {k}: {}", v.as_str().unwrap_or_default()),
                        );
                    }
                }
            }
            (None, Output::Table) => line(out, format_args!("IP {ip} is not assigned")),
            (h, output) => print_structured(&h, output, out)?,
        }
        return Ok(Status::Success);
    }

    let usage = twill_ipam::usage(store)?;
    let block_rows: Vec<serde_json::Value> = blocks
        .iter()
        .filter(|b| !b.object.spec.deleted && b.object.spec.network().is_some())
        .map(|b| {
            let s = &b.object.spec;
            let total = twill_ipam::block::size_of(&s.net());
            let in_use = s.in_use();
            serde_json::json!({
                "cidr": s.cidr,
                "node": s.host(),
                "total": total,
                "inUse": in_use,
                "free": s.free(&[]),
            })
        })
        .collect();
    if output != Output::Table {
        let pools: Vec<serde_json::Value> = usage
            .iter()
            .map(|u| {
                serde_json::json!({
                    "pool": u.pool, "cidr": u.cidr, "total": u.total.to_string(),
                    "inUse": u.in_use, "coolingDown": u.cooling_down,
                    "reserved": u.reserved, "free": u.free().to_string(), "blocks": u.blocks,
                })
            })
            .collect();
        let mut doc = serde_json::json!({ "pools": pools });
        if show_blocks {
            doc["blocks"] = serde_json::Value::Array(block_rows);
        }
        print_structured(&doc, output, out)?;
        return Ok(Status::Success);
    }
    let mut rows = vec![[
        "GROUPING".to_string(),
        "CIDR".into(),
        "IPS TOTAL".into(),
        "IPS IN USE".into(),
        "IPS FREE".into(),
        "NODE".into(),
    ]];
    for u in &usage {
        let pct = |n: u128| {
            if u.total == 0 {
                String::new()
            } else {
                format!(" ({:.0}%)", n as f64 * 100.0 / u.total as f64)
            }
        };
        let used = u128::from(u.in_use);
        let cooling = if u.cooling_down > 0 {
            format!(" +{} cooling down", u.cooling_down)
        } else {
            String::new()
        };
        rows.push([
            "IP Pool".into(),
            u.cidr.clone(),
            u.total.to_string(),
            format!("{used}{}{cooling}", pct(used)),
            format!("{}{}", u.free(), pct(u.free())),
            String::new(),
        ]);
        if show_blocks {
            let pool: ipnet::IpNet = u.cidr.parse()?;
            for b in &block_rows {
                let Some(cidr) = b["cidr"].as_str() else {
                    continue;
                };
                let Ok(net) = cidr.parse::<ipnet::IpNet>() else {
                    continue;
                };
                if !pool.contains(&net) {
                    continue;
                }
                rows.push([
                    "Block".into(),
                    cidr.to_string(),
                    b["total"].to_string(),
                    b["inUse"].to_string(),
                    b["free"].to_string(),
                    b["node"].as_str().unwrap_or("-").to_string(),
                ]);
            }
        }
    }
    table(&rows, out);
    Ok(Status::Success)
}

fn table<R: AsRef<[String]>>(rows: &[R], out: &mut dyn Write) {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w + 2)).collect();
    line(out, format_args!("+{}+", rule.join("+")));
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        line(out, format_args!("|{}|", cells.join("|")));
        if i == 0 {
            line(out, format_args!("+{}+", rule.join("+")));
        }
    }
    line(out, format_args!("+{}+", rule.join("+")));
}

/// One address a node uses from a block affine to another node.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Borrowed {
    ip: IpAddr,
    borrowing_node: String,
    block: String,
    block_owner: String,
    /// `pod`, or the allocation's `type` attribute (e.g. a tunnel address).
    #[serde(rename = "type")]
    kind: String,
    /// `namespace/pod` for a pod, else the handle.
    allocated_to: String,
}

/// The borrowed addresses, and how many in-use addresses in affine blocks
/// carry no node attribute (so cannot be classified).
fn borrowed(store: &dyn Datastore) -> anyhow::Result<(Vec<Borrowed>, usize)> {
    let mut found = Vec::new();
    let mut unclassified = 0;
    for b in store::list::<IPAMBlockSpec>(store)? {
        let spec = &b.object.spec;
        let (Some(net), Some(owner)) = (spec.network(), spec.host()) else {
            continue;
        };
        for slot in spec.slots().iter().filter(|s| !s.released()) {
            let attrs = &slot.attribute.secondary;
            let Some(node) = attrs.get("node") else {
                unclassified += 1;
                continue;
            };
            if node == owner {
                continue;
            }
            let namespace = attrs.get("namespace").map_or("", String::as_str);
            let (kind, allocated_to) = match (attrs.get("pod"), attrs.get("type")) {
                (Some(pod), _) => ("pod".to_string(), format!("{namespace}/{pod}")),
                (None, Some(t)) => (t.clone(), slot.handle().unwrap_or("-").to_string()),
                (None, None) => ("-".to_string(), slot.handle().unwrap_or("-").to_string()),
            };
            found.push(Borrowed {
                ip: ip_at(&net, slot.ordinal),
                borrowing_node: node.clone(),
                block: spec.cidr.clone(),
                block_owner: owner.to_string(),
                kind,
                allocated_to,
            });
        }
    }
    Ok((found, unclassified))
}

fn show_borrowed_table(
    store: &dyn Datastore,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let (found, unclassified) = borrowed(store)?;
    if output != Output::Table {
        let doc = serde_json::json!({ "borrowed": found, "unclassified": unclassified });
        print_structured(&doc, output, out)?;
        return Ok(Status::Success);
    }
    let mut rows = vec![
        [
            "IP",
            "BORROWING-NODE",
            "BLOCK",
            "BLOCK OWNER",
            "TYPE",
            "ALLOCATED-TO",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for b in &found {
        rows.push(vec![
            b.ip.to_string(),
            b.borrowing_node.clone(),
            b.block.clone(),
            b.block_owner.clone(),
            b.kind.clone(),
            b.allocated_to.clone(),
        ]);
    }
    table(&rows, out);
    if unclassified > 0 {
        line(
            out,
            format_args!(
                "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed."
            ),
        );
    }
    Ok(Status::Success)
}

fn show_configuration_table(
    store: &dyn Datastore,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let spec = store::get::<IPAMConfigurationSpec>(store, IPAM_CONFIGURATION_NAME)?
        .map(|s| s.object.spec)
        .unwrap_or_default();
    let effective = twill_ipam::EffectiveConfig::from_spec(&spec);
    let properties = [
        ("StrictAffinity", effective.strict_affinity.to_string()),
        (
            "AutoAllocateBlocks",
            effective.auto_allocate_blocks.to_string(),
        ),
        (
            "MaxBlocksPerHost",
            effective.max_blocks_per_host.to_string(),
        ),
        (
            "IPCooldownSeconds",
            effective.cooldown.as_secs().to_string(),
        ),
    ];
    if output != Output::Table {
        let doc: serde_json::Map<String, serde_json::Value> = properties
            .iter()
            .map(|(k, v)| {
                let value = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .or_else(|_| v.parse::<bool>().map(serde_json::Value::from))
                    .unwrap_or_else(|_| serde_json::Value::from(v.clone()));
                ((*k).to_string(), value)
            })
            .collect();
        print_structured(&doc, output, out)?;
        return Ok(Status::Success);
    }
    let mut rows = vec![vec!["PROPERTY".to_string(), "VALUE".to_string()]];
    rows.extend(
        properties
            .iter()
            .map(|(k, v)| vec![(*k).to_string(), v.clone()]),
    );
    table(&rows, out);
    Ok(Status::Success)
}

/// `ClusterInformation` `default`: its `clusterGUID`, revision and whether
/// the datastore is marked not ready.
fn cluster_information(
    store: &dyn Datastore,
) -> anyhow::Result<Option<(Option<String>, u64, bool)>> {
    Ok(
        store::get::<ClusterInformationSpec>(store, CLUSTER_INFORMATION_NAME)?.map(|c| {
            (
                c.object.spec.cluster_guid.clone(),
                c.revision.0,
                c.object.spec.datastore_ready == Some(false),
            )
        }),
    )
}

fn orphans(store: &dyn Datastore) -> anyhow::Result<Vec<Orphan>> {
    let liveness = StoreLiveness::load(store)?;
    let mut found = Vec::new();
    for b in store::list::<IPAMBlockSpec>(store)? {
        let spec = &b.object.spec;
        let Some(net) = spec.network() else { continue };
        for slot in spec.slots().iter().filter(|s| !s.released()) {
            let Some(handle) = slot.handle() else {
                continue;
            };
            let ip = ip_at(&net, slot.ordinal);
            let node = slot.node(spec);
            let node_gone = match node {
                Some(n) => !liveness.node_exists(n)?,
                None => false,
            };
            let live = !node_gone
                && liveness.is_live(&AllocationRef {
                    handle,
                    ip: Some(ip),
                    node,
                })?;
            if !live {
                found.push(Orphan {
                    ip,
                    handle: handle.to_string(),
                    sequence: slot.sequence,
                    node: node.map(str::to_string),
                });
            }
        }
    }
    Ok(found)
}

fn check(
    store: &dyn Datastore,
    report: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let cluster = cluster_information(store)?;
    match &cluster {
        Some((Some(guid), _, locked)) => {
            line(out, format_args!("cluster GUID: {guid}"));
            if *locked {
                line(
                    out,
                    format_args!(
                        "warning: ClusterInformation default says the datastore is not ready (datastoreReady: false)"
                    ),
                );
            }
        }
        Some((None, _, _)) => line(
            out,
            format_args!(
                "ClusterInformation default has no clusterGUID: a report cannot be tied to this cluster"
            ),
        ),
        None => line(
            out,
            format_args!(
                "no ClusterInformation default in the datastore: a report cannot be tied to this cluster"
            ),
        ),
    }
    let problems = twill_ipam::check(store)?;
    let orphans = orphans(store)?;
    for p in &problems {
        line(out, format_args!("problem: {p}"));
    }
    for o in &orphans {
        line(
            out,
            format_args!(
                "no live owner: ip {} handle {} node {}",
                o.ip,
                o.handle,
                o.node.as_deref().unwrap_or("-")
            ),
        );
    }
    line(
        out,
        format_args!(
            "found {} problems and {} addresses without a live owner",
            problems.len(),
            orphans.len()
        ),
    );
    if let Some(path) = report {
        let report = Report {
            version: REPORT_VERSION.into(),
            problems: problems.iter().map(ToString::to_string).collect(),
            allocations_without_owner: orphans,
            cluster_guid: cluster.as_ref().and_then(|c| c.0.clone()),
            cluster_info_revision: cluster.as_ref().map(|c| c.1),
        };
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        line(out, format_args!("report written to {}", path.display()));
    }
    Ok(if problems.is_empty() {
        Status::Success
    } else {
        Status::Invalid
    })
}

fn release(
    store: Arc<dyn Datastore>,
    ip: Option<IpAddr>,
    from_report: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    let ipam_store = Arc::clone(&store);
    let ipam = Ipam::new(store);
    match (ip, from_report) {
        (Some(ip), None) => {
            match ipam.release_ip(ip, None, None)? {
                Some(handle) => line(out, format_args!("released {ip} (handle {handle})")),
                None => line(out, format_args!("{ip} is not assigned")),
            }
            Ok(Status::Success)
        }
        (None, Some(path)) => {
            let report: Report = serde_json::from_slice(&std::fs::read(path)?)?;
            if report.version != REPORT_VERSION {
                anyhow::bail!(
                    "report {} has version {:?}, expected {REPORT_VERSION:?}",
                    path.display(),
                    report.version
                );
            }
            // Calico refuses a report from another cluster, whatever the
            // flags: releasing another cluster's addresses here would free
            // addresses that are in use.
            let current = cluster_information(&*ipam_store)?.and_then(|c| c.0);
            if current != report.cluster_guid {
                anyhow::bail!(
                    "report {} was made on another cluster (clusterGUID {}, this datastore has {}); refusing to release",
                    path.display(),
                    report.cluster_guid.as_deref().unwrap_or("none"),
                    current.as_deref().unwrap_or("none")
                );
            }
            let (mut released, mut skipped) = (0, 0);
            for o in &report.allocations_without_owner {
                match ipam.release_ip(o.ip, Some(&o.handle), Some(o.sequence)) {
                    Ok(Some(_)) => released += 1,
                    Ok(None) => skipped += 1,
                    Err(e) if e.is_refusal() => {
                        line(out, format_args!("skipped {}: {e}", o.ip));
                        skipped += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            line(
                out,
                format_args!("released {released} addresses, skipped {skipped}"),
            );
            Ok(Status::Success)
        }
        _ => anyhow::bail!("give exactly one of --ip and --from-report"),
    }
}

fn configure(
    store: &dyn Datastore,
    strict_affinity: Option<bool>,
    max_blocks_per_host: Option<i32>,
    ip_cooldown_seconds: Option<i32>,
    out: &mut dyn Write,
) -> anyhow::Result<Status> {
    for _ in 0..twill_ipam::store::CAS_RETRIES {
        let current = store::get::<IPAMConfigurationSpec>(store, IPAM_CONFIGURATION_NAME)?;
        let mut object = current
            .as_ref()
            .map(|c| c.object.clone())
            .unwrap_or_else(|| {
                Object::new(
                    IPAM_CONFIGURATION_NAME,
                    None,
                    IPAMConfigurationSpec::default(),
                )
            });
        if let Some(v) = strict_affinity {
            object.spec.strict_affinity = v;
        }
        if let Some(v) = max_blocks_per_host {
            object.spec.max_blocks_per_host = Some(v);
        }
        if let Some(v) = ip_cooldown_seconds {
            object.spec.ip_cooldown_seconds = Some(v);
        }
        let violations = object.validate();
        if !violations.is_empty() {
            for v in &violations {
                line(out, format_args!("invalid: {v}"));
            }
            return Ok(Status::Invalid);
        }
        let written = match current {
            None => store::create(store, &object)?.is_some(),
            Some(mut stored) => {
                stored.object = object.clone();
                matches!(store::update(store, &stored)?, Cas::Written(_))
            }
        };
        if written {
            line(
                out,
                format_args!(
                    "IPAMConfiguration default: strictAffinity={} maxBlocksPerHost={} ipCooldownSeconds={}",
                    object.spec.strict_affinity,
                    object.spec.max_blocks_per_host.unwrap_or(0),
                    object
                        .spec
                        .ip_cooldown_seconds
                        .map_or_else(|| "unset (30)".to_string(), |s| s.to_string())
                ),
            );
            return Ok(Status::Success);
        }
    }
    anyhow::bail!("IPAMConfiguration default kept changing; try again")
}
