//! Compiled plugins on disk, so that a plugin compiles once per machine, not once per run.
//!
//! Owns the cache directory: one file per (component bytes, engine) pair, named by the SHA-256
//! of the component and a hash of everything in the engine that compiled code depends on
//! (wasmtime's version, target and settings). It must not compile anything itself.
//!
//! A cached file is loaded as native code, so the cache is trusted only as far as the user
//! running the host is: the directory is created 0700, and a directory or file that another
//! user owns, or that group or others may write, is refused (the cache is then not used, with
//! a one-line reason); so is a directory with a parent that someone else could rename it in
//! (owned by another user than root or this one, or writable by others without the sticky
//! bit). A file is opened without following a symbolic link, checked on the open descriptor
//! and read into memory before wasmtime sees it, so it cannot be swapped between the check and
//! the load. New files are written 0600 under a fresh name (`create_new`) and renamed into
//! place. There is no shared fallback: without `WAFKA_CACHE` or `HOME` there is no default
//! cache. A file that cannot be read back (truncated, from another wasmtime) is recompiled
//! and replaced.

use std::fs::{DirBuilder, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// Why a cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Neither `WAFKA_CACHE` nor `HOME` is set.
    #[error("neither WAFKA_CACHE nor HOME is set, so there is no private place for it")]
    NoHome,
    /// The directory cannot be created or read.
    #[error("cannot use {dir}: {source}")]
    Io {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory or file may have been written by someone else.
    #[error("{path} {problem}: compiled code there could have been planted by another user")]
    Untrusted {
        /// The directory or file.
        path: String,
        /// What is wrong: its owner, or its permissions.
        problem: String,
    },
}

/// A directory of compiled components, private to the user running the host.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// The cache in `dir`, created (0700) if missing; refused if another user owns it or
    /// group or others may write it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| CacheError::Io {
                dir: dir.display().to_string(),
                source,
            })?;
        let meta = std::fs::symlink_metadata(&dir).map_err(|source| CacheError::Io {
            dir: dir.display().to_string(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(CacheError::Untrusted {
                path: dir.display().to_string(),
                problem: "is not a directory (or is a symbolic link)".into(),
            });
        }
        trusted(&dir, &meta)?;
        for parent in dir.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                continue;
            }
            let meta = std::fs::metadata(parent).map_err(|source| CacheError::Io {
                dir: parent.display().to_string(),
                source,
            })?;
            safe_parent(parent, &meta)?;
        }
        Ok(ComponentCache { dir })
    }

    /// `${WAFKA_CACHE:-$HOME/.cache/wafka}/components`, opened as by [`ComponentCache::open`].
    pub fn open_default() -> Result<Self, CacheError> {
        let base = std::env::var_os("WAFKA_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| Path::new(&h).join(".cache").join("wafka"))
            })
            .ok_or(CacheError::NoHome)?;
        Self::open(base.join("components"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open, recompiling");
                return None;
            }
        };
        let checked = file.metadata().map_err(|e| e.to_string()).and_then(|meta| {
            if !meta.is_file() {
                return Err("not a regular file".to_string());
            }
            trusted(&path, &meta).map_err(|e| e.to_string())
        });
        if let Err(e) = checked {
            tracing::warn!(path = %path.display(), "{e}; recompiling");
            return None;
        }
        let mut data = Vec::new();
        if let Err(e) = (&file).read_to_end(&mut data) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read, recompiling");
            return None;
        }
        // SAFETY: the bytes were read from a regular file that only this user can have
        // written, in a directory only this user can change; its name says it was serialized
        // by this engine configuration (`put` below). wasmtime checks its header and version.
        match unsafe { Component::deserialize(engine, &data) } {
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
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let data = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
        }
    }
}

/// Whether nobody but root and this user can rename or replace what `parent` holds.
fn safe_parent(parent: &Path, meta: &Metadata) -> Result<(), CacheError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(CacheError::Untrusted {
            path: parent.display().to_string(),
            problem: format!("belongs to user {} (wafka runs as user {me})", meta.uid()),
        });
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(CacheError::Untrusted {
            path: parent.display().to_string(),
            problem: format!(
                "may be written by group or others (mode {:o})",
                meta.mode() & 0o7777
            ),
        });
    }
    Ok(())
}

/// Whether `path` is owned by the user running the host and not writable by anyone else.
fn trusted(path: &Path, meta: &Metadata) -> Result<(), CacheError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(CacheError::Untrusted {
            path: path.display().to_string(),
            problem: format!("belongs to user {} (wafka runs as user {me})", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheError::Untrusted {
            path: path.display().to_string(),
            problem: format!(
                "may be written by group or others (mode {:o})",
                meta.mode() & 0o777
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wafka-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_new_cache_is_private() {
        let d = scratch("new");
        let cache = ComponentCache::open(d.join("components")).unwrap();
        let mode = std::fs::metadata(cache.dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let d = scratch("shared");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ComponentCache::open(&d).unwrap_err().to_string();
        assert!(
            e.contains("may be written by group or others (mode 777)"),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_parent_others_may_write_is_refused() {
        let d = scratch("parent");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ComponentCache::open(d.join("components"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{} may be written", d.display())),
            "{e}"
        );
        // With the sticky bit (as /tmp), others cannot rename what it holds.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ComponentCache::open(d.join("components")).unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let d = scratch("link");
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let e = ComponentCache::open(d.join("link"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
