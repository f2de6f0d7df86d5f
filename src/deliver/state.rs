//! Where each delivery stands, read from `delivery_state` (`sql::ledger`:
//! its planned row in the ledger joined with the latest row of its history
//! in the attempts table): the worker's "what is due" and the checks of
//! `redeliver` and of a lost commit race.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::{SessionContext, col, lit};

use crate::sql::{QueryError, engine};

/// A delivery that is due: planned `pending`, and not yet attempted, reset
/// by `redeliver`, or failed with its next try due.
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

/// Up to `limit` due deliveries, oldest planned first, at most each cap's
/// `max` of its action.
pub async fn due(
    ctx: &SessionContext,
    now: DateTime<Utc>,
    limit: usize,
    caps: &[Cap],
) -> Result<Vec<Due>, QueryError> {
    let due = format!(
        "SELECT delivery_id, run_id, flow, action, payload, tries, last_attempt, planned_at
         FROM delivery_state
         WHERE planned_status IN ('pending', 'held')
           AND (status = 'pending' OR (status = 'failed' AND next_attempt_at <= {now}))",
        now = timestamp(now),
    );
    let sql = match caps_condition(caps) {
        None => format!("{due} ORDER BY planned_at, delivery_id LIMIT {limit}"),
        Some(over) => format!(
            "SELECT * FROM (
               SELECT *, row_number() OVER (PARTITION BY flow, action
                                            ORDER BY planned_at, delivery_id) AS nth
               FROM ({due}))
             WHERE NOT ({over})
             ORDER BY planned_at, delivery_id LIMIT {limit}"
        ),
    };
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
        let flows = texts(batch, "flow");
        let actions = texts(batch, "action");
        let payloads = texts(batch, "payload");
        let tries = numbers(batch, "tries");
        let last = numbers(batch, "last_attempt");
        for i in 0..batch.num_rows() {
            rows.push(Due {
                delivery_id: ids[i].clone().unwrap_or_default(),
                run_id: runs[i].clone().unwrap_or_default(),
                flow: flows[i].clone().unwrap_or_default(),
                action: actions[i].clone().unwrap_or_default(),
                payload: payloads[i].clone(),
                first_try: None,
                tries: u32::try_from(tries[i].unwrap_or(0)).unwrap_or(0),
                last_attempt: last[i].unwrap_or(0),
            });
        }
    }
    add_first_tries(ctx, &mut rows).await?;
    Ok(rows)
}

/// The SQL condition of rows beyond a cap (`nth` counts each action's rows).
fn caps_condition(caps: &[Cap]) -> Option<String> {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let over: Vec<String> = caps
        .iter()
        .map(|c| {
            format!(
                "(flow = {} AND action = {} AND nth > {})",
                quote(&c.flow),
                quote(&c.action),
                c.max
            )
        })
        .collect();
    (!over.is_empty()).then(|| over.join(" OR "))
}

/// Fills in `first_try` of the rows tried since they were planned or
/// reset: the earliest attempt after the reset (`last_attempt - tries`).
async fn add_first_tries(ctx: &SessionContext, rows: &mut [Due]) -> Result<(), QueryError> {
    let retried: Vec<&str> = rows
        .iter()
        .filter(|d| d.tries > 0)
        .map(|d| d.delivery_id.as_str())
        .collect();
    if retried.is_empty() {
        return Ok(());
    }
    let wanted = retried.iter().map(|id| lit(*id)).collect();
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
    let mut tried: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
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
    for row in rows.iter_mut().filter(|d| d.tries > 0) {
        let reset = row.last_attempt - i64::from(row.tries);
        row.first_try = tried
            .get(&row.delivery_id)
            .and_then(|history| history.iter().filter(|(a, _)| *a > reset).min())
            .and_then(|(_, at)| DateTime::from_timestamp_micros(*at));
    }
    Ok(())
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
