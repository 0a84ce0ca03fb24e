//! Kernel backend of [`crate::kernel`]: the C compat layer's `ferrite_k_*` services.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicIsize, Ordering};

use super::print::Level;
use super::sync::{LockClass, RawLock};
use super::{Error, Result};
use crate::bindings as b;

/// The kernel's allocator (kmalloc), as Rust's global allocator.
struct KernelAlloc;

/// Live allocations made through [`KernelAlloc`]; reported at module exit.
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

/// Number of Rust allocations not yet freed.
pub(crate) fn live_allocations() -> isize {
    LIVE_ALLOCS.load(Ordering::Relaxed)
}

// SAFETY: `ferrite_k_alloc` returns memory of at least `size` bytes aligned to
// `align` (the C side rounds up for alignments kmalloc does not promise) or NULL, and
// `ferrite_k_free` accepts exactly what it returned.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C call; any size and power-of-two alignment is accepted.
        let p = unsafe { b::ferrite_k_alloc(layout.size(), layout.align()) as *mut u8 };
        if !p.is_null() {
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above (GlobalAlloc contract).
        unsafe { b::ferrite_k_free(ptr as *mut core::ffi::c_void) }
    }
}

#[global_allocator]
static ALLOCATOR: KernelAlloc = KernelAlloc;

pub(crate) fn log(level: Level, msg: &[u8]) {
    // SAFETY: `msg` is valid for `msg.len()` bytes; the C side copies it out.
    unsafe { b::ferrite_k_log(level as i32, msg.as_ptr(), msg.len()) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut line = super::print::LineBuf::new();
    let _ = write!(line, "Rust panic: {}", info);
    let msg = line.as_bytes();
    // SAFETY: `msg` is valid for its length.  ferrite_k_bug BUG()s and never returns.
    unsafe { b::ferrite_k_bug(msg.as_ptr(), msg.len()) };
    // SAFETY: ud2 raises #UD and ends this path; objtool sees it as a dead end.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// A `struct mutex` owned through the compat layer.
///
/// # Invariants
/// `0` points to a live mutex made by `ferrite_k_mutex_new`, freed only in `drop`.
pub struct RawMutex(NonNull<b::ferrite_k_mutex>);

impl RawLock for RawMutex {
    fn new(class: LockClass) -> Result<Self> {
        // SAFETY: plain C call; returns NULL on allocation failure.
        let p = unsafe { b::ferrite_k_mutex_new(class as u32) };
        NonNull::new(p).map(RawMutex).ok_or(Error::ENOMEM)
    }

    fn lock(&self) {
        // SAFETY: the mutex is live (type invariant).
        unsafe { b::ferrite_k_mutex_lock(self.0.as_ptr()) }
    }

    fn unlock(&self) {
        // SAFETY: the mutex is live and held by this context (only `Guard::drop`
        // calls this, after `lock`).
        unsafe { b::ferrite_k_mutex_unlock(self.0.as_ptr()) }
    }
}

impl Drop for RawMutex {
    fn drop(&mut self) {
        // SAFETY: the mutex is live and, being dropped, unlocked and unshared.
        unsafe { b::ferrite_k_mutex_free(self.0.as_ptr()) }
    }
}

/// A `spinlock_t` owned through the compat layer, taken with bottom halves off.
///
/// # Invariants
/// `0` points to a live lock made by `ferrite_k_spin_new`, freed only in `drop`.
pub struct RawSpin(NonNull<b::ferrite_k_spin>);

impl RawLock for RawSpin {
    fn new(class: LockClass) -> Result<Self> {
        // SAFETY: plain C call; returns NULL on allocation failure.
        let p = unsafe { b::ferrite_k_spin_new(class as u32) };
        NonNull::new(p).map(RawSpin).ok_or(Error::ENOMEM)
    }

    fn lock(&self) {
        // SAFETY: the lock is live (type invariant).
        unsafe { b::ferrite_k_spin_lock(self.0.as_ptr()) }
    }

    fn unlock(&self) {
        // SAFETY: the lock is live and held by this context (only `Guard::drop`
        // calls this, after `lock`, on the same thread: a guard is not Send).
        unsafe { b::ferrite_k_spin_unlock(self.0.as_ptr()) }
    }
}

impl Drop for RawSpin {
    fn drop(&mut self) {
        // SAFETY: the lock is live and, being dropped, unlocked and unshared.
        unsafe { b::ferrite_k_spin_free(self.0.as_ptr()) }
    }
}
