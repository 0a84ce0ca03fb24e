//! The firmware version.
//!
//! The kernel reports it as one `u64` in query_device (`major << 32 | minor << 16 |
//! patch`, as soft-RoCE does), and sysfs `fw_ver` shows it as "major.minor.patch".
//! libibverbs leaves the string of `ibv_device_attr::fw_ver` to the provider, which
//! makes it here from the same `u64`, so `ibv_devinfo` and sysfs agree.

/// Packs a version the way query_device reports it.
pub const fn pack(major: u16, minor: u16, patch: u16) -> u64 {
    ((major as u64) << 32) | ((minor as u64) << 16) | patch as u64
}

/// The (major, minor, patch) of a packed version; bits above 48 are ignored.
pub const fn unpack(raw: u64) -> (u16, u16, u16) {
    ((raw >> 32) as u16, (raw >> 16) as u16, raw as u16)
}

/// Writes "major.minor.patch" and a terminating NUL into `out` (the 64 bytes of
/// `ibv_device_attr::fw_ver`); returns the length without the NUL.  The longest
/// string, "65535.65535.65535", takes 18 bytes.
pub fn format(raw: u64, out: &mut [u8; 64]) -> usize {
    let (major, minor, patch) = unpack(raw);
    let mut n = 0;
    for (i, part) in [major, minor, patch].into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        let mut digits = [0u8; 5];
        let mut len = 0;
        let mut v = part;
        loop {
            digits[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for d in digits[..len].iter().rev() {
            out[n] = *d;
            n += 1;
        }
    }
    out[n] = 0;
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: u64) -> ([u8; 64], usize) {
        let mut out = [0xffu8; 64];
        let n = format(raw, &mut out);
        assert_eq!(out[n], 0, "NUL-terminated");
        (out, n)
    }

    #[test]
    fn formats_like_sysfs() {
        let (out, n) = text(pack(0, 1, 0));
        assert_eq!(&out[..n], b"0.1.0");
        let (out, n) = text(pack(12, 345, 6789));
        assert_eq!(&out[..n], b"12.345.6789");
        let (out, n) = text(pack(u16::MAX, u16::MAX, u16::MAX));
        assert_eq!(&out[..n], b"65535.65535.65535");
    }

    #[test]
    fn unpack_inverts_pack_and_ignores_high_bits() {
        assert_eq!(unpack(pack(3, 2, 1)), (3, 2, 1));
        assert_eq!(unpack(pack(3, 2, 1) | 0xffff << 48), (3, 2, 1));
    }
}
