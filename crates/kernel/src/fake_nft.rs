//! The nftables part of the fake kernel: a small interpreter for the
//! command form of nft scripts (`add table`, `add chain`, `add rule`,
//! `add set`, `add element`, `flush`, `delete`, ...), one line per command,
//! applied all-or-nothing like the real `nft -f`.
//!
//! It checks what callers get wrong most often (a rule in a missing chain, a
//! jump to a missing chain, a reference to a missing set, deleting what does
//! not exist) and keeps enough to answer [`NftTable`] reads. It does not
//! check rule expressions; anything it does not understand is an error, so
//! a test never passes on a script the fake silently ignored.

use std::collections::BTreeMap;

use crate::error::{KernelError, KernelObject};
use crate::nft::{NFT_FAMILIES, NftBaseChain, NftChain, NftRule, NftSet, NftTable, NftTableId};

#[derive(Debug, Clone, Default)]
struct FakeChain {
    base: Option<NftBaseChain>,
    rules: Vec<NftRule>,
}

#[derive(Debug, Clone, Default)]
struct FakeTable {
    chains: BTreeMap<String, FakeChain>,
    sets: BTreeMap<String, NftSet>,
    /// Every applied line that named this table, in order.
    text: Vec<String>,
}

/// All tables of one fake namespace.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeNft {
    tables: BTreeMap<NftTableId, FakeTable>,
    next_handle: u64,
}

fn err(line_no: usize, line: &str, reason: impl std::fmt::Display) -> KernelError {
    KernelError::Nft {
        object: KernelObject::NftTransaction,
        status: "exit status: 1".into(),
        stderr: format!("Error: {reason}\n(fake nft) line {line_no}: {line}"),
    }
}

/// Removes a `#` comment that is not inside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits `text` on `sep` outside quotes and braces.
fn split_top(text: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !quoted {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| normalize(&s))
        .filter(|s| !s.is_empty())
        .collect()
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The inside of a `{ ... }` body, or an error.
fn braces(body: &str) -> Option<&str> {
    let body = body.trim();
    body.strip_prefix('{')?.strip_suffix('}').map(str::trim)
}

fn priority(value: &str) -> Option<i64> {
    let named = match value {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        other => return other.parse().ok(),
    };
    Some(named)
}

fn parse_chain_body(body: &str) -> Result<Option<NftBaseChain>, String> {
    let inner = braces(body).ok_or("chain body must be { ... }")?;
    let mut base: Option<NftBaseChain> = None;
    for stmt in split_top(inner, ';') {
        let words: Vec<&str> = stmt.split(' ').collect();
        match words.as_slice() {
            ["type", kind, "hook", hook, rest @ ..] => {
                let prio = match rest {
                    ["priority", p] | ["device", _, "priority", p] => {
                        priority(p).ok_or("unknown priority")?
                    }
                    _ => return Err("base chain needs a priority".into()),
                };
                base = Some(NftBaseChain {
                    kind: (*kind).into(),
                    hook: (*hook).into(),
                    priority: prio,
                    policy: "accept".into(),
                });
            }
            ["policy", policy @ ("accept" | "drop")] => {
                let chain = base.as_mut().ok_or("policy needs a base chain")?;
                chain.policy = (*policy).into();
            }
            ["comment", ..] => {}
            _ => return Err(format!("unsupported chain statement '{stmt}'")),
        }
    }
    Ok(base)
}

/// Map elements are `key : value`, with the spaces that Twill's renderers
/// (and `nft list`) write: a bare `:` also occurs inside IPv6 addresses.
const MAP_SEPARATOR: &str = " : ";

fn parse_elements(body: &str) -> Result<Vec<String>, String> {
    let inner = braces(body).ok_or("elements must be { ... }")?;
    Ok(split_top(inner, ',')
        .into_iter()
        .map(|e| match e.split_once(MAP_SEPARATOR) {
            Some((k, v)) => format!("{}{MAP_SEPARATOR}{}", k.trim(), v.trim()),
            None => e,
        })
        .collect())
}

/// The key of a set or map element (a set element is its own key).
fn element_key(element: &str) -> &str {
    element
        .split_once(MAP_SEPARATOR)
        .map_or(element, |(key, _)| key)
}

fn parse_set_body(name: &str, body: &str, is_map: bool) -> Result<NftSet, String> {
    let inner = braces(body).ok_or("set body must be { ... }")?;
    let mut set = NftSet {
        name: name.into(),
        key_type: String::new(),
        map_type: None,
        flags: Vec::new(),
        elements: Vec::new(),
    };
    for stmt in split_top(inner, ';') {
        if let Some(ty) = stmt.strip_prefix("type ") {
            match (is_map, ty.split_once(" : ")) {
                (true, Some((k, v))) => {
                    set.key_type = k.into();
                    set.map_type = Some(v.into());
                }
                (false, None) => set.key_type = ty.into(),
                _ => return Err(format!("bad type '{ty}'")),
            }
        } else if let Some(flags) = stmt.strip_prefix("flags ") {
            set.flags = flags.split(',').map(|f| f.trim().to_string()).collect();
        } else if let Some(elements) = stmt.strip_prefix("elements = ") {
            set.elements = parse_elements(elements)?;
        } else if !(stmt.starts_with("comment ")
            || stmt.starts_with("size ")
            || stmt.starts_with("policy "))
        {
            return Err(format!("unsupported set statement '{stmt}'"));
        }
    }
    if set.key_type.is_empty() {
        return Err("set needs a type".into());
    }
    set.elements.sort();
    set.elements.dedup();
    Ok(set)
}

fn rule_comment(body: &str) -> Option<String> {
    let at = body.rfind("comment \"")?;
    let rest = &body[at + "comment \"".len()..];
    rest.find('"').map(|end| rest[..end].to_string())
}

impl FakeNft {
    /// Applies `script` atomically: on any error nothing changes.
    pub(crate) fn apply(&mut self, script: &str) -> Result<(), KernelError> {
        let mut next = self.clone();
        for (index, raw) in script.lines().enumerate() {
            let line = normalize(strip_comment(raw));
            if line.is_empty() {
                continue;
            }
            next.command(&line)
                .map_err(|reason| err(index + 1, &line, reason))?;
        }
        *self = next;
        Ok(())
    }

    fn table(&mut self, id: &NftTableId) -> Result<&mut FakeTable, String> {
        self.tables
            .get_mut(id)
            .ok_or_else(|| format!("No such file or directory: table {} {}", id.family, id.name))
    }

    fn command(&mut self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.splitn(6, ' ').collect();
        let (verb, object) = match words.as_slice() {
            [verb, object, ..] => (*verb, *object),
            _ => return Err("incomplete command".into()),
        };
        if !matches!(
            verb,
            "add" | "create" | "insert" | "delete" | "destroy" | "flush"
        ) {
            return Err(format!("unsupported command '{verb}'"));
        }
        let family = words.get(2).copied().ok_or("missing family")?;
        if !NFT_FAMILIES.contains(&family) {
            return Err(format!("unknown family '{family}'"));
        }
        let table_name = words.get(3).copied().ok_or("missing table name")?;
        let id = NftTableId::new(family, table_name);
        if object == "table" {
            return self.table_command(verb, &id, line);
        }
        let name = words.get(4).copied().ok_or("missing object name")?;
        let rest = words.get(5).copied().unwrap_or("");
        let mut handle = self.next_handle;
        let table = self.table(&id)?;
        match (verb, object) {
            ("add" | "create", "chain") => {
                if table.chains.contains_key(name) {
                    if verb == "create" {
                        return Err(format!("File exists: chain {name}"));
                    }
                } else {
                    let base = if rest.is_empty() {
                        None
                    } else {
                        parse_chain_body(rest)?
                    };
                    table.chains.insert(
                        name.into(),
                        FakeChain {
                            base,
                            rules: Vec::new(),
                        },
                    );
                }
            }
            ("flush", "chain") => table
                .chains
                .get_mut(name)
                .ok_or("No such file or directory: chain")?
                .rules
                .clear(),
            ("delete" | "destroy", "chain") => match table.chains.get(name) {
                None if verb == "destroy" => {}
                None => return Err(format!("No such file or directory: chain {name}")),
                Some(chain) if !chain.rules.is_empty() => {
                    return Err(format!("Device or resource busy: chain {name} has rules"));
                }
                Some(_) => {
                    table.chains.remove(name);
                }
            },
            ("add" | "insert", "rule") => {
                if rest.is_empty() {
                    return Err("empty rule".into());
                }
                let tokens: Vec<&str> = rest.split(' ').collect();
                for pair in tokens.windows(2) {
                    if matches!(pair[0], "jump" | "goto") && !table.chains.contains_key(pair[1]) {
                        return Err(format!("No such file or directory: chain {}", pair[1]));
                    }
                }
                for token in &tokens {
                    if let Some(set) = token.strip_prefix('@')
                        && !table.sets.contains_key(set)
                    {
                        return Err(format!("No such file or directory: set {set}"));
                    }
                }
                let chain = table
                    .chains
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: chain {name}"))?;
                handle += 1;
                let rule = NftRule {
                    chain: name.into(),
                    handle,
                    comment: rule_comment(rest),
                };
                if verb == "insert" {
                    chain.rules.insert(0, rule);
                } else {
                    chain.rules.push(rule);
                }
            }
            ("add" | "create", "set" | "map") => {
                if table.sets.contains_key(name) {
                    if verb == "create" {
                        return Err(format!("File exists: set {name}"));
                    }
                } else {
                    let set = parse_set_body(name, rest, object == "map")?;
                    table.sets.insert(name.into(), set);
                }
            }
            ("flush", "set" | "map") => table
                .sets
                .get_mut(name)
                .ok_or("No such file or directory: set")?
                .elements
                .clear(),
            ("delete" | "destroy", "set" | "map") => {
                if table.sets.remove(name).is_none() && verb == "delete" {
                    return Err(format!("No such file or directory: set {name}"));
                }
            }
            ("add" | "delete", "element") => {
                let set = table
                    .sets
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: set {name}"))?;
                for element in parse_elements(rest)? {
                    if verb == "add" {
                        if !set.elements.contains(&element) {
                            set.elements.push(element);
                        }
                    } else {
                        // nft deletes a map element by its key alone.
                        let before = set.elements.len();
                        set.elements
                            .retain(|e| element_key(e) != element_key(&element));
                        if set.elements.len() == before {
                            return Err(format!("No such file or directory: element {element}"));
                        }
                    }
                }
                set.elements.sort();
            }
            _ => return Err(format!("unsupported command '{verb} {object}'")),
        }
        table.text.push(line.to_string());
        self.next_handle = handle;
        Ok(())
    }

    fn table_command(&mut self, verb: &str, id: &NftTableId, line: &str) -> Result<(), String> {
        let trailing = line.split(' ').nth(4);
        if trailing.is_some_and(|t| t != "{") && verb != "delete" {
            return Err("the fake understands table commands without a body only".into());
        }
        match verb {
            "add" | "create" => {
                if self.tables.contains_key(id) {
                    if verb == "create" {
                        return Err(format!("File exists: table {} {}", id.family, id.name));
                    }
                } else {
                    self.tables.insert(id.clone(), FakeTable::default());
                }
                self.table(id)?.text.push(line.to_string());
            }
            "delete" | "destroy" => {
                if self.tables.remove(id).is_none() && verb == "delete" {
                    return Err(format!(
                        "No such file or directory: table {} {}",
                        id.family, id.name
                    ));
                }
            }
            "flush" => {
                let table = self.table(id)?;
                for chain in table.chains.values_mut() {
                    chain.rules.clear();
                }
                for set in table.sets.values_mut() {
                    set.elements.clear();
                }
                table.text.push(line.to_string());
            }
            other => return Err(format!("unsupported command '{other} table'")),
        }
        Ok(())
    }

    /// The typed view of one table.
    pub(crate) fn read_table(&self, id: &NftTableId) -> Result<NftTable, KernelError> {
        let table = self.tables.get(id).ok_or_else(|| KernelError::NotFound {
            object: id.object(),
        })?;
        Ok(NftTable {
            id: id.clone(),
            chains: table
                .chains
                .iter()
                .map(|(name, c)| NftChain {
                    name: name.clone(),
                    base: c.base.clone(),
                })
                .collect(),
            rules: table
                .chains
                .values()
                .flat_map(|c| c.rules.iter().cloned())
                .collect(),
            sets: table.sets.values().cloned().collect(),
        })
    }

    /// The applied lines that named this table, in order.
    pub(crate) fn table_text(&self, id: &NftTableId) -> Option<String> {
        self.tables.get(id).map(|t| t.text.join("\n"))
    }

    pub(crate) fn delete_table(&mut self, id: &NftTableId) -> Result<(), KernelError> {
        self.tables
            .remove(id)
            .map(drop)
            .ok_or_else(|| KernelError::NotFound {
                object: id.object(),
            })
    }

    pub(crate) fn list_tables(&self) -> Vec<NftTableId> {
        self.tables.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
add table inet twill
add chain inet twill input { type filter hook input priority filter; policy drop; }
add chain inet twill cali-fw-x
add set inet twill pods { type ipv4_addr; flags interval; }
add map inet twill dispatch { type ifname : verdict; }
add element inet twill pods { 10.65.0.0/26, 192.0.2.1 }
add element inet twill dispatch { \"cali1\" : goto cali-fw-x }
add rule inet twill input ip saddr @pods jump cali-fw-x comment \"twl:1\"
add rule inet twill input drop comment \"twl:2\"  # trailing comment
";

    fn id() -> NftTableId {
        NftTableId::new("inet", "twill")
    }

    #[test]
    fn command_form_scripts_build_a_readable_table() {
        let mut nft = FakeNft::default();
        nft.apply(BASE).expect("valid script");
        let table = nft.read_table(&id()).expect("table exists");
        assert_eq!(
            table.rule_comments("input"),
            vec![Some("twl:1"), Some("twl:2")]
        );
        let input = table
            .chain("input")
            .and_then(|c| c.base.clone())
            .expect("base chain");
        assert_eq!(
            (input.hook.as_str(), input.priority, input.policy.as_str()),
            ("input", 0, "drop")
        );
        assert_eq!(
            table.set("pods").expect("set").elements,
            vec!["10.65.0.0/26", "192.0.2.1"]
        );
        assert_eq!(
            table.set("dispatch").expect("map").elements,
            vec!["\"cali1\" : goto cali-fw-x"]
        );
    }

    #[test]
    fn map_elements_are_deleted_by_key_and_ipv6_elements_keep_their_colons() {
        let mut nft = FakeNft::default();
        nft.apply(BASE).expect("valid script");
        nft.apply(
            "add set inet twill pods6 { type ipv6_addr; }\n\
             add element inet twill pods6 { fd00::1, fd00:0:0:1::2 }\n\
             delete element inet twill dispatch { \"cali1\" }\n\
             delete element inet twill pods6 { fd00::1 }",
        )
        .expect("nft accepts these");
        let table = nft.read_table(&id()).expect("table");
        assert!(table.set("dispatch").expect("map").elements.is_empty());
        assert_eq!(
            table.set("pods6").expect("set").elements,
            vec!["fd00:0:0:1::2"]
        );
    }

    #[test]
    fn a_failing_line_leaves_every_table_unchanged() {
        let mut nft = FakeNft::default();
        nft.apply(BASE).expect("valid script");
        let before = nft.read_table(&id()).expect("table");
        let bad = "flush chain inet twill input\nadd rule inet twill input accept comment \"new\"\nadd rule inet twill missing accept";
        let err = nft.apply(bad).expect_err("missing chain");
        assert!(
            matches!(&err, KernelError::Nft { stderr, .. } if stderr.contains("line 3")),
            "{err}"
        );
        assert_eq!(nft.read_table(&id()).expect("table"), before);
    }

    #[test]
    fn references_to_missing_objects_are_rejected() {
        let cases = [
            ("add rule inet twill input jump nowhere", "chain nowhere"),
            (
                "add rule inet twill input ip saddr @nope accept",
                "set nope",
            ),
            ("delete chain inet twill input", "has rules"),
            (
                "delete element inet twill pods { 10.9.9.9 }",
                "element 10.9.9.9",
            ),
            ("add chain inet other c", "table inet other"),
            ("list ruleset", "unsupported"),
        ];
        for (script, expected) in cases {
            let mut nft = FakeNft::default();
            nft.apply(BASE).expect("valid script");
            let err = nft.apply(script).expect_err(script);
            assert!(err.to_string().contains(expected), "{script}: {err}");
        }
    }

    #[test]
    fn tables_can_be_deleted_and_listed() {
        let mut nft = FakeNft::default();
        nft.apply(BASE).expect("valid script");
        nft.apply("add table ip other").expect("valid");
        assert_eq!(
            nft.list_tables(),
            vec![
                NftTableId::new("inet", "twill"),
                NftTableId::new("ip", "other")
            ]
        );
        nft.apply("delete table inet twill").expect("exists");
        assert!(nft.read_table(&id()).expect_err("gone").is_not_found());
        assert!(nft.delete_table(&id()).expect_err("gone").is_not_found());
        assert!(nft.table_text(&NftTableId::new("ip", "other")).is_some());
    }
}
