//! tripwire: a SQL-first event trigger engine.
//!
//! Apps send events (HTTP ingest) or operators import files; tripwire stores
//! them as Delta tables of Parquet per workspace; analysts query them and
//! write triggers in SQL; runs fire flows. docs/architecture.md tells the
//! data flow and the invariants; docs/reference.md the contract users see.
//!
//! # Layout
//! Modules are layers: each uses only the modules declared before it in
//! this file (a test, `tests/it/layers.rs`, keeps it so).
//! ```text
//! duration, schedule, config       values a project is configured with
//! digest_map                       hash maps keyed by digests (dedupe, the JSON memo)
//! keys                             API keys as SHA-256 digests, compared in constant time
//! event, sample                    the event model and its API shapes
//! project                          trigger, segment and flow files
//! store                            Delta tables, the one commit path, the ledger's rows
//! import                           bulk import with idempotent, resumable commits
//! sql, error                       DataFusion sessions (in-process or on a cluster), read-only SQL, the ledger's views
//! window, identity                 a run's new_events; identities, contacts, the identity index, resolution
//! session                          the tables an analyst's SQL reads
//! trigger                          trigger files, evaluation, status
//! flow                             segments, caps, experiments, branches → deliveries
//! run                              one run: window → trigger → flows → one commit
//! maintain                         stamping, compaction, checkpoints, vacuum, retention
//! erase                            a person's right to erasure
//! deliver                          webhooks, file lines, events; attempts, retries
//! workbench                        trigger tests, dry-run diffs, shadow backfills
//! scheduler                        due triggers inside `serve`
//! http, ingest                     the HTTP API's shared auth and errors; ingest (WAL)
//! web                              the analyst's web page at `/`, behind admin_secret
//! server                           `serve`: the admin API, the page, ingest, the loops
//! cluster                          `cluster scheduler|executor`: Ballista's, with tripwire's codecs (feature `cluster`)
//! cli                              the `tripwire` command line
//! ```

// One declaration per paragraph: rustfmt sorts adjacent ones, and the
// order here is the layer order.

pub mod duration;

pub mod digest_map;

pub mod schedule;

pub mod config;

pub mod keys;

pub mod event;

pub mod sample;

pub mod project;

pub mod store;

pub mod import;

pub mod sql;

pub mod error;

pub mod window;

pub mod identity;

pub mod session;

pub mod trigger;

pub mod flow;

pub mod run;

pub mod maintain;

pub mod erase;

pub mod deliver;

pub mod workbench;

pub mod scheduler;

pub mod http;

pub mod ingest;

pub mod web;

pub mod server;

#[cfg(feature = "cluster")]
pub mod cluster;

pub mod cli;

pub use config::Config;
pub use error::Error;
