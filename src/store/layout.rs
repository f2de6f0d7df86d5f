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
//! Compaction writes a merged group as runs, each in this order and each
//! its own row group ([`in_runs`]), so the cores reading a file each find
//! a share of every name.
//!
//! Windows do not depend on the order: they select rows by stamp, and the
//! file stats (which Delta keeps per file, not per page) stay the same.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast, interleave_record_batch};
use arrow::datatypes::{DataType, Int64Type};
use arrow::error::ArrowError;

use crate::event::batch::COMMIT_VERSION;

/// The columns an events file is ordered by, in order.
pub const FILE_ORDER: [&str; 3] = ["event_name", COMMIT_VERSION, "seq"];

/// Batches together at most this big (Arrow memory) are ordered as one
/// batch; bigger sets batch by batch. One batch holds at most 2 GiB of
/// text per column (32-bit offsets), and an ingest flush after a long
/// stall commits every sealed WAL segment at once (`max_wal_bytes` can be
/// raised past it). A compaction group (64 MB of zstd files) stays whole.
pub const ORDER_AS_ONE_BYTES: usize = 1 << 30;

/// `batches` in [`FILE_ORDER`] (missing names and stamps first): as one
/// batch, or each on its own past [`ORDER_AS_ONE_BYTES`]. Batches whose
/// rows, one batch after another, are in that order already, and batches
/// that are not events (they lack a column of the order), come back as
/// they are.
pub fn in_file_order(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    in_file_order_within(batches, ORDER_AS_ONE_BYTES)
}

/// [`in_file_order`] with the bound given.
pub fn in_file_order_within(
    batches: &[RecordBatch],
    as_one_bytes: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    if bytes > as_one_bytes {
        return batches.iter().map(batch_in_file_order).collect();
    }
    Ok(ordered_as_one(batches)?.unwrap_or_else(|| batches.to_vec()))
}

/// A compacted file's rows: `batches` (in stamp order, as the group's
/// files are) cut into `runs` runs of equal rows, each run in
/// [`FILE_ORDER`], with the row-group size that starts each run on a new
/// row group. A query splits a file across cores by row groups, so a name's
/// rows, one range per run, are read on `runs` cores instead of one (a
/// window's file of 100k rows was two row groups with every row of the
/// name asked for in the first).
pub fn in_runs(
    batches: &[RecordBatch],
    runs: usize,
    max_row_group_rows: usize,
) -> Result<(Vec<RecordBatch>, usize), ArrowError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let (run_rows, row_group_rows) = run_size(rows, runs.max(1), max_row_group_rows.max(1));
    let mut ordered = Vec::new();
    for run in cut(batches, run_rows) {
        ordered.extend(in_file_order(&run)?);
    }
    Ok((ordered, row_group_rows))
}

/// Rows per run and per row group: a run is one row group when it fits in
/// one, else a whole number of full row groups.
fn run_size(rows: usize, runs: usize, max_row_group_rows: usize) -> (usize, usize) {
    let run_rows = rows.div_ceil(runs).max(1);
    match run_rows <= max_row_group_rows {
        true => (run_rows, run_rows),
        false => (
            run_rows.div_ceil(max_row_group_rows) * max_row_group_rows,
            max_row_group_rows,
        ),
    }
}

/// `batches` cut into consecutive pieces of `rows` rows (the last shorter).
fn cut(batches: &[RecordBatch], rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut pieces = vec![Vec::new()];
    let mut filled = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if filled == rows {
                pieces.push(Vec::new());
                filled = 0;
            }
            let take = (rows - filled).min(batch.num_rows() - offset);
            pieces
                .last_mut()
                .expect("one piece at least")
                .push(batch.slice(offset, take));
            offset += take;
            filled += take;
        }
    }
    pieces.retain(|piece| !piece.is_empty());
    pieces
}

/// `batch` in [`FILE_ORDER`] (as it is when it is not events).
pub fn batch_in_file_order(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let ordered = ordered_as_one(std::slice::from_ref(batch))?;
    Ok(match ordered.as_deref() {
        Some([one]) => one.clone(),
        _ => batch.clone(),
    })
}

/// `batches` in order: as they are when their rows, one batch after
/// another, already are (an import's chunk comes as a batch per name),
/// else as one batch; `None` when they are not events or there are none.
fn ordered_as_one(batches: &[RecordBatch]) -> Result<Option<Vec<RecordBatch>>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let columns: Result<Vec<usize>, _> = FILE_ORDER.iter().map(|c| schema.index_of(c)).collect();
    let Ok(columns) = columns else {
        return Ok(None);
    };
    let keys = batches
        .iter()
        .map(|batch| Keys::of(batch, &columns))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = sort_keys(&keys);
    if rows.is_sorted() {
        return Ok(Some(batches.to_vec()));
    }
    rows.sort_unstable();
    let positions: Vec<(usize, usize)> = rows
        .iter()
        .map(|row| (row.batch as usize, row.row as usize))
        .collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    interleave_record_batch(&refs, &positions).map(|one| Some(vec![one]))
}

/// One batch's order columns, as plain arrays.
struct Keys {
    names: arrow::array::StringArray,
    stamps: arrow::array::Int64Array,
    seqs: arrow::array::Int64Array,
}

impl Keys {
    fn of(batch: &RecordBatch, columns: &[usize]) -> Result<Keys, ArrowError> {
        let utf8 = cast(batch.column(columns[0]), &DataType::Utf8)?;
        let int64 = |index: usize| -> Result<arrow::array::Int64Array, ArrowError> {
            Ok(cast(batch.column(index), &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        };
        Ok(Keys {
            names: utf8.as_string::<i32>().clone(),
            stamps: int64(columns[1])?,
            seqs: int64(columns[2])?,
        })
    }
}

/// A row's place in the order: its name's rank among the names (0: none),
/// stamp and `seq` (`None` first), then where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    name: u32,
    stamp: Option<i64>,
    seq: Option<i64>,
    batch: u32,
    row: u32,
}

/// Every row's [`SortKey`], in batch and row order. Names are ranked once
/// each, so sorting compares integers, not text.
fn sort_keys(keys: &[Keys]) -> Vec<SortKey> {
    let ranks = name_ranks(keys);
    let value = |array: &arrow::array::Int64Array, row: usize| {
        array.is_valid(row).then(|| array.value(row))
    };
    let mut rows = Vec::with_capacity(keys.iter().map(|k| k.names.len()).sum());
    for (batch, k) in keys.iter().enumerate() {
        for row in 0..k.names.len() {
            let name = match k.names.is_valid(row) {
                true => ranks[k.names.value(row)],
                false => 0,
            };
            rows.push(SortKey {
                name,
                stamp: value(&k.stamps, row),
                seq: value(&k.seqs, row),
                batch: batch as u32,
                row: row as u32,
            });
        }
    }
    rows
}

/// Each distinct name's rank in byte order, from 1.
fn name_ranks(keys: &[Keys]) -> HashMap<&str, u32> {
    let mut ranks: HashMap<&str, u32> = HashMap::new();
    for name in keys.iter().flat_map(|k| k.names.iter().flatten()) {
        ranks.entry(name).or_insert(0);
    }
    let mut names: Vec<&str> = ranks.keys().copied().collect();
    names.sort_unstable();
    for (rank, name) in names.into_iter().enumerate() {
        ranks.insert(name, rank as u32 + 1);
    }
    ranks
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
        let ordered = in_file_order(&[first, second]).unwrap();
        assert_eq!(ordered.len(), 1);
        let ordered = &ordered[0];
        // Identify calls (no name) first; each row keeps its own values.
        assert_eq!(
            column(ordered, "payload"),
            [
                "--4", "--1", "cart-9", "cart-2", "view-8", "view-0", "view-3"
            ]
        );
        assert_eq!(
            column(ordered, COMMIT_VERSION),
            ["5", "7", "5", "7", "5", "7", "7"]
        );
    }

    #[test]
    fn batches_already_in_order_one_after_another_are_left_as_they_are() {
        // An import's chunk: a batch per name, each in seq order.
        let unnamed = events(&[(None, 7, 2)]);
        let cart = events(&[(Some("cart"), 7, 0), (Some("cart"), 7, 3)]);
        let view = events(&[(Some("view"), 7, 1)]);
        let batches = [unnamed, cart, view];
        assert_eq!(in_file_order(&batches).unwrap(), batches);
        // Out of order across batches: merged into one.
        let swapped = [batches[2].clone(), batches[1].clone()];
        let ordered = in_file_order(&swapped).unwrap();
        assert_eq!(ordered.len(), 1);
        assert_eq!(column(&ordered[0], "seq"), ["0", "3", "1"]);
    }

    #[test]
    fn batches_without_the_order_columns_are_left_alone() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![2, 1]))]).unwrap();
        let alone = std::slice::from_ref(&batch);
        assert_eq!(in_file_order(alone).unwrap(), alone);
        assert_eq!(batch_in_file_order(&batch).unwrap(), batch);
        assert!(in_file_order(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_run_is_one_row_group_or_whole_row_groups() {
        assert_eq!(run_size(100_000, 2, 65_536), (50_000, 50_000));
        assert_eq!(run_size(100_001, 2, 65_536), (50_001, 50_001));
        assert_eq!(run_size(1_000_000, 2, 65_536), (524_288, 65_536));
        assert_eq!(run_size(10, 1, 64), (10, 10));
        assert_eq!(run_size(3, 8, 64), (1, 1));
    }

    #[test]
    fn a_compacted_group_is_runs_each_in_file_order() {
        // Two files of a group, in stamp order; names mixed.
        let first = events(&[(Some("b"), 1, 1), (Some("a"), 1, 2), (None, 1, 3)]);
        let second = events(&[(Some("b"), 2, 4), (Some("a"), 2, 5), (Some("b"), 3, 6)]);
        let (ordered, row_group_rows) = in_runs(&[first, second], 2, 64).unwrap();
        assert_eq!(row_group_rows, 3);
        let seqs: Vec<String> = ordered.iter().flat_map(|b| column(b, "seq")).collect();
        // Each half of the group by stamp, ordered by name (none first).
        assert_eq!(seqs, ["3", "2", "1", "5", "4", "6"]);
        let (one_run, _) = in_runs(&ordered, 1, 64).unwrap();
        let seqs: Vec<String> = one_run.iter().flat_map(|b| column(b, "seq")).collect();
        assert_eq!(seqs, ["3", "2", "5", "1", "4", "6"]);
    }

    #[test]
    fn cutting_keeps_every_row_once_in_order() {
        let batches = [
            events(&[(Some("a"), 1, 1), (Some("a"), 1, 2)]),
            events(&[(Some("a"), 1, 3)]),
            events(&[(Some("a"), 1, 4), (Some("a"), 1, 5), (Some("a"), 1, 6)]),
        ];
        let pieces = cut(&batches, 4);
        let rows: Vec<Vec<String>> = pieces
            .iter()
            .map(|p| p.iter().flat_map(|b| column(b, "seq")).collect())
            .collect();
        assert_eq!(rows, [vec!["1", "2", "3", "4"], vec!["5", "6"]]);
    }
}
