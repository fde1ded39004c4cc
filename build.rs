//! With the `jemalloc` feature (on by default, Linux only), links Debian's static jemalloc
//! (`libjemalloc-dev`) in place of glibc's malloc for the whole process. librdkafka allocates and
//! frees a small object per message on different threads (its broker thread allocates, a lane
//! frees), which glibc's arenas serve behind a lock; jemalloc's thread caches do not. A Rust
//! `#[global_allocator]` would cover Rust's allocations only, so the C symbols themselves are
//! replaced: the archive's `malloc`, `free`, … become the executable's own (src/memory.rs refers
//! to the archive's `mallctl`, which sits beside them), and every library — librdkafka, OpenSSL,
//! glibc itself — then calls them. Only the C archive is linked, not its C++ `operator new`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if std::env::var_os("CARGO_FEATURE_JEMALLOC").is_none() || !linux {
        return;
    }
    let libdir = Command::new("pkg-config")
        .args(["--variable=libdir", "jemalloc"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("libjemalloc_pic.a").is_file());
    let Some(libdir) = libdir else {
        panic!(
            "the `jemalloc` feature needs jemalloc's static library (apt-get install \
             libjemalloc-dev); build with --no-default-features to use the system's malloc"
        );
    };
    println!("cargo:rustc-link-search=native={}", libdir.display());
    println!("cargo:rustc-link-lib=static=jemalloc_pic");
}
