//! The opcode table: for each IBTA transport opcode, which headers the packet
//! carries, where they sit, what kind of packet it is and which QP type may send it.
//!
//! The data path asks this table instead of matching on opcodes (rxe_opcode.c's
//! role in rxe).  An opcode the table does not know, including every RD opcode (0x40
//! to 0x5f: ferrite does not do RD), the reserved ones and CNP (0x81), has no entry:
//! [`info`] returns `None`, and the receive path drops the packet before reading
//! anything past the BTH.
//!
//! An opcode is the transport in bits 7-5 (RC 0x00, UC 0x20, RD 0x40, UD 0x60) and
//! the operation in bits 4-0.  Extension headers follow the BTH in IBTA's order:
//! DETH or FETH, then RETH or AtomicETH, then AETH, AtomicAckETH, and ImmDt or IETH.
//! The table was checked against IBTA's opcode list and rxe's `rxe_opcode[]`
//! (including FLUSH, BTH FETH RETH, and ATOMIC WRITE, BTH RETH + 8 bytes of payload,
//! both RC only, since Linux 6.2).

use core::ops::Range;

use bitflags::bitflags;

use crate::wire::{aeth, atomic, bth, deth, feth, ieth, immdt, reth};

/// Length of the FLUSH Extended Transport Header (FETH): one 32-bit word whose bits
/// 3-0 are the placement type and bits 5-4 the selectivity level (see [`feth`]).
pub const FETH_LEN: usize = feth::HEADER_LEN;

/// The payload of an ATOMIC WRITE: exactly 8 bytes.
pub const ATOMIC_WRITE_LEN: usize = 8;

/// The opcodes by name.
pub mod op {
    /// Bits 7-5 of an opcode: its transport.
    pub const TRANSPORT_MASK: u8 = 0xe0;
    pub const RC: u8 = 0x00;
    pub const UC: u8 = 0x20;
    pub const RD: u8 = 0x40;
    pub const UD: u8 = 0x60;

    pub const RC_SEND_FIRST: u8 = 0x00;
    pub const RC_SEND_MIDDLE: u8 = 0x01;
    pub const RC_SEND_LAST: u8 = 0x02;
    pub const RC_SEND_LAST_WITH_IMMEDIATE: u8 = 0x03;
    pub const RC_SEND_ONLY: u8 = 0x04;
    pub const RC_SEND_ONLY_WITH_IMMEDIATE: u8 = 0x05;
    pub const RC_RDMA_WRITE_FIRST: u8 = 0x06;
    pub const RC_RDMA_WRITE_MIDDLE: u8 = 0x07;
    pub const RC_RDMA_WRITE_LAST: u8 = 0x08;
    pub const RC_RDMA_WRITE_LAST_WITH_IMMEDIATE: u8 = 0x09;
    pub const RC_RDMA_WRITE_ONLY: u8 = 0x0a;
    pub const RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE: u8 = 0x0b;
    pub const RC_RDMA_READ_REQUEST: u8 = 0x0c;
    pub const RC_RDMA_READ_RESPONSE_FIRST: u8 = 0x0d;
    pub const RC_RDMA_READ_RESPONSE_MIDDLE: u8 = 0x0e;
    pub const RC_RDMA_READ_RESPONSE_LAST: u8 = 0x0f;
    pub const RC_RDMA_READ_RESPONSE_ONLY: u8 = 0x10;
    pub const RC_ACKNOWLEDGE: u8 = 0x11;
    pub const RC_ATOMIC_ACKNOWLEDGE: u8 = 0x12;
    pub const RC_COMPARE_SWAP: u8 = 0x13;
    pub const RC_FETCH_ADD: u8 = 0x14;
    pub const RC_SEND_LAST_WITH_INVALIDATE: u8 = 0x16;
    pub const RC_SEND_ONLY_WITH_INVALIDATE: u8 = 0x17;
    pub const RC_FLUSH: u8 = 0x1c;
    pub const RC_ATOMIC_WRITE: u8 = 0x1d;

    pub const UC_SEND_FIRST: u8 = 0x20;
    pub const UC_SEND_MIDDLE: u8 = 0x21;
    pub const UC_SEND_LAST: u8 = 0x22;
    pub const UC_SEND_LAST_WITH_IMMEDIATE: u8 = 0x23;
    pub const UC_SEND_ONLY: u8 = 0x24;
    pub const UC_SEND_ONLY_WITH_IMMEDIATE: u8 = 0x25;
    pub const UC_RDMA_WRITE_FIRST: u8 = 0x26;
    pub const UC_RDMA_WRITE_MIDDLE: u8 = 0x27;
    pub const UC_RDMA_WRITE_LAST: u8 = 0x28;
    pub const UC_RDMA_WRITE_LAST_WITH_IMMEDIATE: u8 = 0x29;
    pub const UC_RDMA_WRITE_ONLY: u8 = 0x2a;
    pub const UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE: u8 = 0x2b;

    pub const UD_SEND_ONLY: u8 = 0x64;
    pub const UD_SEND_ONLY_WITH_IMMEDIATE: u8 = 0x65;
}

bitflags! {
    /// QP types.  Every known opcode belongs to exactly one (its transport bits).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct QpTypes: u8 {
        const RC = 1 << 0;
        const UC = 1 << 1;
        const RD = 1 << 2;
        const UD = 1 << 3;
    }
}

bitflags! {
    /// What a packet of an opcode is and carries.
    ///
    /// - Headers after the BTH: `RETH AETH ATMETH ATMACK IMMDT IETH DETH FETH`, and
    ///   `PAYLOAD` if the packet carries data after its headers (possibly 0 bytes).
    /// - Direction, exactly one: `REQUEST` (requester to responder), `READ_RESPONSE`
    ///   (RDMA READ response FIRST/MIDDLE/LAST/ONLY) or `ACK` (ACKNOWLEDGE and
    ///   ATOMIC ACKNOWLEDGE, told apart by `ATMACK`).  Everything not `REQUEST` goes
    ///   to the requester's completer.
    /// - Operation of a request, exactly one if `REQUEST`: `SEND WRITE READ ATOMIC
    ///   FLUSH ATOMIC_WRITE` (`READ` is the READ request only; `ATOMIC` is COMPARE
    ///   SWAP and FETCH ADD).
    /// - Position in a message: `FIRST`, `MIDDLE`, `LAST`; `ONLY` is `FIRST | LAST`
    ///   (so test `contains(FIRST)` for "starts a message").  Single-packet
    ///   operations (READ request, atomics, ACKs, FLUSH, ATOMIC WRITE) are `ONLY`.
    /// - Receive queue (responder side): `START`, the packet at which the responder
    ///   takes a receive WQE (rxe's RWR: SEND FIRST, SEND ONLY*, RDMA WRITE
    ///   LAST/ONLY WITH IMMEDIATE); `COMP`, the packet whose arrival completes that
    ///   WQE (SEND LAST*, SEND ONLY*, RDMA WRITE LAST/ONLY WITH IMMEDIATE).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Flags: u32 {
        const RETH = 1 << 0;
        const AETH = 1 << 1;
        const ATMETH = 1 << 2;
        const ATMACK = 1 << 3;
        const IMMDT = 1 << 4;
        const IETH = 1 << 5;
        const DETH = 1 << 6;
        const FETH = 1 << 7;
        const PAYLOAD = 1 << 8;

        const REQUEST = 1 << 9;
        const READ_RESPONSE = 1 << 10;
        const ACK = 1 << 11;

        const SEND = 1 << 12;
        const WRITE = 1 << 13;
        const READ = 1 << 14;
        const ATOMIC = 1 << 15;
        const FLUSH = 1 << 16;
        const ATOMIC_WRITE = 1 << 17;

        const FIRST = 1 << 18;
        const MIDDLE = 1 << 19;
        const LAST = 1 << 20;
        const ONLY = Self::FIRST.bits() | Self::LAST.bits();

        const START = 1 << 21;
        const COMP = 1 << 22;
    }
}

/// What one opcode's packets look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    /// The IBTA name, e.g. `"RC_SEND_ONLY"`.
    pub name: &'static str,
    pub qp: QpTypes,
    pub flags: Flags,
    /// BTH plus every extension header: where the payload starts.
    pub hdr_len: usize,
    /// Offsets from the start of the BTH of each extension header, `None` if absent.
    pub reth: Option<u8>,
    pub aeth: Option<u8>,
    pub atmeth: Option<u8>,
    pub atmack: Option<u8>,
    pub immdt: Option<u8>,
    pub ieth: Option<u8>,
    pub deth: Option<u8>,
    pub feth: Option<u8>,
}

impl OpInfo {
    /// Where the extension header `header` (one of `Flags::RETH`, `AETH`, `ATMETH`,
    /// `ATMACK`, `IMMDT`, `IETH`, `DETH`, `FETH`) sits, from the start of the BTH;
    /// `None` if this opcode does not carry it or `header` is not one of those.
    pub fn header(&self, header: Flags) -> Option<Range<usize>> {
        let (offset, len) = if header == Flags::RETH {
            (self.reth, reth::HEADER_LEN)
        } else if header == Flags::AETH {
            (self.aeth, aeth::HEADER_LEN)
        } else if header == Flags::ATMETH {
            (self.atmeth, atomic::ATOMIC_ETH_LEN)
        } else if header == Flags::ATMACK {
            (self.atmack, atomic::ATOMIC_ACK_ETH_LEN)
        } else if header == Flags::IMMDT {
            (self.immdt, immdt::HEADER_LEN)
        } else if header == Flags::IETH {
            (self.ieth, ieth::HEADER_LEN)
        } else if header == Flags::DETH {
            (self.deth, deth::HEADER_LEN)
        } else if header == Flags::FETH {
            (self.feth, FETH_LEN)
        } else {
            (None, 0)
        };
        let start = usize::from(offset?);
        Some(start..start + len)
    }

    /// Offset of the RETH from the start of the BTH, if the opcode carries one.
    pub fn reth_offset(&self) -> Option<usize> {
        self.reth.map(usize::from)
    }

    /// Offset of the AETH, if any.
    pub fn aeth_offset(&self) -> Option<usize> {
        self.aeth.map(usize::from)
    }

    /// Offset of the AtomicETH, if any.
    pub fn atomic_offset(&self) -> Option<usize> {
        self.atmeth.map(usize::from)
    }

    /// Offset of the AtomicAckETH, if any.
    pub fn atomic_ack_offset(&self) -> Option<usize> {
        self.atmack.map(usize::from)
    }

    /// Offset of the ImmDt, if any.
    pub fn immdt_offset(&self) -> Option<usize> {
        self.immdt.map(usize::from)
    }

    /// Offset of the IETH, if any.
    pub fn ieth_offset(&self) -> Option<usize> {
        self.ieth.map(usize::from)
    }

    /// Offset of the DETH, if any.
    pub fn deth_offset(&self) -> Option<usize> {
        self.deth.map(usize::from)
    }

    /// Offset of the FETH, if any.
    pub fn feth_offset(&self) -> Option<usize> {
        self.feth.map(usize::from)
    }

    /// Whether the packet carries a payload (possibly of 0 bytes) after its headers.
    pub fn has_payload(&self) -> bool {
        self.flags.contains(Flags::PAYLOAD)
    }

    /// Whether the packet is a request, for the responder.
    pub fn is_request(&self) -> bool {
        self.flags.contains(Flags::REQUEST)
    }

    /// Whether the packet is a response (an RDMA READ response, an ACKNOWLEDGE or an
    /// ATOMIC ACKNOWLEDGE), for the requester's completer.
    pub fn is_response(&self) -> bool {
        self.flags
            .intersects(Flags::READ_RESPONSE.union(Flags::ACK))
    }
}

/// The entry for `op`, or `None` for an opcode ferrite does not know.
pub fn info(op: u8) -> Option<&'static OpInfo> {
    TABLE[usize::from(op)].as_ref()
}

/// Where the payload of a packet of opcode `info` lies, from the start of the BTH.
///
/// `len` is the packet's length from the BTH to the ICRC (not included), `pad` the
/// BTH's PadCnt.  `None` if the packet cannot be that opcode's: shorter than its
/// headers plus pad, a pad above 3, payload or pad on an opcode that carries none,
/// or an ATOMIC WRITE whose payload is not 8 bytes.  Whether a payload's length suits
/// the MTU and message is the engine's check.
pub fn payload_range(info: &OpInfo, len: usize, pad: u8) -> Option<Range<usize>> {
    if pad > 3 {
        return None;
    }
    let end = len.checked_sub(usize::from(pad))?;
    if end < info.hdr_len {
        return None;
    }
    let range = info.hdr_len..end;
    if !info.flags.contains(Flags::PAYLOAD) && (pad != 0 || !range.is_empty()) {
        return None;
    }
    if info.flags.contains(Flags::ATOMIC_WRITE) && range.len() != ATOMIC_WRITE_LEN {
        return None;
    }
    Some(range)
}

/// The opcode table, indexed by opcode.
pub static TABLE: [Option<OpInfo>; 256] = build();

/// Places a header after the ones before it: its offset (if `flags` has `header`)
/// and the offset after it.
const fn place(flags: Flags, header: Flags, len: usize, at: usize) -> (Option<u8>, usize) {
    if flags.contains(header) {
        (Some(at as u8), at + len)
    } else {
        (None, at)
    }
}

/// One table entry; the offsets and length follow from the header flags.
const fn entry(name: &'static str, qp: QpTypes, flags: Flags) -> Option<OpInfo> {
    let at = bth::HEADER_LEN;
    // DETH and FETH never come together; nor RETH and AtomicETH; nor ImmDt and IETH.
    let (deth, at) = place(flags, Flags::DETH, deth::HEADER_LEN, at);
    let (feth, at) = place(flags, Flags::FETH, FETH_LEN, at);
    let (reth, at) = place(flags, Flags::RETH, reth::HEADER_LEN, at);
    let (atmeth, at) = place(flags, Flags::ATMETH, atomic::ATOMIC_ETH_LEN, at);
    let (aeth, at) = place(flags, Flags::AETH, aeth::HEADER_LEN, at);
    let (atmack, at) = place(flags, Flags::ATMACK, atomic::ATOMIC_ACK_ETH_LEN, at);
    let (immdt, at) = place(flags, Flags::IMMDT, immdt::HEADER_LEN, at);
    let (ieth, at) = place(flags, Flags::IETH, ieth::HEADER_LEN, at);
    Some(OpInfo {
        name,
        qp,
        flags,
        hdr_len: at,
        reth,
        aeth,
        atmeth,
        atmack,
        immdt,
        ieth,
        deth,
        feth,
    })
}

macro_rules! flags {
    ($($f:ident)*) => { Flags::empty()$(.union(Flags::$f))* };
}

const fn build() -> [Option<OpInfo>; 256] {
    const UNKNOWN: Option<OpInfo> = None;
    let mut t = [UNKNOWN; 256];
    macro_rules! def {
        ($op:ident, $qp:ident, $($f:ident)*) => {
            t[op::$op as usize] = entry(stringify!($op), QpTypes::$qp, flags!($($f)*));
        };
    }

    // RC
    def!(RC_SEND_FIRST, RC, PAYLOAD REQUEST SEND FIRST START);
    def!(RC_SEND_MIDDLE, RC, PAYLOAD REQUEST SEND MIDDLE);
    def!(RC_SEND_LAST, RC, PAYLOAD REQUEST SEND LAST COMP);
    def!(RC_SEND_LAST_WITH_IMMEDIATE, RC, IMMDT PAYLOAD REQUEST SEND LAST COMP);
    def!(RC_SEND_ONLY, RC, PAYLOAD REQUEST SEND ONLY START COMP);
    def!(RC_SEND_ONLY_WITH_IMMEDIATE, RC, IMMDT PAYLOAD REQUEST SEND ONLY START COMP);
    def!(RC_RDMA_WRITE_FIRST, RC, RETH PAYLOAD REQUEST WRITE FIRST);
    def!(RC_RDMA_WRITE_MIDDLE, RC, PAYLOAD REQUEST WRITE MIDDLE);
    def!(RC_RDMA_WRITE_LAST, RC, PAYLOAD REQUEST WRITE LAST);
    def!(RC_RDMA_WRITE_LAST_WITH_IMMEDIATE, RC, IMMDT PAYLOAD REQUEST WRITE LAST START COMP);
    def!(RC_RDMA_WRITE_ONLY, RC, RETH PAYLOAD REQUEST WRITE ONLY);
    def!(RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE, RC,
         RETH IMMDT PAYLOAD REQUEST WRITE ONLY START COMP);
    def!(RC_RDMA_READ_REQUEST, RC, RETH REQUEST READ ONLY);
    def!(RC_RDMA_READ_RESPONSE_FIRST, RC, AETH PAYLOAD READ_RESPONSE FIRST);
    def!(RC_RDMA_READ_RESPONSE_MIDDLE, RC, PAYLOAD READ_RESPONSE MIDDLE);
    def!(RC_RDMA_READ_RESPONSE_LAST, RC, AETH PAYLOAD READ_RESPONSE LAST);
    def!(RC_RDMA_READ_RESPONSE_ONLY, RC, AETH PAYLOAD READ_RESPONSE ONLY);
    def!(RC_ACKNOWLEDGE, RC, AETH ACK ONLY);
    def!(RC_ATOMIC_ACKNOWLEDGE, RC, AETH ATMACK ACK ONLY);
    def!(RC_COMPARE_SWAP, RC, ATMETH REQUEST ATOMIC ONLY);
    def!(RC_FETCH_ADD, RC, ATMETH REQUEST ATOMIC ONLY);
    def!(RC_SEND_LAST_WITH_INVALIDATE, RC, IETH PAYLOAD REQUEST SEND LAST COMP);
    def!(RC_SEND_ONLY_WITH_INVALIDATE, RC, IETH PAYLOAD REQUEST SEND ONLY START COMP);
    def!(RC_FLUSH, RC, FETH RETH REQUEST FLUSH ONLY);
    def!(RC_ATOMIC_WRITE, RC, RETH PAYLOAD REQUEST ATOMIC_WRITE ONLY);

    // UC: SEND and RDMA WRITE only.
    def!(UC_SEND_FIRST, UC, PAYLOAD REQUEST SEND FIRST START);
    def!(UC_SEND_MIDDLE, UC, PAYLOAD REQUEST SEND MIDDLE);
    def!(UC_SEND_LAST, UC, PAYLOAD REQUEST SEND LAST COMP);
    def!(UC_SEND_LAST_WITH_IMMEDIATE, UC, IMMDT PAYLOAD REQUEST SEND LAST COMP);
    def!(UC_SEND_ONLY, UC, PAYLOAD REQUEST SEND ONLY START COMP);
    def!(UC_SEND_ONLY_WITH_IMMEDIATE, UC, IMMDT PAYLOAD REQUEST SEND ONLY START COMP);
    def!(UC_RDMA_WRITE_FIRST, UC, RETH PAYLOAD REQUEST WRITE FIRST);
    def!(UC_RDMA_WRITE_MIDDLE, UC, PAYLOAD REQUEST WRITE MIDDLE);
    def!(UC_RDMA_WRITE_LAST, UC, PAYLOAD REQUEST WRITE LAST);
    def!(UC_RDMA_WRITE_LAST_WITH_IMMEDIATE, UC, IMMDT PAYLOAD REQUEST WRITE LAST START COMP);
    def!(UC_RDMA_WRITE_ONLY, UC, RETH PAYLOAD REQUEST WRITE ONLY);
    def!(UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE, UC,
         RETH IMMDT PAYLOAD REQUEST WRITE ONLY START COMP);

    // UD: single-packet SENDs with a DETH.
    def!(UD_SEND_ONLY, UD, DETH PAYLOAD REQUEST SEND ONLY START COMP);
    def!(UD_SEND_ONLY_WITH_IMMEDIATE, UD, DETH IMMDT PAYLOAD REQUEST SEND ONLY START COMP);

    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every opcode ferrite knows, with its header length worked out by hand from
    /// IBTA's header sizes (BTH 12, RETH 16, AETH 4, AtomicETH 28, AtomicAckETH 8,
    /// ImmDt 4, IETH 4, DETH 8, FETH 4).
    const KNOWN: [(u8, &str, usize); 39] = [
        (0x00, "RC_SEND_FIRST", 12),
        (0x01, "RC_SEND_MIDDLE", 12),
        (0x02, "RC_SEND_LAST", 12),
        (0x03, "RC_SEND_LAST_WITH_IMMEDIATE", 16),
        (0x04, "RC_SEND_ONLY", 12),
        (0x05, "RC_SEND_ONLY_WITH_IMMEDIATE", 16),
        (0x06, "RC_RDMA_WRITE_FIRST", 28),
        (0x07, "RC_RDMA_WRITE_MIDDLE", 12),
        (0x08, "RC_RDMA_WRITE_LAST", 12),
        (0x09, "RC_RDMA_WRITE_LAST_WITH_IMMEDIATE", 16),
        (0x0a, "RC_RDMA_WRITE_ONLY", 28),
        (0x0b, "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE", 32),
        (0x0c, "RC_RDMA_READ_REQUEST", 28),
        (0x0d, "RC_RDMA_READ_RESPONSE_FIRST", 16),
        (0x0e, "RC_RDMA_READ_RESPONSE_MIDDLE", 12),
        (0x0f, "RC_RDMA_READ_RESPONSE_LAST", 16),
        (0x10, "RC_RDMA_READ_RESPONSE_ONLY", 16),
        (0x11, "RC_ACKNOWLEDGE", 16),
        (0x12, "RC_ATOMIC_ACKNOWLEDGE", 24),
        (0x13, "RC_COMPARE_SWAP", 40),
        (0x14, "RC_FETCH_ADD", 40),
        (0x16, "RC_SEND_LAST_WITH_INVALIDATE", 16),
        (0x17, "RC_SEND_ONLY_WITH_INVALIDATE", 16),
        (0x1c, "RC_FLUSH", 32),
        (0x1d, "RC_ATOMIC_WRITE", 28),
        (0x20, "UC_SEND_FIRST", 12),
        (0x21, "UC_SEND_MIDDLE", 12),
        (0x22, "UC_SEND_LAST", 12),
        (0x23, "UC_SEND_LAST_WITH_IMMEDIATE", 16),
        (0x24, "UC_SEND_ONLY", 12),
        (0x25, "UC_SEND_ONLY_WITH_IMMEDIATE", 16),
        (0x26, "UC_RDMA_WRITE_FIRST", 28),
        (0x27, "UC_RDMA_WRITE_MIDDLE", 12),
        (0x28, "UC_RDMA_WRITE_LAST", 12),
        (0x29, "UC_RDMA_WRITE_LAST_WITH_IMMEDIATE", 16),
        (0x2a, "UC_RDMA_WRITE_ONLY", 28),
        (0x2b, "UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE", 32),
        (0x64, "UD_SEND_ONLY", 20),
        (0x65, "UD_SEND_ONLY_WITH_IMMEDIATE", 24),
    ];

    const HEADERS: [(Flags, usize); 8] = [
        (Flags::DETH, 8),
        (Flags::FETH, 4),
        (Flags::RETH, 16),
        (Flags::ATMETH, 28),
        (Flags::AETH, 4),
        (Flags::ATMACK, 8),
        (Flags::IMMDT, 4),
        (Flags::IETH, 4),
    ];

    const OPERATIONS: [Flags; 8] = [
        Flags::SEND,
        Flags::WRITE,
        Flags::READ,
        Flags::ATOMIC,
        Flags::FLUSH,
        Flags::ATOMIC_WRITE,
        Flags::READ_RESPONSE,
        Flags::ACK,
    ];

    #[test]
    fn known_opcodes_and_lengths() {
        for (op, name, hdr_len) in KNOWN {
            let i = info(op).unwrap_or_else(|| panic!("{op:#x} unknown"));
            assert_eq!(i.name, name, "{op:#x}");
            assert_eq!(i.hdr_len, hdr_len, "{name}");
        }
        let defined = (0..=255u8).filter(|&op| info(op).is_some()).count();
        assert_eq!(defined, KNOWN.len());
    }

    #[test]
    fn named_constants_match_the_table() {
        for (op, name) in [
            (op::RC_SEND_FIRST, "RC_SEND_FIRST"),
            (
                op::RC_SEND_ONLY_WITH_IMMEDIATE,
                "RC_SEND_ONLY_WITH_IMMEDIATE",
            ),
            (
                op::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE",
            ),
            (op::RC_RDMA_READ_REQUEST, "RC_RDMA_READ_REQUEST"),
            (
                op::RC_RDMA_READ_RESPONSE_MIDDLE,
                "RC_RDMA_READ_RESPONSE_MIDDLE",
            ),
            (op::RC_ACKNOWLEDGE, "RC_ACKNOWLEDGE"),
            (op::RC_ATOMIC_ACKNOWLEDGE, "RC_ATOMIC_ACKNOWLEDGE"),
            (op::RC_COMPARE_SWAP, "RC_COMPARE_SWAP"),
            (op::RC_FETCH_ADD, "RC_FETCH_ADD"),
            (
                op::RC_SEND_LAST_WITH_INVALIDATE,
                "RC_SEND_LAST_WITH_INVALIDATE",
            ),
            (
                op::RC_SEND_ONLY_WITH_INVALIDATE,
                "RC_SEND_ONLY_WITH_INVALIDATE",
            ),
            (op::RC_FLUSH, "RC_FLUSH"),
            (op::RC_ATOMIC_WRITE, "RC_ATOMIC_WRITE"),
            (op::UC_SEND_FIRST, "UC_SEND_FIRST"),
            (
                op::UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                "UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE",
            ),
            (op::UD_SEND_ONLY, "UD_SEND_ONLY"),
            (
                op::UD_SEND_ONLY_WITH_IMMEDIATE,
                "UD_SEND_ONLY_WITH_IMMEDIATE",
            ),
        ] {
            assert_eq!(info(op).map(|i| i.name), Some(name));
        }
        // The transport bits.
        for (op, _, _) in KNOWN {
            let qp = match op & op::TRANSPORT_MASK {
                op::RC => QpTypes::RC,
                op::UC => QpTypes::UC,
                op::UD => QpTypes::UD,
                t => panic!("transport {t:#x}"),
            };
            assert_eq!(info(op).unwrap().qp, qp);
        }
    }

    #[test]
    fn unknown_opcodes() {
        let mut unknown = vec![0x15, 0x18, 0x19, 0x1a, 0x1b, 0x1e, 0x1f];
        unknown.extend(0x2c..=0x3f); // UC has no READ, atomics, ACKs
        unknown.extend(0x40..=0x5f); // RD: not supported
        unknown.extend([0x60, 0x61, 0x62, 0x63]);
        unknown.extend(0x66..=0xff); // incl. CNP 0x81 and vendor opcodes
        for op in unknown {
            assert_eq!(info(op), None, "{op:#x}");
        }
    }

    #[test]
    fn known_offsets() {
        let i = info(op::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE).unwrap();
        assert_eq!((i.reth, i.immdt, i.hdr_len), (Some(12), Some(28), 32));
        assert_eq!(i.header(Flags::RETH), Some(12..28));
        assert_eq!(i.header(Flags::IMMDT), Some(28..32));
        assert_eq!(i.header(Flags::AETH), None);

        let i = info(op::RC_ATOMIC_ACKNOWLEDGE).unwrap();
        assert_eq!((i.aeth, i.atmack, i.hdr_len), (Some(12), Some(16), 24));

        let i = info(op::UD_SEND_ONLY_WITH_IMMEDIATE).unwrap();
        assert_eq!((i.deth, i.immdt, i.hdr_len), (Some(12), Some(20), 24));

        let i = info(op::RC_FLUSH).unwrap();
        assert_eq!((i.feth, i.reth, i.hdr_len), (Some(12), Some(16), 32));
        assert!(!i.flags.contains(Flags::PAYLOAD));

        let i = info(op::RC_COMPARE_SWAP).unwrap();
        assert_eq!(i.header(Flags::ATMETH), Some(12..40));

        let i = info(op::RC_SEND_ONLY_WITH_INVALIDATE).unwrap();
        assert_eq!(i.header(Flags::IETH), Some(12..16));

        let i = info(op::RC_ATOMIC_WRITE).unwrap();
        assert_eq!((i.reth, i.hdr_len), (Some(12), 28));

        for op in [
            op::RC_RDMA_READ_RESPONSE_FIRST,
            op::RC_RDMA_READ_RESPONSE_LAST,
            op::RC_RDMA_READ_RESPONSE_ONLY,
            op::RC_ACKNOWLEDGE,
        ] {
            assert_eq!(info(op).unwrap().aeth, Some(12));
        }
        assert_eq!(info(op::RC_RDMA_READ_RESPONSE_MIDDLE).unwrap().aeth, None);
        // Not a header flag.
        assert_eq!(info(op::RC_SEND_ONLY).unwrap().header(Flags::SEND), None);
    }

    #[test]
    fn every_entry_is_self_consistent() {
        for (op, entry) in TABLE.iter().enumerate() {
            let Some(i) = entry else { continue };
            let f = i.flags;

            // Headers: present iff flagged, contiguous from the BTH in IBTA order,
            // hdr_len the sum.
            let mut at = 12;
            for (h, len) in HEADERS {
                let r = i.header(h);
                if f.contains(h) {
                    assert_eq!(r, Some(at..at + len), "{} {h:?}", i.name);
                    at += len;
                } else {
                    assert_eq!(r, None, "{} {h:?}", i.name);
                }
            }
            assert_eq!(i.hdr_len, at, "{}", i.name);

            // One direction, one operation.
            let dirs = [Flags::REQUEST, Flags::READ_RESPONSE, Flags::ACK];
            assert_eq!(
                dirs.iter().filter(|&&d| f.contains(d)).count(),
                1,
                "{}",
                i.name
            );
            assert_eq!(
                OPERATIONS.iter().filter(|&&o| f.contains(o)).count(),
                1,
                "{}",
                i.name
            );
            assert_eq!(i.is_request(), f.contains(Flags::REQUEST));
            assert_eq!(i.is_response(), !i.is_request());
            assert_eq!(i.has_payload(), f.contains(Flags::PAYLOAD));
            for (h, offset) in [
                (Flags::RETH, i.reth_offset()),
                (Flags::AETH, i.aeth_offset()),
                (Flags::ATMETH, i.atomic_offset()),
                (Flags::ATMACK, i.atomic_ack_offset()),
                (Flags::IMMDT, i.immdt_offset()),
                (Flags::IETH, i.ieth_offset()),
                (Flags::DETH, i.deth_offset()),
                (Flags::FETH, i.feth_offset()),
            ] {
                assert_eq!(offset, i.header(h).map(|r| r.start), "{} {h:?}", i.name);
            }

            // Position: FIRST, MIDDLE, LAST or ONLY.
            let middle = f.contains(Flags::MIDDLE);
            assert!(middle != f.intersects(Flags::ONLY), "{}", i.name);

            // Which headers go with which operation.
            assert_eq!(
                f.contains(Flags::AETH),
                f.contains(Flags::ACK) || (f.contains(Flags::READ_RESPONSE) && !middle),
                "{}",
                i.name
            );
            assert_eq!(f.contains(Flags::ATMACK), i.name == "RC_ATOMIC_ACKNOWLEDGE");
            assert_eq!(f.contains(Flags::ATMETH), f.contains(Flags::ATOMIC));
            assert_eq!(f.contains(Flags::FETH), f.contains(Flags::FLUSH));
            assert_eq!(f.contains(Flags::DETH), i.qp == QpTypes::UD);
            assert_eq!(
                f.contains(Flags::RETH),
                (f.contains(Flags::WRITE) && f.contains(Flags::FIRST))
                    || f.intersects(Flags::READ | Flags::FLUSH | Flags::ATOMIC_WRITE),
                "{}",
                i.name
            );
            assert_eq!(f.contains(Flags::IMMDT), i.name.contains("WITH_IMMEDIATE"));
            assert_eq!(f.contains(Flags::IETH), i.name.contains("WITH_INVALIDATE"));
            assert!(!(f.contains(Flags::IMMDT) && f.contains(Flags::IETH)));
            assert_eq!(
                f.contains(Flags::PAYLOAD),
                f.intersects(
                    Flags::SEND | Flags::WRITE | Flags::READ_RESPONSE | Flags::ATOMIC_WRITE
                ),
                "{}",
                i.name
            );

            // Receive WQEs: only SENDs and WRITEs with immediate use them; a SEND takes
            // one at its first packet, a WRITE with immediate at its last; both
            // complete it at the last packet.
            let uses_rq =
                f.contains(Flags::SEND) || (f.contains(Flags::WRITE) && f.contains(Flags::IMMDT));
            assert_eq!(
                f.contains(Flags::COMP),
                uses_rq && f.contains(Flags::LAST),
                "{}",
                i.name
            );
            let start = if f.contains(Flags::SEND) {
                f.contains(Flags::FIRST)
            } else {
                uses_rq && f.contains(Flags::LAST)
            };
            assert_eq!(f.contains(Flags::START), start, "{}", i.name);

            // Names follow the IBTA operation code.
            let expect_qp = match op as u8 & op::TRANSPORT_MASK {
                op::RC => "RC_",
                op::UC => "UC_",
                op::UD => "UD_",
                _ => panic!("{op:#x}"),
            };
            assert!(i.name.starts_with(expect_qp), "{}", i.name);
            if i.qp != QpTypes::RC {
                assert!(f.intersects(Flags::SEND | Flags::WRITE), "{}", i.name);
            }
        }
    }

    #[test]
    fn payload_ranges() {
        let send = info(op::RC_SEND_ONLY).unwrap();
        assert_eq!(payload_range(send, 12 + 20, 0), Some(12..32));
        assert_eq!(payload_range(send, 12 + 20, 2), Some(12..30));
        assert_eq!(payload_range(send, 12, 0), Some(12..12));
        assert_eq!(payload_range(send, 12 + 3, 3), Some(12..12));
        assert_eq!(payload_range(send, 11, 0), None);
        assert_eq!(payload_range(send, 12 + 2, 3), None);
        assert_eq!(payload_range(send, 12 + 8, 4), None);

        let ack = info(op::RC_ACKNOWLEDGE).unwrap();
        assert_eq!(payload_range(ack, 16, 0), Some(16..16));
        assert_eq!(payload_range(ack, 20, 0), None);
        assert_eq!(payload_range(ack, 16, 1), None);
        assert_eq!(payload_range(ack, 15, 0), None);

        let aw = info(op::RC_ATOMIC_WRITE).unwrap();
        assert_eq!(payload_range(aw, 28 + 8, 0), Some(28..36));
        assert_eq!(payload_range(aw, 28 + 4, 0), None);
        assert_eq!(payload_range(aw, 28 + 12, 0), None);

        let ud = info(op::UD_SEND_ONLY_WITH_IMMEDIATE).unwrap();
        assert_eq!(payload_range(ud, 24 + 256, 0), Some(24..280));
        assert_eq!(payload_range(ud, usize::MAX, 3), Some(24..usize::MAX - 3));
    }
}
