//! `twill get KIND [NAME...] [-n NS | -A] [-o ps|wide|yaml|json|name]`.

use std::io::Write;

use serde::Serialize;
use twill_api::Resource;
use twill_store::{Datastore, Error as StoreError};

use super::columns;
use super::kinds::{self, Kind};
use super::write::namespace_for;
use crate::datastore::StoreArgs;
use crate::error::{CliError, Unwritten};
use crate::line;

/// Output formats of `twill get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table with calicoctl's columns.
    Ps,
    /// The table with every column.
    Wide,
    /// YAML: the object, or a `<Kind>List` for several.
    Yaml,
    /// JSON: the object, or a `<Kind>List` for several.
    Json,
    /// `kind.group/name`, one a line (for scripts).
    Name,
}

/// Arguments of `twill get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The resource type (kind, plural or short name), e.g. `ippools`, `gnp`.
    kind: String,
    /// Names of the resources (default: every resource of the type).
    names: Vec<String>,
    /// The namespace of namespaced resources (default: `default`).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Ps)]
    output: Format,
    #[command(flatten)]
    store: StoreArgs,
}

/// A list document, as calicoctl prints several objects.
#[derive(Serialize)]
struct ListDocument<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    items: &'a [Resource],
    kind: String,
    metadata: ListMeta,
}

#[derive(Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

/// Runs `twill get`. Resources that were found are printed even when some
/// named ones are missing; the first missing one is then the error.
pub fn run(args: &GetArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let kind = kinds::resolve(&args.kind)?;
    let namespace = if args.all_namespaces {
        if !args.names.is_empty() {
            return Err(CliError::Usage(
                "--all-namespaces lists every resource; name resources with -n NAMESPACE instead"
                    .into(),
            ));
        }
        None
    } else {
        namespace_for(kind, args.namespace.as_deref())?
    };
    let store = args.store.open()?;
    let (resources, revision, missing) = read(&store, kind, namespace.as_deref(), &args.names)?;
    print(
        kind,
        &resources,
        revision,
        args.names.len() == 1,
        args.output,
        out,
    )?;
    match missing {
        Some(name) => Err(CliError::NotFound {
            resource: kind.describe(namespace.as_deref(), &name),
            hint: "",
            written: Unwritten::default(),
        }),
        None => Ok(()),
    }
}

type Found = (Vec<Resource>, u64, Option<String>);

fn read(
    store: &dyn Datastore,
    kind: Kind,
    namespace: Option<&str>,
    names: &[String],
) -> Result<Found, CliError> {
    if names.is_empty() {
        let list = store.list(kind.store_kind, namespace)?;
        let resources = list
            .items
            .into_iter()
            .map(|o| kind.decode(o))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((resources, list.revision.0, None));
    }
    let mut resources = Vec::new();
    let mut missing = None;
    for name in names {
        match store.get(&kind.key(namespace, name)) {
            Ok(object) => resources.push(kind.decode(object)?),
            Err(StoreError::NotFound { .. }) => {
                missing.get_or_insert_with(|| name.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((resources, store.current_revision()?.0, missing))
}

fn print(
    kind: Kind,
    resources: &[Resource],
    revision: u64,
    single: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let format_error = |e: &dyn std::fmt::Display| CliError::Format(e.to_string());
    let list = || ListDocument {
        api_version: kind.info.api_version,
        items: resources,
        kind: format!("{}List", kind.info.kind),
        metadata: ListMeta {
            resource_version: revision.to_string(),
        },
    };
    match format {
        Format::Ps | Format::Wide => table(kind, resources, format == Format::Wide, out),
        Format::Name => {
            for r in resources {
                line(
                    out,
                    format_args!(
                        "{}.{}/{}",
                        kind.info.kind.to_ascii_lowercase(),
                        kind.group(),
                        r.name()
                    ),
                );
            }
        }
        Format::Json => {
            let text = match (single, resources) {
                (true, [one]) => serde_json::to_string_pretty(one),
                _ => serde_json::to_string_pretty(&list()),
            }
            .map_err(|e| format_error(&e))?;
            line(out, format_args!("{text}"));
        }
        Format::Yaml => {
            let text = match (single, resources) {
                (true, [one]) => serde_saphyr::to_string(one),
                _ => serde_saphyr::to_string(&list()),
            }
            .map_err(|e| format_error(&e))?;
            let _ = write!(out, "{text}");
        }
    }
    Ok(())
}

fn table(kind: Kind, resources: &[Resource], wide: bool, out: &mut dyn Write) {
    let columns: Vec<columns::Column> = columns::for_kind(kind.info.api_version, kind.info.kind)
        .into_iter()
        .filter(|c| wide || !c.wide_only)
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(resources.len() + 1);
    let mut heading: Vec<String> = Vec::new();
    if kind.info.namespaced {
        heading.push("NAMESPACE".into());
    }
    heading.extend(columns.iter().map(|c| c.heading.to_string()));
    rows.push(heading);
    for r in resources {
        let document = r.to_json();
        let mut row = Vec::with_capacity(columns.len() + 1);
        if kind.info.namespaced {
            row.push(r.namespace().unwrap_or_default().to_string());
        }
        row.extend(columns.iter().map(|c| c.cell(&document)));
        rows.push(row);
    }
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut text = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}   "));
            }
        }
        line(out, format_args!("{}", text.trim_end()));
    }
}
