//! `wafka serve --config FILE`: tenants' plugins behind HTTP until SIGTERM or SIGINT.
//!
//! Reads and checks the config (one line naming the file and key on an error, before
//! anything starts), raises the descriptor limit, starts the local broker when no cluster is
//! named, the producer on a thread of its own, and the server (logging the descriptors and
//! the connections they allow); then reloads on SIGHUP (one at a time: a SIGHUP during a
//! reload queues one more, never lost) and drains on SIGTERM/SIGINT:
//! no new events, the ones in progress finished, every tenant's records flushed within
//! `http.drain_timeout_ms`, exit 0 when nothing accepted was lost.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use wafka::serve::Producers;
use wafka::serve::{ServeConfig, Server};
use wafka::ProducerRuntime;

use crate::cli::local_broker::ClusterFlags;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The configuration: `[kafka]`, `[http]` and one `[tenants.NAME]` per tenant (README).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    cluster: ClusterFlags,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let config = ServeConfig::load(&args.config)?;
    // A usual soft limit (1,024) is far below http.max_connections: the hard limit is the
    // host's to use. Raised before the producer connects and the listener opens.
    let raised = match wafka::serve::fds::raise() {
        Ok(l) => l.raised_from,
        Err(e) => {
            say!("cannot raise the descriptor limit (RLIMIT_NOFILE): {e}");
            None
        }
    };
    let (mut producer_config, brokers) = args.cluster.check("wafka-serve", &config.kafka)?;
    // The tenants' shares of buffer.memory must fit, with -X's settings too: checked before
    // a local broker starts.
    config.buffer_shares(&producer_config)?;
    let brokers = brokers.address().await?;
    producer_config.set("bootstrap.servers", &brokers)?;
    producer_config.validate()?;

    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;

    // Kafka I/O on threads of their own: plugins run on this runtime.
    let io = ProducerRuntime::new(2).context("cannot start the producer's threads")?;
    let producers = std::sync::Arc::new(Producers::new(io.producer(producer_config), io.starter()));
    let tenants = config.tenants.len();
    let file = config.file.display().to_string();
    let server = Server::start(config, producers.clone()).await?;
    let mut descriptors = server.descriptors();
    descriptors.limit.raised_from = raised;
    say!("{descriptors}");
    say!(
        "serving {tenants} tenants from {file} on http://{}",
        server.local_addr()
    );
    // A reload compiles plugins and starts instances (their `init`s may be slow): reloads run
    // one after the other on a task of their own, so that SIGTERM is taken at once even then.
    // A SIGHUP during a reload queues one more (it reads the file as it is when it starts);
    // more SIGHUPs meanwhile fold into that one.
    let server = std::sync::Arc::new(server);
    let (queue, mut wanted) = tokio::sync::mpsc::channel::<()>(1);
    let reloader = tokio::spawn({
        let (server, file) = (server.clone(), file.clone());
        async move {
            while wanted.recv().await.is_some() {
                match server.reload().await {
                    Ok(r) => {
                        say!(
                            "reloaded {file}: {} tenants ({} kept, {} started, {} removed)",
                            r.tenants,
                            r.kept,
                            r.started,
                            r.removed
                        );
                        for w in r.warnings {
                            say!("{w}");
                        }
                    }
                    Err(e) => {
                        say!("reload refused, the running configuration stays: {e}")
                    }
                }
            }
        }
    });
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if queue.try_send(()).is_err() {
                    say!("SIGHUP: a reload is already queued; it reads the file when it starts");
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    // A reload not done yet is dropped, and the queued one with it: the running configuration
    // stays.
    drop(queue);
    reloader.abort();
    let _ = reloader.await;
    let server = match std::sync::Arc::try_unwrap(server) {
        Ok(s) => s,
        Err(_) => anyhow::bail!("the server is still in use"),
    };
    // The bound as last reloaded; closing the producer gets what the drain left of it (at
    // least a second), so the process ends within about the bound even with the cluster down.
    let drain_timeout = server.drain_timeout();
    say!("draining (at most {} ms)", drain_timeout.as_millis());
    let drained = server.drain(drain_timeout).await;
    let left = drain_timeout
        .saturating_sub(drained.took)
        .max(std::time::Duration::from_secs(1));
    let closed = producers.close_timeout(left).await;
    let p = producers.stats();
    say!(
        "drained in {} ms: {} records delivered, {} failed{}",
        drained.took.as_millis(),
        p.records_acked,
        p.records_failed,
        if drained.events_cut > 0 {
            format!(
                "; {} requests were still running at the bound",
                drained.events_cut
            )
        } else {
            String::new()
        }
    );
    if !closed {
        say!("closing the producers: records were still pending at the bound");
    }
    Ok(if drained.flushed && drained.events_cut == 0 && closed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
