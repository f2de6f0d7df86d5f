//! tripwire: a SQL-first event trigger engine.
//!
//! Apps send events (HTTP ingest) or operators import files; tripwire stores
//! them as Delta tables of Parquet per workspace; analysts query them and
//! write triggers in SQL.
//!
//! # Layout
//! ```text
//! file ──import──▶ event (parse 3 shapes, CSV, Parquet) ──▶ store (Delta: events, quarantine)
//!                                                              │
//! tripwire query ──▶ sql (DataFusion session: events, identities, contacts, JSON functions, read-only)
//!
//! app ──HTTP──▶ ingest (validate, dedupe) ──▶ WAL (fsync, group commit) ──ack; flusher ──▶ store
//! serve ──▶ scheduler (cron) ──▶ trigger run: window (cursor, v] ──▶ SQL ──▶ resolve ──▶ ledger commit
//! ```
//! - [`config`]: `tripwire.toml`, embedded default, validation naming the key.
//! - [`event`]: the event model, the API shapes, the Arrow schema.
//! - [`import`]: bulk import pipeline with idempotent, resumable commits.
//! - [`store`]: per-workspace Delta tables on object_store.
//! - [`sql`]: the query layer every reader of the tables uses.
//! - [`schedule`]: cron and `every` schedules.
//! - [`trigger`]: trigger files, windows, identity resolution, runs, history.
//! - [`flow`]: flow files, segments, caps, experiments, branches → planned deliveries.
//! - [`deliver`]: the delivery worker: webhooks, file lines, emitted events; attempts, retries, dead letters.
//! - [`scheduler`]: runs due triggers inside `tripwire serve`, picking up file edits.
//! - [`ingest`]: the HTTP ingest API: durable acknowledgements through a WAL, flushed to the tables.
//! - [`server`]: `tripwire serve`'s HTTP API (axum) around the scheduler.
//! - [`sample`]: the deterministic sample-event generator (examples, tests, benches).
//! - [`cli`]: the `tripwire` command line; [`error`]: whose fault a failure is.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod error;
pub mod event;
pub mod flow;
pub mod import;
pub mod ingest;
pub mod sample;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod sql;
pub mod store;
pub mod trigger;

pub use config::Config;
pub use error::Error;
