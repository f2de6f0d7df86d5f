//! The identity index (docs/architecture.md "Identity index"): per
//! workspace, each client id's and each user id's latest identify call,
//! kept as state instead of recomputed from identify history by every run.
//!
//! The index covers the events table up to a version (`covered`): a run at
//! watermark `W` folds in the identifies stamped in `(covered, W]` (a read
//! of the new files only, like a window) and resolves its rows against
//! memory. The TTL and the run's clock apply at read time; a key whose
//! latest identify was sent after the run's clock (a run pinned in the
//! past) makes the index answer "cannot say", and the run resolves with the
//! `identities` view instead, which sees history as of its clock.
//!
//! The index is rebuilt from the table when rows it folded may be gone: a
//! commit in `(covered, W]` that removed data (an erasure, retention,
//! another writer's DELETE), a commit file already cleaned up, or another
//! table under the same path. Snapshots are persisted under
//! `<workspace>/state/identity/` as Parquet so a fresh process starts from
//! one; `tripwire erase` deletes them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::prelude::{col, lit};
use deltalake_core::DeltaTable;
use futures::StreamExt as _;

use super::waiting::WaitingCache;
use crate::sql::{QueryError, new_context};
use crate::store::{Store, StoreError, table};
use crate::window::{Window, new_events};

/// Commits an index may catch up on by reading their log entries; one
/// further behind is rebuilt from the table (cheaper than thousands of
/// small reads, and their entries may be cleaned up anyway).
pub const MAX_COMMITS_TO_CATCH_UP: i64 = 1_000;
/// Identifies folded in since the last persisted snapshot that make the
/// next update persist a new one (besides every rebuild).
pub const PERSIST_AFTER_IDENTIFIES: usize = 50_000;
/// Snapshots kept under `state/identity/` (the newest; older are deleted).
const SNAPSHOTS_KEPT: usize = 2;

/// One identify call, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    pub user_id: Option<Box<str>>,
    pub email: Option<Box<str>>,
    /// The call's traits (JSON text), as `identities` shows them.
    pub traits: Option<Box<str>>,
    /// Microseconds since the epoch.
    pub sent_at: i64,
    pub seq: i64,
}

impl Identify {
    /// Whether `self` was sent after `other` (ties broken by `seq`, as the
    /// `identities` view orders them).
    fn is_later_than(&self, other: &Identify) -> bool {
        (self.sent_at, self.seq) > (other.sent_at, other.seq)
    }
}

/// Each client's and each user's latest identify, up to `covered`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityIndex {
    clients: HashMap<Box<str>, Identify>,
    users: HashMap<Box<str>, Identify>,
    /// The events table version folded in (-1: nothing yet).
    covered: i64,
    /// The Delta table id the index was built from.
    table_id: String,
    /// Identifies folded in since the index was last persisted.
    unsaved: usize,
    /// The latest `sent_at` of any identify folded in (µs; `i64::MIN`:
    /// none): a clock at or after it sees every key's latest identify.
    newest: i64,
    /// Every key's row of the `identities` table, made when first asked
    /// for and dropped by the next fold.
    rows: RowsMade,
}

/// The `identities` rows of every key an index holds, made once per state
/// of the index: the runs of a tick (and the ticks with no new identify)
/// share them instead of copying every key again.
#[derive(Debug, Default)]
struct RowsMade(std::sync::OnceLock<AllRows>);

#[derive(Debug)]
struct AllRows {
    /// Newest identify first, so the rows a TTL cutoff keeps are a prefix.
    batch: RecordBatch,
    /// When each row's identify was sent (µs), newest first: `batch`'s order.
    sent_at: Vec<i64>,
}

/// A copy of an index makes its own rows (it may be folded into).
impl Clone for RowsMade {
    fn clone(&self) -> RowsMade {
        RowsMade::default()
    }
}

/// Rows made or not, two indexes holding the same identifies are equal.
impl PartialEq for RowsMade {
    fn eq(&self, _: &RowsMade) -> bool {
        true
    }
}

/// The moment a lookup is made at: identifies sent in `(cutoff, now]` count.
#[derive(Debug, Clone, Copy)]
pub struct AsOf {
    pub now: i64,
    pub cutoff: i64,
}

impl AsOf {
    /// Identifies sent within `ttl` before `now`.
    pub fn new(now: DateTime<Utc>, ttl: std::time::Duration) -> AsOf {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        AsOf {
            now: now.timestamp_micros(),
            cutoff: cutoff.timestamp_micros(),
        }
    }
}

/// A row's keys, as the trigger returned them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowKeys<'a> {
    pub email: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// What the index makes of a row (docs/reference.md "Identity").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub email: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// The row's user or client is known to `identities`.
    pub identified: bool,
}

/// The index cannot answer as of a clock earlier than a key's latest
/// identify: the identify that was latest then is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CannotSay;

impl IdentityIndex {
    /// An empty index of the table `table_id`.
    fn empty(table_id: &str) -> IdentityIndex {
        IdentityIndex {
            covered: -1,
            table_id: table_id.to_string(),
            newest: i64::MIN,
            ..IdentityIndex::default()
        }
    }

    /// The events version the index covers.
    pub fn covered(&self) -> i64 {
        self.covered
    }

    /// Clients and users known.
    pub fn len(&self) -> (usize, usize) {
        (self.clients.len(), self.users.len())
    }

    /// Folds one identify call in.
    pub fn fold(&mut self, keys: RowKeys<'_>, traits: Option<&str>, sent_at: i64, seq: i64) {
        let identify = Identify {
            user_id: keys.user_id.map(Box::from),
            email: keys.email.map(Box::from),
            traits: traits.map(Box::from),
            sent_at,
            seq,
        };
        self.newest = self.newest.max(sent_at);
        self.rows.0.take();
        for (map, key) in [
            (&mut self.clients, keys.client_id),
            (&mut self.users, keys.user_id),
        ] {
            let Some(key) = key else { continue };
            match map.get_mut(key) {
                Some(known) if !identify.is_later_than(known) => {}
                Some(known) => *known = identify.clone(),
                None => {
                    map.insert(Box::from(key), identify.clone());
                }
            }
        }
        self.unsaved += 1;
    }

    /// Folds in a batch of identify rows (`client_id`, `user_id`, `email`,
    /// `traits`, `sent_at`, `seq`).
    pub fn fold_batch(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
        let text = |name: &str| -> Result<ArrayRef, arrow::error::ArrowError> {
            let column = batch.column_by_name(name).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no column {name}"))
            })?;
            cast(column, &DataType::Utf8)
        };
        let (client, user, email) = (text("client_id")?, text("user_id")?, text("email")?);
        let traits = text("traits")?;
        let traits = traits.as_string::<i32>();
        let sent_at = batch
            .column_by_name("sent_at")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| arrow::error::ArrowError::SchemaError("sent_at".into()))?;
        let seq = batch
            .column_by_name("seq")
            .map(|c| cast(c, &DataType::Int64))
            .transpose()?
            .ok_or_else(|| arrow::error::ArrowError::SchemaError("seq".into()))?;
        let seq = seq.as_primitive::<Int64Type>();
        let (client, user, email) = (
            client.as_string::<i32>(),
            user.as_string::<i32>(),
            email.as_string::<i32>(),
        );
        fn get(a: &StringArray, row: usize) -> Option<&str> {
            a.is_valid(row).then(|| a.value(row))
        }
        for row in 0..batch.num_rows() {
            if sent_at.is_null(row) {
                continue;
            }
            let keys = RowKeys {
                email: get(email, row),
                user_id: get(user, row),
                client_id: get(client, row),
            };
            self.fold(keys, get(traits, row), sent_at.value(row), seq.value(row));
        }
        Ok(())
    }

    /// The identify `key` stands for as of `at`: none when it has none in
    /// `(cutoff, now]`, [`CannotSay`] when its latest is after `now`.
    fn lookup<'a>(
        map: &'a HashMap<Box<str>, Identify>,
        key: Option<&str>,
        at: AsOf,
    ) -> Result<Option<&'a Identify>, CannotSay> {
        match key.and_then(|k| map.get(k)) {
            None => Ok(None),
            Some(found) if found.sent_at > at.now => Err(CannotSay),
            Some(found) if found.sent_at <= at.cutoff => Ok(None),
            Some(found) => Ok(Some(found)),
        }
    }

    /// A row's contact as of `at`, with the precedence of the `identities`
    /// view: the row's email, else its own user's, else its client's, else
    /// its client's user's; its user id, else its client's.
    pub fn resolve<'a>(&'a self, row: RowKeys<'a>, at: AsOf) -> Result<Resolved<'a>, CannotSay> {
        let own = Self::lookup(&self.users, row.user_id, at)?;
        let by_client = Self::lookup(&self.clients, row.client_id, at)?;
        let client_user_id = by_client.and_then(|c| c.user_id.as_deref());
        let client_user = Self::lookup(&self.users, client_user_id, at)?;
        let email = row
            .email
            .or(own.and_then(|i| i.email.as_deref()))
            .or(by_client.and_then(|i| i.email.as_deref()))
            .or(client_user.and_then(|i| i.email.as_deref()));
        Ok(Resolved {
            email,
            user_id: row.user_id.or(client_user_id),
            identified: own.is_some() || by_client.is_some(),
        })
    }
}

impl IdentityIndex {
    /// The `identities` table as of `at` (docs/reference.md "identities"):
    /// each client's and each user's latest identify sent in `(cutoff,
    /// now]`, in `schema`'s columns (`client_id`, `user_id`, `email`,
    /// `traits`, `identified_at`). `None` when a key's latest identify was
    /// sent after `now`: the one that was latest then is not kept. Every
    /// key's row is made once per state of the index, newest identify
    /// first, so a clock whose cutoff passes some of them gets the rows
    /// before the first it passes: a slice, not a copy.
    pub fn identities(
        &self,
        at: AsOf,
        schema: SchemaRef,
    ) -> Option<Result<RecordBatch, arrow::error::ArrowError>> {
        if self.newest > at.now {
            return None;
        }
        let all = match self.rows.0.get() {
            Some(all) if all.batch.schema() == schema => all,
            _ => match self.all_rows(schema) {
                Ok(all) => self.rows.0.get_or_init(|| all),
                Err(e) => return Some(Err(e)),
            },
        };
        // Rows newer than the cutoff come first: they are a slice, not a copy.
        let live = all.sent_at.partition_point(|sent_at| *sent_at > at.cutoff);
        Some(Ok(all.batch.slice(0, live)))
    }

    /// Every key's row, in `schema`'s columns.
    fn all_rows(&self, schema: SchemaRef) -> Result<AllRows, arrow::error::ArrowError> {
        let mut rows: Vec<(Option<&str>, Option<&str>, &Identify)> = self
            .clients
            .iter()
            .map(|(key, i)| (Some(key.as_ref()), i.user_id.as_deref(), i))
            .chain(
                self.users
                    .iter()
                    .map(|(key, i)| (None, Some(key.as_ref()), i)),
            )
            .collect();
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.2.sent_at));
        let sent_at = rows.iter().map(|r| r.2.sent_at).collect();
        let batch = identities_batch(&rows, schema)?;
        Ok(AllRows { batch, sent_at })
    }
}

/// `rows` (client id, user id, identify) as a batch of `schema`.
fn identities_batch(
    rows: &[(Option<&str>, Option<&str>, &Identify)],
    schema: SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let at = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2.sent_at))
        .with_timezone("UTC");
    let built: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.2.email.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.2.traits.as_deref()),
        )),
        Arc::new(at),
    ];
    let columns = built
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// The up-to-date index of each workspace, shared by the runs of a process
/// (`serve`'s ticks, one `tripwire run` of many triggers), and the rows
/// waiting in each ledger for an identity (`identity::waiting`).
#[derive(Default)]
pub struct IndexCache {
    indexes: tokio::sync::Mutex<HashMap<String, Arc<IdentityIndex>>>,
    waiting: WaitingCache,
}

impl IndexCache {
    pub fn new() -> IndexCache {
        IndexCache::default()
    }

    /// `triggers`' rows waiting for an identity in `ledger`, oldest first.
    pub async fn waiting(
        &self,
        ledger: &DeltaTable,
        triggers: &[&str],
    ) -> Result<HashMap<String, super::waiting::OpenRows>, QueryError> {
        self.waiting.open(ledger, triggers).await
    }

    /// `workspace`'s index covering `events` at its loaded version.
    pub async fn at(
        &self,
        store: &Store,
        workspace: &str,
        events: &DeltaTable,
    ) -> Result<Arc<IdentityIndex>, StoreError> {
        let mut indexes = self.indexes.lock().await;
        let held = indexes.remove(workspace);
        let index = Arc::new(up_to_date(store, workspace, events, held).await?);
        indexes.insert(workspace.to_string(), index.clone());
        Ok(index)
    }
}

/// The index of `events` at its loaded version: `held` (or the newest
/// persisted snapshot) caught up, or rebuilt when it cannot be.
pub async fn up_to_date(
    store: &Store,
    workspace: &str,
    events: &DeltaTable,
    held: Option<Arc<IdentityIndex>>,
) -> Result<IdentityIndex, StoreError> {
    let watermark = table::version(events);
    let table_id = table::table_id(events)?;
    let start = match held {
        Some(held) if held.covered == watermark && held.table_id == table_id => {
            return Ok(Arc::unwrap_or_clone(held));
        }
        Some(held) => Some(Arc::unwrap_or_clone(held)),
        None => load_snapshot(store, workspace, watermark).await?,
    };
    let start = start.filter(|s| s.table_id == table_id && s.covered <= watermark);
    let mut index = match start {
        Some(start) if still_whole(events, start.covered, watermark).await? => start,
        _ => IdentityIndex::empty(&table_id),
    };
    let rebuilt = index.covered < 0;
    fold_new(&mut index, events, watermark).await?;
    if rebuilt || index.unsaved >= PERSIST_AFTER_IDENTIFIES {
        persist(store, workspace, &mut index).await?;
    }
    Ok(index)
}

/// Whether every row present at `covered` may still be there at
/// `watermark`: no commit between removed data, and their log entries are
/// all readable.
async fn still_whole(
    events: &DeltaTable,
    covered: i64,
    watermark: i64,
) -> Result<bool, StoreError> {
    if watermark - covered > MAX_COMMITS_TO_CATCH_UP {
        return Ok(false);
    }
    let store = events.log_store();
    for version in covered + 1..=watermark {
        let entry = store
            .read_commit_entry(version as u64)
            .await
            .map_err(|e| StoreError::delta(events.table_url(), e))?;
        match entry {
            None => return Ok(false),
            Some(bytes) if removes_data(&bytes) => return Ok(false),
            Some(_) => {}
        }
    }
    Ok(true)
}

/// Whether a commit's actions remove rows (`remove` with `dataChange`);
/// tripwire's own rewrites (stamping, compaction) say `dataChange: false`.
pub fn removes_data(commit: &[u8]) -> bool {
    let text = String::from_utf8_lossy(commit);
    text.lines()
        .filter(|line| line.contains("\"remove\""))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|action| {
            action
                .get("remove")
                .and_then(|r| r.get("dataChange"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true)
        })
}

/// Folds the identifies stamped in `(index.covered, watermark]` into `index`.
async fn fold_new(
    index: &mut IdentityIndex,
    events: &DeltaTable,
    watermark: i64,
) -> Result<(), StoreError> {
    let fail = |e: &dyn std::fmt::Display| StoreError::delta(events.table_url(), e);
    let window = Window {
        from: index.covered,
        to: watermark,
    };
    if !window.is_empty() {
        let provider = new_events(Some(events), window, None).map_err(|e| fail(&e))?;
        let ctx = new_context().map_err(|e| fail(&e))?;
        let mut stream = ctx
            .read_table(provider)
            .and_then(|frame| frame.filter(col("type").eq(lit("identify"))))
            .and_then(|frame| {
                frame.select_columns(&["client_id", "user_id", "email", "traits", "sent_at", "seq"])
            })
            .map_err(|e| fail(&e))?
            .execute_stream()
            .await
            .map_err(|e| fail(&e))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| fail(&e))?;
            index.fold_batch(&batch).map_err(|e| fail(&e))?;
        }
    }
    index.covered = watermark;
    Ok(())
}

const SNAPSHOT_DIR: &str = "state/identity";

fn snapshot_name(covered: i64) -> String {
    format!("index-{covered:020}.parquet")
}

fn covered_of(name: &str) -> Option<i64> {
    name.strip_prefix("index-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

/// Deletes `workspace`'s persisted snapshots (they hold emails: an erasure
/// must not leave them behind).
pub async fn forget_snapshots(store: &Store, workspace: &str) -> Result<(), StoreError> {
    let dir = store.state_dir(&format!("{workspace}/{SNAPSHOT_DIR}"))?;
    for (name, _) in dir.list().await? {
        dir.delete(&name).await?;
    }
    Ok(())
}

/// The newest persisted snapshot covering at most `watermark`.
async fn load_snapshot(
    store: &Store,
    workspace: &str,
    watermark: i64,
) -> Result<Option<IdentityIndex>, StoreError> {
    let dir = store.state_dir(&format!("{workspace}/{SNAPSHOT_DIR}"))?;
    let usable = |covered: &i64| *covered <= watermark;
    let Some((name, bytes)) = dir.newest(covered_of, usable).await? else {
        return Ok(None);
    };
    // A snapshot that does not decode is rebuilt, not trusted.
    match decode(bytes) {
        Ok(index) => Ok(Some(index)),
        Err(e) => {
            tracing::warn!(workspace, snapshot = name, error = %e, "identity index snapshot unreadable: rebuilding");
            Ok(None)
        }
    }
}

/// Writes `index` as a snapshot and deletes the older ones past
/// [`SNAPSHOTS_KEPT`].
async fn persist(
    store: &Store,
    workspace: &str,
    index: &mut IdentityIndex,
) -> Result<(), StoreError> {
    let dir = store.state_dir(&format!("{workspace}/{SNAPSHOT_DIR}"))?;
    let bytes = encode(index).map_err(|e| StoreError::Root {
        root: store.root().to_string(),
        message: format!("identity index snapshot: {e}"),
    })?;
    dir.write_bytes(&snapshot_name(index.covered), bytes)
        .await?;
    index.unsaved = 0;
    let mut older: Vec<i64> = dir
        .list()
        .await?
        .into_iter()
        .filter_map(|(name, _)| covered_of(&name))
        .collect();
    older.sort_unstable_by(|a, b| b.cmp(a));
    for covered in older.into_iter().skip(SNAPSHOTS_KEPT) {
        dir.delete(&snapshot_name(covered)).await?;
    }
    Ok(())
}

fn snapshot_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("is_client", DataType::Boolean, false),
        text("key", false),
        text("user_id", true),
        text("email", true),
        text("traits", true),
        Field::new("sent_at", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
    ]))
}

/// The index as Parquet, its version and table id in the file's metadata.
fn encode(index: &IdentityIndex) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let entries: Vec<(bool, &str, &Identify)> = index
        .clients
        .iter()
        .map(|(k, v)| (true, k.as_ref(), v))
        .chain(index.users.iter().map(|(k, v)| (false, k.as_ref(), v)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::BooleanArray::from_iter(
            entries.iter().map(|e| Some(e.0)),
        )),
        Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.1))),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.2.user_id.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.2.email.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.2.traits.as_deref()),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.2.sent_at),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.2.seq),
        )),
    ];
    let batch = RecordBatch::try_new(snapshot_schema(), columns)?;
    let metadata = vec![
        parquet::file::metadata::KeyValue::new("covered".into(), index.covered.to_string()),
        parquet::file::metadata::KeyValue::new("table_id".into(), index.table_id.clone()),
    ];
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, snapshot_schema(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

fn decode(bytes: Vec<u8>) -> Result<IdentityIndex, Box<dyn std::error::Error + Send + Sync>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?;
    let metadata = builder.metadata().file_metadata().key_value_metadata();
    let value = |key: &str| {
        metadata
            .and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("no {key} in the snapshot's metadata"))
    };
    let mut index = IdentityIndex::empty(&value("table_id")?);
    index.covered = value("covered")?.parse()?;
    for batch in builder.build()? {
        let batch = batch?;
        if batch.schema() != snapshot_schema() {
            return Err("the snapshot was written by another version of tripwire".into());
        }
        let is_client = batch.column(0).as_boolean();
        let key = batch.column(1).as_string::<i32>();
        let user = batch.column(2).as_string::<i32>();
        let email = batch.column(3).as_string::<i32>();
        let traits = batch.column(4).as_string::<i32>();
        let sent_at = batch.column(5).as_primitive::<Int64Type>();
        let seq = batch.column(6).as_primitive::<Int64Type>();
        let text = |a: &StringArray, row| a.is_valid(row).then(|| Box::from(a.value(row)));
        // Sized once: growing a map of 10^5 keys rehashes it a dozen times.
        let clients = is_client.true_count();
        index.clients.reserve(clients);
        index.users.reserve(batch.num_rows() - clients);
        for row in 0..batch.num_rows() {
            let identify = Identify {
                user_id: text(user, row),
                email: text(email, row),
                traits: text(traits, row),
                sent_at: sent_at.value(row),
                seq: seq.value(row),
            };
            index.newest = index.newest.max(identify.sent_at);
            let map = match is_client.value(row) {
                true => &mut index.clients,
                false => &mut index.users,
            };
            map.insert(Box::from(key.value(row)), identify);
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn keys<'a>(
        email: Option<&'a str>,
        user_id: Option<&'a str>,
        client_id: Option<&'a str>,
    ) -> RowKeys<'a> {
        RowKeys {
            email,
            user_id,
            client_id,
        }
    }

    fn at(now: i64) -> AsOf {
        AsOf {
            now,
            cutoff: now - 24 * HOUR,
        }
    }

    #[test]
    fn the_latest_identify_of_each_key_wins_whatever_the_order_it_arrives_in() {
        let mut index = IdentityIndex::empty("t");
        index.fold(
            keys(Some("new@x"), Some("u1"), Some("c1")),
            None,
            5 * HOUR,
            1,
        );
        index.fold(
            keys(Some("old@x"), Some("u1"), Some("c1")),
            None,
            2 * HOUR,
            2,
        );
        let resolved = index.resolve(keys(None, None, Some("c1")), at(10 * HOUR));
        assert_eq!(
            resolved,
            Ok(Resolved {
                email: Some("new@x"),
                user_id: Some("u1"),
                identified: true,
            })
        );
    }

    #[test]
    fn a_rows_own_user_wins_over_its_clients() {
        let mut index = IdentityIndex::empty("t");
        index.fold(keys(Some("a@x"), Some("ua"), Some("shared")), None, HOUR, 1);
        index.fold(keys(Some("b@x"), Some("ub"), None), None, 2 * HOUR, 2);
        let resolved = index
            .resolve(keys(None, Some("ub"), Some("shared")), at(3 * HOUR))
            .unwrap();
        assert_eq!(resolved.email, Some("b@x"));
        assert_eq!(resolved.user_id, Some("ub"));
    }

    #[test]
    fn a_clients_user_lends_its_email_when_the_client_had_none() {
        let mut index = IdentityIndex::empty("t");
        index.fold(keys(None, Some("u1"), Some("c1")), None, HOUR, 1);
        index.fold(keys(Some("u@x"), Some("u1"), None), None, 2 * HOUR, 2);
        let resolved = index
            .resolve(keys(None, None, Some("c1")), at(3 * HOUR))
            .unwrap();
        assert_eq!(resolved.email, Some("u@x"));
    }

    #[test]
    fn identifies_older_than_the_ttl_are_forgotten_and_later_than_the_clock_cannot_be_judged() {
        let mut index = IdentityIndex::empty("t");
        index.fold(keys(Some("a@x"), None, Some("c1")), None, HOUR, 1);
        let stale = index.resolve(keys(None, None, Some("c1")), at(26 * HOUR));
        assert_eq!(
            stale,
            Ok(Resolved {
                email: None,
                user_id: None,
                identified: false
            })
        );
        assert_eq!(
            index.resolve(keys(None, None, Some("c1")), at(HOUR - 1)),
            Err(CannotSay)
        );
        // An unknown key is fine at any clock.
        assert!(index.resolve(keys(None, None, Some("zz")), at(0)).is_ok());
    }

    /// The `identities` rows at `at`, as (client id, user id, email), sorted.
    fn table_at(index: &IdentityIndex, at: AsOf) -> Vec<(String, String, String)> {
        let schema = crate::identity::views::identities_schema();
        let batch = index.identities(at, schema).unwrap().unwrap();
        let text = |name: &str| {
            let column = batch.column_by_name(name).unwrap().as_string::<i32>();
            column
                .iter()
                .map(|v| v.unwrap_or("-").to_string())
                .collect::<Vec<_>>()
        };
        let (clients, users, emails) = (text("client_id"), text("user_id"), text("email"));
        let mut rows: Vec<_> = (0..batch.num_rows())
            .map(|i| (clients[i].clone(), users[i].clone(), emails[i].clone()))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn the_identities_rows_are_made_once_and_follow_every_fold_and_cutoff() {
        let mut index = IdentityIndex::empty("t");
        index.fold(keys(Some("a@x"), None, Some("c1")), None, HOUR, 1);
        index.fold(keys(Some("b@x"), Some("u2"), None), None, 30 * HOUR, 2);
        let row = |c: &str, u: &str, e: &str| (c.to_string(), u.to_string(), e.to_string());
        // Both live within a day of 30h; made once, asked twice.
        let wide = AsOf {
            now: 30 * HOUR,
            cutoff: 0,
        };
        let both = vec![row("-", "u2", "b@x"), row("c1", "-", "a@x")];
        assert_eq!(table_at(&index, wide), both);
        assert_eq!(table_at(&index, wide), both);
        // A later clock: the first identify is past the TTL.
        assert_eq!(table_at(&index, at(30 * HOUR)), vec![row("-", "u2", "b@x")]);
        // A fold drops the rows made: the new identify shows.
        index.fold(keys(Some("c@x"), None, Some("c1")), None, 31 * HOUR, 3);
        assert_eq!(
            table_at(&index, at(31 * HOUR)),
            vec![row("-", "u2", "b@x"), row("c1", "-", "c@x")]
        );
        // A copy is equal, and makes its own.
        assert_eq!(index.clone(), index);
        assert_eq!(table_at(&index.clone(), at(31 * HOUR)).len(), 2);
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_index() {
        let mut index = IdentityIndex::empty("table-1");
        index.fold(keys(Some("a@x"), Some("u1"), Some("c1")), None, HOUR, 1);
        index.fold(keys(None, Some("u2"), None), None, 2 * HOUR, 7);
        index.covered = 41;
        index.unsaved = 0;
        let decoded = decode(encode(&index).unwrap()).unwrap();
        assert_eq!(decoded, index);
    }

    #[test]
    fn only_removes_that_change_data_count() {
        let compaction = br#"{"commitInfo":{"operation":"OPTIMIZE"}}
{"remove":{"path":"a.parquet","dataChange":false}}
{"add":{"path":"b.parquet","dataChange":false}}"#;
        let delete = br#"{"remove":{"path":"a.parquet","dataChange":true}}"#;
        let append = br#"{"add":{"path":"c.parquet","dataChange":true}}"#;
        assert!(!removes_data(compaction));
        assert!(removes_data(delete));
        assert!(!removes_data(append));
    }
}
