//! The `identities` and `contacts` views over a workspace's events, both
//! measured against the session's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use crate::sql::QueryError;

/// Registers `identities` and `contacts` on `ctx` (which already has
/// `events`), as of `now`, keeping identifies younger than `ttl`.
pub async fn register(
    ctx: &SessionContext,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(), QueryError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let cutoff = now
        .checked_sub_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    register_view(ctx, "identities", &identities_sql(cutoff, now)).await?;
    register_view(ctx, "contacts", &contacts_sql(now)).await
}

async fn register_view(ctx: &SessionContext, name: &str, sql: &str) -> Result<(), QueryError> {
    let engine = |e: datafusion::error::DataFusionError| QueryError::Engine(e.to_string());
    let view = ctx.sql(sql).await.map_err(engine)?.into_view();
    ctx.register_table(name, view).map_err(engine)?;
    Ok(())
}

fn timestamp(at: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// The latest identify per `client_id` sent in `(cutoff, now]`.
fn identities_sql(cutoff: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "SELECT client_id, user_id, email, traits, identified_at FROM (
           SELECT client_id, user_id, email, traits, sent_at AS identified_at,
                  row_number() OVER (PARTITION BY client_id ORDER BY sent_at DESC, seq DESC) AS latest
           FROM events
           WHERE type = 'identify' AND client_id IS NOT NULL
             AND sent_at > {cutoff} AND sent_at <= {now}
         ) WHERE latest = 1",
        cutoff = timestamp(cutoff),
        now = timestamp(now),
    )
}

/// One row per person seen up to `now`, keyed by email, else by user id.
///
/// An event names its person by its own `email`, else through the latest
/// identify of its `client_id`, else through the latest email seen with its
/// `user_id`. Unlike `identities`, no TTL applies: a contact is known for
/// good once seen. `user_id` and `traits` are the latest known values.
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
           SELECT COALESCE(s.email, c.email, u.email) AS email,
                  COALESCE(s.user_id, c.user_id) AS user_id,
                  CASE WHEN s.type = 'identify' THEN s.traits END AS traits,
                  s.sent_at, s.seq
           FROM seen s
           LEFT JOIN by_client c ON c.client_id = s.client_id
           LEFT JOIN by_user u ON u.user_id = COALESCE(s.user_id, c.user_id)
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
