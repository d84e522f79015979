//! `wafka build`: builds a plugin project into a component with its SDK's build script, then
//! checks that the component loads as a plugin. The script owns the build (tools, caches,
//! output); this only runs it and must not write into the project itself.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use wafka::{ComponentCache, Engine, EngineOptions, PluginOptions};

use super::{Manifest, SDK_DIR};

/// Builds the project in `dir` to `out` (default `dir/build/<name>.wasm`); returns the
/// component's path. The build's own output goes to stderr.
pub(crate) fn build(dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    // The script runs in the project: every path it is given must hold from there.
    let dir = &absolute(dir)?;
    let manifest = Manifest::read(dir)?;
    let language = manifest.language;
    let script = dir
        .join(SDK_DIR)
        .join("guest-sdk")
        .join(language.name())
        .join("build.sh");
    if !script.is_file() {
        bail!(
            "{} is missing: the project's copy of the {language} SDK ({SDK_DIR}/) is incomplete (`wafka new {language}` writes one)",
            script.display()
        );
    }
    let out = match out {
        Some(out) => absolute(out)?,
        None => dir.join("build").join(format!("{}.wasm", manifest.name)),
    };
    // The scripts print progress on stderr; whatever a tool prints on stdout goes there too, so
    // that this command's stdout is only the component's path.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    let status = Command::new("bash")
        .arg(&script)
        .arg("-o")
        .arg(&out)
        .args(&manifest.sources)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .status()
        .context("running bash (the SDK build scripts need it)")?;
    if !status.success() {
        bail!(
            "building `{}` ({language}) failed: see the build's output above",
            manifest.name
        );
    }
    // The engine `wafka run` and `wafka test` use, with the compile cache: the check compiles
    // the component once, for them too.
    let mut engine = Engine::with_options(EngineOptions { max_instances: 4 })
        .map_err(|e| anyhow::anyhow!("starting the engine: {e}"))?;
    if let Ok(cache) = ComponentCache::open_default() {
        engine = engine.with_cache(cache);
    }
    engine
        .load_file(&out, PluginOptions::new(manifest.name.clone()))
        .map_err(|e| anyhow::anyhow!("{} was built but wafka cannot run it: {e}", out.display()))?;
    Ok(out)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
