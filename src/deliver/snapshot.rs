//! Snapshots of the open-deliveries index (docs/architecture.md "Open
//! deliveries"), so a fresh process (each `tripwire run`) starts from the
//! open deliveries instead of rebuilding them from every delivery and
//! attempt ever recorded:
//! `<workspace>/state/deliveries/open-<attempts version>-<ledger version>.parquet`
//! (zstd), the two tables' versions and Delta ids in the file's metadata;
//! the newest [`SNAPSHOTS_KEPT`] are kept. They hold payloads (emails):
//! `tripwire erase` deletes them ([`crate::store::state::OPEN_DELIVERIES`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

use super::open::{Entry, OpenDeliveries, Standing};
use crate::store::state::OPEN_DELIVERIES;
use crate::store::{Store, StoreError};

/// Snapshots kept per workspace (the newest; older ones are deleted).
const SNAPSHOTS_KEPT: usize = 2;

/// What a snapshot covers: each table's version and Delta id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub attempts: i64,
    pub ledger: i64,
    pub attempts_id: String,
    pub ledger_id: String,
}

fn name(attempts: i64, ledger: i64) -> String {
    format!("open-{attempts:020}-{ledger:020}.parquet")
}

fn versions_of(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("open-")?.strip_suffix(".parquet")?;
    let (attempts, ledger) = rest.split_once('-')?;
    Some((attempts.parse().ok()?, ledger.parse().ok()?))
}

/// The newest snapshot of `workspace` that covers at most `attempts` and
/// `ledger` of the tables with those ids (`None`: none, or unreadable).
pub async fn load(
    store: &Store,
    workspace: &str,
    latest: &Coverage,
) -> Result<Option<(OpenDeliveries, Coverage)>, StoreError> {
    let dir = store.state_dir(&format!("{workspace}/{OPEN_DELIVERIES}"))?;
    let usable = |(a, l): &(i64, i64)| *a <= latest.attempts && *l <= latest.ledger;
    let Some((name, bytes)) = dir.newest(versions_of, usable).await? else {
        return Ok(None);
    };
    // One that does not decode, or is of other tables, is not trusted.
    match decode(bytes) {
        Ok((open, coverage))
            if coverage.attempts_id == latest.attempts_id
                && coverage.ledger_id == latest.ledger_id =>
        {
            Ok(Some((open, coverage)))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(workspace, snapshot = name, error = %e, "open deliveries snapshot unreadable: rebuilding");
            Ok(None)
        }
    }
}

/// Writes `open` as the snapshot of `coverage`, and deletes the older ones
/// past [`SNAPSHOTS_KEPT`].
pub async fn persist(
    store: &Store,
    workspace: &str,
    open: &OpenDeliveries,
    coverage: &Coverage,
) -> Result<(), StoreError> {
    let dir = store.state_dir(&format!("{workspace}/{OPEN_DELIVERIES}"))?;
    let bytes = encode(open, coverage).map_err(|e| StoreError::Root {
        root: store.root().to_string(),
        message: format!("open deliveries snapshot: {e}"),
    })?;
    dir.write_bytes(&name(coverage.attempts, coverage.ledger), bytes)
        .await?;
    let mut kept: Vec<(i64, i64)> = dir
        .list()
        .await?
        .into_iter()
        .filter_map(|(name, _)| versions_of(&name))
        .collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    for (attempts, ledger) in kept.into_iter().skip(SNAPSHOTS_KEPT) {
        dir.delete(&name(attempts, ledger)).await?;
    }
    Ok(())
}

fn schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let number = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        text("delivery_id", false),
        text("run_id", false),
        text("flow", false),
        text("action", false),
        text("payload", true),
        number("planned_at", false),
        text("standing", false),
        number("next_attempt_at", true),
        number("last_attempt", false),
        number("reset_attempt", false),
        number("first_try", true),
    ]))
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn encode(open: &OpenDeliveries, coverage: &Coverage) -> Result<Vec<u8>, Error> {
    let entries: Vec<(&str, &Entry)> = open.iter().collect();
    let text = |f: fn(&Entry) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|(_, e)| f(e)),
        ))
    };
    let next = |e: &Entry| match e.standing {
        Standing::Failed { next } => next,
        Standing::Pending | Standing::Held => None,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|(id, _)| *id),
        )),
        text(|e| &e.run_id),
        text(|e| &e.flow),
        text(|e| &e.action),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|(_, e)| e.payload.as_deref()),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, e)| e.planned_at),
        )),
        text(|e| e.standing.status()),
        Arc::new(Int64Array::from_iter(entries.iter().map(|(_, e)| next(e)))),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, e)| e.last_attempt),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, e)| e.reset_attempt),
        )),
        Arc::new(Int64Array::from_iter(
            entries.iter().map(|(_, e)| e.first_try),
        )),
    ];
    let batch = RecordBatch::try_new(schema(), columns)?;
    let metadata = [
        ("attempts_version", coverage.attempts.to_string()),
        ("ledger_version", coverage.ledger.to_string()),
        ("attempts_id", coverage.attempts_id.clone()),
        ("ledger_id", coverage.ledger_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.into(), v))
    .collect();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

fn decode(bytes: Vec<u8>) -> Result<(OpenDeliveries, Coverage), Error> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?;
    let metadata = builder.metadata().file_metadata().key_value_metadata();
    let value = |key: &str| {
        metadata
            .and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("no {key} in the snapshot's metadata"))
    };
    let coverage = Coverage {
        attempts: value("attempts_version")?.parse()?,
        ledger: value("ledger_version")?.parse()?,
        attempts_id: value("attempts_id")?,
        ledger_id: value("ledger_id")?,
    };
    let mut open = OpenDeliveries::new();
    for batch in builder.build()? {
        let batch = batch?;
        if batch.schema() != schema() {
            return Err("the snapshot was written by another version of tripwire".into());
        }
        let text = |i: usize| batch.column(i).as_string::<i32>();
        let number = |i: usize| batch.column(i).as_primitive::<Int64Type>();
        let (ids, runs, flows, actions, payloads) = (text(0), text(1), text(2), text(3), text(4));
        let (planned_at, standing, next) = (number(5), text(6), number(7));
        let (last, reset, first) = (number(8), number(9), number(10));
        let optional = |a: &Int64Array, row| a.is_valid(row).then(|| a.value(row));
        for row in 0..batch.num_rows() {
            let standing = match standing.value(row) {
                "pending" => Standing::Pending,
                "failed" => Standing::Failed {
                    next: optional(next, row),
                },
                "held" => Standing::Held,
                other => return Err(format!("unknown standing {other:?}").into()),
            };
            let entry = Entry {
                run_id: runs.value(row).into(),
                flow: flows.value(row).into(),
                action: actions.value(row).into(),
                payload: payloads.is_valid(row).then(|| payloads.value(row).into()),
                planned_at: planned_at.value(row),
                standing,
                last_attempt: last.value(row),
                reset_attempt: reset.value(row),
                first_try: optional(first, row),
            };
            open.insert(ids.value(row).into(), entry);
        }
    }
    Ok((open, coverage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::open::{Planned, Tried};

    #[test]
    fn a_snapshot_decodes_to_the_same_open_deliveries() {
        let mut open = OpenDeliveries::new();
        for (id, held) in [("a", false), ("b", false), ("h", true)] {
            open.plan(Planned {
                delivery_id: id.into(),
                run_id: "r1".into(),
                flow: "f".into(),
                action: "hook".into(),
                payload: (id != "b").then(|| format!("{{\"to\":\"{id}\"}}")),
                planned_at: 7,
                held,
            });
        }
        let failed = Tried {
            delivery_id: "b".into(),
            attempt: 1,
            status: "failed".into(),
            attempted_at: 10,
            next_attempt_at: Some(20),
        };
        open.apply(vec![failed]).unwrap();
        let coverage = Coverage {
            attempts: 12,
            ledger: 3,
            attempts_id: "ta".into(),
            ledger_id: "tl".into(),
        };
        let (decoded, covered) = decode(encode(&open, &coverage).unwrap()).unwrap();
        assert_eq!(covered, coverage);
        let sorted = |o: &OpenDeliveries| {
            let mut entries: Vec<(String, Entry)> = o
                .iter()
                .map(|(id, e)| (id.to_string(), e.clone()))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries
        };
        assert_eq!(sorted(&decoded), sorted(&open));
        let none = |_: &str| false;
        assert_eq!(
            decoded.due(30, 10, &[], &none),
            open.due(30, 10, &[], &none)
        );
    }

    #[test]
    fn names_carry_both_versions() {
        assert_eq!(versions_of(&name(12, 3)), Some((12, 3)));
        assert_eq!(versions_of("open-x-1.parquet"), None);
        assert!(name(2, 0) < name(10, 0), "names sort by version");
    }
}
