//! Command-line options of both roles.

use std::time::Duration;

pub use ferrite_testclient::{parse_num, QpKind};

pub const USAGE: &str = "\
usage: ferrite-testclient server [OPTIONS]
       ferrite-testclient client --server ADDR [OPTIONS]
       ferrite-testclient errors [--server ADDR] [OPTIONS]

The server waits for one client on a TCP port, exchanges connection info with it, then
checks what the client's operations leave in its memory.  The client runs the test
matrix.  Both print one line per check (ok N - name / not ok N - name # reason) and
finally \"N passed, N failed\"; the exit status is 0 iff nothing failed.

options:
  --dev NAME        RDMA device (default: the first one)
  --gid-index N     GID index on port 1 (default: the first RoCE v2 GID with an IPv4
                    address, from sysfs)
  --ipv6            default to the first RoCE v2 GID with an IPv6 address instead
  --qp rc|uc        transport (default rc; uc runs no READ and no atomics)
  --mtu BYTES       path MTU: 256, 512, 1024, 2048 or 4096 (default: the smaller of
                    the two ports' active MTUs)
  --max-size BYTES  largest message (default 16 MiB; capped at the ports' max_msg_sz)
  --quick           a handful of sizes instead of the whole list
  --events          wait for completions on a completion channel instead of polling
  --timeout SECS    per-operation completion timeout (default 30)
  --psn N           initial send PSN (default: random); e.g. 0xfffff0 crosses the
                    24-bit wrap within the first tests
  --port N          TCP port of the side channel (default 18515)
  --server ADDR     (client) the server's address
  --no-atomics      (client) leave out the atomic tests (5.10's rxe cannot answer them)
  --ibta15 auto|require|off
                    (client) IBTA 1.5's ATOMIC_WRITE and FLUSH on RC: auto (default)
                    runs them where both devices advertise them and this libibverbs
                    has the verbs (ibv_wr_atomic_write from rdma-core 44,
                    ibv_wr_flush from 45); require fails the run where they do not;
                    off leaves them out
  --only TEXT       (client) run only the tests whose name contains TEXT
  --inject KIND@N   (client) break test N on purpose, to see the failure caught and
                    the run recover: corrupt (flip a payload byte; SEND, WRITE, READ)
                    or hang (post nothing, so the server times out; SEND)
The client chooses the transport, MTU, sizes and variants; the server follows it.

`errors` provokes error completions on RC, one case at a time with fresh QPs: a bad
rkey, a remote access out of bounds, a bad lkey, no receive with rnr_retry 0, the
peer's QP gone, a QP moved to ERR with WQEs outstanding.  Without --server it is
the responder's side, with it the requester's; both check their completions, QP
state and async events (src/errors.rs).  It takes --dev, --gid-index, --ipv6,
--port, --timeout, --only and
  --skip NAME[,NAME]  (errors client) leave these cases out; (client) leave out the
                    tests whose name contains one of them (said in a diagnostic)
  --no-nak          (errors client) the responder never NAKs an error that takes no
                    receive WQE (rxe before Linux 5.13): the remote access cases then
                    expect RETRY_EXC_ERR, the retries run out in silence
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Server,
    Client,
    /// The error cases (src/errors.rs): the requester with --server, else the responder.
    Errors,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub role: Role,
    pub dev: Option<String>,
    pub gid_index: Option<u32>,
    pub ipv6: bool,
    pub qp: QpKind,
    pub mtu: Option<u32>,
    pub max_size: usize,
    pub quick: bool,
    pub events: bool,
    pub timeout: Duration,
    pub psn: Option<u32>,
    pub port: u16,
    pub server: Option<String>,
    pub inject: Option<(Inject, u32)>,
    pub only: Option<String>,
    pub no_atomics: bool,
    pub ibta15: Ibta15,
    pub skip: Vec<String>,
    pub no_nak: bool,
}

/// Whether the client runs IBTA 1.5's ATOMIC_WRITE and FLUSH tests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ibta15 {
    Auto,
    Require,
    Off,
}

/// A fault the client puts into one test on purpose.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inject {
    Corrupt,
    Hang,
}

pub enum Cmd {
    Help,
    Run(Opts),
}

pub fn parse(args: &[String]) -> Result<Cmd, String> {
    let mut it = args.iter();
    let role = match it.next().map(String::as_str) {
        Some("server") => Role::Server,
        Some("client") => Role::Client,
        Some("errors") => Role::Errors,
        Some("-h") | Some("--help") | Some("help") | None => return Ok(Cmd::Help),
        Some(r) => return Err(format!("unknown role {r:?} (server or client)")),
    };
    let mut o = Opts {
        role,
        dev: None,
        gid_index: None,
        ipv6: false,
        qp: QpKind::Rc,
        mtu: None,
        max_size: 16 << 20,
        quick: false,
        events: false,
        timeout: Duration::from_secs(30),
        psn: None,
        port: 18515,
        server: None,
        inject: None,
        only: None,
        no_atomics: false,
        ibta15: Ibta15::Auto,
        skip: Vec::new(),
        no_nak: false,
    };
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next().cloned().ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| -> Result<u64, String> {
            parse_num(&v).ok_or_else(|| format!("{name}: not a number: {v:?}"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(Cmd::Help),
            "--dev" | "-d" => o.dev = Some(val(a)?),
            "--gid-index" | "-g" => o.gid_index = Some(num(a, val(a)?)? as u32),
            "--ipv6" => o.ipv6 = true,
            "--qp" => {
                let v = val(a)?;
                o.qp = QpKind::parse(&v).ok_or_else(|| format!("--qp: rc or uc, not {v:?}"))?;
            }
            "--mtu" | "-m" => {
                let v = num(a, val(a)?)?;
                if ![256, 512, 1024, 2048, 4096].contains(&v) {
                    return Err(format!("--mtu: 256, 512, 1024, 2048 or 4096, not {v}"));
                }
                o.mtu = Some(v as u32);
            }
            "--max-size" => {
                let v = num(a, val(a)?)?;
                if v == 0 || v > 1 << 30 {
                    return Err(format!("--max-size: 1 byte to 1 GiB, not {v}"));
                }
                o.max_size = v as usize;
            }
            "--quick" => o.quick = true,
            "--events" => o.events = true,
            "--timeout" => {
                let v = num(a, val(a)?)?;
                if v == 0 {
                    return Err("--timeout: at least 1 s".into());
                }
                o.timeout = Duration::from_secs(v);
            }
            "--psn" => o.psn = Some(num(a, val(a)?)? as u32 & 0xff_ffff),
            "--port" | "-p" => o.port = num(a, val(a)?)?.try_into().map_err(|_| "--port: too big")?,
            "--server" | "-s" => o.server = Some(val(a)?),
            "--only" => o.only = Some(val(a)?),
            "--skip" => o.skip.extend(val(a)?.split(',').filter(|s| !s.is_empty()).map(String::from)),
            "--no-atomics" => o.no_atomics = true,
            "--no-nak" => o.no_nak = true,
            "--ibta15" => {
                let v = val(a)?;
                o.ibta15 = match v.as_str() {
                    "auto" => Ibta15::Auto,
                    "require" => Ibta15::Require,
                    "off" => Ibta15::Off,
                    _ => return Err(format!("--ibta15: auto, require or off, not {v:?}")),
                };
            }
            "--inject" => {
                let v = val(a)?;
                let bad = || format!("--inject: corrupt@N or hang@N, not {v:?}");
                let (k, n) = v.split_once('@').ok_or_else(bad)?;
                let kind = match k {
                    "corrupt" => Inject::Corrupt,
                    "hang" => Inject::Hang,
                    _ => return Err(bad()),
                };
                o.inject = Some((kind, parse_num(n).ok_or_else(bad)? as u32));
            }
            _ => return Err(format!("unknown option {a:?}")),
        }
    }
    if role == Role::Client && o.server.is_none() {
        return Err("the client needs --server ADDR".into());
    }
    Ok(Cmd::Run(o))
}
