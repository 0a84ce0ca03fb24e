//! Host backend of [`crate::kernel`] for `cargo test`: std underneath.

use core::sync::atomic::{AtomicBool, Ordering};
use std::cell::RefCell;
use std::string::String;
use std::vec::Vec;

use super::print::Level;
use super::sync::{LockClass, RawLock};
use super::Result;

std::thread_local! {
    static LOG: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn log(level: Level, msg: &[u8]) {
    let s = String::from_utf8_lossy(msg).into_owned();
    LOG.with(|l| l.borrow_mut().push((level, s)));
}

/// Messages this thread logged since the last call (tests assert on them).
pub fn take_log() -> Vec<(Level, String)> {
    LOG.with(|l| core::mem::take(&mut *l.borrow_mut()))
}

/// Allocation accounting is the kernel backend's; the host has a real leak checker.
pub(crate) fn live_allocations() -> isize {
    0
}

/// A spin lock standing in for the kernel's locks.
pub struct HostLock(AtomicBool);

/// The host's stand-ins for a `struct mutex` and a `spinlock_t`.
pub type RawMutex = HostLock;
pub type RawSpin = HostLock;

impl RawLock for HostLock {
    fn new(_class: LockClass) -> Result<Self> {
        Ok(HostLock(AtomicBool::new(false)))
    }

    fn lock(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}
