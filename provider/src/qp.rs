//! Queue pairs: the verbs that make, change and end them, and the fast path.
//!
//! Creation goes through the core's `create_qp` (`ibv_cmd_create_qp`, or
//! `ibv_cmd_create_qp_ex2` when the application asked for the extended posting API);
//! ferrite's response tail ([`wq::CreateQpResp`]) names the send and receive rings,
//! which are mapped once, checked, and then written without a system call:
//!
//! - `post_recv` writes [`wq::RecvWqe`]s and publishes them.  Never a system call.
//! - `post_send` writes [`wq::SendWqe`]s (SGEs, or inline data copied at post time),
//!   publishes a whole list at once, and makes the doorbell system call only when the
//!   kernel asked for one (`take_doorbell_request`, see `ferrite_abi::wq`).  The
//!   doorbell is `ibv_cmd_post_send` with no work requests.
//! - The `ibv_wr_*` API stages WQEs in the ring between `wr_start` and
//!   `wr_complete`, which publishes them at once (`wr_abort` drops them); an error
//!   latches, and `wr_complete` returns it without publishing anything.
//!
//! Every WR is checked before it is written: the opcode must be one the QP type has,
//! the SGE count and the inline length within what the kernel gave the QP, and the
//! queue must have room.  The kernel checks its copy of each WQE again.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::AtomicBool;

use ferrite_abi::wq::{self, opcode as op, send_flags as sf, Geometry, RecvWqe, SendWqe, WorkQueue};

use crate::context::{calloc, dev_caps, errno, free, lock, set_errno, unlock, warn, DevCaps};
use crate::sys::{self, *};

/// ferrite's QP: libibverbs' `verbs_qp` first (so `ibv_qp` and `ibv_qp_ex` are at
/// offset 0), then the rings and what the kernel said about them.
#[repr(C)]
pub struct FerriteQp {
    vqp: VerbsQp,
    limits: Limits,
    sq_map: Mapping,
    rq_map: Mapping,
    /// Held by `post_send`, and from `wr_start` to `wr_complete`/`wr_abort`.
    sq_lock: AtomicBool,
    rq_lock: AtomicBool,
    send: UnsafeCell<SendSide>,
    recv: UnsafeCell<RecvSide>,
}

/// What the kernel gave the QP (its create_qp response tail), and what its device
/// serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub qp_type: u32,
    pub max_send_sge: u32,
    pub max_inline: u32,
    pub max_recv_sge: u32,
    pub caps: DevCaps,
}

#[derive(Clone, Copy)]
struct Mapping {
    addr: *mut c_void,
    len: usize,
}

impl Mapping {
    const NONE: Mapping = Mapping { addr: ptr::null_mut(), len: 0 };

    fn unmap(&self) {
        if !self.addr.is_null() {
            // SAFETY: a mapping this QP made and nothing uses any more.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}

/// The send queue and the `ibv_wr_*` batch being staged in it (under `sq_lock`).
struct SendSide {
    q: Option<WorkQueue>,
    /// WQEs staged since `wr_start`, written past the producer index.
    staged: u32,
    /// The first error of the batch; `wr_complete` returns it.
    err: c_int,
    /// The header of the newest staged WQE, which the setters complete.
    cur: Option<SendWqe>,
    /// Bytes its data setters gave it.
    cur_len: u64,
}

/// The receive queue (under `rq_lock`).
struct RecvSide {
    q: Option<WorkQueue>,
}

/// Send flags a WQE of an RC or UC QP carries.  INLINE is the provider's to set
/// (from `ibv_post_send`'s flag or the inline setters); IP_CSUM is a UD/raw offload
/// and is ignored here, as other providers ignore it; any other bit is an error.
const WQE_FLAGS: u32 = sf::FENCE | sf::SIGNALED | sf::SOLICITED;
const KNOWN_FLAGS: u32 = WQE_FLAGS | sf::INLINE | sf::IP_CSUM;

/// Does `qp_type` have send opcode `opcode`, on a device that serves `caps`?
/// (`ibv_post_send`'s view; FLUSH needs a type and a level `ibv_send_wr` cannot
/// carry, so it is the `ibv_wr_flush` API's: see [`flush_supported`].)  IBTA 1.5's
/// ATOMIC WRITE only where the kernel advertises it: handing ferrite.ko a WQE it
/// cannot serve would fail the QP (advertise only what works).
pub fn opcode_supported(caps: DevCaps, qp_type: u32, opcode: u32) -> bool {
    match opcode {
        op::SEND | op::SEND_WITH_IMM | op::RDMA_WRITE | op::RDMA_WRITE_WITH_IMM => {
            qp_type == IBV_QPT_RC || qp_type == IBV_QPT_UC
        }
        op::RDMA_READ | op::ATOMIC_CMP_AND_SWP | op::ATOMIC_FETCH_AND_ADD => qp_type == IBV_QPT_RC,
        op::ATOMIC_WRITE => caps.atomic_write && qp_type == IBV_QPT_RC,
        _ => false,
    }
}

/// Does `qp_type` have FLUSH (`ibv_wr_flush`) on a device that serves `caps`?
pub fn flush_supported(caps: DevCaps, qp_type: u32) -> bool {
    caps.flush && qp_type == IBV_QPT_RC
}

/// The `IBV_QP_EX_WITH_*` send ops `qp_type` can offer through `ibv_qp_ex` in this
/// release on a device that serves `caps` (ATOMIC_WRITE and FLUSH only where
/// `ibv_qp_ex` has their members: v44 and v45 on).
pub fn send_ops_supported(caps: DevCaps, qp_type: u32) -> u64 {
    let uc = send_ops::RDMA_WRITE | send_ops::RDMA_WRITE_WITH_IMM | send_ops::SEND | send_ops::SEND_WITH_IMM;
    match qp_type {
        IBV_QPT_UC => uc,
        IBV_QPT_RC => {
            let mut rc = uc | send_ops::RDMA_READ | send_ops::ATOMIC_CMP_AND_SWP | send_ops::ATOMIC_FETCH_AND_ADD;
            if QP_EX_HAS_ATOMIC_WRITE && opcode_supported(caps, qp_type, op::ATOMIC_WRITE) {
                rc |= send_ops::ATOMIC_WRITE;
            }
            if QP_EX_HAS_FLUSH && flush_supported(caps, qp_type) {
                rc |= send_ops::FLUSH;
            }
            rc
        }
        _ => 0,
    }
}

fn carries_inline(opcode: u32) -> bool {
    matches!(opcode, op::SEND | op::SEND_WITH_IMM | op::RDMA_WRITE | op::RDMA_WRITE_WITH_IMM)
}

fn has_imm(opcode: u32) -> bool {
    matches!(opcode, op::SEND_WITH_IMM | op::RDMA_WRITE_WITH_IMM)
}

/// The rings a create_qp response describes, checked against the caps the core
/// reported to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    pub sq: Geometry,
    pub rq: Geometry,
}

/// Check the kernel's create_qp response tail: ring geometry and byte sizes, WQEs
/// that fit their slots, and room for everything the core told the application.
pub fn check_layout(d: &wq::CreateQpResp, cap: &IbvQpCap) -> Option<RingLayout> {
    let sq = Geometry::checked(d.sq_slots, d.sq_stride)?;
    let rq = Geometry::checked(d.rq_slots, d.rq_stride)?;
    let send_body = (d.max_send_sge as u64 * wq::SGE_SIZE as u64).max(d.max_inline as u64);
    let ok = d.sq_mmap_len == sq.bytes() as u64
        && d.rq_mmap_len == rq.bytes() as u64
        && wq::SEND_WQE_HDR as u64 + send_body <= sq.stride as u64
        && wq::RECV_WQE_HDR as u64 + d.max_recv_sge as u64 * wq::SGE_SIZE as u64 <= rq.stride as u64
        && cap.max_send_wr <= sq.slots
        && cap.max_recv_wr <= rq.slots
        && cap.max_send_sge <= d.max_send_sge
        && cap.max_recv_sge <= d.max_recv_sge
        && cap.max_inline_data <= d.max_inline;
    ok.then_some(RingLayout { sq, rq })
}

/// A zeroed QP with its Rust-side members initialised, or `None` without memory.
fn new_qp() -> Option<*mut FerriteQp> {
    let qp: *mut FerriteQp = calloc();
    if qp.is_null() {
        return None;
    }
    // SAFETY: a fresh allocation of the right size.  The C part (verbs_qp) is valid
    // zeroed: integers, pointers and NULL function pointers.  The rest is written here.
    unsafe {
        ptr::addr_of_mut!((*qp).limits).write(Limits::default());
        ptr::addr_of_mut!((*qp).sq_map).write(Mapping::NONE);
        ptr::addr_of_mut!((*qp).rq_map).write(Mapping::NONE);
        ptr::addr_of_mut!((*qp).sq_lock).write(AtomicBool::new(false));
        ptr::addr_of_mut!((*qp).rq_lock).write(AtomicBool::new(false));
        ptr::addr_of_mut!((*qp).send).write(UnsafeCell::new(SendSide {
            q: None,
            staged: 0,
            err: 0,
            cur: None,
            cur_len: 0,
        }));
        ptr::addr_of_mut!((*qp).recv).write(UnsafeCell::new(RecvSide { q: None }));
    }
    Some(qp)
}

fn ibv_qp(qp: *mut FerriteQp) -> *mut IbvQp {
    // SAFETY: only computes the address of a member (verbs_qp.qp_ex.qp_base, offset 0).
    unsafe { ptr::addr_of_mut!((*qp).vqp.qp_ex.qp_base) }
}

/// The QP state as libibverbs last recorded it (after modify_qp/query_qp).
///
/// # Safety
/// `qp` is live.
unsafe fn state(qp: *mut FerriteQp) -> u32 {
    // SAFETY: function contract; libibverbs may store it from another thread.
    unsafe { ptr::read_volatile(ptr::addr_of!((*ibv_qp(qp)).state)) }
}

/// Posting to the send queue is an immediate error before RTS (IBA C10-94, and
/// C10-97 for the receive queue before INIT).
fn send_allowed(state: u32) -> bool {
    !matches!(state, qps::RESET | qps::INIT | qps::RTR)
}

fn map_ring(fd: c_int, offset: u64, len: u64) -> Result<Mapping, c_int> {
    // SAFETY: mapping the kernel's ring: shared, exactly the published length.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            offset as libc::off_t,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(errno());
    }
    Ok(Mapping { addr, len: len as usize })
}

/// After the kernel made the QP: map and check its rings.  On failure the kernel QP
/// is destroyed, `qp` freed and errno set.
///
/// # Safety
/// `qp` comes from [`new_qp`] and names a QP the kernel just created on `ctx`;
/// nobody else knows it yet.
unsafe fn attach_rings(
    qp: *mut FerriteQp,
    ctx: *mut IbvContext,
    cap: &IbvQpCap,
    d: &wq::CreateQpResp,
    qp_type: u32,
) -> *mut IbvQp {
    // SAFETY: ctx is a live context of ours (function contract).
    let caps = unsafe { dev_caps(ctx) };
    let r = (|| {
        let Some(layout) = check_layout(d, cap) else {
            warn(c"ferrite: the kernel returned QP rings of impossible geometry\n");
            return Err(libc::EPROTO);
        };
        // SAFETY: ctx is the live context the QP was made on.
        let fd = unsafe { (*ctx).cmd_fd };
        let sq_map = map_ring(fd, d.sq_mmap_offset, d.sq_mmap_len)?;
        // SAFETY: qp is ours (function contract); recorded so failures unmap it.
        unsafe { (*qp).sq_map = sq_map };
        let rq_map = map_ring(fd, d.rq_mmap_offset, d.rq_mmap_len)?;
        // SAFETY: as above.
        unsafe { (*qp).rq_map = rq_map };
        // SAFETY: each mapping is geo.bytes() long and page-aligned, and stays mapped
        // until destroy_qp (or the failure path below) unmaps it; the views die with
        // the QP's memory then (WorkQueue has no Drop).
        let (sq, rq) = unsafe {
            (WorkQueue::new(sq_map.addr as *mut u8, layout.sq), WorkQueue::new(rq_map.addr as *mut u8, layout.rq))
        };
        let (Some(sq), Some(rq)) = (sq, rq) else { return Err(libc::EPROTO) };
        let limits = Limits {
            qp_type,
            max_send_sge: d.max_send_sge,
            max_inline: d.max_inline,
            max_recv_sge: d.max_recv_sge,
            caps,
        };
        // SAFETY: qp is ours and not yet visible to anyone else.
        unsafe { install(qp, limits, sq, rq) };
        Ok(())
    })();
    match r {
        Ok(()) => ibv_qp(qp),
        Err(e) => {
            // SAFETY: the QP exists in the kernel: undo it, then unmap and free ours.
            unsafe {
                sys::ibv_cmd_destroy_qp(ibv_qp(qp));
                (*qp).sq_map.unmap();
                (*qp).rq_map.unmap();
                free(qp);
            }
            set_errno(e);
            ptr::null_mut()
        }
    }
}

/// Give a QP its rings and limits.
///
/// # Safety
/// `qp` comes from [`new_qp`] and no other thread uses it yet.
unsafe fn install(qp: *mut FerriteQp, limits: Limits, sq: WorkQueue, rq: WorkQueue) {
    // SAFETY: function contract: exclusive access.
    unsafe {
        (*qp).limits = limits;
        (*(*qp).send.get()).q = Some(sq);
        (*(*qp).recv.get()).q = Some(rq);
    }
}

/// What ferrite can serve of a create request: RC and UC QPs, no SRQ.
fn check_init(qp_type: u32, srq: *mut IbvSrq) -> Result<(), c_int> {
    if qp_type != IBV_QPT_RC && qp_type != IBV_QPT_UC {
        return Err(libc::EOPNOTSUPP);
    }
    if !srq.is_null() {
        return Err(libc::EOPNOTSUPP);
    }
    Ok(())
}

fn fail(e: c_int) -> *mut IbvQp {
    set_errno(e);
    ptr::null_mut()
}

/// `ibv_create_qp`.
///
/// # Safety
/// Called by libibverbs with one of our PDs and the caller's attributes.
pub unsafe extern "C" fn create_qp(pd: *mut IbvPd, attr: *mut IbvQpInitAttr) -> *mut IbvQp {
    // SAFETY: attr is the caller's, valid for the call.
    let (qp_type, srq) = unsafe { ((*attr).qp_type, (*attr).srq) };
    if let Err(e) = check_init(qp_type, srq) {
        return fail(e);
    }
    let Some(qp) = new_qp() else { return fail(libc::ENOMEM) };
    let mut cmd = CreateQpCmd::default();
    let mut resp = CreateQpResp::default();
    // SAFETY: qp is zeroed and ours; the buffers are sized as passed.
    let err = unsafe {
        sys::ibv_cmd_create_qp(
            pd,
            ibv_qp(qp),
            attr,
            &mut cmd,
            size_of::<CreateQpCmd>(),
            &mut resp,
            size_of::<CreateQpResp>(),
        )
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(qp) };
        return fail(err);
    }
    // SAFETY: libibverbs wrote the real caps back into attr; the QP is new and ours.
    unsafe {
        let cap = (*attr).cap;
        attach_rings(qp, (*pd).context, &cap, &resp.drv, qp_type)
    }
}

/// `ibv_create_qp_ex`, which libibverbs calls only when `comp_mask` is more than PD.
///
/// # Safety
/// Called by libibverbs with one of our contexts and the caller's attributes.
pub unsafe extern "C" fn create_qp_ex(ctx: *mut IbvContext, attr: *mut IbvQpInitAttrEx) -> *mut IbvQp {
    // SAFETY: attr is the caller's, valid for the call.
    let a = unsafe { *attr };
    if a.comp_mask & qp_init_attr::PD == 0 {
        return fail(libc::EINVAL);
    }
    if a.comp_mask & !(qp_init_attr::PD | qp_init_attr::CREATE_FLAGS | qp_init_attr::SEND_OPS_FLAGS) != 0
        || (a.comp_mask & qp_init_attr::CREATE_FLAGS != 0 && a.create_flags != 0)
    {
        return fail(libc::EOPNOTSUPP);
    }
    if let Err(e) = check_init(a.qp_type, a.srq) {
        return fail(e);
    }
    let ops = if a.comp_mask & qp_init_attr::SEND_OPS_FLAGS != 0 { Some(a.send_ops_flags) } else { None };
    if let Some(f) = ops {
        // SAFETY: ctx is one of our live contexts (libibverbs calls us with it).
        if f & !send_ops_supported(unsafe { dev_caps(ctx) }, a.qp_type) != 0 {
            return fail(libc::EOPNOTSUPP);
        }
    }
    let Some(qp) = new_qp() else { return fail(libc::ENOMEM) };
    // SAFETY: ctx and attr are live; qp is zeroed and ours; buffers sized as passed.
    let (err, drv) = unsafe {
        if ops.is_some() {
            // The extended command, as the application asked for ibv_qp_ex.
            let mut cmd = CreateQpExCmd::default();
            let mut resp = CreateQpExResp::default();
            let err = sys::ibv_cmd_create_qp_ex2(
                ctx,
                ptr::addr_of_mut!((*qp).vqp),
                attr,
                &mut cmd,
                size_of::<CreateQpExCmd>(),
                &mut resp,
                size_of::<CreateQpExResp>(),
            );
            (err, resp.drv)
        } else {
            // Only PD (and zero create_flags) remain: the classic command.
            let mut plain = a;
            plain.comp_mask = qp_init_attr::PD;
            let mut cmd = CreateQpCmd::default();
            let mut resp = CreateQpResp::default();
            let err = sys::ibv_cmd_create_qp_ex(
                ctx,
                ptr::addr_of_mut!((*qp).vqp),
                &mut plain,
                &mut cmd,
                size_of::<CreateQpCmd>(),
                &mut resp,
                size_of::<CreateQpResp>(),
            );
            (*attr).cap = plain.cap;
            (err, resp.drv)
        }
    };
    if err != 0 {
        // SAFETY: the kernel did not take it.
        unsafe { free(qp) };
        return fail(err);
    }
    // SAFETY: libibverbs wrote the real caps into attr; the QP is new and ours.
    let ibqp = unsafe {
        let cap = (*attr).cap;
        attach_rings(qp, ctx, &cap, &drv, a.qp_type)
    };
    if let (false, Some(f)) = (ibqp.is_null(), ops) {
        // SAFETY: the QP is ours and not yet returned to the application.
        unsafe {
            set_send_ops(ptr::addr_of_mut!((*qp).vqp.qp_ex), f);
            (*qp).vqp.comp_mask |= VERBS_QP_EX;
        }
    }
    ibqp
}

/// Fill `ibv_qp_ex`'s builders for the ops asked for, and its setters.
///
/// # Safety
/// `qpx` is a QP of ours that no other thread uses yet.
unsafe fn set_send_ops(qpx: *mut IbvQpEx, f: u64) {
    // SAFETY: function contract: exclusive access to the QP's ibv_qp_ex.
    let x = unsafe { &mut *qpx };
    let on = |bit: u64| f & bit != 0;
    if on(send_ops::RDMA_WRITE) {
        x.wr_rdma_write = Some(wr_rdma_write);
    }
    if on(send_ops::RDMA_WRITE_WITH_IMM) {
        x.wr_rdma_write_imm = Some(wr_rdma_write_imm);
    }
    if on(send_ops::SEND) {
        x.wr_send = Some(wr_send);
    }
    if on(send_ops::SEND_WITH_IMM) {
        x.wr_send_imm = Some(wr_send_imm);
    }
    if on(send_ops::RDMA_READ) {
        x.wr_rdma_read = Some(wr_rdma_read);
    }
    if on(send_ops::ATOMIC_CMP_AND_SWP) {
        x.wr_atomic_cmp_swp = Some(wr_atomic_cmp_swp);
    }
    if on(send_ops::ATOMIC_FETCH_AND_ADD) {
        x.wr_atomic_fetch_add = Some(wr_atomic_fetch_add);
    }
    if on(send_ops::ATOMIC_WRITE) {
        if let Some(s) = x.tail.get_mut(QP_EX_ATOMIC_WRITE) {
            *s = wr_atomic_write as WrAtomicWrite as *const c_void;
        }
    }
    if on(send_ops::FLUSH) {
        if let Some(s) = x.tail.get_mut(QP_EX_FLUSH) {
            *s = wr_flush as WrFlush as *const c_void;
        }
    }
    x.wr_set_sge = Some(wr_set_sge);
    x.wr_set_sge_list = Some(wr_set_sge_list);
    x.wr_set_inline_data = Some(wr_set_inline_data);
    x.wr_set_inline_data_list = Some(wr_set_inline_data_list);
    x.wr_start = Some(wr_start);
    x.wr_complete = Some(wr_complete);
    x.wr_abort = Some(wr_abort);
}

/// `ibv_modify_qp`.
///
/// # Safety
/// Called by libibverbs with one of our QPs.
pub unsafe extern "C" fn modify_qp(qp: *mut IbvQp, attr: *mut IbvQpAttr, attr_mask: c_int) -> c_int {
    let mut cmd = ModifyQpCmd::default();
    // SAFETY: arguments from libibverbs; cmd is ours and sized as passed.
    unsafe { sys::ibv_cmd_modify_qp(qp, attr, attr_mask, &mut cmd, size_of::<ModifyQpCmd>()) }
}

/// `ibv_query_qp`.
///
/// # Safety
/// Called by libibverbs with one of our QPs.
pub unsafe extern "C" fn query_qp(
    qp: *mut IbvQp,
    attr: *mut IbvQpAttr,
    attr_mask: c_int,
    init_attr: *mut IbvQpInitAttr,
) -> c_int {
    let mut cmd = QueryQpCmd::default();
    // SAFETY: arguments from libibverbs; cmd is ours and sized as passed.
    unsafe { sys::ibv_cmd_query_qp(qp, attr, attr_mask, init_attr, &mut cmd, size_of::<QueryQpCmd>()) }
}

/// `ibv_destroy_qp`.
///
/// # Safety
/// Called by libibverbs with one of our QPs, which nobody posts to any more.
pub unsafe extern "C" fn destroy_qp(ibqp: *mut IbvQp) -> c_int {
    // SAFETY: ibqp is one of ours.
    let err = unsafe { sys::ibv_cmd_destroy_qp(ibqp) };
    if err != 0 {
        return err;
    }
    let qp = ibqp as *mut FerriteQp;
    // SAFETY: the kernel QP is gone; the mappings and the memory are ours.
    unsafe {
        (*qp).sq_map.unmap();
        (*qp).rq_map.unmap();
        free(qp);
    }
    0
}

/// `ibv_query_qp_data_in_order`: ferrite places each message's data in order, so a
/// message's last byte arriving means all of it has (whatever the operation).
///
/// # Safety
/// Called by libibverbs with one of our QPs.
pub unsafe extern "C" fn query_qp_data_in_order(ibqp: *mut IbvQp, opcode: u32, _flags: u32) -> c_int {
    let qp = ibqp as *mut FerriteQp;
    // SAFETY: ibqp is one of ours; its limits never change after creation.
    let lim = unsafe { (*qp).limits };
    let flush = opcode == op::FLUSH && flush_supported(lim.caps, lim.qp_type);
    if opcode_supported(lim.caps, lim.qp_type, opcode) || flush {
        IBV_QUERY_QP_DATA_IN_ORDER_WHOLE_MSG
    } else {
        0
    }
}

/// Ring the doorbell: `ibv_cmd_post_send` with no work requests.
fn doorbell(qp: *mut FerriteQp) -> c_int {
    let mut bad: *mut IbvSendWr = ptr::null_mut();
    // SAFETY: qp is live; with no WRs libibverbs only sends the command.
    unsafe { sys::ibv_cmd_post_send(ibv_qp(qp), ptr::null_mut(), &mut bad) }
}

/// A WR's SGE list as a slice, or EINVAL for an impossible one.
///
/// # Safety
/// `sg` points to `n` SGEs when `n > 0`.
unsafe fn sge_list<'a>(sg: *const IbvSge, n: c_int) -> Result<&'a [IbvSge], c_int> {
    if n < 0 || (n > 0 && sg.is_null()) {
        return Err(libc::EINVAL);
    }
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: function contract.
    Ok(unsafe { core::slice::from_raw_parts(sg, n as usize) })
}

fn total(sges: &[IbvSge]) -> u64 {
    sges.iter().map(|s| s.length as u64).sum()
}

/// Copy the bytes the SGEs name, concatenated, to `dst`.
///
/// # Safety
/// Each SGE names `length` readable bytes at `addr` (the verbs contract for inline
/// data), and `dst` has room for all of them.
unsafe fn gather(sges: &[IbvSge], dst: &mut [u8]) {
    let mut off = 0;
    for s in sges.iter().filter(|s| s.length != 0) {
        let n = s.length as usize;
        // SAFETY: function contract; `dst[off..off + n]` is in bounds (checked by
        // the slice index), the source is the application's readable buffer.
        unsafe { ptr::copy_nonoverlapping(s.addr as usize as *const u8, dst[off..off + n].as_mut_ptr(), n) };
        off += n;
    }
}

fn write_sges(slot: &mut [u8], sges: &[IbvSge]) {
    for (k, s) in sges.iter().enumerate() {
        let e = wq::Sge { addr: s.addr, length: s.length, lkey: s.lkey };
        let ok = wq::write_hdr(&mut slot[wq::SEND_WQE_HDR + k * wq::SGE_SIZE..], &e);
        debug_assert!(ok);
    }
}

/// Check one `ibv_send_wr` and write it into `slot`.
///
/// # Safety
/// `wr` is a valid WR whose SGEs (and inline buffers) are valid, as the verbs
/// contract requires.
unsafe fn write_send(lim: &Limits, wr: &IbvSendWr, slot: &mut [u8]) -> Result<(), c_int> {
    if !opcode_supported(lim.caps, lim.qp_type, wr.opcode) || wr.send_flags & !KNOWN_FLAGS != 0 {
        return Err(libc::EINVAL);
    }
    if wr.num_sge < 0 || wr.num_sge as u32 > lim.max_send_sge {
        return Err(libc::EINVAL);
    }
    // SAFETY: function contract.
    let sges = unsafe { sge_list(wr.sg_list, wr.num_sge)? };
    let len = total(sges);
    let inline = wr.send_flags & sf::INLINE != 0;
    let mut w = SendWqe {
        wr_id: wr.wr_id,
        opcode: wr.opcode,
        send_flags: wr.send_flags & WQE_FLAGS,
        imm_data: if has_imm(wr.opcode) { wr.imm_data } else { 0 },
        ..Default::default()
    };
    match wr.opcode {
        op::ATOMIC_CMP_AND_SWP | op::ATOMIC_FETCH_AND_ADD => {
            // SAFETY: the atomic member is the one these opcodes use.
            let a = unsafe { wr.wr.atomic };
            if inline || len != 8 || !a.remote_addr.is_multiple_of(8) {
                return Err(libc::EINVAL);
            }
            w.remote_addr = a.remote_addr;
            w.rkey = a.rkey;
            w.compare_add = a.compare_add;
            w.swap = if wr.opcode == op::ATOMIC_CMP_AND_SWP { a.swap } else { 0 };
        }
        _ => {
            // SAFETY: the rdma member is the one the other RC/UC opcodes use (SEND
            // ignores it).
            let r = unsafe { wr.wr.rdma };
            if matches!(wr.opcode, op::RDMA_WRITE | op::RDMA_WRITE_WITH_IMM | op::RDMA_READ | op::ATOMIC_WRITE) {
                w.remote_addr = r.remote_addr;
                w.rkey = r.rkey;
            }
        }
    }
    if wr.opcode == op::ATOMIC_WRITE {
        // The 8 bytes to write are the WR's data, taken now (as inline data is).
        if len != 8 || !w.remote_addr.is_multiple_of(8) {
            return Err(libc::EINVAL);
        }
        let mut v = [0u8; 8];
        // SAFETY: function contract; the SGEs hold exactly 8 bytes.
        unsafe { gather(sges, &mut v) };
        w.swap = u64::from_ne_bytes(v);
        wq::write_hdr(slot, &w);
        return Ok(());
    }
    if inline {
        if !carries_inline(wr.opcode) || len > lim.max_inline as u64 {
            return Err(libc::EINVAL);
        }
        w.send_flags |= sf::INLINE;
        w.inline_len = len as u32;
        // SAFETY: function contract; the slot holds SEND_WQE_HDR + max_inline bytes.
        unsafe { gather(sges, &mut slot[wq::SEND_WQE_HDR..wq::SEND_WQE_HDR + len as usize]) };
    } else {
        w.num_sge = sges.len() as u32;
        write_sges(slot, sges);
    }
    wq::write_hdr(slot, &w);
    Ok(())
}

/// `ibv_post_send`: WQEs into the send queue, one publish for the list, and a
/// doorbell only if the kernel asked for one.
///
/// # Safety
/// Called by libibverbs with one of our QPs and a valid WR list.
pub unsafe extern "C" fn post_send(ibqp: *mut IbvQp, wr: *mut IbvSendWr, bad_wr: *mut *mut IbvSendWr) -> c_int {
    let qp = ibqp as *mut FerriteQp;
    // SAFETY: qp is live for the call; its limits never change after creation.
    let (lim, sq_lock) = unsafe { (&(*qp).limits, &(*qp).sq_lock) };
    let mut err = 0;
    let mut bad = ptr::null_mut();
    let mut n = 0u32;
    let mut ring = false;
    lock(sq_lock);
    {
        // SAFETY: sq_lock is held: this thread alone uses the send side.
        let side = unsafe { &mut *(*qp).send.get() };
        // SAFETY: qp is live.
        let allowed = send_allowed(unsafe { state(qp) });
        let mut cur = wr;
        while !cur.is_null() {
            // SAFETY: the caller's WR list is valid.
            let w = unsafe { &*cur };
            let r = match side.q.as_mut().and_then(|q| q.producer_slot(n)) {
                _ if !allowed => Err(libc::EINVAL),
                None => Err(libc::ENOMEM),
                // SAFETY: the WR's buffers are valid (caller's contract).
                Some(slot) => unsafe { write_send(lim, w, slot) },
            };
            if let Err(e) = r {
                err = e;
                bad = cur;
                break;
            }
            n += 1;
            cur = w.next;
        }
        if let (true, Some(q)) = (n > 0, side.q.as_ref()) {
            q.publish(n);
            ring = q.take_doorbell_request();
        }
    }
    unlock(sq_lock);
    if ring {
        let e = doorbell(qp);
        if e != 0 && err == 0 {
            // Published but the kernel was not told: report the first of them.
            err = e;
            bad = wr;
        }
    }
    if err != 0 && !bad_wr.is_null() {
        // SAFETY: the caller's out pointer.
        unsafe { *bad_wr = bad };
    }
    err
}

/// `ibv_post_recv`: WQEs into the receive queue, published at once; no system call.
///
/// # Safety
/// Called by libibverbs with one of our QPs and a valid WR list.
pub unsafe extern "C" fn post_recv(ibqp: *mut IbvQp, wr: *mut IbvRecvWr, bad_wr: *mut *mut IbvRecvWr) -> c_int {
    let qp = ibqp as *mut FerriteQp;
    // SAFETY: qp is live for the call; its limits never change after creation.
    let (lim, rq_lock) = unsafe { (&(*qp).limits, &(*qp).rq_lock) };
    let mut err = 0;
    let mut bad = ptr::null_mut();
    let mut n = 0u32;
    lock(rq_lock);
    {
        // SAFETY: rq_lock is held: this thread alone uses the receive side.
        let side = unsafe { &mut *(*qp).recv.get() };
        // SAFETY: qp is live.
        let allowed = unsafe { state(qp) } != qps::RESET;
        let mut cur = wr;
        while !cur.is_null() {
            // SAFETY: the caller's WR list is valid.
            let w = unsafe { &*cur };
            let r = (|| {
                if !allowed || w.num_sge < 0 || w.num_sge as u32 > lim.max_recv_sge {
                    return Err(libc::EINVAL);
                }
                // SAFETY: the caller's SGE list holds num_sge entries.
                let sges = unsafe { sge_list(w.sg_list, w.num_sge)? };
                let slot = side.q.as_mut().and_then(|q| q.producer_slot(n)).ok_or(libc::ENOMEM)?;
                wq::write_hdr(slot, &RecvWqe { wr_id: w.wr_id, num_sge: sges.len() as u32, reserved: 0 });
                for (k, s) in sges.iter().enumerate() {
                    let e = wq::Sge { addr: s.addr, length: s.length, lkey: s.lkey };
                    wq::write_hdr(&mut slot[wq::RECV_WQE_HDR + k * wq::SGE_SIZE..], &e);
                }
                Ok(())
            })();
            if let Err(e) = r {
                err = e;
                bad = cur;
                break;
            }
            n += 1;
            cur = w.next;
        }
        if let (true, Some(q)) = (n > 0, side.q.as_ref()) {
            q.publish(n);
        }
    }
    unlock(rq_lock);
    if err != 0 && !bad_wr.is_null() {
        // SAFETY: the caller's out pointer.
        unsafe { *bad_wr = bad };
    }
    err
}

// ---- the ibv_wr_* API ----

fn qp_of(qpx: *mut IbvQpEx) -> *mut FerriteQp {
    // ibv_qp_ex is at offset 0 of verbs_qp, which is at offset 0 of FerriteQp.
    qpx as *mut FerriteQp
}

/// The send side of a QP inside a `wr_start` batch.
///
/// # Safety
/// `qpx` is one of our QPs and this thread holds its `sq_lock` (from `wr_start`).
unsafe fn batch<'a>(qpx: *mut IbvQpEx) -> (&'a mut SendSide, &'a Limits) {
    let qp = qp_of(qpx);
    // SAFETY: function contract: the lock makes the send side this thread's.
    unsafe { (&mut *(*qp).send.get(), &(*qp).limits) }
}

impl SendSide {
    fn latch(&mut self, e: c_int) {
        if self.err == 0 {
            self.err = e;
        }
    }

    /// Check the newest staged WQE now that its setters are done.
    fn finish_cur(&mut self) {
        let Some(w) = self.cur.take() else { return };
        if matches!(w.opcode, op::ATOMIC_CMP_AND_SWP | op::ATOMIC_FETCH_AND_ADD) && self.cur_len != 8 {
            self.latch(libc::EINVAL);
        }
    }

    /// Rewrite the newest staged WQE's header after a setter changed it.
    fn store_cur(&mut self) -> Option<&mut [u8]> {
        let w = self.cur?;
        let slot = self.q.as_mut()?.producer_slot(self.staged - 1)?;
        wq::write_hdr(slot, &w);
        Some(slot)
    }

    fn reset(&mut self) {
        self.staged = 0;
        self.err = 0;
        self.cur = None;
        self.cur_len = 0;
    }
}

/// Start a WQE of `opcode` with the application's `wr_id` and `wr_flags`.
///
/// # Safety
/// As for [`batch`].
unsafe fn build(qpx: *mut IbvQpEx, opcode: u32, fill: impl FnOnce(&mut SendWqe)) {
    // SAFETY: function contract.
    let (side, lim) = unsafe { batch(qpx) };
    side.finish_cur();
    if side.err != 0 {
        return;
    }
    // SAFETY: the application set these before calling the builder (same thread).
    let (wr_id, flags) = unsafe { ((*qpx).wr_id, (*qpx).wr_flags) };
    let flush = opcode == op::FLUSH && flush_supported(lim.caps, lim.qp_type);
    if flags & !KNOWN_FLAGS != 0 || !(opcode_supported(lim.caps, lim.qp_type, opcode) || flush) {
        return side.latch(libc::EINVAL);
    }
    let mut w = SendWqe { wr_id, opcode, send_flags: flags & WQE_FLAGS, ..Default::default() };
    fill(&mut w);
    if matches!(opcode, op::ATOMIC_CMP_AND_SWP | op::ATOMIC_FETCH_AND_ADD | op::ATOMIC_WRITE)
        && !w.remote_addr.is_multiple_of(8)
    {
        return side.latch(libc::EINVAL);
    }
    let staged = side.staged;
    let Some(slot) = side.q.as_mut().and_then(|q| q.producer_slot(staged)) else {
        return side.latch(libc::ENOMEM);
    };
    wq::write_hdr(slot, &w);
    side.staged += 1;
    side.cur = Some(w);
    side.cur_len = 0;
}

unsafe extern "C" fn wr_start(qpx: *mut IbvQpEx) {
    let qp = qp_of(qpx);
    // SAFETY: qpx is one of our QPs; the lock is held until wr_complete/wr_abort.
    unsafe {
        lock(&(*qp).sq_lock);
        let (side, _) = batch(qpx);
        side.reset();
        if !send_allowed(state(qp)) {
            side.latch(libc::EINVAL);
        }
    }
}

unsafe extern "C" fn wr_complete(qpx: *mut IbvQpEx) -> c_int {
    let qp = qp_of(qpx);
    // SAFETY: wr_start took the lock; the send side is this thread's.
    let (side, _) = unsafe { batch(qpx) };
    side.finish_cur();
    let err = side.err;
    let n = side.staged;
    let mut ring = false;
    if let (0, true, Some(q)) = (err, n > 0, side.q.as_ref()) {
        q.publish(n);
        ring = q.take_doorbell_request();
    }
    side.reset();
    // SAFETY: taken in wr_start.
    unlock(unsafe { &(*qp).sq_lock });
    if err != 0 {
        return err;
    }
    if ring {
        return doorbell(qp);
    }
    0
}

unsafe extern "C" fn wr_abort(qpx: *mut IbvQpEx) {
    let qp = qp_of(qpx);
    // SAFETY: wr_start took the lock; nothing staged was published.
    unsafe {
        batch(qpx).0.reset();
        unlock(&(*qp).sq_lock);
    }
}

unsafe extern "C" fn wr_send(qpx: *mut IbvQpEx) {
    // SAFETY: called inside a wr_start batch on one of our QPs.
    unsafe { build(qpx, op::SEND, |_| {}) }
}

unsafe extern "C" fn wr_send_imm(qpx: *mut IbvQpEx, imm_data: u32) {
    // SAFETY: as above.
    unsafe { build(qpx, op::SEND_WITH_IMM, |w| w.imm_data = imm_data) }
}

unsafe extern "C" fn wr_rdma_write(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64) {
    // SAFETY: as above.
    unsafe {
        build(qpx, op::RDMA_WRITE, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
        })
    }
}

unsafe extern "C" fn wr_rdma_write_imm(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64, imm_data: u32) {
    // SAFETY: as above.
    unsafe {
        build(qpx, op::RDMA_WRITE_WITH_IMM, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
            w.imm_data = imm_data;
        })
    }
}

unsafe extern "C" fn wr_rdma_read(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64) {
    // SAFETY: as above.
    unsafe {
        build(qpx, op::RDMA_READ, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
        })
    }
}

unsafe extern "C" fn wr_atomic_cmp_swp(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64, compare: u64, swap: u64) {
    // SAFETY: as above.
    unsafe {
        build(qpx, op::ATOMIC_CMP_AND_SWP, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
            w.compare_add = compare;
            w.swap = swap;
        })
    }
}

unsafe extern "C" fn wr_atomic_fetch_add(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64, add: u64) {
    // SAFETY: as above.
    unsafe {
        build(qpx, op::ATOMIC_FETCH_AND_ADD, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
            w.compare_add = add;
        })
    }
}

unsafe extern "C" fn wr_atomic_write(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64, atomic_wr: *const c_void) {
    if atomic_wr.is_null() {
        // SAFETY: inside a batch on one of our QPs.
        return unsafe { batch(qpx).0.latch(libc::EINVAL) };
    }
    // SAFETY: the application passes 8 readable bytes (ibv_wr_atomic_write(3)).
    let v = unsafe { ptr::read_unaligned(atomic_wr as *const [u8; 8]) };
    // SAFETY: inside a batch on one of our QPs.
    unsafe {
        build(qpx, op::ATOMIC_WRITE, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
            w.swap = u64::from_ne_bytes(v);
        })
    }
}

unsafe extern "C" fn wr_flush(qpx: *mut IbvQpEx, rkey: u32, remote_addr: u64, len: usize, ty: u8, level: u8) {
    // IBV_FLUSH_GLOBAL | IBV_FLUSH_PERSISTENT, and IBV_FLUSH_RANGE or IBV_FLUSH_MR;
    // the length goes into a RETH's 32 bits.
    if ty == 0 || ty & !3 != 0 || level > 1 || u32::try_from(len).is_err() {
        // SAFETY: inside a batch on one of our QPs.
        return unsafe { batch(qpx).0.latch(libc::EINVAL) };
    }
    // SAFETY: inside a batch on one of our QPs.
    unsafe {
        build(qpx, op::FLUSH, |w| {
            w.rkey = rkey;
            w.remote_addr = remote_addr;
            w.compare_add = len as u64;
            w.flush_type = ty;
            w.flush_level = level;
        })
    }
}

/// Give the newest staged WQE `sges`.
///
/// # Safety
/// As for [`batch`]; `sges` are the application's.
unsafe fn set_sges(qpx: *mut IbvQpEx, sges: &[IbvSge]) {
    // SAFETY: function contract.
    let (side, lim) = unsafe { batch(qpx) };
    if side.err != 0 {
        return;
    }
    let Some(w) = side.cur.as_mut() else { return side.latch(libc::EINVAL) };
    if matches!(w.opcode, op::ATOMIC_WRITE | op::FLUSH) || sges.len() > lim.max_send_sge as usize {
        return side.latch(libc::EINVAL);
    }
    w.num_sge = sges.len() as u32;
    w.inline_len = 0;
    w.send_flags &= !sf::INLINE;
    side.cur_len = total(sges);
    let Some(slot) = side.store_cur() else { return side.latch(libc::EINVAL) };
    write_sges(slot, sges);
}

unsafe extern "C" fn wr_set_sge(qpx: *mut IbvQpEx, lkey: u32, addr: u64, length: u32) {
    let s = [IbvSge { addr, length, lkey }];
    // A zero-length buffer is no buffer at all.
    let n = usize::from(length != 0);
    // SAFETY: inside a batch on one of our QPs.
    unsafe { set_sges(qpx, &s[..n]) }
}

unsafe extern "C" fn wr_set_sge_list(qpx: *mut IbvQpEx, num_sge: usize, sg_list: *const IbvSge) {
    let sges = match c_int::try_from(num_sge) {
        // SAFETY: the application passes num_sge SGEs.
        Ok(n) => unsafe { sge_list(sg_list, n) },
        Err(_) => Err(libc::EINVAL),
    };
    match sges {
        // SAFETY: inside a batch on one of our QPs.
        Ok(s) => unsafe { set_sges(qpx, s) },
        // SAFETY: as above.
        Err(e) => unsafe { batch(qpx).0.latch(e) },
    }
}

/// Copy inline data into the newest staged WQE.
///
/// # Safety
/// As for [`batch`]; every buffer names `length` readable bytes.
unsafe fn set_inline(qpx: *mut IbvQpEx, bufs: &[IbvDataBuf]) {
    // SAFETY: function contract.
    let (side, lim) = unsafe { batch(qpx) };
    if side.err != 0 {
        return;
    }
    let Some(w) = side.cur.as_mut() else { return side.latch(libc::EINVAL) };
    let len: u64 = bufs.iter().map(|b| b.length as u64).sum();
    if !carries_inline(w.opcode)
        || len > lim.max_inline as u64
        || bufs.iter().any(|b| b.addr.is_null() && b.length != 0)
    {
        return side.latch(libc::EINVAL);
    }
    w.num_sge = 0;
    w.inline_len = len as u32;
    w.send_flags |= sf::INLINE;
    side.cur_len = len;
    let Some(slot) = side.store_cur() else { return side.latch(libc::EINVAL) };
    let mut off = wq::SEND_WQE_HDR;
    for b in bufs.iter().filter(|b| b.length != 0) {
        let dst = &mut slot[off..off + b.length];
        // SAFETY: the application's readable buffer (function contract); `dst` is in
        // bounds (the slot holds SEND_WQE_HDR + max_inline bytes).
        unsafe { ptr::copy_nonoverlapping(b.addr as *const u8, dst.as_mut_ptr(), b.length) };
        off += b.length;
    }
}

unsafe extern "C" fn wr_set_inline_data(qpx: *mut IbvQpEx, addr: *mut c_void, length: usize) {
    // SAFETY: inside a batch on one of our QPs; the buffer is the application's.
    unsafe { set_inline(qpx, &[IbvDataBuf { addr, length }]) }
}

unsafe extern "C" fn wr_set_inline_data_list(qpx: *mut IbvQpEx, num_buf: usize, buf_list: *const IbvDataBuf) {
    if num_buf > 0 && buf_list.is_null() {
        // SAFETY: inside a batch on one of our QPs.
        return unsafe { batch(qpx).0.latch(libc::EINVAL) };
    }
    let bufs = if num_buf == 0 {
        &[][..]
    } else {
        // SAFETY: the application passes num_buf buffers.
        unsafe { core::slice::from_raw_parts(buf_list, num_buf) }
    };
    // SAFETY: inside a batch on one of our QPs.
    unsafe { set_inline(qpx, bufs) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    use crate::libibverbs_stubs::doorbells;

    #[repr(C, align(4096))]
    #[derive(Clone, Copy)]
    struct Page([u8; 4096]);

    /// Page-aligned memory standing in for a ring mapping.
    struct Mem(Vec<Page>);

    impl Mem {
        fn new(g: Geometry) -> Mem {
            Mem(std::vec![Page([0; 4096]); g.bytes() / 4096])
        }
        fn ptr(&mut self) -> *mut u8 {
            self.0.as_mut_ptr() as *mut u8
        }
    }

    const ALL_CAPS: DevCaps = DevCaps { atomic_write: true, flush: true };

    /// A QP over test memory, and kernel-side views of the same rings.
    struct Fixture {
        qp: *mut FerriteQp,
        ksq: WorkQueue,
        krq: WorkQueue,
        sq_geo: Geometry,
        rq_geo: Geometry,
        _mem: (Mem, Mem),
    }

    impl Fixture {
        fn new(qp_type: u32, depth: u32, max_sge: u32, max_inline: u32) -> Fixture {
            let sq_geo = Geometry::send(depth, max_sge, max_inline).unwrap();
            let rq_geo = Geometry::recv(depth, max_sge).unwrap();
            let (mut ms, mut mr) = (Mem::new(sq_geo), Mem::new(rq_geo));
            // SAFETY: the memory outlives every view (it is kept in the fixture).
            let (sq, rq, ksq, krq) = unsafe {
                (
                    WorkQueue::new(ms.ptr(), sq_geo).unwrap(),
                    WorkQueue::new(mr.ptr(), rq_geo).unwrap(),
                    WorkQueue::new(ms.ptr(), sq_geo).unwrap(),
                    WorkQueue::new(mr.ptr(), rq_geo).unwrap(),
                )
            };
            let qp = new_qp().unwrap();
            let limits = Limits { qp_type, max_send_sge: max_sge, max_inline, max_recv_sge: max_sge, caps: DevCaps::default() };
            // SAFETY: qp is new and only this test uses it.
            unsafe {
                install(qp, limits, sq, rq);
                (*ibv_qp(qp)).qp_type = qp_type;
                (*ibv_qp(qp)).state = 3; // RTS
            }
            Fixture { qp, ksq, krq, sq_geo, rq_geo, _mem: (ms, mr) }
        }

        fn ibqp(&self) -> *mut IbvQp {
            ibv_qp(self.qp)
        }

        fn qpx(&self) -> *mut IbvQpEx {
            // SAFETY: computes a member address only.
            unsafe { ptr::addr_of_mut!((*self.qp).vqp.qp_ex) }
        }

        /// A QP of a device that serves IBTA 1.5's ATOMIC WRITE and FLUSH.
        fn ibta15(self) -> Fixture {
            // SAFETY: the QP is this test's.
            unsafe { (*self.qp).limits.caps = ALL_CAPS };
            self
        }

        fn with_ops(self, f: u64) -> Fixture {
            // SAFETY: the QP is this test's.
            unsafe { set_send_ops(self.qpx(), f) };
            self
        }

        /// The kernel takes the next send WQE: header and body bytes.
        fn take_send(&self) -> Option<(SendWqe, Vec<u8>)> {
            let mut buf = std::vec![0u8; self.sq_geo.stride as usize];
            self.ksq.consume(&mut buf).unwrap()?;
            Some((wq::read_hdr(&buf).unwrap(), buf))
        }

        fn take_recv(&self) -> Option<(RecvWqe, Vec<u8>)> {
            let mut buf = std::vec![0u8; self.rq_geo.stride as usize];
            self.krq.consume(&mut buf).unwrap()?;
            Some((wq::read_hdr(&buf).unwrap(), buf))
        }

        fn post(&self, wrs: &mut [IbvSendWr]) -> (c_int, *mut IbvSendWr) {
            link(wrs);
            let mut bad = ptr::null_mut();
            // SAFETY: the QP is ours; the list is valid.
            let r = unsafe { post_send(self.ibqp(), wrs.as_mut_ptr(), &mut bad) };
            (r, bad)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            // SAFETY: from new_qp; nothing refers to it any more (no mappings).
            unsafe { free(self.qp) };
        }
    }

    fn link(wrs: &mut [IbvSendWr]) {
        for i in 0..wrs.len() {
            let next = if i + 1 < wrs.len() { ptr::addr_of_mut!(wrs[i + 1]) } else { ptr::null_mut() };
            wrs[i].next = next;
        }
    }

    fn send_wr(wr_id: u64, opcode: u32, sges: &mut [IbvSge]) -> IbvSendWr {
        IbvSendWr {
            wr_id,
            next: ptr::null_mut(),
            sg_list: sges.as_mut_ptr(),
            num_sge: sges.len() as c_int,
            opcode,
            send_flags: 0,
            imm_data: 0,
            wr: SendWrWr { atomic: AtomicWr { remote_addr: 0, compare_add: 0, swap: 0, rkey: 0 } },
            qp_type: SendWrQpType { remote_srqn: 0 },
            // SAFETY: an all-zero bind_mw/tso union is valid (pointers and integers).
            ext: unsafe { core::mem::zeroed() },
        }
    }

    fn sge(addr: u64, length: u32, lkey: u32) -> IbvSge {
        IbvSge { addr, length, lkey }
    }

    #[test]
    fn send_wqe_bytes_are_exact() {
        let f = Fixture::new(IBV_QPT_RC, 8, 4, 64);
        let mut s1 = [sge(0x1000, 100, 7), sge(0x2000, 28, 9)];
        let mut wrs = [send_wr(11, op::SEND_WITH_IMM, &mut s1)];
        wrs[0].send_flags = sf::SIGNALED | sf::SOLICITED;
        wrs[0].imm_data = 0x1234_5678u32.to_be();
        assert_eq!(f.post(&mut wrs).0, 0);
        let (w, body) = f.take_send().unwrap();
        assert_eq!(
            w,
            SendWqe {
                wr_id: 11,
                opcode: op::SEND_WITH_IMM,
                send_flags: sf::SIGNALED | sf::SOLICITED,
                imm_data: 0x1234_5678u32.to_be(),
                num_sge: 2,
                ..Default::default()
            }
        );
        assert_eq!(wq::sge_at(&body, wq::SEND_WQE_HDR, 0), Some(wq::Sge { addr: 0x1000, length: 100, lkey: 7 }));
        assert_eq!(wq::sge_at(&body, wq::SEND_WQE_HDR, 1), Some(wq::Sge { addr: 0x2000, length: 28, lkey: 9 }));
        // Exactly the header and SGE bytes a hand-made encoding has.
        let mut want = std::vec![0u8; 96];
        want[..8].copy_from_slice(&11u64.to_ne_bytes());
        want[8..12].copy_from_slice(&op::SEND_WITH_IMM.to_ne_bytes());
        want[12..16].copy_from_slice(&(sf::SIGNALED | sf::SOLICITED).to_ne_bytes());
        want[16..20].copy_from_slice(&0x1234_5678u32.to_be().to_ne_bytes());
        want[20..24].copy_from_slice(&2u32.to_ne_bytes());
        want[64..72].copy_from_slice(&0x1000u64.to_ne_bytes());
        want[72..76].copy_from_slice(&100u32.to_ne_bytes());
        want[76..80].copy_from_slice(&7u32.to_ne_bytes());
        want[80..88].copy_from_slice(&0x2000u64.to_ne_bytes());
        want[88..92].copy_from_slice(&28u32.to_ne_bytes());
        want[92..96].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(&body[..96], &want[..]);

        // RDMA WRITE: remote address and key; imm_data only for *_WITH_IMM.
        let mut s2 = [sge(0x3000, 4096, 5)];
        let mut wrs = [send_wr(12, op::RDMA_WRITE, &mut s2)];
        wrs[0].imm_data = 0xdead;
        wrs[0].wr = SendWrWr { rdma: RdmaWr { remote_addr: 0xabc0_0000, rkey: 0x4242 } };
        wrs[0].send_flags = sf::FENCE;
        assert_eq!(f.post(&mut wrs).0, 0);
        let (w, _) = f.take_send().unwrap();
        assert_eq!(
            (w.opcode, w.remote_addr, w.rkey, w.imm_data, w.send_flags),
            (op::RDMA_WRITE, 0xabc0_0000, 0x4242, 0, sf::FENCE)
        );
    }

    #[test]
    fn inline_data_is_copied_at_post_time() {
        let f = Fixture::new(IBV_QPT_UC, 4, 2, 40);
        let mut a = *b"hello, ";
        let mut b = *b"ferrite!";
        let mut s = [sge(a.as_mut_ptr() as u64, 7, 0), sge(b.as_mut_ptr() as u64, 8, 0)];
        let mut wrs = [send_wr(1, op::SEND, &mut s)];
        wrs[0].send_flags = sf::INLINE;
        assert_eq!(f.post(&mut wrs).0, 0);
        a.fill(b'x');
        b.fill(b'y');
        let (w, body) = f.take_send().unwrap();
        assert_eq!((w.send_flags, w.inline_len, w.num_sge), (sf::INLINE, 15, 0));
        assert_eq!(&body[64..79], b"hello, ferrite!");

        // Over max_inline: EINVAL, nothing written.
        let mut big = [0u8; 41];
        let mut s = [sge(big.as_mut_ptr() as u64, 41, 0)];
        let mut wrs = [send_wr(2, op::SEND, &mut s)];
        wrs[0].send_flags = sf::INLINE;
        let (r, bad) = f.post(&mut wrs);
        assert_eq!((r, bad), (libc::EINVAL, ptr::addr_of_mut!(wrs[0])));
        assert!(f.take_send().is_none());
    }

    #[test]
    fn atomics_carry_their_operands() {
        let f = Fixture::new(IBV_QPT_RC, 4, 1, 0);
        let mut s = [sge(0x5000, 8, 3)];
        let mut wrs = [send_wr(1, op::ATOMIC_CMP_AND_SWP, &mut s), send_wr(2, op::ATOMIC_FETCH_AND_ADD, &mut s)];
        wrs[0].wr = SendWrWr { atomic: AtomicWr { remote_addr: 0x8000, compare_add: 5, swap: 9, rkey: 77 } };
        wrs[1].wr = SendWrWr { atomic: AtomicWr { remote_addr: 0x8008, compare_add: 3, swap: 99, rkey: 78 } };
        assert_eq!(f.post(&mut wrs).0, 0);
        let (w, body) = f.take_send().unwrap();
        assert_eq!((w.remote_addr, w.rkey, w.compare_add, w.swap, w.num_sge), (0x8000, 77, 5, 9, 1));
        assert_eq!(wq::sge_at(&body, wq::SEND_WQE_HDR, 0), Some(wq::Sge { addr: 0x5000, length: 8, lkey: 3 }));
        let (w, _) = f.take_send().unwrap();
        assert_eq!(
            (w.opcode, w.remote_addr, w.rkey, w.compare_add, w.swap),
            (op::ATOMIC_FETCH_AND_ADD, 0x8008, 78, 3, 0)
        );

        // Misaligned or not 8 bytes: EINVAL.
        let mut s4 = [sge(0x5000, 4, 3)];
        let mut wrs = [send_wr(3, op::ATOMIC_FETCH_AND_ADD, &mut s4)];
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);
        let mut wrs = [send_wr(4, op::ATOMIC_FETCH_AND_ADD, &mut s)];
        wrs[0].wr = SendWrWr { atomic: AtomicWr { remote_addr: 0x8004, compare_add: 0, swap: 0, rkey: 1 } };
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);

        // ATOMIC WRITE: refused where the kernel does not advertise it.
        let mut v = 0x0102_0304_0506_0708u64.to_ne_bytes();
        let mut s = [sge(v.as_mut_ptr() as u64, 8, 3)];
        let mut wrs = [send_wr(5, op::ATOMIC_WRITE, &mut s)];
        wrs[0].wr = SendWrWr { rdma: RdmaWr { remote_addr: 0x9000, rkey: 12 } };
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL, "the device does not serve it");
        assert!(f.take_send().is_none());

        // Where it does, it takes its 8 bytes from the WR's data at post time.
        let f = f.ibta15();
        assert_eq!(f.post(&mut wrs).0, 0);
        v.fill(0);
        let (w, _) = f.take_send().unwrap();
        assert_eq!(
            (w.opcode, w.remote_addr, w.rkey, w.swap, w.num_sge),
            (op::ATOMIC_WRITE, 0x9000, 12, 0x0102_0304_0506_0708, 0)
        );
        // Not 8 bytes, or misaligned: EINVAL.
        let mut s4 = [sge(v.as_mut_ptr() as u64, 4, 3)];
        let mut wrs = [send_wr(6, op::ATOMIC_WRITE, &mut s4)];
        wrs[0].wr = SendWrWr { rdma: RdmaWr { remote_addr: 0x9000, rkey: 12 } };
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);
        let mut wrs = [send_wr(7, op::ATOMIC_WRITE, &mut s)];
        wrs[0].wr = SendWrWr { rdma: RdmaWr { remote_addr: 0x9004, rkey: 12 } };
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);
        // FLUSH cannot be posted with ibv_post_send (no type, no level).
        let mut wrs = [send_wr(8, op::FLUSH, &mut [])];
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);
        assert!(f.take_send().is_none());
    }

    #[test]
    fn opcodes_follow_the_qp_type() {
        let uc = Fixture::new(IBV_QPT_UC, 4, 1, 0);
        for o in [
            op::RDMA_READ,
            op::ATOMIC_CMP_AND_SWP,
            op::ATOMIC_FETCH_AND_ADD,
            op::ATOMIC_WRITE,
            op::FLUSH,
            op::LOCAL_INV,
            op::BIND_MW,
            op::SEND_WITH_INV,
            op::TSO,
            99,
        ] {
            let mut s = [sge(0x5000, 8, 3)];
            let mut wrs = [send_wr(1, o, &mut s)];
            assert_eq!(uc.post(&mut wrs).0, libc::EINVAL, "UC opcode {o}");
        }
        assert!(uc.take_send().is_none());
        let rc = Fixture::new(IBV_QPT_RC, 4, 1, 0);
        for o in [op::FLUSH, op::LOCAL_INV, op::SEND_WITH_INV] {
            let mut wrs = [send_wr(1, o, &mut [])];
            assert_eq!(rc.post(&mut wrs).0, libc::EINVAL, "RC opcode {o}");
        }
        // Unknown flags and inline READs are refused too; IP_CSUM is ignored.
        let mut wrs = [send_wr(1, op::SEND, &mut [])];
        wrs[0].send_flags = 1 << 5;
        assert_eq!(rc.post(&mut wrs).0, libc::EINVAL);
        let mut wrs = [send_wr(1, op::SEND, &mut [])];
        wrs[0].send_flags = sf::IP_CSUM | sf::SIGNALED;
        assert_eq!(rc.post(&mut wrs).0, 0);
        assert_eq!(rc.take_send().unwrap().0.send_flags, sf::SIGNALED);
        let mut wrs = [send_wr(1, op::RDMA_READ, &mut [])];
        wrs[0].send_flags = sf::INLINE;
        assert_eq!(rc.post(&mut wrs).0, libc::EINVAL);
        // SAFETY: the fixture's QP; a QP not yet in RTS cannot send.
        unsafe { (*rc.ibqp()).state = qps::INIT };
        let mut wrs = [send_wr(1, op::SEND, &mut [])];
        assert_eq!(rc.post(&mut wrs).0, libc::EINVAL);
        assert!(rc.take_send().is_none());
    }

    #[test]
    fn a_list_is_published_at_once_and_errors_stop_it() {
        let f = Fixture::new(IBV_QPT_RC, 4, 2, 0);
        let mut s = [sge(0x1000, 1, 1)];
        let mut s3 = [sge(1, 1, 1), sge(2, 1, 1), sge(3, 1, 1)];
        let mut wrs = [
            send_wr(1, op::SEND, &mut s),
            send_wr(2, op::SEND, &mut s),
            send_wr(3, op::SEND, &mut s3), // one SGE too many
            send_wr(4, op::SEND, &mut s),
        ];
        let (r, bad) = f.post(&mut wrs);
        assert_eq!((r, bad), (libc::EINVAL, ptr::addr_of_mut!(wrs[2])));
        assert_eq!(f.ksq.pending(), Ok(2), "the WRs before the bad one are posted");
        assert_eq!(f.take_send().unwrap().0.wr_id, 1);
        assert_eq!(f.take_send().unwrap().0.wr_id, 2);

        // Full ring: ENOMEM at the first WR that has no room.
        let mut wrs: Vec<IbvSendWr> = (0..6).map(|i| send_wr(10 + i, op::SEND, &mut s)).collect();
        let (r, bad) = f.post(&mut wrs);
        assert_eq!((r, bad), (libc::ENOMEM, ptr::addr_of_mut!(wrs[4])));
        assert_eq!(f.ksq.pending(), Ok(4));
        let mut wrs = [send_wr(20, op::SEND, &mut s)];
        assert_eq!(f.post(&mut wrs).0, libc::ENOMEM);
        for i in 0..4 {
            assert_eq!(f.take_send().unwrap().0.wr_id, 10 + i);
        }
    }

    #[test]
    fn a_list_publishes_once() {
        const N: u32 = 2048;
        let f = Fixture::new(IBV_QPT_RC, N, 1, 0);
        let mut s = [sge(0x1000, 1, 1)];
        let mut wrs: Vec<IbvSendWr> = (0..N as u64).map(|i| send_wr(i, op::SEND, &mut s)).collect();
        // A kernel watching the queue while the list is written sees none of it or
        // all of it: the producer index moves once, by N.
        let done = AtomicBool::new(false);
        let seen = std::thread::scope(|t| {
            let watcher = t.spawn(|| {
                let mut seen = std::collections::BTreeSet::new();
                while !done.load(core::sync::atomic::Ordering::Acquire) {
                    seen.insert(f.ksq.pending().unwrap());
                }
                seen.insert(f.ksq.pending().unwrap());
                seen
            });
            assert_eq!(f.post(&mut wrs).0, 0);
            done.store(true, core::sync::atomic::Ordering::Release);
            watcher.join().unwrap()
        });
        assert!(seen.iter().all(|&n| n == 0 || n == N), "{seen:?}");
        assert!(seen.contains(&N));
        for i in 0..N as u64 {
            assert_eq!(f.take_send().unwrap().0.wr_id, i);
        }
    }

    #[test]
    fn doorbell_only_when_the_kernel_asks() {
        let f = Fixture::new(IBV_QPT_RC, 8, 1, 0);
        let mut s = [sge(0x1000, 1, 1)];
        let before = doorbells();
        // The kernel is busy (no request): no system call.
        let mut wrs = [send_wr(1, op::SEND, &mut s)];
        assert_eq!(f.post(&mut wrs).0, 0);
        assert_eq!(doorbells(), before);
        // The kernel drains the queue and goes idle: the next post rings, once.
        while f.take_send().is_some() {}
        assert!(!f.ksq.request_doorbell());
        let mut wrs = [send_wr(2, op::SEND, &mut s), send_wr(3, op::SEND, &mut s)];
        assert_eq!(f.post(&mut wrs).0, 0);
        assert_eq!(doorbells(), before + 1);
        let mut wrs = [send_wr(4, op::SEND, &mut s)];
        assert_eq!(f.post(&mut wrs).0, 0);
        assert_eq!(doorbells(), before + 1, "the kernel is running again");
        // A post that fails at its first WR publishes nothing and never rings.
        while f.take_send().is_some() {}
        assert!(!f.ksq.request_doorbell());
        let mut wrs = [send_wr(5, 99, &mut s)];
        assert_eq!(f.post(&mut wrs).0, libc::EINVAL);
        assert_eq!(doorbells(), before + 1);
    }

    #[test]
    fn recv_wqes_and_their_errors() {
        let f = Fixture::new(IBV_QPT_RC, 2, 2, 0);
        let mut s = [sge(0x7000, 256, 4), sge(0x8000, 512, 5)];
        let mut s3 = [sge(1, 1, 1), sge(2, 1, 1), sge(3, 1, 1)];
        let mut wrs = [
            IbvRecvWr { wr_id: 1, next: ptr::null_mut(), sg_list: s.as_mut_ptr(), num_sge: 2 },
            IbvRecvWr { wr_id: 2, next: ptr::null_mut(), sg_list: s3.as_mut_ptr(), num_sge: 3 },
        ];
        wrs[0].next = ptr::addr_of_mut!(wrs[1]);
        let mut bad = ptr::null_mut();
        let before = doorbells();
        // SAFETY: the fixture's QP and a valid list.
        let r = unsafe { post_recv(f.ibqp(), wrs.as_mut_ptr(), &mut bad) };
        assert_eq!((r, bad), (libc::EINVAL, ptr::addr_of_mut!(wrs[1])));
        let (w, body) = f.take_recv().unwrap();
        assert_eq!(w, RecvWqe { wr_id: 1, num_sge: 2, reserved: 0 });
        assert_eq!(wq::sge_at(&body, wq::RECV_WQE_HDR, 1), Some(wq::Sge { addr: 0x8000, length: 512, lkey: 5 }));
        assert!(f.take_recv().is_none());
        // Three fit in two slots? No: ENOMEM at the third.
        let mut wrs: Vec<IbvRecvWr> = (0..3)
            .map(|i| IbvRecvWr { wr_id: 10 + i, next: ptr::null_mut(), sg_list: s.as_mut_ptr(), num_sge: 1 })
            .collect();
        for i in 0..2 {
            wrs[i].next = ptr::addr_of_mut!(wrs[i + 1]);
        }
        // SAFETY: as above.
        let r = unsafe { post_recv(f.ibqp(), wrs.as_mut_ptr(), &mut bad) };
        assert_eq!((r, bad), (libc::ENOMEM, ptr::addr_of_mut!(wrs[2])));
        assert_eq!(f.krq.pending(), Ok(2));
        assert_eq!(doorbells(), before, "post_recv never enters the kernel");
        // A QP in RESET takes no receives.
        while f.take_recv().is_some() {}
        // SAFETY: the fixture's QP.
        unsafe { (*f.ibqp()).state = qps::RESET };
        // SAFETY: as above.
        assert_eq!(unsafe { post_recv(f.ibqp(), wrs.as_mut_ptr(), &mut bad) }, libc::EINVAL);
    }

    #[test]
    fn wr_api_stages_until_complete() {
        let f = Fixture::new(IBV_QPT_RC, 4, 2, 32)
            .with_ops(send_ops::SEND | send_ops::RDMA_WRITE_WITH_IMM | send_ops::ATOMIC_FETCH_AND_ADD);
        let x = f.qpx();
        // SAFETY: the fixture's QP, filled by set_send_ops; one thread.
        unsafe {
            assert!((*x).wr_rdma_read.is_none(), "not asked for");
            let start = (*x).wr_start.unwrap();
            let complete = (*x).wr_complete.unwrap();
            let abort = (*x).wr_abort.unwrap();
            let before = doorbells();
            assert!(!f.ksq.request_doorbell());

            start(x);
            (*x).wr_id = 1;
            (*x).wr_flags = sf::SIGNALED;
            (*x).wr_send.unwrap()(x);
            (*x).wr_set_sge.unwrap()(x, 9, 0x1000, 64);
            (*x).wr_id = 2;
            (*x).wr_flags = 0;
            (*x).wr_rdma_write_imm.unwrap()(x, 0x55, 0x2000, 0xabcd);
            let mut data = *b"inline!";
            (*x).wr_set_inline_data.unwrap()(x, data.as_mut_ptr() as *mut c_void, 7);
            (*x).wr_id = 3;
            (*x).wr_atomic_fetch_add.unwrap()(x, 0x66, 0x3000, 5);
            let sl = [sge(0x4000, 8, 4)];
            (*x).wr_set_sge_list.unwrap()(x, 1, sl.as_ptr());
            assert_eq!(f.ksq.pending(), Ok(0), "nothing visible before wr_complete");
            assert_eq!(complete(x), 0);
            assert_eq!(f.ksq.pending(), Ok(3));
            assert_eq!(doorbells(), before + 1);

            let (w, body) = f.take_send().unwrap();
            assert_eq!((w.wr_id, w.opcode, w.send_flags, w.num_sge), (1, op::SEND, sf::SIGNALED, 1));
            assert_eq!(wq::sge_at(&body, wq::SEND_WQE_HDR, 0), Some(wq::Sge { addr: 0x1000, length: 64, lkey: 9 }));
            let (w, body) = f.take_send().unwrap();
            assert_eq!(
                (w.wr_id, w.opcode, w.rkey, w.remote_addr, w.imm_data),
                (2, op::RDMA_WRITE_WITH_IMM, 0x55, 0x2000, 0xabcd)
            );
            assert_eq!((w.send_flags, w.inline_len, w.num_sge), (sf::INLINE, 7, 0));
            assert_eq!(&body[64..71], b"inline!");
            let (w, _) = f.take_send().unwrap();
            assert_eq!(
                (w.opcode, w.rkey, w.remote_addr, w.compare_add, w.num_sge),
                (op::ATOMIC_FETCH_AND_ADD, 0x66, 0x3000, 5, 1)
            );

            // wr_abort drops the batch.
            start(x);
            (*x).wr_send.unwrap()(x);
            abort(x);
            assert_eq!(f.ksq.pending(), Ok(0));

            // INLINE in wr_flags is the inline setters' business (ignored); an
            // unknown flag is an error.
            start(x);
            (*x).wr_flags = sf::INLINE | sf::FENCE;
            (*x).wr_send.unwrap()(x);
            (*x).wr_set_sge.unwrap()(x, 1, 0x1000, 8);
            assert_eq!(complete(x), 0);
            let (w, _) = f.take_send().unwrap();
            assert_eq!((w.send_flags, w.num_sge), (sf::FENCE, 1));
            start(x);
            (*x).wr_flags = 1 << 5;
            (*x).wr_send.unwrap()(x);
            assert_eq!(complete(x), libc::EINVAL);
            (*x).wr_flags = 0;

            // An error latches: nothing of the batch is published.
            start(x);
            (*x).wr_id = 7;
            (*x).wr_send.unwrap()(x);
            (*x).wr_set_sge.unwrap()(x, 1, 0x1000, 8);
            (*x).wr_send.unwrap()(x);
            let three = [sge(1, 1, 1), sge(2, 1, 1), sge(3, 1, 1)];
            (*x).wr_set_sge_list.unwrap()(x, 3, three.as_ptr());
            (*x).wr_send.unwrap()(x);
            assert_eq!(complete(x), libc::EINVAL);
            assert_eq!(f.ksq.pending(), Ok(0));

            // Too big for inline; an atomic without its 8-byte buffer.
            start(x);
            (*x).wr_send.unwrap()(x);
            let big = [0u8; 33];
            (*x).wr_set_inline_data.unwrap()(x, big.as_ptr() as *mut c_void, 33);
            assert_eq!(complete(x), libc::EINVAL);
            start(x);
            (*x).wr_atomic_fetch_add.unwrap()(x, 1, 0x3000, 1);
            assert_eq!(complete(x), libc::EINVAL);

            // More WRs than room: ENOMEM, and none of them posted.
            start(x);
            for i in 0..5 {
                (*x).wr_id = 100 + i;
                (*x).wr_send.unwrap()(x);
            }
            assert_eq!(complete(x), libc::ENOMEM);
            assert_eq!(f.ksq.pending(), Ok(0));

            // The lock was released each time: post_send still works.
            let mut s = [sge(0x1000, 1, 1)];
            let mut wrs = [send_wr(200, op::SEND, &mut s)];
            assert_eq!(f.post(&mut wrs).0, 0);
            assert_eq!(f.take_send().unwrap().0.wr_id, 200);
        }
    }

    #[test]
    fn wr_api_atomic_write_and_flush_where_the_release_and_the_device_have_them() {
        // A device that does not serve them: not offered, the members stay NULL.
        let none = Fixture::new(IBV_QPT_RC, 4, 1, 0).with_ops(send_ops_supported(DevCaps::default(), IBV_QPT_RC));
        // SAFETY: the fixture's QP.
        unsafe {
            assert_eq!((*none.qpx()).tail.len(), QP_EX_TAIL);
            assert!((*none.qpx()).tail.iter().all(|p| p.is_null()));
        }
        let f = Fixture::new(IBV_QPT_RC, 4, 1, 0).ibta15().with_ops(send_ops_supported(ALL_CAPS, IBV_QPT_RC));
        let x = f.qpx();
        // SAFETY: the fixture's QP; the tail members hold functions of these types.
        unsafe {
            assert_eq!((*x).tail.len(), QP_EX_TAIL);
            assert!((*x).tail.iter().all(|p| !p.is_null()));
            if let Some(&p) = (*x).tail.get(QP_EX_ATOMIC_WRITE) {
                let aw: WrAtomicWrite = core::mem::transmute::<*const c_void, WrAtomicWrite>(p);
                (*x).wr_start.unwrap()(x);
                (*x).wr_id = 1;
                let v = 0x1122_3344_5566_7788u64.to_ne_bytes();
                aw(x, 0x10, 0x8000, v.as_ptr() as *const c_void);
                assert_eq!((*x).wr_complete.unwrap()(x), 0);
                let (w, _) = f.take_send().unwrap();
                assert_eq!(
                    (w.opcode, w.rkey, w.remote_addr, w.swap, w.num_sge),
                    (op::ATOMIC_WRITE, 0x10, 0x8000, 0x1122_3344_5566_7788, 0)
                );
            }
            if let Some(&p) = (*x).tail.get(QP_EX_FLUSH) {
                let fl: WrFlush = core::mem::transmute::<*const c_void, WrFlush>(p);
                (*x).wr_start.unwrap()(x);
                fl(x, 0x20, 0x9000, 4096, 2, 1);
                assert_eq!((*x).wr_complete.unwrap()(x), 0);
                let (w, _) = f.take_send().unwrap();
                assert_eq!(
                    (w.opcode, w.rkey, w.remote_addr, w.compare_add, w.flush_type, w.flush_level),
                    (op::FLUSH, 0x20, 0x9000, 4096, 2, 1)
                );
                (*x).wr_start.unwrap()(x);
                fl(x, 0x20, 0x9000, 4096, 0, 0);
                assert_eq!((*x).wr_complete.unwrap()(x), libc::EINVAL, "no flush type");
                (*x).wr_start.unwrap()(x);
                fl(x, 0x20, 0x9000, 1 << 32, 1, 0);
                assert_eq!((*x).wr_complete.unwrap()(x), libc::EINVAL, "longer than a RETH holds");
                assert!(f.take_send().is_none());
            }
        }
    }

    #[test]
    fn send_ops_by_qp_type_release_and_device() {
        let none = DevCaps::default();
        let uc = send_ops_supported(ALL_CAPS, IBV_QPT_UC);
        assert_eq!(uc, send_ops::RDMA_WRITE | send_ops::RDMA_WRITE_WITH_IMM | send_ops::SEND | send_ops::SEND_WITH_IMM);
        let rc = send_ops_supported(ALL_CAPS, IBV_QPT_RC);
        assert_eq!(rc & uc, uc);
        assert_ne!(rc & send_ops::RDMA_READ, 0);
        assert_eq!(rc & (send_ops::LOCAL_INV | send_ops::BIND_MW | send_ops::SEND_WITH_INV | send_ops::TSO), 0);
        assert_eq!(rc & send_ops::ATOMIC_WRITE != 0, QP_EX_HAS_ATOMIC_WRITE);
        assert_eq!(rc & send_ops::FLUSH != 0, QP_EX_HAS_FLUSH);
        let plain = send_ops_supported(none, IBV_QPT_RC);
        assert_eq!(plain, rc & !(send_ops::ATOMIC_WRITE | send_ops::FLUSH));
        let aw_only = DevCaps { atomic_write: true, flush: false };
        assert_eq!(send_ops_supported(aw_only, IBV_QPT_RC) & send_ops::FLUSH, 0);
        assert_eq!(send_ops_supported(ALL_CAPS, 4), 0, "UD");
    }

    #[test]
    fn device_caps_from_the_kernels_answer() {
        let mut r = ExQueryDeviceResp { fw_ver: 0, rest: [0; 37] };
        assert_eq!(DevCaps::from_cap_flags_ex(r.device_cap_flags_ex()), DevCaps::default());
        // device_cap_flags_ex sits at byte 224 of ib_uverbs_ex_query_device_resp.
        let at = 224 / 8 - 1;
        r.rest[at] = device_cap::ATOMIC_WRITE | device_cap::FLUSH_GLOBAL | 1 << 5;
        assert_eq!(DevCaps::from_cap_flags_ex(r.device_cap_flags_ex()), ALL_CAPS);
        r.rest[at] = device_cap::ATOMIC_WRITE;
        assert_eq!(DevCaps::from_cap_flags_ex(r.device_cap_flags_ex()), DevCaps { atomic_write: true, flush: false });
        // What rxe of 6.2 on advertises.
        r.rest[at] = device_cap::FLUSH_GLOBAL | device_cap::FLUSH_PERSISTENT | device_cap::ATOMIC_WRITE;
        assert_eq!(DevCaps::from_cap_flags_ex(r.device_cap_flags_ex()), ALL_CAPS);
    }

    #[test]
    fn data_in_order_for_the_qp_types_operations() {
        let f = Fixture::new(IBV_QPT_UC, 2, 1, 0);
        // SAFETY: the fixture's QP.
        unsafe {
            assert_eq!(query_qp_data_in_order(f.ibqp(), op::RDMA_WRITE, 0), IBV_QUERY_QP_DATA_IN_ORDER_WHOLE_MSG);
            assert_eq!(query_qp_data_in_order(f.ibqp(), op::RDMA_READ, 0), 0);
        }
        let rc = Fixture::new(IBV_QPT_RC, 2, 1, 0);
        // SAFETY: the fixture's QP.
        unsafe {
            assert_eq!(query_qp_data_in_order(rc.ibqp(), op::FLUSH, 0), 0);
            assert_eq!(query_qp_data_in_order(rc.ibqp(), op::ATOMIC_WRITE, 0), 0);
        }
        let rc = rc.ibta15();
        // SAFETY: as above.
        unsafe {
            assert_eq!(query_qp_data_in_order(rc.ibqp(), op::FLUSH, 0), IBV_QUERY_QP_DATA_IN_ORDER_WHOLE_MSG);
            assert_eq!(query_qp_data_in_order(rc.ibqp(), op::ATOMIC_WRITE, 0), IBV_QUERY_QP_DATA_IN_ORDER_WHOLE_MSG);
        }
    }

    #[test]
    fn create_response_checks() {
        let sq = Geometry::send(100, 4, 64).unwrap();
        let rq = Geometry::recv(100, 4).unwrap();
        let good = wq::CreateQpResp {
            sq_mmap_offset: 0x1000,
            sq_mmap_len: sq.bytes() as u64,
            rq_mmap_offset: 0x2000,
            rq_mmap_len: rq.bytes() as u64,
            sq_slots: sq.slots,
            sq_stride: sq.stride,
            rq_slots: rq.slots,
            rq_stride: rq.stride,
            max_send_sge: 4,
            max_inline: 64,
            max_recv_sge: 4,
            reserved: 0,
        };
        let cap =
            IbvQpCap { max_send_wr: 100, max_recv_wr: 100, max_send_sge: 4, max_recv_sge: 4, max_inline_data: 64 };
        assert_eq!(check_layout(&good, &cap), Some(RingLayout { sq, rq }));
        let bad: [fn(&mut wq::CreateQpResp); 8] = [
            |d| d.sq_mmap_len += 4096,
            |d| d.rq_mmap_len = 0,
            |d| d.sq_slots = 100,
            |d| d.rq_stride = 40,
            |d| d.max_send_sge = 16,
            |d| d.max_inline = 1000,
            |d| d.max_recv_sge = 8,
            |d| d.sq_slots = 64,
        ];
        for (i, b) in bad.iter().enumerate() {
            let mut d = good;
            b(&mut d);
            if d.sq_slots != good.sq_slots {
                d.sq_mmap_len = Geometry { slots: d.sq_slots.max(1), stride: d.sq_stride }.bytes() as u64;
            }
            assert_eq!(check_layout(&d, &cap), None, "case {i}");
        }
        // The core promising more than the rings hold is just as wrong.
        let mut c = cap;
        c.max_send_sge = 5;
        assert_eq!(check_layout(&good, &c), None);
        let mut c = cap;
        c.max_recv_wr = 129;
        assert_eq!(check_layout(&good, &c), None);
    }

    #[test]
    fn qp_layout_is_verbs_qp_first() {
        assert_eq!(core::mem::offset_of!(FerriteQp, vqp), 0);
    }
}
