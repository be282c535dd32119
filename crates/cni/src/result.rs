//! The ADD result and its encoding for each configuration version.
//!
//! * 0.3.0 / 0.3.1 / 0.4.0: `ips[].version` ("4" or "6") is present.
//! * 1.0.0: `ips[].version` is gone.
//! * 1.1.0: interfaces may carry `mtu`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::config::version_at_least;
use crate::error::CniError;

/// One interface of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its MTU (emitted from 1.1.0 on).
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; `None` on the host.
    pub sandbox: Option<String>,
}

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: IpNet,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// One route of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination.
    pub dst: IpNet,
    /// Gateway.
    pub gw: Option<IpAddr>,
}

/// The result of ADD, possibly merged into a previous plugin's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<RouteConfig>,
    /// DNS (opaque).
    pub dns: Option<Value>,
}

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn decode_err(what: &str) -> CniError {
    CniError::Decode {
        reason: format!("prevResult: {what}"),
    }
}

impl CniResult {
    /// Reads a result of any supported version (e.g. `prevResult`).
    ///
    /// # Errors
    ///
    /// [`CniError::Decode`] naming the bad entry.
    pub fn from_json(value: &Value) -> Result<Self, CniError> {
        let mut result = Self::default();
        let list = |key: &str| value.get(key).and_then(Value::as_array).cloned();
        for entry in list("interfaces").unwrap_or_default() {
            result.interfaces.push(Interface {
                name: field(&entry, "name")
                    .ok_or_else(|| decode_err("interface without name"))?
                    .into(),
                mac: field(&entry, "mac").unwrap_or_default().into(),
                mtu: entry
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok()),
                sandbox: field(&entry, "sandbox").map(Into::into),
            });
        }
        for entry in list("ips").unwrap_or_default() {
            let address = field(&entry, "address")
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| decode_err("ips entry without a valid address"))?;
            result.ips.push(IpConfig {
                address,
                gateway: field(&entry, "gateway").and_then(|g| g.parse().ok()),
                interface: entry
                    .get("interface")
                    .and_then(Value::as_u64)
                    .and_then(|i| usize::try_from(i).ok()),
            });
        }
        for entry in list("routes").unwrap_or_default() {
            let dst = field(&entry, "dst")
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| decode_err("route without a valid dst"))?;
            result.routes.push(RouteConfig {
                dst,
                gw: field(&entry, "gw").and_then(|g| g.parse().ok()),
            });
        }
        result.dns = value.get("dns").cloned();
        Ok(result)
    }

    /// Appends `ours` after this result's entries (chaining: Twill after
    /// another interface plugin), shifting its interface indexes.
    pub fn merge(mut self, ours: Self) -> Self {
        let offset = self.interfaces.len();
        self.interfaces.extend(ours.interfaces);
        self.ips.extend(ours.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(ours.routes);
        if self.dns.is_none() {
            self.dns = ours.dns;
        }
        self
    }

    /// The result document for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let with_ip_version = !version_at_least(cni_version, "1.0.0");
        let with_mtu = version_at_least(cni_version, "1.1.0");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), Value::from(i.name.clone()));
                if !i.mac.is_empty() {
                    o.insert("mac".into(), Value::from(i.mac.clone()));
                }
                if let (true, Some(mtu)) = (with_mtu, i.mtu) {
                    o.insert("mtu".into(), Value::from(mtu));
                }
                if let Some(sandbox) = &i.sandbox {
                    o.insert("sandbox".into(), Value::from(sandbox.clone()));
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if with_ip_version {
                    let v = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    o.insert("version".into(), Value::from(v));
                }
                o.insert("address".into(), Value::from(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), Value::from(gw.to_string()));
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), Value::from(i));
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
                None => json!({"dst": r.dst.to_string()}),
            })
            .collect();
        let mut out = json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
        });
        if let Some(dns) = &self.dns {
            out["dns"] = dns.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                mtu: Some(1500),
                sandbox: Some("/var/run/netns/x".into()),
            }],
            ips: vec![
                IpConfig {
                    address: "10.65.0.5/32".parse().expect("literal"),
                    gateway: Some("169.254.1.1".parse().expect("literal")),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::5/128".parse().expect("literal"),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![RouteConfig {
                dst: "0.0.0.0/0".parse().expect("literal"),
                gw: Some("169.254.1.1".parse().expect("literal")),
            }],
            dns: None,
        }
    }

    #[test]
    fn each_version_gets_its_own_result_shape() {
        // (version, ips[].version present, interfaces[].mtu present)
        let cases = [
            ("0.3.1", true, false),
            ("0.4.0", true, false),
            ("1.0.0", false, false),
            ("1.1.0", false, true),
        ];
        for (version, has_ip_version, has_mtu) in cases {
            let out = sample().to_json(version);
            assert_eq!(out["cniVersion"], version);
            assert_eq!(
                out["ips"][0].get("version").is_some(),
                has_ip_version,
                "{version}"
            );
            if has_ip_version {
                assert_eq!(out["ips"][1]["version"], "6");
            }
            assert_eq!(
                out["interfaces"][0].get("mtu").is_some(),
                has_mtu,
                "{version}"
            );
            assert_eq!(out["ips"][0]["address"], "10.65.0.5/32");
            assert_eq!(out["ips"][0]["interface"], 0);
        }
    }

    #[test]
    fn results_round_trip_and_merge_after_a_previous_plugin() {
        let prev = CniResult::from_json(&sample().to_json("1.1.0")).expect("own output parses");
        assert_eq!(prev, sample());
        let merged = prev.merge(sample());
        assert_eq!(merged.interfaces.len(), 2);
        assert_eq!(merged.ips[2].interface, Some(1), "indexes shift by one");
    }

    #[test]
    fn malformed_prev_results_are_decode_errors() {
        let err =
            CniResult::from_json(&json!({"ips": [{"address": "nope"}]})).expect_err("bad address");
        assert_eq!(err.code(), 6);
    }
}
