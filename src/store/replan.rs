//! A delete or update that meets another writer's commit, run again on the
//! table as it is now. Delta refuses a change whose files another writer
//! rewrote after it read them (another replica's compaction merged them:
//! "a concurrent transaction added new data"); the change itself is still
//! right on the new files, so it is planned again rather than failed.
//! Used by erasure and by retention's delete (docs/architecture.md "Table
//! maintenance").

use std::future::Future;

use datafusion::prelude::Expr;
use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::{DeltaTable, DeltaTableError};

use super::StoreError;
use super::rewrite::RACE_TRIES;

/// Runs `change` (a delete or update of `table`, answering the table after
/// it and how many rows it changed), again on the table as it is now each
/// time another writer's commit conflicts with what it read, up to
/// [`RACE_TRIES`] times; how many rows it changed.
pub async fn replanned<F, Fut>(table: &mut DeltaTable, mut change: F) -> Result<i64, StoreError>
where
    F: FnMut(DeltaTable) -> Fut,
    Fut: Future<Output = Result<(DeltaTable, i64), DeltaTableError>>,
{
    let url = table.table_url().clone();
    let mut tries = 1;
    loop {
        match change(table.clone()).await {
            Ok((changed, count)) => {
                *table = changed;
                return Ok(count);
            }
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(conflict),
            }) if tries < RACE_TRIES => {
                tracing::info!(table = %url, "changing again on the table as it is now: {conflict}");
                tries += 1;
                super::table::refresh(table).await?;
            }
            Err(e) => return Err(StoreError::delta(&url, e)),
        }
    }
}

/// Deletes the rows of `table` that `predicate` selects, [`replanned`]
/// when another writer's commit conflicts; how many.
pub async fn delete_rows(table: &mut DeltaTable, predicate: Expr) -> Result<i64, StoreError> {
    replanned(table, |table| {
        let predicate = predicate.clone();
        async move {
            let (deleted, metrics) = table
                .delete()
                .with_predicate(predicate)
                .with_commit_properties(super::table::operation_properties())
                .await?;
            Ok((deleted, metrics.num_deleted_rows.unwrap_or(0) as i64))
        }
    })
    .await
}
