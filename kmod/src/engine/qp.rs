//! A queue pair: its attributes, its state machine and its work queues.
//!
//! The transition table itself (which attributes each transition requires and
//! allows) is ib_core's `ib_modify_qp_is_ok`, which the C side consults before it
//! calls [`Qp::modify`]; here each attribute's value is checked and applied, and
//! the state's effects happen: RESET forgets everything, ERR flushes every WQE.

use alloc::vec::Vec;

use ferrite_abi::cq::Cqe;
use ferrite_abi::wq::{self, RecvWqe, SendWqe, Sge, WorkQueue};

use super::{psn, CqSel, Env, Path};
use crate::caps::LIMITS;
use crate::kernel::{Error, Result};

/// QP types ferrite serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QpType {
    Rc,
    Uc,
}

/// enum ib_qp_state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum QpState {
    Reset = 0,
    Init = 1,
    Rtr = 2,
    Rts = 3,
    Sqd = 4,
    Sqe = 5,
    Err = 6,
}

impl QpState {
    pub fn from_u8(v: u8) -> Option<QpState> {
        Some(match v {
            0 => QpState::Reset,
            1 => QpState::Init,
            2 => QpState::Rtr,
            3 => QpState::Rts,
            4 => QpState::Sqd,
            5 => QpState::Sqe,
            6 => QpState::Err,
            _ => return None,
        })
    }
}

/// enum ib_qp_attr_mask bits.
pub mod mask {
    pub const STATE: u32 = 1 << 0;
    pub const CUR_STATE: u32 = 1 << 1;
    pub const EN_SQD_ASYNC_NOTIFY: u32 = 1 << 2;
    pub const ACCESS_FLAGS: u32 = 1 << 3;
    pub const PKEY_INDEX: u32 = 1 << 4;
    pub const PORT: u32 = 1 << 5;
    pub const QKEY: u32 = 1 << 6;
    pub const AV: u32 = 1 << 7;
    pub const PATH_MTU: u32 = 1 << 8;
    pub const TIMEOUT: u32 = 1 << 9;
    pub const RETRY_CNT: u32 = 1 << 10;
    pub const RNR_RETRY: u32 = 1 << 11;
    pub const RQ_PSN: u32 = 1 << 12;
    pub const MAX_QP_RD_ATOMIC: u32 = 1 << 13;
    pub const ALT_PATH: u32 = 1 << 14;
    pub const MIN_RNR_TIMER: u32 = 1 << 15;
    pub const SQ_PSN: u32 = 1 << 16;
    pub const MAX_DEST_RD_ATOMIC: u32 = 1 << 17;
    pub const PATH_MIG_STATE: u32 = 1 << 18;
    pub const CAP: u32 = 1 << 19;
    pub const DEST_QPN: u32 = 1 << 20;
    /// What ferrite accepts (ib_modify_qp_is_ok decides per transition).
    pub const SUPPORTED: u32 = STATE | CUR_STATE | EN_SQD_ASYNC_NOTIFY | ACCESS_FLAGS | PKEY_INDEX | PORT
        | QKEY | AV | PATH_MTU | TIMEOUT | RETRY_CNT | RNR_RETRY | RQ_PSN | MAX_QP_RD_ATOMIC
        | MIN_RNR_TIMER | SQ_PSN | MAX_DEST_RD_ATOMIC | DEST_QPN | PATH_MIG_STATE;
}

/// The attributes of a QP that modify_qp sets and query_qp reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QpAttr {
    pub state: u8,
    pub cur_state: u8,
    pub path_mtu: u8,
    pub path_mig_state: u8,
    pub qkey: u32,
    pub rq_psn: u32,
    pub sq_psn: u32,
    pub dest_qp_num: u32,
    pub access_flags: u32,
    pub pkey_index: u16,
    pub port_num: u8,
    pub timeout: u8,
    pub retry_cnt: u8,
    pub rnr_retry: u8,
    pub min_rnr_timer: u8,
    pub max_rd_atomic: u8,
    pub max_dest_rd_atomic: u8,
    pub sq_draining: u8,
    pub en_sqd_async_notify: u8,
    pub sgid_index: u8,
    pub sgid: [u8; 16],
    pub dgid: [u8; 16],
    pub flow_label: u32,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

/// What a QP is made with.
pub struct QpConfig {
    pub qpn: u32,
    pub qp_type: QpType,
    /// Protection domain handle (keys must belong to it).
    pub pd: u64,
    pub sq: WorkQueue,
    pub rq: WorkQueue,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline: u32,
    pub sq_sig_all: bool,
    /// The port's active MTU (enum ib_mtu), the ceiling for path_mtu.
    pub port_mtu: u8,
}

/// The QP access flags ferrite knows: IB_ACCESS_REMOTE_WRITE, _READ and _ATOMIC
/// (and LOCAL_WRITE, which the verbs allow here), and IBTA 1.5's
/// IB_ACCESS_FLUSH_GLOBAL and _PERSISTENT, which let the peer FLUSH.
pub const QP_ACCESS_FLAGS: u32 = 0xf | 1 << 8 | 1 << 9;

/// Packets in flight past the oldest unacknowledged PSN, at most.
pub const WINDOW: u32 = 256;
/// The smallest send window a run of retransmit timeouts shrinks it to.
pub const MIN_WINDOW: u32 = 16;
/// With this many WQEs or more awaiting ACKs, the QP asks for no doorbell: the
/// next ACK wakes it, and it takes the WQEs posted meanwhile.  Up to 7 WQEs posted
/// one after another still ring at once.  (The benchmark's 64 B WRITE rate, 128
/// outstanding: 0.128 doorbells per WQE with 16 here, 0.064 with 8, and the same
/// message rate.)
pub const DOORBELL_BELOW: u32 = 8;
/// Ask for an ACK at least every this many packets of a long message.
pub const ACK_EVERY: u32 = 32;

/// Where a send WQE is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// Copied from the ring, not yet started: no PSNs yet.
    Queued,
    /// Has PSNs; some or all of its packets went out.
    Started,
}

/// The kernel's own copy of one send WQE, checked once when it was copied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendEntry {
    pub wqe: SendWqe,
    pub len: u32,
    pub state: SendState,
    pub first_psn: u32,
    pub last_psn: u32,
    pub signaled: bool,
    /// Bytes of READ response data placed so far.
    pub read_placed: u32,
    /// The completion status of a WQE refused when it was copied (0: none); the
    /// flush that follows completes it with this.
    pub error: u32,
}

/// What a responder resource remembers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ResKind {
    /// An RDMA READ: executed again from the PSN a duplicate asks for.
    #[default]
    Read,
    /// COMPARE SWAP or FETCH ADD: answered again from `orig`, never executed twice.
    Atomic,
    /// ATOMIC WRITE: acknowledged again, never executed twice (a later write to the
    /// same 8 bytes must not be undone).
    AtomicWrite,
    /// FLUSH: acknowledged again (flushing twice would be harmless, but it is done).
    Flush,
}

/// The responder's memory of a READ, atomic, ATOMIC WRITE or FLUSH, for duplicates.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Resource {
    pub valid: bool,
    pub kind: ResKind,
    pub first_psn: u32,
    pub last_psn: u32,
    pub va: u64,
    pub rkey: u32,
    pub len: u32,
    /// Atomic: the original value returned.
    pub orig: u64,
}

/// A READ being answered: the next response packet to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadReply {
    pub va: u64,
    pub rkey: u32,
    pub len: u32,
    pub first_psn: u32,
    /// Offset of the next packet's payload.
    pub offset: u32,
}

/// A response the responder owes, in PSN order.  Everything the responder sends
/// goes out in the order of the requests it answers: READ response data, atomic
/// acknowledgements, the empty READ RESPONSE ONLY that answers an ATOMIC WRITE or a
/// FLUSH (as rxe answers them), and an ACK or NAK that came due behind them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Read(ReadReply),
    /// ATOMIC ACKNOWLEDGE of PSN `psn` with the original value.
    Atomic { psn: u32, orig: u64, msn: u32 },
    /// RDMA READ RESPONSE ONLY with no payload: ATOMIC WRITE or FLUSH done.
    Done { psn: u32, msn: u32 },
    /// ACKNOWLEDGE with `syndrome` (an ACK, or a sequence or RNR NAK).
    Ack { psn: u32, syndrome: u8, msn: u32 },
}

/// Responses a QP may owe at once: READs and atomics up to the device's
/// max_qp_rd_atom, as many ATOMIC WRITEs and FLUSHes, and ACKs between them.
/// Room is reserved at creation; a request that would need more is dropped
/// unanswered (as if lost: the requester sends it again).
pub(crate) const REPLY_SLOTS: usize = 4 * LIMITS.max_qp_rd_atom as usize;

/// An incoming message being placed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Inbound {
    Idle,
    /// A SEND into the current receive WQE.
    Send { offset: u32 },
    /// An RDMA WRITE to `va` of `remaining` more bytes (of `len`).
    Write { rkey: u32, va: u64, remaining: u32, len: u32 },
}

/// One queue pair.
pub struct Qp {
    pub(crate) qpn: u32,
    pub(crate) qp_type: QpType,
    pub(crate) pd: u64,
    pub(crate) sq: WorkQueue,
    pub(crate) rq: WorkQueue,
    pub(crate) max_send_sge: u32,
    pub(crate) max_recv_sge: u32,
    pub(crate) max_inline: u32,
    pub(crate) sq_sig_all: bool,
    pub(crate) port_mtu: u8,
    pub(crate) attr: QpAttr,
    pub(crate) state: QpState,
    pub(crate) path: Path,

    // ---- send side (requester and completer) ----
    /// Copies of send WQEs: `entries[i & mask]` with raw bytes in `bodies`.
    pub(crate) entries: Vec<SendEntry>,
    pub(crate) bodies: Vec<u8>,
    pub(crate) stride: usize,
    /// Free-running: oldest not completed, next to transmit, next free.
    pub(crate) s_head: u32,
    pub(crate) s_cur: u32,
    pub(crate) s_tail: u32,
    /// Bytes of `s_cur` already sent, and the PSN of its next packet.
    pub(crate) cur_offset: u32,
    pub(crate) cur_psn: u32,
    /// Next PSN to assign to a new WQE.
    pub(crate) next_psn: u32,
    /// Oldest PSN not yet acknowledged.
    pub(crate) una: u32,
    pub(crate) rd_outstanding: u32,
    /// `una` when a gap in READ responses last sent the READ again: the responses
    /// still in flight behind that gap, which arrive next, then ask for nothing
    /// more (one retry per gap, not one per packet past it).  Progress clears it.
    pub(crate) gap_retry: Option<u32>,
    pub(crate) retry_left: u8,
    pub(crate) rnr_left: u8,
    pub(crate) retrans_deadline: Option<u64>,
    pub(crate) rnr_deadline: Option<u64>,
    pub(crate) since_ack_req: u32,
    /// The send window in packets (at most [`WINDOW`]).  A retransmit timeout
    /// halves it, down to [`MIN_WINDOW`]; every acknowledgement that makes
    /// progress widens it by one packet.  A receiver slower than the timeout
    /// for a whole window (a debug kernel, a loaded machine) otherwise gets a
    /// window of duplicates per timeout, queued behind the originals, and the
    /// ACKs of new data fall further behind each time: the transfer collapses
    /// into retransmits.
    pub(crate) cwnd: u32,
    /// The send queue broke (bad WQE or impossible ring index).
    pub(crate) sq_broken: bool,
    /// A request arrived since the last doorbell, and one had arrived between
    /// the two doorbells before it: whether the QP converses (a ping-pong) or
    /// only sends (a stream); see [`Qp::defers_responses`].
    pub(crate) heard_request: bool,
    pub(crate) conversing: bool,

    // ---- receive side (responder) ----
    pub(crate) epsn: u32,
    pub(crate) msn: u32,
    pub(crate) nak_sent: bool,
    pub(crate) inbound: Inbound,
    /// The receive WQE being filled (valid when `recv_valid`).
    pub(crate) recv: RecvWqe,
    pub(crate) recv_body: Vec<u8>,
    pub(crate) recv_valid: bool,
    /// UC: the current message is being dropped until the next FIRST/ONLY.
    pub(crate) uc_dropping: bool,
    pub(crate) resources: Vec<Resource>,
    pub(crate) res_next: usize,
    /// Responses owed, oldest first (at most [`REPLY_SLOTS`], reserved at creation;
    /// READs among them at most `max_dest_rd_atomic`).
    pub(crate) replies: alloc::collections::VecDeque<Reply>,
    /// The ACK (or sequence/RNR NAK) owed for the newest request: PSN and syndrome.
    /// Coalesced; it goes out after every reply queued before it.
    pub(crate) pending_ack: Option<(u32, u8)>,
}

/// Timeout of the retransmit timer for attribute `t`: 4.096 us * 2^t; 0 means none.
pub fn retrans_ns(t: u8) -> Option<u64> {
    if t == 0 {
        None
    } else {
        Some(4096u64 << t.min(31))
    }
}

impl Qp {
    /// Make a QP in RESET.  Allocates everything it will ever need.
    pub fn new(cfg: QpConfig) -> Result<Qp> {
        let sg = cfg.sq.geometry();
        let rg = cfg.rq.geometry();
        let slots = sg.slots as usize;
        let mut entries = Vec::new();
        entries.try_reserve_exact(slots).map_err(|_| Error::ENOMEM)?;
        let blank = SendEntry {
            wqe: SendWqe::default(),
            len: 0,
            state: SendState::Queued,
            first_psn: 0,
            last_psn: 0,
            signaled: false,
            read_placed: 0,
            error: 0,
        };
        entries.resize(slots, blank);
        let mut bodies = Vec::new();
        bodies.try_reserve_exact(slots * sg.stride as usize).map_err(|_| Error::ENOMEM)?;
        bodies.resize(slots * sg.stride as usize, 0);
        let mut recv_body = Vec::new();
        recv_body.try_reserve_exact(rg.stride as usize).map_err(|_| Error::ENOMEM)?;
        recv_body.resize(rg.stride as usize, 0);
        let nres = LIMITS.max_qp_rd_atom as usize;
        let mut replies = alloc::collections::VecDeque::new();
        replies.try_reserve_exact(REPLY_SLOTS).map_err(|_| Error::ENOMEM)?;
        let mut resources = Vec::new();
        resources.try_reserve_exact(nres).map_err(|_| Error::ENOMEM)?;
        resources.resize(nres, Resource::default());
        Ok(Qp {
            qpn: cfg.qpn,
            qp_type: cfg.qp_type,
            pd: cfg.pd,
            stride: sg.stride as usize,
            sq: cfg.sq,
            rq: cfg.rq,
            max_send_sge: cfg.max_send_sge,
            max_recv_sge: cfg.max_recv_sge,
            max_inline: cfg.max_inline,
            sq_sig_all: cfg.sq_sig_all,
            port_mtu: cfg.port_mtu,
            attr: QpAttr { path_mtu: 3, port_num: 1, max_rd_atomic: 1, max_dest_rd_atomic: 1, ..Default::default() },
            state: QpState::Reset,
            path: Path::default(),
            entries,
            bodies,
            s_head: 0,
            s_cur: 0,
            s_tail: 0,
            cur_offset: 0,
            cur_psn: 0,
            next_psn: 0,
            una: 0,
            rd_outstanding: 0,
            gap_retry: None,
            retry_left: 0,
            rnr_left: 0,
            retrans_deadline: None,
            rnr_deadline: None,
            since_ack_req: 0,
            cwnd: WINDOW,
            sq_broken: false,
            heard_request: false,
            conversing: false,
            epsn: 0,
            msn: 0,
            nak_sent: false,
            inbound: Inbound::Idle,
            recv: RecvWqe::default(),
            recv_body,
            recv_valid: false,
            uc_dropping: false,
            resources,
            res_next: 0,
            replies,
            pending_ack: None,
        })
    }

    pub fn qpn(&self) -> u32 {
        self.qpn
    }

    pub fn state(&self) -> QpState {
        self.state
    }

    pub fn qp_type(&self) -> QpType {
        self.qp_type
    }

    /// Path MTU in bytes.
    pub(crate) fn mtu(&self) -> u32 {
        128u32 << self.attr.path_mtu.clamp(1, 5)
    }

    /// The attributes, as query_qp reports them.
    pub fn query(&self) -> QpAttr {
        let mut a = self.attr;
        a.state = self.state as u8;
        a.cur_state = self.state as u8;
        a.sq_psn = self.next_psn;
        a.rq_psn = self.epsn;
        a.sq_draining = (self.state == QpState::Sqd && self.s_head != self.s_cur) as u8;
        a
    }

    /// Apply attributes `m` of `a`.  `cur` is the state the transition was checked
    /// from (ib_modify_qp_is_ok); if the QP moved meanwhile (to ERR on its own) the
    /// modify fails with EINVAL and changes nothing.  Returns true when the QP
    /// should be run (new state, or WQEs to flush).
    pub fn modify<E: Env>(&mut self, env: &mut E, a: &QpAttr, m: u32) -> Result<bool> {
        if m & !mask::SUPPORTED != 0 {
            return Err(Error::EOPNOTSUPP);
        }
        let cur = if m & mask::CUR_STATE != 0 { a.cur_state } else { self.state as u8 };
        if cur != self.state as u8 {
            return Err(Error::EINVAL);
        }
        let new = if m & mask::STATE != 0 {
            QpState::from_u8(a.state).ok_or(Error::EINVAL)?
        } else {
            self.state
        };
        // Check every value before changing anything.
        if m & mask::PATH_MTU != 0 && !(1..=5).contains(&a.path_mtu) {
            return Err(Error::EINVAL);
        }
        if m & mask::PATH_MTU != 0 && a.path_mtu > self.port_mtu.max(1) {
            return Err(Error::EINVAL);
        }
        if m & mask::MAX_QP_RD_ATOMIC != 0 && a.max_rd_atomic as u32 > LIMITS.max_qp_rd_atom {
            return Err(Error::EINVAL);
        }
        if m & mask::MAX_DEST_RD_ATOMIC != 0 && a.max_dest_rd_atomic as u32 > LIMITS.max_qp_rd_atom {
            return Err(Error::EINVAL);
        }
        if m & mask::PKEY_INDEX != 0 && a.pkey_index != 0 {
            return Err(Error::EINVAL);
        }
        if m & mask::PORT != 0 && a.port_num != 1 {
            return Err(Error::EINVAL);
        }
        if m & mask::RETRY_CNT != 0 && a.retry_cnt > 7 {
            return Err(Error::EINVAL);
        }
        if m & mask::RNR_RETRY != 0 && a.rnr_retry > 7 {
            return Err(Error::EINVAL);
        }
        if m & mask::TIMEOUT != 0 && a.timeout > 31 {
            return Err(Error::EINVAL);
        }
        if m & mask::MIN_RNR_TIMER != 0 && a.min_rnr_timer > 31 {
            return Err(Error::EINVAL);
        }
        if m & mask::ACCESS_FLAGS != 0 && a.access_flags & !QP_ACCESS_FLAGS != 0 {
            return Err(Error::EINVAL);
        }
        if m & mask::DEST_QPN != 0 && a.dest_qp_num > psn::MASK {
            return Err(Error::EINVAL);
        }

        // Apply.
        let t = &mut self.attr;
        if m & mask::EN_SQD_ASYNC_NOTIFY != 0 {
            t.en_sqd_async_notify = a.en_sqd_async_notify;
        }
        if m & mask::ACCESS_FLAGS != 0 {
            t.access_flags = a.access_flags;
        }
        if m & mask::PKEY_INDEX != 0 {
            t.pkey_index = a.pkey_index;
        }
        if m & mask::PORT != 0 {
            t.port_num = a.port_num;
        }
        if m & mask::QKEY != 0 {
            t.qkey = a.qkey;
        }
        if m & mask::PATH_MTU != 0 {
            t.path_mtu = a.path_mtu;
        }
        if m & mask::TIMEOUT != 0 {
            t.timeout = a.timeout;
        }
        if m & mask::RETRY_CNT != 0 {
            t.retry_cnt = a.retry_cnt;
            self.retry_left = a.retry_cnt;
        }
        if m & mask::RNR_RETRY != 0 {
            t.rnr_retry = a.rnr_retry;
            self.rnr_left = a.rnr_retry;
        }
        if m & mask::MIN_RNR_TIMER != 0 {
            t.min_rnr_timer = a.min_rnr_timer;
        }
        if m & mask::MAX_QP_RD_ATOMIC != 0 {
            t.max_rd_atomic = a.max_rd_atomic;
        }
        if m & mask::MAX_DEST_RD_ATOMIC != 0 {
            t.max_dest_rd_atomic = a.max_dest_rd_atomic;
        }
        if m & mask::PATH_MIG_STATE != 0 {
            t.path_mig_state = a.path_mig_state;
        }
        if m & mask::DEST_QPN != 0 {
            t.dest_qp_num = a.dest_qp_num;
        }
        if m & mask::AV != 0 {
            t.sgid = a.sgid;
            t.dgid = a.dgid;
            t.sgid_index = a.sgid_index;
            t.flow_label = a.flow_label & 0xfffff;
            t.hop_limit = a.hop_limit;
            t.traffic_class = a.traffic_class;
        }
        if m & mask::RQ_PSN != 0 {
            self.epsn = a.rq_psn & psn::MASK;
        }
        if m & mask::SQ_PSN != 0 {
            let p = a.sq_psn & psn::MASK;
            self.next_psn = p;
            self.cur_psn = p;
            self.una = p;
        }
        if m & (mask::AV | mask::DEST_QPN) != 0 {
            let mut p = Path::from_gids(&self.attr.sgid, &self.attr.dgid);
            p.flow_label = self.attr.flow_label;
            p.traffic_class = self.attr.traffic_class;
            p.hop_limit = if self.attr.hop_limit == 0 { 64 } else { self.attr.hop_limit };
            p.sport = super::udp_sport(self.attr.flow_label, self.qpn, self.attr.dest_qp_num);
            self.path = p;
        }
        let old = self.state;
        self.state = new;
        match new {
            QpState::Reset if old != QpState::Reset => self.reset(),
            QpState::Err if old != QpState::Err => {
                self.retrans_deadline = None;
                self.rnr_deadline = None;
                let _ = env;
            }
            _ => {}
        }
        Ok(new != old || new == QpState::Err)
    }

    /// Back to RESET: forget every WQE and all protocol state, without completions.
    fn reset(&mut self) {
        // Consume and drop what the provider posted, so the rings start empty.
        let mut scratch = [0u8; 16];
        while let Ok(Some(_)) = self.sq.consume(&mut scratch) {}
        while let Ok(Some(_)) = self.rq.consume(&mut scratch) {}
        self.s_head = 0;
        self.s_cur = 0;
        self.s_tail = 0;
        self.cur_offset = 0;
        self.rd_outstanding = 0;
        self.gap_retry = None;
        self.retrans_deadline = None;
        self.rnr_deadline = None;
        self.sq_broken = false;
        self.cwnd = WINDOW;
        self.inbound = Inbound::Idle;
        self.recv_valid = false;
        self.uc_dropping = false;
        self.replies.clear();
        self.pending_ack = None;
        self.nak_sent = false;
        self.msn = 0;
        for r in self.resources.iter_mut() {
            r.valid = false;
        }
    }

    /// Move to ERR on the QP's own account, raising `ev` (once) unless a completion
    /// reports the error (`None`).
    pub(crate) fn fail<E: Env>(&mut self, env: &mut E, ev: Option<super::QpEvent>) {
        if self.state != QpState::Err {
            self.state = QpState::Err;
            self.retrans_deadline = None;
            self.rnr_deadline = None;
            if let Some(ev) = ev {
                env.event(ev);
            }
        }
    }

    pub(crate) fn slot(&self, i: u32) -> usize {
        (i as usize) & (self.entries.len() - 1)
    }

    pub(crate) fn body(&self, i: u32) -> &[u8] {
        let s = self.slot(i) * self.stride;
        &self.bodies[s..s + self.stride]
    }

    /// SGEs of send entry `i` (none when inline).
    pub(crate) fn send_sge(&self, i: u32, k: usize) -> Sge {
        wq::sge_at(self.body(i), wq::SEND_WQE_HDR, k).unwrap_or_default()
    }

    /// Post a completion for send entry `i` with `status` (always for errors).
    pub(crate) fn complete_send<E: Env>(&mut self, env: &mut E, i: u32, status: u32) {
        let e = self.entries[self.slot(i)];
        if status == wc::SUCCESS {
            // A message got through: the next one may meet rnr_retry RNR NAKs of
            // its own (rxe's reset_retry_counters; retry_cnt restarts in progress()).
            self.rnr_left = self.attr.rnr_retry;
        }
        if status == 0 && !e.signaled {
            return;
        }
        let cqe = Cqe {
            wr_id: e.wqe.wr_id,
            status,
            opcode: wc_opcode_for(e.wqe.opcode),
            byte_len: if status == 0 { wc_byte_len(&e) } else { 0 },
            qp_num: self.qpn,
            src_qp: self.attr.dest_qp_num,
            ..Default::default()
        };
        env.complete(CqSel::Send, &cqe, false);
    }

    /// ERR: complete every WQE of both queues with WR_FLUSH_ERR, including any the
    /// provider posts later.
    pub(crate) fn flush<E: Env>(&mut self, env: &mut E) {
        // Entries already copied, oldest first; the head may already carry an error.
        while self.s_head != self.s_tail {
            let i = self.s_head;
            let refused = self.entries[self.slot(i)].error;
            self.complete_send(env, i, if refused != 0 { refused } else { wc::WR_FLUSH_ERR });
            self.s_head = self.s_head.wrapping_add(1);
        }
        self.s_cur = self.s_head;
        self.rd_outstanding = 0;
        let mut buf = [0u8; wq::SEND_WQE_HDR];
        while let Ok(Some(_)) = self.sq.consume(&mut buf) {
            let w: SendWqe = wq::read_hdr(&buf).unwrap_or_default();
            let cqe = Cqe {
                wr_id: w.wr_id,
                status: wc::WR_FLUSH_ERR,
                opcode: wc_opcode_for(w.opcode),
                qp_num: self.qpn,
                src_qp: self.attr.dest_qp_num,
                ..Default::default()
            };
            env.complete(CqSel::Send, &cqe, false);
        }
        if self.recv_valid {
            self.recv_valid = false;
            let cqe = self.recv_cqe(wc::WR_FLUSH_ERR);
            env.complete(CqSel::Recv, &cqe, false);
        }
        let mut rbuf = [0u8; wq::RECV_WQE_HDR];
        while let Ok(Some(_)) = self.rq.consume(&mut rbuf) {
            self.recv = wq::read_hdr(&rbuf).unwrap_or_default();
            let cqe = self.recv_cqe(wc::WR_FLUSH_ERR);
            env.complete(CqSel::Recv, &cqe, false);
        }
        self.inbound = Inbound::Idle;
        self.replies.clear();
        self.pending_ack = None;
    }

    pub(crate) fn recv_cqe(&self, status: u32) -> Cqe {
        Cqe {
            wr_id: self.recv.wr_id,
            status,
            opcode: wc::RECV,
            qp_num: self.qpn,
            src_qp: self.attr.dest_qp_num,
            ..Default::default()
        }
    }

    /// Take the next receive WQE from the ring into `recv`, checked.  Ok(false)
    /// when none is posted; Err when the ring or the WQE is broken.
    pub(crate) fn take_recv(&mut self) -> core::result::Result<bool, ()> {
        let n = self.recv_body.len();
        match self.rq.consume(&mut self.recv_body[..n]) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(false),
            Err(_) => return Err(()),
        }
        let w: RecvWqe = wq::read_hdr(&self.recv_body).ok_or(())?;
        self.recv = w;
        self.recv_valid = true;
        if w.num_sge > self.max_recv_sge {
            return Err(());
        }
        Ok(true)
    }

    pub(crate) fn recv_sge(&self, k: usize) -> Sge {
        wq::sge_at(&self.recv_body, wq::RECV_WQE_HDR, k).unwrap_or_default()
    }

    /// The earliest deadline the caller must wake the QP at, if any.
    pub fn deadline(&self) -> Option<u64> {
        match (self.retrans_deadline, self.rnr_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}


/// enum ibv_wc_status values.
pub mod wc {
    pub const SUCCESS: u32 = 0;
    pub const LOC_LEN_ERR: u32 = 1;
    pub const LOC_QP_OP_ERR: u32 = 2;
    pub const LOC_PROT_ERR: u32 = 4;
    pub const WR_FLUSH_ERR: u32 = 5;
    pub const BAD_RESP_ERR: u32 = 7;
    pub const LOC_ACCESS_ERR: u32 = 8;
    pub const REM_INV_REQ_ERR: u32 = 9;
    pub const REM_ACCESS_ERR: u32 = 10;
    pub const REM_OP_ERR: u32 = 11;
    pub const RETRY_EXC_ERR: u32 = 12;
    pub const RNR_RETRY_EXC_ERR: u32 = 13;
    pub const FATAL_ERR: u32 = 19;
    pub const GENERAL_ERR: u32 = 21;

    // enum ibv_wc_opcode values.
    pub const OP_SEND: u32 = 0;
    pub const OP_RDMA_WRITE: u32 = 1;
    pub const OP_RDMA_READ: u32 = 2;
    pub const OP_COMP_SWAP: u32 = 3;
    pub const OP_FETCH_ADD: u32 = 4;
    pub const OP_FLUSH: u32 = 8;
    pub const OP_ATOMIC_WRITE: u32 = 9;
    pub const RECV: u32 = 128;
    pub const RECV_RDMA_WITH_IMM: u32 = 129;

    // enum ibv_wc_flags values.
    pub const WITH_IMM: u32 = 1 << 1;
}

/// Send opcodes that take a responder resource, count against `max_rd_atomic` and
/// hold back a fenced WQE: RDMA READ, the two atomics, and IBTA 1.5's ATOMIC WRITE
/// and FLUSH (rxe counts ATOMIC WRITE and not FLUSH; counting both is the safe side:
/// the responder's replay cache then always still holds the answer to a retry).
pub(crate) fn is_rd_atomic(op: u32) -> bool {
    use ferrite_abi::wq::opcode as o;
    matches!(op, o::RDMA_READ | o::ATOMIC_CMP_AND_SWP | o::ATOMIC_FETCH_AND_ADD | o::ATOMIC_WRITE | o::FLUSH)
}

/// Of those, the ones whose response carries data (READ data, an atomic's original
/// value): only that response completes them, and an ACK past them means it was
/// lost.  ATOMIC WRITE and FLUSH are answered with an empty READ RESPONSE ONLY,
/// and an ACK of a later PSN acknowledges them too.
pub(crate) fn returns_data(op: u32) -> bool {
    use ferrite_abi::wq::opcode as o;
    matches!(op, o::RDMA_READ | o::ATOMIC_CMP_AND_SWP | o::ATOMIC_FETCH_AND_ADD)
}

fn wc_opcode_for(op: u32) -> u32 {
    use ferrite_abi::wq::opcode as o;
    match op {
        o::RDMA_WRITE | o::RDMA_WRITE_WITH_IMM => wc::OP_RDMA_WRITE,
        o::SEND | o::SEND_WITH_IMM => wc::OP_SEND,
        o::RDMA_READ => wc::OP_RDMA_READ,
        o::ATOMIC_CMP_AND_SWP => wc::OP_COMP_SWAP,
        o::ATOMIC_FETCH_AND_ADD => wc::OP_FETCH_ADD,
        o::ATOMIC_WRITE => wc::OP_ATOMIC_WRITE,
        o::FLUSH => wc::OP_FLUSH,
        _ => wc::OP_SEND,
    }
}

fn wc_byte_len(e: &SendEntry) -> u32 {
    use ferrite_abi::wq::opcode as o;
    match e.wqe.opcode {
        // ATOMIC WRITE: its 8 bytes; FLUSH: the length it asked for (as rxe reports).
        o::ATOMIC_CMP_AND_SWP | o::ATOMIC_FETCH_AND_ADD | o::ATOMIC_WRITE => 8,
        _ => e.len,
    }
}

impl Qp {
    /// A packet addressed to this QP, parsed and ICRC-checked by [`super::packet::parse`].
    pub fn receive<E: Env>(&mut self, env: &mut E, rx: &super::packet::Rx) {
        Counters::bump(&env.counters().rcvd_pkts);
        // Only the connected peer may talk to a connected QP, on the default partition.
        let uc = rx.bth.opcode >> 5 == 1;
        let type_ok = match self.qp_type {
            QpType::Rc => rx.bth.opcode >> 5 == 0,
            QpType::Uc => uc,
        };
        if !type_ok || rx.bth.pkey & 0x7fff != 0x7fff || rx.sgid != self.attr.dgid || rx.dgid != self.attr.sgid {
            Counters::bump(&env.counters().malformed);
            return;
        }
        if rx.info.is_response() {
            self.completer(env, rx);
        } else {
            self.heard_request = true;
            self.responder(env, rx);
        }
    }

    /// Do what is owed: timers, ACKs, READ responses, new requests, and flushing in
    /// ERR.  At most `budget` packets go out; returns true if work remains.
    pub fn run<E: Env>(&mut self, env: &mut E, budget: u32) -> bool {
        if self.state == QpState::Err {
            self.flush(env);
            return false;
        }
        if self.sq_broken {
            self.fail(env, Some(super::QpEvent::Fatal));
            self.flush(env);
            return false;
        }
        self.timers(env);
        let mut budget = budget;
        self.flush_ack(env);
        let more_reads = self.replier(env, &mut budget);
        let more_reqs = self.requester(env, &mut budget);
        self.flush_ack(env);
        if self.state == QpState::Err {
            self.flush(env);
            return false;
        }
        more_reads || more_reqs || self.pending_ack.is_some()
    }

    /// Ask the provider for a doorbell if the send queue is empty; true if WQEs
    /// arrived meanwhile (run again).
    pub fn idle_sq(&self) -> bool {
        self.sq.request_doorbell()
    }

    /// A doorbell arrived: the provider need not ring again until the next idle.
    pub fn doorbell(&mut self) {
        self.conversing = core::mem::take(&mut self.heard_request);
        self.sq.cancel_doorbell();
    }
}

use super::Counters;

impl Qp {
    /// Whether an idle kernel should ask the provider for a doorbell: only when it
    /// has sent everything it took, has room to take more, and fewer than
    /// [`DOORBELL_BELOW`] WQEs await their ACKs (otherwise an ACK, a timer or a
    /// state change wakes the QP, and it takes what was posted meanwhile), or in
    /// ERR, to flush later posts.  A deep queue thus posts with no system call; a
    /// shallow one rings at once rather than wait an ACK's round trip.
    pub fn wants_doorbell(&self) -> bool {
        match self.state {
            QpState::Err => true,
            QpState::Rts => {
                self.s_cur == self.s_tail
                    && self.s_tail.wrapping_sub(self.s_head) < self.entries.len() as u32
                    && self.rnr_deadline.is_none()
                    && (self.qp_type != QpType::Rc || self.s_cur.wrapping_sub(self.s_head) < DOORBELL_BELOW)
                    && !self.defers_responses()
            }
            _ => false,
        }
    }

    /// Whether responses received for this QP should wait for its work item
    /// rather than run at once in the receive softirq: while it streams small
    /// messages nobody waits on.  That is, every WQE awaiting an ACK is an
    /// unsignaled one-packet WRITE or SEND, and no request came from the peer
    /// between its last two doorbells (it is not in a ping-pong).
    ///
    /// Run at once, such an ACK comes inside the poster's own doorbell system
    /// call (the peer answers in the same softirq) and leaves the QP idle, so
    /// the poster rings for every next WQE.  Run by the work item, beside the
    /// poster, it takes the WQEs posted meanwhile with no system call, and the
    /// QP asks for no doorbell while it waits ([`Qp::wants_doorbell`]).
    /// Everything else runs at once, where a context switch to the work item
    /// would cost more than it saves: a signaled WQE, whose completion is
    /// awaited; READs and atomics, whose responses carry what is awaited;
    /// messages of several packets, where one doorbell already moves many; and
    /// a ping-pong, where the poster posts nothing until the peer answers.
    /// Requests never wait.
    pub fn defers_responses(&self) -> bool {
        self.state == QpState::Rts
            && self.qp_type == QpType::Rc
            && !self.conversing
            && !self.heard_request
            && self.s_head != self.s_cur
            && self.rd_outstanding == 0
            && (0..self.s_cur.wrapping_sub(self.s_head)).all(|k| {
                let e = &self.entries[self.slot(self.s_head.wrapping_add(k))];
                !e.signaled && e.first_psn == e.last_psn
            })
    }
}
