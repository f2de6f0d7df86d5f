//! A chunk of an input file: its raw lines, then the events and rejects
//! parsed from them, grouped by workspace. A chunk is the unit of commit.
//! An NDJSON chunk leaves its parser thread with each workspace's events
//! already in the events' file order ([`OrderedEvents`], built so by
//! [`ByName`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::by_name::{ByName, Footprints, OrderedEvents};
use super::route::Router;
use crate::event::ParsedEvent;
use crate::event::redact::without_secrets;
use crate::event::shapes::parse_event;
use crate::store::quarantine::Rejected;

/// Complete lines read from an NDJSON file.
pub struct RawChunk {
    /// Position of the chunk in its file (0, 1, 2…).
    pub index: u64,
    /// Line number (1-based) of the first line in `data`.
    pub first_line: u64,
    /// Bytes of the input file consumed when the chunk was cut (progress).
    pub offset: u64,
    /// Whole lines, each ending in a newline.
    pub data: Vec<u8>,
    /// A line refused by the reader, right after those in `data`.
    pub refused: Option<Refused>,
}

/// A line the reader refused without holding it whole: over
/// `max_line_bytes`, or cut by a break in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub line: u64,
    pub reason: String,
    /// The line's first bytes, for the quarantine.
    pub head: Vec<u8>,
}

/// The events and rejects of one chunk, covering lines `first_line..=last_line`.
pub struct ParsedChunk {
    pub index: u64,
    pub first_line: u64,
    pub last_line: u64,
    /// Bytes of the input file consumed when the chunk was cut (progress).
    pub offset: u64,
    pub events: BTreeMap<String, ByName>,
    /// The events once [`ParsedChunk::order_events`] turned them into
    /// batches in the events' file order.
    pub ordered: BTreeMap<String, OrderedEvents>,
    /// Input that could not be stored, kept in the default workspace's quarantine.
    pub rejected: Vec<Rejected>,
}

impl ParsedChunk {
    pub fn new(index: u64, first_line: u64) -> ParsedChunk {
        ParsedChunk {
            index,
            first_line,
            last_line: first_line.saturating_sub(1),
            offset: 0,
            events: BTreeMap::new(),
            ordered: BTreeMap::new(),
            rejected: Vec::new(),
        }
    }

    pub fn event_count(&self) -> usize {
        let building: usize = self.events.values().map(ByName::len).sum();
        building + self.ordered.values().map(|o| o.lines.len()).sum::<usize>()
    }

    /// Turns the events parsed so far into [`OrderedEvents`].
    pub fn order_events(&mut self) {
        for (workspace, events) in std::mem::take(&mut self.events) {
            let earlier = self.ordered.insert(workspace, events.finish());
            assert!(earlier.is_none(), "a chunk's events are ordered once");
        }
    }
}

/// The lines of `body` (newline-separated, the last one unterminated).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', body)
        .chain(std::iter::once(body.len()))
        .map(move |end| {
            let line = &body[start..end];
            start = end + 1;
            line
        })
}

/// Turns input lines and rows into a [`ParsedChunk`].
#[derive(Clone)]
pub struct ChunkParser {
    pub router: Arc<Router>,
    /// The file name used in messages and the quarantine's `source`.
    pub source: Arc<str>,
    /// When this import received the data (microseconds since the epoch).
    pub received_at: i64,
    /// Rows expected per chunk, to size the builders.
    pub rows_hint: usize,
    /// Longer NDJSON lines are refused (`max_line_bytes`).
    pub max_line_bytes: usize,
    /// What each workspace's groups took in the last chunk this parser
    /// read, to size the next chunk's builders.
    pub footprints: RefCell<HashMap<String, Footprints>>,
}

impl ChunkParser {
    /// Parses every line of an NDJSON chunk.
    pub fn parse_ndjson(&self, raw: RawChunk) -> ParsedChunk {
        self.parse_ndjson_lines(
            &raw.data,
            raw.index,
            raw.first_line,
            raw.offset,
            raw.refused,
        )
    }

    /// [`Self::parse_ndjson`], leaving the chunk's buffer to its owner (the
    /// reader takes it back for a later chunk).
    pub fn parse_ndjson_of(&self, raw: &mut RawChunk) -> ParsedChunk {
        let refused = raw.refused.take();
        self.parse_ndjson_lines(&raw.data, raw.index, raw.first_line, raw.offset, refused)
    }

    fn parse_ndjson_lines(
        &self,
        data: &[u8],
        index: u64,
        first_line: u64,
        offset: u64,
        refused: Option<Refused>,
    ) -> ParsedChunk {
        let mut chunk = ParsedChunk::new(index, first_line);
        chunk.offset = offset;
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        if !data.is_empty() {
            for (i, line) in lines(body).enumerate() {
                let line_no = first_line + i as u64;
                self.parse_line(&mut chunk, line, line_no);
                chunk.last_line = line_no;
            }
        }
        if let Some(refused) = refused {
            let head = String::from_utf8_lossy(&refused.head).into_owned();
            self.add(&mut chunk, Err(refused.reason), refused.line, || head);
            chunk.last_line = refused.line;
        }
        self.remember_footprints(&chunk);
        chunk.order_events();
        chunk
    }

    /// Keeps what `chunk`'s groups took, for the next chunk's builders.
    fn remember_footprints(&self, chunk: &ParsedChunk) {
        let mut footprints = self.footprints.borrow_mut();
        for (workspace, events) in &chunk.events {
            footprints.insert(workspace.clone(), events.footprints());
        }
    }

    fn parse_line(&self, chunk: &mut ParsedChunk, line: &[u8], line_no: u64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if line.len() > self.max_line_bytes {
            let reason = format!(
                "the line is {} bytes, over max_line_bytes ({} bytes)",
                line.len(),
                self.max_line_bytes
            );
            let head = &line[..line.len().min(super::lines::REFUSED_HEAD_BYTES)];
            let head = String::from_utf8_lossy(head).into_owned();
            self.add(chunk, Err(reason), line_no, || head);
            return;
        }
        match std::str::from_utf8(line) {
            Ok(text) => {
                let parsed = parse_event(text);
                self.add(chunk, parsed, line_no, || text.to_string());
            }
            Err(e) => {
                let reason = format!("not UTF-8 text ({e})");
                let raw = String::from_utf8_lossy(line).into_owned();
                self.add(chunk, Err(reason), line_no, || raw);
            }
        }
    }

    /// The chunk's events of `workspace`, started at the footprints of the
    /// last chunk's when it has none yet.
    fn group<'c>(&self, chunk: &'c mut ParsedChunk, workspace: &str) -> &'c mut ByName {
        if !chunk.events.contains_key(workspace) {
            // This chunk's footprints replace them when it is done.
            let earlier = self.footprints.borrow_mut().remove(workspace);
            let group = ByName::after(self.rows_hint, earlier.unwrap_or_default());
            chunk.events.insert(workspace.to_string(), group);
        }
        chunk.events.get_mut(workspace).expect("inserted above")
    }

    /// Routes one parsed event (or its parse error) into the chunk.
    pub fn add(
        &self,
        chunk: &mut ParsedChunk,
        parsed: Result<ParsedEvent, String>,
        line: u64,
        raw: impl FnOnce() -> String,
    ) {
        match parsed.and_then(|event| Ok((self.router.route(&event)?, event))) {
            Ok((workspace, event)) => {
                self.group(chunk, workspace)
                    .append(&event, line, self.received_at)
            }
            Err(reason) => chunk.rejected.push(Rejected {
                source: self.source.to_string(),
                line,
                reason,
                raw: without_secrets(&raw()),
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::config::Config;

    /// A parser of a file named `source` for the one workspace `shop`.
    pub(crate) fn parser(source: &str) -> ChunkParser {
        let config = Config::parse("[[workspace]]\nid = \"shop\"\n", "test", Path::new(""))
            .expect("a config");
        ChunkParser {
            router: Arc::new(Router::new(&config, None).expect("a router")),
            source: source.into(),
            received_at: 0,
            rows_hint: 4,
            max_line_bytes: 1 << 20,
            footprints: RefCell::default(),
        }
    }

    #[test]
    fn a_chunks_events_come_out_grouped_by_name_with_lines_and_seq_in_arrival_order() {
        let names = ["view", "cart", "view", "cart", "view"];
        let data: String = names
            .iter()
            .map(|n| format!("{{\"name\": \"{n}\", \"payload\": {{}}, \"user_id\": \"u\"}}\n"))
            .collect();
        let raw = RawChunk {
            index: 0,
            first_line: 10,
            offset: 0,
            data: data.into_bytes(),
            refused: None,
        };
        let chunk = parser("t.ndjson").parse_ndjson(raw);
        assert!(chunk.events.is_empty(), "ordered on the parser's thread");
        assert_eq!(chunk.event_count(), 5);
        let ordered = &chunk.ordered["shop"];
        let batches = ordered.numbered(100);
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let got_names = column("event_name");
        let got_names = got_names.as_any().downcast_ref::<StringArray>().unwrap();
        let seq = column("seq");
        let seq = seq.as_primitive::<Int64Type>();
        let rows: Vec<(&str, i64, i64)> = (0..batch.num_rows())
            .map(|i| (got_names.value(i), ordered.lines[i], seq.value(i)))
            .collect();
        // Each row keeps its own line, and seq counts lines from 100.
        assert_eq!(
            rows,
            [
                ("cart", 11, 101),
                ("cart", 13, 103),
                ("view", 10, 100),
                ("view", 12, 102),
                ("view", 14, 104),
            ]
        );
    }

    #[test]
    fn lines_split_at_every_newline_like_slice_split() {
        for body in [
            &b""[..],
            b"a",
            b"a\nb",
            b"a\n\nb\n",
            b"\n",
            b"{\"x\":1}\r\n{}",
        ] {
            let ours: Vec<&[u8]> = lines(body).collect();
            let std: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
            assert_eq!(ours, std, "{body:?}");
        }
    }
}
