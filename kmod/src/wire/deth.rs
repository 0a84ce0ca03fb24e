//! The Datagram Extended Transport Header (DETH): the Q_Key and source QP of a UD
//! SEND.
//!
//! ```text
//!  bytes 0-3  Q_Key
//!  byte 4     reserved
//!  bytes 5-7  source QP (24 bits)
//! ```

use super::{read_u24, read_u32, read_u8, write_u24, write_u32, write_u8, Error, Result};

/// Length of the DETH.
pub const HEADER_LEN: usize = 8;

pub(crate) mod field {
    use core::ops::Range;

    pub const QKEY: Range<usize> = 0..4;
    pub const RESV8: usize = 4;
    pub const SRC_QP: Range<usize> = 5..8;
}

/// A view of a DETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the DETH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the DETH.
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

    /// The queue key.
    pub fn qkey(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::QKEY)
    }

    /// The reserved byte.
    pub fn resv8(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::RESV8)
    }

    /// The sender's QP number (24 bits).
    pub fn src_qp(&self) -> u32 {
        read_u24(self.buffer.as_ref(), field::SRC_QP)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_qkey(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::QKEY, value);
    }

    pub fn set_resv8(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::RESV8, value);
    }

    /// Sets the sender's QP number (24 bits).
    pub fn set_src_qp(&mut self, value: u32) {
        write_u24(self.buffer.as_mut(), field::SRC_QP, value);
    }
}

/// A DETH as values (the reserved byte is ignored by `parse`, written 0 by `emit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub qkey: u32,
    /// 24 bits.
    pub src_qp: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads a DETH; `Err(Truncated)` if the buffer is short.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            qkey: packet.qkey(),
            src_qp: packet.src_qp(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the DETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_qkey(self.qkey);
        packet.set_resv8(0);
        packet.set_src_qp(self.src_qp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // By hand: a MAD to QP1, Q_Key 0x80010000 (the well-known GSI Q_Key), from QP 1.
    static GSI: [u8; 8] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01];

    // By hand: Q_Key 0x11223344, reserved byte 0x5a, source QP 0xabcdef.
    static ODD: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x5a, 0xab, 0xcd, 0xef];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&GSI[..]).unwrap();
        assert_eq!(p.qkey(), 0x8001_0000);
        assert_eq!(p.resv8(), 0);
        assert_eq!(p.src_qp(), 1);
        let p = Packet::new_checked(&ODD[..]).unwrap();
        assert_eq!(p.qkey(), 0x1122_3344);
        assert_eq!(p.resv8(), 0x5a);
        assert_eq!(p.src_qp(), 0xab_cdef);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_qkey(0x1122_3344);
        p.set_resv8(0x5a);
        p.set_src_qp(0xab_cdef);
        assert_eq!(buf, ODD);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&GSI[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                qkey: 0x8001_0000,
                src_qp: 1
            }
        );
        let mut buf = [0xffu8; 8];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, GSI);
        assert_eq!(repr.buffer_len(), Repr::LEN);

        // The reserved byte does not survive a round trip through Repr.
        let repr = Repr::parse(&Packet::new_unchecked(&ODD[..])).unwrap();
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x11, 0x22, 0x33, 0x44, 0x00, 0xab, 0xcd, 0xef]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&GSI[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&GSI[..4])),
            Err(Error::Truncated)
        );
    }
}
