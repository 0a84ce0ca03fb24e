//! The completion ring a CQ shares between the kernel (producer) and the provider
//! (consumer), and the completion entry written into it.
//!
//! Layout of the mapping (all offsets in bytes):
//!
//! | offset | what |
//! |---|---|
//! | 0 | producer index (u32), written only by the kernel |
//! | 64 | consumer index (u32), written only by the provider |
//! | 256 | `slots` entries of [`Cqe`], 64 bytes each |
//!
//! Indices run freely and wrap at 2^32; an entry lives in slot `index & (slots - 1)`,
//! `slots` being a power of two.  The ring holds `producer - consumer` entries.
//!
//! Memory ordering: the producer writes an entry, then stores the producer index
//! with Release; the consumer loads it with Acquire before reading entries.  The
//! consumer reads an entry, then stores the consumer index with Release; the
//! producer loads it with Acquire before reusing a slot.  Each side must serialise
//! its own callers (one producer, one consumer at a time).
//!
//! The kernel never trusts what the provider wrote: a consumer index that claims
//! more than the ring holds reads as "full", and every slot index is masked.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

pub const PRODUCER_OFFSET: usize = 0;
pub const CONSUMER_OFFSET: usize = 64;
pub const ENTRIES_OFFSET: usize = 256;

/// Most slots a ring may have.
pub const MAX_SLOTS: u32 = 1 << 20;

/// One completion, as `struct ibv_wc` carries it (same field meanings and values).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    pub wr_id: u64,
    pub status: u32,
    pub opcode: u32,
    pub vendor_err: u32,
    pub byte_len: u32,
    /// Immediate data or invalidated rkey, in network byte order as ibv_wc has it.
    pub imm_data: u32,
    pub qp_num: u32,
    pub src_qp: u32,
    pub wc_flags: u32,
    pub pkey_index: u16,
    pub slid: u16,
    pub sl: u8,
    pub dlid_path_bits: u8,
    pub reserved: [u8; 18],
}

const _: () = {
    assert!(core::mem::size_of::<Cqe>() == 64);
    assert!(core::mem::align_of::<Cqe>() == 8);
};

/// Slots for a CQ of `depth` entries: the next power of two, or `None` if the
/// depth is zero or too large.
pub fn slots_for(depth: u32) -> Option<u32> {
    if depth == 0 || depth > MAX_SLOTS {
        return None;
    }
    Some(depth.next_power_of_two())
}

/// Bytes of a ring of `slots` slots, rounded up to whole 4 KiB pages.
pub fn ring_bytes(slots: u32) -> usize {
    let raw = ENTRIES_OFFSET + slots as usize * core::mem::size_of::<Cqe>();
    (raw + 4095) & !4095
}

/// The ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// A view of a ring in shared memory.
///
/// # Invariants
/// `base` points to at least `ring_bytes(slots)` bytes, 64-byte aligned, valid for
/// the life of the view; `slots` is a power of two no larger than [`MAX_SLOTS`].
pub struct Ring {
    base: NonNull<u8>,
    slots: u32,
}

// SAFETY: the ring is memory shared between contexts by design; all shared state is
// reached through atomics or through slots handed over by the index protocol above.
unsafe impl Send for Ring {}
// SAFETY: as for Send; `&Ring` methods are safe to call concurrently from one
// producer and one consumer.
unsafe impl Sync for Ring {}

impl Ring {
    /// # Safety
    /// `base` must satisfy the type invariant for `slots` for as long as the view lives.
    pub unsafe fn new(base: *mut u8, slots: u32) -> Option<Ring> {
        if !slots.is_power_of_two() || slots > MAX_SLOTS || !(base as usize).is_multiple_of(64) {
            return None;
        }
        NonNull::new(base).map(|base| Ring { base, slots })
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    fn index(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is PRODUCER_OFFSET or CONSUMER_OFFSET, inside the mapping and
        // 4-byte aligned (type invariant); AtomicU32 has u32's layout.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) }
    }

    fn slot(&self, idx: u32) -> *mut Cqe {
        let i = (idx & (self.slots - 1)) as usize;
        // SAFETY: `i < slots`, so the entry lies inside the mapping (type invariant).
        unsafe { self.base.as_ptr().add(ENTRIES_OFFSET + i * 64) as *mut Cqe }
    }

    /// Entries in the ring, from the producer's side: a corrupt consumer index reads as full.
    pub fn len(&self) -> u32 {
        let prod = self.index(PRODUCER_OFFSET).load(Ordering::Relaxed);
        let cons = self.index(CONSUMER_OFFSET).load(Ordering::Acquire);
        prod.wrapping_sub(cons).min(self.slots)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer: append one entry.
    pub fn push(&self, cqe: &Cqe) -> Result<(), Full> {
        let prod = self.index(PRODUCER_OFFSET).load(Ordering::Relaxed);
        let cons = self.index(CONSUMER_OFFSET).load(Ordering::Acquire);
        if prod.wrapping_sub(cons) >= self.slots {
            return Err(Full);
        }
        // SAFETY: the slot is inside the mapping; the consumer does not read it until
        // the Release store below publishes it.  Volatile: the memory is shared.
        unsafe { core::ptr::write_volatile(self.slot(prod), *cqe) };
        self.index(PRODUCER_OFFSET).store(prod.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Consumer: take the oldest entry, if any.
    pub fn pop(&self) -> Option<Cqe> {
        let cons = self.index(CONSUMER_OFFSET).load(Ordering::Relaxed);
        let prod = self.index(PRODUCER_OFFSET).load(Ordering::Acquire);
        if prod == cons {
            return None;
        }
        // SAFETY: the slot is inside the mapping and was published by the producer's
        // Release store that the Acquire load above observed.
        let cqe = unsafe { core::ptr::read_volatile(self.slot(cons)) };
        self.index(CONSUMER_OFFSET).store(cons.wrapping_add(1), Ordering::Release);
        Some(cqe)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);

    /// 64-byte aligned backing memory for a ring.
    fn backing(slots: u32) -> Vec<Line> {
        std::vec![Line([0; 64]); ring_bytes(slots) / 64]
    }

    fn cqe(n: u64) -> Cqe {
        Cqe { wr_id: n, status: (n % 7) as u32, byte_len: n as u32 * 3, qp_num: 0x11, reserved: [n as u8; 18], ..Default::default() }
    }

    #[test]
    fn sizes() {
        assert_eq!(slots_for(0), None);
        assert_eq!(slots_for(1), Some(1));
        assert_eq!(slots_for(5), Some(8));
        assert_eq!(slots_for(MAX_SLOTS), Some(MAX_SLOTS));
        assert_eq!(slots_for(MAX_SLOTS + 1), None);
        assert_eq!(ring_bytes(1), 4096);
        assert_eq!(ring_bytes(64), 4096 * 2);
    }

    #[test]
    fn fills_empties_and_wraps() {
        let mut mem = backing(4);
        // SAFETY: `mem` outlives the ring and has ring_bytes(4) aligned bytes.
        let r = unsafe { Ring::new(mem.as_mut_ptr() as *mut u8, 4) }.unwrap();
        for round in 0..10u64 {
            for i in 0..4 {
                r.push(&cqe(round * 4 + i)).unwrap();
            }
            assert_eq!(r.push(&cqe(99)), Err(Full));
            assert_eq!(r.len(), 4);
            for i in 0..4 {
                assert_eq!(r.pop(), Some(cqe(round * 4 + i)));
            }
            assert_eq!(r.pop(), None);
        }
    }

    #[test]
    fn corrupt_consumer_index_cannot_make_room() {
        let mut mem = backing(4);
        // SAFETY: as above.
        let r = unsafe { Ring::new(mem.as_mut_ptr() as *mut u8, 4) }.unwrap();
        r.push(&cqe(1)).unwrap();
        r.index(CONSUMER_OFFSET).store(0xdead_beef, Ordering::Relaxed);
        assert_eq!(r.len(), 4);
        assert_eq!(r.push(&cqe(2)), Err(Full));
    }

    #[test]
    fn rejects_bad_geometry() {
        let mut mem = backing(8);
        let p = mem.as_mut_ptr() as *mut u8;
        // SAFETY: these calls fail before anything is dereferenced.
        unsafe {
            assert!(Ring::new(p, 3).is_none());
            assert!(Ring::new(p.add(8), 4).is_none());
            assert!(Ring::new(core::ptr::null_mut(), 4).is_none());
        }
    }

    #[test]
    fn producer_and_consumer_threads_agree_byte_for_byte() {
        const N: u64 = 200_000;
        let mut mem = backing(64);
        // SAFETY: `mem` outlives both threads (scoped) and the ring.
        let r = unsafe { Ring::new(mem.as_mut_ptr() as *mut u8, 64) }.unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 0;
                while n < N {
                    if r.push(&cqe(n)).is_ok() {
                        n += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
            let mut n = 0;
            while n < N {
                match r.pop() {
                    Some(c) => {
                        assert_eq!(c, cqe(n));
                        n += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        });
        assert!(r.is_empty());
    }
}
