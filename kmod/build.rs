//! Turns compat/ferrite_compat.h, the one C<->Rust interface, into Rust declarations.

use std::env;
use std::path::PathBuf;

fn main() {
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../compat/ferrite_compat.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .use_core()
        .ctypes_prefix("core::ffi")
        .allowlist_function("ferrite_k_.*")
        .allowlist_type("ferrite_.*")
        .allowlist_var("FERRITE_.*")
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen could not read compat/ferrite_compat.h");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("compat.rs");
    bindings.write_to_file(out).expect("writing compat.rs");
}
