//! `wafka test PLUGIN`: runs a plugin over input lines without a broker and prints, as JSON
//! lines on stdout, the records it would publish.
//!
//! A plugin sees the same host as under `wafka run` (same flags, limits, checks and
//! autoflush policy: receipts have offset -1 unless autoflush is on), except that records are
//! kept in memory: every topic has `--partitions` partitions, and `-X max.request.size` /
//! `-X buffer.memory` bound records as the producer would. `--fail-*` inject failures where
//! a real cluster would give them (`wafka::Faults`), for testing a plugin's error paths.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use wafka::{CaptureOptions, CapturedRecord, FaultKind, Faults};
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
    /// Fails every record to TOPIC with KIND, repeatable (KIND: not-authorized, invalid-topic,
    /// record-too-large, buffer-full, quota-exceeded, timed-out, closed, not-allowed,
    /// broker[:CODE]). timed-out and broker come in the record's delivery report and the next
    /// flush (at publish under autoflush), the others at publish: as under `wafka run`.
    #[arg(long = "fail-topic", value_name = "TOPIC=KIND", value_parser = Faults::parse_topic)]
    fail_topic: Vec<(String, FaultKind)>,
    /// Fails every Nth record (counting those the host's own checks let through) with KIND.
    #[arg(long = "fail-every", value_name = "N=KIND", value_parser = Faults::parse_every)]
    fail_every: Option<(u64, FaultKind)>,
    /// Makes every `flush` fail with KIND (the records stay captured); KIND as a delivery ends.
    #[arg(long = "fail-flush", value_name = "KIND", value_parser = Faults::delivery_kind)]
    fail_flush: Option<FaultKind>,
    /// Queues every record, then fails it with KIND in its delivery report and the next flush
    /// (not buffer-full, quota-exceeded or not-allowed: no delivery ends so).
    #[arg(long = "fail-reports", value_name = "KIND", value_parser = Faults::delivery_kind)]
    fail_reports: Option<FaultKind>,
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
            faults: Faults {
                topics: args.fail_topic,
                every: args.fail_every,
                flush: args.fail_flush,
                reports: args.fail_reports,
            },
        })
        .await?;
    let mut out = std::io::stdout().lock();
    let stopped = match instance.init(&setup.config).await {
        Err(e) => {
            super::plugin_args::log_caught_up();
            eprintln!("wafka: init: {e}");
            true
        }
        Ok(()) => drive(&mut instance, setup.events()?, |i| {
            for rec in i.take_captured() {
                writeln!(out, "{}", json(&rec))?;
            }
            Ok(())
        })
        .await?
        .failed(),
    };
    // What init published, or what came before a trap.
    for rec in instance.take_captured() {
        writeln!(out, "{}", json(&rec))?;
    }
    let s = instance.stats();
    let (injected_at_publish, injected_in_reports) = instance.injected_failures();
    let injected = if injected_at_publish + injected_in_reports > 0 {
        format!(
            "; injected: {injected_at_publish} refused at publish, {injected_in_reports} failed in delivery reports"
        )
    } else {
        String::new()
    };
    eprintln!(
        "wafka: {} events ({} failed), {} records captured, {} refused (nothing was sent){injected}",
        s.events,
        s.failed_events,
        s.records - injected_in_reports,
        s.refused
    );
    // Injected failures are what the author asked for: only the others fail the run.
    Ok(
        if stopped || s.failed_events > 0 || s.refused > injected_at_publish {
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
