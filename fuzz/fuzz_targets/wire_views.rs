//! Fuzz target: every wire view and the ICRC over any bytes, and each Repr's
//! parse/emit/parse round trip (ferrite_kmod::engine::fuzz::wire_views).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrite_kmod::engine::fuzz::wire_views(data);
});
