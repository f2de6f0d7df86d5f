//! `tripwire cluster …`: the parts of a Ballista cluster that runs
//! analysts' SQL (`[engine] ballista`), from the tripwire binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;

use crate::config::{Config, Scheduler};
use crate::error::Error;

/// The scheduler's default address (Ballista's port).
const DEFAULT_SCHEDULER_BIND: &str = "127.0.0.1:50050";
/// An executor's default address for its results (Arrow Flight).
const DEFAULT_EXECUTOR_BIND: &str = "127.0.0.1:50051";

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a Ballista scheduler: clients (`[engine] ballista`) send it plans.
    Scheduler {
        /// Address to listen on for clients and executors (gRPC).
        #[arg(long, default_value = DEFAULT_SCHEDULER_BIND)]
        bind: SocketAddr,
    },
    /// Run a Ballista executor that takes tasks from a scheduler.
    Executor {
        /// The scheduler, as `[engine] ballista` names it.
        #[arg(long, value_name = "df://HOST:PORT", value_parser = parse_scheduler)]
        scheduler: Scheduler,
        /// Address to serve task results on (Arrow Flight).
        #[arg(long, default_value = DEFAULT_EXECUTOR_BIND)]
        bind: SocketAddr,
        /// Port to take tasks from the scheduler on (gRPC; default: --bind's port + 1).
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Host the scheduler and clients reach this executor at (default: --bind's).
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks run at once (default: the machine's cores).
        #[arg(long)]
        task_slots: Option<usize>,
        /// Folder for shuffle files (default: a new temporary folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

fn parse_scheduler(text: &str) -> Result<Scheduler, String> {
    Scheduler::parse(text)
}

/// Runs a cluster process until it is stopped.
#[cfg(feature = "cluster")]
pub async fn run(config: &Config, command: ClusterCommand) -> Result<(), Error> {
    let result = match command {
        ClusterCommand::Scheduler { bind } => crate::cluster::scheduler(config, bind).await,
        ClusterCommand::Executor {
            scheduler,
            bind,
            grpc_port,
            external_host,
            task_slots,
            work_dir,
        } => {
            let options = crate::cluster::ExecutorOptions {
                scheduler,
                bind,
                grpc_port,
                external_host,
                task_slots,
                work_dir,
            };
            crate::cluster::executor(config, options).await
        }
    };
    result.map_err(|e| Error::Server(e.to_string()))
}

/// Without the `cluster` feature: says how to get it.
#[cfg(not(feature = "cluster"))]
pub async fn run(_config: &Config, _command: ClusterCommand) -> Result<(), Error> {
    Err(Error::Usage(
        "tripwire cluster: this tripwire was built without the `cluster` feature; \
         build it with `cargo build --release --features cluster`"
            .into(),
    ))
}
