//! The `events` table's Arrow schema (docs/reference.md "Tables") and the builder that turns
//! parsed events into a `RecordBatch`.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Array, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::ParsedEvent;

/// The column stamping each row with the version of the events table's
/// commit that added it (docs/architecture.md "Windows"). Writers leave it
/// null; `store::commit` fills it in as it commits.
pub const COMMIT_VERSION: &str = "commit_version";

static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        text("event_id", false),
        text("type", false),
        text("event_name", true),
        text("client_id", true),
        text("user_id", true),
        text("email", true),
        time("sent_at"),
        time("received_at"),
        text("properties", false),
        text("traits", true),
        Field::new("requires_identity", DataType::Boolean, false),
        text("envelope", true),
        Field::new(COMMIT_VERSION, DataType::Int64, true),
    ]))
});

/// The schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    EVENTS_SCHEMA.clone()
}

/// Accumulates events column by column; `seq` is assigned at `finish`, when
/// the writer knows the batch's place in ingest order.
pub struct EventBatchBuilder {
    event_id: StringBuilder,
    kind: StringBuilder,
    event_name: StringBuilder,
    client_id: StringBuilder,
    user_id: StringBuilder,
    email: StringBuilder,
    sent_at: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    properties: StringBuilder,
    traits: StringBuilder,
    requires_identity: BooleanBuilder,
    envelope: StringBuilder,
    /// Input line (or row) of each event, for resumable imports.
    lines: Vec<u64>,
}

/// The text columns of [`EventBatchBuilder`], in [`Footprint`]'s order.
const TEXT_COLUMNS: usize = 9;

/// Where `properties`, the longest text, is among [`Footprint`]'s texts.
pub const PROPERTIES_TEXT: usize = 6;

/// What a builder's rows took: rows, and bytes of each text column
/// (`event_id`, `type`, `event_name`, `client_id`, `user_id`, `email`,
/// `properties`, `traits`, `envelope`). A builder started at the footprint
/// of rows like the ones it will hold does not grow: growing copies all it
/// holds to new memory, which is faulted in page by page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub rows: usize,
    pub text_bytes: [usize; TEXT_COLUMNS],
}

impl Footprint {
    /// A guess for `rows` events never seen: 128 bytes of properties and 16
    /// of every other text.
    pub fn guessed(rows: usize) -> Footprint {
        let mut text_bytes = [rows * 16; TEXT_COLUMNS];
        text_bytes[PROPERTIES_TEXT] = rows * 128;
        Footprint { rows, text_bytes }
    }

    /// This footprint with a quarter more room, for rows that vary.
    pub fn with_headroom(&self) -> Footprint {
        let more = |n: usize| n + n / 4;
        Footprint {
            rows: more(self.rows),
            text_bytes: self.text_bytes.map(more),
        }
    }
}

impl EventBatchBuilder {
    pub fn with_capacity(rows: usize) -> EventBatchBuilder {
        EventBatchBuilder::with_footprint(&Footprint::guessed(rows))
    }

    /// A builder with room for `footprint`.
    pub fn with_footprint(footprint: &Footprint) -> EventBatchBuilder {
        let rows = footprint.rows;
        let text = |column: usize| StringBuilder::with_capacity(rows, footprint.text_bytes[column]);
        EventBatchBuilder {
            event_id: text(0),
            kind: text(1),
            event_name: text(2),
            client_id: text(3),
            user_id: text(4),
            email: text(5),
            sent_at: TimestampMicrosecondBuilder::with_capacity(rows),
            received_at: TimestampMicrosecondBuilder::with_capacity(rows),
            properties: text(PROPERTIES_TEXT),
            traits: text(7),
            requires_identity: BooleanBuilder::with_capacity(rows),
            envelope: text(8),
            lines: Vec::with_capacity(rows),
        }
    }

    /// What the rows appended so far take.
    pub fn footprint(&self) -> Footprint {
        let texts = [
            &self.event_id,
            &self.kind,
            &self.event_name,
            &self.client_id,
            &self.user_id,
            &self.email,
            &self.properties,
            &self.traits,
            &self.envelope,
        ];
        Footprint {
            rows: self.len(),
            text_bytes: texts.map(|builder| builder.values_slice().len()),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The input line of each appended event, in order.
    pub fn lines(&self) -> &[u64] {
        &self.lines
    }

    /// Appends one event read from input `line`, received at `received_at`
    /// (microseconds); a missing `event_id` becomes a new UUIDv7.
    pub fn append(&mut self, event: &ParsedEvent, line: u64, received_at: i64) {
        match &event.event_id {
            Some(id) => self.event_id.append_value(id),
            None => self.event_id.append_value(uuid::Uuid::now_v7().to_string()),
        }
        self.kind.append_value(event.kind.as_str());
        self.event_name.append_option(event.event_name.as_deref());
        self.client_id.append_option(event.client_id.as_deref());
        self.user_id.append_option(event.user_id.as_deref());
        self.email.append_option(event.email.as_deref());
        self.sent_at
            .append_value(event.sent_at.unwrap_or(received_at));
        self.received_at.append_value(received_at);
        self.properties
            .append_value(event.properties.as_deref().unwrap_or("{}"));
        self.traits.append_option(event.traits.as_deref());
        self.requires_identity
            .append_value(event.requires_identity.unwrap_or(true));
        self.envelope.append_option(event.envelope.as_deref());
        self.lines.push(line);
    }

    /// Builds the batch, numbering rows `first_seq, first_seq + 1, …`.
    pub fn finish(self, first_seq: i64) -> RecordBatch {
        let rows = self.len() as i64;
        self.finish_with_seq(Int64Array::from_iter_values(first_seq..first_seq + rows))
    }

    /// Builds the batch with `seq` as given (one per row).
    pub fn finish_with_seq(mut self, seq: Int64Array) -> RecordBatch {
        let rows = self.len();
        let utc = |mut b: TimestampMicrosecondBuilder| -> ArrayRef {
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(seq),
            Arc::new(self.event_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.client_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.email.finish()),
            utc(self.sent_at),
            utc(self.received_at),
            Arc::new(self.properties.finish()),
            Arc::new(self.traits.finish()),
            Arc::new(self.requires_identity.finish()),
            Arc::new(self.envelope.finish()),
            Arc::new(Int64Array::new_null(rows)),
        ];
        RecordBatch::try_new(events_schema(), columns)
            .expect("every column is built to the events schema")
    }
}
