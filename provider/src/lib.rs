//! ferrite's rdma-core provider: the userspace half of ferrite.
//!
//! The distro's own, unmodified libibverbs loads this library as
//! `libferrite-rdmav<PABI>.so` (named by `/etc/libibverbs.d/ferrite.driver`), and its
//! constructor registers ferrite's `verbs_device_ops`.  From then on:
//!
//! - [`device`]: which kernel devices are ferrite's.  Not by name (a renamed device
//!   must still match, and rxe's names must never match) but by the `ferrite_abi`
//!   sysfs attribute only ferrite.ko creates.
//! - [`context`]: opening a device and the verbs: query, PD, MR, CQ.  The CQ's
//!   completion ring is mapped from the kernel and polled without a system call.
//! - [`cq_ex`]: the extended CQ (`ibv_create_cq_ex`, `ibv_start_poll` and friends)
//!   over the same ring.
//! - [`qp`]: RC and UC QPs, and the fast path: `post_send`/`post_recv` and the
//!   `ibv_wr_*` API write WQEs straight into rings shared with the kernel, which is
//!   entered only for a doorbell it asked for.
//! - [`sys`]: rdma-core's private provider ABI, mirrored per release.
//!
//! The library is `no_std` over libc: it must load into every target's process
//! whatever its glibc, so it uses only long-standing libc functions.
#![cfg_attr(not(test), no_std)]

pub mod context;
pub mod cq_ex;
pub mod device;
pub mod qp;
pub mod sys;

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A bug in the provider: stop the process rather than corrupt its verbs state.
    // SAFETY: abort() has no preconditions.
    unsafe { libc::abort() }
}

/// The precompiled `core` of the host target names an unwinding personality; with
/// panic=abort nothing ever calls it, but the symbol must resolve for dlopen(RTLD_NOW).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// Registration with libibverbs, run when the library is loaded.
#[cfg(not(test))]
extern "C" fn register() {
    // SAFETY: DEVICE_OPS is a static that lives as long as the library.
    unsafe { sys::verbs_register_driver(&device::DEVICE_OPS) }
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static REGISTER: extern "C" fn() = register;

/// Host unit tests run without libibverbs: these stand in for the symbols the
/// provider imports, and fail loudly if a test ever reaches one.  The doorbell
/// (`ibv_cmd_post_send` with no WRs) is counted instead, per test thread.
#[cfg(test)]
pub(crate) mod libibverbs_stubs {
    extern crate std;
    use core::cell::Cell;
    use core::ffi::c_int;

    use crate::sys::{IbvQp, IbvSendWr};

    macro_rules! stubs {
        ($($name:ident),* $(,)?) => {$(
            #[no_mangle]
            extern "C" fn $name() {
                panic!(concat!("host test reached libibverbs' ", stringify!($name)));
            }
        )*};
    }
    stubs!(
        _verbs_init_and_alloc_context, verbs_uninit_context, verbs_set_ops,
        ibv_read_ibdev_sysfs_file, ibv_cmd_get_context, ibv_cmd_query_device_any,
        ibv_cmd_query_port, ibv_cmd_alloc_pd, ibv_cmd_dealloc_pd, ibv_cmd_reg_mr,
        ibv_cmd_dereg_mr, ibv_cmd_create_cq, ibv_cmd_destroy_cq, ibv_cmd_req_notify_cq,
        ibv_cmd_create_cq_ex, ibv_cmd_create_qp, ibv_cmd_create_qp_ex, ibv_cmd_create_qp_ex2,
        ibv_cmd_modify_qp, ibv_cmd_query_qp, ibv_cmd_destroy_qp,
    );

    std::thread_local! {
        static DOORBELLS: Cell<usize> = const { Cell::new(0) };
    }

    /// Doorbells this test thread has rung.
    pub(crate) fn doorbells() -> usize {
        DOORBELLS.with(Cell::get)
    }

    #[no_mangle]
    extern "C" fn ibv_cmd_post_send(_qp: *mut IbvQp, wr: *mut IbvSendWr, _bad: *mut *mut IbvSendWr) -> c_int {
        assert!(wr.is_null(), "the provider posts WRs through the rings, never through the kernel");
        DOORBELLS.with(|d| d.set(d.get() + 1));
        0
    }
}
