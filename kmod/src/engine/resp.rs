//! The responder: request packets in; data placed, receive WQEs completed, and
//! ACKs, NAKs, READ responses and atomic results out.
//!
//! RC: a PSN ahead of the expected one gets one sequence-error NAK (until the
//! expected packet comes); one behind is a duplicate: SENDs and WRITEs are re-ACKed,
//! READs are executed again from the PSN asked for, and atomics are answered from
//! the replay cache, never executed twice; so are IBTA 1.5's ATOMIC WRITE (whose
//! replay must not undo a later write) and FLUSH.  A SEND with no receive posted
//! gets an RNR NAK.  Keys, bounds and rights are checked before any byte is
//! written, with the NAK the specification names; an invalid request or a remote
//! access error moves the QP to ERR.  UC: a gap drops the message in progress,
//! silently.
//!
//! Responses leave in the order of the requests they answer ([`Reply`]): READ
//! data, atomic acknowledgements, the empty RDMA READ RESPONSE ONLY that answers an
//! ATOMIC WRITE or a FLUSH (rxe's answer to both), and the ACK or NAK that came due
//! behind them.  A requester may take a response for a later PSN as the
//! acknowledgement of everything before it, so nothing overtakes a READ's data.

use ferrite_abi::access::Access;

use super::packet::{self, Ext, Rx};
use super::qp::{wc, Inbound, Qp, QpState, QpType, ReadReply, Reply, ResKind, Resource, REPLY_SLOTS};
use super::{psn, AtomicOp, Counters, CqSel, Env, KeyError, QpEvent, TxBuf};
use crate::caps;
use crate::opcode::{self, op};
use crate::wire::aeth::{self, NakCode, Syndrome};
use crate::wire::{atomic, bth, feth};

/// Credit field of ACKs ferrite sends: "invalid credit count" (no flow control).
const CREDITS: u8 = aeth::CREDITS_INVALID;

/// The QP access flags (IB_ACCESS_REMOTE_*) a request needs.
const QP_REMOTE_WRITE: u32 = 1 << 1;
const QP_REMOTE_READ: u32 = 1 << 2;
const QP_REMOTE_ATOMIC: u32 = 1 << 3;
const QP_FLUSH_GLOBAL: u32 = 1 << 8;
const QP_FLUSH_PERSISTENT: u32 = 1 << 9;

enum Outcome {
    /// Done; ACK if asked.
    Ack,
    /// Done, and the response is queued (READ, atomic, ATOMIC WRITE, FLUSH).
    Responded,
    /// Nothing more (UC drop, a packet to ignore, or no room to answer it: dropped
    /// as if lost, the requester sends it again).
    Silent,
    /// No receive WQE: RNR NAK, nothing consumed.
    Rnr,
    /// NAK and QP error; `status` completes the receive WQE in progress, if any.
    Nak(NakCode, u32),
}

impl Qp {
    fn syndrome_ack() -> u8 {
        Syndrome::Ack { credits: CREDITS }.to_u8()
    }

    /// Send an ACKNOWLEDGE carrying `syndrome` for PSN `p`.
    pub(crate) fn send_ack<E: Env>(&mut self, env: &mut E, p: u32, syndrome: u8) -> bool {
        let msn = self.msn;
        self.send_ack_msn(env, p, syndrome, msn)
    }

    fn send_ack_msn<E: Env>(&mut self, env: &mut E, p: u32, syndrome: u8, msn: u32) -> bool {
        let Some(info) = opcode::info(op::RC_ACKNOWLEDGE) else { return false };
        let b = self.resp_bth(op::RC_ACKNOWLEDGE, p, 0);
        let ext = Ext { aeth: Some(aeth::Repr { syndrome, msn }), ..Default::default() };
        let Some(mut buf) = env.tx_alloc(packet::packet_len(info, 0)) else { return false };
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        for x in bytes[at..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
        true
    }

    fn resp_bth(&self, code: u8, p: u32, pad: u8) -> bth::Repr {
        bth::Repr {
            opcode: code,
            solicited: false,
            mig_req: false,
            pad_count: pad,
            pkey: caps::DEFAULT_PKEY,
            fecn: false,
            becn: false,
            dest_qpn: self.attr.dest_qp_num,
            ack_req: false,
            psn: p,
        }
    }

    /// A request packet for this QP.
    pub(crate) fn responder<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        if !matches!(self.state, QpState::Rtr | QpState::Rts | QpState::Sqd | QpState::Sqe) {
            return;
        }
        let p = rx.bth.psn;
        if self.qp_type == QpType::Uc {
            self.uc_request(env, rx);
            return;
        }
        let d = psn::diff(p, self.epsn);
        if d > 0 {
            Counters::bump(&env.counters().out_of_sequence);
            if !self.nak_sent {
                self.nak_sent = true;
                Counters::bump(&env.counters().seq_naks_sent);
                let s = Syndrome::Nak(NakCode::PsnSeqError).to_u8();
                let e = self.epsn;
                self.owe_ack(env, e, s);
            }
            return;
        }
        if d < 0 {
            Counters::bump(&env.counters().duplicate_requests);
            self.duplicate(rx);
            return;
        }
        self.nak_sent = false;
        let outcome = self.execute(env, rx);
        match outcome {
            Outcome::Ack | Outcome::Responded => {
                let n = if rx.bth.opcode == op::RC_RDMA_READ_REQUEST {
                    rx.reth.map(|r| r.dma_len.div_ceil(self.mtu()).max(1)).unwrap_or(1)
                } else {
                    1
                };
                self.epsn = psn::add(p, n);
                if matches!(outcome, Outcome::Ack) && rx.bth.ack_req {
                    // Coalesced: sent after this batch of packets, or now if the
                    // requester is waiting on it.
                    self.pending_ack = Some((p, Self::syndrome_ack()));
                }
            }
            Outcome::Silent => {}
            Outcome::Rnr => {
                Counters::bump(&env.counters().rnr_naks_sent);
                let s = Syndrome::RnrNak { timer: self.attr.min_rnr_timer }.to_u8();
                self.owe_ack(env, p, s);
            }
            Outcome::Nak(code, status) => {
                self.pending_ack = None;
                self.send_ack(env, p, Syndrome::Nak(code).to_u8());
                // A receive WQE completed with the error reports it; otherwise an
                // affiliated asynchronous error does (the IBA's responder class C).
                let mut ev = Some(match code {
                    NakCode::RemoteAccessError => QpEvent::AccessError,
                    NakCode::InvalidRequest => QpEvent::InvalidRequest,
                    _ => QpEvent::Fatal,
                });
                if self.recv_valid && status != wc::SUCCESS {
                    self.recv_valid = false;
                    let cqe = self.recv_cqe(status);
                    env.complete(CqSel::Recv, &cqe, false);
                    ev = None;
                }
                self.inbound = Inbound::Idle;
                self.fail(env, ev);
            }
        }
    }

    /// Send the coalesced ACK, if one is owed and no reply queued before it is.
    pub(crate) fn flush_ack<E: Env>(&mut self, env: &mut E) {
        if !self.replies.is_empty() {
            return;
        }
        if let Some((p, s)) = self.pending_ack {
            if self.send_ack(env, p, s) {
                self.pending_ack = None;
            }
        }
    }

    /// A NAK (sequence error, RNR) for `p`, which stands for every ACK owed before
    /// it: now, or after the replies queued before it.
    fn owe_ack<E: Env>(&mut self, env: &mut E, p: u32, syndrome: u8) {
        self.pending_ack = Some((p, syndrome));
        self.flush_ack(env);
    }

    /// Whether one more reply fits (behind the ACK owed, which is queued first).
    fn reply_room(&self) -> bool {
        self.replies.len() + 1 + usize::from(self.pending_ack.is_some()) <= REPLY_SLOTS
    }

    /// Queue `r` behind everything owed before it: the replies queued, then the ACK
    /// owed for the requests in between.  The caller checked [`Qp::reply_room`].
    fn queue_reply(&mut self, r: Reply) {
        if !self.reply_room() {
            return;
        }
        if let Some((psn, syndrome)) = self.pending_ack.take() {
            self.replies.push_back(Reply::Ack { psn, syndrome, msn: self.msn });
        }
        self.replies.push_back(r);
    }

    fn duplicate(&mut self, rx: &Rx) {
        let p = rx.bth.psn;
        match rx.bth.opcode {
            op::RC_RDMA_READ_REQUEST => {
                let Some(r) = self.find_resource(p, ResKind::Read) else {
                    return;
                };
                // Answer again from the PSN asked for.
                let k = psn::diff(p, r.first_psn).max(0) as u32;
                let off = k * self.mtu();
                if off > r.len && r.len != 0 {
                    return;
                }
                // The requester asks again from here: what it asked later comes again
                // too.  What it asked before stays owed.
                while let Some(last) = self.replies.back() {
                    if psn::before(reply_psn(last), r.first_psn) {
                        break;
                    }
                    self.replies.pop_back();
                }
                if self.reply_room() {
                    let rr = ReadReply { va: r.va, rkey: r.rkey, len: r.len, first_psn: r.first_psn, offset: off };
                    self.queue_reply(Reply::Read(rr));
                }
            }
            op::RC_COMPARE_SWAP | op::RC_FETCH_ADD => {
                if let Some(r) = self.find_resource(p, ResKind::Atomic) {
                    let msn = self.msn;
                    self.queue_reply(Reply::Atomic { psn: p, orig: r.orig, msn });
                }
            }
            // Executed once; the answer is the same empty READ RESPONSE ONLY.
            op::RC_ATOMIC_WRITE | op::RC_FLUSH => {
                let kind = if rx.bth.opcode == op::RC_FLUSH { ResKind::Flush } else { ResKind::AtomicWrite };
                if self.find_resource(p, kind).is_some() {
                    let msn = self.msn;
                    self.queue_reply(Reply::Done { psn: p, msn });
                }
            }
            _ => {
                // Re-ACK up to the newest PSN completed.
                let last = psn::add(self.epsn, psn::MASK);
                self.pending_ack = Some((last, Self::syndrome_ack()));
            }
        }
    }

    fn find_resource(&self, p: u32, kind: ResKind) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.valid && r.kind == kind && !psn::before(p, r.first_psn) && !psn::before(r.last_psn, p))
            .copied()
    }

    fn remember(&mut self, r: Resource) {
        let n = (self.attr.max_dest_rd_atomic as usize).clamp(1, self.resources.len());
        self.res_next %= n;
        self.resources[self.res_next] = r;
        self.res_next += 1;
    }

    /// Check the packet's opcode against the message in progress.
    fn sequence_ok(&self, code: u8) -> bool {
        let low = code & 0x1f;
        let (send, write) = (low <= 5, (6..=11).contains(&low));
        let first_or_only = matches!(low, 0 | 4 | 5 | 6 | 10 | 11) || !(send || write);
        match self.inbound {
            Inbound::Idle => first_or_only,
            Inbound::Send { .. } => send && !first_or_only,
            Inbound::Write { .. } => write && !first_or_only,
        }
    }

    fn key_nak(e: KeyError) -> Outcome {
        let _ = e;
        Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS)
    }

    fn execute<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let code = rx.bth.opcode;
        if !self.sequence_ok(code) {
            return Outcome::Nak(NakCode::InvalidRequest, wc::REM_INV_REQ_ERR);
        }
        if rx.payload.len() as u32 > self.mtu() {
            return Outcome::Nak(NakCode::InvalidRequest, wc::REM_INV_REQ_ERR);
        }
        let low = code & 0x1f;
        match low {
            0..=5 => self.recv_send(env, rx),
            6..=11 => self.recv_write(env, rx),
            12 => {
                let Some(r) = rx.reth else { return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS) };
                if self.attr.access_flags & QP_REMOTE_READ == 0 {
                    return Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS);
                }
                if r.dma_len > 0 {
                    match env.mr_lookup(r.rkey, self.pd, r.va, r.dma_len as u64, Access::REMOTE_READ) {
                        Ok(m) => env.mr_release(m),
                        Err(e) => return Self::key_nak(e),
                    }
                }
                let n = r.dma_len.div_ceil(self.mtu()).max(1);
                let p = rx.bth.psn;
                // More READs outstanding than max_dest_rd_atomic allows: the
                // requester broke its promise.
                let limit = (self.attr.max_dest_rd_atomic as usize).clamp(1, self.resources.len());
                if self.replies.iter().filter(|r| matches!(r, Reply::Read(_))).count() >= limit {
                    return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
                }
                if !self.reply_room() {
                    return Outcome::Silent;
                }
                self.remember(Resource {
                    valid: true,
                    kind: ResKind::Read,
                    first_psn: p,
                    last_psn: psn::add(p, n - 1),
                    va: r.va,
                    rkey: r.rkey,
                    len: r.dma_len,
                    orig: 0,
                });
                self.msn = (self.msn + 1) & psn::MASK;
                self.queue_reply(Reply::Read(ReadReply { va: r.va, rkey: r.rkey, len: r.dma_len, first_psn: p, offset: 0 }));
                Outcome::Responded
            }
            19 | 20 => {
                let Some(a) = rx.atomic else { return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS) };
                if self.attr.access_flags & QP_REMOTE_ATOMIC == 0 {
                    return Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS);
                }
                if a.va % 8 != 0 {
                    return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
                }
                if !self.reply_room() {
                    return Outcome::Silent;
                }
                let m = match env.mr_lookup(a.rkey, self.pd, a.va, 8, Access::REMOTE_ATOMIC) {
                    Ok(m) => m,
                    Err(e) => return Self::key_nak(e),
                };
                let opr = if low == 19 {
                    AtomicOp::CmpSwap { compare: a.compare, swap: a.swap_add }
                } else {
                    AtomicOp::FetchAdd { add: a.swap_add }
                };
                let orig = env.mem_atomic(m, a.va, opr);
                env.mr_release(m);
                let p = rx.bth.psn;
                self.remember(Resource { valid: true, kind: ResKind::Atomic, first_psn: p, last_psn: p, va: a.va, rkey: a.rkey, len: 8, orig });
                self.msn = (self.msn + 1) & psn::MASK;
                let msn = self.msn;
                self.queue_reply(Reply::Atomic { psn: p, orig, msn });
                Outcome::Responded
            }
            0x1c => self.flush_request(env, rx),
            0x1d => self.atomic_write(env, rx),
            _ => Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS),
        }
    }

    /// IBTA 1.5 ATOMIC WRITE: 8 bytes stored at once, at an aligned address, after
    /// everything before it.  Rights as rxe asks them: REMOTE_WRITE on the QP and
    /// on the region (IBTA oA19-28; it writes, it returns nothing).
    fn atomic_write<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let Some(r) = rx.reth else { return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS) };
        if self.attr.access_flags & QP_REMOTE_WRITE == 0 {
            return Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS);
        }
        if !self.reply_room() {
            return Outcome::Silent;
        }
        let m = match env.mr_lookup(r.rkey, self.pd, r.va, r.dma_len as u64, Access::REMOTE_WRITE) {
            Ok(m) => m,
            Err(e) => return Self::key_nak(e),
        };
        // Exactly 8 bytes of payload, no pad, and an aligned target.
        let Ok(value) = <[u8; 8]>::try_from(rx.payload) else {
            env.mr_release(m);
            return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
        };
        if r.dma_len != 8 || rx.bth.pad_count != 0 || r.va % 8 != 0 {
            env.mr_release(m);
            return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
        }
        // The bytes land as they came off the wire, as rxe stores them.
        env.mem_atomic(m, r.va, AtomicOp::Write { value: u64::from_ne_bytes(value) });
        env.mr_release(m);
        let p = rx.bth.psn;
        self.remember(Resource { valid: true, kind: ResKind::AtomicWrite, first_psn: p, last_psn: p, va: r.va, rkey: r.rkey, len: 8, orig: 0 });
        self.msn = (self.msn + 1) & psn::MASK;
        let msn = self.msn;
        self.queue_reply(Reply::Done { psn: p, msn });
        Outcome::Responded
    }

    /// IBTA 1.5 FLUSH: what was placed before it in the RETH's range (selectivity
    /// 0) or in the whole region (1) is made visible to everyone (placement type
    /// global) or durable (persistent) before the answer goes.  The QP and the
    /// region must allow each placement type asked for (IB_ACCESS_FLUSH_GLOBAL,
    /// _PERSISTENT).  ferrite's regions are never persistent memory: it registers
    /// none with FLUSH_PERSISTENT, so such a FLUSH gets a remote access error.
    fn flush_request<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let (Some(r), Some(f)) = (rx.reth, rx.feth) else {
            return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
        };
        let plt = f.placement_type;
        if plt == 0 || plt & !(feth::PLT_GLOBAL | feth::PLT_PERSISTENT) != 0 || f.selectivity > feth::SEL_MR {
            return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
        }
        let (mut qp_need, mut need) = (0, Access::empty());
        if plt & feth::PLT_GLOBAL != 0 {
            qp_need |= QP_FLUSH_GLOBAL;
            need |= Access::FLUSH_GLOBAL;
        }
        if plt & feth::PLT_PERSISTENT != 0 {
            qp_need |= QP_FLUSH_PERSISTENT;
            need |= Access::FLUSH_PERSISTENT;
        }
        if self.attr.access_flags & qp_need != qp_need {
            return Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS);
        }
        if !self.reply_room() {
            return Outcome::Silent;
        }
        let whole = f.selectivity == feth::SEL_MR;
        let found = if whole {
            // The region's own extent; the RETH's address and length do not count.
            env.mr_lookup_region(r.rkey, self.pd, need)
        } else {
            env.mr_lookup(r.rkey, self.pd, r.va, r.dma_len as u64, need)
        };
        let m = match found {
            Ok(m) => m,
            Err(e) => return Self::key_nak(e),
        };
        let (va, len) = if whole { (m.base, m.len) } else { (r.va, r.dma_len as u64) };
        env.mem_flush(m, va, len);
        env.mr_release(m);
        let p = rx.bth.psn;
        self.remember(Resource { valid: true, kind: ResKind::Flush, first_psn: p, last_psn: p, va, rkey: r.rkey, len: r.dma_len, orig: 0 });
        self.msn = (self.msn + 1) & psn::MASK;
        let msn = self.msn;
        self.queue_reply(Reply::Done { psn: p, msn });
        Outcome::Responded
    }

    fn recv_send<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let low = rx.bth.opcode & 0x1f;
        let first = matches!(low, 0 | 4 | 5);
        let last = matches!(low, 2..=5);
        if first {
            match self.take_recv() {
                Ok(true) => {}
                Ok(false) => {
                    return if self.qp_type == QpType::Uc { Outcome::Silent } else { Outcome::Rnr };
                }
                Err(()) => return Outcome::Nak(NakCode::RemoteOperationalError, wc::LOC_QP_OP_ERR),
            }
            self.inbound = Inbound::Send { offset: 0 };
        } else if !last && rx.payload.len() as u32 != self.mtu() {
            return Outcome::Nak(NakCode::InvalidRequest, wc::REM_INV_REQ_ERR);
        }
        if first && !last && rx.payload.len() as u32 != self.mtu() {
            return Outcome::Nak(NakCode::InvalidRequest, wc::REM_INV_REQ_ERR);
        }
        let Inbound::Send { offset } = self.inbound else { return Outcome::Silent };
        if let Err(status) = self.scatter_recv(env, offset, rx.payload) {
            let code = if status == wc::LOC_LEN_ERR { NakCode::InvalidRequest } else { NakCode::RemoteOperationalError };
            return Outcome::Nak(code, status);
        }
        let offset = offset + rx.payload.len() as u32;
        self.inbound = Inbound::Send { offset };
        if last {
            let mut cqe = self.recv_cqe(wc::SUCCESS);
            cqe.byte_len = offset;
            if let Some(imm) = rx.imm {
                cqe.imm_data = imm.to_be();
                cqe.wc_flags |= wc::WITH_IMM;
            }
            self.recv_valid = false;
            self.inbound = Inbound::Idle;
            self.msn = (self.msn + 1) & psn::MASK;
            Counters::bump(&env.counters().completions);
            env.complete(CqSel::Recv, &cqe, rx.bth.solicited);
        }
        Outcome::Ack
    }

    fn recv_write<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let low = rx.bth.opcode & 0x1f;
        let first = matches!(low, 6 | 10 | 11);
        let last = matches!(low, 8..=11);
        let imm = matches!(low, 9 | 11);
        if first {
            let Some(r) = rx.reth else { return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS) };
            if self.attr.access_flags & QP_REMOTE_WRITE == 0 {
                return Outcome::Nak(NakCode::RemoteAccessError, wc::SUCCESS);
            }
            if r.dma_len > 0 {
                match env.mr_lookup(r.rkey, self.pd, r.va, r.dma_len as u64, Access::REMOTE_WRITE) {
                    Ok(m) => env.mr_release(m),
                    Err(e) => {
                        return if self.qp_type == QpType::Uc { Outcome::Silent } else { Self::key_nak(e) };
                    }
                }
            }
            self.inbound = Inbound::Write { rkey: r.rkey, va: r.va, remaining: r.dma_len, len: r.dma_len };
        }
        let n = rx.payload.len() as u32;
        if !last && n != self.mtu() {
            return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
        }
        // The immediate needs a receive WQE: check before writing the last bytes,
        // so that an RNR NAK leaves nothing half done.
        if imm && !self.recv_valid {
            match self.take_recv() {
                Ok(true) => {}
                Ok(false) => {
                    return if self.qp_type == QpType::Uc { Outcome::Silent } else { Outcome::Rnr };
                }
                Err(()) => return Outcome::Nak(NakCode::RemoteOperationalError, wc::LOC_QP_OP_ERR),
            }
        }
        let Inbound::Write { rkey, va, remaining, len } = self.inbound else { return Outcome::Silent };
        if n > remaining || (last && n != remaining) {
            return Outcome::Nak(NakCode::InvalidRequest, wc::REM_INV_REQ_ERR);
        }
        if n > 0 {
            match env.mr_lookup(rkey, self.pd, va, n as u64, Access::REMOTE_WRITE) {
                Ok(m) => {
                    env.mem_write(m, va, rx.payload);
                    env.mr_release(m);
                }
                Err(e) => return Self::key_nak(e),
            }
        }
        self.inbound = Inbound::Write { rkey, va: va + n as u64, remaining: remaining - n, len };
        if last {
            self.inbound = Inbound::Idle;
            self.msn = (self.msn + 1) & psn::MASK;
            if imm {
                let mut cqe = self.recv_cqe(wc::SUCCESS);
                cqe.opcode = wc::RECV_RDMA_WITH_IMM;
                cqe.byte_len = len;
                cqe.imm_data = rx.imm.unwrap_or(0).to_be();
                cqe.wc_flags |= wc::WITH_IMM;
                self.recv_valid = false;
                Counters::bump(&env.counters().completions);
                env.complete(CqSel::Recv, &cqe, rx.bth.solicited);
            }
        }
        Outcome::Ack
    }

    /// Place SEND payload into the receive WQE's SGEs at `offset`.
    fn scatter_recv<E: Env>(&self, env: &mut E, offset: u32, src: &[u8]) -> Result<(), u32> {
        let mut skip = offset as u64;
        let mut done = 0usize;
        for k in 0..self.recv.num_sge as usize {
            if done == src.len() {
                break;
            }
            let sge = self.recv_sge(k);
            let l = sge.length as u64;
            if skip >= l {
                skip -= l;
                continue;
            }
            let n = ((l - skip) as usize).min(src.len() - done);
            let va = sge.addr.wrapping_add(skip);
            let m = env
                .mr_lookup(sge.lkey, self.pd, va, n as u64, Access::LOCAL_WRITE)
                .map_err(|_| wc::LOC_PROT_ERR)?;
            env.mem_write(m, va, &src[done..done + n]);
            env.mr_release(m);
            done += n;
            skip = 0;
        }
        if done != src.len() {
            return Err(wc::LOC_LEN_ERR);
        }
        Ok(())
    }

    /// Send an ATOMIC ACKNOWLEDGE carrying `orig`; false without a buffer.
    fn send_atomic_ack<E: Env>(&mut self, env: &mut E, p: u32, orig: u64, msn: u32) -> bool {
        let Some(info) = opcode::info(op::RC_ATOMIC_ACKNOWLEDGE) else { return true };
        let b = self.resp_bth(op::RC_ATOMIC_ACKNOWLEDGE, p, 0);
        let ext = Ext {
            aeth: Some(aeth::Repr { syndrome: Self::syndrome_ack(), msn }),
            atomic_ack: Some(atomic::AtomicAckRepr { orig }),
            ..Default::default()
        };
        let Some(mut buf) = env.tx_alloc(packet::packet_len(info, 0)) else { return false };
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        for x in bytes[at..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
        true
    }

    /// Send the RDMA READ RESPONSE ONLY without payload that answers an ATOMIC
    /// WRITE or a FLUSH of PSN `p` (rxe's send_read_response_ack); false without a
    /// buffer.
    fn send_done<E: Env>(&mut self, env: &mut E, p: u32, msn: u32) -> bool {
        let Some(info) = opcode::info(op::RC_RDMA_READ_RESPONSE_ONLY) else { return true };
        let b = self.resp_bth(op::RC_RDMA_READ_RESPONSE_ONLY, p, 0);
        let ext = Ext { aeth: Some(aeth::Repr { syndrome: Self::syndrome_ack(), msn }), ..Default::default() };
        let Some(mut buf) = env.tx_alloc(packet::packet_len(info, 0)) else { return false };
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        for x in bytes[at..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
        true
    }

    /// Send the replies owed, in order, at most `budget` packets.  True if more
    /// remain.
    pub(crate) fn replier<E: Env>(&mut self, env: &mut E, budget: &mut u32) -> bool {
        while let Some(&front) = self.replies.front() {
            if *budget == 0 {
                return true;
            }
            let sent = match front {
                Reply::Read(r) => match self.read_packet(env, r) {
                    Some(sent) => sent,
                    None => return false, // the QP failed
                },
                Reply::Atomic { psn, orig, msn } => self.send_atomic_ack(env, psn, orig, msn),
                Reply::Done { psn, msn } => self.send_done(env, psn, msn),
                Reply::Ack { psn, syndrome, msn } => self.send_ack_msn(env, psn, syndrome, msn),
            };
            if !sent {
                return true; // no buffer: try again soon
            }
            *budget -= 1;
            if !matches!(front, Reply::Read(_)) {
                self.replies.pop_front();
            }
        }
        false
    }

    /// Send the next packet of the READ at the front of the replies, and move it on
    /// (or off the queue, after its last).  Some(false) without a buffer; None when
    /// the region went away and the QP failed.
    fn read_packet<E: Env>(&mut self, env: &mut E, r: ReadReply) -> Option<bool> {
        let mtu = self.mtu();
        let pay = (r.len - r.offset.min(r.len)).min(mtu);
        let first = r.offset == 0;
        let last = r.offset + pay >= r.len;
        let code = match (first, last) {
            (true, true) => op::RC_RDMA_READ_RESPONSE_ONLY,
            (true, false) => op::RC_RDMA_READ_RESPONSE_FIRST,
            (false, false) => op::RC_RDMA_READ_RESPONSE_MIDDLE,
            (false, true) => op::RC_RDMA_READ_RESPONSE_LAST,
        };
        let info = opcode::info(code)?;
        let p = psn::add(r.first_psn, r.offset / mtu);
        let b = self.resp_bth(code, p, packet::pad_for(pay as usize) as u8);
        let ext = Ext { aeth: Some(aeth::Repr { syndrome: Self::syndrome_ack(), msn: self.msn }), ..Default::default() };
        let Some(mut buf) = env.tx_alloc(packet::packet_len(info, pay as usize)) else { return Some(false) };
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        if pay > 0 {
            let va = r.va + r.offset as u64;
            match env.mr_lookup(r.rkey, self.pd, va, pay as u64, Access::REMOTE_READ) {
                Ok(m) => {
                    env.mem_read(m, va, &mut bytes[at..at + pay as usize]);
                    env.mr_release(m);
                }
                Err(_) => {
                    // The region went away under a READ: answer with a NAK.
                    drop(buf);
                    self.replies.clear();
                    self.send_ack(env, p, Syndrome::Nak(NakCode::RemoteAccessError).to_u8());
                    self.fail(env, Some(QpEvent::AccessError));
                    return None;
                }
            }
        }
        for x in bytes[at + pay as usize..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
        if last {
            self.replies.pop_front();
        } else if let Some(Reply::Read(front)) = self.replies.front_mut() {
            front.offset = r.offset + pay;
        }
        Some(true)
    }

    /// UC: no ACKs, no retries; a gap or an error drops the message in progress.
    fn uc_request<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        let p = rx.bth.psn;
        let low = rx.bth.opcode & 0x1f;
        let first_or_only = matches!(low, 0 | 4 | 5 | 6 | 10 | 11);
        if p != self.epsn {
            Counters::bump(&env.counters().out_of_sequence);
        }
        if p != self.epsn || self.uc_dropping {
            // Lost packets: whatever was in progress is gone; a new message may start.
            // The receive WQE in progress, if any, is reused for the next message.
            self.uc_cut(env, !first_or_only);
        }
        self.epsn = psn::add(p, 1);
        if self.uc_dropping {
            return;
        }
        if !self.sequence_ok(rx.bth.opcode) {
            self.uc_cut(env, !first_or_only);
            if self.uc_dropping {
                return;
            }
        }
        let r = if low <= 5 {
            self.recv_send_uc(env, rx)
        } else {
            self.recv_write(env, rx)
        };
        match r {
            Outcome::Ack | Outcome::Responded => {}
            Outcome::Silent | Outcome::Rnr => {
                Counters::bump(&env.counters().uc_drops);
                self.inbound = Inbound::Idle;
                self.uc_dropping = !matches!(low, 2..=5 | 8..=11);
            }
            Outcome::Nak(_, status) => {
                if status == wc::LOC_LEN_ERR || status == wc::LOC_PROT_ERR || status == wc::LOC_QP_OP_ERR {
                    if self.recv_valid {
                        self.recv_valid = false;
                        let cqe = self.recv_cqe(status);
                        env.complete(CqSel::Recv, &cqe, false);
                    }
                    self.fail(env, None);
                } else {
                    Counters::bump(&env.counters().uc_drops);
                    self.inbound = Inbound::Idle;
                    self.uc_dropping = !matches!(low, 2..=5 | 8..=11);
                }
            }
        }
    }

    /// A UC message is cut off (a PSN gap, or an opcode out of sequence): drop the
    /// one in progress, and the rest of this one if `mid` (the packet is not the
    /// first of a message).  Counts one dropped message per cut that loses one it
    /// saw; messages wholly inside a gap never reached the QP.
    fn uc_cut<E: Env>(&mut self, env: &mut E, mid: bool) {
        let lost = !matches!(self.inbound, Inbound::Idle) || (mid && !self.uc_dropping);
        if lost {
            Counters::bump(&env.counters().uc_drops);
        }
        self.inbound = Inbound::Idle;
        self.uc_dropping = mid;
    }

    fn recv_send_uc<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let low = rx.bth.opcode & 0x1f;
        if matches!(low, 0 | 4 | 5) && self.recv_valid {
            // Reuse the WQE kept from a dropped message: skip take_recv.
            self.inbound = Inbound::Send { offset: 0 };
            return self.recv_send_cont(env, rx);
        }
        self.recv_send(env, rx)
    }

    /// A SEND packet continuing into the current receive WQE (UC reuse path).
    fn recv_send_cont<E: Env>(&mut self, env: &mut E, rx: &Rx) -> Outcome {
        let low = rx.bth.opcode & 0x1f;
        let last = matches!(low, 2..=5);
        let Inbound::Send { offset } = self.inbound else { return Outcome::Silent };
        if let Err(status) = self.scatter_recv(env, offset, rx.payload) {
            return Outcome::Nak(NakCode::InvalidRequest, status);
        }
        let offset = offset + rx.payload.len() as u32;
        self.inbound = Inbound::Send { offset };
        if last {
            let mut cqe = self.recv_cqe(wc::SUCCESS);
            cqe.byte_len = offset;
            if let Some(imm) = rx.imm {
                cqe.imm_data = imm.to_be();
                cqe.wc_flags |= wc::WITH_IMM;
            }
            self.recv_valid = false;
            self.inbound = Inbound::Idle;
            Counters::bump(&env.counters().completions);
            env.complete(CqSel::Recv, &cqe, rx.bth.solicited);
        }
        Outcome::Ack
    }
}

/// The PSN a reply answers (a READ's first).
fn reply_psn(r: &Reply) -> u32 {
    match *r {
        Reply::Read(rr) => rr.first_psn,
        Reply::Atomic { psn, .. } | Reply::Done { psn, .. } | Reply::Ack { psn, .. } => psn,
    }
}
