//! The prefix table: one [`Dest`] per prefix, in one hash map per family.
//!
//! Split by family so that a key is an `Ipv4Net` (5 bytes) or an `Ipv6Net`
//! (17 bytes) rather than an `IpNet` (18): with the 48-byte `Dest`, an IPv4
//! entry takes 56 bytes instead of 72, and a full table is mostly IPv4.

use foldhash::HashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Dest;

/// Prefix → destination, both families.
#[derive(Debug, Default)]
pub(super) struct Table {
    v4: HashMap<Ipv4Net, Dest>,
    v6: HashMap<Ipv6Net, Dest>,
}

impl Table {
    pub(super) fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p),
        }
    }

    pub(super) fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut Dest> {
        match prefix {
            IpNet::V4(p) => self.v4.get_mut(p),
            IpNet::V6(p) => self.v6.get_mut(p),
        }
    }

    /// The destination of `prefix`, created empty when absent.
    pub(super) fn get_or_default(&mut self, prefix: IpNet) -> &mut Dest {
        match prefix {
            IpNet::V4(p) => self.v4.entry(p).or_default(),
            IpNet::V6(p) => self.v6.entry(p).or_default(),
        }
    }

    pub(super) fn remove(&mut self, prefix: &IpNet) {
        match prefix {
            IpNet::V4(p) => self.v4.remove(p),
            IpNet::V6(p) => self.v6.remove(p),
        };
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        let v4 = self.v4.iter().map(|(p, d)| (IpNet::V4(*p), d));
        let v6 = self.v6.iter().map(|(p, d)| (IpNet::V6(*p), d));
        v4.chain(v6)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (IpNet, &mut Dest)> {
        let v4 = self.v4.iter_mut().map(|(p, d)| (IpNet::V4(*p), d));
        let v6 = self.v6.iter_mut().map(|(p, d)| (IpNet::V6(*p), d));
        v4.chain(v6)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Dest> {
        self.v4.values().chain(self.v6.values())
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Dest> {
        self.v4.values_mut().chain(self.v6.values_mut())
    }
}
