//! The `wafka` command line.
//!
//! `wafka produce` sends stdin lines to a topic with wafka's own producer, like `kcat -P`.
//! `wafka run` runs a plugin over input lines; `wafka new` and `wafka build` start and build
//! plugin projects. `wafka serve` serves many tenants' plugins over
//! HTTP. Without `-b`, both start a local broker through
//! the project's `scripts/broker`.
//!
//! `--log-format text|json` (any command) says how log lines are written to stderr (see
//! `cli::init_logs`).

mod cli;
mod project;

use cli::{build, new, produce, run, serve, test};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wafka",
    version,
    about = "Let untrusted WebAssembly code publish to Apache Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one JSON object a
    /// line, tracing-subscriber's format) for log collectors; under `json`, `wafka serve`
    /// writes its own lines as JSON too.
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Send stdin lines (or the lines of FILEs) to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Run a plugin: each input line is an event for its `handle`; it publishes through wafka.
    Run(run::RunArgs),
    /// Run a plugin without a broker and print the records it would publish (JSON lines).
    Test(test::TestArgs),
    /// Serve many tenants' plugins over HTTP (config file: `[kafka]`, `[http]`, `[tenants.*]`).
    Serve(serve::ServeArgs),
    /// Start a plugin project in LANG (rust, c, zig, python, js, go) in a new directory.
    New(new::NewArgs),
    /// Build a plugin project into a component and print its path.
    Build(build::BuildArgs),
}

fn main() -> std::process::ExitCode {
    // Errors inside the host (a plugin's trap among them) must not capture Rust backtraces:
    // with RUST_BACKTRACE set that costs milliseconds per error and, once printed, a third of a
    // second and 180 MB. Panics still honour RUST_BACKTRACE. Set before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    cli::init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wafka: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Produce(args) => produce::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Test(args) => test::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::New(args) => new::run(args),
            Command::Build(args) => build::run(args),
        }
    });
    // Plugins' output still queued for the log is written before the exit (a log that takes
    // nothing in 2 s loses it).
    wafka::runtime::log_writer::flush(std::time::Duration::from_secs(2));
    // Work a command left behind (a reload still compiling when `serve` was stopped) must not
    // hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            cli::say(format_args!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
