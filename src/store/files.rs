//! The live files of a table as its current snapshot lists them, with the
//! `commit_version` stamps their stats allow: what windows, stamping and
//! compaction choose files by (docs/architecture.md "Windows").

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use deltalake_core::DeltaTable;
use url::Url;

use super::StoreError;
use crate::event::batch::COMMIT_VERSION;

/// One live file of a table, with the `commit_version` stamps its stats
/// allow (tables without the column have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// The file's path as the log has it (relative to the table).
    pub path: String,
    /// The lowest and highest `commit_version` in it (`None`: no stats).
    pub stamps: Option<(i64, i64)>,
    /// How many rows have no stamp (`None`: the stats do not say).
    pub nulls: Option<i64>,
    pub size: i64,
    pub rows: i64,
}

impl LiveFile {
    /// The file's URL, under `table`'s. Made for the files a reader needs
    /// only: a table's snapshot lists every live file on each open.
    pub fn url_in(&self, table: &Url) -> Result<String, StoreError> {
        table
            .join(&self.path)
            .map(String::from)
            .map_err(|e| StoreError::delta(table, e))
    }

    /// Whether the file may hold rows stamped in `(from, to]`.
    pub fn may_hold(&self, from: i64, to: i64) -> bool {
        match self.stamps {
            Some((low, high)) => high > from && low <= to,
            // No stamp range: every row unstamped, or stats unknown (read it).
            None => self.nulls.is_none(),
        }
    }

    /// Whether some of its rows lack a stamp (or its stats cannot tell).
    pub fn needs_stamp(&self) -> bool {
        self.nulls.map_or(self.stamps.is_none(), |n| n > 0)
    }
}

/// Every live file of `table` with its stamp range, from the snapshot's
/// stats. Tables with deletion vectors are refused: a plain file list
/// would read the rows they delete.
pub fn live_files(table: &DeltaTable) -> Result<Vec<LiveFile>, StoreError> {
    let url = table.table_url().clone();
    let fail = |e: &dyn std::fmt::Display| StoreError::delta(&url, e);
    let snapshot = table.snapshot().map_err(|e| fail(&e))?;
    let batches = snapshot.add_actions_batches(true).map_err(|e| fail(&e))?;
    let mut files = Vec::new();
    for batch in &batches {
        refuse_deletion_vectors(batch).map_err(|e| fail(&e))?;
        files.extend(files_of(batch).map_err(|e| fail(&e))?);
    }
    Ok(files)
}

fn refuse_deletion_vectors(batch: &RecordBatch) -> Result<(), String> {
    let with_vectors = batch
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name().starts_with("deletion_vector."))
        .filter_map(|f| batch.column_by_name(f.name()))
        .any(|c| c.null_count() < c.len());
    match with_vectors {
        false => Ok(()),
        true => Err(
            "the table has deletion vectors (written by another Delta writer); \
                     tripwire reads plain file lists: rewrite them away first (e.g. OPTIMIZE with \
                     deletion vectors purged, or REORG TABLE … APPLY (PURGE))"
                .into(),
        ),
    }
}

fn files_of(batch: &RecordBatch) -> Result<Vec<LiveFile>, String> {
    let column = |name: &str, to: &DataType| -> Result<Option<Arc<dyn Array>>, String> {
        batch
            .column_by_name(name)
            .map(|c| arrow::compute::cast(c, to).map_err(|e| e.to_string()))
            .transpose()
    };
    let paths = column("path", &DataType::Utf8)?.ok_or("the snapshot lists no paths")?;
    let numbers = |name: &str| column(name, &DataType::Int64);
    let low = numbers(&format!("min.{COMMIT_VERSION}"))?;
    let high = numbers(&format!("max.{COMMIT_VERSION}"))?;
    let nulls = numbers(&format!("null_count.{COMMIT_VERSION}"))?;
    let sizes = numbers("size_bytes")?;
    let rows = numbers("num_records")?;
    let at = |c: &Option<Arc<dyn Array>>, i: usize| {
        c.as_ref()
            .filter(|c| c.is_valid(i))
            .map(|c| c.as_primitive::<Int64Type>().value(i))
    };
    let paths = paths.as_string::<i32>();
    let files = (0..batch.num_rows()).map(|i| LiveFile {
        path: paths.value(i).to_string(),
        stamps: at(&low, i).zip(at(&high, i)),
        nulls: at(&nulls, i),
        size: at(&sizes, i).unwrap_or(0),
        rows: at(&rows, i).unwrap_or(0),
    });
    Ok(files.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(stamps: Option<(i64, i64)>, nulls: Option<i64>) -> LiveFile {
        LiveFile {
            path: "a.parquet".into(),
            stamps,
            nulls,
            size: 1,
            rows: 1,
        }
    }

    #[test]
    fn files_are_chosen_by_their_stamp_range() {
        assert!(!file(Some((1, 10)), Some(0)).may_hold(10, 20));
        assert!(file(Some((1, 11)), Some(0)).may_hold(10, 20));
        assert!(file(Some((20, 20)), Some(0)).may_hold(10, 20));
        assert!(!file(Some((21, 30)), Some(0)).may_hold(10, 20));
        // No stats: read it and let the row filter decide; all unstamped: skip.
        assert!(file(None, None).may_hold(10, 20));
        assert!(!file(None, Some(1)).may_hold(10, 20));
    }

    #[test]
    fn files_need_a_stamp_when_some_rows_lack_one_or_stats_cannot_tell() {
        assert!(!file(Some((1, 10)), Some(0)).needs_stamp());
        assert!(file(Some((1, 10)), Some(2)).needs_stamp());
        assert!(file(None, Some(5)).needs_stamp());
        assert!(file(None, None).needs_stamp());
        assert!(!file(Some((1, 1)), None).needs_stamp());
    }
}
