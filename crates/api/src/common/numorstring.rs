//! Values Calico lets a manifest write either as a number or as a string:
//! ports (`80`, `"80"`, `"8000:8080"`, `"http"`) and protocols (`TCP`, `6`).
//!
//! Each type remembers whether a number was written as a string, so a
//! manifest serializes back exactly as it was written. Their JSON schema is
//! Kubernetes' structural `x-kubernetes-int-or-string`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A port match: one port, an inclusive range or a named port.
///
/// Deserialization checks the shape; [`Port::check`] checks the values
/// (port 0, reversed ranges) so that every bad port of a manifest is reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// One port. `quoted` is true when the manifest wrote it as a string (`"80"`).
    Single {
        /// The port number.
        port: u16,
        /// Whether it was written as a string.
        quoted: bool,
    },
    /// An inclusive range, written `"min:max"`.
    Range {
        /// First port of the range.
        min: u16,
        /// Last port of the range.
        max: u16,
    },
    /// A named port, resolved against the ports of the matched endpoints.
    Named(String),
}

impl Port {
    /// A single port written as a number.
    pub fn number(port: u16) -> Self {
        Self::Single {
            port,
            quoted: false,
        }
    }

    /// Parses the string form: digits, `min:max`, or a name
    /// (`[a-zA-Z0-9_.-]{1,128}`, as Calico allows).
    pub fn parse(text: &str) -> Result<Self, String> {
        let number = |s: &str| -> Result<u16, String> {
            s.parse::<u16>()
                .map_err(|_| format!("port {s} is out of range 1-65535"))
        };
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Self::Single {
                port: number(text)?,
                quoted: true,
            });
        }
        if let Some((a, b)) = text.split_once(':')
            && !a.is_empty()
            && !b.is_empty()
            && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
        {
            return Ok(Self::Range {
                min: number(a)?,
                max: number(b)?,
            });
        }
        let named = !text.is_empty()
            && text.len() <= 128
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if named {
            Ok(Self::Named(text.to_string()))
        } else {
            Err(format!(
                "invalid port {text:?}: expected a number, a range \"min:max\" or a port name"
            ))
        }
    }

    /// Whether this is a named port.
    pub fn is_named(&self) -> bool {
        matches!(self, Self::Named(_))
    }

    /// Checks Calico's value rules: ports are 1-65535 and a range's minimum
    /// is not above its maximum.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::Single { port: 0, .. } => {
                Err("port 0 is out of range: port numbers must be 1-65535".into())
            }
            Self::Range { min, max } if min == 0 || max == 0 => Err(format!(
                "port range {min}:{max} is out of range: port numbers must be 1-65535"
            )),
            Self::Range { min, max } if min > max => Err(format!(
                "port range {min}:{max} is reversed: the first port must not be above the last"
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single { port, .. } => write!(f, "{port}"),
            Self::Range { min, max } => write!(f, "{min}:{max}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Single {
                port,
                quoted: false,
            } => serializer.serialize_u16(*port),
            // YAML 1.1 readers take an unquoted `1000:2000` for a base-60 number:
            // always quote ranges (a no-op wrapper for other formats).
            Self::Range { .. } => {
                serde_saphyr::DoubleQuoted(self.to_string()).serialize(serializer)
            }
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a range \"min:max\" or a port name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                u16::try_from(n)
                    .map(Port::number)
                    .map_err(|_| E::custom(format!("port {n} is out of range 1-65535")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("port {n} is out of range 1-65535"))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Port, E> {
                Port::parse(s).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Serializes an optional order (`f64`) as Calico does: a whole number
/// without a fraction (`100`, not `100.0`).
pub fn serialize_order<S: Serializer>(
    order: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match order {
        // Whole numbers within ±2^53 are exact both as f64 and as i64.
        Some(o) if o.fract() == 0.0 && o.abs() < 9_007_199_254_740_992.0 => {
            serializer.serialize_i64(*o as i64)
        }
        Some(o) => serializer.serialize_f64(*o),
        None => serializer.serialize_none(),
    }
}

fn int_or_string_schema(description: &str) -> Schema {
    json_schema!({
        "description": description,
        "x-kubernetes-int-or-string": true,
    })
}

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string_schema("A port number (1-65535), a range \"min:max\" or a port name.")
    }
}

/// An IP protocol, by Calico name or by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `TCP` (6).
    Tcp,
    /// `UDP` (17).
    Udp,
    /// `ICMP` (1).
    Icmp,
    /// `ICMPv6` (58).
    IcmpV6,
    /// `SCTP` (132).
    Sctp,
    /// `UDPLite` (136).
    UdpLite,
    /// A protocol number. `quoted` is true when written as a string (`"6"`).
    Number {
        /// The protocol number; 0 is rejected by [`Protocol::check`].
        number: u8,
        /// Whether it was written as a string.
        quoted: bool,
    },
}

/// The protocol names Calico accepts, exactly as written.
const PROTOCOL_NAMES: [(&str, Protocol); 6] = [
    ("TCP", Protocol::Tcp),
    ("UDP", Protocol::Udp),
    ("ICMP", Protocol::Icmp),
    ("ICMPv6", Protocol::IcmpV6),
    ("SCTP", Protocol::Sctp),
    ("UDPLite", Protocol::UdpLite),
];

impl Protocol {
    /// Parses a protocol name (case-sensitive, as Calico's v3 validator
    /// requires) or a decimal number.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((_, p)) = PROTOCOL_NAMES.iter().find(|(name, _)| *name == text) {
            return Ok(*p);
        }
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse::<u8>()
                .map(|number| Self::Number {
                    number,
                    quoted: true,
                })
                .map_err(|_| format!("protocol number {text} is out of range 1-255"));
        }
        let hint = PROTOCOL_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(name, _)| format!(" (did you mean {name}?)"))
            .unwrap_or_default();
        Err(format!(
            "invalid protocol {text:?}{hint}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
        ))
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::IcmpV6 => 58,
            Self::Sctp => 132,
            Self::UdpLite => 136,
            Self::Number { number, .. } => number,
        }
    }

    /// Whether rules may match ports with this protocol (TCP, UDP, SCTP —
    /// not UDPLite, as in Calico).
    pub fn supports_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }

    /// Whether this is ICMP for IPv4 (`ICMP` or 1).
    pub fn is_icmp(self) -> bool {
        self.number() == 1
    }

    /// Whether this is ICMP for IPv6 (`ICMPv6` or 58).
    pub fn is_icmpv6(self) -> bool {
        self.number() == 58
    }

    /// Checks Calico's value rule: protocol numbers are 1-255.
    pub fn check(self) -> Result<(), String> {
        if self.number() == 0 {
            Err("protocol number 0 is invalid: protocol numbers must be 1-255".into())
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PROTOCOL_NAMES.iter().find(|(_, p)| p == self) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.number()),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number {
                number,
                quoted: false,
            } => serializer.serialize_u8(*number),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;
        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Protocol, E> {
                u8::try_from(n)
                    .map(|number| Protocol::Number {
                        number,
                        quoted: false,
                    })
                    .map_err(|_| E::custom(format!("protocol number {n} is out of range 1-255")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Protocol, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "protocol number {n} is out of range 1-255"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Protocol, E> {
                Protocol::parse(s).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(ProtocolVisitor)
    }
}

impl JsonSchema for Protocol {
    fn schema_name() -> Cow<'static, str> {
        "Protocol".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string_schema(
            "An IP protocol: TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255.",
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_round_trip_in_the_form_they_were_written() {
        for value in [json!(80), json!("80"), json!("8000:8080"), json!("http")] {
            let port: Port = serde_json::from_value(value.clone()).expect("valid port");
            assert_eq!(serde_json::to_value(&port).expect("serializes"), value);
        }
    }

    #[test]
    fn port_shapes_and_values_are_checked() {
        assert!(serde_json::from_value::<Port>(json!(70000)).is_err());
        assert!(serde_json::from_value::<Port>(json!(-1)).is_err());
        assert!(serde_json::from_value::<Port>(json!("1:99999")).is_err());
        assert!(serde_json::from_value::<Port>(json!("a b")).is_err());
        assert!(Port::number(0).check().is_err());
        assert!(Port::Range { min: 90, max: 80 }.check().is_err());
        assert!(Port::Range { min: 80, max: 80 }.check().is_ok());
    }

    #[test]
    fn protocols_accept_calico_names_and_numbers() {
        for (value, number) in [
            (json!("TCP"), 6),
            (json!("UDPLite"), 136),
            (json!(6), 6),
            (json!("58"), 58),
        ] {
            let p: Protocol = serde_json::from_value(value.clone()).expect("valid protocol");
            assert_eq!(p.number(), number);
            assert_eq!(serde_json::to_value(p).expect("serializes"), value);
        }
        let err = serde_json::from_value::<Protocol>(json!("tcp")).expect_err("lowercase");
        assert!(err.to_string().contains("did you mean TCP"), "{err}");
        assert!(serde_json::from_value::<Protocol>(json!(256)).is_err());
    }

    #[test]
    fn only_tcp_udp_and_sctp_carry_ports() {
        assert!(Protocol::Tcp.supports_ports());
        assert!(
            Protocol::Number {
                number: 132,
                quoted: false
            }
            .supports_ports()
        );
        assert!(!Protocol::UdpLite.supports_ports());
        assert!(!Protocol::Icmp.supports_ports());
    }

    #[test]
    fn schemas_are_kubernetes_int_or_string() {
        let schema = serde_json::to_value(schemars::schema_for!(Port)).expect("schema");
        assert_eq!(schema["x-kubernetes-int-or-string"], json!(true));
        assert!(schema.get("oneOf").is_none() && schema.get("type").is_none());
    }
}
