//! The ABI between `ferrite.ko` and ferrite's rdma-core provider.
//!
//! Defined once, here, and used by both sides: the kernel's Rust code (`kmod`) and the
//! provider (`provider`).  Everything is `#[repr(C)]` with fixed-width fields and
//! explicit padding, and every layout is asserted at compile time, so a change that
//! moves a byte fails the build of both sides at once.
//!
//! Versioning: [`UVERBS_ABI_VERSION`] is the device's `uverbs_abi_ver`, which
//! libibverbs checks against the provider's accepted range before it ever calls the
//! provider; the `alloc_ucontext` response repeats it so the provider can refuse a
//! module of another ABI with a clear message instead of misreading a ring.
#![no_std]

pub mod access;
pub mod cq;
pub mod fw;
pub mod wq;

/// Bumped whenever any layout in this crate changes.
pub const UVERBS_ABI_VERSION: u32 = 1;

/// Name of the per-device sysfs attribute (under /sys/class/infiniband/DEV/) that holds
/// [`UVERBS_ABI_VERSION`] in decimal.  The provider claims a device only if it has this
/// attribute, so it never claims rxe or another driver's device, whatever its name.
pub const SYSFS_ABI_ATTR: &str = "ferrite_abi";

/// Response to `alloc_ucontext` (IB_USER_VERBS_CMD_GET_CONTEXT), after the core's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocUcontextResp {
    pub abi_version: u32,
    /// Size of one [`cq::Cqe`] as the kernel writes it.
    pub cqe_size: u32,
    pub reserved: [u32; 2],
}

/// Response to `create_cq`, after the core's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateCqResp {
    /// Offset to pass to mmap() on the context's command fd to map the ring.
    pub mmap_offset: u64,
    /// Bytes to map: [`cq::ring_bytes`] of `slots`.
    pub mmap_len: u64,
    /// Ring slots (a power of two, at least the CQ depth asked for plus one).
    pub slots: u32,
    pub reserved: u32,
}

const _: () = {
    assert!(core::mem::size_of::<AllocUcontextResp>() == 16);
    assert!(core::mem::size_of::<CreateCqResp>() == 24);
};
