//! `wafka-guest-tools`: what the C, Zig and Go SDK builds need from crates.io, as one small
//! program built once into wafka's tool cache (see guest-sdk/toolchain.sh).
//!
//! ```text
//! wafka-guest-tools c-bindings WIT_DIR WORLD OUT_DIR   # what `wit-bindgen c` writes
//! wafka-guest-tools wasi-adapter OUT.wasm              # WASI's preview1 reactor adapter
//! ```
//!
//! It owns no logic of its own: the bindings come from the `wit-bindgen-c` generator with its
//! default options, the adapter is the bytes the provider crate embeds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wit_bindgen_core::wit_parser::Resolve;
use wit_bindgen_core::Files;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["wasi-adapter", out] => write_atomically(
            Path::new(out),
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        ),
        _ => Err(
            "usage: wafka-guest-tools c-bindings WIT_DIR WORLD OUT_DIR\n       \
                  wafka-guest-tools wasi-adapter OUT.wasm"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wafka-guest-tools: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Generates the C bindings of `world` from the WIT package in `wit` into `out`:
/// `plugin.h`, `plugin.c` and `plugin_component_type.o`.
fn c_bindings(wit: &Path, world: &str, out: &Path) -> Result<(), String> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .map_err(|e| format!("cannot read the WIT in {}: {e:#}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .map_err(|e| format!("{e:#}"))?;
    let mut files = Files::default();
    // Named `plugin` whatever the world (`plugin-lifecycle` too): the C and Zig SDKs' names
    // (plugin.h, exports_plugin_init, plugin_string_t, ...) do not change with it.
    let opts = wit_bindgen_c::Opts {
        rename_world: Some("plugin".into()),
        ..Default::default()
    };
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("cannot generate C bindings: {e:#}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (name, contents) in files.iter() {
        write_atomically(&out.join(name), contents)?;
    }
    Ok(())
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut partial = PathBuf::from(path);
    partial.as_mut_os_string().push(".partial");
    std::fs::write(&partial, contents)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
