//! Locks that own the data they guard: a sleeping [`Mutex`] and a [`SpinLock`].
//!
//! In the kernel each is a `struct mutex` or a `spinlock_t` allocated by the compat
//! layer (so its size and lockdep class are the tree's business); the spin lock is
//! taken with bottom halves off, because the receive softirq runs QPs.  On the host
//! both are a small spin lock.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::backend::{RawMutex, RawSpin};
use super::Result;
use crate::bindings as b;

/// The kind of a lock: each is its own lockdep class in the kernel, so that
/// lockdep checks the order between kinds (ferrite takes a QP's lock, then the
/// device's MR table, never the other way round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LockClass {
    /// A QP's engine state (`datapath::QpHandle`).
    Qp = b::FERRITE_LOCK_QP,
    /// A device's MR table (`device::Device`).
    Mrs = b::FERRITE_LOCK_MRS,
    /// The netdevs claimed by devices (`registry::Registry`).
    Registry = b::FERRITE_LOCK_REGISTRY,
}

/// What a lock's kernel object does; implemented by the backend's raw locks.
pub trait RawLock: Sized {
    fn new(class: LockClass) -> Result<Self>;
    fn lock(&self);
    /// Only called by the context that holds the lock.
    fn unlock(&self);
}

/// Mutual exclusion around a `T`, by the raw lock `R`.
///
/// # Invariants
/// `data` is only reached through a [`Guard`], which exists only while `raw` is held.
pub struct Lock<T, R: RawLock> {
    raw: R,
    data: UnsafeCell<T>,
}

/// A sleeping lock: process context only.
pub type Mutex<T> = Lock<T, RawMutex>;

/// A spin lock, with bottom halves off while held: usable from process context
/// and from the receive softirq.  Nothing under it may sleep, and nothing under it
/// may allocate with a sleeping allocation.
pub type SpinLock<T> = Lock<T, RawSpin>;

// SAFETY: access to `data` is serialised by `raw` (type invariant), so sharing a
// lock between threads is sound whenever `T` may be sent between them.
unsafe impl<T: Send, R: RawLock> Sync for Lock<T, R> {}
// SAFETY: the raw lock handle may be used from any thread; `T: Send` covers the data.
unsafe impl<T: Send, R: RawLock> Send for Lock<T, R> {}

impl<T, R: RawLock> Lock<T, R> {
    /// A new, unlocked lock of lock class `class`.  Fails with `ENOMEM` if the
    /// lock cannot be allocated.
    pub fn new(data: T, class: LockClass) -> Result<Self> {
        Ok(Lock { raw: R::new(class)?, data: UnsafeCell::new(data) })
    }

    /// Take the lock: a [`Mutex`] may sleep, so it must not be taken in atomic
    /// context; a [`SpinLock`] spins.
    pub fn lock(&self) -> Guard<'_, T, R> {
        self.raw.lock();
        Guard { m: self, _not_send: PhantomData }
    }
}

/// Proof that a lock is held; unlocks on drop.  It stays on the thread that
/// took the lock (a spin lock's bottom-half state is per CPU).
pub struct Guard<'a, T, R: RawLock> {
    m: &'a Lock<T, R>,
    _not_send: PhantomData<*mut ()>,
}

impl<T, R: RawLock> Deref for Guard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other
        // reference to the data is live.
        unsafe { &*self.m.data.get() }
    }
}

impl<T, R: RawLock> DerefMut for Guard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T, R: RawLock> Drop for Guard<'_, T, R> {
    fn drop(&mut self) {
        self.m.raw.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn serialises_increments<R: RawLock + Send + Sync + 'static>() {
        let m = Arc::new(Lock::<u64, R>::new(0u64, LockClass::Qp).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 40_000);
    }

    // On the host both kinds are the same spin lock, so one test covers them.
    #[test]
    fn lock_serialises_increments() {
        serialises_increments::<RawMutex>();
    }
}
