//! Picks the mirrored rdma-core provider ABI from the rdma-core release the provider
//! is built for (FERRITE_RDMA_CORE, e.g. "44.0"; scripts/ferrite sets it per target).
//!
//! FERRITE_LIBIBVERBS names that release's own libibverbs.so.1 (scripts/ferrite takes
//! it from the target's root).  The provider is linked against it, as rdma-core's own
//! providers are: it gets `NEEDED libibverbs.so.1`, and its imports bind to
//! `IBVERBS_PRIVATE_<PABI>` and `IBVERBS_1.x`.  Without that, it loads only into a
//! process whose libibverbs is in the global symbol scope, and not where libibverbs
//! itself was loaded with dlopen(RTLD_LOCAL).  Unset (a plain `cargo build`), the
//! library is left unlinked; host tests never link the cdylib.

fn main() {
    println!("cargo:rerun-if-env-changed=FERRITE_RDMA_CORE");
    println!("cargo:rustc-check-cfg=cfg(pabi, values(\"33\", \"34\", \"65\"))");
    let release = std::env::var("FERRITE_RDMA_CORE").unwrap_or_else(|_| "44.0".into());
    let major: u32 = release
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("FERRITE_RDMA_CORE={release}: not an rdma-core release"));
    // The private ABI (driver.h) has one layout per range below; see src/sys.rs.
    let pabi = match major {
        33 => "33",
        34..=56 => "34",
        65 => "65",
        _ => panic!(
            "rdma-core {release}: no mirrored provider ABI for it (ferrite knows 33.x, 34-56, 65.x)"
        ),
    };
    println!("cargo:rustc-cfg=pabi=\"{pabi}\"");
    println!("cargo:rustc-env=FERRITE_PABI={pabi}");
    // Export nothing: libibverbs finds the provider through its constructor alone.
    let map = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("exports.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    println!("cargo:rerun-if-env-changed=FERRITE_LIBIBVERBS");
    if let Some(lib) = std::env::var_os("FERRITE_LIBIBVERBS").filter(|v| !v.is_empty()) {
        let lib = std::path::PathBuf::from(lib);
        if !lib.is_file() {
            panic!("FERRITE_LIBIBVERBS={}: no such library", lib.display());
        }
        let lib = lib.to_str().expect("FERRITE_LIBIBVERBS: not a UTF-8 path");
        println!("cargo:rerun-if-changed={lib}");
        // The file itself, not -L<dir> -l...: the root's directory must not stand in
        // for the host's libc and friends.  Its SONAME becomes the NEEDED entry.
        println!("cargo:rustc-cdylib-link-arg={lib}");
    }
}
