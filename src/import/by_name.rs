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

use crate::event::{EventBatchBuilder, Footprint, ParsedEvent};
use crate::store::layout::in_file_order;

/// The events' arrival order column.
const SEQ: &str = "seq";

/// Rows a new name's builder starts with room for (it grows as needed).
const FIRST_ROWS: usize = 1024;

/// Names a chunk builds apart. The events of any further name share one
/// builder, and the chunk is then sorted as a whole: a file whose event
/// names all differ (an id in each) must not make a builder per event.
pub const MAX_NAMES_APART: usize = 256;

/// The events of one name, and each one's place among all the chunk's
/// events of the workspace.
struct NameRows {
    builder: EventBatchBuilder,
    positions: Vec<i64>,
}

impl NameRows {
    fn new(footprint: &Footprint) -> NameRows {
        NameRows {
            builder: EventBatchBuilder::with_footprint(footprint),
            positions: Vec::with_capacity(footprint.rows),
        }
    }

    /// Appends the event that arrived `position`th in the chunk.
    fn push(&mut self, event: &ParsedEvent, line: u64, received_at: i64, position: i64) {
        self.builder.append(event, line, received_at);
        self.positions.push(position);
    }
}

/// What each group of a chunk's events took ([`Footprint`]): a parser
/// starts the next chunk's builders at these sizes (with some headroom),
/// since one file's chunks are much alike.
#[derive(Debug, Default, Clone)]
pub struct Footprints {
    unnamed: Option<Footprint>,
    named: HashMap<String, Footprint>,
    others: Option<Footprint>,
}

/// Events as they are parsed, grouped by name.
#[derive(Default)]
pub struct ByName {
    /// Identify calls and other events without a name.
    unnamed: Option<NameRows>,
    named: HashMap<String, NameRows>,
    /// The events of names past [`MAX_NAMES_APART`].
    others: Option<NameRows>,
    /// Each event's line, in arrival order.
    arrival_lines: Vec<i64>,
    /// Rows the chunk is expected to hold, to size the builders.
    rows_hint: usize,
    /// What the groups took in an earlier chunk, to size their builders.
    earlier: Footprints,
}

impl ByName {
    pub fn new(rows_hint: usize) -> ByName {
        ByName::after(rows_hint, Footprints::default())
    }

    /// A grouping whose builders start at what each group took in an
    /// `earlier` chunk (a group new to it, at a guess from `rows_hint`).
    pub fn after(rows_hint: usize, earlier: Footprints) -> ByName {
        ByName {
            rows_hint,
            earlier,
            ..ByName::default()
        }
    }

    /// What each group's rows take so far.
    pub fn footprints(&self) -> Footprints {
        let of = |rows: &NameRows| rows.builder.footprint();
        Footprints {
            unnamed: self.unnamed.as_ref().map(of),
            named: self
                .named
                .iter()
                .map(|(name, rows)| (name.clone(), of(rows)))
                .collect(),
            others: self.others.as_ref().map(of),
        }
    }

    pub fn len(&self) -> usize {
        self.arrival_lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrival_lines.is_empty()
    }

    /// Appends one event read from input `line`.
    pub fn append(&mut self, event: &ParsedEvent, line: u64, received_at: i64) {
        let position = self.arrival_lines.len() as i64;
        self.arrival_lines.push(line as i64);
        let (earlier, first_rows) = (&self.earlier, self.rows_hint.min(FIRST_ROWS));
        let new = |footprint: Option<&Footprint>| {
            let guess = || Footprint::guessed(first_rows);
            NameRows::new(&footprint.map_or_else(guess, Footprint::with_headroom))
        };
        let rows = match event.event_name.as_deref() {
            None => self
                .unnamed
                .get_or_insert_with(|| new(earlier.unnamed.as_ref())),
            Some(name) => {
                if let Some(rows) = self.named.get_mut(name) {
                    return rows.push(event, line, received_at, position);
                }
                match self.named.len() < MAX_NAMES_APART {
                    true => {
                        let rows = new(earlier.named.get(name));
                        self.named.entry(name.to_string()).or_insert(rows)
                    }
                    false => self
                        .others
                        .get_or_insert_with(|| new(earlier.others.as_ref())),
                }
            }
        };
        rows.push(event, line, received_at, position);
    }

    /// The input line of each event, in arrival order.
    pub fn lines(&self) -> &[i64] {
        &self.arrival_lines
    }

    /// The events as batches in file order, `seq` holding each row's
    /// arrival position: a batch per name, or one sorted batch when some
    /// names shared a builder.
    pub fn finish(mut self) -> OrderedEvents {
        let mut named: Vec<(String, NameRows)> = self.named.drain().collect();
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let others = self.others.take();
        let mixed = others.is_some();
        let batches: Vec<RecordBatch> = self
            .unnamed
            .take()
            .into_iter()
            .chain(named.into_iter().map(|(_, rows)| rows))
            .chain(others)
            .map(|rows| {
                rows.builder
                    .finish_with_seq(Int64Array::from(rows.positions))
            })
            .collect();
        let batches = match mixed {
            // Were it to fail, the commit orders the rows itself.
            true => in_file_order(&batches).unwrap_or(batches),
            false => batches,
        };
        let arrival_lines = &self.arrival_lines;
        let lines = batches
            .iter()
            .flat_map(|batch| {
                let seq = batch.column_by_name(SEQ).expect("an events batch has seq");
                let positions = seq.as_primitive::<Int64Type>().values().iter();
                positions.map(|p| arrival_lines[*p as usize])
            })
            .collect();
        OrderedEvents { batches, lines }
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

    fn names_of(batches: &[RecordBatch]) -> Vec<Option<String>> {
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
        assert_eq!(by_name.lines(), [10, 11, 12, 13, 14]);
        let ordered = by_name.finish();
        assert_eq!(ordered.lines, [11, 14, 12, 10, 13]);
        let batches = ordered.numbered(100);
        assert_eq!(
            names_of(&batches),
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
    fn footprints_hold_each_groups_rows_and_bytes_and_size_the_next_chunk_alike() {
        let arrivals = [Some("view"), None, Some("cart"), Some("view")];
        let fill = |by_name: &mut ByName| {
            for (i, name) in arrivals.iter().enumerate() {
                let mut event = event(*name);
                event.event_id = Some(format!("id-{i}").into());
                event.properties = Some(r#"{"k":1}"#.into());
                by_name.append(&event, i as u64, 0);
            }
        };
        let mut first = ByName::new(4);
        fill(&mut first);
        let footprints = first.footprints();
        let view = footprints.named["view"];
        assert_eq!(view.rows, 2);
        assert_eq!(view.text_bytes[0], "id-0id-3".len(), "event_id");
        assert_eq!(view.text_bytes[2], "viewview".len(), "event_name");
        let properties = view.text_bytes[crate::event::batch::PROPERTIES_TEXT];
        assert_eq!(properties, 2 * r#"{"k":1}"#.len(), "properties");
        assert_eq!(footprints.unnamed.map(|f| f.rows), Some(1));
        assert_eq!(footprints.others, None);
        // A chunk whose builders start from them builds the same batches.
        let mut next = ByName::after(4, footprints);
        fill(&mut next);
        assert_eq!(next.finish().numbered(0), first.finish().numbered(0));
    }

    #[test]
    fn names_past_the_limit_share_a_builder_and_the_chunk_is_sorted_whole() {
        let names: Vec<String> = (0..MAX_NAMES_APART + 3)
            .rev()
            .map(|i| format!("n{i:04}"))
            .collect();
        let mut by_name = ByName::new(4);
        for (i, name) in names.iter().enumerate() {
            by_name.append(&event(Some(name)), 100 + i as u64, 0);
        }
        by_name.append(&event(None), 1_000, 0);
        let ordered = by_name.finish();
        assert_eq!(ordered.batches.len(), 1, "sorted as one batch");
        let batches = ordered.numbered(0);
        let mut expected: Vec<Option<String>> = names.iter().cloned().map(Some).collect();
        expected.sort();
        expected.insert(0, None);
        assert_eq!(names_of(&batches), expected);
        // Each row keeps its own line and seq: arrival order reversed, the
        // identify last.
        let last = names.len() as i64;
        let mut seq: Vec<i64> = (0..last).rev().collect();
        seq.insert(0, last);
        assert_eq!(seqs(&batches), seq);
        let lines: Vec<i64> = seq
            .iter()
            .map(|s| if *s == last { 1_000 } else { 100 + s })
            .collect();
        assert_eq!(ordered.lines, lines);
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
        assert_eq!(names_of(&kept), [Some("a".into()), Some("b".into())]);
        assert_eq!(seqs(&kept), [3, 2]);
        assert_eq!(rows_after(&batches, &ordered.lines, 4).len(), 0);
        assert_eq!(rows_after(&batches, &ordered.lines, 0), batches);
    }
}
