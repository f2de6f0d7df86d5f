//! Reading input files: format detection, gzip, and cutting a stream into
//! chunks whose size is bounded whatever the file's size.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;

use super::chunk::{ChunkParser, ParsedChunk};
use crate::event::tabular::{ColumnKind, Columns};

/// Rows of CSV or Parquet per chunk.
pub const CHUNK_ROWS: usize = 50_000;

/// An input file format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Auto,
    Ndjson,
    Csv,
    Parquet,
}

/// Decides the format from the extension, else from the first bytes.
pub fn detect_format(path: &Path, requested: Format) -> io::Result<Format> {
    if requested != Format::Auto {
        return Ok(requested);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = name
        .strip_suffix(".gz")
        .unwrap_or(name)
        .to_ascii_lowercase();
    if [".ndjson", ".jsonl", ".json"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        return Ok(Format::Ndjson);
    }
    if name.ends_with(".csv") {
        return Ok(Format::Csv);
    }
    if name.ends_with(".parquet") {
        return Ok(Format::Parquet);
    }
    let mut head = [0u8; 4];
    let n = File::open(path)?.read(&mut head)?;
    if &head[..n] == b"PAR1" {
        return Ok(Format::Parquet);
    }
    let mut text = Vec::new();
    open_text(path, &Arc::new(AtomicU64::new(0)))?
        .take(4096)
        .read_to_end(&mut text)?;
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'{') {
        Format::Ndjson
    } else {
        Format::Csv
    })
}

/// Opens a text file, gunzipping it when it starts with gzip's magic bytes;
/// `read` counts the file bytes consumed, for progress.
pub fn open_text(path: &Path, read: &Arc<AtomicU64>) -> io::Result<Box<dyn Read + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = Counting {
        inner: io::Cursor::new(magic[..n].to_vec()).chain(file),
        read: read.clone(),
    };
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)),
        )))
    } else {
        Ok(Box::new(file))
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Parses a CSV file with a header row into chunks of [`CHUNK_ROWS`] rows.
pub fn read_csv_chunks(
    input: impl Read,
    consumed: &AtomicU64,
    parser: &ChunkParser,
    mut send: impl FnMut(ParsedChunk) -> bool,
) -> io::Result<()> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(invalid_data)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let columns = Columns::new(header).map_err(|e| invalid_data(format!("line 1: {e}")))?;
    let mut record = csv::StringRecord::new();
    let mut chunk = ParsedChunk::new(0, 2);
    let mut rows = 0;
    // The line of the last record read: each record's line is its own, and
    // past the one before it even when the file ends lines with a lone \r
    // (which the CSV reader does not count), so lines stay strictly
    // increasing, as resumable commits need.
    let mut last = 1;
    loop {
        let next = |line: u64| line.max(last + 1);
        let line = next(reader.position().line());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = next(record.position().map_or(line, |p| p.line()));
                last = line;
                let parsed = if record.len() == columns.len() {
                    columns.parse_row(|i| record.get(i))
                } else {
                    Err(format!(
                        "{} fields where the header has {}",
                        record.len(),
                        columns.len()
                    ))
                };
                parser.add(&mut chunk, parsed, line, || {
                    record.iter().collect::<Vec<_>>().join(",")
                });
                chunk.last_line = line;
            }
            Err(e) => {
                let line = next(e.position().map_or(line, |p| p.line()));
                last = line;
                let reason = format!("unreadable CSV: {e}");
                parser.add(&mut chunk, Err(reason), line, String::new);
                chunk.last_line = line;
            }
        }
        rows += 1;
        if rows % CHUNK_ROWS == 0 {
            chunk.offset = consumed.load(Ordering::Relaxed);
            let next = ParsedChunk::new(chunk.index + 1, chunk.last_line + 1);
            if !send(std::mem::replace(&mut chunk, next)) {
                return Ok(());
            }
        }
    }
    chunk.offset = consumed.load(Ordering::Relaxed);
    send(chunk);
    Ok(())
}

/// Parses a Parquet file whose columns are named as the events table's;
/// the "line" of a row is its 1-based row number.
pub fn read_parquet_chunks(
    path: &Path,
    parser: &ChunkParser,
    send: impl FnMut(ParsedChunk) -> bool,
) -> io::Result<()> {
    let file_bytes = path.metadata()?.len();
    read_parquet(File::open(path)?, file_bytes, parser, send)
}

/// [`read_parquet_chunks`] on any Parquet source of `file_bytes` bytes. The
/// parquet crate panics on some malformed files (found by fuzz/parquet_import:
/// a negative column chunk offset). The chunk ranges are checked before any
/// page is read, and any other panic of the reader is caught: such a file is
/// refused as not readable, like any other malformed file, instead of taking
/// the import down.
pub fn read_parquet(
    source: impl ChunkReader + 'static,
    file_bytes: u64,
    parser: &ChunkParser,
    send: impl FnMut(ParsedChunk) -> bool,
) -> io::Result<()> {
    let read = || read_parquet_unguarded(source, file_bytes, parser, send);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(invalid_data(format!(
            "not a readable Parquet file (the Parquet reader failed: {message})"
        )))
    })
}

fn read_parquet_unguarded(
    source: impl ChunkReader + 'static,
    file_bytes: u64,
    parser: &ChunkParser,
    mut send: impl FnMut(ParsedChunk) -> bool,
) -> io::Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(source).map_err(invalid_data)?;
    check_chunk_ranges(builder.metadata(), file_bytes)
        .map_err(|why| invalid_data(format!("not a readable Parquet file ({why})")))?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let reader = builder
        .with_batch_size(CHUNK_ROWS)
        .build()
        .map_err(invalid_data)?;
    let names: Vec<String> = arrow::record_batch::RecordBatchReader::schema(&reader)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let columns = Columns::new(names.clone()).map_err(invalid_data)?;
    let mut next_row = 1u64;
    for (index, batch) in reader.enumerate() {
        let batch = batch.map_err(invalid_data)?;
        let cells: Vec<Cells> = batch
            .columns()
            .iter()
            .zip(&names)
            .map(|(column, name)| Cells::of(column, name))
            .collect();
        let mut chunk = ParsedChunk::new(index as u64, next_row);
        for row in 0..batch.num_rows() {
            let value = |i: usize| cells[i].text(row);
            let line = next_row + row as u64;
            let parsed = match cells.iter().find_map(|c| c.refusal(row)) {
                Some(reason) => Err(reason.to_string()),
                None => columns.parse_row(value),
            };
            parser.add(&mut chunk, parsed, line, || row_as_json(&names, &value));
            chunk.last_line = line;
        }
        next_row += batch.num_rows() as u64;
        chunk.offset = file_bytes * (next_row - 1) / total_rows;
        if !send(chunk) {
            break;
        }
    }
    Ok(())
}

/// Whether every column chunk the footer describes lies within the file's
/// `file_bytes`: the reader asserts (panics) on a negative offset or size.
fn check_chunk_ranges(metadata: &ParquetMetaData, file_bytes: u64) -> Result<(), String> {
    for (group, row_group) in metadata.row_groups().iter().enumerate() {
        for (index, column) in row_group.columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let length = column.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(length).ok())
                .and_then(|(start, length)| start.checked_add(length));
            if end.is_none_or(|end| end > file_bytes) {
                return Err(format!(
                    "row group {group}, column {index}: chunk at offset {start} of {length} bytes \
                     lies outside the file's {file_bytes} bytes"
                ));
            }
        }
    }
    Ok(())
}

/// One Parquet column of a batch: its values as text, or, when its type is
/// not what its name calls for, the reason every row with a value in it is
/// refused. Values are never coerced (a float `sent_at` is not a time).
enum Cells {
    Text(StringArray),
    Refused {
        reason: String,
        values: Arc<dyn Array>,
    },
}

impl Cells {
    fn of(column: &Arc<dyn Array>, name: &str) -> Cells {
        let kind = ColumnKind::of(name);
        let refuse = |why: String| Cells::Refused {
            reason: format!("column {name} holds {}: {why}", column.data_type()),
            values: column.clone(),
        };
        if !accepts(kind, column.data_type()) {
            return refuse(format!("{name} must hold {}", kind.describe()));
        }
        match cast(column, &DataType::Utf8) {
            Ok(text) => match text.as_any().downcast_ref::<StringArray>() {
                Some(text) => Cells::Text(text.clone()),
                None => refuse("it cannot be read as text".into()),
            },
            Err(e) => refuse(format!(
                "it cannot be read as text ({e}); store nested values as JSON text"
            )),
        }
    }

    fn text(&self, row: usize) -> Option<&str> {
        match self {
            Cells::Text(text) => text.is_valid(row).then(|| text.value(row)),
            Cells::Refused { .. } => None,
        }
    }

    /// Why `row` is refused: it has a value in a column of the wrong type.
    fn refusal(&self, row: usize) -> Option<&str> {
        match self {
            Cells::Refused { reason, values } if values.is_valid(row) => Some(reason),
            _ => None,
        }
    }
}

/// Whether a Parquet column of `data_type` may feed a column of `kind`.
fn accepts(kind: ColumnKind, data_type: &DataType) -> bool {
    let text = match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        DataType::Dictionary(_, values) => accepts(ColumnKind::Text, values),
        _ => false,
    };
    let time = matches!(
        data_type,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    );
    match kind {
        ColumnKind::Free => true,
        ColumnKind::Text => text,
        ColumnKind::Id => text || data_type.is_integer(),
        ColumnKind::Time => text || time || data_type.is_integer(),
        ColumnKind::Bool => text || matches!(data_type, DataType::Boolean),
    }
}

fn row_as_json<'a>(names: &[String], value: &impl Fn(usize) -> Option<&'a str>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| value(i).map(|v| (n.clone(), serde_json::Value::from(v))))
        .collect();
    serde_json::Value::Object(object).to_string()
}

fn invalid_data(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> ChunkParser {
        crate::import::chunk::tests::parser("t.csv")
    }

    /// (line, reason) of each rejected row.
    type Rejections = Vec<(u64, String)>;

    /// Every rejected row, and the chunks' (first, last) lines.
    fn rejected(csv: &[u8]) -> (Rejections, Vec<(u64, u64)>) {
        let mut rejected = Vec::new();
        let mut ranges = Vec::new();
        read_csv_chunks(csv, &AtomicU64::new(0), &parser(), |chunk| {
            ranges.push((chunk.first_line, chunk.last_line));
            rejected.extend(chunk.rejected.into_iter().map(|r| (r.line, r.reason)));
            true
        })
        .expect("read");
        (rejected, ranges)
    }

    #[test]
    fn an_unreadable_row_is_reported_at_its_own_line() {
        // Found by fuzz/csv_import: a row that is not UTF-8 was reported one
        // line late, after the row that followed it. (A lone \r ends the
        // record; the one after it is numbered as the next line.)
        let csv = b"event_name,user_id\ncart,u\xff\r,\nok,u2\n";
        let (rejected, ranges) = rejected(csv);
        let lines: Vec<u64> = rejected.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3], "{rejected:?}");
        assert!(rejected[0].1.contains("unreadable CSV"), "{rejected:?}");
        assert_eq!(ranges, [(2, 4)]);
    }

    #[test]
    fn records_ended_by_a_lone_cr_get_lines_of_their_own() {
        // Found by fuzz/csv_import: with \r line ends the CSV reader counts
        // every record on line 1, and a resumed import skips rows whose line
        // an earlier commit already covered.
        let csv = b"event_name,user_id\re1,u1\r,\re3,u3\r";
        let (rejected, ranges) = rejected(csv);
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [3]);
        assert_eq!(ranges, [(2, 4)]);
        let mut lines = Vec::new();
        read_csv_chunks(&csv[..], &AtomicU64::new(0), &parser(), |chunk| {
            lines.extend(chunk.events.values().flat_map(|b| b.lines().to_vec()));
            true
        })
        .expect("read");
        assert_eq!(lines, [2i64, 4]);
    }
}
