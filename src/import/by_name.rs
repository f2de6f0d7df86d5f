//! One workspace's events of a chunk, built with one builder per event
//! name, so they leave the parser in the events' file order
//! (`store::layout`: by name, then `seq`) without a sort. Ordering a
//! chunk's finished batch was a sixth of an import's CPU: the sort, then a
//! copy of every column (the wide JSON ones above all) into fresh memory.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int64Type;

use crate::event::{EventBatchBuilder, ParsedEvent};

/// The events' arrival order column.
const SEQ: &str = "seq";

/// Rows a new name's builder starts with room for (it grows as needed):
/// a chunk may hold a few names or thousands.
const FIRST_ROWS: usize = 1024;

/// The events of one name, and each one's place among all the chunk's
/// events of the workspace.
struct NameRows {
    builder: EventBatchBuilder,
    positions: Vec<i64>,
}

impl NameRows {
    fn new(rows: usize) -> NameRows {
        NameRows {
            builder: EventBatchBuilder::with_capacity(rows),
            positions: Vec::with_capacity(rows),
        }
    }
}

/// Events as they are parsed, grouped by name.
#[derive(Default)]
pub struct ByName {
    /// Identify calls and other events without a name.
    unnamed: Option<NameRows>,
    named: HashMap<String, NameRows>,
    rows: usize,
    /// Rows the chunk is expected to hold, to size the builders.
    rows_hint: usize,
}

impl ByName {
    pub fn new(rows_hint: usize) -> ByName {
        ByName {
            rows_hint,
            ..ByName::default()
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event read from input `line`.
    pub fn append(&mut self, event: &ParsedEvent, line: u64, received_at: i64) {
        let first_rows = self.rows_hint.min(FIRST_ROWS);
        let rows = match event.event_name.as_deref() {
            None => self
                .unnamed
                .get_or_insert_with(|| NameRows::new(first_rows)),
            Some(name) => match self.named.get_mut(name) {
                Some(rows) => rows,
                None => self
                    .named
                    .entry(name.to_string())
                    .or_insert_with(|| NameRows::new(first_rows)),
            },
        };
        rows.builder.append(event, line, received_at);
        rows.positions.push(self.rows as i64);
        self.rows += 1;
    }

    /// The input line of each event, in file order.
    pub fn lines(&self) -> Vec<u64> {
        self.in_file_order()
            .flat_map(|rows| rows.builder.lines().iter().copied())
            .collect()
    }

    /// The groups in file order: no name first, then names in byte order.
    fn in_file_order(&self) -> impl Iterator<Item = &NameRows> {
        let mut named: Vec<(&String, &NameRows)> = self.named.iter().collect();
        named.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.unnamed
            .iter()
            .chain(named.into_iter().map(|(_, rows)| rows))
    }

    /// The events as batches in file order, `seq` holding each row's
    /// arrival position.
    pub fn finish(mut self) -> OrderedEvents {
        let mut named: Vec<(String, NameRows)> = self.named.drain().collect();
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let groups = self
            .unnamed
            .take()
            .into_iter()
            .chain(named.into_iter().map(|(_, rows)| rows));
        let mut ordered = OrderedEvents::default();
        for NameRows { builder, positions } in groups {
            ordered
                .lines
                .extend(builder.lines().iter().map(|l| *l as i64));
            ordered
                .batches
                .push(builder.finish_with_seq(Int64Array::from(positions)));
        }
        ordered
    }
}

/// One workspace's events of a chunk in the events' file order: a batch
/// per name, each row's `seq` its position in the chunk (the committer
/// adds the chunk's first `seq`).
#[derive(Debug, Default)]
pub struct OrderedEvents {
    pub batches: Vec<RecordBatch>,
    /// Each row's line in the file, the batches' rows one after another.
    pub lines: Vec<i64>,
}

impl OrderedEvents {
    /// The rows with `seq` numbered from `first_seq` in arrival order.
    pub fn numbered(&self, first_seq: i64) -> Vec<RecordBatch> {
        self.batches
            .iter()
            .map(|batch| {
                let schema = batch.schema();
                let index = schema.index_of(SEQ).expect("an events batch has seq");
                let positions = batch.column(index).as_primitive::<Int64Type>();
                let seq: Int64Array = positions.unary(|p| first_seq + p);
                let mut columns = batch.columns().to_vec();
                columns[index] = Arc::new(seq);
                RecordBatch::try_new(schema, columns).expect("the same column type")
            })
            .collect()
    }
}

/// The rows of `batches` read after line `committed` (`lines`: each row's
/// line, the batches' rows one after another).
pub fn rows_after(batches: &[RecordBatch], lines: &[i64], committed: i64) -> Vec<RecordBatch> {
    if lines.iter().all(|l| *l > committed) {
        return batches.to_vec();
    }
    let mut start = 0;
    let mut kept = Vec::new();
    for batch in batches {
        let end = start + batch.num_rows();
        let keep = lines[start..end]
            .iter()
            .map(|l| Some(*l > committed))
            .collect();
        let rows = filter_record_batch(batch, &keep).expect("the mask has one entry per row");
        if rows.num_rows() > 0 {
            kept.push(rows);
        }
        start = end;
    }
    kept
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;

    use super::*;
    use crate::event::EventKind;

    fn event(name: Option<&str>) -> ParsedEvent<'static> {
        let mut event = ParsedEvent::new(EventKind::Track);
        event.event_name = name.map(|n| n.to_string().into());
        event
    }

    fn names(batches: &[RecordBatch]) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let names: &StringArray = b.column_by_name("event_name").unwrap().as_string();
                names
                    .iter()
                    .map(|n| n.map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn seqs(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let seq = b.column_by_name(SEQ).unwrap().as_primitive::<Int64Type>();
                seq.values().to_vec()
            })
            .collect()
    }

    #[test]
    fn events_come_out_unnamed_first_then_by_name_each_in_arrival_order() {
        let arrivals = [Some("view"), None, Some("cart"), Some("view"), None];
        let mut by_name = ByName::new(4);
        for (i, name) in arrivals.iter().enumerate() {
            by_name.append(&event(*name), 10 + i as u64, 0);
        }
        assert_eq!(by_name.len(), 5);
        assert_eq!(by_name.lines(), [11, 14, 12, 10, 13]);
        let ordered = by_name.finish();
        assert_eq!(ordered.lines, [11, 14, 12, 10, 13]);
        let batches = ordered.numbered(100);
        assert_eq!(
            names(&batches),
            [
                None,
                None,
                Some("cart".into()),
                Some("view".into()),
                Some("view".into())
            ]
        );
        assert_eq!(seqs(&batches), [101, 104, 102, 100, 103]);
    }

    #[test]
    fn rows_after_a_committed_line_are_kept_across_batches() {
        let mut by_name = ByName::new(4);
        for (i, name) in [Some("b"), Some("a"), Some("b"), Some("a")]
            .iter()
            .enumerate()
        {
            by_name.append(&event(*name), 1 + i as u64, 0);
        }
        let ordered = by_name.finish();
        let batches = ordered.numbered(0);
        let kept = rows_after(&batches, &ordered.lines, 2);
        assert_eq!(names(&kept), [Some("a".into()), Some("b".into())]);
        assert_eq!(seqs(&kept), [3, 2]);
        assert_eq!(rows_after(&batches, &ordered.lines, 4).len(), 0);
        assert_eq!(rows_after(&batches, &ordered.lines, 0), batches);
    }
}
