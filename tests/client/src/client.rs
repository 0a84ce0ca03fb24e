//! The client role: it connects to the server, builds the test matrix from what both
//! ports allow, and runs it.  Each test is one output line; it passes only if the
//! client's own checks (completions, READ data, atomic results) and the server's
//! verdict (receive completions, the bytes in its memory) all pass.
//!
//! After a failed test both sides reset their QPs (ERR, RESET, INIT, RTR, RTS with
//! fresh PSNs), so one failure does not spoil the tests after it.

use std::time::{Duration, Instant};

use rdma_sys::ibv_wc_opcode::*;

use crate::endpoint::{
    opcode_str, Endpoint, Remote, SendOp, SendWr, Wc, IBV_FLUSH_GLOBAL, IBV_FLUSH_MR, IBV_FLUSH_RANGE,
    IBV_WC_ATOMIC_WRITE, IBV_WC_FLUSH,
};
use crate::gid;
use crate::opts::{Ibta15, Inject, Opts, QpKind};
use crate::pattern::{self, Pieces, GUARD};
use crate::proto::{Conn, Msg};
use crate::server::wr_id;
use crate::tap::{one_line, Tap};

/// Messages of a batch test; only the last one is signaled.
const BATCH: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Send { imm: bool },
    Write { imm: bool },
    Read,
    /// Two WRITEs, then a fenced READ of what the second wrote.
    Fence,
    FetchAdd { init: u64, add: u64 },
    CmpSwp { init: u64, compare: u64, swap: u64 },
    /// IBTA 1.5 ATOMIC WRITE of `values`, one after the other (the last stays).
    AtomicWrite { init: u64, values: &'static [u64] },
    /// A WRITE, a FLUSH of it (`level` IBV_FLUSH_RANGE or _MR), a READ of it back,
    /// in one batch of the extended API.
    WriteFlushRead { level: u8 },
    /// A device that does not serve ATOMIC WRITE refuses it (local only).
    AtomicWriteRefused,
}

#[derive(Clone, Debug)]
struct Test {
    name: String,
    kind: Kind,
    len: usize,
    /// SGEs on the requester (gather for SEND/WRITE, scatter for READ).
    ssge: usize,
    /// SGEs of the server's receive (SEND only).
    rsge: usize,
    inline: bool,
    /// Messages posted in one chain, only the last signaled.
    n: usize,
}

impl Test {
    /// Whether the test runs on this side alone (the server takes no part).
    fn local(&self) -> bool {
        matches!(self.kind, Kind::AtomicWriteRefused)
    }
}

/// What the matrix is built from.
struct Shape {
    kind: QpKind,
    mtu: usize,
    max_len: usize,
    max_inline: usize,
    atomics: bool,
    /// IBTA 1.5: both sides serve ATOMIC WRITE / FLUSH; or this (ferrite) device
    /// refuses ATOMIC WRITE although this libibverbs has the verb.
    atomic_write: bool,
    flush: bool,
    aw_refused: bool,
    quick: bool,
}

fn sizes(s: &Shape) -> Vec<usize> {
    let m = s.mtu;
    let mut v = if s.quick {
        vec![0, 1, m - 1, m + 1, 4097, 65537, s.max_len]
    } else {
        vec![0, 1, 2, 3, 4, m - 1, m, m + 1, 2 * m - 1, 2 * m, 2 * m + 1, 4095, 4096, 4097,
             65535, 65536, 65537, (1 << 20) + 3, s.max_len]
    };
    for x in &mut v {
        *x = (*x).min(s.max_len);
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn build(s: &Shape) -> Vec<Test> {
    let q = s.kind.name();
    let rc = s.kind == QpKind::Rc;
    let mut out = Vec::new();
    let mut add = |kind: Kind, len: usize, ssge: usize, rsge: usize, inline: bool, n: usize| {
        let op = match kind {
            Kind::Send { imm: false } => "send",
            Kind::Send { imm: true } => "send_imm",
            Kind::Write { imm: false } => "write",
            Kind::Write { imm: true } => "write_imm",
            Kind::Read => "read",
            Kind::Fence => "write2.read_fence",
            Kind::FetchAdd { .. } => "fetch_add",
            Kind::CmpSwp { .. } => "cmp_swp",
            Kind::AtomicWrite { .. } => "atomic_write",
            Kind::WriteFlushRead { level: IBV_FLUSH_MR } => "write.flush_mr.read",
            Kind::WriteFlushRead { .. } => "write.flush_range.read",
            Kind::AtomicWriteRefused => "atomic_write.refused",
        };
        let mut name = format!("{q}.{op}");
        if inline {
            name += ".inline";
        }
        if ssge > 1 {
            name += ".sge3";
        }
        if rsge > 1 {
            name += ".rsge3";
        }
        if n > 1 {
            name += &format!(".unsignaled{n}");
        }
        name += &format!(".len={len}");
        if len <= s.max_len {
            out.push(Test { name, kind, len, ssge, rsge, inline, n });
        }
    };
    let (send, send_imm) = (Kind::Send { imm: false }, Kind::Send { imm: true });
    let (write, write_imm) = (Kind::Write { imm: false }, Kind::Write { imm: true });
    // Every operation at every size.
    let mut ops = vec![send, send_imm, write, write_imm];
    if rc {
        ops.push(Kind::Read);
    }
    for &op in &ops {
        for &len in &sizes(s) {
            add(op, len, 1, 1, false, 1);
        }
    }
    let m = s.mtu;
    // Inline data, up to what the QP was created with.
    if s.max_inline > 0 {
        let mut il: Vec<usize> = if s.quick { vec![3, s.max_inline] } else { vec![1, 3, 64, s.max_inline] };
        il.retain(|&l| l <= s.max_inline);
        il.dedup();
        for &len in &il {
            add(send, len, 1, 1, true, 1);
            add(write, len, 1, 1, true, 1);
        }
        add(send_imm, s.max_inline, 1, 1, true, 1);
        add(write_imm, 3.min(s.max_inline), 1, 1, true, 1);
        if s.max_inline >= 3 {
            add(send, s.max_inline.min(100), 3, 1, true, 1);
        }
    }
    // Gather and scatter lists of uneven lengths.
    let sg: Vec<usize> = if s.quick { vec![m + 1] } else { vec![3, m + 1, 65537] };
    for &len in &sg {
        add(send, len, 3, 1, false, 1);
        add(send, len, 1, 3, false, 1);
        add(send, len, 3, 3, false, 1);
        add(write, len, 3, 1, false, 1);
        if rc {
            add(Kind::Read, len, 3, 1, false, 1);
        }
    }
    add(send_imm, 2 * m + 1, 3, 3, false, 1);
    add(write_imm, 2 * m + 1, 3, 1, false, 1);
    // Unsignaled chains: one completion for all, every message's data checked.
    add(send, 1000.min(m + 1), 1, 1, false, BATCH);
    add(send_imm, 0, 1, 1, false, BATCH);
    add(write, 2 * m + 1, 1, 1, false, BATCH);
    add(write_imm, m, 1, 1, false, 4);
    if rc {
        add(Kind::Read, 4097, 1, 1, false, 4);
        add(Kind::Fence, 2 * m + 1, 1, 1, false, 1);
        if !s.quick {
            add(Kind::Fence, 0, 1, 1, false, 1);
        }
    }
    // Atomics: (init, operands) cases covering carries across the 32-bit halves,
    // wrap-around, and both outcomes of compare-and-swap.
    if rc && s.atomics {
        let cases = [
            Kind::FetchAdd { init: 5, add: 7 },
            Kind::FetchAdd { init: 0xffff_ffff, add: 1 },
            Kind::FetchAdd { init: u64::MAX - 0xf, add: 0x20 },
            Kind::CmpSwp { init: 0x0123_4567_89ab_cdef, compare: 0x0123_4567_89ab_cdef, swap: 0xfedc_ba98_7654_3210 },
            Kind::CmpSwp { init: 0x1111_2222_3333_4444, compare: 0x1111_2222_3333_4445, swap: 0x5555 },
            Kind::CmpSwp { init: 0, compare: 0, swap: u64::MAX },
        ];
        for k in cases {
            add(k, 8, 1, 1, false, 1);
        }
    }
    // IBTA 1.5 (RC only): ATOMIC WRITE of edge values, twice in a row to one slot;
    // FLUSH of a range and of the whole region after a WRITE, then a READ back.
    if rc && s.atomic_write {
        let cases: [(u64, &'static [u64]); 4] = [
            (0x1111_2222_3333_4444, &[0x0123_4567_89ab_cdef]),
            (0, &[u64::MAX]),
            (u64::MAX, &[0x8000_0000_0000_0001]),
            (5, &[0xaaaa_aaaa_aaaa_aaaa, 0x5555_5555_5555_5555]),
        ];
        for (init, values) in cases {
            add(Kind::AtomicWrite { init, values }, 8, 1, 1, false, values.len());
        }
    }
    if rc && s.flush {
        let lens: Vec<usize> = if s.quick { vec![m + 1] } else { vec![1, m + 1, 65537] };
        for &len in &lens {
            add(Kind::WriteFlushRead { level: IBV_FLUSH_RANGE }, len, 1, 1, false, 1);
        }
        add(Kind::WriteFlushRead { level: IBV_FLUSH_MR }, 4097, 1, 1, false, 1);
    }
    if rc && s.aw_refused {
        add(Kind::AtomicWriteRefused, 8, 1, 1, false, 1);
    }
    // Names: number the atomic and ATOMIC WRITE cases instead of showing their
    // length; the refusal has none.
    let (mut i, mut j) = (0, 0);
    for t in out.iter_mut() {
        match t.kind {
            Kind::FetchAdd { .. } | Kind::CmpSwp { .. } => {
                i += 1;
                t.name = format!("{}.case{i}", t.name.trim_end_matches(".len=8"));
            }
            Kind::AtomicWrite { values, .. } => {
                j += 1;
                let base = t.name.trim_end_matches(".len=8").replace(".unsignaled2", "");
                let twice = if values.len() > 1 { ".twice" } else { "" };
                t.name = format!("{base}{twice}.case{j}");
            }
            Kind::AtomicWriteRefused => t.name = t.name.trim_end_matches(".len=8").to_string(),
            _ => {}
        }
    }
    out
}

/// The immediate base value of test `idx`: edge values first, then mixed ones.
fn imm_for(idx: u32) -> u32 {
    match idx % 4 {
        0 => 0,
        1 => 0xffff_ffff,
        2 => 0x8000_0001,
        _ => idx.wrapping_mul(0x9e37_79b1),
    }
}

/// A test's verdict; `Err` of the outer result means the session cannot go on.
type Outcome = Result<(), String>;

struct Client {
    ep: Endpoint,
    conn: Conn,
    tap: Tap,
    remote: Remote,
    path_mtu: u32,
    max_rd: u8,
    max_dest: u8,
    timeout: Duration,
    /// How long to wait for a verdict: the server may wait `timeout` itself.
    tcp_timeout: Duration,
    inject: Option<(Inject, u32)>,
}

pub fn run(o: &Opts) -> i32 {
    let mut tap = Tap::default();
    println!("# ferrite-testclient client");
    let (mut c, shape) = match setup(o) {
        Ok(x) => x,
        Err(e) => {
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    let mut tests = build(&shape);
    if let Some(only) = &o.only {
        tests.retain(|t| t.name.contains(only.as_str()));
    }
    if !o.skip.is_empty() {
        let before = tests.len();
        tests.retain(|t| !o.skip.iter().any(|s| t.name.contains(s.as_str())));
        c.tap.diag(&format!("--skip {}: {} tests left out", o.skip.join(","), before - tests.len()));
    }
    if shape.kind == QpKind::Rc && !shape.atomics {
        c.tap.diag(if o.no_atomics {
            "no atomic tests (--no-atomics)"
        } else {
            "no atomic tests: a device reports IBV_ATOMIC_NONE"
        });
    }
    let started = Instant::now();
    c.tap.plan(tests.len());
    let remote_tests = tests.iter().filter(|t| !t.local()).count();
    let mut fatal = c.conn.send(&format!("PLAN n={remote_tests}")).err();
    for (i, t) in tests.iter().enumerate() {
        let idx = i as u32 + 1;
        if let Some(f) = &fatal {
            c.tap.result(&t.name, &Err(format!("not run: {f}")));
            continue;
        }
        let t0 = Instant::now();
        match c.run_test(idx, t) {
            Ok(r) => {
                let slow = t0.elapsed();
                c.tap.result(&t.name, &r);
                if slow > Duration::from_secs(5) {
                    c.tap.diag(&format!("{} took {:.1} s", t.name, slow.as_secs_f64()));
                }
                if r.is_err() {
                    if let Err(e) = c.recover() {
                        fatal = Some(format!("recovery after test {idx} failed: {e}"));
                    }
                }
            }
            Err(e) => {
                c.tap.result(&t.name, &Err(e.clone()));
                fatal = Some(e);
            }
        }
    }
    c.tap.diag(&format!("{} tests in {:.1} s", tests.len(), started.elapsed().as_secs_f64()));
    if fatal.is_none() {
        let quit = format!("QUIT passed={} failed={}", c.tap.passed, c.tap.failed);
        match c.conn.ask(&quit, c.tcp_timeout).and_then(|m| m.want("BYE")) {
            Ok(b) => c.tap.diag(&format!("server: {} passed, {} failed",
                                         b.get("passed").unwrap_or("?"), b.get("failed").unwrap_or("?"))),
            Err(e) => c.tap.result("server summary", &Err(e)),
        }
    }
    c.tap.finish()
}

fn setup(o: &Opts) -> Result<(Client, Shape), String> {
    let mut ep = Endpoint::open(o.dev.as_deref(), o.gid_index, o.ipv6, o.events)?;
    if let Some(m) = o.mtu {
        if m > ep.caps.active_mtu {
            return Err(format!("--mtu {m} is above {}'s active MTU {}", ep.dev, ep.caps.active_mtu));
        }
    }
    let max_size = o.max_size.min(ep.caps.max_msg_sz as usize);
    if o.ibta15 != Ibta15::Off {
        ep.want_ibta15();
    }
    ep.create(o.qp, pattern::mr_len(max_size))?;
    let mut conn = Conn::connect(o.server.as_deref().unwrap_or_default(), o.port,
                                 Duration::from_secs(30))?;
    let psn = o.psn.unwrap_or_else(pattern::random_psn);
    let max_dest = ep.caps.max_qp_rd_atom.min(16) as u8;
    let hello = format!(
        "HELLO qpn={} psn={} gid={} addr={} rkey={} len={} mtu={} rd_atom={} max_msg={} qp={} \
         max_size={} atomic={}",
        ep.qpn(), psn, gid::to_hex(&ep.gid), ep.addr(0), ep.rkey(), ep.mr_len(),
        o.mtu.unwrap_or(ep.caps.active_mtu), max_dest, ep.caps.max_msg_sz, o.qp.name(),
        max_size, u8::from(ep.caps.atomics)
    );
    let h = conn.ask(&hello, Duration::from_secs(60))?;
    if h.verb == "ERROR" {
        return Err(format!("server: {}", h.words.join(" ")));
    }
    let h = h.want("HELLO")?;
    let remote = Remote {
        qpn: h.num("qpn")? as u32,
        psn: h.num("psn")? as u32,
        gid: gid::from_hex(h.get("gid")?).ok_or("HELLO: bad gid=")?,
        rkey: h.num("rkey")? as u32,
    };
    let path_mtu = h.num("path_mtu")? as u32;
    if o.mtu.is_some_and(|m| m != path_mtu) {
        return Err(format!("--mtu {} is above the server port's active MTU", o.mtu.unwrap()));
    }
    let max_rd = ep.caps.max_qp_init_rd_atom.min(h.num("rd_atom")? as u32).min(16) as u8;
    ep.to_init()?;
    ep.to_rtr(&remote, path_mtu, remote.psn, max_dest)?;
    ep.to_rts(psn, max_rd)?;
    // The server registered an MR for max_size bytes, as HELLO asked.
    let max_len = max_size.min(h.num("max_msg")? as usize);
    let tap = Tap::default();
    let (atomic_write, flush, aw_refused) = ibta15(&ep, &h, o, &tap)?;
    let shape = Shape {
        kind: o.qp,
        mtu: path_mtu as usize,
        max_len,
        max_inline: ep.max_inline as usize,
        atomics: ep.caps.atomics && h.num("atomic")? != 0 && !o.no_atomics,
        atomic_write,
        flush,
        aw_refused,
        quick: o.quick,
    };
    tap.diag(&format!(
        "{} gid[{}] {} qpn {:#x} psn {:#x} <-> server {} qpn {:#x} psn {:#x} gid {}",
        ep.dev, ep.gid_index, gid::show(&ep.gid), ep.qpn(), psn, conn.peer, remote.qpn,
        remote.psn, gid::show(&remote.gid)
    ));
    tap.diag(&format!(
        "{}, path_mtu {}, max message {} (max_msg_sz {} here, {} there), max_inline {}, \
         max_rd_atomic {}, atomics {}, atomic_write {}, flush {}, {}, per-op timeout {} s",
        o.qp.name(), path_mtu, max_len, ep.caps.max_msg_sz, h.num("max_msg")?, ep.max_inline,
        max_rd, shape.atomics, shape.atomic_write, shape.flush,
        if o.events { "completion channel" } else { "polling" }, o.timeout.as_secs()
    ));
    let c = Client {
        ep, conn, tap, remote, path_mtu, max_rd, max_dest, timeout: o.timeout,
        tcp_timeout: o.timeout + Duration::from_secs(15),
        inject: o.inject,
    };
    Ok((c, shape))
}

/// Which IBTA 1.5 tests run: ATOMIC WRITE, FLUSH, and the refusal of ATOMIC WRITE.
/// Each needs this libibverbs to have its verb (rdma-core 44, 45), this side's QP
/// to have been made with it, and the server to take it (its HELLO's `aw=`,
/// `flush=`).  `--ibta15 require` fails the setup where one the libibverbs has
/// cannot run; the diagnostics say why one does not.
fn ibta15(ep: &Endpoint, h: &Msg, o: &Opts, tap: &Tap) -> Result<(bool, bool, bool), String> {
    if o.qp != QpKind::Rc || o.ibta15 == Ibta15::Off {
        if o.qp == QpKind::Rc {
            tap.diag("no ATOMIC_WRITE or FLUSH tests (--ibta15 off)");
        }
        return Ok((false, false, false));
    }
    let rel = ep.rdma_core.map_or("an unknown release".into(), |(a, b)| format!("rdma-core {a}.{b}"));
    // Older servers say nothing of these: they take neither.
    let peer = |k: &str| h.num(k).unwrap_or(0) != 0;
    let mut missing = Vec::new();
    let mut decide = |what: &str, since: u32, dev: bool, posts: bool, peer: bool| -> bool {
        let why = if !ep.rdma_core_at_least(since) {
            tap.diag(&format!("no {what} tests: libibverbs of {rel} has no verb for it (rdma-core {since})"));
            return false;
        } else if !dev {
            format!("{} does not advertise {what}", ep.dev)
        } else if !posts {
            format!("{}'s provider refused a QP with {what}", ep.dev)
        } else if !peer {
            format!("the server's device does not take {what}")
        } else {
            return true;
        };
        tap.diag(&format!("no {what} tests: {why}"));
        missing.push(why);
        false
    };
    let aw = decide("ATOMIC_WRITE", 44, ep.caps.atomic_write, ep.posts_atomic_write, peer("aw"));
    let flush = decide("FLUSH", 45, ep.caps.flush, ep.posts_flush, peer("flush"));
    if o.ibta15 == Ibta15::Require && !missing.is_empty() {
        return Err(format!("--ibta15 require: {}", missing.join("; ")));
    }
    // A ferrite device that does not serve ATOMIC WRITE must refuse it.
    let refused = !ep.caps.atomic_write && ep.rdma_core_at_least(44) && ep.is_ferrite();
    Ok((aw, flush, refused))
}

/// Pieces of a local region as SGEs (none for an empty message).
fn sges(base: usize, p: &Pieces, len: usize) -> Vec<(usize, usize)> {
    if len == 0 {
        return Vec::new();
    }
    p.iter().map(|&(o, l)| (base + o, l)).collect()
}

/// The remote addresses a READY reply lists.
fn addrs(m: &Msg) -> Result<Vec<u64>, String> {
    m.get("addr")?
        .split(',')
        .map(|a| a.parse().map_err(|_| format!("READY: bad addr {a}")))
        .collect()
}

/// Flip the last byte of a message laid out as `p` at `base` (the injected fault).
fn corrupt(mem: &mut [u8], base: usize, p: &Pieces) {
    if let Some(&(o, l)) = p.iter().rev().find(|&&(_, l)| l > 0) {
        mem[base + o + l - 1] ^= 0x40;
    }
}

impl Client {
    fn injected(&self, idx: u32, kind: Inject) -> bool {
        self.inject == Some((kind, idx))
    }

    fn run_test(&mut self, idx: u32, t: &Test) -> Result<Outcome, String> {
        match t.kind {
            Kind::Send { imm } => self.send(idx, t, imm),
            Kind::Write { imm } => self.write(idx, t, imm),
            Kind::Read => self.read(idx, t),
            Kind::Fence => self.fence(idx, t),
            Kind::FetchAdd { .. } | Kind::CmpSwp { .. } => self.atomic(idx, t),
            Kind::AtomicWrite { .. } => self.atomic_write(idx, t),
            Kind::WriteFlushRead { level } => self.write_flush_read(idx, t, level),
            Kind::AtomicWriteRefused => Ok(self.ep.check_atomic_write_refused()),
        }
    }

    /// Send a request; `Ok(Err(..))` if the server could not prepare for it.
    fn prepare(&mut self, req: &str) -> Result<Result<Msg, String>, String> {
        let r = self.conn.ask(req, self.tcp_timeout)?;
        match r.verb.as_str() {
            "READY" => Ok(Ok(r)),
            "RESULT" => Ok(Err(format!("server: {}", r.rest()))),
            v => Err(format!("expected READY, got {v}")),
        }
    }

    /// Tell the server how the local part went and combine its verdict with it.
    fn conclude(&mut self, local: Result<(), String>) -> Result<Result<Msg, String>, String> {
        match local {
            Ok(()) => {
                let r = self.conn.ask("GO", self.tcp_timeout)?.want("RESULT")?;
                match r.words.first().map(String::as_str) {
                    Some("ok") => Ok(Ok(r)),
                    _ => Ok(Err(format!("server: {}", r.rest()))),
                }
            }
            Err(e) => {
                self.conn.ask(&format!("ABORT {}", one_line(&e)), self.tcp_timeout)?.want("RESULT")?;
                Ok(Err(e))
            }
        }
    }

    /// Check the send-queue completions against (wr_id, opcode, byte_len to check),
    /// in order, and that no other completion arrives (with `linger`, for a while).
    fn completions(&self, want: &[(u64, u32, Option<u32>)], linger: bool) -> Result<(), String> {
        let wcs = self.ep.wait(want.len(), self.timeout)?;
        let qpn = self.ep.qpn();
        for (i, (w, &(id, op, bl))) in wcs.iter().zip(want).enumerate() {
            let what = |w: &Wc| format!("completion {i} ({})", w.describe());
            if !w.ok() {
                return Err(what(w));
            }
            if w.wr_id != id {
                return Err(format!("{}: want wr_id {id:#x}", what(w)));
            }
            if w.opcode != op {
                return Err(format!("{}: want {}", what(w), opcode_str(op)));
            }
            if bl.is_some_and(|b| b != w.byte_len) {
                return Err(format!("{}: want byte_len {}", what(w), bl.unwrap()));
            }
            if w.qp_num != qpn {
                return Err(format!("{}: qp_num {:#x}, want {qpn:#x}", what(w), w.qp_num));
            }
        }
        if wcs.len() < want.len() {
            return Err(format!("{} of {} completions", wcs.len(), want.len()));
        }
        let extra = if linger {
            self.ep.drain(Duration::from_millis(50))
        } else {
            let mut v = Vec::new();
            self.ep.poll(16, &mut v)?;
            v
        };
        match extra.first() {
            Some(w) => Err(format!("{} completion(s) more than signaled, first: {}", extra.len(),
                                   w.describe())),
            None => Ok(()),
        }
    }

    /// Local regions for `n` messages of `t`, checked to fit.
    fn local_regions(&self, t: &Test, n: usize) -> Result<(Pieces, Vec<usize>), String> {
        let p = pattern::pieces(t.len, t.ssge, 0);
        let sp = pattern::span(&p);
        let bases: Vec<usize> = (0..n).map(|k| pattern::region(k, sp)).collect();
        if bases.last().is_some_and(|&b| b + sp + GUARD > pattern::data_end(self.ep.mr_len())) {
            return Err(format!("{n} x {} bytes do not fit the local MR", t.len));
        }
        Ok((p, bases))
    }

    fn send(&mut self, idx: u32, t: &Test, imm: bool) -> Result<Outcome, String> {
        let ib = imm.then(|| imm_for(idx));
        let req = format!("EXPECT_SEND t={idx} name={} len={} rsge={} n={} imm={}", t.name, t.len,
                          t.rsge, t.n, ib.map_or("-".into(), |b| format!("{b:#x}")));
        if let Err(e) = self.prepare(&req)? {
            return Ok(Err(e));
        }
        let inject_corrupt = self.injected(idx, Inject::Corrupt);
        if self.injected(idx, Inject::Hang) {
            return Ok(self.conclude(Ok(()))?.map(|_| ()));
        }
        let local = self.local_regions(t, t.n).and_then(|(p, bases)| {
            let mem = self.ep.mem();
            let mut wrs = Vec::new();
            for (k, &base) in bases.iter().enumerate() {
                pattern::fill_pieces(mem, base, &p, pattern::seed_for(idx, k as u32));
                if k == 0 && inject_corrupt {
                    corrupt(mem, base, &p);
                }
                wrs.push(SendWr {
                    wr_id: wr_id(idx, k),
                    op: match ib {
                        Some(b) => SendOp::SendImm(pattern::imm_k(b, k)),
                        None => SendOp::Send,
                    },
                    sges: sges(base, &p, t.len),
                    signaled: k + 1 == t.n,
                    inline: t.inline,
                    fence: false,
                });
            }
            self.ep.post_send(&wrs)?;
            if t.inline {
                // Inline data is the WR's own: the buffer may change once posted.
                let mem = self.ep.mem();
                pattern::poison(mem, bases[0], &p, 0xdead);
            }
            self.completions(&[(wr_id(idx, t.n - 1), IBV_WC_SEND, None)], t.n > 1)
        });
        Ok(self.conclude(local)?.map(|_| ()))
    }

    fn write(&mut self, idx: u32, t: &Test, imm: bool) -> Result<Outcome, String> {
        let ib = imm.then(|| imm_for(idx));
        let req = format!("EXPECT_WRITE t={idx} name={} len={} n={} imm={}", t.name, t.len, t.n,
                          ib.map_or("-".into(), |b| format!("{b:#x}")));
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let rkey = self.remote.rkey;
        let inject_corrupt = self.injected(idx, Inject::Corrupt);
        let local = addrs(&ready).and_then(|ra| {
            let (p, bases) = self.local_regions(t, t.n)?;
            if ra.len() != t.n {
                return Err(format!("READY lists {} addresses for {} writes", ra.len(), t.n));
            }
            let mem = self.ep.mem();
            let mut wrs = Vec::new();
            for (k, &base) in bases.iter().enumerate() {
                pattern::fill_pieces(mem, base, &p, pattern::seed_for(idx, k as u32));
                if k == 0 && inject_corrupt {
                    corrupt(mem, base, &p);
                }
                let raddr = ra[k];
                wrs.push(SendWr {
                    wr_id: wr_id(idx, k),
                    op: match ib {
                        Some(b) => SendOp::WriteImm { raddr, rkey, imm: pattern::imm_k(b, k) },
                        None => SendOp::Write { raddr, rkey },
                    },
                    sges: sges(base, &p, t.len),
                    signaled: k + 1 == t.n,
                    inline: t.inline,
                    fence: false,
                });
            }
            self.ep.post_send(&wrs)?;
            if t.inline {
                let mem = self.ep.mem();
                pattern::poison(mem, bases[0], &p, 0xdead);
            }
            self.completions(&[(wr_id(idx, t.n - 1), IBV_WC_RDMA_WRITE, None)], t.n > 1)
        });
        Ok(self.conclude(local)?.map(|_| ()))
    }

    fn read(&mut self, idx: u32, t: &Test) -> Result<Outcome, String> {
        let req = format!("EXPECT_READ t={idx} name={} len={} n={}", t.name, t.len, t.n);
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let inject_corrupt = self.injected(idx, Inject::Corrupt);
        let rkey = self.remote.rkey;
        let local = addrs(&ready).and_then(|ra| {
            let (p, bases) = self.local_regions(t, t.n)?;
            if ra.len() != t.n {
                return Err(format!("READY lists {} addresses for {} reads", ra.len(), t.n));
            }
            let mem = self.ep.mem();
            let mut wrs = Vec::new();
            for (k, &base) in bases.iter().enumerate() {
                pattern::poison(mem, base, &p, pattern::seed_for(idx, k as u32));
                wrs.push(SendWr {
                    wr_id: wr_id(idx, k),
                    op: SendOp::Read { raddr: ra[k], rkey },
                    sges: sges(base, &p, t.len),
                    signaled: k + 1 == t.n,
                    inline: false,
                    fence: false,
                });
            }
            self.ep.post_send(&wrs)?;
            self.completions(&[(wr_id(idx, t.n - 1), IBV_WC_RDMA_READ, Some(t.len as u32))],
                             t.n > 1)?;
            let mem = self.ep.mem();
            if inject_corrupt {
                corrupt(mem, bases[0], &p);
            }
            bases.iter().enumerate().try_for_each(|(k, &base)| {
                pattern::verify(mem, base, &p, pattern::seed_for(idx, k as u32), t.len)
                    .map_err(|e| if t.n > 1 { format!("read {k}: {e}") } else { e })
            })
        });
        Ok(self.conclude(local)?.map(|_| ()))
    }

    fn fence(&mut self, idx: u32, t: &Test) -> Result<Outcome, String> {
        let req = format!("EXPECT_WRITE t={idx} name={} len={} n=2 imm=-", t.name, t.len);
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let rkey = self.remote.rkey;
        let local = addrs(&ready).and_then(|ra| {
            let (p, bases) = self.local_regions(t, 3)?;
            if ra.len() != 2 {
                return Err(format!("READY lists {} addresses for 2 writes", ra.len()));
            }
            let (s0, s1) = (pattern::seed_for(idx, 0), pattern::seed_for(idx, 1));
            let mem = self.ep.mem();
            pattern::fill_pieces(mem, bases[0], &p, s0);
            pattern::fill_pieces(mem, bases[1], &p, s1);
            pattern::poison(mem, bases[2], &p, s1);
            let wr = |k: usize, op: SendOp, base: usize, fence: bool| SendWr {
                wr_id: wr_id(idx, k),
                op,
                sges: sges(base, &p, t.len),
                signaled: true,
                inline: false,
                fence,
            };
            self.ep.post_send(&[
                wr(0, SendOp::Write { raddr: ra[0], rkey }, bases[0], false),
                wr(1, SendOp::Write { raddr: ra[1], rkey }, bases[1], false),
                wr(2, SendOp::Read { raddr: ra[1], rkey }, bases[2], true),
            ])?;
            self.completions(&[
                (wr_id(idx, 0), IBV_WC_RDMA_WRITE, None),
                (wr_id(idx, 1), IBV_WC_RDMA_WRITE, None),
                (wr_id(idx, 2), IBV_WC_RDMA_READ, Some(t.len as u32)),
            ], false)?;
            let mem = self.ep.mem();
            pattern::verify(mem, bases[2], &p, s1, t.len)
                .map_err(|e| format!("the fenced READ did not return the WRITE's data: {e}"))
        });
        Ok(self.conclude(local)?.map(|_| ()))
    }

    fn atomic(&mut self, idx: u32, t: &Test) -> Result<Outcome, String> {
        let (init, expect_remote) = match t.kind {
            Kind::FetchAdd { init, add } => (init, init.wrapping_add(add)),
            Kind::CmpSwp { init, compare, swap } => (init, if init == compare { swap } else { init }),
            _ => unreachable!(),
        };
        let req = format!("ATOMIC_SET t={idx} name={} value={init}", t.name);
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let rkey = self.remote.rkey;
        let slot = pattern::atomic_off(self.ep.mr_len());
        let around: Pieces = vec![(0, 8)];
        let local = ready.num("addr").and_then(|raddr| {
            let (op, wc_op) = match t.kind {
                Kind::FetchAdd { add, .. } => (SendOp::FetchAdd { raddr, rkey, add }, IBV_WC_FETCH_ADD),
                Kind::CmpSwp { compare, swap, .. } => {
                    (SendOp::CmpSwp { raddr, rkey, compare, swap }, IBV_WC_COMP_SWAP)
                }
                _ => unreachable!(),
            };
            let mem = self.ep.mem();
            pattern::poison(mem, slot, &around, 0xa70);
            self.ep.post_send(&[SendWr {
                wr_id: wr_id(idx, 0),
                op,
                sges: vec![(slot, 8)],
                signaled: true,
                inline: false,
                fence: false,
            }])?;
            self.completions(&[(wr_id(idx, 0), wc_op, Some(8))], false)?;
            let mem = self.ep.mem();
            let got = u64::from_ne_bytes(mem[slot..slot + 8].try_into().unwrap());
            if got != init {
                return Err(format!("returned {got:#x}, want the original value {init:#x}"));
            }
            pattern::fill_pieces(mem, slot, &around, 0xa70);
            pattern::verify(mem, slot, &around, 0xa70, 8)
                .map_err(|e| format!("the result overran its 8 bytes: {e}"))
        });
        let verdict = self.conclude(local)?;
        Ok(verdict.and_then(|r| {
            let v = r.num("value")?;
            if v != expect_remote {
                return Err(format!("remote value {v:#x} afterwards, want {expect_remote:#x}"));
            }
            Ok(())
        }))
    }

    /// ATOMIC WRITEs of `values` to one 8-byte slot of the server's, in one batch:
    /// each completes as IBV_WC_ATOMIC_WRITE of 8 bytes, the slot holds the last
    /// value afterwards, and its neighbours are untouched (the server checks).
    fn atomic_write(&mut self, idx: u32, t: &Test) -> Result<Outcome, String> {
        let Kind::AtomicWrite { init, values } = t.kind else { unreachable!() };
        let req = format!("ATOMIC_SET t={idx} name={} value={init}", t.name);
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let rkey = self.remote.rkey;
        let local = ready.num("addr").and_then(|raddr| {
            let wrs: Vec<SendWr> = values
                .iter()
                .enumerate()
                .map(|(k, v)| SendWr {
                    wr_id: wr_id(idx, k),
                    op: SendOp::AtomicWrite { raddr, rkey, value: v.to_ne_bytes() },
                    sges: Vec::new(),
                    signaled: true,
                    inline: false,
                    fence: false,
                })
                .collect();
            self.ep.post_wr(&wrs)?;
            let want: Vec<(u64, u32, Option<u32>)> =
                (0..values.len()).map(|k| (wr_id(idx, k), IBV_WC_ATOMIC_WRITE, Some(8))).collect();
            self.completions(&want, false)
        });
        let last = *values.last().unwrap();
        let verdict = self.conclude(local)?;
        Ok(verdict.and_then(|r| {
            let v = r.num("value")?;
            if v != last {
                return Err(format!("remote value {v:#x} afterwards, want {last:#x}"));
            }
            Ok(())
        }))
    }

    /// A WRITE to the server's memory, a FLUSH of it (the range, or the whole
    /// region), and a READ of it back, posted as one batch: the FLUSH completes
    /// after the WRITE, as IBV_WC_FLUSH, and the READ returns what the WRITE wrote;
    /// the server checks the bytes in its memory.
    fn write_flush_read(&mut self, idx: u32, t: &Test, level: u8) -> Result<Outcome, String> {
        let req = format!("EXPECT_WRITE t={idx} name={} len={} n=1 imm=-", t.name, t.len);
        let ready = match self.prepare(&req)? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let rkey = self.remote.rkey;
        let local = addrs(&ready).and_then(|ra| {
            let (p, bases) = self.local_regions(t, 2)?;
            let &[raddr] = &ra[..] else {
                return Err(format!("READY lists {} addresses for 1 write", ra.len()));
            };
            let seed = pattern::seed_for(idx, 0);
            let mem = self.ep.mem();
            pattern::fill_pieces(mem, bases[0], &p, seed);
            pattern::poison(mem, bases[1], &p, seed);
            // IBV_FLUSH_MR flushes the whole region: the RETH's range does not count.
            let flen = if level == IBV_FLUSH_MR { 0 } else { t.len };
            let wr = |k: usize, op: SendOp, sges: Vec<(usize, usize)>| SendWr {
                wr_id: wr_id(idx, k),
                op,
                sges,
                signaled: true,
                inline: false,
                fence: false,
            };
            self.ep.post_wr(&[
                wr(0, SendOp::Write { raddr, rkey }, sges(bases[0], &p, t.len)),
                wr(1, SendOp::Flush { raddr, rkey, len: flen, ty: IBV_FLUSH_GLOBAL, level }, Vec::new()),
                wr(2, SendOp::Read { raddr, rkey }, sges(bases[1], &p, t.len)),
            ])?;
            self.completions(&[
                (wr_id(idx, 0), IBV_WC_RDMA_WRITE, None),
                (wr_id(idx, 1), IBV_WC_FLUSH, Some(flen as u32)),
                (wr_id(idx, 2), IBV_WC_RDMA_READ, Some(t.len as u32)),
            ], false)?;
            let mem = self.ep.mem();
            pattern::verify(mem, bases[1], &p, seed, t.len)
                .map_err(|e| format!("the READ after the FLUSH did not return the WRITE's data: {e}"))
        });
        Ok(self.conclude(local)?.map(|_| ()))
    }

    /// Reset both QPs and reconnect them with fresh PSNs.
    fn recover(&mut self) -> Result<(), String> {
        let flushed = self.ep.reset()?;
        let psn = pattern::random_psn();
        let r = self.conn.ask(&format!("RESET psn={psn}"), self.tcp_timeout)?.want("RESET_OK")?;
        self.remote.psn = r.num("psn")? as u32;
        self.ep.to_rtr(&self.remote, self.path_mtu, self.remote.psn, self.max_dest)?;
        self.ep.to_rts(psn, self.max_rd)?;
        self.tap.diag(&format!("both QPs reset after the failure ({} completions flushed here)",
                               flushed.len()));
        Ok(())
    }
}
