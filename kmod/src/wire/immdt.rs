//! The Immediate Data Extended Transport Header (ImmDt): the 4 bytes a SEND or RDMA
//! WRITE "with immediate" hands to the receiver's completion.
//!
//! ```text
//!  bytes 0-3  immediate data
//! ```
//!
//! The value is kept as read big-endian; verbs hands it to the consumer as the same
//! 4 bytes (`imm_data` is `__be32`), so a caller that stores the completion's
//! `imm_data` converts back with `u32::to_be`.

use super::{read_u32, write_u32, Error, Result};

/// Length of the ImmDt.
pub const HEADER_LEN: usize = 4;

pub(crate) mod field {
    use core::ops::Range;

    pub const IMM: Range<usize> = 0..4;
}

/// A view of an ImmDt at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the ImmDt.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the ImmDt.
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

    /// The immediate data, read big-endian.
    pub fn imm(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::IMM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the immediate data, written big-endian.
    pub fn set_imm(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::IMM, value);
    }
}

/// An ImmDt as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub imm: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads an ImmDt; `Err(Truncated)` if the buffer is short.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr { imm: packet.imm() })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the ImmDt.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_imm(self.imm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // By hand: immediate data 0xdeadbeef.
    static IMM: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn deconstruct() {
        assert_eq!(Packet::new_checked(&IMM[..]).unwrap().imm(), 0xdead_beef);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 4];
        Packet::new_unchecked(&mut buf[..]).set_imm(0xdead_beef);
        assert_eq!(buf, IMM);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&IMM[..])).unwrap();
        assert_eq!(repr, Repr { imm: 0xdead_beef });
        let mut buf = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, IMM);
        assert_eq!(repr.buffer_len(), Repr::LEN);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&IMM[..3]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&IMM[..1])),
            Err(Error::Truncated)
        );
    }
}
