//! A run's window (docs/architecture.md "Windows"): `new_events` is the
//! rows of the events table's *current* snapshot whose `commit_version`
//! stamp is in `(cursor, watermark]`, whatever their event time. Files are
//! chosen by that column's min/max stats and read as a plain Parquet file
//! list (which Ballista can ship), never from old commit files, so a window
//! survives log cleanup, checkpoints, compaction (rows keep their stamp)
//! and other writers' deletes (survivors keep theirs).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{Expr, col, lit};
use deltalake_core::DeltaTable;

use crate::event::batch::COMMIT_VERSION;
use crate::event::events_schema;
use crate::sql::{QueryError, engine};
use crate::store::files::live_files;

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

/// How much history a trigger's first run reads (its `backfill` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backfill {
    /// None: the first run starts at the table's current version.
    #[default]
    Nothing,
    /// Every event in the table.
    All,
    /// Events sent within this long before the run's clock.
    Recent(std::time::Duration),
}

/// The window a run reads, and the `sent_at` bound of a first run's
/// backfill: after its cursor; with no cursor yet (a new or renamed
/// trigger), from the watermark, or from the start for a backfill.
pub fn window_for(
    cursor: Option<i64>,
    watermark: i64,
    backfill: Backfill,
    now: DateTime<Utc>,
) -> (Window, Option<DateTime<Utc>>) {
    let from_start = Window {
        from: -1,
        to: watermark,
    };
    match (cursor, backfill) {
        (Some(cursor), _) => (
            Window {
                from: cursor,
                to: watermark,
            },
            None,
        ),
        (None, Backfill::Nothing) => (
            Window {
                from: watermark,
                to: watermark,
            },
            None,
        ),
        (None, Backfill::All) => (from_start, None),
        (None, Backfill::Recent(span)) => {
            let span = chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX);
            let since = now
                .checked_sub_signed(span)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            (from_start, Some(since))
        }
    }
}

/// `new_events` for `window` of `table` (none: an empty table), keeping
/// only events sent after `sent_after` when given (a `backfill` duration).
pub fn new_events(
    table: Option<&DeltaTable>,
    window: Window,
    sent_after: Option<DateTime<Utc>>,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let Some(table) = table.filter(|_| !window.is_empty()) else {
        return empty_new_events().map_err(engine);
    };
    let files: Vec<String> = live_files(table)?
        .into_iter()
        .filter(|f| f.may_hold(window.from, window.to))
        .map(|f| f.url_in(table.table_url()))
        .collect::<Result<_, _>>()?;
    if files.is_empty() {
        return empty_new_events().map_err(engine);
    }
    let mut keep = col(COMMIT_VERSION)
        .gt(lit(window.from))
        .and(col(COMMIT_VERSION).lt_eq(lit(window.to)));
    if let Some(after) = sent_after {
        keep = keep.and(col("sent_at").gt(lit_timestamp(after)));
    }
    rows_of(&files, keep).map_err(engine)
}

/// An empty `new_events` (for `check`, and windows with nothing new).
pub fn empty_new_events() -> Result<Arc<dyn TableProvider>, datafusion::error::DataFusionError> {
    Ok(Arc::new(MemTable::try_new(events_schema(), vec![vec![]])?))
}

fn lit_timestamp(at: DateTime<Utc>) -> Expr {
    lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
        Some(at.timestamp_micros()),
        Some("UTC".into()),
    ))
}

/// The rows of the Parquet `files` that satisfy `keep`, as one table.
fn rows_of(
    files: &[String],
    keep: Expr,
) -> Result<Arc<dyn TableProvider>, datafusion::error::DataFusionError> {
    let urls = files
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(events_schema());
    let listing: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config)?);
    let plan = LogicalPlanBuilder::scan("new_events", provider_as_source(listing), None)?
        .filter(keep)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_first_run_starts_at_the_watermark_unless_it_backfills() {
        let now = at("2026-11-05T00:00:00Z");
        let window = |cursor, backfill| window_for(cursor, 40, backfill, now);
        assert_eq!(
            window(Some(7), Backfill::Nothing),
            (Window { from: 7, to: 40 }, None)
        );
        assert_eq!(
            window(Some(7), Backfill::All),
            (Window { from: 7, to: 40 }, None)
        );
        assert_eq!(
            window(None, Backfill::Nothing),
            (Window { from: 40, to: 40 }, None)
        );
        assert_eq!(
            window(None, Backfill::All),
            (Window { from: -1, to: 40 }, None)
        );
        let week = std::time::Duration::from_secs(7 * 86_400);
        assert_eq!(
            window(None, Backfill::Recent(week)),
            (
                Window { from: -1, to: 40 },
                Some(at("2026-10-29T00:00:00Z"))
            )
        );
    }
}
