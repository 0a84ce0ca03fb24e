//! A host-side harness for the engine: [`Node`], an in-memory [`Env`] (fake
//! registered memory; sent packets, completions and events collected), and
//! [`Side`], a QP with real SQ/RQ rings that [`Side::connect`] brings to RTS as a
//! connected peer would.
//!
//! The engine's tests (`tests.rs`) and the fuzz targets (`fuzz/`, through
//! [`super::fuzz`]) build their state with it.  Host builds only: `cfg(test)`, or
//! the `harness` feature for crates outside this one.

extern crate std;

use std::vec;
use std::vec::Vec;

use ferrite_abi::access::Access;
use ferrite_abi::cq::Cqe;
use ferrite_abi::wq::{self, send_flags, Geometry, RecvWqe, SendWqe, Sge, WorkQueue};

use super::qp::{mask, QpAttr, QpConfig, QpState, QpType};
use super::*;
use crate::wire::icrc::{self, SoftCrc};

/// One cache line of ring memory (the rings want 64-byte alignment).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Line(pub [u8; 64]);

/// A registered region in a node's fake memory.
pub struct Region {
    pub key: u32,
    pub pd: u64,
    pub va: u64,
    pub access: Access,
    pub bytes: Vec<u8>,
}

/// The engine's surroundings on the host: memory, a clock, and what came out.
#[derive(Default)]
pub struct Node {
    pub now: u64,
    pub regions: Vec<Region>,
    /// Datagrams sent (IP header to ICRC).
    pub out: Vec<Vec<u8>>,
    pub cqes: Vec<(CqSel, Cqe, bool)>,
    pub events: Vec<QpEvent>,
    pub counters: Counters,
    /// Region references taken and not yet released.
    pub live_refs: i64,
    /// ATOMIC WRITEs executed, and FLUSHes as (key, va, len).
    pub atomic_writes: u32,
    pub flushes: Vec<(u32, u64, u64)>,
}

impl TxBuf for Vec<u8> {
    fn bytes(&mut self) -> &mut [u8] {
        self
    }
}

/// The datagram the kernel glue makes of `transport` (BTH to ICRC) on `path`:
/// IPv4 or IPv6, then UDP to port 4791, with the ICRC filled.
pub fn datagram(path: &Path, transport: &[u8]) -> Vec<u8> {
    let ihl = if path.v6 { 40 } else { 20 };
    let total = ihl + 8 + transport.len();
    let mut ip = vec![0u8; total];
    if path.v6 {
        ip[0] = 0x60 | path.traffic_class >> 4;
        ip[1] = path.traffic_class << 4 | (path.flow_label >> 16) as u8 & 0xf;
        ip[2..4].copy_from_slice(&(path.flow_label as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = path.hop_limit;
        ip[8..24].copy_from_slice(path.src());
        ip[24..40].copy_from_slice(path.dst());
    } else {
        ip[0] = 0x45;
        ip[1] = path.traffic_class;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = path.hop_limit;
        ip[9] = 17;
        ip[12..16].copy_from_slice(path.src());
        ip[16..20].copy_from_slice(path.dst());
    }
    ip[ihl..ihl + 2].copy_from_slice(&path.sport.to_be_bytes());
    ip[ihl + 2..ihl + 4].copy_from_slice(&ROCE_V2_PORT.to_be_bytes());
    ip[ihl + 4..ihl + 6].copy_from_slice(&((8 + transport.len()) as u16).to_be_bytes());
    ip[ihl + 8..].copy_from_slice(transport);
    // Only a transport part shorter than a BTH and an ICRC has no ICRC to fill.
    let _ = icrc::fill(&SoftCrc, &mut ip);
    ip
}

impl Env for Node {
    type Tx = Vec<u8>;
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn mr_lookup(&mut self, key: u32, pd: u64, va: u64, len: u64, need: Access) -> Result<Mem, KeyError> {
        let (i, r) = self.regions.iter().enumerate().find(|(_, r)| r.key == key).ok_or(KeyError::Invalid)?;
        if r.pd != pd {
            return Err(KeyError::WrongPd);
        }
        if va < r.va || va.checked_add(len).is_none_or(|e| e > r.va + r.bytes.len() as u64) {
            return Err(KeyError::Bounds);
        }
        if !r.access.contains(need) {
            return Err(KeyError::Rights);
        }
        self.live_refs += 1;
        Ok(Mem { handle: i as u64, base: r.va, len: r.bytes.len() as u64 })
    }
    fn mr_lookup_region(&mut self, key: u32, pd: u64, need: Access) -> Result<Mem, KeyError> {
        let (va, len) = {
            let r = self.regions.iter().find(|r| r.key == key).ok_or(KeyError::Invalid)?;
            (r.va, r.bytes.len() as u64)
        };
        self.mr_lookup(key, pd, va, len, need)
    }
    fn mr_release(&mut self, _m: Mem) {
        self.live_refs -= 1;
        assert!(self.live_refs >= 0, "a region released more often than it was looked up");
    }
    // The engine promises `va..va+len` inside the region: the slices below panic
    // where it breaks that promise (a bug the kernel would turn into a stray copy).
    fn mem_read(&mut self, m: Mem, va: u64, dst: &mut [u8]) {
        let r = &self.regions[m.handle as usize];
        let o = (va - r.va) as usize;
        dst.copy_from_slice(&r.bytes[o..o + dst.len()]);
    }
    fn mem_write(&mut self, m: Mem, va: u64, src: &[u8]) {
        let r = &mut self.regions[m.handle as usize];
        let o = (va - r.va) as usize;
        r.bytes[o..o + src.len()].copy_from_slice(src);
    }
    fn mem_atomic(&mut self, m: Mem, va: u64, op: AtomicOp) -> u64 {
        let r = &mut self.regions[m.handle as usize];
        let o = (va - r.va) as usize;
        let cur = u64::from_ne_bytes(r.bytes[o..o + 8].try_into().unwrap());
        let new = match op {
            AtomicOp::CmpSwap { compare, swap } => {
                if cur == compare {
                    swap
                } else {
                    cur
                }
            }
            AtomicOp::FetchAdd { add } => cur.wrapping_add(add),
            AtomicOp::Write { value } => value,
        };
        assert_eq!(va % 8, 0, "an atomic at an unaligned address");
        r.bytes[o..o + 8].copy_from_slice(&new.to_ne_bytes());
        if matches!(op, AtomicOp::Write { .. }) {
            self.atomic_writes += 1;
            return 0;
        }
        cur
    }
    fn mem_flush(&mut self, m: Mem, va: u64, len: u64) {
        let r = &self.regions[m.handle as usize];
        assert!(va >= r.va && va + len <= r.va + r.bytes.len() as u64, "FLUSH outside its region");
        self.flushes.push((r.key, va, len));
    }
    fn tx_alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0xee; len])
    }
    fn tx_send(&mut self, buf: Vec<u8>, path: &Path) {
        // UDP and IP in front, then the ICRC, as the kernel glue does.
        self.out.push(datagram(path, &buf));
    }
    fn complete(&mut self, cq: CqSel, cqe: &Cqe, solicited: bool) {
        self.cqes.push((cq, *cqe, solicited));
    }
    fn event(&mut self, ev: QpEvent) {
        self.events.push(ev);
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// A QP, its surroundings, and the provider's view of its rings.
pub struct Side {
    pub qp: Qp,
    pub env: Node,
    _sq_mem: Vec<Line>,
    _rq_mem: Vec<Line>,
    pub sq: WorkQueue,
    pub rq: WorkQueue,
}

/// The protection domain of every region and QP of the harness.
pub const PD: u64 = 0x77;

/// The IPv4-mapped GID of 192.0.2.`last`.
pub fn gid(last: u8) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[10] = 0xff;
    g[11] = 0xff;
    g[12..].copy_from_slice(&[192, 0, 2, last]);
    g
}

/// The IPv6 GID 2001:db8::`last`.
pub fn gid6(last: u8) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    g[15] = last;
    g
}

/// A QP `qpn` of type `ty` in RESET with rings of `depth` WQEs (4 SGEs, 64 inline bytes).
pub fn side(qpn: u32, ty: QpType, depth: u32) -> Side {
    let sg = Geometry::send(depth, 4, 64).unwrap();
    let rg = Geometry::recv(depth, 4).unwrap();
    let mut sq_mem = vec![Line([0; 64]); sg.bytes() / 64];
    let mut rq_mem = vec![Line([0; 64]); rg.bytes() / 64];
    // SAFETY: the backing vectors live in the Side as long as every view of them,
    // and their heap memory does not move when the Side does.
    let (a, b, c, d) = unsafe {
        (
            WorkQueue::new(sq_mem.as_mut_ptr() as *mut u8, sg).unwrap(),
            WorkQueue::new(rq_mem.as_mut_ptr() as *mut u8, rg).unwrap(),
            WorkQueue::new(sq_mem.as_mut_ptr() as *mut u8, sg).unwrap(),
            WorkQueue::new(rq_mem.as_mut_ptr() as *mut u8, rg).unwrap(),
        )
    };
    let qp = Qp::new(QpConfig {
        qpn,
        qp_type: ty,
        pd: PD,
        sq: a,
        rq: b,
        max_send_sge: 4,
        max_recv_sge: 4,
        max_inline: 64,
        sq_sig_all: false,
        port_mtu: 5,
    })
    .unwrap();
    Side { qp, env: Node::default(), _sq_mem: sq_mem, _rq_mem: rq_mem, sq: c, rq: d }
}

impl Side {
    /// Register `len` bytes at `va` (patterned contents) under `key`.
    pub fn reg(&mut self, key: u32, va: u64, len: usize, access: Access) {
        let bytes = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(key as u8)).collect();
        self.env.regions.push(Region { key, pd: PD, va, access, bytes });
    }
    pub fn region(&self, key: u32) -> &Vec<u8> {
        &self.env.regions.iter().find(|r| r.key == key).unwrap().bytes
    }
    /// RESET to RTS, connected from 192.0.2.`me` to QP `peer_qpn` at 192.0.2.`peer`.
    pub fn connect(&mut self, me: u8, peer: u8, peer_qpn: u32, mtu: u8) {
        self.connect_gids(gid(me), gid(peer), peer_qpn, mtu);
    }
    /// RESET to RTS, connected from `sgid` to QP `peer_qpn` at `dgid`.  Both PSNs
    /// start at 0xfffff0 (they wrap early); remote write, read, atomic and FLUSH
    /// are allowed.
    pub fn connect_gids(&mut self, sgid: [u8; 16], dgid: [u8; 16], peer_qpn: u32, mtu: u8) {
        // REMOTE_WRITE, _READ, _ATOMIC and FLUSH_GLOBAL.
        let mut a = QpAttr { state: QpState::Init as u8, access_flags: 0xe | 1 << 8, port_num: 1, ..Default::default() };
        self.qp.modify(&mut self.env, &a, mask::STATE | mask::ACCESS_FLAGS | mask::PORT | mask::PKEY_INDEX).unwrap();
        a.state = QpState::Rtr as u8;
        a.path_mtu = mtu;
        a.dest_qp_num = peer_qpn;
        a.rq_psn = 0x00ff_fff0; // wraps early
        a.max_dest_rd_atomic = 8;
        a.min_rnr_timer = 1;
        a.sgid = sgid;
        a.dgid = dgid;
        self.qp
            .modify(
                &mut self.env,
                &a,
                mask::STATE | mask::AV | mask::PATH_MTU | mask::DEST_QPN | mask::RQ_PSN | mask::MAX_DEST_RD_ATOMIC
                    | mask::MIN_RNR_TIMER,
            )
            .unwrap();
        a.state = QpState::Rts as u8;
        a.sq_psn = 0x00ff_fff0;
        a.timeout = 10;
        a.retry_cnt = 7;
        a.rnr_retry = 7;
        a.max_rd_atomic = 4;
        self.qp
            .modify(
                &mut self.env,
                &a,
                mask::STATE | mask::SQ_PSN | mask::TIMEOUT | mask::RETRY_CNT | mask::RNR_RETRY | mask::MAX_QP_RD_ATOMIC,
            )
            .unwrap();
        assert_eq!(self.qp.state(), QpState::Rts);
    }
    /// Post a send WQE with `sges`, as the provider does.
    pub fn post_send(&mut self, w: SendWqe, sges: &[Sge]) {
        let s = self.sq.producer_slot(0).expect("SQ full");
        let mut w = w;
        w.num_sge = sges.len() as u32;
        wq::write_hdr(s, &w);
        for (k, g) in sges.iter().enumerate() {
            wq::write_hdr(&mut s[wq::SEND_WQE_HDR + k * 16..], g);
        }
        self.sq.publish(1);
    }
    /// Post a send WQE carrying `data` inline.
    pub fn post_inline(&mut self, w: SendWqe, data: &[u8]) {
        let s = self.sq.producer_slot(0).expect("SQ full");
        let mut w = w;
        w.send_flags |= send_flags::INLINE;
        w.inline_len = data.len() as u32;
        wq::write_hdr(s, &w);
        s[wq::SEND_WQE_HDR..wq::SEND_WQE_HDR + data.len()].copy_from_slice(data);
        self.sq.publish(1);
    }
    /// Post a receive WQE with `sges`.
    pub fn post_recv(&mut self, wr_id: u64, sges: &[Sge]) {
        let s = self.rq.producer_slot(0).expect("RQ full");
        wq::write_hdr(s, &RecvWqe { wr_id, num_sge: sges.len() as u32, reserved: 0 });
        for (k, g) in sges.iter().enumerate() {
            wq::write_hdr(&mut s[wq::RECV_WQE_HDR + k * 16..], g);
        }
        self.rq.publish(1);
    }
    /// Take the completions posted to `cq`.
    pub fn cqes(&mut self, cq: CqSel) -> Vec<Cqe> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.env.cqes.drain(..).partition(|c| c.0 == cq);
        self.env.cqes = rest;
        mine.into_iter().map(|c| c.1).collect()
    }
}
