//! The narrow interface between ferrite's Rust logic and the kernel.
//!
//! Everything the driver needs of its host (memory, locks, printing, errors) goes
//! through here.  In `ferrite.ko` it is backed by the C compat layer
//! ([`compat`](self) backend, `target_os = "none"`); in host tests by `std`.  A later
//! build against a CONFIG_RUST tree can back the same items with the kernel's own
//! `kernel` crate without touching driver logic.

#[macro_use]
pub mod print;
pub mod error;
pub mod sync;

#[cfg(target_os = "none")]
pub(crate) mod compat;
#[cfg(target_os = "none")]
pub(crate) use compat as backend;

#[cfg(not(target_os = "none"))]
pub mod host;
#[cfg(not(target_os = "none"))]
pub(crate) use host as backend;

pub use error::{Error, Result};
