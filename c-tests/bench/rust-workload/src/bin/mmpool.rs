//! The workload on mmpool (the crate, as a dependency: its rlib).

#[global_allocator]
static GLOBAL: mmpool::MmPool = mmpool::MmPool;

fn main() {
    rust_workload::main()
}
