//! Rebuild the bindings whenever the contract in `wit/` (the crate's copy of the repository's
//! `wit/`) changes: the `generate!` macro reads it at compile time, but cargo does not know that
//! on its own.
fn main() {
    println!("cargo:rerun-if-changed=wit");
}
