//! The data path's entry points (`ferrite_rs_qp_*`, `ferrite_rs_rx_*`, CQ rings,
//! counters) and the engine's [`Env`] in the kernel.
//!
//! The C side owns the kernel objects (the QP's work item and timer, its rings,
//! sk_buffs, pinned pages, the CQs) and calls in here: verbs from process context,
//! and rounds of a QP ([`ferrite_rs_qp_round`]: received packets, then the QP's
//! own work) from the doorbell's caller, the QP's work item, and the UDP receive
//! softirq.  A QP's engine state sits behind a spin lock with bottom halves off,
//! so nothing the engine does under it may sleep: packet buffers are allocated
//! atomically and the MR table's lock is a spin lock too.

use alloc::boxed::Box;
use core::ffi::c_void;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, Ordering};

use ferrite_abi::access::Access;
use ferrite_abi::cq::{Cqe, Ring};
use ferrite_abi::wq::{CreateQpResp, Geometry, WorkQueue};

use crate::bindings as b;
use crate::caps::LIMITS;
use crate::device::Device;
use crate::engine::packet::{self, Drop};
use crate::engine::{self, AtomicOp, Counters, CqSel, Env, KeyError, Mem, Path, Qp, QpAttr, QpConfig, QpType, TxBuf};
use crate::ffi::device;
use crate::kernel::sync::{LockClass, SpinLock};
use crate::kernel::{Error, Result};
use crate::wire::icrc::{self, Crc32};

/// The kernel services of the data path: the C functions in the module, stand-ins
/// that refuse on the host (host tests drive the engine through their own Env).
#[cfg(target_os = "none")]
use crate::bindings as k;
#[cfg(not(target_os = "none"))]
#[allow(clippy::missing_safety_doc)]
mod k {
    use super::b;
    use core::ffi::c_void;
    pub unsafe fn ferrite_k_now_ns() -> u64 {
        0
    }
    pub unsafe fn ferrite_k_crc32_le(seed: u32, data: *const u8, len: usize) -> u32 {
        use crate::wire::icrc::Crc32;
        // SAFETY: the caller passes a valid buffer.
        crate::wire::icrc::SoftCrc.crc32_le(seed, unsafe { core::slice::from_raw_parts(data, len) })
    }
    pub unsafe fn ferrite_k_tx_alloc(_qp: *mut c_void, _len: u32, _data: *mut *mut u8) -> *mut c_void {
        core::ptr::null_mut()
    }
    pub unsafe fn ferrite_k_tx_free(_skb: *mut c_void) {}
    pub unsafe fn ferrite_k_tx_send(_qp: *mut c_void, _skb: *mut c_void, _p: *const b::ferrite_path) -> i32 {
        0
    }
    pub unsafe fn ferrite_k_mr_get(_mr: *mut c_void) {}
    pub unsafe fn ferrite_k_mr_put(_mr: *mut c_void) {}
    pub unsafe fn ferrite_k_mr_copy(_mr: *mut c_void, _off: u64, _buf: *mut u8, _len: u32, _to: u8) {}
    pub unsafe fn ferrite_k_mr_atomic(_mr: *mut c_void, _off: u64, _op: u32, _a: u64, _b: u64) -> u64 {
        0
    }
    pub unsafe fn ferrite_k_mr_flush(_mr: *mut c_void, _off: u64, _len: u64) {}
    pub unsafe fn ferrite_k_cq_post(_qp: *mut c_void, _recv: u8, _cqe: *const u8, _sol: u8) {}
    pub unsafe fn ferrite_k_qp_event(_qp: *mut c_void, _ev: u32) {}
    pub unsafe fn ferrite_k_qp_timer(_qp: *mut c_void, _deadline: u64) {}
    pub unsafe fn ferrite_k_qp_rx_next(_qp: *mut c_void, _ip: *mut *const u8, _len: *mut u32) -> *mut c_void {
        core::ptr::null_mut()
    }
    pub unsafe fn ferrite_k_rx_free(_skb: *mut c_void) {}
}

/// The kernel's crc32_le, for the ICRC.
struct KernelCrc;

impl Crc32 for KernelCrc {
    fn crc32_le(&self, seed: u32, data: &[u8]) -> u32 {
        // SAFETY: `data` is a valid slice; the C side only reads it.
        unsafe { k::ferrite_k_crc32_le(seed, data.as_ptr(), data.len()) }
    }
}

/// Most inline bytes a send WQE may carry.
pub const MAX_INLINE: u32 = 256;

/// A packet buffer: an sk_buff the C side allocated, freed unless sent.
///
/// # Invariants
/// `skb` is null or an sk_buff from `ferrite_k_tx_alloc` whose data `data` points
/// to, `len` bytes, owned by this value alone.
pub struct KTx {
    skb: *mut c_void,
    data: *mut u8,
    len: usize,
}

impl TxBuf for KTx {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the buffer is `len` bytes, owned by self (type invariant).
        unsafe { core::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl core::ops::Drop for KTx {
    fn drop(&mut self) {
        if !self.skb.is_null() {
            // SAFETY: an unsent buffer of ours (type invariant).
            unsafe { k::ferrite_k_tx_free(self.skb) }
        }
    }
}

/// The engine's surroundings for one QP in the kernel.
struct KernelEnv<'a> {
    dev: &'a Device,
    cookie: *mut c_void,
}

impl KernelEnv<'_> {
    /// A referenced region for `key`: `range` (va, len) of it, or all of it.
    fn resolve(&mut self, key: u32, pd: u64, range: Option<(u64, u64)>, need: Access) -> core::result::Result<Mem, KeyError> {
        let mr = self.dev.mr_resolve(key, pd, range, need, |mr| {
            // SAFETY: the cookie is a live region while it is in the table, and the
            // table is locked while this runs.
            unsafe { k::ferrite_k_mr_get(mr.cookie as *mut c_void) }
        })?;
        Ok(Mem { handle: mr.cookie, base: mr.iova, len: mr.length })
    }
}

impl Env for KernelEnv<'_> {
    type Tx = KTx;

    fn now_ns(&self) -> u64 {
        // SAFETY: plain C call.
        unsafe { k::ferrite_k_now_ns() }
    }

    fn mr_lookup(&mut self, key: u32, pd: u64, va: u64, len: u64, need: Access) -> core::result::Result<Mem, KeyError> {
        self.resolve(key, pd, Some((va, len)), need)
    }

    fn mr_lookup_region(&mut self, key: u32, pd: u64, need: Access) -> core::result::Result<Mem, KeyError> {
        self.resolve(key, pd, None, need)
    }

    fn mr_release(&mut self, m: Mem) {
        // SAFETY: `m` holds a reference taken in mr_lookup.
        unsafe { k::ferrite_k_mr_put(m.handle as *mut c_void) }
    }

    fn mem_read(&mut self, m: Mem, va: u64, dst: &mut [u8]) {
        // SAFETY: the region is referenced and `va..va+len` lies inside it (checked
        // by mr_resolve); `dst` is writable for its length.
        unsafe { k::ferrite_k_mr_copy(m.handle as *mut c_void, va - m.base, dst.as_mut_ptr(), dst.len() as u32, 0) }
    }

    fn mem_write(&mut self, m: Mem, va: u64, src: &[u8]) {
        // SAFETY: as in mem_read; the C side only reads `src`.
        unsafe { k::ferrite_k_mr_copy(m.handle as *mut c_void, va - m.base, src.as_ptr() as *mut u8, src.len() as u32, 1) }
    }

    fn mem_atomic(&mut self, m: Mem, va: u64, op: AtomicOp) -> u64 {
        let (code, a, bv) = match op {
            AtomicOp::CmpSwap { compare, swap } => (b::FERRITE_ATOMIC_CMP_SWAP, compare, swap),
            AtomicOp::FetchAdd { add } => (b::FERRITE_ATOMIC_FETCH_ADD, add, 0),
            AtomicOp::Write { value } => (b::FERRITE_ATOMIC_WRITE, value, 0),
        };
        // SAFETY: referenced region, 8 aligned bytes inside it (checked by the engine).
        unsafe { k::ferrite_k_mr_atomic(m.handle as *mut c_void, va - m.base, code, a, bv) }
    }

    fn mem_flush(&mut self, m: Mem, va: u64, len: u64) {
        // SAFETY: referenced region; `va..va+len` lies inside it (checked by the
        // engine and mr_resolve).
        unsafe { k::ferrite_k_mr_flush(m.handle as *mut c_void, va - m.base, len) }
    }

    fn tx_alloc(&mut self, len: usize) -> Option<KTx> {
        let mut data = core::ptr::null_mut();
        // SAFETY: the cookie is this QP's; `data` is written on success.
        let skb = unsafe { k::ferrite_k_tx_alloc(self.cookie, len as u32, &mut data) };
        if skb.is_null() {
            return None;
        }
        Some(KTx { skb, data, len })
    }

    fn tx_send(&mut self, mut buf: KTx, path: &Path) {
        let p = b::ferrite_path {
            sip: path.sip,
            dip: path.dip,
            flow_label: path.flow_label,
            sport: path.sport,
            v6: path.v6 as u8,
            traffic_class: path.traffic_class,
            hop_limit: path.hop_limit,
            pad: [0; 3],
        };
        let skb = core::mem::replace(&mut buf.skb, core::ptr::null_mut());
        // SAFETY: the buffer is ours and is consumed by the call, whatever it returns.
        if unsafe { k::ferrite_k_tx_send(self.cookie, skb, &p) } != 0 {
            Counters::bump(&self.dev.counters.tx_drops);
        }
    }

    fn complete(&mut self, cq: CqSel, cqe: &Cqe, solicited: bool) {
        // SAFETY: `cqe` is FERRITE_CQE_LEN bytes (asserted below); the cookie is ours.
        unsafe {
            k::ferrite_k_cq_post(self.cookie, (cq == CqSel::Recv) as u8, cqe as *const Cqe as *const u8, solicited as u8)
        }
    }

    fn event(&mut self, ev: engine::QpEvent) {
        let code = match ev {
            engine::QpEvent::Fatal => b::FERRITE_QP_EVENT_FATAL,
            engine::QpEvent::AccessError => b::FERRITE_QP_EVENT_ACCESS_ERR,
            engine::QpEvent::InvalidRequest => b::FERRITE_QP_EVENT_REQ_ERR,
            engine::QpEvent::CommEstablished => b::FERRITE_QP_EVENT_COMM_EST,
            engine::QpEvent::SqDrained => b::FERRITE_QP_EVENT_SQ_DRAINED,
        };
        // SAFETY: the cookie is this QP's.
        unsafe { k::ferrite_k_qp_event(self.cookie, code) }
    }

    fn counters(&self) -> &Counters {
        &self.dev.counters
    }
}

const _: () = {
    assert!(size_of::<Cqe>() == b::FERRITE_CQE_LEN as usize);
    assert!(size_of::<CreateQpResp>() == b::FERRITE_CREATE_QP_RESP_LEN as usize);
    assert!(size_of::<b::ferrite_qp_attr>() == 80);
};

/// A QP as C holds it.
///
/// # Invariants
/// `dev` outlives the QP (C destroys every QP of a device before the device);
/// `cookie` is the C QP this one belongs to.
pub struct QpHandle {
    dev: *const Device,
    cookie: *mut c_void,
    qp: SpinLock<Qp>,
    resp: CreateQpResp,
    /// What the last round decided of received responses: wait for the work
    /// item (see [`Qp::defers_responses`]).  Written under the lock, read without.
    defer_responses: AtomicBool,
}

// SAFETY: the raw pointers name objects that live as long as the handle (type
// invariant) and are safe to use from any thread; the engine is behind the lock.
unsafe impl Send for QpHandle {}
// SAFETY: as for Send.
unsafe impl Sync for QpHandle {}

impl QpHandle {
    fn env(&self) -> KernelEnv<'_> {
        // SAFETY: the device outlives the QP (type invariant).
        KernelEnv { dev: unsafe { &*self.dev }, cookie: self.cookie }
    }
}

/// # Safety
/// `h` is a live handle from `ferrite_rs_qp_create`.
unsafe fn qp_handle<'a>(h: *const c_void) -> &'a QpHandle {
    // SAFETY: function contract.
    unsafe { &*(h as *const QpHandle) }
}

fn qp_geometry(init: &mut b::ferrite_qp_init) -> Result<(Geometry, Geometry)> {
    if init.qp_type != b::FERRITE_QPT_RC && init.qp_type != b::FERRITE_QPT_UC {
        return Err(Error::EOPNOTSUPP);
    }
    let l = &LIMITS;
    if init.max_send_wr == 0
        || init.max_send_wr > l.max_qp_wr
        || init.max_recv_wr > l.max_qp_wr
        || init.max_send_sge > l.max_sge
        || init.max_recv_sge > l.max_sge
        || init.max_inline_data > MAX_INLINE
    {
        return Err(Error::EINVAL);
    }
    let sg = Geometry::send(init.max_send_wr, init.max_send_sge.max(1), init.max_inline_data).ok_or(Error::EINVAL)?;
    let rg = Geometry::recv(init.max_recv_wr.max(1), init.max_recv_sge.max(1)).ok_or(Error::EINVAL)?;
    // Report what the queues really hold.
    let body = sg.stride - ferrite_abi::wq::SEND_WQE_HDR as u32;
    init.max_send_wr = sg.slots;
    init.max_recv_wr = if init.max_recv_wr == 0 { 0 } else { rg.slots };
    init.max_send_sge = (body / 16).min(l.max_sge);
    init.max_inline_data = body.min(MAX_INLINE);
    init.max_recv_sge = ((rg.stride - ferrite_abi::wq::RECV_WQE_HDR as u32) / 16).min(l.max_sge);
    init.sq_bytes = sg.bytes() as u64;
    init.rq_bytes = rg.bytes() as u64;
    Ok((sg, rg))
}

/// # Safety
/// `dev` is a live device handle; `init` is valid and writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_geometry(_dev: *const c_void, init: *mut b::ferrite_qp_init) -> i32 {
    // SAFETY: function contract.
    let init = unsafe { &mut *init };
    match qp_geometry(init) {
        Ok(_) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `dev` is a live device handle; `init` is what `ferrite_rs_qp_geometry` returned;
/// `sq`/`rq` are zeroed rings of `init.sq_bytes`/`rq_bytes` that outlive the QP;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_create(
    dev: *const c_void,
    init: *const b::ferrite_qp_init,
    qpn: u32,
    pd: u64,
    sq: *mut c_void,
    rq: *mut c_void,
    port_mtu: u8,
    cookie: *mut c_void,
    out: *mut *mut c_void,
) -> i32 {
    // SAFETY: function contract.
    let (d, init) = unsafe { (device(dev), &*init) };
    let mut again = *init;
    let r = (|| -> Result<*mut c_void> {
        let (sg, rg) = qp_geometry(&mut again)?;
        if again.sq_bytes != init.sq_bytes || again.rq_bytes != init.rq_bytes {
            return Err(Error::EINVAL);
        }
        // SAFETY: the rings are as large as their geometry needs, page aligned, and
        // outlive the QP (function contract).
        let (sqv, rqv) = unsafe { (WorkQueue::new(sq as *mut u8, sg), WorkQueue::new(rq as *mut u8, rg)) };
        let (sqv, rqv) = (sqv.ok_or(Error::EINVAL)?, rqv.ok_or(Error::EINVAL)?);
        // Until the QP first runs, the provider's first post must ring.
        sqv.request_doorbell();
        d.qp_alloc()?;
        let qp = Qp::new(QpConfig {
            qpn,
            qp_type: if init.qp_type == b::FERRITE_QPT_RC { QpType::Rc } else { QpType::Uc },
            pd,
            sq: sqv,
            rq: rqv,
            max_send_sge: again.max_send_sge,
            max_recv_sge: again.max_recv_sge,
            max_inline: again.max_inline_data,
            sq_sig_all: init.sq_sig_all != 0,
            port_mtu,
        });
        let qp = match qp.and_then(|q| SpinLock::new(q, LockClass::Qp)) {
            Ok(q) => q,
            Err(e) => {
                d.qp_free();
                return Err(e);
            }
        };
        let resp = CreateQpResp {
            sq_slots: sg.slots,
            sq_stride: sg.stride,
            rq_slots: rg.slots,
            rq_stride: rg.stride,
            max_send_sge: again.max_send_sge,
            max_inline: again.max_inline_data,
            max_recv_sge: again.max_recv_sge,
            ..Default::default()
        };
        Ok(Box::into_raw(Box::new(QpHandle { dev: d, cookie, qp, resp, defer_responses: AtomicBool::new(false) })) as *mut c_void)
    })();
    match r {
        Ok(h) => {
            // SAFETY: `out` is writable (function contract).
            unsafe { *out = h };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `h` is a handle from `ferrite_rs_qp_create`, given back once, after the C side
/// stopped every caller (work item, timer, receive path).
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_destroy(h: *mut c_void) {
    if h.is_null() {
        return;
    }
    // SAFETY: function contract.
    let q = unsafe { Box::from_raw(h as *mut QpHandle) };
    // SAFETY: the device outlives the QP.
    unsafe { &*q.dev }.qp_free();
}

/// # Safety
/// `h` is a live QP handle; `out` is writable for FERRITE_CREATE_QP_RESP_LEN bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_resp(
    h: *const c_void,
    sq_offset: u64,
    sq_len: u64,
    rq_offset: u64,
    rq_len: u64,
    out: *mut u8,
) {
    // SAFETY: function contract.
    let q = unsafe { qp_handle(h) };
    let r = CreateQpResp { sq_mmap_offset: sq_offset, sq_mmap_len: sq_len, rq_mmap_offset: rq_offset, rq_mmap_len: rq_len, ..q.resp };
    // SAFETY: function contract; unaligned: C's buffer is a byte array.
    unsafe { (out as *mut CreateQpResp).write_unaligned(r) }
}

/// # Safety
/// `h` is a live QP handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_state(h: *const c_void) -> u8 {
    // SAFETY: function contract.
    unsafe { qp_handle(h) }.qp.lock().state() as u8
}

fn attr_from_c(a: &b::ferrite_qp_attr) -> QpAttr {
    QpAttr {
        state: a.state,
        cur_state: a.cur_state,
        path_mtu: a.path_mtu,
        path_mig_state: a.path_mig_state,
        qkey: a.qkey,
        rq_psn: a.rq_psn,
        sq_psn: a.sq_psn,
        dest_qp_num: a.dest_qp_num,
        access_flags: a.access_flags,
        pkey_index: a.pkey_index,
        port_num: a.port_num,
        timeout: a.timeout,
        retry_cnt: a.retry_cnt,
        rnr_retry: a.rnr_retry,
        min_rnr_timer: a.min_rnr_timer,
        max_rd_atomic: a.max_rd_atomic,
        max_dest_rd_atomic: a.max_dest_rd_atomic,
        sq_draining: a.sq_draining,
        en_sqd_async_notify: a.en_sqd_async_notify,
        sgid_index: a.sgid_index,
        sgid: a.sgid,
        dgid: a.dgid,
        flow_label: a.flow_label,
        hop_limit: a.hop_limit,
        traffic_class: a.traffic_class,
    }
}

/// # Safety
/// `h` is a live QP handle; `attr` is valid.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_modify(h: *mut c_void, attr: *const b::ferrite_qp_attr, mask: u32) -> i32 {
    // SAFETY: function contract.
    let (q, a) = unsafe { (qp_handle(h), &*attr) };
    let mut env = q.env();
    match q.qp.lock().modify(&mut env, &attr_from_c(a), mask) {
        Ok(run) => run as i32,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `h` is a live QP handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_query(h: *const c_void, out: *mut b::ferrite_qp_attr) {
    // SAFETY: function contract.
    let a = unsafe { qp_handle(h) }.qp.lock().query();
    let c = b::ferrite_qp_attr {
        qkey: a.qkey,
        rq_psn: a.rq_psn,
        sq_psn: a.sq_psn,
        dest_qp_num: a.dest_qp_num,
        access_flags: a.access_flags,
        flow_label: a.flow_label,
        pkey_index: a.pkey_index,
        state: a.state,
        cur_state: a.cur_state,
        path_mtu: a.path_mtu,
        path_mig_state: a.path_mig_state,
        port_num: a.port_num,
        timeout: a.timeout,
        retry_cnt: a.retry_cnt,
        rnr_retry: a.rnr_retry,
        min_rnr_timer: a.min_rnr_timer,
        max_rd_atomic: a.max_rd_atomic,
        max_dest_rd_atomic: a.max_dest_rd_atomic,
        sq_draining: a.sq_draining,
        en_sqd_async_notify: a.en_sqd_async_notify,
        sgid_index: a.sgid_index,
        hop_limit: a.hop_limit,
        traffic_class: a.traffic_class,
        pad: [0; 6],
        sgid: a.sgid,
        dgid: a.dgid,
    };
    // SAFETY: function contract.
    unsafe { out.write(c) }
}

/// # Safety
/// `h` is a live QP handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_doorbell(h: *mut c_void) {
    // SAFETY: function contract.
    let q = unsafe { qp_handle(h) };
    Counters::bump(&q.env().dev.counters.doorbells);
    q.qp.lock().doorbell();
}

/// One round of a QP, all under its lock: the packets queued for it (up to
/// `rx_budget`), oldest first, then up to `tx_budget` packets of its own work.
/// Returns 1 when its own work is left over.
///
/// Taking the packets off the queue under the lock is what keeps them in order:
/// the work item, a doorbell in the caller's context and the receive softirq may
/// each run a round, and a packet dequeued by one but handed in after another's
/// would reach the engine out of order (a sequence NAK and a retransmission on RC, a message lost
/// on UC).
///
/// # Safety
/// `h` is a live QP handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_round(h: *mut c_void, rx_budget: u32, tx_budget: u32) -> i32 {
    // SAFETY: function contract.
    let q = unsafe { qp_handle(h) };
    let mut env = q.env();
    let mut qp = q.qp.lock();
    for _ in 0..rx_budget {
        let mut ip: *const u8 = core::ptr::null();
        let mut len = 0u32;
        // SAFETY: the cookie is this QP's; `ip` and `len` are writable.
        let skb = unsafe { k::ferrite_k_qp_rx_next(q.cookie, &mut ip, &mut len) };
        if skb.is_null() {
            break;
        }
        // SAFETY: ferrite_k_qp_rx_next gives the datagram's bytes, valid until
        // the buffer is freed below.
        let bytes = unsafe { core::slice::from_raw_parts(ip, len as usize) };
        // The ICRC was checked by ferrite_rs_rx_classify before the packet was queued.
        if let Ok(rx) = packet::parse(bytes, None) {
            qp.receive(&mut env, &rx);
        }
        // SAFETY: `skb` came from ferrite_k_qp_rx_next and nothing refers to it now.
        unsafe { k::ferrite_k_rx_free(skb) };
    }
    let mut more = qp.run(&mut env, tx_budget);
    if !more && qp.wants_doorbell() && qp.idle_sq() {
        more = true;
    }
    let deadline = qp.deadline().unwrap_or(0);
    q.defer_responses.store(qp.defers_responses(), Ordering::Relaxed);
    drop(qp);
    // SAFETY: the cookie is this QP's.
    unsafe { k::ferrite_k_qp_timer(q.cookie, deadline) };
    more as i32
}

/// Whether a packet the receive softirq just queued waits for the work item:
/// `kind` is what [`ferrite_rs_rx_classify`] returned for it.
///
/// # Safety
/// `h` is a live QP handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_qp_rx_defer(h: *const c_void, kind: i32) -> i32 {
    // SAFETY: function contract.
    let q = unsafe { qp_handle(h) };
    (kind == 1 && q.defer_responses.load(Ordering::Relaxed)) as i32
}

/// # Safety
/// `ring` is a CQ ring of `slots` slots; `cqe` is FERRITE_CQE_LEN bytes; `armed`
/// is writable; the caller holds the CQ's lock.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_cq_push(ring: *mut c_void, slots: u32, cqe: *const u8, solicited: u8, armed: *mut u8) -> i32 {
    // SAFETY: function contract.
    let Some(r) = (unsafe { Ring::new(ring as *mut u8, slots) }) else { return Error::EINVAL.to_errno() };
    // SAFETY: function contract; unaligned read of the caller's bytes.
    let c = unsafe { (cqe as *const Cqe).read_unaligned() };
    if r.push(&c).is_err() {
        return Error::ENOSPC.to_errno();
    }
    // enum ib_cq_notify_flags: IB_CQ_SOLICITED 1, IB_CQ_NEXT_COMP 2.
    // SAFETY: function contract.
    let a = unsafe { &mut *armed };
    if *a & 2 != 0 || (*a & 1 != 0 && solicited != 0) {
        *a = 0;
        return 1;
    }
    0
}

/// # Safety
/// `dev` is a live device handle; `ip` is valid for `len` bytes; `qpn` writable.
/// Called in softirq context: no sleeping, no allocation.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_rx_classify(dev: *const c_void, ip: *const u8, len: u32, qpn: *mut u32) -> i32 {
    // SAFETY: function contract.
    let (d, bytes) = unsafe { (device(dev), core::slice::from_raw_parts(ip, len as usize)) };
    match packet::parse(bytes, Some(&KernelCrc)) {
        Ok(rx) => {
            // SAFETY: function contract.
            unsafe { *qpn = rx.bth.dest_qpn };
            rx.info.is_response() as i32
        }
        Err(why) => {
            count_drop(&d.counters, why);
            if why == Drop::Icrc {
                -74 // EBADMSG
            } else {
                Error::EINVAL.to_errno()
            }
        }
    }
}

/// Count a datagram [`packet::parse`] refused.
fn count_drop(c: &Counters, why: Drop) {
    Counters::bump(match why {
        Drop::Icrc => &c.icrc_errors,
        Drop::UnknownOpcode => &c.unknown_opcode,
        Drop::Malformed => &c.malformed,
    });
}

/// # Safety
/// `dev` is a live device handle.  Called in softirq context: no sleeping.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_rx_dropped(dev: *const c_void, why: u32) {
    // SAFETY: function contract.
    let c = &unsafe { device(dev) }.counters;
    Counters::bump(match why {
        b::FERRITE_RX_DROP_QUEUE_FULL => &c.rx_overflow,
        // FERRITE_RX_DROP_NO_QP, and anything C might add without telling.
        _ => &c.unknown_qp,
    });
}

/// # Safety
/// `ip` is a finished outgoing datagram of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_icrc_fill(ip: *mut u8, len: u32) {
    // SAFETY: function contract.
    let bytes = unsafe { core::slice::from_raw_parts_mut(ip, len as usize) };
    if icrc::fill(&KernelCrc, bytes).is_err() {
        pr_err!("ICRC of a malformed outgoing datagram ({} bytes)", len);
    }
}

/// Counter names, NUL-terminated, in the order of [`Counters::snapshot`].
static COUNTER_NAMES_C: [&[u8]; engine::COUNTERS] = [
    b"sent_pkts\0",
    b"rcvd_pkts\0",
    b"retransmits\0",
    b"duplicate_requests\0",
    b"seq_naks_sent\0",
    b"seq_naks_rcvd\0",
    b"rnr_naks_sent\0",
    b"rnr_naks_rcvd\0",
    b"retry_exceeded\0",
    b"rnr_retry_exceeded\0",
    b"icrc_errors\0",
    b"malformed_drops\0",
    b"out_of_sequence\0",
    b"doorbells\0",
    b"wqes_posted\0",
    b"recv_completions\0",
    b"tx_drops\0",
    b"unknown_opcode_drops\0",
    b"unknown_qp_drops\0",
    b"rx_overflow_drops\0",
    b"stray_responses\0",
    b"uc_drops\0",
];

#[no_mangle]
pub extern "C" fn ferrite_rs_counter_count() -> u32 {
    COUNTER_NAMES_C.len() as u32
}

#[no_mangle]
pub extern "C" fn ferrite_rs_counter_name(i: u32) -> *const u8 {
    COUNTER_NAMES_C.get(i as usize).map(|n| n.as_ptr()).unwrap_or(core::ptr::null())
}

/// # Safety
/// `dev` is a live device handle; `out` is writable for `n` values.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_counters(dev: *const c_void, out: *mut u64, n: u32) {
    // SAFETY: function contract.
    let d = unsafe { device(dev) };
    let v = d.counters.snapshot();
    for (i, x) in v.iter().enumerate().take(n as usize) {
        // SAFETY: `i < n` (function contract).
        unsafe { out.add(i).write(*x) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rounds_caps_up_and_refuses_over_limit_requests() {
        let mut i = b::ferrite_qp_init { qp_type: b::FERRITE_QPT_RC, max_send_wr: 100, max_recv_wr: 3, max_send_sge: 2, max_recv_sge: 1, max_inline_data: 100, ..Default::default() };
        qp_geometry(&mut i).unwrap();
        assert_eq!((i.max_send_wr, i.max_recv_wr), (128, 4));
        assert!(i.max_send_sge >= 2 && i.max_inline_data >= 100);
        assert_eq!(i.sq_bytes % 4096, 0);
        for bad in [
            b::ferrite_qp_init { max_send_wr: LIMITS.max_qp_wr + 1, ..i },
            b::ferrite_qp_init { max_send_sge: LIMITS.max_sge + 1, ..i },
            b::ferrite_qp_init { max_inline_data: MAX_INLINE + 1, ..i },
            b::ferrite_qp_init { max_send_wr: 0, ..i },
        ] {
            assert_eq!(qp_geometry(&mut bad.clone()), Err(Error::EINVAL));
        }
        let mut ud = b::ferrite_qp_init { qp_type: 4, ..i };
        assert_eq!(qp_geometry(&mut ud), Err(Error::EOPNOTSUPP));
    }

    #[test]
    fn receive_drops_are_counted_by_kind() {
        use crate::device::Netdev;
        use core::sync::atomic::Ordering::Relaxed;
        let d = Device::new(Netdev::new(1, 2, 1, &[2, 0, 0, 0, 0, 1]).unwrap()).unwrap();
        let h = &d as *const Device as *const c_void;
        // IPv4, UDP to 4791, an RC SEND ONLY of 4 bytes to QP 0x123456, ICRC.
        let mut ip = [0u8; 20 + 8 + 12 + 4 + 4];
        ip[..10].copy_from_slice(&[0x45, 0, 0, 48, 0, 1, 0x40, 0, 64, 17]);
        ip[12..20].copy_from_slice(&[192, 0, 2, 2, 192, 0, 2, 1]);
        ip[20..28].copy_from_slice(&[0xc0, 0, 0x12, 0xb7, 0, 28, 0, 0]);
        ip[28..40].copy_from_slice(&[0x04, 0, 0xff, 0xff, 0, 0x12, 0x34, 0x56, 0, 0, 0, 7]);
        ip[40..44].copy_from_slice(b"ping");
        let with = |f: &dyn Fn(&mut [u8; 48])| {
            let mut p = ip;
            f(&mut p);
            icrc::fill(&icrc::SoftCrc, &mut p).unwrap();
            p
        };
        let classify = |p: &[u8]| {
            let mut qpn = 0;
            // SAFETY: a live device and a buffer of `p.len()` bytes.
            (unsafe { ferrite_rs_rx_classify(h, p.as_ptr(), p.len() as u32, &mut qpn) }, qpn)
        };
        let c = &d.counters;
        let counts = || (c.malformed.load(Relaxed), c.icrc_errors.load(Relaxed), c.unknown_opcode.load(Relaxed));
        assert_eq!(classify(&with(&|_| {})), (0, 0x123456), "a SEND is a request");
        // An ACKNOWLEDGE (its 4 bytes of AETH where the SEND had its payload).
        assert_eq!(classify(&with(&|p| p[40..44].copy_from_slice(&[0, 0, 0, 1]))), (0, 0x123456));
        assert_eq!(classify(&with(&|p| { p[28] = 0x11; p[40..44].copy_from_slice(&[0, 0, 0, 1]) })), (1, 0x123456), "an ACK is a response");
        assert_eq!(counts(), (0, 0, 0));
        // Unknown opcodes: RC reserved codes, RD, CNP; counted as such, not as malformed.
        for op in [0x15, 0x1e, 0x1f, 0x40, 0x81, 0xff] {
            assert_eq!(classify(&with(&|p| p[28] = op)).0, -22, "opcode {op:#x}");
        }
        assert_eq!(counts(), (0, 0, 6));
        let mut bad = with(&|_| {});
        bad[41] ^= 0x10;
        assert_eq!(classify(&bad).0, -74);
        assert_eq!(counts(), (0, 1, 6));
        // Shorter than its lengths say; TVer 1.
        assert_eq!(classify(&with(&|_| {})[..40]).0, -22);
        assert_eq!(classify(&with(&|p| p[29] = 1)).0, -22);
        assert_eq!(counts(), (2, 1, 6));
        // What C could not queue.
        // SAFETY: a live device.
        unsafe {
            ferrite_rs_rx_dropped(h, b::FERRITE_RX_DROP_NO_QP);
            ferrite_rs_rx_dropped(h, b::FERRITE_RX_DROP_NO_QP);
            ferrite_rs_rx_dropped(h, b::FERRITE_RX_DROP_QUEUE_FULL);
        }
        assert_eq!((c.unknown_qp.load(Relaxed), c.rx_overflow.load(Relaxed)), (2, 1));
        // Every counter has its name, in snapshot order; the new ones last.
        let mut v = [0u64; engine::COUNTERS];
        // SAFETY: a live device and room for every counter.
        unsafe { ferrite_rs_counters(h, v.as_mut_ptr(), v.len() as u32) };
        assert_eq!(ferrite_rs_counter_count() as usize, v.len());
        let name = |i: u32| {
            // SAFETY: names are static NUL-terminated strings.
            unsafe { core::ffi::CStr::from_ptr(ferrite_rs_counter_name(i) as *const core::ffi::c_char) }.to_str().unwrap()
        };
        let at = |n: &str| (0..v.len() as u32).find(|&i| name(i) == n).map(|i| v[i as usize]);
        assert_eq!(at("malformed_drops"), Some(2));
        assert_eq!(at("icrc_errors"), Some(1));
        assert_eq!(at("unknown_opcode_drops"), Some(6));
        assert_eq!(at("unknown_qp_drops"), Some(2));
        assert_eq!(at("rx_overflow_drops"), Some(1));
        assert_eq!(at("stray_responses"), Some(0));
        assert!(ferrite_rs_counter_name(v.len() as u32).is_null());
    }

    #[test]
    fn cq_push_notifies_as_armed() {
        #[repr(C, align(4096))]
        struct Page([u8; 8192]);
        let mut mem = Box::new(Page([0; 8192]));
        let c = [0u8; 64];
        let mut armed = 1u8; // solicited only
        // SAFETY: a ring of 2 slots in `mem`.
        unsafe {
            let r = mem.0.as_mut_ptr() as *mut c_void;
            assert_eq!(ferrite_rs_cq_push(r, 2, c.as_ptr(), 0, &mut armed), 0);
            assert_eq!(ferrite_rs_cq_push(r, 2, c.as_ptr(), 1, &mut armed), 1);
            assert_eq!(armed, 0);
            assert_eq!(ferrite_rs_cq_push(r, 2, c.as_ptr(), 1, &mut armed), -28, "full");
        }
    }
}
