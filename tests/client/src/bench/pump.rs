//! The loops both roles spin in: keeping a send queue full and reaping completions
//! (`stream`), tracking signaled sends in ping-pong loops (`Sends`), and waiting for
//! receives.  They busy-poll the CQ with no system call of their own, as perftest
//! does; the clock is read only every few thousand empty polls, to notice a stall.

use rdma_sys::{ibv_wc, ibv_wc_opcode, ibv_wc_status};

use ferrite_testclient::endpoint::{status_str, Endpoint, SendChain};
use ferrite_testclient::proto::Conn;

use crate::clock::now_ns;

/// Empty polls between two looks at the clock (and at the side channel).
pub const SPINS: u32 = 4096;

/// An empty spin of a latency loop: with `yield_idle`, give the CPU to whatever else
/// is runnable on it (the peer, pinned to the same CPU, or the device's worker).
pub fn idle(yield_idle: bool) {
    if yield_idle {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// A buffer of completions and the one ibv_poll_cq that fills it.
pub struct Cq {
    wcs: Vec<ibv_wc>,
}

impl Cq {
    pub fn new() -> Cq {
        // SAFETY: ibv_wc is plain data; all-zero is a valid value of it.
        Cq { wcs: (0..32).map(|_| unsafe { std::mem::zeroed() }).collect() }
    }

    pub fn poll(&mut self, ep: &Endpoint) -> Result<&[ibv_wc], String> {
        let n = ep.poll_raw(&mut self.wcs)?;
        self.checked(n)
    }

    /// Poll, sleeping on the endpoint's completion channel (if it has one) while the
    /// CQ is empty, for at most `ms` milliseconds.
    pub fn sleep(&mut self, ep: &Endpoint, ms: u64) -> Result<&[ibv_wc], String> {
        let n = ep.poll_or_sleep(&mut self.wcs, std::time::Duration::from_millis(ms))?;
        self.checked(n)
    }

    fn checked(&self, n: usize) -> Result<&[ibv_wc], String> {
        let got = &self.wcs[..n];
        if let Some(w) = got.iter().find(|w| w.status != ibv_wc_status::IBV_WC_SUCCESS) {
            return Err(format!("completion wr_id {} opcode {} status {} ({})", w.wr_id, w.opcode,
                               status_str(w.status), w.status));
        }
        Ok(got)
    }
}

/// Notices a loop that made no progress for `timeout_ns`, or a peer that wrote on the
/// side channel while we spun (it gave up).
pub struct Watch<'a> {
    spins: u32,
    last: u64,
    timeout_ns: u64,
    conn: Option<&'a Conn>,
    what: &'a str,
}

impl<'a> Watch<'a> {
    pub fn new(timeout_ns: u64, conn: Option<&'a Conn>, what: &'a str) -> Watch<'a> {
        Watch { spins: 0, last: now_ns(), timeout_ns, conn, what }
    }

    pub fn progress(&mut self) {
        self.spins = 0;
        self.last = 0;
    }

    /// An empty wait that took real time (a sleep): look at the clock now.
    pub fn slept(&mut self, state: impl Fn() -> String) -> Result<(), String> {
        self.spins = SPINS;
        self.idle(state)
    }

    /// One empty spin; an error once the loop has stalled.
    pub fn idle(&mut self, state: impl Fn() -> String) -> Result<(), String> {
        self.spins += 1;
        if self.spins < SPINS {
            return Ok(());
        }
        self.spins = 0;
        let now = now_ns();
        if self.last == 0 {
            self.last = now;
        } else if now - self.last > self.timeout_ns {
            return Err(format!("{}: no progress for {} s ({})", self.what,
                               self.timeout_ns / 1_000_000_000, state()));
        }
        if self.conn.is_some_and(|c| c.ready()) {
            return Err(format!("{}: the peer stopped ({})", self.what, state()));
        }
        Ok(())
    }
}

/// Post WRs `first..first + count` of a stream through `chain` (its length is the post
/// list), keeping at most `depth` outstanding and signaling every `cq_mod`-th and the
/// last; return once all have completed.
pub fn stream(ep: &Endpoint, cq: &mut Cq, chain: &mut SendChain, first: u64, count: u64,
              depth: u64, cq_mod: u64, timeout_ns: u64) -> Result<(), String> {
    let pl = chain.len() as u64;
    let (mut posted, mut done) = (0u64, 0u64);
    let mut watch = Watch::new(timeout_ns, None, "stream");
    while done < count {
        while posted < count {
            let n = pl.min(count - posted);
            if posted + n - done > depth {
                break;
            }
            for j in 0..n {
                let k = posted + j;
                chain.arm(j as usize, first + k, (k + 1) % cq_mod == 0 || k + 1 == count);
            }
            ep.post_chain(chain, n as usize)?;
            posted += n;
        }
        let got = cq.poll(ep)?;
        if got.is_empty() {
            watch.idle(|| format!("{done} of {count} completed, {posted} posted"))?;
            continue;
        }
        watch.progress();
        for w in got {
            let k = w.wr_id.wrapping_sub(first);
            if k >= count {
                return Err(format!("stray completion wr_id {}", w.wr_id));
            }
            done = done.max(k + 1);
        }
    }
    Ok(())
}

/// Signaled sends of a ping-pong loop: every `every`-th WR (and the last) is signaled,
/// and at most `cap` are outstanding.
pub struct Sends {
    pub posted: u64,
    pub done: u64,
    pub every: u64,
    pub cap: u64,
    pub total: u64,
}

impl Sends {
    pub fn new(sq: u32, total: u64) -> Sends {
        let cap = u64::from(sq.max(2)) - 1;
        Sends { posted: 0, done: 0, every: cap.min(16), cap, total }
    }

    /// Arm WR 0 of `chain` for the next send; the caller posts it.
    pub fn arm(&mut self, chain: &mut SendChain) {
        let k = self.posted;
        chain.arm(0, k, (k + 1) % self.every == 0 || k + 1 == self.total);
        self.posted += 1;
    }

    pub fn full(&self) -> bool {
        self.posted - self.done >= self.cap
    }

    /// Account a send completion.
    pub fn complete(&mut self, w: &ibv_wc) {
        self.done = self.done.max(w.wr_id + 1);
    }

    pub fn is_send(w: &ibv_wc) -> bool {
        w.opcode != ibv_wc_opcode::IBV_WC_RECV && w.opcode != ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM
    }
}

/// Wait until every signaled send completed.
pub fn drain_sends(ep: &Endpoint, cq: &mut Cq, s: &mut Sends, timeout_ns: u64) -> Result<(), String> {
    let mut watch = Watch::new(timeout_ns, None, "send completions");
    while s.done < s.posted {
        let got = cq.poll(ep)?;
        if got.is_empty() {
            let (d, p) = (s.done, s.posted);
            watch.idle(|| format!("{d} of {p} sends completed"))?;
            continue;
        }
        watch.progress();
        for w in got {
            if Sends::is_send(w) {
                s.complete(w);
            } else {
                return Err(format!("unexpected receive completion wr_id {}", w.wr_id));
            }
        }
    }
    Ok(())
}
