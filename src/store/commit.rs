//! The one commit path (docs/architecture.md "Commits"): every writer of a
//! table (ingest's flusher, import, a trigger run, the delivery worker,
//! redeliver, emitted events) appends through [`commit`].
//!
//! A writer is asked what to append given the table as it is now
//! ([`Writer::plan`]); the rows are written as Parquet and committed in one
//! Delta commit with the writer's application transactions, with Delta's
//! own retries off. When another writer committed first, the table is
//! refreshed and the writer asked again, so every decision it makes (has
//! my segment been committed? which deliveries are still due?) is made on
//! the version its commit lands on. A plan of [`Plan::Nothing`] ends it.
//!
//! Rows of a table with a `commit_version` column (the events) are stamped
//! with the version their commit creates; a commit that loses the race is
//! planned and stamped again for the next version, so a stamp is always the
//! version that added the row (docs/architecture.md "Windows").

use std::collections::HashMap;
use std::future::Future;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableError};

use super::StoreError;
use super::layout::{ORDER_AS_ONE_BYTES, in_file_order_within};
use super::table::{app_progress, commit_properties, load_committed, refresh, writer_properties};
use crate::event::batch::COMMIT_VERSION;

/// How often a writer that keeps losing races is asked again before the
/// commit fails (each loss means another writer made progress).
pub const COMMIT_TRIES: usize = 25;

/// Rows to append in one commit, with the application transactions
/// (`txn`: app id and version) that record what they are.
#[derive(Debug, Default, Clone)]
pub struct Append {
    pub batches: Vec<RecordBatch>,
    pub txns: Vec<Transaction>,
}

impl Append {
    /// `batches` recorded as `app_id`'s progress `version`.
    pub fn recorded(batches: Vec<RecordBatch>, app_id: &str, version: i64) -> Append {
        Append {
            batches,
            txns: vec![txn(app_id, version)],
        }
    }
}

/// An application transaction stamped with the time it is written, so a
/// table's `delta.setTransactionRetentionDuration` can expire it
/// (docs/architecture.md "Table maintenance").
pub fn txn(app_id: &str, version: i64) -> Transaction {
    Transaction::new_with_last_update(app_id, version, Some(chrono::Utc::now().timestamp_millis()))
}

/// What a writer wants appended to the table as it is now.
#[derive(Debug)]
pub enum Plan {
    Append(Append),
    /// The table already holds it (another writer committed it first), or
    /// there is nothing to write.
    Nothing,
}

/// What [`commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The rows were committed as this table version.
    Version(i64),
    /// The writer's last plan was [`Plan::Nothing`].
    Nothing,
}

/// A writer of one table: decides what to append given the table as it is.
pub trait Writer {
    type Error: From<StoreError>;

    /// Called before the first try and again, on the refreshed table, after
    /// each race lost to another writer.
    fn plan(
        &mut self,
        table: &DeltaTable,
    ) -> impl Future<Output = Result<Plan, Self::Error>> + Send;
}

/// Commits what `writer` plans, asking again after each lost race. The
/// table handle is left at the committed (or latest seen) version.
pub async fn commit<W: Writer>(
    table: &mut DeltaTable,
    writer: &mut W,
) -> Result<Committed, W::Error> {
    for _ in 0..COMMIT_TRIES {
        let Plan::Append(append) = writer.plan(table).await? else {
            return Ok(Committed::Nothing);
        };
        let read = table.version();
        match append_once(table, append).await {
            Ok(version) => return Ok(Committed::Version(version)),
            Err(e) => {
                refresh(table).await?;
                if table.version() == read {
                    // Nobody else committed: a real failure, not a race.
                    return Err(e.into());
                }
            }
        }
    }
    Err(StoreError::delta(
        table.table_url(),
        format!("other writers kept committing first ({COMMIT_TRIES} tries)"),
    )
    .into())
}

/// Appends `batches` once per `(app_id, version)`: nothing when the table
/// already records that version (or a later one) for `app_id`.
pub struct Once {
    pub app_id: String,
    pub version: i64,
    pub batches: Vec<RecordBatch>,
}

impl Writer for Once {
    type Error = StoreError;

    async fn plan(&mut self, table: &DeltaTable) -> Result<Plan, StoreError> {
        if app_progress(table, &self.app_id).await? >= Some(self.version) {
            return Ok(Plan::Nothing);
        }
        Ok(Plan::Append(Append::recorded(
            self.batches.clone(),
            &self.app_id,
            self.version,
        )))
    }
}

/// Appends `batches` with no application transaction (a record that may
/// land twice harmlessly, like a failed run's error).
pub struct Always(pub Vec<RecordBatch>);

impl Writer for Always {
    type Error = StoreError;

    async fn plan(&mut self, _: &DeltaTable) -> Result<Plan, StoreError> {
        Ok(Plan::Append(Append {
            batches: self.0.clone(),
            txns: Vec::new(),
        }))
    }
}

/// `batch` with its `commit_version` column (if it has one) set to `version`.
pub fn stamp(batch: RecordBatch, version: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    let Some(index) = batch.schema().index_of(COMMIT_VERSION).ok() else {
        return Ok(batch);
    };
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(Int64Array::from_value(version, batch.num_rows()));
    RecordBatch::try_new(batch.schema(), columns)
}

/// `batches` stamped with `version` and, when they are events, in the
/// events' file order (`store::layout`): as one batch, or each batch on
/// its own when together they are over `as_one_bytes`.
fn in_file_order_stamped(
    batches: Vec<RecordBatch>,
    version: i64,
    as_one_bytes: usize,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let stamped = batches
        .into_iter()
        .map(|batch| stamp(batch, version))
        .collect::<Result<Vec<_>, _>>()?;
    in_file_order_within(&stamped, as_one_bytes)
}

/// One try: write the Parquet files, then commit them with the txns at the
/// version after the handle's, failing (not retrying) if that is taken.
async fn append_once(table: &mut DeltaTable, append: Append) -> Result<i64, StoreError> {
    let url = table.table_url().clone();
    let delta = |e: DeltaTableError| StoreError::delta(&url, e);
    let next_version = table.version().map_or(0, |v| v as i64 + 1);
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(delta)?
        .with_writer_properties(writer_properties());
    for batch in in_file_order_stamped(append.batches, next_version, ORDER_AS_ONE_BYTES)
        .map_err(|e| StoreError::delta(&url, e))?
    {
        writer.write(batch).await.map_err(delta)?;
    }
    let adds = writer.flush().await.map_err(delta)?;
    let properties = commit_properties().with_application_transactions(append.txns);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let committed = CommitBuilder::from(properties)
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .with_app_metadata(HashMap::new())
        .build(
            Some(table.snapshot().map_err(delta)?),
            table.log_store(),
            operation,
        )
        .await
        .map_err(delta)?;
    Ok(load_committed(table, committed))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn events(names: &[&str], first_seq: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("event_name", DataType::Utf8, true),
            Field::new(COMMIT_VERSION, DataType::Int64, true),
        ]));
        let rows = names.len() as i64;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(first_seq..first_seq + rows)),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::new_null(names.len())),
            ],
        )
        .unwrap()
    }

    /// Each batch's (name, seq, stamp) rows.
    fn rows(batches: &[RecordBatch]) -> Vec<Vec<(String, i64, i64)>> {
        batches
            .iter()
            .map(|b| {
                let names = b.column(1).as_string::<i32>();
                let seq = b.column(0).as_primitive::<Int64Type>();
                let stamp = b.column(2).as_primitive::<Int64Type>();
                (0..b.num_rows())
                    .map(|i| (names.value(i).to_string(), seq.value(i), stamp.value(i)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn an_append_is_stamped_and_ordered_as_one_batch_unless_it_is_too_big() {
        let batches = || vec![events(&["b", "a", "b"], 0), events(&["a", "c"], 3)];
        let row = |n: &str, s: i64| (n.to_string(), s, 7);
        let one = in_file_order_stamped(batches(), 7, usize::MAX).unwrap();
        assert_eq!(
            rows(&one),
            [vec![
                row("a", 1),
                row("a", 3),
                row("b", 0),
                row("b", 2),
                row("c", 4)
            ]]
        );
        // Over the bound, each batch is ordered on its own (no batch grows).
        let apart = in_file_order_stamped(batches(), 7, 0).unwrap();
        assert_eq!(
            rows(&apart),
            [
                vec![row("a", 1), row("b", 0), row("b", 2)],
                vec![row("a", 3), row("c", 4)]
            ]
        );
        assert!(apart.iter().all(|b| b.column(2).null_count() == 0));
    }
}
