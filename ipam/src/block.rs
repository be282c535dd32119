//! Pure operations on one [`IPAMBlockSpec`]: no I/O; the callers read the
//! block, apply one of these and write it back with compare-and-swap.
//!
//! Each allocation gets its own attribute entry (Calico shares entries
//! between addresses of one request), so that one address can be released
//! and cool down alone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use twill_api::ipam::{AllocationAttribute, IPAMBlockSpec};

use crate::env::{parse_rfc3339, rfc3339};

/// The number of addresses in a block network.
pub fn size_of(net: &IpNet) -> u32 {
    1u32 << u32::from(net.max_prefix_len() - net.prefix_len())
}

/// The address of `ordinal` in `net`.
pub fn ip_at(net: &IpNet, ordinal: u32) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(u32::from(n.network()).wrapping_add(ordinal).into()),
        IpNet::V6(n) => IpAddr::V6(
            u128::from(n.network())
                .wrapping_add(u128::from(ordinal))
                .into(),
        ),
    }
}

/// The ordinal of `ip` in `net`, when `net` holds it.
pub fn ordinal_of(net: &IpNet, ip: IpAddr) -> Option<u32> {
    if !net.contains(&ip) {
        return None;
    }
    let offset = match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a) - u32::from(n.network())),
        (IpNet::V6(n), IpAddr::V6(a)) => u128::from(a) - u128::from(n.network()),
        _ => return None,
    };
    u32::try_from(offset).ok()
}

/// A new, empty block, optionally affine to `node`.
pub fn new_block(net: IpNet, node: Option<&str>, now: SystemTime) -> IPAMBlockSpec {
    let size = size_of(&net);
    IPAMBlockSpec {
        cidr: net.to_string(),
        affinity: node.map(|n| format!("host:{n}")),
        affinity_claim_time: node.map(|_| rfc3339(now)),
        strict_affinity: false,
        allocations: vec![None; size as usize],
        unallocated: (0..size).collect(),
        attributes: Vec::new(),
        sequence_number: 0,
        sequence_number_for_allocation: BTreeMap::new(),
        deleted: false,
    }
}

/// One address as the block holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<'a> {
    /// Its ordinal.
    pub ordinal: u32,
    /// Its attribute entry.
    pub attribute: &'a AllocationAttribute,
    /// The sequence number it was handed out with.
    pub sequence: u64,
}

impl Slot<'_> {
    /// The handle it is held under.
    pub fn handle(&self) -> Option<&str> {
        self.attribute.handle_id.as_deref()
    }

    /// Whether it was released and is cooling down.
    pub fn released(&self) -> bool {
        self.attribute.released_at.is_some()
    }

    /// The node the address was allocated for: its `node` attribute, else
    /// the node the block is affine to.
    pub fn node<'b>(&'b self, block: &'b IPAMBlockSpec) -> Option<&'b str> {
        self.attribute
            .secondary
            .get("node")
            .map(String::as_str)
            .or(block.host())
    }
}

/// Why one address could not be taken or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// It is held under this handle.
    InUse(String),
    /// It was released at this time and is cooling down.
    CoolingDown(String),
    /// It is not allocated.
    NotAllocated,
    /// It is held under another handle.
    WrongHandle(String),
    /// It was handed out with another sequence number.
    BadSequence(u64),
}

/// Operations on a block's spec.
pub trait BlockExt {
    /// The block network (the caller checked `cidr` when reading).
    fn net(&self) -> IpNet;
    /// Every allocated ordinal (held or cooling down).
    fn slots(&self) -> Vec<Slot<'_>>;
    /// The allocated ordinal's slot.
    fn slot(&self, ordinal: u32) -> Option<Slot<'_>>;
    /// Addresses held (allocated and not released).
    fn in_use(&self) -> usize;
    /// Whether no address is allocated, not even one cooling down.
    fn is_empty(&self) -> bool;
    /// How many free, unreserved addresses there are.
    fn free(&self, reserved: &[IpNet]) -> usize;
    /// Frees released addresses whose cooldown has passed: they join the
    /// tail of the free queue. Returns how many.
    fn sweep(&mut self, now: SystemTime, cooldown: Duration) -> usize;
    /// Takes up to `count` free addresses from the head of the queue,
    /// skipping reserved ones. Returns (ordinal, sequence) pairs.
    fn take(
        &mut self,
        count: usize,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        reserved: &[IpNet],
    ) -> Vec<(u32, u64)>;
    /// Takes one given ordinal. Returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`SlotError::InUse`] or [`SlotError::CoolingDown`].
    fn take_ordinal(
        &mut self,
        ordinal: u32,
        handle: &str,
        secondary: &BTreeMap<String, String>,
    ) -> Result<u64, SlotError>;
    /// Releases one ordinal: it starts cooling down (or is freed at once
    /// when the cooldown is zero). Returns its handle.
    ///
    /// # Errors
    ///
    /// [`SlotError::NotAllocated`] (also when already released),
    /// [`SlotError::WrongHandle`] or [`SlotError::BadSequence`].
    fn release(
        &mut self,
        ordinal: u32,
        handle: Option<&str>,
        sequence: Option<u64>,
        now: SystemTime,
        cooldown: Duration,
    ) -> Result<String, SlotError>;
    /// Marks the block as written once more.
    fn bump(&mut self);
}

impl BlockExt for IPAMBlockSpec {
    fn net(&self) -> IpNet {
        self.network().expect("block CIDRs are checked when read")
    }

    fn slots(&self) -> Vec<Slot<'_>> {
        (0..self.allocations.len() as u32)
            .filter_map(|o| self.slot(o))
            .collect()
    }

    fn slot(&self, ordinal: u32) -> Option<Slot<'_>> {
        let index = (*self.allocations.get(ordinal as usize)?)?;
        Some(Slot {
            ordinal,
            attribute: self.attributes.get(index as usize)?,
            sequence: self
                .sequence_number_for_allocation
                .get(&ordinal.to_string())
                .copied()
                .unwrap_or(0),
        })
    }

    fn in_use(&self) -> usize {
        self.slots().iter().filter(|s| !s.released()).count()
    }

    fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    fn free(&self, reserved: &[IpNet]) -> usize {
        let net = self.net();
        self.unallocated
            .iter()
            .filter(|o| !reserved.iter().any(|r| r.contains(&ip_at(&net, **o))))
            .count()
    }

    fn sweep(&mut self, now: SystemTime, cooldown: Duration) -> usize {
        let expired: Vec<u32> = self
            .slots()
            .iter()
            .filter(|s| {
                s.attribute.released_at.as_deref().is_some_and(|at| {
                    // An unreadable time counts as long ago: never stuck.
                    parse_rfc3339(at).is_none_or(|at| at + cooldown <= now)
                })
            })
            .map(|s| s.ordinal)
            .collect();
        for ordinal in &expired {
            self.allocations[*ordinal as usize] = None;
            self.sequence_number_for_allocation
                .remove(&ordinal.to_string());
            self.unallocated.push(*ordinal);
        }
        if !expired.is_empty() {
            compact_attributes(self);
        }
        expired.len()
    }

    fn take(
        &mut self,
        count: usize,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        reserved: &[IpNet],
    ) -> Vec<(u32, u64)> {
        let net = self.net();
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(self.unallocated.len());
        let sequence = self.sequence_number + 1;
        for ordinal in std::mem::take(&mut self.unallocated) {
            let is_reserved = reserved.iter().any(|r| r.contains(&ip_at(&net, ordinal)));
            if taken.len() < count && !is_reserved {
                self.assign(ordinal, handle, secondary, sequence);
                taken.push((ordinal, sequence));
            } else {
                kept.push(ordinal);
            }
        }
        self.unallocated = kept;
        taken
    }

    fn take_ordinal(
        &mut self,
        ordinal: u32,
        handle: &str,
        secondary: &BTreeMap<String, String>,
    ) -> Result<u64, SlotError> {
        if let Some(slot) = self.slot(ordinal) {
            return Err(match &slot.attribute.released_at {
                Some(at) => SlotError::CoolingDown(at.clone()),
                None => SlotError::InUse(slot.handle().unwrap_or_default().to_string()),
            });
        }
        self.unallocated.retain(|o| *o != ordinal);
        let sequence = self.sequence_number + 1;
        self.assign(ordinal, handle, secondary, sequence);
        Ok(sequence)
    }

    fn release(
        &mut self,
        ordinal: u32,
        handle: Option<&str>,
        sequence: Option<u64>,
        now: SystemTime,
        cooldown: Duration,
    ) -> Result<String, SlotError> {
        let slot = self.slot(ordinal).ok_or(SlotError::NotAllocated)?;
        if slot.released() {
            return Err(SlotError::NotAllocated);
        }
        let actual = slot.handle().unwrap_or_default().to_string();
        if let Some(given) = handle
            && given != actual
        {
            return Err(SlotError::WrongHandle(actual));
        }
        if let Some(given) = sequence
            && given != slot.sequence
        {
            return Err(SlotError::BadSequence(slot.sequence));
        }
        let index = self.allocations[ordinal as usize].expect("the slot exists") as usize;
        self.attributes[index].released_at = Some(rfc3339(now));
        if cooldown.is_zero() {
            self.sweep(now, Duration::ZERO);
        }
        Ok(actual)
    }

    fn bump(&mut self) {
        self.sequence_number += 1;
    }
}

trait Assign {
    fn assign(
        &mut self,
        ordinal: u32,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        sequence: u64,
    );
}

impl Assign for IPAMBlockSpec {
    fn assign(
        &mut self,
        ordinal: u32,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        sequence: u64,
    ) {
        let index = u32::try_from(self.attributes.len()).expect("at most 4096 attributes");
        self.attributes.push(AllocationAttribute {
            handle_id: Some(handle.to_string()),
            secondary: secondary.clone(),
            released_at: None,
        });
        self.allocations[ordinal as usize] = Some(index);
        self.sequence_number_for_allocation
            .insert(ordinal.to_string(), sequence);
    }
}

/// Drops attribute entries no allocation points at and renumbers the rest.
fn compact_attributes(block: &mut IPAMBlockSpec) {
    let mut renumber = vec![None; block.attributes.len()];
    let mut kept = Vec::new();
    for entry in block.allocations.iter_mut().flatten() {
        let old = *entry as usize;
        let new = *renumber[old].get_or_insert_with(|| {
            kept.push(block.attributes[old].clone());
            u32::try_from(kept.len() - 1).expect("at most 4096 attributes")
        });
        *entry = new;
    }
    block.attributes = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn block(cidr: &str) -> IPAMBlockSpec {
        new_block(cidr.parse().expect("cidr"), Some("n1"), now())
    }

    #[test]
    fn addresses_are_handed_out_in_order_and_freed_ones_join_the_tail() {
        let mut b = block("10.0.0.0/30");
        let none = BTreeMap::new();
        let first = b.take(2, "h1", &none, &[]);
        assert_eq!(first.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1]);
        b.release(0, Some("h1"), None, now(), Duration::ZERO)
            .expect("held");
        let next = b.take(3, "h2", &none, &[]);
        // FIFO: 2 and 3 were free before 0 came back.
        assert_eq!(next.iter().map(|t| t.0).collect::<Vec<_>>(), [2, 3, 0]);
    }

    #[test]
    fn a_released_address_cools_down_before_reuse() {
        let mut b = block("10.0.0.0/31");
        let none = BTreeMap::new();
        b.take(2, "h", &none, &[]);
        let cooldown = Duration::from_secs(30);
        b.release(1, None, None, now(), cooldown).expect("held");
        assert_eq!(b.free(&[]), 0);
        assert_eq!(b.in_use(), 1);
        assert_eq!(
            b.take_ordinal(1, "h2", &none),
            Err(SlotError::CoolingDown(rfc3339(now())))
        );
        assert_eq!(b.sweep(now() + Duration::from_secs(29), cooldown), 0);
        assert_eq!(b.sweep(now() + cooldown, cooldown), 1);
        assert_eq!(b.free(&[]), 1);
        assert_eq!(b.attributes.len(), 1, "the released entry is dropped");
    }

    #[test]
    fn a_release_with_a_stale_sequence_number_is_refused() {
        let mut b = block("10.0.0.0/31");
        let none = BTreeMap::new();
        let (ordinal, first_seq) = b.take(1, "h", &none, &[])[0];
        b.bump();
        b.release(ordinal, None, Some(first_seq), now(), Duration::ZERO)
            .expect("current sequence");
        // The address is handed out again; the old sequence no longer frees it.
        b.take(2, "h2", &none, &[]);
        b.bump();
        assert!(matches!(
            b.release(ordinal, None, Some(first_seq), now(), Duration::ZERO),
            Err(SlotError::BadSequence(_))
        ));
    }

    #[test]
    fn reserved_addresses_are_skipped_and_not_counted_free() {
        let mut b = block("10.0.0.0/30");
        let reserved = ["10.0.0.0/31".parse().expect("cidr")];
        assert_eq!(b.free(&reserved), 2);
        let got = b.take(4, "h", &BTreeMap::new(), &reserved);
        assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn release_checks_the_handle() {
        let mut b = block("10.0.0.0/31");
        b.take(1, "h", &BTreeMap::new(), &[]);
        assert_eq!(
            b.release(0, Some("other"), None, now(), Duration::ZERO),
            Err(SlotError::WrongHandle("h".into()))
        );
        assert_eq!(
            b.release(1, None, None, now(), Duration::ZERO),
            Err(SlotError::NotAllocated)
        );
    }

    #[test]
    fn ordinals_map_to_addresses_in_both_families() {
        let v6: IpNet = "fd00::40/122".parse().expect("cidr");
        let ip: IpAddr = "fd00::45".parse().expect("ip");
        assert_eq!(ordinal_of(&v6, ip), Some(5));
        assert_eq!(ip_at(&v6, 5), ip);
        assert_eq!(size_of(&v6), 64);
    }
}
