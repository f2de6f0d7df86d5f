//! The quarantine table: input that could not be stored as an event, kept
//! with where it came from and why, so nothing a sender sent is lost.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(
            "received_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
});

/// The schema of a workspace's `quarantine` table.
pub fn quarantine_schema() -> SchemaRef {
    QUARANTINE_SCHEMA.clone()
}

/// One rejected input: `source` says where (e.g. `events.ndjson:12`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub source: String,
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

/// Builds a quarantine batch from rejected inputs received at `received_at`.
pub fn quarantine_batch(rejected: &[&Rejected], received_at: i64) -> RecordBatch {
    let mut time = TimestampMicrosecondBuilder::with_capacity(rejected.len());
    let mut source = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = StringBuilder::new();
    for r in rejected {
        time.append_value(received_at);
        source.append_value(format!("{}:{}", r.source, r.line));
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish().with_timezone("UTC")),
        Arc::new(source.finish()),
        Arc::new(reason.finish()),
        Arc::new(raw.finish()),
    ];
    RecordBatch::try_new(quarantine_schema(), columns)
        .expect("every column is built to the quarantine schema")
}
