//! Two engines back to back through an in-memory link that loses, duplicates and
//! reorders packets (seeded), with a fake clock: every operation's bytes and
//! completions are checked, as smoltcp tests its TCP.  The engines and their
//! surroundings come from [`super::harness`].

extern crate std;

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use ferrite_abi::access::Access;
use ferrite_abi::wq::{opcode as wop, send_flags, SendWqe, Sge};

use super::harness::{side, Node, Side};
use super::packet;
use super::qp::{mask, wc, QpAttr, QpState, QpType};
use super::*;
use crate::wire::icrc::{self, SoftCrc};

/// A seeded xorshift generator: the link's faults are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The link's faults, in percent of packets.
#[derive(Clone, Copy)]
struct Faults {
    loss: u64,
    dup: u64,
    reorder: u64,
}

const CLEAN: Faults = Faults { loss: 0, dup: 0, reorder: 0 };

fn deliver(from: &mut Side, to: &mut Side, rng: &mut Rng, f: Faults, held: &mut VecDeque<Vec<u8>>) -> usize {
    let pkts: Vec<Vec<u8>> = from.env.out.drain(..).collect();
    let mut n = 0;
    let mut batch = Vec::new();
    for p in pkts {
        if rng.chance(f.loss) {
            continue;
        }
        if rng.chance(f.dup) {
            batch.push(p.clone());
        }
        if rng.chance(f.reorder) {
            held.push_back(p);
            continue;
        }
        batch.push(p);
        if let Some(h) = held.pop_front() {
            batch.push(h);
        }
    }
    for p in batch {
        let rx = packet::parse(&p, Some(&SoftCrc)).expect("engine sent a bad packet");
        assert_eq!(rx.bth.dest_qpn, to.qp.qpn());
        to.qp.receive(&mut to.env, &rx);
        n += 1;
    }
    n
}

/// Run both sides until `done` or the step limit; time advances when the link idles.
fn pump(a: &mut Side, b: &mut Side, f: Faults, seed: u64, mut done: impl FnMut(&mut Side, &mut Side) -> bool) {
    let mut rng = Rng(seed | 1);
    let mut held_ab = VecDeque::new();
    let mut held_ba = VecDeque::new();
    for _ in 0..200_000 {
        a.qp.run(&mut a.env, 64);
        b.qp.run(&mut b.env, 64);
        let n = deliver(a, b, &mut rng, f, &mut held_ab) + deliver(b, a, &mut rng, f, &mut held_ba);
        if done(a, b) {
            return;
        }
        if n == 0 {
            // Nothing in flight: let the held packets out, then let time pass.
            for p in held_ab.drain(..) {
                b.env.out.len();
                let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
                b.qp.receive(&mut b.env, &rx);
            }
            for p in held_ba.drain(..) {
                let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
                a.qp.receive(&mut a.env, &rx);
            }
            let t = [a.qp.deadline(), b.qp.deadline()].into_iter().flatten().min();
            let step = t.map(|t| t.saturating_sub(a.env.now)).unwrap_or(1000).max(1);
            a.env.now += step;
            b.env.now += step;
        }
    }
    let q = &a.qp;
    panic!(
        "no progress: a head {} cur {} tail {} una {:#x} cur_psn {:#x} next {:#x} rd {} rnr {:?} rt {:?} state {:?}; b epsn {:#x} reply {:?} inbound {:?}; a cqes {}",
        q.s_head, q.s_cur, q.s_tail, q.una, q.cur_psn, q.next_psn, q.rd_outstanding, q.rnr_deadline, q.retrans_deadline, q.state,
        b.qp.epsn, b.qp.replies, b.qp.inbound, a.env.cqes.len()
    );
}

fn pair(ty: QpType, mtu: u8) -> (Side, Side) {
    let mut a = side(17, ty, 64);
    let mut b = side(18, ty, 64);
    a.connect(1, 2, 18, mtu);
    b.connect(2, 1, 17, mtu);
    (a, b)
}

const ALL: Access = Access::LOCAL_WRITE.union(Access::REMOTE_WRITE).union(Access::REMOTE_READ).union(Access::REMOTE_ATOMIC);

fn send_wqe(wr_id: u64, opcode: u32) -> SendWqe {
    SendWqe { wr_id, opcode, send_flags: send_flags::SIGNALED, ..Default::default() }
}

/// SEND, SEND_WITH_IMM, WRITE, WRITE_WITH_IMM and READ of `len` bytes, checked.
fn all_ops(ty: QpType, len: usize, mtu: u8, f: Faults, seed: u64) -> u64 {
    let (mut a, mut b) = pair(ty, mtu);
    let big = len.max(8) + 64;
    a.reg(0x100, 0x10_0000, big, ALL);
    a.reg(0x101, 0x20_0000, big, ALL);
    b.reg(0x200, 0x30_0000, big, ALL);
    b.reg(0x201, 0x40_0000, big, ALL);
    let l = len as u32;
    // Two receives: one for SEND, one for SEND_WITH_IMM; one more for WRITE_WITH_IMM.
    b.post_recv(1, &[Sge { addr: 0x30_0000, length: l.div_ceil(2), lkey: 0x200 }, Sge { addr: 0x30_0000 + l.div_ceil(2) as u64, length: l - l.div_ceil(2) + 16, lkey: 0x200 }]);
    b.post_recv(2, &[Sge { addr: 0x40_0000, length: l + 16, lkey: 0x201 }]);
    b.post_recv(3, &[]);
    a.post_send(send_wqe(10, wop::SEND), &[Sge { addr: 0x10_0000, length: l, lkey: 0x100 }]);
    let mut w = send_wqe(11, wop::SEND_WITH_IMM);
    w.imm_data = 0x1234_5678u32.to_be();
    a.post_send(w, &[Sge { addr: 0x10_0000, length: l, lkey: 0x100 }]);
    pump(&mut a, &mut b, f, seed, |_, b| b.env.cqes.len() >= 2);
    let rc = b.cqes(CqSel::Recv);
    assert_eq!(rc.len(), 2);
    assert_eq!((rc[0].wr_id, rc[0].status, rc[0].opcode, rc[0].byte_len), (1, wc::SUCCESS, wc::RECV, l));
    assert_eq!((rc[1].wr_id, rc[1].byte_len, rc[1].wc_flags & wc::WITH_IMM), (2, l, wc::WITH_IMM));
    assert_eq!(u32::from_be(rc[1].imm_data), 0x1234_5678);
    assert_eq!(rc[0].src_qp, 17);
    assert_eq!(&b.region(0x200)[..len], &a.region(0x100)[..len], "SEND bytes");
    assert_eq!(&b.region(0x201)[..len], &a.region(0x100)[..len], "SEND_WITH_IMM bytes");

    // RDMA WRITE then WRITE_WITH_IMM into b's 0x201 region (after fresh contents).
    let mut w = send_wqe(12, wop::RDMA_WRITE);
    w.remote_addr = 0x40_0000 + 8;
    w.rkey = 0x201;
    a.post_send(w, &[Sge { addr: 0x20_0000, length: l, lkey: 0x101 }]);
    let mut w = send_wqe(13, wop::RDMA_WRITE_WITH_IMM);
    w.remote_addr = 0x30_0000;
    w.rkey = 0x200;
    w.imm_data = 0xabcdu32.to_be();
    a.post_send(w, &[Sge { addr: 0x20_0000, length: l, lkey: 0x101 }]);
    if ty == QpType::Rc {
        // READ b's 0x201 back into a's 0x100 at offset 4.
        let mut w = send_wqe(14, wop::RDMA_READ);
        w.remote_addr = 0x40_0000 + 8;
        w.rkey = 0x201;
        a.post_send(w, &[Sge { addr: 0x10_0000 + 4, length: l, lkey: 0x100 }]);
    }
    let want = if ty == QpType::Rc { 5 } else { 4 };
    pump(&mut a, &mut b, f, seed + 1, |a, b| {
        let sends = a.env.cqes.iter().filter(|c| c.0 == CqSel::Send).count();
        sends >= want && !b.env.cqes.is_empty()
    });
    let sc = a.cqes(CqSel::Send);
    let ids: Vec<u64> = sc.iter().map(|c| c.wr_id).collect();
    assert_eq!(ids, (10..10 + want as u64).collect::<Vec<_>>(), "in order");
    assert!(sc.iter().all(|c| c.status == wc::SUCCESS), "{sc:?}");
    assert_eq!(sc[2].opcode, wc::OP_RDMA_WRITE);
    assert_eq!(sc[2].byte_len, l);
    let rc = b.cqes(CqSel::Recv);
    assert_eq!(rc.len(), 1);
    assert_eq!((rc[0].wr_id, rc[0].opcode, rc[0].byte_len), (3, wc::RECV_RDMA_WITH_IMM, l));
    assert_eq!(u32::from_be(rc[0].imm_data), 0xabcd);
    let src = a.region(0x101)[..len].to_vec();
    assert_eq!(&b.region(0x201)[8..8 + len], &src[..], "WRITE bytes");
    assert_eq!(&b.region(0x200)[..len], &src[..], "WRITE_WITH_IMM bytes");
    if ty == QpType::Rc {
        assert_eq!(sc[4].opcode, wc::OP_RDMA_READ);
        assert_eq!(&a.region(0x100)[4..4 + len], &src[..], "READ bytes");
    }
    assert_eq!(a.env.live_refs, 0);
    assert_eq!(b.env.live_refs, 0);
    let r = |n: &Node| n.counters.retransmits.load(core::sync::atomic::Ordering::Relaxed);
    r(&a.env) + r(&b.env)
}

#[test]
fn rc_every_op_at_mtu_boundaries() {
    for len in [0usize, 1, 255, 256, 257, 1023, 1024, 1025, 4096, 5000, 65536 + 3] {
        assert_eq!(all_ops(QpType::Rc, len, 1, CLEAN, 1), 0);
    }
    assert_eq!(all_ops(QpType::Rc, 70_000, 5, CLEAN, 1), 0);
}

#[test]
fn rc_survives_loss_duplication_and_reordering() {
    let f = Faults { loss: 5, dup: 1, reorder: 2 };
    let mut retransmits = 0;
    for seed in 1..24u64 {
        for len in [1usize, 3000, 40_000] {
            retransmits += all_ops(QpType::Rc, len, 3, f, seed * 7919 + len as u64);
        }
    }
    // A READ of many packets resumes where its responses were lost instead of
    // starting over (which would never finish at 5 % loss).
    retransmits += all_ops(QpType::Rc, 4 << 20, 3, f, 77);
    assert!(retransmits > 0, "the losses were seen");
}

#[test]
fn uc_moves_data_on_a_clean_link() {
    for len in [0usize, 1, 1024, 1025, 9000] {
        all_ops(QpType::Uc, len, 3, CLEAN, 3);
    }
}

#[test]
fn atomics_execute_once_even_when_replayed() {
    for seed in 1..20u64 {
        let (mut a, mut b) = pair(QpType::Rc, 3);
        a.reg(1, 0x1000, 64, ALL);
        b.reg(2, 0x8000, 64, ALL);
        let start = u64::from_ne_bytes(b.region(2)[8..16].try_into().unwrap());
        let mut w = send_wqe(1, wop::ATOMIC_FETCH_AND_ADD);
        w.remote_addr = 0x8008;
        w.rkey = 2;
        w.compare_add = 5;
        a.post_send(w, &[Sge { addr: 0x1000, length: 8, lkey: 1 }]);
        let mut w = send_wqe(2, wop::ATOMIC_CMP_AND_SWP);
        w.remote_addr = 0x8008;
        w.rkey = 2;
        w.compare_add = start.wrapping_add(5);
        w.swap = 0xfeed;
        a.post_send(w, &[Sge { addr: 0x1008, length: 8, lkey: 1 }]);
        let f = Faults { loss: 10, dup: 10, reorder: 5 };
        pump(&mut a, &mut b, f, seed, |a, _| a.env.cqes.len() >= 2);
        let sc = a.cqes(CqSel::Send);
        assert_eq!(sc.iter().map(|c| (c.wr_id, c.status, c.opcode)).collect::<Vec<_>>(), vec![
            (1, wc::SUCCESS, wc::OP_FETCH_ADD),
            (2, wc::SUCCESS, wc::OP_COMP_SWAP)
        ]);
        assert_eq!(u64::from_ne_bytes(a.region(1)[..8].try_into().unwrap()), start);
        assert_eq!(u64::from_ne_bytes(a.region(1)[8..16].try_into().unwrap()), start + 5);
        assert_eq!(u64::from_ne_bytes(b.region(2)[8..16].try_into().unwrap()), 0xfeed);
    }
}

#[test]
fn several_reads_outstanding_are_all_answered() {
    // Four READs posted at once (max_rd_atomic 4): the responder answers each one.
    for f in [CLEAN, Faults { loss: 5, dup: 2, reorder: 5 }] {
        let (mut a, mut b) = pair(QpType::Rc, 3);
        a.reg(1, 0x10_0000, 4 * 5000, ALL);
        b.reg(2, 0x20_0000, 4 * 5000, ALL);
        for k in 0..4u64 {
            let mut w = send_wqe(k, wop::RDMA_READ);
            w.send_flags = if k == 3 { send_flags::SIGNALED } else { 0 };
            w.remote_addr = 0x20_0000 + k * 5000;
            w.rkey = 2;
            a.post_send(w, &[Sge { addr: 0x10_0000 + k * 5000, length: 4097, lkey: 1 }]);
        }
        pump(&mut a, &mut b, f, 9, |a, _| !a.env.cqes.is_empty());
        let sc = a.cqes(CqSel::Send);
        assert_eq!((sc[0].wr_id, sc[0].status), (3, wc::SUCCESS));
        for k in 0..4usize {
            let o = k * 5000;
            assert_eq!(&a.region(1)[o..o + 4097], &b.region(2)[o..o + 4097], "READ {k}");
        }
    }
}

#[test]
fn inline_unsignaled_and_solicited() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 256, ALL);
    for k in 0..3 {
        b.post_recv(k, &[Sge { addr: 0x8000 + k * 64, length: 64, lkey: 2 }]);
    }
    let mut w = send_wqe(1, wop::SEND);
    w.send_flags = 0; // unsignaled
    a.post_inline(w, b"hello");
    let mut w = send_wqe(2, wop::SEND);
    w.send_flags |= send_flags::SOLICITED;
    a.post_inline(w, b"world!!");
    pump(&mut a, &mut b, CLEAN, 5, |a, b| !a.env.cqes.is_empty() && b.env.cqes.len() >= 2);
    let sc = a.cqes(CqSel::Send);
    assert_eq!(sc.iter().map(|c| c.wr_id).collect::<Vec<_>>(), vec![2], "unsignaled WQE has no completion");
    let solicited: Vec<bool> = b.env.cqes.iter().map(|c| c.2).collect();
    assert_eq!(solicited, vec![false, true]);
    assert_eq!(&b.region(2)[..5], b"hello");
    assert_eq!(&b.region(2)[64..71], b"world!!");
}

#[test]
fn errors_complete_with_the_right_status_and_fail_the_qp() {
    // Bad rkey: REM_ACCESS_ERR at the requester; both QPs end in ERR.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    b.reg(2, 0x8000, 64, Access::LOCAL_WRITE | Access::REMOTE_READ);
    let mut w = send_wqe(1, wop::RDMA_WRITE);
    w.remote_addr = 0x8000;
    w.rkey = 2; // no REMOTE_WRITE right
    a.post_send(w, &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    a.post_send(send_wqe(2, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| a.env.cqes.len() >= 2);
    let sc = a.cqes(CqSel::Send);
    assert_eq!((sc[0].wr_id, sc[0].status), (1, wc::REM_ACCESS_ERR));
    assert_eq!((sc[1].wr_id, sc[1].status), (2, wc::WR_FLUSH_ERR));
    assert_eq!(a.qp.state(), QpState::Err);
    assert_eq!(b.qp.state(), QpState::Err);
    // The requester's completion reports the error: no async event there (an
    // unacknowledged one would block ibv_destroy_qp); the responder, which has no
    // completion to report it in, raises the access violation.
    assert_eq!(a.env.events, vec![]);
    assert_eq!(b.env.events, vec![QpEvent::AccessError]);

    // Out of bounds READ.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    b.reg(2, 0x8000, 64, ALL);
    let mut w = send_wqe(1, wop::RDMA_READ);
    w.remote_addr = 0x8000 + 60;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| !a.env.cqes.is_empty());
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::REM_ACCESS_ERR);
    assert_eq!((a.qp.state(), b.qp.state()), (QpState::Err, QpState::Err));
    assert_eq!((&a.env.events[..], &b.env.events[..]), (&[][..], &[QpEvent::AccessError][..]));

    // Bad lkey: LOC_PROT_ERR, nothing sent.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 99 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| !a.env.cqes.is_empty());
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::LOC_PROT_ERR);
    assert_eq!(a.qp.state(), QpState::Err);
    assert!(a.env.out.is_empty() && a.env.events.is_empty());

    // No receive posted, rnr_retry = 0: RNR_RETRY_EXC_ERR.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    let m = QpAttr { rnr_retry: 0, ..Default::default() };
    a.qp.modify(&mut a.env, &m, mask::RNR_RETRY).unwrap();
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| !a.env.cqes.is_empty());
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::RNR_RETRY_EXC_ERR);
    assert!(b.env.counters.rnr_naks_sent.load(core::sync::atomic::Ordering::Relaxed) >= 1);
    // Not ready is no error of the responder's.
    assert_eq!((a.qp.state(), b.qp.state()), (QpState::Err, QpState::Rts));
    assert!(a.env.events.is_empty() && b.env.events.is_empty());

    // Peer gone (every packet lost), retry_cnt = 2: RETRY_EXC_ERR after 3 timeouts.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    let m = QpAttr { retry_cnt: 2, ..Default::default() };
    a.qp.modify(&mut a.env, &m, mask::RETRY_CNT).unwrap();
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    let lost = Faults { loss: 100, dup: 0, reorder: 0 };
    pump(&mut a, &mut b, lost, 1, |a, _| !a.env.cqes.is_empty());
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::RETRY_EXC_ERR);
    let t = retrans_ns_of(10);
    assert!(a.env.now >= 3 * t && a.env.now < 4 * t + 10_000, "took {} ns", a.env.now);
    assert_eq!(a.env.counters.retransmits.load(core::sync::atomic::Ordering::Relaxed), 2);
    assert!(a.env.events.is_empty());
}

#[test]
fn a_local_error_behind_outstanding_wqes_completes_them_all_in_order() {
    // A SEND in flight, then one with a bad lkey: the QP fails, the first is
    // flushed (its ACK finds the QP in ERR), the second carries LOC_PROT_ERR, the
    // third is flushed; every WQE completes exactly once, in posting order.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    b.reg(2, 0x8000, 64, ALL);
    b.post_recv(7, &[Sge { addr: 0x8000, length: 64, lkey: 2 }]);
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    a.post_send(send_wqe(2, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 99 }]);
    a.post_send(send_wqe(3, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| a.env.cqes.len() >= 3);
    a.qp.run(&mut a.env, 64);
    let sc = a.cqes(CqSel::Send);
    assert_eq!(
        sc.iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(),
        vec![(1, wc::WR_FLUSH_ERR), (2, wc::LOC_PROT_ERR), (3, wc::WR_FLUSH_ERR)]
    );
    assert_eq!(a.qp.state(), QpState::Err);
    // Only the first SEND went out; the responder took it and stays up.
    assert_eq!(b.cqes(CqSel::Recv).iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(), vec![(7, wc::SUCCESS)]);
    assert_eq!(b.qp.state(), QpState::Rts);
}

#[test]
fn the_rnr_retry_count_starts_afresh_for_each_message() {
    // rnr_retry = 1: each SEND may meet one RNR NAK.  Two SENDs one after the other,
    // each NAKed once before its receive is posted, both succeed (rxe resets the
    // count on every acknowledged WQE, reset_retry_counters).
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    b.reg(2, 0x8000, 128, ALL);
    let m = QpAttr { rnr_retry: 1, ..Default::default() };
    a.qp.modify(&mut a.env, &m, mask::RNR_RETRY).unwrap();
    let rnr = |b: &Side| b.env.counters.rnr_naks_sent.load(core::sync::atomic::Ordering::Relaxed);
    for k in 0..2u64 {
        a.post_send(send_wqe(k, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
        let mut posted = false;
        pump(&mut a, &mut b, CLEAN, 1, |a, b| {
            if !posted && rnr(b) > k {
                b.post_recv(10 + k, &[Sge { addr: 0x8000 + 64 * k, length: 64, lkey: 2 }]);
                posted = true;
            }
            !a.env.cqes.is_empty()
        });
        let sc = a.cqes(CqSel::Send);
        assert_eq!((sc[0].wr_id, sc[0].status), (k, wc::SUCCESS), "SEND {k}");
        assert_eq!(rnr(&b), k + 1);
    }
    assert_eq!(a.qp.state(), QpState::Rts);
    assert_eq!(b.cqes(CqSel::Recv).len(), 2);
}

fn retrans_ns_of(t: u8) -> u64 {
    super::qp::retrans_ns(t).unwrap()
}

#[test]
fn moving_to_err_flushes_every_wqe() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x1000, 64, ALL);
    for k in 0..3 {
        a.post_send(send_wqe(k, wop::SEND), &[Sge { addr: 0x1000, length: 8, lkey: 1 }]);
        a.post_recv(100 + k, &[Sge { addr: 0x1000, length: 8, lkey: 1 }]);
    }
    let m = QpAttr { state: QpState::Err as u8, ..Default::default() };
    assert!(a.qp.modify(&mut a.env, &m, mask::STATE).unwrap());
    a.qp.run(&mut a.env, 64);
    let s = a.cqes(CqSel::Send);
    let r = a.cqes(CqSel::Recv);
    assert_eq!(s.iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(), (0..3).map(|k| (k, wc::WR_FLUSH_ERR)).collect::<Vec<_>>());
    assert_eq!(r.iter().map(|c| (c.wr_id, c.status, c.opcode)).collect::<Vec<_>>(), (100..103).map(|k| (k, wc::WR_FLUSH_ERR, wc::RECV)).collect::<Vec<_>>());
    // Posted later: flushed too.
    a.post_send(send_wqe(9, wop::SEND), &[]);
    a.qp.run(&mut a.env, 64);
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::WR_FLUSH_ERR);
    let _ = &mut b;
}

#[test]
fn modify_checks_values_and_changes_nothing_on_error() {
    let (mut a, _b) = pair(QpType::Rc, 3);
    let before = a.qp.query();
    let bad = QpAttr { path_mtu: 9, ..Default::default() };
    assert!(a.qp.modify(&mut a.env, &bad, mask::PATH_MTU | mask::TIMEOUT).is_err());
    let bad = QpAttr { max_rd_atomic: 200, ..Default::default() };
    assert!(a.qp.modify(&mut a.env, &bad, mask::MAX_QP_RD_ATOMIC).is_err());
    let bad = QpAttr { cur_state: QpState::Init as u8, state: QpState::Rts as u8, ..Default::default() };
    assert!(a.qp.modify(&mut a.env, &bad, mask::STATE | mask::CUR_STATE).is_err());
    assert_eq!(a.qp.query(), before);
}

#[test]
fn malformed_and_foreign_packets_are_dropped() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, ALL);
    b.post_recv(1, &[Sge { addr: 0x8000, length: 64, lkey: 2 }]);
    a.reg(1, 0x1000, 64, ALL);
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    a.qp.run(&mut a.env, 64);
    let good = a.env.out[0].clone();
    // Truncations at every length, a bad ICRC, an unknown opcode.
    for n in 0..good.len() {
        assert!(packet::parse(&good[..n], Some(&SoftCrc)).is_err());
    }
    let mut bad = good.clone();
    let l = bad.len();
    bad[l - 10] ^= 1;
    assert_eq!(packet::parse(&bad, Some(&SoftCrc)).unwrap_err(), packet::Drop::Icrc);
    let mut unk = good.clone();
    unk[28] = 0x1e;
    assert_eq!(packet::parse(&unk, None).unwrap_err(), packet::Drop::UnknownOpcode);
    // From a stranger: dropped and counted, the connection goes on.
    let mut foreign = good.clone();
    foreign[15] = 99;
    icrc::fill(&SoftCrc, &mut foreign).unwrap();
    let rx = packet::parse(&foreign, Some(&SoftCrc)).unwrap();
    b.qp.receive(&mut b.env, &rx);
    assert_eq!(b.env.counters.malformed.load(core::sync::atomic::Ordering::Relaxed), 1);
    pump(&mut a, &mut b, CLEAN, 1, |a, b| !a.env.cqes.is_empty() && !b.env.cqes.is_empty());
    assert_eq!(b.cqes(CqSel::Recv)[0].status, wc::SUCCESS);
}

#[test]
fn random_bytes_never_panic() {
    let (_a, mut b) = pair(QpType::Rc, 3);
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let n = (rng.next() % 120) as usize;
        let mut p: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        if n > 30 && rng.chance(50) {
            p[0] = 0x45;
            p[9] = 17;
            p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            p[22..24].copy_from_slice(&ROCE_V2_PORT.to_be_bytes());
            p[24..26].copy_from_slice(&((n - 20) as u16).to_be_bytes());
            p[12..16].copy_from_slice(&[192, 0, 2, 1]);
            p[16..20].copy_from_slice(&[192, 0, 2, 2]);
            p[10..12].copy_from_slice(&[0, 0]);
            p[6] = 0x40;
            p[7] = 0;
            p[28] %= 0x20;
        }
        if let Ok(rx) = packet::parse(&p, None) {
            b.qp.receive(&mut b.env, &rx);
            b.qp.run(&mut b.env, 16);
        }
    }
    assert_eq!(b.env.live_refs, 0);
}

// ---- IBTA 1.5: ATOMIC WRITE and FLUSH ----

const FLUSHABLE: Access = ALL.union(Access::FLUSH_GLOBAL);

fn atomic_write_wqe(wr_id: u64, remote_addr: u64, rkey: u32, value: [u8; 8]) -> SendWqe {
    SendWqe { remote_addr, rkey, swap: u64::from_ne_bytes(value), ..send_wqe(wr_id, wop::ATOMIC_WRITE) }
}

fn flush_wqe(wr_id: u64, remote_addr: u64, rkey: u32, len: u64, ty: u8, level: u8) -> SendWqe {
    SendWqe {
        remote_addr,
        rkey,
        compare_add: len,
        flush_type: ty,
        flush_level: level,
        ..send_wqe(wr_id, wop::FLUSH)
    }
}

/// The transport part of an outgoing datagram (from the BTH, without the ICRC).
fn transport(ip: &[u8]) -> &[u8] {
    &ip[28..ip.len() - 4]
}

#[test]
fn atomic_write_and_flush_packets_byte_for_byte() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(0x200, 0x4000_1000, 4096, FLUSHABLE);
    a.post_send(atomic_write_wqe(1, 0x4000_1008, 0x200, *b"\x01\x02\x03\x04\x05\x06\x07\x08"), &[]);
    a.post_send(flush_wqe(2, 0x4000_1000, 0x200, 64, 1, 0), &[]);
    a.post_send(flush_wqe(3, 0, 0x200, 0, 1, 1), &[]);
    a.qp.run(&mut a.env, 64);
    assert_eq!(a.env.out.len(), 3);
    #[rustfmt::skip]
    let aw: [u8; 36] = [
        // BTH: RC ATOMIC WRITE, no pad, P_Key 0xffff, QP 18, AckReq, PSN 0xfffff0
        0x1d, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x12, 0x80, 0xff, 0xff, 0xf0,
        // RETH: VA, R_Key, DMA length 8
        0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x10, 0x08, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x08,
        // the 8 bytes, as the application gave them
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    ];
    #[rustfmt::skip]
    let flush_range: [u8; 32] = [
        // BTH: RC FLUSH, PSN 0xfffff1
        0x1c, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x12, 0x80, 0xff, 0xff, 0xf1,
        // FETH: selectivity 0 (range), placement type 1 (global)
        0x00, 0x00, 0x00, 0x01,
        // RETH: VA, R_Key, DMA length 64
        0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x10, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x40,
    ];
    #[rustfmt::skip]
    let flush_mr: [u8; 32] = [
        0x1c, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x12, 0x80, 0xff, 0xff, 0xf2,
        // FETH: selectivity 1 (the whole region), placement type 1
        0x00, 0x00, 0x00, 0x11,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(transport(&a.env.out[0]), &aw[..]);
    assert_eq!(transport(&a.env.out[1]), &flush_range[..]);
    assert_eq!(transport(&a.env.out[2]), &flush_mr[..]);

    // The responder stores the 8 bytes as they came and answers each request with
    // an RDMA READ RESPONSE ONLY: AETH ACK (credits invalid), MSN, no payload.
    let before = b.region(0x200).clone();
    deliver(&mut a, &mut b, &mut Rng(1), CLEAN, &mut VecDeque::new());
    b.qp.run(&mut b.env, 64);
    assert_eq!(&b.region(0x200)[8..16], b"\x01\x02\x03\x04\x05\x06\x07\x08");
    assert_eq!(&b.region(0x200)[..8], &before[..8]);
    assert_eq!(&b.region(0x200)[16..], &before[16..]);
    assert_eq!(b.env.flushes, vec![(0x200, 0x4000_1000, 64), (0x200, 0x4000_1000, 4096)]);
    assert_eq!(b.env.out.len(), 3);
    for (k, ip) in b.env.out.iter().enumerate() {
        #[rustfmt::skip]
        let want: [u8; 16] = [
            // BTH: RC RDMA READ RESPONSE ONLY to QP 17, PSN of the request
            0x10, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x11, 0x00, 0xff, 0xff, 0xf0 + k as u8,
            // AETH: ACK, invalid credit count (0x1f); MSN k + 1
            0x1f, 0x00, 0x00, 1 + k as u8,
        ];
        assert_eq!(transport(ip), &want[..], "response {k}");
    }
    deliver(&mut b, &mut a, &mut Rng(1), CLEAN, &mut VecDeque::new());
    let sc = a.cqes(CqSel::Send);
    assert_eq!(
        sc.iter().map(|c| (c.wr_id, c.status, c.opcode, c.byte_len)).collect::<Vec<_>>(),
        vec![
            (1, wc::SUCCESS, wc::OP_ATOMIC_WRITE, 8),
            (2, wc::SUCCESS, wc::OP_FLUSH, 64),
            (3, wc::SUCCESS, wc::OP_FLUSH, 0),
        ]
    );
    assert_eq!((a.qp.rd_outstanding, a.env.live_refs, b.env.live_refs), (0, 0, 0));
}

#[test]
fn atomic_write_and_flush_between_writes_and_reads_on_a_lossy_link() {
    // WRITE, FLUSH of what it wrote, READ it back, two ATOMIC WRITEs to one slot,
    // READ the slot: in order, each executed exactly once however often the link
    // duplicates or loses, and the later ATOMIC WRITE is the one that stays.
    let mut dups = 0;
    for (seed, f) in (1..40u64).map(|s| (s, if s == 1 { CLEAN } else { Faults { loss: 10, dup: 10, reorder: 5 } })) {
        let (mut a, mut b) = pair(QpType::Rc, 3);
        a.reg(1, 0x10_0000, 8192, ALL);
        b.reg(2, 0x20_0000, 8192, FLUSHABLE);
        let len = 3000u32;
        let mut w = send_wqe(1, wop::RDMA_WRITE);
        w.remote_addr = 0x20_0100;
        w.rkey = 2;
        a.post_send(w, &[Sge { addr: 0x10_0000, length: len, lkey: 1 }]);
        a.post_send(flush_wqe(2, 0x20_0100, 2, len as u64, 1, 0), &[]);
        let mut w = send_wqe(3, wop::RDMA_READ);
        w.remote_addr = 0x20_0100;
        w.rkey = 2;
        a.post_send(w, &[Sge { addr: 0x10_1000, length: len, lkey: 1 }]);
        a.post_send(atomic_write_wqe(4, 0x20_1ff0, 2, 0x1111_2222_3333_4444u64.to_ne_bytes()), &[]);
        let mut w = atomic_write_wqe(5, 0x20_1ff0, 2, 0x5555_6666_7777_8888u64.to_ne_bytes());
        w.send_flags = 0; // unsignaled: the READ after it completes it
        a.post_send(w, &[]);
        let mut w = send_wqe(6, wop::RDMA_READ);
        w.remote_addr = 0x20_1ff0;
        w.rkey = 2;
        a.post_send(w, &[Sge { addr: 0x10_1ff0, length: 8, lkey: 1 }]);
        a.post_send(flush_wqe(7, 0, 2, 0, 1, 1), &[]);
        pump(&mut a, &mut b, f, seed, |a, _| a.env.cqes.len() >= 6);
        let sc = a.cqes(CqSel::Send);
        assert_eq!(
            sc.iter().map(|c| (c.wr_id, c.status, c.opcode)).collect::<Vec<_>>(),
            vec![
                (1, wc::SUCCESS, wc::OP_RDMA_WRITE),
                (2, wc::SUCCESS, wc::OP_FLUSH),
                (3, wc::SUCCESS, wc::OP_RDMA_READ),
                (4, wc::SUCCESS, wc::OP_ATOMIC_WRITE),
                (6, wc::SUCCESS, wc::OP_RDMA_READ),
                (7, wc::SUCCESS, wc::OP_FLUSH),
            ],
            "seed {seed}"
        );
        assert_eq!(sc[3].byte_len, 8);
        let src = a.region(1)[..len as usize].to_vec();
        assert_eq!(&b.region(2)[0x100..0x100 + len as usize], &src[..], "WRITE bytes");
        assert_eq!(&a.region(1)[0x1000..0x1000 + len as usize], &src[..], "READ after FLUSH");
        assert_eq!(&b.region(2)[0x1ff0..0x1ff8], &0x5555_6666_7777_8888u64.to_ne_bytes(), "the later ATOMIC WRITE stays");
        assert_eq!(&a.region(1)[0x1ff0..0x1ff8], &0x5555_6666_7777_8888u64.to_ne_bytes(), "and is what the READ saw");
        assert_eq!(b.env.atomic_writes, 2, "seed {seed}: each ATOMIC WRITE executed once");
        assert!(b.env.flushes.contains(&(2, 0x20_0100, len as u64)));
        assert!(b.env.flushes.contains(&(2, 0x20_0000, 8192)));
        assert_eq!((a.qp.rd_outstanding, a.env.live_refs, b.env.live_refs), (0, 0, 0));
        dups += b.env.counters.duplicate_requests.load(core::sync::atomic::Ordering::Relaxed);
    }
    assert!(dups > 0, "the responder saw duplicates");
}

#[test]
fn replayed_atomic_write_and_flush_are_answered_not_executed() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, FLUSHABLE);
    a.post_send(atomic_write_wqe(1, 0x8008, 2, [0xaa; 8]), &[]);
    a.post_send(flush_wqe(2, 0x8000, 2, 16, 1, 0), &[]);
    a.qp.run(&mut a.env, 64);
    let reqs = a.env.out.clone();
    deliver(&mut a, &mut b, &mut Rng(1), CLEAN, &mut VecDeque::new());
    b.qp.run(&mut b.env, 64);
    assert_eq!((b.env.atomic_writes, b.env.flushes.len(), b.env.out.len()), (1, 1, 2));
    b.env.out.clear();
    // Something else lands in the slot; then both requests come again.
    b.env.regions[0].bytes[8..16].copy_from_slice(&[0xbb; 8]);
    for ip in &reqs {
        let rx = packet::parse(ip, Some(&SoftCrc)).unwrap();
        b.qp.receive(&mut b.env, &rx);
    }
    b.qp.run(&mut b.env, 64);
    assert_eq!(&b.region(2)[8..16], &[0xbb; 8], "a replay must not write again");
    assert_eq!((b.env.atomic_writes, b.env.flushes.len()), (1, 1));
    assert_eq!(b.env.counters.duplicate_requests.load(core::sync::atomic::Ordering::Relaxed), 2);
    let answers: Vec<(u8, u32)> = b.env.out.iter().map(|ip| (transport(ip)[0], packet::parse(ip, None).unwrap().bth.psn)).collect();
    assert_eq!(answers, vec![(0x10, 0xff_fff0), (0x10, 0xff_fff1)], "answered again, in order");
    assert_eq!(b.qp.state(), QpState::Rts);
}

#[test]
fn responses_leave_in_request_order() {
    // A READ of three packets, then an ATOMIC WRITE, a FLUSH and a SEND: the
    // responder answers in PSN order, the READ's data first, the ACK last.
    let (mut a, mut b) = pair(QpType::Rc, 1);
    a.reg(1, 0x1000, 4096, ALL);
    b.reg(2, 0x8000, 4096, FLUSHABLE);
    b.post_recv(9, &[Sge { addr: 0x8800, length: 64, lkey: 2 }]);
    let mut w = send_wqe(1, wop::RDMA_READ);
    w.remote_addr = 0x8000;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x1000, length: 600, lkey: 1 }]);
    a.post_send(atomic_write_wqe(2, 0x8400, 2, [7; 8]), &[]);
    a.post_send(flush_wqe(3, 0x8400, 2, 8, 1, 0), &[]);
    a.post_inline(send_wqe(4, wop::SEND), b"last");
    a.qp.run(&mut a.env, 64);
    deliver(&mut a, &mut b, &mut Rng(1), CLEAN, &mut VecDeque::new());
    b.qp.run(&mut b.env, 64);
    let order: Vec<(u8, u32)> = b.env.out.iter().map(|ip| (transport(ip)[0], packet::parse(ip, None).unwrap().bth.psn)).collect();
    assert_eq!(
        order,
        vec![(0x0d, 0xff_fff0), (0x0e, 0xff_fff1), (0x0f, 0xff_fff2), (0x10, 0xff_fff3), (0x10, 0xff_fff4), (0x11, 0xff_fff5)]
    );
    deliver(&mut b, &mut a, &mut Rng(1), CLEAN, &mut VecDeque::new());
    let ids: Vec<u64> = a.cqes(CqSel::Send).iter().map(|c| c.wr_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
}

#[test]
fn an_ack_past_an_atomic_write_or_flush_completes_them() {
    // Their empty READ RESPONSE ONLY is lost; the ACK of the SEND after them is
    // not: it acknowledges them too (they return no data), as rxe's completer does.
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, FLUSHABLE);
    b.post_recv(9, &[Sge { addr: 0x8020, length: 16, lkey: 2 }]);
    a.post_send(atomic_write_wqe(1, 0x8000, 2, [1; 8]), &[]);
    a.post_send(flush_wqe(2, 0x8000, 2, 8, 1, 0), &[]);
    a.post_inline(send_wqe(3, wop::SEND), b"x");
    a.qp.run(&mut a.env, 64);
    deliver(&mut a, &mut b, &mut Rng(1), CLEAN, &mut VecDeque::new());
    b.qp.run(&mut b.env, 64);
    assert_eq!(b.env.out.len(), 3);
    b.env.out.drain(..2);
    deliver(&mut b, &mut a, &mut Rng(1), CLEAN, &mut VecDeque::new());
    let sc = a.cqes(CqSel::Send);
    assert_eq!(
        sc.iter().map(|c| (c.wr_id, c.status, c.opcode)).collect::<Vec<_>>(),
        vec![(1, wc::SUCCESS, wc::OP_ATOMIC_WRITE), (2, wc::SUCCESS, wc::OP_FLUSH), (3, wc::SUCCESS, wc::OP_SEND)]
    );
    assert_eq!(a.qp.rd_outstanding, 0);
}

#[test]
fn atomic_write_and_flush_count_against_max_rd_atomic_and_fences() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, FLUSHABLE);
    let m = QpAttr { max_rd_atomic: 1, ..Default::default() };
    a.qp.modify(&mut a.env, &m, mask::MAX_QP_RD_ATOMIC).unwrap();
    a.post_send(atomic_write_wqe(1, 0x8000, 2, [1; 8]), &[]);
    a.post_send(flush_wqe(2, 0x8000, 2, 8, 1, 0), &[]);
    let mut w = send_wqe(3, wop::SEND);
    w.send_flags |= send_flags::FENCE;
    a.post_inline(w, b"after");
    a.qp.run(&mut a.env, 64);
    assert_eq!(a.env.out.len(), 1, "one outstanding at a time");
    b.post_recv(9, &[Sge { addr: 0x8020, length: 16, lkey: 2 }]);
    pump(&mut a, &mut b, CLEAN, 1, |a, _| a.env.cqes.len() >= 3);
    let ids: Vec<u64> = a.cqes(CqSel::Send).iter().map(|c| c.wr_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

#[test]
fn atomic_write_and_flush_errors() {
    // Each case: the requester's status, and whether the QP fails.
    struct Case {
        name: &'static str,
        region: Access,
        qp_access: u32,
        wqe: SendWqe,
        status: u32,
    }
    let cases = [
        Case { name: "ATOMIC WRITE, region without REMOTE_WRITE", region: Access::LOCAL_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC, qp_access: 0xe, wqe: atomic_write_wqe(1, 0x8000, 2, [1; 8]), status: wc::REM_ACCESS_ERR },
        Case { name: "ATOMIC WRITE, QP without REMOTE_WRITE", region: FLUSHABLE, qp_access: 0xc, wqe: atomic_write_wqe(1, 0x8000, 2, [1; 8]), status: wc::REM_ACCESS_ERR },
        Case { name: "ATOMIC WRITE out of bounds", region: FLUSHABLE, qp_access: 0xe, wqe: atomic_write_wqe(1, 0x8040, 2, [1; 8]), status: wc::REM_ACCESS_ERR },
        Case { name: "ATOMIC WRITE, bad rkey", region: FLUSHABLE, qp_access: 0xe, wqe: atomic_write_wqe(1, 0x8000, 3, [1; 8]), status: wc::REM_ACCESS_ERR },
        Case { name: "ATOMIC WRITE misaligned", region: FLUSHABLE, qp_access: 0xe, wqe: atomic_write_wqe(1, 0x8004, 2, [1; 8]), status: wc::LOC_LEN_ERR },
        Case { name: "FLUSH, region without FLUSH_GLOBAL", region: ALL, qp_access: 0x10e, wqe: flush_wqe(1, 0x8000, 2, 8, 1, 0), status: wc::REM_ACCESS_ERR },
        Case { name: "FLUSH, QP without FLUSH_GLOBAL", region: FLUSHABLE, qp_access: 0xe, wqe: flush_wqe(1, 0x8000, 2, 8, 1, 0), status: wc::REM_ACCESS_ERR },
        Case { name: "FLUSH to persistence", region: FLUSHABLE, qp_access: 0x30e, wqe: flush_wqe(1, 0x8000, 2, 8, 2, 0), status: wc::REM_ACCESS_ERR },
        Case { name: "FLUSH out of bounds", region: FLUSHABLE, qp_access: 0x10e, wqe: flush_wqe(1, 0x8000, 2, 65, 1, 0), status: wc::REM_ACCESS_ERR },
        Case { name: "FLUSH of no type", region: FLUSHABLE, qp_access: 0x10e, wqe: flush_wqe(1, 0x8000, 2, 8, 0, 0), status: wc::LOC_QP_OP_ERR },
        Case { name: "FLUSH of an unknown level", region: FLUSHABLE, qp_access: 0x10e, wqe: flush_wqe(1, 0x8000, 2, 8, 1, 2), status: wc::LOC_QP_OP_ERR },
        Case { name: "FLUSH longer than a RETH holds", region: FLUSHABLE, qp_access: 0x10e, wqe: flush_wqe(1, 0x8000, 2, 1 << 32, 1, 0), status: wc::LOC_LEN_ERR },
    ];
    for c in cases {
        let (mut a, mut b) = pair(QpType::Rc, 3);
        b.reg(2, 0x8000, 64, c.region);
        let m = QpAttr { access_flags: c.qp_access, ..Default::default() };
        b.qp.modify(&mut b.env, &m, mask::ACCESS_FLAGS).unwrap();
        a.post_send(c.wqe, &[]);
        a.post_send(send_wqe(2, wop::RDMA_WRITE), &[]);
        pump(&mut a, &mut b, CLEAN, 1, |a, _| a.env.cqes.len() >= 2);
        let sc = a.cqes(CqSel::Send);
        assert_eq!((sc[0].wr_id, sc[0].status), (1, c.status), "{}", c.name);
        assert_eq!((sc[1].wr_id, sc[1].status), (2, wc::WR_FLUSH_ERR), "{}", c.name);
        assert_eq!(a.qp.state(), QpState::Err, "{}", c.name);
        let remote = c.status == wc::REM_ACCESS_ERR;
        assert_eq!(b.qp.state() == QpState::Err, remote, "{}", c.name);
        assert_eq!((b.env.atomic_writes, b.env.flushes.len()), (0, 0), "{}", c.name);
        assert_eq!((a.env.live_refs, b.env.live_refs), (0, 0), "{}", c.name);
    }
}

#[test]
fn malformed_atomic_writes_get_an_invalid_request_nak() {
    // Payloads of 4 and 12 bytes, a DMA length of 16, an unaligned address: NAK
    // Invalid Request, nothing written, the responder's QP fails.
    for (pay, dma_len, va) in [(4usize, 8u32, 0x8000u64), (12, 8, 0x8000), (8, 16, 0x8000), (8, 8, 0x8004)] {
        let (mut a, mut b) = pair(QpType::Rc, 3);
        b.reg(2, 0x8000, 64, FLUSHABLE);
        let before = b.region(2).clone();
        let mut w = atomic_write_wqe(1, 0x8000, 2, [9; 8]);
        if va % 8 != 0 {
            w.remote_addr = va;
            // The requester refuses that itself; forge the packet from the good one.
        }
        a.post_send(atomic_write_wqe(1, 0x8000, 2, [9; 8]), &[]);
        a.qp.run(&mut a.env, 64);
        let good = a.env.out.pop().unwrap();
        let mut t = transport(&good)[..28].to_vec();
        t[12..20].copy_from_slice(&va.to_be_bytes());
        t[24..28].copy_from_slice(&dma_len.to_be_bytes());
        t.extend(core::iter::repeat_n(9u8, pay));
        let mut ip = vec![0u8; 28];
        ip.copy_from_slice(&good[..28]);
        ip.extend_from_slice(&t);
        ip.extend_from_slice(&[0; 4]);
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        icrc::fill(&SoftCrc, &mut ip).unwrap();
        let rx = packet::parse(&ip, Some(&SoftCrc)).unwrap();
        b.qp.receive(&mut b.env, &rx);
        let nak = packet::parse(&b.env.out[0], None).unwrap();
        assert_eq!(nak.bth.opcode, 0x11, "{pay} {dma_len} {va:#x}");
        assert_eq!(nak.aeth.unwrap().syndrome, 0x61, "NAK invalid request");
        assert_eq!(b.region(2), &before);
        assert_eq!(b.qp.state(), QpState::Err);
        assert_eq!(b.env.events, vec![QpEvent::InvalidRequest], "no receive WQE reports it");
        let _ = w;
    }
}

/// `ip` (an IPv4 datagram from a node) with its transport bytes (BTH to ICRC, not
/// included) changed by `f`, lengths and ICRC made right again: a packet that
/// passes every check but the one the test is about.
fn forge(ip: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut t = transport(ip)[..ip.len() - 32].to_vec();
    f(&mut t);
    let mut out = ip[..28].to_vec();
    out.extend_from_slice(&t);
    out.extend_from_slice(&[0; 4]);
    let total = out.len() as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&(total - 20).to_be_bytes());
    icrc::fill(&SoftCrc, &mut out).unwrap();
    out
}

fn set_psn(t: &mut [u8], psn: u32) {
    t[9..12].copy_from_slice(&psn.to_be_bytes()[1..]);
}

fn count(c: &core::sync::atomic::AtomicU64) -> u64 {
    c.load(core::sync::atomic::Ordering::Relaxed)
}

#[test]
fn pad_on_an_opcode_without_payload_is_malformed() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, ALL);
    a.reg(1, 0x1000, 64, ALL);
    let mut w = send_wqe(1, wop::RDMA_WRITE);
    w.remote_addr = 0x8000;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    a.qp.run(&mut a.env, 64);
    let req = a.env.out.pop().unwrap();
    b.qp.receive(&mut b.env, &packet::parse(&req, Some(&SoftCrc)).unwrap());
    b.qp.run(&mut b.env, 64);
    let ack = b.env.out.pop().unwrap();
    assert_eq!(packet::parse(&ack, Some(&SoftCrc)).unwrap().bth.opcode, 0x11);
    // PadCnt 1 to 3 with as many bytes of pad after the AETH: an ACK has neither.
    for pad in 1..=3u8 {
        let bad = forge(&ack, |t| {
            t[1] = (t[1] & !0x30) | pad << 4;
            t.extend(core::iter::repeat_n(0, pad as usize));
        });
        assert_eq!(packet::parse(&bad, Some(&SoftCrc)).unwrap_err(), packet::Drop::Malformed, "pad {pad}");
    }
    // A pad longer than the payload, on an opcode that has payload.
    let bad = forge(&req, |t| {
        t.truncate(28);
        t[1] |= 0x30;
    });
    assert_eq!(packet::parse(&bad, Some(&SoftCrc)).unwrap_err(), packet::Drop::Malformed);
    // The ACK as it was still completes the WRITE.
    a.qp.receive(&mut a.env, &packet::parse(&ack, Some(&SoftCrc)).unwrap());
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::SUCCESS);
}

#[test]
fn forged_psns_are_counted_and_leave_the_connection_alone() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    b.reg(2, 0x8000, 64, ALL);
    a.reg(1, 0x1000, 64, ALL);
    b.post_recv(1, &[Sge { addr: 0x8000, length: 64, lkey: 2 }]);
    a.post_send(send_wqe(1, wop::SEND), &[Sge { addr: 0x1000, length: 16, lkey: 1 }]);
    a.qp.run(&mut a.env, 64);
    let good = a.env.out.pop().unwrap();
    let epsn = b.qp.epsn;
    assert_eq!(packet::parse(&good, None).unwrap().bth.psn, epsn);

    // Ahead of the expected PSN, in and out of any window: one sequence NAK (to the
    // peer, which never sent those PSNs), then silence; every one counted.
    for (k, d) in [1u32, 2, 1 << 22, (1 << 23) - 1].into_iter().enumerate() {
        let f = forge(&good, |t| set_psn(t, psn::add(epsn, d)));
        b.qp.receive(&mut b.env, &packet::parse(&f, Some(&SoftCrc)).unwrap());
        b.qp.run(&mut b.env, 64);
        assert_eq!(count(&b.env.counters.out_of_sequence), k as u64 + 1);
    }
    assert_eq!(count(&b.env.counters.seq_naks_sent), 1);
    // Behind it: duplicates, re-ACKed, nothing executed (SEND, WRITE with a key b
    // does not have, READ and atomic with nothing to replay).
    for (k, d) in [1u32, 5, 1 << 22, 1 << 23].into_iter().enumerate() {
        let f = forge(&good, |t| set_psn(t, psn::add(epsn, psn::MASK + 1 - d)));
        b.qp.receive(&mut b.env, &packet::parse(&f, Some(&SoftCrc)).unwrap());
        assert_eq!(count(&b.env.counters.duplicate_requests), k as u64 + 1);
    }
    let dup_write = forge(&good, |t| {
        t[0] = 0x0a; // RDMA WRITE ONLY
        set_psn(t, psn::add(epsn, psn::MASK));
        let payload = t.split_off(12);
        t.extend_from_slice(&0x8000u64.to_be_bytes());
        t.extend_from_slice(&0x0bad_u32.to_be_bytes());
        t.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        t.extend_from_slice(&payload);
    });
    b.qp.receive(&mut b.env, &packet::parse(&dup_write, Some(&SoftCrc)).unwrap());
    b.qp.run(&mut b.env, 64);
    assert_eq!(count(&b.env.counters.duplicate_requests), 5);
    assert!(b.env.cqes.is_empty(), "a forged request completed a receive");
    assert_eq!(b.qp.state(), QpState::Rts);
    assert_eq!(b.qp.epsn, epsn);

    // The NAK and ACKs b sent at a, which has nothing outstanding beyond the SEND:
    // a sequence NAK for the SEND's PSN sends it again, the rest are duplicates.
    for p in b.env.out.drain(..) {
        a.qp.receive(&mut a.env, &packet::parse(&p, Some(&SoftCrc)).unwrap());
    }
    // Responses for PSNs a never sent: counted, dropped.
    let ack = {
        let mut ack = good[..28].to_vec();
        let mut t = vec![0x11, 0, 0xff, 0xff, 0, 0, 0, 17, 0, 0, 0, 0, 0x1f, 0, 0, 0];
        set_psn(&mut t, psn::add(a.qp.next_psn, 3));
        ack.extend_from_slice(&t);
        ack.extend_from_slice(&[0; 4]);
        let n = ack.len() as u16;
        ack[2..4].copy_from_slice(&n.to_be_bytes());
        ack[24..26].copy_from_slice(&(n - 20).to_be_bytes());
        ack[12..16].copy_from_slice(&good[16..20]);
        ack[16..20].copy_from_slice(&good[12..16]);
        icrc::fill(&SoftCrc, &mut ack).unwrap();
        ack
    };
    a.qp.receive(&mut a.env, &packet::parse(&ack, Some(&SoftCrc)).unwrap());
    assert_eq!(count(&a.env.counters.stray_responses), 1);
    let far = forge(&ack, |t| set_psn(t, psn::add(a.qp.next_psn, (1 << 23) - 1)));
    a.qp.receive(&mut a.env, &packet::parse(&far, Some(&SoftCrc)).unwrap());
    assert_eq!(count(&a.env.counters.stray_responses), 2);
    // A reserved syndrome (kind 10) for a PSN in flight: malformed, ignored.
    let reserved = forge(&ack, |t| {
        set_psn(t, epsn);
        t[12] = 0x40;
    });
    a.qp.receive(&mut a.env, &packet::parse(&reserved, Some(&SoftCrc)).unwrap());
    assert_eq!(count(&a.env.counters.malformed), 1);
    assert!(a.env.cqes.is_empty(), "a forged response completed the SEND");
    assert_eq!(a.qp.state(), QpState::Rts);

    // The real SEND still lands, once, with its bytes.
    b.qp.receive(&mut b.env, &packet::parse(&good, Some(&SoftCrc)).unwrap());
    pump(&mut a, &mut b, CLEAN, 1, |a, b| !a.env.cqes.is_empty() && !b.env.cqes.is_empty());
    let r = b.cqes(CqSel::Recv);
    assert_eq!(r.iter().map(|c| (c.wr_id, c.status, c.byte_len)).collect::<Vec<_>>(), [(1, wc::SUCCESS, 16)]);
    assert_eq!(a.cqes(CqSel::Send)[0].status, wc::SUCCESS);
    assert_eq!(&b.region(2)[..16], &a.region(1)[..16]);
    assert_eq!((a.qp.state(), b.qp.state()), (QpState::Rts, QpState::Rts));
    assert_eq!(count(&a.env.counters.stray_responses), 2);
}

/// A receiver slower than the retransmit timeout for a whole window, as a debug
/// kernel's work item is: b takes one packet per 50 us tick from an unbounded
/// queue (a window of 256 takes 12.8 ms, the timeout is 4.2 ms), and stalls for
/// the first 10 ms.  Each timeout puts a window of duplicates in the queue ahead
/// of new data, whose ACKs then come later still; with a fixed window that feeds
/// on itself.  Halving the window per timeout ends the transfer, byte for byte,
/// with a bounded number of packets sent.
#[test]
fn a_slow_receiver_shrinks_the_window_instead_of_drowning_in_duplicates() {
    const TICK: u64 = 50_000;
    const LEN: usize = 512 * 1024;
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x10_0000, LEN, ALL);
    b.reg(2, 0x20_0000, LEN, ALL);
    let mut w = send_wqe(7, wop::RDMA_WRITE);
    w.remote_addr = 0x20_0000;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x10_0000, length: LEN as u32, lkey: 1 }]);
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut sent, mut min_cwnd) = (0usize, a.qp.cwnd);
    let mut tick = 0u64;
    while a.env.cqes.is_empty() {
        tick += 1;
        assert!(tick < 1_000_000, "no completion after {sent} packets sent (queue {})", queue.len());
        a.env.now += TICK;
        b.env.now += TICK;
        a.qp.run(&mut a.env, 64);
        sent += a.env.out.len();
        queue.extend(a.env.out.drain(..));
        min_cwnd = min_cwnd.min(a.qp.cwnd);
        if b.env.now > 10_000_000 {
            if let Some(p) = queue.pop_front() {
                let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
                b.qp.receive(&mut b.env, &rx);
            }
        }
        b.qp.run(&mut b.env, 64);
        for p in b.env.out.drain(..) {
            let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
            a.qp.receive(&mut a.env, &rx);
        }
    }
    let sc = a.cqes(CqSel::Send);
    assert_eq!((sc[0].wr_id, sc[0].status), (7, wc::SUCCESS));
    assert_eq!(&b.region(2)[..], &a.region(1)[..], "WRITE bytes");
    let packets = LEN / 1024;
    assert!(sent < 3 * packets, "{sent} packets sent for {packets}");
    assert!(min_cwnd < qp::WINDOW, "the timeouts shrank the window (min {min_cwnd})");
}

/// Unsignaled WQEs in a row share the ACK of the signaled one behind them: only
/// the packets the requester waits on ask for an ACK (the last of the signaled
/// WQE), and a run of unsignaled WQEs alone asks at its end; every byte arrives.
#[test]
fn unsignaled_runs_share_one_ack_request() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x10_0000, 16 * 64, ALL);
    b.reg(2, 0x20_0000, 16 * 64, ALL);
    let post = |a: &mut Side, k: u64, signaled: bool| {
        let mut w = send_wqe(k, wop::RDMA_WRITE);
        w.send_flags = if signaled { send_flags::SIGNALED } else { 0 };
        w.remote_addr = 0x20_0000 + k * 64;
        w.rkey = 2;
        a.post_send(w, &[Sge { addr: 0x10_0000 + k * 64, length: 64, lkey: 1 }]);
    };
    for k in 0..8 {
        post(&mut a, k, k == 7);
    }
    a.qp.run(&mut a.env, 64);
    let ack_reqs = |out: &[Vec<u8>]| -> Vec<bool> {
        out.iter().map(|p| packet::parse(p, Some(&SoftCrc)).unwrap().bth.ack_req).collect()
    };
    let mut want = vec![false; 8];
    want[7] = true;
    assert_eq!(ack_reqs(&a.env.out), want, "only the signaled WRITE asks for an ACK");
    pump(&mut a, &mut b, CLEAN, 3, |a, _| !a.env.cqes.is_empty());
    assert_eq!(a.cqes(CqSel::Send).iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(), vec![(7, wc::SUCCESS)]);
    // Unsignaled only: the last one taken asks, so that the queue's slots come back.
    for k in 8..12 {
        post(&mut a, k, false);
    }
    a.qp.run(&mut a.env, 64);
    assert_eq!(ack_reqs(&a.env.out), vec![false, false, false, true]);
    pump(&mut a, &mut b, CLEAN, 4, |a, _| a.qp.s_head == a.qp.s_tail);
    assert_eq!(&b.region(2)[..12 * 64], &a.region(1)[..12 * 64], "WRITE bytes");
}

/// One READ response lost in the middle of a long READ: the responses behind the
/// gap, already in flight, ask for it once between them (one retransmission, one
/// duplicate request at the responder), not once each; every byte arrives.
#[test]
fn a_lost_read_response_asks_again_once_not_once_per_packet_behind_it() {
    const LEN: usize = 16 * 1024;
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x10_0000, LEN, ALL);
    b.reg(2, 0x20_0000, LEN, ALL);
    assert_ne!(a.region(1)[..], b.region(2)[..], "the regions' patterns differ");
    let mut w = send_wqe(5, wop::RDMA_READ);
    w.remote_addr = 0x20_0000;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x10_0000, length: LEN as u32, lkey: 1 }]);
    let mut dropped = false;
    for _ in 0..100 {
        a.qp.run(&mut a.env, 64);
        for p in a.env.out.drain(..) {
            let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
            b.qp.receive(&mut b.env, &rx);
        }
        b.qp.run(&mut b.env, 64);
        // The responder answers the whole READ at once: lose its third packet.
        let out: Vec<Vec<u8>> = b.env.out.drain(..).collect();
        for (k, p) in out.into_iter().enumerate() {
            if k == 2 && !dropped {
                dropped = true;
                continue;
            }
            let rx = packet::parse(&p, Some(&SoftCrc)).unwrap();
            a.qp.receive(&mut a.env, &rx);
        }
        if !a.env.cqes.is_empty() {
            break;
        }
    }
    assert!(dropped);
    let sc = a.cqes(CqSel::Send);
    assert_eq!((sc[0].wr_id, sc[0].status), (5, wc::SUCCESS));
    assert_eq!(&a.region(1)[..], &b.region(2)[..], "READ bytes");
    assert_eq!(count(&a.env.counters.retransmits), 1, "the requester's retransmissions");
    assert_eq!(count(&b.env.counters.duplicate_requests), 1, "the responder's duplicates");
}

#[test]
fn uc_drops_a_reordered_message_whole_and_counts_each_drop() {
    // mtu 3 is 1024 bytes: each 3000-byte SEND is three packets.
    const LEN: u32 = 3000;
    let (mut a, mut b) = pair(QpType::Uc, 3);
    a.reg(1, 0x10_0000, 4 * LEN as usize, ALL);
    b.reg(2, 0x20_0000, 4 * LEN as usize, ALL);
    for k in 0..4u32 {
        a.post_send(send_wqe(10 + k as u64, wop::SEND), &[Sge { addr: 0x10_0000 + (k * LEN) as u64, length: LEN, lkey: 1 }]);
    }
    // Two receives: the message cut off leaves its WQE for the next one.
    for k in 0..2u32 {
        b.post_recv(20 + k as u64, &[Sge { addr: 0x20_0000 + (k * LEN) as u64, length: LEN, lkey: 2 }]);
    }
    a.qp.run(&mut a.env, 64);
    let mut out: Vec<Vec<u8>> = a.env.out.drain(..).collect();
    assert_eq!(out.len(), 12, "four messages of three packets");
    // The first message's last two packets arrive swapped: a PSN gap, then a stale
    // PSN.  UC cannot recover it; the next message must still land.
    out.swap(1, 2);
    for p in &out {
        let rx = packet::parse(p, Some(&SoftCrc)).unwrap();
        b.qp.receive(&mut b.env, &rx);
    }
    b.qp.run(&mut b.env, 64);
    let rc = b.cqes(CqSel::Recv);
    // The dropped message's receive WQE is reused: messages 2 and 3 land in the
    // first two receives, and the fourth finds none.
    assert_eq!(rc.iter().map(|c| (c.wr_id, c.status, c.byte_len)).collect::<Vec<_>>(), vec![
        (20, wc::SUCCESS, LEN),
        (21, wc::SUCCESS, LEN)
    ]);
    let (src, dst) = (a.region(1), b.region(2));
    let l = LEN as usize;
    assert_eq!(&dst[..l], &src[l..2 * l], "message 2 in the first receive");
    assert_eq!(&dst[l..2 * l], &src[2 * l..3 * l], "message 3 in the second receive");
    assert_eq!(count(&b.env.counters.uc_drops), 2, "one message cut by the swap, one with no receive");
    // PSNs 2 and 1 were not the next expected, and neither was 3 after 1.
    assert_eq!(count(&b.env.counters.out_of_sequence), 3);
    assert_eq!(count(&b.env.counters.completions), 2);
    // UC sends complete when sent: all four, successfully.
    let sc = a.cqes(CqSel::Send);
    assert_eq!(sc.len(), 4);
    assert!(sc.iter().all(|c| c.status == wc::SUCCESS));
}

/// Responses wait for the work item only while nobody waits on them: while every
/// WQE awaiting an ACK is unsignaled, the QP defers its responses and asks for no
/// doorbell (the deferred ACK's round takes what is posted meanwhile); a signaled
/// WQE or a READ in flight makes its responses run at once, and an idle QP asks
/// for a doorbell again.
#[test]
fn only_acks_of_unsignaled_wqes_wait_for_the_work_item() {
    let (mut a, mut b) = pair(QpType::Rc, 3);
    a.reg(1, 0x10_0000, 4096, ALL);
    b.reg(2, 0x20_0000, 4096, ALL);
    let post = |a: &mut Side, k: u64, op: u32, signaled: bool| {
        let mut w = send_wqe(k, op);
        w.send_flags = if signaled { send_flags::SIGNALED } else { 0 };
        w.remote_addr = 0x20_0000 + k * 64;
        w.rkey = 2;
        a.post_send(w, &[Sge { addr: 0x10_0000 + k * 64, length: 64, lkey: 1 }]);
    };
    assert!(!a.qp.defers_responses() && a.qp.wants_doorbell(), "idle: ring");
    post(&mut a, 0, wop::RDMA_WRITE, false);
    a.qp.run(&mut a.env, 64);
    assert!(a.qp.defers_responses(), "an unsignaled WRITE awaits its ACK");
    assert!(!a.qp.wants_doorbell(), "its deferred ACK takes the next WQEs: no doorbell");
    post(&mut a, 1, wop::RDMA_WRITE, true);
    a.qp.run(&mut a.env, 64);
    assert!(!a.qp.defers_responses(), "a signaled WRITE awaits an ACK: run it at once");
    assert!(a.qp.wants_doorbell());
    pump(&mut a, &mut b, CLEAN, 3, |a, _| a.qp.s_head == a.qp.s_tail);
    assert_eq!(a.cqes(CqSel::Send).iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(), vec![(1, wc::SUCCESS)]);
    assert!(!a.qp.defers_responses() && a.qp.wants_doorbell(), "all acknowledged: idle again");
    post(&mut a, 2, wop::RDMA_READ, false);
    a.qp.run(&mut a.env, 64);
    assert!(!a.qp.defers_responses(), "a READ's response carries its data: never deferred");
    pump(&mut a, &mut b, CLEAN, 3, |a, _| a.qp.s_head == a.qp.s_tail);
    assert_eq!(&a.region(1)[2 * 64..3 * 64], &b.region(2)[2 * 64..3 * 64], "READ bytes");
    assert_eq!(&b.region(2)[..2 * 64], &a.region(1)[..2 * 64], "WRITE bytes");
    // A multi-packet WRITE: one doorbell moves many packets; run its ACKs at once.
    let mut w = send_wqe(3, wop::RDMA_WRITE);
    w.send_flags = 0;
    w.remote_addr = 0x20_0000;
    w.rkey = 2;
    a.post_send(w, &[Sge { addr: 0x10_0000, length: 3000, lkey: 1 }]);
    a.qp.run(&mut a.env, 64);
    assert_eq!(a.env.out.len(), 3, "three packets at path MTU 1024");
    assert!(!a.qp.defers_responses(), "a WRITE of several packets: its ACKs run at once");
    pump(&mut a, &mut b, CLEAN, 3, |a, _| a.qp.s_head == a.qp.s_tail);
    assert_eq!(&b.region(2)[..3000], &a.region(1)[..3000], "WRITE bytes");
    // The peer answers (a ping-pong): from then on nothing waits.
    let mut w = send_wqe(9, wop::RDMA_WRITE);
    w.remote_addr = 0x10_0000;
    w.rkey = 1;
    b.post_send(w, &[Sge { addr: 0x20_0000, length: 64, lkey: 2 }]);
    pump(&mut b, &mut a, CLEAN, 3, |b, _| b.qp.s_head == b.qp.s_tail);
    assert_eq!(&a.region(1)[..64], &b.region(2)[..64], "the answer's bytes");
    a.qp.doorbell();
    post(&mut a, 4, wop::RDMA_WRITE, false);
    a.qp.run(&mut a.env, 64);
    assert!(!a.qp.defers_responses(), "in a ping-pong, run the ACK at once");
    assert!(a.qp.wants_doorbell());
    pump(&mut a, &mut b, CLEAN, 3, |a, _| a.qp.s_head == a.qp.s_tail);
    a.qp.doorbell();
    post(&mut a, 5, wop::RDMA_WRITE, false);
    a.qp.run(&mut a.env, 64);
    assert!(a.qp.defers_responses(), "a doorbell with no request before it: streaming again");
    assert_eq!(a.qp.state, QpState::Rts, "no error on the way");
}
