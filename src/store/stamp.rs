//! Rows without a `commit_version` stamp get one (docs/architecture.md
//! "Windows"), so every row is in exactly one window:
//! - an events table written before stamps (no `tripwire.stamped` table
//!   property yet) gets each file's rows stamped with the version of the
//!   commit that added the file, read from the log while it still has it
//!   (so the triggers' cursors keep their meaning); a file whose adding
//!   commit the log no longer has is stamped 0: older than every cursor,
//!   never new again;
//! - rows another Delta writer appended without a stamp are stamped with the
//!   version of the commit that stamps them: triggers see them once, as if
//!   they had arrived then.
//!
//! Either way the rewrite changes no data (`dataChange = false`), and the
//! table is marked `tripwire.stamped = true` in the same commit.

use std::collections::HashMap;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::compute::kernels::zip::zip;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::MetadataExt as _;
use deltalake_core::logstore::get_actions;

use super::StoreError;
use super::files::{LiveFile, live_files};
use super::rewrite::{Race, arrow_schema, read_rows, replace, write_files};
use super::table::refresh;
use crate::event::batch::COMMIT_VERSION;

/// The table property marking a table whose rows tripwire stamps.
pub const STAMPED_PROPERTY: &str = "tripwire.stamped";

/// How often stamping is tried again after other writers committed first.
const STAMP_TRIES: usize = 10;

/// Stamps every unstamped row of the events table; returns how many files
/// were rewritten (0, and no commit, when all rows carry a stamp).
pub async fn stamp_unstamped(table: &mut DeltaTable) -> Result<usize, StoreError> {
    for _ in 0..STAMP_TRIES {
        let files: Vec<LiveFile> = live_files(table)?
            .into_iter()
            .filter(LiveFile::needs_stamp)
            .collect();
        let legacy = !is_marked(table);
        if files.is_empty() && !legacy {
            return Ok(0);
        }
        let read = table.version();
        match stamp_files(table, &files, legacy).await {
            Ok(()) => return Ok(files.len()),
            Err(e) => {
                refresh(table).await?;
                if table.version() == read {
                    return Err(e);
                }
            }
        }
    }
    Err(StoreError::delta(
        table.table_url(),
        "other writers kept committing while unstamped rows were being stamped",
    ))
}

fn is_marked(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.metadata()
            .configuration()
            .get(STAMPED_PROPERTY)
            .is_some_and(|v| v == "true")
    })
}

/// One try: rewrite `files` with their stamps, marking the table stamped.
async fn stamp_files(
    table: &mut DeltaTable,
    files: &[LiveFile],
    legacy: bool,
) -> Result<(), StoreError> {
    let url = table.table_url().clone();
    let next = table.version().map_or(0, |v| v as i64 + 1);
    let added = match legacy {
        true => added_versions(table).await?,
        false => HashMap::new(),
    };
    let schema = arrow_schema(table)?;
    let mut batches = Vec::new();
    for file in files {
        let stamp = match legacy {
            true => added.get(&file.path).copied().unwrap_or(0),
            false => next,
        };
        for batch in read_rows(table, file, &schema).await? {
            batches.push(fill_stamps(batch, stamp).map_err(|e| StoreError::delta(&url, e))?);
        }
    }
    let new = match batches.is_empty() {
        true => Vec::new(),
        false => write_files(table, batches).await?,
    };
    let metadata = table
        .snapshot()
        .map_err(|e| StoreError::delta(&url, e))?
        .metadata()
        .clone()
        .add_config_key(STAMPED_PROPERTY.into(), "true".into())
        .map_err(|e| StoreError::delta(&url, e))?;
    // Stamps of other writers' rows name the version this commit creates.
    replace(
        table,
        files,
        new,
        vec![Action::Metadata(metadata)],
        Race::FailOnAnyCommit,
    )
    .await
    .map(|_| ())
}

/// `batch` with its null stamps set to `stamp` (stamped rows keep theirs).
fn fill_stamps(batch: RecordBatch, stamp: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    let index = batch.schema().index_of(COMMIT_VERSION)?;
    let current = batch.column(index).clone();
    if current.null_count() == 0 {
        return Ok(batch);
    }
    let present = arrow::compute::is_not_null(&current)?;
    let filled = zip(&present, &current, &Int64Array::new_scalar(stamp))?;
    let mut columns = batch.columns().to_vec();
    columns[index] = filled;
    RecordBatch::try_new(batch.schema(), columns)
}

/// For each file path an add action of the log still names, the version of
/// the (last) commit that added it.
async fn added_versions(table: &DeltaTable) -> Result<HashMap<String, i64>, StoreError> {
    let url = table.table_url().clone();
    let log = table.log_store();
    let latest = table.version().unwrap_or(0);
    let mut added = HashMap::new();
    for version in 0..=latest {
        let bytes = log
            .read_commit_entry(version)
            .await
            .map_err(|e| StoreError::delta(&url, e))?;
        let Some(bytes) = bytes else {
            continue; // cleaned up: its files are stamped 0
        };
        for action in get_actions(version, &bytes).map_err(|e| StoreError::delta(&url, e))? {
            if let Action::Add(add) = action {
                added.insert(add.path, version as i64);
            }
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn only_missing_stamps_are_filled() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            COMMIT_VERSION,
            DataType::Int64,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![Some(3), None, Some(5)]))],
        )
        .unwrap();
        let filled = fill_stamps(batch, 9).unwrap();
        let stamps: Vec<i64> = filled
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(stamps, [3, 9, 5]);
    }
}
