//! Platform cfg aliases, defined once (as the `nix` crate does with `cfg_aliases`):
//!
//! - `linux_like`: Linux and Android, which share the kernel interfaces used here (`clone`,
//!   raw system calls, `/proc`, pidfds, `close_range`, abstract sockets, per-thread credentials).
//! - `apple_targets`: macOS and iOS (no `pipe2`; `getgrouplist` takes `c_int` groups).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(linux_like)");
    println!("cargo::rustc-check-cfg=cfg(apple_targets)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo::rustc-cfg=linux_like");
    }
    if os == "macos" || os == "ios" {
        println!("cargo::rustc-cfg=apple_targets");
    }
}
