//! The limits a ferrite device advertises.
//!
//! One table, read by `query_device` and `query_port`; the verbs that later create
//! objects check their requests against the same numbers.

/// Device-wide limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_qp: u32,
    pub max_qp_wr: u32,
    pub max_sge: u32,
    pub max_sge_rd: u32,
    pub max_cq: u32,
    pub max_cqe: u32,
    pub max_mr: u32,
    pub max_mr_size: u64,
    pub max_pd: u32,
    pub max_qp_rd_atom: u32,
    pub max_res_rd_atom: u32,
    pub max_srq: u32,
    pub max_srq_wr: u32,
    pub max_srq_sge: u32,
    pub max_ah: u32,
    pub max_mcast_grp: u32,
    pub max_mcast_qp_attach: u32,
    pub max_fast_reg_page_list_len: u32,
    pub max_pkeys: u16,
    pub local_ca_ack_delay: u8,
    pub page_size_cap: u64,
}

/// What every ferrite device offers.  Sized for a software device on a small host.
pub const LIMITS: Limits = Limits {
    max_qp: 4096,
    max_qp_wr: 16384,
    max_sge: 32,
    max_sge_rd: 32,
    max_cq: 4096,
    max_cqe: 32767,
    max_mr: 16384,
    max_mr_size: 1 << 40,
    max_pd: 4096,
    max_qp_rd_atom: 128,
    max_res_rd_atom: 4096 * 128,
    max_srq: 1024,
    max_srq_wr: 16384,
    max_srq_sge: 27,
    max_ah: 4096,
    max_mcast_grp: 1024,
    max_mcast_qp_attach: 56,
    max_fast_reg_page_list_len: 512,
    max_pkeys: 1,
    local_ca_ack_delay: 15,
    page_size_cap: !0xfffu64,
};

/// What the engine serves beyond the basic verbs (FERRITE_DEV_CAP_*): IBTA 1.5's
/// ATOMIC WRITE and FLUSH to global visibility.  Not FLUSH to persistence: no
/// region of ferrite's is persistent memory.
pub const CAP_FLAGS: u32 = crate::bindings::FERRITE_DEV_CAP_ATOMIC_WRITE | crate::bindings::FERRITE_DEV_CAP_FLUSH_GLOBAL;

/// Port limits.
pub const GID_TABLE_LEN: u32 = 1024;
pub const PKEY_TABLE_LEN: u16 = 1;
pub const MAX_MSG_SIZE: u32 = 1 << 23;
/// The default (full-membership) partition key, the only one a RoCE port has.
pub const DEFAULT_PKEY: u16 = 0xffff;

/// No IEEE OUI: the "vendor unknown" value soft-RoCE uses too.
pub const VENDOR_ID: u32 = 0xff_ffff;
/// ferrite's part number ("fe" for ferrite, 0x2 for RoCE v2).
pub const VENDOR_PART_ID: u32 = 0xfe02;
/// Firmware version reported: the crate version, packed as major << 32 | minor << 16 | patch.
pub const FW_VER: u64 = ferrite_abi::fw::pack(0, 1, 0);
