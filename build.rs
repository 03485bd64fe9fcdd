//! Link flags for the shared library.

fn main() {
    // Never unmap the library on dlclose: threads that are still running
    // keep its pthread-key destructor and its blocks, which would point
    // into unmapped code and memory (glibc also cannot unload a library
    // that uses static TLS safely).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
