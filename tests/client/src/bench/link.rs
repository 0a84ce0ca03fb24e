//! The benchmark's connection, through the modules it shares with ferrite-testclient
//! (endpoint, gid, proto): each side opens its device, creates one RC QP and one MR of
//! two regions, a source and a destination, each as large as the largest message.
//! They exchange QPN, PSN, GID, MR address and rkey on the side channel, then move the
//! QP to RTS.  After a failed measurement both QPs are reset and reconnected with
//! fresh PSNs, so one failure does not spoil the measurements after it.
//!
//! ```text
//! client: HELLO qpn= psn= gid= addr= rkey= region= mtu= rd_atom= sq= rq=
//! server: HELLO qpn= psn= gid= addr= rkey= path_mtu= rd_atom= max_inline=
//! client: RESET psn=          server: RESET_OK psn=
//! ```

use std::time::Duration;

use ferrite_testclient::endpoint::{Endpoint, Remote};
use ferrite_testclient::gid;
use ferrite_testclient::proto::{Conn, Msg};
use ferrite_testclient::QpKind;

use crate::clock::now_ns;
use crate::opts::Opts;

/// Receive WRs the QP holds (SEND tests keep up to this many posted).
pub const RQ: u32 = 512;
/// READs or atomics in flight at most, whatever the devices allow.
const RD_ATOM_CAP: u32 = 16;
const HELLO_WAIT: Duration = Duration::from_secs(60);

pub struct Link {
    pub ep: Endpoint,
    pub conn: Conn,
    pub remote: Remote,
    /// The peer's MR base (its source region; the destination follows).
    pub raddr: u64,
    /// Bytes in each region, the same on both sides.
    pub region: usize,
    pub path_mtu: u32,
    pub max_rd: u8,
    pub max_dest: u8,
    pub sq: u32,
    pub rq: u32,
    pub peer_inline: u32,
}

fn psn() -> u32 {
    let t = now_ns();
    ((t ^ (t >> 24) ^ u64::from(std::process::id()) << 5) & 0xff_ffff) as u32
}

fn remote_of(h: &Msg) -> Result<Remote, String> {
    Ok(Remote {
        qpn: h.num("qpn")? as u32,
        psn: h.num("psn")? as u32,
        gid: gid::from_hex(h.get("gid")?).ok_or("HELLO: bad gid=")?,
        rkey: h.num("rkey")? as u32,
    })
}

impl Link {
    /// Offsets of the two local regions.
    pub fn src(&self) -> usize {
        0
    }

    pub fn dst(&self) -> usize {
        self.region
    }

    /// Addresses of the peer's regions.
    pub fn remote_src(&self) -> u64 {
        self.raddr
    }

    pub fn remote_dst(&self) -> u64 {
        self.raddr + self.region as u64
    }

    /// The client's side: connect, HELLO, RTS.  `region` covers the largest message.
    pub fn client(o: &Opts, region: usize, sq: u32) -> Result<Link, String> {
        let region = region.max(4096).next_multiple_of(4096);
        let mut ep = Endpoint::open_cq(o.dev.as_deref(), o.gid_index, false, false, sq + RQ + 64)?;
        ep.create_sized(QpKind::Rc, 2 * region, sq, RQ)?;
        let server = o.server.as_deref().ok_or("no --server")?;
        let mut conn = Conn::connect(server, o.port, Duration::from_secs(60))?;
        let psn = psn();
        let mtu = o.mtu.unwrap_or(ep.caps.active_mtu).min(ep.caps.active_mtu);
        let max_dest = ep.caps.max_qp_rd_atom.min(RD_ATOM_CAP) as u8;
        let h = conn.ask(
            &format!(
                "HELLO qpn={} psn={psn} gid={} addr={} rkey={} region={region} mtu={mtu} \
                 rd_atom={max_dest} sq={sq} rq={RQ}",
                ep.qpn(), gid::to_hex(&ep.gid), ep.addr(0), ep.rkey()
            ),
            HELLO_WAIT,
        )?;
        if h.verb == "ERROR" {
            return Err(format!("the server failed: {}", h.words.join(" ")));
        }
        let h = h.want("HELLO")?;
        let remote = remote_of(&h)?;
        let path_mtu = h.num("path_mtu")? as u32;
        let max_rd = ep.caps.max_qp_init_rd_atom.min(h.num("rd_atom")? as u32).min(RD_ATOM_CAP) as u8;
        ep.to_init()?;
        ep.to_rtr(&remote, path_mtu, remote.psn, max_dest)?;
        ep.to_rts(psn, max_rd)?;
        Ok(Link {
            raddr: h.num("addr")?,
            peer_inline: h.num("max_inline")? as u32,
            ep, conn, remote, region, path_mtu, max_rd, max_dest, sq, rq: RQ,
        })
    }

    /// The server's side: accept, follow the client's HELLO, RTS, HELLO back.  With
    /// `events`, its CQ gets a completion channel to sleep on.
    pub fn server(o: &Opts, events: bool) -> Result<Link, String> {
        let mut conn = Conn::accept(o.port)?;
        let r = (|| {
            let h = conn.recv(Some(HELLO_WAIT))?.want("HELLO")?;
            let region = h.num("region")? as usize;
            let (sq, rq) = (h.num("sq")? as u32, h.num("rq")? as u32);
            if region == 0 || region > 1 << 30 || region % 4096 != 0 || sq == 0 || sq > 16384
                || rq == 0 || rq > 16384 {
                return Err(format!("HELLO: bad region={region} sq={sq} rq={rq}"));
            }
            let mut ep = Endpoint::open_cq(o.dev.as_deref(), o.gid_index, false, events, sq + rq + 64)?;
            ep.create_sized(QpKind::Rc, 2 * region, sq, rq)?;
            let remote = remote_of(&h)?;
            let path_mtu = (h.num("mtu")? as u32).min(ep.caps.active_mtu);
            let max_dest = ep.caps.max_qp_rd_atom.min(RD_ATOM_CAP) as u8;
            let max_rd = ep.caps.max_qp_init_rd_atom.min(h.num("rd_atom")? as u32).min(RD_ATOM_CAP) as u8;
            let psn = psn();
            ep.to_init()?;
            ep.to_rtr(&remote, path_mtu, remote.psn, max_dest)?;
            ep.to_rts(psn, max_rd)?;
            Ok((ep, h.num("addr")?, remote, region, path_mtu, max_rd, max_dest, sq, rq, psn))
        })();
        match r {
            Ok((ep, raddr, remote, region, path_mtu, max_rd, max_dest, sq, rq, psn)) => {
                conn.send(&format!(
                    "HELLO qpn={} psn={psn} gid={} addr={} rkey={} path_mtu={path_mtu} \
                     rd_atom={max_dest} max_inline={}",
                    ep.qpn(), gid::to_hex(&ep.gid), ep.addr(0), ep.rkey(), ep.max_inline
                ))?;
                Ok(Link { ep, conn, remote, raddr, region, path_mtu, max_rd, max_dest, sq, rq,
                          peer_inline: 0 })
            }
            Err(e) => {
                let _ = conn.send(&format!("ERROR {e}"));
                Err(e)
            }
        }
    }

    /// The client's side of a reset: flush, new PSNs on both sides, RTS again.
    pub fn client_reset(&mut self) -> Result<(), String> {
        self.ep.reset()?;
        let psn = psn();
        let m = self.conn.ask(&format!("RESET psn={psn}"), HELLO_WAIT)?.want("RESET_OK")?;
        self.remote.psn = m.num("psn")? as u32;
        self.ep.to_rtr(&self.remote, self.path_mtu, self.remote.psn, self.max_dest)?;
        self.ep.to_rts(psn, self.max_rd)
    }

    /// The server's side of a reset (`m` is the client's RESET).
    pub fn server_reset(&mut self, m: &Msg) -> Result<(), String> {
        self.ep.reset()?;
        self.remote.psn = m.num("psn")? as u32;
        let psn = psn();
        self.ep.to_rtr(&self.remote, self.path_mtu, self.remote.psn, self.max_dest)?;
        self.ep.to_rts(psn, self.max_rd)?;
        self.conn.send(&format!("RESET_OK psn={psn}"))
    }
}
