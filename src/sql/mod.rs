//! The query layer (DESIGN.md "Query layer"): one place builds the
//! DataFusion session an analyst's SQL runs in, with the workspace's tables,
//! the JSON functions, a memory cap, and read-only checks.

mod identity;
pub mod output;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::prelude::{col, lit};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use deltalake_core::DeltaTable;

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
    /// The events table at the version to read; `None` reads the latest.
    pub events: Option<&'a DeltaTable>,
}

/// Builds the session with `events`, `identities` and `quarantine` registered.
pub async fn workspace_session(spec: &SessionSpec<'_>) -> Result<SessionContext, QueryError> {
    let ctx = new_context()?;
    let events = match spec.events {
        Some(table) => Some(table.clone()),
        None => spec.store.open(spec.workspace, TableKind::Events).await?,
    };
    register_delta(&ctx, events, TableKind::Events, "events").await?;
    let quarantine = spec
        .store
        .open(spec.workspace, TableKind::Quarantine)
        .await?;
    register_delta(&ctx, quarantine, TableKind::Quarantine, "quarantine").await?;
    let ledger = spec.store.open(spec.workspace, TableKind::Ledger).await?;
    register_ledger_views(&ctx, ledger).await?;
    identity::register(&ctx, spec).await?;
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
    table: Option<DeltaTable>,
    kind: TableKind,
    name: &str,
) -> Result<(), QueryError> {
    let provider = delta_provider(ctx, table, kind).await?;
    ctx.register_table(name, provider).map_err(engine)?;
    Ok(())
}

/// A table provider over `table`, or an empty table of `kind`'s schema.
async fn delta_provider(
    ctx: &SessionContext,
    table: Option<DeltaTable>,
    kind: TableKind,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    match table {
        Some(table) => {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            table.table_provider().await.map_err(engine)
        }
        None => Ok(Arc::new(
            MemTable::try_new(kind.schema(), vec![vec![]]).map_err(engine)?,
        )),
    }
}

/// `runs` and `matches`: the ledger's two kinds of row as two tables.
async fn register_ledger_views(
    ctx: &SessionContext,
    ledger: Option<DeltaTable>,
) -> Result<(), QueryError> {
    let provider = delta_provider(ctx, ledger, TableKind::Ledger).await?;
    let views: [(&str, &str, &[&str]); 2] = [
        (
            "runs",
            "run",
            &[
                "run_id",
                "trigger",
                "from_version",
                "to_version",
                "started_at",
                "finished_at",
                "matched",
                "resolved",
                "unresolved",
                "dropped",
                "error",
            ],
        ),
        (
            "matches",
            "match",
            &[
                "run_id",
                "trigger",
                "from_version",
                "to_version",
                "finished_at",
                "match_key",
                "email",
                "user_id",
                "client_id",
                "data",
            ],
        ),
    ];
    for (name, record, columns) in views {
        let view = ctx
            .read_table(provider.clone())
            .and_then(|frame| frame.filter(col("record").eq(lit(record))))
            .and_then(|frame| frame.select_columns(columns))
            .map_err(engine)?
            .into_view();
        ctx.register_table(name, view).map_err(engine)?;
    }
    Ok(())
}

fn engine(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::Engine(e.to_string())
}

/// Runs one read-only statement and returns its rows.
pub async fn run_read_only(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    plan_read_only(ctx, sql)
        .await?
        .collect()
        .await
        .map_err(|e| QueryError::Sql(explain_error(sql, &e.to_string())))
}

/// Plans one read-only statement. DDL, DML, COPY and SET are refused before
/// anything runs.
pub async fn plan_read_only(ctx: &SessionContext, sql: &str) -> Result<DataFrame, QueryError> {
    refuse_writes(sql)?;
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    ctx.sql_with_options(sql, options)
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
