//! The `logagg` binary: parse the command line, start logging, run the
//! subcommand, and turn its error into a one-line message and exit code 1.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
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
    /// Print stored events (a table on a terminal, else NDJSON), then with
    /// --follow new ones as they come.
    Events(cmd::events::EventsArgs),
    /// List the topics with their event counts (a table or JSON).
    Topics(cmd::topics::TopicsArgs),
    /// Show the server's counters and state (a table or JSON).
    Stats(cmd::stats::StatsArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            match name_variable(&error, &Cli::command()) {
                Some(message) => eprint!("{message}"),
                // Help and version on stdout, errors on stderr, coloured
                // on a terminal: clap's own rendering.
                None => {
                    let _ = error.print();
                }
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.log_format);
    // One stream and a health probe need no thread pool; with many
    // subscribers on one machine the idle worker threads add up.
    let runtime = match cli.command {
        Command::Serve(_) | Command::Publish(_) => tokio::runtime::Runtime::new(),
        Command::Subscribe(_)
        | Command::Health(_)
        | Command::Migrate(_)
        | Command::Events(_)
        | Command::Topics(_)
        | Command::Stats(_)
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
            Command::Events(args) => cmd::events::run(args).await,
            Command::Topics(args) => cmd::topics::run(args).await,
            Command::Stats(args) => cmd::stats::run(args).await,
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

/// The error for an invalid value that came from an environment variable
/// rather than the command line, rewritten to name the variable (clap names
/// only the flag, which the user never typed); `None` for any other error.
fn name_variable(error: &clap::Error, command: &clap::Command) -> Option<String> {
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let long = flag.split_whitespace().next()?.strip_prefix("--")?;
    let typed = std::env::args().any(|arg| {
        arg.strip_prefix("--")
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    if typed {
        return None;
    }
    // The flag may exist on several subcommands; the one whose variable
    // holds the rejected value is the one that was read.
    let mut commands = vec![command];
    let mut variables = Vec::new();
    while let Some(command) = commands.pop() {
        commands.extend(command.get_subcommands());
        for arg in command.get_arguments() {
            if arg.get_long() == Some(long)
                && let Some(variable) = arg.get_env()
                && std::env::var_os(variable).is_some_and(|v| v == value.as_str())
                && !variables.contains(&variable)
            {
                variables.push(variable);
            }
        }
    }
    let [variable] = variables[..] else {
        return None;
    };
    let rendered = error.render().to_string();
    Some(rendered.replacen(
        &format!("'{flag}'"),
        &format!(
            "'{flag}' (from the environment variable {})",
            variable.to_string_lossy()
        ),
        1,
    ))
}

fn init_tracing(format: LogFormat) {
    // The TLS verifier logs each certificate it refuses; the command's own
    // error says so already, with what to do.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rustls_platform_verifier=off"));
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
