//! The server role: it waits for one client, sets up its QP and MR as the client asks,
//! then prepares its memory for each test, waits for what the client's operation must
//! produce (receive completions, written bytes, an unchanged READ source, an atomic's
//! result) and checks every byte.  Each check is one output line, and its verdict goes
//! back to the client.

use std::time::{Duration, Instant};

use rdma_sys::ibv_wc_opcode;

use crate::endpoint::{Endpoint, RecvWr, Remote, Wc};
use crate::gid;
use crate::opts::{Opts, QpKind};
use crate::pattern::{self, Pieces, GUARD};
use crate::proto::{Conn, Msg};
use crate::tap::{one_line, Tap};

struct Server {
    ep: Endpoint,
    conn: Conn,
    tap: Tap,
    remote: Remote,
    path_mtu: u32,
    max_rd: u8,
    max_dest: u8,
    timeout: Duration,
}

pub fn run(o: &Opts) -> i32 {
    let mut tap = Tap::default();
    println!("# ferrite-testclient server");
    let ep = match Endpoint::open(o.dev.as_deref(), o.gid_index, o.ipv6, o.events) {
        Ok(ep) => ep,
        Err(e) => {
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    tap.diag(&format!(
        "dev {} gid[{}] {} active_mtu {} max_msg_sz {} atomics {} {}",
        ep.dev, ep.gid_index, gid::show(&ep.gid), ep.caps.active_mtu, ep.caps.max_msg_sz,
        ep.caps.atomics, if o.events { "events" } else { "polling" }
    ));
    let mut conn = match Conn::accept(o.port) {
        Ok(c) => c,
        Err(e) => {
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    let mut s = match setup(ep, &mut conn, o) {
        Ok((ep, remote, path_mtu, max_rd, max_dest)) => Server {
            ep, conn, tap, remote, path_mtu, max_rd, max_dest, timeout: o.timeout,
        },
        Err(e) => {
            let _ = conn.send(&format!("ERROR {}", one_line(&e)));
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    if let Err(e) = s.serve() {
        s.tap.result("side channel", &Err(e));
    }
    s.tap.finish()
}

type Setup = (Endpoint, Remote, u32, u8, u8);

/// HELLO from the client, QP and MR as it asks, QP to RTS, HELLO back.
fn setup(mut ep: Endpoint, conn: &mut Conn, o: &Opts) -> Result<Setup, String> {
    let h = conn.recv(Some(Duration::from_secs(60)))?.want("HELLO")?;
    let kind = QpKind::parse(h.get("qp")?).ok_or("HELLO: bad qp=")?;
    let own_max = o.max_size.min(ep.caps.max_msg_sz as usize);
    if kind != o.qp || h.num("max_size")? as usize != own_max {
        println!("# the client asks for {} and max size {}: following it", kind.name(),
                 h.num("max_size")?);
    }
    let max_size = (h.num("max_size")? as usize).min(1 << 30);
    let remote = Remote {
        qpn: h.num("qpn")? as u32,
        psn: h.num("psn")? as u32,
        gid: gid::from_hex(h.get("gid")?).ok_or("HELLO: bad gid=")?,
        rkey: h.num("rkey")? as u32,
    };
    let path_mtu = (h.num("mtu")? as u32).min(ep.caps.active_mtu);
    // Take IBTA 1.5's ATOMIC WRITE and FLUSH where the device does: an MR and a QP
    // a peer may FLUSH.
    ep.want_ibta15();
    ep.create(kind, pattern::mr_len(max_size))?;
    let max_dest = ep.caps.max_qp_rd_atom.min(16) as u8;
    let max_rd = ep.caps.max_qp_init_rd_atom.min(h.num("rd_atom")? as u32).min(16) as u8;
    let psn = o.psn.unwrap_or_else(pattern::random_psn);
    ep.to_init()?;
    ep.to_rtr(&remote, path_mtu, remote.psn, max_dest)?;
    ep.to_rts(psn, max_rd)?;
    println!(
        "# {} qpn {:#x} psn {:#x} <-> client {} qpn {:#x} psn {:#x} gid {}, path_mtu {}, \
         mr {} bytes, max_inline {}, atomic_write {}, flush {}",
        kind.name(), ep.qpn(), psn, conn.peer, remote.qpn, remote.psn, gid::show(&remote.gid),
        path_mtu, ep.mr_len(), ep.max_inline, ep.caps.atomic_write, ep.takes_flush
    );
    let rc = kind == QpKind::Rc;
    conn.send(&format!(
        "HELLO qpn={} psn={} gid={} addr={} rkey={} len={} mtu={} path_mtu={} rd_atom={} \
         max_msg={} atomic={} aw={} flush={}",
        ep.qpn(), psn, gid::to_hex(&ep.gid), ep.addr(0), ep.rkey(), ep.mr_len(),
        ep.caps.active_mtu, path_mtu, max_dest, ep.caps.max_msg_sz, u8::from(ep.caps.atomics),
        u8::from(rc && ep.caps.atomic_write), u8::from(rc && ep.takes_flush)
    ))?;
    Ok((ep, remote, path_mtu, max_rd, max_dest))
}

/// What one test left for the server to check.
struct Region {
    base: usize,
    pieces: Pieces,
    seed: u64,
}

impl Server {
    fn serve(&mut self) -> Result<(), String> {
        loop {
            let m = self.conn.recv(None)?;
            match m.verb.as_str() {
                "PLAN" => self.tap.plan(m.num("n")? as usize),
                "EXPECT_SEND" => self.expect_send(&m)?,
                "EXPECT_WRITE" => self.expect_write(&m)?,
                "EXPECT_READ" => self.expect_read(&m)?,
                "ATOMIC_SET" => self.atomic(&m)?,
                "RESET" => self.reset(&m)?,
                "QUIT" => {
                    println!("# client: {} passed, {} failed", m.num("passed")?, m.num("failed")?);
                    return self.conn.send(&format!(
                        "BYE passed={} failed={}", self.tap.passed, self.tap.failed));
                }
                v => return Err(format!("unknown request {v}")),
            }
        }
    }

    /// `n` regions for `len`-byte messages laid out as `nsge` pieces.
    fn regions(&self, t: u32, len: usize, nsge: usize, n: usize) -> Result<Vec<Region>, String> {
        let p = pattern::pieces(len, nsge, 1);
        let sp = pattern::span(&p);
        (0..n)
            .map(|k| {
                let base = pattern::region(k, sp);
                if base + sp + GUARD > pattern::data_end(self.ep.mr_len()) {
                    return Err(format!("{n} x {len} bytes do not fit the MR"));
                }
                Ok(Region { base, pieces: p.clone(), seed: pattern::seed_for(t, k as u32) })
            })
            .collect()
    }

    /// Reply READY (or the preparation's failure), then wait for GO or ABORT.
    /// Returns whether the client went ahead.
    fn ready(&mut self, name: &str, prep: Result<String, String>) -> Result<bool, String> {
        let extra = match prep {
            Ok(x) => x,
            Err(e) => {
                self.conn.send(&format!("RESULT fail {}", one_line(&e)))?;
                self.tap.result(name, &Err(e));
                return Ok(false);
            }
        };
        self.conn.send(&format!("READY{extra}"))?;
        let go = self.conn.recv(None)?;
        match go.verb.as_str() {
            "GO" => Ok(true),
            "ABORT" => {
                self.tap.result(name, &Err(format!("client: {}", go.words.join(" "))));
                self.conn.send("RESULT skipped")?;
                Ok(false)
            }
            v => Err(format!("expected GO or ABORT, got {v}")),
        }
    }

    fn verdict(&mut self, name: &str, r: Result<(), String>, extra: &str) -> Result<(), String> {
        let line = match &r {
            Ok(()) => format!("RESULT ok{extra}"),
            Err(e) => format!("RESULT fail {}", one_line(e)),
        };
        self.tap.result(name, &r);
        self.conn.send(&line)
    }

    /// Wait for `n` receive completions and check each against what was posted.
    fn recv_completions(&self, t: u32, n: usize, opcode: u32, len: usize, imm: Option<u32>)
        -> Result<(), String> {
        let wcs = self.ep.wait(n, self.timeout)?;
        for (k, w) in wcs.iter().enumerate() {
            check_recv(w, k, wr_id(t, k), opcode, len, imm.map(|b| pattern::imm_k(b, k)),
                       self.ep.qpn())?;
        }
        if wcs.len() < n {
            return Err(format!("{} of {n} receive completions", wcs.len()));
        }
        self.no_stray()
    }

    fn no_stray(&self) -> Result<(), String> {
        let mut extra = Vec::new();
        self.ep.poll(16, &mut extra)?;
        match extra.first() {
            Some(w) => Err(format!("{} unexpected completion(s), first: {}", extra.len(), w.describe())),
            None => Ok(()),
        }
    }

    fn expect_send(&mut self, m: &Msg) -> Result<(), String> {
        let (t, name) = (m.num("t")? as u32, m.get("name")?.to_string());
        let (len, rsge, n) = (m.num("len")? as usize, m.num("rsge")? as usize, m.num("n")? as usize);
        let imm = imm_of(m)?;
        let regs = self.regions(t, len, rsge, n);
        let prep = regs.as_ref().map_err(Clone::clone).and_then(|regs| {
            let mem = self.ep.mem();
            let mut wrs = Vec::new();
            for (k, r) in regs.iter().enumerate() {
                pattern::poison(mem, r.base, &r.pieces, r.seed);
                // One SGE reaches into the trailing guard, so an overrun lands in
                // posted memory and shows; three SGEs hold exactly the message.
                let sges = if r.pieces.len() == 1 {
                    vec![(r.base, len + GUARD)]
                } else {
                    r.pieces.iter().map(|&(o, l)| (r.base + o, l)).collect()
                };
                wrs.push(RecvWr { wr_id: wr_id(t, k), sges });
            }
            self.ep.post_recv(&wrs).map(|_| String::new())
        });
        if !self.ready(&name, prep)? {
            return Ok(());
        }
        let regs = regs.unwrap();
        let r = self.recv_completions(t, n, ibv_wc_opcode::IBV_WC_RECV, len, imm).and_then(|_| {
            let mem = self.ep.mem();
            regs.iter().enumerate().try_for_each(|(k, r)| {
                pattern::verify(mem, r.base, &r.pieces, r.seed, len)
                    .map_err(|e| if n > 1 { format!("message {k}: {e}") } else { e })
            })
        });
        self.verdict(&name, r, "")
    }

    fn expect_write(&mut self, m: &Msg) -> Result<(), String> {
        let (t, name) = (m.num("t")? as u32, m.get("name")?.to_string());
        let (len, n) = (m.num("len")? as usize, m.num("n")? as usize);
        let imm = imm_of(m)?;
        let regs = self.regions(t, len, 1, n);
        let scratch = pattern::scratch_off(self.ep.mr_len());
        let scratch_p: Pieces = vec![(0, 16)];
        let prep = regs.as_ref().map_err(Clone::clone).and_then(|regs| {
            let mem = self.ep.mem();
            for r in regs {
                pattern::poison(mem, r.base, &r.pieces, r.seed);
            }
            if imm.is_some() {
                // WRITE_WITH_IMM consumes a receive; its buffer must stay untouched.
                pattern::poison(mem, scratch, &scratch_p, 0);
                pattern::fill_pieces(mem, scratch, &scratch_p, 0);
                let wrs: Vec<RecvWr> =
                    (0..n).map(|k| RecvWr { wr_id: wr_id(t, k), sges: vec![(scratch, 16)] }).collect();
                self.ep.post_recv(&wrs)?;
            }
            Ok(regs.iter().map(|r| self.ep.addr(r.base).to_string()).collect::<Vec<_>>().join(","))
                .map(|a| format!(" addr={a}"))
        });
        if !self.ready(&name, prep)? {
            return Ok(());
        }
        let regs = regs.unwrap();
        let mut r = Ok(());
        if imm.is_some() {
            r = self.recv_completions(t, n, ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM, len, imm);
        }
        if r.is_ok() {
            // On RC the client's completion means the responder placed the data.  A UC
            // write without immediate tells this side nothing: give it a moment.
            let patient = self.ep.kind == QpKind::Uc && imm.is_none();
            let deadline = Instant::now() + Duration::from_secs(5);
            r = loop {
                let mem = self.ep.mem();
                let res = regs.iter().enumerate().try_for_each(|(k, rg)| {
                    pattern::verify(mem, rg.base, &rg.pieces, rg.seed, len)
                        .map_err(|e| if n > 1 { format!("write {k}: {e}") } else { e })
                });
                if res.is_ok() || !patient || Instant::now() > deadline {
                    break res;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if r.is_ok() && imm.is_some() {
                let mem = self.ep.mem();
                r = pattern::verify_source(mem, scratch, &scratch_p, 0)
                    .map_err(|e| format!("the receive buffer of WRITE_WITH_IMM changed: {e}"));
            }
        }
        self.verdict(&name, r, "")
    }

    fn expect_read(&mut self, m: &Msg) -> Result<(), String> {
        let (t, name) = (m.num("t")? as u32, m.get("name")?.to_string());
        let (len, n) = (m.num("len")? as usize, m.num("n")? as usize);
        let regs = self.regions(t, len, 1, n);
        let prep = regs.as_ref().map_err(Clone::clone).map(|regs| {
            let mem = self.ep.mem();
            for r in regs {
                pattern::poison(mem, r.base, &r.pieces, r.seed);
                pattern::fill_pieces(mem, r.base, &r.pieces, r.seed);
            }
            let a: Vec<String> = regs.iter().map(|r| self.ep.addr(r.base).to_string()).collect();
            format!(" addr={}", a.join(","))
        });
        if !self.ready(&name, prep)? {
            return Ok(());
        }
        let regs = regs.unwrap();
        let mem = self.ep.mem();
        // A READ must leave the responder's memory as it was.
        let r = regs.iter().try_for_each(|rg| {
            pattern::verify_source(mem, rg.base, &rg.pieces, rg.seed)
                .map_err(|e| format!("the READ source changed: {e}"))
        });
        let r = r.and_then(|_| self.no_stray());
        self.verdict(&name, r, "")
    }

    fn atomic(&mut self, m: &Msg) -> Result<(), String> {
        let name = m.get("name")?.to_string();
        let init = m.num("value")?;
        let slot = pattern::atomic_off(self.ep.mr_len());
        let around: Pieces = vec![(0, 8)];
        let mem = self.ep.mem();
        // The slot's neighbours hold poison; only the 8 bytes may change.
        pattern::poison(mem, slot, &around, init);
        mem[slot..slot + 8].copy_from_slice(&init.to_ne_bytes());
        let addr = self.ep.addr(slot);
        if !self.ready(&name, Ok(format!(" addr={addr}")))? {
            return Ok(());
        }
        let mem = self.ep.mem();
        let v = u64::from_ne_bytes(mem[slot..slot + 8].try_into().unwrap());
        // Put the pattern where the value was, so verify() checks only the neighbours.
        pattern::fill_pieces(mem, slot, &around, init);
        let r = pattern::verify(mem, slot, &around, init, 8)
            .map_err(|e| format!("the atomic changed bytes beside its target: {e}"))
            .and_then(|_| self.no_stray());
        self.verdict(&name, r, &format!(" value={v}"))
    }

    fn reset(&mut self, m: &Msg) -> Result<(), String> {
        let client_psn = m.num("psn")? as u32;
        let flushed = self.ep.reset()?;
        let psn = pattern::random_psn();
        self.remote.psn = client_psn;
        self.ep.to_rtr(&self.remote, self.path_mtu, client_psn, self.max_dest)?;
        self.ep.to_rts(psn, self.max_rd)?;
        self.tap.diag(&format!("QP reset at the client's request ({} completions flushed)",
                               flushed.len()));
        self.conn.send(&format!("RESET_OK psn={psn}"))
    }
}

pub fn wr_id(t: u32, k: usize) -> u64 {
    ((t as u64) << 8) | k as u64
}

/// `imm=` of a request: a base value (hex or decimal), or `-` for none.
fn imm_of(m: &Msg) -> Result<Option<u32>, String> {
    match m.get("imm")? {
        "-" => Ok(None),
        _ => Ok(Some(m.num("imm")? as u32)),
    }
}

/// Check receive completion `k` of a test.
fn check_recv(w: &Wc, k: usize, want_id: u64, opcode: u32, len: usize, imm: Option<u32>, qpn: u32)
    -> Result<(), String> {
    let what = || format!("receive completion {k} ({})", w.describe());
    if !w.ok() {
        return Err(what());
    }
    if w.wr_id != want_id {
        return Err(format!("{}: want wr_id {want_id:#x}", what()));
    }
    if w.opcode != opcode {
        return Err(format!("{}: want {}", what(), crate::endpoint::opcode_str(opcode)));
    }
    if w.byte_len as usize != len {
        return Err(format!("{}: want byte_len {len}", what()));
    }
    if w.qp_num != qpn {
        return Err(format!("{}: qp_num {:#x}, want {qpn:#x}", what(), w.qp_num));
    }
    match (w.imm, imm) {
        (a, b) if a == b => Ok(()),
        (None, Some(b)) => Err(format!("{}: no IBV_WC_WITH_IMM, want imm {b:#x}", what())),
        (Some(a), None) => Err(format!("{}: IBV_WC_WITH_IMM with {a:#x}, want none", what())),
        (Some(a), Some(b)) => Err(format!("{}: imm {a:#x}, want {b:#x}", what())),
        _ => unreachable!(),
    }
}
