//! Fuzz target: any bytes as received RoCE v2 datagrams into a QP in RTS; each is
//! dropped and counted or processed, never a panic.  The input format and the
//! checks are ferrite_kmod::engine::fuzz::rx_packet's.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrite_kmod::engine::fuzz::rx_packet(data);
});
