//! Memory-region keys: which lkey/rkey names which registration.
//!
//! A key is `index << 8 | generation`.  Deregistration bumps the slot's generation,
//! so a key held after `dereg_mr` never names the next region that reuses the slot:
//! a stale key is invalid, as the verbs spec asks.  Index 0 is never used, so no
//! region has key 0.

use alloc::vec::Vec;

use ferrite_abi::access::{self, Access, AccessError};

use crate::kernel::{Error, Result};

/// What ferrite knows of a registered region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MrInfo {
    /// User virtual address of the first byte.
    pub start: u64,
    pub length: u64,
    /// Address the region is known by on the wire (== start unless ZERO_BASED).
    pub iova: u64,
    pub access: Access,
    /// Protection domain the region belongs to (the C side's handle).
    pub pd: u64,
    /// The C side's cookie for the pinned memory (0 in host tests).
    pub cookie: u64,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u8,
    mr: Option<MrInfo>,
}

/// The keys of one device, bounded by `max`.
#[derive(Debug)]
pub struct MrTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: u32,
    max: u32,
}

/// Turn an access-flag refusal into the errno the verbs API documents.
pub fn access_errno(e: AccessError) -> Error {
    match e {
        AccessError::Invalid => Error::EINVAL,
        AccessError::Unsupported => Error::EOPNOTSUPP,
    }
}

/// Room for `n` slots, allocated before the table's lock is taken.
pub struct Room {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Room {
    pub fn new(n: usize) -> Result<Room> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(n).map_err(|_| Error::ENOMEM)?;
        let mut free = Vec::new();
        free.try_reserve_exact(n).map_err(|_| Error::ENOMEM)?;
        Ok(Room { slots, free })
    }
}

impl MrTable {
    pub fn new(max: u32) -> MrTable {
        MrTable { slots: Vec::new(), free: Vec::new(), live: 0, max }
    }

    /// Validate a registration request without taking a key.
    pub fn check(length: u64, access_bits: u32, max_size: u64) -> Result<Access> {
        if length == 0 || length > max_size {
            return Err(Error::EINVAL);
        }
        access::validate(access_bits).map_err(access_errno)
    }

    /// Take a key for `mr`, without allocating: the table's lock is a spin lock.
    /// `Ok(Err(n))` when the table first needs room for `n` slots (see [`Room`]);
    /// `ENOMEM` past the device limit.
    pub fn try_insert(&mut self, mr: MrInfo) -> Result<core::result::Result<u32, usize>> {
        if self.live >= self.max {
            return Err(Error::ENOMEM);
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                // Slot 0 is a permanent placeholder so that no key is 0.  Every
                // slot has room in `free` too, so that `remove` never allocates.
                let need = self.slots.len().max(1) + 1;
                if self.slots.capacity() < need || self.free.capacity() < need {
                    return Ok(Err(need.max(need.saturating_mul(2).min(self.max as usize + 1))));
                }
                if self.slots.is_empty() {
                    self.slots.push(Slot::default());
                }
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.mr = Some(mr);
        self.live += 1;
        Ok(Ok(index << 8 | slot.generation as u32))
    }

    /// Move the table into `room` where that is larger; frees only.
    pub fn grow(&mut self, mut room: Room) {
        if room.slots.capacity() > self.slots.capacity() {
            room.slots.extend(self.slots.drain(..));
            core::mem::swap(&mut self.slots, &mut room.slots);
        }
        if room.free.capacity() > self.free.capacity() {
            room.free.extend(self.free.drain(..));
            core::mem::swap(&mut self.free, &mut room.free);
        }
    }

    /// Take a key, growing the table as needed (for a table nobody else locks).
    #[cfg(test)]
    pub fn insert(&mut self, mr: MrInfo) -> Result<u32> {
        loop {
            match self.try_insert(mr)? {
                Ok(key) => return Ok(key),
                Err(n) => self.grow(Room::new(n)?),
            }
        }
    }

    fn slot_of(&self, key: u32) -> Option<(usize, &Slot)> {
        let index = (key >> 8) as usize;
        let slot = self.slots.get(index).filter(|_| index != 0)?;
        (slot.generation as u32 == key & 0xff && slot.mr.is_some()).then_some((index, slot))
    }

    /// The region a key names now, if any.
    pub fn get(&self, key: u32) -> Option<MrInfo> {
        self.slot_of(key).and_then(|(_, s)| s.mr)
    }

    /// Release a key; `EINVAL` if it names no live region (stale or never issued).
    pub fn remove(&mut self, key: u32) -> Result<MrInfo> {
        let (index, _) = self.slot_of(key).ok_or(Error::EINVAL)?;
        let slot = &mut self.slots[index];
        let mr = slot.mr.take().ok_or(Error::EINVAL)?;
        slot.generation = slot.generation.wrapping_add(1);
        // Capacity for every slot was reserved when the slot was made.
        self.free.push(index as u32);
        self.live -= 1;
        Ok(mr)
    }

    pub fn len(&self) -> u32 {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mr(start: u64) -> MrInfo {
        MrInfo { start, length: 4096, iova: start, access: Access::LOCAL_WRITE, pd: 1, cookie: 0 }
    }

    #[test]
    fn keys_are_never_zero_and_name_their_region() {
        let mut t = MrTable::new(16);
        let a = t.insert(mr(0x1000)).unwrap();
        let b = t.insert(mr(0x2000)).unwrap();
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(t.get(a), Some(mr(0x1000)));
        assert_eq!(t.get(b), Some(mr(0x2000)));
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(0xffff_ffff), None);
    }

    #[test]
    fn a_full_table_asks_for_room_and_keeps_its_keys_when_it_grows() {
        let mut t = MrTable::new(64);
        // Nothing is allocated under the lock: an empty table first asks for room.
        let Ok(Err(n)) = t.try_insert(mr(0x1000)) else { panic!("an empty table took a key without room") };
        assert!(n >= 2, "room for the placeholder and one slot, got {n}");
        let mut keys = Vec::new();
        let mut grown = 0;
        for i in 1..=40u64 {
            loop {
                match t.try_insert(mr(i << 12)).unwrap() {
                    Ok(k) => break keys.push((k, i)),
                    Err(n) => {
                        assert!(n > t.slots.capacity(), "asked for no more than it has");
                        t.grow(Room::new(n).unwrap());
                        grown += 1;
                    }
                }
            }
        }
        assert!((2..40).contains(&grown), "grew {grown} times for 40 keys");
        for (k, i) in keys {
            assert_eq!(t.get(k), Some(mr(i << 12)), "key {k:#x} after growing");
        }
        // A smaller room changes nothing.
        let cap = t.slots.capacity();
        t.grow(Room::new(1).unwrap());
        assert_eq!(t.slots.capacity(), cap);
        assert_eq!(t.len(), 40);
    }

    #[test]
    fn stale_key_is_invalid_after_dereg_even_when_the_slot_is_reused() {
        let mut t = MrTable::new(16);
        let a = t.insert(mr(0x1000)).unwrap();
        assert_eq!(t.remove(a), Ok(mr(0x1000)));
        assert_eq!(t.remove(a), Err(Error::EINVAL), "dereg twice");
        let b = t.insert(mr(0x3000)).unwrap();
        assert_eq!(a >> 8, b >> 8, "slot reused");
        assert_ne!(a, b);
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(b), Some(mr(0x3000)));
    }

    #[test]
    fn generation_survives_many_reuses() {
        let mut t = MrTable::new(1);
        let mut seen = alloc::collections::BTreeSet::new();
        for i in 0..256u64 {
            let k = t.insert(mr(i << 12)).unwrap();
            assert!(seen.insert(k), "key {k:#x} reissued within 256 uses");
            t.remove(k).unwrap();
        }
    }

    #[test]
    fn limit_and_requests() {
        let mut t = MrTable::new(2);
        t.insert(mr(1)).unwrap();
        let k = t.insert(mr(2)).unwrap();
        assert_eq!(t.insert(mr(3)), Err(Error::ENOMEM));
        t.remove(k).unwrap();
        t.insert(mr(3)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(MrTable::check(0, 1, 1 << 40), Err(Error::EINVAL));
        assert_eq!(MrTable::check((1 << 40) + 1, 1, 1 << 40), Err(Error::EINVAL));
        assert_eq!(MrTable::check(1, 2, 1 << 40), Err(Error::EINVAL));
        assert_eq!(MrTable::check(1, 1 << 6, 1 << 40), Err(Error::EOPNOTSUPP));
        // IBTA 1.5 FLUSH: to global visibility yes, to persistence no.
        assert_eq!(MrTable::check(1, 1 << 8 | 1, 1 << 40), Ok(Access::FLUSH_GLOBAL | Access::LOCAL_WRITE));
        assert_eq!(MrTable::check(1, 1 << 9 | 1, 1 << 40), Err(Error::EOPNOTSUPP));
        assert_eq!(MrTable::check(1, 7, 1 << 40), Ok(Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ));
    }
}
