//! The erasures table (`<root>/<workspace>/erasures/`): one row per
//! `tripwire erase`, with how many identifiers it was given and how much it
//! erased where. Counts only: the identifiers themselves are not kept.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The counts of one erasure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    pub erasure_id: String,
    pub erased_at: i64,
    /// Identifiers given, and found linked to them through identify calls.
    pub identifiers: i64,
    pub events: i64,
    pub quarantine: i64,
    pub matches: i64,
    /// Deliveries whose contact and payload were erased (ids and statuses kept).
    pub deliveries: i64,
    /// Lines removed from the files `file` actions wrote.
    pub file_lines: i64,
}

static ERASURES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let count = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("erasure_id", DataType::Utf8, false),
        Field::new(
            "erased_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        count("identifiers"),
        count("events"),
        count("quarantine"),
        count("matches"),
        count("deliveries"),
        count("file_lines"),
    ]))
});

pub fn erasures_schema() -> SchemaRef {
    ERASURES_SCHEMA.clone()
}

/// One erasure as a row of the table.
pub fn erasure_batch(erasure: &Erasure) -> RecordBatch {
    let count = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![erasure.erasure_id.clone()])),
        Arc::new(TimestampMicrosecondArray::from(vec![erasure.erased_at]).with_timezone("UTC")),
        count(erasure.identifiers),
        count(erasure.events),
        count(erasure.quarantine),
        count(erasure.matches),
        count(erasure.deliveries),
        count(erasure.file_lines),
    ];
    RecordBatch::try_new(erasures_schema(), columns)
        .expect("every column is built to the erasures schema")
}
