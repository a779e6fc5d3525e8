//! The `dsession` command: token operations and policy checks.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging();
    cli::run(args).await
}
