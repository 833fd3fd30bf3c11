//! The `logagg` binary: parse the command line, start logging, run the
//! subcommand, and turn its error into a one-line message and exit code 1.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use logagg::cmd;
use logagg::config::ServeConfig;
use tracing_subscriber::EnvFilter;

/// A pub-sub log aggregator with an idempotent consumer: publishers retry,
/// logagg stores every (topic, event_id) exactly once, durably.
#[derive(Debug, Parser)]
#[command(name = "logagg", version)]
struct Cli {
    /// Log line format (on stderr). Levels come from RUST_LOG (default: info).
    #[arg(long, global = true, env = "LOGAGG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the aggregator: HTTP API, ingest consumer and store.
    Serve(ServeConfig),
    /// Publish NDJSON events from files or stdin, or a synthetic load, with
    /// retries; print a summary.
    Publish(cmd::publish::PublishArgs),
    /// Follow a topic pattern live, printing events as NDJSON on stdout.
    Subscribe(cmd::subscribe::SubscribeArgs),
    /// Exit 0 when a server answers /health with 200 (for health checks).
    Health(cmd::health::HealthArgs),
    /// Convert a data directory from an older build to this build's store
    /// schema (with the server stopped).
    Migrate(cmd::migrate::MigrateArgs),
    /// Copy the embedded store into a new directory while the server runs
    /// (a consistent snapshot that `serve --data-dir DEST` starts from).
    Backup(cmd::backup::BackupArgs),
    /// Write stored events as NDJSON on stdout, which `logagg publish`
    /// re-imports (idempotently: a second import stores nothing new).
    Export(cmd::export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // One stream and a health probe need no thread pool; with many
    // subscribers on one machine the idle worker threads add up.
    let runtime = match cli.command {
        Command::Serve(_) | Command::Publish(_) => tokio::runtime::Runtime::new(),
        Command::Subscribe(_)
        | Command::Health(_)
        | Command::Migrate(_)
        | Command::Backup(_)
        | Command::Export(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => cmd::serve::run(config).await,
            Command::Publish(args) => cmd::publish::run(args).await,
            Command::Subscribe(args) => cmd::subscribe::run(args).await,
            Command::Health(args) => cmd::health::run(args).await,
            Command::Migrate(args) => cmd::migrate::run(args).await,
            Command::Backup(args) => cmd::backup::run(args).await,
            Command::Export(args) => cmd::export::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: in `docker logs` or a file, escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
