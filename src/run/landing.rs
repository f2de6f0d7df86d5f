//! How a tick's runs land (docs/architecture.md "Ticks"): every run that
//! commits, with its cursor, and every failed run's record, in one ledger
//! commit. A run whose window another runner committed first is left out
//! (`AlreadyCommitted`); the others still land.

use arrow::array::RecordBatch;
use deltalake_core::DeltaTable;

use super::{RunError, RunOutcome, RunStatus};
use crate::store::StoreError;
use crate::store::commit::{Append, Committed, Plan, Writer, commit, txn};
use crate::store::table::app_progress;

/// One trigger's part of a tick.
pub enum Step {
    /// Nothing to write: the outcome as it is.
    Done(Result<RunOutcome, RunError>),
    /// A failed run: its record lands, the cursor stays.
    Failed {
        error: RunError,
        record: Vec<RecordBatch>,
    },
    /// A run that lands with its cursor (`app_id` at `version`).
    Run {
        outcome: RunOutcome,
        app_id: String,
        version: i64,
        batches: Vec<RecordBatch>,
        /// Whether the last plan included it (its window was still open).
        landed: bool,
    },
}

impl Step {
    /// The trigger's outcome once the tick has committed.
    pub fn finish(self) -> Result<RunOutcome, RunError> {
        match self {
            Step::Done(outcome) => outcome,
            Step::Failed { error, .. } => Err(error),
            Step::Run { outcome, .. } => Ok(outcome),
        }
    }
}

/// Commits the steps' rows in one ledger commit and sets each run's status.
pub async fn commit_steps(ledger: &mut DeltaTable, steps: &mut [Step]) -> Result<(), StoreError> {
    let mut writer = TickWriter { steps };
    let committed = commit(ledger, &mut writer).await?;
    for step in writer.steps.iter_mut() {
        if let Step::Run {
            outcome, landed, ..
        } = step
        {
            let empty = outcome.run.from_version == outcome.run.to_version;
            outcome.status = match (committed, *landed) {
                (Committed::Version(_), true) if empty => RunStatus::Started,
                (Committed::Version(_), true) => RunStatus::Committed,
                _ => RunStatus::AlreadyCommitted,
            };
        }
    }
    Ok(())
}

struct TickWriter<'a> {
    steps: &'a mut [Step],
}

impl Writer for TickWriter<'_> {
    type Error = StoreError;

    async fn plan(&mut self, table: &DeltaTable) -> Result<Plan, StoreError> {
        let mut append = Append::default();
        for step in self.steps.iter_mut() {
            match step {
                Step::Done(_) => {}
                Step::Failed { record, .. } => append.batches.extend(record.iter().cloned()),
                Step::Run {
                    app_id,
                    version,
                    batches,
                    landed,
                    ..
                } => {
                    *landed = app_progress(table, app_id).await? < Some(*version);
                    if *landed {
                        append.batches.extend(batches.iter().cloned());
                        append.txns.push(txn(app_id, *version));
                    }
                }
            }
        }
        match append.batches.is_empty() && append.txns.is_empty() {
            true => Ok(Plan::Nothing),
            false => Ok(Plan::Append(append)),
        }
    }
}
