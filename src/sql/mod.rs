//! The query layer (DESIGN.md "Query layer"): one place builds the
//! DataFusion session an analyst's SQL runs in, with the workspace's tables,
//! the JSON functions, a memory cap, and read-only checks.

pub mod output;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::store::{Store, StoreError, TableKind};

/// Memory an analyst's query may hold before it spills or fails.
pub const QUERY_MEMORY_BYTES: usize = 4 << 30;

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The analyst's SQL is wrong or not allowed (the user's to fix).
    #[error("{0}")]
    Sql(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("query engine: {0}")]
    Engine(String),
}

/// What a session's tables see: a workspace at a moment.
#[derive(Debug, Clone)]
pub struct SessionSpec<'a> {
    pub store: &'a Store,
    pub workspace: &'a str,
    /// The run's clock: `identities` keeps identify calls younger than `identity_ttl` at `now`.
    pub now: DateTime<Utc>,
    pub identity_ttl: Duration,
}

/// Builds the session with `events`, `identities` and `quarantine` registered.
pub async fn workspace_session(spec: &SessionSpec<'_>) -> Result<SessionContext, QueryError> {
    let ctx = new_context()?;
    register_delta(&ctx, spec, TableKind::Events, "events").await?;
    register_delta(&ctx, spec, TableKind::Quarantine, "quarantine").await?;
    register_identities(&ctx, spec).await?;
    Ok(ctx)
}

/// A session with the JSON functions, filter pushdown and a spilling memory pool.
pub fn new_context() -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(QUERY_MEMORY_BYTES)))
        .build_arc()
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    datafusion_functions_json::register_all(&mut ctx)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    Ok(ctx)
}

/// Registers a workspace table under `name`; an empty one if never written.
async fn register_delta(
    ctx: &SessionContext,
    spec: &SessionSpec<'_>,
    kind: TableKind,
    name: &str,
) -> Result<(), QueryError> {
    let engine = |e: datafusion::error::DataFusionError| QueryError::Engine(e.to_string());
    match spec.store.open(spec.workspace, kind).await? {
        Some(table) => {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            let provider = table.table_provider().await.map_err(engine)?;
            ctx.register_table(name, provider).map_err(engine)?;
        }
        None => {
            let empty = MemTable::try_new(kind.schema(), vec![vec![]]).map_err(engine)?;
            ctx.register_table(name, Arc::new(empty)).map_err(engine)?;
        }
    }
    Ok(())
}

/// `identities`: the latest identify per `client_id`, younger than the TTL at `now`.
async fn register_identities(
    ctx: &SessionContext,
    spec: &SessionSpec<'_>,
) -> Result<(), QueryError> {
    let ttl = chrono::Duration::from_std(spec.identity_ttl).unwrap_or(chrono::Duration::MAX);
    let cutoff = spec
        .now
        .checked_sub_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let sql = format!(
        "SELECT client_id, user_id, email, traits, identified_at FROM (
           SELECT client_id, user_id, email, traits, sent_at AS identified_at,
                  row_number() OVER (PARTITION BY client_id ORDER BY sent_at DESC, seq DESC) AS latest
           FROM events
           WHERE type = 'identify' AND client_id IS NOT NULL
             AND sent_at > TIMESTAMP '{}' AND sent_at <= TIMESTAMP '{}'
         ) WHERE latest = 1",
        cutoff.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        spec.now.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
    );
    let view = ctx
        .sql(&sql)
        .await
        .map_err(|e| QueryError::Engine(e.to_string()))?
        .into_view();
    ctx.register_table("identities", view)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    Ok(())
}

/// Runs one read-only statement and returns its rows. DDL, DML, COPY and
/// SET are refused before anything runs.
pub async fn run_read_only(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    refuse_writes(sql)?;
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| QueryError::Sql(explain_error(sql, &e.to_string())))?;
    frame
        .collect()
        .await
        .map_err(|e| QueryError::Sql(explain_error(sql, &e.to_string())))
}

/// Checks the statement kind up front, so the refusal names what was refused.
fn refuse_writes(sql: &str) -> Result<(), QueryError> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| QueryError::Sql(format!("SQL syntax error: {e}")))?;
    if statements.len() != 1 {
        return Err(QueryError::Sql(format!(
            "give exactly one SQL statement (found {})",
            statements.len()
        )));
    }
    let refused = match &statements[0] {
        Statement::Query(_) | Statement::Explain { .. } => return Ok(()),
        Statement::Copy { .. } | Statement::CopyIntoSnowflake { .. } => "COPY",
        Statement::Set(_) => "SET",
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. } => "data changes (INSERT, UPDATE, DELETE, MERGE)",
        _ => "DDL and other statements",
    };
    Err(QueryError::Sql(format!(
        "{refused} refused: tripwire's SQL is read-only (SELECT, WITH, EXPLAIN)"
    )))
}

/// Adds a hint an analyst understands to errors the JSON operators cause.
fn explain_error(sql: &str, message: &str) -> String {
    let json_operator = sql.contains("->>") || sql.contains("->");
    let type_trouble = [
        "coerce",
        "Cannot infer",
        "No function matches",
        "type",
        "Type",
    ]
    .iter()
    .any(|t| message.contains(t));
    if json_operator && type_trouble {
        format!(
            "{message}\nhint: `->>` binds more loosely than comparisons and arithmetic: write \
             (properties->>'x') = 'v', and use json_get_float(properties, 'x') or \
             json_get_int(...) for numbers"
        )
    } else {
        message.to_string()
    }
}
