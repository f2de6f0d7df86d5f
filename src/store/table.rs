//! One Delta table: open or create it, evolve its columns, read an
//! application transaction's progress, refresh it. Appends go through
//! `store::commit`.

use arrow::datatypes::SchemaRef;
use deltalake_core::kernel::StructType;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitProperties, FinalizedCommit};
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use url::Url;

use super::StoreError;

/// The Delta table at `url` (`table`, as just opened), created with
/// `schema` if it does not exist yet. Safe when several processes race to
/// create it.
pub async fn open_or_create(
    url: &Url,
    schema: &SchemaRef,
    properties: &[(&str, &str)],
    table: DeltaTable,
) -> Result<DeltaTable, StoreError> {
    if table.version().is_some() {
        return add_missing_columns(table, schema).await;
    }
    let columns: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| StoreError::delta(url, e))?;
    let created = table
        .create()
        .with_columns(columns.fields().cloned())
        .with_configuration(properties.iter().map(|(k, v)| (*k, Some(*v))))
        // tripwire's own properties (`tripwire.*`) are not Delta's.
        .with_raise_if_key_not_exists(false)
        .with_save_mode(SaveMode::Ignore)
        // Version 0 or nothing: a racing creator must not commit a second
        // metadata change on top of the winner's table.
        .with_commit_properties(commit_properties())
        .await;
    let failure = match created {
        Ok(table) if table.version().is_some() => return Ok(table),
        Ok(_) => "nothing was committed".to_string(),
        Err(e) => e.to_string(),
    };
    // Another process may have created it first: read what it made.
    let table = open(url).await?;
    match table.version() {
        Some(_) => Ok(table),
        None => Err(StoreError::Delta {
            table: url.to_string(),
            message: format!("the table could not be created: {failure}"),
        }),
    }
}

/// Adds the columns of `schema` that `table` lacks (a table written by an
/// older tripwire; the columns tripwire adds are nullable), in one
/// metadata-only commit.
pub async fn add_missing_columns(
    table: DeltaTable,
    schema: &SchemaRef,
) -> Result<DeltaTable, StoreError> {
    let url = table.table_url().clone();
    let delta = |e: DeltaTableError| StoreError::delta(&url, e);
    let existing = table.snapshot().map_err(delta)?.schema();
    let expected: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| StoreError::delta(&url, e))?;
    let missing: Vec<_> = expected
        .fields()
        .filter(|f| existing.field(f.name()).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    match table.clone().add_columns().with_fields(missing).await {
        Ok(evolved) => Ok(evolved),
        // Another process evolved it first.
        Err(_) => open(&url).await,
    }
}

/// Opens the table at `url`; its version is `None` when nothing is there yet.
pub async fn open(url: &Url) -> Result<DeltaTable, StoreError> {
    super::objects::register();
    let delta = |e: DeltaTableError| StoreError::delta(url, e);
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(delta)?
        .build()
        .map_err(delta)?;
    // Loading first: asking whether a table is there lists its whole log
    // folder, which on a store that has lived costs more than the load.
    // A table created meanwhile is loaded again, as before the question.
    if table.load().await.is_err() && table.verify_deltatable_existence().await.map_err(delta)? {
        table.load().await.map_err(delta)?;
    }
    Ok(table)
}

/// The properties of a commit tripwire makes itself (`store::commit`,
/// `store::rewrite`, a table's creation, the ledger's migration): Delta's
/// own retries off (the caller plans again, or reads the winner's table),
/// and Delta's log cleanup after the commit off.
/// That cleanup lists and stats the whole `_delta_log` folder (a day of
/// commits on a store that has lived: 86k files at a commit a second,
/// ~0.7 s) on every commit; maintenance removes old log files instead
/// (docs/architecture.md "Table maintenance").
pub fn commit_properties() -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(0)
        .with_cleanup_expired_logs(Some(false))
}

/// The properties of a delete or an update that delta-rs runs itself: its
/// own retries kept (its conflict check lets an append that raced it
/// through), the log cleanup off as in [`commit_properties`].
pub fn operation_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

/// Loads `table` at the version `committed` made, from the snapshot the
/// commit itself brought up to date (reading the log again would replay
/// that commit a second time).
pub fn load_committed(table: &mut DeltaTable, committed: FinalizedCommit) -> i64 {
    let version = committed.version() as i64;
    table.state = Some(committed.snapshot);
    version
}

/// Writes a checkpoint of the version `table` is at, unless its log has one
/// (the kernel checks): a reader then opens the table from it instead of
/// replaying each commit since the last (Delta writes one every
/// `delta.checkpointInterval`).
pub async fn checkpoint(table: &DeltaTable) -> Result<(), StoreError> {
    deltalake_core::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(|e| StoreError::delta(table.table_url(), e))
}

/// How far application `app_id` has committed to `table` (Delta's `txn`).
pub async fn app_progress(table: &DeltaTable, app_id: &str) -> Result<Option<i64>, StoreError> {
    let state = table
        .snapshot()
        .map_err(|e| StoreError::delta(table.table_url(), e))?;
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| StoreError::delta(table.table_url(), e))
}

/// Columns whose values are (nearly) all different, written without
/// dictionary encoding: building a dictionary of them costs a hash per
/// value and buys nothing before Parquet gives up on it. Every other column
/// keeps it (`type`, `event_name`, statuses… repeat, and a dictionary of
/// them is smaller and faster to read).
pub const UNIQUE_COLUMNS: &[&str] = &[
    "seq",
    "event_id",
    "sent_at",
    "properties",
    "traits",
    "envelope",
    "raw",
];

/// Columns of ids that repeat in some stores (a few visitors, many events
/// each) and hardly at all in others. Their dictionary is given up once it
/// holds [`ID_DICTIONARY_BYTES`] in a row group, not Parquet's 1 MiB: by
/// then most values are new, and interning every one of them (a hash, a
/// comparison, a table that keeps growing) cost 4% of an import's CPU.
pub const ID_COLUMNS: &[&str] = &["client_id", "user_id", "email"];

/// The largest dictionary of an [`ID_COLUMNS`] column in a row group: a
/// few thousand distinct ids.
pub const ID_DICTIONARY_BYTES: usize = 64 << 10;

/// Columns of JSON text, written without min/max statistics: no query
/// narrows them by range, and comparing each long value against the page's
/// minimum and maximum is a cost on every write. (Their files carry no
/// statistics for them in the Delta log either; nothing prunes on them.)
pub const JSON_COLUMNS: &[&str] = &[
    "properties",
    "traits",
    "envelope",
    "raw",
    "data",
    "payload",
    "row",
];

/// The largest page of a JSON column (Parquet's default is 1 MiB): with
/// the rows of a file grouped by event name (`store::layout`), a query for
/// a few names decompresses the few pages that hold them, and smaller
/// pages leave less of the other names' text around them.
pub const JSON_PAGE_BYTES: usize = 256 << 10;

/// Rows per Parquet row group: a query splits a file across cores by row
/// groups, so a compacted window of 100k events (one file of a few MB) is
/// read by two cores, not one.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The Parquet settings of every file tripwire writes.
pub fn writer_properties() -> WriterProperties {
    writer_properties_with(ROW_GROUP_ROWS)
}

/// [`writer_properties`] with row groups of at most `row_group_rows` rows.
pub fn writer_properties_with(row_group_rows: usize) -> WriterProperties {
    let builder = UNIQUE_COLUMNS
        .iter()
        .fold(WriterProperties::builder(), |builder, column| {
            builder.set_column_dictionary_enabled(ColumnPath::from(*column), false)
        });
    let builder = ID_COLUMNS.iter().fold(builder, |builder, column| {
        builder
            .set_column_dictionary_page_size_limit(ColumnPath::from(*column), ID_DICTIONARY_BYTES)
    });
    JSON_COLUMNS
        .iter()
        .fold(builder, |builder, column| {
            builder
                .set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None)
                .set_column_data_page_size_limit(ColumnPath::from(*column), JSON_PAGE_BYTES)
        })
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(row_group_rows))
        .build()
}

/// The version `table` is loaded at (-1: no commit yet).
pub fn version(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |v| v as i64)
}

/// The Delta id of the table `table` is loaded from: a table replaced
/// under the same path has another.
pub fn table_id(table: &DeltaTable) -> Result<String, StoreError> {
    let snapshot = table
        .snapshot()
        .map_err(|e| StoreError::delta(table.table_url(), e))?;
    Ok(snapshot.metadata().id().to_string())
}

/// Refreshes `table` to its latest version.
pub async fn refresh(table: &mut DeltaTable) -> Result<(), StoreError> {
    let url = table.table_url().clone();
    table
        .update_incremental(None)
        .await
        .map_err(|e| StoreError::delta(&url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_columns_skip_the_dictionary_and_repeating_ones_keep_it() {
        let properties = writer_properties();
        let dictionary = |c: &str| properties.dictionary_enabled(&ColumnPath::from(c));
        for column in ["event_id", "seq", "properties", "envelope", "raw"] {
            assert!(!dictionary(column), "{column}");
        }
        for column in ["type", "event_name", "client_id", "received_at", "status"] {
            assert!(dictionary(column), "{column}");
        }
        // The names are real columns of the tables that hold them.
        let events = crate::event::events_schema();
        let quarantine = crate::store::quarantine::quarantine_schema();
        let ledger = crate::store::ledger::ledger_schema();
        for column in UNIQUE_COLUMNS.iter().chain(JSON_COLUMNS) {
            let known = [&events, &quarantine, &ledger]
                .iter()
                .any(|schema| schema.index_of(column).is_ok());
            assert!(known, "{column} is in no table");
        }
    }

    /// Whether every data page of `client_id` in a file of `ids` (one
    /// row group) is dictionary encoded.
    fn client_ids_all_in_a_dictionary(ids: impl Iterator<Item = String>) -> bool {
        use arrow::array::{ArrayRef, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::basic::Encoding;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use std::sync::Arc;

        let schema = Arc::new(Schema::new(vec![Field::new(
            "client_id",
            DataType::Utf8,
            false,
        )]));
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(ids));
        let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![ids]).unwrap();
        let mut file = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut file, schema, Some(writer_properties())).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
        let metadata = reader.metadata();
        assert_eq!(metadata.num_row_groups(), 1);
        let column = metadata.row_group(0).column(0);
        let encodings = column.page_encoding_stats_mask().expect("page encodings");
        column.dictionary_page_offset().is_some() && encodings.is_only(Encoding::RLE_DICTIONARY)
    }

    #[test]
    fn ids_keep_a_dictionary_while_they_repeat_and_give_it_up_when_they_do_not() {
        // A store of a few hundred visitors: every page from the dictionary.
        let visitors = (0..ROW_GROUP_ROWS).map(|i| format!("anon-{:07}", i % 300));
        assert!(client_ids_all_in_a_dictionary(visitors));
        // A store where most events come from a new visitor: past
        // ID_DICTIONARY_BYTES of ids, the pages are written plain.
        let distinct = ID_DICTIONARY_BYTES / 8;
        let visitors = (0..ROW_GROUP_ROWS).map(|i| format!("anon-{:07}", i % distinct));
        assert!(!client_ids_all_in_a_dictionary(visitors));
    }

    #[test]
    fn json_columns_are_written_without_statistics_and_the_rest_with_them() {
        let properties = writer_properties();
        let statistics = |c: &str| properties.statistics_enabled(&ColumnPath::from(c));
        for column in [
            "properties",
            "traits",
            "envelope",
            "raw",
            "data",
            "payload",
            "row",
        ] {
            assert_eq!(statistics(column), EnabledStatistics::None, "{column}");
        }
        for column in ["commit_version", "sent_at", "event_name", "kind", "status"] {
            assert_ne!(statistics(column), EnabledStatistics::None, "{column}");
        }
    }

    #[test]
    fn json_columns_are_written_in_smaller_pages() {
        let properties = writer_properties();
        let page = |c: &str| properties.column_data_page_size_limit(&ColumnPath::from(c));
        for column in JSON_COLUMNS {
            assert_eq!(page(column), JSON_PAGE_BYTES, "{column}");
        }
        assert_eq!(page("event_name"), properties.data_page_size_limit());
        assert!(JSON_PAGE_BYTES < properties.data_page_size_limit());
    }

    #[tokio::test]
    async fn a_checkpoint_is_written_once_per_version() {
        use crate::store::{Store, TableKind};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
        let table = store
            .open_or_create("shop", TableKind::Attempts)
            .await
            .unwrap();
        let version = table.version().unwrap();
        let file = dir
            .path()
            .join("shop/attempts/_delta_log")
            .join(format!("{version:020}.checkpoint.parquet"));
        assert!(!file.exists());
        checkpoint(&table).await.unwrap();
        // Writing a file makes a new one (a rename), with its own inode.
        let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        let written = inode();
        checkpoint(&table).await.unwrap();
        assert_eq!(inode(), written, "the checkpoint there was not rewritten");
        let reopened = store
            .open("shop", TableKind::Attempts)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reopened.version(), Some(version));
    }
}
