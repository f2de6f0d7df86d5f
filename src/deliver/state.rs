//! Where each delivery stands: its planned row in the ledger joined with the
//! latest row of its history in the attempts table. The analyst's
//! `deliveries` view (SPEC §5), the worker's "what is due" and the checks
//! of `redeliver` and of a lost commit race all read this one definition.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake_core::DeltaTable;

use crate::sql::{QueryError, delta_provider, new_context};
use crate::store::TableKind;

/// The internal name the raw ledger is registered under while views are built.
const LEDGER_ROWS: &str = "tripwire_ledger_rows";

/// Per delivery, from its history: real attempts, the latest row's status,
/// the latest real attempt's error, when it was delivered, and where its
/// retry schedule restarts (`redeliver` resets).
const TRIES_SQL: &str = "
  SELECT delivery_id,
         count(*) FILTER (WHERE status <> 'pending') AS attempts,
         max(attempt) AS last_attempt,
         last_value(status ORDER BY attempt) AS status,
         last_value(next_attempt_at ORDER BY attempt) AS next_attempt_at,
         last_value(error ORDER BY attempt) FILTER (WHERE status <> 'pending') AS last_error,
         max(attempted_at) FILTER (WHERE status = 'delivered') AS delivered_at,
         max(attempt) FILTER (WHERE status = 'pending') AS reset_attempt,
         last_value(attempted_at ORDER BY attempt) FILTER (WHERE status = 'pending') AS reset_at
  FROM attempts GROUP BY delivery_id";

/// Every planned delivery with its current state; the worker's columns
/// (`planned_status`, `retry_since`, `tries`, `last_attempt`) included.
fn state_sql() -> String {
    format!(
        "WITH tries AS ({TRIES_SQL})
         SELECT d.delivery_id, d.run_id, d.trigger, d.flow, d.action, d.email, d.user_id,
                d.client_id, d.variant, d.branch,
                coalesce(t.status, d.status) AS status,
                coalesce(t.attempts, 0) AS attempts,
                t.last_error, d.data, d.finished_at AS planned_at, t.delivered_at,
                t.next_attempt_at, d.reason, d.payload,
                d.status AS planned_status,
                coalesce(t.reset_at, d.finished_at) AS retry_since,
                coalesce(t.last_attempt, 0) - coalesce(t.reset_attempt, 0) AS tries,
                coalesce(t.last_attempt, 0) AS last_attempt
         FROM {LEDGER_ROWS} d LEFT JOIN tries t ON d.delivery_id = t.delivery_id
         WHERE d.record = 'delivery'"
    )
}

/// The columns of the `deliveries` view, in order.
pub const DELIVERIES_COLUMNS: &[&str] = &[
    "delivery_id",
    "run_id",
    "trigger",
    "flow",
    "action",
    "email",
    "user_id",
    "client_id",
    "variant",
    "branch",
    "status",
    "attempts",
    "last_error",
    "data",
    "planned_at",
    "delivered_at",
    "next_attempt_at",
    "reason",
    "payload",
];

/// Registers `attempts` (the history) and `deliveries` (SPEC §5) on `ctx`.
pub async fn register_views(
    ctx: &SessionContext,
    ledger: Arc<dyn TableProvider>,
    attempts: Arc<dyn TableProvider>,
) -> Result<(), QueryError> {
    let state = state_frame(ctx, ledger, attempts).await?;
    let view = state
        .select_columns(DELIVERIES_COLUMNS)
        .map_err(engine)?
        .into_view();
    ctx.register_table("deliveries", view).map_err(engine)?;
    Ok(())
}

/// Registers `attempts` and returns the state of every delivery as a frame
/// (the raw ledger is not left registered: analysts read it through views).
async fn state_frame(
    ctx: &SessionContext,
    ledger: Arc<dyn TableProvider>,
    attempts: Arc<dyn TableProvider>,
) -> Result<datafusion::prelude::DataFrame, QueryError> {
    ctx.register_table("attempts", attempts).map_err(engine)?;
    ctx.register_table(LEDGER_ROWS, ledger).map_err(engine)?;
    let frame = ctx.sql(&state_sql()).await.map_err(engine);
    ctx.deregister_table(LEDGER_ROWS).map_err(engine)?;
    frame
}

/// A session whose `delivery_state` is read at these table versions.
pub async fn state_context(
    ledger: &DeltaTable,
    attempts: &DeltaTable,
) -> Result<SessionContext, QueryError> {
    let ctx = new_context()?;
    let ledger = delta_provider(&ctx, Some(ledger.clone()), TableKind::Ledger).await?;
    let attempts = delta_provider(&ctx, Some(attempts.clone()), TableKind::Attempts).await?;
    let state = state_frame(&ctx, ledger, attempts).await?.into_view();
    ctx.register_table("delivery_state", state)
        .map_err(engine)?;
    Ok(ctx)
}

/// A delivery that is due: planned `pending`, and not yet attempted, reset
/// by `redeliver`, or failed with its next try due.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub delivery_id: String,
    pub run_id: String,
    pub payload: Option<String>,
    /// When its retry period started (planned, or reset).
    pub retry_since: DateTime<Utc>,
    /// Failed tries since then.
    pub tries: u32,
    /// The highest `attempt` of its history (0 when none).
    pub last_attempt: i64,
}

/// Up to `limit` due deliveries, oldest planned first.
pub async fn due(
    ctx: &SessionContext,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Due>, QueryError> {
    let sql = format!(
        "SELECT delivery_id, run_id, payload, retry_since, tries, last_attempt
         FROM delivery_state
         WHERE planned_status = 'pending'
           AND (status = 'pending' OR (status = 'failed' AND next_attempt_at <= {now}))
         ORDER BY planned_at, delivery_id
         LIMIT {limit}",
        now = timestamp(now),
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = texts(batch, "delivery_id");
        let runs = texts(batch, "run_id");
        let payloads = texts(batch, "payload");
        let since = micros(batch, "retry_since");
        let tries = numbers(batch, "tries");
        let last = numbers(batch, "last_attempt");
        for i in 0..batch.num_rows() {
            rows.push(Due {
                delivery_id: ids[i].clone().unwrap_or_default(),
                run_id: runs[i].clone().unwrap_or_default(),
                payload: payloads[i].clone(),
                retry_since: DateTime::from_timestamp_micros(since[i].unwrap_or(0))
                    .unwrap_or_default(),
                tries: u32::try_from(tries[i].unwrap_or(0)).unwrap_or(0),
                last_attempt: last[i].unwrap_or(0),
            });
        }
    }
    Ok(rows)
}

/// A delivery's current status and the highest `attempt` of its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub status: String,
    pub last_attempt: i64,
}

/// The current state of each of `ids` that is planned in the ledger.
pub async fn current(
    ctx: &SessionContext,
    ids: &[&str],
) -> Result<HashMap<String, Current>, QueryError> {
    let wanted = ids.iter().map(|id| lit(*id)).collect();
    let batches = ctx
        .table("delivery_state")
        .await
        .and_then(|frame| frame.filter(col("delivery_id").in_list(wanted, false)))
        .and_then(|frame| frame.select_columns(&["delivery_id", "status", "last_attempt"]))
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut found = HashMap::new();
    for batch in &batches {
        let ids = texts(batch, "delivery_id");
        let statuses = texts(batch, "status");
        let last = numbers(batch, "last_attempt");
        for i in 0..batch.num_rows() {
            if let Some(id) = ids[i].clone() {
                let current = Current {
                    status: statuses[i].clone().unwrap_or_default(),
                    last_attempt: last[i].unwrap_or(0),
                };
                found.insert(id, current);
            }
        }
    }
    Ok(found)
}

/// A SQL timestamp literal of `at`.
fn timestamp(at: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Arc<dyn Array> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("the state query selects {name}"));
    arrow::compute::cast(column, to).unwrap_or_else(|e| panic!("{name} is {to}: {e}"))
}

fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = column(batch, name, &DataType::Utf8);
    column
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn numbers(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = column(batch, name, &DataType::Int64);
    column
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .collect()
}

/// A timestamp column as microseconds since the epoch.
fn micros(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = column(
        batch,
        name,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    );
    column
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
        .iter()
        .collect()
}

fn engine(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::Engine(e.to_string())
}
