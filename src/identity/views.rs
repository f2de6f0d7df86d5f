//! The `identities` and `contacts` views over a workspace's events, both
//! measured against the session's clock.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::prelude::SessionContext;
use futures::FutureExt as _;

use super::index::{AsOf, IdentityIndex};
use crate::event::batch::events_schema;
use crate::sql::QueryError;
use crate::sql::lazy_schema::{Build, LazySchema, Table, external, view};

/// Adds `identities` and `contacts` to a session's `tables` (which hold
/// `events`), as of `now`, keeping identifies younger than `ttl`.
/// `identities` is the identity index's table when `index` answers for
/// `now` ([`identities_from_index`]), else a view over `events`. Both are
/// made when a query first names them: a trigger that does not join
/// `identities` (resolution reads the index itself) never copies it.
pub fn defer_views(
    tables: &LazySchema,
    now: DateTime<Utc>,
    ttl: Duration,
    index: Option<Arc<IdentityIndex>>,
) {
    let cutoff = AsOf::new(now, ttl).cutoff;
    let cutoff = DateTime::from_timestamp_micros(cutoff).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let scan = identities_sql(cutoff, now);
    let identities: Build = match index {
        None => view(scan),
        Some(index) => {
            let scan = view(scan);
            Box::new(
                move |planner: SessionContext| match identities_from_index(&index, now, ttl) {
                    Ok(Some(table)) => futures::future::ready(Ok(table)).boxed(),
                    Ok(None) => scan(planner),
                    Err(e) => futures::future::ready(Err(external(e))).boxed(),
                },
            )
        }
    };
    tables.add("identities", Table::Later(identities));
    tables.add("contacts", Table::Later(view(contacts_sql(now))));
}

/// The `identities` table as `index` holds it at `now`: the same rows as
/// the view over `events`, from memory. `None` when the index cannot say
/// (an identify sent after `now`).
pub fn identities_from_index(
    index: &IdentityIndex,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<Option<Arc<dyn TableProvider>>, QueryError> {
    let Some(batch) = index.identities(AsOf::new(now, ttl), identities_schema()) else {
        return Ok(None);
    };
    let batch = batch.map_err(|e| QueryError::Engine(e.to_string()))?;
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(engine)?;
    Ok(Some(Arc::new(table)))
}

/// The view's columns, typed as the events table types them.
pub(crate) fn identities_schema() -> SchemaRef {
    let events = events_schema();
    let field = |name: &str, as_name: &str| {
        let field = events.field_with_name(name).expect("an events column");
        Field::new(as_name, field.data_type().clone(), true)
    };
    Arc::new(Schema::new(vec![
        field("client_id", "client_id"),
        field("user_id", "user_id"),
        field("email", "email"),
        field("traits", "traits"),
        field("sent_at", "identified_at"),
    ]))
}

fn engine(e: datafusion::error::DataFusionError) -> QueryError {
    QueryError::Engine(e.to_string())
}

fn timestamp(at: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// The latest identify sent in `(cutoff, now]` per `client_id` (a device),
/// and per `user_id` (a person, whatever device or server sent it; those
/// rows have a null `client_id`).
fn identities_sql(cutoff: DateTime<Utc>, now: DateTime<Utc>) -> String {
    // The user-keyed side's client_id is null, written as an expression over
    // a column: a literal NULL would fold a filter on the union (`client_id =
    // 'c1'`) into a constant that the Delta scan accepts as exact and then
    // ignores, letting every user row through.
    let latest_by = |key: &str, inner: &str, outer: &str| {
        format!(
            "SELECT {outer}, user_id, email, traits, identified_at FROM (
               SELECT {inner}, email, traits, sent_at AS identified_at,
                      row_number() OVER (PARTITION BY {key} ORDER BY sent_at DESC, seq DESC) AS latest
               FROM events
               WHERE type = 'identify' AND {key} IS NOT NULL
                 AND sent_at > {cutoff} AND sent_at <= {now}
             ) WHERE latest = 1",
            cutoff = timestamp(cutoff),
            now = timestamp(now),
        )
    };
    format!(
        "{} UNION ALL {}",
        latest_by("client_id", "client_id, user_id", "client_id"),
        latest_by(
            "user_id",
            "user_id",
            "nullif(user_id, user_id) AS client_id"
        ),
    )
}

/// One row per person seen up to `now`, keyed by email, else by user id.
///
/// An event names its person by its own `email`, else by the latest email
/// seen with its own `user_id`, else through the latest identify of its
/// `client_id` (that identify's email, else the latest email of that
/// identify's user id): a row's own user id wins over its client's, so a
/// shared device never pairs one user with another's email. Unlike
/// `identities`, no TTL applies: a contact is known for good once seen.
/// `user_id` and `traits` are the latest known values.
fn contacts_sql(now: DateTime<Utc>) -> String {
    format!(
        "WITH seen AS (
           SELECT email, user_id, client_id, traits, type, sent_at, seq
           FROM events WHERE sent_at <= {now}
         ),
         by_client AS (
           SELECT client_id, email, user_id FROM (
             SELECT client_id, email, user_id,
                    row_number() OVER (PARTITION BY client_id ORDER BY sent_at DESC, seq DESC) AS latest
             FROM seen
             WHERE type = 'identify' AND client_id IS NOT NULL
               AND (email IS NOT NULL OR user_id IS NOT NULL)
           ) WHERE latest = 1
         ),
         by_user AS (
           SELECT user_id, email FROM (
             SELECT user_id, email,
                    row_number() OVER (PARTITION BY user_id ORDER BY sent_at DESC, seq DESC) AS latest
             FROM seen WHERE user_id IS NOT NULL AND email IS NOT NULL
           ) WHERE latest = 1
         ),
         keyed AS (
           SELECT COALESCE(s.email, own.email, c.email, cu.email) AS email,
                  COALESCE(s.user_id, c.user_id) AS user_id,
                  CASE WHEN s.type = 'identify' THEN s.traits END AS traits,
                  s.sent_at, s.seq
           FROM seen s
           LEFT JOIN by_user own ON own.user_id = s.user_id
           LEFT JOIN by_client c ON c.client_id = s.client_id
           LEFT JOIN by_user cu ON cu.user_id = c.user_id
         )
         SELECT max(email) AS email,
                first_value(user_id ORDER BY sent_at DESC, seq DESC)
                  FILTER (WHERE user_id IS NOT NULL) AS user_id,
                first_value(traits ORDER BY sent_at DESC, seq DESC)
                  FILTER (WHERE traits IS NOT NULL) AS traits,
                min(sent_at) AS first_seen,
                max(sent_at) AS last_seen
         FROM keyed
         WHERE email IS NOT NULL OR user_id IS NOT NULL
         GROUP BY CASE WHEN email IS NOT NULL THEN 'email:' || email ELSE 'user_id:' || user_id END",
        now = timestamp(now),
    )
}
