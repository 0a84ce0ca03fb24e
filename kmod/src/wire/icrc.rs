//! RoCE v2's invariant CRC (ICRC): the 4 bytes at the end of every RoCE v2 packet,
//! a CRC-32 over the parts of the IP datagram that no router changes.
//!
//! What is covered, as IBTA's RoCE v2 annex and rxe (rxe_icrc.c) compute it:
//!
//! 1. 8 bytes of 0xff standing for the masked InfiniBand LRH.  Rather than CRC them
//!    each time, the CRC starts from [`SEED`], the CRC of those 8 bytes.
//! 2. A copy of the IP header (IPv4: 20 bytes, no options; IPv6: 40 bytes), the UDP
//!    header and the BTH, with the variant fields taken as all ones: IPv4 TOS, TTL
//!    and header checksum; IPv6 traffic class, flow label and hop limit; the UDP
//!    checksum; the BTH's byte 4 (FECN, BECN, resv6: "resv8a").
//! 3. Everything after the BTH up to the ICRC: the extension headers, the payload
//!    and the pad bytes.
//!
//! The CRC is the reflected CRC-32 of Ethernet (polynomial 0xedb88320) without the
//! usual inversions, exactly the kernel's `crc32_le(seed, data, len)`; the ICRC is
//! the complement of the result, stored least significant byte first (rxe stores
//! the `u32` in CPU order, and every RoCE host is little-endian; ConnectX NICs agree,
//! see the tests).
//!
//! The CRC function is injected through [`Crc32`] so that the kernel build uses the
//! kernel's accelerated `crc32_le`; host builds have [`SoftCrc`].
//!
//! One exception, rxe's: the RC FLUSH of IBTA 1.5.  rxe's opcode table
//! (rxe_opcode.c) gives RC_FLUSH no payload offset, so where rxe takes the payload
//! for the ICRC (`payload_addr`, `payload_size`) it takes the packet's own
//! transport headers instead, BTH (unmasked) to RETH, once more after step 3.
//! Every rxe with FLUSH computes and checks that (read from the RC_FLUSH entries of
//! the rdma_rxe modules of Linux 6.12, 7.2 and 7.3: payload offset 0, while every
//! other opcode's is its header length), so an ICRC made as the specification says
//! makes rxe drop the FLUSH.  ferrite sends [`Variant::RxeFlush`] for RC FLUSH and
//! accepts either on receipt ([`fill`], [`check`]).

use super::{bth, read_u16, read_u8, Error, Result};

/// Length of the ICRC at the end of the packet.
pub const ICRC_LEN: usize = 4;

/// The CRC of the masked LRH, 8 bytes of 0xff, from the all-ones start:
/// `crc32_le(0xffffffff, [0xff; 8])`.
pub const SEED: u32 = 0xdebb_20e3;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// The longest masked prefix: IPv6 + UDP + BTH.
const MAX_PREFIX_LEN: usize = IPV6_HEADER_LEN + UDP_HEADER_LEN + bth::HEADER_LEN;

/// A CRC-32 as the kernel's `crc32_le`: reflected, polynomial 0xedb88320, starting
/// from `seed`, with no inversion before or after.  Feeding data in pieces gives the
/// same result as feeding it whole:
/// `crc32_le(crc32_le(s, a), b) == crc32_le(s, a ++ b)`.
pub trait Crc32 {
    fn crc32_le(&self, seed: u32, data: &[u8]) -> u32;
}

/// [`Crc32`] in software, for host builds (tests, fuzzing, tools).
#[cfg(not(target_os = "none"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftCrc;

#[cfg(not(target_os = "none"))]
impl Crc32 for SoftCrc {
    fn crc32_le(&self, seed: u32, data: &[u8]) -> u32 {
        // crc32fast's hasher keeps the inverted state of the usual CRC-32:
        // its value after `update` from `!s` is `!crc32_le(s, data)`.
        let mut hasher = crc32fast::Hasher::new_with_initial(!seed);
        hasher.update(data);
        !hasher.finalize()
    }
}

/// Where the IP header ends and the BTH starts in `ip_pkt`.
struct Layout {
    ip_header_len: usize,
}

impl Layout {
    fn bth_offset(&self) -> usize {
        self.ip_header_len + UDP_HEADER_LEN
    }

    fn prefix_len(&self) -> usize {
        self.bth_offset() + bth::HEADER_LEN
    }
}

/// Checks that `ip_pkt` is one whole IPv4 (without options) or IPv6 (without
/// extension headers) datagram carrying UDP, long enough for IP + UDP + BTH + ICRC,
/// with IP and UDP lengths that match the buffer.
fn layout(ip_pkt: &[u8]) -> Result<Layout> {
    let first = *ip_pkt.first().ok_or(Error::Truncated)?;
    let (ip_header_len, protocol, ip_len) = match first >> 4 {
        4 => {
            if first & 0x0f != 5 {
                return Err(Error::Malformed);
            }
            let total = usize::from(read_len(ip_pkt, 2)?);
            (IPV4_HEADER_LEN, read_byte(ip_pkt, 9)?, total)
        }
        6 => {
            let payload = usize::from(read_len(ip_pkt, 4)?);
            (
                IPV6_HEADER_LEN,
                read_byte(ip_pkt, 6)?,
                IPV6_HEADER_LEN + payload,
            )
        }
        _ => return Err(Error::Malformed),
    };
    let layout = Layout { ip_header_len };
    if ip_pkt.len() < layout.prefix_len() + ICRC_LEN {
        return Err(Error::Truncated);
    }
    if protocol != IPPROTO_UDP {
        return Err(Error::Malformed);
    }
    let udp_len = usize::from(read_len(ip_pkt, ip_header_len + 4)?);
    for declared in [ip_len, ip_header_len + udp_len] {
        if declared > ip_pkt.len() {
            return Err(Error::Truncated);
        }
        if declared < ip_pkt.len() {
            return Err(Error::Malformed);
        }
    }
    Ok(layout)
}

fn read_byte(buf: &[u8], at: usize) -> Result<u8> {
    if at < buf.len() {
        Ok(read_u8(buf, at))
    } else {
        Err(Error::Truncated)
    }
}

fn read_len(buf: &[u8], at: usize) -> Result<u16> {
    if at + 2 <= buf.len() {
        Ok(read_u16(buf, at..at + 2))
    } else {
        Err(Error::Truncated)
    }
}

/// The offset of the BTH in `ip_pkt` (the IP header length plus 8), after the same
/// checks [`compute`] makes.
pub fn bth_offset(ip_pkt: &[u8]) -> Result<usize> {
    layout(ip_pkt).map(|l| l.bth_offset())
}

/// The ICRC of `ip_pkt`, the whole IP datagram from the first byte of its IP header
/// to the last byte of its ICRC (whose 4 bytes are not read).
///
/// Errors: `Truncated` if the buffer is shorter than IP + UDP + BTH + ICRC or than
/// its IP or UDP length says; `Malformed` for an IP version other than 4 or 6, IPv4
/// options, an IPv6 extension header or a protocol other than UDP, or IP or UDP
/// lengths shorter than the buffer.
///
/// The variant fields are masked in a copy on the stack; `ip_pkt` is not changed.
pub fn compute(crc: &(impl Crc32 + ?Sized), ip_pkt: &[u8]) -> Result<u32> {
    compute_as(crc, ip_pkt, Variant::Spec)
}

/// How an ICRC is computed (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// As IBTA's RoCE v2 annex says.
    Spec,
    /// As rxe computes it for RC FLUSH: after the specification's CRC, the transport
    /// bytes again, from the first byte of the BTH (as sent) to the ICRC.
    RxeFlush,
}

/// The variant ferrite sends for the packet of opcode `opcode`.
pub fn variant_for(opcode: u8) -> Variant {
    if opcode == crate::opcode::op::RC_FLUSH {
        Variant::RxeFlush
    } else {
        Variant::Spec
    }
}

/// The ICRC of `ip_pkt` computed as `variant` says; errors as [`compute`].
pub fn compute_as(crc: &(impl Crc32 + ?Sized), ip_pkt: &[u8], variant: Variant) -> Result<u32> {
    let layout = layout(ip_pkt)?;
    let prefix_len = layout.prefix_len();
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    let (Some(dst), Some(src)) = (prefix.get_mut(..prefix_len), ip_pkt.get(..prefix_len)) else {
        return Err(Error::Truncated);
    };
    dst.copy_from_slice(src);
    if layout.ip_header_len == IPV4_HEADER_LEN {
        // TOS, TTL, header checksum.
        prefix[1] = 0xff;
        prefix[8] = 0xff;
        prefix[10] = 0xff;
        prefix[11] = 0xff;
        mask_udp_bth(&mut prefix, IPV4_HEADER_LEN);
    } else {
        // Traffic class and flow label (all of the first word but the version),
        // hop limit.
        prefix[0] |= 0x0f;
        prefix[1] = 0xff;
        prefix[2] = 0xff;
        prefix[3] = 0xff;
        prefix[7] = 0xff;
        mask_udp_bth(&mut prefix, IPV6_HEADER_LEN);
    }
    let rest = ip_pkt
        .get(prefix_len..ip_pkt.len().saturating_sub(ICRC_LEN))
        .ok_or(Error::Truncated)?;
    let mut c = crc.crc32_le(SEED, prefix.get(..prefix_len).unwrap_or(&[]));
    c = crc.crc32_le(c, rest);
    if variant == Variant::RxeFlush {
        let transport = ip_pkt
            .get(layout.bth_offset()..ip_pkt.len().saturating_sub(ICRC_LEN))
            .ok_or(Error::Truncated)?;
        c = crc.crc32_le(c, transport);
    }
    Ok(!c)
}

/// The opcode in the BTH of `ip_pkt`, whose layout was checked.
fn opcode_of(ip_pkt: &[u8], layout: &Layout) -> u8 {
    read_u8(ip_pkt, layout.bth_offset() + bth::field::OPCODE)
}

/// Masks the UDP checksum and the BTH's resv8a byte, the UDP header being at `udp`.
fn mask_udp_bth(prefix: &mut [u8; MAX_PREFIX_LEN], udp: usize) {
    let bth = udp + UDP_HEADER_LEN;
    for at in [udp + 6, udp + 7, bth + bth::field::RESV8A] {
        if let Some(b) = prefix.get_mut(at) {
            *b = 0xff;
        }
    }
}

/// The ICRC as stored in the last 4 bytes of `ip_pkt` (no checks).
fn stored(ip_pkt: &[u8]) -> Option<u32> {
    let at = ip_pkt.len().checked_sub(ICRC_LEN)?;
    let bytes: [u8; ICRC_LEN] = ip_pkt.get(at..)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Whether the ICRC at the end of `ip_pkt` is right: as the specification computes
/// it, or for an RC FLUSH also as rxe does.  Errors as [`compute`].
pub fn check(crc: &(impl Crc32 + ?Sized), ip_pkt: &[u8]) -> Result<bool> {
    let layout = layout(ip_pkt)?;
    let have = stored(ip_pkt);
    if have == Some(compute_as(crc, ip_pkt, Variant::Spec)?) {
        return Ok(true);
    }
    let v = variant_for(opcode_of(ip_pkt, &layout));
    Ok(v != Variant::Spec && have == Some(compute_as(crc, ip_pkt, v)?))
}

/// Computes the ICRC of `ip_pkt` and writes it into its last 4 bytes, as
/// [`variant_for`] its opcode says.  Every other byte, the IP and UDP lengths
/// included, must be final.  Errors as [`compute`].
pub fn fill(crc: &(impl Crc32 + ?Sized), ip_pkt: &mut [u8]) -> Result<()> {
    let layout = layout(ip_pkt)?;
    let icrc = compute_as(crc, ip_pkt, variant_for(opcode_of(ip_pkt, &layout)))?;
    let at = ip_pkt.len().saturating_sub(ICRC_LEN);
    let dst = ip_pkt.get_mut(at..).ok_or(Error::Truncated)?;
    for (d, s) in dst.iter_mut().zip(icrc.to_le_bytes()) {
        *d = s;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit-at-a-time CRC-32, written from the definition, to check `SoftCrc`.
    struct BitCrc;

    impl Crc32 for BitCrc {
        fn crc32_le(&self, seed: u32, data: &[u8]) -> u32 {
            let mut crc = seed;
            for &byte in data {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
    }

    /// A RoCE v2 CNP (opcode 0x81, BECN, QP 0x118, 16 reserved bytes) generated by a
    /// ConnectX-4 Lx, quoted as a hex capture in scapy's test/contrib/roce.uts ("RoCE
    /// CNP captured on ConnectX-4 Lx"), from its IPv4 header on (the 14-byte Ethernet
    /// header left out).  Its ICRC, 82 fd 00 2a on the wire, is the NIC's own.
    static CNP_CX4: [u8; 60] = [
        // IPv4: TOS 0xc2, length 60, id 0x718c, DF, TTL 64, UDP, 10.0.17.1 > 10.0.18.1
        0x45, 0xc2, 0x00, 0x3c, 0x71, 0x8c, 0x40, 0x00, 0x40, 0x11, 0x91, 0x61, 0x0a, 0x00, 0x11,
        0x01, 0x0a, 0x00, 0x12, 0x01, //
        // UDP: 0 > 4791, length 40, no checksum
        0x00, 0x00, 0x12, 0xb7, 0x00, 0x28, 0x00, 0x00, //
        // BTH
        0x81, 0x00, 0xff, 0xff, 0x40, 0x00, 0x01, 0x18, 0x00, 0x00, 0x00, 0x00, //
        // CNP reserved bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, //
        // ICRC
        0x82, 0xfd, 0x00, 0x2a,
    ];

    /// scapy's example UC SEND ONLY over IPv4 (test/contrib/roce.uts, "RoCE layer"),
    /// rebuilt here byte by byte from the fields that test gives: TOS 1, id 1144, DF,
    /// TTL 64, 192.168.0.7 > 192.168.0.7 (header checksum 0xb4d5, as the test
    /// asserts); UDP 49152 > 4791, checksum 0xaca2; BTH M, PadCnt 2, QP 211, PSN
    /// 13571856; 20 bytes of payload.  The ICRC, 78 f3 53 f3 on the wire, is the one
    /// the test asserts, computed by scapy's own ICRC code (scapy/contrib/roce.py,
    /// zlib's CRC-32 over 8 bytes of 0xff and the masked headers).
    static UC_SEND_V4: [u8; 64] = [
        // IPv4
        0x45, 0x01, 0x00, 0x40, 0x04, 0x78, 0x40, 0x00, 0x40, 0x11, 0xb4, 0xd5, 0xc0, 0xa8, 0x00,
        0x07, 0xc0, 0xa8, 0x00, 0x07, //
        // UDP
        0xc0, 0x00, 0x12, 0xb7, 0x00, 0x2c, 0xac, 0xa2, //
        // BTH: UC SEND ONLY
        0x24, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0xd3, 0x00, 0xcf, 0x17, 0x10, //
        // payload (18 bytes) and pad (2)
        0x46, 0x30, 0x81, 0x8b, 0xe2, 0x89, 0x35, 0xd9, 0x0e, 0x9a, 0x95, 0x50, 0x54, 0x01, 0xbe,
        0x88, 0x5e, 0x50, 0x00, 0x00, //
        // ICRC
        0x78, 0xf3, 0x53, 0xf3,
    ];

    /// The same UC SEND ONLY over IPv6, from the "RoCE over IPv6" test of scapy's
    /// test/contrib/roce.uts (as in polybassa/scapy-1): traffic class 226, flow label
    /// 0x1face, hop limit 255, 2022::1023 > 2023::1024; UDP checksum 0xe7c5.  ICRC
    /// 3e 5b 74 3b on the wire, as that test asserts (scapy's computation).
    static UC_SEND_V6: [u8; 84] = [
        // IPv6
        0x6e, 0x21, 0xfa, 0xce, 0x00, 0x2c, 0x11, 0xff, //
        0x20, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x23, //
        0x20, 0x23, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x24, //
        // UDP
        0xc0, 0x00, 0x12, 0xb7, 0x00, 0x2c, 0xe7, 0xc5, //
        // BTH: UC SEND ONLY
        0x24, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0xd3, 0x00, 0xcf, 0x17, 0x10, //
        // payload and pad
        0x46, 0x30, 0x81, 0x8b, 0xe2, 0x89, 0x35, 0xd9, 0x0e, 0x9a, 0x95, 0x50, 0x54, 0x01, 0xbe,
        0x88, 0x5e, 0x50, 0x00, 0x00, //
        // ICRC
        0x3e, 0x5b, 0x74, 0x3b,
    ];

    const V4_UDP: usize = 20;
    const V4_BTH: usize = 28;
    const V6_UDP: usize = 40;
    const V6_BTH: usize = 48;

    #[test]
    fn seed_is_the_crc_of_the_masked_lrh() {
        assert_eq!(SoftCrc.crc32_le(0xffff_ffff, &[0xff; 8]), SEED);
        assert_eq!(BitCrc.crc32_le(0xffff_ffff, &[0xff; 8]), SEED);
    }

    #[test]
    fn soft_crc_is_raw_crc32_le() {
        // The CRC-32 check value: CRC-32("123456789") = 0xcbf43926, which is the raw
        // CRC from all ones, inverted.
        assert_eq!(!SoftCrc.crc32_le(!0, b"123456789"), 0xcbf4_3926);
        assert_eq!(SoftCrc.crc32_le(0x1234_5678, &[]), 0x1234_5678);
        let data: [u8; 300] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for seed in [0, 1, !0, SEED, 0x8000_0001] {
            for len in [0, 1, 3, 4, 15, 16, 17, 64, 300] {
                let d = &data[..len];
                assert_eq!(SoftCrc.crc32_le(seed, d), BitCrc.crc32_le(seed, d));
            }
            let split = SoftCrc.crc32_le(SoftCrc.crc32_le(seed, &data[..100]), &data[100..]);
            assert_eq!(split, SoftCrc.crc32_le(seed, &data));
        }
    }

    #[test]
    fn connectx_cnp_is_valid() {
        assert_eq!(compute(&SoftCrc, &CNP_CX4), Ok(0x2a00_fd82));
        assert_eq!(check(&SoftCrc, &CNP_CX4), Ok(true));
        assert_eq!(check(&BitCrc, &CNP_CX4), Ok(true));
        let dyn_crc: &dyn Crc32 = &SoftCrc;
        assert_eq!(check(dyn_crc, &CNP_CX4), Ok(true));
    }

    #[test]
    fn scapy_vectors_are_valid() {
        assert_eq!(check(&SoftCrc, &UC_SEND_V4), Ok(true));
        assert_eq!(compute(&SoftCrc, &UC_SEND_V4), Ok(0xf353_f378));
        assert_eq!(check(&SoftCrc, &UC_SEND_V6), Ok(true));
        assert_eq!(compute(&SoftCrc, &UC_SEND_V6), Ok(0x3b74_5b3e));
    }

    #[test]
    fn bth_offsets() {
        assert_eq!(bth_offset(&CNP_CX4), Ok(V4_BTH));
        assert_eq!(bth_offset(&UC_SEND_V4), Ok(V4_BTH));
        assert_eq!(bth_offset(&UC_SEND_V6), Ok(V6_BTH));
    }

    fn flipped<const N: usize>(pkt: &[u8; N], at: usize, mask: u8) -> [u8; N] {
        let mut p = *pkt;
        p[at] ^= mask;
        p
    }

    #[test]
    fn masked_fields_do_not_count() {
        for (name, at, mask) in [
            ("TOS", 1, 0xff),
            ("TTL", 8, 0x3f),
            ("IP checksum", 10, 0x12),
            ("IP checksum", 11, 0x80),
            ("UDP checksum", V4_UDP + 6, 0xff),
            ("UDP checksum", V4_UDP + 7, 0x01),
            ("FECN", V4_BTH + 4, 0x80),
            ("BECN", V4_BTH + 4, 0x40),
            ("resv6", V4_BTH + 4, 0x3f),
        ] {
            for pkt in [&CNP_CX4[..], &UC_SEND_V4[..]] {
                let mut p = pkt.to_vec();
                p[at] ^= mask;
                assert_eq!(check(&SoftCrc, &p), Ok(true), "IPv4 {name}");
            }
        }
        for (name, at, mask) in [
            ("traffic class", 0, 0x0f),
            ("traffic class", 1, 0xf0),
            ("flow label", 1, 0x0f),
            ("flow label", 2, 0xff),
            ("flow label", 3, 0x01),
            ("hop limit", 7, 0xff),
            ("UDP checksum", V6_UDP + 6, 0xff),
            ("FECN", V6_BTH + 4, 0x80),
            ("BECN", V6_BTH + 4, 0x40),
        ] {
            let p = flipped(&UC_SEND_V6, at, mask);
            assert_eq!(check(&SoftCrc, &p), Ok(true), "IPv6 {name}");
        }
    }

    #[test]
    fn unmasked_fields_count() {
        for (name, at) in [
            ("IP length", 3),
            ("IP id", 5),
            ("IP source", 12),
            ("IP destination", 19),
            ("UDP source port", V4_UDP + 1),
            ("opcode", V4_BTH),
            ("SE", V4_BTH + 1),
            ("P_Key", V4_BTH + 3),
            ("dest QPN", V4_BTH + 7),
            ("AckReq", V4_BTH + 8),
            ("PSN", V4_BTH + 11),
            ("payload", V4_BTH + 12),
            ("pad", 59),
            ("ICRC", 62),
        ] {
            let mut p = UC_SEND_V4;
            p[at] ^= if name == "AckReq" || name == "SE" {
                0x80
            } else {
                0x01
            };
            // A wrong IP length is caught before any CRC.
            let expect = if name == "IP length" {
                Err(Error::Truncated)
            } else {
                Ok(false)
            };
            assert_eq!(check(&SoftCrc, &p), expect, "{name}");
        }
        for (name, at) in [
            ("source address", 8),
            ("destination address", 39),
            ("UDP destination port", V6_UDP + 3),
            ("dest QPN", V6_BTH + 5),
            ("PSN", V6_BTH + 9),
            ("payload", 79),
        ] {
            let p = flipped(&UC_SEND_V6, at, 0x01);
            assert_eq!(check(&SoftCrc, &p), Ok(false), "IPv6 {name}");
        }
        let p = flipped(&CNP_CX4, V4_BTH + 7, 0x01);
        assert_eq!(check(&SoftCrc, &p), Ok(false), "CNP dest QPN");
    }

    #[test]
    fn fill_then_check() {
        for pkt in [&CNP_CX4[..], &UC_SEND_V4[..], &UC_SEND_V6[..]] {
            let mut p = pkt.to_vec();
            let n = p.len();
            p[n - 4..].fill(0);
            assert_eq!(check(&SoftCrc, &p), Ok(false));
            fill(&SoftCrc, &mut p).unwrap();
            assert_eq!(p, pkt);
            assert_eq!(check(&SoftCrc, &p), Ok(true));
        }
        // A packet of our own: change the PSN, refill, and it checks again.
        let mut p = UC_SEND_V4;
        p[V4_BTH + 9..V4_BTH + 12].copy_from_slice(&[0x00, 0x00, 0x01]);
        assert_eq!(check(&SoftCrc, &p), Ok(false));
        fill(&SoftCrc, &mut p).unwrap();
        assert_eq!(check(&SoftCrc, &p), Ok(true));
        assert_ne!(p[60..], UC_SEND_V4[60..]);
    }

    #[test]
    fn bad_datagrams() {
        assert_eq!(compute(&SoftCrc, &[]), Err(Error::Truncated));
        // Too short for IP + UDP + BTH + ICRC.
        assert_eq!(compute(&SoftCrc, &UC_SEND_V4[..43]), Err(Error::Truncated));
        assert_eq!(compute(&SoftCrc, &UC_SEND_V6[..63]), Err(Error::Truncated));
        assert_eq!(compute(&SoftCrc, &[0x45]), Err(Error::Truncated));
        // Cut short of what the IP length says.
        assert_eq!(compute(&SoftCrc, &UC_SEND_V4[..60]), Err(Error::Truncated));
        assert_eq!(compute(&SoftCrc, &UC_SEND_V6[..80]), Err(Error::Truncated));
        // Trailing bytes past the IP length (Ethernet padding left on).
        let mut long = UC_SEND_V4.to_vec();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(compute(&SoftCrc, &long), Err(Error::Malformed));
        // IPv4 options.
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V4, 0, 0x03)),
            Err(Error::Malformed)
        );
        // Not IP version 4 or 6.
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V4, 0, 0x10)),
            Err(Error::Malformed)
        );
        // Not UDP (TCP), or an IPv6 extension header (hop-by-hop, 0).
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V4, 9, 17 ^ 6)),
            Err(Error::Malformed)
        );
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V6, 6, 17)),
            Err(Error::Malformed)
        );
        // A UDP length that disagrees with the IP length.
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V4, V4_UDP + 5, 0x01)),
            Err(Error::Truncated)
        );
        assert_eq!(
            compute(&SoftCrc, &flipped(&UC_SEND_V6, V6_UDP + 5, 0x04)),
            Err(Error::Malformed)
        );
        let mut short = [0u8; 3];
        assert_eq!(fill(&SoftCrc, &mut short), Err(Error::Malformed));
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        for pkt in [&CNP_CX4[..], &UC_SEND_V4[..], &UC_SEND_V6[..]] {
            for n in 0..pkt.len() {
                let _ = check(&SoftCrc, &pkt[..n]);
                let mut p = pkt[..n].to_vec();
                let _ = fill(&SoftCrc, &mut p);
            }
        }
        let mut x: u32 = 1;
        for _ in 0..2000 {
            let mut p = [0u8; 70];
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            p[0] = if x & 1 == 0 { 0x45 } else { 0x60 };
            let _ = check(&SoftCrc, &p[..(x as usize % 70)]);
        }
    }

    /// An RC FLUSH (to global visibility, of 64 bytes) over IPv4, as ferrite's
    /// engine sends it before the ICRC.
    #[rustfmt::skip]
    static FLUSH_V4: [u8; 64] = [
        // IPv4: length 64, DF, TTL 64, UDP, 192.0.2.1 > 192.0.2.2
        0x45, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0x00, 0x02,
        0x01, 0xc0, 0x00, 0x02, 0x02,
        // UDP: 0xc011 > 4791, length 44
        0xc0, 0x11, 0x12, 0xb7, 0x00, 0x2c, 0x00, 0x00,
        // BTH: RC FLUSH, QP 0x12, AckReq, PSN 0x123456
        0x1c, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x12, 0x80, 0x12, 0x34, 0x56,
        // FETH: range, global
        0x00, 0x00, 0x00, 0x01,
        // RETH
        0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x40,
        // ICRC
        0, 0, 0, 0,
    ];

    #[test]
    fn rc_flush_carries_rxes_icrc_and_either_is_accepted() {
        // rxe's computation, step by step: the specification's CRC, then the
        // transport headers again as they are.
        let mut prefix = FLUSH_V4[..40].to_vec();
        for at in [1, 8, 10, 11, 26, 27, 32] {
            prefix[at] = 0xff;
        }
        let spec = BitCrc.crc32_le(BitCrc.crc32_le(SEED, &prefix), &FLUSH_V4[40..60]);
        let rxe = !BitCrc.crc32_le(spec, &FLUSH_V4[28..60]);
        let spec = !spec;
        assert_ne!(spec, rxe);
        assert_eq!(compute(&BitCrc, &FLUSH_V4), Ok(spec));
        assert_eq!(compute_as(&BitCrc, &FLUSH_V4, Variant::RxeFlush), Ok(rxe));
        let mut pkt = FLUSH_V4;
        fill(&BitCrc, &mut pkt).unwrap();
        assert_eq!(pkt[60..], rxe.to_le_bytes(), "a FLUSH goes out as rxe checks it");
        assert_eq!(check(&SoftCrc, &pkt), Ok(true));
        pkt[60..].copy_from_slice(&spec.to_le_bytes());
        assert_eq!(check(&SoftCrc, &pkt), Ok(true), "the specification's is accepted too");
        pkt[63] ^= 1;
        assert_eq!(check(&SoftCrc, &pkt), Ok(false));
        // Any other opcode: the specification's only.
        let mut other = FLUSH_V4;
        other[28] = 0x1d;
        fill(&BitCrc, &mut other).unwrap();
        assert_eq!(other[60..], compute(&BitCrc, &other).unwrap().to_le_bytes());
        let rxe_way = compute_as(&BitCrc, &other, Variant::RxeFlush).unwrap();
        other[60..].copy_from_slice(&rxe_way.to_le_bytes());
        assert_eq!(check(&SoftCrc, &other), Ok(false));
    }

}
