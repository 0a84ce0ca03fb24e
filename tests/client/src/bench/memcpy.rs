//! One core's memcpy bandwidth, the physical limit of a software RDMA device that
//! copies each byte at least once: a buffer of each size is copied over and over for
//! a while, and the bytes copied per second are reported.

use std::hint::black_box;

use crate::clock::now_ns;
use crate::json::{Obj, Out};
use crate::opts::{Opts, DEFAULT_MEMCPY_SIZES};

pub fn run(o: &Opts) -> i32 {
    let out = Out { tags: o.tags.clone() };
    let sizes = o.sizes.clone().unwrap_or_else(|| DEFAULT_MEMCPY_SIZES.to_vec());
    for size in sizes {
        let src = vec![0x5au8; size];
        let mut dst = vec![0xa5u8; size];
        // Copies between two looks at the clock: about 16 MiB.
        let batch = ((16usize << 20) / size).max(1) as u64;
        let copy = |dst: &mut Vec<u8>| {
            // SAFETY: two distinct live allocations of `size` bytes each.
            unsafe { std::ptr::copy_nonoverlapping(black_box(src.as_ptr()), dst.as_mut_ptr(), size) };
            black_box(dst.as_mut_ptr());
        };
        copy(&mut dst); // fault the pages in, warm the caches
        let limit = (o.seconds * 1e9) as u64;
        let t0 = now_ns();
        let mut n = 0u64;
        let t1 = loop {
            for _ in 0..batch {
                copy(&mut dst);
            }
            n += batch;
            let t = now_ns();
            if t - t0 >= limit {
                break t;
            }
        };
        let secs = (t1 - t0) as f64 / 1e9;
        let bytes = n * size as u64;
        out.emit(
            Obj::new()
                .s("kind", "memcpy")
                .u("size", size as u64)
                .u("copies", n)
                .u("bytes", bytes)
                .f("seconds", secs)
                .f("bw_Bps", bytes as f64 / secs),
        );
    }
    0
}
