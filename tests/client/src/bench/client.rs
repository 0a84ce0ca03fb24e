//! The client role: it connects, then runs the plan (bandwidth, message rate,
//! latency), one JSON object per measurement.  The server only follows: it posts
//! receives for SENDs and answers ping-pongs.  A failed measurement is reported as an
//! `error` object; both QPs are then reset and the plan goes on.

use std::time::Duration;

use ferrite_testclient::endpoint::ChainOp;
use rdma_sys::ibv_wc_opcode;

use crate::clock::{self, clk_tck, now_ns, Cpu};
use crate::json::{self, Obj, Out};
use crate::link::Link;
use crate::opts::{Op, Opts, DEFAULT_SIZES};
use crate::pump::{self, Cq, Sends, Watch};

const ASK: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
enum Test {
    /// `kind` is "bw" or "rate".
    Stream { kind: &'static str, op: Op, size: usize, iters: u64, post_list: u32 },
    Lat { op: Op, size: usize, iters: u64 },
}

impl Test {
    fn name(&self) -> String {
        match self {
            Test::Stream { kind, op, size, post_list, .. } => {
                format!("{kind}.{}.{size}.pl{post_list}", op.name())
            }
            Test::Lat { op, size, .. } => format!("lat.{}.{size}", op.name()),
        }
    }
}

fn plan(o: &Opts) -> Vec<Test> {
    let mut v = Vec::new();
    for t in &o.tests {
        match t.as_str() {
            "bw" => {
                let sizes = o.sizes.clone().unwrap_or_else(|| DEFAULT_SIZES.to_vec());
                for &op in &o.bw_ops {
                    for &size in &sizes {
                        let iters = (o.bytes / size as u64).clamp(o.min_iters, o.max_iters);
                        v.push(Test::Stream { kind: "bw", op, size, iters, post_list: 1 });
                    }
                }
            }
            "rate" => {
                for &op in &o.rate_ops {
                    for &pl in &o.post_lists {
                        v.push(Test::Stream { kind: "rate", op, size: o.rate_size,
                                              iters: o.rate_iters, post_list: pl });
                    }
                }
            }
            _ => {
                for &op in &o.lat_ops {
                    for &size in &o.lat_sizes {
                        v.push(Test::Lat { op, size, iters: o.lat_iters });
                    }
                }
            }
        }
    }
    v
}

/// A system call strace shows with its text: it brackets a measured run.
fn mark(on: bool, what: &str) {
    if on {
        // SAFETY: a write to fd -1 reads nothing of the buffer and fails with EBADF;
        // it exists only to appear in strace's output.
        unsafe { libc::write(-1, what.as_ptr().cast(), what.len()) };
    }
}

/// What was read around a measured run.
struct Around {
    cpu0: Cpu,
    c0: Vec<(String, u64)>,
    t0: u64,
}

impl Around {
    fn start(dev: &str, marks: bool) -> Around {
        let c0 = clock::counters(dev);
        let cpu0 = Cpu::read();
        mark(marks, "ferrite-bench:start");
        Around { cpu0, c0, t0: now_ns() }
    }

    /// Elapsed seconds, and the CPU and counter fields, added to `o`.
    fn stop(self, dev: &str, marks: bool, bytes: u64, o: Obj) -> (f64, Obj) {
        let t1 = now_ns();
        mark(marks, "ferrite-bench:stop");
        let cpu = Cpu::read().since(&self.cpu0);
        let c = clock::counters_since(&clock::counters(dev), &self.c0);
        let secs = (t1 - self.t0) as f64 / 1e9;
        let tck = clk_tck();
        let gb = bytes as f64 / 1e9;
        let cpu_obj = cpu.fields().iter().fold(Obj::new(), |o, (k, v)| o.u(k, *v));
        let o = o
            .f("seconds", secs)
            .o("cpu_jiffies", &cpu_obj)
            .f("cpu_s", cpu.busy() as f64 / tck)
            .f("kernel_cpu_s", cpu.kernel() as f64 / tck)
            .f("cpu_s_per_GB", cpu.busy() as f64 / tck / gb)
            .f("kernel_cpu_s_per_GB", cpu.kernel() as f64 / tck / gb)
            .o("counters", &json::counters(&c));
        (secs, o)
    }
}

fn parse_counters(s: &str) -> Obj {
    s.split(',')
        .filter_map(|kv| kv.split_once(':'))
        .filter_map(|(k, v)| v.parse::<u64>().ok().map(|v| (k, v)))
        .fold(Obj::new(), |o, (k, v)| o.u(k, v))
}

/// The server's verdict after a run: Ok(its counters) or its reason.
fn verdict(l: &mut Link, ok: bool) -> Result<Obj, String> {
    let m = l.conn.ask(if ok { "DONE ok" } else { "DONE fail" }, ASK)?.want("RESULT")?;
    match m.words.first().map(String::as_str) {
        Some("ok") => Ok(m.get("counters").map(parse_counters).unwrap_or_default()),
        _ => Err(format!("server: {}", m.rest())),
    }
}

struct Client<'a> {
    l: Link,
    o: &'a Opts,
    cq: Cq,
    timeout_ns: u64,
}

pub fn run(o: &Opts) -> i32 {
    let out = Out { tags: o.tags.clone() };
    let tests = plan(o);
    let region = tests
        .iter()
        .map(|t| match t {
            Test::Stream { size, .. } | Test::Lat { size, .. } => *size,
        })
        .max()
        .unwrap_or(4096);
    let pl_max = o.post_lists.iter().copied().max().unwrap_or(1);
    let sq = o.tx_depth + pl_max;
    let l = match Link::client(o, region, sq) {
        Ok(l) => l,
        Err(e) => {
            out.emit(Obj::new().s("kind", "error").s("test", "connect").s("error", &e));
            eprintln!("ferrite-bench: connect: {e}");
            return 1;
        }
    };
    out.emit(
        Obj::new()
            .s("kind", "conn")
            .s("dev", &l.ep.dev)
            .u("gid_index", u64::from(l.ep.gid_index))
            .s("peer", &l.conn.peer)
            .u("path_mtu", u64::from(l.path_mtu))
            .u("max_inline", u64::from(l.ep.max_inline))
            .u("peer_max_inline", u64::from(l.peer_inline))
            .u("max_rd_atomic", u64::from(l.max_rd))
            .u("sq", u64::from(l.sq))
            .u("rq", u64::from(l.rq))
            .u("region", l.region as u64)
            .s("cpus_online", &clock::cpus_online())
            .u("tests", tests.len() as u64),
    );
    let mut c = Client { l, o, cq: Cq::new(), timeout_ns: o.timeout.as_nanos() as u64 };
    let mut failed = 0;
    for t in &tests {
        let name = t.name();
        eprintln!("ferrite-bench: {name}");
        let r = match t {
            Test::Stream { kind, op, size, iters, post_list } => {
                c.stream(kind, *op, *size, *iters, *post_list)
            }
            Test::Lat { op, size, iters } => c.lat(*op, *size, *iters),
        };
        match r {
            Ok(obj) => out.emit(obj.s("test", &name)),
            Err(e) => {
                failed += 1;
                eprintln!("ferrite-bench: {name}: {e}");
                out.emit(Obj::new().s("kind", "error").s("test", &name).s("error", &e));
                if let Err(e) = c.l.client_reset() {
                    out.emit(Obj::new().s("kind", "error").s("test", "reset").s("error", &e));
                    eprintln!("ferrite-bench: reset: {e}");
                    return 1;
                }
            }
        }
    }
    let _ = c.l.conn.ask("QUIT", ASK);
    eprintln!("ferrite-bench: {} measurements, {failed} failed", tests.len());
    i32::from(failed > 0)
}

impl Client<'_> {
    /// Bandwidth or message rate: `iters` WRs of `size` bytes after a warm-up of one
    /// queue's worth, `post_list` WRs per ibv_post_send.
    fn stream(&mut self, kind: &str, op: Op, size: usize, iters: u64, post_list: u32)
        -> Result<Obj, String> {
        let o = self.o;
        let warm = u64::from(o.tx_depth).min(iters);
        let total = warm + iters;
        let l = &mut self.l;
        l.conn.ask(&format!("BW op={} size={size} total={total}", op.name()), ASK)?.want("READY")?;
        let rkey = l.remote.rkey;
        let (cop, local) = match op {
            Op::Write => (ChainOp::Write { raddr: l.remote_dst(), rkey }, l.src()),
            Op::Read => (ChainOp::Read { raddr: l.remote_src(), rkey }, l.dst()),
            Op::Send => (ChainOp::Send, l.src()),
        };
        let depth = u64::from(o.tx_depth);
        let cq_mod = u64::from(o.cq_mod);
        let dev = l.ep.dev.clone();
        let r = (|| -> Result<(f64, Obj), String> {
            let mut chain = l.ep.send_chain(cop, local, size, post_list as usize, false)?;
            pump::stream(&l.ep, &mut self.cq, &mut chain, 0, warm, depth, cq_mod, self.timeout_ns)?;
            let bytes = iters * size as u64;
            let a = Around::start(&dev, o.marks);
            pump::stream(&l.ep, &mut self.cq, &mut chain, warm, iters, depth, cq_mod, self.timeout_ns)?;
            Ok(a.stop(&dev, o.marks, bytes, Obj::new()))
        })();
        let v = verdict(l, r.is_ok());
        let (secs, obj) = r?;
        let peer = v?;
        let bytes = iters * size as u64;
        Ok(Obj::new()
            .s("kind", kind)
            .s("op", op.name())
            .u("size", size as u64)
            .u("iters", iters)
            .u("warmup", warm)
            .u("tx_depth", depth)
            .u("cq_mod", cq_mod)
            .u("post_list", u64::from(post_list))
            .b("inline", false)
            .u("bytes", bytes)
            .f("bw_Bps", bytes as f64 / secs)
            .f("msg_per_s", iters as f64 / secs)
            .u("path_mtu", u64::from(l.path_mtu))
            .s("dev", &dev)
            .merge(obj)
            .o("peer_counters", &peer))
    }

    /// Latency: WRITE and SEND ping-pong (half the round trip), READ one at a time.
    fn lat(&mut self, op: Op, size: usize, iters: u64) -> Result<Obj, String> {
        let o = self.o;
        let warm = o.warmup;
        let total = warm + iters;
        let l = &mut self.l;
        let inline = op != Op::Read && size <= l.ep.max_inline as usize && size <= l.peer_inline as usize;
        let (src, dst) = (l.src(), l.dst());
        // The byte each side polls starts out different from every value sent.
        l.ep.poke(dst + size - 1, 0);
        l.ep.poke(src + size - 1, 0);
        let mut recvs = None;
        if op == Op::Send {
            let mut rc = l.ep.recv_chain(dst, size, 1)?;
            for k in 0..total.min(u64::from(l.rq)) {
                rc.arm(0, k);
                l.ep.post_recv_chain(&mut rc, 1)?;
            }
            recvs = Some((rc, total.min(u64::from(l.rq))));
        }
        let yield_idle = o.yield_idle;
        l.conn.ask(&format!("LAT op={} size={size} total={total} yield={}", op.name(),
                            u8::from(yield_idle)), ASK)?.want("READY")?;
        let rkey = l.remote.rkey;
        let cop = match op {
            Op::Write => ChainOp::Write { raddr: l.remote_dst(), rkey },
            Op::Read => ChainOp::Read { raddr: l.remote_src(), rkey },
            Op::Send => ChainOp::Send,
        };
        let timeout_ns = self.timeout_ns;
        let cq = &mut self.cq;
        let dev = l.ep.dev.clone();
        let mut samples: Vec<u64> = Vec::with_capacity(iters as usize);
        let r = (|| -> Result<(f64, Obj), String> {
            let mut chain = l.ep.send_chain(cop, if op == Op::Read { dst } else { src }, size, 1, inline)?;
            let mut sends = Sends::new(l.sq, total);
            let mut a = None;
            for i in 0..total {
                if i == warm {
                    a = Some(Around::start(&dev, false));
                }
                let v = (i % 255) as u8 + 1;
                let mut watch = Watch::new(timeout_ns, None, "latency");
                // Room in the send queue, outside the timed part.
                while op != Op::Read && sends.full() {
                    for w in cq.poll(&l.ep)? {
                        if Sends::is_send(w) {
                            sends.complete(w);
                        }
                    }
                    watch.idle(|| format!("send queue full at {i}"))?;
                }
                let t0 = now_ns();
                match op {
                    Op::Write => {
                        l.ep.poke(src + size - 1, v);
                        sends.arm(&mut chain);
                        l.ep.post_chain(&mut chain, 1)?;
                        while l.ep.peek(dst + size - 1) != v {
                            pump::idle(yield_idle);
                            watch.idle(|| format!("no reply to WRITE {i}"))?;
                        }
                    }
                    Op::Send => {
                        sends.arm(&mut chain);
                        l.ep.post_chain(&mut chain, 1)?;
                        let mut got = false;
                        while !got {
                            let ws = cq.poll(&l.ep)?;
                            if ws.is_empty() {
                                pump::idle(yield_idle);
                                watch.idle(|| format!("no reply to SEND {i}"))?;
                            }
                            for w in ws {
                                if Sends::is_send(w) {
                                    sends.complete(w);
                                } else if w.opcode == ibv_wc_opcode::IBV_WC_RECV && w.byte_len as usize == size {
                                    got = true;
                                } else {
                                    return Err(format!("receive {i}: opcode {} byte_len {}", w.opcode, w.byte_len));
                                }
                            }
                        }
                    }
                    Op::Read => {
                        chain.arm(0, i, true);
                        l.ep.post_chain(&mut chain, 1)?;
                        let mut got = false;
                        while !got {
                            let ws = cq.poll(&l.ep)?;
                            if ws.is_empty() {
                                pump::idle(yield_idle);
                                watch.idle(|| format!("READ {i} did not complete"))?;
                            }
                            got = ws.iter().any(|w| w.wr_id == i);
                        }
                    }
                }
                let t1 = now_ns();
                if i >= warm {
                    samples.push(if op == Op::Read { t1 - t0 } else { (t1 - t0) / 2 });
                }
                if let Some((rc, posted)) = recvs.as_mut() {
                    if *posted < total {
                        rc.arm(0, *posted);
                        l.ep.post_recv_chain(rc, 1)?;
                        *posted += 1;
                    }
                }
                if op != Op::Read {
                    for w in cq.poll(&l.ep)? {
                        if Sends::is_send(w) {
                            sends.complete(w);
                        }
                    }
                }
            }
            let a = a.ok_or("no measured iterations")?;
            let r = a.stop(&dev, false, iters * size as u64, Obj::new());
            if op != Op::Read {
                pump::drain_sends(&l.ep, cq, &mut sends, timeout_ns)?;
            }
            Ok(r)
        })();
        let v = verdict(l, r.is_ok());
        let (_secs, obj) = r?;
        let peer = v?;
        Ok(Obj::new()
            .s("kind", "lat")
            .s("op", op.name())
            .u("size", size as u64)
            .u("iters", iters)
            .u("warmup", warm)
            .b("inline", inline)
            .b("half_round_trip", op != Op::Read)
            .b("yield", yield_idle)
            .s("cpus_online", &clock::cpus_online())
            .tag("cpu", &o.cpu.map_or("any".to_string(), |c| c.to_string()))
            .merge(json::latency_us(&mut samples))
            .u("path_mtu", u64::from(l.path_mtu))
            .s("dev", &dev)
            .merge(obj)
            .o("peer_counters", &peer))
    }
}
