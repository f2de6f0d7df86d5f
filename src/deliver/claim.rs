//! Claims (docs/architecture.md "Deliveries"): one worker at a time sends
//! a delivery's attempt, however many `serve` replicas share the storage.
//!
//! Before sending attempt `n` of a delivery, a worker creates the claim
//! `<delivery_id>.<n>.0` **create-only**, holding its node and an expiry:
//! the batch's longest request timeout plus [`CLAIM_MARGIN`]. On S3 the
//! claim is the object `<root>/<workspace>/state/claims/<name>` written
//! `If-None-Match`; on a local disk a record of the workspace's claim
//! journal (`store::journal`: one file appended under a lock, where a file
//! per claim cost an inode apiece). Delta commits cannot serve as this
//! lock: appends never conflict.
//! - Created: the attempt is this worker's to send.
//! - It exists and has not expired: someone else is sending it; skip.
//! - It has expired (its worker crashed, or stalled): take it over by
//!   creating the next generation, `<delivery_id>.<n>.1` (then `.2`, …),
//!   create-only too, so of two workers taking over at once one wins.
//!
//! Why an expired claim may be taken over: a worker claims only within
//! [`CLAIM_WINDOW`] of reading which deliveries are due, and records a
//! batch within that window plus its requests' timeout. A claim therefore
//! outlives its batch's record by at least another window, and whoever
//! finds it expired read the state after that record, so would not be
//! trying the same attempt. The margin also absorbs the commit and clock
//! differences between nodes (keep them within seconds, e.g. with NTP).
//!
//! Claims are not deleted when their batch is recorded: a worker that
//! read the state just before that record could then claim the attempt
//! afresh. They are swept once older than [`CLAIM_SWEEP_AGE`] and their
//! attempt is recorded (`sweepable`). A claim its worker did not use
//! (nothing was sent under it) is released at once ([`Claims::release`]):
//! marked released, never deleted, so that the next claimant takes the
//! next generation over (in the journal: a later record of the name).
//! Deleting it would free its generation: a worker
//! whose create had just failed would find it gone and take the next
//! generation over while another created the freed one afresh (two
//! senders), and a stalled worker releasing generation 0 after another
//! took generation 1 over would let a third create generation 0 again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::store::journal::Journal;
use crate::store::state::StateDir;
use crate::store::{Store, StoreError};

/// A worker claims deliveries for at most this long after reading which
/// are due; what it has not started by then waits for its next batch.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(2);

/// A claim lasts the batch's longest request timeout plus this: two claim
/// windows, the attempts commit, and clock differences between nodes.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(15);

/// Claims of recorded attempts are deleted once this old.
pub const CLAIM_SWEEP_AGE: Duration = Duration::from_secs(60 * 60);

/// `serve` sweeps a workspace's claims this often (a command once per run).
pub const CLAIM_SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// Claims looked at per sweep, at most.
pub const CLAIM_SWEEP_BATCH: usize = 10_000;

/// Generations of one attempt's claim, at most (each one a crashed or
/// stalled worker, or a claim given back unused: a rate-limited driver
/// gives back at most one per batch, which its next batch takes first):
/// beyond it the attempt is left alone.
pub const MAX_GENERATIONS: u32 = 1_000;

/// Claims of a batch that already existed, taken over (their generations
/// read) at once.
const TAKE_OVER_CONCURRENCY: usize = 32;

/// What a claim object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The worker that holds it (`serve`'s or a command's node id).
    pub node: String,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Given back unused by its worker: the next generation may be taken.
    #[serde(default)]
    pub released: bool,
}

impl Claim {
    /// A claim by `node` taken at `now` for `lifetime`.
    pub fn new(node: &str, now: DateTime<Utc>, lifetime: Duration) -> Claim {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        Claim {
            node: node.to_string(),
            claimed_at: now,
            expires_at: now
                .checked_add_signed(lifetime)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            released: false,
        }
    }

    /// What a claim by `node` becomes when given back unused at `now`:
    /// expired then (for readers that do not know `released`) and released.
    pub fn released(node: &str, now: DateTime<Utc>) -> Claim {
        Claim {
            node: node.to_string(),
            claimed_at: now,
            expires_at: now,
            released: true,
        }
    }
}

/// How long a claim lasts for a batch whose longest request timeout is `timeout`.
pub fn lifetime(timeout: Duration) -> Duration {
    timeout.saturating_add(CLAIM_MARGIN)
}

/// May a worker take over, given the newest claim of the attempt it found
/// (`None`: gone or unreadable) and its clock? Once it has expired or its
/// worker released it.
pub fn may_take_over(newest: Option<&Claim>, now: DateTime<Utc>) -> bool {
    newest.is_none_or(|claim| claim.released || now >= claim.expires_at)
}

/// May a claim written at `written` be swept at `now`, its attempt being
/// recorded? Only once it is [`CLAIM_SWEEP_AGE`] old.
pub fn sweepable(written: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - written)
        .to_std()
        .is_ok_and(|age| age >= CLAIM_SWEEP_AGE)
}

/// The object name of a claim: `<delivery_id>.<attempt>.<generation>`,
/// with every byte of the id outside `A-Z a-z 0-9 _ -` written `~XX`.
pub fn object_name(delivery_id: &str, attempt: i64, generation: u32) -> String {
    let mut name = String::with_capacity(delivery_id.len() + 8);
    for byte in delivery_id.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => name.push(byte as char),
            other => name.push_str(&format!("~{other:02x}")),
        }
    }
    format!("{name}.{attempt}.{generation}")
}

/// The delivery id, attempt and generation an object name stands for.
pub fn parse_object_name(name: &str) -> Option<(String, i64, u32)> {
    let mut parts = name.rsplitn(3, '.');
    let generation = parts.next()?.parse().ok()?;
    let attempt = parts.next()?.parse().ok()?;
    let escaped = parts.next()?.as_bytes();
    let mut id = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        if escaped[i] == b'~' {
            let hex = std::str::from_utf8(escaped.get(i + 1..i + 3)?).ok()?;
            id.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            id.push(escaped[i]);
            i += 1;
        }
    }
    Some((String::from_utf8(id).ok()?, attempt, generation))
}

/// What trying to claim an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// This worker holds the attempt (at this generation): send it.
    Mine(u32),
    /// Another worker holds it, or it was claimed too often: skip it.
    Busy,
}

/// A workspace's claims, as one worker takes them.
pub struct Claims {
    /// On a local disk: the journal whose records the claims are
    /// (`<workspace>/state/claim-journal/`, see [`Journal`]).
    journal: Option<Arc<Journal>>,
    /// Elsewhere, the folder whose objects the claims are; on a local
    /// disk, where claims of versions before the journal are swept from.
    dir: StateDir,
    /// The workspace's `state` folder, where the last sweep is noted.
    state: StateDir,
    node: String,
}

/// The object in `<workspace>/state/` noting when claims were last swept.
const SWEPT: &str = "claims-swept.json";

/// The folder in `<workspace>/state/` of the claims' journal (local disks).
pub const JOURNAL: &str = "claim-journal";

/// When the claims were last swept, by any worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Swept {
    at: DateTime<Utc>,
}

/// Is a sweep due at `now`, the last one having been at `last`? Once
/// [`CLAIM_SWEEP_EVERY`] has passed (or the last is in the future: another
/// node's clock).
pub fn sweep_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|at| {
        (now - at)
            .to_std()
            .is_ok_and(|age| age >= CLAIM_SWEEP_EVERY)
            || at > now
    })
}

impl Claims {
    pub fn open(store: &Store, workspace: &str, node: &str) -> Result<Claims, StoreError> {
        let journal = store.state_dir(&format!("{workspace}/state/{JOURNAL}"))?;
        Ok(Claims {
            journal: journal.local_folder().map(|f| Arc::new(Journal::open(f))),
            dir: store.state_dir(&format!("{workspace}/state/claims"))?,
            state: store.state_dir(&format!("{workspace}/state"))?,
            node: node.to_string(),
        })
    }

    /// Whether this worker should sweep now (notes that it does): at most
    /// every [`CLAIM_SWEEP_EVERY`] across the processes sharing the
    /// storage, since a sweep lists every claim of the last hour.
    pub async fn sweep_now(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let last: Option<Swept> = self.state.read(SWEPT).await.unwrap_or(None);
        if !sweep_due(last.map(|s| s.at), now) {
            return Ok(false);
        }
        self.state.write(SWEPT, &Swept { at: now }).await?;
        Ok(true)
    }

    /// Claims attempt `attempt` of `delivery_id` at `now` for `lifetime`.
    pub async fn take(
        &self,
        delivery_id: &str,
        attempt: i64,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<Taken, StoreError> {
        let claim = Claim::new(&self.node, now, lifetime);
        let bytes = serde_json::to_vec(&claim).expect("a claim serializes");
        let mut generation = 0;
        while generation <= MAX_GENERATIONS {
            let name = object_name(delivery_id, attempt, generation);
            if self.create(name, bytes.clone()).await? {
                return Ok(Taken::Mine(generation));
            }
            let (newest, found) = self.newest(delivery_id, attempt, generation).await?;
            if !may_take_over(found.as_ref(), now) {
                return Ok(Taken::Busy);
            }
            generation = newest + 1;
        }
        Ok(Taken::Busy)
    }

    /// Claims each of `attempts` (delivery id, attempt) at `now` for
    /// `lifetime`, as [`Claims::take`] does one: in order, `None` for those
    /// not tried by `deadline`. Generation 0 of all is created in one go
    /// (one append to the journal on a local disk); only those that exist
    /// already go through the take-over path, [`TAKE_OVER_CONCURRENCY`] at
    /// a time.
    pub async fn take_all(
        &self,
        attempts: &[(&str, i64)],
        now: DateTime<Utc>,
        lifetime: Duration,
        deadline: Instant,
    ) -> Vec<Option<Result<Taken, StoreError>>> {
        if Instant::now() > deadline {
            return attempts.iter().map(|_| None).collect();
        }
        let names: Vec<String> = attempts
            .iter()
            .map(|(id, attempt)| object_name(id, *attempt, 0))
            .collect();
        let claim = Claim::new(&self.node, now, lifetime);
        let bytes = serde_json::to_vec(&claim).expect("a claim serializes");
        let created = self.create_all(names, bytes).await;
        let tries: Vec<_> = attempts
            .iter()
            .zip(created)
            .map(|((id, attempt), created)| {
                self.take_unless_created(id, *attempt, now, lifetime, deadline, created)
            })
            .collect();
        futures::stream::iter(tries)
            .buffered(TAKE_OVER_CONCURRENCY)
            .collect()
            .await
    }

    /// One attempt of [`Claims::take_all`], given how creating its
    /// generation 0 went: taken over (within the deadline) if it existed.
    async fn take_unless_created(
        &self,
        delivery_id: &str,
        attempt: i64,
        now: DateTime<Utc>,
        lifetime: Duration,
        deadline: Instant,
        created: Result<bool, StoreError>,
    ) -> Option<Result<Taken, StoreError>> {
        match created {
            Ok(true) => Some(Ok(Taken::Mine(0))),
            Err(e) => Some(Err(e)),
            Ok(false) if Instant::now() > deadline => None,
            Ok(false) => Some(self.take(delivery_id, attempt, now, lifetime).await),
        }
    }

    /// The newest generation from `from` on, and its claim (`None` when it
    /// vanished or cannot be read).
    async fn newest(
        &self,
        delivery_id: &str,
        attempt: i64,
        from: u32,
    ) -> Result<(u32, Option<Claim>), StoreError> {
        let read = |generation| async move {
            let name = object_name(delivery_id, attempt, generation);
            let bytes = self.read(name).await?;
            Ok::<_, StoreError>(bytes.map(|b| serde_json::from_slice::<Claim>(&b).ok()))
        };
        let mut newest = (from, read(from).await?.flatten());
        while newest.0 < MAX_GENERATIONS {
            match read(newest.0 + 1).await? {
                Some(claim) => newest = (newest.0 + 1, claim),
                None => break,
            }
        }
        Ok(newest)
    }

    /// Gives back generation `generation` of a claim this worker took and
    /// did not use, at `now`: nothing was sent under it, so whoever claims
    /// the attempt next takes the next generation over and sends it once
    /// (best effort: it expires anyway). The object is overwritten, never
    /// deleted (see the module's doc): only its creator writes it.
    pub async fn release(
        &self,
        delivery_id: &str,
        attempt: i64,
        generation: u32,
        now: DateTime<Utc>,
    ) {
        let name = object_name(delivery_id, attempt, generation);
        let released = Claim::released(&self.node, now);
        let bytes = serde_json::to_vec(&released).expect("a claim serializes");
        if let Err(e) = self.write(name.clone(), bytes).await {
            tracing::debug!("cannot release claim {name}: {e}");
        }
    }

    /// Claims old enough to be swept if their attempt is recorded: (name,
    /// delivery id, attempt). The journal's in segments last written to an
    /// hour ago or earlier, all of them; objects (claims of earlier
    /// versions, on a local disk) at most [`CLAIM_SWEEP_BATCH`].
    pub async fn old(&self, now: DateTime<Utc>) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut old = match &self.journal {
            Some(journal) => {
                let cutoff = sweep_cutoff(now);
                let listing = in_journal(journal, move |j| {
                    j.aged(cutoff, |n, w| old_claim(n, w, now))
                });
                finished(listing).await.map_err(|m| self.journal_error(m))?
            }
            None => Vec::new(),
        };
        let objects = self
            .dir
            .list_first(CLAIM_SWEEP_BATCH, |n, w| old_claim(n, w, now));
        old.extend(objects.await?);
        Ok(old)
    }

    /// Deletes the claims `names`, found by [`Claims::old`] at `now` (best
    /// effort: errors are logged): how many were deleted. In the journal,
    /// the segments they were in go, the claims not named moving on.
    pub async fn delete(&self, now: DateTime<Utc>, names: &[String]) -> usize {
        let in_journal = match &self.journal {
            None => vec![false; names.len()],
            Some(journal) => {
                let (cutoff, dropping) = (sweep_cutoff(now), names.to_vec());
                let task = in_journal(journal, move |j| j.retire(cutoff, &dropping));
                match finished(task).await {
                    Ok(removed) => removed,
                    Err(e) => {
                        tracing::debug!("cannot sweep claims: {e}");
                        vec![false; names.len()]
                    }
                }
            }
        };
        let mut deleted = in_journal.iter().filter(|r| **r).count();
        for (name, _) in names.iter().zip(in_journal).filter(|(_, r)| !r) {
            match self.dir.delete(name).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::debug!("cannot sweep claim {name}: {e}"),
            }
        }
        deleted
    }

    /// Creates each of `names` holding `bytes` unless it exists: for each,
    /// in order, whether it was created here.
    async fn create_all(
        &self,
        names: Vec<String>,
        bytes: Vec<u8>,
    ) -> Vec<Result<bool, StoreError>> {
        let Some(journal) = &self.journal else {
            return self.dir.create_all(&names, &bytes).await;
        };
        let count = names.len();
        let task = in_journal(journal, move |j| j.create_all(&names, &bytes));
        match finished(task).await {
            Ok(created) => created.into_iter().map(Ok).collect(),
            Err(message) => (0..count)
                .map(|_| Err(self.journal_error(message.clone())))
                .collect(),
        }
    }

    async fn create(&self, name: String, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let mut created = self.create_all(vec![name], bytes).await;
        created.pop().expect("one name, one answer")
    }

    /// The claim `name`'s bytes, if there is one.
    async fn read(&self, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(journal) = &self.journal else {
            return self.dir.read_bytes(&name).await;
        };
        let task = in_journal(journal, move |j| j.read(&name));
        finished(task).await.map_err(|m| self.journal_error(m))
    }

    /// Writes `bytes` as the claim `name`, replacing it.
    async fn write(&self, name: String, bytes: Vec<u8>) -> Result<(), StoreError> {
        let Some(journal) = &self.journal else {
            return self.dir.write_bytes(&name, bytes).await;
        };
        let task = in_journal(journal, move |j| j.write(&name, &bytes));
        finished(task).await.map_err(|m| self.journal_error(m))
    }

    fn journal_error(&self, message: String) -> StoreError {
        let folder = self
            .journal
            .as_ref()
            .map(|j| j.folder().display().to_string());
        StoreError::Root {
            root: folder.unwrap_or_default(),
            message: format!("claims: {message}"),
        }
    }
}

/// Journal records written at this time or before may be swept at `now`.
fn sweep_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    let age = chrono::Duration::from_std(CLAIM_SWEEP_AGE).expect("an hour");
    now.checked_sub_signed(age)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The claim `name` written at `written` as (name, delivery id, attempt),
/// if it may be swept at `now` (its attempt being recorded).
fn old_claim(
    name: &str,
    written: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(String, String, i64)> {
    let (id, attempt, _) = parse_object_name(name)?;
    sweepable(written, now).then(|| (name.to_string(), id, attempt))
}

/// Runs `work` on the journal in a blocking task (it waits for a lock
/// other processes hold, and reads and writes a file).
fn in_journal<T: Send + 'static>(
    journal: &Arc<Journal>,
    work: impl FnOnce(&Journal) -> std::io::Result<T> + Send + 'static,
) -> JoinHandle<std::io::Result<T>> {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || work(&journal))
}

/// The outcome of an [`in_journal`] task, or what went wrong.
async fn finished<T>(task: JoinHandle<std::io::Result<T>>) -> Result<T, String> {
    match task.await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_claim_holds_until_it_expires() {
        let taken = at("2026-01-01T00:00:00Z");
        let claim = Claim::new("node-a", taken, lifetime(Duration::from_secs(10)));
        assert_eq!(claim.expires_at, at("2026-01-01T00:00:25Z"));
        assert!(!may_take_over(Some(&claim), taken));
        assert!(!may_take_over(Some(&claim), at("2026-01-01T00:00:24.999Z")));
        assert!(may_take_over(Some(&claim), at("2026-01-01T00:00:25Z")));
        assert!(may_take_over(None, taken), "gone or unreadable");
        let given_back = Claim::released("node-a", taken);
        assert!(may_take_over(Some(&given_back), taken));
        let old_reader: Claim = serde_json::from_value(serde_json::json!({
            "node": "node-a", "claimed_at": taken, "expires_at": claim.expires_at
        }))
        .unwrap();
        assert_eq!(
            old_reader, claim,
            "claims written before `released` read as held"
        );
        let forever = Claim::new("node-a", taken, Duration::MAX);
        assert_eq!(forever.expires_at, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn claims_are_swept_only_when_an_hour_old() {
        let written = at("2026-01-01T00:00:00Z");
        assert!(!sweepable(written, at("2026-01-01T00:59:59Z")));
        assert!(sweepable(written, at("2026-01-01T01:00:00Z")));
        assert!(
            !sweepable(written, at("2025-12-31T00:00:00Z")),
            "a clock behind"
        );
    }

    #[test]
    fn claims_are_swept_every_ten_minutes_whoever_sweeps() {
        let last = at("2026-01-01T00:00:00Z");
        assert!(sweep_due(None, last));
        assert!(!sweep_due(Some(last), at("2026-01-01T00:09:59Z")));
        assert!(sweep_due(Some(last), at("2026-01-01T00:10:00Z")));
        assert!(
            sweep_due(Some(last), at("2025-12-31T23:59:00Z")),
            "a clock behind"
        );
    }

    #[test]
    fn object_names_round_trip_any_delivery_id() {
        assert_eq!(
            object_name("027ea1133bd7a82198cebf674bf0b047", 3, 0),
            "027ea1133bd7a82198cebf674bf0b047.3.0"
        );
        for id in ["d-sign", "a.b/c~d", "é|x", ""] {
            let name = object_name(id, 12, 4);
            assert!(!name[..name.len() - 5].contains(['.', '/']), "{name}");
            assert_eq!(parse_object_name(&name), Some((id.to_string(), 12, 4)));
        }
        assert_eq!(parse_object_name("x.1"), None);
        assert_eq!(parse_object_name("x~z1.1.0"), None);
    }

    fn claims(dir: &std::path::Path, node: &str) -> Claims {
        let store = Store::new(url::Url::from_directory_path(dir).unwrap());
        Claims::open(&store, "shop", node).unwrap()
    }

    /// Claims kept as objects (as on S3), on a local disk.
    fn object_claims(dir: &std::path::Path, node: &str) -> Claims {
        Claims {
            journal: None,
            ..claims(dir, node)
        }
    }

    /// The claim `name`, if there is one.
    async fn held(claims: &Claims, name: &str) -> Option<Claim> {
        let bytes = claims.read(name.to_string()).await.unwrap()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn one_worker_holds_an_attempt_until_its_claim_expires_then_one_takes_over() {
        holds_until_expiry_then_one_takes_over(claims).await;
    }

    #[tokio::test]
    async fn claims_kept_as_objects_hold_and_are_taken_over_alike() {
        holds_until_expiry_then_one_takes_over(object_claims).await;
    }

    async fn holds_until_expiry_then_one_takes_over(open: fn(&std::path::Path, &str) -> Claims) {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|node| open(dir.path(), node));
        let now = at("2026-01-01T00:00:00Z");
        let life = Duration::from_secs(20);
        assert_eq!(a.take("d1", 1, now, life).await.unwrap(), Taken::Mine(0));
        assert_eq!(b.take("d1", 1, now, life).await.unwrap(), Taken::Busy);
        assert_eq!(
            b.take("d1", 2, now, life).await.unwrap(),
            Taken::Mine(0),
            "another attempt is another claim"
        );
        let later = at("2026-01-01T00:00:20Z");
        assert_eq!(b.take("d1", 1, later, life).await.unwrap(), Taken::Mine(1));
        assert_eq!(c.take("d1", 1, later, life).await.unwrap(), Taken::Busy);
        assert_eq!(a.take("d1", 1, later, life).await.unwrap(), Taken::Busy);
        let much_later = at("2026-01-01T00:01:00Z");
        assert_eq!(
            c.take("d1", 1, much_later, life).await.unwrap(),
            Taken::Mine(2)
        );
        let holder: Claim = held(&a, "d1.1.2").await.unwrap();
        assert_eq!(holder.node, "c");
        c.release("d1", 1, 2, much_later).await;
        let released: Claim = held(&a, "d1.1.2").await.unwrap();
        assert!(released.released, "kept, marked released: {released:?}");
        assert_eq!(
            a.take("d1", 1, much_later, life).await.unwrap(),
            Taken::Mine(3),
            "a released claim is taken over at once, by its next generation"
        );
        assert_eq!(
            b.take("d1", 1, much_later, life).await.unwrap(),
            Taken::Busy
        );
    }

    #[tokio::test]
    async fn a_claim_released_after_it_was_taken_over_frees_no_generation() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|node| claims(dir.path(), node));
        let now = at("2026-01-01T00:00:00Z");
        let life = Duration::from_secs(1);
        assert_eq!(a.take("d1", 1, now, life).await.unwrap(), Taken::Mine(0));
        let later = at("2026-01-01T00:00:05Z");
        let long = Duration::from_secs(60);
        assert_eq!(b.take("d1", 1, later, long).await.unwrap(), Taken::Mine(1));
        // a stalled past its claim's expiry and gives it back unused: b
        // still holds the attempt, and nobody else may claim it.
        a.release("d1", 1, 0, later).await;
        assert_eq!(c.take("d1", 1, later, long).await.unwrap(), Taken::Busy);
        assert_eq!(a.take("d1", 1, later, long).await.unwrap(), Taken::Busy);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_claim_released_while_others_try_to_take_it_goes_to_one_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(claims(dir.path(), "a"));
        let b = Arc::new(claims(dir.path(), "b"));
        let c = Arc::new(claims(dir.path(), "c"));
        let now = at("2026-01-01T00:00:00Z");
        let life = Duration::from_secs(60);
        for i in 0..RELEASE_RACES {
            let id = format!("d{i}");
            assert_eq!(a.take(&id, 1, now, life).await.unwrap(), Taken::Mine(0));
            let release = {
                let (a, id) = (a.clone(), id.clone());
                tokio::spawn(async move { a.release(&id, 1, 0, now).await })
            };
            let takes: Vec<_> = [b.clone(), c.clone()]
                .into_iter()
                .map(|w| {
                    let id = id.clone();
                    tokio::spawn(async move { w.take(&id, 1, now, life).await.unwrap() })
                })
                .collect();
            release.await.unwrap();
            let mut taken = Vec::new();
            for take in takes {
                taken.push(take.await.unwrap());
            }
            let mine = taken.iter().filter(|t| matches!(t, Taken::Mine(_))).count();
            assert!(mine <= 1, "{id}: two workers hold one attempt: {taken:?}");
        }
    }

    #[tokio::test]
    async fn a_batch_of_claims_takes_the_free_ones_and_takes_over_only_the_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (claims(dir.path(), "a"), claims(dir.path(), "b"));
        let now = at("2026-01-01T00:00:00Z");
        let (short, long) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(a.take("held", 1, now, long).await.unwrap(), Taken::Mine(0));
        assert_eq!(
            a.take("stale", 1, now, short).await.unwrap(),
            Taken::Mine(0)
        );
        let later = at("2026-01-01T00:00:30Z");
        let deadline = Instant::now() + Duration::from_secs(60);
        let batch = [("free", 1), ("held", 1), ("stale", 1), ("held", 2)];
        let taken: Vec<Taken> = b
            .take_all(&batch, later, long, deadline)
            .await
            .into_iter()
            .map(|t| t.expect("tried before the deadline").unwrap())
            .collect();
        assert_eq!(
            taken,
            [Taken::Mine(0), Taken::Busy, Taken::Mine(1), Taken::Mine(0)]
        );
        let free: Claim = held(&a, "free.1.0").await.unwrap();
        assert_eq!((free.node.as_str(), free.claimed_at), ("b", later));
        assert_eq!(
            a.take_all(&[("free", 1)], later, long, deadline).await[0]
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap(),
            &Taken::Busy,
            "a batch's claims hold like single ones"
        );
        let past = Instant::now() - Duration::from_millis(1);
        let late = a.take_all(&[("other", 1)], later, long, past).await;
        assert!(late[0].is_none(), "nothing is claimed past the deadline");
        assert_eq!(held(&a, "other.1.0").await, None);
    }

    /// Rounds of a release racing two takers.
    const RELEASE_RACES: usize = 300;

    #[tokio::test]
    async fn of_many_workers_taking_over_at_once_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = claims(dir.path(), "first");
        let now = at("2026-01-01T00:00:00Z");
        let life = Duration::from_secs(1);
        first.take("d1", 1, now, life).await.unwrap();
        let later = at("2026-01-01T00:00:05Z");
        let workers: Vec<Claims> = (0..8)
            .map(|i| claims(dir.path(), &format!("w{i}")))
            .collect();
        let takes = workers.iter().map(|w| w.take("d1", 1, later, life));
        let taken = futures::future::join_all(takes).await;
        let mine = taken
            .iter()
            .filter(|t| matches!(t, Ok(Taken::Mine(_))))
            .count();
        assert_eq!(mine, 1, "{taken:?}");
    }
}
