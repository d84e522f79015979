//! A local broker for commands run without `-b`: started through the project's
//! `scripts/broker`, stopped when this process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where `scripts/broker` is: `WAFKA_BROKER_SCRIPT`, else the checkout this binary was built in.
fn script() -> PathBuf {
    std::env::var_os("WAFKA_BROKER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/broker")))
}

/// Starts a broker that lives as long as this process and returns its `host:port`.
pub fn start() -> Result<String> {
    let script = script();
    eprintln!(
        "wafka: no -b given, starting a local broker ({})",
        script.display()
    );
    let out = Command::new(&script)
        .args(["start", "--owner-pid", &std::process::id().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} start failed ({})", script.display(), out.status);
    }
    let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if addr.is_empty() {
        bail!("{} start printed no address", script.display());
    }
    Ok(addr)
}

/// Creates `topic` with `partitions` partitions on `broker` (no error if it exists).
pub fn create_topic(broker: &str, topic: &str, partitions: i32) -> Result<()> {
    let script = script();
    let status = Command::new(&script)
        .args(["topic", broker, topic, &partitions.to_string()])
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("creating topic `{topic}` on {broker} failed ({status})");
    }
    Ok(())
}
