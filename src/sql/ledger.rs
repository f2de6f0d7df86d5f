//! The ledger as an analyst (and the delivery worker) reads it: one plain
//! view per kind of ledger row (`runs`, `matches`), the `attempts` history,
//! and `deliveries`: each planned delivery with its match's contact columns
//! and its current state from its latest attempt (docs/reference.md
//! "Tables"). The raw ledger is hidden: only the views read it.

use datafusion::prelude::{DataFrame, SessionContext};
use deltalake_core::DeltaTable;

use super::lazy_schema::{LazySchema, Table, view};
use super::{QueryError, delta_provider, engine, new_context};
use crate::store::TableKind;

/// The name the raw ledger has where only the views can read it.
const LEDGER_ROWS: &str = "tripwire_ledger_rows";

/// Per delivery, from its history: real attempts, the latest row's status,
/// the latest real attempt's error, when it was delivered, and where its
/// retry schedule restarts (`redeliver` resets).
const TRIES_SQL: &str = "
  SELECT delivery_id,
         count(*) FILTER (WHERE status NOT IN ('pending', 'discarded')) AS attempts,
         max(attempt) AS last_attempt,
         last_value(status ORDER BY attempt) AS status,
         last_value(next_attempt_at ORDER BY attempt) AS next_attempt_at,
         last_value(error ORDER BY attempt) FILTER (WHERE status NOT IN ('pending', 'discarded')) AS last_error,
         max(attempted_at) FILTER (WHERE status = 'delivered') AS delivered_at,
         max(attempt) FILTER (WHERE status = 'pending') AS reset_attempt,
         last_value(attempted_at ORDER BY attempt) FILTER (WHERE status = 'pending') AS reset_at
  FROM attempts GROUP BY delivery_id";

/// Every planned delivery with its current state, and the worker's columns
/// (`planned_status`, `retry_since`, `tries`, `last_attempt`).
fn state_sql() -> String {
    format!(
        "WITH tries AS ({TRIES_SQL})
         SELECT d.delivery_id, d.run_id, d.trigger, d.flow, d.action, d.ordinal, d.contact,
                d.variant, d.branch,
                coalesce(t.status, d.status) AS status,
                coalesce(t.attempts, 0) AS attempts,
                t.last_error, d.finished_at AS planned_at, t.delivered_at,
                t.next_attempt_at, d.reason, d.payload,
                d.status AS planned_status,
                coalesce(t.reset_at, d.finished_at) AS retry_since,
                coalesce(t.last_attempt, 0) - coalesce(t.reset_attempt, 0) AS tries,
                coalesce(t.last_attempt, 0) AS last_attempt
         FROM {LEDGER_ROWS} d LEFT JOIN tries t ON d.delivery_id = t.delivery_id
         WHERE d.kind = 'delivery'"
    )
}

/// `runs`: one row per run (its `kind = 'run'` rows).
const RUNS_SQL: &str = "SELECT run_id, trigger, from_version, to_version, started_at, \
     finished_at, clock, matched, resolved, unresolved, dropped, pending, expired, held, error \
     FROM tripwire_ledger_rows WHERE kind = 'run'";

/// `matches`: one row per match.
const MATCHES_SQL: &str = "SELECT run_id, trigger, ordinal, contact, event_id, email, \
     user_id, client_id, data, finished_at \
     FROM tripwire_ledger_rows WHERE kind = 'match'";

/// The columns of the `deliveries` view, in order.
pub const DELIVERIES_COLUMNS: &[&str] = &[
    "delivery_id",
    "run_id",
    "trigger",
    "flow",
    "action",
    "contact",
    "email",
    "user_id",
    "client_id",
    "variant",
    "branch",
    "status",
    "attempts",
    "last_error",
    "data",
    "planned_at",
    "delivered_at",
    "next_attempt_at",
    "reason",
    "payload",
];

/// Adds the views `runs`, `matches` and `deliveries` over the raw ledger
/// `rows` (hidden: only the views read it) to a session's `tables`, which
/// hold `attempts`. Each view is planned when a query first names it.
pub fn defer_views(tables: &LazySchema, rows: Table) {
    tables.add_hidden(LEDGER_ROWS, rows);
    tables.add("runs", Table::Later(view(RUNS_SQL.to_string())));
    tables.add("matches", Table::Later(view(MATCHES_SQL.to_string())));
    tables.add("deliveries", Table::Later(view(deliveries_sql())));
}

/// `deliveries`: the state of each delivery with its match's columns.
fn deliveries_sql() -> String {
    let columns: Vec<String> = DELIVERIES_COLUMNS
        .iter()
        .map(|c| match *c {
            "email" | "user_id" | "client_id" | "data" => format!("m.{c}"),
            other => format!("s.{other}"),
        })
        .collect();
    format!(
        "SELECT {} FROM ({}) s LEFT JOIN ({MATCHES_SQL}) m \
         ON m.run_id = s.run_id AND m.ordinal = s.ordinal",
        columns.join(", "),
        state_sql()
    )
}

/// A session whose `delivery_state` (every planned delivery's state, no
/// match columns) is read at these table versions: what the worker and
/// `redeliver` decide on.
pub async fn state_context(
    ledger: &DeltaTable,
    attempts: &DeltaTable,
) -> Result<SessionContext, QueryError> {
    let ctx = new_context()?;
    let ledger = delta_provider(&ctx, Some(ledger.clone()), TableKind::Ledger).await?;
    let attempts = delta_provider(&ctx, Some(attempts.clone()), TableKind::Attempts).await?;
    ctx.register_table("attempts", attempts).map_err(engine)?;
    ctx.register_table(LEDGER_ROWS, ledger).map_err(engine)?;
    let state: Result<DataFrame, _> = ctx.sql(&state_sql()).await;
    ctx.deregister_table(LEDGER_ROWS).map_err(engine)?;
    let state = state.map_err(engine)?.into_view();
    ctx.register_table("delivery_state", state)
        .map_err(engine)?;
    Ok(ctx)
}
