//! ferrite-testclient: an RDMA test client over libibverbs (through the `rdma-sys`
//! crate) that checks every payload byte.
//!
//! Two roles talk over a TCP side channel only to exchange connection info and
//! verdicts, as ibv_rc_pingpong does.  The `client` runs a matrix of operations (SEND,
//! SEND_WITH_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM, RDMA_READ and, on RC, the two
//! atomics), sizes around the path MTU up to max_msg_sz, and variants (inline data,
//! gather/scatter lists, unsignaled chains, a fenced READ).  The `server` posts
//! receives, prepares and checks its memory.  Payloads follow a per-test pattern that
//! both sides compute, so no payload byte crosses the side channel.
//!
//! `errors` checks error completions instead, on both sides (src/errors.rs).
//!
//! Output is one `ok N - name` / `not ok N - name # reason` line per check and a
//! closing `N passed, N failed`; the exit status is 0 iff nothing failed.

mod client;
mod errors;
mod opts;
mod pattern;
mod server;
mod tap;

// Shared with ferrite-bench (src/lib.rs).
use ferrite_testclient::{endpoint, gid, proto};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match opts::parse(&args) {
        Ok(opts::Cmd::Help) => {
            print!("{}", opts::USAGE);
            0
        }
        Ok(opts::Cmd::Run(o)) => match o.role {
            opts::Role::Server => server::run(&o),
            opts::Role::Client => client::run(&o),
            opts::Role::Errors if o.server.is_some() => errors::run_client(&o),
            opts::Role::Errors => errors::run_server(&o),
        },
        Err(e) => {
            eprintln!("ferrite-testclient: {e}\n\n{}", opts::USAGE);
            2
        }
    };
    std::process::exit(code);
}
