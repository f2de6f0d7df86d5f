//! Ledgers written before the `kind` layout (a `record` column, a joined
//! `match_key` on every match and delivery row, match data copied onto
//! every delivery) are rewritten once, in one overwrite commit, when a
//! newer tripwire first opens them. Application transactions (the
//! triggers' cursors) are table state, untouched by an overwrite.
//!
//! Nothing is split on a delimiter: an old row's contact is rebuilt from
//! its resolved columns exactly as the old resolution chose it (email,
//! else user id, else client id), and its event id is what follows that
//! contact in the old key. Deliveries find their match's ordinal by run
//! and old key.

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::operations::write::SchemaMode;
use deltalake_core::protocol::SaveMode;

use super::ledger_schema;
use crate::store::StoreError;
use crate::store::table::open;

/// The column only the old layout has.
const OLD_KIND_COLUMN: &str = "record";

const CONTACT: &str = "CASE WHEN email IS NOT NULL THEN 'email:' || email
     WHEN user_id IS NOT NULL THEN 'user_id:' || user_id
     ELSE 'client_id:' || client_id END";

/// Whether `table` has the old layout.
pub fn is_old(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .is_ok_and(|s| s.schema().field(OLD_KIND_COLUMN).is_some())
}

/// Rewrites an old-layout ledger in the `kind` layout; returns the table
/// as it is afterwards (also when another process migrated it first).
pub async fn migrate(table: DeltaTable) -> Result<DeltaTable, StoreError> {
    let url = table.table_url().clone();
    let delta = |e: &dyn std::fmt::Display| StoreError::delta(&url, e);
    let rows = rewritten_rows(&table).await.map_err(|e| delta(&e))?;
    let written = table
        .write(rows)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_commit_properties(crate::store::table::commit_properties())
        .await;
    match written {
        Ok(table) => Ok(table),
        Err(e) => {
            let reopened = open(&url).await?;
            match is_old(&reopened) {
                false => Ok(reopened),
                true => Err(delta(&e)),
            }
        }
    }
}

/// Every old row in the new layout, cast to the ledger schema.
async fn rewritten_rows(table: &DeltaTable) -> datafusion::error::Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("old", table.table_provider().await?)?;
    let frame = ctx.sql(&migration_sql()).await?;
    let schema = ledger_schema();
    let batches = frame.collect().await?;
    batches
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| match batch.column_by_name(f.name()) {
                    Some(column) => arrow::compute::cast(column, f.data_type()),
                    // Columns added after the old layout: no old row has them.
                    None => Ok(arrow::array::new_null_array(
                        f.data_type(),
                        batch.num_rows(),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

fn migration_sql() -> String {
    format!(
        "WITH matches AS (
           SELECT *, {CONTACT} AS contact,
                  row_number() OVER (PARTITION BY run_id ORDER BY match_key) - 1 AS ordinal
           FROM old WHERE record = 'match'
         )
         SELECT 'run' AS kind, run_id, trigger, finished_at, clock,
                from_version, to_version, started_at, matched, resolved, unresolved, dropped, error,
                CAST(NULL AS BIGINT) AS ordinal, CAST(NULL AS VARCHAR) AS contact,
                CAST(NULL AS VARCHAR) AS event_id, CAST(NULL AS VARCHAR) AS email,
                CAST(NULL AS VARCHAR) AS user_id, CAST(NULL AS VARCHAR) AS client_id,
                CAST(NULL AS VARCHAR) AS data, CAST(NULL AS VARCHAR) AS delivery_id,
                CAST(NULL AS VARCHAR) AS flow, CAST(NULL AS VARCHAR) AS action,
                CAST(NULL AS VARCHAR) AS variant, CAST(NULL AS BIGINT) AS branch,
                CAST(NULL AS VARCHAR) AS status, CAST(NULL AS VARCHAR) AS reason,
                CAST(NULL AS VARCHAR) AS payload
         FROM old WHERE record = 'run'
         UNION ALL
         SELECT 'match', run_id, trigger, finished_at, clock,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                ordinal, contact,
                CASE WHEN length(match_key) > length(contact)
                     THEN substr(match_key, length(contact) + 11) END,
                email, user_id, client_id, data,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
         FROM matches
         UNION ALL
         SELECT 'delivery', d.run_id, d.trigger, d.finished_at, d.clock,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                m.ordinal, m.contact,
                NULL, NULL, NULL, NULL, NULL,
                d.delivery_id, d.flow, d.action, d.variant, d.branch, d.status, d.reason, d.payload
         FROM old d LEFT JOIN matches m ON m.run_id = d.run_id AND m.match_key = d.match_key
         WHERE d.record = 'delivery'"
    )
}
