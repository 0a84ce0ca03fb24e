//! `ferrite-testclient errors`: error completions, checked on both sides.
//!
//! Each case builds fresh verbs objects on both sides (device context, PD, CQ, one
//! RC QP and its MR), connects the two QPs over the side channel and provokes one
//! error, the client being the requester:
//!
//! - `rem_access_bad_rkey`: an RDMA WRITE with an rkey that names no region, then a
//!   SEND: REM_ACCESS_ERR, then WR_FLUSH_ERR.  The responder NAKs and goes to ERR
//!   (an RC responder's access violation is an error of its QP too), which flushes
//!   the receive it had posted.
//! - `rem_access_out_of_bounds`: an RDMA READ of 64 bytes running 32 bytes past the
//!   end of the responder's region (right rkey), then a SEND: the same on both sides.
//!   With `--no-nak` (a responder that never NAKs an error outside a receive WQE: rxe
//!   before Linux 5.13) both expect RETRY_EXC_ERR instead: the responder fails in
//!   silence and the requester's retries (retry_cnt 3) run out.
//! - `loc_prot_bad_lkey`: three SENDs, the second with an lkey that names no region:
//!   the first is delivered (its bytes checked) and completes, or is flushed when the
//!   error overtook its ACK; the second completes with LOC_PROT_ERR, the third is
//!   flushed.  The responder saw one message and stays in RTS.
//! - `rnr_retry_exc`: two SENDs to a responder with no receive posted, rnr_retry 0:
//!   RNR_RETRY_EXC_ERR, then WR_FLUSH_ERR; the responder stays in RTS.
//! - `retry_exc_peer_gone`: the responder destroys its QP; an RDMA WRITE and a SEND
//!   toward it with timeout 10 (4.096 us * 2^10) and retry_cnt 2: RETRY_EXC_ERR
//!   within 50 times what those imply ((retry_cnt + 1) timeouts), then WR_FLUSH_ERR.
//! - `wr_flush`: the responder, with four receives posted, is moved to ERR (all four
//!   flushed); the requester posts four receives and four sends (SEND, WRITE, READ,
//!   SEND) that its ERR peer never answers, and is moved to ERR: every WQE completes
//!   once, in order, with WR_FLUSH_ERR.
//!
//! Every case also checks each QP's state as ibv_query_qp reports it, and the async
//! events: on a ferrite device, an error a completion reports raises none (libibverbs'
//! ibv_destroy_qp waits for every reported event to be acknowledged), and a
//! responder's access violation raises IBV_EVENT_QP_ACCESS_ERR; another device's
//! events are reported, not checked.  The client's line for a case passes only if
//! the server's verdict passed too.
//!
//! The side channel, client first:
//!
//! ```text
//! CASE name= qpn= psn= gid= mtu=        READY qpn= psn= gid= addr= rkey= len= path_mtu= rd_atom= | FAIL ...
//! STEP do=destroy|err                   STEP_OK | STEP_FAIL reason...
//! CHECK                                 RESULT ok | RESULT fail reason...
//! QUIT passed= failed=                  BYE passed= failed=
//! ```

use std::time::{Duration, Instant};

use rdma_sys::ibv_qp_state::{IBV_QPS_ERR, IBV_QPS_RTS};
use rdma_sys::ibv_wc_status::*;

use crate::endpoint::{
    event_str, AsyncEvent, Endpoint, RecvWr, Remote, SendOp, SendWr, Timers, Wc, IBV_EVENT_QP_ACCESS_ERR,
    IBV_EVENT_QP_FATAL, IBV_EVENT_QP_REQ_ERR,
};
use crate::gid;
use crate::opts::{Opts, QpKind};
use crate::pattern::{self, DATA_OFF};
use crate::proto::{Conn, Msg};
use crate::tap::{one_line, Tap};

/// Each side's region.
const MR_LEN: usize = 64 << 10;
/// The messages the cases send.
const MSG: usize = 64;
/// Where the server's receives scatter to (one slot each), and their length.
const RECV_SLOT: usize = 256;
/// wr_ids of the server's receives, the client's receives and its sends.
const SRV_RECV: u64 = 0x5100;
const CLI_RECV: u64 = 0xc100;
/// A wrong key: the right one with its low byte (the key variant rxe and ferrite
/// both compare) changed, so that it names no region.
const KEY_FLIP: u32 = 0x80;
/// The RETRY_EXC_ERR bound: this many times what timeout and retry_cnt imply.
const SLACK: u64 = 50;
/// How long a side waits for completions it must not get.
const QUIET: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    BadRkey,
    OutOfBounds,
    BadLkey,
    Rnr,
    PeerGone,
    Flush,
}

const CASES: [Case; 6] = [Case::BadRkey, Case::OutOfBounds, Case::BadLkey, Case::Rnr, Case::PeerGone, Case::Flush];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::BadRkey => "rem_access_bad_rkey",
            Case::OutOfBounds => "rem_access_out_of_bounds",
            Case::BadLkey => "loc_prot_bad_lkey",
            Case::Rnr => "rnr_retry_exc",
            Case::PeerGone => "retry_exc_peer_gone",
            Case::Flush => "wr_flush",
        }
    }

    fn parse(s: &str) -> Option<Case> {
        CASES.into_iter().find(|c| c.name() == s)
    }

    /// The requester's timers.  Where a NAK is due, a few retries at 67 ms: a NAK
    /// that never comes ends as RETRY_EXC_ERR, and says so, instead of retrying
    /// for ever (retry_cnt 7 is infinite on ferrite and rxe).
    fn timers(self) -> Timers {
        let nak = Timers { timeout: 14, retry_cnt: 3, rnr_retry: 7 };
        match self {
            Case::Rnr => Timers { rnr_retry: 0, ..nak },
            Case::PeerGone => Timers { timeout: 10, retry_cnt: 2, rnr_retry: 7 },
            // Long enough that nothing times out before the QP is moved to ERR.
            Case::Flush => Timers { timeout: 18, ..Timers::default() },
            Case::BadRkey | Case::OutOfBounds | Case::BadLkey => nak,
        }
    }

    /// Receives the server posts before it connects.
    fn server_recvs(self) -> usize {
        match self {
            Case::BadRkey | Case::OutOfBounds | Case::BadLkey => 1,
            Case::Flush => 4,
            Case::Rnr | Case::PeerGone => 0,
        }
    }
}

/// Short names of the completion statuses the cases meet.
fn status_name(s: u32) -> String {
    match s {
        IBV_WC_SUCCESS => "SUCCESS".into(),
        IBV_WC_LOC_LEN_ERR => "LOC_LEN_ERR".into(),
        IBV_WC_LOC_QP_OP_ERR => "LOC_QP_OP_ERR".into(),
        IBV_WC_LOC_PROT_ERR => "LOC_PROT_ERR".into(),
        IBV_WC_WR_FLUSH_ERR => "WR_FLUSH_ERR".into(),
        IBV_WC_BAD_RESP_ERR => "BAD_RESP_ERR".into(),
        IBV_WC_LOC_ACCESS_ERR => "LOC_ACCESS_ERR".into(),
        IBV_WC_REM_INV_REQ_ERR => "REM_INV_REQ_ERR".into(),
        IBV_WC_REM_ACCESS_ERR => "REM_ACCESS_ERR".into(),
        IBV_WC_REM_OP_ERR => "REM_OP_ERR".into(),
        IBV_WC_RETRY_EXC_ERR => "RETRY_EXC_ERR".into(),
        IBV_WC_RNR_RETRY_EXC_ERR => "RNR_RETRY_EXC_ERR".into(),
        IBV_WC_FATAL_ERR => "FATAL_ERR".into(),
        IBV_WC_GENERAL_ERR => "GENERAL_ERR".into(),
        s => format!("status {s}"),
    }
}

fn state_name(s: u32) -> &'static str {
    ["RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"].get(s as usize).copied().unwrap_or("?")
}

fn show(wcs: &[Wc]) -> String {
    if wcs.is_empty() {
        return "none".into();
    }
    wcs.iter().map(|w| format!("{:#x} {}", w.wr_id, status_name(w.status))).collect::<Vec<_>>().join(", ")
}

fn show_events(ev: &[AsyncEvent]) -> String {
    if ev.is_empty() {
        return "none".into();
    }
    ev.iter()
        .map(|e| match e.qp_num {
            Some(q) => format!("{} (QP {q:#x})", event_str(e.kind)),
            None => event_str(e.kind),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Poll until `n` completions arrived or `limit` passed, then until none came for
/// 100 ms, or `QUIET` when none was due (anything more is a stray).  Also returns
/// when the first one arrived.
fn collect(ep: &Endpoint, n: usize, limit: Duration) -> Result<(Vec<Wc>, Option<Duration>), String> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut first = None;
    while out.len() < n && start.elapsed() < limit {
        if ep.poll(n - out.len(), &mut out)? == 0 {
            std::thread::sleep(Duration::from_micros(200));
        } else if first.is_none() {
            first = Some(start.elapsed());
        }
    }
    out.extend(ep.drain(if n == 0 { QUIET } else { Duration::from_millis(100) }));
    Ok((out, first))
}

/// What one queue's completions must be, in order: (wr_id, the statuses allowed).
type Want = Vec<(u64, &'static [u32])>;

/// One queue's completions must be `want`.  Only wr_id, status and qp_num are
/// defined for an error completion.
fn expect(wcs: &[Wc], want: &[(u64, &[u32])], qpn: u32, queue: &str) -> Result<(), String> {
    let got = show(wcs);
    let exp = want
        .iter()
        .map(|(id, st)| format!("{id:#x} {}", st.iter().map(|&s| status_name(s)).collect::<Vec<_>>().join("|")))
        .collect::<Vec<_>>()
        .join(", ");
    let ok = wcs.len() == want.len()
        && wcs.iter().zip(want).all(|(w, (id, st))| w.wr_id == *id && st.contains(&w.status) && w.qp_num == qpn);
    if ok {
        Ok(())
    } else {
        Err(format!("{queue} completions: {got}; want {exp} (QP {qpn:#x})"))
    }
}

/// Split completions into the send queue's (wr_ids below `recv_base`) and the
/// receive queue's.
fn split(wcs: Vec<Wc>, recv_base: u64) -> (Vec<Wc>, Vec<Wc>) {
    wcs.into_iter().partition(|w| w.wr_id < recv_base)
}

fn want_state(ep: &Endpoint, want: u32) -> Result<(), String> {
    let s = ep.qp_state()?;
    if s != want {
        return Err(format!("ibv_query_qp: QP in {}, want {}", state_name(s), state_name(want)));
    }
    Ok(())
}

/// The error events among `ev` (QP_FATAL, QP_REQ_ERR, QP_ACCESS_ERR).
fn error_events(ev: &[AsyncEvent]) -> Vec<u32> {
    ev.iter()
        .map(|e| e.kind)
        .filter(|&k| matches!(k, IBV_EVENT_QP_FATAL | IBV_EVENT_QP_REQ_ERR | IBV_EVENT_QP_ACCESS_ERR))
        .collect()
}

/// On a ferrite device, the QP's error events must be `want`; elsewhere they are
/// only reported.
fn want_events(ep: &Endpoint, ev: &[AsyncEvent], want: &[u32]) -> Result<(), String> {
    let got = error_events(ev);
    if ep.is_ferrite() && got != want {
        let w = if want.is_empty() { "none".into() } else { want.iter().map(|&k| event_str(k)).collect::<Vec<_>>().join(", ") };
        return Err(format!("async error events: {}; want {w}", show_events(ev)));
    }
    Ok(())
}

fn wr(wr_id: u64, op: SendOp, off: usize, len: usize) -> SendWr {
    SendWr { wr_id, op, sges: vec![(off, len)], signaled: true, inline: false, fence: false }
}

/// The seed of the message the bad-lkey case delivers.
const SEED: u64 = 0x00e7_7035;

// --- the client --------------------------------------------------------------------

/// What the server's READY told.
struct Peer {
    remote: Remote,
    addr: u64,
    len: u64,
}

pub fn run_client(o: &Opts) -> i32 {
    let mut tap = Tap::default();
    println!("# ferrite-testclient errors (client)");
    let cases: Vec<Case> = CASES
        .into_iter()
        .filter(|c| o.only.as_deref().is_none_or(|t| c.name().contains(t)))
        .filter(|c| !o.skip.iter().any(|s| s == c.name()))
        .collect();
    for s in &o.skip {
        tap.diag(&format!("{s}: left out (--skip)"));
    }
    let mut conn = match Conn::connect(o.server.as_deref().unwrap_or_default(), o.port, Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => {
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    tap.plan(cases.len());
    let mut fatal: Option<String> = None;
    for &c in &cases {
        if let Some(f) = &fatal {
            tap.result(c.name(), &Err(format!("not run: {f}")));
            continue;
        }
        let t0 = Instant::now();
        match client_case(&mut conn, o, c, &tap) {
            Ok(r) => tap.result(c.name(), &r),
            Err(e) => {
                tap.result(c.name(), &Err(e.clone()));
                fatal = Some(e);
            }
        }
        tap.diag(&format!("{}: {:.1} s", c.name(), t0.elapsed().as_secs_f64()));
    }
    if fatal.is_none() {
        let quit = format!("QUIT passed={} failed={}", tap.passed, tap.failed);
        match conn.ask(&quit, o.timeout + Duration::from_secs(15)).and_then(|m| m.want("BYE")) {
            Ok(b) => tap.diag(&format!("server: {} passed, {} failed", b.get("passed").unwrap_or("?"),
                                       b.get("failed").unwrap_or("?"))),
            Err(e) => tap.result("server summary", &Err(e)),
        }
    }
    tap.finish()
}

/// One case from the client's side.  The outer `Err`: the side channel broke.
fn client_case(conn: &mut Conn, o: &Opts, c: Case, tap: &Tap) -> Result<Result<(), String>, String> {
    let name = c.name();
    let tcp = o.timeout + Duration::from_secs(15);
    let mut ep = match prepare_client(o, c) {
        Ok(ep) => ep,
        Err(e) => return Ok(Err(format!("set-up: {e}"))),
    };
    let psn = pattern::random_psn();
    let r = conn.ask(
        &format!("CASE name={name} qpn={} psn={psn} gid={} mtu={}", ep.qpn(), gid::to_hex(&ep.gid), ep.caps.active_mtu),
        tcp,
    )?;
    if r.verb == "FAIL" {
        return Ok(Err(format!("server set-up: {}", r.words.join(" "))));
    }
    let r = r.want("READY")?;
    let peer = parse_ready(&r)?;
    let path_mtu = r.num("path_mtu")? as u32;
    let max_rd = ep.caps.max_qp_init_rd_atom.min(r.num("rd_atom")? as u32).clamp(1, 16) as u8;
    let connected = ep
        .to_rtr(&peer.remote, path_mtu, peer.remote.psn, ep.caps.max_qp_rd_atom.min(16) as u8)
        .and_then(|_| ep.to_rts_timers(psn, max_rd, c.timers()));
    let local = match connected {
        Ok(()) => client_part(conn, &mut ep, c, &peer, o, tap)?,
        Err(e) => Err(e),
    };
    let v = conn.ask("CHECK", tcp)?.want("RESULT")?;
    let server = match v.words.first().map(String::as_str) {
        Some("ok") => Ok(()),
        _ => Err(format!("server: {}", v.rest())),
    };
    Ok(match (local, server) {
        (Ok(()), s) => s,
        (Err(l), Ok(())) => Err(l),
        (Err(l), Err(s)) => Err(format!("{l}; {s}")),
    })
}

fn prepare_client(o: &Opts, c: Case) -> Result<Endpoint, String> {
    let mut ep = Endpoint::open(o.dev.as_deref(), o.gid_index, o.ipv6, false)?;
    ep.create(QpKind::Rc, MR_LEN)?;
    ep.to_init()?;
    if c == Case::Flush {
        let wrs: Vec<RecvWr> = (0..4)
            .map(|k| RecvWr { wr_id: CLI_RECV + k as u64, sges: vec![(DATA_OFF + 8192 + k * RECV_SLOT, RECV_SLOT)] })
            .collect();
        ep.post_recv(&wrs)?;
    }
    Ok(ep)
}

fn parse_ready(r: &Msg) -> Result<Peer, String> {
    Ok(Peer {
        remote: Remote {
            qpn: r.num("qpn")? as u32,
            psn: r.num("psn")? as u32,
            gid: gid::from_hex(r.get("gid")?).ok_or("READY: bad gid=")?,
            rkey: r.num("rkey")? as u32,
        },
        addr: r.num("addr")?,
        len: r.num("len")?,
    })
}

/// The requester's part of case `c`: post, wait, check.  Inner `Err`: the case failed.
fn client_part(conn: &mut Conn, ep: &mut Endpoint, c: Case, p: &Peer, o: &Opts, tap: &Tap)
    -> Result<Result<(), String>, String> {
    let name = c.name();
    let qpn = ep.qpn();
    let rkey = p.remote.rkey;
    let send = |id| wr(id, SendOp::Send, DATA_OFF, MSG);
    // What the remote access errors complete with: the NAK's status, or, from a
    // responder that sends none, the retries' end.
    let access: &'static [u32] = if o.no_nak { &[IBV_WC_RETRY_EXC_ERR] } else { &[IBV_WC_REM_ACCESS_ERR] };
    let (wrs, keys, want): (Vec<SendWr>, Vec<Option<u32>>, Want) = match c {
        Case::BadRkey => (
            vec![wr(1, SendOp::Write { raddr: p.addr + DATA_OFF as u64, rkey: rkey ^ KEY_FLIP }, DATA_OFF, MSG), send(2)],
            vec![],
            vec![(1, access), (2, &[IBV_WC_WR_FLUSH_ERR])],
        ),
        Case::OutOfBounds => (
            vec![wr(1, SendOp::Read { raddr: p.addr + p.len - (MSG / 2) as u64, rkey }, DATA_OFF, MSG), send(2)],
            vec![],
            vec![(1, access), (2, &[IBV_WC_WR_FLUSH_ERR])],
        ),
        Case::BadLkey => {
            pattern::fill(&mut ep.mem()[DATA_OFF..DATA_OFF + MSG], SEED, 0, false);
            (
                vec![send(1), send(2), send(3)],
                vec![None, Some(ep.lkey() ^ KEY_FLIP), None],
                vec![(1, &[IBV_WC_SUCCESS, IBV_WC_WR_FLUSH_ERR]), (2, &[IBV_WC_LOC_PROT_ERR]), (3, &[IBV_WC_WR_FLUSH_ERR])],
            )
        }
        Case::Rnr => (
            vec![send(1), send(2)],
            vec![],
            vec![(1, &[IBV_WC_RNR_RETRY_EXC_ERR]), (2, &[IBV_WC_WR_FLUSH_ERR])],
        ),
        Case::PeerGone => (
            vec![wr(1, SendOp::Write { raddr: p.addr + DATA_OFF as u64, rkey }, DATA_OFF, MSG), send(2)],
            vec![],
            vec![(1, &[IBV_WC_RETRY_EXC_ERR]), (2, &[IBV_WC_WR_FLUSH_ERR])],
        ),
        Case::Flush => (
            vec![
                send(1),
                wr(2, SendOp::Write { raddr: p.addr + DATA_OFF as u64, rkey }, DATA_OFF, MSG),
                wr(3, SendOp::Read { raddr: p.addr + DATA_OFF as u64, rkey }, DATA_OFF + 4096, MSG),
                send(4),
            ],
            vec![],
            (1..=4).map(|k| (k, &[IBV_WC_WR_FLUSH_ERR][..])).collect(),
        ),
    };
    // The server's part before the requester's, where the case has one.
    let step = match c {
        Case::PeerGone => Some("destroy"),
        Case::Flush => Some("err"),
        _ => None,
    };
    if let Some(s) = step {
        let r = conn.ask(&format!("STEP do={s}"), o.timeout + Duration::from_secs(15))?;
        if r.verb != "STEP_OK" {
            return Ok(Err(format!("server step {s}: {} {}", r.verb, r.words.join(" "))));
        }
    }
    let t = c.timers();
    let bound = (c == Case::PeerGone)
        .then(|| Duration::from_nanos(SLACK * (t.retry_cnt as u64 + 1) * (4096u64 << t.timeout)));
    if let Err(e) = ep.post_send_keys(&wrs, &keys) {
        return Ok(Err(e));
    }
    if c == Case::Flush {
        if let Err(e) = ep.to_err() {
            return Ok(Err(e));
        }
    }
    let nrecv = if c == Case::Flush { 4 } else { 0 };
    let limit = bound.map_or(o.timeout, |b| (b * 4).max(Duration::from_secs(10)));
    let (wcs, first) = collect(ep, wrs.len() + nrecv, limit)?;
    let (sq, rq) = split(wcs, CLI_RECV);
    let state = ep.qp_state().map(state_name).unwrap_or("?");
    let ev = ep.async_events().unwrap_or_default();
    let mut d = format!("{name}: client: send completions {}", show(&sq));
    if o.no_nak && matches!(c, Case::BadRkey | Case::OutOfBounds) {
        d += " (--no-nak: RETRY_EXC_ERR expected, the responder sends no NAK)";
    }
    if nrecv > 0 {
        d += &format!("; receive completions {}", show(&rq));
    }
    if let (Some(b), Some(f)) = (bound, first) {
        d += &format!("; RETRY_EXC_ERR after {} ms, bound {} ms = {SLACK} x (retry_cnt {} + 1) x 4.096 us x 2^{}",
                      f.as_millis(), b.as_millis(), t.retry_cnt, t.timeout);
    }
    d += &format!("; QP {state}; async events {}", show_events(&ev));
    tap.diag(&d);
    let recv_want: Want = (0..nrecv as u64).map(|k| (CLI_RECV + k, &[IBV_WC_WR_FLUSH_ERR][..])).collect();
    Ok(expect(&sq, &want, qpn, "send")
        .and_then(|_| expect(&rq, &recv_want, qpn, "receive"))
        .and_then(|_| match (bound, first) {
            (Some(b), Some(f)) if f > b => Err(format!("RETRY_EXC_ERR after {} ms, beyond the bound of {} ms",
                                                       f.as_millis(), b.as_millis())),
            _ => Ok(()),
        })
        .and_then(|_| want_state(ep, IBV_QPS_ERR))
        .and_then(|_| want_events(ep, &ev, &[])))
}

// --- the server ----------------------------------------------------------------------

pub fn run_server(o: &Opts) -> i32 {
    let mut tap = Tap::default();
    println!("# ferrite-testclient errors (server)");
    let mut conn = match Conn::accept(o.port) {
        Ok(c) => c,
        Err(e) => {
            tap.result("setup", &Err(e));
            return tap.finish();
        }
    };
    if let Err(e) = serve(&mut conn, o, &mut tap) {
        tap.result("side channel", &Err(e));
    }
    tap.finish()
}

fn serve(conn: &mut Conn, o: &Opts, tap: &mut Tap) -> Result<(), String> {
    loop {
        let m = conn.recv(None)?;
        match m.verb.as_str() {
            "CASE" => server_case(conn, o, &m, tap)?,
            "QUIT" => {
                println!("# client: {} passed, {} failed", m.num("passed")?, m.num("failed")?);
                return conn.send(&format!("BYE passed={} failed={}", tap.passed, tap.failed));
            }
            v => return Err(format!("unknown request {v}")),
        }
    }
}

/// Fresh verbs objects for case `c`, the receives posted, connected to the client.
fn prepare_server(o: &Opts, c: Case, m: &Msg) -> Result<(Endpoint, String), String> {
    let remote = Remote {
        qpn: m.num("qpn")? as u32,
        psn: m.num("psn")? as u32,
        gid: gid::from_hex(m.get("gid")?).ok_or("CASE: bad gid=")?,
        rkey: 0,
    };
    let mut ep = Endpoint::open(o.dev.as_deref(), o.gid_index, o.ipv6, false)?;
    ep.create(QpKind::Rc, MR_LEN)?;
    ep.to_init()?;
    let wrs: Vec<RecvWr> = (0..c.server_recvs())
        .map(|k| RecvWr { wr_id: SRV_RECV + k as u64, sges: vec![(DATA_OFF + k * RECV_SLOT, RECV_SLOT)] })
        .collect();
    if !wrs.is_empty() {
        // Poisoned, so that the bad-lkey case sees the bytes it was sent.
        pattern::fill(&mut ep.mem()[DATA_OFF..DATA_OFF + RECV_SLOT], SEED, 0, true);
        ep.post_recv(&wrs)?;
    }
    let path_mtu = (m.num("mtu")? as u32).min(ep.caps.active_mtu);
    let max_dest = ep.caps.max_qp_rd_atom.clamp(1, 16) as u8;
    let psn = pattern::random_psn();
    ep.to_rtr(&remote, path_mtu, remote.psn, max_dest)?;
    ep.to_rts(psn, 1)?;
    let ready = format!(
        "READY qpn={} psn={psn} gid={} addr={} rkey={} len={} path_mtu={path_mtu} rd_atom={max_dest}",
        ep.qpn(), gid::to_hex(&ep.gid), ep.addr(0), ep.rkey(), ep.mr_len()
    );
    Ok((ep, ready))
}

fn server_case(conn: &mut Conn, o: &Opts, m: &Msg, tap: &mut Tap) -> Result<(), String> {
    let name = m.get("name")?.to_string();
    let Some(c) = Case::parse(&name) else {
        conn.send(&format!("FAIL unknown case {name}"))?;
        tap.result(&name, &Err("unknown case".into()));
        return Ok(());
    };
    let (mut ep, ready) = match prepare_server(o, c, m) {
        Ok(x) => x,
        Err(e) => {
            conn.send(&format!("FAIL {}", one_line(&e)))?;
            tap.result(&name, &Err(format!("set-up: {e}")));
            return Ok(());
        }
    };
    conn.send(&ready)?;
    let qpn = ep.qpn();
    let mut step: Option<Result<(), String>> = None;
    let mut events: Vec<AsyncEvent> = Vec::new();
    loop {
        let r = conn.recv(None)?;
        match r.verb.as_str() {
            "STEP" => {
                let v = match (c, r.get("do")?) {
                    (Case::PeerGone, "destroy") => ep.destroy_qp().map(|ev| {
                        tap.diag(&format!("{name}: server: QP {qpn:#x} destroyed; its async events {}", show_events(&ev)));
                        events = ev;
                    }),
                    (Case::Flush, "err") => server_flush(&mut ep, &name, o, tap),
                    (_, d) => Err(format!("no step {d} in {name}")),
                };
                conn.send(&match &v {
                    Ok(()) => "STEP_OK".to_string(),
                    Err(e) => format!("STEP_FAIL {}", one_line(e)),
                })?;
                step = Some(v);
            }
            "CHECK" => {
                let v = server_check(&mut ep, c, o, step.take(), events, tap);
                tap.result(&name, &v);
                return conn.send(&match v {
                    Ok(()) => "RESULT ok".to_string(),
                    Err(e) => format!("RESULT fail {}", one_line(&e)),
                });
            }
            v => return Err(format!("expected STEP or CHECK in {name}, got {v}")),
        }
    }
}

/// The server's step of `wr_flush`: to ERR, its four receives flushed in order.
fn server_flush(ep: &mut Endpoint, name: &str, o: &Opts, tap: &Tap) -> Result<(), String> {
    ep.to_err()?;
    let (wcs, _) = collect(ep, 4, o.timeout)?;
    tap.diag(&format!("{name}: server: moved to ERR; receive completions {}", show(&wcs)));
    let want: Want = (0..4).map(|k| (SRV_RECV + k, &[IBV_WC_WR_FLUSH_ERR][..])).collect();
    expect(&wcs, &want, ep.qpn(), "receive").and_then(|_| want_state(ep, IBV_QPS_ERR))
}

/// What the responder must have seen of case `c`.
fn server_check(ep: &mut Endpoint, c: Case, o: &Opts, step: Option<Result<(), String>>,
                mut events: Vec<AsyncEvent>, tap: &Tap) -> Result<(), String> {
    let name = c.name();
    let (n, state, want_ev): (usize, Option<u32>, &[u32]) = match c {
        // An RC responder's access violation fails its QP, which flushes the receive.
        Case::BadRkey | Case::OutOfBounds => (1, Some(IBV_QPS_ERR), &[IBV_EVENT_QP_ACCESS_ERR]),
        Case::BadLkey => (1, Some(IBV_QPS_RTS), &[]),
        Case::Rnr => (0, Some(IBV_QPS_RTS), &[]),
        Case::PeerGone => (0, None, &[]),
        Case::Flush => (0, Some(IBV_QPS_ERR), &[]),
    };
    let (wcs, _) = collect(ep, n, o.timeout)?;
    let st = if state.is_some() { ep.qp_state().map(state_name).unwrap_or("?") } else { "destroyed" };
    events.extend(ep.async_events().unwrap_or_default());
    tap.diag(&format!("{name}: server: receive completions {}; QP {st}; async events {}", show(&wcs),
                      show_events(&events)));
    let want: Want = match c {
        Case::BadRkey | Case::OutOfBounds => vec![(SRV_RECV, &[IBV_WC_WR_FLUSH_ERR])],
        Case::BadLkey => vec![(SRV_RECV, &[IBV_WC_SUCCESS])],
        _ => vec![],
    };
    match step {
        Some(r) => r?,
        None if matches!(c, Case::PeerGone | Case::Flush) => return Err("the client asked for no step".into()),
        None => {}
    }
    let qpn = if c == Case::PeerGone { wcs.first().map_or(0, |w| w.qp_num) } else { ep.qpn() };
    expect(&wcs, &want, qpn, "receive")?;
    if c == Case::BadLkey {
        // The first SEND's bytes, exactly, and nothing past them.
        let w = &wcs[0];
        if w.byte_len as usize != MSG {
            return Err(format!("the SEND delivered {} bytes, want {MSG}", w.byte_len));
        }
        let mem = ep.mem();
        if let Some(x) = pattern::check(&mem[DATA_OFF..DATA_OFF + MSG], SEED, 0, false) {
            return Err(format!("received byte {} is {:#04x}, want {:#04x} ({} differ)", x.at, x.got, x.want, x.count));
        }
        if let Some(x) = pattern::check(&mem[DATA_OFF + MSG..DATA_OFF + RECV_SLOT], SEED, MSG as u64, true) {
            return Err(format!("byte {} past the message changed ({} differ)", MSG + x.at, x.count));
        }
    }
    if let Some(s) = state {
        want_state(ep, s)?;
    }
    want_events(ep, &events, want_ev)
}
