//! Errors as the kernel knows them: errno values.

use core::fmt;

/// A kernel error code (a positive errno inside; negative at the C boundary).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error(i32);

/// Result of a fallible driver operation.
pub type Result<T = ()> = core::result::Result<T, Error>;

macro_rules! errnos {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl Error {
            $(#[allow(missing_docs)] pub const $name: Error = Error($val);)*
            fn name(self) -> Option<&'static str> {
                match self.0 { $($val => Some(stringify!($name)),)* _ => None }
            }
        }
    };
}

errnos! {
    EPERM = 1, ENOENT = 2, EIO = 5, ENOMEM = 12, EBUSY = 16, EEXIST = 17,
    ENODEV = 19, EINVAL = 22, ENOSPC = 28, EOPNOTSUPP = 95,
}

impl Error {
    /// The negative errno the C side returns.
    pub fn to_errno(self) -> i32 {
        -self.0
    }

    /// From a negative errno returned by C; `None` for success (>= 0).
    pub fn from_errno(rc: i32) -> Option<Error> {
        (rc < 0).then(|| Error(-rc))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// Collapse a `Result` into the kernel's "0 or negative errno" convention.
pub fn to_rc(r: Result) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trip() {
        assert_eq!(Error::EEXIST.to_errno(), -17);
        assert_eq!(Error::from_errno(-22), Some(Error::EINVAL));
        assert_eq!(Error::from_errno(0), None);
        assert_eq!(to_rc(Err(Error::ENOMEM)), -12);
        assert_eq!(to_rc(Ok(())), 0);
        assert_eq!(alloc::format!("{:?}", Error::ENODEV), "ENODEV");
        assert_eq!(alloc::format!("{:?}", Error(200)), "errno 200");
    }
}
