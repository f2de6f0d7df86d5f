//! The delivery worker, one batch at a time: read what is due → perform
//! it (`perform`: claimed, paced, signed as it goes) → decide each outcome
//! → record what was tried in one attempts commit. A [`Deliverer`] is one
//! process's worker: its node id (in claims and heartbeats), its clock,
//! and its pacing, kept from one call to the next.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;

use super::DeliverError;
use super::claim::{CLAIM_SWEEP_EVERY, CLAIM_WINDOW, Claims};
use super::clock::Clock;
use super::index::{OpenIndex, tried_rows};
use super::open::{Standing, Tried};
use super::pace::{ActionKey, Pacer};
use super::perform::{Performed, Performer};
use super::replicas::{self, Replicas};
use super::retry::{DEFAULT_RETRY_PERIOD, Schedule, decide, jitter_for};
use super::state::{self, Cap, Due};
use super::webhook::Attempted;
use crate::config::Config;
use crate::sql::ledger::state_context;
use crate::store::commit::{Append, Committed, Plan, Writer, commit};
use crate::store::follow::{self, Followed};
use crate::store::ledger::attempts::{AttemptRecord, Status, attempts_batch};
use crate::store::{Store, StoreError, TableKind, table};

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
    /// A delivery failing this long after its first attempt (since it was
    /// planned or redelivered) is dead.
    pub retry_period: Duration,
    /// Wait for rate-limited actions to have room (a command that must
    /// deliver everything before it exits), rather than leave them to the
    /// next call (`serve`, which calls every second).
    pub wait_for_rate_limits: bool,
}

impl Default for DeliveryLimits {
    fn default() -> DeliveryLimits {
        DeliveryLimits {
            batch: DELIVERY_BATCH,
            concurrency: WEBHOOK_CONCURRENCY,
            max_batches: MAX_BATCHES,
            retry_period: DEFAULT_RETRY_PERIOD,
            wait_for_rate_limits: true,
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
    /// Due, but claimed by another worker, which sends and records them.
    pub busy: u64,
    /// Due, but left for the next call by the last batch (an action's rate
    /// limit, or the claim window): call again soon.
    pub deferred: u64,
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
        self.busy += other.busy;
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
        if self.busy > 0 {
            write!(f, ", {} being sent by another worker", self.busy)?;
        }
        Ok(())
    }
}

/// One process's delivery worker.
pub struct Deliverer {
    node: String,
    clock: Clock,
    limits: DeliveryLimits,
    pacer: Arc<Mutex<Pacer>>,
    replicas: Mutex<Replicas>,
    /// When each workspace's claims were last swept (or found swept).
    swept: Mutex<HashMap<String, Instant>>,
    /// Each workspace's open-deliveries index, kept between calls.
    indexes: Mutex<HashMap<String, OpenIndex>>,
    /// Each workspace's claims (by storage root and workspace), kept
    /// between calls: their journal is read once, then only what was
    /// appended since.
    claims: Mutex<HashMap<String, Arc<Claims>>>,
}

/// A node id for this process: its pid and a random part.
fn new_node_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &random[..12])
}

impl Deliverer {
    /// A worker on the wall clock with a fresh node id.
    pub fn new(limits: DeliveryLimits) -> Deliverer {
        Deliverer {
            node: new_node_id(),
            clock: Clock::system(),
            limits,
            pacer: Arc::default(),
            replicas: Mutex::default(),
            swept: Mutex::default(),
            indexes: Mutex::default(),
            claims: Mutex::default(),
        }
    }

    /// The same worker reading `clock` at every attempt.
    pub fn with_clock(mut self, clock: Clock) -> Deliverer {
        self.clock = clock;
        self
    }

    /// Its node id, as claims and heartbeats name it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Delivers the workspace's deliveries due at `due_at`, batch by batch,
    /// until none is due or `limits.max_batches` batches were done. Each
    /// attempt reads the worker's clock. With `wait_for_rate_limits`, it
    /// waits for rate-limited actions to have room; else it leaves them
    /// for its next call.
    pub async fn deliver_due(
        &self,
        store: &Store,
        config: &Config,
        workspace: &str,
        due_at: DateTime<Utc>,
    ) -> Result<DeliverySummary, DeliverError> {
        let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
            return Ok(DeliverySummary::default());
        };
        let mut attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
        let held = self.take_index(workspace);
        let mut index = OpenIndex::ready(store, workspace, &attempts, &ledger, held).await?;
        let claims = self.claims_of(store, workspace)?;
        self.sweep_claims(workspace, &index, &claims).await;
        let call = Call {
            store,
            config,
            workspace,
            ledger: &ledger,
            claims,
            secrets: signing_secrets(config, workspace),
            due_at,
        };
        // An index left by an error may hold half a fold: dropped, the next
        // call starts from the snapshot.
        let summary = self.batches(&call, &mut attempts, &mut index).await?;
        index.release_all();
        index.save_if_due(store, workspace, false).await;
        self.put_index(workspace, index);
        Ok(summary)
    }

    /// The batches of one call, pipelined: while batch N is recorded, batch
    /// N+1 is chosen, claimed and performed (it never holds N's deliveries,
    /// which are in flight until their record is folded back).
    async fn batches(
        &self,
        call: &Call<'_>,
        attempts: &mut DeltaTable,
        index: &mut OpenIndex,
    ) -> Result<DeliverySummary, DeliverError> {
        let mut summary = DeliverySummary::default();
        let mut busy: HashSet<String> = HashSet::new();
        let mut previous: Option<Batch> = None;
        let mut done = 0;
        loop {
            let more = done < self.limits.max_batches && previous.as_ref().is_none_or(|b| !b.last);
            let (recorded, next) =
                tokio::join!(self.record(call, attempts, previous.take()), async {
                    match more {
                        true => Some(self.next_batch(call, index).await),
                        false => None,
                    }
                });
            if let Some((version, rows, recorded)) = recorded? {
                index.settle(version, &rows);
                summary.add(recorded);
            }
            match next.transpose()? {
                None | Some(Next::Done) => break,
                Some(Next::Waited) => continue,
                Some(Next::Did(batch)) => {
                    done += 1;
                    summary.deferred = batch.deferred as u64;
                    busy.extend(batch.busy.iter().cloned());
                    previous = Some(batch);
                }
            }
        }
        summary.busy = busy.len() as u64;
        Ok(summary)
    }

    /// Catches the index up, chooses what is due and performs it.
    async fn next_batch(
        &self,
        call: &Call<'_>,
        index: &mut OpenIndex,
    ) -> Result<Next, DeliverError> {
        let share = self.share(call.store, call.workspace).await;
        // Before the catch-up: claims go within the window of this read.
        let read_at = Instant::now();
        index.catch_up(call.store, call.workspace).await?;
        let caps = self.caps(call.workspace, share, read_at);
        let size = self.limits.batch.max(1);
        let due = index.choose(call.due_at.timestamp_micros(), size, &caps);
        if due.is_empty() {
            return Ok(match self.wait_for_room(call.workspace, &caps).await {
                true => Next::Waited,
                false => Next::Done,
            });
        }
        let performer = Performer {
            store: call.store,
            config: call.config,
            workspace: call.workspace,
            secrets: call.secrets.clone(),
            clock: self.clock.clone(),
            claims: call.claims.clone(),
            pacer: self.pacer.clone(),
            share,
            concurrency: self.limits.concurrency,
            deadline: read_at + CLAIM_WINDOW,
        };
        let performed = performer.perform(&due).await?;
        let batch = Batch::of(due, performed, size, caps.is_empty(), &self.limits);
        index.release(batch.untried.iter().map(String::as_str));
        Ok(Next::Did(batch))
    }

    /// Records what `batch` tried in one attempts commit: the version, the
    /// rows committed and their tally.
    async fn record(
        &self,
        call: &Call<'_>,
        attempts: &mut DeltaTable,
        batch: Option<Batch>,
    ) -> Result<Option<Recorded>, DeliverError> {
        let Some(batch) = batch else {
            return Ok(None);
        };
        if batch.tried.is_empty() {
            return Ok(None);
        }
        let tried: Vec<(&Due, Attempted, DateTime<Utc>)> = batch
            .tried
            .iter()
            .map(|(i, outcome, at)| (&batch.due[*i], outcome.clone(), *at))
            .collect();
        let rows = verdicts(&tried, self.limits.retry_period);
        pause_before_record_for_tests();
        record(call.ledger, attempts, rows).await.map(Some)
    }

    /// The workspace's claims, opened at the first call.
    fn claims_of(&self, store: &Store, workspace: &str) -> Result<Arc<Claims>, StoreError> {
        let key = format!("{}{workspace}", store.root());
        let mut kept = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claims) = kept.get(&key) {
            return Ok(claims.clone());
        }
        let claims = Arc::new(Claims::open(store, workspace, &self.node)?);
        kept.insert(key, claims.clone());
        Ok(claims)
    }

    /// The workspace's index held from an earlier call, if any.
    fn take_index(&self, workspace: &str) -> Option<OpenIndex> {
        self.indexes.lock().ok()?.remove(workspace)
    }

    fn put_index(&self, workspace: &str, index: OpenIndex) {
        if let Ok(mut indexes) = self.indexes.lock() {
            indexes.insert(workspace.to_string(), index);
        }
    }

    /// The caps of this workspace's rate-limited actions for a batch read at `now`.
    fn caps(&self, workspace: &str, share: u32, now: Instant) -> Vec<Cap> {
        let Ok(pacer) = self.pacer.lock() else {
            return Vec::new();
        };
        pacer
            .caps(workspace, share, now, CLAIM_WINDOW)
            .into_iter()
            .map(|(key, max)| Cap {
                flow: key.flow,
                action: key.action,
                max,
            })
            .collect()
    }

    /// When waiting for rate limits, sleeps until a capped action of the
    /// workspace has room; false when there is nothing to wait for.
    async fn wait_for_room(&self, workspace: &str, caps: &[Cap]) -> bool {
        if !self.limits.wait_for_rate_limits {
            return false;
        }
        let full: Vec<ActionKey> = caps
            .iter()
            .filter(|c| c.max == 0)
            .map(|c| ActionKey {
                workspace: workspace.to_string(),
                flow: c.flow.clone(),
                action: c.action.clone(),
            })
            .collect();
        let next = match self.pacer.lock() {
            Ok(pacer) => pacer.next_room(&full, Instant::now()),
            Err(_) => None,
        };
        match next {
            Some(at) => {
                tokio::time::sleep_until(at.into()).await;
                true
            }
            None => false,
        }
    }

    /// How many replicas share the workspace's rate limits: announces this
    /// one at most every `HEARTBEAT_EVERY` and counts the others (1 when
    /// the storage cannot tell).
    async fn share(&self, store: &Store, workspace: &str) -> u32 {
        let now = self.clock.now();
        if let Some(live) = self
            .replicas
            .lock()
            .ok()
            .and_then(|r| r.known(workspace, now))
        {
            return live;
        }
        let live = match replicas::beat(store, workspace, &self.node, now).await {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!(workspace, "cannot count the replicas: {e}");
                1
            }
        };
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.remember(workspace, now, live);
        }
        live
    }

    /// Deletes the workspace's claims that are old and whose attempt is
    /// recorded, at most every `CLAIM_SWEEP_EVERY` across the processes
    /// sharing the storage (best effort).
    async fn sweep_claims(&self, workspace: &str, index: &OpenIndex, claims: &Claims) {
        let recent = match self.swept.lock() {
            Ok(swept) => swept
                .get(workspace)
                .is_some_and(|at| at.elapsed() < CLAIM_SWEEP_EVERY),
            Err(_) => true,
        };
        if recent {
            return;
        }
        if let Ok(mut swept) = self.swept.lock() {
            swept.insert(workspace.to_string(), Instant::now());
        }
        let now = self.clock.now();
        match claims.sweep_now(now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(workspace, "cannot read when claims were swept: {e}");
                return;
            }
        }
        let old = match claims.old(now).await {
            Ok(old) => old,
            Err(e) => {
                tracing::debug!(workspace, "cannot list delivery claims: {e}");
                return;
            }
        };
        match claims.delete(now, &sweepable_claims(index, old)).await {
            0 => {}
            n => tracing::debug!(workspace, "swept {n} delivery claims"),
        }
    }

    /// Removes this worker's heartbeats and saves its open-deliveries
    /// indexes: it stops delivering.
    pub async fn leave(&self, store: &Store) {
        let workspaces = match self.replicas.lock() {
            Ok(replicas) => replicas.workspaces(),
            Err(_) => Vec::new(),
        };
        for workspace in workspaces {
            if let Err(e) = replicas::leave(store, &workspace, &self.node).await {
                tracing::debug!(workspace, "cannot remove the heartbeat: {e}");
            }
        }
        let indexes: Vec<(String, OpenIndex)> = match self.indexes.lock() {
            Ok(mut indexes) => indexes.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (workspace, mut index) in indexes {
            index.save_if_due(store, &workspace, true).await;
        }
    }

    /// The workspace's open deliveries, caught up to its tables now (what
    /// the agreement test compares with the `deliveries` view): (delivery
    /// id, status, tries, next attempt in µs), sorted by id.
    pub async fn open_deliveries(
        &self,
        store: &Store,
        workspace: &str,
    ) -> Result<Vec<OpenDelivery>, DeliverError> {
        let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
            return Ok(Vec::new());
        };
        let attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
        let held = self.take_index(workspace);
        let index = OpenIndex::ready(store, workspace, &attempts, &ledger, held).await?;
        let mut open: Vec<OpenDelivery> = index
            .open()
            .iter()
            .map(|(id, e)| OpenDelivery {
                delivery_id: id.to_string(),
                status: e.standing.status().to_string(),
                tries: e.tries(),
                last_attempt: e.last_attempt,
                next_attempt_at: match e.standing {
                    Standing::Failed { next } => next,
                    Standing::Pending | Standing::Held => None,
                },
                first_try: e.first_try,
                planned_at: e.planned_at,
                payload: e.payload.as_deref().map(str::to_string),
            })
            .collect();
        open.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
        self.put_index(workspace, index);
        Ok(open)
    }
}

/// One open delivery as the index holds it (µs times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDelivery {
    pub delivery_id: String,
    /// `pending`, `failed` or `held`, as the `deliveries` view says.
    pub status: String,
    /// Failed tries since it was planned or reset.
    pub tries: u32,
    pub last_attempt: i64,
    pub next_attempt_at: Option<i64>,
    pub first_try: Option<i64>,
    pub planned_at: i64,
    pub payload: Option<String>,
}

/// Deletes the old claims (an hour or more) whose attempt is recorded, as
/// the caught-up index of open deliveries tells: an open delivery's claims
/// up to its last recorded attempt, and every claim of a delivery that is
/// no longer open (delivered or dead: its last attempt was recorded, and
/// none of its attempts is claimed again unless it is redelivered, which
/// opens it). The index answers from memory, so a sweep costs the claims
/// it looks at, not the ledger's size.
fn sweepable_claims(index: &OpenIndex, old: Vec<(String, String, i64)>) -> Vec<String> {
    old.into_iter()
        .filter(|(_, id, attempt)| {
            index
                .open()
                .get(id)
                .is_none_or(|e| *attempt <= e.last_attempt)
        })
        .map(|(name, _, _)| name)
        .collect()
}

/// Delivers the workspace's due deliveries with a worker of its own (what
/// the commands and tests use; `serve` keeps one [`Deliverer`]).
pub async fn deliver_due(
    store: &Store,
    config: &Config,
    workspace: &str,
    now: DateTime<Utc>,
    limits: &DeliveryLimits,
) -> Result<DeliverySummary, DeliverError> {
    let deliverer = Deliverer::new(*limits);
    let summary = deliverer.deliver_due(store, config, workspace, now).await;
    deliverer.leave(store).await;
    summary
}

/// What one call of [`Deliverer::deliver_due`] works on.
struct Call<'a> {
    store: &'a Store,
    config: &'a Config,
    workspace: &'a str,
    ledger: &'a DeltaTable,
    claims: Arc<Claims>,
    /// The signing secrets that resolve (none: webhooks go unsigned).
    secrets: Vec<String>,
    due_at: DateTime<Utc>,
}

/// What choosing the next batch came to.
enum Next {
    /// Nothing was due but a rate-limited action, which now has room.
    Waited,
    /// Nothing (more) is due.
    Done,
    /// A batch was performed (not recorded yet).
    Did(Batch),
}

/// A performed batch, its deliveries sorted by what became of them.
struct Batch {
    due: Vec<Due>,
    /// Tried: (index in `due`, outcome, when).
    tried: Vec<(usize, Attempted, DateTime<Utc>)>,
    /// Not tried: busy, deferred or unclaimed.
    untried: Vec<String>,
    /// Deliveries another worker holds.
    busy: Vec<String>,
    /// Deliveries left for a later batch (rate limits, the claim window).
    deferred: usize,
    /// The call should stop after it.
    last: bool,
}

impl Batch {
    fn of(
        due: Vec<Due>,
        performed: Vec<Performed>,
        size: usize,
        uncapped: bool,
        limits: &DeliveryLimits,
    ) -> Batch {
        let mut batch = Batch {
            due: Vec::new(),
            tried: Vec::new(),
            untried: Vec::new(),
            busy: Vec::new(),
            deferred: 0,
            last: false,
        };
        let mut unclaimed = 0;
        for (i, (d, performed)) in due.iter().zip(performed).enumerate() {
            match performed {
                Performed::Tried { outcome, at } => {
                    batch.tried.push((i, outcome, at));
                    continue;
                }
                Performed::Busy => batch.busy.push(d.delivery_id.clone()),
                Performed::Deferred => batch.deferred += 1,
                Performed::Unclaimed => unclaimed += 1,
            }
            batch.untried.push(d.delivery_id.clone());
        }
        // Without waiting for rate limits, deferred work goes to the next
        // call (`serve` calls again at once): other workspaces take turns.
        let stuck = batch.tried.is_empty() && batch.deferred == 0;
        let leave = !limits.wait_for_rate_limits && batch.deferred > 0;
        let drained = due.len() < size
            && uncapped
            && batch.deferred == 0
            && batch.busy.is_empty()
            && unclaimed == 0;
        batch.last = stuck || drained || leave;
        batch.due = due;
        batch
    }
}

/// What recording a batch came to: the attempts version committed (none:
/// nothing was), the rows committed, their tally.
type Recorded = (Option<i64>, Vec<AttemptRecord>, DeliverySummary);

/// The attempts rows of what was tried: each outcome judged at the time
/// it was tried.
pub fn verdicts(
    tried: &[(&Due, Attempted, DateTime<Utc>)],
    retry_period: Duration,
) -> Vec<AttemptRecord> {
    tried
        .iter()
        .map(|(d, outcome, at)| {
            let tries = d.tries.saturating_add(1);
            let schedule = Schedule {
                first_try: d.first_try,
                tries,
                retry_period,
            };
            let verdict = decide(
                &outcome.action,
                schedule,
                jitter_for(&d.delivery_id, tries),
                *at,
            );
            let error = match (outcome.error.clone(), verdict.note) {
                (Some(error), Some(note)) => Some(format!("{error} ({note})")),
                (error, note) => error.or(note),
            };
            AttemptRecord {
                delivery_id: d.delivery_id.clone(),
                attempt: d.last_attempt + 1,
                status: verdict.status,
                http_status: outcome.http_status.map(i64::from),
                error,
                attempted_at: at.timestamp_micros(),
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
) -> Result<Recorded, DeliverError> {
    let mut writer = Recording {
        ledger,
        rows,
        skipped: 0,
        read: None,
    };
    let committed = commit(attempts, &mut writer).await?;
    let version = match committed {
        Committed::Version(v) => Some(v),
        Committed::Nothing => None,
    };
    let summary = tally(&writer.rows, writer.skipped);
    Ok((version, writer.rows, summary))
}

/// A batch's attempts rows, checked again against the table after a lost race.
struct Recording<'a> {
    ledger: &'a DeltaTable,
    rows: Vec<AttemptRecord>,
    skipped: u64,
    /// The attempts version the rows were last planned on (none: not yet).
    read: Option<i64>,
}

impl Recording<'_> {
    /// Drops the rows of deliveries `others` (rows committed since the
    /// last plan) record as delivered; numbers the rest after theirs.
    fn after(&mut self, others: &[Tried]) {
        let mut latest: HashMap<&str, &Tried> = HashMap::new();
        for row in others {
            let newer = latest
                .get(row.delivery_id.as_str())
                .is_none_or(|known| row.attempt > known.attempt);
            if newer {
                latest.insert(&row.delivery_id, row);
            }
        }
        let before = self.rows.len();
        self.rows.retain(|r| {
            latest
                .get(r.delivery_id.as_str())
                .is_none_or(|t| t.status != Status::Delivered.as_str())
        });
        self.skipped += (before - self.rows.len()) as u64;
        for row in &mut self.rows {
            if let Some(t) = latest.get(row.delivery_id.as_str()) {
                row.attempt = row.attempt.max(t.attempt + 1);
            }
        }
    }

    /// The same check from the whole history (the new commits cannot be
    /// followed: a rewrite).
    async fn after_all(&mut self, attempts: &DeltaTable) -> Result<(), DeliverError> {
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
        Ok(())
    }
}

impl Writer for Recording<'_> {
    type Error = DeliverError;

    async fn plan(&mut self, attempts: &DeltaTable) -> Result<Plan, DeliverError> {
        let version = table::version(attempts);
        if let Some(read) = self.read.filter(|read| *read < version) {
            let id = table::table_id(attempts)?;
            let log = attempts.log_store();
            match follow::since(log.as_ref(), read, &id).await? {
                Followed::Added { files, .. } => {
                    let mut others = Vec::new();
                    for file in &files {
                        let batches =
                            follow::read_columns(log.as_ref(), file, RACE_COLUMNS).await?;
                        others.extend(batches.iter().flat_map(tried_rows));
                    }
                    self.after(&others);
                }
                Followed::Rewritten(_) => self.after_all(attempts).await?,
            }
        }
        self.read = Some(version);
        if self.rows.is_empty() {
            return Ok(Plan::Nothing);
        }
        Ok(Plan::Append(Append {
            batches: vec![attempts_batch(&self.rows)],
            txns: Vec::new(),
        }))
    }
}

/// The attempts columns a lost race reads of the winner's rows.
const RACE_COLUMNS: &[&str] = &[
    "delivery_id",
    "attempt",
    "status",
    "attempted_at",
    "next_attempt_at",
];

fn tally(rows: &[AttemptRecord], skipped: u64) -> DeliverySummary {
    let count = |status| rows.iter().filter(|r| r.status == status).count() as u64;
    DeliverySummary {
        delivered: count(Status::Delivered),
        failed: count(Status::Failed),
        dead: count(Status::Dead),
        skipped,
        busy: 0,
        deferred: 0,
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
pub(super) fn note_unsigned_once(config: &Config, workspace: &str) {
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
