//! The fire ledger: one Delta table per workspace holding trigger runs,
//! their matches and their planned deliveries. A committed run, its matches,
//! its deliveries and its cursor move land in one commit
//! (`txn("trigger:<name>", watermark)`, DESIGN.md invariant 2), so the
//! cursor is simply that application transaction's version.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

static LEDGER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let number = |name: &str| Field::new(name, DataType::Int64, true);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        text("record", false),
        text("run_id", false),
        text("trigger", false),
        number("from_version"),
        number("to_version"),
        time("started_at"),
        time("finished_at"),
        time("clock"),
        number("matched"),
        number("resolved"),
        number("unresolved"),
        number("dropped"),
        text("error", true),
        text("match_key", true),
        text("email", true),
        text("user_id", true),
        text("client_id", true),
        text("data", true),
        text("delivery_id", true),
        text("flow", true),
        text("action", true),
        text("variant", true),
        number("branch"),
        text("status", true),
        text("reason", true),
        text("payload", true),
    ]))
});

/// The schema of a workspace's `ledger` table.
pub fn ledger_schema() -> SchemaRef {
    LEDGER_SCHEMA.clone()
}

/// The application id under which a trigger's cursor is committed.
pub fn cursor_app_id(trigger: &str) -> String {
    format!("trigger:{trigger}")
}

/// One trigger run, committed or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub trigger: String,
    pub from_version: i64,
    pub to_version: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// The run's clock (`--now`, else the time it started): identity TTL
    /// and frequency caps are measured against it.
    pub clock: i64,
    pub matched: i64,
    pub resolved: i64,
    pub unresolved: i64,
    pub dropped: i64,
    pub error: Option<String>,
}

/// One match: the contact a run fires for, and the row's other columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRecord {
    pub match_key: String,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The match's other columns as a JSON object.
    pub data: String,
}

/// One planned delivery: an action a flow takes for one contact in one run,
/// or the record of why it does not (`held_out`, `filtered`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Deterministic (DESIGN.md invariant 4): the same for a re-run window.
    pub delivery_id: String,
    pub flow: String,
    pub action: String,
    pub match_key: String,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The experiment arm (`holdout` for the held-out), if the flow has one.
    pub variant: Option<String>,
    /// The branch taken (its index in the flow file).
    pub branch: Option<i64>,
    /// `pending`, `held_out` or `filtered`.
    pub status: String,
    /// Why a delivery is held out or filtered.
    pub reason: Option<String>,
    /// The match's data (JSON object).
    pub data: String,
    /// What to do, rendered when planned (JSON; see `deliver`). Never holds a secret.
    pub payload: Option<String>,
}

/// The ledger rows of one run: the run itself, its matches, its deliveries.
pub fn run_batch(
    run: &RunRecord,
    matches: &[MatchRecord],
    deliveries: &[DeliveryRecord],
) -> RecordBatch {
    let rows = 1 + matches.len() + deliveries.len();
    let mut b = Builders::new(rows);
    b.push_common("run", run);
    b.push_contact(None, None, None, None, None);
    b.push_delivery(None);
    for m in matches {
        b.push_common("match", run);
        b.push_contact(
            Some(&m.match_key),
            m.email.as_deref(),
            m.user_id.as_deref(),
            m.client_id.as_deref(),
            Some(&m.data),
        );
        b.push_delivery(None);
    }
    for d in deliveries {
        b.push_common("delivery", run);
        b.push_contact(
            Some(&d.match_key),
            d.email.as_deref(),
            d.user_id.as_deref(),
            d.client_id.as_deref(),
            Some(&d.data),
        );
        b.push_delivery(Some(d));
    }
    b.finish()
}

struct Builders {
    record: StringBuilder,
    run_id: StringBuilder,
    trigger: StringBuilder,
    from_version: Int64Builder,
    to_version: Int64Builder,
    started_at: TimestampMicrosecondBuilder,
    finished_at: TimestampMicrosecondBuilder,
    clock: TimestampMicrosecondBuilder,
    matched: Int64Builder,
    resolved: Int64Builder,
    unresolved: Int64Builder,
    dropped: Int64Builder,
    error: StringBuilder,
    match_key: StringBuilder,
    email: StringBuilder,
    user_id: StringBuilder,
    client_id: StringBuilder,
    data: StringBuilder,
    delivery_id: StringBuilder,
    flow: StringBuilder,
    action: StringBuilder,
    variant: StringBuilder,
    branch: Int64Builder,
    status: StringBuilder,
    reason: StringBuilder,
    payload: StringBuilder,
}

impl Builders {
    fn new(rows: usize) -> Builders {
        let text = || StringBuilder::with_capacity(rows, rows * 24);
        let number = || Int64Builder::with_capacity(rows);
        let time = || TimestampMicrosecondBuilder::with_capacity(rows);
        Builders {
            record: text(),
            run_id: text(),
            trigger: text(),
            from_version: number(),
            to_version: number(),
            started_at: time(),
            finished_at: time(),
            clock: time(),
            matched: number(),
            resolved: number(),
            unresolved: number(),
            dropped: number(),
            error: text(),
            match_key: text(),
            email: text(),
            user_id: text(),
            client_id: text(),
            data: text(),
            delivery_id: text(),
            flow: text(),
            action: text(),
            variant: text(),
            branch: number(),
            status: text(),
            reason: text(),
            payload: text(),
        }
    }

    fn push_contact(
        &mut self,
        match_key: Option<&str>,
        email: Option<&str>,
        user_id: Option<&str>,
        client_id: Option<&str>,
        data: Option<&str>,
    ) {
        self.match_key.append_option(match_key);
        self.email.append_option(email);
        self.user_id.append_option(user_id);
        self.client_id.append_option(client_id);
        self.data.append_option(data);
    }

    fn push_delivery(&mut self, delivery: Option<&DeliveryRecord>) {
        let text = |f: fn(&DeliveryRecord) -> Option<&str>| delivery.and_then(f);
        self.delivery_id
            .append_option(text(|d| Some(&d.delivery_id)));
        self.flow.append_option(text(|d| Some(&d.flow)));
        self.action.append_option(text(|d| Some(&d.action)));
        self.variant.append_option(text(|d| d.variant.as_deref()));
        self.branch.append_option(delivery.and_then(|d| d.branch));
        self.status.append_option(text(|d| Some(&d.status)));
        self.reason.append_option(text(|d| d.reason.as_deref()));
        self.payload.append_option(text(|d| d.payload.as_deref()));
    }

    /// The columns a run and its matches share; counts only on the run row.
    fn push_common(&mut self, record: &str, run: &RunRecord) {
        let is_run = record == "run";
        self.record.append_value(record);
        self.run_id.append_value(&run.run_id);
        self.trigger.append_value(&run.trigger);
        self.from_version.append_value(run.from_version);
        self.to_version.append_value(run.to_version);
        self.started_at.append_value(run.started_at);
        self.finished_at.append_value(run.finished_at);
        self.clock.append_value(run.clock);
        for (builder, value) in [
            (&mut self.matched, run.matched),
            (&mut self.resolved, run.resolved),
            (&mut self.unresolved, run.unresolved),
            (&mut self.dropped, run.dropped),
        ] {
            builder.append_option(is_run.then_some(value));
        }
        self.error
            .append_option(run.error.as_deref().filter(|_| is_run));
    }

    fn finish(mut self) -> RecordBatch {
        let utc = |b: &mut TimestampMicrosecondBuilder| -> ArrayRef {
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.record.finish()),
            Arc::new(self.run_id.finish()),
            Arc::new(self.trigger.finish()),
            Arc::new(self.from_version.finish()),
            Arc::new(self.to_version.finish()),
            utc(&mut self.started_at),
            utc(&mut self.finished_at),
            utc(&mut self.clock),
            Arc::new(self.matched.finish()),
            Arc::new(self.resolved.finish()),
            Arc::new(self.unresolved.finish()),
            Arc::new(self.dropped.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.match_key.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.client_id.finish()),
            Arc::new(self.data.finish()),
            Arc::new(self.delivery_id.finish()),
            Arc::new(self.flow.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.branch.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.payload.finish()),
        ];
        RecordBatch::try_new(ledger_schema(), columns)
            .expect("every column is built to the ledger schema")
    }
}
