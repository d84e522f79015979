//! The command line: argument parsing and the commands, each on top of the library (the wasm
//! runtime and the producer). Nothing here is needed to embed wafka.
//!
//! - [`produce`]: `wafka produce`, stdin lines to a topic (like `kcat -P`);
//! - [`run`]: `wafka run`, a plugin over input lines;
//! - [`test`]: `wafka test`, a plugin without a broker (records printed as JSON lines);
//! - [`serve`]: `wafka serve`, many tenants' plugins behind HTTP;
//! - [`new`], [`build`]: `wafka new`, `wafka build`, plugin projects (`crate::project`);
//! - `local_broker`: the local broker the commands start without `-b`;
//! - `plugin_args`: what `run` and `test` read the same way (config pairs, names, events);
//! - [`init_logs`] and [`say`]: where log lines and the commands' own lines go (`--log-format`).

/// `say!("…", args)`: [`say`] with `format!`'s arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say(format_args!($($arg)*))
    };
}

pub(crate) mod build;
pub(crate) mod local_broker;
pub(crate) mod new;
pub(crate) mod plugin_args;
pub(crate) mod produce;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod test;

// ---- Logs (`--log-format`): kept apart from the commands.

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people: tracing-subscriber's text lines; the commands' own lines as `wafka: …`.
    Text,
    /// For log collectors: one JSON object a line (tracing-subscriber's), the commands' own
    /// lines included.
    Json,
}

/// Whether the logs are JSON (set once, at start).
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The filter when `WAFKA_LOG` sets none: warnings, access lines (`wafka serve`'s, one per
/// request) and the commands' own lines when they are log events (`--log-format json`).
const DEFAULT_FILTER: &str = "warn,wafka::access=info,wafka::notice=info";

/// Installs the log subscriber: to stderr, filtered by `WAFKA_LOG` (else [`DEFAULT_FILTER`]).
pub(crate) fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAFKA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Queued for one writer thread: a stuck stderr (a full pipe) stalls no request.
        .with_writer(wafka::runtime::log_writer::Stderr);
    match format {
        LogFormat::Text => builder
            // Colors only for a person at a terminal, not in files, pipes or CI logs.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => {
            JSON.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().init()
        }
    }
}

/// One line of a command's own for the operator: `wafka: …` on stderr, or under
/// `--log-format json` a log event (target `wafka::notice`) so that every line is JSON.
pub(crate) fn say(message: std::fmt::Arguments<'_>) {
    if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(target: "wafka::notice", "{message}");
    } else {
        eprintln!("wafka: {message}");
    }
}
