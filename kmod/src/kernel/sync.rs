//! A sleeping mutex that owns the data it guards.
//!
//! In the kernel it is a `struct mutex` allocated by the compat layer (so its size
//! and lockdep class are the tree's business); on the host a small spin lock.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use super::backend::RawMutex;
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

/// Mutual exclusion around a `T`.
///
/// # Invariants
/// `data` is only reached through a [`Guard`], which exists only while `raw` is held.
pub struct Mutex<T> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `raw` (type invariant), so sharing a
// `Mutex<T>` between threads is sound whenever `T` may be sent between them.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: the raw lock handle may be used from any thread; `T: Send` covers the data.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex of lock class `class`.  Fails with `ENOMEM` if the
    /// lock cannot be allocated.
    pub fn new(data: T, class: LockClass) -> Result<Self> {
        Ok(Mutex { raw: RawMutex::new(class)?, data: UnsafeCell::new(data) })
    }

    /// Take the lock, sleeping if needed.  Must not be called in atomic context.
    pub fn lock(&self) -> Guard<'_, T> {
        self.raw.lock();
        Guard { m: self }
    }
}

/// Proof that a [`Mutex`] is held; unlocks on drop.
pub struct Guard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other
        // reference to the data is live.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.m.raw.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn mutex_serialises_increments() {
        let m = Arc::new(Mutex::new(0u64, LockClass::Qp).unwrap());
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
}
