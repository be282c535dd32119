//! Building blocks shared by Calico's kinds: the policy rule model
//! ([`Rule`], [`EntityRule`]), ports and protocols that may be written as a
//! number or a string, CIDR parsing, and Kubernetes name and label checks.

mod names;
mod net;
mod numorstring;
mod rule;

pub use names::{
    check_dns1123_label, check_dns1123_subdomain, check_interface_name, check_label_value,
    check_mac, check_port_name, check_qualified_name, check_selector, validate_annotations,
    validate_labels,
};
pub use net::{IpNet, parse_cidr, parse_ip};
pub use numorstring::{Port, Protocol, serialize_order};
pub use rule::{
    Action, Direction, EntityRule, HttpMatch, HttpPath, IcmpFields, PolicyScope, Rule,
    RuleMetadata, ServiceAccountMatch, ServiceMatch, validate_rules,
};
