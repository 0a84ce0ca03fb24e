//! The completer: ACKs, NAKs, READ responses and atomic acknowledgements in,
//! completions out.
//!
//! WQEs complete strictly in order.  An ACK acknowledges every PSN up to its own
//! (coalescing: one ACK may complete many WQEs, ATOMIC WRITEs and FLUSHes among
//! them); a READ response or an atomic acknowledgement also acknowledges everything
//! before it.  An ATOMIC WRITE or a FLUSH is answered with an RDMA READ RESPONSE
//! ONLY without payload, as rxe answers them.  A sequence NAK or a
//! retransmit timeout rewinds the requester (go-back-N) and costs one of
//! `retry_cnt`; an RNR NAK waits its timer and costs one of `rnr_retry` (7 is
//! infinite for both); other NAKs complete the WQE with the matching error, and
//! the QP goes to ERR, which flushes the rest.

use ferrite_abi::access::Access;
use ferrite_abi::wq::opcode as wop;

use super::packet::Rx;
use super::qp::{is_rd_atomic, retrans_ns, returns_data, wc, Qp, QpState, SendState, MIN_WINDOW, WINDOW};
use super::{psn, Counters, Env};
use crate::opcode::op;
use crate::wire::aeth::{self, NakCode, Syndrome};

impl Qp {
    /// Complete, in order, every WQE wholly acknowledged by PSN `p` (inclusive when
    /// `inclusive`), up to the first READ or atomic, which only its response
    /// completes.  Returns the index of the first WQE not completed.
    fn ack_upto<E: Env>(&mut self, env: &mut E, p: u32, inclusive: bool) -> u32 {
        while self.s_head != self.s_tail {
            let i = self.s_head;
            let e = self.entries[self.slot(i)];
            if e.state != SendState::Started || returns_data(e.wqe.opcode) {
                break;
            }
            let covered = if inclusive { !psn::before(p, e.last_psn) } else { psn::before(e.last_psn, p) };
            // A WQE not yet wholly sent cannot be wholly acknowledged.
            if !covered || (i == self.s_cur) {
                break;
            }
            self.complete_send(env, i, wc::SUCCESS);
            self.s_head = i.wrapping_add(1);
            if is_rd_atomic(e.wqe.opcode) {
                self.rd_outstanding = self.rd_outstanding.saturating_sub(1);
            }
            let next = psn::add(e.last_psn, 1);
            if psn::before(self.una, next) {
                self.una = next;
            }
        }
        self.s_head
    }

    /// Progress was made up to `next` (the oldest PSN still unacknowledged).
    fn progress<E: Env>(&mut self, env: &mut E, next: u32) {
        if psn::before(self.una, next) {
            self.una = next;
            self.gap_retry = None;
            self.cwnd = (self.cwnd + 1).min(WINDOW);
        }
        self.retry_left = self.attr.retry_cnt;
        self.retrans_deadline = if self.una != self.cur_psn || self.s_head != self.s_cur {
            retrans_ns(self.attr.timeout).map(|t| env.now_ns() + t)
        } else {
            None
        };
        if self.s_head == self.s_tail && self.state == QpState::Sqd {
            env.event(super::QpEvent::SqDrained);
        }
    }

    /// Spend one retry and go back to `p`; complete with `status` when none is left.
    fn retry<E: Env>(&mut self, env: &mut E, p: u32, rnr: bool) {
        let left = if rnr { &mut self.rnr_left } else { &mut self.retry_left };
        let infinite = if rnr { self.attr.rnr_retry == 7 } else { self.attr.retry_cnt == 7 };
        if !infinite {
            if *left == 0 {
                let status = if rnr { wc::RNR_RETRY_EXC_ERR } else { wc::RETRY_EXC_ERR };
                let c = env.counters();
                Counters::bump(if rnr { &c.rnr_retry_exceeded } else { &c.retry_exceeded });
                self.error_head(env, status);
                return;
            }
            *left -= 1;
        }
        Counters::bump(&env.counters().retransmits);
        self.go_back(p);
    }

    /// Complete the oldest WQE with an error and fail the QP.
    fn error_head<E: Env>(&mut self, env: &mut E, status: u32) {
        if self.s_head != self.s_tail {
            let i = self.s_head;
            self.complete_send(env, i, status);
            self.s_head = i.wrapping_add(1);
            if is_rd_atomic(self.entries[self.slot(i)].wqe.opcode) {
                self.rd_outstanding = self.rd_outstanding.saturating_sub(1);
            }
        }
        self.s_cur = self.s_head;
        self.fail(env, None);
    }

    /// A response packet (ACKNOWLEDGE, READ response, ATOMIC ACKNOWLEDGE) for this QP.
    pub(crate) fn completer<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        if !matches!(self.state, QpState::Rts | QpState::Sqd | QpState::Sqe) {
            return;
        }
        let p = rx.bth.psn;
        // Nothing was ever sent with this PSN: a stray or forged response.
        if !psn::before(p, self.next_psn) {
            Counters::bump(&env.counters().stray_responses);
            return;
        }
        match rx.bth.opcode {
            op::RC_ACKNOWLEDGE => {
                let Some(a) = rx.aeth else { return };
                match Syndrome::from_u8(a.syndrome) {
                    Syndrome::Ack { .. } => {
                        if psn::before(p, self.una) && self.s_head == self.s_cur {
                            return; // duplicate ACK
                        }
                        self.ack_upto(env, p, true);
                        // An ACK past a READ or atomic whose response never came.
                        if self.s_head != self.s_tail {
                            let e = self.entries[self.slot(self.s_head)];
                            if e.state == SendState::Started && returns_data(e.wqe.opcode) && !psn::before(p, e.last_psn) {
                                self.retry(env, e.first_psn, false);
                                return;
                            }
                        }
                        self.progress(env, psn::add(p, 1));
                    }
                    Syndrome::RnrNak { timer } => {
                        Counters::bump(&env.counters().rnr_naks_rcvd);
                        self.ack_upto(env, p, false);
                        let p = self.resume_point(p);
                        self.progress(env, p);
                        self.retrans_deadline = None;
                        let before = self.state;
                        self.retry(env, p, true);
                        if self.state == before {
                            self.rnr_deadline = Some(env.now_ns() + aeth::rnr_timer_ns(timer));
                        }
                    }
                    Syndrome::Nak(NakCode::PsnSeqError) => {
                        Counters::bump(&env.counters().seq_naks_rcvd);
                        self.ack_upto(env, p, false);
                        let p = self.resume_point(p);
                        self.progress(env, p);
                        self.retry(env, p, false);
                    }
                    Syndrome::Nak(code) => {
                        self.ack_upto(env, p, false);
                        let status = match code {
                            NakCode::RemoteAccessError => wc::REM_ACCESS_ERR,
                            NakCode::RemoteOperationalError => wc::REM_OP_ERR,
                            _ => wc::REM_INV_REQ_ERR,
                        };
                        self.error_head(env, status);
                    }
                    // No such ACK or NAK: the AETH is malformed.
                    Syndrome::Reserved(_) => Counters::bump(&env.counters().malformed),
                }
            }
            op::RC_RDMA_READ_RESPONSE_FIRST
            | op::RC_RDMA_READ_RESPONSE_MIDDLE
            | op::RC_RDMA_READ_RESPONSE_LAST
            | op::RC_RDMA_READ_RESPONSE_ONLY => self.read_response(env, rx),
            op::RC_ATOMIC_ACKNOWLEDGE => self.atomic_ack(env, rx),
            _ => {}
        }
    }

    /// Where to send again from after a NAK for `p`, which acknowledged what came
    /// before it: `p`, unless a READ or atomic before `p` still waits for (part of)
    /// its response, which was lost: then from the first response missing.
    fn resume_point(&self, p: u32) -> u32 {
        if self.s_head == self.s_tail {
            return p;
        }
        let e = self.entries[self.slot(self.s_head)];
        if e.state != SendState::Started || !returns_data(e.wqe.opcode) || !psn::before(e.first_psn, p) {
            return p;
        }
        let missing = if psn::before(self.una, e.first_psn) { e.first_psn } else { self.una };
        if psn::before(missing, p) {
            missing
        } else {
            p
        }
    }

    /// The READ at the head for response PSN `p`, after acknowledging what precedes it.
    fn head_rd<E: Env>(&mut self, env: &mut E, p: u32) -> Option<u32> {
        self.ack_upto(env, p, false);
        if self.s_head == self.s_tail {
            return None;
        }
        let i = self.s_head;
        let e = self.entries[self.slot(i)];
        if e.state != SendState::Started || !is_rd_atomic(e.wqe.opcode) {
            return None;
        }
        if psn::before(p, e.first_psn) || psn::before(e.last_psn, p) {
            return None;
        }
        // Everything before the READ or atomic is acknowledged by its response.
        if psn::before(self.una, e.first_psn) {
            self.una = e.first_psn;
        }
        Some(i)
    }

    fn read_response<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        let p = rx.bth.psn;
        if psn::before(p, self.una) {
            return; // a duplicate of data already placed
        }
        let Some(i) = self.head_rd(env, p) else { return };
        let e = self.entries[self.slot(i)];
        match e.wqe.opcode {
            wop::RDMA_READ => {}
            wop::ATOMIC_WRITE | wop::FLUSH => return self.done_response(env, rx, i),
            _ => {
                self.error_head(env, wc::BAD_RESP_ERR);
                return;
            }
        }
        if p != self.una {
            // Responses were lost in between: ask again from the oldest missing one,
            // once.  The rest of the responses already in flight arrive past the same
            // gap: each asking again would re-execute the READ once per packet, a
            // collapse into duplicates seen against rxe on the debug kernel.  If the
            // new request is lost too, the retransmit timer asks again.
            if psn::before(self.una, p) && self.gap_retry != Some(self.una) {
                self.gap_retry = Some(self.una);
                self.retry(env, self.una, false);
            }
            return;
        }
        let mtu = self.mtu();
        let k = psn::diff(p, e.first_psn) as u32;
        let offset = k * mtu;
        let last = p == e.last_psn;
        let n = rx.payload.len() as u32;
        let first_ok = matches!(rx.bth.opcode, op::RC_RDMA_READ_RESPONSE_FIRST | op::RC_RDMA_READ_RESPONSE_ONLY) == (k == 0);
        let last_ok = matches!(rx.bth.opcode, op::RC_RDMA_READ_RESPONSE_LAST | op::RC_RDMA_READ_RESPONSE_ONLY) == last;
        let len_ok = if last { offset + n == e.len } else { n == mtu };
        if !first_ok || !last_ok || !len_ok {
            self.error_head(env, wc::BAD_RESP_ERR);
            return;
        }
        if let Err(status) = self.scatter_send(env, i, offset, rx.payload) {
            self.error_head(env, status);
            return;
        }
        let slot = self.slot(i);
        self.entries[slot].read_placed = offset + n;
        if last {
            self.complete_send(env, i, wc::SUCCESS);
            self.s_head = i.wrapping_add(1);
            self.rd_outstanding = self.rd_outstanding.saturating_sub(1);
        }
        self.progress(env, psn::add(p, 1));
    }

    /// The answer to the ATOMIC WRITE or FLUSH `i` at the head: an RDMA READ
    /// RESPONSE ONLY with an ACK syndrome and no payload, at its PSN.
    fn done_response<E: Env>(&mut self, env: &mut E, rx: &Rx, i: u32) {
        let p = rx.bth.psn;
        let e = self.entries[self.slot(i)];
        let acked = rx.aeth.is_some_and(|a| matches!(Syndrome::from_u8(a.syndrome), Syndrome::Ack { .. }));
        if rx.bth.opcode != op::RC_RDMA_READ_RESPONSE_ONLY || !rx.payload.is_empty() || p != e.first_psn || !acked {
            self.error_head(env, wc::BAD_RESP_ERR);
            return;
        }
        self.complete_send(env, i, wc::SUCCESS);
        self.s_head = i.wrapping_add(1);
        self.rd_outstanding = self.rd_outstanding.saturating_sub(1);
        self.progress(env, psn::add(p, 1));
    }

    fn atomic_ack<E: Env>(&mut self, env: &mut E, rx: &Rx) {
        let p = rx.bth.psn;
        if psn::before(p, self.una) {
            return;
        }
        let Some(i) = self.head_rd(env, p) else { return };
        let e = self.entries[self.slot(i)];
        let Some(ack) = rx.atomic_ack else { return };
        if !matches!(e.wqe.opcode, wop::ATOMIC_CMP_AND_SWP | wop::ATOMIC_FETCH_AND_ADD) || p != e.first_psn {
            self.error_head(env, wc::BAD_RESP_ERR);
            return;
        }
        if let Err(status) = self.scatter_send(env, i, 0, &ack.orig.to_ne_bytes()) {
            self.error_head(env, status);
            return;
        }
        self.complete_send(env, i, wc::SUCCESS);
        self.s_head = i.wrapping_add(1);
        self.rd_outstanding = self.rd_outstanding.saturating_sub(1);
        self.progress(env, psn::add(p, 1));
    }

    /// Place response data into entry `i`'s SGEs at `offset` (local write access).
    fn scatter_send<E: Env>(&self, env: &mut E, i: u32, offset: u32, src: &[u8]) -> Result<(), u32> {
        let w = self.entries[self.slot(i)].wqe;
        let mut skip = offset as u64;
        let mut done = 0usize;
        for k in 0..w.num_sge as usize {
            if done == src.len() {
                break;
            }
            let sge = self.send_sge(i, k);
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

    /// Timers: retransmit after a timeout, resume after an RNR wait.
    pub(crate) fn timers<E: Env>(&mut self, env: &mut E) {
        let now = env.now_ns();
        if let Some(d) = self.rnr_deadline {
            if now >= d {
                self.rnr_deadline = None;
                let una = self.una;
                self.go_back(una);
            }
        }
        if let Some(d) = self.retrans_deadline {
            if now >= d && self.state == QpState::Rts {
                self.retrans_deadline = None;
                if self.s_head != self.s_cur || self.una != self.cur_psn {
                    let una = self.una;
                    self.cwnd = (self.cwnd / 2).max(MIN_WINDOW);
                    self.retry(env, una, false);
                    if self.state != QpState::Err {
                        self.retrans_deadline = retrans_ns(self.attr.timeout).map(|t| now + t);
                    }
                }
            }
        }
    }
}
