//! The workload on jemalloc (the `tikv-jemallocator` crate, which builds its own copy).

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    rust_workload::main()
}
