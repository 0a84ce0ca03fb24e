//! The RoCE v2 protocol engine: one queue pair's requester, responder and completer.
//!
//! Sans-IO, in the manner of smoltcp: the engine never touches a socket, a clock or
//! a kernel object.  Its caller (the kernel glue in `ffi`, or the in-memory link of
//! the host tests) feeds it received packets, work queues and the time through an
//! [`Env`], and the engine answers through the same [`Env`]: packets to transmit,
//! memory to read and write, completions to post, a timer to arm.  Everything the
//! wire and the verbs specification leave to a decision is decided here:
//!
//! - [`req`]: the requester turns send WQEs into request packets (segmenting at the
//!   path MTU, assigning PSNs, asking for ACKs) and retransmits (go-back-N);
//! - [`resp`]: the responder checks and executes incoming requests and answers them
//!   (ACK/NAK, RDMA READ responses, atomic results from a replay cache);
//! - [`comp`]: the completer processes ACKs, NAKs and responses and completes WQEs;
//! - [`qp`]: the queue pair's attributes, state machine and error flushing.
//!
//! The engine allocates nothing after a QP is created and never sleeps unless the
//! [`Env`] does, so it can run wherever its caller runs it.

pub mod comp;
pub mod packet;
pub mod psn;
pub mod qp;
pub mod req;
pub mod resp;

#[cfg(all(not(target_os = "none"), any(test, feature = "harness")))]
pub mod fuzz;
#[cfg(all(not(target_os = "none"), any(test, feature = "harness")))]
pub mod harness;
#[cfg(test)]
mod tests;

use ferrite_abi::access::Access;
use ferrite_abi::cq::Cqe;

pub use qp::{Qp, QpAttr, QpConfig, QpState, QpType};

/// UDP destination port of RoCE v2.
pub const ROCE_V2_PORT: u16 = 4791;

/// The network path of a connected QP, resolved from its address vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Path {
    /// IPv6 addresses (else IPv4, in the last 4 bytes of `sip`/`dip`).
    pub v6: bool,
    pub sip: [u8; 16],
    pub dip: [u8; 16],
    pub traffic_class: u8,
    pub hop_limit: u8,
    pub flow_label: u32,
    /// UDP source port: flow entropy from the QPNs, as rxe computes it.
    pub sport: u16,
}

impl Path {
    /// From the source and destination GIDs: an IPv4-mapped GID (::ffff:a.b.c.d)
    /// makes an IPv4 path.
    pub fn from_gids(sgid: &[u8; 16], dgid: &[u8; 16]) -> Path {
        let v4 = |g: &[u8; 16]| g[..10].iter().all(|&b| b == 0) && g[10] == 0xff && g[11] == 0xff;
        Path { v6: !(v4(sgid) && v4(dgid)), sip: *sgid, dip: *dgid, hop_limit: 64, ..Default::default() }
    }

    /// The source IP address bytes (4 or 16).
    pub fn src(&self) -> &[u8] {
        if self.v6 { &self.sip } else { &self.sip[12..] }
    }

    pub fn dst(&self) -> &[u8] {
        if self.v6 { &self.dip } else { &self.dip[12..] }
    }
}

/// The UDP source port for a pair of QPNs, or for a flow label when one is set:
/// rdma_calc_flow_label() then rdma_flow_label_to_udp_sport() of ib_verbs.h, so
/// that ferrite and rxe spread the same flows the same way.
pub fn udp_sport(flow_label: u32, lqpn: u32, rqpn: u32) -> u16 {
    let fl = if flow_label != 0 {
        flow_label & 0xfffff
    } else {
        let v = (lqpn as u64) * (rqpn as u64);
        let v = v ^ (v >> 20) ^ (v >> 40);
        (v as u32) & 0xfffff
    };
    let low = fl & 0x3fff;
    let high = (fl & 0xfc000) >> 14;
    ((low ^ high) as u16) | 0xc000
}

/// A registered memory region the engine may use, as the [`Env`] resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// The [`Env`]'s handle for the region.
    pub handle: u64,
    /// The address (in the key's iova space) of the region's first byte.
    pub base: u64,
    /// The region's length in bytes.
    pub len: u64,
}

/// Why a key does not grant an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// No such key, or a stale one.
    Invalid,
    /// The region belongs to another protection domain.
    WrongPd,
    /// The range leaves the region.
    Bounds,
    /// The region does not grant the access.
    Rights,
}

/// An atomic operation on 8 bytes of registered memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicOp {
    CmpSwap { compare: u64, swap: u64 },
    FetchAdd { add: u64 },
    /// IBTA 1.5 ATOMIC WRITE: one aligned 64-bit store of `value` (the 8 payload
    /// bytes as they came, in memory order), ordered after every earlier write
    /// (a release store); returns nothing of use (0).
    Write { value: u64 },
}

/// Which of the QP's completion queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqSel {
    Send,
    Recv,
}

/// Asynchronous events the QP raises (enum ib_event_type's meaning).
///
/// An error a completion reports (every requester error, and a responder error met
/// while a receive WQE was being filled) raises no event: the QP goes to ERR and the
/// completion says why, as the IBA's error classes and rxe have it.  An application that never
/// reads async events must still be able to destroy such a QP: libibverbs'
/// ibv_destroy_qp waits until every event reported for it was acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QpEvent {
    /// The QP went to the error state for a reason no completion reports: a broken
    /// work queue, a responder failure of its own (IB_EVENT_QP_FATAL, IBA's Local
    /// Work Queue Catastrophic Error).
    Fatal,
    /// The responder NAKed a request it may not execute (R_Key, bounds, rights)
    /// outside any receive WQE and went to ERR (IB_EVENT_QP_ACCESS_ERR, IBA's Local
    /// Access Violation Work Queue Error).
    AccessError,
    /// The responder NAKed an invalid request outside any receive WQE and went to
    /// ERR (IB_EVENT_QP_REQ_ERR, IBA's Invalid Request Local Work Queue Error).
    InvalidRequest,
    /// The first packet arrived in RTR (IB_EVENT_COMM_EST).
    CommEstablished,
    /// The send queue drained in SQD (IB_EVENT_SQ_DRAINED).
    SqDrained,
}

/// Device-wide counters the engine bumps (`rdma statistic show link`).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent_pkts: core::sync::atomic::AtomicU64,
    pub rcvd_pkts: core::sync::atomic::AtomicU64,
    pub retransmits: core::sync::atomic::AtomicU64,
    pub duplicate_requests: core::sync::atomic::AtomicU64,
    pub seq_naks_sent: core::sync::atomic::AtomicU64,
    pub seq_naks_rcvd: core::sync::atomic::AtomicU64,
    pub rnr_naks_sent: core::sync::atomic::AtomicU64,
    pub rnr_naks_rcvd: core::sync::atomic::AtomicU64,
    pub retry_exceeded: core::sync::atomic::AtomicU64,
    pub rnr_retry_exceeded: core::sync::atomic::AtomicU64,
    pub icrc_errors: core::sync::atomic::AtomicU64,
    pub malformed: core::sync::atomic::AtomicU64,
    pub out_of_sequence: core::sync::atomic::AtomicU64,
    pub doorbells: core::sync::atomic::AtomicU64,
    pub wqes_posted: core::sync::atomic::AtomicU64,
    pub completions: core::sync::atomic::AtomicU64,
    pub tx_drops: core::sync::atomic::AtomicU64,
    /// Dropped before a QP saw them: an opcode ferrite does not know (RD, CNP,
    /// reserved codes).
    pub unknown_opcode: core::sync::atomic::AtomicU64,
    /// Dropped before a QP saw them: no QP with the BTH's destination QPN (or one
    /// being destroyed).
    pub unknown_qp: core::sync::atomic::AtomicU64,
    /// Dropped because the QP's receive queue was full (its work item fell behind).
    pub rx_overflow: core::sync::atomic::AtomicU64,
    /// Responses (ACK, NAK, READ response, atomic acknowledgement) for a PSN the QP
    /// never sent: stray or forged, dropped.
    pub stray_responses: core::sync::atomic::AtomicU64,
    /// UC messages the responder dropped whole, as UC must: a PSN gap lost part of
    /// them, or no receive WQE was posted for a SEND.
    pub uc_drops: core::sync::atomic::AtomicU64,
}

/// Names of [`Counters`], in the order of [`Counters::snapshot`].
pub const COUNTER_NAMES: [&str; COUNTERS] = [
    "sent_pkts",
    "rcvd_pkts",
    "retransmits",
    "duplicate_requests",
    "seq_naks_sent",
    "seq_naks_rcvd",
    "rnr_naks_sent",
    "rnr_naks_rcvd",
    "retry_exceeded",
    "rnr_retry_exceeded",
    "icrc_errors",
    "malformed",
    "out_of_sequence",
    "doorbells",
    "wqes_posted",
    "completions",
    "tx_drops",
    "unknown_opcode",
    "unknown_qp",
    "rx_overflow",
    "stray_responses",
    "uc_drops",
];

/// How many [`Counters`] there are.
pub const COUNTERS: usize = 22;

impl Counters {
    pub fn bump(c: &core::sync::atomic::AtomicU64) {
        c.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> [u64; COUNTERS] {
        use core::sync::atomic::Ordering::Relaxed;
        [
            self.sent_pkts.load(Relaxed),
            self.rcvd_pkts.load(Relaxed),
            self.retransmits.load(Relaxed),
            self.duplicate_requests.load(Relaxed),
            self.seq_naks_sent.load(Relaxed),
            self.seq_naks_rcvd.load(Relaxed),
            self.rnr_naks_sent.load(Relaxed),
            self.rnr_naks_rcvd.load(Relaxed),
            self.retry_exceeded.load(Relaxed),
            self.rnr_retry_exceeded.load(Relaxed),
            self.icrc_errors.load(Relaxed),
            self.malformed.load(Relaxed),
            self.out_of_sequence.load(Relaxed),
            self.doorbells.load(Relaxed),
            self.wqes_posted.load(Relaxed),
            self.completions.load(Relaxed),
            self.tx_drops.load(Relaxed),
            self.unknown_opcode.load(Relaxed),
            self.unknown_qp.load(Relaxed),
            self.rx_overflow.load(Relaxed),
            self.stray_responses.load(Relaxed),
            self.uc_drops.load(Relaxed),
        ]
    }
}

/// A packet buffer being filled for transmission: the transport headers, payload,
/// pad and ICRC of one packet (the caller adds IP and UDP in front).
pub trait TxBuf {
    fn bytes(&mut self) -> &mut [u8];
}

/// What the engine needs of its surroundings.
pub trait Env {
    type Tx: TxBuf;

    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;

    /// Resolve `key` for `len` bytes at `va` with rights `need`, in protection domain
    /// `pd`.  A region returned stays valid until [`Env::mr_release`].
    fn mr_lookup(&mut self, key: u32, pd: u64, va: u64, len: u64, need: Access) -> Result<Mem, KeyError>;
    /// Resolve `key` for its whole region (no range to check: a FLUSH of the memory
    /// region), with rights `need`, in protection domain `pd`.
    fn mr_lookup_region(&mut self, key: u32, pd: u64, need: Access) -> Result<Mem, KeyError>;
    fn mr_release(&mut self, m: Mem);
    /// Copy bytes out of / into a resolved region; `va..va+len` was checked.
    fn mem_read(&mut self, m: Mem, va: u64, dst: &mut [u8]);
    fn mem_write(&mut self, m: Mem, va: u64, src: &[u8]);
    /// Execute an atomic on the 8 aligned bytes at `va`; returns the original value.
    fn mem_atomic(&mut self, m: Mem, va: u64, op: AtomicOp) -> u64;
    /// FLUSH: make every byte placed so far in `va..va+len` of a resolved region
    /// (checked) globally visible before the engine answers.
    fn mem_flush(&mut self, m: Mem, va: u64, len: u64);

    /// A buffer for a packet of `len` bytes (transport headers to ICRC), or None
    /// when memory is short (the engine retries later).
    fn tx_alloc(&mut self, len: usize) -> Option<Self::Tx>;
    /// Send a filled buffer on `path`: the caller adds UDP and IP, fills the ICRC
    /// (see `wire::icrc`) and routes it.
    fn tx_send(&mut self, buf: Self::Tx, path: &Path);

    /// Post a completion; `solicited` for the solicited-event notification.
    fn complete(&mut self, cq: CqSel, cqe: &Cqe, solicited: bool);
    fn event(&mut self, ev: QpEvent);

    fn counters(&self) -> &Counters;
}
