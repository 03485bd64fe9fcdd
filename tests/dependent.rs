//! A Rust program that depends on mmpool as a user would: a cargo project
//! of its own (made under the target directory) with
//! `mmpool = { path = "..." }` and no feature named, whose `main.rs` is
//! `examples/global_alloc.rs` (`#[global_allocator]` on `MmPool`). It
//! must build (std's panic handler and the crate's do not clash: the
//! rlib is a std crate) and run, its Rust blocks owned by the pool and
//! its C `malloc` the system's (the rlib exports no malloc).
//!
//! Built offline, from the crates `cargo test` has just used (the
//! project starts from mmpool's Cargo.lock), in debug mode; the second
//! run is incremental.

use std::path::Path;
use std::process::Command;

#[test]
fn a_separate_project_depends_on_mmpool_by_path_without_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dependent");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\n\
         name = \"mmpool-dependent\"\n\
         version = \"0.1.0\"\n\
         edition = \"2021\"\n\
         publish = false\n\
         \n\
         [workspace]\n\
         \n\
         [dependencies]\n\
         mmpool = {{ path = {:?} }}\n",
        root.to_str().expect("a UTF-8 path")
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    let example = std::fs::read_to_string(root.join("examples/global_alloc.rs")).unwrap();
    write_if_changed(&dir.join("src/main.rs"), &example);
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        // make's jobserver, when `make test` runs this, is not ours.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build of {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    let exe = dir.join("target/debug/mmpool-dependent");
    let run = Command::new(&exe)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run the program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{} failed ({}):\n{stdout}{}",
        exe.display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    for line in [
        "Box<u64>:",
        "Box<Page>",
        "Vec<String> buffer:",
        "Vec<u64> of",
    ] {
        let l = stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line:?} line in:\n{stdout}"));
        assert!(l.contains("owned by the pool: true"), "{l}");
    }
    assert!(stdout.contains("aligned: true"), "{stdout}");
    assert!(
        stdout.contains("C malloc(100):       owned by the pool: false"),
        "the program's C malloc is the pool's:\n{stdout}"
    );
}

/// Write only when the contents differ, so that cargo's next build of
/// the project is incremental.
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}
