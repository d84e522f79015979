//! `wafka produce`: stdin lines to a topic, like `kcat -P`.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use wafka_producer::{Compression, Header, ProduceError, Producer, ProducerConfig, Record};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Bootstrap brokers, host:port[,host:port]. Without it, a local broker is started.
    #[arg(short = 'b', long = "brokers")]
    brokers: Option<String>,
    /// Topic to produce to.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Split each line at the first DELIM into key and value.
    #[arg(short = 'K', long = "key-delimiter", value_name = "DELIM")]
    key_delimiter: Option<String>,
    /// Send every record to this partition.
    #[arg(short = 'p', long = "partition")]
    partition: Option<i32>,
    /// Compression codec: none, gzip, snappy, lz4, zstd (sets compression.type).
    #[arg(short = 'z', long = "compression", value_name = "CODEC")]
    compression: Option<String>,
    /// Producer property key=value (Java client names), repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Header key=value added to every record, repeatable.
    #[arg(short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Partitions of the topic created on the local broker (only without -b).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Read lines from these files instead of stdin.
    files: Vec<std::path::PathBuf>,
}

#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<ProduceError>>,
}

pub async fn run(args: ProduceArgs) -> Result<ExitCode> {
    let mut config = ProducerConfig::new();
    config.client_id = "wafka-produce".into();
    for p in &args.properties {
        config.set_pair(p).context("bad -X")?;
    }
    if let Some(z) = &args.compression {
        if Compression::parse(z).is_none() {
            bail!("bad -z `{z}`: expected none, gzip, snappy, lz4 or zstd");
        }
        config.set("compression.type", z)?;
    }
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None if config.is_explicit("bootstrap.servers") => config.bootstrap_servers.join(","),
        None => {
            let addr = tokio::task::spawn_blocking(crate::cli::local_broker::start).await??;
            let (a, t, n) = (addr.clone(), args.topic.clone(), args.partitions);
            tokio::task::spawn_blocking(move || crate::cli::local_broker::create_topic(&a, &t, n))
                .await??;
            eprintln!(
                "wafka: local broker at {addr}, topic `{}` with {n} partitions",
                args.topic
            );
            addr
        }
    };
    config.set("bootstrap.servers", &brokers)?;
    config.validate()?;
    let headers: Vec<(String, Vec<u8>)> = args
        .headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .with_context(|| format!("bad -H `{h}`: expected key=value"))
        })
        .collect::<Result<_>>()?;
    let header_refs: Vec<Header<'_>> = headers.iter().map(|(k, v)| Header::new(k, v)).collect();

    let producer = Producer::new(config);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let (mut records, mut bytes, mut too_large) = (0u64, 0u64, 0u64);
    let mut refused: Option<ProduceError> = None;
    let inputs: Vec<Box<dyn BufRead>> = if args.files.is_empty() {
        vec![Box::new(std::io::stdin().lock())]
    } else {
        args.files
            .iter()
            .map(|f| -> Result<Box<dyn BufRead>> {
                let file = std::fs::File::open(f)
                    .with_context(|| format!("cannot open {}", f.display()))?;
                Ok(Box::new(std::io::BufReader::new(file)))
            })
            .collect::<Result<_>>()?
    };
    'input: for input in inputs {
        for line in input.split(b'\n') {
            let mut line = line.context("cannot read input")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let (key, value) = match &args.key_delimiter {
                Some(d) => match find(&line, d.as_bytes()) {
                    Some(i) => (Some(&line[..i]), &line[i + d.len()..]),
                    None => (None, &line[..]),
                },
                None => (None, &line[..]),
            };
            let record = Record {
                topic: &args.topic,
                partition: args.partition,
                key,
                value: Some(value),
                headers: &header_refs,
                timestamp: None,
            };
            let t = tally.clone();
            let sent = producer
                .send_with_callback(
                    &record,
                    Box::new(move |r| match r {
                        Ok(_) => {
                            t.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            t.failed.fetch_add(1, Ordering::Relaxed);
                            t.first_error.lock().unwrap().get_or_insert(e);
                        }
                    }),
                )
                .await;
            match sent {
                Ok(_) => {
                    records += 1;
                    bytes += line.len() as u64;
                }
                // A record too large is this record's problem: report it and go on.
                Err(e @ ProduceError::RecordTooLarge { .. }) => {
                    eprintln!("wafka: line {} not sent: {e}", records + too_large + 1);
                    too_large += 1;
                }
                // Anything else (no metadata, unknown topic, ...) would refuse every record.
                Err(e) => {
                    refused = Some(e);
                    break 'input;
                }
            }
        }
    }
    producer.close().await;
    let secs = started.elapsed().as_secs_f64();
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!(
        "wafka: {delivered} delivered, {} failed of {} records ({bytes} bytes) to `{}` in {secs:.2} s",
        failed + too_large,
        records + too_large,
        args.topic
    );
    if let Some(e) = tally.first_error.lock().unwrap().take() {
        eprintln!("wafka: first delivery failure: {e}");
    }
    if let Some(e) = refused {
        eprintln!("wafka: stopped: record {} refused: {e}", records + 1);
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed == 0 && too_large == 0 && delivered == records {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
