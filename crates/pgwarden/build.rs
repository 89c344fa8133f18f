//! Names the kind of build in `pgwarden --version`: a profile-guided build (`make build-pgo`)
//! and its instrumented first stage say so, so a benchmark report shows which binary it ran.

fn main() {
    // Cargo hands a build script the flags of the crate it builds, separated by 0x1f.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let has = |flag: &str| flags.split('\x1f').any(|f| f.contains(flag));
    let kind = if has("profile-use") {
        " (profile-guided build)"
    } else if has("profile-generate") {
        " (instrumented build)"
    } else {
        ""
    };
    // Not named PGWARDEN_*: cargo also sets it when it runs the binary (`cargo run`, tests),
    // and pgwarden refuses PGWARDEN_* variables it does not know.
    println!("cargo:rustc-env=BUILD_KIND_SUFFIX={kind}");
    println!("cargo:rerun-if-changed=build.rs");
    // Without `--target` a change of RUSTFLAGS rebuilds this script anyway; with it, the
    // script's own flags stay the same and only these lines make it run again.
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
