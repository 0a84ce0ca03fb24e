//! Which net_devices carry a ferrite device.
//!
//! One device per netdev: a second `rdma link add` on the same netdev fails with
//! `EEXIST` before anything is allocated.  A netdev is reserved by [`Registry::claim`]
//! and released when its device is destroyed.

use alloc::vec::Vec;

use crate::kernel::sync::{LockClass, Mutex};
use crate::kernel::{Error, Result};

/// The set of claimed netdevs, by their identity key.
pub struct Registry {
    claimed: Mutex<Vec<u64>>,
}

impl Registry {
    pub fn new() -> Result<Registry> {
        Ok(Registry { claimed: Mutex::new(Vec::new(), LockClass::Registry)? })
    }

    /// Reserve `key` for a new device.  `EEXIST` if it already has one.
    pub fn claim(&self, key: u64) -> Result {
        let mut c = self.claimed.lock();
        if c.contains(&key) {
            return Err(Error::EEXIST);
        }
        c.try_reserve(1).map_err(|_| Error::ENOMEM)?;
        c.push(key);
        Ok(())
    }

    /// Release `key`.  Releasing a key that is not claimed is reported and ignored.
    pub fn release(&self, key: u64) {
        let mut c = self.claimed.lock();
        match c.iter().position(|k| *k == key) {
            Some(i) => {
                c.swap_remove(i);
            }
            None => pr_err!("release of a netdev that holds no device"),
        }
    }

    pub fn len(&self) -> usize {
        self.claimed.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_per_netdev() {
        let r = Registry::new().unwrap();
        r.claim(10).unwrap();
        r.claim(11).unwrap();
        assert_eq!(r.claim(10), Err(Error::EEXIST));
        assert_eq!(r.len(), 2);
        r.release(10);
        r.claim(10).unwrap();
        r.release(10);
        r.release(11);
        assert!(r.is_empty());
        crate::kernel::host::take_log();
        r.release(11);
        assert!(r.is_empty());
        assert_eq!(crate::kernel::host::take_log().len(), 1);
    }
}
