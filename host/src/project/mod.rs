//! Plugin projects: what `wafka new` writes and `wafka build` builds.
//!
//! A project is a directory with a `wafka.toml` ([`Manifest`]: name, language, sources), the
//! plugin's sources from the language's template (host/templates/<lang>: a commented handler,
//! a unit test against the SDK's fake host, a README), and `.wafka/`: a copy of the SDK of its
//! language, the contract (wit/) and the toolchain script, as embedded in this binary
//! ([`embedded`]). The copy makes a project build and test offline and pins it to the wafka
//! that wrote it; the SDKs' READMEs say how to depend on them otherwise.
//!
//! `wafka build` runs the SDK's own build script (`.wafka/guest-sdk/<lang>/build.sh`, which
//! installs the language's toolchain into the cache on first use, as `scripts/build-guests`
//! does) and checks the result loads as a plugin. Nothing here touches the runtime beyond that
//! check, and the runtime knows nothing of projects.

pub(crate) mod build;
pub(crate) mod embedded;
pub(crate) mod new;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The name of a project's manifest.
pub(crate) const MANIFEST: &str = "wafka.toml";
/// Where a project keeps its copy of the SDK, relative to the project.
pub(crate) const SDK_DIR: &str = ".wafka";

/// A language wafka has an SDK for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Language {
    Rust,
    C,
    Zig,
    Python,
    Js,
    Go,
}

impl Language {
    /// Its name in `wafka new LANG`, in `wafka.toml` and as guest-sdk/<name>.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::C => "c",
            Language::Zig => "zig",
            Language::Python => "python",
            Language::Js => "js",
            Language::Go => "go",
        }
    }

    /// Whether its build needs guest-sdk/tools (the C bindings generator, WASI's adapter).
    fn needs_guest_tools(self) -> bool {
        matches!(self, Language::C | Language::Zig | Language::Go)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `wafka.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// The plugin's name: the component is `build/<name>.wasm`.
    pub(crate) name: String,
    pub(crate) language: Language,
    /// What the language's build takes, relative to the project: a crate or package directory
    /// (Rust, Go) or the plugin's files.
    pub(crate) sources: Vec<String>,
}

impl Manifest {
    /// Reads `dir/wafka.toml`.
    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not a wafka plugin project: it has no {MANIFEST} (start one with `wafka new LANG DIR`)",
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(e.message())))?;
        check_name(&manifest.name).with_context(|| path.display().to_string())?;
        if manifest.sources.is_empty() {
            bail!("{}: `sources` is empty", path.display());
        }
        Ok(manifest)
    }
}

/// A plugin's name: it names files, a crate, a Go module and a package, so it is kept to what
/// all of them take.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "the plugin name `{name}` is not allowed: use 1 to 64 lowercase letters, digits, - and _, starting with a letter"
        );
    }
    Ok(())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
