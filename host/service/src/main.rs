//! The `dsession` command: the service, token operations, policy checks,
//! and the bench.

use std::process::ExitCode;

use clap::Parser as _;

mod bench;
mod cli;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    cli::run(args).await
}
