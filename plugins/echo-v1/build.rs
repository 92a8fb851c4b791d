//! Sets the build tag echo copies into every delivered event as `build`: the package name after
//! `echo-` (`echo-v1` -> `v1`).

fn main() {
    let package = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    let tag = package.strip_prefix("echo-").unwrap_or(&package);
    println!("cargo::rustc-env=DOLPHIN_ADAPTER_BUILD={tag}");
    println!("cargo::rerun-if-changed=build.rs");
}
