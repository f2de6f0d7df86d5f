//! Deliveries (docs/reference.md "Deliveries"): the worker that performs the planned deliveries of
//! the fire ledger (webhooks, file lines, emitted events), records every
//! attempt, retries with backoff and dead-letters what keeps failing.
//!
//! ```text
//! ledger (record = 'delivery', status 'pending', payload)  ─┐ new commits only
//! attempts (append-only history per delivery_id)           ─┴▶ open-deliveries index ─▶ due, oldest first (capped per rate-limited action)
//!   batch N ─▶ claim each (create-only: claim journal, or state/claims on S3) ─▶ webhook (paced per action, ≤ WEBHOOK_CONCURRENCY in flight, signed now)
//!           │                                          ─▶ file (append, fsync) │ event (events table, once)
//!           ─▶ RetryAction ─▶ delivered | failed (next_attempt_at) | dead ─▶ ONE attempts commit, while batch N+1 is performed
//! ```
//! - `open`: the open deliveries (pending, failed, held) and what is due,
//!   a pure fold of ledger and attempts rows; `index`: keeping it up to
//!   date from the new commits (`store::follow`), rebuilt from `state` when it
//!   cannot be; `snapshot`: its snapshots for a fresh process.
//! - `state`: a delivery's current state over the whole history (`delivery_state`).
//! - `retry`: pure decisions: HTTP answer → [`RetryAction`], backoff, dead.
//! - `claim`: one worker at a time per delivery attempt, across replicas.
//! - `pace`: per-action rate limits and 429s; `replicas`: heartbeats that split them.
//! - `clock`: the wall clock each attempt reads (injectable).
//! - `payload`, `webhook`, `sign`, `file`, `emit`: performing one action.
//! - `trust`: the CA certificates https webhooks trust; `network`: which
//!   addresses they may reach (`allow_private_networks`).
//! - `perform`: one batch, claimed and paced; `worker`: [`Deliverer`],
//!   batch by batch; `redeliver`: [`redeliver`].
//! - `commands`: what `tripwire deliveries`, `redeliver` and `deliver` do.
//!
//! # Guarantees
//! - **One sender at a time.** Each attempt of a delivery is claimed with a
//!   create-only object before it is performed, so replicas on one storage
//!   never send it together; a crashed worker's claim expires and another
//!   takes the attempt over (`claim`).
//! - **At least once to a receiver, recorded once.** Attempts are recorded
//!   after the batch was performed, so a crash in between performs it again
//!   once its claims expire: a webhook is re-sent with the same
//!   `Idempotency-Key` (its `delivery_id`), a file line is written again. A
//!   delivery recorded `delivered` is never due again, and is recorded
//!   `delivered` once: a worker whose attempts commit lost the race to
//!   another re-reads and drops its rows for deliveries the other recorded
//!   as delivered.
//! - **Emitted events are stored once**, even across that crash (see `emit`).
//! - **Nothing is lost across restarts**: a delivery is due until its
//!   history says delivered or dead, and `redeliver` revives the dead.
//! - **A fresh clock per attempt**: a signature's `t`, `attempted_at` and
//!   the next try come from the worker's clock as each request goes; which
//!   deliveries are due is asked at the caller's time (`deliver --now`).
//! - Only 2xx is success; 408, 429, 5xx, timeouts and connection errors are
//!   retried (honouring `Retry-After`); other 4xx and 3xx are dead at once.
//!   A 429 also pauses the delivery's whole action (`pace`).
//! - Webhooks go to `http://` and `https://` URLs (rustls; the platform's
//!   CA certificates, or `SSL_CERT_FILE`). With `allow_private_networks =
//!   false`, a webhook to a loopback, private or link-local address (after
//!   DNS, or as an IP literal) is dead with the reason.
//! - A file delivery writes only inside the project folder; a payload whose
//!   path leaves it is dead with the reason.
//!
//! Test hook: `TRIPWIRE_PAUSE_BEFORE_RECORD=<dir>` stops the worker after
//! performing a batch, before recording it (crash tests kill it there).

mod claim;
mod clock;
mod commands;
mod emit;
mod file;
mod hold;
mod index;
mod network;
mod open;
mod pace;
mod payload;
mod perform;
mod redeliver;
mod replicas;
mod retry;
mod sign;
mod snapshot;
mod state;
mod trust;
mod webhook;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use claim::{CLAIM_MARGIN, CLAIM_SWEEP_AGE, CLAIM_WINDOW};
pub use clock::Clock;
pub use commands::{
    DeliveryFilter, Listing, decide_held_now, deliver_now, delivery_rows, list, redeliver_now,
};
pub use emit::emit_app_id;
pub use hold::{Decision, decide_held};
pub use network::is_private;
pub use payload::{DEFAULT_TIMEOUT_MS, Payload};
pub use redeliver::redeliver;
pub use replicas::{HEARTBEAT_EVERY, REPLICA_TTL};
pub use retry::{
    BACKOFF_BASE, BACKOFF_CAP, DEFAULT_RETRY_PERIOD, RetryAction, classify_http, next_attempt,
    parse_retry_after,
};
pub use sign::{SIGNATURE_HEADER, hmac_hex, signature};
pub use worker::{
    DELIVERY_BATCH, Deliverer, DeliveryLimits, DeliverySummary, OpenDelivery, WEBHOOK_CONCURRENCY,
    deliver_due,
};

use crate::config::Config;
use crate::sql::QueryError;
use crate::store::{Store, StoreError};

/// How often `serve` looks for due deliveries.
pub const DELIVERY_TICK: Duration = Duration::from_secs(1);

/// Why deliveries could not be worked on (a failed delivery is not an
/// error: it is recorded and retried).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `redeliver` was given ids it cannot redeliver (the user's to fix).
    #[error("{0}")]
    Redeliver(String),
    /// The HTTP client could not be set up.
    #[error("{0}")]
    Http(String),
}

impl From<DeliverError> for crate::Error {
    fn from(e: DeliverError) -> crate::Error {
        match e {
            DeliverError::Store(e) => crate::Error::Store(e),
            DeliverError::Query(e) => crate::Error::Query(e),
            DeliverError::Redeliver(message) => crate::Error::Usage(message),
            DeliverError::Http(message) => crate::Error::Server(message),
        }
    }
}

/// Delivers what is due at `now` in every workspace (what `tripwire run`
/// does after its triggers), waiting for rate-limited actions; stops at
/// the first workspace that fails.
pub async fn deliver_all_due(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<(String, DeliverySummary)>, DeliverError> {
    let deliverer = Deliverer::new(DeliveryLimits::for_config(config));
    let mut summaries = Vec::new();
    let mut failure = None;
    for workspace in &config.workspaces {
        match deliverer
            .deliver_due(store, config, &workspace.id, now)
            .await
        {
            Ok(summary) => summaries.push((workspace.id.clone(), summary)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    deliverer.leave(store).await;
    match failure {
        Some(e) => Err(e),
        None => Ok(summaries),
    }
}

/// `serve`'s delivery worker: every [`DELIVERY_TICK`], delivers what is due
/// in each workspace, until `shutdown` turns true (a batch in flight is
/// finished first). A workspace whose batch left work for later (a
/// rate-limited action) ends its turn, and the next round starts at once:
/// the workspaces take turns rather than one holding the loop. Outcomes
/// and errors are logged, an error once until it changes.
pub async fn run_delivery_loop(config: Arc<Config>, mut shutdown: watch::Receiver<bool>) {
    let store = Store::new(config.storage.clone());
    let limits = DeliveryLimits {
        wait_for_rate_limits: false,
        ..DeliveryLimits::for_config(&config)
    };
    let deliverer = Deliverer::new(limits);
    tracing::debug!(node = deliverer.node(), "delivery worker started");
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut ticker = tokio::time::interval(DELIVERY_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut more = false;
    while !*shutdown.borrow() {
        if !std::mem::take(&mut more) {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => continue,
            }
        }
        for workspace in &config.workspaces {
            let id = &workspace.id;
            match deliver_caught(&deliverer, &store, &config, id).await {
                Ok(summary) => {
                    more |= summary.deferred > 0;
                    reported.remove(id);
                    if summary.delivered + summary.failed + summary.dead + summary.skipped > 0 {
                        tracing::info!(workspace = %id, "deliveries: {summary}");
                    }
                }
                Err(message) => {
                    if reported.get(id) != Some(&message) {
                        tracing::warn!(workspace = %id, "deliveries: {message} (retrying every tick)");
                        reported.insert(id.clone(), message);
                    }
                }
            }
        }
    }
    deliverer.leave(&store).await;
}

/// [`Deliverer::deliver_due`] at the wall clock, with a panic inside a
/// batch caught and reported as an error (the loop goes on; the batch was
/// not recorded, so it is due again once its claims expire).
async fn deliver_caught(
    deliverer: &Deliverer,
    store: &Store,
    config: &Config,
    workspace: &str,
) -> Result<DeliverySummary, String> {
    use futures::FutureExt as _;
    let batch = deliverer.deliver_due(store, config, workspace, Utc::now());
    match std::panic::AssertUnwindSafe(batch).catch_unwind().await {
        Ok(done) => done.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "a delivery batch panicked: {}",
            crate::run::panic_message(panic.as_ref())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// `serve` and the CLI run these on tokio's worker threads.
    #[test]
    fn the_workers_futures_are_send() {
        let config = Config::parse(
            crate::config::DEFAULT_CONFIG,
            "default",
            std::path::Path::new("."),
        )
        .unwrap();
        let store = Store::new(config.storage.clone());
        let now = Utc::now();
        let limits = DeliveryLimits::default();
        is_send(&deliver_due(&store, &config, "shop", now, &limits));
        is_send(&deliver_all_due(&config, &store, now));
        is_send(&redeliver(&store, "shop", &[], now));
        is_send(&redeliver_now(&config, None, &[], now));
        is_send(&deliver_now(&config, None, now));
        is_send(&list(
            &config,
            None,
            Listing::All,
            crate::sql::output::OutputFormat::Json,
            1,
        ));
        is_send(&run_delivery_loop(
            Arc::new(config.clone()),
            watch::channel(false).1,
        ));
    }
}
