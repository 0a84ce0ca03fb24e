//! An open ferrite device (a verbs context) and its control-path verbs: device and
//! port queries, protection domains, memory regions and completion queues.  QPs and
//! the posting fast path are in [`crate::qp`], the extended CQ in [`crate::cq_ex`].
//!
//! Control-path verbs go to the kernel through libibverbs' `ibv_cmd_*` helpers, with
//! ferrite's own request/response tails from `ferrite_abi`.  A CQ's completion ring is
//! mapped once at creation (`mmap` of the context's command fd at the offset the
//! kernel returned); `poll_cq` then reads it without entering the kernel.

use core::ffi::{c_int, c_void, CStr};
use core::mem::{offset_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use ferrite_abi::cq::{self, Cqe, Ring};
use ferrite_abi::UVERBS_ABI_VERSION;

use crate::sys::{self, *};

/// ferrite's verbs context: libibverbs' `verbs_context` first.
#[repr(C)]
pub struct FerriteContext {
    vctx: VerbsContext,
    /// What the kernel says the device serves, read once when the context opens.
    caps: DevCaps,
}

/// What a device serves beyond the basic verbs, as its kernel driver advertises it
/// in `device_cap_flags_ex`.  A kernel before Linux 6.2 has no bit for either, so
/// ferrite.ko there never sets them, and the provider refuses the operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevCaps {
    /// IBTA 1.5 ATOMIC WRITE (IB_UVERBS_DEVICE_ATOMIC_WRITE).
    pub atomic_write: bool,
    /// IBTA 1.5 FLUSH, at least to global visibility (IB_UVERBS_DEVICE_FLUSH_GLOBAL).
    pub flush: bool,
}

impl DevCaps {
    pub fn from_cap_flags_ex(f: u64) -> DevCaps {
        DevCaps {
            atomic_write: f & device_cap::ATOMIC_WRITE != 0,
            flush: f & (device_cap::FLUSH_GLOBAL | device_cap::FLUSH_PERSISTENT) != 0,
        }
    }
}

/// The device capabilities of one of our contexts.
///
/// # Safety
/// `ibctx` is the `ibv_context` of a live context of ours.
pub(crate) unsafe fn dev_caps(ibctx: *mut IbvContext) -> DevCaps {
    // SAFETY: function contract; `caps` is written before the context is returned
    // to libibverbs and never again.
    unsafe { (*ferrite_ctx(ibctx)).caps }
}

/// ferrite's CQ: the public `ibv_cq_ex` first (its head is `ibv_cq`, so one layout
/// serves CQs from `ibv_create_cq` and from `ibv_create_cq_ex`), then the mapped ring.
#[repr(C)]
pub struct FerriteCq {
    pub(crate) vcq: IbvCqEx,
    pub(crate) map: *mut c_void,
    pub(crate) map_len: usize,
    pub(crate) ring: Option<Ring>,
    /// Serialises pollers of this CQ (the ring has one consumer at a time); held from
    /// `start_poll` to `end_poll` by the extended CQ API.
    pub(crate) polling: AtomicBool,
    /// The completion the extended CQ API's `read_*` functions report.
    pub(crate) cur: Cqe,
}

/// A spin lock over one flag (the provider may not use pthread locks' newer symbols,
/// and its critical sections are a few stores long, or span an ibv_wr_* batch).
pub(crate) fn lock(flag: &AtomicBool) {
    while flag.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
}

pub(crate) fn unlock(flag: &AtomicBool) {
    flag.store(false, Ordering::Release);
}

impl FerriteCq {
    /// The CQ's ring and its poll lock, without borrowing the members libibverbs
    /// writes (mutex, event counters).
    ///
    /// # Safety
    /// `cq` points to a live FerriteCq that outlives `'a`.
    pub(crate) unsafe fn ring_and_lock<'a>(cq: *const FerriteCq) -> (Option<&'a Ring>, &'a AtomicBool) {
        // SAFETY: function contract; these members are only written before the CQ
        // is published (ring) or are atomic (polling).
        unsafe { ((*cq).ring.as_ref(), &(*cq).polling) }
    }
}

/// Write a message to stderr (the provider has no other channel before a context).
pub fn warn(msg: &CStr) {
    let b = msg.to_bytes();
    // SAFETY: writing a valid buffer to fd 2; a failed write is ignored.
    unsafe { libc::write(2, b.as_ptr() as *const c_void, b.len()) };
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// # Safety
/// `p` is zero or a pointer `calloc` returned.
pub(crate) unsafe fn free<T>(p: *mut T) {
    // SAFETY: function contract.
    unsafe { libc::free(p as *mut c_void) }
}

pub(crate) fn calloc<T>() -> *mut T {
    // SAFETY: plain zeroed allocation.
    unsafe { libc::calloc(1, size_of::<T>()) as *mut T }
}

unsafe fn ferrite_ctx(ibctx: *mut IbvContext) -> *mut FerriteContext {
    // SAFETY: every ibv_context of ours sits CONTEXT_OFFSET into the verbs_context at
    // offset 0 of a FerriteContext.
    unsafe { (ibctx as *mut u8).sub(CONTEXT_OFFSET + offset_of!(FerriteContext, vctx)) as *mut FerriteContext }
}

fn ops() -> VerbsContextOps {
    let mut o = VerbsContextOps { slots: [ptr::null(); slot::COUNT] };
    o.slots[slot::QUERY_DEVICE_EX] = query_device_ex as *const c_void;
    o.slots[slot::QUERY_PORT] = query_port as *const c_void;
    o.slots[slot::ALLOC_PD] = alloc_pd as *const c_void;
    o.slots[slot::DEALLOC_PD] = dealloc_pd as *const c_void;
    o.slots[slot::REG_MR] = reg_mr as *const c_void;
    o.slots[slot::DEREG_MR] = dereg_mr as *const c_void;
    o.slots[slot::CREATE_CQ] = create_cq as *const c_void;
    o.slots[slot::DESTROY_CQ] = destroy_cq as *const c_void;
    o.slots[slot::POLL_CQ] = poll_cq as *const c_void;
    o.slots[slot::REQ_NOTIFY_CQ] = req_notify_cq as *const c_void;
    o.slots[slot::FREE_CONTEXT] = free_context as *const c_void;
    o.slots[slot::CREATE_CQ_EX] = crate::cq_ex::create_cq_ex as *const c_void;
    o.slots[slot::CREATE_QP] = crate::qp::create_qp as *const c_void;
    o.slots[slot::CREATE_QP_EX] = crate::qp::create_qp_ex as *const c_void;
    o.slots[slot::MODIFY_QP] = crate::qp::modify_qp as *const c_void;
    o.slots[slot::QUERY_QP] = crate::qp::query_qp as *const c_void;
    o.slots[slot::DESTROY_QP] = crate::qp::destroy_qp as *const c_void;
    o.slots[slot::POST_SEND] = crate::qp::post_send as *const c_void;
    o.slots[slot::POST_RECV] = crate::qp::post_recv as *const c_void;
    if let Some(i) = slot::QUERY_QP_DATA_IN_ORDER {
        o.slots[i] = crate::qp::query_qp_data_in_order as *const c_void;
    }
    o
}

/// `verbs_device_ops.alloc_context`: open the device.
///
/// # Safety
/// Called by libibverbs only, with its device and an open uverbs command fd.
pub unsafe extern "C" fn alloc_context(
    ibdev: *mut IbvDevice,
    cmd_fd: c_int,
    _private_data: *mut c_void,
) -> *mut VerbsContext {
    // SAFETY: libibverbs' allocator: calloc's a FerriteContext and initialises the
    // verbs_context at the given offset; it closes cmd_fd itself on failure.
    let ctx = unsafe {
        sys::_verbs_init_and_alloc_context(
            ibdev,
            cmd_fd,
            size_of::<FerriteContext>(),
            offset_of!(FerriteContext, vctx) as *mut VerbsContext,
            RDMA_DRIVER_UNKNOWN,
        )
    } as *mut FerriteContext;
    if ctx.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: ctx is a live, initialised FerriteContext.
    let vctx = unsafe { ptr::addr_of_mut!((*ctx).vctx) };
    let mut cmd = GetContextCmd::default();
    let mut resp = GetContextResp::default();
    // SAFETY: vctx is initialised; the buffers are ours and sized as passed.
    let err = unsafe {
        sys::ibv_cmd_get_context(vctx, &mut cmd, size_of::<GetContextCmd>(), &mut resp, size_of::<GetContextResp>())
    };
    if err != 0 {
        return fail_context(ctx, err);
    }
    if resp.drv.abi_version != UVERBS_ABI_VERSION || resp.drv.cqe_size as usize != size_of::<Cqe>() {
        warn(c"ferrite: the kernel module speaks another ferrite ABI than this provider; reinstall matching versions\n");
        return fail_context(ctx, libc::EPROTO);
    }
    let ops = ops();
    // SAFETY: verbs_set_ops copies the table; vctx is initialised.
    unsafe { sys::verbs_set_ops(vctx, &ops) };
    // SAFETY: vctx is initialised and its command fd open; the context is ours
    // alone until it is returned.
    unsafe {
        let caps = query_caps((*vctx).ibv_context());
        ptr::addr_of_mut!((*ctx).caps).write(caps);
    }
    vctx
}

/// Ask the kernel what the device serves (extended query_device).  Nothing, if the
/// query fails or its answer is too short to say.
///
/// # Safety
/// `ibctx` is an initialised context with an open command fd.
unsafe fn query_caps(ibctx: *mut IbvContext) -> DevCaps {
    // Room for any release's struct ibv_device_attr_ex: libibverbs only fills it.
    #[repr(C, align(8))]
    struct AttrBuf([u8; 1024]);
    let mut attr = AttrBuf([0; 1024]);
    let mut resp = ExQueryDeviceResp { fw_ver: 0, rest: [0; 37] };
    let mut resp_size = size_of::<ExQueryDeviceResp>();
    // SAFETY: function contract; attr and resp are ours and sized as passed.
    let err = unsafe {
        sys::ibv_cmd_query_device_any(
            ibctx,
            ptr::null(),
            ptr::addr_of_mut!(attr).cast(),
            size_of::<AttrBuf>(),
            ptr::addr_of_mut!(resp).cast(),
            &mut resp_size,
        )
    };
    if err != 0 || resp_size < ExQueryDeviceResp::CAP_FLAGS_EX_END {
        return DevCaps::default();
    }
    DevCaps::from_cap_flags_ex(resp.device_cap_flags_ex())
}

fn fail_context(ctx: *mut FerriteContext, err: c_int) -> *mut VerbsContext {
    // SAFETY: ctx was initialised by _verbs_init_and_alloc_context; uninit closes
    // the fd, and the FerriteContext is ours to free.
    unsafe {
        sys::verbs_uninit_context(ptr::addr_of_mut!((*ctx).vctx));
        free(ctx);
    }
    set_errno(err);
    ptr::null_mut()
}

unsafe extern "C" fn free_context(ibctx: *mut IbvContext) {
    // SAFETY: ibctx is one of ours (see ferrite_ctx); after uninit nothing refers to it.
    unsafe {
        let ctx = ferrite_ctx(ibctx);
        sys::verbs_uninit_context(ptr::addr_of_mut!((*ctx).vctx));
        free(ctx);
    }
}

unsafe extern "C" fn query_device_ex(
    ibctx: *mut IbvContext,
    input: *const IbvQueryDeviceExInput,
    attr: *mut IbvDeviceAttrEx,
    attr_size: usize,
) -> c_int {
    let mut resp = ExQueryDeviceResp { fw_ver: 0, rest: [0; 37] };
    let mut resp_size = size_of::<ExQueryDeviceResp>();
    // SAFETY: arguments come from libibverbs; resp is ours and resp_size its size.
    let err = unsafe {
        sys::ibv_cmd_query_device_any(ibctx, input, attr, attr_size, ptr::addr_of_mut!(resp).cast(), &mut resp_size)
    };
    if err == 0 {
        // SAFETY: libibverbs checked attr_size covers `orig_attr`, whose first member
        // is `char fw_ver[64]` (public verbs.h, stable in every release).
        let fw_ver = unsafe { &mut *(attr as *mut [u8; 64]) };
        ferrite_abi::fw::format(resp.fw_ver, fw_ver);
    }
    err
}

unsafe extern "C" fn query_port(ibctx: *mut IbvContext, port: u8, attr: *mut IbvPortAttr) -> c_int {
    let mut cmd = QueryPortCmd::default();
    // SAFETY: arguments from libibverbs; cmd is ours.
    unsafe { sys::ibv_cmd_query_port(ibctx, port, attr, &mut cmd, size_of::<QueryPortCmd>()) }
}

unsafe extern "C" fn alloc_pd(ibctx: *mut IbvContext) -> *mut IbvPd {
    let pd: *mut IbvPd = calloc();
    if pd.is_null() {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let mut cmd = AllocPdCmd::default();
    let mut resp = AllocPdResp::default();
    // SAFETY: pd is zeroed and ours; the buffers are sized as passed.
    let err = unsafe {
        sys::ibv_cmd_alloc_pd(ibctx, pd, &mut cmd, size_of::<AllocPdCmd>(), &mut resp, size_of::<AllocPdResp>())
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(pd) };
        set_errno(err);
        return ptr::null_mut();
    }
    pd
}

unsafe extern "C" fn dealloc_pd(pd: *mut IbvPd) -> c_int {
    // SAFETY: pd is one of ours.
    let err = unsafe { sys::ibv_cmd_dealloc_pd(pd) };
    if err == 0 {
        // SAFETY: the kernel object is gone; nothing else refers to pd.
        unsafe { free(pd) };
    }
    err
}

unsafe extern "C" fn reg_mr(
    pd: *mut IbvPd,
    addr: *mut c_void,
    length: usize,
    hca_va: u64,
    access: c_int,
) -> *mut IbvMr {
    let vmr: *mut VerbsMr = calloc();
    if vmr.is_null() {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let mut cmd = RegMrCmd::default();
    let mut resp = RegMrResp::default();
    // SAFETY: vmr is zeroed and ours; the buffers are sized as passed.
    let err = unsafe {
        sys::ibv_cmd_reg_mr(
            pd,
            addr,
            length,
            hca_va,
            access,
            vmr,
            &mut cmd,
            size_of::<RegMrCmd>(),
            &mut resp,
            size_of::<RegMrResp>(),
        )
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(vmr) };
        set_errno(err);
        return ptr::null_mut();
    }
    // SAFETY: vmr is live; ibv_mr is its first member.
    unsafe { ptr::addr_of_mut!((*vmr).ibv_mr) }
}

unsafe extern "C" fn dereg_mr(vmr: *mut VerbsMr) -> c_int {
    // SAFETY: vmr is one of ours.
    let err = unsafe { sys::ibv_cmd_dereg_mr(vmr) };
    if err == 0 {
        // SAFETY: the kernel object is gone.
        unsafe { free(vmr) };
    }
    err
}

unsafe extern "C" fn create_cq(
    ibctx: *mut IbvContext,
    cqe: c_int,
    channel: *mut IbvCompChannel,
    comp_vector: c_int,
) -> *mut IbvCq {
    let Some(cq) = new_cq() else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let mut cmd = CreateCqCmd::default();
    let mut resp = CreateCqResp::default();
    // SAFETY: cq is zeroed and ours (ibv_cq first); the buffers are sized as passed.
    let err = unsafe {
        sys::ibv_cmd_create_cq(
            ibctx,
            cqe,
            channel,
            comp_vector,
            ptr::addr_of_mut!((*cq).vcq.cq),
            &mut cmd,
            size_of::<CreateCqCmd>(),
            &mut resp,
            size_of::<CreateCqResp>(),
        )
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(cq) };
        set_errno(err);
        return ptr::null_mut();
    }
    // SAFETY: the kernel CQ exists and cq is ours, not yet visible to anyone else.
    match unsafe { attach_ring(cq, ibctx, &resp.drv) } {
        // SAFETY: as above.
        Ok(()) => unsafe { ptr::addr_of_mut!((*cq).vcq.cq) },
        Err(e) => {
            set_errno(e);
            ptr::null_mut()
        }
    }
}

/// A zeroed CQ with its Rust-side members initialised, or `None` without memory.
pub(crate) fn new_cq() -> Option<*mut FerriteCq> {
    let cq: *mut FerriteCq = calloc();
    if cq.is_null() {
        return None;
    }
    // SAFETY: cq is a fresh allocation of the right size; the C part is valid zeroed
    // (integers, pointers, NULL function pointers); the Rust part is written here.
    unsafe {
        ptr::addr_of_mut!((*cq).ring).write(None);
        ptr::addr_of_mut!((*cq).polling).write(AtomicBool::new(false));
        ptr::addr_of_mut!((*cq).cur).write(Cqe::default());
    }
    Some(cq)
}

/// Map the ring the kernel made for a new CQ.  On failure the kernel CQ is destroyed
/// and `cq` freed, and the errno to report is returned.
///
/// # Safety
/// `cq` comes from [`new_cq`], its `ibv_cq` names a CQ the kernel just created on
/// `ibctx`, and nobody else knows it yet.
pub(crate) unsafe fn attach_ring(
    cq: *mut FerriteCq,
    ibctx: *mut IbvContext,
    d: &ferrite_abi::CreateCqResp,
) -> Result<(), c_int> {
    let geometry_ok = cq::slots_for(d.slots) == Some(d.slots) && d.mmap_len as usize == cq::ring_bytes(d.slots);
    let map = if geometry_ok {
        // SAFETY: mapping the kernel's ring: shared, exactly the published length.
        unsafe {
            libc::mmap(
                ptr::null_mut(),
                d.mmap_len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                (*ibctx).cmd_fd,
                d.mmap_offset as libc::off_t,
            )
        }
    } else {
        warn(c"ferrite: the kernel returned a CQ ring of impossible geometry\n");
        libc::MAP_FAILED
    };
    if map == libc::MAP_FAILED {
        let e = if geometry_ok { errno() } else { libc::EPROTO };
        // SAFETY: the CQ exists in the kernel; undo it, then free ours.
        unsafe {
            sys::ibv_cmd_destroy_cq(ptr::addr_of_mut!((*cq).vcq.cq));
            free(cq);
        }
        return Err(e);
    }
    // SAFETY: `map` holds ring_bytes(slots) bytes, page-aligned, until destroy_cq.
    let ring = unsafe { Ring::new(map as *mut u8, d.slots) };
    // SAFETY: cq is ours and not yet visible to anyone else.
    unsafe {
        (*cq).map = map;
        (*cq).map_len = d.mmap_len as usize;
        (*cq).ring = ring;
    }
    Ok(())
}

unsafe extern "C" fn destroy_cq(ibcq: *mut IbvCq) -> c_int {
    // SAFETY: ibcq is the first member of one of our FerriteCqs.
    let cq = ibcq as *mut FerriteCq;
    // SAFETY: as above.
    let err = unsafe { sys::ibv_cmd_destroy_cq(ibcq) };
    if err != 0 {
        return err;
    }
    // SAFETY: the mapping is ours; after the kernel CQ is gone nobody polls it.
    unsafe {
        libc::munmap((*cq).map, (*cq).map_len);
        free(cq);
    }
    0
}

/// `ibv_poll_cq`: completions straight from the shared ring, no system call.
unsafe extern "C" fn poll_cq(ibcq: *mut IbvCq, num_entries: c_int, wc: *mut IbvWc) -> c_int {
    // SAFETY: ibcq is the first member of one of our FerriteCqs, live during the call.
    let (ring, polling) = unsafe { FerriteCq::ring_and_lock(ibcq as *const FerriteCq) };
    let Some(ring) = ring else { return 0 };
    lock(polling);
    let mut n = 0;
    while n < num_entries.max(0) {
        let Some(c) = ring.pop() else { break };
        let w = IbvWc {
            wr_id: c.wr_id,
            status: c.status,
            opcode: c.opcode,
            vendor_err: c.vendor_err,
            byte_len: c.byte_len,
            imm_data: c.imm_data,
            qp_num: c.qp_num,
            src_qp: c.src_qp,
            wc_flags: c.wc_flags as c_int,
            pkey_index: c.pkey_index,
            slid: c.slid,
            sl: c.sl,
            dlid_path_bits: c.dlid_path_bits,
        };
        // SAFETY: the caller provides room for num_entries completions.
        unsafe { wc.add(n as usize).write(w) };
        n += 1;
    }
    unlock(polling);
    n
}

unsafe extern "C" fn req_notify_cq(ibcq: *mut IbvCq, solicited_only: c_int) -> c_int {
    // SAFETY: ibcq is one of ours.
    unsafe { sys::ibv_cmd_req_notify_cq(ibcq, solicited_only) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_table_fills_exactly_the_served_verbs() {
        let o = ops();
        let set = o.slots.iter().filter(|p| !p.is_null()).count();
        let in_order = usize::from(slot::QUERY_QP_DATA_IN_ORDER.is_some());
        assert_eq!(set, 19 + in_order);
        for s in [
            slot::ALLOC_PD,
            slot::CREATE_CQ,
            slot::POLL_CQ,
            slot::FREE_CONTEXT,
            slot::REQ_NOTIFY_CQ,
            slot::CREATE_CQ_EX,
            slot::CREATE_QP,
            slot::CREATE_QP_EX,
            slot::MODIFY_QP,
            slot::QUERY_QP,
            slot::DESTROY_QP,
            slot::POST_SEND,
            slot::POST_RECV,
        ] {
            assert!(!o.slots[s].is_null());
        }
        assert_eq!(o.slots[slot::POST_SEND], crate::qp::post_send as *const c_void);
        assert_eq!(o.slots[slot::CREATE_CQ_EX], crate::cq_ex::create_cq_ex as *const c_void);
    }

    /// `struct verbs_context_ops` is sorted by member name upstream: the slots
    /// ferrite uses must rise in the same order as their names, and fit the table.
    #[test]
    fn slots_follow_the_alphabetical_order_of_their_names() {
        let mut named = std::vec![
            ("alloc_pd", slot::ALLOC_PD),
            ("create_cq", slot::CREATE_CQ),
            ("create_cq_ex", slot::CREATE_CQ_EX),
            ("create_qp", slot::CREATE_QP),
            ("create_qp_ex", slot::CREATE_QP_EX),
            ("dealloc_pd", slot::DEALLOC_PD),
            ("dereg_mr", slot::DEREG_MR),
            ("destroy_cq", slot::DESTROY_CQ),
            ("destroy_qp", slot::DESTROY_QP),
            ("free_context", slot::FREE_CONTEXT),
            ("modify_qp", slot::MODIFY_QP),
            ("poll_cq", slot::POLL_CQ),
            ("post_recv", slot::POST_RECV),
            ("post_send", slot::POST_SEND),
            ("query_device_ex", slot::QUERY_DEVICE_EX),
            ("query_port", slot::QUERY_PORT),
            ("query_qp", slot::QUERY_QP),
            ("reg_mr", slot::REG_MR),
            ("req_notify_cq", slot::REQ_NOTIFY_CQ),
        ];
        if let Some(i) = slot::QUERY_QP_DATA_IN_ORDER {
            named.push(("query_qp_data_in_order", i));
        }
        named.sort();
        for w in named.windows(2) {
            assert!(w[0].1 < w[1].1, "{:?} then {:?}", w[0], w[1]);
        }
        assert!(named.iter().all(|&(_, i)| i < slot::COUNT));
    }

    #[test]
    fn poll_reads_the_ring_in_order_and_converts_entries() {
        #[repr(C, align(4096))]
        struct Page([u8; 8192]);
        let mut mem = std::boxed::Box::new(Page([0; 8192]));
        let slots = 8;
        assert!(cq::ring_bytes(slots) <= 8192);
        // SAFETY: `mem` outlives both ring views below.
        let producer = unsafe { Ring::new(mem.0.as_mut_ptr(), slots) }.unwrap();
        let fcq = new_cq().unwrap();
        // SAFETY: fcq is ours; `mem` outlives this view.
        unsafe { (*fcq).ring = Ring::new(mem.0.as_mut_ptr(), slots) };
        for i in 0..5u64 {
            producer
                .push(&Cqe { wr_id: 100 + i, status: i as u32, opcode: 128, byte_len: 4096, qp_num: 7, ..Default::default() })
                .unwrap();
        }
        let mut wc = [IbvWc::default(); 3];
        let ibcq = fcq as *mut IbvCq;
        // SAFETY: ibcq is a FerriteCq; wc has room for 3.
        assert_eq!(unsafe { poll_cq(ibcq, 3, wc.as_mut_ptr()) }, 3);
        assert_eq!([wc[0].wr_id, wc[1].wr_id, wc[2].wr_id], [100, 101, 102]);
        assert_eq!((wc[2].status, wc[2].opcode, wc[2].byte_len, wc[2].qp_num), (2, 128, 4096, 7));
        // SAFETY: as above.
        assert_eq!(unsafe { poll_cq(ibcq, 3, wc.as_mut_ptr()) }, 2);
        // SAFETY: as above.
        assert_eq!(unsafe { poll_cq(ibcq, 3, wc.as_mut_ptr()) }, 0);
        // SAFETY: from new_cq's calloc; nothing refers to it any more.
        unsafe { free(fcq) };
    }
}
