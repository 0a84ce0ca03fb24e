//! The fuzz targets' bodies, in the crate so that an input the fuzzer found
//! replays as an ordinary host test (`fuzz/fuzz_targets/*.rs` only call them).
//!
//! - [`rx_packet`]: bytes as received datagrams, through the kernel's receive
//!   path: [`crate::datapath::ferrite_rs_rx_classify`] (IP, UDP, BTH, the opcode's
//!   headers, the ICRC), then what `ferrite_rs_qp_round` does with it, into a QP
//!   in RTS with a registered region, posted receives and, if asked, requests of its own
//!   outstanding, so that the responder and the completer run.  Each packet must
//!   be dropped (and counted) or processed; whatever the QP sends must be a
//!   well-formed packet to its peer; no region reference may leak.
//! - [`wire_views`]: every wire view over arbitrary bytes, and each `Repr`'s
//!   round trip (parse, emit, parse gives the same value).
//! - [`seeds`]: inputs for [`rx_packet`] made of the packets two engines really
//!   exchange, the fuzzer's starting corpus.
//!
//! # Input of [`rx_packet`]
//! Byte 0 chooses the variant ([`flags`]), byte 1 the QP's resources and limits
//! ([`setup`]); then packets follow, each as a 2-byte big-endian length, a clock byte (how far time moves before the QP runs after
//! that packet: `n` × 100 µs, or 0xff: to the QP's next deadline) and the bytes.
//! A length past the end takes what is left.

extern crate std;

use core::sync::atomic::Ordering::Relaxed;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use ferrite_abi::access::Access;
use ferrite_abi::wq::{opcode as wop, send_flags, SendWqe, Sge};

use super::harness::{datagram, gid, gid6, side, Side};
use super::packet;
use super::qp::{mask, QpAttr, QpState, QpType};
use super::*;
use crate::device::{Device, Netdev, ARPHRD_ETHER};
use crate::wire::icrc::{self, SoftCrc};
use crate::wire::{aeth, atomic, bth, deth, feth, ieth, immdt, reth};

/// The bits of an [`rx_packet`] input's first byte.
pub mod flags {
    /// A UC QP (else RC).
    pub const UC: u8 = 1 << 0;
    /// Compute each packet's ICRC anew, so that mutated packets pass the check.
    pub const FIX_ICRC: u8 = 1 << 1;
    /// Each packet is the transport part only (BTH to ICRC): IP and UDP from the
    /// peer, with right lengths, go in front.
    pub const WRAP: u8 = 1 << 2;
    /// IPv6 GIDs (else IPv4-mapped ones).
    pub const V6: u8 = 1 << 3;
    /// The QP has requests of its own outstanding (responses find WQEs waiting).
    pub const REQUESTS: u8 = 1 << 4;
    /// Bits 5-7: the path MTU, `1 + n % 5` (enum ib_mtu: 256 to 4096 bytes).
    pub const MTU_SHIFT: u8 = 5;
}

/// The bits of an [`rx_packet`] input's second byte.
pub mod setup {
    /// Bits 0-2: receive WQEs posted (each of two 256-byte SGEs).
    pub const RECVS_MASK: u8 = 7;
    /// The QP grants no remote access (write, read, atomic, FLUSH).
    pub const NO_QP_ACCESS: u8 = 1 << 3;
    /// The region grants remote read only.
    pub const READ_ONLY: u8 = 1 << 4;
    /// retry_cnt and rnr_retry 1 (else 7, infinite): retries run out.
    pub const FEW_RETRIES: u8 = 1 << 5;
    /// max_dest_rd_atomic 1 (else 8).
    pub const ONE_RD_ATOMIC: u8 = 1 << 6;
    /// What the seeds use: four receives, every right, infinite retries.
    pub const DEFAULT: u8 = 4;
}

/// The fuzzed QP, and its peer.
const QPN: u32 = 18;
const PEER_QPN: u32 = 17;
/// The region both sides register: requests and responses point into it.
const KEY: u32 = 0x200;
const VA: u64 = 0x1_0000;
const REGION_LEN: usize = 8192;
const ACCESS: Access = Access::LOCAL_WRITE
    .union(Access::REMOTE_WRITE)
    .union(Access::REMOTE_READ)
    .union(Access::REMOTE_ATOMIC)
    .union(Access::FLUSH_GLOBAL);

fn qp_type(f: u8) -> QpType {
    if f & flags::UC != 0 {
        QpType::Uc
    } else {
        QpType::Rc
    }
}

/// (own GID, peer's GID).
fn gids(f: u8) -> ([u8; 16], [u8; 16]) {
    if f & flags::V6 != 0 {
        (gid6(2), gid6(1))
    } else {
        (gid(2), gid(1))
    }
}

/// A QP `qpn` connected from `me` to `peer`, with the region and receives posted
/// as `su` ([`setup`]) says.
fn endpoint(f: u8, su: u8, qpn: u32, peer_qpn: u32, me: [u8; 16], peer: [u8; 16]) -> Side {
    let mut s = side(qpn, qp_type(f), 16);
    s.connect_gids(me, peer, peer_qpn, 1 + (f >> flags::MTU_SHIFT) % 5);
    let mut a = QpAttr::default();
    let mut m = 0;
    if su & setup::NO_QP_ACCESS != 0 {
        m |= mask::ACCESS_FLAGS;
    }
    if su & setup::FEW_RETRIES != 0 {
        (a.retry_cnt, a.rnr_retry) = (1, 1);
        m |= mask::RETRY_CNT | mask::RNR_RETRY;
    }
    if su & setup::ONE_RD_ATOMIC != 0 {
        a.max_dest_rd_atomic = 1;
        m |= mask::MAX_DEST_RD_ATOMIC;
    }
    if m != 0 {
        s.qp.modify(&mut s.env, &a, m).expect("an RTS QP takes these attributes");
    }
    let access = if su & setup::READ_ONLY != 0 { Access::LOCAL_WRITE | Access::REMOTE_READ } else { ACCESS };
    s.reg(KEY, VA, REGION_LEN, access);
    for k in 0..(su & setup::RECVS_MASK) as u64 {
        let a = VA + 0x1000 + k * 512;
        s.post_recv(k, &[Sge { addr: a, length: 256, lkey: KEY }, Sge { addr: a + 256, length: 256, lkey: KEY }]);
    }
    s
}

fn wqe(wr_id: u64, opcode: u32) -> SendWqe {
    SendWqe { wr_id, opcode, send_flags: send_flags::SIGNALED, rkey: KEY, ..Default::default() }
}

/// One request of every kind the QP type allows, into the peer's region.
fn post_requests(s: &mut Side) {
    let rc = s.qp.qp_type() == QpType::Rc;
    let mut w = wqe(1, wop::SEND);
    w.send_flags |= send_flags::SOLICITED;
    s.post_inline(w, b"hello");
    s.post_send(wqe(2, wop::SEND_WITH_IMM), &[Sge { addr: VA, length: 300, lkey: KEY }]);
    s.post_send(SendWqe { remote_addr: VA + 0x800, imm_data: 7, ..wqe(3, wop::RDMA_WRITE_WITH_IMM) }, &[Sge {
        addr: VA + 0x100,
        length: 700,
        lkey: KEY,
    }]);
    if rc {
        s.post_send(SendWqe { remote_addr: VA + 0x400, ..wqe(4, wop::RDMA_READ) }, &[Sge { addr: VA + 0x1800, length: 600, lkey: KEY }]);
        s.post_send(SendWqe { remote_addr: VA + 0x10, compare_add: 3, ..wqe(5, wop::ATOMIC_FETCH_AND_ADD) }, &[Sge {
            addr: VA + 0x1f00,
            length: 8,
            lkey: KEY,
        }]);
        s.post_send(SendWqe { remote_addr: VA + 0x18, compare_add: 1, swap: 2, ..wqe(6, wop::ATOMIC_CMP_AND_SWP) }, &[Sge {
            addr: VA + 0x1f08,
            length: 8,
            lkey: KEY,
        }]);
        s.post_send(SendWqe { remote_addr: VA + 0x20, swap: 0x0102_0304_0506_0708, ..wqe(7, wop::ATOMIC_WRITE) }, &[]);
        s.post_send(SendWqe { remote_addr: VA, compare_add: 64, flush_type: 1, ..wqe(8, wop::FLUSH) }, &[]);
    }
    s.post_send(SendWqe { remote_addr: VA + 0x1000, ..wqe(9, wop::RDMA_WRITE) }, &[Sge { addr: VA, length: 40, lkey: KEY }]);
}

/// The fuzzed QP in RTS as [`rx_packet`] starts it for the variant `f` and the
/// setup `su`; its own requests (with [`flags::REQUESTS`]) are sent and taken off
/// the wire.
fn fuzzed_qp(f: u8, su: u8) -> (Side, Vec<Vec<u8>>) {
    let (me, peer) = gids(f);
    let mut s = endpoint(f, su, QPN, PEER_QPN, me, peer);
    let mut sent = Vec::new();
    if f & flags::REQUESTS != 0 {
        post_requests(&mut s);
        s.qp.run(&mut s.env, 64);
        sent = core::mem::take(&mut s.env.out);
    }
    (s, sent)
}

/// What [`rx_packet`] saw, for tests that check the seeds go deep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Packets the classifier passed to the QP.
    pub delivered: u32,
    /// Completions the QP posted (flushes at the end not counted).
    pub completions: u32,
    /// Packets the QP sent while the input ran.
    pub sent: u32,
    /// The QP's counters at the end, in the order of [`COUNTER_NAMES`].
    pub counters: [u64; super::COUNTERS],
}

/// Every datagram the QP sent is well-formed, to its peer, from and to the right
/// addresses.
fn check_sent(s: &Side, from: usize) {
    for ip in &s.env.out[from..] {
        let rx = packet::parse(ip, Some(&SoftCrc)).expect("the QP sent a packet that does not parse");
        assert_eq!(rx.bth.dest_qpn, PEER_QPN, "the QP sent to a stranger");
        assert_eq!((rx.sgid, rx.dgid), (s.qp.query().sgid, s.qp.query().dgid), "the QP sent from or to the wrong address");
    }
}

/// Splits an [`rx_packet`] input after its first byte into (clock byte, bytes).
fn frames(mut rest: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    core::iter::from_fn(move || {
        if rest.len() < 3 {
            return None;
        }
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 3);
        let tick = rest[2];
        let (pkt, tail) = rest[3..].split_at(len);
        rest = tail;
        Some((tick, pkt))
    })
}

/// Encodes packets as an [`rx_packet`] input of variant `f` and setup `su` (clock
/// bytes 0).
pub fn encode(f: u8, su: u8, packets: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![f, su];
    for p in packets {
        v.extend_from_slice(&(p.len() as u16).to_be_bytes());
        v.push(0);
        v.extend_from_slice(p);
    }
    v
}

/// The fuzz target `rx_packet`: see the module's documentation.
pub fn rx_packet(data: &[u8]) -> Summary {
    let [f, su, rest @ ..] = data else { return Summary::default() };
    let (f, su) = (*f, *su);
    let (mut s, _) = fuzzed_qp(f, su);
    let (me, peer) = gids(f);
    // The path the peer's packets take, as its QP computes it (the source port is
    // under the ICRC: a wrapped packet keeps the ICRC the peer gave it).
    let from_peer = Path { sport: udp_sport(0, PEER_QPN, QPN), ..Path::from_gids(&peer, &me) };
    let dev = Device::new(Netdev::new(1, 1, ARPHRD_ETHER, &[2, 0, 0, 0, 0, 1]).unwrap()).unwrap();
    let mut sum = Summary::default();
    for (tick, pkt) in frames(rest) {
        let mut ip = if f & flags::WRAP != 0 { datagram(&from_peer, pkt) } else { pkt.to_vec() };
        if f & flags::FIX_ICRC != 0 {
            let _ = icrc::fill(&SoftCrc, &mut ip);
        } else if f & flags::WRAP != 0 && pkt.len() >= icrc::ICRC_LEN {
            // The fuzzer's own ICRC, not the one `datagram` filled.
            let (n, m) = (ip.len(), pkt.len());
            ip[n - icrc::ICRC_LEN..].copy_from_slice(&pkt[m - icrc::ICRC_LEN..]);
        }
        // The UDP receive softirq: classify (and ICRC-check) the datagram.
        // What the classifier counts: ICRC errors, malformed packets, unknown opcodes.
        let classified = |c: &super::Counters| c.malformed.load(Relaxed) + c.icrc_errors.load(Relaxed) + c.unknown_opcode.load(Relaxed);
        let dropped = classified(&dev.counters);
        let mut qpn = 0u32;
        // SAFETY: `dev` is a live Device, `ip` is valid for its length, `qpn` is writable.
        let r = unsafe {
            crate::datapath::ferrite_rs_rx_classify(
                &dev as *const Device as *const core::ffi::c_void,
                ip.as_ptr(),
                ip.len() as u32,
                &mut qpn,
            )
        };
        let parsed = packet::parse(&ip, Some(&SoftCrc));
        assert_eq!(r >= 0, parsed.is_ok(), "the classifier and the parser disagree");
        if let Ok(rx) = &parsed {
            assert_eq!(r == 1, rx.info.is_response(), "a request classified as a response, or back");
        }
        let counted = classified(&dev.counters) - dropped;
        assert_eq!(counted, u64::from(r < 0), "a drop not counted, or a packet counted as dropped");
        // The C side queues the packet to the QP of that number (if there is one);
        // the QP's work item parses it again, without the ICRC (ferrite_rs_qp_round).
        if r >= 0 && qpn == s.qp.qpn() {
            let rx = packet::parse(&ip, None).expect("a classified packet no longer parses");
            let cqes = s.env.cqes.len();
            s.qp.receive(&mut s.env, &rx);
            sum.delivered += 1;
            sum.completions += (s.env.cqes.len() - cqes) as u32;
        }
        let t = match tick {
            0xff => s.qp.deadline().unwrap_or(s.env.now),
            n => s.env.now + n as u64 * 100_000,
        };
        s.env.now = s.env.now.max(t);
        let (out, cqes) = (s.env.out.len(), s.env.cqes.len());
        s.qp.run(&mut s.env, 64);
        sum.completions += (s.env.cqes.len() - cqes) as u32;
        check_sent(&s, out);
        sum.sent += (s.env.out.len() - out) as u32;
        // What went out is gone; keep memory flat on long inputs.
        s.env.out.clear();
    }
    sum.counters = s.env.counters.snapshot();
    // The QP fails: everything is flushed, every reference given back.
    let err = QpAttr { state: QpState::Err as u8, ..Default::default() };
    s.qp.modify(&mut s.env, &err, mask::STATE).expect("any state may move to ERR");
    s.qp.run(&mut s.env, 64);
    assert_eq!(s.env.live_refs, 0, "a region reference leaked");
    sum
}

/// Parses `bytes` as the header `$m` and checks its `Repr` round trip.
macro_rules! round_trip {
    ($bytes:expr, $m:ident, $packet:ident, $repr:ident) => {{
        if let Ok(p) = $m::$packet::new_checked($bytes) {
            if let Ok(r) = $m::$repr::parse(&p) {
                let mut buf = vec![0u8; r.buffer_len()];
                r.emit(&mut $m::$packet::new_unchecked(&mut buf[..]));
                let p2 = $m::$packet::new_checked(&buf[..]).expect(concat!(stringify!($m), ": emit is shorter than parse needs"));
                assert_eq!($m::$repr::parse(&p2), Ok(r), concat!(stringify!($m), ": parse(emit(r)) != r"));
            }
        } else {
            assert!($bytes.len() < $m::$repr::LEN, concat!(stringify!($m), ": a long buffer refused"));
        }
    }};
}

/// The fuzz target `wire_views`: every header view over `data`, the Repr round
/// trips, the ICRC functions, and the packet parser's own round trip.
pub fn wire_views(data: &[u8]) {
    round_trip!(data, bth, Packet, Repr);
    round_trip!(data, reth, Packet, Repr);
    round_trip!(data, aeth, Packet, Repr);
    round_trip!(data, deth, Packet, Repr);
    round_trip!(data, feth, Packet, Repr);
    round_trip!(data, ieth, Packet, Repr);
    round_trip!(data, immdt, Packet, Repr);
    round_trip!(data, atomic, AtomicEthPacket, AtomicEthRepr);
    round_trip!(data, atomic, AtomicAckPacket, AtomicAckRepr);
    if let Ok(p) = aeth::Packet::new_checked(data) {
        let r = aeth::Repr::parse(&p).unwrap();
        let _ = (r.decode(), aeth::Syndrome::from_u8(r.syndrome).to_u8());
    }

    // The ICRC: any bytes give a value or an error; a filled one checks.
    let _ = (icrc::bth_offset(data), icrc::compute(&SoftCrc, data), icrc::check(&SoftCrc, data));
    let mut filled = data.to_vec();
    if icrc::fill(&SoftCrc, &mut filled).is_ok() {
        assert_eq!(icrc::check(&SoftCrc, &filled), Ok(true), "a filled ICRC does not check");
    }

    // A datagram that parses, emitted again from its parts, parses the same.
    let Ok(rx) = packet::parse(data, None) else { return };
    let ext = packet::Ext {
        reth: rx.reth,
        aeth: rx.aeth,
        atomic: rx.atomic,
        atomic_ack: rx.atomic_ack,
        imm: rx.imm,
        feth: rx.feth,
    };
    let pad = rx.bth.pad_count as usize;
    let mut t = vec![0u8; rx.info.hdr_len + rx.payload.len() + pad + icrc::ICRC_LEN];
    let at = packet::emit(&mut t, rx.info, &rx.bth, &ext);
    t[at..at + rx.payload.len()].copy_from_slice(rx.payload);
    let path = Path { v6: rx.v6, sip: rx.sgid, dip: rx.dgid, ..Default::default() };
    let ip = datagram(&path, &t);
    let again = packet::parse(&ip, Some(&SoftCrc)).expect("a re-emitted packet does not parse");
    let same = |a: &packet::Rx, b: &packet::Rx| {
        (a.v6, a.sgid, a.dgid, a.bth, a.reth, a.aeth, a.atomic, a.atomic_ack, a.imm, a.ieth, a.feth, a.payload)
            == (b.v6, b.sgid, b.dgid, b.bth, b.reth, b.aeth, b.atomic, b.atomic_ack, b.imm, b.ieth, b.feth, b.payload)
    };
    // The IETH is not an `Ext` (ferrite sends no SEND_WITH_INV): compare without it.
    let again = packet::Rx { ieth: rx.ieth, ..again };
    assert!(same(&rx, &again), "parse(emit(parse(p))) != parse(p): {rx:?} vs {again:?}");
}

/// Seeds for [`rx_packet`]: for each QP type, address family and two MTUs, the
/// requests a peer sends, and the responses a peer gives to the fuzzed QP's own
/// requests; each whole (ICRC fixed) and as transport parts (wrapped).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (ty, tyf) in [("rc", 0), ("uc", flags::UC)] {
        for (fam, famf) in [("v4", 0), ("v6", flags::V6)] {
            for mtu in [1u8, 3] {
                let f = tyf | famf | mtu.wrapping_sub(1) << flags::MTU_SHIFT;
                let (me, peer) = gids(f);
                // Requests to the fuzzed QP.
                let mut p = endpoint(f, setup::DEFAULT, PEER_QPN, QPN, peer, me);
                post_requests(&mut p);
                p.qp.run(&mut p.env, 64);
                let reqs = core::mem::take(&mut p.env.out);
                // Responses to its own requests.
                let (_, own) = fuzzed_qp(f | flags::REQUESTS, setup::DEFAULT);
                let mut p = endpoint(f, setup::DEFAULT, PEER_QPN, QPN, peer, me);
                for ip in &own {
                    let rx = packet::parse(ip, Some(&SoftCrc)).unwrap();
                    p.qp.receive(&mut p.env, &rx);
                }
                p.qp.run(&mut p.env, 64);
                let resps = core::mem::take(&mut p.env.out);
                // (A UC peer answers nothing: no response seeds for UC.)
                for (what, g, pkts) in [("requests", f, &reqs), ("responses", f | flags::REQUESTS, &resps)] {
                    if pkts.is_empty() {
                        continue;
                    }
                    let whole: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
                    let ihl = if f & flags::V6 != 0 { 48 } else { 28 };
                    let parts: Vec<&[u8]> = pkts.iter().map(|p| &p[ihl..]).collect();
                    let name = format!("{ty}-{fam}-mtu{mtu}-{what}");
                    let d = setup::DEFAULT;
                    out.push((format!("{name}-whole"), encode(g | flags::FIX_ICRC, d, &whole)));
                    out.push((format!("{name}-wrapped"), encode(g | flags::WRAP, d, &parts)));
                    // The same, then time to the next deadline (timers, retransmits),
                    // with retries that run out.
                    let mut timed = encode(g | flags::FIX_ICRC, d | setup::FEW_RETRIES, &whole);
                    timed.extend_from_slice(&[0, 0, 0xff, 0, 0, 0xff]);
                    out.push((format!("{name}-timed"), timed));
                    if what != "requests" {
                        continue;
                    }
                    // One receive (RNR NAKs), or no rights (access NAKs).
                    let one = (d & !setup::RECVS_MASK) | 1;
                    out.push((format!("{name}-one-recv"), encode(g | flags::FIX_ICRC, one, &whole)));
                    let none = d | setup::NO_QP_ACCESS | setup::READ_ONLY | setup::ONE_RD_ATOMIC;
                    out.push((format!("{name}-no-rights"), encode(g | flags::FIX_ICRC, none, &whole)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_the_responder_and_the_completer() {
        for (name, s) in seeds() {
            let sum = rx_packet(&s);
            assert!(sum.delivered > 0, "{name}: nothing delivered");
            // Requests complete receives (and RC ones are answered); responses
            // complete the QP's own requests.
            assert!(sum.completions > 0, "{name}: {sum:?}");
            if name.starts_with("rc") && name.contains("requests") {
                assert!(sum.sent > 0, "{name}: {sum:?}");
            }
            let c = |n: &str| sum.counters[COUNTER_NAMES.iter().position(|x| *x == n).unwrap()];
            if name.starts_with("rc") && name.ends_with("requests-one-recv") {
                assert!(c("rnr_naks_sent") > 0, "{name}: {sum:?}");
            }
            if name.starts_with("rc") && name.ends_with("responses-timed") {
                assert!(c("retransmits") > 0, "{name}: {sum:?}");
            }
            for (_, p) in frames(&s[2..]) {
                wire_views(p);
            }
        }
    }

    /// `FERRITE_FUZZ_SEEDS=<dir> cargo test -p ferrite-kmod write_fuzz_seeds`
    /// writes the seeds as files: `<dir>/rx_packet/*`, and their first datagrams as
    /// `<dir>/wire_views/*` (scripts/lib/fuzz.py does, before each run).
    #[test]
    fn write_fuzz_seeds() {
        let Some(dir) = std::env::var_os("FERRITE_FUZZ_SEEDS") else { return };
        let dir = std::path::PathBuf::from(dir);
        let (rx, wire) = (dir.join("rx_packet"), dir.join("wire_views"));
        std::fs::create_dir_all(&rx).unwrap();
        std::fs::create_dir_all(&wire).unwrap();
        for (name, s) in seeds() {
            std::fs::write(rx.join(&name), &s).unwrap();
            if let Some((_, first)) = frames(&s[2..]).next() {
                std::fs::write(wire.join(&name), first).unwrap();
            }
        }
    }

    #[test]
    fn short_and_empty_inputs() {
        for n in 0..8 {
            rx_packet(&vec![0u8; n]);
            rx_packet(&vec![0xffu8; n]);
            wire_views(&vec![0u8; n]);
        }
    }
}
