//! `wafka run PLUGIN.wasm`: feeds input lines to a plugin as events and publishes what it sends.
//!
//! Everything given is checked before anything starts (flags, config pairs, topics to create,
//! the plugin itself), so a typo never costs a broker install. Records published before a
//! failed `init`, a trap or a timeout are still delivered. The exit status is non-zero if any
//! event failed, any record was refused (by the ACL, a limit or the producer) or failed to
//! be delivered.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use wafka::ProducerRuntime;

use crate::cli::local_broker::ClusterFlags;
use crate::cli::plugin_args::{drive, PluginFlags};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    plugin: PluginFlags,
    #[command(flatten)]
    cluster: ClusterFlags,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let (mut config, brokers) = args.cluster.check("wafka-run", [])?;
    let setup = args.plugin.setup()?;
    let started = Instant::now();
    let plugin = args.plugin.load(&setup)?;

    let brokers = brokers.address().await?;
    config.set("bootstrap.servers", &brokers)?;
    config.validate()?;

    // Kafka I/O on a thread of its own: the plugin runs on this runtime.
    let io = ProducerRuntime::new(1).context("cannot start the producer's thread")?;
    let producer = io.producer(config);
    let mut instance = plugin.instantiate(&producer).await?;
    let mut next_progress = Instant::now() + Duration::from_secs(2);
    let stopped = match instance.init(&setup.config).await {
        Err(e) => {
            super::plugin_args::log_caught_up();
            eprintln!("wafka: init: {e}");
            true
        }
        Ok(()) => {
            let p = producer.clone();
            drive(&mut instance, setup.events()?, |i| {
                if Instant::now() >= next_progress {
                    let s = i.stats();
                    eprintln!(
                        "wafka: {} events ({} failed), {} records queued, {} acknowledged",
                        s.events,
                        s.failed_events,
                        s.records,
                        p.stats().records_acked
                    );
                    next_progress += Duration::from_secs(2);
                }
                Ok(())
            })
            .await?
            .failed()
        }
    };
    // Records published before a failed init, a trap or a timeout are delivered too.
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
    let ok = !stopped
        && s.failed_events == 0
        && s.refused == 0
        && p.records_failed == 0
        && flushed.is_ok();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
