//! `wafka run PLUGIN.wasm`: feeds input lines to a plugin as events and publishes what it sends.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use wafka::{Autoflush, ComponentCache, Engine, Limits, PluginError, PluginOptions, TopicAcl};
use wafka_producer::{Producer, ProducerConfig};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The plugin: a WebAssembly component targeting wafka's `plugin` world.
    plugin: PathBuf,
    /// Bootstrap brokers, host:port[,host:port]. Without it, a local broker is started.
    #[arg(short = 'b', long = "brokers")]
    brokers: Option<String>,
    /// Producer property key=value (Java client names), repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Autoflush policy: on (publish waits for the ack), off (publish queues), guest (the
    /// plugin chooses with set-autoflush).
    #[arg(long, default_value = "off", value_parser = clap::value_parser!(Autoflush))]
    autoflush: Autoflush,
    /// Configuration passed to the plugin's init, repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Read events from FILE (one per line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Topics the plugin may publish to (`name` or `prefix*`), repeatable; default: all.
    #[arg(long = "allow-topic", value_name = "PATTERN")]
    allow_topics: Vec<String>,
    /// Topics to create on the local broker (only without -b), `name[:partitions]`.
    #[arg(long = "create-topic", value_name = "NAME[:PARTITIONS]")]
    create_topics: Vec<String>,
    /// Memory limit of the plugin instance, in MiB.
    #[arg(long, default_value_t = 64)]
    max_memory_mb: usize,
    /// CPU time one call into the plugin may spend running its own code, in ms.
    #[arg(long, default_value_t = 5000)]
    max_cpu_ms: u64,
    /// Wall time one call into the plugin may take, host calls and sleeps included, in ms.
    #[arg(long, default_value_t = 10000)]
    max_call_ms: u64,
    /// Do not use (or fill) the compile cache in ${WAFKA_CACHE:-~/.cache/wafka}/components.
    #[arg(long)]
    no_cache: bool,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let mut config = ProducerConfig::new();
    config.client_id = "wafka-run".into();
    for p in &args.properties {
        config.set_pair(p).context("bad -X")?;
    }
    let external = args.brokers.is_some() || config.is_explicit("bootstrap.servers");
    if external && !args.create_topics.is_empty() {
        // wafka is a producer, not an admin client: on someone else's cluster, topics are made
        // with that cluster's own tools and policies.
        bail!("--create-topic only works with the local broker (no -b): create topics on your cluster with its own tools");
    }
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None if external => config.bootstrap_servers.join(","),
        None => {
            let addr = tokio::task::spawn_blocking(crate::cli::local_broker::start).await??;
            for t in &args.create_topics {
                let (name, partitions) = match t.split_once(':') {
                    Some((n, p)) => (
                        n.to_string(),
                        p.parse()
                            .with_context(|| format!("bad --create-topic `{t}`"))?,
                    ),
                    None => (t.clone(), 3),
                };
                let a = addr.clone();
                tokio::task::spawn_blocking(move || {
                    crate::cli::local_broker::create_topic(&a, &name, partitions)
                })
                .await??;
            }
            eprintln!("wafka: local broker at {addr}");
            addr
        }
    };
    config.set("bootstrap.servers", &brokers)?;
    config.validate()?;
    let plugin_config = crate::cli::plugin_args::config_pairs(&args.config)?;

    let name = crate::cli::plugin_args::plugin_name(&args.plugin);
    let mut options = PluginOptions::new(&name);
    options.autoflush = args.autoflush;
    options.limits = Limits {
        memory_bytes: args.max_memory_mb << 20,
        cpu_time: Duration::from_millis(args.max_cpu_ms),
        call_time: Duration::from_millis(args.max_call_ms),
    };
    options.acl = TopicAcl::new(&args.allow_topics);
    let mut engine = Engine::new().map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
    if !args.no_cache {
        engine = engine.with_cache(ComponentCache::new(ComponentCache::default_dir()));
    }
    let started = Instant::now();
    let plugin = engine.load_file(&args.plugin, options)?;
    let load = plugin.load_info();
    eprintln!(
        "wafka: loaded `{name}` ({} KiB) in {} ms{}",
        load.size / 1024,
        load.time.as_millis(),
        if load.from_cache {
            " from the compile cache"
        } else {
            ", compiled"
        }
    );
    let producer = Producer::new(config);
    let mut instance = plugin.instantiate(&producer).await?;
    instance.init(&plugin_config).await?;

    let input = crate::cli::plugin_args::events(args.input.as_ref())?;
    let mut trapped: Option<PluginError> = None;
    let mut shown_errors = 0;
    let mut next_progress = Instant::now() + Duration::from_secs(2);
    for (n, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("cannot read input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match instance.handle(&line).await {
            Ok(()) => {}
            Err(e @ PluginError::Failed { .. }) => {
                if shown_errors < 10 {
                    eprintln!("wafka: event {}: {e}", n + 1);
                }
                shown_errors += 1;
            }
            Err(e) => {
                eprintln!("wafka: event {}: {e}", n + 1);
                trapped = Some(e);
                break;
            }
        }
        if Instant::now() >= next_progress {
            let s = instance.stats();
            eprintln!(
                "wafka: {} events ({} failed), {} records queued, {} acknowledged",
                s.events,
                s.failed_events,
                s.records,
                producer.stats().records_acked
            );
            next_progress += Duration::from_secs(2);
        }
    }
    // Records published before a trap are delivered too.
    let flushed = instance.flush().await;
    producer.close().await;
    let s = instance.stats();
    let p = producer.stats();
    eprintln!(
        "wafka: {} events ({} failed), {} records ({} bytes): {} delivered, {} failed, {} refused; {:.2} s",
        s.events,
        s.failed_events,
        s.records,
        s.bytes,
        p.records_acked,
        p.records_failed,
        s.refused,
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = &flushed {
        eprintln!("wafka: first delivery failure: {e}");
    }
    let ok = trapped.is_none() && s.failed_events == 0 && p.records_failed == 0 && flushed.is_ok();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
