//! Payload patterns and the memory layout both sides share.
//!
//! A byte at message offset `i` of a test is byte `i % 8` (little-endian) of
//! `word(seed, i / 8)`, where the seed comes from the test's index and region.  Either
//! side can therefore fill or check any part of a message, at any offset and split into
//! any SGEs, without the data ever crossing the TCP side channel.
//!
//! Destination memory is *poisoned* before an operation: the message span and a guard
//! on each side (and the gaps between SGEs) get the bitwise inverse of a second
//! pattern.  After the operation the pieces must hold the pattern and everything else
//! must still hold the poison, so a short write, an overrun, a write into a gap or a
//! stale byte is caught, and the first differing offset is reported.

/// Bytes before the first data region (the MR starts with a spare page).
pub const DATA_OFF: usize = 4096;
/// Poisoned bytes checked on each side of a message and of each SGE piece.
pub const GUARD: usize = 64;
/// Space between SGE pieces of a scattered message (at least two guards).
pub const GAP: usize = 2 * GUARD;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const POISON: u64 = 0x05ee_d0fb_adc0_ffee;

/// splitmix64's finaliser: a good 64-bit mix, cheap enough for 16 MiB under TCG.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Word `k` of the pattern for `seed`.
fn word(seed: u64, k: u64) -> u64 {
    mix(seed ^ k.wrapping_mul(GOLDEN))
}

/// The seed of region `k` of test `test`.
pub fn seed_for(test: u32, k: u32) -> u64 {
    mix(((test as u64) << 32) | k as u64)
}

/// The seed of the poison around a region whose data has seed `seed`.
pub fn poison_seed(seed: u64) -> u64 {
    mix(seed ^ POISON)
}

/// The immediate value of message `k` of a test whose base value is `base`.
pub fn imm_k(base: u32, k: usize) -> u32 {
    base ^ (k as u32).wrapping_mul(0x0101_0101)
}

/// A random 24-bit PSN (time and process id mixed; no need for more).
pub fn random_psn() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (mix(t ^ ((std::process::id() as u64) << 40)) & 0xff_ffff) as u32
}

/// Fill `buf` with the pattern (or its inverse) for message offsets `start..`.
pub fn fill(buf: &mut [u8], seed: u64, start: u64, invert: bool) {
    let flip = if invert { u64::MAX } else { 0 };
    let mut i = 0usize;
    // Head: up to the next 8-byte boundary of the message offset.
    while i < buf.len() && !(start + i as u64).is_multiple_of(8) {
        let off = start + i as u64;
        buf[i] = ((word(seed, off / 8) ^ flip) >> (8 * (off % 8))) as u8;
        i += 1;
    }
    let mut k = (start + i as u64) / 8;
    let mut chunks = buf[i..].chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&(word(seed, k) ^ flip).to_le_bytes());
        k += 1;
    }
    let tail = chunks.into_remainder();
    let w = (word(seed, k) ^ flip).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&w[..n]);
}

/// The first byte of `buf` that differs from the pattern, and how many differ.
pub struct Mismatch {
    pub at: usize,
    pub got: u8,
    pub want: u8,
    pub count: usize,
}

/// Check `buf` against the pattern (or its inverse) for message offsets `start..`.
pub fn check(buf: &[u8], seed: u64, start: u64, invert: bool) -> Option<Mismatch> {
    let flip = if invert { u64::MAX } else { 0 };
    let mut first: Option<Mismatch> = None;
    let mut note = |at: usize, got: u8, want: u8| match &mut first {
        Some(m) => m.count += 1,
        None => first = Some(Mismatch { at, got, want, count: 1 }),
    };
    let mut i = 0usize;
    while i < buf.len() && !(start + i as u64).is_multiple_of(8) {
        let off = start + i as u64;
        let want = ((word(seed, off / 8) ^ flip) >> (8 * (off % 8))) as u8;
        if buf[i] != want {
            note(i, buf[i], want);
        }
        i += 1;
    }
    let mut k = (start + i as u64) / 8;
    while i < buf.len() {
        let want = (word(seed, k) ^ flip).to_le_bytes();
        let n = (buf.len() - i).min(8);
        if buf[i..i + n] != want[..n] {
            for j in 0..n {
                if buf[i + j] != want[j] {
                    note(i + j, buf[i + j], want[j]);
                }
            }
        }
        i += n;
        k += 1;
    }
    first
}

/// Where the bytes of one message sit in memory: `(offset from the region base,
/// length)` per SGE, in message order.
pub type Pieces = Vec<(usize, usize)>;

/// Split `len` into three uneven, non-empty parts (for `len >= 3`).  `variant` picks
/// one of two splits so that a sender's and a receiver's SGE boundaries differ.
pub fn split3(len: usize, variant: u32) -> [usize; 3] {
    let (a, b) = if variant == 0 {
        let a = (len / 7).max(1);
        (a, ((len - a) * 2 / 3).max(1))
    } else {
        let a = (len * 3 / 5).max(1);
        (a, ((len - a) / 4).max(1))
    };
    [a, b, len - a - b]
}

/// The pieces of a `len`-byte message over `nsge` SGEs (1 or 3), GAP apart.
pub fn pieces(len: usize, nsge: usize, variant: u32) -> Pieces {
    if nsge <= 1 || len < 3 {
        return vec![(0, len)];
    }
    let mut off = 0;
    split3(len, variant)
        .iter()
        .map(|&l| {
            let p = (off, l);
            off += l + GAP;
            p
        })
        .collect()
}

/// Bytes from the first piece's start to the last piece's end.
pub fn span(p: &Pieces) -> usize {
    p.last().map(|&(o, l)| o + l).unwrap_or(0)
}

/// The base offset (in the MR) of region `k` for messages spanning `span` bytes.
pub fn region(k: usize, span: usize) -> usize {
    let stride = (span + 2 * GUARD).div_ceil(64) * 64;
    DATA_OFF + GUARD + k * stride
}

/// The size of an MR for messages up to `max_len` bytes, with room for the batch
/// tests' regions and, in its last page, the atomic slot and a scratch area.
pub fn mr_len(max_len: usize) -> usize {
    let data = (max_len + 4 * GAP + 4 * GUARD).max(1 << 20);
    DATA_OFF + data.div_ceil(4096) * 4096 + 4096
}

/// The 8-byte-aligned atomic target in an MR of `mr_len` bytes.
pub fn atomic_off(mr_len: usize) -> usize {
    mr_len - 4096 + 64
}

/// A scratch area (receives for WRITE_WITH_IMM point here; it must stay untouched).
pub fn scratch_off(mr_len: usize) -> usize {
    mr_len - 4096 + 1024
}

/// The first byte past the data regions.
pub fn data_end(mr_len: usize) -> usize {
    mr_len - 4096
}

/// Poison the message span at `base` (pieces `p`) and one guard on each side.
pub fn poison(mem: &mut [u8], base: usize, p: &Pieces, seed: u64) {
    let lo = base - GUARD;
    let hi = base + span(p) + GUARD;
    fill(&mut mem[lo..hi], poison_seed(seed), 0, true);
}

/// Fill the pieces at `base` with the message pattern.
pub fn fill_pieces(mem: &mut [u8], base: usize, p: &Pieces, seed: u64) {
    let mut moff = 0u64;
    for &(o, l) in p {
        fill(&mut mem[base + o..base + o + l], seed, moff, false);
        moff += l as u64;
    }
}

/// Check a destination prepared by `poison`: the pieces hold the message (only the
/// first `written` bytes of it; the rest must still be poison), the rest the poison.
pub fn verify(mem: &[u8], base: usize, p: &Pieces, seed: u64, written: usize) -> Result<(), String> {
    let lo = base - GUARD;
    let hi = base + span(p) + GUARD;
    let ps = poison_seed(seed);
    // Poison everywhere outside the written bytes, as intervals relative to `lo`.
    let mut cursor = lo;
    let mut moff = 0usize;
    let poison_ok = |from: usize, to: usize| -> Result<(), String> {
        if let Some(m) = check(&mem[from..to], ps, (from - lo) as u64, true) {
            let at = from + m.at;
            let rel = at as isize - base as isize;
            return Err(format!(
                "byte at region offset {rel} (outside the message) changed: got {:#04x}, \
                 poison {:#04x} ({} such bytes)",
                m.got, m.want, m.count
            ));
        }
        Ok(())
    };
    for &(o, l) in p {
        let start = base + o;
        let w = l.min(written.saturating_sub(moff));
        poison_ok(cursor, start)?;
        if let Some(m) = check(&mem[start..start + w], seed, moff as u64, false) {
            let want_poison = check(&mem[start + m.at..start + m.at + 1], ps,
                                    (start + m.at - lo) as u64, true).is_none();
            return Err(format!(
                "payload differs at message offset {}: got {:#04x}, want {:#04x}{} \
                 ({} bytes differ)",
                moff + m.at, m.got, m.want,
                if want_poison { " (still poison: never written)" } else { "" },
                m.count
            ));
        }
        cursor = start + w;
        moff += l;
    }
    poison_ok(cursor, hi)
}

/// Check that the pieces at `base` still hold the message pattern and that the
/// guards are untouched (for a READ source, which the responder must not change).
pub fn verify_source(mem: &[u8], base: usize, p: &Pieces, seed: u64) -> Result<(), String> {
    verify(mem, base, p, seed, span(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_offset_consistent() {
        let mut whole = vec![0u8; 1000];
        fill(&mut whole, 7, 0, false);
        for start in [0usize, 1, 3, 7, 8, 9, 500] {
            let mut part = vec![0u8; 1000 - start];
            fill(&mut part, 7, start as u64, false);
            assert_eq!(&whole[start..], &part[..]);
            assert!(check(&whole[start..], 7, start as u64, false).is_none());
        }
        whole[123] ^= 1;
        let m = check(&whole, 7, 0, false).unwrap();
        assert_eq!((m.at, m.count), (123, 1));
    }

    #[test]
    fn poison_then_write_verifies() {
        let mut mem = vec![0u8; 1 << 16];
        for (len, nsge) in [(0usize, 1usize), (1, 1), (3, 3), (4097, 3), (5000, 1)] {
            let p = pieces(len, nsge, 1);
            let base = region(0, span(&p));
            poison(&mut mem, base, &p, 9);
            assert!(len == 0 || verify(&mem, base, &p, 9, len).is_err());
            fill_pieces(&mut mem, base, &p, 9);
            verify(&mem, base, &p, 9, len).unwrap();
            mem[base + span(&p)] ^= 0x80;
            assert!(verify(&mem, base, &p, 9, len).is_err());
        }
    }

    #[test]
    fn splits_are_uneven_and_whole() {
        for len in [3usize, 4, 5, 1025, 65537] {
            for v in 0..2 {
                let s = split3(len, v);
                assert_eq!(s.iter().sum::<usize>(), len);
                assert!(s.iter().all(|&x| x > 0));
            }
        }
    }
}
