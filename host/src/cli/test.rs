//! `wafka test PLUGIN`: runs a plugin over input lines without a broker and prints, as JSON
//! lines on stdout, the records it would publish.
//!
//! A plugin sees the same host as under `wafka run` (same flags, limits, checks and
//! autoflush policy: receipts have offset -1 unless autoflush is on), except that records are
//! kept in memory: every topic has `--partitions` partitions, and `-X max.request.size` /
//! `-X buffer.memory` bound records as the producer would.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use wafka::{CaptureOptions, CapturedRecord};
use wafka_producer::ProducerConfig;

use crate::cli::plugin_args::{drive, PluginFlags};

#[derive(Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    plugin: PluginFlags,
    /// Partitions every topic is assumed to have (keyed records go where murmur2 puts them).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Producer property key=value (Java client names), repeatable: `max.request.size` and
    /// `buffer.memory` bound records as they would under `wafka run`.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

pub async fn run(args: TestArgs) -> Result<ExitCode> {
    anyhow::ensure!(args.partitions > 0, "--partitions must be at least 1");
    let mut config = ProducerConfig::new();
    for p in &args.properties {
        config.set_pair(p).context("bad -X")?;
    }
    let setup = args.plugin.setup()?;
    let plugin = args.plugin.load(&setup)?;
    let mut instance = plugin
        .instantiate_capture(CaptureOptions {
            partitions: args.partitions,
            max_request_size: config.max_request_size,
            buffer_memory: config.buffer_memory,
        })
        .await?;
    let mut out = std::io::stdout().lock();
    let stopped = match instance.init(&setup.config).await {
        Err(e) => {
            eprintln!("wafka: init: {e}");
            Some(e)
        }
        Ok(()) => {
            drive(&mut instance, setup.events()?, |i| {
                for rec in i.take_captured() {
                    writeln!(out, "{}", json(&rec))?;
                }
                Ok(())
            })
            .await?
            .stopped
        }
    };
    // What init published, or what came before a trap.
    for rec in instance.take_captured() {
        writeln!(out, "{}", json(&rec))?;
    }
    let s = instance.stats();
    eprintln!(
        "wafka: {} events ({} failed), {} records captured, {} refused (nothing was sent)",
        s.events, s.failed_events, s.records, s.refused
    );
    Ok(
        if stopped.is_some() || s.failed_events > 0 || s.refused > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
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
