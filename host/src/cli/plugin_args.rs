//! What `wafka run` and `wafka test` read the same way: plugin config pairs, the plugin's
//! name, and the event input.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `KEY=VALUE` strings as `init`'s config pairs.
pub fn config_pairs(config: &[String]) -> Result<Vec<(String, String)>> {
    config
        .iter()
        .map(|c| {
            c.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("bad --config `{c}`: expected KEY=VALUE"))
        })
        .collect()
}

/// The plugin's name for logs and errors: its file name without extension.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

/// Events come from `--input FILE`, or stdin.
pub fn events(input: Option<&PathBuf>) -> Result<Box<dyn BufRead>> {
    Ok(match input {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    })
}
