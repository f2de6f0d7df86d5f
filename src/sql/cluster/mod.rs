//! `[engine] ballista` (docs/architecture.md "Cluster execution"): the
//! sessions analysts' SQL runs in (trigger runs, previews, `tripwire
//! query`) are planned here and executed on a Ballista cluster. Their
//! tables reach the executors as plain Parquet file lists (Delta's own scan
//! nodes cannot be serialized; tables with deletion vectors are refused) and
//! in-memory tables as Arrow IPC (`codec`); the scheduler and executors of
//! `tripwire cluster` register the same functions ([`server_state`]).
//! Without `[engine]` every session is in-process, as [`super::new_context`]
//! builds it.

#[cfg(feature = "cluster")]
pub mod codec;

use std::sync::{Arc, OnceLock};

use datafusion::catalog::TableProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use super::{QueryError, engine, new_context};
use crate::config::{Engine, Scheduler};
use crate::store::files::live_files;

/// The cluster this process's analyst sessions execute on (`None`: in-process).
static SCHEDULER: OnceLock<Option<Scheduler>> = OnceLock::new();

/// Sets where analyst sessions execute; the first call wins (a process
/// runs one command with one config).
pub fn configure(engine: &Engine) {
    let _ = SCHEDULER.set(engine.ballista.clone());
}

/// The configured Ballista scheduler, if any.
pub fn scheduler() -> Option<&'static Scheduler> {
    SCHEDULER.get().and_then(Option::as_ref)
}

/// A session for an analyst's SQL and everything run on its tables: on the
/// cluster when `[engine] ballista` is set, else in-process.
pub fn analyst_context() -> Result<SessionContext, QueryError> {
    match scheduler() {
        None => new_context(),
        #[cfg(feature = "cluster")]
        Some(scheduler) => remote::context(scheduler),
        #[cfg(not(feature = "cluster"))]
        Some(_) => Err(QueryError::Engine(
            "[engine] ballista needs a tripwire built with the `cluster` feature".into(),
        )),
    }
}

/// `message`, led by what it means when it says the cluster could not be
/// reached (Ballista reports a bare transport error).
pub fn explain_unreachable(message: &str, scheduler: Option<&Scheduler>) -> String {
    match scheduler {
        Some(scheduler) if message.contains("tonic::transport::Error") => format!(
            "cannot reach the Ballista cluster of [engine] ballista = \"{}\" (is `tripwire \
             cluster scheduler` running there, with executors?): {message}",
            scheduler.url()
        ),
        _ => message.to_string(),
    }
}

/// `table`'s current snapshot as a plain list of its Parquet files (which
/// Ballista ships to executors), with the schema Delta reads it with.
/// Refuses tables with deletion vectors, naming the table: a plain file
/// list would read the rows they delete.
pub async fn file_list_provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>, QueryError> {
    let schema = table.table_provider().await.map_err(engine)?.schema();
    let files = live_files(table)?;
    if files.is_empty() {
        return Ok(Arc::new(EmptyTable::new(schema)));
    }
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(f.url_in(table.table_url())?).map_err(engine))
        .collect::<Result<Vec<_>, QueryError>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config).map_err(engine)?))
}

/// The largest message (a plan with its in-memory tables, a task, results)
/// a client, scheduler or executor of tripwire's cluster accepts: 256 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The session config of every cluster session, client or server:
/// tripwire's settings, Ballista's, tripwire's codec. Ballista's adaptive
/// planner is off: in Ballista 55 it re-plans a query over a `UNION`
/// (the `identities` view) without end.
#[cfg(feature = "cluster")]
pub fn cluster_config() -> datafusion::prelude::SessionConfig {
    use ballista_core::extension::SessionConfigExt;
    super::session_config()
        .upgrade_for_ballista()
        .with_ballista_logical_extension_codec(Arc::new(codec::LogicalCodec::default()))
        .with_ballista_grpc_client_max_message_size(MAX_MESSAGE_BYTES)
        .with_ballista_adaptive_query_planner(false)
}

/// The session state of a `tripwire cluster` scheduler or executor: Ballista's
/// defaults plus every function tripwire's sessions register (the JSON
/// functions), so plans that call them decode and run there.
#[cfg(feature = "cluster")]
pub fn server_state(
    config: datafusion::prelude::SessionConfig,
) -> datafusion::error::Result<datafusion::execution::SessionState> {
    let state = ballista_core::utils::default_session_builder(config)?;
    let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(server_runtime(None)?)
        .build();
    datafusion_functions_json::register_all(&mut state)?;
    Ok(state)
}

/// The runtime of a cluster process's tasks: the storage's object stores
/// (`s3://` through `[storage]`, as every tripwire process reads it), spill
/// files in `temp_dir` when given.
#[cfg(feature = "cluster")]
pub fn server_runtime(
    temp_dir: Option<&str>,
) -> datafusion::error::Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    let mut builder = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(crate::store::objects::Registry::default()));
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

#[cfg(feature = "cluster")]
mod remote {

    use ballista_core::extension::SessionStateExt;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::cluster_config;
    use crate::config::Scheduler;
    use crate::sql::{QueryError, engine, limits};

    /// A session whose queries run on `scheduler`'s cluster: tripwire's
    /// functions and codecs, Ballista's planner.
    pub(super) fn context(scheduler: &Scheduler) -> Result<SessionContext, QueryError> {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(cluster_config())
            .with_runtime_env(limits::runtime()?)
            .build();
        let url = format!("http://{}:{}", scheduler.host, scheduler.port);
        // Ballista's upgrade replaces the session's functions with its own
        // list: the JSON functions go in after it.
        let mut state = state.upgrade_for_ballista(url).map_err(engine)?;
        datafusion_functions_json::register_all(&mut state).map_err(engine)?;
        Ok(SessionContext::new_with_state(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_cluster_is_named() {
        let scheduler = Scheduler::parse("df://10.1.2.3:7000").unwrap();
        let transport = "Execution error: tonic::transport::Error(Transport, ConnectError(..))";
        let explained = explain_unreachable(transport, Some(&scheduler));
        assert!(
            explained.starts_with(
                "cannot reach the Ballista cluster of [engine] ballista = \"df://10.1.2.3:7000\""
            ),
            "{explained}"
        );
        assert!(explained.ends_with(transport), "{explained}");
        assert_eq!(explain_unreachable(transport, None), transport);
        assert_eq!(
            explain_unreachable("No field named x", Some(&scheduler)),
            "No field named x"
        );
    }
}
