//! The `weights-watcher` binary: parses the command line, loads the configuration, sets up
//! logging and calls the library. Exit codes: 0 success, 1 runtime failure, 2 bad usage or
//! invalid configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weights_watcher::app::{App, AppOptions};
use weights_watcher::config::Settings;
use weights_watcher::events::EventSpec;
use weights_watcher::mirror::RetryPolicy;
use weights_watcher::presign::Presigner;
use weights_watcher::store::Store;
use weights_watcher::types::TaskId;
use weights_watcher::{check, telemetry};

/// Indexes WeightsSubmitted events from a Hedera mirror node and serves presigned download URLs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "WEIGHTS_WATCHER_CONFIG", default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate, then poll + presign + serve HTTP until SIGTERM/SIGINT.
    Run {
        /// Catch up to the mirror node's head, print one summary line and exit (no HTTP).
        #[arg(long)]
        once: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and reach the database, the mirror node and the bucket.
    Check,
    /// Print a fresh presigned GET URL for an object key (does not touch the cache).
    Presign {
        /// The object key (the weights hash).
        hash: String,
    },
    /// Print a task's weights as JSON, from the database.
    Task {
        /// The task id (decimal).
        id: String,
    },
}

/// A failure with its exit code.
enum Failure {
    /// Exit 2: the operator must fix the configuration or the command line.
    Usage(String),
    /// Exit 1: something failed at run time.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Runtime(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The daemon reports through its log (journald); the one-shot commands talk to a person.
    let daemon = matches!(cli.command, Command::Run { .. });
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) if daemon => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> Result<(Settings, EventSpec), Failure> {
    let settings = Settings::load(path).map_err(|e| Failure::Usage(e.to_string()))?;
    let spec = EventSpec::new(&settings.event).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    Ok((settings, spec))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let (settings, spec) = load(&cli.config)?;
    telemetry::init(settings.log.format);
    match cli.command {
        Command::Run { once: false } => {
            let cancel = shutdown_on_signal();
            let app = App::build(settings, spec, AppOptions::default()).await?;
            let listener = app.bind().await?;
            app.run_until_stopped(listener, cancel).await?;
        }
        Command::Run { once: true } => {
            let cancel = shutdown_on_signal();
            let options = AppOptions {
                retry: RetryPolicy {
                    max_attempts: Some(10),
                    ..RetryPolicy::default()
                },
                ..AppOptions::default()
            };
            let app = App::build(settings, spec, options).await?;
            let done = app.run_once(&cancel).await?;
            let cursor = done.cursor.map_or_else(|| "none".to_owned(), |c| c.to_string());
            println!(
                "indexed {} submissions, rejected {} logs, cursor {cursor}",
                done.indexed, done.rejected
            );
        }
        Command::Migrate => {
            let store = Store::open(&settings.database.path).await?;
            store.migrate().await?;
            store.close().await;
            eprintln!("migrations applied to {}", settings.database.path.display());
        }
        Command::Check => {
            let lines = check::run(&settings, &spec).await;
            for line in &lines {
                println!("{line}");
            }
            if lines.iter().any(|l| !l.ok) {
                return Err(Failure::Runtime(anyhow::anyhow!("some checks failed")));
            }
        }
        Command::Presign { hash } => {
            validate_key(&hash).map_err(Failure::Usage)?;
            let presigner = Presigner::from_settings(&settings.storage).await;
            let credentials = presigner.credentials().await?;
            let url = presigner.presign_at(&hash, &credentials, std::time::SystemTime::now())?;
            println!("{}", url.url);
        }
        Command::Task { id } => {
            let id = TaskId::parse(&id).map_err(|e| Failure::Usage(format!("task {id:?}: {e}")))?;
            let store = Store::open(&settings.database.path).await?;
            store.migrate().await?;
            let rows = store.task_weights(id.as_str()).await?;
            store.close().await;
            if rows.is_empty() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "no weights submitted for task {id} in {}",
                    settings.database.path.display()
                )));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&weights_watcher::http::task_json(id.as_str(), rows))?
            );
        }
    }
    Ok(())
}

/// An operator's key: `/`-separated segments, each following the hash rule.
fn validate_key(key: &str) -> Result<(), String> {
    for segment in key.split('/') {
        weights_watcher::types::WeightsHash::parse(segment).map_err(|e| {
            format!("{key:?} is not a well-formed object key ({e}); segments are [A-Za-z0-9._-], separated by '/'")
        })?;
    }
    Ok(())
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; stopping"),
        }
        token.cancel();
    });
    cancel
}
