//! What `wafka run` and `wafka test` share, so that a plugin cannot tell them apart except by
//! where its records go: the plugin's flags (policy, limits, config, input), the engine, and
//! the event loop with its summary of failures, the plugin's own output written before
//! the host's lines about it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use wafka::{
    Autoflush, ComponentCache, Engine, EngineOptions, Limits, Plugin, PluginError, PluginInstance,
    PluginOptions, TopicAcl,
};

/// How many failed events are shown one by one; the rest are counted.
const SHOWN_FAILURES: u64 = 10;

/// The flags that describe a plugin and how it runs.
#[derive(Args, Debug)]
pub struct PluginFlags {
    /// The plugin: a WebAssembly component targeting wafka's `plugin` world.
    pub plugin: PathBuf,
    /// Configuration passed to the plugin's init, repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Read events from FILE (one per line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Autoflush policy: on (publish waits for the ack), off (publish queues), guest (the
    /// plugin chooses with set-autoflush).
    #[arg(long, default_value = "off", value_parser = clap::value_parser!(Autoflush))]
    autoflush: Autoflush,
    /// Topics the plugin may publish to (`name` or `prefix*`), repeatable; default: all.
    #[arg(long = "allow-topic", value_name = "PATTERN")]
    allow_topics: Vec<String>,
    /// Memory limit of the plugin instance (all its memories and tables), in MiB.
    #[arg(long, default_value_t = 64)]
    max_memory_mb: usize,
    /// CPU time one call into the plugin may spend running its own code, in ms.
    #[arg(long, default_value_t = 5000)]
    max_cpu_ms: u64,
    /// Wall time one call into the plugin may take, host calls and sleeps included, in ms.
    #[arg(long, default_value_t = 10000)]
    max_call_ms: u64,
    /// Distinct topics the plugin may publish to.
    #[arg(long, default_value_t = wafka::options::DEFAULT_MAX_TOPICS)]
    max_topics: usize,
    /// Do not use (or fill) the compile cache in ${WAFKA_CACHE:-~/.cache/wafka}/components.
    #[arg(long)]
    no_cache: bool,
}

/// What the flags say, checked before anything starts.
pub struct PluginSetup {
    pub name: String,
    pub config: Vec<(String, String)>,
    pub options: PluginOptions,
    input: Option<PathBuf>,
}

impl PluginFlags {
    /// Checks the flags (config pairs, limits, the input file) without loading anything.
    pub fn setup(&self) -> Result<PluginSetup> {
        let config = config_pairs(&self.config)?;
        anyhow::ensure!(self.max_memory_mb > 0, "--max-memory-mb must be at least 1");
        anyhow::ensure!(self.max_cpu_ms > 0, "--max-cpu-ms must be at least 1");
        anyhow::ensure!(self.max_call_ms > 0, "--max-call-ms must be at least 1");
        if let Some(f) = &self.input {
            std::fs::metadata(f).with_context(|| format!("cannot open {}", f.display()))?;
        }
        let name = plugin_name(&self.plugin);
        let mut options = PluginOptions::new(&name);
        options.autoflush = self.autoflush;
        // No --allow-topic: every topic (the one operator runs their own plugin); a list,
        // those only.
        options.acl = if self.allow_topics.is_empty() {
            TopicAcl::allow_all()
        } else {
            TopicAcl::new(&self.allow_topics)
        };
        options.max_topics = self.max_topics;
        options.limits = Limits {
            memory_bytes: self.max_memory_mb << 20,
            cpu_time: Duration::from_millis(self.max_cpu_ms),
            call_time: Duration::from_millis(self.max_call_ms),
        };
        Ok(PluginSetup {
            name,
            config,
            options,
            input: self.input.clone(),
        })
    }

    /// Compiles (or reads from the compile cache) and links the plugin.
    pub fn load(&self, setup: &PluginSetup) -> Result<Plugin> {
        // One instance runs at a time: a small pool.
        let mut engine = Engine::with_options(EngineOptions { max_instances: 4 })
            .map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
        if !self.no_cache {
            match ComponentCache::open_default() {
                Ok(cache) => engine = engine.with_cache(cache),
                Err(e) => eprintln!("wafka: not using the compile cache: {e}"),
            }
        }
        let plugin = engine.load_file(&self.plugin, setup.options.clone())?;
        let load = plugin.load_info();
        eprintln!(
            "wafka: loaded `{}` ({} KiB) in {} ms{}{}",
            setup.name,
            load.size / 1024,
            load.time.as_millis(),
            if load.from_cache {
                " from the compile cache"
            } else {
                ", compiled"
            },
            match plugin.world() {
                wafka::PluginWorld::Wafka => "",
                wafka::PluginWorld::Messaging => "; a wasi:messaging@0.2.0-draft plugin",
            }
        );
        Ok(plugin)
    }
}

impl PluginSetup {
    /// The events: `--input FILE`, or stdin.
    pub fn events(&self) -> Result<Box<dyn BufRead>> {
        Ok(match &self.input {
            Some(f) => Box::new(std::io::BufReader::new(
                std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        })
    }
}

/// How a run of events ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The trap or timeout that stopped the instance, if one did.
    pub stopped: Option<PluginError>,
    /// The plugin's `finish` returned an error (it was shown).
    pub finish_failed: bool,
}

impl Outcome {
    /// Whether the run failed here: a trap or timeout, or a failed `finish`.
    pub fn failed(&self) -> bool {
        self.stopped.is_some() || self.finish_failed
    }
}

/// Feeds every event line to the instance, calling `after` after each; shows the first
/// failures and counts the rest. Stops at a trap or timeout. When the input ended, calls the
/// plugin's `finish` (if it exports one), then `after` once more.
pub async fn drive(
    instance: &mut PluginInstance,
    input: Box<dyn BufRead>,
    mut after: impl FnMut(&mut PluginInstance) -> Result<()>,
) -> Result<Outcome> {
    let mut shown = 0;
    let mut outcome = Outcome::default();
    for (n, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("cannot read input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let r = instance.handle(&line).await;
        after(instance)?;
        match r {
            Ok(()) => {}
            Err(e @ PluginError::Failed { .. }) => {
                if shown < SHOWN_FAILURES {
                    log_caught_up();
                    eprintln!("wafka: event {}: {e}", n + 1);
                    shown += 1;
                }
            }
            Err(e) => {
                log_caught_up();
                eprintln!("wafka: event {}: {e}", n + 1);
                outcome.stopped = Some(e);
                break;
            }
        }
    }
    let failed = instance.stats().failed_events;
    let more = failed.saturating_sub(shown + u64::from(outcome.stopped.is_some()));
    if more > 0 {
        eprintln!(
            "wafka: … and {more} more failed events (only the first {SHOWN_FAILURES} are shown)"
        );
    }
    // The input ended: the plugin finishes its work (flushes, drains its last reports).
    if outcome.stopped.is_none() {
        let r = instance.finish().await;
        after(instance)?;
        if r.is_err() {
            log_caught_up();
        }
        match r {
            Ok(()) => {}
            Err(e @ PluginError::Failed { .. }) => {
                eprintln!("wafka: finish: {e}");
                outcome.finish_failed = true;
            }
            Err(e) => {
                eprintln!("wafka: finish: {e}");
                outcome.stopped = Some(e);
            }
        }
    }
    Ok(outcome)
}

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

/// Waits (a second at most) until what the plugin wrote to stdout and stderr so far is in the
/// log, which a thread of its own writes: its panic message comes before the host's line about
/// the call ("see its stderr above"). One plugin, the operator's own terminal: a short wait
/// here stalls nobody else.
pub fn log_caught_up() {
    wafka::runtime::log_writer::flush(Duration::from_secs(1));
}
