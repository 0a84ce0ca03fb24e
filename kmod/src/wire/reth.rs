//! The RDMA Extended Transport Header (RETH): where an RDMA WRITE, RDMA READ,
//! ATOMIC WRITE or FLUSH request lands in the responder's memory.
//!
//! ```text
//!  bytes 0-7    virtual address
//!  bytes 8-11   R_Key
//!  bytes 12-15  DMA length (of the whole message, in bytes)
//! ```

use super::{read_u32, read_u64, write_u32, write_u64, Error, Result};

/// Length of the RETH.
pub const HEADER_LEN: usize = 16;

pub(crate) mod field {
    use core::ops::Range;

    pub const VA: Range<usize> = 0..8;
    pub const RKEY: Range<usize> = 8..12;
    pub const DMA_LEN: Range<usize> = 12..16;
}

/// A view of a RETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the RETH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the RETH.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The virtual address in the responder's memory region.
    pub fn va(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::VA)
    }

    /// The remote key of that memory region.
    pub fn rkey(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RKEY)
    }

    /// The length of the whole message.
    pub fn dma_len(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::DMA_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_va(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::VA, value);
    }

    pub fn set_rkey(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RKEY, value);
    }

    pub fn set_dma_len(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::DMA_LEN, value);
    }
}

/// A RETH as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub va: u64,
    pub rkey: u32,
    pub dma_len: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads a RETH; `Err(Truncated)` if the buffer is short.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            va: packet.va(),
            rkey: packet.rkey(),
            dma_len: packet.dma_len(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the RETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_va(self.va);
        packet.set_rkey(self.rkey);
        packet.set_dma_len(self.dma_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The RETH of an RC RDMA WRITE ONLY captured from a ConnectX NIC (RoCE v1), as
    // quoted in scapy's test/contrib/roce.uts: VA 0x55d4c0726000, R_Key 0x47b3,
    // 5 bytes.
    static WRITE_ONLY: [u8; 16] = [
        0x00, 0x00, 0x55, 0xd4, 0xc0, 0x72, 0x60, 0x00, 0x00, 0x00, 0x47, 0xb3, 0x00, 0x00, 0x00,
        0x05,
    ];

    const REPR: Repr = Repr {
        va: 0x55d4_c072_6000,
        rkey: 0x47b3,
        dma_len: 5,
    };

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&WRITE_ONLY[..]).unwrap();
        assert_eq!(p.va(), 0x55d4_c072_6000);
        assert_eq!(p.rkey(), 0x47b3);
        assert_eq!(p.dma_len(), 5);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 16];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_va(0x55d4_c072_6000);
        p.set_rkey(0x47b3);
        p.set_dma_len(5);
        assert_eq!(buf, WRITE_ONLY);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&WRITE_ONLY[..])).unwrap();
        assert_eq!(repr, REPR);
        let mut buf = [0xffu8; 16];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, WRITE_ONLY);
        assert_eq!(repr.buffer_len(), Repr::LEN);
    }

    #[test]
    fn longer_buffer_is_fine() {
        let mut buf = [0u8; 20];
        buf[..16].copy_from_slice(&WRITE_ONLY);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(REPR)
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&WRITE_ONLY[..15]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&WRITE_ONLY[..8])),
            Err(Error::Truncated)
        );
    }
}
