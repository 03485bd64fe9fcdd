//! The workload on mimalloc (the `mimalloc` crate, which builds its own copy).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    rust_workload::main()
}
