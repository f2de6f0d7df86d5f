//! What an operator does with the deliveries a run held over a flow's
//! `max_deliveries_per_run` (`tripwire release RUN_ID` / `discard RUN_ID`):
//! each gets a row in its attempts history, `pending` (due at once, its
//! retry period starting at its next attempt) or `discarded` (never
//! sent). A held run never blocks the trigger's next runs: it is committed
//! like any other.

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use super::DeliverError;
use crate::sql::ledger::state_context;
use crate::sql::{QueryError, engine};
use crate::store::commit::{Append, Plan, Writer, commit};
use crate::store::ledger::attempts::{AttemptRecord, Status, attempts_batch};
use crate::store::{Store, TableKind};

/// Release or discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send them: they become due now.
    Release,
    /// Never send them.
    Discard,
}

impl Decision {
    fn status(self) -> Status {
        match self {
            Decision::Release => Status::Pending,
            Decision::Discard => Status::Discarded,
        }
    }
}

/// Releases or discards the still-held deliveries of `run_id` (of one flow
/// when given); returns how many.
pub async fn decide_held(
    store: &Store,
    workspace: &str,
    run_id: &str,
    flow: Option<&str>,
    decision: Decision,
    now: DateTime<Utc>,
) -> Result<usize, DeliverError> {
    let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
        return Err(DeliverError::Redeliver(format!(
            "workspace {workspace:?} has no runs yet"
        )));
    };
    let mut attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
    let mut writer = HeldDecision {
        ledger: &ledger,
        run_id,
        flow,
        decision,
        now,
        count: 0,
    };
    commit(&mut attempts, &mut writer).await?;
    Ok(writer.count)
}

struct HeldDecision<'a> {
    ledger: &'a DeltaTable,
    run_id: &'a str,
    flow: Option<&'a str>,
    decision: Decision,
    now: DateTime<Utc>,
    count: usize,
}

impl Writer for HeldDecision<'_> {
    type Error = DeliverError;

    async fn plan(&mut self, attempts: &DeltaTable) -> Result<Plan, DeliverError> {
        let ctx = state_context(self.ledger, attempts).await?;
        let held = still_held(&ctx, self.run_id, self.flow).await?;
        if held.is_empty() {
            let of_flow = self
                .flow
                .map(|f| format!(" of flow {f:?}"))
                .unwrap_or_default();
            return Err(DeliverError::Redeliver(format!(
                "run {}{of_flow} has no held deliveries (see `tripwire deliveries`: \
                 status held)",
                self.run_id
            )));
        }
        let at = self.now.timestamp_micros();
        let rows: Vec<AttemptRecord> = held
            .into_iter()
            .map(|(delivery_id, last_attempt)| AttemptRecord {
                delivery_id,
                attempt: last_attempt + 1,
                status: self.decision.status(),
                http_status: None,
                error: None,
                attempted_at: at,
                next_attempt_at: (self.decision == Decision::Release).then_some(at),
            })
            .collect();
        self.count = rows.len();
        Ok(Plan::Append(Append {
            batches: vec![attempts_batch(&rows)],
            txns: Vec::new(),
        }))
    }
}

/// The run's deliveries still held: (delivery id, last attempt number).
async fn still_held(
    ctx: &SessionContext,
    run_id: &str,
    flow: Option<&str>,
) -> Result<Vec<(String, i64)>, QueryError> {
    let quote = |t: &str| format!("'{}'", t.replace('\'', "''"));
    let of_flow = flow
        .map(|f| format!("AND flow = {}", quote(f)))
        .unwrap_or_default();
    let sql = format!(
        "SELECT delivery_id, last_attempt FROM delivery_state
         WHERE run_id = {} {of_flow} AND status = 'held' ORDER BY delivery_id",
        quote(run_id)
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut held = Vec::new();
    for batch in &batches {
        let ids = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| QueryError::Engine(e.to_string()))?;
        let last = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Int64)
            .map_err(|e| QueryError::Engine(e.to_string()))?;
        use arrow::array::AsArray;
        let (ids, last) = (
            ids.as_string::<i32>(),
            last.as_primitive::<arrow::datatypes::Int64Type>(),
        );
        for i in 0..batch.num_rows() {
            held.push((ids.value(i).to_string(), last.value(i)));
        }
    }
    Ok(held)
}
