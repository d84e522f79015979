//! `wafka test PLUGIN`: runs a plugin over input lines without a broker and prints, as JSON
//! lines on stdout, the records it would publish.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use wafka::{
    Autoflush, CapturedRecord, ComponentCache, Engine, PluginError, PluginOptions, TopicAcl,
};

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The plugin: a WebAssembly component targeting wafka's `plugin` world.
    plugin: PathBuf,
    /// Configuration passed to the plugin's init, repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Read events from FILE (one per line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Partitions every topic is assumed to have (keyed records go where murmur2 puts them).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Autoflush policy, as for `wafka run` (decides what `set-autoflush` answers).
    #[arg(long, default_value = "off", value_parser = clap::value_parser!(Autoflush))]
    autoflush: Autoflush,
    /// Topics the plugin may publish to (`name` or `prefix*`), repeatable; default: all.
    #[arg(long = "allow-topic", value_name = "PATTERN")]
    allow_topics: Vec<String>,
}

pub async fn run(args: TestArgs) -> Result<ExitCode> {
    let config = crate::cli::plugin_args::config_pairs(&args.config)?;
    let name = crate::cli::plugin_args::plugin_name(&args.plugin);
    let mut options = PluginOptions::new(&name);
    options.autoflush = args.autoflush;
    options.acl = TopicAcl::new(&args.allow_topics);
    let engine = Engine::new()
        .map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?
        .with_cache(ComponentCache::new(ComponentCache::default_dir()));
    let bytes = std::fs::read(&args.plugin).map_err(|e| wafka::LoadError::Read {
        path: args.plugin.display().to_string(),
        reason: e.to_string(),
    })?;
    let plugin = engine.load_for_test(&bytes, options)?;
    let mut instance = plugin.instantiate_capture(args.partitions).await?;
    instance.init(&config).await?;
    let input = crate::cli::plugin_args::events(args.input.as_ref())?;
    let mut out = std::io::stdout().lock();
    let mut trapped = false;
    for (n, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("cannot read input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let r = instance.handle(&line).await;
        for rec in instance.take_captured() {
            writeln!(out, "{}", json(&rec))?;
        }
        match r {
            Ok(()) => {}
            Err(e @ PluginError::Failed { .. }) => eprintln!("wafka: event {}: {e}", n + 1),
            Err(e) => {
                eprintln!("wafka: event {}: {e}", n + 1);
                trapped = true;
                break;
            }
        }
    }
    let s = instance.stats();
    eprintln!(
        "wafka: {} events ({} failed), {} records captured (nothing was sent)",
        s.events, s.failed_events, s.records
    );
    Ok(if trapped || s.failed_events > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `{"topic":..,"partition":..,"offset":..,"key":..,"value":..,"headers":[[k,v],..]}`; bytes
/// that are not UTF-8 appear as `{"hex":"..."}`.
fn json(r: &CapturedRecord) -> String {
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|(k, v)| format!("[{},{}]", json_str(k), json_bytes(v.as_deref())))
        .collect();
    format!(
        r#"{{"topic":{},"partition":{},"offset":{},"key":{},"value":{},"headers":[{}]}}"#,
        json_str(&r.topic),
        r.partition,
        r.offset,
        json_bytes(r.key.as_deref()),
        json_bytes(Some(&r.value)),
        headers.join(",")
    )
}

fn json_bytes(b: Option<&[u8]>) -> String {
    match b {
        None => "null".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json_str(s),
            Err(_) => format!(
                r#"{{"hex":"{}"}}"#,
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
        },
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
