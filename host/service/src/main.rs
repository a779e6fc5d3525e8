//! The `dsession` command: the service, token operations, policy checks,
//! and the bench.

use std::process::ExitCode;

use clap::Parser as _;

mod bench;
mod cli;
mod flags;

// glibc's malloc took a fifth of the samples of a check under load, and
// its arena locks contend between the runtime's threads (docs/PERFORMANCE.md).
// The bench counts its allocations per operation through it.
#[global_allocator]
static ALLOCATOR: bench::Counting<tikv_jemallocator::Jemalloc> =
    bench::Counting(tikv_jemallocator::Jemalloc);

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    cli::run(args).await
}
