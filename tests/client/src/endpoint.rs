//! One side's verbs objects over `rdma-sys`: device context, PD, CQ (optionally with
//! a completion channel), one RC or UC QP, and one large MR over anonymous memory.
//!
//! Everything is created in `open` (device, PD, CQ) and `create` (QP, MR) and destroyed
//! in `Drop` in the reverse order.  The raw pointers never leave this module; callers
//! post work requests described by `SendWr`/`RecvWr` and read completions as `Wc`.

use rdma_sys::*;
use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr;
use std::time::{Duration, Instant};

use crate::gid::{self, Gid};
use crate::QpKind;

/// Depths the QP is created with; the CQ holds both queues.
pub const SQ_DEPTH: u32 = 64;
pub const RQ_DEPTH: u32 = 64;
const CQ_DEPTH: c_int = 256;
/// Inline data asked for at QP creation (less is accepted; see `max_inline`).
const WANT_INLINE: [u32; 4] = [256, 128, 64, 0];
/// SGEs per WR asked for, on both queues.
pub const MAX_SGE: u32 = 3;

fn errno_str(e: c_int) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn last_os_error() -> String {
    std::io::Error::last_os_error().to_string()
}

/// A completion, decoded.
#[derive(Clone, Debug)]
pub struct Wc {
    pub wr_id: u64,
    pub status: u32,
    pub opcode: u32,
    pub byte_len: u32,
    /// The immediate value (host order) when the completion carries one.
    pub imm: Option<u32>,
    pub qp_num: u32,
    pub vendor_err: u32,
}

pub fn status_str(s: u32) -> String {
    // SAFETY: ibv_wc_status_str returns a pointer to a static string for any value
    // ("unknown" for values it does not know); it is never freed.
    unsafe { CStr::from_ptr(ibv_wc_status_str(s)) }.to_string_lossy().into_owned()
}

pub fn opcode_str(op: u32) -> String {
    use ibv_wc_opcode::*;
    match op {
        IBV_WC_SEND => "IBV_WC_SEND".into(),
        IBV_WC_RDMA_WRITE => "IBV_WC_RDMA_WRITE".into(),
        IBV_WC_RDMA_READ => "IBV_WC_RDMA_READ".into(),
        IBV_WC_COMP_SWAP => "IBV_WC_COMP_SWAP".into(),
        IBV_WC_FETCH_ADD => "IBV_WC_FETCH_ADD".into(),
        IBV_WC_FLUSH => "IBV_WC_FLUSH".into(),
        IBV_WC_ATOMIC_WRITE => "IBV_WC_ATOMIC_WRITE".into(),
        IBV_WC_RECV => "IBV_WC_RECV".into(),
        IBV_WC_RECV_RDMA_WITH_IMM => "IBV_WC_RECV_RDMA_WITH_IMM".into(),
        o => format!("opcode {o}"),
    }
}

impl Wc {
    pub fn ok(&self) -> bool {
        self.status == ibv_wc_status::IBV_WC_SUCCESS
    }

    pub fn describe(&self) -> String {
        format!(
            "wr_id {:#x} status {} ({}) vendor_err {:#x} opcode {} byte_len {}",
            self.wr_id,
            status_str(self.status),
            self.status,
            self.vendor_err,
            opcode_str(self.opcode),
            self.byte_len
        )
    }
}

/// The work requests this tool posts.
pub enum SendOp {
    Send,
    SendImm(u32),
    Write { raddr: u64, rkey: u32 },
    WriteImm { raddr: u64, rkey: u32, imm: u32 },
    Read { raddr: u64, rkey: u32 },
    FetchAdd { raddr: u64, rkey: u32, add: u64 },
    CmpSwp { raddr: u64, rkey: u32, compare: u64, swap: u64 },
    /// IBTA 1.5 (`post_wr` only): 8 bytes stored at once at an aligned address.
    AtomicWrite { raddr: u64, rkey: u32, value: [u8; 8] },
    /// IBTA 1.5 (`post_wr` only): `ty` IBV_FLUSH_GLOBAL/PERSISTENT, `level`
    /// IBV_FLUSH_RANGE (0, `len` bytes at `raddr`) or IBV_FLUSH_MR (1).
    Flush { raddr: u64, rkey: u32, len: usize, ty: u8, level: u8 },
}

/// enum ibv_wc_opcode values of rdma-core 44/45 (rdma-sys is built against 33.2).
pub const IBV_WC_FLUSH: u32 = 8;
pub const IBV_WC_ATOMIC_WRITE: u32 = 9;
/// enum ibv_wr_opcode's IBV_WR_ATOMIC_WRITE (rdma-core 44).
pub const IBV_WR_ATOMIC_WRITE: u32 = 15;
/// IBV_ACCESS_FLUSH_GLOBAL (rdma-core 45), for MRs and QPs.
pub const IBV_ACCESS_FLUSH_GLOBAL: u32 = 1 << 8;
/// IBV_FLUSH_GLOBAL; IBV_FLUSH_RANGE and IBV_FLUSH_MR.
pub const IBV_FLUSH_GLOBAL: u8 = 1;
pub const IBV_FLUSH_RANGE: u8 = 0;
pub const IBV_FLUSH_MR: u8 = 1;
/// IBV_QP_EX_WITH_FLUSH and _ATOMIC_WRITE (rdma-core 45 and 44).
const QP_EX_WITH_FLUSH: u64 = 1 << 11;
const QP_EX_WITH_ATOMIC_WRITE: u64 = 1 << 12;
/// enum ib_uverbs_device_cap_flags bits of device_cap_flags_ex (Linux 6.2).
const DEVICE_FLUSH_GLOBAL: u64 = 1 << 38;
const DEVICE_ATOMIC_WRITE: u64 = 1 << 40;

/// `struct ibv_qp_ex` as rdma-core 45 on has it: rdma-sys's (33.2's) members, then
/// `wr_atomic_write` (added in 44) and `wr_flush` (45).  Only read where the
/// libibverbs this process runs with is of such a release.
#[repr(C)]
struct QpExTail {
    base: ibv_qp_ex,
    wr_atomic_write: Option<unsafe extern "C" fn(*mut ibv_qp_ex, u32, u64, *const std::os::raw::c_void)>,
    wr_flush: Option<unsafe extern "C" fn(*mut ibv_qp_ex, u32, u64, usize, u8, u8)>,
}

/// The rdma-core release (major, minor) of the libibverbs this process runs with,
/// from the name of the file it mapped: `libibverbs.so.1.<abi>.<major>.<minor>`,
/// as rdma-core installs it.  None if it cannot tell.
pub fn rdma_core_release() -> Option<(u32, u32)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let name = l.rsplit('/').next()?;
        let v: Vec<u32> = name.strip_prefix("libibverbs.so.1.")?.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        (v.len() == 3).then(|| (v[1], v[2]))
    })
}

/// The verbs_context of `ctx` if `op` (at byte offset `off` in it) is one its
/// library has, as verbs.h's verbs_get_ctx_op() finds it.
///
/// # Safety
/// `ctx` is an open context.
unsafe fn verbs_op(ctx: *mut ibv_context, off: usize) -> Option<*mut verbs_context> {
    // SAFETY: function contract; abi_compat marks an extended context
    // (__VERBS_ABI_IS_EXTENDED), which libibverbs puts right after a verbs_context.
    unsafe {
        if (*ctx).abi_compat as usize != usize::MAX {
            return None;
        }
        let vctx = (ctx as *mut u8).sub(std::mem::offset_of!(verbs_context, context)) as *mut verbs_context;
        ((*vctx).sz >= std::mem::size_of::<verbs_context>() - off).then_some(vctx)
    }
}

pub struct SendWr {
    pub wr_id: u64,
    pub op: SendOp,
    /// (offset in the MR, length) per SGE.
    pub sges: Vec<(usize, usize)>,
    pub signaled: bool,
    pub inline: bool,
    pub fence: bool,
}

pub struct RecvWr {
    pub wr_id: u64,
    pub sges: Vec<(usize, usize)>,
}

/// An RC requester's timers: the local ACK timeout (4.096 us * 2^timeout; 0 waits
/// forever), the transport retries and the RNR retries (7: for ever).
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub timeout: u8,
    pub retry_cnt: u8,
    pub rnr_retry: u8,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers { timeout: 14, retry_cnt: 7, rnr_retry: 7 }
    }
}

/// An asynchronous event, acknowledged: enum ibv_event_type, and the QP number when
/// it names this endpoint's QP.
#[derive(Clone, Debug)]
pub struct AsyncEvent {
    pub kind: u32,
    pub qp_num: Option<u32>,
}

/// struct ibv_async_event with the event type as a plain integer (rdma-sys makes
/// it a Rust enum, which must not hold a value it does not know).
#[repr(C)]
struct RawAsyncEvent {
    element: *mut std::os::raw::c_void,
    event_type: u32,
}

/// enum ibv_event_type values.
pub const IBV_EVENT_QP_FATAL: u32 = 1;
pub const IBV_EVENT_QP_REQ_ERR: u32 = 2;
pub const IBV_EVENT_QP_ACCESS_ERR: u32 = 3;
pub const IBV_EVENT_COMM_EST: u32 = 4;

fn is_qp_event(kind: u32) -> bool {
    // QP_FATAL, QP_REQ_ERR, QP_ACCESS_ERR, COMM_EST, SQ_DRAINED, PATH_MIG,
    // PATH_MIG_ERR, QP_LAST_WQE_REACHED.
    matches!(kind, 1..=7 | 16)
}

pub fn event_str(kind: u32) -> String {
    const NAMES: [&str; 20] = [
        "CQ_ERR", "QP_FATAL", "QP_REQ_ERR", "QP_ACCESS_ERR", "COMM_EST", "SQ_DRAINED", "PATH_MIG",
        "PATH_MIG_ERR", "DEVICE_FATAL", "PORT_ACTIVE", "PORT_ERR", "LID_CHANGE", "PKEY_CHANGE",
        "SM_CHANGE", "SRQ_ERR", "SRQ_LIMIT_REACHED", "QP_LAST_WQE_REACHED", "CLIENT_REREGISTER",
        "GID_CHANGE", "WQ_FATAL",
    ];
    NAMES.get(kind as usize).map_or_else(|| format!("event {kind}"), |n| format!("IBV_EVENT_{n}"))
}

/// What the port and device allow, as far as the tests care.
pub struct Caps {
    pub active_mtu: u32,
    pub max_msg_sz: u32,
    pub gid_tbl_len: u32,
    pub max_qp_rd_atom: u32,
    pub max_qp_init_rd_atom: u32,
    pub atomics: bool,
    /// The device (its kernel driver) serves IBTA 1.5 ATOMIC WRITE, FLUSH to global
    /// visibility (device_cap_flags_ex).
    pub atomic_write: bool,
    pub flush: bool,
}

pub struct Endpoint {
    ctx: *mut ibv_context,
    pd: *mut ibv_pd,
    channel: *mut ibv_comp_channel,
    cq: *mut ibv_cq,
    qp: *mut ibv_qp,
    mr: *mut ibv_mr,
    buf: *mut u8,
    buf_len: usize,
    pub dev: String,
    pub caps: Caps,
    pub gid_index: u32,
    pub gid: Gid,
    pub kind: QpKind,
    pub max_inline: u32,
    /// Create the QP with the extended API and IBTA 1.5's operations, register the
    /// MR and set the QP's access for FLUSH (see `want_ibta15`).
    ibta15: bool,
    /// The QP's `ibv_qp_ex` (created with send ops), or null.
    qpx: *mut ibv_qp_ex,
    /// What `post_wr` can post on this QP; what the MR and QP let a peer FLUSH.
    pub posts_atomic_write: bool,
    pub posts_flush: bool,
    pub takes_flush: bool,
    /// The runtime libibverbs' rdma-core release.
    pub rdma_core: Option<(u32, u32)>,
}

/// The device's `device_cap_flags_ex` (ibv_query_device_ex), or 0.
///
/// # Safety
/// `ctx` is an open context.
unsafe fn cap_flags_ex(ctx: *mut ibv_context) -> u64 {
    // SAFETY: function contract.
    let Some(vctx) = (unsafe { verbs_op(ctx, std::mem::offset_of!(verbs_context, query_device_ex)) }) else {
        return 0;
    };
    // SAFETY: vctx is the context's verbs_context and has the op.
    let Some(query) = (unsafe { (*vctx).query_device_ex }) else { return 0 };
    // SAFETY: plain data the call fills (libibverbs copies what attr_size allows).
    let mut attr: ibv_device_attr_ex = unsafe { std::mem::zeroed() };
    // SAFETY: ctx is open; attr outlives the call and is as large as passed.
    let rc = unsafe { query(ctx, ptr::null(), &mut attr, std::mem::size_of::<ibv_device_attr_ex>()) };
    if rc != 0 {
        return 0;
    }
    attr.device_cap_flags_ex
}

/// IB MTU enum value of a size in bytes (256..4096).
pub fn mtu_enum(bytes: u32) -> ibv_mtu::Type {
    match bytes {
        256 => ibv_mtu::IBV_MTU_256,
        512 => ibv_mtu::IBV_MTU_512,
        1024 => ibv_mtu::IBV_MTU_1024,
        2048 => ibv_mtu::IBV_MTU_2048,
        _ => ibv_mtu::IBV_MTU_4096,
    }
}

fn mtu_bytes(m: ibv_mtu::Type) -> u32 {
    if (1..=5).contains(&m) {
        128 << m
    } else {
        0
    }
}

impl Endpoint {
    /// Open device `dev` (or the first one), allocate the PD and the CQ, query the
    /// port and pick the GID index.
    pub fn open(dev: Option<&str>, gid_index: Option<u32>, ipv6: bool, events: bool)
        -> Result<Endpoint, String> {
        Self::open_cq(dev, gid_index, ipv6, events, CQ_DEPTH as u32)
    }

    /// `open` with a CQ of `cq_depth` entries.
    pub fn open_cq(dev: Option<&str>, gid_index: Option<u32>, ipv6: bool, events: bool,
                   cq_depth: u32) -> Result<Endpoint, String> {
        let cq_depth = cq_depth.min(i32::MAX as u32) as c_int;
        let mut ep = Endpoint {
            ctx: ptr::null_mut(),
            pd: ptr::null_mut(),
            channel: ptr::null_mut(),
            cq: ptr::null_mut(),
            qp: ptr::null_mut(),
            mr: ptr::null_mut(),
            buf: ptr::null_mut(),
            buf_len: 0,
            dev: String::new(),
            caps: Caps {
                active_mtu: 0,
                max_msg_sz: 0,
                gid_tbl_len: 0,
                max_qp_rd_atom: 0,
                max_qp_init_rd_atom: 0,
                atomics: false,
                atomic_write: false,
                flush: false,
            },
            gid_index: 0,
            gid: [0; 16],
            kind: QpKind::Rc,
            max_inline: 0,
            ibta15: false,
            qpx: ptr::null_mut(),
            posts_atomic_write: false,
            posts_flush: false,
            takes_flush: false,
            rdma_core: rdma_core_release(),
        };
        ep.open_device(dev)?;
        // SAFETY: ep.ctx is an open context; attr is plain data the call fills.
        let mut da: ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: as above; da outlives the call.
        let rc = unsafe { ibv_query_device(ep.ctx, &mut da) };
        if rc != 0 {
            return Err(format!("ibv_query_device: {}", errno_str(rc)));
        }
        // SAFETY: ep.ctx is an open context; pa is plain data, zeroed as the C inline
        // ibv_query_port does before asking the provider.
        let mut pa: ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: as above; pa outlives the call.
        let rc = unsafe { ___ibv_query_port(ep.ctx, 1, &mut pa) };
        if rc != 0 {
            return Err(format!("ibv_query_port: {}", errno_str(rc)));
        }
        if pa.state != ibv_port_state::IBV_PORT_ACTIVE {
            return Err(format!("{} port 1 is not active (state {})", ep.dev, pa.state));
        }
        // SAFETY: ep.ctx is open.
        let ex = unsafe { cap_flags_ex(ep.ctx) };
        ep.caps = Caps {
            active_mtu: mtu_bytes(pa.active_mtu),
            max_msg_sz: pa.max_msg_sz,
            gid_tbl_len: pa.gid_tbl_len as u32,
            max_qp_rd_atom: da.max_qp_rd_atom.max(0) as u32,
            max_qp_init_rd_atom: da.max_qp_init_rd_atom.max(0) as u32,
            atomics: da.atomic_cap != ibv_atomic_cap::IBV_ATOMIC_NONE,
            atomic_write: ex & DEVICE_ATOMIC_WRITE != 0,
            flush: ex & DEVICE_FLUSH_GLOBAL != 0,
        };
        ep.gid_index = match gid_index {
            Some(i) => i,
            None => gid::pick(&ep.dev, ep.caps.gid_tbl_len, ipv6)?,
        };
        // SAFETY: ibv_gid is 16 bytes of plain data.
        let mut g: ibv_gid = unsafe { std::mem::zeroed() };
        // SAFETY: ep.ctx is open; g outlives the call.
        let rc = unsafe { ibv_query_gid(ep.ctx, 1, ep.gid_index as c_int, &mut g) };
        if rc != 0 {
            return Err(format!("ibv_query_gid(port 1, index {}): {}", ep.gid_index, last_os_error()));
        }
        // SAFETY: every bit pattern is a valid [u8; 16].
        ep.gid = unsafe { g.raw };
        if ep.gid == [0; 16] {
            return Err(format!("{} GID index {} is empty", ep.dev, ep.gid_index));
        }
        if events {
            // SAFETY: ep.ctx is open.
            ep.channel = unsafe { ibv_create_comp_channel(ep.ctx) };
            if ep.channel.is_null() {
                return Err(format!("ibv_create_comp_channel: {}", last_os_error()));
            }
        }
        // SAFETY: ep.ctx is open; the channel is null or belongs to it.
        ep.cq = unsafe { ibv_create_cq(ep.ctx, cq_depth, ptr::null_mut(), ep.channel, 0) };
        if ep.cq.is_null() {
            return Err(format!("ibv_create_cq({cq_depth}): {}", last_os_error()));
        }
        // SAFETY: ep.ctx is open.
        ep.pd = unsafe { ibv_alloc_pd(ep.ctx) };
        if ep.pd.is_null() {
            return Err(format!("ibv_alloc_pd: {}", last_os_error()));
        }
        Ok(ep)
    }

    fn open_device(&mut self, want: Option<&str>) -> Result<(), String> {
        let mut n: c_int = 0;
        // SAFETY: n outlives the call; the list is freed below.
        let list = unsafe { ibv_get_device_list(&mut n) };
        if list.is_null() {
            return Err(format!("ibv_get_device_list: {}", last_os_error()));
        }
        let mut names = Vec::new();
        let mut chosen: *mut ibv_device = ptr::null_mut();
        for i in 0..n.max(0) as usize {
            // SAFETY: the list holds n valid device pointers.
            let d = unsafe { *list.add(i) };
            // SAFETY: d is a listed device; its name is a NUL-terminated string.
            let name = unsafe { CStr::from_ptr(ibv_get_device_name(d)) }.to_string_lossy().into_owned();
            if chosen.is_null() && want.is_none_or(|w| w == name) {
                chosen = d;
                self.dev = name.clone();
            }
            names.push(name);
        }
        if !chosen.is_null() {
            // SAFETY: chosen is in the list, which is still alive.
            self.ctx = unsafe { ibv_open_device(chosen) };
        }
        // SAFETY: list came from ibv_get_device_list; an open context stays valid after it.
        unsafe { ibv_free_device_list(list) };
        if chosen.is_null() {
            return Err(match want {
                Some(w) => format!("no RDMA device {w} (have: {})", names.join(" ")),
                None => "no RDMA device".into(),
            });
        }
        if self.ctx.is_null() {
            return Err(format!("ibv_open_device({}): {}", self.dev, last_os_error()));
        }
        Ok(())
    }

    /// Let `create` set up IBTA 1.5's ATOMIC WRITE and FLUSH, as far as the device and
    /// the libibverbs this process runs with allow: an RC QP made with
    /// ibv_create_qp_ex and their send ops (so `post_wr` can post them), an MR and a
    /// QP a peer may FLUSH.
    pub fn want_ibta15(&mut self) {
        self.ibta15 = true;
    }

    /// Whether the runtime libibverbs is of rdma-core `major` or later.
    pub fn rdma_core_at_least(&self, major: u32) -> bool {
        self.rdma_core.is_some_and(|(m, _)| m >= major)
    }

    /// Whether the device is a ferrite device (its sysfs `ferrite_abi` attribute).
    pub fn is_ferrite(&self) -> bool {
        std::path::Path::new(&format!("/sys/class/infiniband/{}/ferrite_abi", self.dev)).exists()
    }

    /// The send ops an extended QP of `kind` is made with: everything `post_wr`
    /// posts, and `extra`.
    fn send_ops(kind: QpKind, extra: u64) -> u64 {
        use ibv_qp_create_send_ops_flags as f;
        let mut ops = f::IBV_QP_EX_WITH_RDMA_WRITE | f::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | f::IBV_QP_EX_WITH_SEND
            | f::IBV_QP_EX_WITH_SEND_WITH_IMM;
        if kind == QpKind::Rc {
            ops |= f::IBV_QP_EX_WITH_RDMA_READ | f::IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP
                | f::IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD;
        }
        ops.0 as u64 | extra
    }

    /// ibv_create_qp_ex (verbs.h's inline, by hand) for `ia`, with `send_ops`; the
    /// QP and the caps it was given.
    fn create_qp_ex(&self, ia: &ibv_qp_init_attr, send_ops: u64) -> Result<(*mut ibv_qp, ibv_qp_cap), c_int> {
        // SAFETY: ctx is open.
        let vctx = unsafe { verbs_op(self.ctx, std::mem::offset_of!(verbs_context, create_qp_ex)) }
            .ok_or(libc::EOPNOTSUPP)?;
        // SAFETY: vctx is the context's verbs_context and has the op.
        let create = unsafe { (*vctx).create_qp_ex }.ok_or(libc::EOPNOTSUPP)?;
        // SAFETY: plain data; zero is the neutral value of every field.
        let mut ax: ibv_qp_init_attr_ex = unsafe { std::mem::zeroed() };
        ax.send_cq = ia.send_cq;
        ax.recv_cq = ia.recv_cq;
        ax.cap = ia.cap;
        ax.qp_type = ia.qp_type;
        ax.sq_sig_all = ia.sq_sig_all;
        ax.pd = self.pd;
        ax.comp_mask =
            (ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_PD | ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS).0;
        ax.send_ops_flags = send_ops;
        // SAFETY: ctx, pd and the CQs are live; ax outlives the call.
        let qp = unsafe { create(self.ctx, &mut ax) };
        if qp.is_null() {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        Ok((qp, ax.cap))
    }

    /// The refusal of IBTA 1.5's ATOMIC WRITE by a device that does not serve it,
    /// on a libibverbs that has the verb (rdma-core 44 on): creating a QP that asks
    /// for it fails with EOPNOTSUPP, and ibv_post_send of one fails with EINVAL,
    /// nothing posted.
    pub fn check_atomic_write_refused(&self) -> Result<(), String> {
        // SAFETY: plain data; zero is the neutral value.
        let mut ia: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        ia.send_cq = self.cq;
        ia.recv_cq = self.cq;
        ia.qp_type = ibv_qp_type::IBV_QPT_RC;
        ia.cap.max_send_wr = 4;
        ia.cap.max_recv_wr = 4;
        ia.cap.max_send_sge = 1;
        ia.cap.max_recv_sge = 1;
        match self.create_qp_ex(&ia, Self::send_ops(QpKind::Rc, QP_EX_WITH_ATOMIC_WRITE)) {
            Ok((qp, _)) => {
                // SAFETY: the QP was just made and nothing else knows it.
                unsafe { ibv_destroy_qp(qp) };
                return Err("ibv_create_qp_ex with IBV_QP_EX_WITH_ATOMIC_WRITE succeeded".into());
            }
            Err(e) if e == libc::EOPNOTSUPP => {}
            Err(e) => return Err(format!("ibv_create_qp_ex with ATOMIC_WRITE: {}, want EOPNOTSUPP", errno_str(e))),
        }
        let mut v = [0u8; 8];
        let mut sge = ibv_sge { addr: v.as_mut_ptr() as u64, length: 8, lkey: self.lkey() };
        // SAFETY: plain data; zero is the neutral value.
        let mut r: ibv_send_wr = unsafe { std::mem::zeroed() };
        r.wr_id = 0xa70;
        r.opcode = IBV_WR_ATOMIC_WRITE;
        r.sg_list = &mut sge;
        r.num_sge = 1;
        r.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        r.wr.rdma = rdma_t { remote_addr: self.addr(0), rkey: self.rkey() };
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: qp is live; the WR and its SGE outlive the call.
        let rc = unsafe { ibv_post_send(self.qp, &mut r, &mut bad) };
        if rc != libc::EINVAL {
            return Err(format!("ibv_post_send(IBV_WR_ATOMIC_WRITE) returned {rc}, want EINVAL"));
        }
        Ok(())
    }

    /// Create the QP and register an MR of `mr_len` bytes.
    pub fn create(&mut self, kind: QpKind, mr_len: usize) -> Result<(), String> {
        self.create_sized(kind, mr_len, SQ_DEPTH, RQ_DEPTH)
    }

    /// `create` with a send queue of `sq` and a receive queue of `rq` work requests.
    pub fn create_sized(&mut self, kind: QpKind, mr_len: usize, sq: u32, rq: u32)
        -> Result<(), String> {
        self.kind = kind;
        let mut last = String::new();
        // IBTA 1.5's send ops this QP asks for: what the device serves and this
        // libibverbs can post (ibv_wr_atomic_write from 44, ibv_wr_flush from 45).
        let ibta = (self.ibta15 && kind == QpKind::Rc).then(|| {
            let mut extra = 0;
            if self.caps.atomic_write && self.rdma_core_at_least(44) {
                extra |= QP_EX_WITH_ATOMIC_WRITE;
            }
            if self.caps.flush && self.rdma_core_at_least(45) {
                extra |= QP_EX_WITH_FLUSH;
            }
            extra
        }).filter(|&e| e != 0);
        for want in WANT_INLINE {
            // SAFETY: ibv_qp_init_attr is plain data; zero is a valid start.
            let mut ia: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
            ia.send_cq = self.cq;
            ia.recv_cq = self.cq;
            ia.qp_type = match kind {
                QpKind::Rc => ibv_qp_type::IBV_QPT_RC,
                QpKind::Uc => ibv_qp_type::IBV_QPT_UC,
            };
            ia.sq_sig_all = 0;
            ia.cap.max_send_wr = sq;
            ia.cap.max_recv_wr = rq;
            ia.cap.max_send_sge = MAX_SGE;
            ia.cap.max_recv_sge = MAX_SGE;
            ia.cap.max_inline_data = want;
            if let Some(extra) = ibta {
                // Where the provider refuses them, an ordinary QP below.
                if let Ok((qp, cap)) = self.create_qp_ex(&ia, Self::send_ops(kind, extra)) {
                    self.qp = qp;
                    // SAFETY: a QP made with send ops has an ibv_qp_ex.
                    self.qpx = unsafe { ibv_qp_to_qp_ex(qp) };
                    self.posts_atomic_write = extra & QP_EX_WITH_ATOMIC_WRITE != 0 && !self.qpx.is_null();
                    self.posts_flush = extra & QP_EX_WITH_FLUSH != 0 && !self.qpx.is_null();
                    self.max_inline = cap.max_inline_data;
                    break;
                }
            }
            // SAFETY: pd and cq are live and belong to this context; ia outlives the call.
            let qp = unsafe { ibv_create_qp(self.pd, &mut ia) };
            if !qp.is_null() {
                self.qp = qp;
                // The provider writes back what it gave.
                self.max_inline = ia.cap.max_inline_data;
                break;
            }
            last = format!("ibv_create_qp({}, inline {want}): {}", kind.name(), last_os_error());
        }
        if self.qp.is_null() {
            return Err(last);
        }
        // SAFETY: an anonymous private mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(ptr::null_mut(), mr_len, libc::PROT_READ | libc::PROT_WRITE,
                       libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap({mr_len}): {}", last_os_error()));
        }
        self.buf = p as *mut u8;
        self.buf_len = mr_len;
        let base = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE
            | ibv_access_flags::IBV_ACCESS_REMOTE_READ;
        let all = base | ibv_access_flags::IBV_ACCESS_REMOTE_ATOMIC;
        // A region a peer may FLUSH, where the device serves it.
        let flush = (self.ibta15 && kind == QpKind::Rc && self.caps.flush)
            .then_some(ibv_access_flags(all.0 | IBV_ACCESS_FLUSH_GLOBAL));
        for access in flush.into_iter().chain([all, base]) {
            // SAFETY: buf..buf+buf_len is our mapping and outlives the MR (unmapped
            // after ibv_dereg_mr in Drop); pd is live.
            self.mr = unsafe { ibv_reg_mr(self.pd, p, mr_len, access.0 as c_int) };
            if !self.mr.is_null() {
                self.takes_flush = access.0 & IBV_ACCESS_FLUSH_GLOBAL != 0;
                break;
            }
        }
        if self.mr.is_null() {
            return Err(format!("ibv_reg_mr({mr_len} bytes): {}", last_os_error()));
        }
        Ok(())
    }

    pub fn qpn(&self) -> u32 {
        // SAFETY: qp is live after create().
        unsafe { (*self.qp).qp_num }
    }

    pub fn rkey(&self) -> u32 {
        // SAFETY: mr is live after create().
        unsafe { (*self.mr).rkey }
    }

    pub fn lkey(&self) -> u32 {
        // SAFETY: mr is live after create().
        unsafe { (*self.mr).lkey }
    }

    /// The virtual address of MR offset `off` (what the peer puts in a RETH).
    pub fn addr(&self, off: usize) -> u64 {
        self.buf as u64 + off as u64
    }

    pub fn mr_len(&self) -> usize {
        self.buf_len
    }

    /// The whole MR as bytes.  The protocol never touches a region while a work
    /// request on it is outstanding (except inline sources, which the spec allows).
    pub fn mem(&mut self) -> &mut [u8] {
        // SAFETY: buf..buf+buf_len is our live mapping; &mut self keeps this the only
        // slice of it; the device writes it only for work requests the caller waits for.
        unsafe { std::slice::from_raw_parts_mut(self.buf, self.buf_len) }
    }

    fn modify(&self, attr: &mut ibv_qp_attr, mask: ibv_qp_attr_mask, what: &str) -> Result<(), String> {
        // SAFETY: qp is live; attr outlives the call.
        let rc = unsafe { ibv_modify_qp(self.qp, attr, mask.0 as c_int) };
        if rc != 0 {
            return Err(format!("ibv_modify_qp(to {what}): {}", errno_str(rc)));
        }
        Ok(())
    }

    fn to_state(&self, st: ibv_qp_state::Type, what: &str) -> Result<(), String> {
        // SAFETY: plain data.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = st;
        self.modify(&mut a, ibv_qp_attr_mask::IBV_QP_STATE, what)
    }

    pub fn to_init(&self) -> Result<(), String> {
        // SAFETY: plain data.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_INIT;
        a.pkey_index = 0;
        a.port_num = 1;
        let w = ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
        a.qp_access_flags = match self.kind {
            QpKind::Rc => (w | ibv_access_flags::IBV_ACCESS_REMOTE_READ
                | ibv_access_flags::IBV_ACCESS_REMOTE_ATOMIC).0,
            QpKind::Uc => w.0,
        };
        if self.takes_flush {
            // The QP must allow a FLUSH too (rxe checks both, as ferrite does).
            a.qp_access_flags |= IBV_ACCESS_FLUSH_GLOBAL;
        }
        use ibv_qp_attr_mask as m;
        self.modify(&mut a, m::IBV_QP_STATE | m::IBV_QP_PKEY_INDEX | m::IBV_QP_PORT
                    | m::IBV_QP_ACCESS_FLAGS, "INIT")
    }

    /// INIT -> RTR toward the peer's QP.
    pub fn to_rtr(&self, r: &Remote, mtu: u32, rq_psn: u32, max_dest_rd_atomic: u8)
        -> Result<(), String> {
        // SAFETY: plain data.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_RTR;
        a.path_mtu = mtu_enum(mtu);
        a.dest_qp_num = r.qpn;
        a.rq_psn = rq_psn;
        a.ah_attr.is_global = 1;
        a.ah_attr.port_num = 1;
        a.ah_attr.grh.dgid = ibv_gid { raw: r.gid };
        a.ah_attr.grh.sgid_index = self.gid_index as u8;
        a.ah_attr.grh.hop_limit = 1;
        use ibv_qp_attr_mask as m;
        let mut mask = m::IBV_QP_STATE | m::IBV_QP_AV | m::IBV_QP_PATH_MTU | m::IBV_QP_DEST_QPN
            | m::IBV_QP_RQ_PSN;
        if self.kind == QpKind::Rc {
            a.max_dest_rd_atomic = max_dest_rd_atomic;
            a.min_rnr_timer = 12;
            mask |= m::IBV_QP_MAX_DEST_RD_ATOMIC | m::IBV_QP_MIN_RNR_TIMER;
        }
        self.modify(&mut a, mask, "RTR")
    }

    /// RTR -> RTS.
    pub fn to_rts(&self, sq_psn: u32, max_rd_atomic: u8) -> Result<(), String> {
        self.to_rts_timers(sq_psn, max_rd_atomic, Timers::default())
    }

    /// RTR -> RTS with the requester's `t` (RC).
    pub fn to_rts_timers(&self, sq_psn: u32, max_rd_atomic: u8, t: Timers) -> Result<(), String> {
        // SAFETY: plain data.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_RTS;
        a.sq_psn = sq_psn;
        use ibv_qp_attr_mask as m;
        let mut mask = m::IBV_QP_STATE | m::IBV_QP_SQ_PSN;
        if self.kind == QpKind::Rc {
            a.timeout = t.timeout;
            a.retry_cnt = t.retry_cnt;
            a.rnr_retry = t.rnr_retry;
            a.max_rd_atomic = max_rd_atomic;
            mask |= m::IBV_QP_TIMEOUT | m::IBV_QP_RETRY_CNT | m::IBV_QP_RNR_RETRY
                | m::IBV_QP_MAX_QP_RD_ATOMIC;
        }
        self.modify(&mut a, mask, "RTS")
    }

    /// Move the QP to ERR (flushing what is outstanding), drain the CQ, then RESET
    /// and INIT, ready for `to_rtr` again.  Returns the flushed completions.
    pub fn reset(&self) -> Result<Vec<Wc>, String> {
        self.to_state(ibv_qp_state::IBV_QPS_ERR, "ERR")?;
        let flushed = self.drain(Duration::from_millis(100));
        self.to_state(ibv_qp_state::IBV_QPS_RESET, "RESET")?;
        self.to_init()?;
        Ok(flushed)
    }

    /// Move the QP to ERR (ibv_modify_qp), flushing what is outstanding.
    pub fn to_err(&self) -> Result<(), String> {
        self.to_state(ibv_qp_state::IBV_QPS_ERR, "ERR")
    }

    /// The QP's state as the device reports it (ibv_query_qp), enum ibv_qp_state.
    pub fn qp_state(&self) -> Result<u32, String> {
        if self.qp.is_null() {
            return Err("no QP".into());
        }
        // SAFETY: plain data the call fills.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut ia: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        // SAFETY: qp is live; both out-structures outlive the call.
        let rc = unsafe { ibv_query_qp(self.qp, &mut a, ibv_qp_attr_mask::IBV_QP_STATE.0 as c_int, &mut ia) };
        if rc != 0 {
            return Err(format!("ibv_query_qp: {}", errno_str(rc)));
        }
        Ok(a.qp_state)
    }

    /// Destroy the QP alone (the peer's view: it is gone), after acknowledging its
    /// async events (ibv_destroy_qp waits for that); returns them.
    pub fn destroy_qp(&mut self) -> Result<Vec<AsyncEvent>, String> {
        let ev = self.async_events()?;
        if self.qp.is_null() {
            return Err("no QP".into());
        }
        // SAFETY: qp is live and destroyed once; its events were acknowledged above.
        let rc = unsafe { ibv_destroy_qp(self.qp) };
        if rc != 0 {
            return Err(format!("ibv_destroy_qp: {}", errno_str(rc)));
        }
        self.qp = ptr::null_mut();
        self.qpx = ptr::null_mut();
        Ok(ev)
    }

    /// The async events waiting on the context, each acknowledged (without blocking:
    /// the event fd is made non-blocking on first use).
    pub fn async_events(&self) -> Result<Vec<AsyncEvent>, String> {
        // SAFETY: ctx is open; async_fd is its event file, which only this process reads.
        let fd = unsafe { (*self.ctx).async_fd };
        // SAFETY: fcntl on an fd this context owns; no memory is passed.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
            return Err(format!("fcntl(async_fd): {}", last_os_error()));
        }
        let mut out = Vec::new();
        loop {
            let mut e = RawAsyncEvent { element: ptr::null_mut(), event_type: u32::MAX };
            // SAFETY: RawAsyncEvent has struct ibv_async_event's layout (a union of
            // pointers and an int, then the enum); the call fills it or fails.
            let rc = unsafe { ibv_get_async_event(self.ctx, &mut e as *mut RawAsyncEvent as *mut ibv_async_event) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(out);
                }
                return Err(format!("ibv_get_async_event: {err}"));
            }
            // The QP events name a QP: ours (still alive, its events not yet acked).
            let qp_num = (is_qp_event(e.event_type) && !e.element.is_null() && e.element == self.qp as *mut _)
                // SAFETY: element is our live QP.
                .then(|| unsafe { (*self.qp).qp_num });
            out.push(AsyncEvent { kind: e.event_type, qp_num });
            // SAFETY: e was filled by ibv_get_async_event and is acknowledged once.
            unsafe { ibv_ack_async_event(&mut e as *mut RawAsyncEvent as *mut ibv_async_event) };
        }
    }

    fn sge_list(&self, sges: &[(usize, usize)]) -> Result<Vec<ibv_sge>, String> {
        self.sge_list_key(sges, self.lkey())
    }

    /// SGEs over the MR, carrying `lkey` (a wrong one on purpose, for the error tests).
    fn sge_list_key(&self, sges: &[(usize, usize)], lkey: u32) -> Result<Vec<ibv_sge>, String> {
        sges.iter()
            .map(|&(off, len)| {
                if off + len > self.buf_len {
                    return Err(format!("SGE {off}+{len} outside the MR ({} bytes)", self.buf_len));
                }
                Ok(ibv_sge { addr: self.addr(off), length: len as u32, lkey })
            })
            .collect()
    }

    /// Post a chain of send WRs with one ibv_post_send call.
    pub fn post_send(&self, wrs: &[SendWr]) -> Result<(), String> {
        self.post_send_keys(wrs, &[])
    }

    /// `post_send`, with the SGEs of WR `i` carrying `lkeys[i]` where given.
    pub fn post_send_keys(&self, wrs: &[SendWr], lkeys: &[Option<u32>]) -> Result<(), String> {
        let mut sgls: Vec<Vec<ibv_sge>> = Vec::with_capacity(wrs.len());
        for (i, w) in wrs.iter().enumerate() {
            let key = lkeys.get(i).copied().flatten().unwrap_or_else(|| self.lkey());
            sgls.push(self.sge_list_key(&w.sges, key)?);
        }
        let mut raw: Vec<ibv_send_wr> = Vec::with_capacity(wrs.len());
        for (w, sgl) in wrs.iter().zip(sgls.iter_mut()) {
            // SAFETY: ibv_send_wr is plain data (pointers, integers, unions of them);
            // all-zero is its neutral value.
            let mut r: ibv_send_wr = unsafe { std::mem::zeroed() };
            r.wr_id = w.wr_id;
            r.sg_list = if sgl.is_empty() { ptr::null_mut() } else { sgl.as_mut_ptr() };
            r.num_sge = sgl.len() as c_int;
            let mut flags = ibv_send_flags(0);
            if w.signaled {
                flags |= ibv_send_flags::IBV_SEND_SIGNALED;
            }
            if w.inline {
                flags |= ibv_send_flags::IBV_SEND_INLINE;
            }
            if w.fence {
                flags |= ibv_send_flags::IBV_SEND_FENCE;
            }
            r.send_flags = flags.0;
            use ibv_wr_opcode::*;
            match w.op {
                SendOp::Send => r.opcode = IBV_WR_SEND,
                SendOp::SendImm(imm) => {
                    r.opcode = IBV_WR_SEND_WITH_IMM;
                    r.imm_data_invalidated_rkey_union.imm_data = imm.to_be();
                }
                SendOp::Write { raddr, rkey } => {
                    r.opcode = IBV_WR_RDMA_WRITE;
                    r.wr.rdma = rdma_t { remote_addr: raddr, rkey };
                }
                SendOp::WriteImm { raddr, rkey, imm } => {
                    r.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
                    r.wr.rdma = rdma_t { remote_addr: raddr, rkey };
                    r.imm_data_invalidated_rkey_union.imm_data = imm.to_be();
                }
                SendOp::Read { raddr, rkey } => {
                    r.opcode = IBV_WR_RDMA_READ;
                    r.wr.rdma = rdma_t { remote_addr: raddr, rkey };
                }
                SendOp::FetchAdd { raddr, rkey, add } => {
                    r.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
                    r.wr.atomic = atomic_t { remote_addr: raddr, compare_add: add, swap: 0, rkey };
                }
                SendOp::CmpSwp { raddr, rkey, compare, swap } => {
                    r.opcode = IBV_WR_ATOMIC_CMP_AND_SWP;
                    r.wr.atomic = atomic_t { remote_addr: raddr, compare_add: compare, swap, rkey };
                }
                SendOp::AtomicWrite { .. } | SendOp::Flush { .. } => {
                    return Err("ATOMIC WRITE and FLUSH go through post_wr".into());
                }
            }
            raw.push(r);
        }
        // Link the chain only now: `raw` no longer moves.
        let n = raw.len();
        for i in 0..n.saturating_sub(1) {
            let next: *mut ibv_send_wr = &mut raw[i + 1];
            raw[i].next = next;
        }
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: qp is live; the chain and its SGE lists (sgls) outlive the call,
        // which copies them (and inline data) before returning.
        let rc = unsafe { ibv_post_send(self.qp, raw.as_mut_ptr(), &mut bad) };
        if rc != 0 {
            let at = raw.iter().position(|r| ptr::eq(r, bad)).map_or("?".into(), |i| i.to_string());
            return Err(format!("ibv_post_send: {} (bad WR #{at} of {n})", errno_str(rc)));
        }
        Ok(())
    }

    /// Post `wrs` in one ibv_wr_start() .. ibv_wr_complete() batch of the extended
    /// API (the QP was made with it: see `want_ibta15`).  Inline data is not
    /// offered here.
    pub fn post_wr(&self, wrs: &[SendWr]) -> Result<(), String> {
        let x = self.qpx;
        if x.is_null() {
            return Err("the QP has no ibv_qp_ex".into());
        }
        let tail = x as *mut QpExTail;
        let mut sgls: Vec<Vec<ibv_sge>> = Vec::with_capacity(wrs.len());
        for w in wrs {
            if w.inline {
                return Err("post_wr does not post inline data".into());
            }
            sgls.push(self.sge_list(&w.sges)?);
        }
        // SAFETY: x is the live QP's ibv_qp_ex; every builder called was set by the
        // provider for a send op the QP was made with (the tail ones only where this
        // libibverbs has them: posts_atomic_write/posts_flush); the SGE lists
        // outlive the batch; wr_complete ends what wr_start began, or wr_abort.
        unsafe {
            let start = (*x).wr_start.ok_or("no wr_start")?;
            let complete = (*x).wr_complete.ok_or("no wr_complete")?;
            let abort = (*x).wr_abort.ok_or("no wr_abort")?;
            start(x);
            for (w, sgl) in wrs.iter().zip(&sgls) {
                (*x).wr_id = w.wr_id;
                let mut flags = 0;
                if w.signaled {
                    flags |= ibv_send_flags::IBV_SEND_SIGNALED.0;
                }
                if w.fence {
                    flags |= ibv_send_flags::IBV_SEND_FENCE.0;
                }
                (*x).wr_flags = flags;
                let r: Result<bool, String> = match w.op {
                    SendOp::Send => (*x).wr_send.map(|f| f(x)).map(|_| true).ok_or("no wr_send".into()),
                    SendOp::SendImm(imm) => {
                        (*x).wr_send_imm.map(|f| f(x, imm.to_be())).map(|_| true).ok_or("no wr_send_imm".into())
                    }
                    SendOp::Write { raddr, rkey } => {
                        (*x).wr_rdma_write.map(|f| f(x, rkey, raddr)).map(|_| true).ok_or("no wr_rdma_write".into())
                    }
                    SendOp::WriteImm { raddr, rkey, imm } => (*x)
                        .wr_rdma_write_imm
                        .map(|f| f(x, rkey, raddr, imm.to_be()))
                        .map(|_| true)
                        .ok_or("no wr_rdma_write_imm".into()),
                    SendOp::Read { raddr, rkey } => {
                        (*x).wr_rdma_read.map(|f| f(x, rkey, raddr)).map(|_| true).ok_or("no wr_rdma_read".into())
                    }
                    SendOp::FetchAdd { raddr, rkey, add } => (*x)
                        .wr_atomic_fetch_add
                        .map(|f| f(x, rkey, raddr, add))
                        .map(|_| true)
                        .ok_or("no wr_atomic_fetch_add".into()),
                    SendOp::CmpSwp { raddr, rkey, compare, swap } => (*x)
                        .wr_atomic_cmp_swp
                        .map(|f| f(x, rkey, raddr, compare, swap))
                        .map(|_| true)
                        .ok_or("no wr_atomic_cmp_swp".into()),
                    SendOp::AtomicWrite { raddr, rkey, value } => match (*tail).wr_atomic_write {
                        Some(f) if self.posts_atomic_write => {
                            f(x, rkey, raddr, value.as_ptr() as *const std::os::raw::c_void);
                            Ok(false)
                        }
                        _ => Err("the QP cannot post ATOMIC WRITE".into()),
                    },
                    SendOp::Flush { raddr, rkey, len, ty, level } => match (*tail).wr_flush {
                        Some(f) if self.posts_flush => {
                            f(x, rkey, raddr, len, ty, level);
                            Ok(false)
                        }
                        _ => Err("the QP cannot post FLUSH".into()),
                    },
                };
                match r {
                    Ok(true) => {
                        let set = (*x).wr_set_sge_list.ok_or("no wr_set_sge_list")?;
                        set(x, sgl.len(), sgl.as_ptr());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        abort(x);
                        return Err(e);
                    }
                }
            }
            let rc = complete(x);
            if rc != 0 {
                return Err(format!("ibv_wr_complete: {}", errno_str(rc)));
            }
        }
        Ok(())
    }

    /// Post a chain of receive WRs with one ibv_post_recv call.
    pub fn post_recv(&self, wrs: &[RecvWr]) -> Result<(), String> {
        let mut sgls: Vec<Vec<ibv_sge>> = Vec::with_capacity(wrs.len());
        for w in wrs {
            sgls.push(self.sge_list(&w.sges)?);
        }
        let mut raw: Vec<ibv_recv_wr> = wrs
            .iter()
            .zip(sgls.iter_mut())
            .map(|(w, sgl)| ibv_recv_wr {
                wr_id: w.wr_id,
                next: ptr::null_mut(),
                sg_list: if sgl.is_empty() { ptr::null_mut() } else { sgl.as_mut_ptr() },
                num_sge: sgl.len() as c_int,
            })
            .collect();
        let n = raw.len();
        for i in 0..n.saturating_sub(1) {
            let next: *mut ibv_recv_wr = &mut raw[i + 1];
            raw[i].next = next;
        }
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // SAFETY: qp is live; the chain and its SGE lists outlive the call.
        let rc = unsafe { ibv_post_recv(self.qp, raw.as_mut_ptr(), &mut bad) };
        if rc != 0 {
            return Err(format!("ibv_post_recv: {}", errno_str(rc)));
        }
        Ok(())
    }

    /// Poll up to `max` completions without waiting.
    pub fn poll(&self, max: usize, out: &mut Vec<Wc>) -> Result<usize, String> {
        const BATCH: usize = 16;
        // SAFETY: ibv_wc is plain data.
        let mut wcs: [ibv_wc; BATCH] = unsafe { std::mem::zeroed() };
        let mut got = 0;
        while got < max {
            let want = (max - got).min(BATCH);
            // SAFETY: cq is live; wcs has room for `want` entries.
            let n = unsafe { ibv_poll_cq(self.cq, want as c_int, wcs.as_mut_ptr()) };
            if n < 0 {
                return Err(format!("ibv_poll_cq: {n}"));
            }
            for w in &wcs[..n as usize] {
                let with_imm = w.wc_flags & ibv_wc_flags::IBV_WC_WITH_IMM.0 != 0;
                out.push(Wc {
                    wr_id: w.wr_id,
                    status: w.status,
                    opcode: w.opcode,
                    byte_len: w.byte_len,
                    // SAFETY: the union holds imm_data when IBV_WC_WITH_IMM is set;
                    // either member is a plain u32.
                    imm: with_imm.then(|| u32::from_be(unsafe { w.imm_data_invalidated_rkey_union.imm_data })),
                    qp_num: w.qp_num,
                    vendor_err: w.vendor_err,
                });
            }
            got += n as usize;
            if (n as usize) < want {
                break;
            }
        }
        Ok(got)
    }

    /// Wait for `n` completions (or the first error completion) for at most `timeout`:
    /// busy-polling, yielding the CPU after a while (the soft-RoCE peer runs on the
    /// same CPUs), or on the completion channel when there is one.
    pub fn wait(&self, n: usize, timeout: Duration) -> Result<Vec<Wc>, String> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut out = Vec::with_capacity(n);
        let mut spins = 0u32;
        loop {
            self.poll(n - out.len(), &mut out)?;
            if out.len() >= n || out.iter().any(|w| !w.ok()) {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out after {:?} with {} of {n} completions",
                                   timeout, out.len()));
            }
            if !self.channel.is_null() {
                self.wait_event(deadline - now, &mut out, n)?;
            } else if spins < 100 {
                spins += 1;
                std::hint::spin_loop();
            } else if now - start < Duration::from_millis(2) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// Arm the CQ, re-poll (closing the race with a completion that came before the
    /// arming), then sleep on the channel's fd until an event or `left` runs out.
    fn wait_event(&self, left: Duration, out: &mut Vec<Wc>, n: usize) -> Result<(), String> {
        // SAFETY: cq is live.
        let rc = unsafe { ibv_req_notify_cq(self.cq, 0) };
        if rc != 0 {
            return Err(format!("ibv_req_notify_cq: {}", errno_str(rc)));
        }
        if self.poll(n - out.len(), out)? > 0 {
            return Ok(());
        }
        // SAFETY: channel is live while the endpoint is.
        let fd = unsafe { (*self.channel).fd };
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as c_int;
        // SAFETY: pfd is one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            return Err(format!("poll(completion channel): {}", last_os_error()));
        }
        if r == 0 {
            return Ok(());
        }
        let mut ev_cq: *mut ibv_cq = ptr::null_mut();
        let mut ev_ctx: *mut std::os::raw::c_void = ptr::null_mut();
        // SAFETY: the channel is live and readable; the out-pointers outlive the call.
        let rc = unsafe { ibv_get_cq_event(self.channel, &mut ev_cq, &mut ev_ctx) };
        if rc != 0 {
            return Err(format!("ibv_get_cq_event: {}", last_os_error()));
        }
        if ev_cq != self.cq {
            return Err("ibv_get_cq_event returned another CQ".into());
        }
        // SAFETY: one event of this CQ was returned above and is acknowledged once.
        unsafe { ibv_ack_cq_events(ev_cq, 1) };
        Ok(())
    }

    /// Poll until the CQ has been empty for `quiet` (at most 2 s in all).
    pub fn drain(&self, quiet: Duration) -> Vec<Wc> {
        let start = Instant::now();
        let mut last = Instant::now();
        let mut out = Vec::new();
        while last.elapsed() < quiet && start.elapsed() < Duration::from_secs(2) {
            match self.poll(64, &mut out) {
                Ok(0) => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => last = Instant::now(),
                Err(_) => break,
            }
        }
        out
    }
}

/// The peer's side of the connection.
pub struct Remote {
    pub qpn: u32,
    pub psn: u32,
    pub gid: Gid,
    pub rkey: u32,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // ibv_destroy_qp waits until every async event reported for the QP was
        // acknowledged: take and acknowledge what is left.
        if !self.ctx.is_null() && !self.qp.is_null() {
            let _ = self.async_events();
        }
        // SAFETY: each object is destroyed once, children before parents (QP and MR
        // before the CQ and PD, the CQ before its channel, all before the context);
        // all CQ events taken were acknowledged in wait_event; the mapping goes after
        // the MR that pinned it.
        unsafe {
            if !self.qp.is_null() {
                ibv_destroy_qp(self.qp);
            }
            if !self.mr.is_null() {
                ibv_dereg_mr(self.mr);
            }
            if !self.buf.is_null() {
                libc::munmap(self.buf as *mut libc::c_void, self.buf_len);
            }
            if !self.cq.is_null() {
                ibv_destroy_cq(self.cq);
            }
            if !self.channel.is_null() {
                ibv_destroy_comp_channel(self.channel);
            }
            if !self.pd.is_null() {
                ibv_dealloc_pd(self.pd);
            }
            if !self.ctx.is_null() {
                ibv_close_device(self.ctx);
            }
        }
    }
}

// --- The benchmark's fast path -------------------------------------------------------
//
// `post_send`/`post_recv` above build their work requests afresh on every call, which
// suits a test that checks one operation at a time.  A benchmark posts the same shape
// of work request millions of times, so the chains below are built once, re-armed
// with a new wr_id and signaling flag per post, and posted without any allocation.

/// The operation of every WR in a `SendChain`.
#[derive(Clone, Copy, Debug)]
pub enum ChainOp {
    Send,
    Write { raddr: u64, rkey: u32 },
    Read { raddr: u64, rkey: u32 },
}

/// A chain of identical send WRs (one SGE each, over the same local bytes), built
/// once and posted many times, whole or in part.
pub struct SendChain {
    wrs: Vec<ibv_send_wr>,
    // The WRs point into this vector's heap buffer, which never moves: it is never
    // resized after `send_chain` filled it.
    _sges: Vec<ibv_sge>,
}

/// A chain of identical receive WRs (one SGE each).
pub struct RecvChain {
    wrs: Vec<ibv_recv_wr>,
    _sges: Vec<ibv_sge>,
}

impl SendChain {
    pub fn len(&self) -> usize {
        self.wrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wrs.is_empty()
    }

    /// Give WR `i` the id `wr_id`, signaled or not.
    pub fn arm(&mut self, i: usize, wr_id: u64, signaled: bool) {
        let w = &mut self.wrs[i];
        w.wr_id = wr_id;
        let sig = ibv_send_flags::IBV_SEND_SIGNALED.0;
        w.send_flags = if signaled { w.send_flags | sig } else { w.send_flags & !sig };
    }
}

impl RecvChain {
    pub fn len(&self) -> usize {
        self.wrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wrs.is_empty()
    }

    pub fn arm(&mut self, i: usize, wr_id: u64) {
        self.wrs[i].wr_id = wr_id;
    }
}

impl Endpoint {
    /// `n` send WRs of `op`, each carrying MR bytes `off..off + len` (inline data if
    /// `inline`), linked into one chain.
    pub fn send_chain(&self, op: ChainOp, off: usize, len: usize, n: usize, inline: bool)
        -> Result<SendChain, String> {
        let one = self.sge_list(&[(off, len)])?[0];
        let mut sges = vec![one; n];
        let mut wrs: Vec<ibv_send_wr> = Vec::with_capacity(n);
        for sge in sges.iter_mut() {
            // SAFETY: ibv_send_wr is plain data; all-zero is its neutral value.
            let mut r: ibv_send_wr = unsafe { std::mem::zeroed() };
            r.sg_list = sge;
            r.num_sge = 1;
            if inline {
                r.send_flags = ibv_send_flags::IBV_SEND_INLINE.0;
            }
            use ibv_wr_opcode::*;
            match op {
                ChainOp::Send => r.opcode = IBV_WR_SEND,
                ChainOp::Write { raddr, rkey } => {
                    r.opcode = IBV_WR_RDMA_WRITE;
                    r.wr.rdma = rdma_t { remote_addr: raddr, rkey };
                }
                ChainOp::Read { raddr, rkey } => {
                    r.opcode = IBV_WR_RDMA_READ;
                    r.wr.rdma = rdma_t { remote_addr: raddr, rkey };
                }
            }
            wrs.push(r);
        }
        for i in 0..n.saturating_sub(1) {
            let next: *mut ibv_send_wr = &mut wrs[i + 1];
            wrs[i].next = next;
        }
        Ok(SendChain { wrs, _sges: sges })
    }

    /// `n` receive WRs, each scattering into MR bytes `off..off + len`.
    pub fn recv_chain(&self, off: usize, len: usize, n: usize) -> Result<RecvChain, String> {
        let one = self.sge_list(&[(off, len)])?[0];
        let mut sges = vec![one; n];
        let mut wrs: Vec<ibv_recv_wr> = sges
            .iter_mut()
            .map(|sge| ibv_recv_wr { wr_id: 0, next: ptr::null_mut(), sg_list: sge, num_sge: 1 })
            .collect();
        for i in 0..n.saturating_sub(1) {
            let next: *mut ibv_recv_wr = &mut wrs[i + 1];
            wrs[i].next = next;
        }
        Ok(RecvChain { wrs, _sges: sges })
    }

    /// Post the first `n` WRs of `c` with one ibv_post_send.
    pub fn post_chain(&self, c: &mut SendChain, n: usize) -> Result<(), String> {
        if n == 0 || n > c.wrs.len() {
            return Err(format!("post_chain: {n} of a chain of {}", c.wrs.len()));
        }
        let keep = c.wrs[n - 1].next;
        c.wrs[n - 1].next = ptr::null_mut();
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: qp is live; the chain's WRs and SGEs are valid and outlive the call,
        // which copies them (and inline data) before returning.
        let rc = unsafe { ibv_post_send(self.qp, c.wrs.as_mut_ptr(), &mut bad) };
        c.wrs[n - 1].next = keep;
        if rc != 0 {
            return Err(format!("ibv_post_send({n} WRs): {}", errno_str(rc)));
        }
        Ok(())
    }

    /// Post the first `n` WRs of `c` with one ibv_post_recv.
    pub fn post_recv_chain(&self, c: &mut RecvChain, n: usize) -> Result<(), String> {
        if n == 0 || n > c.wrs.len() {
            return Err(format!("post_recv_chain: {n} of a chain of {}", c.wrs.len()));
        }
        let keep = c.wrs[n - 1].next;
        c.wrs[n - 1].next = ptr::null_mut();
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // SAFETY: qp is live; the chain and its SGEs are valid for the call.
        let rc = unsafe { ibv_post_recv(self.qp, c.wrs.as_mut_ptr(), &mut bad) };
        c.wrs[n - 1].next = keep;
        if rc != 0 {
            return Err(format!("ibv_post_recv({n} WRs): {}", errno_str(rc)));
        }
        Ok(())
    }

    /// One ibv_poll_cq into `wcs`, without waiting; returns how many it filled.
    pub fn poll_raw(&self, wcs: &mut [ibv_wc]) -> Result<usize, String> {
        let want = wcs.len().min(i32::MAX as usize) as c_int;
        // SAFETY: cq is live; wcs has room for `want` entries.
        let n = unsafe { ibv_poll_cq(self.cq, want, wcs.as_mut_ptr()) };
        if n < 0 {
            return Err(format!("ibv_poll_cq: {n}"));
        }
        Ok(n as usize)
    }

    /// Like `poll_raw`, but where the CQ is empty and the endpoint has a completion
    /// channel, sleep on it for at most `timeout`: arm the CQ, poll once more (closing
    /// the race with a completion that came before the arming), wait for the event,
    /// acknowledge it and poll again.  A sink that sleeps leaves its CPU to the device.
    pub fn poll_or_sleep(&self, wcs: &mut [ibv_wc], timeout: Duration) -> Result<usize, String> {
        let n = self.poll_raw(wcs)?;
        if n > 0 || self.channel.is_null() {
            return Ok(n);
        }
        // SAFETY: cq is live.
        let rc = unsafe { ibv_req_notify_cq(self.cq, 0) };
        if rc != 0 {
            return Err(format!("ibv_req_notify_cq: {}", errno_str(rc)));
        }
        let n = self.poll_raw(wcs)?;
        if n > 0 {
            return Ok(n);
        }
        // SAFETY: channel is live while the endpoint is.
        let fd = unsafe { (*self.channel).fd };
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as c_int;
        // SAFETY: pfd is one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            return Err(format!("poll(completion channel): {}", last_os_error()));
        }
        if r > 0 {
            let mut ev_cq: *mut ibv_cq = ptr::null_mut();
            let mut ev_ctx: *mut std::os::raw::c_void = ptr::null_mut();
            // SAFETY: the channel is live and readable; the out-pointers outlive the call.
            if unsafe { ibv_get_cq_event(self.channel, &mut ev_cq, &mut ev_ctx) } != 0 {
                return Err(format!("ibv_get_cq_event: {}", last_os_error()));
            }
            // SAFETY: one event of this endpoint's only CQ was returned above.
            unsafe { ibv_ack_cq_events(ev_cq, 1) };
        }
        self.poll_raw(wcs)
    }

    /// Read MR byte `off` as the device may have just written it (a volatile load).
    pub fn peek(&self, off: usize) -> u8 {
        assert!(off < self.buf_len);
        // SAFETY: off is inside our live mapping; a volatile byte load is never torn
        // and is not cached across iterations of a polling loop.
        unsafe { ptr::read_volatile(self.buf.add(off)) }
    }

    /// Store MR byte `off` (a volatile store, before it is posted as a source).
    pub fn poke(&self, off: usize, v: u8) {
        assert!(off < self.buf_len);
        // SAFETY: off is inside our live mapping; the benchmark writes a byte only
        // while no work request reads it, or as inline data copied at post time.
        unsafe { ptr::write_volatile(self.buf.add(off), v) }
    }
}
