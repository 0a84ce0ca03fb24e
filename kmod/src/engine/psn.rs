//! 24-bit packet sequence numbers and their serial-number arithmetic.

pub const MASK: u32 = 0x00ff_ffff;

/// `a + n` modulo 2^24.
pub fn add(a: u32, n: u32) -> u32 {
    a.wrapping_add(n) & MASK
}

/// The signed distance `a - b` in the 24-bit circle: positive when `a` is after `b`.
pub fn diff(a: u32, b: u32) -> i32 {
    ((a.wrapping_sub(b) << 8) as i32) >> 8
}

/// `a` is before `b`.
pub fn before(a: u32, b: u32) -> bool {
    diff(a, b) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_24_bits() {
        assert_eq!(add(MASK, 1), 0);
        assert_eq!(add(MASK - 1, 3), 1);
        assert_eq!(diff(1, MASK), 2);
        assert_eq!(diff(MASK, 1), -2);
        assert!(before(MASK, 0));
        assert!(!before(0, MASK));
        assert_eq!(diff(5, 5), 0);
        assert_eq!(diff(0x7f_ffff, 0), 0x7f_ffff);
        assert_eq!(diff(0x80_0000, 0), -0x80_0000);
    }
}
