//! Picks the mirrored rdma-core provider ABI from the rdma-core release the provider
//! is built for (FERRITE_RDMA_CORE, e.g. "44.0"; scripts/ferrite sets it per target).

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
}
