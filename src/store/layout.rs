//! The order of the rows in an events file (docs/architecture.md "Row
//! order in an events file"): grouped by `event_name`, then by stamp and
//! `seq`.
//!
//! A trigger almost always asks for a few event names. With each name's
//! rows side by side, a file's pages hold one or two names each, so the
//! Parquet page index lets a query skip every page of the other names —
//! the wide `properties` column above all, which would otherwise be read
//! and decompressed whole for a few percent of its rows. Identify calls
//! (no `event_name`) come first, together, for the identity index.
//!
//! Windows do not depend on the order: they select rows by stamp, and the
//! file stats (which Delta keeps per file, not per page) stay the same.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, concat, interleave_record_batch, lexsort_to_indices};
use arrow::error::ArrowError;

use crate::event::batch::COMMIT_VERSION;

/// The columns an events file is ordered by, in order.
pub const FILE_ORDER: [&str; 3] = ["event_name", COMMIT_VERSION, "seq"];

/// `batches` as one batch in [`FILE_ORDER`]; `None` when the batches are
/// not events (they lack a column of the order) or there are none.
pub fn in_file_order(batches: &[RecordBatch]) -> Result<Option<RecordBatch>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let Some(keys) = key_columns(batches, first) else {
        return Ok(None);
    };
    let order = lexsort_to_indices(&keys, None)?;
    let rows = batch_rows(batches, &order);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    interleave_record_batch(&refs, &rows).map(Some)
}

/// The order's columns over all `batches`, concatenated; `None` when the
/// schema lacks one.
fn key_columns(batches: &[RecordBatch], first: &RecordBatch) -> Option<Vec<SortColumn>> {
    let schema = first.schema();
    FILE_ORDER
        .iter()
        .map(|name| {
            let index = schema.index_of(name).ok()?;
            let parts: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(index).as_ref()).collect();
            let values: ArrayRef = concat(&parts).ok()?;
            Some(SortColumn {
                values,
                options: None,
            })
        })
        .collect()
}

/// Positions in the concatenation of `batches` as (batch, row) pairs.
fn batch_rows(batches: &[RecordBatch], order: &UInt32Array) -> Vec<(usize, usize)> {
    let mut starts = Vec::with_capacity(batches.len());
    let mut start = 0usize;
    for batch in batches {
        starts.push(start);
        start += batch.num_rows();
    }
    order
        .values()
        .iter()
        .map(|&position| {
            let position = position as usize;
            let batch = starts.partition_point(|&s| s <= position) - 1;
            (batch, position - starts[batch])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn events(rows: &[(Option<&str>, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("event_name", DataType::Utf8, true),
            Field::new("payload", DataType::Utf8, false),
            Field::new(COMMIT_VERSION, DataType::Int64, true),
        ]));
        let names: StringArray = rows.iter().map(|r| r.0).collect();
        let payload: StringArray = rows
            .iter()
            .map(|r| Some(format!("{}-{}", r.0.unwrap_or("-"), r.2)))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(names),
                Arc::new(payload),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn column(batch: &RecordBatch, name: &str) -> Vec<String> {
        let values = batch.column_by_name(name).unwrap();
        let values = arrow::compute::cast(values, &DataType::Utf8).unwrap();
        let values = values.as_any().downcast_ref::<StringArray>().unwrap();
        values
            .iter()
            .map(|v| v.unwrap_or("null").to_string())
            .collect()
    }

    #[test]
    fn rows_of_several_batches_are_grouped_by_name_then_stamp_then_seq() {
        let first = events(&[
            (Some("view"), 7, 3),
            (None, 7, 1),
            (Some("cart"), 7, 2),
            (Some("view"), 7, 0),
        ]);
        let second = events(&[(Some("cart"), 5, 9), (Some("view"), 5, 8), (None, 5, 4)]);
        let ordered = in_file_order(&[first, second]).unwrap().unwrap();
        // Identify calls (no name) first; each row keeps its own values.
        assert_eq!(
            column(&ordered, "payload"),
            [
                "--4", "--1", "cart-9", "cart-2", "view-8", "view-0", "view-3"
            ]
        );
        assert_eq!(
            column(&ordered, COMMIT_VERSION),
            ["5", "7", "5", "7", "5", "7", "7"]
        );
    }

    #[test]
    fn batches_without_the_order_columns_are_left_alone() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![2, 1]))]).unwrap();
        assert!(in_file_order(&[batch]).unwrap().is_none());
        assert!(in_file_order(&[]).unwrap().is_none());
    }
}
