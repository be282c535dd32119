//! Finding Twill objects left behind in the host: network namespaces pinned
//! in `/run/netns`, links, nftables tables and routes in the host network
//! namespace. Ownership is decided by the prefixes in [`crate::names`].
//!
//! The `leak-check` binary prints [`survivors`] and fails if there are any;
//! CI runs it after the root tests.

use std::collections::BTreeSet;
use std::fmt;
use std::process::Command;

use crate::error::Result;
use crate::names;
use crate::netns::{NETNS_DIR, run_checked};

/// What kind of object survived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SurvivorKind {
    /// A network namespace pinned in `/run/netns`.
    Netns,
    /// A link in the host network namespace.
    Link,
    /// An nftables table in the host network namespace.
    NftTable,
    /// A route in the host network namespace through one of our links.
    Route,
}

/// One object of ours that should not be there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Survivor {
    /// What it is.
    pub kind: SurvivorKind,
    /// How to find it: the namespace or link name, `family name` for a
    /// table, the route as `ip route` prints it.
    pub name: String,
}

impl fmt::Display for Survivor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SurvivorKind::Netns => "netns",
            SurvivorKind::Link => "link",
            SurvivorKind::NftTable => "nft table",
            SurvivorKind::Route => "route",
        };
        write!(f, "{kind} {}", self.name)
    }
}

/// Every Twill object left in the host, sorted by kind and name.
///
/// Fails only if a listing itself fails (`nft` or `ip` missing or broken).
pub fn survivors() -> Result<Vec<Survivor>> {
    let mut found = Vec::new();
    found.extend(
        netns_names()
            .into_iter()
            .filter(|n| names::is_owned_netns(n))
            .map(|name| Survivor {
                kind: SurvivorKind::Netns,
                name,
            }),
    );
    found.extend(
        host_links()
            .into_iter()
            .filter(|n| names::is_owned_link(n))
            .map(|name| Survivor {
                kind: SurvivorKind::Link,
                name,
            }),
    );
    let tables = run_checked(Command::new("nft").args(["list", "tables"]))?;
    found.extend(owned_tables(&tables).map(|name| Survivor {
        kind: SurvivorKind::NftTable,
        name,
    }));
    for family in ["-4", "-6"] {
        let routes =
            run_checked(Command::new("ip").args([family, "-o", "route", "show", "table", "all"]))?;
        found.extend(owned_routes(&routes).map(|name| Survivor {
            kind: SurvivorKind::Route,
            name,
        }));
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Deletes one survivor: unpins a namespace, deletes a link or an nftables
/// table. Routes go with their link, so removing a route does nothing.
/// Processes inside a leaked namespace are not touched.
pub fn remove(survivor: &Survivor) -> Result<()> {
    match survivor.kind {
        SurvivorKind::Netns => {
            run_checked(Command::new("ip").args(["netns", "del", &survivor.name]))?;
        }
        SurvivorKind::Link => {
            run_checked(Command::new("ip").args(["link", "del", &survivor.name]))?;
        }
        SurvivorKind::NftTable => {
            let mut command = Command::new("nft");
            command.arg("delete").arg("table");
            command.args(survivor.name.split_whitespace());
            run_checked(&mut command)?;
        }
        SurvivorKind::Route => {}
    }
    Ok(())
}

/// Names pinned in `/run/netns` (empty if the directory does not exist).
pub fn netns_names() -> BTreeSet<String> {
    read_dir_names(NETNS_DIR)
}

/// Links of the host network namespace (from `/sys/class/net`).
pub fn host_links() -> BTreeSet<String> {
    read_dir_names("/sys/class/net")
}

fn read_dir_names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Tables named ours in `nft list tables` output (`table <family> <name>`),
/// as `<family> <name>`.
fn owned_tables(listing: &str) -> impl Iterator<Item = String> + '_ {
    listing.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("table"), Some(family), Some(name)) if names::is_owned_nft_table(name) => {
                Some(format!("{family} {name}"))
            }
            _ => None,
        }
    })
}

/// Routes in `ip -o route` output that go through one of our links.
fn owned_routes(listing: &str) -> impl Iterator<Item = String> + '_ {
    listing.lines().filter_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let through_ours = words
            .windows(2)
            .any(|w| w[0] == "dev" && names::is_owned_link(w[1]));
        through_ours.then(|| line.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_ours_by_name_in_any_family() {
        let listing = "table inet filter\ntable inet twill\ntable ip twt00ab12\ntable ip6 nat\n";
        let got: Vec<String> = owned_tables(listing).collect();
        assert_eq!(got, ["inet twill", "ip twt00ab12"]);
    }

    #[test]
    fn routes_are_ours_when_they_use_our_link() {
        let listing = "\
default via 10.0.0.1 dev eth0
10.65.0.4 dev twl3f2a9c1d scope link
local 10.65.0.9 dev twt00ab121 table local proto kernel scope host src 10.65.0.9
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
";
        let got: Vec<String> = owned_routes(listing).collect();
        assert_eq!(
            got,
            [
                "10.65.0.4 dev twl3f2a9c1d scope link",
                "local 10.65.0.9 dev twt00ab121 table local proto kernel scope host src 10.65.0.9",
            ]
        );
    }

    #[test]
    fn survivors_print_their_kind_and_name() {
        let survivor = Survivor {
            kind: SurvivorKind::NftTable,
            name: "inet twill".into(),
        };
        assert_eq!(survivor.to_string(), "nft table inet twill");
    }
}
