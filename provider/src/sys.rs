//! rdma-core's private provider ABI, mirrored (driver.h and kern-abi.h are not
//! installed), plus the few public verbs.h structures the provider touches.
//!
//! One layout per provider-ABI generation, chosen at build time (`pabi` cfg, set by
//! build.rs from the rdma-core release): 33 (v33.x), 34 (v34-v56), 65 (v65.x).
//! One public structure moves inside a generation: `struct ibv_qp_ex` gained
//! `wr_atomic_write` in v44 and `wr_flush` in v45, which moves the members of
//! `struct verbs_qp` after it; that one is chosen from the release's major number
//! ([`RDMA_CORE_MAJOR`]).  Every size below was measured against the release's own
//! headers; the `const` assertions at the bottom make a wrong layout a build
//! failure, and provider/layout-check.c checks the public ones against the
//! installed headers.

use core::ffi::{c_char, c_int, c_uint, c_void};

/// The provider ABI generation this build speaks.
pub const PABI: &str = env!("FERRITE_PABI");

/// The rdma-core release this build is for: FERRITE_RDMA_CORE, with build.rs's default.
pub const RDMA_CORE: &str = match option_env!("FERRITE_RDMA_CORE") {
    Some(r) => r,
    None => "44.0",
};

/// The major number of [`RDMA_CORE`].
pub const RDMA_CORE_MAJOR: u32 = {
    let b = RDMA_CORE.as_bytes();
    let mut i = 0;
    let mut n = 0u32;
    while i < b.len() && b[i].is_ascii_digit() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
};

// The generation and the release must agree (both come from FERRITE_RDMA_CORE).
#[cfg(pabi = "33")]
const _: () = assert!(RDMA_CORE_MAJOR == 33);
#[cfg(pabi = "34")]
const _: () = assert!(RDMA_CORE_MAJOR >= 34 && RDMA_CORE_MAJOR <= 56);
#[cfg(pabi = "65")]
const _: () = assert!(RDMA_CORE_MAJOR == 65);

/// `struct verbs_match_ent` (24 bytes, all releases).
#[repr(C)]
pub struct VerbsMatchEnt {
    pub driver_data: *const c_void,
    pub u: u64,
    pub vendor: u16,
    pub device: u16,
    pub kind: u8,
    pub _pad: [u8; 3],
}

/// `struct verbs_sysfs_dev`: only ever handled by pointer.
pub enum VerbsSysfsDev {}
/// `struct ibv_device` (664 bytes): handled by pointer.
pub enum IbvDevice {}
/// `struct ibv_comp_channel`: handled by pointer.
pub enum IbvCompChannel {}
/// `struct ibv_port_attr` / `ibv_device_attr_ex` / `ibv_query_device_ex_input`:
/// filled by libibverbs' own helpers, handled by pointer.
pub enum IbvPortAttr {}
pub enum IbvDeviceAttrEx {}
pub enum IbvQueryDeviceExInput {}

/// `struct verbs_device_ops` (72 bytes, all releases).
#[repr(C)]
pub struct VerbsDeviceOps {
    pub name: *const c_char,
    pub match_min_abi_version: u32,
    pub match_max_abi_version: u32,
    pub match_table: *const VerbsMatchEnt,
    pub static_providers: *const *const VerbsDeviceOps,
    pub match_device: Option<unsafe extern "C" fn(*mut VerbsSysfsDev) -> bool>,
    pub alloc_context:
        Option<unsafe extern "C" fn(*mut IbvDevice, c_int, *mut c_void) -> *mut VerbsContext>,
    pub import_context: Option<unsafe extern "C" fn(*mut IbvDevice, c_int) -> *mut VerbsContext>,
    pub alloc_device: Option<unsafe extern "C" fn(*mut VerbsSysfsDev) -> *mut VerbsDevice>,
    pub uninit_device: Option<unsafe extern "C" fn(*mut VerbsDevice)>,
}

// SAFETY: the only instances are immutable statics whose pointers name other statics.
unsafe impl Sync for VerbsDeviceOps {}
// SAFETY: as above: the match table is immutable static data.
unsafe impl Sync for VerbsMatchEnt {}

/// `struct verbs_device` (712 bytes, all releases): the library fills it; the
/// provider only allocates it, zeroed.
#[repr(C, align(8))]
pub struct VerbsDevice {
    pub opaque: [u8; 712],
}

#[cfg(any(pabi = "33", pabi = "34"))]
mod gen {
    pub const VERBS_CONTEXT_SIZE: usize = 648;
    pub const CONTEXT_OFFSET: usize = 320;
}
#[cfg(pabi = "65")]
mod gen {
    pub const VERBS_CONTEXT_SIZE: usize = 696;
    pub const CONTEXT_OFFSET: usize = 368;
}
pub use gen::*;

/// `struct verbs_context`, whose tail is the public `struct ibv_context`.
#[repr(C, align(8))]
pub struct VerbsContext {
    pub opaque: [u8; VERBS_CONTEXT_SIZE],
}

/// `struct ibv_context` (328 bytes, all releases).
#[repr(C)]
pub struct IbvContext {
    pub device: *mut IbvDevice,
    pub ops: [*mut c_void; 32],
    pub cmd_fd: c_int,
    pub async_fd: c_int,
    pub num_comp_vectors: c_int,
    pub _pad: c_int,
    pub mutex: [u64; 5],
    pub abi_compat: *mut c_void,
}

impl VerbsContext {
    pub fn ibv_context(&mut self) -> *mut IbvContext {
        // SAFETY: CONTEXT_OFFSET + 328 == VERBS_CONTEXT_SIZE (asserted below).
        unsafe { (self as *mut Self as *mut u8).add(CONTEXT_OFFSET) as *mut IbvContext }
    }
}

/// `struct ibv_pd` (16 bytes).
#[repr(C)]
pub struct IbvPd {
    pub context: *mut IbvContext,
    pub handle: u32,
}

/// `struct ibv_mr` (48 bytes) and `struct verbs_mr` (56 bytes).
#[repr(C)]
pub struct IbvMr {
    pub context: *mut IbvContext,
    pub pd: *mut IbvPd,
    pub addr: *mut c_void,
    pub length: usize,
    pub handle: u32,
    pub lkey: u32,
    pub rkey: u32,
}

#[repr(C)]
pub struct VerbsMr {
    pub ibv_mr: IbvMr,
    pub mr_type: c_int,
    pub access: c_int,
}

/// `struct ibv_cq` (128 bytes).
#[repr(C)]
pub struct IbvCq {
    pub context: *mut IbvContext,
    pub channel: *mut IbvCompChannel,
    pub cq_context: *mut c_void,
    pub handle: u32,
    pub cqe: c_int,
    pub mutex: [u64; 5],
    pub cond: [u64; 6],
    pub comp_events_completed: u32,
    pub async_events_completed: u32,
}

/// `struct ibv_wc` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IbvWc {
    pub wr_id: u64,
    pub status: u32,
    pub opcode: u32,
    pub vendor_err: u32,
    pub byte_len: u32,
    pub imm_data: u32,
    pub qp_num: u32,
    pub src_qp: u32,
    pub wc_flags: c_int,
    pub pkey_index: u16,
    pub slid: u16,
    pub sl: u8,
    pub dlid_path_bits: u8,
}

/// `struct ibv_cq_ex` (288 bytes, all releases): `struct ibv_cq`'s members, then the
/// polling state and the polling functions the provider fills.  `struct verbs_cq` is
/// a union of the two, so it is this.
#[repr(C)]
pub struct IbvCqEx {
    pub cq: IbvCq,
    pub comp_mask: u32,
    pub status: u32,
    pub wr_id: u64,
    pub start_poll: Option<unsafe extern "C" fn(*mut IbvCqEx, *mut IbvPollCqAttr) -> c_int>,
    pub next_poll: Option<unsafe extern "C" fn(*mut IbvCqEx) -> c_int>,
    pub end_poll: Option<unsafe extern "C" fn(*mut IbvCqEx)>,
    pub read_opcode: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_vendor_err: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_byte_len: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_imm_data: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_qp_num: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_src_qp: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_wc_flags: Option<unsafe extern "C" fn(*mut IbvCqEx) -> c_uint>,
    pub read_slid: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_sl: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u8>,
    pub read_dlid_path_bits: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u8>,
    pub read_completion_ts: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u64>,
    pub read_cvlan: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u16>,
    pub read_flow_tag: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u32>,
    pub read_tm_info: Option<unsafe extern "C" fn(*mut IbvCqEx, *mut c_void)>,
    pub read_completion_wallclock_ns: Option<unsafe extern "C" fn(*mut IbvCqEx) -> u64>,
}

/// `struct ibv_poll_cq_attr`: handled by pointer (its only member is a comp_mask).
pub enum IbvPollCqAttr {}

/// `struct ibv_cq_init_attr_ex` (56 bytes).
#[repr(C)]
pub struct IbvCqInitAttrEx {
    pub cqe: u32,
    pub cq_context: *mut c_void,
    pub channel: *mut IbvCompChannel,
    pub comp_vector: u32,
    /// `enum ibv_create_cq_wc_flags` bits.
    pub wc_flags: u64,
    /// `enum ibv_cq_init_attr_mask` bits.
    pub comp_mask: u32,
    /// `enum ibv_create_cq_attr_flags` bits.
    pub flags: u32,
    pub parent_domain: *mut IbvPd,
}

/// `enum ibv_create_cq_wc_flags`.
pub mod wc_ex {
    pub const WITH_BYTE_LEN: u64 = 1 << 0;
    pub const WITH_IMM: u64 = 1 << 1;
    pub const WITH_QP_NUM: u64 = 1 << 2;
    pub const WITH_SRC_QP: u64 = 1 << 3;
    pub const WITH_SLID: u64 = 1 << 4;
    pub const WITH_SL: u64 = 1 << 5;
    pub const WITH_DLID_PATH_BITS: u64 = 1 << 6;
    /// IBV_WC_STANDARD_FLAGS: every field a ferrite completion carries.
    pub const STANDARD: u64 =
        WITH_BYTE_LEN | WITH_IMM | WITH_QP_NUM | WITH_SRC_QP | WITH_SLID | WITH_SL | WITH_DLID_PATH_BITS;
}

/// `enum ibv_cq_init_attr_mask` and `enum ibv_create_cq_attr_flags`.
pub const IBV_CQ_INIT_ATTR_MASK_FLAGS: u32 = 1 << 0;
pub const IBV_CQ_INIT_ATTR_MASK_PD: u32 = 1 << 1;
pub const IBV_CREATE_CQ_ATTR_SINGLE_THREADED: u32 = 1 << 0;
pub const IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN: u32 = 1 << 1;

/// `struct ibv_srq` and `struct ibv_qp_attr`, handled by pointer: ferrite has no SRQs
/// yet, and QP attributes are filled and read by libibverbs' own helpers.
pub enum IbvSrq {}
pub enum IbvQpAttr {}

/// `struct ibv_qp` (160 bytes, all releases).
#[repr(C)]
pub struct IbvQp {
    pub context: *mut IbvContext,
    pub qp_context: *mut c_void,
    pub pd: *mut IbvPd,
    pub send_cq: *mut IbvCq,
    pub recv_cq: *mut IbvCq,
    pub srq: *mut IbvSrq,
    pub handle: u32,
    pub qp_num: u32,
    /// `enum ibv_qp_state`; libibverbs keeps it current after modify_qp/query_qp.
    pub state: u32,
    /// `enum ibv_qp_type`.
    pub qp_type: u32,
    pub mutex: [u64; 5],
    pub cond: [u64; 6],
    pub events_completed: u32,
}

/// `enum ibv_qp_type` values ferrite serves, and `enum ibv_qp_state`.
pub const IBV_QPT_RC: u32 = 2;
pub const IBV_QPT_UC: u32 = 3;
pub mod qps {
    pub const RESET: u32 = 0;
    pub const INIT: u32 = 1;
    pub const RTR: u32 = 2;
}

/// `struct ibv_qp_cap` (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IbvQpCap {
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
}

/// `struct ibv_qp_init_attr` (64 bytes).
#[repr(C)]
pub struct IbvQpInitAttr {
    pub qp_context: *mut c_void,
    pub send_cq: *mut IbvCq,
    pub recv_cq: *mut IbvCq,
    pub srq: *mut IbvSrq,
    pub cap: IbvQpCap,
    pub qp_type: u32,
    pub sq_sig_all: c_int,
}

/// `struct ibv_rx_hash_conf` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvRxHashConf {
    pub rx_hash_function: u8,
    pub rx_hash_key_len: u8,
    pub rx_hash_key: *mut u8,
    pub rx_hash_fields_mask: u64,
}

/// `struct ibv_qp_init_attr_ex` (136 bytes): `ibv_qp_init_attr`'s members, then these.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvQpInitAttrEx {
    pub qp_context: *mut c_void,
    pub send_cq: *mut IbvCq,
    pub recv_cq: *mut IbvCq,
    pub srq: *mut IbvSrq,
    pub cap: IbvQpCap,
    pub qp_type: u32,
    pub sq_sig_all: c_int,
    /// `enum ibv_qp_init_attr_mask` bits.
    pub comp_mask: u32,
    pub pd: *mut IbvPd,
    pub xrcd: *mut c_void,
    pub create_flags: u32,
    pub max_tso_header: u16,
    pub rwq_ind_tbl: *mut c_void,
    pub rx_hash_conf: IbvRxHashConf,
    pub source_qpn: u32,
    /// `enum ibv_qp_create_send_ops_flags` bits.
    pub send_ops_flags: u64,
}

/// `enum ibv_qp_init_attr_mask`.
pub mod qp_init_attr {
    pub const PD: u32 = 1 << 0;
    pub const CREATE_FLAGS: u32 = 1 << 2;
    pub const SEND_OPS_FLAGS: u32 = 1 << 6;
}

/// `enum ibv_qp_create_send_ops_flags` (IBV_QP_EX_WITH_*).
pub mod send_ops {
    pub const RDMA_WRITE: u64 = 1 << 0;
    pub const RDMA_WRITE_WITH_IMM: u64 = 1 << 1;
    pub const SEND: u64 = 1 << 2;
    pub const SEND_WITH_IMM: u64 = 1 << 3;
    pub const RDMA_READ: u64 = 1 << 4;
    pub const ATOMIC_CMP_AND_SWP: u64 = 1 << 5;
    pub const ATOMIC_FETCH_AND_ADD: u64 = 1 << 6;
    pub const LOCAL_INV: u64 = 1 << 7;
    pub const BIND_MW: u64 = 1 << 8;
    pub const SEND_WITH_INV: u64 = 1 << 9;
    pub const TSO: u64 = 1 << 10;
    pub const FLUSH: u64 = 1 << 11;
    pub const ATOMIC_WRITE: u64 = 1 << 12;
}

/// `enum ibv_query_qp_data_in_order_caps`.
pub const IBV_QUERY_QP_DATA_IN_ORDER_WHOLE_MSG: c_int = 1 << 0;

/// `struct ibv_sge` (16 bytes): the same layout as `ferrite_abi::wq::Sge`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IbvSge {
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// `struct ibv_data_buf` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvDataBuf {
    pub addr: *mut c_void,
    pub length: usize,
}

/// `ibv_send_wr.wr.rdma`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RdmaWr {
    pub remote_addr: u64,
    pub rkey: u32,
}

/// `ibv_send_wr.wr.atomic`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AtomicWr {
    pub remote_addr: u64,
    pub compare_add: u64,
    pub swap: u64,
    pub rkey: u32,
}

/// `ibv_send_wr.wr.ud`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UdWr {
    pub ah: *mut c_void,
    pub remote_qpn: u32,
    pub remote_qkey: u32,
}

/// `ibv_send_wr.wr` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union SendWrWr {
    pub rdma: RdmaWr,
    pub atomic: AtomicWr,
    pub ud: UdWr,
}

/// `ibv_send_wr.qp_type` (4 bytes): `xrc.remote_srqn`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SendWrQpType {
    pub remote_srqn: u32,
}

/// `struct ibv_mw_bind_info` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvMwBindInfo {
    pub mr: *mut IbvMr,
    pub addr: u64,
    pub length: u64,
    pub mw_access_flags: c_uint,
}

/// `ibv_send_wr.bind_mw`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BindMwWr {
    pub mw: *mut c_void,
    pub rkey: u32,
    pub bind_info: IbvMwBindInfo,
}

/// `ibv_send_wr.tso`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TsoWr {
    pub hdr: *mut c_void,
    pub hdr_sz: u16,
    pub mss: u16,
}

/// The anonymous `bind_mw` / `tso` union at the end of `ibv_send_wr` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union SendWrExt {
    pub bind_mw: BindMwWr,
    pub tso: TsoWr,
}

/// `struct ibv_send_wr` (128 bytes, all releases).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvSendWr {
    pub wr_id: u64,
    pub next: *mut IbvSendWr,
    pub sg_list: *mut IbvSge,
    pub num_sge: c_int,
    /// `enum ibv_wr_opcode`.
    pub opcode: u32,
    /// `enum ibv_send_flags` bits.
    pub send_flags: c_uint,
    /// Immediate data in network byte order (or the rkey to invalidate).
    pub imm_data: u32,
    pub wr: SendWrWr,
    pub qp_type: SendWrQpType,
    pub ext: SendWrExt,
}

/// `struct ibv_recv_wr` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IbvRecvWr {
    pub wr_id: u64,
    pub next: *mut IbvRecvWr,
    pub sg_list: *mut IbvSge,
    pub num_sge: c_int,
}

/// `ibv_qp_ex.wr_atomic_write` (v44 on) and `ibv_qp_ex.wr_flush` (v45 on).
pub type WrAtomicWrite = unsafe extern "C" fn(*mut IbvQpEx, u32, u64, *const c_void);
pub type WrFlush = unsafe extern "C" fn(*mut IbvQpEx, u32, u64, usize, u8, u8);

/// `struct ibv_qp_ex` has `wr_atomic_write` from v44 and `wr_flush` from v45 (both
/// appended upstream, in that order).
pub const QP_EX_HAS_ATOMIC_WRITE: bool = RDMA_CORE_MAJOR >= 44;
pub const QP_EX_HAS_FLUSH: bool = RDMA_CORE_MAJOR >= 45;
/// Members appended to `struct ibv_qp_ex` in this release: 0, 1 or 2.
pub const QP_EX_TAIL: usize = QP_EX_HAS_ATOMIC_WRITE as usize + QP_EX_HAS_FLUSH as usize;
/// Index of `wr_atomic_write` and `wr_flush` in [`IbvQpEx::tail`].
pub const QP_EX_ATOMIC_WRITE: usize = 0;
pub const QP_EX_FLUSH: usize = 1;

/// `struct ibv_qp_ex` (344 bytes in v33, 352 in v44, 360 from v45).
#[repr(C)]
pub struct IbvQpEx {
    pub qp_base: IbvQp,
    pub comp_mask: u64,
    /// The next WR's id and flags, set by the application before each WR builder.
    pub wr_id: u64,
    pub wr_flags: c_uint,
    pub wr_atomic_cmp_swp: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64, u64, u64)>,
    pub wr_atomic_fetch_add: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64, u64)>,
    pub wr_bind_mw: Option<unsafe extern "C" fn(*mut IbvQpEx, *mut c_void, u32, *const IbvMwBindInfo)>,
    pub wr_local_inv: Option<unsafe extern "C" fn(*mut IbvQpEx, u32)>,
    pub wr_rdma_read: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64)>,
    pub wr_rdma_write: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64)>,
    pub wr_rdma_write_imm: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64, u32)>,
    pub wr_send: Option<unsafe extern "C" fn(*mut IbvQpEx)>,
    pub wr_send_imm: Option<unsafe extern "C" fn(*mut IbvQpEx, u32)>,
    pub wr_send_inv: Option<unsafe extern "C" fn(*mut IbvQpEx, u32)>,
    pub wr_send_tso: Option<unsafe extern "C" fn(*mut IbvQpEx, *mut c_void, u16, u16)>,
    pub wr_set_ud_addr: Option<unsafe extern "C" fn(*mut IbvQpEx, *mut c_void, u32, u32)>,
    pub wr_set_xrc_srqn: Option<unsafe extern "C" fn(*mut IbvQpEx, u32)>,
    pub wr_set_inline_data: Option<unsafe extern "C" fn(*mut IbvQpEx, *mut c_void, usize)>,
    pub wr_set_inline_data_list: Option<unsafe extern "C" fn(*mut IbvQpEx, usize, *const IbvDataBuf)>,
    pub wr_set_sge: Option<unsafe extern "C" fn(*mut IbvQpEx, u32, u64, u32)>,
    pub wr_set_sge_list: Option<unsafe extern "C" fn(*mut IbvQpEx, usize, *const IbvSge)>,
    pub wr_start: Option<unsafe extern "C" fn(*mut IbvQpEx)>,
    pub wr_complete: Option<unsafe extern "C" fn(*mut IbvQpEx) -> c_int>,
    pub wr_abort: Option<unsafe extern "C" fn(*mut IbvQpEx)>,
    /// [`WrAtomicWrite`] and [`WrFlush`], as far as this release has them (NULL or
    /// a function of that type).
    pub tail: [*const c_void; QP_EX_TAIL],
}

/// `enum verbs_qp_mask`.
pub const VERBS_QP_EX: u32 = 1 << 1;

/// `struct verbs_qp` (driver.h): the union of `ibv_qp` and `ibv_qp_ex` (the larger is
/// `ibv_qp_ex`, which begins with `ibv_qp`), then libibverbs' own members.
#[repr(C)]
pub struct VerbsQp {
    pub qp_ex: IbvQpEx,
    pub comp_mask: u32,
    pub xrcd: *mut c_void,
}

/// `struct ibv_create_cq_ex`: `struct ex_hdr` (24) + `ib_uverbs_ex_create_cq` (32),
/// no driver data.
#[repr(C)]
#[derive(Default)]
pub struct ExHdr {
    pub hdr: CmdHdr,
    pub response: u64,
    pub provider_in_words: u16,
    pub provider_out_words: u16,
    pub cmd_hdr_reserved: u32,
}
#[repr(C)]
#[derive(Default)]
pub struct CreateCqExCmd {
    pub hdr: ExHdr,
    pub user_handle: u64,
    pub cqe: u32,
    pub comp_vector: u32,
    pub comp_channel: i32,
    pub comp_mask: u32,
    pub flags: u32,
    pub reserved: u32,
}

/// `struct ib_uverbs_ex_create_cq_resp` (16) + ferrite's response.
#[repr(C)]
#[derive(Default)]
pub struct CreateCqExResp {
    pub cq_handle: u32,
    pub cqe: u32,
    pub comp_mask: u32,
    pub response_length: u32,
    pub drv: ferrite_abi::CreateCqResp,
}

/// `struct ibv_create_qp` (64), no driver data.
#[repr(C)]
#[derive(Default)]
pub struct CreateQpCmd {
    pub hdr: CmdHdr,
    pub response: u64,
    pub user_handle: u64,
    pub pd_handle: u32,
    pub send_cq_handle: u32,
    pub recv_cq_handle: u32,
    pub srq_handle: u32,
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
    pub sq_sig_all: u8,
    pub qp_type: u8,
    pub is_srq: u8,
    pub reserved: u8,
}

/// `struct ibv_create_qp_ex` (88): `struct ex_hdr` + `ib_uverbs_ex_create_qp`, no
/// driver data.
#[repr(C)]
#[derive(Default)]
pub struct CreateQpExCmd {
    pub hdr: ExHdr,
    pub user_handle: u64,
    pub pd_handle: u32,
    pub send_cq_handle: u32,
    pub recv_cq_handle: u32,
    pub srq_handle: u32,
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
    pub sq_sig_all: u8,
    pub qp_type: u8,
    pub is_srq: u8,
    pub reserved: u8,
    pub comp_mask: u32,
    pub create_flags: u32,
    pub rwq_ind_tbl_handle: u32,
    pub source_qpn: u32,
}

/// `struct ib_uverbs_create_qp_resp` (32).
#[repr(C)]
#[derive(Default)]
pub struct CreateQpCoreResp {
    pub qp_handle: u32,
    pub qpn: u32,
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
    pub reserved: u32,
}

/// The core's `create_qp` response + ferrite's.
#[repr(C)]
#[derive(Default)]
pub struct CreateQpResp {
    pub core: CreateQpCoreResp,
    pub drv: ferrite_abi::wq::CreateQpResp,
}

/// `struct ib_uverbs_ex_create_qp_resp` (40) + ferrite's response.
#[repr(C)]
#[derive(Default)]
pub struct CreateQpExResp {
    pub core: CreateQpCoreResp,
    pub comp_mask: u32,
    pub response_length: u32,
    pub drv: ferrite_abi::wq::CreateQpResp,
}

/// `struct ibv_modify_qp` (120): header + `ib_uverbs_modify_qp` (112), filled by
/// libibverbs; no driver data.
#[repr(C)]
#[derive(Default)]
pub struct ModifyQpCmd {
    pub hdr: CmdHdr,
    pub core: [u64; 14],
}

/// `struct ibv_query_qp` (24), no driver data.
#[repr(C)]
#[derive(Default)]
pub struct QueryQpCmd {
    pub hdr: CmdHdr,
    pub response: u64,
    pub qp_handle: u32,
    pub attr_mask: u32,
}

/// `struct ib_uverbs_cmd_hdr` + a core request: the `struct ibv_<cmd>` of kern-abi.h.
#[repr(C)]
#[derive(Default)]
pub struct CmdHdr {
    pub command: u32,
    pub in_words: u16,
    pub out_words: u16,
}

/// `struct ibv_get_context` (16 bytes) followed by no driver data.
#[repr(C)]
#[derive(Default)]
pub struct GetContextCmd {
    pub hdr: CmdHdr,
    pub response: u64,
}

/// `struct ib_uverbs_get_context_resp` (8) + ferrite's response.
#[repr(C)]
#[derive(Default)]
pub struct GetContextResp {
    pub async_fd: u32,
    pub num_comp_vectors: u32,
    pub drv: ferrite_abi::AllocUcontextResp,
}

/// `struct ibv_alloc_pd` (16) and its response (4).
#[repr(C)]
#[derive(Default)]
pub struct AllocPdCmd {
    pub hdr: CmdHdr,
    pub response: u64,
}
#[repr(C)]
#[derive(Default)]
pub struct AllocPdResp {
    pub pd_handle: u32,
}

/// `struct ibv_reg_mr` (48) and its response (12).
#[repr(C)]
#[derive(Default)]
pub struct RegMrCmd {
    pub hdr: CmdHdr,
    pub response: u64,
    pub start: u64,
    pub length: u64,
    pub hca_va: u64,
    pub pd_handle: u32,
    pub access_flags: u32,
}
#[repr(C)]
#[derive(Default)]
pub struct RegMrResp {
    pub mr_handle: u32,
    pub lkey: u32,
    pub rkey: u32,
}

/// `struct ibv_create_cq` (40) and `ib_uverbs_create_cq_resp` (8) + ferrite's response.
#[repr(C)]
#[derive(Default)]
pub struct CreateCqCmd {
    pub hdr: CmdHdr,
    pub response: u64,
    pub user_handle: u64,
    pub cqe: u32,
    pub comp_vector: u32,
    pub comp_channel: i32,
    pub reserved: u32,
}
#[repr(C)]
#[derive(Default)]
pub struct CreateCqResp {
    pub cq_handle: u32,
    pub cqe: u32,
    pub drv: ferrite_abi::CreateCqResp,
}

/// `struct ib_uverbs_ex_query_device_resp` (304 bytes in every release and kernel
/// ferrite targets).  libibverbs sends exactly this size as the core response and
/// the rest as driver data, which ferrite.ko refuses, so the size must be exact.
/// Only `base.fw_ver`, its first field, and `device_cap_flags_ex` are read here;
/// libibverbs copies the rest.
#[repr(C)]
pub struct ExQueryDeviceResp {
    pub fw_ver: u64,
    pub rest: [u64; 37],
}

impl ExQueryDeviceResp {
    /// Bytes of the response up to and including `device_cap_flags_ex` (at offset
    /// 224: `base` 176, comp_mask and response_length 8, odp_caps 24,
    /// timestamp_mask 8, hca_core_clock 8).
    pub const CAP_FLAGS_EX_END: usize = 232;

    /// The kernel's `device_cap_flags_ex`: the whole 64-bit ib_device_attr
    /// device_cap_flags.
    pub fn device_cap_flags_ex(&self) -> u64 {
        self.rest[Self::CAP_FLAGS_EX_END / 8 - 2]
    }
}

/// `enum ib_uverbs_device_cap_flags` bits of IBTA 1.5's memory placement
/// extensions (Linux 6.2 on).
pub mod device_cap {
    pub const FLUSH_GLOBAL: u64 = 1 << 38;
    pub const FLUSH_PERSISTENT: u64 = 1 << 39;
    pub const ATOMIC_WRITE: u64 = 1 << 40;
}

/// `struct ibv_query_port` (24).
#[repr(C)]
#[derive(Default)]
pub struct QueryPortCmd {
    pub hdr: CmdHdr,
    pub response: u64,
    pub port_num: u8,
    pub reserved: [u8; 7],
}

/// Number of entries of `struct verbs_context_ops`, and the slot of each op ferrite
/// sets (the struct is kept alphabetical upstream, so slots move between releases).
/// Counted from libibverbs/driver.h at v33.2, v44.0 (= v56.1, the same 76 members)
/// and v65.0, and cross-checked against the order of the positional initialiser of
/// `verbs_dummy_ops` in libibverbs/dummy_ops.c of the same releases.
#[cfg(pabi = "33")]
pub mod slot {
    pub const COUNT: usize = 72;
    pub const ALLOC_PD: usize = 5;
    pub const CREATE_CQ: usize = 15;
    pub const CREATE_CQ_EX: usize = 16;
    pub const CREATE_QP: usize = 19;
    pub const CREATE_QP_EX: usize = 20;
    pub const DEALLOC_PD: usize = 26;
    pub const DEREG_MR: usize = 28;
    pub const DESTROY_CQ: usize = 31;
    pub const DESTROY_QP: usize = 34;
    pub const FREE_CONTEXT: usize = 39;
    pub const MODIFY_QP: usize = 46;
    pub const POLL_CQ: usize = 52;
    pub const POST_RECV: usize = 53;
    pub const POST_SEND: usize = 54;
    pub const QUERY_DEVICE_EX: usize = 57;
    pub const QUERY_PORT: usize = 59;
    pub const QUERY_QP: usize = 60;
    /// v33 has no query_qp_data_in_order.
    pub const QUERY_QP_DATA_IN_ORDER: Option<usize> = None;
    pub const REG_MR: usize = 65;
    pub const REQ_NOTIFY_CQ: usize = 66;
}
#[cfg(pabi = "34")]
pub mod slot {
    pub const COUNT: usize = 76;
    pub const ALLOC_PD: usize = 5;
    pub const CREATE_CQ: usize = 15;
    pub const CREATE_CQ_EX: usize = 16;
    pub const CREATE_QP: usize = 19;
    pub const CREATE_QP_EX: usize = 20;
    pub const DEALLOC_PD: usize = 26;
    pub const DEREG_MR: usize = 28;
    pub const DESTROY_CQ: usize = 31;
    pub const DESTROY_QP: usize = 34;
    pub const FREE_CONTEXT: usize = 39;
    pub const MODIFY_QP: usize = 47;
    pub const POLL_CQ: usize = 53;
    pub const POST_RECV: usize = 54;
    pub const POST_SEND: usize = 55;
    pub const QUERY_DEVICE_EX: usize = 58;
    pub const QUERY_PORT: usize = 60;
    pub const QUERY_QP: usize = 61;
    pub const QUERY_QP_DATA_IN_ORDER: Option<usize> = Some(62);
    pub const REG_MR: usize = 68;
    pub const REQ_NOTIFY_CQ: usize = 69;
}
#[cfg(pabi = "65")]
pub mod slot {
    pub const COUNT: usize = 93;
    pub const ALLOC_PD: usize = 7;
    pub const CREATE_CQ: usize = 18;
    pub const CREATE_CQ_EX: usize = 19;
    pub const CREATE_QP: usize = 22;
    pub const CREATE_QP_EX: usize = 23;
    pub const DEALLOC_PD: usize = 30;
    pub const DEREG_MR: usize = 32;
    pub const DESTROY_CQ: usize = 36;
    pub const DESTROY_QP: usize = 39;
    pub const FREE_CONTEXT: usize = 46;
    pub const MODIFY_QP: usize = 56;
    pub const POLL_CQ: usize = 62;
    pub const POST_RECV: usize = 63;
    pub const POST_SEND: usize = 64;
    pub const QUERY_DEVICE_EX: usize = 69;
    pub const QUERY_PORT: usize = 71;
    pub const QUERY_QP: usize = 73;
    pub const QUERY_QP_DATA_IN_ORDER: Option<usize> = Some(74);
    pub const REG_MR: usize = 82;
    pub const REQ_NOTIFY_CQ: usize = 84;
}

/// `struct verbs_context_ops`: function pointers by slot.
#[repr(C)]
pub struct VerbsContextOps {
    pub slots: [*const c_void; slot::COUNT],
}

// SAFETY: the only instance is built once and never changed afterwards.
unsafe impl Sync for VerbsContextOps {}

/// IB_USER_VERBS_CMD_* numbers used with the command helpers.
pub const CMD_GET_CONTEXT: u32 = 0;
pub const CMD_QUERY_PORT: u32 = 2;
pub const CMD_ALLOC_PD: u32 = 3;
pub const CMD_REG_MR: u32 = 9;
pub const CMD_CREATE_CQ: u32 = 18;

/// RDMA_DRIVER_UNKNOWN: ferrite has no value in the kernel's enum.
pub const RDMA_DRIVER_UNKNOWN: u32 = 0;

macro_rules! register_fn {
    ($name:ident) => {
        extern "C" {
            pub fn $name(ops: *const VerbsDeviceOps);
        }
        /// Register with the loading libibverbs (the PABI's registration symbol).
        ///
        /// # Safety
        /// `ops` must point to a `VerbsDeviceOps` that lives as long as the library.
        pub unsafe fn verbs_register_driver(ops: *const VerbsDeviceOps) {
            // SAFETY: caller passes a static, valid ops table.
            unsafe { $name(ops) }
        }
    };
}
#[cfg(pabi = "33")]
register_fn!(verbs_register_driver_33);
#[cfg(pabi = "34")]
register_fn!(verbs_register_driver_34);
#[cfg(pabi = "65")]
register_fn!(verbs_register_driver_65);

extern "C" {
    pub fn _verbs_init_and_alloc_context(
        device: *mut IbvDevice,
        cmd_fd: c_int,
        alloc_size: usize,
        context_offset: *mut VerbsContext,
        driver_id: u32,
    ) -> *mut c_void;
    pub fn verbs_uninit_context(context: *mut VerbsContext);
    pub fn verbs_set_ops(vctx: *mut VerbsContext, ops: *const VerbsContextOps);
    pub fn ibv_read_ibdev_sysfs_file(
        buf: *mut c_char,
        size: usize,
        sysfs_dev: *mut VerbsSysfsDev,
        fnfmt: *const c_char, ...
    ) -> c_int;
    pub fn ibv_cmd_query_device_any(
        context: *mut IbvContext,
        input: *const IbvQueryDeviceExInput,
        attr: *mut IbvDeviceAttrEx,
        attr_size: usize,
        resp: *mut c_void,
        resp_size: *mut usize,
    ) -> c_int;
    pub fn ibv_cmd_query_port(
        context: *mut IbvContext,
        port_num: u8,
        port_attr: *mut IbvPortAttr,
        cmd: *mut QueryPortCmd,
        cmd_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_alloc_pd(
        context: *mut IbvContext,
        pd: *mut IbvPd,
        cmd: *mut AllocPdCmd,
        cmd_size: usize,
        resp: *mut AllocPdResp,
        resp_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_dealloc_pd(pd: *mut IbvPd) -> c_int;
    pub fn ibv_cmd_reg_mr(
        pd: *mut IbvPd,
        addr: *mut c_void,
        length: usize,
        hca_va: u64,
        access: c_int,
        vmr: *mut VerbsMr,
        cmd: *mut RegMrCmd,
        cmd_size: usize,
        resp: *mut RegMrResp,
        resp_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_dereg_mr(vmr: *mut VerbsMr) -> c_int;
    pub fn ibv_cmd_create_cq(
        context: *mut IbvContext,
        cqe: c_int,
        channel: *mut IbvCompChannel,
        comp_vector: c_int,
        cq: *mut IbvCq,
        cmd: *mut CreateCqCmd,
        cmd_size: usize,
        resp: *mut CreateCqResp,
        resp_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_destroy_cq(cq: *mut IbvCq) -> c_int;
    pub fn ibv_cmd_req_notify_cq(cq: *mut IbvCq, solicited_only: c_int) -> c_int;
    pub fn ibv_cmd_create_qp(
        pd: *mut IbvPd,
        qp: *mut IbvQp,
        attr: *mut IbvQpInitAttr,
        cmd: *mut CreateQpCmd,
        cmd_size: usize,
        resp: *mut CreateQpResp,
        resp_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_create_qp_ex(
        context: *mut IbvContext,
        qp: *mut VerbsQp,
        attr_ex: *mut IbvQpInitAttrEx,
        cmd: *mut CreateQpCmd,
        cmd_size: usize,
        resp: *mut CreateQpResp,
        resp_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_modify_qp(
        qp: *mut IbvQp,
        attr: *mut IbvQpAttr,
        attr_mask: c_int,
        cmd: *mut ModifyQpCmd,
        cmd_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_query_qp(
        qp: *mut IbvQp,
        attr: *mut IbvQpAttr,
        attr_mask: c_int,
        init_attr: *mut IbvQpInitAttr,
        cmd: *mut QueryQpCmd,
        cmd_size: usize,
    ) -> c_int;
    pub fn ibv_cmd_destroy_qp(qp: *mut IbvQp) -> c_int;
    /// With no work requests, this is ferrite's doorbell: the kernel's post_send op
    /// is called with none and schedules the QP.
    pub fn ibv_cmd_post_send(qp: *mut IbvQp, wr: *mut IbvSendWr, bad_wr: *mut *mut IbvSendWr) -> c_int;
}

#[cfg(not(pabi = "65"))]
extern "C" {
    #[link_name = "ibv_cmd_create_qp_ex2"]
    fn ibv_cmd_create_qp_ex2_7(
        context: *mut IbvContext,
        qp: *mut VerbsQp,
        attr_ex: *mut IbvQpInitAttrEx,
        cmd: *mut CreateQpExCmd,
        cmd_size: usize,
        resp: *mut CreateQpExResp,
        resp_size: usize,
    ) -> c_int;
}
#[cfg(pabi = "65")]
extern "C" {
    #[link_name = "ibv_cmd_create_qp_ex2"]
    fn ibv_cmd_create_qp_ex2_8(
        context: *mut IbvContext,
        qp: *mut VerbsQp,
        attr_ex: *mut IbvQpInitAttrEx,
        cmd: *mut CreateQpExCmd,
        cmd_size: usize,
        resp: *mut CreateQpExResp,
        resp_size: usize,
        driver: *mut c_void,
    ) -> c_int;
}

/// `ibv_cmd_create_qp_ex2`, whatever the release's argument list (v64 added a
/// trailing driver command buffer; ferrite passes none).
///
/// # Safety
/// As the C function: a live context, a zeroed `VerbsQp`, writable buffers.
pub unsafe fn ibv_cmd_create_qp_ex2(
    context: *mut IbvContext,
    qp: *mut VerbsQp,
    attr_ex: *mut IbvQpInitAttrEx,
    cmd: *mut CreateQpExCmd,
    cmd_size: usize,
    resp: *mut CreateQpExResp,
    resp_size: usize,
) -> c_int {
    #[cfg(not(pabi = "65"))]
    // SAFETY: function contract.
    return unsafe { ibv_cmd_create_qp_ex2_7(context, qp, attr_ex, cmd, cmd_size, resp, resp_size) };
    #[cfg(pabi = "65")]
    // SAFETY: function contract; no driver command buffer is chained.
    return unsafe {
        ibv_cmd_create_qp_ex2_8(context, qp, attr_ex, cmd, cmd_size, resp, resp_size, core::ptr::null_mut())
    };
}

#[cfg(pabi = "33")]
extern "C" {
    #[link_name = "ibv_cmd_create_cq_ex"]
    fn ibv_cmd_create_cq_ex_33(
        context: *mut IbvContext,
        attr: *const IbvCqInitAttrEx,
        cq: *mut IbvCqEx,
        cmd: *mut CreateCqExCmd,
        cmd_size: usize,
        resp: *mut CreateCqExResp,
        resp_size: usize,
    ) -> c_int;
}
#[cfg(pabi = "34")]
extern "C" {
    #[link_name = "ibv_cmd_create_cq_ex"]
    fn ibv_cmd_create_cq_ex_34(
        context: *mut IbvContext,
        attr: *const IbvCqInitAttrEx,
        cq: *mut IbvCqEx,
        cmd: *mut CreateCqExCmd,
        cmd_size: usize,
        resp: *mut CreateCqExResp,
        resp_size: usize,
        cmd_flags: u32,
    ) -> c_int;
}
#[cfg(pabi = "65")]
extern "C" {
    #[link_name = "ibv_cmd_create_cq_ex"]
    fn ibv_cmd_create_cq_ex_65(
        context: *mut IbvContext,
        attr: *const IbvCqInitAttrEx,
        prov_attr: *mut c_void,
        cq: *mut IbvCqEx,
        cmd: *mut CreateCqExCmd,
        cmd_size: usize,
        resp: *mut CreateCqExResp,
        resp_size: usize,
        cmd_flags: u32,
    ) -> c_int;
}

/// `ibv_cmd_create_cq_ex`, whatever the release's argument list (v34 added
/// `cmd_flags`, v59 `prov_attr`; ferrite passes neither flags nor buffers).
///
/// # Safety
/// As the C function: a live context, a zeroed CQ, writable buffers.
pub unsafe fn ibv_cmd_create_cq_ex(
    context: *mut IbvContext,
    attr: *const IbvCqInitAttrEx,
    cq: *mut IbvCqEx,
    cmd: *mut CreateCqExCmd,
    cmd_size: usize,
    resp: *mut CreateCqExResp,
    resp_size: usize,
) -> c_int {
    #[cfg(pabi = "33")]
    // SAFETY: function contract.
    return unsafe { ibv_cmd_create_cq_ex_33(context, attr, cq, cmd, cmd_size, resp, resp_size) };
    #[cfg(pabi = "34")]
    // SAFETY: function contract; no command flags.
    return unsafe { ibv_cmd_create_cq_ex_34(context, attr, cq, cmd, cmd_size, resp, resp_size, 0) };
    #[cfg(pabi = "65")]
    // SAFETY: function contract; no provider buffers (the kernel allocates the
    // ring), no command flags.
    return unsafe {
        ibv_cmd_create_cq_ex_65(context, attr, core::ptr::null_mut(), cq, cmd, cmd_size, resp, resp_size, 0)
    };
}

#[cfg(not(pabi = "65"))]
extern "C" {
    pub fn ibv_cmd_get_context(
        context: *mut VerbsContext,
        cmd: *mut GetContextCmd,
        cmd_size: usize,
        resp: *mut GetContextResp,
        resp_size: usize,
    ) -> c_int;
}

#[cfg(pabi = "65")]
extern "C" {
    #[link_name = "ibv_cmd_get_context"]
    fn ibv_cmd_get_context_fds(
        context: *mut VerbsContext,
        cmd: *mut GetContextCmd,
        cmd_size: usize,
        fd_arr: *mut c_void,
        resp: *mut GetContextResp,
        resp_size: usize,
    ) -> c_int;
}

/// `ibv_cmd_get_context`, whatever the release's argument list.
///
/// # Safety
/// As the C function: a context from `_verbs_init_and_alloc_context`, writable buffers.
#[cfg(pabi = "65")]
pub unsafe fn ibv_cmd_get_context(
    context: *mut VerbsContext,
    cmd: *mut GetContextCmd,
    cmd_size: usize,
    resp: *mut GetContextResp,
    resp_size: usize,
) -> c_int {
    // SAFETY: function contract; no fds are passed.
    unsafe { ibv_cmd_get_context_fds(context, cmd, cmd_size, core::ptr::null_mut(), resp, resp_size) }
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VerbsMatchEnt>() == 24);
    assert!(size_of::<VerbsDeviceOps>() == 72);
    assert!(size_of::<VerbsDevice>() == 712);
    assert!(size_of::<IbvContext>() == 328);
    assert!(offset_of!(IbvContext, cmd_fd) == 264);
    assert!(CONTEXT_OFFSET + size_of::<IbvContext>() == VERBS_CONTEXT_SIZE);
    assert!(size_of::<IbvPd>() == 16);
    assert!(size_of::<IbvMr>() == 48);
    assert!(offset_of!(IbvMr, lkey) == 36);
    assert!(size_of::<VerbsMr>() == 56);
    assert!(size_of::<IbvCq>() == 128);
    assert!(offset_of!(IbvCq, handle) == 24);
    assert!(size_of::<IbvWc>() == 48);
    assert!(size_of::<GetContextCmd>() == 16);
    assert!(size_of::<AllocPdCmd>() == 16);
    assert!(size_of::<RegMrCmd>() == 48);
    assert!(size_of::<RegMrResp>() == 12);
    assert!(size_of::<CreateCqCmd>() == 40);
    assert!(offset_of!(CreateCqResp, drv) == 8);
    assert!(offset_of!(GetContextResp, drv) == 8);
    assert!(size_of::<QueryPortCmd>() == 24);
    assert!(size_of::<ExQueryDeviceResp>() == 304);
    assert!(size_of::<VerbsContextOps>() == slot::COUNT * 8);
    assert!(size_of::<IbvCqEx>() == 288);
    assert!(offset_of!(IbvCqEx, comp_mask) == 128);
    assert!(offset_of!(IbvCqEx, wr_id) == 136);
    assert!(offset_of!(IbvCqEx, start_poll) == 144);
    assert!(offset_of!(IbvCqEx, read_completion_ts) == 248);
    assert!(offset_of!(IbvCqEx, read_completion_wallclock_ns) == 280);
    assert!(size_of::<IbvCqInitAttrEx>() == 56);
    assert!(offset_of!(IbvCqInitAttrEx, wc_flags) == 32);
    assert!(offset_of!(IbvCqInitAttrEx, comp_mask) == 40);
    assert!(size_of::<IbvQp>() == 160);
    assert!(offset_of!(IbvQp, handle) == 48);
    assert!(offset_of!(IbvQp, state) == 56);
    assert!(offset_of!(IbvQp, events_completed) == 152);
    assert!(size_of::<IbvQpCap>() == 20);
    assert!(size_of::<IbvQpInitAttr>() == 64);
    assert!(offset_of!(IbvQpInitAttr, cap) == 32);
    assert!(offset_of!(IbvQpInitAttr, sq_sig_all) == 56);
    assert!(size_of::<IbvQpInitAttrEx>() == 136);
    assert!(offset_of!(IbvQpInitAttrEx, comp_mask) == 60);
    assert!(offset_of!(IbvQpInitAttrEx, pd) == 64);
    assert!(offset_of!(IbvQpInitAttrEx, create_flags) == 80);
    assert!(offset_of!(IbvQpInitAttrEx, rx_hash_conf) == 96);
    assert!(offset_of!(IbvQpInitAttrEx, source_qpn) == 120);
    assert!(offset_of!(IbvQpInitAttrEx, send_ops_flags) == 128);
    assert!(size_of::<IbvSge>() == 16);
    assert!(size_of::<IbvSge>() == size_of::<ferrite_abi::wq::Sge>());
    assert!(size_of::<IbvDataBuf>() == 16);
    assert!(size_of::<SendWrWr>() == 32);
    assert!(size_of::<IbvMwBindInfo>() == 32);
    assert!(size_of::<SendWrExt>() == 48);
    assert!(size_of::<IbvSendWr>() == 128);
    assert!(offset_of!(IbvSendWr, num_sge) == 24);
    assert!(offset_of!(IbvSendWr, opcode) == 28);
    assert!(offset_of!(IbvSendWr, send_flags) == 32);
    assert!(offset_of!(IbvSendWr, imm_data) == 36);
    assert!(offset_of!(IbvSendWr, wr) == 40);
    assert!(offset_of!(IbvSendWr, qp_type) == 72);
    assert!(offset_of!(IbvSendWr, ext) == 80);
    assert!(offset_of!(AtomicWr, compare_add) == 8);
    assert!(offset_of!(AtomicWr, rkey) == 24);
    assert!(offset_of!(RdmaWr, rkey) == 8);
    assert!(size_of::<IbvRecvWr>() == 32);
    assert!(offset_of!(IbvQpEx, comp_mask) == 160);
    assert!(offset_of!(IbvQpEx, wr_flags) == 176);
    assert!(offset_of!(IbvQpEx, wr_atomic_cmp_swp) == 184);
    assert!(offset_of!(IbvQpEx, wr_send) == 240);
    assert!(offset_of!(IbvQpEx, wr_set_inline_data) == 288);
    assert!(offset_of!(IbvQpEx, wr_start) == 320);
    assert!(offset_of!(IbvQpEx, wr_abort) == 336);
    assert!(size_of::<IbvQpEx>() == 344 + 8 * QP_EX_TAIL);
    assert!(offset_of!(VerbsQp, comp_mask) == size_of::<IbvQpEx>());
    assert!(size_of::<VerbsQp>() == size_of::<IbvQpEx>() + 16);
    assert!(size_of::<ExHdr>() == 24);
    assert!(size_of::<CreateCqExCmd>() == 56);
    assert!(offset_of!(CreateCqExResp, drv) == 16);
    assert!(size_of::<CreateQpCmd>() == 64);
    assert!(size_of::<CreateQpExCmd>() == 88);
    assert!(size_of::<CreateQpCoreResp>() == 32);
    assert!(offset_of!(CreateQpResp, drv) == 32);
    assert!(offset_of!(CreateQpExResp, drv) == 40);
    assert!(size_of::<ModifyQpCmd>() == 120);
    assert!(size_of::<QueryQpCmd>() == 24);
};
