//! rdma-core's private provider ABI, mirrored (driver.h and kern-abi.h are not
//! installed), plus the few public verbs.h structures the provider touches.
//!
//! One layout per provider-ABI generation, chosen at build time (`pabi` cfg, set by
//! build.rs from the rdma-core release): 33 (v33.x), 34 (v34-v56), 65 (v65.x).
//! Every size below was measured against the release's own headers; the `const`
//! assertions at the bottom make a wrong layout a build failure.

use core::ffi::{c_char, c_int, c_void};

/// The provider ABI generation this build speaks.
pub const PABI: &str = env!("FERRITE_PABI");

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
/// Only `base.fw_ver`, its first field, is read here; libibverbs copies the rest.
#[repr(C)]
pub struct ExQueryDeviceResp {
    pub fw_ver: u64,
    pub rest: [u64; 37],
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
#[cfg(pabi = "33")]
pub mod slot {
    pub const COUNT: usize = 72;
    pub const ALLOC_PD: usize = 5;
    pub const CREATE_CQ: usize = 15;
    pub const DEALLOC_PD: usize = 26;
    pub const DEREG_MR: usize = 28;
    pub const DESTROY_CQ: usize = 31;
    pub const FREE_CONTEXT: usize = 39;
    pub const POLL_CQ: usize = 52;
    pub const QUERY_DEVICE_EX: usize = 57;
    pub const QUERY_PORT: usize = 59;
    pub const REG_MR: usize = 65;
    pub const REQ_NOTIFY_CQ: usize = 66;
}
#[cfg(pabi = "34")]
pub mod slot {
    pub const COUNT: usize = 76;
    pub const ALLOC_PD: usize = 5;
    pub const CREATE_CQ: usize = 15;
    pub const DEALLOC_PD: usize = 26;
    pub const DEREG_MR: usize = 28;
    pub const DESTROY_CQ: usize = 31;
    pub const FREE_CONTEXT: usize = 39;
    pub const POLL_CQ: usize = 53;
    pub const QUERY_DEVICE_EX: usize = 58;
    pub const QUERY_PORT: usize = 60;
    pub const REG_MR: usize = 68;
    pub const REQ_NOTIFY_CQ: usize = 69;
}
#[cfg(pabi = "65")]
pub mod slot {
    pub const COUNT: usize = 93;
    pub const ALLOC_PD: usize = 7;
    pub const CREATE_CQ: usize = 18;
    pub const DEALLOC_PD: usize = 30;
    pub const DEREG_MR: usize = 32;
    pub const DESTROY_CQ: usize = 36;
    pub const FREE_CONTEXT: usize = 46;
    pub const POLL_CQ: usize = 62;
    pub const QUERY_DEVICE_EX: usize = 69;
    pub const QUERY_PORT: usize = 71;
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
};
