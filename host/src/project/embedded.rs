//! The files `wafka new` writes, embedded in the binary at build time (see host/build.rs): the
//! templates, the SDKs and the contract, by their paths in wafka's repository.
//!
//! It only answers which files are under a path and writes them out; what a project is lives in
//! the parent module.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// One embedded file.
pub(crate) struct File {
    /// Its path in wafka's repository.
    pub(crate) repository_path: &'static str,
    /// Its path under the directory asked for (its name, when a file was asked for).
    pub(crate) path: &'static str,
    pub(crate) executable: bool,
    pub(crate) bytes: &'static [u8],
}

/// The files under `dir` (a repository path such as `guest-sdk/rust`), or the file `dir` itself.
pub(crate) fn under(dir: &str) -> impl Iterator<Item = File> + '_ {
    FILES.iter().filter_map(move |&(path, executable, bytes)| {
        let rest = if path == dir {
            Path::new(path).file_name()?.to_str()?
        } else {
            path.strip_prefix(dir)?.strip_prefix('/')?
        };
        Some(File {
            repository_path: path,
            path: rest,
            executable,
            bytes,
        })
    })
}

/// Writes `bytes` to `path` (making its directories), executable if asked; never overwrites.
pub(crate) fn write_new(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    let _ = executable;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
