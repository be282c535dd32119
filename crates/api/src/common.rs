//! Building blocks shared by Calico's kinds: the policy rule model
//! ([`Rule`], [`EntityRule`]), ports and protocols that may be written as a
//! number or a string, CIDR parsing, Kubernetes name and label checks,
//! durations and Secret references.

mod checks;
mod names;
mod net;
mod numorstring;
mod rule;
mod secret;

pub(crate) use checks::{LOG_LEVELS, check_duration, check_log_level, check_range, is_false};
pub(crate) use names::check_selector_field;
pub use names::{
    check_dns1123_label, check_dns1123_subdomain, check_interface_name, check_interface_pattern,
    check_label_value, check_mac, check_port_name, check_qualified_name, check_selector,
    validate_annotations, validate_labels,
};
pub(crate) use net::{Family, check_cidr, check_ip, check_masked, check_network};
pub use net::{IpNet, parse_cidr, parse_ip};
pub use numorstring::{Port, Protocol, serialize_order};
pub use rule::{
    Action, Direction, EntityRule, HttpMatch, HttpPath, IcmpFields, PolicyScope, Rule,
    RuleMetadata, ServiceAccountMatch, ServiceMatch, validate_rules,
};
pub use secret::SecretKeySelector;
