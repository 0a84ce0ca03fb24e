//! The send and receive queues a QP shares between the provider (producer) and the
//! kernel (consumer), and the work-queue entries (WQEs) written into them.
//!
//! Layout of each mapping (offsets in bytes), beside the CQ ring's in `cq.rs`:
//!
//! | offset | what |
//! |---|---|
//! | 0 | producer index (u32), written only by the provider |
//! | 64 | consumer index (u32), written only by the kernel |
//! | 128 | doorbell request (u32), see below; SQ only |
//! | 256 | `slots` WQEs of `stride` bytes each |
//!
//! Indices run freely and wrap at 2^32; WQE `i` lives in slot `i & (slots - 1)`.
//! A send WQE is a [`SendWqe`] header followed by `num_sge` [`Sge`]s, or by
//! `inline_len` bytes of inline data.  A receive WQE is a [`RecvWqe`] header
//! followed by `num_sge` [`Sge`]s.
//!
//! Memory ordering: the provider writes a WQE, then stores the producer index with
//! Release; the kernel loads it with Acquire, copies the WQE out, and stores the
//! consumer index with Release; the provider loads it with Acquire before reusing
//! a slot.
//!
//! Doorbell suppression (in the manner of virtio's event index): when the kernel
//! finds the SQ empty it stores 1 in the doorbell word, issues a full fence and
//! looks at the producer index once more; only if that is still empty does it go
//! idle.  The provider, after publishing WQEs, issues a full fence and swaps the
//! word from 1 to 0: only when that succeeds does it make the doorbell system call.
//! Either the kernel's second look sees the new WQE or the provider sees the 1, so a
//! WQE is never left unnoticed, and a busy kernel costs the provider no system call.
//!
//! The kernel never trusts this memory: it copies each WQE out exactly once, checks
//! the copy (opcode, SGE count, lengths) and uses only the copy; a producer index
//! that claims more than the ring can hold is a broken queue, and every slot index
//! is masked.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

pub const PRODUCER_OFFSET: usize = 0;
pub const CONSUMER_OFFSET: usize = 64;
pub const DOORBELL_OFFSET: usize = 128;
pub const ENTRIES_OFFSET: usize = 256;

/// Most slots a queue may have.
pub const MAX_SLOTS: u32 = 1 << 16;

/// Send opcodes, as `enum ibv_wr_opcode` numbers them.
pub mod opcode {
    pub const RDMA_WRITE: u32 = 0;
    pub const RDMA_WRITE_WITH_IMM: u32 = 1;
    pub const SEND: u32 = 2;
    pub const SEND_WITH_IMM: u32 = 3;
    pub const RDMA_READ: u32 = 4;
    pub const ATOMIC_CMP_AND_SWP: u32 = 5;
    pub const ATOMIC_FETCH_AND_ADD: u32 = 6;
    pub const LOCAL_INV: u32 = 7;
    pub const BIND_MW: u32 = 8;
    pub const SEND_WITH_INV: u32 = 9;
    pub const TSO: u32 = 10;
    pub const DRIVER1: u32 = 11;
    pub const FLUSH: u32 = 14;
    pub const ATOMIC_WRITE: u32 = 15;
}

/// Send flags, as `enum ibv_send_flags` numbers them.
pub mod send_flags {
    pub const FENCE: u32 = 1 << 0;
    pub const SIGNALED: u32 = 1 << 1;
    pub const SOLICITED: u32 = 1 << 2;
    pub const INLINE: u32 = 1 << 3;
    pub const IP_CSUM: u32 = 1 << 4;
}

/// Header of a send WQE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendWqe {
    pub wr_id: u64,
    /// An [`opcode`] value.
    pub opcode: u32,
    /// [`send_flags`] bits.
    pub send_flags: u32,
    /// Immediate data, in network byte order as `ibv_send_wr` has it.
    pub imm_data: u32,
    /// SGEs that follow (0 when the data is inline).
    pub num_sge: u32,
    /// Inline bytes that follow, when `send_flags` has INLINE.
    pub inline_len: u32,
    /// Remote key (RDMA and atomic operations).
    pub rkey: u32,
    pub remote_addr: u64,
    /// CMP_AND_SWP: the compare value; FETCH_AND_ADD: the addend; FLUSH: the length.
    pub compare_add: u64,
    /// CMP_AND_SWP: the swap value; ATOMIC_WRITE: the 8 bytes to write.
    pub swap: u64,
    /// FLUSH: type (IBV_FLUSH_GLOBAL/PERSISTENT) and level (range/MR).
    pub flush_type: u8,
    pub flush_level: u8,
    pub reserved: [u8; 6],
}

/// One scatter/gather element, as `struct ibv_sge`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sge {
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// Header of a receive WQE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvWqe {
    pub wr_id: u64,
    pub num_sge: u32,
    pub reserved: u32,
}

pub const SEND_WQE_HDR: usize = 64;
pub const RECV_WQE_HDR: usize = 16;
pub const SGE_SIZE: usize = 16;

const _: () = {
    assert!(core::mem::size_of::<SendWqe>() == SEND_WQE_HDR);
    assert!(core::mem::size_of::<Sge>() == SGE_SIZE);
    assert!(core::mem::size_of::<RecvWqe>() == RECV_WQE_HDR);
};

/// Response to `create_qp`, after the core's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateQpResp {
    pub sq_mmap_offset: u64,
    pub sq_mmap_len: u64,
    pub rq_mmap_offset: u64,
    pub rq_mmap_len: u64,
    pub sq_slots: u32,
    pub sq_stride: u32,
    pub rq_slots: u32,
    pub rq_stride: u32,
    /// SGEs and inline bytes a send WQE may carry; SGEs a receive WQE may carry.
    pub max_send_sge: u32,
    pub max_inline: u32,
    pub max_recv_sge: u32,
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<CreateQpResp>() == 64);

/// Geometry of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub slots: u32,
    pub stride: u32,
}

impl Geometry {
    /// A send queue for `depth` WQEs of up to `max_sge` SGEs or `max_inline` bytes.
    pub fn send(depth: u32, max_sge: u32, max_inline: u32) -> Option<Geometry> {
        let body = (max_sge as usize * SGE_SIZE).max(max_inline as usize);
        Self::make(depth, SEND_WQE_HDR + body.div_ceil(SGE_SIZE) * SGE_SIZE)
    }

    /// A receive queue for `depth` WQEs of up to `max_sge` SGEs.
    pub fn recv(depth: u32, max_sge: u32) -> Option<Geometry> {
        Self::make(depth, RECV_WQE_HDR + max_sge as usize * SGE_SIZE)
    }

    fn make(depth: u32, stride: usize) -> Option<Geometry> {
        if depth == 0 || depth > MAX_SLOTS || stride > 64 * 1024 {
            return None;
        }
        Some(Geometry { slots: depth.next_power_of_two(), stride: stride as u32 })
    }

    /// Bytes to map, rounded up to whole 4 KiB pages.
    pub fn bytes(&self) -> usize {
        let raw = ENTRIES_OFFSET + self.slots as usize * self.stride as usize;
        (raw + 4095) & !4095
    }

    /// The same geometry as `resp` names, if it is one [`Geometry::make`] could return.
    pub fn checked(slots: u32, stride: u32) -> Option<Geometry> {
        if !slots.is_power_of_two() || slots > MAX_SLOTS || stride < 16 || !stride.is_multiple_of(16) || stride > 64 * 1024 {
            return None;
        }
        Some(Geometry { slots, stride })
    }
}

/// The producer or consumer index of a queue claims more WQEs than it can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// A view of a work queue in shared memory.
///
/// # Invariants
/// `base` points to at least `geo.bytes()` bytes, 64-byte aligned, valid for the
/// life of the view; `geo` is a valid geometry.
pub struct WorkQueue {
    base: NonNull<u8>,
    geo: Geometry,
}

// SAFETY: the queue is memory shared between contexts by design; shared state is
// reached through atomics or through slots handed over by the index protocol above.
unsafe impl Send for WorkQueue {}
// SAFETY: as for Send; one producer and one consumer may use `&WorkQueue` at once.
unsafe impl Sync for WorkQueue {}

impl WorkQueue {
    /// # Safety
    /// `base` must satisfy the type invariant for `geo` for as long as the view lives.
    pub unsafe fn new(base: *mut u8, geo: Geometry) -> Option<WorkQueue> {
        Geometry::checked(geo.slots, geo.stride)?;
        if !(base as usize).is_multiple_of(64) {
            return None;
        }
        NonNull::new(base).map(|base| WorkQueue { base, geo })
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is one of the index offsets, inside the mapping and 4-byte
        // aligned (type invariant); AtomicU32 has u32's layout.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) }
    }

    fn slot(&self, idx: u32) -> *mut u8 {
        let i = (idx & (self.geo.slots - 1)) as usize;
        // SAFETY: `i < slots`, so the slot lies inside the mapping (type invariant).
        unsafe { self.base.as_ptr().add(ENTRIES_OFFSET + i * self.geo.stride as usize) }
    }

    // ---- producer (provider) side ----

    /// Free slots, from the producer's side.
    pub fn space(&self) -> u32 {
        let prod = self.word(PRODUCER_OFFSET).load(Ordering::Relaxed);
        let cons = self.word(CONSUMER_OFFSET).load(Ordering::Acquire);
        self.geo.slots.saturating_sub(prod.wrapping_sub(cons))
    }

    /// The slot the next WQE goes to, `ahead` WQEs past the producer index, for the
    /// producer to fill; `None` if the queue has no room for it.
    ///
    /// Takes `&mut self`: the producer owns its view, so two slices of one slot can
    /// never be alive at once.
    pub fn producer_slot(&mut self, ahead: u32) -> Option<&mut [u8]> {
        if ahead >= self.space() {
            return None;
        }
        let prod = self.word(PRODUCER_OFFSET).load(Ordering::Relaxed);
        let p = self.slot(prod.wrapping_add(ahead));
        // SAFETY: the slot is free (the consumer is done with it: it is past the
        // consumer index the Acquire load observed) and inside the mapping.
        Some(unsafe { core::slice::from_raw_parts_mut(p, self.geo.stride as usize) })
    }

    /// Publish `n` WQEs written through [`producer_slot`](Self::producer_slot).
    pub fn publish(&self, n: u32) {
        let prod = self.word(PRODUCER_OFFSET).load(Ordering::Relaxed);
        self.word(PRODUCER_OFFSET).store(prod.wrapping_add(n), Ordering::Release);
    }

    /// After publishing: does the kernel want a doorbell?  At most one caller per
    /// idle period gets `true`.
    pub fn take_doorbell_request(&self) -> bool {
        core::sync::atomic::fence(Ordering::SeqCst);
        let w = self.word(DOORBELL_OFFSET);
        w.load(Ordering::Relaxed) != 0 && w.compare_exchange(1, 0, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    // ---- consumer (kernel) side ----

    /// WQEs waiting; `Err(Broken)` if the producer index is impossible.
    pub fn pending(&self) -> Result<u32, Broken> {
        let cons = self.word(CONSUMER_OFFSET).load(Ordering::Relaxed);
        let prod = self.word(PRODUCER_OFFSET).load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        if n > self.geo.slots {
            return Err(Broken);
        }
        Ok(n)
    }

    /// Copy the oldest WQE into `out` (at most `stride` bytes) and release its slot.
    /// Returns the bytes copied, or `None` if the queue is empty.
    pub fn consume(&self, out: &mut [u8]) -> Result<Option<usize>, Broken> {
        if self.pending()? == 0 {
            return Ok(None);
        }
        let cons = self.word(CONSUMER_OFFSET).load(Ordering::Relaxed);
        let n = out.len().min(self.geo.stride as usize);
        let src = self.slot(cons);
        for (i, b) in out[..n].iter_mut().enumerate() {
            // SAFETY: `src + i` is inside the slot; volatile because the provider may
            // (wrongly) write it concurrently: we only ever use this copy.
            *b = unsafe { core::ptr::read_volatile(src.add(i)) };
        }
        self.word(CONSUMER_OFFSET).store(cons.wrapping_add(1), Ordering::Release);
        Ok(Some(n))
    }

    /// The consumer found nothing: ask for a doorbell, then look once more.
    /// Returns true if WQEs arrived meanwhile (the request is withdrawn then).
    pub fn request_doorbell(&self) -> bool {
        let w = self.word(DOORBELL_OFFSET);
        w.store(1, Ordering::SeqCst);
        core::sync::atomic::fence(Ordering::SeqCst);
        if !matches!(self.pending(), Ok(0)) {
            w.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Withdraw a doorbell request (the kernel is running anyway).
    pub fn cancel_doorbell(&self) {
        self.word(DOORBELL_OFFSET).store(0, Ordering::Relaxed);
    }
}

/// Read a `#[repr(C)]` header of plain integers from the start of a WQE copy.
pub fn read_hdr<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: T is a plain-integer repr(C) struct (every bit pattern is valid) and
    // `bytes` holds at least size_of::<T>() bytes; read_unaligned needs no alignment.
    Some(unsafe { (bytes.as_ptr() as *const T).read_unaligned() })
}

/// Write a header to the start of a WQE slot.
pub fn write_hdr<T: Copy>(bytes: &mut [u8], v: &T) -> bool {
    if bytes.len() < core::mem::size_of::<T>() {
        return false;
    }
    // SAFETY: `bytes` has room for T; write_unaligned needs no alignment.
    unsafe { (bytes.as_mut_ptr() as *mut T).write_unaligned(*v) };
    true
}

/// The `i`-th SGE after a header of `hdr` bytes.
pub fn sge_at(bytes: &[u8], hdr: usize, i: usize) -> Option<Sge> {
    read_hdr(bytes.get(hdr + i * SGE_SIZE..)?)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);

    fn backing(g: Geometry) -> Vec<Line> {
        std::vec![Line([0; 64]); g.bytes() / 64]
    }

    #[test]
    fn geometry() {
        let g = Geometry::send(100, 4, 0).unwrap();
        assert_eq!(g, Geometry { slots: 128, stride: 128 });
        assert_eq!(Geometry::send(1, 1, 200).unwrap().stride, 64 + 208);
        assert_eq!(Geometry::recv(3, 2).unwrap(), Geometry { slots: 4, stride: 48 });
        assert!(Geometry::send(0, 1, 0).is_none());
        assert!(Geometry::send(MAX_SLOTS + 1, 1, 0).is_none());
        assert_eq!(Geometry { slots: 1, stride: 64 }.bytes(), 4096);
        assert!(Geometry::checked(3, 64).is_none());
        assert!(Geometry::checked(4, 40).is_none());
    }

    #[test]
    fn wqes_round_trip_and_doorbell_is_requested_once() {
        let g = Geometry::send(4, 2, 0).unwrap();
        let mut mem = backing(g);
        // SAFETY: `mem` outlives the view and has g.bytes() aligned bytes.
        let mut q = unsafe { WorkQueue::new(mem.as_mut_ptr() as *mut u8, g) }.unwrap();
        let mut buf = [0u8; 96];
        assert_eq!(q.consume(&mut buf), Ok(None));
        assert!(!q.request_doorbell(), "empty: the kernel goes idle");
        for i in 0..4u64 {
            let s = q.producer_slot(0).unwrap();
            let w = SendWqe { wr_id: i, opcode: opcode::SEND, num_sge: 1, ..Default::default() };
            assert!(write_hdr(s, &w));
            assert!(write_hdr(&mut s[SEND_WQE_HDR..], &Sge { addr: 0x1000 * i, length: 8, lkey: 7 }));
            q.publish(1);
            assert_eq!(q.take_doorbell_request(), i == 0, "only the first post rings");
        }
        assert!(q.producer_slot(0).is_none(), "full");
        for i in 0..4u64 {
            assert_eq!(q.consume(&mut buf), Ok(Some(96)));
            let w: SendWqe = read_hdr(&buf).unwrap();
            assert_eq!(w.wr_id, i);
            assert_eq!(sge_at(&buf, SEND_WQE_HDR, 0).unwrap().addr, 0x1000 * i);
        }
        assert_eq!(q.space(), 4);
    }

    #[test]
    fn impossible_producer_index_is_broken() {
        let g = Geometry::recv(4, 1).unwrap();
        let mut mem = backing(g);
        // SAFETY: as above.
        let q = unsafe { WorkQueue::new(mem.as_mut_ptr() as *mut u8, g) }.unwrap();
        q.word(PRODUCER_OFFSET).store(1000, Ordering::Relaxed);
        let mut buf = [0u8; 32];
        assert_eq!(q.consume(&mut buf), Err(Broken));
    }

    #[test]
    fn request_doorbell_sees_a_racing_post() {
        let g = Geometry::send(4, 1, 0).unwrap();
        let mut mem = backing(g);
        // SAFETY: as above.
        let q = unsafe { WorkQueue::new(mem.as_mut_ptr() as *mut u8, g) }.unwrap();
        q.publish(1);
        assert!(q.request_doorbell(), "a WQE is pending: stay awake");
        assert!(!q.take_doorbell_request(), "request withdrawn");
    }
}
