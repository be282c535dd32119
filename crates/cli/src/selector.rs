//! `twill selector match`.

use std::collections::BTreeMap;
use std::io::Write;

use twill_selector::Selector;

use crate::{Status, line};

/// `twill selector ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print `true` or `false`: does EXPR select an item with these labels?
    Match {
        /// The selector, e.g. `app == "web" && has(tier)`.
        expr: String,
        /// The item's labels as `k=v,k2=v2`; an empty string means no labels.
        #[arg(long, default_value = "")]
        labels: String,
    },
}

pub fn run(command: &Command, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    match command {
        Command::Match { expr, labels } => {
            let labels = match parse_labels(labels) {
                Ok(labels) => labels,
                Err(reason) => {
                    line(err, format_args!("error: --labels: {reason}"));
                    return Status::Usage;
                }
            };
            match Selector::parse(expr) {
                Ok(selector) => {
                    line(out, format_args!("{}", selector.matches(&labels)));
                    Status::Success
                }
                Err(e) => {
                    line(err, format_args!("error: {e}"));
                    line(err, format_args!("  {expr}"));
                    // The offset is in bytes; the caret goes under the character.
                    let column = expr.get(..e.offset).map_or(e.offset, |p| p.chars().count());
                    line(err, format_args!("  {}^", " ".repeat(column)));
                    Status::Usage
                }
            }
        }
    }
}

/// Parses `k=v,k2=v2`. Keys must be non-empty and unique; values may be empty.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(labels);
    }
    for pair in text.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not of the form key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        if labels
            .insert(key.to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("label `{key}` is given twice"));
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_comma_separated_pairs() {
        let labels = parse_labels("app=web, tier=").expect("valid labels");
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some(""));
    }

    #[test]
    fn empty_label_text_means_no_labels() {
        assert!(parse_labels("").expect("valid").is_empty());
    }

    #[test]
    fn malformed_label_text_is_refused() {
        for bad in ["app", "=web", "a=1,a=2"] {
            assert!(parse_labels(bad).is_err(), "{bad} should be refused");
        }
    }
}
