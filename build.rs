//! Link flags for the shared library.

fn main() {
    // Never unmap the library on dlclose: threads that are still running
    // keep its pthread-key destructor and its blocks, which would point
    // into unmapped code and memory (glibc also cannot unload a library
    // that uses static TLS safely).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // A versioned library: the SONAME carries the major version of
    // Cargo.toml (libmmpool.so.0 for 0.1.0); `make install` installs
    // libmmpool.so.MAJOR.MINOR.PATCH with the libmmpool.so.MAJOR and
    // libmmpool.so links, and `make lib` adds target/release/libmmpool.so.MAJOR
    // so that programs linked in the build tree find it at run time.
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    // The secure build (make secure) is libmmpool-secure.so.MAJOR.
    let name = if std::env::var_os("CARGO_FEATURE_SECURE").is_some() {
        "libmmpool-secure"
    } else {
        "libmmpool"
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
