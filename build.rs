//! Stops a build for anything but Linux with one message, before the crate's
//! epoll, pidfd and accept4 code would fail with dozens.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        eprintln!(
            "error: ferroloop supports Linux only (x86_64 and aarch64; kernel 5.3+ for pidfds, \
             older kernels fall back to a waitpid thread per child): it is built on epoll and \
             other Linux system calls. This build targets '{os}'."
        );
        std::process::exit(1);
    }
}
