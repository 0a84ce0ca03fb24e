//! ferrite-bench: a benchmark client for RDMA devices over libibverbs (through the
//! `rdma-sys` crate), measuring ferrite against the kernel's rxe the same way.
//!
//! Two roles talk over a TCP side channel, as ferrite-testclient's do, and set up
//! their connection with the same shared modules (`ferrite_testclient::{endpoint,
//! gid, proto}`).  The `client` measures: bandwidth of RDMA WRITE, RDMA READ and SEND
//! across message sizes, the message rate of small WRITEs and SENDs with post lists,
//! and the latency of WRITE, SEND and READ; the `server` follows.  `memcpy` measures
//! the guest's one-core copy bandwidth, the physical limit, and `udp` the kernel's
//! UDP path over the same veth pair, the ceiling under any RoCE v2 device there.
//!
//! Every figure is timed with CLOCK_MONOTONIC (under TCG the cycle counter is not
//! trustworthy); each measurement is one JSON object on stdout, with the guest CPU
//! time (/proc/stat) and the device counters read around it.

mod client;
mod clock;
mod json;
mod link;
mod memcpy;
mod opts;
mod pump;
mod server;
mod udp;

/// Run this process on CPU `cpu` only.
fn pin(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE (checked by opts); set outlives both calls.
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match opts::parse(&args) {
        Ok(opts::Cmd::Help) => {
            print!("{}", opts::USAGE);
            0
        }
        Ok(opts::Cmd::Run(o)) => match o.cpu {
            Some(c) if !pin(c) => {
                eprintln!("ferrite-bench: cannot run on CPU {c}: {}", std::io::Error::last_os_error());
                1
            }
            _ => match o.role {
                opts::Role::Server => server::run(&o),
                opts::Role::Client => client::run(&o),
                opts::Role::Memcpy => memcpy::run(&o),
                opts::Role::Udp => udp::run(&o),
            },
        },
        Err(e) => {
            eprintln!("ferrite-bench: {e}\n\n{}", opts::USAGE);
            2
        }
    };
    std::process::exit(code);
}
