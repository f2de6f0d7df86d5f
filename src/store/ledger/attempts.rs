//! The attempts table (`<root>/<workspace>/attempts/`): an append-only
//! history of every try of every delivery, and of every `redeliver` reset.
//! A delivery's status is its latest row's (by `attempt`), else its planned
//! status in the ledger.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Where a delivery stands after one row of its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Reset by `redeliver`: due now, its backoff and retry period restart.
    Pending,
    Delivered,
    /// Failed for now; tried again at `next_attempt_at`.
    Failed,
    /// Refused, or failing for the whole retry period: only `redeliver` revives it.
    Dead,
    /// Held over a flow's `max_deliveries_per_run`, then discarded by an
    /// operator: never sent.
    Discarded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Discarded => "discarded",
        }
    }
}

static ATTEMPTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let time = |name: &str, nullable: bool| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            nullable,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("delivery_id", DataType::Utf8, false),
        Field::new("attempt", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("http_status", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        time("attempted_at", false),
        time("next_attempt_at", true),
    ]))
});

/// The schema of a workspace's `attempts` table.
pub fn attempts_schema() -> SchemaRef {
    ATTEMPTS_SCHEMA.clone()
}

/// One row of a delivery's history.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub delivery_id: String,
    /// This row's place in the delivery's history (1, 2, …; resets count),
    /// which orders it: the latest row is the one with the highest.
    pub attempt: i64,
    pub status: Status,
    /// The receiver's answer, for webhooks that got one.
    pub http_status: Option<i64>,
    pub error: Option<String>,
    /// Microseconds since the epoch (the worker's injected clock).
    pub attempted_at: i64,
    /// When a `failed` delivery is due again (microseconds).
    pub next_attempt_at: Option<i64>,
}

/// The rows as one batch of the attempts schema.
pub fn attempts_batch(rows: &[AttemptRecord]) -> RecordBatch {
    let n = rows.len();
    let mut delivery_id = StringBuilder::with_capacity(n, n * 32);
    let mut attempt = Int64Builder::with_capacity(n);
    let mut status = StringBuilder::with_capacity(n, n * 8);
    let mut http_status = Int64Builder::with_capacity(n);
    let mut error = StringBuilder::with_capacity(n, 0);
    let mut attempted_at = TimestampMicrosecondBuilder::with_capacity(n);
    let mut next_attempt_at = TimestampMicrosecondBuilder::with_capacity(n);
    for row in rows {
        delivery_id.append_value(&row.delivery_id);
        attempt.append_value(row.attempt);
        status.append_value(row.status.as_str());
        http_status.append_option(row.http_status);
        error.append_option(row.error.as_deref());
        attempted_at.append_value(row.attempted_at);
        next_attempt_at.append_option(row.next_attempt_at);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(delivery_id.finish()),
        Arc::new(attempt.finish()),
        Arc::new(status.finish()),
        Arc::new(http_status.finish()),
        Arc::new(error.finish()),
        Arc::new(attempted_at.finish().with_timezone("UTC")),
        Arc::new(next_attempt_at.finish().with_timezone("UTC")),
    ];
    RecordBatch::try_new(attempts_schema(), columns)
        .expect("every column is built to the attempts schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_a_batch_of_the_schema() {
        let row = AttemptRecord {
            delivery_id: "d1".into(),
            attempt: 1,
            status: Status::Failed,
            http_status: Some(500),
            error: Some("HTTP 500".into()),
            attempted_at: 1,
            next_attempt_at: Some(2),
        };
        let batch = attempts_batch(&[row.clone(), row]);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), attempts_schema());
    }
}
