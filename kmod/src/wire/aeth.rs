//! The ACK Extended Transport Header (AETH): a responder's verdict on the requests up
//! to a PSN, carried by ACKNOWLEDGE, ATOMIC ACKNOWLEDGE and the first, last and only
//! RDMA READ response packets.
//!
//! ```text
//!  byte 0     syndrome: resv(7) kind(6-5) value(4-0)
//!  bytes 1-3  MSN (message sequence number, 24 bits)
//! ```
//!
//! The syndrome's kind: 00 ACK (value = credit count code), 01 RNR NAK (value = RNR
//! timer code, see [`rnr_timer_ns`]), 11 NAK (value = [`NakCode`]), 10 reserved.

use super::{read_u24, read_u8, write_u24, write_u8, Error, Result};

/// Length of the AETH.
pub const HEADER_LEN: usize = 4;

/// The credit count code meaning "invalid credit count": the responder does not
/// report end-to-end credits (rxe always sends it).
pub const CREDITS_INVALID: u8 = 0x1f;

pub(crate) mod field {
    use core::ops::Range;

    pub const SYNDROME: usize = 0;
    pub const MSN: Range<usize> = 1..4;
}

const KIND_MASK: u8 = 0x60;
const KIND_ACK: u8 = 0x00;
const KIND_RNR_NAK: u8 = 0x20;
const KIND_NAK: u8 = 0x60;
const VALUE_MASK: u8 = 0x1f;
const RESERVED_BIT: u8 = 0x80;

/// The NAK codes (syndrome kind 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakCode {
    /// 0: PSN sequence error (the requester should go back to the NAK's PSN).
    PsnSeqError,
    /// 1: invalid request.
    InvalidRequest,
    /// 2: remote access error.
    RemoteAccessError,
    /// 3: remote operational error.
    RemoteOperationalError,
    /// 4: invalid RD request.
    InvalidRdRequest,
    /// 5-31: reserved codes, kept as the raw 5 bits.
    Other(u8),
}

impl NakCode {
    /// The code for the low 5 bits of `value`.
    pub const fn from_u8(value: u8) -> NakCode {
        match value & VALUE_MASK {
            0 => NakCode::PsnSeqError,
            1 => NakCode::InvalidRequest,
            2 => NakCode::RemoteAccessError,
            3 => NakCode::RemoteOperationalError,
            4 => NakCode::InvalidRdRequest,
            other => NakCode::Other(other),
        }
    }

    /// The 5-bit value of the code (`Other` keeps only its low 5 bits).
    pub const fn to_u8(self) -> u8 {
        match self {
            NakCode::PsnSeqError => 0,
            NakCode::InvalidRequest => 1,
            NakCode::RemoteAccessError => 2,
            NakCode::RemoteOperationalError => 3,
            NakCode::InvalidRdRequest => 4,
            NakCode::Other(v) => v & VALUE_MASK,
        }
    }
}

/// An AETH syndrome, decoded.
///
/// `Syndrome::from_u8(b).to_u8() == b` for every byte `b`.  The other way round holds
/// for values whose fields fit their 5 bits (`credits`, `timer` <= 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syndrome {
    /// An ACK; `credits` is the raw 5-bit credit count code ([`CREDITS_INVALID`] is
    /// "no credit information").
    Ack { credits: u8 },
    /// Receiver not ready: retry after the time [`rnr_timer_ns`] gives for `timer`.
    RnrNak { timer: u8 },
    /// A NAK.
    Nak(NakCode),
    /// A reserved syndrome (bit 7 set, or kind 10), kept as the whole byte.
    Reserved(u8),
}

impl Syndrome {
    /// Decodes a syndrome byte.
    pub const fn from_u8(value: u8) -> Syndrome {
        if value & RESERVED_BIT != 0 {
            return Syndrome::Reserved(value);
        }
        let low = value & VALUE_MASK;
        match value & KIND_MASK {
            KIND_ACK => Syndrome::Ack { credits: low },
            KIND_RNR_NAK => Syndrome::RnrNak { timer: low },
            KIND_NAK => Syndrome::Nak(NakCode::from_u8(low)),
            // Kind 10.
            _ => Syndrome::Reserved(value),
        }
    }

    /// Encodes the syndrome byte (fields keep only their low 5 bits).
    pub const fn to_u8(self) -> u8 {
        match self {
            Syndrome::Ack { credits } => KIND_ACK | (credits & VALUE_MASK),
            Syndrome::RnrNak { timer } => KIND_RNR_NAK | (timer & VALUE_MASK),
            Syndrome::Nak(code) => KIND_NAK | code.to_u8(),
            Syndrome::Reserved(raw) => raw,
        }
    }
}

/// The IBTA RNR NAK timer table (IBTA vol. 1, table "Encoding for RNR NAK Timer
/// Field"; Linux's `enum ib_rnr_timeout`): the minimum time a requester waits after
/// an RNR NAK with timer code `code`, in nanoseconds.  Only the low 5 bits of `code`
/// count.
///
/// Note: rxe's own table (`rnrnak_usec` in rxe_comp.c) has 61410 us for code 25,
/// a slip for IBTA's 61.44 ms; this table follows IBTA.
pub const fn rnr_timer_ns(code: u8) -> u64 {
    const US: u64 = 1_000;
    const TABLE_US: [u64; 32] = [
        655_360, // 0: 655.36 ms
        10,      // 1: 0.01 ms
        20,      // 2
        30,      // 3
        40,      // 4
        60,      // 5
        80,      // 6
        120,     // 7
        160,     // 8
        240,     // 9
        320,     // 10
        480,     // 11
        640,     // 12
        960,     // 13
        1_280,   // 14
        1_920,   // 15
        2_560,   // 16
        3_840,   // 17
        5_120,   // 18
        7_680,   // 19
        10_240,  // 20
        15_360,  // 21
        20_480,  // 22
        30_720,  // 23
        40_960,  // 24
        61_440,  // 25
        81_920,  // 26
        122_880, // 27
        163_840, // 28
        245_760, // 29
        327_680, // 30
        491_520, // 31: 491.52 ms
    ];
    // The mask keeps the index below 32: this cannot go out of bounds.
    TABLE_US[(code & VALUE_MASK) as usize] * US
}

/// A view of an AETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (see [`Packet::new_checked`]).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, or `Err(Truncated)` if it is shorter than the AETH.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than the AETH.
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

    /// The raw syndrome byte (see [`Syndrome::from_u8`]).
    pub fn syndrome(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::SYNDROME)
    }

    /// The message sequence number (24 bits).
    pub fn msn(&self) -> u32 {
        read_u24(self.buffer.as_ref(), field::MSN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_syndrome(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::SYNDROME, value);
    }

    /// Sets the message sequence number (24 bits).
    pub fn set_msn(&mut self, value: u32) {
        write_u24(self.buffer.as_mut(), field::MSN, value);
    }
}

/// An AETH as values.  The syndrome stays the raw byte (every byte decodes, see
/// [`Syndrome::from_u8`], and encodes back to itself); [`Repr::decode`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub syndrome: u8,
    /// 24 bits.
    pub msn: u32,
}

impl Repr {
    /// Length of the header this represents.
    pub const LEN: usize = HEADER_LEN;

    /// An AETH with a decoded syndrome.
    pub const fn new(syndrome: Syndrome, msn: u32) -> Repr {
        Repr {
            syndrome: syndrome.to_u8(),
            msn,
        }
    }

    /// The syndrome, decoded.
    pub const fn decode(&self) -> Syndrome {
        Syndrome::from_u8(self.syndrome)
    }

    /// Reads an AETH; `Err(Truncated)` if the buffer is short.  A reserved syndrome
    /// parses (it decodes as [`Syndrome::Reserved`]): what to do with it is the
    /// engine's call.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            syndrome: packet.syndrome(),
            msn: packet.msn(),
        })
    }

    /// The length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every byte of the AETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_syndrome(self.syndrome);
        packet.set_msn(self.msn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The AETH of an RC ACKNOWLEDGE captured from a ConnectX NIC (RoCE v1), as quoted
    // in scapy's test/contrib/roce.uts: syndrome 0 (ACK, credit code 0), MSN 5.
    static ACK: [u8; 4] = [0x00, 0x00, 0x00, 0x05];

    // By hand: an RNR NAK with timer code 14 (1.28 ms), MSN 0x123456.
    static RNR_NAK: [u8; 4] = [0x2e, 0x12, 0x34, 0x56];

    // By hand: NAK remote access error (0x62), MSN 0xffffff.
    static NAK_ACCESS: [u8; 4] = [0x62, 0xff, 0xff, 0xff];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ACK[..]).unwrap();
        assert_eq!(p.syndrome(), 0);
        assert_eq!(p.msn(), 5);
        let p = Packet::new_checked(&RNR_NAK[..]).unwrap();
        assert_eq!(p.syndrome(), 0x2e);
        assert_eq!(p.msn(), 0x12_3456);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 4];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_syndrome(0x2e);
        p.set_msn(0x12_3456);
        assert_eq!(buf, RNR_NAK);
    }

    #[test]
    fn parse_and_emit() {
        for (bytes, syndrome, msn) in [
            (ACK, Syndrome::Ack { credits: 0 }, 5),
            (RNR_NAK, Syndrome::RnrNak { timer: 14 }, 0x12_3456),
            (
                NAK_ACCESS,
                Syndrome::Nak(NakCode::RemoteAccessError),
                0xff_ffff,
            ),
        ] {
            let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
            assert_eq!(repr, Repr::new(syndrome, msn));
            assert_eq!(repr.decode(), syndrome);
            assert_eq!(repr.syndrome, bytes[0]);
            let mut buf = [0xa5u8; 4];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
            assert_eq!(repr.buffer_len(), 4);
        }
    }

    #[test]
    fn syndromes_decode_as_ibta_says() {
        assert_eq!(Syndrome::from_u8(0x1f), Syndrome::Ack { credits: 31 });
        assert_eq!(
            Syndrome::from_u8(CREDITS_INVALID),
            Syndrome::Ack { credits: 31 }
        );
        assert_eq!(Syndrome::from_u8(0x20), Syndrome::RnrNak { timer: 0 });
        assert_eq!(Syndrome::from_u8(0x60), Syndrome::Nak(NakCode::PsnSeqError));
        assert_eq!(
            Syndrome::from_u8(0x61),
            Syndrome::Nak(NakCode::InvalidRequest)
        );
        assert_eq!(
            Syndrome::from_u8(0x63),
            Syndrome::Nak(NakCode::RemoteOperationalError)
        );
        assert_eq!(
            Syndrome::from_u8(0x64),
            Syndrome::Nak(NakCode::InvalidRdRequest)
        );
        assert_eq!(Syndrome::from_u8(0x65), Syndrome::Nak(NakCode::Other(5)));
        assert_eq!(Syndrome::from_u8(0x40), Syndrome::Reserved(0x40));
        assert_eq!(Syndrome::from_u8(0x5f), Syndrome::Reserved(0x5f));
        assert_eq!(Syndrome::from_u8(0x80), Syndrome::Reserved(0x80));
        assert_eq!(Syndrome::from_u8(0xe0), Syndrome::Reserved(0xe0));
    }

    #[test]
    fn syndrome_round_trips_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(Syndrome::from_u8(b).to_u8(), b, "{b:#x}");
        }
        for v in 0..32u8 {
            assert_eq!(NakCode::from_u8(v).to_u8(), v);
            for s in [
                Syndrome::Ack { credits: v },
                Syndrome::RnrNak { timer: v },
                Syndrome::Nak(NakCode::from_u8(v)),
            ] {
                assert_eq!(Syndrome::from_u8(s.to_u8()), s);
            }
        }
    }

    #[test]
    fn rnr_timer_table() {
        assert_eq!(rnr_timer_ns(0), 655_360_000);
        assert_eq!(rnr_timer_ns(1), 10_000);
        assert_eq!(rnr_timer_ns(13), 960_000);
        assert_eq!(rnr_timer_ns(14), 1_280_000);
        assert_eq!(rnr_timer_ns(25), 61_440_000);
        assert_eq!(rnr_timer_ns(31), 491_520_000);
        // Only the low 5 bits count.
        assert_eq!(rnr_timer_ns(0x20 | 14), rnr_timer_ns(14));
        assert_eq!(rnr_timer_ns(0xff), rnr_timer_ns(31));
        // Codes 1-31 grow strictly, and from code 2 on two codes up is twice the time
        // (0.02, 0.03, 0.04, 0.06, 0.08, 0.12, ...).
        for c in 1..31u8 {
            assert!(rnr_timer_ns(c) < rnr_timer_ns(c + 1));
        }
        for c in 2..=29u8 {
            assert_eq!(rnr_timer_ns(c + 2), rnr_timer_ns(c) * 2, "code {c}");
        }
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&ACK[..3]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&ACK[..0])),
            Err(Error::Truncated)
        );
    }
}
