//! Embeds what `wafka new` writes into a plugin project: the templates (host/templates/<lang>),
//! the guest SDKs (guest-sdk/) and the contract (wit/). Generates `$OUT_DIR/embedded.rs`, a
//! table of (path, executable, bytes) with paths relative to the repository root
//! (`host/templates/rust/Cargo.toml`, `guest-sdk/rust/src/lib.rs`, `wit/producer.wit`).
//!
//! Build output, caches and the SDKs' own test folders are left out (see `skipped`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let host = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = host
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf();
    let mut files = Vec::new();
    for dir in ["host/templates", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        walk(&root, &root.join(dir), &mut files);
    }
    files.sort();
    let mut out =
        String::from("/// Embedded files: (path from the repository root, executable, bytes).\n");
    out.push_str("pub(crate) static FILES: &[(&str, bool, &[u8])] = &[\n");
    for (relative, absolute, executable) in &files {
        writeln!(
            out,
            "    ({relative:?}, {executable}, include_bytes!({:?})),",
            absolute.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("embedded.rs");
    fs::write(dest, out).expect("writing embedded.rs");
}

/// Directories never embedded: build output, caches and dependencies a tool may leave in the
/// working tree (cargo, npm, pip and setuptools, zig), and the SDKs' own tests (`test`,
/// `tests`: no template or SDK part the binary writes out is named so).
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".egg-info")
        || matches!(
            name,
            "target"
                | "node_modules"
                | "__pycache__"
                | "build"
                | "dist"
                | "zig-out"
                | "tests"
                | "test"
        )
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf, bool)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            if !skipped(&name) {
                walk(root, &path, files);
            }
        } else if kind.is_file() && !name.ends_with(".pyc") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.push((relative, path.clone(), executable(&entry)));
        }
    }
}

#[cfg(unix)]
fn executable(entry: &fs::DirEntry) -> bool {
    use std::os::unix::fs::PermissionsExt;
    entry
        .metadata()
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn executable(_: &fs::DirEntry) -> bool {
    false
}
