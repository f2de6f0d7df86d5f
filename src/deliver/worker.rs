//! The delivery worker, one batch at a time: read what is due → build each
//! action → send / write / emit → decide each outcome → record the whole
//! batch in one attempts commit.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;
use futures::StreamExt;

use super::DeliverError;
use super::emit::{Emission, emit};
use super::file::append_lines;
use super::payload::Payload;
use super::retry::{DEFAULT_RETRY_PERIOD, Schedule, decide, jitter_for};
use super::sign::signature;
use super::state::{self, Due};
use super::webhook::{self, Attempted, Clients, Webhook};
use crate::config::Config;
use crate::project::resolve_confined;
use crate::sql::ledger::state_context;
use crate::store::commit::{Append, Plan, Writer, commit};
use crate::store::ledger::attempts::{AttemptRecord, Status, attempts_batch};
use crate::store::{Store, TableKind};

/// Deliveries read, attempted and recorded together.
pub const DELIVERY_BATCH: usize = 2_000;

/// Webhook requests in flight at once.
pub const WEBHOOK_CONCURRENCY: usize = 32;

/// Batches one call of [`deliver_due`] works through at most.
pub const MAX_BATCHES: usize = 1_000;

/// The bounds of one call of [`deliver_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLimits {
    pub batch: usize,
    pub concurrency: usize,
    pub max_batches: usize,
    /// A delivery failing this long after it was planned (or redelivered) is dead.
    pub retry_period: Duration,
}

impl Default for DeliveryLimits {
    fn default() -> DeliveryLimits {
        DeliveryLimits {
            batch: DELIVERY_BATCH,
            concurrency: WEBHOOK_CONCURRENCY,
            max_batches: MAX_BATCHES,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl DeliveryLimits {
    /// The defaults, with the config's `delivery_retry_period`.
    pub fn for_config(config: &Config) -> DeliveryLimits {
        DeliveryLimits {
            retry_period: config.delivery_retry_period,
            ..DeliveryLimits::default()
        }
    }
}

/// What one call of [`deliver_due`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySummary {
    pub delivered: u64,
    pub failed: u64,
    pub dead: u64,
    /// Attempted here but recorded as delivered by another worker first.
    pub skipped: u64,
}

impl DeliverySummary {
    pub fn is_empty(&self) -> bool {
        *self == DeliverySummary::default()
    }

    fn add(&mut self, other: DeliverySummary) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.dead += other.dead;
        self.skipped += other.skipped;
    }
}

impl std::fmt::Display for DeliverySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivered {}, failed {} (retried later), dead {}",
            self.delivered, self.failed, self.dead
        )?;
        if self.skipped > 0 {
            write!(f, ", {} recorded by another worker", self.skipped)?;
        }
        Ok(())
    }
}

/// Delivers the workspace's due deliveries at `now`, batch by batch, until
/// none is due or `limits.max_batches` batches were done.
pub async fn deliver_due(
    store: &Store,
    config: &Config,
    workspace: &str,
    now: DateTime<Utc>,
    limits: &DeliveryLimits,
) -> Result<DeliverySummary, DeliverError> {
    let mut summary = DeliverySummary::default();
    let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
        return Ok(summary);
    };
    let mut attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
    let secrets = signing_secrets(config, workspace);
    let batch = Batch {
        store,
        config,
        workspace,
        secrets: &secrets,
        now,
        limits,
    };
    for _ in 0..limits.max_batches {
        let ctx = state_context(&ledger, &attempts).await?;
        let due = state::due(&ctx, now, limits.batch.max(1)).await?;
        if due.is_empty() {
            break;
        }
        summary.add(batch.deliver(&due, &ledger, &mut attempts).await?);
        if due.len() < limits.batch {
            break;
        }
    }
    Ok(summary)
}

/// What every delivery of a batch shares.
struct Batch<'a> {
    store: &'a Store,
    config: &'a Config,
    workspace: &'a str,
    /// The signing secrets that resolve (none: webhooks go unsigned).
    secrets: &'a [String],
    now: DateTime<Utc>,
    limits: &'a DeliveryLimits,
}

impl Batch<'_> {
    /// Performs `due` and records the outcomes in one attempts commit.
    #[tracing::instrument(name = "delivery_batch", skip_all, fields(workspace = self.workspace, size = due.len()))]
    async fn deliver(
        &self,
        due: &[Due],
        ledger: &DeltaTable,
        attempts: &mut DeltaTable,
    ) -> Result<DeliverySummary, DeliverError> {
        let outcomes = self.attempt(due).await?;
        let rows = verdicts(due, outcomes, self.now, self.limits.retry_period);
        pause_before_record_for_tests();
        let summary = record(ledger, attempts, rows).await?;
        tracing::debug!("{summary}");
        Ok(summary)
    }

    /// Performs each due delivery once; one outcome per delivery, in order.
    async fn attempt(&self, due: &[Due]) -> Result<Vec<Attempted>, DeliverError> {
        let payloads: Vec<Result<Payload, String>> = due
            .iter()
            .map(|d| Payload::parse(d.payload.as_deref()))
            .collect();
        let mut outcomes: Vec<Option<Attempted>> = vec![None; due.len()];
        let (mut hooks, mut lines, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (d, payload)) in due.iter().zip(&payloads).enumerate() {
            match payload {
                Ok(Payload::Webhook {
                    url,
                    body,
                    timeout_ms,
                }) => hooks.push((
                    i,
                    Webhook {
                        delivery_id: &d.delivery_id,
                        url,
                        body,
                        timeout: Duration::from_millis(*timeout_ms),
                    },
                )),
                Ok(Payload::File { path, line }) => {
                    match resolve_confined(&self.config.project_dir, path) {
                        Ok(path) => lines.push((i, (path, line.clone()))),
                        Err(reason) => outcomes[i] = Some(Attempted::refused(reason)),
                    }
                }
                Ok(Payload::Event { event }) => events.push((
                    i,
                    Emission {
                        delivery_id: &d.delivery_id,
                        run_id: &d.run_id,
                        event,
                    },
                )),
                Err(reason) => outcomes[i] = Some(Attempted::refused(reason.clone())),
            }
        }
        let (sent, written, emitted) =
            tokio::join!(self.send(&hooks), write(&lines), self.emit(&events));
        for (i, outcome) in sent?.into_iter().chain(written).chain(emitted) {
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Attempted::transient("not attempted".into())))
            .collect())
    }

    /// Sends the webhooks, at most `limits.concurrency` at once.
    async fn send(
        &self,
        hooks: &[(usize, Webhook<'_>)],
    ) -> Result<Vec<(usize, Attempted)>, DeliverError> {
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let clients = Clients::get().map_err(DeliverError::Http)?;
        if self.secrets.is_empty() {
            note_unsigned_once(self.config, self.workspace);
        }
        let sending = Sending {
            clients,
            allow_private_networks: self
                .config
                .workspace(self.workspace)
                .is_some_and(|w| w.allow_private_networks),
            secrets: self.secrets,
            now: self.now,
        };
        let concurrency = self.limits.concurrency.max(1);
        Ok(send_all(&sending, hooks, concurrency).await)
    }

    /// Stores the events of event deliveries (see `emit`).
    async fn emit(&self, events: &[(usize, Emission<'_>)]) -> Vec<(usize, Attempted)> {
        if events.is_empty() {
            return Vec::new();
        }
        let emissions: Vec<Emission> = events.iter().map(|(_, e)| *e).collect();
        let outcomes = emit(self.store, self.workspace, &emissions, self.now).await;
        events.iter().map(|(i, _)| *i).zip(outcomes).collect()
    }
}

/// What every webhook of a batch is sent with.
struct Sending<'a> {
    clients: &'a Clients,
    allow_private_networks: bool,
    secrets: &'a [String],
    now: DateTime<Utc>,
}

/// Sends `hooks`, `concurrency` at a time; outcomes in the order they end.
async fn send_all(
    sending: &Sending<'_>,
    hooks: &[(usize, Webhook<'_>)],
    concurrency: usize,
) -> Vec<(usize, Attempted)> {
    // Collected first: a lazy `map` would put its closure in this future's
    // type, which the compiler then cannot prove `Send` (rust-lang/rust#102211).
    let sends: Vec<_> = hooks
        .iter()
        .map(|(i, hook)| send_one(sending, *i, hook))
        .collect();
    futures::stream::iter(sends)
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn send_one(sending: &Sending<'_>, i: usize, hook: &Webhook<'_>) -> (usize, Attempted) {
    let signed = (!sending.secrets.is_empty())
        .then(|| signature(sending.secrets, sending.now.timestamp(), hook.body));
    let outcome = webhook::send(
        sending.clients,
        sending.allow_private_networks,
        hook,
        signed,
        sending.now,
    )
    .await;
    (i, outcome)
}

/// Appends the file deliveries' lines, off the async workers.
async fn write(lines: &[(usize, (PathBuf, String))]) -> Vec<(usize, Attempted)> {
    if lines.is_empty() {
        return Vec::new();
    }
    let owned: Vec<(PathBuf, String)> = lines.iter().map(|(_, l)| l.clone()).collect();
    let outcomes = tokio::task::spawn_blocking(move || append_lines(&owned))
        .await
        .unwrap_or_else(|e| {
            let failed = Attempted::transient(format!("file writer stopped: {e}"));
            vec![failed; lines.len()]
        });
    lines.iter().map(|(i, _)| *i).zip(outcomes).collect()
}

/// The attempts rows of a batch: each outcome judged at `now`.
pub fn verdicts(
    due: &[Due],
    outcomes: Vec<Attempted>,
    now: DateTime<Utc>,
    retry_period: Duration,
) -> Vec<AttemptRecord> {
    due.iter()
        .zip(outcomes)
        .map(|(d, outcome)| {
            let tries = d.tries.saturating_add(1);
            let schedule = Schedule {
                since: d.retry_since,
                tries,
                retry_period,
            };
            let verdict = decide(
                &outcome.action,
                schedule,
                jitter_for(&d.delivery_id, tries),
                now,
            );
            let error = match (outcome.error, verdict.note) {
                (Some(error), Some(note)) => Some(format!("{error} ({note})")),
                (error, note) => error.or(note),
            };
            AttemptRecord {
                delivery_id: d.delivery_id.clone(),
                attempt: d.last_attempt + 1,
                status: verdict.status,
                http_status: outcome.http_status.map(i64::from),
                error,
                attempted_at: now.timestamp_micros(),
                next_attempt_at: verdict.next_attempt_at.map(|t| t.timestamp_micros()),
            }
        })
        .collect()
}

/// Commits the batch's rows in one append. A commit that lost a race to
/// another worker is planned again on the winner's version: rows of
/// deliveries it recorded as delivered are dropped (a delivery is recorded
/// delivered once), the others renumbered after its rows.
async fn record(
    ledger: &DeltaTable,
    attempts: &mut DeltaTable,
    rows: Vec<AttemptRecord>,
) -> Result<DeliverySummary, DeliverError> {
    let mut writer = Recording {
        ledger,
        rows,
        skipped: 0,
        first: true,
    };
    commit(attempts, &mut writer).await?;
    Ok(tally(&writer.rows, writer.skipped))
}

/// A batch's attempts rows, checked again against the table after a lost race.
struct Recording<'a> {
    ledger: &'a DeltaTable,
    rows: Vec<AttemptRecord>,
    skipped: u64,
    first: bool,
}

impl Writer for Recording<'_> {
    type Error = DeliverError;

    async fn plan(&mut self, attempts: &DeltaTable) -> Result<Plan, DeliverError> {
        if !std::mem::take(&mut self.first) {
            let ctx = state_context(self.ledger, attempts).await?;
            let ids: Vec<&str> = self.rows.iter().map(|r| r.delivery_id.as_str()).collect();
            let current = state::current(&ctx, &ids).await?;
            let before = self.rows.len();
            self.rows.retain(|r| {
                current
                    .get(&r.delivery_id)
                    .is_none_or(|c| c.status != Status::Delivered.as_str())
            });
            self.skipped += (before - self.rows.len()) as u64;
            for row in &mut self.rows {
                if let Some(c) = current.get(&row.delivery_id) {
                    row.attempt = c.last_attempt + 1;
                }
            }
        }
        if self.rows.is_empty() {
            return Ok(Plan::Nothing);
        }
        Ok(Plan::Append(Append {
            batches: vec![attempts_batch(&self.rows)],
            txns: Vec::new(),
        }))
    }
}

fn tally(rows: &[AttemptRecord], skipped: u64) -> DeliverySummary {
    let count = |status| rows.iter().filter(|r| r.status == status).count() as u64;
    DeliverySummary {
        delivered: count(Status::Delivered),
        failed: count(Status::Failed),
        dead: count(Status::Dead),
        skipped,
    }
}

/// The workspace's signing secrets that are set.
fn signing_secrets(config: &Config, workspace: &str) -> Vec<String> {
    config
        .workspace(workspace)
        .map(|w| crate::config::Workspace::resolved(&w.signing_secret))
        .unwrap_or_default()
}

/// Says once per workspace and process that its webhooks go unsigned.
fn note_unsigned_once(config: &Config, workspace: &str) {
    static NOTED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let noted = NOTED.get_or_init(|| Mutex::new(HashSet::new()));
    let first = noted
        .lock()
        .map(|mut set| set.insert(workspace.to_string()))
        .unwrap_or(false);
    if !first {
        return;
    }
    let configured = config
        .workspace(workspace)
        .map(|w| w.signing_secret.as_slice())
        .unwrap_or_default();
    let why = match configured {
        [] => "it has no signing_secret".to_string(),
        entries => {
            let named: Vec<String> = entries.iter().map(|s| s.describe()).collect();
            format!("its signing_secret ({}) is not set", named.join(", "))
        }
    };
    tracing::warn!(
        workspace,
        "webhooks are sent without a Tripwire-Signature header: {why}"
    );
}

/// Crash tests set `TRIPWIRE_PAUSE_BEFORE_RECORD=<dir>` to stop the worker
/// after a batch was sent but before it is recorded: it creates
/// `<dir>/paused` and waits there to be killed.
fn pause_before_record_for_tests() {
    if let Some(dir) = std::env::var_os("TRIPWIRE_PAUSE_BEFORE_RECORD") {
        let _ = std::fs::write(std::path::Path::new(&dir).join("paused"), b"");
        loop {
            std::thread::park();
        }
    }
}
