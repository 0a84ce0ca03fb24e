//! The ceiling under both devices: the kernel's own UDP path across the benchmark's
//! veth pair, measured with plain sockets.  A RoCE v2 device in the kernel (rxe or
//! ferrite) hands each packet to the same IP, veth and UDP code that a socket's
//! datagram takes, so no device moves more packets per second over this topology
//! than sockets do, nor bounces one faster.
//!
//! - `flood`: one thread sends datagrams of each of --sizes (by default the UDP
//!   payloads of RoCE packets: a 64-byte WRITE is 96 B, BTH, RETH, data and ICRC; a
//!   full packet at path MTU 1024 is 1040 B) as fast as sendmmsg takes them, 32 a
//!   call, for --seconds; another drains them with recvmmsg.  The figure is the
//!   datagrams received per second: the sender's path, the veth and the receive
//!   softirq, with the system calls amortised over a batch.
//! - `pingpong`: a 34-byte datagram (a 2-byte WRITE) bounced between the ends, half
//!   the round trip reported as the RDMA latency loops report it; with --yield both
//!   ends poll and yield, as ferrite-bench's latency runs do.
//!
//! Each end is bound to its veth (SO_BINDTODEVICE), which the guest's policy routing
//! needs to send between two local addresses over the wire; the sending veth's own
//! packet counter is reported, to show the datagrams took it and not loopback.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{self, now_ns, Cpu};
use crate::json::{self, Obj, Out};
use crate::opts::{Opts, DEFAULT_UDP_SIZES, MAX_UDP_DATAGRAM};

/// Datagrams per sendmmsg and recvmmsg call.
const BATCH: usize = 32;
/// The receiving socket's buffer: room for the bursts a batch makes.
const RCVBUF: libc::c_int = 4 << 20;
/// The largest datagram either end handles (opts checks the sizes against it).
const MAX_DGRAM: usize = MAX_UDP_DATAGRAM;

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn addr(name: &str, v: &Option<String>) -> Result<Ipv4Addr, String> {
    let s = v.as_deref().ok_or_else(|| format!("udp needs {name} ADDR"))?;
    s.parse().map_err(|_| format!("{name}: not an IPv4 address: {s:?}"))
}

/// A UDP socket bound to `ip`:`port` (0: any port) and, where given, to device `dev`.
fn socket(ip: Ipv4Addr, port: u16, dev: Option<&str>) -> Result<UdpSocket, String> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", last_err()));
    }
    // SAFETY: fd is a socket just made that nothing else owns; the UdpSocket closes it.
    let s = unsafe { UdpSocket::from_raw_fd(fd) };
    if let Some(d) = dev {
        // SAFETY: d.as_ptr() points at d.len() readable bytes for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, d.as_ptr().cast(),
                             d.len() as libc::socklen_t)
        };
        if rc != 0 {
            return Err(format!("SO_BINDTODEVICE {d}: {}", last_err()));
        }
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a sockaddr_in, and the length passed is its size.
    let rc = unsafe {
        libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(),
                   std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(format!("bind {ip}:{port}: {}", last_err()));
    }
    Ok(s)
}

/// A bigger receive buffer: SO_RCVBUFFORCE as root, else what SO_RCVBUF allows.
fn grow_rcvbuf(s: &UdpSocket) {
    let v: libc::c_int = RCVBUF;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: v is a c_int that lives across the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, opt, (&v as *const libc::c_int).cast(),
                             std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if rc == 0 {
            return;
        }
    }
}

fn tx_packets(dev: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/tx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

struct Ends {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_dev: String,
    dst_dev: String,
}

pub fn run(o: &Opts) -> i32 {
    let out = Out { tags: o.tags.clone() };
    let ends = match (|| -> Result<Ends, String> {
        Ok(Ends {
            src: addr("--src", &o.src)?,
            dst: addr("--dst", &o.dst)?,
            src_dev: o.src_dev.clone().ok_or("udp needs --src-dev DEV")?,
            dst_dev: o.dst_dev.clone().ok_or("udp needs --dst-dev DEV")?,
        })
    })() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ferrite-bench: {e}");
            return 2;
        }
    };
    let mut rc = 0;
    if o.tests.iter().any(|t| t == "flood") {
        for &size in o.sizes.as_deref().unwrap_or(&DEFAULT_UDP_SIZES) {
            match flood(o, &ends, size) {
                Ok(obj) => out.emit(obj),
                Err(e) => {
                    eprintln!("ferrite-bench: udp flood {size} B: {e}");
                    rc = 1;
                }
            }
        }
    }
    if o.tests.iter().any(|t| t == "pingpong") {
        for &size in &o.lat_sizes {
            match pingpong(o, &ends, size) {
                Ok(obj) => out.emit(obj),
                Err(e) => {
                    eprintln!("ferrite-bench: udp pingpong {size} B: {e}");
                    rc = 1;
                }
            }
        }
    }
    rc
}

/// One mmsghdr per entry of `iovs`, each a single-buffer message with no address
/// (the sending socket is connected; the receiver does not ask for the source).
fn headers(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is an empty message.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

fn flood(o: &Opts, e: &Ends, size: usize) -> Result<Obj, String> {
    let rx = socket(e.dst, o.port, Some(&e.dst_dev))?;
    grow_rcvbuf(&rx);
    rx.set_read_timeout(Some(Duration::from_millis(300))).map_err(|x| format!("SO_RCVTIMEO: {x}"))?;
    let tx = socket(e.src, 0, Some(&e.src_dev))?;
    tx.connect(SocketAddrV4::new(e.dst, o.port)).map_err(|x| format!("connect: {x}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let rx_stop = stop.clone();
    let receiver = std::thread::spawn(move || -> Result<(u64, u64, u64), String> {
        let mut bufs = vec![[0u8; MAX_DGRAM]; BATCH];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: MAX_DGRAM })
            .collect();
        let mut msgs = headers(&mut iovs);
        let (mut packets, mut bytes, mut last) = (0u64, 0u64, 0u64);
        loop {
            // SAFETY: msgs holds BATCH headers whose iovecs point into bufs, and
            // both outlive the call; no timeout pointer (SO_RCVTIMEO bounds the wait).
            let n = unsafe {
                libc::recvmmsg(rx.as_raw_fd(), msgs.as_mut_ptr(), BATCH as libc::c_uint,
                               libc::MSG_WAITFORONE, std::ptr::null_mut())
            };
            if n < 0 {
                let err = last_err();
                match err.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {
                        if rx_stop.load(Ordering::Acquire) {
                            break;
                        }
                        continue;
                    }
                    _ => return Err(format!("recvmmsg: {err}")),
                }
            }
            last = now_ns();
            packets += n as u64;
            bytes += msgs[..n as usize].iter().map(|m| u64::from(m.msg_len)).sum::<u64>();
        }
        Ok((packets, bytes, last))
    });
    let mut buf = vec![0x5au8; size];
    let mut iovs = vec![libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: size }; BATCH];
    let mut msgs = headers(&mut iovs);
    let limit = (o.seconds * 1e9) as u64;
    let (veth0, cpu0) = (tx_packets(&e.src_dev), Cpu::read());
    let (mut sent, mut calls, mut full) = (0u64, 0u64, 0u64);
    let t0 = now_ns();
    let mut send_err = None;
    loop {
        // SAFETY: msgs holds BATCH headers whose iovecs point at buf, which outlives
        // the call and is only read.
        let n = unsafe { libc::sendmmsg(tx.as_raw_fd(), msgs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        calls += 1;
        if n < 0 {
            let err = last_err();
            match err.raw_os_error() {
                // A queue on the way is full: the sender outran it; try again.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    full += 1;
                    // SAFETY: sched_yield takes no arguments.
                    unsafe { libc::sched_yield() };
                }
                _ => {
                    send_err = Some(format!("sendmmsg: {err}"));
                    break;
                }
            }
        } else {
            sent += n as u64;
        }
        if now_ns() - t0 >= limit {
            break;
        }
    }
    let t_sent = now_ns();
    stop.store(true, Ordering::Release);
    let (received, bytes, last) = receiver.join().map_err(|_| "the receiver panicked".to_string())??;
    let cpu = Cpu::read().since(&cpu0);
    let veth = tx_packets(&e.src_dev).wrapping_sub(veth0);
    if let Some(err) = send_err {
        return Err(err);
    }
    if received == 0 {
        return Err(format!("none of {sent} datagrams arrived (veth {} sent {veth})", e.src_dev));
    }
    // The receive rate over the time from the first send to the last arrival.
    let secs = (last.max(t_sent) - t0) as f64 / 1e9;
    let busy_s = cpu.busy() as f64 / clock::clk_tck();
    Ok(Obj::new()
        .s("kind", "udp")
        .s("test", "flood")
        .u("size", size as u64)
        .u("batch", BATCH as u64)
        .u("sent", sent)
        .u("received", received)
        .u("lost", sent.saturating_sub(received))
        .u("sendmmsg_calls", calls)
        .u("queue_full", full)
        .u("bytes", bytes)
        .f("seconds", secs)
        .f("pps", received as f64 / secs)
        .f("payload_Bps", bytes as f64 / secs)
        .f("cpu_s_per_Mpkt", busy_s / (received as f64 / 1e6))
        .f("kernel_cpu_s_per_Mpkt", cpu.kernel() as f64 / clock::clk_tck() / (received as f64 / 1e6))
        .u("veth_tx_packets", veth)
        .s("cpus_online", &clock::cpus_online()))
}

/// Wait for a datagram on non-blocking `s` into `buf`, yielding between tries when
/// `yield_idle`; None when `stop` is set or `deadline` (ns) passes first.
fn recv_poll(s: &UdpSocket, buf: &mut [u8], yield_idle: bool, stop: Option<&AtomicBool>,
             deadline: u64) -> Result<Option<(usize, std::net::SocketAddr)>, String> {
    loop {
        match s.recv_from(buf) {
            Ok(r) => return Ok(Some(r)),
            Err(x) if x.kind() == ErrorKind::WouldBlock || x.kind() == ErrorKind::Interrupted => {
                if stop.is_some_and(|f| f.load(Ordering::Acquire)) || now_ns() > deadline {
                    return Ok(None);
                }
                if yield_idle {
                    // SAFETY: sched_yield takes no arguments.
                    unsafe { libc::sched_yield() };
                }
            }
            Err(x) => return Err(format!("recv: {x}")),
        }
    }
}

fn pingpong(o: &Opts, e: &Ends, size: usize) -> Result<Obj, String> {
    let port = o.port.wrapping_add(1);
    let echo = socket(e.dst, port, Some(&e.dst_dev))?;
    let cl = socket(e.src, 0, Some(&e.src_dev))?;
    cl.connect(SocketAddrV4::new(e.dst, port)).map_err(|x| format!("connect: {x}"))?;
    for s in [&echo, &cl] {
        s.set_nonblocking(true).map_err(|x| format!("O_NONBLOCK: {x}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = stop.clone();
    let yield_idle = o.yield_idle;
    let echoer = std::thread::spawn(move || -> Result<u64, String> {
        let mut buf = [0u8; MAX_DGRAM];
        let mut n = 0u64;
        while let Some((len, from)) = recv_poll(&echo, &mut buf, yield_idle, Some(&echo_stop), u64::MAX)? {
            echo.send_to(&buf[..len], from).map_err(|x| format!("echo send: {x}"))?;
            n += 1;
        }
        Ok(n)
    });
    let timeout = o.timeout.as_nanos() as u64;
    let ping = vec![0xa5u8; size];
    let mut buf = [0u8; MAX_DGRAM];
    let total = o.warmup + o.lat_iters;
    let mut samples = Vec::with_capacity(o.lat_iters as usize);
    let veth0 = tx_packets(&e.src_dev);
    let r = (|| -> Result<(), String> {
        for i in 0..total {
            let t0 = now_ns();
            cl.send(&ping).map_err(|x| format!("send: {x}"))?;
            match recv_poll(&cl, &mut buf, yield_idle, None, t0 + timeout)? {
                Some((len, _)) if len == size && buf[..len] == ping[..] => {}
                Some((len, _)) => return Err(format!("ping {i}: {len} bytes came back, not the {size} sent")),
                None => return Err(format!("ping {i}: no answer in {} s", o.timeout.as_secs())),
            }
            if i >= o.warmup {
                samples.push((now_ns() - t0) / 2);
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Release);
    let echoed = echoer.join().map_err(|_| "the echo thread panicked".to_string())??;
    r?;
    let veth = tx_packets(&e.src_dev).wrapping_sub(veth0);
    Ok(Obj::new()
        .s("kind", "udp")
        .s("test", "pingpong")
        .u("size", size as u64)
        .u("iters", o.lat_iters)
        .u("warmup", o.warmup)
        .u("echoed", echoed)
        .b("half_round_trip", true)
        .b("yield", yield_idle)
        .s("cpus_online", &clock::cpus_online())
        .tag("cpu", &o.cpu.map_or("any".to_string(), |c| c.to_string()))
        .merge(json::latency_us(&mut samples))
        .u("veth_tx_packets", veth))
}
