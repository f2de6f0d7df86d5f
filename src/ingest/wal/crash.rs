//! The seeded crash-point test: random appends, seals, commits and segment
//! removals on a file system that fails, tears and loses power at a seeded
//! operation. A fake table commits runs of segments by the flusher's rule
//! (one commit appends the segments above the table's `txn`, which then
//! records the last of them: `flusher::unrecorded`) and, like
//! Delta, survives power cuts. After every cut the log is opened again on
//! what survived, its segments are committed, and the table must hold every
//! acknowledged record exactly once, in order, and nothing never appended.
//! Sessions go on after injected failures, so the log must recover from
//! them in-process, acknowledging nothing that was not synced.
//!
//! A failure names its seed; `WAL_CRASH_SEED=<seed>` replays just that one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::faulty::FaultyFiles;
use super::splitmix::SplitMix;
use super::{Segment, Wal, WalConfig, WalError};
use crate::ingest::flusher::unrecorded;

/// Seeds run by default; the whole test stays within seconds in debug.
const SEEDS: u64 = 2_000;
/// Power cuts per seed, each followed by a recovery.
const SESSIONS: usize = 3;
/// Appends, seals and removals per session (fewer once the power is off).
const STEPS: usize = 24;
/// A session's cut falls within this many file operations.
const CUT_WITHIN: u64 = 160;

/// What the test knows about the records it appended.
#[derive(Default)]
struct Model {
    /// Ids handed out so far; each record's payload is derived from its id.
    next_id: u64,
    acknowledged: BTreeSet<u64>,
    /// Each segment's ids, as first read: a sealed segment never changes.
    segments: BTreeMap<u64, Vec<u64>>,
    /// The segment each read record was found in.
    home: BTreeMap<u64, u64>,
    /// Segments whose removal succeeded: they may come back after a cut.
    gone: BTreeSet<u64>,
    node_id: Option<String>,
    table: Table,
}

/// The events table, as the flusher commits to it: each commit appends a
/// run of segments and records the last one's number as the node's
/// transaction version.
#[derive(Default)]
struct Table {
    /// The highest segment number committed (`txn("ingest:<node>")`).
    progress: Option<u64>,
    rows: Vec<u64>,
}

impl Table {
    /// Commits the segments (ascending) the table has not recorded, in one
    /// commit; returns how many it skipped as already recorded.
    fn commit(&mut self, segments: &[(u64, Vec<u64>)]) -> usize {
        let numbers: Vec<i64> = segments.iter().map(|(n, _)| *n as i64).collect();
        let progress = self.progress.map(|p| p as i64);
        let range = unrecorded(&numbers, progress);
        let skipped = range.start;
        for (number, ids) in &segments[range] {
            self.rows.extend_from_slice(ids);
            self.progress = Some(*number);
        }
        skipped
    }
}

/// How often the interesting cases happened, so the test cannot pass idle.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    failed_syncs: u64,
    unacknowledged_survivors: u64,
    removed_came_back: u64,
    cut_while_opening: u64,
    /// Appends acknowledged after an fsync failed earlier in the session.
    recovered_in_process: u64,
    /// Segments a replay found already committed.
    replays_skipped: u64,
}

/// A record's payload: its id, then filler of a length and content set by it.
fn payload(id: u64) -> Vec<u8> {
    let filler = (SplitMix::new(id).below(40) + 1) as usize;
    let mut bytes = id.to_le_bytes().to_vec();
    bytes.extend((0..filler).map(|i| (id as u8).wrapping_add(i as u8)));
    bytes
}

fn config(rng: &mut SplitMix) -> WalConfig {
    WalConfig {
        dir: PathBuf::from("/node/wal"),
        segment_bytes: 24 + rng.below(240),
        segment_age: if rng.one_in(2) {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        queue: 8,
        queue_bytes: 1 << 20,
        max_bytes: u64::MAX,
    }
}

impl Model {
    /// Checks a segment just read against everything known, and learns it.
    /// A sealed segment never changes, except that one sealed after a failed
    /// write or fsync is read up to its durable length until a power cut,
    /// and may show unacknowledged records after it once recovered.
    fn observe(&mut self, seed: u64, number: u64, records: Vec<Vec<u8>>) -> Vec<u64> {
        let ids: Vec<u64> = records.iter().map(|r| self.id_of(seed, r)).collect();
        if let Some(before) = self.segments.get(&number) {
            let grew = ids.starts_with(before)
                && ids[before.len()..]
                    .iter()
                    .all(|id| !self.acknowledged.contains(id));
            assert!(
                grew,
                "seed {seed}: sealed segment {number} changed from {before:?} to {ids:?}"
            );
        }
        for &id in &ids {
            let home = *self.home.entry(id).or_insert(number);
            assert_eq!(home, number, "seed {seed}: record {id} in two segments");
        }
        self.segments.insert(number, ids.clone());
        ids
    }

    /// The id of a record the test appended; anything else fails the test.
    fn id_of(&self, seed: u64, record: &[u8]) -> u64 {
        let id = record
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        match id {
            Some(id) if id < self.next_id && record == payload(id) => id,
            _ => panic!("seed {seed}: a record that was never appended: {record:?}"),
        }
    }

    fn new_records(&mut self, rng: &mut SplitMix) -> Vec<u64> {
        let count = 1 + rng.below(3);
        let ids = (self.next_id..self.next_id + count).collect();
        self.next_id += count;
        ids
    }
}

/// One request's records, or several queued behind a parked writer so they
/// share one group commit; every answer, in order.
async fn append_group(wal: &Wal, groups: &[Vec<u64>]) -> Vec<Result<(), WalError>> {
    let records = |ids: &Vec<u64>| ids.iter().map(|&id| payload(id)).collect();
    if let [only] = groups {
        return vec![wal.append(records(only)).await];
    }
    let release = wal.hold().await;
    let queued: Vec<_> = groups.iter().map(|ids| wal.enqueue(records(ids))).collect();
    drop(release);
    let mut answers = Vec::new();
    for answer in queued {
        answers.push(match answer {
            Ok(done) => done.await.unwrap_or(Err(WalError::Closed)),
            Err(refused) => Err(refused),
        });
    }
    answers
}

struct Run {
    seed: u64,
    rng: SplitMix,
    files: FaultyFiles,
    model: Model,
    tally: Tally,
    /// An fsync failed in this session.
    failed_in_session: bool,
}

impl Run {
    /// One random step; `false` once the session is over.
    async fn step(&mut self, wal: &Wal) -> bool {
        match self.rng.below(10) {
            0..=5 => self.append(wal).await,
            6 | 7 => {
                let _ = wal.seal(self.rng.one_in(2)).await;
            }
            8 => self.flush_oldest(wal),
            _ => {
                let _ = wal.close().await;
                return false;
            }
        }
        self.files.is_powered()
    }

    async fn append(&mut self, wal: &Wal) {
        let requests = 1 + self.rng.below(4);
        let groups: Vec<Vec<u64>> = (0..requests)
            .map(|_| self.model.new_records(&mut self.rng))
            .collect();
        let failed_before = self.files.failed_syncs();
        let answers = append_group(wal, &groups).await;
        let failed_sync = self.files.failed_syncs() > failed_before;
        self.tally.failed_syncs += u64::from(failed_sync);
        for (ids, answer) in groups.iter().zip(answers) {
            if answer.is_ok() {
                assert!(
                    !failed_sync,
                    "seed {}: acknowledged although an fsync failed",
                    self.seed
                );
                self.model.acknowledged.extend(ids);
                self.tally.acknowledged += 1;
                self.tally.recovered_in_process += u64::from(self.failed_in_session);
            }
        }
        self.failed_in_session |= failed_sync;
    }

    /// What the flusher does: read the oldest sealed segments (all of them,
    /// or the first few as [`MAX_FLUSH_BYTES`] would), commit them to the
    /// table together, then remove them. A quarter of the time the commit
    /// fails (the segments stay), an eighth of the time the flusher stops
    /// between the commit and the removals, and removals stop at the first
    /// that fails.
    ///
    /// [`MAX_FLUSH_BYTES`]: crate::ingest::flusher::MAX_FLUSH_BYTES
    fn flush_oldest(&mut self, wal: &Wal) {
        let mut sealed = wal.sealed();
        if self.rng.one_in(2) {
            sealed.truncate(1 + self.rng.below(3) as usize);
        }
        let mut run = Vec::new();
        for segment in &sealed {
            let Ok(records) = segment.read() else {
                return;
            };
            let ids = self.model.observe(self.seed, segment.number, records);
            run.push((segment.number, ids));
        }
        match self.rng.below(8) {
            0 | 1 => {}
            2 => self.commit(&run),
            _ => {
                self.commit(&run);
                for segment in sealed {
                    let number = segment.number;
                    if segment.remove().is_err() {
                        break;
                    }
                    self.model.gone.insert(number);
                }
            }
        }
    }

    fn commit(&mut self, run: &[(u64, Vec<u64>)]) {
        let skipped = self.model.table.commit(run);
        self.tally.replays_skipped += skipped as u64;
    }

    /// Opens the log under faults, runs steps until the power is cut or the
    /// script ends, then cuts the power for sure.
    async fn session(&mut self) {
        let cut_at = (!self.rng.one_in(8)).then(|| 1 + self.rng.below(CUT_WITHIN));
        let fault_odds = [0, 0, 25, 200][self.rng.below(4) as usize];
        self.files.plan(cut_at, fault_odds);
        self.failed_in_session = false;
        let config = config(&mut self.rng);
        match Wal::open_on(config, Arc::new(self.files.clone())) {
            Ok(wal) => {
                for _ in 0..STEPS {
                    if !self.step(&wal).await {
                        break;
                    }
                }
                self.files.cut_power();
            }
            Err(_) => {
                self.tally.cut_while_opening += u64::from(!self.files.is_powered());
                self.files.cut_power();
            }
        }
        self.files.restart();
    }

    /// Opens the log on what survived, without faults, commits what it
    /// holds as the flusher does at startup, and checks the table.
    fn verify(&mut self) {
        let seed = self.seed;
        let config = config(&mut self.rng);
        let wal = Wal::open_on(config, Arc::new(self.files.clone()))
            .unwrap_or_else(|e| panic!("seed {seed}: reopening after a power cut: {e}"));
        let node_id = self
            .model
            .node_id
            .get_or_insert_with(|| wal.node_id().into());
        assert_eq!(node_id, wal.node_id(), "seed {seed}: the node id changed");
        let mut stream = Vec::new();
        let mut run = Vec::new();
        for segment in wal.sealed() {
            let number = segment.number;
            let records = read(seed, segment);
            self.tally.removed_came_back += u64::from(self.model.gone.contains(&number));
            let ids = self.model.observe(seed, number, records);
            stream.extend(ids.iter().copied());
            run.push((number, ids));
        }
        self.commit(&run);
        self.check(&stream);
        let reused = self.files.reused_names();
        assert!(
            reused.is_empty(),
            "seed {seed}: segment names reused: {reused:?}"
        );
    }

    /// The log holds no record twice and in order; the table holds every
    /// acknowledged record exactly once, in order.
    fn check(&mut self, stream: &[u64]) {
        let seed = self.seed;
        let ordered = |ids: &[u64]| ids.windows(2).all(|w| w[0] < w[1]);
        assert!(
            ordered(stream),
            "seed {seed}: records out of order or twice in the log: {stream:?}"
        );
        let rows = &self.model.table.rows;
        assert!(
            ordered(rows),
            "seed {seed}: records out of order or twice in the table: {rows:?}"
        );
        let stored: BTreeSet<u64> = rows.iter().copied().collect();
        let lost: Vec<&u64> = self.model.acknowledged.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: acknowledged records {lost:?} never reached the table {rows:?}"
        );
        let unacknowledged = stored.difference(&self.model.acknowledged).count();
        self.tally.unacknowledged_survivors += unacknowledged as u64;
    }
}

fn read(seed: u64, segment: Segment) -> Vec<Vec<u8>> {
    let number = segment.number;
    segment
        .read()
        .unwrap_or_else(|e| panic!("seed {seed}: reading segment {number}: {e}"))
}

async fn run(seed: u64, tally: &mut Tally) {
    let mut run = Run {
        seed,
        rng: SplitMix::new(seed),
        files: FaultyFiles::new(seed ^ 0x5eed_f11e),
        model: Model::default(),
        tally: std::mem::take(tally),
        failed_in_session: false,
    };
    for _ in 0..SESSIONS {
        run.session().await;
        run.verify();
    }
    *tally = run.tally;
}

#[tokio::test]
async fn acknowledged_records_survive_power_cuts_at_every_point() {
    let seeds = match std::env::var("WAL_CRASH_SEED") {
        Ok(seed) => {
            let seed = seed.parse().expect("WAL_CRASH_SEED is a number");
            seed..seed + 1
        }
        Err(_) => 0..SEEDS,
    };
    let mut tally = Tally::default();
    for seed in seeds.clone() {
        run(seed, &mut tally).await;
    }
    if seeds.end - seeds.start == SEEDS {
        for (what, count) in [
            ("acknowledged appends", tally.acknowledged),
            ("failed fsyncs", tally.failed_syncs),
            (
                "unacknowledged records that survived",
                tally.unacknowledged_survivors,
            ),
            ("removed segments back after a cut", tally.removed_came_back),
            ("cuts while opening", tally.cut_while_opening),
            (
                "appends acknowledged after a failed fsync, without a restart",
                tally.recovered_in_process,
            ),
            ("replays skipped by the table", tally.replays_skipped),
        ] {
            assert!(count > 0, "no {what} in {SEEDS} seeds: {tally:?}");
        }
    }
}
