//! Rewriting live files without changing the table's data: the rows of some
//! files are read, transformed (stamped, merged), written as new files, and
//! the old files swapped for the new ones in one commit whose actions all
//! say `dataChange = false`, so other Delta readers see no new data. Used by
//! stamping, compaction and erasure's bookkeeping (docs/architecture.md
//! "Table maintenance").

use std::collections::HashMap;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Add, Remove};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::StoreError;
use super::files::LiveFile;
use super::table::{ROW_GROUP_ROWS, writer_properties_with};

/// The rows of `file`, with the table's current columns (a column the file
/// predates is null).
pub async fn read_rows(
    table: &DeltaTable,
    file: &LiveFile,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, StoreError> {
    let url = table.table_url().clone();
    let fail = |e: &dyn std::fmt::Display| StoreError::delta(&url, e);
    let store = table.log_store().object_store(None);
    let bytes = store
        .get(&ObjectPath::from(file.path.as_str()))
        .await
        .map_err(|e| fail(&e))?
        .bytes()
        .await
        .map_err(|e| fail(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|e| fail(&e))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|e| fail(&e))?;
            conform(&batch, schema).map_err(|e| fail(&e))
        })
        .collect()
}

/// The rows of each of `files` in turn ([`read_rows`]).
pub async fn read_files(
    table: &DeltaTable,
    files: &[LiveFile],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut batches = Vec::new();
    for file in files {
        batches.extend(read_rows(table, file, schema).await?);
    }
    Ok(batches)
}

/// `batch` with exactly `schema`'s columns, in order: missing ones null,
/// others cast to the table's type.
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes `batches` as new files of `table`; their Add actions, marked as
/// changing no data.
pub async fn write_files(
    table: &DeltaTable,
    batches: Vec<RecordBatch>,
) -> Result<Vec<Add>, StoreError> {
    write_files_in_groups(table, batches, ROW_GROUP_ROWS).await
}

/// [`write_files`] with row groups of `row_group_rows` rows.
pub async fn write_files_in_groups(
    table: &DeltaTable,
    batches: Vec<RecordBatch>,
    row_group_rows: usize,
) -> Result<Vec<Add>, StoreError> {
    let url = table.table_url().clone();
    let delta = |e: DeltaTableError| StoreError::delta(&url, e);
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(delta)?
        .with_writer_properties(writer_properties_with(row_group_rows));
    for batch in batches {
        writer.write(batch).await.map_err(delta)?;
    }
    let mut adds = writer.flush().await.map_err(delta)?;
    for add in &mut adds {
        add.data_change = false;
    }
    Ok(adds)
}

/// The Remove action of a file a rewrite replaces.
fn removal(file: &LiveFile, at_millis: i64) -> Remove {
    Remove {
        path: file.path.clone(),
        deletion_timestamp: Some(at_millis),
        data_change: false,
        extended_file_metadata: Some(true),
        partition_values: Some(HashMap::new()),
        size: Some(file.size),
        deletion_vector: None,
        tags: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// How a replacement commit treats other writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// Commit after other writers' commits as long as every file it
    /// replaces is still live (the new files' rows do not depend on the
    /// version); give up once another writer replaced one of them.
    Retry,
    /// Fail if any other commit lands first (the rows are stamped with the
    /// version this commit must create).
    FailOnAnyCommit,
}

/// Commits tried by a [`Race::Retry`] replacement, each after another
/// writer's commit came first.
pub const RACE_TRIES: usize = 10;

/// Commits `old` → `new` (plus `extra` actions, such as a metadata change)
/// as one commit that changes no data: the version it created, or `None`
/// when another writer replaced some of `old` first ([`Race::Retry`]).
/// Whenever it knows its commit did not land, it deletes the files `new`
/// names (nothing tracks them; VACUUM takes any it could not delete).
///
/// Every commit is made against the version it was checked on: Delta's
/// own conflict checker lets two commits that both remove a file with
/// `dataChange = false` land (two compactions of the same files: every
/// row twice), so a lost race is read and checked here instead.
pub async fn replace(
    table: &mut DeltaTable,
    old: &[LiveFile],
    new: Vec<Add>,
    extra: Vec<Action>,
    race: Race,
) -> Result<Option<i64>, StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let written: Vec<String> = new.iter().map(|add| add.path.clone()).collect();
    let mut actions: Vec<Action> = old
        .iter()
        .map(|f| Action::Remove(removal(f, now)))
        .collect();
    actions.extend(new.into_iter().map(Action::Add));
    actions.extend(extra);
    match land(table, old, &written, actions, race).await? {
        Landing::Landed(version) => Ok(Some(version)),
        Landing::Superseded => {
            forget_written(table, &written).await;
            Ok(None)
        }
        Landing::Refused(error) => {
            forget_written(table, &written).await;
            Err(error)
        }
    }
}

/// How a replacement's commit came out, when that is known (an error of
/// [`land`] itself leaves it unknown).
enum Landing {
    Landed(i64),
    /// Another writer replaced some of the old files first.
    Superseded,
    /// It did not land, for this reason.
    Refused(StoreError),
}

/// Tries to commit `actions` replacing `old` as [`replace`] says.
async fn land(
    table: &mut DeltaTable,
    old: &[LiveFile],
    written: &[String],
    actions: Vec<Action>,
    race: Race,
) -> Result<Landing, StoreError> {
    let url = table.table_url().clone();
    let tries = match race {
        Race::Retry => RACE_TRIES,
        Race::FailOnAnyCommit => 1,
    };
    let mut live = live_paths(table)?;
    for _ in 0..tries {
        if !old.iter().all(|f| live.contains(&f.path)) {
            return Ok(Landing::Superseded);
        }
        let checked_on = table.version();
        let failed = match commit_on_checked_version(table, actions.clone()).await {
            Ok(version) => return Ok(Landing::Landed(version)),
            Err(e) => StoreError::delta(&url, e),
        };
        super::table::refresh(table).await?;
        // The commit may have landed and a step after it failed (the
        // checkpoint or log cleanup its commit runs, the reload).
        live = live_paths(table)?;
        if written.iter().any(|path| live.contains(path)) {
            return Ok(Landing::Landed(super::table::version(table)));
        }
        if race == Race::FailOnAnyCommit || table.version() == checked_on {
            return Ok(Landing::Refused(failed));
        }
    }
    Ok(Landing::Refused(StoreError::delta(
        &url,
        format!("other writers committed first {tries} times in a row; nothing replaced"),
    )))
}

fn live_paths(table: &DeltaTable) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(super::files::live_files(table)?
        .into_iter()
        .map(|f| f.path)
        .collect())
}

/// Deletes files a replacement wrote and did not commit (best effort:
/// VACUUM deletes what is left, being tracked by nothing).
async fn forget_written(table: &DeltaTable, paths: &[String]) {
    let store = table.log_store().object_store(None);
    for path in paths {
        if let Err(e) = store.delete(&ObjectPath::from(path.as_str())).await {
            tracing::debug!("cannot delete the uncommitted file {path}: {e}");
        }
    }
}

/// Commits `actions` as the version after `table`'s, failing if another
/// writer made that version first; the table is then loaded at it.
async fn commit_on_checked_version(
    table: &mut DeltaTable,
    actions: Vec<Action>,
) -> Result<i64, DeltaTableError> {
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: 0,
    };
    let committed = CommitBuilder::from(super::table::commit_properties())
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(super::table::load_committed(table, committed))
}

/// The table's Arrow schema as tripwire writes it.
pub fn arrow_schema(table: &DeltaTable) -> Result<SchemaRef, StoreError> {
    let url = table.table_url().clone();
    let snapshot = table.snapshot().map_err(|e| StoreError::delta(&url, e))?;
    Ok(snapshot.snapshot().arrow_schema())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::store::files::live_files;

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let ids = Int64Array::from_iter_values(ids);
        RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap()
    }

    /// Every row of `table` now.
    pub(crate) async fn every_row(table: &DeltaTable) -> Vec<RecordBatch> {
        let schema = arrow_schema(table).unwrap();
        let batches = read_files(table, &live_files(table).unwrap(), &schema).await;
        batches.unwrap()
    }

    /// How many rows `table` holds now.
    async fn rows(table: &DeltaTable) -> usize {
        every_row(table)
            .await
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    /// Merges `table`'s first two files (by path) into one, as another
    /// replica's maintenance would.
    pub(crate) async fn merge_first_two(table: &mut DeltaTable) -> Result<Option<i64>, StoreError> {
        let mut files = live_files(table).unwrap();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let schema = arrow_schema(table).unwrap();
        let merged = read_files(table, &files[..2], &schema).await.unwrap();
        let new = write_files(table, merged).await.unwrap();
        replace(table, &files[..2], new, Vec::new(), Race::Retry).await
    }

    /// A table in `dir` of three files, of rows 0..10, 10..20 and 20..30 as
    /// `rows` makes them: its URL.
    pub(crate) async fn three_files(
        dir: &std::path::Path,
        rows: impl Fn(std::ops::Range<i64>) -> RecordBatch,
    ) -> url::Url {
        let url = url::Url::from_directory_path(dir).unwrap();
        let mut table = DeltaTable::try_from_url(url.clone()).await.unwrap();
        for ids in [0..10, 10..20, 20..30] {
            table = table.write([rows(ids)]).await.unwrap();
        }
        url
    }

    /// A handle on a table of [`three_files`] in `dir`, loaded before
    /// another writer (a replica's maintenance) merged two of its files.
    pub(crate) async fn read_before_a_merge(
        dir: &std::path::Path,
        rows: impl Fn(std::ops::Range<i64>) -> RecordBatch,
    ) -> DeltaTable {
        let url = three_files(dir, rows).await;
        let stale = DeltaTable::try_from_url(url.clone()).await.unwrap();
        let mut other = DeltaTable::try_from_url(url).await.unwrap();
        assert!(merge_first_two(&mut other).await.unwrap().is_some());
        stale
    }

    #[tokio::test]
    async fn a_merge_of_files_another_writer_merged_first_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = three_files(dir.path(), batch).await;
        // Two replicas read the same version; both merge the same files.
        let mut first = DeltaTable::try_from_url(url.clone()).await.unwrap();
        let mut second = DeltaTable::try_from_url(url.clone()).await.unwrap();
        assert!(merge_first_two(&mut first).await.unwrap().is_some());
        assert_eq!(merge_first_two(&mut second).await.unwrap(), None);
        let now = DeltaTable::try_from_url(url).await.unwrap();
        assert_eq!(rows(&now).await, 30, "no row twice");
        assert_eq!(live_files(&now).unwrap().len(), 2);

        // After an append by another writer, a merge of live files lands.
        now.write([batch(30..40)]).await.unwrap();
        assert!(merge_first_two(&mut second).await.unwrap().is_some());
        second.update_incremental(None).await.unwrap();
        assert_eq!(rows(&second).await, 40);
    }
}
