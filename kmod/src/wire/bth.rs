//! The Base Transport Header (BTH): the 12 bytes that start every RoCE v2 packet,
//! right after the UDP header.
//!
//! ```text
//!  byte 0      opcode
//!  byte 1      SE(7) M(6) PadCnt(5-4) TVer(3-0)
//!  bytes 2-3   P_Key
//!  byte 4      FECN(7) BECN(6) resv6(5-0)      ("resv8a": masked for the ICRC)
//!  bytes 5-7   destination QP
//!  byte 8      AckReq(7) resv7(6-0)
//!  bytes 9-11  PSN
//! ```

use super::{read_u16, read_u24, read_u8, write_u16, write_u24, write_u8, Error, Result};

/// Length of the BTH.
pub const HEADER_LEN: usize = 12;
/// Length of the BTH (the name the rest of the driver uses).
pub const BTH_LEN: usize = HEADER_LEN;

pub(crate) mod field {
    use core::ops::Range;

    pub const OPCODE: usize = 0;
    /// SE, M, PadCnt, TVer.
    pub const FLAGS: usize = 1;
    pub const PKEY: Range<usize> = 2..4;
    /// FECN, BECN, resv6: the byte the ICRC takes as all ones ("resv8a").
    pub const RESV8A: usize = 4;
    pub const DEST_QPN: Range<usize> = 5..8;
    /// AckReq, resv7.
    pub const ACK_REQ: usize = 8;
    pub const PSN: Range<usize> = 9..12;

    pub const SE_BIT: u8 = 0x80;
    pub const M_BIT: u8 = 0x40;
    pub const PAD_MASK: u8 = 0x30;
    pub const PAD_SHIFT: u32 = 4;
    pub const TVER_MASK: u8 = 0x0f;
    pub const FECN_BIT: u8 = 0x80;
    pub const BECN_BIT: u8 = 0x40;
    pub const RESV6_MASK: u8 = 0x3f;
    pub const ACK_REQ_BIT: u8 = 0x80;
    pub const RESV7_MASK: u8 = 0x7f;
}

/// A view of a BTH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the BTH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the BTH.
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

    fn byte(&self, at: usize) -> u8 {
        read_u8(self.buffer.as_ref(), at)
    }

    /// The opcode (transport in bits 7-5, operation in bits 4-0).
    pub fn opcode(&self) -> u8 {
        self.byte(field::OPCODE)
    }

    /// SE: the requester asks for a solicited event at the receiver.
    pub fn solicited(&self) -> bool {
        self.byte(field::FLAGS) & field::SE_BIT != 0
    }

    /// M: the migration request bit.
    pub fn mig_req(&self) -> bool {
        self.byte(field::FLAGS) & field::M_BIT != 0
    }

    /// PadCnt: how many pad bytes (0-3) follow the payload.
    pub fn pad_count(&self) -> u8 {
        (self.byte(field::FLAGS) & field::PAD_MASK) >> field::PAD_SHIFT
    }

    /// TVer: the transport header version (0 is the only one defined).
    pub fn tver(&self) -> u8 {
        self.byte(field::FLAGS) & field::TVER_MASK
    }

    /// The partition key.
    pub fn pkey(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PKEY)
    }

    /// FECN: forward explicit congestion notification.
    pub fn fecn(&self) -> bool {
        self.byte(field::RESV8A) & field::FECN_BIT != 0
    }

    /// BECN: backward explicit congestion notification.
    pub fn becn(&self) -> bool {
        self.byte(field::RESV8A) & field::BECN_BIT != 0
    }

    /// The six reserved bits after FECN and BECN.
    pub fn resv6(&self) -> u8 {
        self.byte(field::RESV8A) & field::RESV6_MASK
    }

    /// Byte 4 whole (FECN, BECN, resv6), as the ICRC sees it before masking.
    pub fn resv8a(&self) -> u8 {
        self.byte(field::RESV8A)
    }

    /// The destination QP number (24 bits).
    pub fn dest_qpn(&self) -> u32 {
        read_u24(self.buffer.as_ref(), field::DEST_QPN)
    }

    /// AckReq: the requester asks for an acknowledgement of this packet.
    pub fn ack_req(&self) -> bool {
        self.byte(field::ACK_REQ) & field::ACK_REQ_BIT != 0
    }

    /// The seven reserved bits after AckReq.
    pub fn resv7(&self) -> u8 {
        self.byte(field::ACK_REQ) & field::RESV7_MASK
    }

    /// The packet sequence number (24 bits).
    pub fn psn(&self) -> u32 {
        read_u24(self.buffer.as_ref(), field::PSN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_bits(&mut self, at: usize, mask: u8, bits: u8) {
        let old = read_u8(self.buffer.as_ref(), at);
        write_u8(self.buffer.as_mut(), at, (old & !mask) | (bits & mask));
    }

    fn set_flag(&mut self, at: usize, bit: u8, on: bool) {
        self.set_bits(at, bit, if on { bit } else { 0 });
    }

    pub fn set_opcode(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::OPCODE, value);
    }

    pub fn set_solicited(&mut self, value: bool) {
        self.set_flag(field::FLAGS, field::SE_BIT, value);
    }

    pub fn set_mig_req(&mut self, value: bool) {
        self.set_flag(field::FLAGS, field::M_BIT, value);
    }

    /// Sets PadCnt; only the low 2 bits of `value` are kept.
    pub fn set_pad_count(&mut self, value: u8) {
        self.set_bits(field::FLAGS, field::PAD_MASK, value << field::PAD_SHIFT);
    }

    /// Sets TVer; only the low 4 bits of `value` are kept.
    pub fn set_tver(&mut self, value: u8) {
        self.set_bits(field::FLAGS, field::TVER_MASK, value);
    }

    pub fn set_pkey(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PKEY, value);
    }

    pub fn set_fecn(&mut self, value: bool) {
        self.set_flag(field::RESV8A, field::FECN_BIT, value);
    }

    pub fn set_becn(&mut self, value: bool) {
        self.set_flag(field::RESV8A, field::BECN_BIT, value);
    }

    /// Sets resv6; only the low 6 bits of `value` are kept.
    pub fn set_resv6(&mut self, value: u8) {
        self.set_bits(field::RESV8A, field::RESV6_MASK, value);
    }

    /// Sets the destination QP number (24 bits).
    pub fn set_dest_qpn(&mut self, value: u32) {
        write_u24(self.buffer.as_mut(), field::DEST_QPN, value);
    }

    pub fn set_ack_req(&mut self, value: bool) {
        self.set_flag(field::ACK_REQ, field::ACK_REQ_BIT, value);
    }

    /// Sets resv7; only the low 7 bits of `value` are kept.
    pub fn set_resv7(&mut self, value: u8) {
        self.set_bits(field::ACK_REQ, field::RESV7_MASK, value);
    }

    /// Sets the packet sequence number (24 bits).
    pub fn set_psn(&mut self, value: u32) {
        write_u24(self.buffer.as_mut(), field::PSN, value);
    }
}

/// A BTH as values.  The reserved fields are not kept: `parse` ignores them and
/// `emit` writes zeros, as IBTA asks of reserved fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub opcode: u8,
    pub solicited: bool,
    pub mig_req: bool,
    /// 0-3.
    pub pad_count: u8,
    pub pkey: u16,
    pub fecn: bool,
    pub becn: bool,
    /// 24 bits.
    pub dest_qpn: u32,
    pub ack_req: bool,
    /// 24 bits.
    pub psn: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// Reads a BTH: `Err(Truncated)` if short, `Err(Malformed)` if TVer is not 0.
    /// Whether the opcode is one ferrite knows is the opcode table's question.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.tver() != 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            opcode: packet.opcode(),
            solicited: packet.solicited(),
            mig_req: packet.mig_req(),
            pad_count: packet.pad_count(),
            pkey: packet.pkey(),
            fecn: packet.fecn(),
            becn: packet.becn(),
            dest_qpn: packet.dest_qpn(),
            ack_req: packet.ack_req(),
            psn: packet.psn(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the BTH (TVer 0, reserved fields 0).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_opcode(self.opcode);
        packet.set_solicited(self.solicited);
        packet.set_mig_req(self.mig_req);
        packet.set_pad_count(self.pad_count);
        packet.set_tver(0);
        packet.set_pkey(self.pkey);
        packet.set_fecn(self.fecn);
        packet.set_becn(self.becn);
        packet.set_resv6(0);
        packet.set_dest_qpn(self.dest_qpn);
        packet.set_ack_req(self.ack_req);
        packet.set_resv7(0);
        packet.set_psn(self.psn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The BTH of an RC RDMA WRITE ONLY captured from a ConnectX NIC (RoCE v1), as
    // quoted in scapy's test/contrib/roce.uts: opcode 0x0a; M set, PadCnt 3; P_Key
    // 0xffff; QP 0x10a; AckReq; PSN 0xa788bc.
    static WRITE_ONLY: [u8; 12] = [
        0x0a, 0x70, 0xff, 0xff, 0x00, 0x00, 0x01, 0x0a, 0x80, 0xa7, 0x88, 0xbc,
    ];

    fn write_only_repr() -> Repr {
        Repr {
            opcode: 0x0a,
            solicited: false,
            mig_req: true,
            pad_count: 3,
            pkey: 0xffff,
            fecn: false,
            becn: false,
            dest_qpn: 0x10a,
            ack_req: true,
            psn: 0xa7_88bc,
        }
    }

    // By hand: SE, PadCnt 2, P_Key 0x8001, FECN + BECN + resv6 0x15, QP 0xabcdef,
    // AckReq + resv7 0x2a, PSN 0xfedcba.
    static ALL_BITS: [u8; 12] = [
        0x04, 0xa0, 0x80, 0x01, 0xd5, 0xab, 0xcd, 0xef, 0xaa, 0xfe, 0xdc, 0xba,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&WRITE_ONLY[..]).unwrap();
        assert_eq!(p.opcode(), 0x0a);
        assert!(!p.solicited());
        assert!(p.mig_req());
        assert_eq!(p.pad_count(), 3);
        assert_eq!(p.tver(), 0);
        assert_eq!(p.pkey(), 0xffff);
        assert!(!p.fecn());
        assert!(!p.becn());
        assert_eq!(p.resv6(), 0);
        assert_eq!(p.resv8a(), 0);
        assert_eq!(p.dest_qpn(), 0x10a);
        assert!(p.ack_req());
        assert_eq!(p.resv7(), 0);
        assert_eq!(p.psn(), 0xa7_88bc);

        let p = Packet::new_checked(&ALL_BITS[..]).unwrap();
        assert_eq!(p.opcode(), 0x04);
        assert!(p.solicited());
        assert!(!p.mig_req());
        assert_eq!(p.pad_count(), 2);
        assert_eq!(p.pkey(), 0x8001);
        assert!(p.fecn());
        assert!(p.becn());
        assert_eq!(p.resv6(), 0x15);
        assert_eq!(p.resv8a(), 0xd5);
        assert_eq!(p.dest_qpn(), 0xab_cdef);
        assert!(p.ack_req());
        assert_eq!(p.resv7(), 0x2a);
        assert_eq!(p.psn(), 0xfe_dcba);
    }

    #[test]
    fn construct() {
        let mut buf = [0x5au8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_opcode(0x04);
        p.set_solicited(true);
        p.set_mig_req(false);
        p.set_pad_count(2);
        p.set_tver(0);
        p.set_pkey(0x8001);
        p.set_fecn(true);
        p.set_becn(true);
        p.set_resv6(0x15);
        p.set_dest_qpn(0xab_cdef);
        p.set_ack_req(true);
        p.set_resv7(0x2a);
        p.set_psn(0xfe_dcba);
        assert_eq!(buf, ALL_BITS);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&WRITE_ONLY[..])).unwrap();
        assert_eq!(repr, write_only_repr());
        let mut buf = [0xffu8; 12];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, WRITE_ONLY);
        assert_eq!(repr.buffer_len(), BTH_LEN);
    }

    #[test]
    fn parse_drops_reserved_bits() {
        let repr = Repr::parse(&Packet::new_unchecked(&ALL_BITS[..])).unwrap();
        let mut buf = [0u8; 12];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        let mut expect = ALL_BITS;
        expect[4] = 0xc0;
        expect[8] = 0x80;
        assert_eq!(buf, expect);
    }

    #[test]
    fn bad_tver_is_malformed() {
        let mut buf = WRITE_ONLY;
        buf[1] |= 0x01;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&WRITE_ONLY[..11]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Packet::new_checked(&[][..]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&WRITE_ONLY[..3])),
            Err(Error::Truncated)
        );
    }
}
