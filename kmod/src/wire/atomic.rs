//! The two atomic headers: the Atomic Extended Transport Header (AtomicETH) of a
//! COMPARE SWAP or FETCH ADD request, and the Atomic Acknowledge Extended Transport
//! Header (AtomicAckETH) of its ATOMIC ACKNOWLEDGE response.
//!
//! ```text
//! AtomicETH, 28 bytes:
//!  bytes 0-7    virtual address (8-byte aligned)
//!  bytes 8-11   R_Key
//!  bytes 12-19  swap data (COMPARE SWAP) or add data (FETCH ADD)
//!  bytes 20-27  compare data (COMPARE SWAP; unused by FETCH ADD)
//!
//! AtomicAckETH, 8 bytes:
//!  bytes 0-7    original remote data
//! ```

use super::{read_u32, read_u64, write_u32, write_u64, Error, Result};

/// Length of the AtomicETH.
pub const ATOMIC_ETH_LEN: usize = 28;
/// Length of the AtomicAckETH.
pub const ATOMIC_ACK_ETH_LEN: usize = 8;

pub(crate) mod field {
    use core::ops::Range;

    // AtomicETH
    pub const VA: Range<usize> = 0..8;
    pub const RKEY: Range<usize> = 8..12;
    pub const SWAP_ADD: Range<usize> = 12..20;
    pub const COMPARE: Range<usize> = 20..28;

    // AtomicAckETH
    pub const ORIG: Range<usize> = 0..8;
}

fn check(len: usize, need: usize) -> Result<()> {
    if len < need {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

/// A view of an AtomicETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicEthPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AtomicEthPacket<T> {
    /// Wraps `buffer` without checking its length (see
    /// [`AtomicEthPacket::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> AtomicEthPacket<T> {
        AtomicEthPacket { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the AtomicETH.
    pub fn new_checked(buffer: T) -> Result<AtomicEthPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the AtomicETH.
    pub fn check_len(&self) -> Result<()> {
        check(self.buffer.as_ref().len(), ATOMIC_ETH_LEN)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The virtual address of the 8-byte target.
    pub fn va(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::VA)
    }

    /// The remote key of the target's memory region.
    pub fn rkey(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RKEY)
    }

    /// Swap data (COMPARE SWAP) or add data (FETCH ADD).
    pub fn swap_add(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SWAP_ADD)
    }

    /// Compare data (COMPARE SWAP).
    pub fn compare(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::COMPARE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtomicEthPacket<T> {
    pub fn set_va(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::VA, value);
    }

    pub fn set_rkey(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RKEY, value);
    }

    pub fn set_swap_add(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::SWAP_ADD, value);
    }

    pub fn set_compare(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::COMPARE, value);
    }
}

/// An AtomicETH as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicEthRepr {
    pub va: u64,
    pub rkey: u32,
    pub swap_add: u64,
    pub compare: u64,
}

impl AtomicEthRepr {
    /// Length of the header this represents.
    pub const LEN: usize = ATOMIC_ETH_LEN;

    /// Reads an AtomicETH; `Err(Truncated)` if the buffer is short.  (Whether the VA
    /// is 8-byte aligned is the responder's check: a misaligned one is an invalid
    /// request, not a malformed header.)
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &AtomicEthPacket<&T>) -> Result<Self> {
        packet.check_len()?;
        Ok(AtomicEthRepr {
            va: packet.va(),
            rkey: packet.rkey(),
            swap_add: packet.swap_add(),
            compare: packet.compare(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        ATOMIC_ETH_LEN
    }

    /// Writes every byte of the AtomicETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut AtomicEthPacket<&mut T>,
    ) {
        packet.set_va(self.va);
        packet.set_rkey(self.rkey);
        packet.set_swap_add(self.swap_add);
        packet.set_compare(self.compare);
    }
}

/// A view of an AtomicAckETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicAckPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AtomicAckPacket<T> {
    /// Wraps `buffer` without checking its length (see
    /// [`AtomicAckPacket::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> AtomicAckPacket<T> {
        AtomicAckPacket { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the AtomicAckETH.
    pub fn new_checked(buffer: T) -> Result<AtomicAckPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the AtomicAckETH.
    pub fn check_len(&self) -> Result<()> {
        check(self.buffer.as_ref().len(), ATOMIC_ACK_ETH_LEN)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The target's value before the atomic operation.
    pub fn orig(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::ORIG)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtomicAckPacket<T> {
    pub fn set_orig(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::ORIG, value);
    }
}

/// An AtomicAckETH as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicAckRepr {
    pub orig: u64,
}

impl AtomicAckRepr {
    /// Length of the header this represents.
    pub const LEN: usize = ATOMIC_ACK_ETH_LEN;

    /// Reads an AtomicAckETH; `Err(Truncated)` if the buffer is short.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &AtomicAckPacket<&T>) -> Result<Self> {
        packet.check_len()?;
        Ok(AtomicAckRepr {
            orig: packet.orig(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        ATOMIC_ACK_ETH_LEN
    }

    /// Writes every byte of the AtomicAckETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut AtomicAckPacket<&mut T>,
    ) {
        packet.set_orig(self.orig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // By hand: a COMPARE SWAP at VA 0x00007f12_34567808, R_Key 0x00c0ffee, swap
    // 0x1111_2222_3333_4444, compare 0x8877_6655_4433_2211.
    static CMP_SWAP: [u8; 28] = [
        0x00, 0x00, 0x7f, 0x12, 0x34, 0x56, 0x78, 0x08, // VA
        0x00, 0xc0, 0xff, 0xee, // R_Key
        0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, // swap
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // compare
    ];

    const CMP_SWAP_REPR: AtomicEthRepr = AtomicEthRepr {
        va: 0x0000_7f12_3456_7808,
        rkey: 0x00c0_ffee,
        swap_add: 0x1111_2222_3333_4444,
        compare: 0x8877_6655_4433_2211,
    };

    // By hand: the original value 0x0123_4567_89ab_cdef.
    static ACK: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    #[test]
    fn atomic_eth_deconstruct() {
        let p = AtomicEthPacket::new_checked(&CMP_SWAP[..]).unwrap();
        assert_eq!(p.va(), 0x0000_7f12_3456_7808);
        assert_eq!(p.rkey(), 0x00c0_ffee);
        assert_eq!(p.swap_add(), 0x1111_2222_3333_4444);
        assert_eq!(p.compare(), 0x8877_6655_4433_2211);
    }

    #[test]
    fn atomic_eth_construct() {
        let mut buf = [0u8; 28];
        let mut p = AtomicEthPacket::new_unchecked(&mut buf[..]);
        p.set_va(0x0000_7f12_3456_7808);
        p.set_rkey(0x00c0_ffee);
        p.set_swap_add(0x1111_2222_3333_4444);
        p.set_compare(0x8877_6655_4433_2211);
        assert_eq!(buf, CMP_SWAP);
    }

    #[test]
    fn atomic_eth_parse_and_emit() {
        let repr = AtomicEthRepr::parse(&AtomicEthPacket::new_unchecked(&CMP_SWAP[..]));
        assert_eq!(repr, Ok(CMP_SWAP_REPR));
        let mut buf = [0xffu8; 28];
        CMP_SWAP_REPR.emit(&mut AtomicEthPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, CMP_SWAP);
        assert_eq!(CMP_SWAP_REPR.buffer_len(), 28);
    }

    #[test]
    fn atomic_ack_round_trip() {
        let p = AtomicAckPacket::new_checked(&ACK[..]).unwrap();
        assert_eq!(p.orig(), 0x0123_4567_89ab_cdef);
        let repr = AtomicAckRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            AtomicAckRepr {
                orig: 0x0123_4567_89ab_cdef
            }
        );
        let mut buf = [0u8; 8];
        AtomicAckPacket::new_unchecked(&mut buf[..]).set_orig(0x0123_4567_89ab_cdef);
        assert_eq!(buf, ACK);
        let mut buf = [0xffu8; 8];
        repr.emit(&mut AtomicAckPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ACK);
        assert_eq!(repr.buffer_len(), AtomicAckRepr::LEN);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            AtomicEthPacket::new_checked(&CMP_SWAP[..27]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            AtomicEthRepr::parse(&AtomicEthPacket::new_unchecked(&CMP_SWAP[..20])),
            Err(Error::Truncated)
        );
        assert_eq!(
            AtomicAckPacket::new_checked(&ACK[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            AtomicAckRepr::parse(&AtomicAckPacket::new_unchecked(&ACK[..0])),
            Err(Error::Truncated)
        );
    }
}
