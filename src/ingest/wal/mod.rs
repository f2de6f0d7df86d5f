//! The ingest write-ahead log: an event is acknowledged only once it is fsynced
//! here, and the flusher later commits whole segments to Delta
//! (docs/architecture.md "Ingest").
//!
//! ```text
//! handlers ──append: try_send──▶ bounded queue ──▶ writer thread: take one append, drain the
//!    ▲                                              rest, write all, one sync_data (group commit)
//!    └────────────── every waiter answered after the fsync ◀─┘
//! flusher: seal(false) each tick ──▶ sealed() ──▶ read ──▶ txn("ingest:<node id>", number) ──▶ remove
//! ```
//!
//! # Durability contract
//! - Acknowledged ⇒ fsynced: `append` resolves `Ok` only after its records
//!   and every earlier one were written and `sync_data` returned, in a
//!   segment whose name was made durable (directory fsync) when it was
//!   created. A batch whose write or fsync failed is answered with the
//!   error, and its segment is never written again: it is sealed at the
//!   length known durable and the next batch goes to a fresh segment, so the
//!   log recovers by itself once the fault clears (see `latch`).
//! - Segment numbers are never reused: the highest number is persisted
//!   (fsynced, directory fsynced) before a segment file is created, so the
//!   flusher's idempotent commit per number stays sound after removals.
//! - Torn tails are cut: on open, each segment is cut after its last whole
//!   record (a tail that fails its checksum was never acknowledged) and every
//!   segment left behind becomes sealed, so it is replayed.
//!
//! The `crash` test checks all three at thousands of seeded power cuts.
//!
//! The directory belongs to one node and is locked while open:
//! - `node-id`: this node's id, created once.
//! - `segment-counter`: the highest segment number ever created, replaced
//!   atomically and fsynced before a segment file is created, so a number is
//!   never reused, even after every segment was removed.
//! - `<number, 20 digits>.wal`: segments; each record is
//!   `length: u32 LE | CRC32 of payload: u32 LE | payload`.
//! - `lock`: held by the writer (`flock`) so no second process writes here.
//!
//! Modules: `format` (framing, file names; pure), `recovery` (opening the
//! directory), `writer` (the group-commit thread), `latch` (whether it can
//! write, and why not after an I/O error), `segment` (sealed segments and counters), `files` (the trait
//! every file operation goes through), `error`. Tests: `tests` (on a real
//! directory), `disk` (an in-memory disk that knows what is durable),
//! `faulty` (files on it that cut power and fail) and `crash` (seeded crash
//! points on those); `fuzzing` opens the log on fuzzed disks (`fuzz/`).

mod error;
mod files;
mod format;
mod latch;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod crash;
#[cfg(any(test, fuzzing))]
#[cfg_attr(fuzzing, allow(dead_code))]
mod disk;
#[cfg(any(test, fuzzing))]
#[cfg_attr(fuzzing, allow(dead_code))]
mod faulty;
#[cfg(fuzzing)]
pub mod fuzzing;
#[cfg(any(test, fuzzing))]
mod splitmix;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use self::error::io_error;
use self::files::{Files, StdFiles};
use self::format::check_records;
use self::segment::Shared;
use self::writer::{Append, Command, Queued};

pub use self::error::WalError;
pub use self::format::MAX_RECORD_BYTES;
pub use self::segment::Segment;

/// The largest `queue` accepted.
const MAX_QUEUE: usize = 1 << 20;

/// Where the log lives and when its segments are sealed.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Owned by this one ingest node.
    pub dir: PathBuf,
    /// Seal the open segment once it reaches this size (checked after each append).
    pub segment_bytes: u64,
    /// ... or, on `seal(false)`, once its first record is this old.
    pub segment_age: Duration,
    /// Bound on appends waiting for the writer (requests, not records).
    pub queue: usize,
    /// Bound on the bytes of the records waiting for the writer. One append
    /// is let in whatever its size when nothing else waits.
    pub queue_bytes: usize,
    /// Bound on the bytes the log holds: its segments not yet removed by the
    /// flusher plus the records waiting for the writer. An append that would
    /// pass it is refused ([`WalError::Backlog`]), so the log never grows
    /// past it; one is let in whatever its size when the log is empty.
    pub max_bytes: u64,
}

impl WalConfig {
    fn validate(&self) -> Result<(), WalError> {
        if self.queue == 0 || self.queue > MAX_QUEUE {
            return Err(WalError::Config(format!(
                "queue must be 1 to {MAX_QUEUE}, not {}",
                self.queue
            )));
        }
        if self.queue_bytes == 0 {
            return Err(WalError::Config("queue_bytes must be above 0".into()));
        }
        if self.max_bytes == 0 {
            return Err(WalError::Config("max_bytes must be above 0".into()));
        }
        if self.segment_bytes == 0 {
            return Err(WalError::Config("segment_bytes must be above 0".into()));
        }
        Ok(())
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Appends written and fsynced (acknowledged requests).
    pub appends: u64,
    pub records: u64,
    /// `sync_data` calls on segments: group commits plus size rotations.
    pub fsyncs: u64,
    pub bytes_written: u64,
    /// Bytes in sealed and open segments the flusher has not removed yet.
    pub bytes_pending: u64,
    /// Commands waiting for the writer right now (at most `queue`).
    pub queued: u64,
    /// Bytes of the records waiting for the writer (about `queue_bytes` at most).
    pub queued_bytes: u64,
    pub sealed_segments: u64,
    /// Failed writes, fsyncs and segment creations.
    pub errors: u64,
}

/// The log: a cheap handle shared by all handlers.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while dropping.
    sender: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    node_id: String,
    queue_bytes: usize,
    max_bytes: u64,
}

impl Drop for Inner {
    /// The last handle is gone: let the writer finish what is queued (without
    /// sealing, like a crash would leave it) and wait, so the lock is free.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating) the directory. Segments left by an earlier process
    /// (including the one that was open when it crashed) become sealed, so
    /// the flusher replays them; a torn last record is cut off (it was never
    /// acknowledged). Spawns the writer on a dedicated OS thread.
    pub fn open(config: WalConfig) -> Result<Wal, WalError> {
        Wal::open_on(config, Arc::new(StdFiles))
    }

    /// [`Wal::open`] with every file operation going through `files`.
    fn open_on(config: WalConfig, files: Arc<dyn Files>) -> Result<Wal, WalError> {
        config.validate()?;
        let opened = recovery::open_dir(&*files, &config.dir)?;
        let shared = Arc::new(Shared::new(files, opened.sealed));
        let (sender, receiver) = mpsc::channel(config.queue);
        let thread = writer::spawn(
            &config,
            opened.next_number,
            shared.clone(),
            opened.lock,
            receiver,
        )
        .map_err(io_error("start the writer for", &config.dir))?;
        Ok(Wal {
            inner: Arc::new(Inner {
                sender: Some(sender),
                writer: Some(thread),
                shared,
                node_id: opened.node_id,
                queue_bytes: config.queue_bytes,
                max_bytes: config.max_bytes,
            }),
        })
    }

    /// This WAL's node id: generated once, persisted in the directory.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Appends one request's records and resolves once they are written and
    /// fsynced, sharing the fsync with every append queued meanwhile. Answers
    /// `Full` at once when `queue` appends, or `queue_bytes` bytes, are
    /// already waiting, and `Backlog` when the log would pass `max_bytes`.
    /// An append whose future is dropped after it was queued is still
    /// written.
    pub async fn append(&self, records: Vec<Vec<u8>>) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let done = self.enqueue(records)?;
        done.await.map_err(|_| WalError::Closed)?
    }

    /// Queues an append without waiting; the receiver answers after the fsync.
    fn enqueue(
        &self,
        records: Vec<Vec<u8>>,
    ) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        let bytes = check_records(&records)?;
        let queued = self.reserve(bytes)?;
        let (done, answer) = oneshot::channel();
        let command = Command::Append(Append {
            records,
            bytes,
            done,
            _queued: queued,
        });
        self.sender()?.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => WalError::Full,
            TrySendError::Closed(_) => WalError::Closed,
        })?;
        Ok(answer)
    }

    /// Counts `bytes` against `queue_bytes` and `max_bytes`, or answers
    /// `Full` or `Backlog`. Each reservation sees every earlier one (one
    /// atomic add), so racing appends cannot pass the bounds together.
    fn reserve(&self, bytes: usize) -> Result<Queued, WalError> {
        let shared = &self.inner.shared;
        let before = shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let queued = Queued {
            shared: shared.clone(),
            bytes,
        };
        if before > 0 && before + bytes > self.inner.queue_bytes {
            return Err(WalError::Full);
        }
        // Counted twice while the writer moves bytes from the queue into a
        // segment (pending first): on the safe side.
        let pending = shared.bytes_pending.load(Ordering::Relaxed);
        let held = pending.saturating_add((before + bytes) as u64);
        if (before > 0 || pending > 0) && held > self.inner.max_bytes {
            shared.backlogged.store(true, Ordering::Relaxed);
            return Err(WalError::Backlog {
                pending,
                limit: self.inner.max_bytes,
            });
        }
        Ok(queued)
    }

    /// True from an append refused for `max_bytes` until the flusher next
    /// removes a segment.
    pub fn backlogged(&self) -> bool {
        self.inner.shared.backlogged.load(Ordering::Relaxed)
    }

    /// Why the log cannot write right now, while a write, fsync or segment
    /// creation keeps failing; `None` when it works.
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.latch.failure()
    }

    fn sender(&self) -> Result<&mpsc::Sender<Command>, WalError> {
        self.inner.sender.as_ref().ok_or(WalError::Closed)
    }

    /// Test only: parks the writer until the returned sender is dropped, so
    /// appends enqueued meanwhile form one group commit.
    #[cfg(test)]
    async fn hold(&self) -> std::sync::mpsc::Sender<()> {
        let (held, parked) = oneshot::channel();
        let (release, wait) = std::sync::mpsc::channel();
        let command = Command::Hold {
            held,
            release: wait,
        };
        self.sender()
            .expect("open")
            .send(command)
            .await
            .expect("send");
        parked.await.expect("writer parked");
        release
    }

    /// Seals the open segment if it is non-empty and older than
    /// `segment_age`, or whenever it is non-empty when `force`. Waits for room
    /// in the queue; appends queued before it land in the sealed segment.
    pub async fn seal(&self, force: bool) -> Result<(), WalError> {
        let (done, answer) = oneshot::channel();
        self.sender()?
            .send(Command::Seal { force, done })
            .await
            .map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Sealed segments waiting to be flushed, oldest first.
    pub fn sealed(&self) -> Vec<Segment> {
        self.inner.shared.segments()
    }

    pub fn stats(&self) -> WalStats {
        let shared = &self.inner.shared;
        let queued = self
            .inner
            .sender
            .as_ref()
            .map_or(0, |s| s.max_capacity() - s.capacity());
        WalStats {
            appends: shared.appends.load(Ordering::Relaxed),
            records: shared.records.load(Ordering::Relaxed),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            bytes_written: shared.bytes_written.load(Ordering::Relaxed),
            bytes_pending: shared.bytes_pending.load(Ordering::Relaxed),
            queued: queued as u64,
            queued_bytes: shared.queued_bytes.load(Ordering::Relaxed) as u64,
            sealed_segments: shared.sealed_count() as u64,
            errors: shared.errors.load(Ordering::Relaxed),
        }
    }

    /// Graceful shutdown: refuses new appends (`Closed`), writes and fsyncs
    /// everything already queued, seals the open segment and stops the
    /// writer (releasing the directory). Afterwards `sealed()` lists every
    /// acknowledged record's segment. A second call returns at once.
    pub async fn close(&self) -> Result<(), WalError> {
        let (done, answer) = oneshot::channel();
        let Ok(sender) = self.sender() else {
            return Ok(());
        };
        if sender.send(Command::Close(done)).await.is_err() {
            return Ok(());
        }
        answer.await.map_err(|_| WalError::Closed)?
    }
}
