//! Compiled plugins on disk, so that a plugin compiles once per machine, not once per run.
//!
//! Owns the cache directory: one file per (component bytes, engine) pair, named by the SHA-256
//! of the component and a hash of everything in the engine that compiled code depends on
//! (wasmtime's version, target and settings). It must not compile anything itself.
//!
//! Loading a cached file means trusting it as native code: the cache directory must be writable
//! only by whoever runs the host (the default is under the user's own `~/.cache`). A file that
//! cannot be read back (truncated, from another wasmtime) is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    /// `${WAFKA_CACHE:-~/.cache/wafka}/components`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("WAFKA_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").join("wafka"))
            })
            .unwrap_or_else(std::env::temp_dir)
            .join("components")
    }

    fn path(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> PathBuf {
        let digest = Sha256::digest(bytes);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{:016x}.cwasm", h.finish()))
    }

    /// The compiled component for `bytes`, if this cache has a usable one.
    pub(crate) fn get(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path(engine, bytes);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `put` below from `Component::serialize` for this
        // engine configuration (its name says so); the directory is the operator's own.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compiled component, recompiling");
                None
            }
        }
    }

    /// Stores `component` (compiled from `bytes`). Failing to write only costs a recompile
    /// next time, so errors are logged, not returned.
    pub(crate) fn put(&self, engine: &wasmtime::Engine, bytes: &[u8], component: &Component) {
        let path = self.path(engine, bytes);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let data = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
        }
    }
}
