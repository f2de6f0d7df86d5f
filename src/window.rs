//! A run's window in table versions (docs/architecture.md "Windows"): `new_events`
//! is exactly the rows that data-changing commits added in versions
//! `(cursor, watermark]`, whatever their event time, read as a plain
//! ListingTable over those Parquet files.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::logstore::get_actions;

use crate::event::events_schema;
use crate::store::StoreError;

/// Versions `(from, to]` of the events table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The cursor: the last version an earlier run saw (-1: none yet).
    pub from: i64,
    /// The watermark: the table version this run sees.
    pub to: i64,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.to <= self.from
    }
}

/// The URLs of the Parquet files added by data-changing commits in `window`.
pub async fn added_files(table: &DeltaTable, window: Window) -> Result<Vec<String>, StoreError> {
    let url = table.table_url().clone();
    let log = table.log_store();
    let mut files = Vec::new();
    for version in (window.from + 1).max(0)..=window.to {
        let bytes = log
            .read_commit_entry(version as u64)
            .await
            .map_err(|e| StoreError::delta(&url, e))?
            .ok_or_else(|| {
                StoreError::delta(&url, format!("commit {version} is missing from the log"))
            })?;
        let actions =
            get_actions(version as u64, &bytes).map_err(|e| StoreError::delta(&url, e))?;
        for action in actions {
            if let Action::Add(add) = action
                && add.data_change
            {
                let file = url
                    .join(&add.path)
                    .map_err(|e| StoreError::delta(&url, e))?;
                files.push(file.to_string());
            }
        }
    }
    Ok(files)
}

/// `new_events`: a table over exactly `files` (empty when there are none).
pub fn new_events_table(
    files: &[String],
) -> Result<Arc<dyn TableProvider>, datafusion::error::DataFusionError> {
    if files.is_empty() {
        return Ok(Arc::new(MemTable::try_new(events_schema(), vec![vec![]])?));
    }
    let urls = files
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(events_schema());
    Ok(Arc::new(ListingTable::try_new(config)?))
}
