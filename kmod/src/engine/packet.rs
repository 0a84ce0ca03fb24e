//! Received packets taken apart, and packets to send put together, on top of the
//! wire formats in [`crate::wire`] and the opcode table in [`crate::opcode`].
//!
//! A received packet arrives as the whole IP datagram (IPv4 or IPv6, then UDP,
//! then the RoCE v2 transport headers, payload, pad and ICRC).  [`parse`] checks
//! everything that does not need the QP: lengths, UDP port, opcode, transport
//! version, the headers the opcode table says are there, and (when asked) the ICRC.

use crate::opcode::{self, OpInfo};
use crate::wire::{aeth, atomic, bth, feth, ieth, immdt, reth};

/// Why a received packet was dropped before it reached a QP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Too short, inconsistent lengths, not UDP to port 4791, bad IP header.
    Malformed,
    /// The ICRC does not match.
    Icrc,
    /// An opcode ferrite does not know (or RD/UD, which ferrite does not serve).
    UnknownOpcode,
}

/// The parts of a received packet.
#[derive(Clone, Copy, Debug)]
pub struct Rx<'a> {
    pub v6: bool,
    /// Source and destination addresses as GIDs (IPv4-mapped for IPv4).
    pub sgid: [u8; 16],
    pub dgid: [u8; 16],
    pub bth: bth::Repr,
    pub info: &'static OpInfo,
    pub reth: Option<reth::Repr>,
    pub aeth: Option<aeth::Repr>,
    pub atomic: Option<atomic::AtomicEthRepr>,
    pub atomic_ack: Option<atomic::AtomicAckRepr>,
    pub imm: Option<u32>,
    pub ieth: Option<u32>,
    pub feth: Option<feth::Repr>,
    pub payload: &'a [u8],
}

const UDP_LEN: usize = 8;
const ICRC_LEN: usize = 4;

fn v4_mapped(a: &[u8]) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[10] = 0xff;
    g[11] = 0xff;
    g[12..].copy_from_slice(a);
    g
}

/// Take apart the IP datagram `ip`.  With `check_icrc`, the ICRC is verified with `crc`.
pub fn parse<'a>(ip: &'a [u8], crc: Option<&dyn crate::wire::icrc::Crc32>) -> Result<Rx<'a>, Drop> {
    let ver = ip.first().ok_or(Drop::Malformed)? >> 4;
    let (v6, ihl, total, proto, sgid, dgid) = match ver {
        4 => {
            if ip.len() < 20 || ip[0] & 0xf != 5 {
                return Err(Drop::Malformed);
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            // Fragments never carry RoCE: DF is set and a reassembled datagram would
            // not come here.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return Err(Drop::Malformed);
            }
            (false, 20, total, ip[9], v4_mapped(&ip[12..16]), v4_mapped(&ip[16..20]))
        }
        6 => {
            if ip.len() < 40 {
                return Err(Drop::Malformed);
            }
            let total = 40 + u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (true, 40, total, ip[6], s, d)
        }
        _ => return Err(Drop::Malformed),
    };
    if proto != 17 || total > ip.len() || total < ihl + UDP_LEN + bth::BTH_LEN + ICRC_LEN {
        return Err(Drop::Malformed);
    }
    let ip = &ip[..total];
    let udp = &ip[ihl..];
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if u16::from_be_bytes([udp[2], udp[3]]) != super::ROCE_V2_PORT || udp_len != udp.len() {
        return Err(Drop::Malformed);
    }
    let t = &udp[UDP_LEN..udp.len() - ICRC_LEN];
    // The opcode first: nothing else of an unknown packet is looked at.
    let info = opcode::info(t[0]).ok_or(Drop::UnknownOpcode)?;
    if t.len() < info.hdr_len {
        return Err(Drop::Malformed);
    }
    let b = bth::Repr::parse(&bth::Packet::new_checked(t).map_err(|_| Drop::Malformed)?)
        .map_err(|_| Drop::Malformed)?;
    let pad = b.pad_count as usize;
    if t.len() < info.hdr_len + pad {
        return Err(Drop::Malformed);
    }
    let payload = &t[info.hdr_len..t.len() - pad];
    // An opcode without payload has no pad either (opcode::payload_range).
    if !info.has_payload() && (pad != 0 || !payload.is_empty()) {
        return Err(Drop::Malformed);
    }
    if let Some(c) = crc {
        match crate::wire::icrc::check(c, ip) {
            Ok(true) => {}
            Ok(false) => return Err(Drop::Icrc),
            Err(_) => return Err(Drop::Malformed),
        }
    }
    let at = |off: Option<usize>, len: usize| off.and_then(|o| t.get(o..o + len));
    let reth = match at(info.reth_offset(), reth::HEADER_LEN) {
        Some(h) => Some(reth::Repr::parse(&reth::Packet::new_unchecked(h)).map_err(|_| Drop::Malformed)?),
        None => None,
    };
    let aeth = match at(info.aeth_offset(), aeth::HEADER_LEN) {
        Some(h) => Some(aeth::Repr::parse(&aeth::Packet::new_unchecked(h)).map_err(|_| Drop::Malformed)?),
        None => None,
    };
    let atomic = match at(info.atomic_offset(), atomic::ATOMIC_ETH_LEN) {
        Some(h) => Some(
            atomic::AtomicEthRepr::parse(&atomic::AtomicEthPacket::new_unchecked(h)).map_err(|_| Drop::Malformed)?,
        ),
        None => None,
    };
    let atomic_ack = match at(info.atomic_ack_offset(), atomic::ATOMIC_ACK_ETH_LEN) {
        Some(h) => Some(
            atomic::AtomicAckRepr::parse(&atomic::AtomicAckPacket::new_unchecked(h)).map_err(|_| Drop::Malformed)?,
        ),
        None => None,
    };
    let imm = match at(info.immdt_offset(), immdt::HEADER_LEN) {
        Some(h) => Some(immdt::Repr::parse(&immdt::Packet::new_unchecked(h)).map_err(|_| Drop::Malformed)?.imm),
        None => None,
    };
    let ieth = match at(info.ieth_offset(), ieth::HEADER_LEN) {
        Some(h) => Some(ieth::Repr::parse(&ieth::Packet::new_unchecked(h)).map_err(|_| Drop::Malformed)?.rkey),
        None => None,
    };
    let feth = match at(info.feth_offset(), feth::HEADER_LEN) {
        Some(h) => Some(feth::Repr::parse(&feth::Packet::new_unchecked(h)).map_err(|_| Drop::Malformed)?),
        None => None,
    };
    Ok(Rx { v6, sgid, dgid, bth: b, info, reth, aeth, atomic, atomic_ack, imm, ieth, feth, payload })
}

/// The extension headers of a packet to build.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ext {
    pub reth: Option<reth::Repr>,
    pub aeth: Option<aeth::Repr>,
    pub atomic: Option<atomic::AtomicEthRepr>,
    pub atomic_ack: Option<atomic::AtomicAckRepr>,
    pub imm: Option<u32>,
    pub feth: Option<feth::Repr>,
}

/// Bytes of a packet with `payload` bytes for opcode `info`: headers, payload, pad, ICRC.
pub fn packet_len(info: &OpInfo, payload: usize) -> usize {
    info.hdr_len + payload + pad_for(payload) + ICRC_LEN
}

pub fn pad_for(payload: usize) -> usize {
    (4 - payload % 4) % 4
}

/// Write BTH and the extension headers of `info` into the start of `buf`; returns
/// the offset of the payload.  `buf` is at least [`packet_len`] long.  Headers the
/// opcode does not carry are ignored; headers it carries and `ext` lacks are zero.
pub fn emit(buf: &mut [u8], info: &OpInfo, b: &bth::Repr, ext: &Ext) -> usize {
    for x in buf[..info.hdr_len].iter_mut() {
        *x = 0;
    }
    b.emit(&mut bth::Packet::new_unchecked(&mut buf[..bth::BTH_LEN]));
    if let (Some(o), Some(r)) = (info.reth_offset(), ext.reth) {
        r.emit(&mut reth::Packet::new_unchecked(&mut buf[o..o + reth::HEADER_LEN]));
    }
    if let (Some(o), Some(r)) = (info.aeth_offset(), ext.aeth) {
        r.emit(&mut aeth::Packet::new_unchecked(&mut buf[o..o + aeth::HEADER_LEN]));
    }
    if let (Some(o), Some(r)) = (info.atomic_offset(), ext.atomic) {
        r.emit(&mut atomic::AtomicEthPacket::new_unchecked(&mut buf[o..o + atomic::ATOMIC_ETH_LEN]));
    }
    if let (Some(o), Some(r)) = (info.atomic_ack_offset(), ext.atomic_ack) {
        r.emit(&mut atomic::AtomicAckPacket::new_unchecked(&mut buf[o..o + atomic::ATOMIC_ACK_ETH_LEN]));
    }
    if let (Some(o), Some(r)) = (info.feth_offset(), ext.feth) {
        r.emit(&mut feth::Packet::new_unchecked(&mut buf[o..o + feth::HEADER_LEN]));
    }
    if let (Some(o), Some(imm)) = (info.immdt_offset(), ext.imm) {
        immdt::Repr { imm }.emit(&mut immdt::Packet::new_unchecked(&mut buf[o..o + immdt::HEADER_LEN]));
    }
    info.hdr_len
}
