//! Command-line options of ferrite-bench's four roles.

use std::time::Duration;

use ferrite_testclient::parse_num;

pub const USAGE: &str = "\
usage: ferrite-bench server [--dev NAME] [--gid-index N] [--port N]
       ferrite-bench client --server ADDR [--dev NAME] [OPTIONS]
       ferrite-bench memcpy [--sizes LIST] [--seconds S] [--tag KEY=VALUE]...
       ferrite-bench udp --src ADDR --src-dev DEV --dst ADDR --dst-dev DEV [OPTIONS]

The server waits for one client on a TCP port (default 18600) and follows it.  The
client measures, one JSON object per measurement on stdout (progress on stderr):

  bw    bandwidth of each of --bw-ops at each of --sizes, --tx-depth WRs outstanding,
        one completion every --cq-mod WRs, iterations per size from --bytes clamped to
        --min-iters..--max-iters
  rate  message rate of each of --rate-ops at --rate-size bytes, for each post list
        length of --post-lists (WRs per ibv_post_send), --rate-iters messages
  lat   latency of each of --lat-ops at each of --lat-sizes, --lat-iters samples after
        --warmup: WRITE and SEND ping-pong (half the round trip; WRITE by polling the
        last byte of the buffer), READ one at a time (the whole READ)

Times come from CLOCK_MONOTONIC; guest CPU time from /proc/stat (all CPUs) and the
device counters from sysfs hw_counters, both read around each measured run.
`memcpy` measures one core's memcpy bandwidth at each size (default 64K,64M).
`udp` measures the kernel's UDP path between two local addresses on two devices
(the ceiling under any RoCE v2 device there), with --tests flood,pingpong:

  flood     datagrams of each of --sizes (default 96,1040: a 64-byte WRITE and a full
            packet at path MTU 1024) sent with sendmmsg, 32 a call, for --seconds;
            datagrams received per second
  pingpong  a datagram of each of --lat-sizes (default 34: a 2-byte WRITE) bounced
            --lat-iters times after --warmup; half the round trip (with --yield both
            ends poll and yield)

options:
  --dev NAME        RDMA device (default: the first one)
  --gid-index N     GID index on port 1 (default: the first RoCE v2 GID with an IPv4
                    address, from sysfs)
  --port N          TCP port of the side channel (default 18600)
  --server ADDR     (client) the server's address
  --mtu BYTES       (client) path MTU (default: the smaller active MTU)
  --tests LIST      (client) which of bw,rate,lat to run (default all)
  --bw-ops LIST     write,read,send (default all three)
  --sizes LIST      bw sizes (default 2,16,64,256,1K,4K,16K,64K,256K,1M); memcpy
                    sizes (default 64K,64M)
  --tx-depth N      WRs outstanding (default 128)
  --cq-mod N        one signaled WR every N (default 32)
  --bytes N         bytes moved per bw size (default 16M)
  --min-iters N     (default 16)
  --max-iters N     (default 8192)
  --rate-ops LIST   write,send (default both)
  --rate-size N     (default 64)
  --post-lists LIST (default 1,16)
  --rate-iters N    (default 20000)
  --lat-ops LIST    write,send,read (default all three)
  --lat-sizes LIST  (default 2,4096)
  --lat-iters N     (default 2000)
  --warmup N        latency samples dropped first (default 100)
  --timeout SECS    a run that makes no progress for this long fails (default 30)
  --yield           (client) latency loops yield the CPU on every empty poll, on both
                    sides (with --cpu on both, ping-pong without waiting for the
                    scheduler to preempt a spinning peer)
  --cpu N           run on CPU N only (both roles)
  --marks           write(-1, \"ferrite-bench:start\") and \"...:stop\" around each
                    measured run, for counting its system calls under strace
  --seconds S       (memcpy, udp flood) time per size (default 1)
  --src ADDR, --src-dev DEV, --dst ADDR, --dst-dev DEV
                    (udp) the sending and the echoing end, each bound to its device;
                    the flood's receiver and the echo use --port and --port + 1
  --tag KEY=VALUE   added to every JSON object (repeatable)
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Server,
    Client,
    Memcpy,
    Udp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Write,
    Read,
    Send,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Read => "read",
            Op::Send => "send",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "write" => Some(Op::Write),
            "read" => Some(Op::Read),
            "send" => Some(Op::Send),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub role: Role,
    pub dev: Option<String>,
    pub gid_index: Option<u32>,
    pub port: u16,
    pub server: Option<String>,
    pub mtu: Option<u32>,
    pub tests: Vec<String>,
    pub bw_ops: Vec<Op>,
    pub sizes: Option<Vec<usize>>,
    pub tx_depth: u32,
    pub cq_mod: u32,
    pub bytes: u64,
    pub min_iters: u64,
    pub max_iters: u64,
    pub rate_ops: Vec<Op>,
    pub rate_size: usize,
    pub post_lists: Vec<u32>,
    pub rate_iters: u64,
    pub lat_ops: Vec<Op>,
    pub lat_sizes: Vec<usize>,
    pub lat_iters: u64,
    pub warmup: u64,
    pub timeout: Duration,
    pub marks: bool,
    pub yield_idle: bool,
    pub cpu: Option<usize>,
    pub seconds: f64,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub src_dev: Option<String>,
    pub dst_dev: Option<String>,
    pub tags: Vec<(String, String)>,
}

pub const DEFAULT_SIZES: [usize; 10] =
    [2, 16, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
pub const DEFAULT_MEMCPY_SIZES: [usize; 2] = [64 << 10, 64 << 20];
/// UDP payloads of RoCE v2 packets: a 64-byte WRITE (BTH 12, RETH 16, 64, ICRC 4) and
/// a middle packet at path MTU 1024 (BTH, 1024, ICRC).
pub const DEFAULT_UDP_SIZES: [usize; 2] = [96, 1040];
/// The largest datagram `udp` sends.
pub const MAX_UDP_DATAGRAM: usize = 2048;
/// The largest message the client will use (it sizes both MRs).
pub const MAX_SIZE: usize = 1 << 30;

pub enum Cmd {
    Help,
    Run(Opts),
}

fn list<T>(name: &str, v: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let out: Option<Vec<T>> = v.split(',').filter(|s| !s.is_empty()).map(f).collect();
    match out {
        Some(o) if !o.is_empty() => Ok(o),
        _ => Err(format!("{name}: a bad list: {v:?}")),
    }
}

fn ops(name: &str, v: &str, allowed: &[Op]) -> Result<Vec<Op>, String> {
    list(name, v, |s| Op::parse(s).filter(|o| allowed.contains(o)))
}

fn sizes(name: &str, v: &str) -> Result<Vec<usize>, String> {
    list(name, v, |s| parse_num(s).filter(|&n| n > 0 && n as usize <= MAX_SIZE).map(|n| n as usize))
}

pub fn parse(args: &[String]) -> Result<Cmd, String> {
    let mut it = args.iter();
    let role = match it.next().map(String::as_str) {
        Some("server") => Role::Server,
        Some("client") => Role::Client,
        Some("memcpy") => Role::Memcpy,
        Some("udp") => Role::Udp,
        Some("-h") | Some("--help") | Some("help") | None => return Ok(Cmd::Help),
        Some(r) => return Err(format!("unknown role {r:?} (server, client, memcpy or udp)")),
    };
    let mut o = Opts {
        role,
        dev: None,
        gid_index: None,
        port: 18600,
        server: None,
        mtu: None,
        tests: if role == Role::Udp {
            vec!["flood".into(), "pingpong".into()]
        } else {
            vec!["bw".into(), "rate".into(), "lat".into()]
        },
        bw_ops: vec![Op::Write, Op::Read, Op::Send],
        sizes: None,
        tx_depth: 128,
        cq_mod: 32,
        bytes: 16 << 20,
        min_iters: 16,
        max_iters: 8192,
        rate_ops: vec![Op::Write, Op::Send],
        rate_size: 64,
        post_lists: vec![1, 16],
        rate_iters: 20000,
        lat_ops: vec![Op::Write, Op::Send, Op::Read],
        lat_sizes: if role == Role::Udp { vec![34] } else { vec![2, 4096] },
        lat_iters: 2000,
        warmup: 100,
        timeout: Duration::from_secs(30),
        marks: false,
        yield_idle: false,
        cpu: None,
        seconds: 1.0,
        src: None,
        dst: None,
        src_dev: None,
        dst_dev: None,
        tags: Vec::new(),
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
            "--port" | "-p" => o.port = num(a, val(a)?)?.try_into().map_err(|_| "--port: too big")?,
            "--server" | "-s" => o.server = Some(val(a)?),
            "--mtu" => {
                let v = num(a, val(a)?)?;
                if ![256, 512, 1024, 2048, 4096].contains(&v) {
                    return Err(format!("--mtu: 256, 512, 1024, 2048 or 4096, not {v}"));
                }
                o.mtu = Some(v as u32);
            }
            "--tests" => {
                let allowed: &[&str] =
                    if role == Role::Udp { &["flood", "pingpong"] } else { &["bw", "rate", "lat"] };
                o.tests = list(a, &val(a)?, |s| allowed.contains(&s).then(|| s.to_string()))?
            }
            "--src" => o.src = Some(val(a)?),
            "--dst" => o.dst = Some(val(a)?),
            "--src-dev" => o.src_dev = Some(val(a)?),
            "--dst-dev" => o.dst_dev = Some(val(a)?),
            "--bw-ops" => o.bw_ops = ops(a, &val(a)?, &[Op::Write, Op::Read, Op::Send])?,
            "--rate-ops" => o.rate_ops = ops(a, &val(a)?, &[Op::Write, Op::Send])?,
            "--lat-ops" => o.lat_ops = ops(a, &val(a)?, &[Op::Write, Op::Read, Op::Send])?,
            "--sizes" => o.sizes = Some(sizes(a, &val(a)?)?),
            "--lat-sizes" => o.lat_sizes = sizes(a, &val(a)?)?,
            "--post-lists" => {
                o.post_lists = list(a, &val(a)?, |s| parse_num(s).filter(|&n| (1..=1024).contains(&n)).map(|n| n as u32))?
            }
            "--tx-depth" => o.tx_depth = num(a, val(a)?)? as u32,
            "--cq-mod" => o.cq_mod = num(a, val(a)?)? as u32,
            "--bytes" => o.bytes = num(a, val(a)?)?,
            "--min-iters" => o.min_iters = num(a, val(a)?)?,
            "--max-iters" => o.max_iters = num(a, val(a)?)?,
            "--rate-size" => {
                o.rate_size = num(a, val(a)?)? as usize;
                if o.rate_size == 0 || o.rate_size > MAX_SIZE {
                    return Err("--rate-size: 1 byte to 1 GiB".into());
                }
            }
            "--rate-iters" => o.rate_iters = num(a, val(a)?)?,
            "--lat-iters" => o.lat_iters = num(a, val(a)?)?,
            "--warmup" => o.warmup = num(a, val(a)?)?,
            "--timeout" => o.timeout = Duration::from_secs(num(a, val(a)?)?.max(1)),
            "--marks" => o.marks = true,
            "--yield" => o.yield_idle = true,
            "--cpu" => {
                let v = num(a, val(a)?)?;
                if v >= libc::CPU_SETSIZE as u64 {
                    return Err(format!("--cpu: {v} is too big"));
                }
                o.cpu = Some(v as usize);
            }
            "--seconds" => {
                let v = val(a)?;
                o.seconds = v.parse().ok().filter(|s: &f64| *s > 0.0 && *s < 3600.0)
                    .ok_or_else(|| format!("--seconds: not a duration: {v:?}"))?;
            }
            "--tag" => {
                let v = val(a)?;
                let (k, x) = v.split_once('=').ok_or_else(|| format!("--tag: KEY=VALUE, not {v:?}"))?;
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("--tag: a bad key {k:?}"));
                }
                o.tags.push((k.to_string(), x.to_string()));
            }
            _ => return Err(format!("unknown option {a:?}")),
        }
    }
    if role == Role::Client {
        if o.server.is_none() {
            return Err("the client needs --server ADDR".into());
        }
        if o.tx_depth == 0 || o.tx_depth > 8192 {
            return Err("--tx-depth: 1 to 8192".into());
        }
        let pl_max = *o.post_lists.iter().max().unwrap_or(&1);
        // Blocking for room for a whole post list must leave a signaled WR outstanding.
        if o.cq_mod == 0 || o.cq_mod + pl_max > o.tx_depth + 1 {
            return Err(format!(
                "--cq-mod {} with post lists up to {pl_max} needs --tx-depth >= {}",
                o.cq_mod, o.cq_mod + pl_max - 1
            ));
        }
        if o.min_iters == 0 || o.max_iters < o.min_iters {
            return Err("--min-iters must be at least 1 and at most --max-iters".into());
        }
        if o.rate_iters == 0 {
            return Err("--rate-iters must be at least 1".into());
        }
    }
    if o.lat_iters == 0 {
        return Err("--lat-iters must be at least 1".into());
    }
    if role == Role::Udp && o.sizes.iter().flatten().chain(&o.lat_sizes).any(|&n| n > MAX_UDP_DATAGRAM) {
        return Err(format!("udp: datagrams of at most {MAX_UDP_DATAGRAM} bytes"));
    }
    Ok(Cmd::Run(o))
}
