//! Where each delivery stands, read from `delivery_state` (`sql::ledger`:
//! its planned row in the ledger joined with the latest row of its history
//! in the attempts table), over the whole history: what rebuilding the
//! open-deliveries index (`open`) reads, and the checks of `redeliver`
//! and of claims to sweep.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::{SessionContext, col, lit};

use super::open::{Planned, Standing};
use crate::sql::{QueryError, engine};

/// A delivery that is due (`open::OpenDeliveries::due`): planned
/// `pending` (or released from `held`), and not yet attempted, reset by
/// `redeliver`, or failed with its next try due.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub delivery_id: String,
    pub run_id: String,
    pub flow: String,
    pub action: String,
    pub payload: Option<String>,
    /// Its first attempt since it was planned or reset (`None`: not tried
    /// since): where its retry period starts.
    pub first_try: Option<DateTime<Utc>>,
    /// Failed tries since then.
    pub tries: u32,
    /// The highest `attempt` of its history (0 when none).
    pub last_attempt: i64,
}

/// At most `max` due deliveries of one flow's action in a batch (its rate
/// limit leaves room for no more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub flow: String,
    pub action: String,
    pub max: usize,
}

/// An open delivery as `delivery_state` has it (what rebuilding the
/// open-deliveries index reads): planned `pending` or `held`, and now
/// `pending`, `failed` or `held`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    pub planned: Planned,
    pub standing: Standing,
    pub last_attempt: i64,
    pub tries: i64,
    /// Its first attempt since it was planned or reset (µs).
    pub first_try: Option<i64>,
}

/// Every open delivery, read from the whole ledger and attempts history.
pub async fn open(ctx: &SessionContext) -> Result<Vec<OpenRow>, QueryError> {
    let sql = "SELECT delivery_id, run_id, flow, action, payload, planned_at, planned_status,
                      status, next_attempt_at, tries, last_attempt
               FROM delivery_state
               WHERE planned_status IN ('pending', 'held') AND status IN ('pending', 'failed', 'held')";
    let batches = ctx
        .sql(sql)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = texts(batch, "delivery_id");
        let runs = texts(batch, "run_id");
        let flows = texts(batch, "flow");
        let actions = texts(batch, "action");
        let payloads = texts(batch, "payload");
        let planned_at = micros(batch, "planned_at");
        let planned_status = texts(batch, "planned_status");
        let statuses = texts(batch, "status");
        let next = micros(batch, "next_attempt_at");
        let tries = numbers(batch, "tries");
        let last = numbers(batch, "last_attempt");
        for i in 0..batch.num_rows() {
            let standing = match statuses[i].as_deref() {
                Some("pending") => Standing::Pending,
                Some("failed") => Standing::Failed { next: next[i] },
                _ => Standing::Held,
            };
            rows.push(OpenRow {
                planned: Planned {
                    delivery_id: ids[i].clone().unwrap_or_default(),
                    run_id: runs[i].clone().unwrap_or_default(),
                    flow: flows[i].clone().unwrap_or_default(),
                    action: actions[i].clone().unwrap_or_default(),
                    payload: payloads[i].clone(),
                    planned_at: planned_at[i].unwrap_or(0),
                    held: planned_status[i].as_deref() == Some("held"),
                },
                standing,
                last_attempt: last[i].unwrap_or(0),
                tries: tries[i].unwrap_or(0),
                first_try: None,
            });
        }
    }
    add_first_tries(ctx, &mut rows).await?;
    Ok(rows)
}

/// Fills in `first_try` of the rows tried since they were planned or
/// reset: the earliest attempt after the reset (`last_attempt - tries`).
async fn add_first_tries(ctx: &SessionContext, rows: &mut [OpenRow]) -> Result<(), QueryError> {
    let retried: Vec<&str> = rows
        .iter()
        .filter(|r| r.tries > 0)
        .map(|r| r.planned.delivery_id.as_str())
        .collect();
    if retried.is_empty() {
        return Ok(());
    }
    let mut tried: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for chunk in retried.chunks(LOOKUP_CHUNK) {
        let wanted = chunk.iter().map(|id| lit(*id)).collect();
        let batches = ctx
            .table("attempts")
            .await
            .and_then(|frame| {
                frame.filter(
                    col("delivery_id")
                        .in_list(wanted, false)
                        .and(col("status").not_eq(lit("pending"))),
                )
            })
            .and_then(|frame| frame.select_columns(&["delivery_id", "attempt", "attempted_at"]))
            .map_err(engine)?
            .collect()
            .await
            .map_err(engine)?;
        for batch in &batches {
            let ids = texts(batch, "delivery_id");
            let attempts = numbers(batch, "attempt");
            let at = micros(batch, "attempted_at");
            for i in 0..batch.num_rows() {
                if let (Some(id), Some(attempt), Some(at)) = (ids[i].clone(), attempts[i], at[i]) {
                    tried.entry(id).or_default().push((attempt, at));
                }
            }
        }
    }
    for row in rows.iter_mut().filter(|r| r.tries > 0) {
        let reset = row.last_attempt - row.tries;
        row.first_try = tried
            .get(&row.planned.delivery_id)
            .and_then(|history| history.iter().filter(|(a, _)| *a > reset).min())
            .map(|(_, at)| *at);
    }
    Ok(())
}

/// Delivery ids looked up per query.
const LOOKUP_CHUNK: usize = 1_000;

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
