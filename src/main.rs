//! The `tripwire` binary: parse the command line, run, report errors.

use std::process::ExitCode;

use clap::Parser;

/// Stack of each async worker: SQL planning recurses once per nesting level.
const WORKER_STACK_BYTES: usize = 512 << 20;

/// Default log filter (`RUST_LOG` overrides): tripwire's own logs from
/// `info` (what `serve` did: runs, deliveries, replays), other libraries'
/// warnings, and none of the Delta libraries' reports of conflicts and
/// missing tables that tripwire handles and reports itself. Output meant
/// for people (query results, summaries) goes to stdout, not the log.
const DEFAULT_LOG_FILTER: &str = "warn,tripwire=info,deltalake_core=off,buoyant_kernel=off";

fn main() -> ExitCode {
    let cli = tripwire::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    // On a worker thread, whose large stack lets deeply nested SQL fail
    // with an error instead of overflowing.
    let outcome = runtime.block_on(async { tokio::spawn(tripwire::cli::run(cli)).await });
    match outcome.unwrap_or_else(|e| Err(tripwire::Error::Usage(format!("internal error: {e}")))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
