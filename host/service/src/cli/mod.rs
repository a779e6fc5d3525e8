//! The command line: parsing, running one command, printing its outcome.

mod events;
mod policy;
mod token;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dsession::ErrorBody;
use dsession_service::ServeConfig;
use serde_json::json;

use self::events::EventsCommand;
use self::policy::PolicyCommand;
use self::token::TokenCommand;
use crate::flags::ConfigArgs;

/// Distributed session tokens on Redis, with a swappable WebAssembly policy.
#[derive(Debug, Parser)]
#[command(name = "dsession", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the token service (JSON API and forward-auth, and with
    /// --grpc-listen Envoy's gRPC ext_authz). Without a config file: memory
    /// store, built-in policy, http://127.0.0.1:7480.
    Serve(ServeArgs),
    /// Issue, check, refresh, list and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check, test and start policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read the session events (`[events] enabled`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Measure each operation beside same-run baselines (docs/PERFORMANCE.md).
    Bench(crate::bench::BenchArgs),
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `dsession serve`: a config file, overridden by `DSESSION_*` environment
/// variables, overridden by flags. The admin key comes only from the file
/// or `DSESSION_ADMIN_KEY`, so that it never shows in a process list.
#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on.
    #[arg(long, env = "DSESSION_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Also serve Envoy's gRPC ext_authz (`envoy.service.auth.v3.Authorization/Check`)
    /// on this address.
    #[arg(long, env = "DSESSION_GRPC_LISTEN")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Reload the policy when its file changes.
    #[arg(long, env = "DSESSION_WATCH_POLICY")]
    watch_policy: bool,
    /// Log format.
    #[arg(long, env = "DSESSION_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = self.config.config()?;
        if let Ok(key) = std::env::var("DSESSION_ADMIN_KEY") {
            config.admin_key = Some(key);
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(grpc_listen) = self.grpc_listen {
            config.grpc_listen = Some(grpc_listen);
        }
        config.policy.watch |= self.watch_policy;
        Ok(config)
    }
}

/// Logs go to stderr; `RUST_LOG` picks the level (default: info for the
/// service, warnings for one-off commands).
pub fn init_logging(cli: &Cli) {
    let (default_level, format) = match &cli.command {
        Command::Serve(args) => ("info", args.log_format),
        // The kit's own failures (a loader it took down) are expected.
        Command::Policy(_) => ("error", LogFormat::Text),
        _ => ("warn", LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn run_serve(args: ServeArgs) -> ExitCode {
    let outcome = match args.config() {
        Ok(config) => dsession_service::serve(config, shutdown_signal()).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// What a command produced: text for people, JSON for programs, and
/// whether the answer was "yes".
pub(crate) struct Output {
    text: String,
    json: serde_json::Value,
    success: bool,
}

impl Output {
    pub(crate) fn yes(text: impl Into<String>, json: serde_json::Value) -> Self {
        Self {
            text: text.into(),
            json,
            success: true,
        }
    }

    pub(crate) fn no(text: impl Into<String>, json: serde_json::Value) -> Self {
        Self {
            success: false,
            ..Self::yes(text, json)
        }
    }
}

fn print(output: &Output, as_json: bool) -> ExitCode {
    if as_json {
        println!("{}", output.json);
    } else {
        println!("{}", output.text);
    }
    if output.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn wants_json(command: &Command) -> bool {
    match command {
        Command::Token(command) => command.wants_json(),
        Command::Policy(command) => command.wants_json(),
        Command::Events(command) => command.wants_json(),
        Command::Bench(args) => args.json,
        Command::Serve(_) => false,
    }
}

/// An error in the HTTP API's shape.
pub(crate) fn error_json(code: &str, message: &str) -> serde_json::Value {
    json!(ErrorBody::new(code, message))
}

pub(crate) fn fail(code: &str, message: &str, as_json: bool) -> ExitCode {
    if as_json {
        println!("{}", error_json(code, message));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(2)
}

/// Runs one command: exit 0 on success, 1 for a "no" (not valid, not
/// live), 2 for an error.
pub async fn run(cli: Cli) -> ExitCode {
    let as_json = wants_json(&cli.command);
    let outcome = match cli.command {
        Command::Serve(args) => return run_serve(args).await,
        Command::Token(command) => token::run(command).await,
        Command::Policy(command) => policy::run(command).await.map(Ok),
        Command::Events(command) => return events::run(command).await,
        Command::Bench(args) => {
            return match crate::bench::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail("setup", &format!("{error:#}"), as_json),
            };
        }
    };
    match outcome {
        Ok(Ok(output)) => print(&output, as_json),
        Ok(Err(error)) => fail(error.code(), &error.to_string(), as_json),
        Err(setup) => fail("setup", &format!("{setup:#}"), as_json),
    }
}
