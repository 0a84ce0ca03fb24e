//! The responder: request packets in; data placed, receive WQEs completed, and
//! ACKs, NAKs, READ responses and atomic results out.
//!
//! RC: a PSN ahead of the expected one gets one sequence-error NAK (until the
//! expected packet comes); one behind is a duplicate: SENDs and WRITEs are re-ACKed,
//! READs are executed again from the PSN asked for, and atomics are answered from
//! the replay cache, never executed twice.  A SEND with no receive posted gets an
//! RNR NAK.  Keys, bounds and rights are checked before any byte is written, with
//! the NAK the specification names; an invalid request or a remote access error
//! moves the QP to ERR.  UC: a gap drops the message in progress, silently.

use ferrite_abi::access::Access;

use super::packet::{self, Ext, Rx};
use super::qp::{wc, Inbound, Qp, QpState, QpType, ReadReply, Resource};
use super::{psn, AtomicOp, Counters, CqSel, Env, KeyError, TxBuf};
use crate::caps;
use crate::opcode::{self, op};
use crate::wire::aeth::{self, NakCode, Syndrome};
use crate::wire::{atomic, bth};

/// Credit field of ACKs ferrite sends: "invalid credit count" (no flow control).
const CREDITS: u8 = aeth::CREDITS_INVALID;

/// The QP access flags (IB_ACCESS_REMOTE_*) a request needs.
const QP_REMOTE_WRITE: u32 = 1 << 1;
const QP_REMOTE_READ: u32 = 1 << 2;
const QP_REMOTE_ATOMIC: u32 = 1 << 3;

enum Outcome {
    /// Done; ACK if asked.
    Ack,
    /// Done, and the response was sent already (READ, atomic).
    Responded,
    /// Nothing more (UC drop, or a packet to ignore).
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
        let Some(info) = opcode::info(op::RC_ACKNOWLEDGE) else { return false };
        let b = self.resp_bth(op::RC_ACKNOWLEDGE, p, 0);
        let ext = Ext { aeth: Some(aeth::Repr { syndrome, msn: self.msn }), ..Default::default() };
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
                self.pending_ack = None;
                self.send_ack(env, e, s);
            }
            return;
        }
        if d < 0 {
            Counters::bump(&env.counters().duplicate_requests);
            self.duplicate(env, rx);
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
                self.pending_ack = None;
                self.send_ack(env, p, s);
            }
            Outcome::Nak(code, status) => {
                self.pending_ack = None;
                self.send_ack(env, p, Syndrome::Nak(code).to_u8());
                if self.recv_valid && status != wc::SUCCESS {
                    self.recv_valid = false;
                    let cqe = self.recv_cqe(status);
                    env.complete(CqSel::Recv, &cqe, false);
                }
                self.inbound = Inbound::Idle;
                self.fail(env);
            }
        }
    }

    /// Send the coalesced ACK, if one is owed.
    pub(crate) fn flush_ack<E: Env>(&mut self, env: &mut E) {
        if let Some((p, s)) = self.pending_ack {
            if self.send_ack(env, p, s) {
                self.pending_ack = None;
            }
        }
    }

    fn duplicate<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        let p = rx.bth.psn;
        match rx.bth.opcode {
            op::RC_RDMA_READ_REQUEST => {
                let Some(r) = self.find_resource(p, false) else {
                    return;
                };
                // Answer again from the PSN asked for.
                let k = psn::diff(p, r.first_psn).max(0) as u32;
                let off = k * self.mtu();
                if off > r.len && r.len != 0 {
                    return;
                }
                // The requester asks again from here: what it asked later comes again too.
                self.read_replies.clear();
                self.read_replies.push_back(ReadReply { va: r.va, rkey: r.rkey, len: r.len, first_psn: r.first_psn, offset: off });
            }
            op::RC_COMPARE_SWAP | op::RC_FETCH_ADD => {
                if let Some(r) = self.find_resource(p, true) {
                    self.send_atomic_ack(env, p, r.orig);
                }
            }
            _ => {
                // Re-ACK up to the newest PSN completed.
                let last = psn::add(self.epsn, psn::MASK);
                self.pending_ack = Some((last, Self::syndrome_ack()));
            }
        }
    }

    fn find_resource(&self, p: u32, atomic: bool) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.valid && r.atomic == atomic && !psn::before(p, r.first_psn) && !psn::before(r.last_psn, p))
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
                if self.read_replies.len() >= limit {
                    return Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS);
                }
                self.remember(Resource {
                    valid: true,
                    atomic: false,
                    first_psn: p,
                    last_psn: psn::add(p, n - 1),
                    va: r.va,
                    rkey: r.rkey,
                    len: r.dma_len,
                    orig: 0,
                });
                self.msn = (self.msn + 1) & psn::MASK;
                self.read_replies.push_back(ReadReply { va: r.va, rkey: r.rkey, len: r.dma_len, first_psn: p, offset: 0 });
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
                self.remember(Resource { valid: true, atomic: true, first_psn: p, last_psn: p, va: a.va, rkey: a.rkey, len: 8, orig });
                self.msn = (self.msn + 1) & psn::MASK;
                self.send_atomic_ack(env, p, orig);
                Outcome::Responded
            }
            _ => Outcome::Nak(NakCode::InvalidRequest, wc::SUCCESS),
        }
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

    fn send_atomic_ack<E: Env>(&mut self, env: &mut E, p: u32, orig: u64) {
        let Some(info) = opcode::info(op::RC_ATOMIC_ACKNOWLEDGE) else { return };
        let b = self.resp_bth(op::RC_ATOMIC_ACKNOWLEDGE, p, 0);
        let ext = Ext {
            aeth: Some(aeth::Repr { syndrome: Self::syndrome_ack(), msn: self.msn }),
            atomic_ack: Some(atomic::AtomicAckRepr { orig }),
            ..Default::default()
        };
        let Some(mut buf) = env.tx_alloc(packet::packet_len(info, 0)) else { return };
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        for x in bytes[at..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
    }

    /// Send READ response packets owed, at most `budget`.  True if more remain.
    pub(crate) fn read_responder<E: Env>(&mut self, env: &mut E, budget: &mut u32) -> bool {
        while let Some(&r) = self.read_replies.front() {
            if *budget == 0 {
                return true;
            }
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
            let Some(info) = opcode::info(code) else { return false };
            let p = psn::add(r.first_psn, r.offset / mtu);
            let b = self.resp_bth(code, p, packet::pad_for(pay as usize) as u8);
            let ext = Ext { aeth: Some(aeth::Repr { syndrome: Self::syndrome_ack(), msn: self.msn }), ..Default::default() };
            let Some(mut buf) = env.tx_alloc(packet::packet_len(info, pay as usize)) else { return true };
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
                        self.read_replies.clear();
                        self.send_ack(env, p, Syndrome::Nak(NakCode::RemoteAccessError).to_u8());
                        self.fail(env);
                        return false;
                    }
                }
            }
            for x in bytes[at + pay as usize..].iter_mut() {
                *x = 0;
            }
            env.tx_send(buf, &self.path);
            Counters::bump(&env.counters().sent_pkts);
            *budget -= 1;
            if last {
                self.read_replies.pop_front();
            } else if let Some(front) = self.read_replies.front_mut() {
                front.offset = r.offset + pay;
            }
        }
        false
    }

    /// UC: no ACKs, no retries; a gap or an error drops the message in progress.
    fn uc_request<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        let p = rx.bth.psn;
        let low = rx.bth.opcode & 0x1f;
        let first_or_only = matches!(low, 0 | 4 | 5 | 6 | 10 | 11);
        if p != self.epsn || self.uc_dropping {
            // Lost packets: whatever was in progress is gone; a new message may start.
            // The receive WQE in progress, if any, is reused for the next message.
            self.inbound = Inbound::Idle;
            self.uc_dropping = !first_or_only;
        }
        self.epsn = psn::add(p, 1);
        if self.uc_dropping {
            return;
        }
        if !self.sequence_ok(rx.bth.opcode) {
            self.inbound = Inbound::Idle;
            self.uc_dropping = !first_or_only;
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
                    self.fail(env);
                } else {
                    self.inbound = Inbound::Idle;
                    self.uc_dropping = !matches!(low, 2..=5 | 8..=11);
                }
            }
        }
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
