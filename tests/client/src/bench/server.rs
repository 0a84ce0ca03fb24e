//! The server role: it accepts one client and follows its plan.  For a bandwidth or
//! message-rate run it posts the receives a SEND stream needs (and reposts them as
//! they complete); for a latency run it answers each WRITE (seen by polling the last
//! byte of its buffer) or SEND with one of its own.  Each run ends with the client's
//! DONE and the server's RESULT, which carries its device's counters.

use std::time::Duration;

use ferrite_testclient::endpoint::ChainOp;
use ferrite_testclient::proto::Msg;
use rdma_sys::ibv_wc_opcode;

use crate::clock;
use crate::link::Link;
use crate::opts::{Op, Opts};
use crate::pump::{self, idle, Cq, Sends, Watch};

/// Receives posted with one ibv_post_recv while a SEND stream runs.
const RECV_BATCH: u64 = 16;
/// Empty polls of a SEND stream's receiver before it sleeps on its completion channel.
const SPIN_BEFORE_SLEEP: u32 = 16;

pub fn run(o: &Opts) -> i32 {
    let mut l = match Link::server(o, true) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferrite-bench server: {e}");
            return 1;
        }
    };
    eprintln!("ferrite-bench server: {} <-> {} path_mtu {}", l.ep.dev, l.conn.peer, l.path_mtu);
    let mut cq = Cq::new();
    let timeout_ns = o.timeout.as_nanos() as u64;
    loop {
        let m = match l.conn.recv(None) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ferrite-bench server: {e}");
                return 1;
            }
        };
        let r = match m.verb.as_str() {
            "BW" | "LAT" => serve(&mut l, &mut cq, &m, timeout_ns),
            "RESET" => l.server_reset(&m),
            "QUIT" => {
                let _ = l.conn.send("BYE");
                return 0;
            }
            v => Err(format!("unknown request {v}")),
        };
        if let Err(e) = r {
            eprintln!("ferrite-bench server: {} {}: {e}", m.verb, m.words.join(" "));
            if l.conn.send(&format!("ERROR {e}")).is_err() {
                return 1;
            }
        }
    }
}

fn counters_text(c: &[(String, u64)]) -> String {
    c.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
}

/// One run: prepare, READY, do our part, then DONE -> RESULT.
fn serve(l: &mut Link, cq: &mut Cq, m: &Msg, timeout_ns: u64) -> Result<(), String> {
    let op = Op::parse(m.get("op")?).ok_or("bad op=")?;
    let size = m.num("size")? as usize;
    let total = m.num("total")?;
    if size == 0 || size > l.region {
        return Err(format!("size {size} outside the region of {} bytes", l.region));
    }
    let c0 = clock::counters(&l.ep.dev);
    // Until READY went out, a failure is answered with ERROR (the run loop's); after
    // it, the client ends the run with DONE whatever happened, and hears RESULT.
    let mut ready = false;
    let r = if m.verb == "LAT" {
        let yield_idle = m.num("yield").unwrap_or(0) != 0;
        pong(l, cq, op, size, total, timeout_ns, yield_idle, &mut ready)
    } else {
        sink(l, cq, op, size, total, timeout_ns, &mut ready)
    };
    if !ready {
        return r;
    }
    l.conn.recv(Some(Duration::from_secs(120)))?.want("DONE")?;
    let c = clock::counters_since(&clock::counters(&l.ep.dev), &c0);
    let reply = match &r {
        Ok(()) => format!("RESULT ok counters={}", counters_text(&c)),
        Err(e) => format!("RESULT fail {e}"),
    };
    if let Err(e) = &r {
        eprintln!("ferrite-bench server: {} {}: {e}", m.verb, m.words.join(" "));
    }
    l.conn.send(&reply)
}

/// A bandwidth run: nothing to do for WRITE and READ; for SEND keep receives posted
/// until `total` have arrived.
fn sink(l: &mut Link, cq: &mut Cq, op: Op, size: usize, total: u64, timeout_ns: u64,
        ready: &mut bool) -> Result<(), String> {
    if op != Op::Send {
        l.conn.send("READY")?;
        *ready = true;
        return Ok(());
    }
    let mut rc = l.ep.recv_chain(l.dst(), size, RECV_BATCH as usize)?;
    let rq = u64::from(l.rq);
    let (mut posted, mut got) = (0u64, 0u64);
    let mut post = |l: &Link, posted: &mut u64, got: u64| -> Result<(), String> {
        while *posted < total && *posted - got + RECV_BATCH <= rq {
            let n = RECV_BATCH.min(total - *posted);
            for j in 0..n {
                rc.arm(j as usize, *posted + j);
            }
            l.ep.post_recv_chain(&mut rc, n as usize)?;
            *posted += n;
        }
        Ok(())
    };
    post(l, &mut posted, got)?;
    l.conn.send("READY")?;
    *ready = true;
    let mut watch = Watch::new(timeout_ns, Some(&l.conn), "receives");
    let mut empty = 0u32;
    while got < total {
        // A few empty polls, then sleep on the completion channel: a sink that spins
        // would take a vCPU from the device's own work.
        let ws = if empty < SPIN_BEFORE_SLEEP { cq.poll(&l.ep)? } else { cq.sleep(&l.ep, 100)? };
        if ws.is_empty() {
            empty += 1;
            if empty > SPIN_BEFORE_SLEEP {
                watch.slept(|| format!("{got} of {total} received"))?;
            } else {
                watch.idle(|| format!("{got} of {total} received"))?;
            }
            continue;
        }
        empty = 0;
        watch.progress();
        for w in ws {
            if w.opcode != ibv_wc_opcode::IBV_WC_RECV || w.byte_len as usize != size {
                return Err(format!("receive {got}: opcode {} byte_len {}", w.opcode, w.byte_len));
            }
            got += 1;
        }
        post(l, &mut posted, got)?;
    }
    Ok(())
}

/// A latency run: answer each of `total` WRITEs or SENDs with one of ours.
fn pong(l: &mut Link, cq: &mut Cq, op: Op, size: usize, total: u64, timeout_ns: u64,
        yield_idle: bool, ready: &mut bool) -> Result<(), String> {
    let (src, dst) = (l.src(), l.dst());
    let inline = size <= l.ep.max_inline as usize;
    match op {
        Op::Read => {
            l.conn.send("READY")?;
            *ready = true;
            return Ok(());
        }
        Op::Write => {
            l.ep.poke(dst + size - 1, 0);
            l.ep.poke(src + size - 1, 0);
        }
        Op::Send => {}
    }
    let cop = match op {
        Op::Write => ChainOp::Write { raddr: l.remote_dst(), rkey: l.remote.rkey },
        _ => ChainOp::Send,
    };
    let mut chain = l.ep.send_chain(cop, src, size, 1, inline)?;
    let mut rc = l.ep.recv_chain(dst, size, 1)?;
    let mut rposted = 0u64;
    if op == Op::Send {
        while rposted < total.min(u64::from(l.rq)) {
            rc.arm(0, rposted);
            l.ep.post_recv_chain(&mut rc, 1)?;
            rposted += 1;
        }
    }
    l.conn.send("READY")?;
    *ready = true;
    let mut sends = Sends::new(l.sq, total);
    for i in 0..total {
        let v = (i % 255) as u8 + 1;
        let mut watch = Watch::new(timeout_ns, Some(&l.conn), "ping-pong");
        match op {
            Op::Write => {
                while l.ep.peek(dst + size - 1) != v {
                    idle(yield_idle);
                    watch.idle(|| format!("no WRITE {i}"))?;
                }
            }
            _ => {
                let mut got = false;
                while !got {
                    let ws = cq.poll(&l.ep)?;
                    if ws.is_empty() {
                        idle(yield_idle);
                        watch.idle(|| format!("no SEND {i}"))?;
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
        }
        while sends.full() {
            for w in cq.poll(&l.ep)? {
                if Sends::is_send(w) {
                    sends.complete(w);
                }
            }
            watch.idle(|| format!("send queue full at {i}"))?;
        }
        if op == Op::Write {
            l.ep.poke(src + size - 1, v);
        }
        sends.arm(&mut chain);
        l.ep.post_chain(&mut chain, 1)?;
        if op == Op::Send && rposted < total {
            rc.arm(0, rposted);
            l.ep.post_recv_chain(&mut rc, 1)?;
            rposted += 1;
        }
        if op == Op::Write {
            for w in cq.poll(&l.ep)? {
                if Sends::is_send(w) {
                    sends.complete(w);
                }
            }
        }
    }
    pump::drain_sends(&l.ep, cq, &mut sends, timeout_ns)
}
