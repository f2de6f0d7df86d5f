//! The HTTP ingest API (docs/reference.md "Ingest API") with durable acknowledgements: a request is
//! answered 2xx only once its events are fsynced in the write-ahead log;
//! the flusher then commits WAL segments to the workspaces' tables.
//!
//! - `handlers`: the endpoints (collect, Segment's API, name/payload).
//! - `accept`: the one write path: validate, dedupe, append to the WAL.
//! - `record`: what a WAL record holds.
//! - `wal`: the write-ahead log with group commit.
//! - `flusher`: WAL segments → Delta commits, idempotent per segment.
//! - `dedupe`: repeated event ids within the window are stored once.
//! - `metrics`: the counters of `GET /metrics`.
//! - `learn`: the event names and fields each workspace receives.
//! - `rate`: `max_events_per_second` per write key.

pub mod accept;
pub mod dedupe;
pub mod flusher;
pub mod handlers;
pub mod learn;
pub mod metrics;
pub mod rate;
pub mod record;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;

use self::dedupe::Dedupe;
use self::flusher::Flusher;
use self::learn::{Bounds, Schema};
use self::metrics::{Metrics, WalGauges};
use self::record::StoredEvent;
use self::wal::{Wal, WalConfig};
use crate::config::Config;
use crate::error::Error;
use crate::event::now_micros;
use crate::http::ApiError;
use crate::http::auth::Keyring;
use crate::session::{SessionSpec, workspace_session};
use crate::sql::run_read_only;
use crate::store::Store;

/// The ingest side of a running server.
pub struct Ingest {
    pub wal: Wal,
    pub seen: Dedupe,
    pub metrics: Metrics,
    /// What each learning workspace has been sent; fed by the flusher.
    pub schemas: Mutex<BTreeMap<String, Schema>>,
    /// Workspaces whose schema changed since it was last saved.
    unsaved: Mutex<BTreeSet<String>>,
    /// How much each workspace's schema may hold.
    learn_bounds: Bounds,
    /// Why the flusher's last attempt failed, until one succeeds.
    flush_failure: Mutex<Option<String>>,
    /// `max_events_per_second` per write key.
    pub limiter: rate::Limiter,
    /// `[ingest] max_wal_bytes`, for `/healthz`.
    max_wal_bytes: u64,
}

impl Ingest {
    /// Opens the WAL, commits whatever an earlier process acknowledged but
    /// did not commit, and remembers the ids stored within the dedupe window.
    pub async fn start(config: &Config, store: &Store) -> Result<Ingest, Error> {
        let settings = &config.ingest;
        let wal = Wal::open(WalConfig {
            dir: settings.wal_dir.clone(),
            segment_bytes: settings.flush_bytes,
            segment_age: settings.flush_age,
            queue: settings.queue,
            queue_bytes: settings.max_queue_bytes,
            max_bytes: settings.max_wal_bytes,
        })
        .map_err(|e| {
            Error::Server(format!(
                "write-ahead log {}: {e}",
                settings.wal_dir.display()
            ))
        })?;
        let learn_bounds = Bounds {
            names: config.limits.max_learned_names,
            fields: config.limits.max_learned_fields,
        };
        let mut schemas = BTreeMap::new();
        for workspace in config.workspaces.iter().filter(|w| w.learning) {
            let mut schema = learn::load(store, &workspace.id).await?;
            schema.bound(learn_bounds);
            schemas.insert(workspace.id.clone(), schema);
        }
        let ingest = Ingest {
            wal,
            seen: Dedupe::new(settings.dedupe_window, settings.max_dedupe_bytes),
            metrics: Metrics::default(),
            schemas: Mutex::new(schemas),
            unsaved: Mutex::new(BTreeSet::new()),
            learn_bounds,
            flush_failure: Mutex::new(None),
            limiter: rate::Limiter::new(config.limits.max_events_per_second),
            max_wal_bytes: settings.max_wal_bytes,
        };
        let replayed = Flusher::new(store.clone(), ingest.wal.node_id())
            .flush_sealed(&ingest)
            .await?;
        if replayed > 0 {
            tracing::info!("replayed {replayed} acknowledged events from the write-ahead log");
        }
        ingest.remember_stored_ids(config, store).await?;
        ingest.save_schemas(store).await?;
        Ok(ingest)
    }

    /// Learns from events just committed to `workspace` (if it learns).
    pub fn learn(&self, workspace: &str, events: &[StoredEvent]) {
        let Ok(mut schemas) = self.schemas.lock() else {
            return;
        };
        let Some(schema) = schemas.get_mut(workspace) else {
            return;
        };
        for event in events {
            schema.observe(event, self.learn_bounds);
        }
        if let Ok(mut unsaved) = self.unsaved.lock() {
            unsaved.insert(workspace.to_string());
        }
    }

    /// Saves the schemas that changed since they were last saved.
    pub async fn save_schemas(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let changed: Vec<String> = match self.unsaved.lock() {
            Ok(mut unsaved) => std::mem::take(&mut *unsaved).into_iter().collect(),
            Err(_) => return Ok(()),
        };
        for workspace in changed {
            let schema = self
                .schemas
                .lock()
                .ok()
                .and_then(|s| s.get(&workspace).cloned());
            if let Some(schema) = schema {
                learn::save(store, &workspace, &schema).await?;
            }
        }
        Ok(())
    }

    /// Loads the ids each workspace received within the dedupe window.
    async fn remember_stored_ids(&self, config: &Config, store: &Store) -> Result<(), Error> {
        let window = chrono::Duration::from_std(config.ingest.dedupe_window)
            .unwrap_or(chrono::Duration::MAX);
        let since = Utc::now()
            .checked_sub_signed(window)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        for workspace in &config.workspaces {
            let spec = SessionSpec {
                store,
                workspace: &workspace.id,
                now: Utc::now(),
                identity_ttl: config.identity_ttl,
                events: None,
            };
            let ctx = workspace_session(&spec).await?;
            let sql = format!(
                "SELECT event_id, received_at FROM events WHERE received_at > TIMESTAMP '{}'",
                since.format("%Y-%m-%dT%H:%M:%S%.6fZ")
            );
            let batches = run_read_only(&ctx, &sql).await?;
            for batch in &batches {
                let ids = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                    .map_err(|e| Error::Server(format!("reading stored event ids: {e}")))?;
                let ids = ids.as_string::<i32>();
                let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
                for row in 0..batch.num_rows() {
                    if ids.is_valid(row) {
                        self.seen
                            .insert(&workspace.id, ids.value(row), times.value(row));
                    }
                }
            }
        }
        Ok(())
    }

    /// An event acknowledged at `at` now waits for the flusher.
    pub fn note_unflushed(&self, at: i64) {
        let _ = self.metrics.oldest_unflushed.compare_exchange(
            0,
            at,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The flusher committed everything sealed; the lag restarts when the
    /// WAL holds nothing else.
    pub fn note_flushed(&self) {
        if self.wal.stats().bytes_pending == 0 {
            self.metrics.oldest_unflushed.store(0, Ordering::Relaxed);
        }
    }

    /// The flusher's last attempt failed (`Some(reason)`) or worked (`None`).
    pub fn note_flush(&self, failure: Option<String>) {
        if let Ok(mut slot) = self.flush_failure.lock() {
            *slot = failure;
        }
    }

    /// `Err(reason)` while ingest cannot make progress: the WAL cannot write,
    /// the flusher cannot commit what it holds, or the WAL is at
    /// `max_wal_bytes` (from a request refused for it until the flusher
    /// removes a segment).
    pub fn health(&self) -> Result<(), String> {
        if let Some(reason) = self.wal.failure() {
            return Err(format!("the write-ahead log cannot write: {reason}"));
        }
        if self.wal.backlogged() {
            let pending = self.wal.stats().bytes_pending;
            return Err(format!(
                "the write-ahead log is full: {pending} bytes wait for the flusher, \
                 at max_wal_bytes ({}); requests are answered 503 until it catches up",
                self.max_wal_bytes
            ));
        }
        let flush = self.flush_failure.lock().ok().and_then(|slot| slot.clone());
        match flush {
            Some(reason) => Err(format!(
                "the flusher cannot commit the write-ahead log: {reason}"
            )),
            None => Ok(()),
        }
    }

    fn gauges(&self) -> WalGauges {
        let stats = self.wal.stats();
        WalGauges {
            bytes_written: stats.bytes_written,
            fsyncs: stats.fsyncs,
            bytes_pending: stats.bytes_pending,
            errors: stats.errors,
            queued_bytes: stats.queued_bytes,
        }
    }
}

/// What the ingest endpoints reach.
pub struct IngestState {
    pub config: Arc<Config>,
    pub ingest: Arc<Ingest>,
    /// The write keys (and admin keys, which may not write).
    pub keys: Arc<Keyring>,
}

/// The ingest endpoints, with the request size limit applied.
pub fn routes(state: Arc<IngestState>) -> Router {
    let max_request_bytes = state.config.ingest.max_request_bytes;
    Router::new()
        .route("/http/v1/collect", post(handlers::collect))
        .route("/v1/track", post(handlers::track))
        .route("/v1/identify", post(handlers::identify))
        .route("/v1/batch", post(handlers::batch))
        .route("/v1/events", post(handlers::events))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

/// The Prometheus text of `GET /metrics` (served behind the admin keys).
pub fn metrics_page(ingest: &Ingest) -> Response {
    match ingest.metrics.render(ingest.gauges(), now_micros()) {
        Ok(page) => ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], page).into_response(),
        Err(e) => ApiError::Internal(format!("writing the metrics page: {e}")).into_response(),
    }
}
