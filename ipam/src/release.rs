//! Release by address and by handle.
//!
//! A released address is not free at once: its attribute gets `releasedAt`
//! and it returns to the tail of the block's free queue only when the
//! cooldown has passed (on the next write of the block, or by the
//! collector). A release may carry the sequence number the allocation was
//! made with; if the address was released and handed out again since, the
//! numbers differ and the release is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::ipam::{IPAMBlockSpec, IPAMHandleSpec};

use crate::Ipam;
use crate::block::{BlockExt, SlotError, ordinal_of};
use crate::error::{IpamError, Result};
use crate::handle;
use crate::pool::{EffectiveConfig, Snapshot};
use crate::store::{self, CAS_RETRIES, Cas, Stored, cidr_name};

impl Ipam {
    /// Releases one address. `handle` and `sequence`, when given, must be
    /// the allocation's. Returns the handle it was held under, or `None`
    /// when the address was not allocated (releasing twice is harmless).
    ///
    /// # Errors
    ///
    /// [`IpamError::WrongHandle`], [`IpamError::BadSequenceNumber`] (nothing
    /// written), or a datastore failure.
    pub fn release_ip(
        &self,
        ip: IpAddr,
        handle: Option<&str>,
        sequence: Option<u64>,
    ) -> Result<Option<String>> {
        let config = EffectiveConfig::load(self.store())?;
        let Some(mut block) = self.block_holding(ip)? else {
            return Ok(None);
        };
        let net = block.object.spec.net();
        let ordinal = ordinal_of(&net, ip).expect("the block holds the address");
        for _ in 0..CAS_RETRIES {
            let spec = &mut block.object.spec;
            let held_by = match spec.release(ordinal, handle, sequence, self.now(), config.cooldown)
            {
                Ok(h) => h,
                Err(SlotError::NotAllocated) => return Ok(None),
                Err(SlotError::WrongHandle(actual)) => {
                    return Err(IpamError::WrongHandle {
                        ip,
                        given: handle.unwrap_or_default().to_string(),
                        actual,
                    });
                }
                Err(SlotError::BadSequence(current)) => {
                    return Err(IpamError::BadSequenceNumber {
                        ip,
                        given: sequence.unwrap_or_default(),
                        current,
                    });
                }
                Err(other) => unreachable!("release does not return {other:?}"),
            };
            spec.bump();
            match store::update(self.store(), &block)? {
                Cas::Written(_) => {
                    handle::adjust(self.store(), &held_by, &net.to_string(), -1)?;
                    tracing::debug!(%ip, handle = %held_by, "released");
                    return Ok(Some(held_by));
                }
                Cas::Conflict => match self.block_holding(ip)? {
                    Some(b) => block = b,
                    None => return Ok(None),
                },
            }
        }
        Err(store::too_many_conflicts(block.key))
    }

    /// Releases every address held under `handle`. Returns them.
    ///
    /// # Errors
    ///
    /// A datastore failure; the addresses released before it stay released.
    pub fn release_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        let config = EffectiveConfig::load(self.store())?;
        let Some(stored) = store::get::<IPAMHandleSpec>(self.store(), handle)? else {
            return Ok(Vec::new());
        };
        let mut released = Vec::new();
        for cidr in stored.object.spec.block.keys() {
            let name = cidr_name(cidr);
            let mut done = false;
            for _ in 0..CAS_RETRIES {
                let Some(mut block) = store::get::<IPAMBlockSpec>(self.store(), &name)? else {
                    done = true;
                    break;
                };
                let spec = &mut block.object.spec;
                let ordinals: Vec<u32> = spec
                    .slots()
                    .iter()
                    .filter(|s| s.handle() == Some(handle) && !s.released())
                    .map(|s| s.ordinal)
                    .collect();
                if ordinals.is_empty() {
                    done = true;
                    break;
                }
                let net = spec.net();
                for ordinal in &ordinals {
                    spec.release(*ordinal, Some(handle), None, self.now(), config.cooldown)
                        .expect("the slot was just found held by this handle");
                }
                spec.bump();
                if let Cas::Written(_) = store::update(self.store(), &block)? {
                    handle::adjust(self.store(), handle, cidr, -(ordinals.len() as i64))?;
                    released.extend(ordinals.iter().map(|o| crate::block::ip_at(&net, *o)));
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(store::too_many_conflicts(store::key::<IPAMBlockSpec>(
                    &name,
                )));
            }
        }
        Ok(released)
    }

    /// The block holding `ip`: through its pool, else (the pool is gone) by
    /// looking at every block.
    pub(crate) fn block_holding(&self, ip: IpAddr) -> Result<Option<Stored<IPAMBlockSpec>>> {
        let snapshot = Snapshot::load(self.store())?;
        if let Ok(pool) = snapshot.pool_of(ip) {
            let net: IpNet = pool.block_of(ip);
            if let Some(b) =
                store::get::<IPAMBlockSpec>(self.store(), &cidr_name(&net.to_string()))?
            {
                return Ok(Some(b));
            }
        }
        Ok(store::list::<IPAMBlockSpec>(self.store())?
            .into_iter()
            .find(|b| b.object.spec.network().is_some_and(|n| n.contains(&ip))))
    }
}
