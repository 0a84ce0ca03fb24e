//! The Invalidate Extended Transport Header (IETH): the R_Key a SEND WITH INVALIDATE
//! asks the receiver to invalidate.
//!
//! ```text
//!  bytes 0-3  R_Key
//! ```

use super::{read_u32, write_u32, Error, Result};

/// Length of the IETH.
pub const HEADER_LEN: usize = 4;

pub(crate) mod field {
    use core::ops::Range;

    pub const RKEY: Range<usize> = 0..4;
}

/// A view of an IETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the IETH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the IETH.
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

    /// The R_Key to invalidate.
    pub fn rkey(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RKEY)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_rkey(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RKEY, value);
    }
}

/// An IETH as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub rkey: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads an IETH; `Err(Truncated)` if the buffer is short.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            rkey: packet.rkey(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the IETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_rkey(self.rkey);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // By hand: invalidate R_Key 0x00012a07 (MR index 0x12a, key byte 0x07).
    static IETH: [u8; 4] = [0x00, 0x01, 0x2a, 0x07];

    #[test]
    fn deconstruct() {
        assert_eq!(Packet::new_checked(&IETH[..]).unwrap().rkey(), 0x0001_2a07);
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 4];
        Packet::new_unchecked(&mut buf[..]).set_rkey(0x0001_2a07);
        assert_eq!(buf, IETH);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&IETH[..])).unwrap();
        assert_eq!(repr, Repr { rkey: 0x0001_2a07 });
        let mut buf = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, IETH);
        assert_eq!(repr.buffer_len(), Repr::LEN);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&IETH[..2]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&IETH[..3])),
            Err(Error::Truncated)
        );
    }
}
