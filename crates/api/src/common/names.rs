//! Kubernetes and Calico naming rules: DNS-1123 names, label keys and
//! values, annotation keys, port and interface names, selectors.

use std::collections::BTreeMap;

use crate::validate::Validator;

/// Longest DNS-1123 label (a tier name, a label name part).
const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (most resource names).
const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Largest total size of a resource's annotations, as the API server enforces.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_LABEL_MAX {
        return Err(format!(
            "{s:?} is longer than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let ok = s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character"
        ))
    }
}

/// Checks a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!(
            "{s:?} is longer than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if s.split('.').all(|part| check_dns1123_label(part).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must consist of lower case alphanumeric characters, '-' or '.', and each dot-separated part must start and end with an alphanumeric character"
        ))
    }
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS1123_LABEL_MAX
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks a Kubernetes qualified name (label and annotation keys):
/// an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && check_dns1123_subdomain(prefix).is_err()
    {
        return Err(format!("prefix of {key:?} must be a DNS-1123 subdomain"));
    }
    if is_name_part(name) {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a qualified name: the name part must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid label value: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

/// Checks a Kubernetes (IANA service) port name: 1–15 lower-case
/// alphanumerics or `-`, at least one letter, no leading, trailing or double `-`.
pub fn check_port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.chars().all(|c| is_lower_alnum(c) || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid port name: 1-15 lower case alphanumeric characters or '-', with at least one letter and no leading, trailing or double '-'"
        ))
    }
}

/// Whether `name` is 1–15 of `[a-zA-Z0-9_.-]`, plus `*` anywhere when `glob`.
fn is_interface_name(name: &str, glob: bool) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (glob && c == '*')
        })
}

/// Checks a Linux interface name as Calico does (`^[a-zA-Z0-9_.-]{1,15}$`) or `*`.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let ok = name == "*" || is_interface_name(name, false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid interface name: 1-15 characters of letters, digits, '_', '.' or '-'"
        ))
    }
}

/// Checks an interface name or glob: 1–15 of `[a-zA-Z0-9_.-*]` (`eth*`, `*`).
pub fn check_interface_pattern(pattern: &str) -> Result<(), String> {
    if is_interface_name(pattern, true) {
        Ok(())
    } else {
        Err(format!(
            "{pattern:?} is not a valid interface name or pattern"
        ))
    }
}

/// Checks a MAC address written as six colon- or dash-separated hex octets.
pub fn check_mac(mac: &str) -> Result<(), String> {
    let parts: Vec<&str> = if mac.contains(':') {
        mac.split(':').collect()
    } else {
        mac.split('-').collect()
    };
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{mac:?} is not a MAC address (expected six hex octets such as 02:00:00:00:00:01)"
        ))
    }
}

/// Checks the syntax of a Calico selector.
pub fn check_selector(selector: &str) -> Result<(), String> {
    twill_selector::Selector::parse(selector)
        .map(|_| ())
        .map_err(|e| format!("invalid selector {selector:?}: {e}"))
}

/// Longest selector a selector field accepts.
const SELECTOR_MAX: usize = 1024;

/// Checks a selector field: a Calico selector of at most 1024 characters.
pub(crate) fn check_selector_field(v: &mut Validator, text: &str) {
    if text.len() > SELECTOR_MAX {
        v.error(format!(
            "selector is {} characters long; the limit is {SELECTOR_MAX}",
            text.len()
        ));
    }
    v.check(check_selector(text));
}

/// Validates label keys and values, reporting each bad entry at its key.
pub fn validate_labels(labels: &BTreeMap<String, String>, v: &mut Validator) {
    for (key, value) in labels {
        v.key(key, |v| {
            v.check(check_qualified_name(key));
            v.check(check_label_value(value));
        });
    }
}

/// Validates annotation keys and their total size.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, v: &mut Validator) {
    let mut total = 0;
    for (key, value) in annotations {
        total += key.len() + value.len();
        v.key(key, |v| {
            v.check(check_qualified_name(&key.to_ascii_lowercase()))
        });
    }
    if total > ANNOTATIONS_MAX_BYTES {
        v.error(format!(
            "annotations total {total} bytes, more than the limit of {ANNOTATIONS_MAX_BYTES}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_follow_rfc1123() {
        for ok in ["a", "web-1", "0abc"] {
            assert!(check_dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(check_dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns1123_subdomain("kube-system.svc").is_ok());
        assert!(check_dns1123_subdomain("a..b").is_err());
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for ok in ["app", "projectcalico.org/name", "a_b.c-d", "example.com/X"] {
            assert!(check_qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "Example.com/a", "-a", "a/b/c"] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3").is_ok());
        assert!(check_label_value("a b").is_err());
    }

    #[test]
    fn port_names_follow_iana_rules() {
        assert!(check_port_name("http").is_ok());
        assert!(check_port_name("http-alt").is_ok());
        for bad in ["", "80", "Http", "-a", "a-", "a--b", "abcdefghijklmnop"] {
            assert!(check_port_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_need_six_hex_octets() {
        assert!(check_mac("02:00:00:00:00:01").is_ok());
        assert!(check_mac("02-00-00-00-00-0a").is_ok());
        assert!(check_mac("02:00:00:00:00").is_err());
        assert!(check_mac("zz:00:00:00:00:00").is_err());
    }
}
