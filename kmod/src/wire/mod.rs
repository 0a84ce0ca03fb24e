//! The wire layer: RoCE v2 transport headers as zero-copy views over byte buffers.
//!
//! One file per header, in the manner of smoltcp's `wire` module.  Each file offers
//!
//! - `Packet<T: AsRef<[u8]>>`, a view over a buffer that starts at the header.
//!   `Packet::new_checked` checks the length once and returns [`Error::Truncated`] for a
//!   buffer shorter than the header; then there is one getter per field, and, for a
//!   mutable buffer, one setter per field.
//! - `Repr`, the header as plain values, with `parse` (from a `Packet`), `emit` (into
//!   a `Packet`) and `buffer_len`.
//!
//! All multi-byte fields are big-endian on the wire.  The layer knows the layout of
//! each header and nothing about which headers a packet carries: that is the opcode
//! table's business ([`crate::opcode`]).  [`icrc`] computes RoCE v2's invariant CRC
//! over a whole IP datagram.
//!
//! Nothing here allocates, and nothing panics on any input.  Field accessors go
//! through [`read`] and [`write`], which never index out of bounds: on a `Packet`
//! made with `new_unchecked` over a buffer that is too short, a getter reads the
//! missing bytes as zero and a setter drops them (a caller bug, caught by a
//! `debug_assert!` in test builds).  Code that handles untrusted bytes uses
//! `new_checked`, and every `Repr::parse` checks the length again itself.

pub mod aeth;
pub mod atomic;
pub mod bth;
pub mod deth;
pub mod feth;
pub mod icrc;
pub mod ieth;
pub mod immdt;
pub mod reth;

use core::ops::Range;

/// Why bytes could not be read as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or than the lengths it declares).
    Truncated,
    /// The bytes are long enough but not a valid header (a bad version, a length
    /// field that disagrees with the buffer, an unsupported layout).
    Malformed,
}

/// The wire layer's result type.
pub type Result<T> = core::result::Result<T, Error>;

/// The `N` bytes of `buf` at `range` (which must be `N` long), or zeros where `buf`
/// is too short.  Never panics.
#[inline]
pub(crate) fn read<const N: usize>(buf: &[u8], range: Range<usize>) -> [u8; N] {
    match buf.get(range).and_then(|s| <[u8; N]>::try_from(s).ok()) {
        Some(bytes) => bytes,
        None => {
            debug_assert!(false, "wire: read past a short buffer");
            [0; N]
        }
    }
}

/// Writes `bytes` to `buf` at `range` (which must be `bytes.len()` long); drops the
/// write where `buf` is too short.  Never panics.
#[inline]
pub(crate) fn write(buf: &mut [u8], range: Range<usize>, bytes: &[u8]) {
    match buf.get_mut(range) {
        Some(dst) => {
            debug_assert_eq!(dst.len(), bytes.len());
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d = *s;
            }
        }
        None => debug_assert!(false, "wire: write past a short buffer"),
    }
}

/// The byte of `buf` at `at`, or zero where `buf` is too short.
#[inline]
pub(crate) fn read_u8(buf: &[u8], at: usize) -> u8 {
    read::<1>(buf, at..at + 1)[0]
}

/// Sets the byte of `buf` at `at`; dropped where `buf` is too short.
#[inline]
pub(crate) fn write_u8(buf: &mut [u8], at: usize, value: u8) {
    write(buf, at..at + 1, &[value]);
}

/// A big-endian `u16` at `range` (2 bytes).
#[inline]
pub(crate) fn read_u16(buf: &[u8], range: Range<usize>) -> u16 {
    u16::from_be_bytes(read(buf, range))
}

/// A big-endian 24-bit value at `range` (3 bytes).
#[inline]
pub(crate) fn read_u24(buf: &[u8], range: Range<usize>) -> u32 {
    let [a, b, c] = read::<3>(buf, range);
    u32::from_be_bytes([0, a, b, c])
}

/// A big-endian `u32` at `range` (4 bytes).
#[inline]
pub(crate) fn read_u32(buf: &[u8], range: Range<usize>) -> u32 {
    u32::from_be_bytes(read(buf, range))
}

/// A big-endian `u64` at `range` (8 bytes).
#[inline]
pub(crate) fn read_u64(buf: &[u8], range: Range<usize>) -> u64 {
    u64::from_be_bytes(read(buf, range))
}

/// Writes a big-endian `u16` at `range` (2 bytes).
#[inline]
pub(crate) fn write_u16(buf: &mut [u8], range: Range<usize>, value: u16) {
    write(buf, range, &value.to_be_bytes());
}

/// Writes the low 24 bits of `value`, big-endian, at `range` (3 bytes).  Higher bits
/// do not fit the field: they are dropped (and flagged in test builds).
#[inline]
pub(crate) fn write_u24(buf: &mut [u8], range: Range<usize>, value: u32) {
    debug_assert!(
        value <= 0x00ff_ffff,
        "wire: {value:#x} does not fit 24 bits"
    );
    let [_, a, b, c] = value.to_be_bytes();
    write(buf, range, &[a, b, c]);
}

/// Writes a big-endian `u32` at `range` (4 bytes).
#[inline]
pub(crate) fn write_u32(buf: &mut [u8], range: Range<usize>, value: u32) {
    write(buf, range, &value.to_be_bytes());
}

/// Writes a big-endian `u64` at `range` (8 bytes).
#[inline]
pub(crate) fn write_u64(buf: &mut [u8], range: Range<usize>, value: u64) {
    write(buf, range, &value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_are_big_endian() {
        let mut buf = [0u8; 8];
        write_u64(&mut buf, 0..8, 0x0102_0304_0506_0708);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(read_u16(&buf, 1..3), 0x0203);
        assert_eq!(read_u24(&buf, 5..8), 0x06_0708);
        assert_eq!(read_u32(&buf, 4..8), 0x0506_0708);
        write_u24(&mut buf, 0..3, 0xab_cdef);
        write_u16(&mut buf, 3..5, 0x1122);
        write_u8(&mut buf, 5, 0x33);
        assert_eq!(buf, [0xab, 0xcd, 0xef, 0x11, 0x22, 0x33, 7, 8]);
        assert_eq!(read_u8(&buf, 7), 8);
    }
}
