//! The extended CQ (`ibv_create_cq_ex`): the same kernel CQ and completion ring as
//! `ibv_create_cq`, polled through `struct ibv_cq_ex`'s iterator instead of
//! `ibv_poll_cq`.
//!
//! `start_poll` takes the CQ's poll lock and the oldest completion; `next_poll`
//! takes the next one; `end_poll` releases the lock.  Each completion is copied out
//! of the ring when it is taken (the slot is released at once), and the `read_*`
//! functions read that copy.  `wr_id` and `status` are stored in `ibv_cq_ex`
//! itself, as the verbs API has them.  With nothing to take, `start_poll` and
//! `next_poll` return ENOENT (after `start_poll`'s ENOENT the lock is not held, and
//! the application does not call `end_poll`).
//!
//! A ferrite completion carries the fields of `struct ibv_wc` and nothing else: a CQ
//! that asks for more than IBV_WC_STANDARD_FLAGS (timestamps, CVLAN, flow tag, tag
//! matching) is refused with EOPNOTSUPP, as are parent domains and overrun-ignoring
//! CQs.

use core::ffi::{c_int, c_uint};
use core::mem::size_of;
use core::ptr;

use ferrite_abi::cq::Cqe;

use crate::context::{free, lock, new_cq, set_errno, unlock, FerriteCq};
use crate::sys::{self, *};

/// `ibv_create_cq_ex` (libibverbs has checked `wc_flags` against what verbs knows,
/// and initialises the `ibv_cq` members itself afterwards).
///
/// # Safety
/// Called by libibverbs with one of our contexts and the caller's attributes.
pub unsafe extern "C" fn create_cq_ex(ibctx: *mut IbvContext, attr: *mut IbvCqInitAttrEx) -> *mut IbvCqEx {
    // SAFETY: attr is the caller's, valid for the call.
    let (wc_flags, comp_mask, flags) = unsafe { ((*attr).wc_flags, (*attr).comp_mask, (*attr).flags) };
    let flags = if comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS != 0 { flags } else { 0 };
    if wc_flags & !wc_ex::STANDARD != 0
        || comp_mask & !IBV_CQ_INIT_ATTR_MASK_FLAGS != 0
        || flags & !IBV_CREATE_CQ_ATTR_SINGLE_THREADED != 0
    {
        set_errno(libc::EOPNOTSUPP);
        return ptr::null_mut();
    }
    let Some(cq) = new_cq() else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let mut cmd = CreateCqExCmd::default();
    let mut resp = CreateCqExResp::default();
    // SAFETY: cq is zeroed and ours (ibv_cq_ex first); the buffers are sized as passed.
    let err = unsafe {
        sys::ibv_cmd_create_cq_ex(
            ibctx,
            attr,
            ptr::addr_of_mut!((*cq).vcq),
            &mut cmd,
            size_of::<CreateCqExCmd>(),
            &mut resp,
            size_of::<CreateCqExResp>(),
        )
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(cq) };
        set_errno(err);
        return ptr::null_mut();
    }
    // SAFETY: the kernel CQ exists and cq is ours, not yet visible to anyone else.
    if let Err(e) = unsafe { crate::context::attach_ring(cq, ibctx, &resp.drv) } {
        set_errno(e);
        return ptr::null_mut();
    }
    // SAFETY: as above.
    unsafe {
        set_poll_ops(ptr::addr_of_mut!((*cq).vcq));
        ptr::addr_of_mut!((*cq).vcq)
    }
}

/// Fill the iterator and the readers of every field a ferrite completion has.
///
/// # Safety
/// `x` belongs to a CQ no other thread uses yet.
pub(crate) unsafe fn set_poll_ops(x: *mut IbvCqEx) {
    // SAFETY: function contract: exclusive access.
    let x = unsafe { &mut *x };
    x.start_poll = Some(start_poll);
    x.next_poll = Some(next_poll);
    x.end_poll = Some(end_poll);
    x.read_opcode = Some(read_opcode);
    x.read_vendor_err = Some(read_vendor_err);
    x.read_byte_len = Some(read_byte_len);
    x.read_imm_data = Some(read_imm_data);
    x.read_qp_num = Some(read_qp_num);
    x.read_src_qp = Some(read_src_qp);
    x.read_wc_flags = Some(read_wc_flags);
    x.read_slid = Some(read_slid);
    x.read_sl = Some(read_sl);
    x.read_dlid_path_bits = Some(read_dlid_path_bits);
}

fn cq_of(x: *mut IbvCqEx) -> *mut FerriteCq {
    // ibv_cq_ex is at offset 0 of FerriteCq.
    x as *mut FerriteCq
}

/// Take the oldest completion into `cur`, `wr_id` and `status`, or ENOENT.
///
/// # Safety
/// `x` is one of our CQs and this thread holds its poll lock.
unsafe fn take(x: *mut IbvCqEx) -> c_int {
    let cq = cq_of(x);
    // SAFETY: function contract; the ring lives as long as the CQ.
    let (ring, _) = unsafe { FerriteCq::ring_and_lock(cq) };
    let Some(c) = ring.and_then(|r| r.pop()) else { return libc::ENOENT };
    // SAFETY: the poll lock makes these members this thread's to write.
    unsafe {
        ptr::addr_of_mut!((*cq).cur).write(c);
        (*x).wr_id = c.wr_id;
        (*x).status = c.status;
    }
    0
}

unsafe extern "C" fn start_poll(x: *mut IbvCqEx, _attr: *mut IbvPollCqAttr) -> c_int {
    // SAFETY: x is one of our CQs, live for the call.
    let (_, polling) = unsafe { FerriteCq::ring_and_lock(cq_of(x)) };
    lock(polling);
    // SAFETY: the lock is held.
    let r = unsafe { take(x) };
    if r != 0 {
        unlock(polling);
        set_errno(r);
    }
    r
}

unsafe extern "C" fn next_poll(x: *mut IbvCqEx) -> c_int {
    // SAFETY: start_poll took the lock.
    let r = unsafe { take(x) };
    if r != 0 {
        set_errno(r);
    }
    r
}

unsafe extern "C" fn end_poll(x: *mut IbvCqEx) {
    // SAFETY: x is one of our CQs; start_poll took the lock.
    let (_, polling) = unsafe { FerriteCq::ring_and_lock(cq_of(x)) };
    unlock(polling);
}

/// The completion `start_poll`/`next_poll` took.
///
/// # Safety
/// `x` is one of our CQs, between a successful start_poll and end_poll.
unsafe fn cur(x: *mut IbvCqEx) -> Cqe {
    // SAFETY: function contract: this thread holds the poll lock.
    unsafe { ptr::addr_of!((*cq_of(x)).cur).read() }
}

unsafe extern "C" fn read_opcode(x: *mut IbvCqEx) -> u32 {
    // SAFETY: called between start_poll and end_poll.
    unsafe { cur(x) }.opcode
}

unsafe extern "C" fn read_vendor_err(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.vendor_err
}

unsafe extern "C" fn read_byte_len(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.byte_len
}

unsafe extern "C" fn read_imm_data(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.imm_data
}

unsafe extern "C" fn read_qp_num(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.qp_num
}

unsafe extern "C" fn read_src_qp(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.src_qp
}

unsafe extern "C" fn read_wc_flags(x: *mut IbvCqEx) -> c_uint {
    // SAFETY: as above.
    unsafe { cur(x) }.wc_flags
}

unsafe extern "C" fn read_slid(x: *mut IbvCqEx) -> u32 {
    // SAFETY: as above.
    unsafe { cur(x) }.slid as u32
}

unsafe extern "C" fn read_sl(x: *mut IbvCqEx) -> u8 {
    // SAFETY: as above.
    unsafe { cur(x) }.sl
}

unsafe extern "C" fn read_dlid_path_bits(x: *mut IbvCqEx) -> u8 {
    // SAFETY: as above.
    unsafe { cur(x) }.dlid_path_bits
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use ferrite_abi::cq::{self, Ring};

    #[repr(C, align(4096))]
    struct Pages([u8; 8192]);

    #[test]
    fn poll_iterates_the_ring() {
        let mut mem = std::boxed::Box::new(Pages([0; 8192]));
        let slots = 8;
        assert!(cq::ring_bytes(slots) <= 8192);
        // SAFETY: `mem` outlives both views.
        let producer = unsafe { Ring::new(mem.0.as_mut_ptr(), slots) }.unwrap();
        let fcq = new_cq().unwrap();
        // SAFETY: fcq is this test's; `mem` outlives the view.
        let x = unsafe {
            (*fcq).ring = Ring::new(mem.0.as_mut_ptr(), slots);
            set_poll_ops(ptr::addr_of_mut!((*fcq).vcq));
            ptr::addr_of_mut!((*fcq).vcq)
        };
        // SAFETY: x is a CQ of ours with its functions set; one thread.
        unsafe {
            let start = (*x).start_poll.unwrap();
            let next = (*x).next_poll.unwrap();
            let end = (*x).end_poll.unwrap();
            assert!((*x).read_completion_ts.is_none());
            assert!((*x).read_completion_wallclock_ns.is_none());
            assert_eq!(start(x, ptr::null_mut()), libc::ENOENT, "empty");
            assert_eq!(*libc::__errno_location(), libc::ENOENT);
            for i in 0..3u32 {
                producer
                    .push(&Cqe {
                        wr_id: 500 + i as u64,
                        status: i,
                        // IBV_WC_FLUSH, IBV_WC_ATOMIC_WRITE (IBTA 1.5), IBV_WC_RECV.
                        opcode: [8, 9, 128][i as usize],
                        vendor_err: 7 * i,
                        byte_len: 1000 + i,
                        imm_data: 0x0102_0304u32.to_be(),
                        qp_num: 0x11 + i,
                        src_qp: 0x22,
                        wc_flags: 3,
                        slid: 9,
                        sl: 4,
                        dlid_path_bits: 2,
                        ..Default::default()
                    })
                    .unwrap();
            }
            assert_eq!(start(x, ptr::null_mut()), 0);
            for i in 0..3u32 {
                if i > 0 {
                    assert_eq!(next(x), 0);
                }
                assert_eq!(((*x).wr_id, (*x).status), (500 + i as u64, i));
                assert_eq!((*x).read_opcode.unwrap()(x), [8, 9, 128][i as usize]);
                assert_eq!((*x).read_vendor_err.unwrap()(x), 7 * i);
                assert_eq!((*x).read_byte_len.unwrap()(x), 1000 + i);
                assert_eq!((*x).read_imm_data.unwrap()(x), 0x0102_0304u32.to_be());
                assert_eq!((*x).read_qp_num.unwrap()(x), 0x11 + i);
                assert_eq!((*x).read_src_qp.unwrap()(x), 0x22);
                assert_eq!((*x).read_wc_flags.unwrap()(x), 3);
                assert_eq!((*x).read_slid.unwrap()(x), 9);
                assert_eq!((*x).read_sl.unwrap()(x), 4);
                assert_eq!((*x).read_dlid_path_bits.unwrap()(x), 2);
            }
            assert_eq!(next(x), libc::ENOENT, "drained");
            end(x);
            // The lock is free again: ibv_poll_cq-style polling and a new batch work.
            assert_eq!(start(x, ptr::null_mut()), libc::ENOENT);
            producer.push(&Cqe { wr_id: 9, ..Default::default() }).unwrap();
            assert_eq!(start(x, ptr::null_mut()), 0);
            assert_eq!((*x).wr_id, 9);
            end(x);
            assert!(producer.is_empty(), "slots are released as completions are taken");
            free(fcq);
        }
    }

    #[test]
    fn unsupported_requests_are_refused_before_the_kernel() {
        let attr = |wc_flags: u64, comp_mask: u32, flags: u32| IbvCqInitAttrEx {
            cqe: 16,
            cq_context: ptr::null_mut(),
            channel: ptr::null_mut(),
            comp_vector: 0,
            wc_flags,
            comp_mask,
            flags,
            parent_domain: ptr::null_mut(),
        };
        let cases = [
            attr(1 << 7, 0, 0),                                                      // COMPLETION_TIMESTAMP
            attr(1 << 11, 0, 0),                                                     // ..._WALLCLOCK
            attr(1 << 8, 0, 0),                                                      // CVLAN
            attr(0, IBV_CQ_INIT_ATTR_MASK_PD, 0),                                    // parent domain
            attr(0, IBV_CQ_INIT_ATTR_MASK_FLAGS, IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN), // overrun
        ];
        for mut a in cases {
            // SAFETY: refused before the context is touched (the host has none).
            let r = unsafe { create_cq_ex(ptr::null_mut(), &mut a) };
            assert!(r.is_null());
            // SAFETY: this thread's errno.
            assert_eq!(unsafe { *libc::__errno_location() }, libc::EOPNOTSUPP);
        }
    }
}
