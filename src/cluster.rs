//! `tripwire cluster scheduler` and `tripwire cluster executor`
//! (docs/reference.md "CLI"): Ballista's scheduler and executor, embedded,
//! with tripwire's functions and codecs registered (`sql::cluster`), so a
//! cluster runs every query an analyst's session can plan. Both read the
//! project's `tripwire.toml` like every command; the executors read the
//! store's Parquet files directly (its paths must resolve the same on every
//! node: a shared mount or object storage; `s3://` through `[storage]` and
//! the `AWS_*` variables, as every tripwire command reaches it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use crate::config::{Config, Scheduler};
use crate::sql::cluster::codec::LogicalCodec;
use crate::sql::cluster::{MAX_MESSAGE_BYTES, cluster_config, server_runtime, server_state};

/// How long a starting executor keeps trying to reach its scheduler.
pub const SCHEDULER_CONNECT_TIMEOUT_SECS: u16 = 60;

/// A `tripwire cluster executor`'s settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: Scheduler,
    /// Where the executor serves its results (Arrow Flight).
    pub bind: SocketAddr,
    /// Where it takes tasks from the scheduler (gRPC); default: `bind`'s port + 1.
    pub grpc_port: Option<u16>,
    /// The host the scheduler and clients reach it at; default: `bind`'s.
    pub external_host: Option<String>,
    /// Tasks it runs at once; default: the machine's cores.
    pub task_slots: Option<usize>,
    /// Where it keeps shuffle files; default: a new temporary folder.
    pub work_dir: Option<PathBuf>,
}

/// Why a cluster process stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(String);

/// Runs a scheduler on `bind` until the process is stopped.
pub async fn scheduler(config: &Config, bind: SocketAddr) -> Result<(), ClusterError> {
    announce(config, &format!("scheduler on df://{bind}"));
    let settings = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        external_host: bind.ip().to_string(),
        bind_port: bind.port(),
        grpc_server_max_decoding_message_size: MAX_MESSAGE_BYTES as u32,
        grpc_server_max_encoding_message_size: MAX_MESSAGE_BYTES as u32,
        grpc_client_max_message_size: MAX_MESSAGE_BYTES as u32,
        override_config_producer: Some(Arc::new(cluster_config)),
        override_session_builder: Some(Arc::new(server_state)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&settings)
        .await
        .map_err(|e| ClusterError(format!("cluster scheduler: {e}")))?;
    start_server(cluster, bind, Arc::new(settings))
        .await
        .map_err(|e| ClusterError(format!("cluster scheduler on {bind}: {e}")))
}

/// Runs an executor for `options.scheduler` until the process is stopped.
pub async fn executor(config: &Config, options: ExecutorOptions) -> Result<(), ClusterError> {
    let bind = options.bind;
    let grpc_port = match options.grpc_port {
        Some(port) => port,
        None => bind.port().checked_add(1).ok_or_else(|| {
            ClusterError(format!(
                "cluster executor: --bind {bind} leaves no port for --grpc-port; give one"
            ))
        })?,
    };
    let host = options
        .external_host
        .clone()
        .unwrap_or_else(|| bind.ip().to_string());
    announce(
        config,
        &format!(
            "executor {host}:{} (tasks on port {grpc_port}) for {}",
            bind.port(),
            options.scheduler.url()
        ),
    );
    let state = server_state(cluster_config())
        .map_err(|e| ClusterError(format!("cluster executor: {e}")))?;
    let work_dir = match options.work_dir {
        Some(dir) => Some(
            dir.to_str()
                .ok_or_else(|| {
                    ClusterError(format!("--work-dir {}: not a UTF-8 path", dir.display()))
                })?
                .to_string(),
        ),
        None => None,
    };
    let temp_dir = work_dir.clone();
    let runtime = move |_: &datafusion::prelude::SessionConfig| server_runtime(temp_dir.as_deref());
    let settings = ExecutorProcessConfig {
        bind_host: bind.ip().to_string(),
        external_host: Some(host),
        port: bind.port(),
        grpc_port,
        scheduler_host: options.scheduler.host.clone(),
        scheduler_port: options.scheduler.port,
        scheduler_connect_timeout_seconds: SCHEDULER_CONNECT_TIMEOUT_SECS,
        vcores: options.task_slots.unwrap_or(0),
        work_dir,
        grpc_max_decoding_message_size: MAX_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: MAX_MESSAGE_BYTES as u32,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&state))),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_runtime_producer: Some(Arc::new(runtime)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(settings))
        .await
        .map_err(|e| ClusterError(format!("cluster executor on {bind}: {e}")))
}

fn announce(config: &Config, what: &str) {
    eprintln!(
        "tripwire cluster {what} (config {}, storage {})",
        config.origin, config.storage
    );
}
