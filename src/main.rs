//! The `tripwire` binary: parse the command line, run, report errors.

use std::process::ExitCode;

use clap::Parser;

/// Default log filter (`TRIPWIRE_LOG` overrides): warnings, without the Delta
/// libraries' own reports of conflicts and missing tables that tripwire
/// handles and reports itself.
const QUIET_LIBRARIES: &str = "warn,deltalake_core=off,buoyant_kernel=off";

fn main() -> ExitCode {
    let cli = tripwire::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIPWIRE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(QUIET_LIBRARIES)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(tripwire::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
