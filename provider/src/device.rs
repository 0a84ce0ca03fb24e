//! Device matching and the per-device object.
//!
//! libibverbs asks every provider about every RDMA device.  ferrite claims a device
//! only when its sysfs directory has the `ferrite_abi` attribute (made by ferrite.ko,
//! never by rxe or anyone else) holding the ABI this provider speaks.  Names play no
//! part, so `rdma dev set f0 name x` changes nothing.  libibverbs then also checks
//! the device's uverbs ABI version against [`DEVICE_OPS`]'s range.

use core::ffi::{c_char, CStr};
use core::ptr;

use ferrite_abi::{SYSFS_ABI_ATTR, UVERBS_ABI_VERSION};

use crate::sys::{self, VerbsDevice, VerbsDeviceOps, VerbsMatchEnt, VerbsSysfsDev};

/// An empty match table (just the sentinel): matching is `match_device`'s alone.
static MATCH_TABLE: [VerbsMatchEnt; 1] =
    [VerbsMatchEnt { driver_data: ptr::null(), u: 0, vendor: 0, device: 0, kind: 0, _pad: [0; 3] }];

pub static DEVICE_OPS: VerbsDeviceOps = VerbsDeviceOps {
    name: c"ferrite".as_ptr(),
    match_min_abi_version: UVERBS_ABI_VERSION,
    match_max_abi_version: UVERBS_ABI_VERSION,
    match_table: MATCH_TABLE.as_ptr(),
    static_providers: ptr::null(),
    match_device: Some(match_device),
    alloc_context: Some(crate::context::alloc_context),
    import_context: None,
    alloc_device: Some(alloc_device),
    uninit_device: Some(uninit_device),
};

/// Parse the `ferrite_abi` attribute's text.
pub fn parse_abi(text: &[u8]) -> Option<u32> {
    let s = core::str::from_utf8(text).ok()?.trim();
    s.parse().ok()
}

unsafe extern "C" fn match_device(sysfs_dev: *mut VerbsSysfsDev) -> bool {
    let mut buf = [0 as c_char; 16];
    let name = c"ferrite_abi";
    debug_assert_eq!(name.to_bytes(), SYSFS_ABI_ATTR.as_bytes());
    // SAFETY: buf is writable for its length; the format is a plain "%s" with a
    // NUL-terminated argument; sysfs_dev comes from libibverbs.
    let n = unsafe {
        sys::ibv_read_ibdev_sysfs_file(buf.as_mut_ptr(), buf.len(), sysfs_dev, c"%s".as_ptr(), name.as_ptr())
    };
    if n <= 0 {
        return false; // not a ferrite device
    }
    // SAFETY: the helper NUL-terminates what it read on success.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes();
    if parse_abi(text) == Some(UVERBS_ABI_VERSION) {
        return true;
    }
    crate::context::warn(c"ferrite: device speaks another ferrite ABI than this provider; not claimed\n");
    false
}

unsafe extern "C" fn alloc_device(_sysfs_dev: *mut VerbsSysfsDev) -> *mut VerbsDevice {
    // Zeroed, as libibverbs requires; freed in uninit_device.
    // SAFETY: plain allocation.
    unsafe { libc::calloc(1, core::mem::size_of::<VerbsDevice>()) as *mut VerbsDevice }
}

unsafe extern "C" fn uninit_device(dev: *mut VerbsDevice) {
    // SAFETY: `dev` came from alloc_device's calloc.
    unsafe { libc::free(dev as *mut libc::c_void) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_attribute_parsing() {
        assert_eq!(parse_abi(b"1"), Some(1));
        assert_eq!(parse_abi(b"1\n"), Some(1));
        assert_eq!(parse_abi(b" 7 "), Some(7));
        assert_eq!(parse_abi(b""), None);
        assert_eq!(parse_abi(b"rxe"), None);
        assert_eq!(parse_abi(b"\xff"), None);
    }

    #[test]
    fn ops_name_and_range() {
        // SAFETY: a static C string.
        let name = unsafe { CStr::from_ptr(DEVICE_OPS.name) };
        assert_eq!(name.to_bytes(), b"ferrite");
        assert_eq!(DEVICE_OPS.match_min_abi_version, UVERBS_ABI_VERSION);
        assert_eq!(DEVICE_OPS.match_max_abi_version, UVERBS_ABI_VERSION);
        assert_eq!(MATCH_TABLE[0].kind, 0, "sentinel only");
    }
}
