//! The requester: send WQEs in, request packets out.
//!
//! It copies each WQE out of the shared send queue once and checks the copy,
//! assigns PSNs (a READ takes one per response packet it asks for), segments
//! SENDs and WRITEs at the path MTU, asks for an ACK at the end of every message
//! and every [`ACK_EVERY`] packets, keeps at most [`WINDOW`] packets unacknowledged
//! and `max_rd_atomic` READs, atomics, ATOMIC WRITEs and FLUSHes outstanding,
//! honours fences, and arms the retransmit timer.  IBTA 1.5's ATOMIC WRITE is one
//! packet, a RETH and the WQE's 8 bytes; FLUSH one packet, a FETH and a RETH.  Retransmission is go-back-N: [`Qp::go_back`] rewinds the
//! transmit point to the WQE holding a PSN and the same loop sends again.

use ferrite_abi::access::Access;
use ferrite_abi::wq::{self, opcode as wop, send_flags, SendWqe};

use super::packet::{self, Ext};
use super::qp::{is_rd_atomic, retrans_ns, wc, Qp, QpState, QpType, SendEntry, SendState, ACK_EVERY};
use super::{psn, Counters, Env, TxBuf};
use crate::caps;
use crate::opcode::{self, op};
use crate::wire::{atomic, bth, feth, reth};

/// Why a WQE copy is refused.
fn check(qp: &Qp, w: &SendWqe, body: &[u8]) -> Result<u32, u32> {
    let rc_only = is_rd_atomic(w.opcode);
    let ok = matches!(w.opcode, wop::SEND | wop::SEND_WITH_IMM | wop::RDMA_WRITE | wop::RDMA_WRITE_WITH_IMM)
        || (rc_only && qp.qp_type == QpType::Rc);
    if !ok {
        return Err(wc::LOC_QP_OP_ERR);
    }
    // ATOMIC WRITE and FLUSH read nothing of local memory: the 8 bytes of an ATOMIC
    // WRITE travel in the WQE (`swap`), a FLUSH carries none.
    if matches!(w.opcode, wop::ATOMIC_WRITE | wop::FLUSH) {
        if w.num_sge != 0 || w.send_flags & send_flags::INLINE != 0 {
            return Err(wc::LOC_QP_OP_ERR);
        }
        if w.opcode == wop::ATOMIC_WRITE {
            return if w.remote_addr.is_multiple_of(8) { Ok(8) } else { Err(wc::LOC_LEN_ERR) };
        }
        // Type: global and/or persistent; level: range or region (ibv_wr_flush(3)).
        let t = w.flush_type;
        if t == 0 || t & !(feth::PLT_GLOBAL | feth::PLT_PERSISTENT) != 0 || w.flush_level > feth::SEL_MR {
            return Err(wc::LOC_QP_OP_ERR);
        }
        // The RETH's DMA length is 32 bits.
        return u32::try_from(w.compare_add).map_err(|_| wc::LOC_LEN_ERR);
    }
    let len: u64 = if w.send_flags & send_flags::INLINE != 0 {
        if w.inline_len > qp.max_inline || wq::SEND_WQE_HDR + w.inline_len as usize > body.len() {
            return Err(wc::LOC_QP_OP_ERR);
        }
        if rc_only {
            return Err(wc::LOC_QP_OP_ERR);
        }
        w.inline_len as u64
    } else {
        if w.num_sge > qp.max_send_sge || wq::SEND_WQE_HDR + w.num_sge as usize * wq::SGE_SIZE > body.len() {
            return Err(wc::LOC_QP_OP_ERR);
        }
        (0..w.num_sge as usize)
            .map(|k| wq::sge_at(body, wq::SEND_WQE_HDR, k).map(|s| s.length as u64).unwrap_or(0))
            .sum()
    };
    if len > caps::MAX_MSG_SIZE as u64 {
        return Err(wc::LOC_LEN_ERR);
    }
    if matches!(w.opcode, wop::ATOMIC_CMP_AND_SWP | wop::ATOMIC_FETCH_AND_ADD) && (len != 8 || !w.remote_addr.is_multiple_of(8)) {
        return Err(wc::LOC_LEN_ERR);
    }
    Ok(len as u32)
}

impl Qp {
    /// Copy new WQEs from the send queue while there is room for them.
    pub(crate) fn pull_sq<E: Env>(&mut self, env: &mut E) {
        let cap = self.entries.len() as u32;
        while self.s_tail.wrapping_sub(self.s_head) < cap {
            let i = self.s_tail;
            let s = self.slot(i) * self.stride;
            let stride = self.stride;
            match self.sq.consume(&mut self.bodies[s..s + stride]) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    self.sq_broken = true;
                    break;
                }
            }
            Counters::bump(&env.counters().wqes_posted);
            let w: SendWqe = wq::read_hdr(self.body(i)).unwrap_or_default();
            let checked = check(self, &w, self.body(i));
            let signaled = self.sq_sig_all || w.send_flags & send_flags::SIGNALED != 0;
            let slot = self.slot(i);
            self.entries[slot] = SendEntry {
                wqe: w,
                len: *checked.as_ref().unwrap_or(&0),
                state: SendState::Queued,
                first_psn: 0,
                last_psn: 0,
                signaled,
                read_placed: 0,
                error: 0,
            };
            self.s_tail = i.wrapping_add(1);
            if let Err(status) = checked {
                // A WQE the provider should never have written: its own QP fails.
                // The flush completes it with this status, after the WQEs before it.
                self.entries[slot].error = status;
                self.fail(env, None);
                return;
            }
        }
    }

    /// Packets a WQE takes: one per MTU of data (READ: of response data), at least one.
    fn npkts(&self, e: &SendEntry) -> u32 {
        match e.wqe.opcode {
            wop::ATOMIC_CMP_AND_SWP | wop::ATOMIC_FETCH_AND_ADD | wop::ATOMIC_WRITE | wop::FLUSH => 1,
            _ => e.len.div_ceil(self.mtu()).max(1),
        }
    }

    /// Rewind transmission to the WQE that holds `p`, to send from there again.
    pub(crate) fn go_back(&mut self, p: u32) {
        let mut i = self.s_head;
        while i != self.s_tail {
            let e = &self.entries[self.slot(i)];
            if e.state != SendState::Started {
                break;
            }
            if !psn::before(e.last_psn, p) {
                self.s_cur = i;
                if self.npkts(e) == 1 && e.wqe.opcode != wop::RDMA_READ {
                    self.cur_offset = 0;
                    self.cur_psn = e.first_psn;
                } else {
                    // SEND and WRITE resend from the packet of PSN `p`; a READ asks
                    // again for the rest of its data, from the response of PSN `p`.
                    let k = psn::diff(p, e.first_psn).max(0) as u32;
                    self.cur_offset = k * self.mtu();
                    self.cur_psn = psn::add(e.first_psn, k);
                }
                return;
            }
            i = i.wrapping_add(1);
        }
    }

    /// Send request packets until the queue is empty, the window or a limit is
    /// reached, or `budget` packets went out.  Returns true if stopped by budget.
    pub(crate) fn requester<E: Env>(&mut self, env: &mut E, budget: &mut u32) -> bool {
        if !matches!(self.state, QpState::Rts | QpState::Sqd) || self.rnr_deadline.is_some() {
            return false;
        }
        loop {
            if self.s_cur == self.s_tail {
                if self.state == QpState::Sqd {
                    return false;
                }
                self.pull_sq(env);
                if self.state == QpState::Err || self.s_cur == self.s_tail {
                    return false;
                }
            }
            if *budget == 0 {
                return true;
            }
            if self.qp_type == QpType::Rc && psn::diff(self.cur_psn, self.una) >= self.cwnd as i32 {
                return false;
            }
            let i = self.s_cur;
            let slot = self.slot(i);
            let mut e = self.entries[slot];
            let rd = is_rd_atomic(e.wqe.opcode);
            if e.state == SendState::Queued {
                if e.wqe.send_flags & send_flags::FENCE != 0 && self.rd_outstanding > 0 {
                    return false;
                }
                if rd && self.rd_outstanding >= (self.attr.max_rd_atomic as u32).max(1) {
                    return false;
                }
                let n = self.npkts(&e);
                e.state = SendState::Started;
                e.first_psn = self.next_psn;
                e.last_psn = psn::add(self.next_psn, n - 1);
                self.next_psn = psn::add(self.next_psn, n);
                self.cur_offset = 0;
                self.cur_psn = e.first_psn;
                if rd {
                    self.rd_outstanding += 1;
                }
                self.entries[slot] = e;
            }
            match self.send_one(env, i, &e) {
                Ok(done) => {
                    *budget -= 1;
                    if done {
                        self.s_cur = i.wrapping_add(1);
                        self.cur_offset = 0;
                        if self.qp_type == QpType::Uc {
                            // Unreliable: complete once it is on the wire.
                            self.complete_send(env, i, wc::SUCCESS);
                            self.s_head = self.s_cur;
                        }
                    }
                    if self.qp_type == QpType::Rc && self.retrans_deadline.is_none() {
                        self.retrans_deadline = retrans_ns(self.attr.timeout).map(|t| env.now_ns() + t);
                    }
                }
                Err(None) => return true, // no buffer: try again soon
                Err(Some(status)) => {
                    // The WQEs before this one may still wait for their ACKs: the
                    // flush completes them first, then this one with its status.
                    self.entries[slot].error = status;
                    self.fail(env, None);
                    return false;
                }
            }
        }
    }

    /// Build and send the next packet of entry `i`.  Ok(true) when it was the last.
    fn send_one<E: Env>(&mut self, env: &mut E, i: u32, e: &SendEntry) -> Result<bool, Option<u32>> {
        let mtu = self.mtu();
        let w = &e.wqe;
        let rc = self.qp_type == QpType::Rc;
        let base = if rc { 0 } else { 0x20 };
        let (code, pay, last, ext) = match w.opcode {
            wop::RDMA_READ => {
                let off = self.cur_offset.min(e.len);
                let r = reth::Repr { va: w.remote_addr + off as u64, rkey: w.rkey, dma_len: e.len - off };
                (op::RC_RDMA_READ_REQUEST, 0, true, Ext { reth: Some(r), ..Default::default() })
            }
            wop::ATOMIC_CMP_AND_SWP | wop::ATOMIC_FETCH_AND_ADD => {
                let cmp = w.opcode == wop::ATOMIC_CMP_AND_SWP;
                let a = atomic::AtomicEthRepr {
                    va: w.remote_addr,
                    rkey: w.rkey,
                    swap_add: if cmp { w.swap } else { w.compare_add },
                    compare: if cmp { w.compare_add } else { 0 },
                };
                let c = if cmp { op::RC_COMPARE_SWAP } else { op::RC_FETCH_ADD };
                (c, 0, true, Ext { atomic: Some(a), ..Default::default() })
            }
            wop::ATOMIC_WRITE => {
                let r = reth::Repr { va: w.remote_addr, rkey: w.rkey, dma_len: 8 };
                (op::RC_ATOMIC_WRITE, 8, true, Ext { reth: Some(r), ..Default::default() })
            }
            wop::FLUSH => {
                let r = reth::Repr { va: w.remote_addr, rkey: w.rkey, dma_len: e.len };
                let f = feth::Repr { placement_type: w.flush_type, selectivity: w.flush_level };
                (op::RC_FLUSH, 0, true, Ext { reth: Some(r), feth: Some(f), ..Default::default() })
            }
            _ => {
                let off = self.cur_offset;
                let pay = (e.len - off.min(e.len)).min(mtu);
                let first = off == 0;
                let last = off + pay >= e.len;
                let write = matches!(w.opcode, wop::RDMA_WRITE | wop::RDMA_WRITE_WITH_IMM);
                let imm = matches!(w.opcode, wop::SEND_WITH_IMM | wop::RDMA_WRITE_WITH_IMM);
                // Offsets into the opcode numbering: FIRST 0, MIDDLE 1, LAST 2, LAST_IMM 3,
                // ONLY 4, ONLY_IMM 5; RDMA WRITE the same from 6.
                let k = match (first, last, imm) {
                    (true, false, _) => 0,
                    (false, false, _) => 1,
                    (false, true, false) => 2,
                    (false, true, true) => 3,
                    (true, true, false) => 4,
                    (true, true, true) => 5,
                };
                let code = base + if write { 6 } else { 0 } + k;
                let mut ext = Ext::default();
                if write && first {
                    ext.reth = Some(reth::Repr { va: w.remote_addr, rkey: w.rkey, dma_len: e.len });
                }
                if imm && last {
                    ext.imm = Some(u32::from_be(w.imm_data));
                }
                (code, pay, last, ext)
            }
        };
        let info = opcode::info(code).ok_or(Some(wc::LOC_QP_OP_ERR))?;
        // An ACK is asked for where the requester waits on one: at the end of a
        // signaled WQE or of the last WQE it has taken, every ACK_EVERY packets,
        // and when the window is about to close.  A run of unsignaled WQEs shares
        // the ACK of a later one (as rxe does), which saves a packet per message.
        let waited_on = last && (e.signaled || i.wrapping_add(1) == self.s_tail);
        let ack_req = rc
            && (waited_on
                || self.since_ack_req + 1 >= ACK_EVERY
                || psn::diff(self.cur_psn, self.una) + 1 >= self.cwnd as i32);
        let b = bth::Repr {
            opcode: code,
            solicited: last && w.send_flags & send_flags::SOLICITED != 0,
            mig_req: false,
            pad_count: packet::pad_for(pay as usize) as u8,
            pkey: caps::DEFAULT_PKEY,
            fecn: false,
            becn: false,
            dest_qpn: self.attr.dest_qp_num,
            ack_req,
            psn: self.cur_psn,
        };
        let len = packet::packet_len(info, pay as usize);
        let mut buf = env.tx_alloc(len).ok_or(None)?;
        let bytes = buf.bytes();
        let at = packet::emit(bytes, info, &b, &ext);
        if w.opcode == wop::ATOMIC_WRITE {
            // The 8 bytes as the application gave them, in memory order.
            bytes[at..at + 8].copy_from_slice(&w.swap.to_ne_bytes());
        } else if pay > 0 {
            let dst = &mut bytes[at..at + pay as usize];
            self.gather(env, i, self.cur_offset, dst).map_err(Some)?;
        }
        for x in bytes[at + pay as usize..].iter_mut() {
            *x = 0;
        }
        env.tx_send(buf, &self.path);
        Counters::bump(&env.counters().sent_pkts);
        self.since_ack_req = if ack_req { 0 } else { self.since_ack_req + 1 };
        self.cur_offset += pay;
        let read = w.opcode == wop::RDMA_READ;
        self.cur_psn = if read { psn::add(e.last_psn, 1) } else { psn::add(self.cur_psn, 1) };
        Ok(last)
    }

    /// Copy `dst.len()` bytes of entry `i`'s data from `offset`: inline bytes or SGEs.
    fn gather<E: Env>(&self, env: &mut E, i: u32, offset: u32, dst: &mut [u8]) -> Result<(), u32> {
        let w = &self.entries[self.slot(i)].wqe;
        if w.send_flags & send_flags::INLINE != 0 {
            let s = wq::SEND_WQE_HDR + offset as usize;
            dst.copy_from_slice(&self.body(i)[s..s + dst.len()]);
            return Ok(());
        }
        let mut skip = offset as u64;
        let mut done = 0usize;
        for k in 0..w.num_sge as usize {
            if done == dst.len() {
                break;
            }
            let sge = self.send_sge(i, k);
            let l = sge.length as u64;
            if skip >= l {
                skip -= l;
                continue;
            }
            let n = ((l - skip) as usize).min(dst.len() - done);
            let va = sge.addr.wrapping_add(skip);
            let m = env.mr_lookup(sge.lkey, self.pd, va, n as u64, Access::empty()).map_err(|_| wc::LOC_PROT_ERR)?;
            env.mem_read(m, va, &mut dst[done..done + n]);
            env.mr_release(m);
            done += n;
            skip = 0;
        }
        Ok(())
    }
}
