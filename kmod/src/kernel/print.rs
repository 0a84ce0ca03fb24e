//! Printing to the kernel log: `pr_err!`, `pr_warn!`, `pr_info!`, `pr_debug!`.
//!
//! Messages are formatted into a fixed stack buffer (no allocation on the logging
//! path) and cut at [`LINE_MAX`] bytes, on a UTF-8 character boundary.

use core::fmt::{self, Write};

/// Longest message printed; longer ones are cut.
pub const LINE_MAX: usize = 200;

/// Log levels, as printk's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err = 3,
    Warning = 4,
    Info = 6,
    Debug = 7,
}

/// A stack buffer that keeps what fits and drops the rest.
pub struct LineBuf {
    buf: [u8; LINE_MAX],
    len: usize,
    /// Set once something was cut: later pieces are dropped too, so a line never
    /// has a hole in its middle.
    cut: bool,
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf { buf: [0; LINE_MAX], len: 0, cut: false }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = LINE_MAX - self.len;
        let mut n = s.len().min(room);
        self.cut = n < s.len();
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Format and print one message.  Used by the `pr_*!` macros.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    // Writing into a LineBuf cannot fail; a Display impl that errors only cuts the line.
    let _ = line.write_fmt(args);
    super::backend::log(level, line.as_bytes());
}

#[macro_export]
macro_rules! pr_err {
    ($($arg:tt)*) => { $crate::kernel::print::log($crate::kernel::print::Level::Err, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! pr_warn {
    ($($arg:tt)*) => { $crate::kernel::print::log($crate::kernel::print::Level::Warning, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! pr_info {
    ($($arg:tt)*) => { $crate::kernel::print::log($crate::kernel::print::Level::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! pr_debug {
    ($($arg:tt)*) => { $crate::kernel::print::log($crate::kernel::print::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linebuf_cuts_on_char_boundary() {
        let mut b = LineBuf::new();
        let long = "é".repeat(LINE_MAX); // 2 bytes each
        b.write_str("x").unwrap();
        b.write_str(&long).unwrap();
        assert_eq!(b.as_bytes().len(), LINE_MAX - 1);
        assert!(core::str::from_utf8(b.as_bytes()).is_ok());
        b.write_str("more").unwrap();
        assert_eq!(b.as_bytes().len(), LINE_MAX - 1);
    }

    #[test]
    fn log_reaches_backend() {
        crate::kernel::host::take_log();
        pr_info!("device {} on ifindex {}", "f0", 7);
        let got = crate::kernel::host::take_log();
        assert!(got.iter().any(|(l, m)| *l == Level::Info && m == "device f0 on ifindex 7"));
    }
}
