//! The `ferrite_rs_*` entry points that the C compat layer calls.
//!
//! Each one converts between the fixed-layout structures of `ferrite_compat.h` and
//! the driver's own types, and turns `Result`s into negative errnos.  A device
//! handle handed to C is a `Box<Device>` turned into a raw pointer; C gives it back
//! exactly once, to `ferrite_rs_dev_destroy`.

use alloc::boxed::Box;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;

use ferrite_abi::{AllocUcontextResp, CreateCqResp};
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::bindings as b;
use crate::caps::{self, LIMITS};
use crate::device::{Device, LinkState, Netdev};
use crate::kernel::error::to_rc;
use crate::kernel::{Error, Result};
use crate::registry::Registry;

/// The module-wide registry; set by `ferrite_rs_init`, cleared by `ferrite_rs_exit`.
static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(ptr::null_mut());

fn registry() -> Result<&'static Registry> {
    let p = REGISTRY.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was made by `Box::into_raw` in `ferrite_rs_init` and
    // stays valid until `ferrite_rs_exit`, which C calls only after every device is
    // gone and no entry point can run any more.
    unsafe { p.as_ref() }.ok_or(Error::ENODEV)
}

#[no_mangle]
pub extern "C" fn ferrite_rs_init() -> i32 {
    let r = match Registry::new() {
        Ok(r) => r,
        Err(e) => return e.to_errno(),
    };
    let p = Box::into_raw(Box::new(r));
    if REGISTRY
        .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: `p` was just made by Box::into_raw and never shared.
        drop(unsafe { Box::from_raw(p) });
        return Error::EBUSY.to_errno();
    }
    0
}

#[no_mangle]
pub extern "C" fn ferrite_rs_exit() {
    let p = REGISTRY.swap(ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return;
    }
    // SAFETY: `p` came from Box::into_raw in init; with it swapped out nobody else
    // can reach it (C calls exit once, after the last device is destroyed).
    let r = unsafe { Box::from_raw(p) };
    if !r.is_empty() {
        pr_err!("{} netdev claims left at exit", r.len());
    }
    drop(r);
    let live = crate::kernel::backend::live_allocations();
    if live != 0 {
        pr_err!("{} Rust allocations leaked at exit", live);
    }
}

/// # Safety
/// `ndev` points to a valid `ferrite_netdev_info`; `out` to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_dev_create(
    ndev: *const b::ferrite_netdev_info,
    out: *mut *mut c_void,
) -> i32 {
    // SAFETY: the caller passes a valid, initialised structure (function contract).
    let info = unsafe { &*ndev };
    let len = (info.addr_len as usize).min(info.addr.len());
    let r = Netdev::new(info.key, info.ifindex, info.type_, &info.addr[..len]).and_then(|nd| {
        let reg = registry()?;
        let dev = Device::new(nd)?;
        reg.claim(nd.key)?;
        Ok(Box::into_raw(Box::new(dev)))
    });
    match r {
        Ok(d) => {
            // SAFETY: `out` is writable (function contract).
            unsafe { *out = d as *mut c_void };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `dev` is a handle from `ferrite_rs_dev_create`, passed here once.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_dev_destroy(dev: *mut c_void) {
    if dev.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in dev_create; given back exactly once.
    let d = unsafe { Box::from_raw(dev as *mut Device) };
    if d.pd_count() != 0 || d.mr_count() != 0 {
        pr_err!(
            "device on ifindex {} destroyed with {} PDs and {} MRs",
            d.netdev().ifindex,
            d.pd_count(),
            d.mr_count()
        );
    }
    if let Ok(reg) = registry() {
        reg.release(d.netdev().key);
    }
}

/// # Safety
/// `dev` is a live device handle.
pub(crate) unsafe fn device<'a>(dev: *const c_void) -> &'a Device {
    // SAFETY: live handles point to a Device until ferrite_rs_dev_destroy.
    unsafe { &*(dev as *const Device) }
}

/// # Safety
/// `dev` is a live device handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_dev_query(dev: *const c_void, out: *mut b::ferrite_dev_attr) {
    // SAFETY: function contract.
    let d = unsafe { device(dev) };
    let guid = u64::from_ne_bytes(d.node_guid());
    let l = &LIMITS;
    let a = b::ferrite_dev_attr {
        fw_ver: caps::FW_VER,
        node_guid: guid,
        sys_image_guid: guid,
        max_mr_size: l.max_mr_size,
        page_size_cap: l.page_size_cap,
        vendor_id: caps::VENDOR_ID,
        vendor_part_id: caps::VENDOR_PART_ID,
        hw_ver: 0,
        max_qp: l.max_qp,
        max_qp_wr: l.max_qp_wr,
        max_send_sge: l.max_sge,
        max_recv_sge: l.max_sge,
        max_sge_rd: l.max_sge_rd,
        max_cq: l.max_cq,
        max_cqe: l.max_cqe,
        max_mr: l.max_mr,
        max_pd: l.max_pd,
        max_qp_rd_atom: l.max_qp_rd_atom,
        max_qp_init_rd_atom: l.max_qp_rd_atom,
        max_res_rd_atom: l.max_res_rd_atom,
        max_srq: l.max_srq,
        max_srq_wr: l.max_srq_wr,
        max_srq_sge: l.max_srq_sge,
        max_ah: l.max_ah,
        max_mcast_grp: l.max_mcast_grp,
        max_mcast_qp_attach: l.max_mcast_qp_attach,
        max_total_mcast_qp_attach: l.max_mcast_grp * l.max_mcast_qp_attach,
        max_fast_reg_page_list_len: l.max_fast_reg_page_list_len,
        max_pkeys: l.max_pkeys,
        local_ca_ack_delay: l.local_ca_ack_delay,
        pad: 0,
        cap_flags: caps::CAP_FLAGS,
        reserved: 0,
    };
    // SAFETY: `out` is writable (function contract).
    unsafe { out.write(a) };
}

/// # Safety
/// `dev` is a live device handle; `st` valid; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_port_query(
    dev: *const c_void,
    st: *const b::ferrite_netdev_state,
    out: *mut b::ferrite_port_attr,
) {
    // SAFETY: function contract.
    let (d, st) = unsafe { (device(dev), &*st) };
    let p = d.port_attr(LinkState { mtu: st.mtu, running: st.running != 0, carrier: st.carrier != 0 });
    let a = b::ferrite_port_attr {
        gid_tbl_len: p.gid_tbl_len,
        max_msg_sz: p.max_msg_sz,
        pkey_tbl_len: p.pkey_tbl_len,
        state: p.state as u8,
        phys_state: p.phys_state as u8,
        max_mtu: p.max_mtu as u8,
        active_mtu: p.active_mtu as u8,
        pad: [0; 2],
    };
    // SAFETY: `out` is writable (function contract).
    unsafe { out.write(a) };
}

/// # Safety
/// `dev` is a live device handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_pd_alloc(dev: *const c_void) -> i32 {
    // SAFETY: function contract.
    to_rc(unsafe { device(dev) }.pd_alloc())
}

/// # Safety
/// `dev` is a live device handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_pd_free(dev: *const c_void) {
    // SAFETY: function contract.
    unsafe { device(dev) }.pd_free()
}

const _: () = {
    assert!(ferrite_abi::UVERBS_ABI_VERSION == b::FERRITE_UVERBS_ABI_VERSION);
    assert!(size_of::<AllocUcontextResp>() == b::FERRITE_UCONTEXT_RESP_LEN as usize);
    assert!(size_of::<CreateCqResp>() == b::FERRITE_CREATE_CQ_RESP_LEN as usize);
};

/// Write a `#[repr(C)]` response to C's buffer.
///
/// # Safety
/// `out` is writable for `size_of::<T>()` bytes (any alignment).
unsafe fn write_resp<T: Copy>(out: *mut u8, v: T) {
    // SAFETY: function contract; unaligned write because C's buffer is a byte array.
    unsafe { (out as *mut T).write_unaligned(v) }
}

/// # Safety
/// `out` is writable for FERRITE_UCONTEXT_RESP_LEN bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_ucontext_resp(out: *mut u8) {
    let r = AllocUcontextResp {
        abi_version: ferrite_abi::UVERBS_ABI_VERSION,
        cqe_size: size_of::<ferrite_abi::cq::Cqe>() as u32,
        reserved: [0; 2],
    };
    // SAFETY: function contract.
    unsafe { write_resp(out, r) }
}

/// # Safety
/// `dev` is a live device handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_mr_check(dev: *const c_void, length: u64, access: u32) -> i32 {
    // SAFETY: function contract.
    to_rc(unsafe { device(dev) }.mr_check(length, access))
}

/// # Safety
/// `dev` is a live device handle; `key` is writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_mr_register(
    dev: *const c_void,
    start: u64,
    length: u64,
    iova: u64,
    access: u32,
    pd: u64,
    mr: *mut c_void,
    key: *mut u32,
) -> i32 {
    // SAFETY: function contract.
    match unsafe { device(dev) }.mr_register(start, length, iova, access, pd, mr as u64) {
        Ok(k) => {
            // SAFETY: function contract.
            unsafe { *key = k };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `dev` is a live device handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_mr_deregister(dev: *const c_void, key: u32) -> i32 {
    // SAFETY: function contract.
    to_rc(unsafe { device(dev) }.mr_deregister(key))
}

/// # Safety
/// `dev` is a live device handle.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_mr_count(dev: *const c_void) -> u32 {
    // SAFETY: function contract.
    unsafe { device(dev) }.mr_count()
}

/// # Safety
/// `dev` is a live device handle; `slots` and `bytes` are writable.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_cq_geometry(
    dev: *const c_void,
    depth: u32,
    slots: *mut u32,
    bytes: *mut u64,
) -> i32 {
    // SAFETY: function contract.
    match unsafe { device(dev) }.cq_geometry(depth) {
        Ok((s, n)) => {
            // SAFETY: function contract.
            unsafe {
                *slots = s;
                *bytes = n as u64;
            }
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
/// `out` is writable for FERRITE_CREATE_CQ_RESP_LEN bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrite_rs_cq_resp(mmap_offset: u64, mmap_len: u64, slots: u32, out: *mut u8) {
    let r = CreateCqResp { mmap_offset, mmap_len, slots, reserved: 0 };
    // SAFETY: function contract.
    unsafe { write_resp(out, r) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: u64, ty: u16) -> b::ferrite_netdev_info {
        let mut i = b::ferrite_netdev_info { key, ifindex: 5, mtu: 1500, type_: ty, addr_len: 6, ..Default::default() };
        i.addr[..6].copy_from_slice(&[0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
        i
    }

    // One test walks the whole C-facing life cycle: the registry is global.
    #[test]
    fn c_facing_life_cycle() {
        assert_eq!(ferrite_rs_init(), 0);
        assert_eq!(ferrite_rs_init(), -16, "double init is refused");
        let mut h: *mut c_void = ptr::null_mut();
        // SAFETY: valid pointers to locals.
        unsafe {
            assert_eq!(ferrite_rs_dev_create(&info(77, 1), &mut h), 0);
            let mut h2: *mut c_void = ptr::null_mut();
            assert_eq!(ferrite_rs_dev_create(&info(77, 1), &mut h2), -17, "same netdev twice");
            assert_eq!(ferrite_rs_dev_create(&info(78, 772), &mut h2), -22, "not Ethernet");
            assert!(h2.is_null());

            let mut a = b::ferrite_dev_attr::default();
            ferrite_rs_dev_query(h, &mut a);
            assert_eq!(a.node_guid.to_ne_bytes(), [0x50, 0x54, 0, 0xff, 0xfe, 0xaa, 0xbb, 0xcc]);
            assert_eq!(a.max_pd, LIMITS.max_pd);
            assert_eq!(a.vendor_id, 0xff_ffff);
            assert_eq!(a.cap_flags, b::FERRITE_DEV_CAP_ATOMIC_WRITE | b::FERRITE_DEV_CAP_FLUSH_GLOBAL);

            let st = b::ferrite_netdev_state { mtu: 9000, running: 1, carrier: 1, pad: [0; 2] };
            let mut p = b::ferrite_port_attr::default();
            ferrite_rs_port_query(h, &st, &mut p);
            assert_eq!(p.state as u32, b::FERRITE_PORT_ACTIVE);
            assert_eq!(p.phys_state as u32, b::FERRITE_PHYS_LINK_UP);
            assert_eq!(p.active_mtu, 5);
            let st = b::ferrite_netdev_state { mtu: 1500, running: 1, carrier: 0, pad: [0; 2] };
            ferrite_rs_port_query(h, &st, &mut p);
            assert_eq!(p.state as u32, b::FERRITE_PORT_DOWN);
            assert_eq!(p.phys_state as u32, b::FERRITE_PHYS_DISABLED);
            assert_eq!(p.active_mtu, 3);

            assert_eq!(ferrite_rs_pd_alloc(h), 0);
            assert_eq!(device(h).pd_count(), 1);
            ferrite_rs_pd_free(h);
            assert_eq!(device(h).pd_count(), 0);

            let mut resp = [0u8; 16];
            ferrite_rs_ucontext_resp(resp.as_mut_ptr());
            assert_eq!(&resp[..8], &[1, 0, 0, 0, 64, 0, 0, 0]);

            let mut key = 0u32;
            assert_eq!(ferrite_rs_mr_check(h, 0, 1), -22);
            assert_eq!(ferrite_rs_mr_register(h, 0x1000, 4096, 0x1000, 1, 1, ptr::null_mut(), &mut key), 0);
            assert_eq!(ferrite_rs_mr_count(h), 1);
            assert_eq!(ferrite_rs_mr_deregister(h, key), 0);
            assert_eq!(ferrite_rs_mr_deregister(h, key), -22);

            let (mut slots, mut bytes) = (0u32, 0u64);
            assert_eq!(ferrite_rs_cq_geometry(h, 100, &mut slots, &mut bytes), 0);
            assert_eq!((slots, bytes), (128, 12288));
            assert_eq!(ferrite_rs_cq_geometry(h, 0, &mut slots, &mut bytes), -22);
            let mut cq = [0u8; 24];
            ferrite_rs_cq_resp(0x1000, 12288, 128, cq.as_mut_ptr());
            assert_eq!(&cq[..8], &0x1000u64.to_ne_bytes());
            assert_eq!(&cq[16..20], &128u32.to_ne_bytes());

            ferrite_rs_dev_destroy(h);
            // The netdev is free again.
            assert_eq!(ferrite_rs_dev_create(&info(77, 1), &mut h), 0);
            ferrite_rs_dev_destroy(h);
        }
        ferrite_rs_exit();
        let mut h: *mut c_void = ptr::null_mut();
        // SAFETY: valid pointers to locals.
        assert_eq!(unsafe { ferrite_rs_dev_create(&info(1, 1), &mut h) }, -19, "after exit");
    }
}
