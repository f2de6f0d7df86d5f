//! Late identity (docs/reference.md "Identity"): a row that requires an
//! identity and has none waits, for up to the trigger's
//! `wait_for_identity`, as a `pending` row of the ledger (committed with the
//! run that deferred it, so it is as durable as the run). Each later run
//! decodes the trigger's open pending rows back into rows of its query,
//! resolves them with its own rows, and settles them: `resolved` (they fire
//! with that run, once) or `expired` (their wait is over; dropped and
//! counted).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches, interleave_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;

use super::resolve::json_lines;
use crate::sql::{QueryError, delta_provider, engine, new_context};
use crate::store::TableKind;
use crate::store::ledger::{PendingRecord, id_of};

/// `schema` with every field nullable: pending rows decoded from JSON may
/// lack a column the query returns today.
pub fn nullable(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The trigger's pending rows that no run has settled yet, oldest first.
pub async fn open(ledger: &DeltaTable, trigger: &str) -> Result<Vec<PendingRecord>, QueryError> {
    let mut open = open_all(ledger, &[trigger]).await?;
    Ok(open.remove(trigger).unwrap_or_default())
}

/// Each of `triggers`' unsettled pending rows, oldest first, in one read of
/// the ledger (a tick's triggers share it).
pub async fn open_all(
    ledger: &DeltaTable,
    triggers: &[&str],
) -> Result<HashMap<String, Vec<PendingRecord>>, QueryError> {
    if triggers.is_empty() {
        return Ok(HashMap::new());
    }
    let mut open: HashMap<String, Vec<PendingRecord>> = HashMap::new();
    for row in open_rows(ledger, Some(triggers)).await? {
        open.entry(row.trigger).or_default().push(row.record);
    }
    Ok(open)
}

/// An unsettled pending row with its trigger and the clock of the run that
/// deferred it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    pub trigger: String,
    pub clock: i64,
    pub record: PendingRecord,
}

/// The unsettled pending rows of `triggers` (every trigger's when `None`),
/// by trigger, then oldest first.
pub async fn open_rows(
    ledger: &DeltaTable,
    triggers: Option<&[&str]>,
) -> Result<Vec<OpenRow>, QueryError> {
    let ctx = new_context()?;
    let rows = delta_provider(&ctx, Some(ledger.clone()), TableKind::Ledger).await?;
    ctx.register_table("ledger", rows).map_err(engine)?;
    let only = match triggers {
        Some(triggers) => format!(
            "AND trigger IN ({})",
            triggers
                .iter()
                .map(|n| format!("'{}'", n.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let sql = format!(
        "SELECT pending_id, row, CAST(wait_until AS BIGINT) AS wait_until, email, user_id, client_id,
                trigger, CAST(clock AS BIGINT) AS clock
         FROM ledger p
         WHERE kind = 'pending' {only}
           AND NOT EXISTS (SELECT 1 FROM ledger s WHERE s.kind = 'settled'
                           AND s.trigger = p.trigger AND s.pending_id = p.pending_id)
         ORDER BY trigger, clock, pending_id"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let mut open = Vec::new();
    for batch in &batches {
        open.extend(open_rows_in(batch, 0..batch.num_rows())?);
    }
    Ok(open)
}

/// The open rows at `rows` of `batch`, its columns read by name (`trigger`,
/// `clock`, `pending_id`, `row`, `wait_until`, `email`, `user_id`,
/// `client_id`; a column it lacks reads as null): the whole read's answer
/// and a followed ledger file decode alike.
pub fn open_rows_in(
    batch: &RecordBatch,
    rows: impl Iterator<Item = usize>,
) -> Result<Vec<OpenRow>, QueryError> {
    let column = |name: &str, to: &DataType| -> Result<Option<Arc<dyn Array>>, QueryError> {
        batch
            .column_by_name(name)
            .map(|c| cast(c, to).map_err(|e| QueryError::Engine(e.to_string())))
            .transpose()
    };
    let text = |name: &str| column(name, &DataType::Utf8);
    let number = |name: &str| column(name, &DataType::Int64);
    let (trigger, id, row) = (text("trigger")?, text("pending_id")?, text("row")?);
    let (email, user, client) = (text("email")?, text("user_id")?, text("client_id")?);
    let (wait_until, clock) = (number("wait_until")?, number("clock")?);
    let string = |column: &Option<Arc<dyn Array>>, i: usize| {
        column
            .as_ref()
            .filter(|c| c.is_valid(i))
            .map(|c| c.as_string::<i32>().value(i).to_string())
    };
    let int = |column: &Option<Arc<dyn Array>>, i: usize| {
        column
            .as_ref()
            .filter(|c| c.is_valid(i))
            .map_or(0, |c| c.as_primitive::<Int64Type>().value(i))
    };
    Ok(rows
        .map(|i| OpenRow {
            trigger: string(&trigger, i).unwrap_or_default(),
            clock: int(&clock, i),
            record: PendingRecord {
                pending_id: string(&id, i).unwrap_or_default(),
                row: string(&row, i).unwrap_or_else(|| "{}".into()),
                wait_until: int(&wait_until, i),
                email: string(&email, i),
                user_id: string(&user, i),
                client_id: string(&client, i),
            },
        })
        .collect())
}

/// The `pending` rows decoded into rows of `schema`; the indices (into
/// `pending`) of those that decode, in order. A row that no longer decodes
/// (the query changed its columns' types) is left out.
pub fn decode<R: Borrow<PendingRecord>>(
    pending: &[R],
    schema: &SchemaRef,
) -> (Vec<RecordBatch>, Vec<usize>) {
    if let Some(batch) = decode_together(pending, schema) {
        return (vec![batch], (0..pending.len()).collect());
    }
    let mut batches = Vec::new();
    let mut decoded = Vec::new();
    for (i, record) in pending.iter().enumerate() {
        if let Ok(batch) = decode_one(&record.borrow().row, schema) {
            batches.push(batch);
            decoded.push(i);
        }
    }
    // One batch either way: resolution's later steps pay per batch.
    match concat_batches(schema, &batches) {
        Ok(one) if !batches.is_empty() => (vec![one], decoded),
        _ => (batches, decoded),
    }
}

/// Every row of `pending` decoded into one batch, when each is one whole
/// object of `schema` (as a run writes them); `None` sends the caller row
/// by row, to leave out those that do not decode. A batch per row had
/// made each later step of resolution pay per row what it pays per batch:
/// a store with 84k rows waiting ran a trigger in 1.5 s; the row-by-row
/// path joins its rows into one batch too.
fn decode_together<R: Borrow<PendingRecord>>(
    pending: &[R],
    schema: &SchemaRef,
) -> Option<RecordBatch> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(pending.len().max(1))
        .build_decoder()
        .ok()?;
    for (i, record) in pending.iter().enumerate() {
        let row = record.borrow().row.as_bytes();
        let whole = decoder.decode(row).ok()? == row.len()
            && !decoder.has_partial_record()
            && decoder.len() == i + 1;
        if !whole {
            return None;
        }
    }
    decoder
        .flush()
        .ok()?
        .filter(|batch| batch.num_rows() == pending.len())
}

fn decode_one(row: &str, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut reader = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(1)
        .build(Cursor::new(row.as_bytes()))?;
    reader
        .next()
        .transpose()?
        .filter(|b| b.num_rows() == 1)
        .ok_or_else(|| arrow::error::ArrowError::JsonError("not one row".into()))
}

/// The rows at `positions` of the concatenated `batches` (a resolution's
/// rows), without tripwire's own columns: as a batch, and each as a JSON
/// object of the query's columns.
fn chosen_rows(
    batches: &[RecordBatch],
    positions: &[usize],
) -> Result<Option<(RecordBatch, Vec<String>)>, arrow::error::ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let keep: Vec<usize> = first
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.name().starts_with("__tripwire"))
        .map(|(i, _)| i)
        .collect();
    let kept = batches
        .iter()
        .map(|batch| batch.project(&keep))
        .collect::<Result<Vec<_>, _>>()?;
    // Only the chosen rows are copied.
    let picks = batch_and_row(&kept, positions);
    let chosen = interleave_record_batch(&kept.iter().collect::<Vec<_>>(), &picks)?;
    let lines = json_lines(&chosen)?;
    Ok(Some((chosen, lines)))
}

/// Each position in the concatenated `batches` as (batch, row in it).
fn batch_and_row(batches: &[RecordBatch], positions: &[usize]) -> Vec<(usize, usize)> {
    let starts: Vec<usize> = batches
        .iter()
        .scan(0, |start, batch| {
            let this = *start;
            *start += batch.num_rows();
            Some(this)
        })
        .collect();
    positions
        .iter()
        .map(|&position| {
            // The last batch starting at or before it (empty ones share a start).
            let batch = starts.partition_point(|&start| start <= position) - 1;
            (batch, position - starts[batch])
        })
        .collect()
}

/// The pending rows a run defers: the rows at `positions` of its
/// resolution's `rows`, with ids from the run and their place in it.
pub fn deferred(
    rows: &[RecordBatch],
    positions: &[usize],
    run_id: &str,
    wait_until: i64,
) -> Result<Vec<PendingRecord>, arrow::error::ArrowError> {
    let Some((chosen, encoded)) = chosen_rows(rows, positions)? else {
        return Ok(Vec::new());
    };
    let (email, user_id, client_id) = (
        Contact::of(&chosen, "email")?,
        Contact::of(&chosen, "user_id")?,
        Contact::of(&chosen, "client_id")?,
    );
    Ok(positions
        .iter()
        .zip(encoded)
        .enumerate()
        .map(|(at, (position, row))| PendingRecord {
            pending_id: id_of(&[run_id, &position.to_string()]),
            email: email.text(at),
            user_id: user_id.text(at),
            client_id: client_id.text(at),
            row,
            wait_until,
        })
        .collect())
}

/// The columns of one name in a run's rows, read as the row's JSON object
/// reads that key: the last of them with a value in the row (the JSON
/// writer leaves nulls out, and an object keeps the last of a repeated
/// key), and only text (a number is not the contact's text).
struct Contact(Vec<ContactColumn>);

enum ContactColumn {
    Text(arrow::array::StringArray),
    Other(arrow::array::ArrayRef),
}

impl Contact {
    fn of(batch: &RecordBatch, name: &str) -> Result<Contact, arrow::error::ArrowError> {
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(field, _)| field.name() == name)
            .map(|(field, column)| {
                let text = match field.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
                    DataType::Dictionary(_, values) => matches!(
                        **values,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ),
                    _ => false,
                };
                Ok(match text {
                    true => ContactColumn::Text(
                        cast(column, &DataType::Utf8)?.as_string::<i32>().clone(),
                    ),
                    false => ContactColumn::Other(Arc::clone(column)),
                })
            })
            .collect::<Result<_, arrow::error::ArrowError>>()?;
        Ok(Contact(columns))
    }

    fn text(&self, row: usize) -> Option<String> {
        let last = self.0.iter().rev().find(|column| match column {
            ContactColumn::Text(text) => text.is_valid(row),
            ContactColumn::Other(other) => other.is_valid(row),
        })?;
        match last {
            ContactColumn::Text(text) => Some(text.value(row).to_string()),
            ContactColumn::Other(_) => None,
        }
    }
}

/// What a run does with the rows that require an identity they lack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferral {
    /// This run's rows (positions) that wait for an identity.
    pub defer: Vec<usize>,
    /// This run's rows dropped at once (`wait_for_identity: 0`).
    pub drop: Vec<usize>,
    /// Pending rows (their index) whose wait is over: expired.
    pub expired: Vec<usize>,
    /// Pending rows (their index) that resolved in this run.
    pub resolved: Vec<usize>,
}

/// Decides, for a run at `now`, the fate of its unresolved rows.
/// `origins[position]` is the pending row a position came from (`None`: the
/// run's own window); `waiting` are the positions resolution could not
/// resolve; `pending_until[i]` is pending row `i`'s deadline.
pub fn defer(
    waiting: &[usize],
    origins: &[Option<usize>],
    pending_until: &[i64],
    wait: Duration,
    now: DateTime<Utc>,
) -> Deferral {
    let mut deferral = Deferral::default();
    let now = now.timestamp_micros();
    let mut still_waiting = vec![false; origins.len()];
    for &position in waiting {
        still_waiting[position] = true;
        match origins[position] {
            None if wait.is_zero() => deferral.drop.push(position),
            None => deferral.defer.push(position),
            Some(pending) if pending_until[pending] <= now => deferral.expired.push(pending),
            Some(_) => {}
        }
    }
    for (position, origin) in origins.iter().enumerate() {
        if let Some(pending) = origin
            && !still_waiting[position]
        {
            deferral.resolved.push(*pending);
        }
    }
    deferral
}

/// When a row deferred at `now` stops waiting.
pub fn wait_until(now: DateTime<Utc>, wait: Duration) -> i64 {
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(wait)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn positions_find_their_batch_past_empty_ones() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |rows: i64| {
            let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
            RecordBatch::try_new(schema.clone(), vec![column]).unwrap()
        };
        let batches = [batch(0), batch(2), batch(0), batch(3), batch(0)];
        assert_eq!(
            batch_and_row(&batches, &[4, 0, 1, 2, 3]),
            [(3, 2), (1, 0), (1, 1), (3, 0), (3, 1)]
        );
    }

    #[test]
    fn a_deferred_rows_contacts_are_what_its_json_object_holds() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("user_id", DataType::Int64, true),
            Field::new(
                "client_id",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("email", DataType::Utf8View, true),
            Field::new("__tripwire_origin", DataType::Int64, true),
        ]));
        let client_ids: DictionaryArray<Int32Type> = vec![Some("c1"), None, Some("c1"), Some("c3")]
            .into_iter()
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("first@x"),
                None,
                Some("a@x"),
                None,
            ])),
            Arc::new(Int64Array::from(vec![Some(7), Some(8), None, Some(9)])),
            Arc::new(client_ids),
            Arc::new(arrow::array::StringViewArray::from(vec![
                Some("last@x"),
                Some("b@x"),
                None,
                None,
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
        ];
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let (first, second) = (batch.slice(0, 2), batch.slice(2, 2));
        let records = deferred(&[first, second], &[3, 0, 1, 2], "run", 5).unwrap();
        assert_eq!(records.len(), 4);
        for record in &records {
            let value: serde_json::Value = serde_json::from_str(&record.row).unwrap();
            let text = |key: &str| value[key].as_str().map(str::to_string);
            assert_eq!(record.email, text("email"), "{}", record.row);
            assert_eq!(record.user_id, text("user_id"), "{}", record.row);
            assert_eq!(record.client_id, text("client_id"), "{}", record.row);
            assert!(!record.row.contains("__tripwire"), "{}", record.row);
        }
        let emails: Vec<_> = records.iter().map(|r| r.email.as_deref()).collect();
        assert_eq!(emails, [None, Some("last@x"), Some("b@x"), Some("a@x")]);
        let clients: Vec<_> = records.iter().map(|r| r.client_id.as_deref()).collect();
        assert_eq!(clients, [Some("c3"), Some("c1"), None, Some("c1")]);
        assert!(
            records.iter().all(|r| r.user_id.is_none()),
            "a number is no contact text"
        );
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn unresolved_rows_wait_expire_or_drop() {
        let now = at("2026-11-05T12:00:00Z");
        let hour = Duration::from_secs(3600);
        let past = at("2026-11-05T11:00:00Z").timestamp_micros();
        let future = at("2026-11-05T13:00:00Z").timestamp_micros();
        // Positions 0-2 are the window's rows; 3-5 came from pending rows 0-2.
        let origins = [None, None, None, Some(0), Some(1), Some(2)];
        let until = [past, future, past];
        // Rows 1 and 2, and pending rows 0 and 1, are still unresolved.
        let waiting = [1, 2, 3, 4];
        let deferral = defer(&waiting, &origins, &until, hour, now);
        assert_eq!(
            deferral,
            Deferral {
                defer: vec![1, 2],
                drop: vec![],
                expired: vec![0],
                resolved: vec![2],
            }
        );
        let at_once = defer(&waiting, &origins, &until, Duration::ZERO, now);
        assert_eq!(at_once.drop, [1, 2]);
        assert!(at_once.defer.is_empty());
    }

    #[test]
    fn rows_round_trip_through_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("client_id", DataType::Utf8, true),
            Field::new("seq", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::StringArray::from(vec![None, Some("x@e")])),
                Arc::new(arrow::array::StringArray::from(vec![Some("c1"), None])),
                Arc::new(arrow::array::Int64Array::from(vec![
                    1_795_968_518_910_019_064,
                    2,
                ])),
                Arc::new(arrow::array::Float64Array::from(vec![120.5, 1.0])),
            ],
        )
        .unwrap();
        let (_, rows) = chosen_rows(std::slice::from_ref(&batch), &[0])
            .unwrap()
            .unwrap();
        let pending: Vec<PendingRecord> = rows
            .into_iter()
            .map(|row| PendingRecord {
                pending_id: "p".into(),
                row,
                wait_until: 0,
                email: None,
                user_id: None,
                client_id: Some("c1".into()),
            })
            .collect();
        let (decoded, ok) = decode(&pending, &schema);
        assert_eq!(ok, [0]);
        assert_eq!(decoded[0], batch.slice(0, 1));
        let changed = nullable(&Schema::new(vec![Field::new(
            "seq",
            DataType::Boolean,
            true,
        )]));
        assert!(decode(&pending, &changed).1.is_empty());
    }

    #[test]
    fn waiting_rows_decode_as_one_batch_and_those_that_do_not_decode_are_left_out() {
        let schema = nullable(&Schema::new(vec![
            Field::new("seq", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let record = |row: &str| PendingRecord {
            pending_id: "p".into(),
            row: row.into(),
            wait_until: 0,
            email: None,
            user_id: None,
            client_id: Some("c1".into()),
        };
        let seqs = |batches: &[RecordBatch]| -> Vec<Option<i64>> {
            batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let good: Vec<PendingRecord> = [r#"{"seq":1,"name":"a"}"#, r#"{"name":"c"}"#]
            .into_iter()
            .map(record)
            .collect();
        let (batches, ok) = decode(&good, &schema);
        assert_eq!(ok, [0, 1]);
        assert_eq!(batches.len(), 1, "one batch for all");
        assert_eq!(seqs(&batches), [Some(1), None]);

        // Rows another writer (or an older query) left: each is kept or
        // left out as it decodes alone.
        let mixed: Vec<PendingRecord> = [
            r#"{"seq":1,"name":"a"}"#,
            r#"{"seq":"x","name":"b"}"#,
            r#"{"seq":3,"name":"c"}"#,
            r#"{"seq":4"#,
            r#"{"seq":5}{"seq":6}"#,
            "",
        ]
        .into_iter()
        .map(record)
        .collect();
        let (batches, ok) = decode(&mixed, &schema);
        let alone: Vec<usize> = (0..mixed.len())
            .filter(|i| decode_one(&mixed[*i].row, &schema).is_ok())
            .collect();
        assert_eq!(ok, alone);
        assert_eq!(ok, [0, 2, 4]);
        assert_eq!(seqs(&batches), [Some(1), Some(3), Some(5)]);
    }
}
