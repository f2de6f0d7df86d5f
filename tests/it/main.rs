//! tripwire's integration tests: the real `tripwire` binary on real files in
//! a temporary project, results read back with `tripwire query` (and, in
//! `interop`, with other engines).
//!
//! - `project`: the temp-project helper every test uses.
//! - `import_formats`: each format and shape lands with the right values.
//! - `bad_input`: bad lines are reported, quarantined, and `--strict` refuses.
//! - `idempotent`: re-imports and `kill -9` mid-import neither lose nor duplicate.
//! - `query`: read-only SQL, output formats, JSON functions and hints.
//! - `flows`: segments, caps, branches, experiment arms, `check` and broken flow files.
//! - `config`: `--config` errors name the key.
//! - `server`: a real `tripwire serve` child and an HTTP client for it.
//! - `ingest`: the ingest API: each endpoint, auth, limits, idempotency, crashes.
//! - `serve`: the API and the scheduler of a real `tripwire serve` (hot reload).
//! - `triggers`: runs see each event once, crash and concurrency safety, `check`.
//! - `recorder`: a webhook receiver in the test's own runtime that records arrival times and
//!   answers with scripted statuses, `Retry-After`, delays or refusals of stale signatures.
//! - `deliver`: the delivery worker against a real receiver: signatures, retries, dead letters, `redeliver`, `kill -9`.
//! - `open_deliveries`: the delivery worker's open-deliveries index agrees with the `deliveries` view.
//! - `replicas`: two `serve` replicas on one storage: each delivery sent once; a `kill -9` taken over.
//! - `webhooks`: flows' webhooks through `tripwire run`: fresh signatures under `--now`, `rate_limit`.
//! - `workbench`: `tripwire test` on the example project, a failing case's diff, `check` running tests.
//! - `interop`: the stored tables read by the python `deltalake` package and DuckDB.
//! - `windows`: new triggers, moved cursors, log cleanup and other writers' deletes, compactions and appends.
//! - `maintain`: `optimize` and serve's maintenance merge files, checkpoint, expire old events, fire nothing again.
//! - `erase`: a person's data erased everywhere, counted, and nothing fires again.
//! - `guardrail`: a run over max_deliveries_per_run holds its deliveries for release or discard.
//! - `late_identity`: rows wait for their identity, fire once when it arrives, expire after the wait.
//! - `layers`: each module uses only the modules declared before it in `lib.rs`.
//! - `migrate`: a store written by an earlier tripwire opens and keeps working.
//! - `segment_client`: Segment's own python library sends to a real server.
//! - `hostile_serve`: issue 13 against `serve`: slow clients, a failing WAL disk, rate limits, poison input, memory bounds.
//! - `hostile_input`: issue 13 on import and `check`: long lines, broken gzip, mistyped Parquet, poison times, problem lines.
//! - `receiver`: a webhook receiver (plain or TLS, with a test CA) in the test process.
//! - `keys`: fail closed, write vs admin keys, rotation, the deliveries admin API.
//! - `outbound`: what leaves: JSON-escaped templates, https, private networks, file paths.
//! - `web`: the web page over plain HTTP: login, cookie flags, Basic, CSRF, escaping, read-only SQL.
//! - `s3`: storage on a real S3 server (moto): import, ingest with `kill -9`, runs, maintenance,
//!   erasure count as on a local store; the probe refuses a server ignoring conditional writes.
//! - `browser`: the web page in headless Chromium over WebDriver, with screenshots.
//! - `cluster` (feature `cluster`): a scheduler and two executors run the example triggers and
//!   queries with the same results as the in-process engine.

mod bad_input;
mod browser;
#[cfg(feature = "cluster")]
mod cluster;
mod config;
mod deliver;
mod erase;
mod flows;
mod guardrail;
mod hostile_input;
mod hostile_serve;
mod idempotent;
mod import_formats;
mod ingest;
mod interop;
mod keys;
mod late_identity;
mod layers;
mod maintain;
mod migrate;
mod open_deliveries;
mod outbound;
mod project;
mod query;
mod receiver;
mod recorder;
mod replicas;
mod s3;
mod segment_client;
mod serve;
mod server;
mod triggers;
mod waiting_rows;
mod web;
mod webhooks;
mod windows;
mod workbench;
