//! Names the kind of build in `pgwarden --version`: a profile-guided build (`make build-pgo`)
//! and its instrumented first stage say so, so a benchmark report shows which binary it ran.

fn main() {
    // Cargo hands a build script the flags of the crate it builds, separated by 0x1f; a change
    // of RUSTFLAGS rebuilds everything, this script included.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let kind = if flags.split('\x1f').any(|f| f.contains("profile-use")) {
        " (profile-guided build)"
    } else if flags.split('\x1f').any(|f| f.contains("profile-generate")) {
        " (instrumented build)"
    } else {
        ""
    };
    // Not named PGWARDEN_*: cargo also sets it when it runs the binary (`cargo run`, tests),
    // and pgwarden refuses PGWARDEN_* variables it does not know.
    println!("cargo:rustc-env=BUILD_KIND_SUFFIX={kind}");
    println!("cargo:rerun-if-changed=build.rs");
}
