//! Following a table's Delta log from a version on: the data files the
//! commits after it added, read straight from their log entries, so an
//! index that covers the table up to that version catches up by reading
//! the new work only (docs/architecture.md "Open deliveries", "Ticks").
//!
//! Following stops, and the caller rebuilds from the whole table, when a
//! new commit removed rows (`remove` with `dataChange`: an erasure, a
//! migration, another writer's DELETE), names another table (its
//! `metaData` id differs), adds a file by an absolute URL, or when there
//! are more than [`MAX_COMMITS_TO_FOLLOW`] new commits. Compaction
//! (`dataChange: false`) is followed: it moves rows, it does not add any.

use std::sync::Arc;

use arrow::array::RecordBatch;
use deltalake_core::logstore::LogStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::store::StoreError;

/// New commits read one by one at most; further behind, the caller rebuilds.
pub const MAX_COMMITS_TO_FOLLOW: i64 = 1_000;

/// What the commits after a version came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The files they added (paths relative to the table), up to `to`.
    Added { to: i64, files: Vec<String> },
    /// Rows the caller folded may be gone or the table replaced: rebuild.
    Rewritten(String),
}

/// The commits of the table behind `log` after version `from`, read until
/// the first version that does not exist yet.
pub async fn since(log: &dyn LogStore, from: i64, table_id: &str) -> Result<Followed, StoreError> {
    between(log, from, None, table_id).await
}

/// The commits of the table behind `log` after version `from`, up to `to`
/// when given (else until the first version that does not exist yet).
pub async fn between(
    log: &dyn LogStore,
    from: i64,
    to: Option<i64>,
    table_id: &str,
) -> Result<Followed, StoreError> {
    let mut files = Vec::new();
    let mut version = from;
    while to.is_none_or(|to| version < to) {
        let next = version + 1;
        let Ok(wanted) = u64::try_from(next) else {
            return Ok(Followed::Rewritten(format!(
                "version {next} is not a version"
            )));
        };
        let entry = log
            .read_commit_entry(wanted)
            .await
            .map_err(|e| StoreError::delta(log.config().location(), e))?;
        let Some(entry) = entry else { break };
        if next - from > MAX_COMMITS_TO_FOLLOW {
            return Ok(Followed::Rewritten(format!(
                "more than {MAX_COMMITS_TO_FOLLOW} commits to follow"
            )));
        }
        match added_by(&entry, table_id) {
            Ok(added) => files.extend(added),
            Err(why) => return Ok(Followed::Rewritten(format!("commit {next}: {why}"))),
        }
        version = next;
    }
    if let Some(to) = to
        && version < to
    {
        // Cleaned up from the log: what it added cannot be read.
        return Ok(Followed::Rewritten(format!(
            "commit {} has no log entry",
            version + 1
        )));
    }
    Ok(Followed::Added { to: version, files })
}

/// The data files one commit entry adds, or why it cannot be followed.
pub fn added_by(entry: &[u8], table_id: &str) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(entry).map_err(|_| "its log entry is not UTF-8".to_string())?;
    let mut files = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value =
            serde_json::from_str(line).map_err(|e| format!("its log entry is not JSON: {e}"))?;
        let changes_data = |a: &Value| a.get("dataChange").and_then(Value::as_bool) != Some(false);
        if let Some(add) = action.get("add") {
            if !changes_data(add) {
                continue;
            }
            let path = add
                .get("path")
                .and_then(Value::as_str)
                .ok_or("an add without a path")?;
            if path.contains("://") {
                return Err(format!("it adds {path} by an absolute URL"));
            }
            if add.get("deletionVector").is_some_and(|v| !v.is_null()) {
                return Err("it adds a deletion vector".into());
            }
            files.push(path.to_string());
        } else if let Some(remove) = action.get("remove") {
            if changes_data(remove) {
                return Err("it removed rows".into());
            }
        } else if let Some(metadata) = action.get("metaData") {
            let id = metadata.get("id").and_then(Value::as_str);
            if id != Some(table_id) {
                return Err("it names another table".into());
            }
        }
    }
    Ok(files)
}

/// The `columns` of the Parquet file `path` (relative to the table root,
/// as the log writes it), as batches; a column a file lacks (written
/// before the column was added) is left out of its batches.
pub async fn read_columns(
    log: &dyn LogStore,
    path: &str,
    columns: &'static [&'static str],
) -> Result<Vec<RecordBatch>, StoreError> {
    let fail = |e: &dyn std::fmt::Display| {
        StoreError::delta(log.config().location(), format!("reading {path}: {e}"))
    };
    let objects: Arc<dyn ObjectStore> = log.object_store(None);
    let location = ObjectPath::from_url_path(path).map_err(|e| fail(&e))?;
    let bytes = objects
        .get(&location)
        .await
        .map_err(|e| fail(&e))?
        .bytes()
        .await
        .map_err(|e| fail(&e))?;
    let decoded = tokio::task::spawn_blocking(move || decode(bytes, columns))
        .await
        .map_err(|e| fail(&e))?;
    decoded.map_err(|e| fail(&e))
}

/// The `columns` of a Parquet file's bytes.
fn decode(
    bytes: bytes::Bytes,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = (0..schema.root_schema().get_fields().len())
        .filter(|i| columns.contains(&schema.root_schema().get_fields()[*i].name()))
        .collect();
    let mask = ProjectionMask::roots(schema, roots);
    builder
        .with_projection(mask)
        .build()?
        .map(|batch| batch.map_err(Into::into))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_compactions_are_followed_and_removals_are_not() {
        let append = br#"{"commitInfo":{"operation":"WRITE"}}
{"add":{"path":"part-1.parquet","dataChange":true,"size":10}}
{"add":{"path":"part-2.parquet","size":10}}"#;
        assert_eq!(
            added_by(append, "t1"),
            Ok(vec!["part-1.parquet".into(), "part-2.parquet".into()])
        );
        let compaction = br#"{"remove":{"path":"part-1.parquet","dataChange":false}}
{"add":{"path":"part-3.parquet","dataChange":false}}"#;
        assert_eq!(added_by(compaction, "t1"), Ok(vec![]));
        let delete = br#"{"remove":{"path":"part-1.parquet","dataChange":true}}"#;
        assert!(added_by(delete, "t1").unwrap_err().contains("removed rows"));
        let other = br#"{"metaData":{"id":"t2"}}"#;
        assert!(added_by(other, "t1").unwrap_err().contains("another table"));
        let same = br#"{"metaData":{"id":"t1"}}"#;
        assert_eq!(added_by(same, "t1"), Ok(vec![]));
        let absolute = br#"{"add":{"path":"s3://b/x.parquet","dataChange":true}}"#;
        assert!(added_by(absolute, "t1").is_err());
    }
}
