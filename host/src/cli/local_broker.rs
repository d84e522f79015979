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
    say!(
        "no -b given, starting a local broker ({})",
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

/// `name[:partitions]` (3 partitions by default).
pub fn topic_spec(t: &str) -> Result<(String, i32)> {
    let (name, partitions) = match t.split_once(':') {
        Some((n, p)) => (
            n,
            p.parse::<i32>().ok().filter(|p| *p > 0).with_context(|| {
                format!("bad --create-topic `{t}`: partitions must be a positive number")
            })?,
        ),
        None => (t, 3),
    };
    wafka_producer::check_topic_name(name).with_context(|| format!("bad --create-topic `{t}`"))?;
    Ok((name.to_string(), partitions))
}

/// Where a command sends its records, as `wafka run` and `wafka serve` take it.
#[derive(clap::Args, Debug)]
pub struct ClusterFlags {
    /// Bootstrap brokers, host:port[,host:port] (over `bootstrap.servers`). Without either, a
    /// local broker is started.
    #[arg(short = 'b', long = "brokers")]
    brokers: Option<String>,
    /// Producer property key=value (Java client names), repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Topics to create on the local broker (only without brokers), `name[:partitions]`.
    #[arg(long = "create-topic", value_name = "NAME[:PARTITIONS]")]
    create_topics: Vec<String>,
}

impl ClusterFlags {
    /// The producer's settings (`base` properties, then `-X`) and where its brokers are,
    /// checked without starting anything.
    pub fn check<'a>(
        &self,
        client_id: &str,
        base: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(wafka_producer::ProducerConfig, Brokers)> {
        let mut config = wafka_producer::ProducerConfig::new();
        config.client_id = client_id.into();
        for (k, v) in base {
            config.set(k, v)?;
        }
        for p in &self.properties {
            config.set_pair(p).context("bad -X")?;
        }
        let brokers = Brokers::check(self.brokers.clone(), &config, &self.create_topics)?;
        Ok((config, brokers))
    }
}

/// Where a command's records go: the brokers given (`-b` or `bootstrap.servers`), or a local
/// broker to start, with the topics to create on it. Checked before anything starts.
pub enum Brokers {
    /// A cluster someone runs.
    Given(String),
    /// A local broker, started by [`Brokers::address`], and the topics to create.
    Local(Vec<(String, i32)>),
}

impl Brokers {
    /// `-b` if given, else `bootstrap.servers` if set in `config`, else a local broker;
    /// `--create-topic` only with the local one.
    pub fn check(
        given: Option<String>,
        config: &wafka_producer::ProducerConfig,
        create_topics: &[String],
    ) -> Result<Brokers> {
        let given = given.or_else(|| {
            config
                .is_explicit("bootstrap.servers")
                .then(|| config.bootstrap_servers.join(","))
        });
        match given {
            Some(b) if create_topics.is_empty() => Ok(Brokers::Given(b)),
            // wafka is a producer, not an admin client: on someone else's cluster, topics are
            // made with that cluster's own tools and policies.
            Some(_) => bail!("--create-topic only works with the local broker (no -b): create topics on your cluster with its own tools"),
            None => Ok(Brokers::Local(
                create_topics
                    .iter()
                    .map(|t| topic_spec(t))
                    .collect::<Result<Vec<_>>>()?,
            )),
        }
    }

    /// The bootstrap address, starting the local broker (and creating its topics) if that is
    /// the one.
    pub async fn address(self) -> Result<String> {
        match self {
            Brokers::Given(b) => Ok(b),
            Brokers::Local(topics) => {
                let addr = tokio::task::spawn_blocking(start).await??;
                for (name, partitions) in topics {
                    let a = addr.clone();
                    tokio::task::spawn_blocking(move || create_topic(&a, &name, partitions))
                        .await??;
                }
                say!("local broker at {addr}");
                Ok(addr)
            }
        }
    }
}
