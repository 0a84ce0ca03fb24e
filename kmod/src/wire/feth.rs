//! The FLUSH Extended Transport Header (FETH) of IBTA 1.5's FLUSH request: what to
//! make durable, and how much of the region.
//!
//! ```text
//!  bits 31-6   reserved (zero)
//!  bits 5-4    selectivity level: 0 the RETH's range, 1 the whole memory region
//!  bits 3-0    placement type: bit 0 global visibility, bit 1 persistence
//! ```
//!
//! One big-endian 32-bit word, as rxe's `feth_init` writes it.

use super::{read_u32, write_u32, Error, Result};

/// Length of the FETH.
pub const HEADER_LEN: usize = 4;

/// Placement type bits (IB_FLUSH_GLOBAL, IB_FLUSH_PERSISTENT).
pub const PLT_GLOBAL: u8 = 1 << 0;
pub const PLT_PERSISTENT: u8 = 1 << 1;
/// Selectivity levels (IB_FLUSH_RANGE, IB_FLUSH_MR).
pub const SEL_RANGE: u8 = 0;
pub const SEL_MR: u8 = 1;

pub(crate) mod field {
    use core::ops::Range;

    pub const BITS: Range<usize> = 0..4;
    pub const PLT_MASK: u32 = 0x0000_000f;
    pub const SEL_MASK: u32 = 0x0000_0030;
    pub const SEL_SHIFT: u32 = 4;
}

/// A view of a FETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the FETH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the FETH.
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

    fn bits(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::BITS)
    }

    /// The placement type (bits 3-0).
    pub fn placement_type(&self) -> u8 {
        (self.bits() & field::PLT_MASK) as u8
    }

    /// The selectivity level (bits 5-4).
    pub fn selectivity(&self) -> u8 {
        ((self.bits() & field::SEL_MASK) >> field::SEL_SHIFT) as u8
    }

    /// Bits 31-6, which the specification reserves.
    pub fn reserved(&self) -> u32 {
        self.bits() & !(field::PLT_MASK | field::SEL_MASK)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the placement type; bits above 3 do not fit and are dropped.
    pub fn set_placement_type(&mut self, value: u8) {
        let b = (self.bits() & !field::PLT_MASK) | (u32::from(value) & field::PLT_MASK);
        write_u32(self.buffer.as_mut(), field::BITS, b);
    }

    /// Sets the selectivity level; bits above 1 do not fit and are dropped.
    pub fn set_selectivity(&mut self, value: u8) {
        let s = (u32::from(value) << field::SEL_SHIFT) & field::SEL_MASK;
        let b = (self.bits() & !field::SEL_MASK) | s;
        write_u32(self.buffer.as_mut(), field::BITS, b);
    }

    /// Clears the reserved bits.
    pub fn clear_reserved(&mut self) {
        let b = self.bits() & (field::PLT_MASK | field::SEL_MASK);
        write_u32(self.buffer.as_mut(), field::BITS, b);
    }
}

/// A FETH as values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repr {
    /// [`PLT_GLOBAL`] and/or [`PLT_PERSISTENT`] (4 bits).
    pub placement_type: u8,
    /// [`SEL_RANGE`] or [`SEL_MR`] (2 bits).
    pub selectivity: u8,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads a FETH; `Err(Truncated)` if the buffer is short.  The reserved bits are
    /// ignored, as a responder must.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            placement_type: packet.placement_type(),
            selectivity: packet.selectivity(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the FETH (the reserved bits as zero).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.clear_reserved();
        packet.set_placement_type(self.placement_type);
        packet.set_selectivity(self.selectivity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The FETH of a FLUSH of the whole region to global visibility: selectivity 1
    // (bits 5-4), placement type 1 (bits 3-0), as rxe's feth_init(pkt, 1, 1) writes.
    static FLUSH_MR_GLOBAL: [u8; 4] = [0x00, 0x00, 0x00, 0x11];
    // A range flush to persistence, placement type 2.
    static FLUSH_RANGE_PERSISTENT: [u8; 4] = [0x00, 0x00, 0x00, 0x02];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&FLUSH_MR_GLOBAL[..]).unwrap();
        assert_eq!((p.placement_type(), p.selectivity(), p.reserved()), (PLT_GLOBAL, SEL_MR, 0));
        let p = Packet::new_checked(&FLUSH_RANGE_PERSISTENT[..]).unwrap();
        assert_eq!((p.placement_type(), p.selectivity()), (PLT_PERSISTENT, SEL_RANGE));
        let odd = [0xff, 0xff, 0xff, 0xc3];
        let p = Packet::new_checked(&odd[..]).unwrap();
        assert_eq!((p.placement_type(), p.selectivity(), p.reserved()), (3, 0, 0xffff_ffc0));
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 4];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.clear_reserved();
        p.set_placement_type(PLT_GLOBAL);
        p.set_selectivity(SEL_MR);
        assert_eq!(buf, FLUSH_MR_GLOBAL);
    }

    #[test]
    fn parse_and_emit() {
        for (bytes, repr) in [
            (FLUSH_MR_GLOBAL, Repr { placement_type: PLT_GLOBAL, selectivity: SEL_MR }),
            (FLUSH_RANGE_PERSISTENT, Repr { placement_type: PLT_PERSISTENT, selectivity: SEL_RANGE }),
        ] {
            assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(repr));
            let mut buf = [0xffu8; 4];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
            assert_eq!(repr.buffer_len(), Repr::LEN);
        }
        // Reserved bits on the wire are ignored; what does not fit is dropped.
        let r = Repr::parse(&Packet::new_unchecked(&[0x80u8, 0, 0, 0x13][..])).unwrap();
        assert_eq!(r, Repr { placement_type: 3, selectivity: 1 });
        let mut buf = [0u8; 4];
        Repr { placement_type: 0x1f, selectivity: 6 }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0, 0, 0, 0x2f]);
    }

    #[test]
    fn truncated() {
        assert_eq!(Packet::new_checked(&FLUSH_MR_GLOBAL[..3]).unwrap_err(), Error::Truncated);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&FLUSH_MR_GLOBAL[..2])), Err(Error::Truncated));
    }
}
