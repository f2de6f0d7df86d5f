//! The ingest write-ahead log: an event is acknowledged only once it is fsynced
//! here, and the flusher later commits whole segments to Delta (SPEC §3,
//! DESIGN.md "Ingest").
//!
//! ```text
//! handlers ──append: try_send──▶ bounded queue ──▶ writer thread: take one append, drain the
//!    ▲                                              rest, write all, one sync_data (group commit)
//!    └────────────── every waiter answered after the fsync ◀─┘
//! flusher: seal(false) each tick ──▶ sealed() ──▶ read ──▶ txn("ingest:<node id>", number) ──▶ remove
//! ```
//!
//! The directory belongs to one node and is locked while open:
//! - `node-id`: this node's id, created once.
//! - `segment-counter`: the highest segment number ever created, replaced
//!   atomically and fsynced before a segment file is created, so a number is
//!   never reused, even after every segment was removed.
//! - `<number, 20 digits>.wal`: segments; each record is
//!   `length: u32 LE | CRC32 of payload: u32 LE | payload`.
//! - `lock`: held by the writer (`flock`) so no second process writes here.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// The largest record accepted; SPEC §3 caps a whole request at 4 MB.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Bytes in front of each payload: its length and its CRC32.
const HEADER_BYTES: usize = 8;
/// One group commit stops draining the queue once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// The largest `queue` accepted.
const MAX_QUEUE: usize = 1 << 20;
const SEGMENT_EXTENSION: &str = "wal";
/// Digits of a segment's file name, so names sort like numbers.
const SEGMENT_DIGITS: usize = 20;
const NODE_ID_FILE: &str = "node-id";
const COUNTER_FILE: &str = "segment-counter";
const LOCK_FILE: &str = "lock";
const TMP_EXTENSION: &str = "tmp";

/// Why an append, a seal or opening the log failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// `queue` appends are already waiting: answer 503 with Retry-After.
    #[error("the write-ahead log's queue is full")]
    Full,
    /// The log was closed; nothing more is accepted.
    #[error("the write-ahead log is closed")]
    Closed,
    /// A write or fsync failed earlier; nothing is accepted until a restart
    /// replays what is on disk.
    #[error("the write-ahead log stopped after an I/O error: {0}")]
    Failed(String),
    #[error("a write-ahead log record holds 1 to {MAX_RECORD_BYTES} bytes, not {0}")]
    Record(usize),
    #[error("write-ahead log config: {0}")]
    Config(String),
    #[error("write-ahead log directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("write-ahead log: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WalError + use<> {
    let path = path.to_path_buf();
    move |source| WalError::Io {
        action,
        path,
        source,
    }
}

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
}

impl WalConfig {
    fn validate(&self) -> Result<(), WalError> {
        if self.queue == 0 || self.queue > MAX_QUEUE {
            return Err(WalError::Config(format!(
                "queue must be 1 to {MAX_QUEUE}, not {}",
                self.queue
            )));
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
    pub sealed_segments: u64,
}

/// What the writer thread and the handles share: sealed segments and counters.
#[derive(Debug, Default)]
struct Shared {
    sealed: Mutex<BTreeMap<u64, SealedFile>>,
    appends: AtomicU64,
    records: AtomicU64,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
    bytes_pending: AtomicU64,
}

#[derive(Debug, Clone)]
struct SealedFile {
    path: PathBuf,
    bytes: u64,
}

impl Shared {
    fn sealed(&self) -> MutexGuard<'_, BTreeMap<u64, SealedFile>> {
        self.sealed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_sealed(&self, number: u64, file: SealedFile) {
        self.sealed().insert(number, file);
    }

    fn forget(&self, number: u64) {
        if let Some(file) = self.sealed().remove(&number) {
            self.bytes_pending.fetch_sub(file.bytes, Ordering::Relaxed);
        }
    }
}

/// A sealed segment: complete, fsynced, never written again.
pub struct Segment {
    pub number: u64,
    pub path: PathBuf,
    shared: Arc<Shared>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("number", &self.number)
            .field("path", &self.path)
            .finish()
    }
}

impl Segment {
    /// Every whole record, in order (a torn or corrupt tail ends the segment).
    /// Blocking file I/O: call it from `spawn_blocking` on a busy runtime.
    pub fn read(&self) -> Result<Vec<Vec<u8>>, WalError> {
        let bytes = fs::read(&self.path).map_err(io_error("read", &self.path))?;
        Ok(decode(&bytes).0.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// Deletes the segment (after the flusher committed it). Removing one
    /// that is already gone succeeds.
    pub fn remove(self) -> Result<(), WalError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove", &self.path)(e));
            }
            _ => {}
        }
        self.shared.forget(self.number);
        Ok(())
    }
}

/// Appends `record` framed as length, CRC32, payload.
fn encode(record: &[u8], out: &mut Vec<u8>) {
    // Fits: `check_records` allows at most MAX_RECORD_BYTES.
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    out.extend_from_slice(record);
}

/// The payload of the whole, intact record at `at` and where the next one
/// starts; `None` at the end, a torn record, a bad checksum or a zero length
/// (a zero-filled tail is not a run of empty records).
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(HEADER_BYTES)?)?;
    let (length, crc) = header.split_at(4);
    let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if length == 0 || length > MAX_RECORD_BYTES {
        return None;
    }
    let start = at + HEADER_BYTES;
    let payload = bytes.get(start..start + length)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + length))
}

/// Every whole record from the start, and how many bytes they span.
fn decode(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((payload, next)) = record_at(bytes, at) {
        records.push(payload);
        at = next;
    }
    (records, at)
}

/// Checks every record's size; returns the bytes they take framed.
fn check_records(records: &[Vec<u8>]) -> Result<usize, WalError> {
    records.iter().try_fold(0, |total, record| {
        if record.is_empty() || record.len() > MAX_RECORD_BYTES {
            return Err(WalError::Record(record.len()));
        }
        Ok(total + HEADER_BYTES + record.len())
    })
}

/// Is the open segment due for sealing?
fn seal_due(force: bool, age: Duration, segment_age: Duration) -> bool {
    force || age >= segment_age
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!(
        "{number:0width$}.{SEGMENT_EXTENSION}",
        width = SEGMENT_DIGITS
    ))
}

/// The segment number a file name stands for, if it is a segment.
fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    let all_digits = digits.len() == SEGMENT_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    all_digits.then(|| digits.parse().ok()).flatten()
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// Replaces `dir/name` atomically (temporary file, fsync, rename, fsync the directory).
fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), WalError> {
    let tmp = dir.join(format!("{name}.{TMP_EXTENSION}"));
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(contents).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_error("rename into", &path))?;
    sync_dir(dir)
}

/// Reads a small text file; `None` if it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, WalError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn read_counter(dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(COUNTER_FILE);
    let Some(text) = read_text(&path)? else {
        return Ok(0);
    };
    text.parse().map_err(|e| WalError::Corrupt {
        path,
        reason: format!("not a segment number ({e})"),
    })
}

fn write_counter(dir: &Path, highest: u64) -> Result<(), WalError> {
    replace_file(dir, COUNTER_FILE, format!("{highest}\n").as_bytes())
}

/// This directory's node id, created on first use.
fn load_node_id(dir: &Path) -> Result<String, WalError> {
    let path = dir.join(NODE_ID_FILE);
    match read_text(&path)? {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(WalError::Corrupt {
            path,
            reason: "empty node id".into(),
        }),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            replace_file(dir, NODE_ID_FILE, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Creates the directory (and makes its entry durable) if it is missing.
fn create_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Locks the directory for this process; the lock goes with the file.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

/// Segment numbers present in `dir`, ascending; removes leftover temporary files.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(number) = segment_number(name) {
            numbers.push(number);
        } else if path.extension().is_some_and(|e| e == TMP_EXTENSION) {
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Cuts a segment after its last whole record (a torn tail was never
/// acknowledged); returns the length kept.
fn trim_segment(path: &Path) -> Result<u64, WalError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let whole = decode(&bytes).1;
    if whole < bytes.len() {
        tracing::warn!(
            segment = %path.display(),
            kept = whole,
            cut = bytes.len() - whole,
            "cutting a torn write-ahead log tail"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error("open", path))?;
        file.set_len(whole as u64)
            .map_err(io_error("truncate", path))?;
        file.sync_all().map_err(io_error("sync", path))?;
    }
    Ok(whole as u64)
}

/// What an earlier process left: every segment is sealed now.
struct Recovered {
    sealed: BTreeMap<u64, SealedFile>,
    next_number: u64,
}

fn recover(dir: &Path) -> Result<Recovered, WalError> {
    let numbers = list_segments(dir)?;
    let counter = read_counter(dir)?;
    let highest = numbers.last().copied().unwrap_or(0).max(counter);
    if highest > counter {
        // Before any empty segment is removed below, so its number stays used.
        write_counter(dir, highest)?;
    }
    let mut sealed = BTreeMap::new();
    for number in numbers {
        let path = segment_path(dir, number);
        match trim_segment(&path)? {
            0 => fs::remove_file(&path).map_err(io_error("remove", &path))?,
            bytes => {
                sealed.insert(number, SealedFile { path, bytes });
            }
        }
    }
    sync_dir(dir)?;
    Ok(Recovered {
        sealed,
        next_number: highest + 1,
    })
}

/// One request's records and the waiter to answer once they are fsynced.
struct Append {
    records: Vec<Vec<u8>>,
    bytes: usize,
    done: oneshot::Sender<Result<(), WalError>>,
}

enum Command {
    Append(Append),
    Seal {
        force: bool,
        done: oneshot::Sender<Result<(), WalError>>,
    },
    Close(oneshot::Sender<Result<(), WalError>>),
    /// Test only: parks the writer so appends pile up in the queue.
    #[cfg(test)]
    Hold {
        held: oneshot::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    },
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
        config.validate()?;
        create_dir(&config.dir)?;
        let lock = lock_dir(&config.dir)?;
        let node_id = load_node_id(&config.dir)?;
        let recovered = recover(&config.dir)?;
        let shared = Arc::new(Shared::default());
        let pending = recovered.sealed.values().map(|f| f.bytes).sum();
        shared.bytes_pending.store(pending, Ordering::Relaxed);
        *shared.sealed() = recovered.sealed;
        let (sender, receiver) = mpsc::channel(config.queue);
        let writer = Writer {
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            segment_age: config.segment_age,
            next_number: recovered.next_number,
            open: None,
            failure: None,
            shared: shared.clone(),
            _lock: lock,
        };
        let thread = std::thread::Builder::new()
            .name("tripwire-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error("start the writer for", &config.dir))?;
        Ok(Wal {
            inner: Arc::new(Inner {
                sender: Some(sender),
                writer: Some(thread),
                shared,
                node_id,
            }),
        })
    }

    /// This WAL's node id: generated once, persisted in the directory.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Appends one request's records and resolves once they are written and
    /// fsynced, sharing the fsync with every append queued meanwhile. Answers
    /// `Full` at once when `queue` appends are already waiting. An append
    /// whose future is dropped after it was queued is still written.
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
        let (done, answer) = oneshot::channel();
        let command = Command::Append(Append {
            records,
            bytes,
            done,
        });
        self.sender()?.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => WalError::Full,
            TrySendError::Closed(_) => WalError::Closed,
        })?;
        Ok(answer)
    }

    fn sender(&self) -> Result<&mpsc::Sender<Command>, WalError> {
        self.inner.sender.as_ref().ok_or(WalError::Closed)
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
        self.inner
            .shared
            .sealed()
            .iter()
            .map(|(&number, file)| Segment {
                number,
                path: file.path.clone(),
                shared: self.inner.shared.clone(),
            })
            .collect()
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
            sealed_segments: shared.sealed().len() as u64,
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

/// The segment being written.
struct OpenSegment {
    number: u64,
    path: PathBuf,
    file: File,
    bytes: u64,
    synced: u64,
    first_record_at: Instant,
}

/// The writer thread's state: the only code that writes segments.
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    segment_age: Duration,
    next_number: u64,
    open: Option<OpenSegment>,
    /// Set by the first failed write or fsync: after that nothing is written
    /// (the kernel may have dropped the failed pages; a retried fsync could lie).
    failure: Option<String>,
    shared: Arc<Shared>,
    /// Held while the writer runs.
    _lock: File,
}

fn outcome(failure: &Option<String>) -> Result<(), WalError> {
    failure.clone().map_or(Ok(()), |r| Err(WalError::Failed(r)))
}

/// The first append and whatever else is already queued, up to
/// [`MAX_BATCH_BYTES`]; a queued non-append command ends the batch.
fn gather(first: Append, receiver: &mut mpsc::Receiver<Command>) -> (Vec<Append>, Option<Command>) {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while bytes < MAX_BATCH_BYTES {
        match receiver.try_recv() {
            Ok(Command::Append(append)) => {
                bytes += append.bytes;
                batch.push(append);
            }
            Ok(other) => return (batch, Some(other)),
            Err(_) => break,
        }
    }
    (batch, None)
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut closers = Vec::new();
        let mut next = receiver.blocking_recv();
        while let Some(command) = next {
            next = match command {
                Command::Append(first) => {
                    let (batch, other) = gather(first, &mut receiver);
                    self.commit(batch);
                    other.or_else(|| receiver.blocking_recv())
                }
                Command::Seal { force, done } => {
                    let _ = done.send(self.seal(force));
                    receiver.blocking_recv()
                }
                Command::Close(done) => {
                    // Refuse new commands but still drain the queued ones.
                    receiver.close();
                    closers.push(done);
                    receiver.blocking_recv()
                }
                #[cfg(test)]
                Command::Hold { held, release } => {
                    let _ = held.send(());
                    let _ = release.recv();
                    receiver.blocking_recv()
                }
            };
        }
        if !closers.is_empty() {
            let _ = self.seal(true);
        }
        let failure = self.failure.clone();
        drop(self);
        for done in closers {
            let _ = done.send(outcome(&failure));
        }
    }

    /// Writes a batch of appends, fsyncs, then answers every waiter.
    fn commit(&mut self, batch: Vec<Append>) {
        if self.failure.is_none()
            && let Err(error) = self.write_batch(&batch)
        {
            self.fail(error);
        }
        for append in batch {
            let _ = append.done.send(outcome(&self.failure));
        }
    }

    fn fail(&mut self, error: WalError) {
        tracing::error!(%error, "write-ahead log failed; refusing appends until a restart");
        self.failure = Some(error.to_string());
    }

    fn write_batch(&mut self, batch: &[Append]) -> Result<(), WalError> {
        let limit = self.segment_bytes;
        let mut full = Vec::new();
        let mut frames = Vec::new();
        for append in batch {
            frames.clear();
            for record in &append.records {
                encode(record, &mut frames);
            }
            let segment = self.open_segment()?;
            segment
                .file
                .write_all(&frames)
                .map_err(io_error("write", &segment.path))?;
            segment.bytes += frames.len() as u64;
            if segment.bytes >= limit {
                full.extend(self.take_synced()?);
            }
        }
        if let Some(segment) = &mut self.open {
            sync(segment, &self.shared)?;
        }
        for segment in full {
            self.register(segment);
        }
        self.count(batch);
        Ok(())
    }

    fn count(&self, batch: &[Append]) {
        let records = batch.iter().map(|a| a.records.len() as u64).sum();
        let bytes = batch.iter().map(|a| a.bytes as u64).sum();
        let shared = &self.shared;
        shared
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        shared.records.fetch_add(records, Ordering::Relaxed);
        shared.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        shared.bytes_pending.fetch_add(bytes, Ordering::Relaxed);
    }

    fn open_segment(&mut self) -> Result<&mut OpenSegment, WalError> {
        let segment = match self.open.take() {
            Some(segment) => segment,
            None => self.create_segment()?,
        };
        Ok(self.open.insert(segment))
    }

    /// Persists the new number as the highest ever used, then creates the file.
    fn create_segment(&mut self) -> Result<OpenSegment, WalError> {
        let number = self.next_number;
        write_counter(&self.dir, number)?;
        let path = segment_path(&self.dir, number);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        sync_dir(&self.dir)?;
        self.next_number += 1;
        Ok(OpenSegment {
            number,
            path,
            file,
            bytes: 0,
            synced: 0,
            first_record_at: Instant::now(),
        })
    }

    /// Takes the open segment off, fsynced, ready to be sealed.
    fn take_synced(&mut self) -> Result<Option<OpenSegment>, WalError> {
        if let Some(segment) = &mut self.open {
            sync(segment, &self.shared)?;
        }
        Ok(self.open.take())
    }

    fn register(&self, segment: OpenSegment) {
        let file = SealedFile {
            path: segment.path,
            bytes: segment.bytes,
        };
        self.shared.add_sealed(segment.number, file);
    }

    fn seal(&mut self, force: bool) -> Result<(), WalError> {
        outcome(&self.failure)?;
        let due = self
            .open
            .as_ref()
            .is_some_and(|s| seal_due(force, s.first_record_at.elapsed(), self.segment_age));
        if !due {
            return Ok(());
        }
        match self.take_synced() {
            Ok(segment) => segment.into_iter().for_each(|s| self.register(s)),
            Err(error) => self.fail(error),
        }
        outcome(&self.failure)
    }
}

/// `sync_data` if anything was written since the last one.
fn sync(segment: &mut OpenSegment, shared: &Shared) -> Result<(), WalError> {
    if segment.synced < segment.bytes {
        segment
            .file
            .sync_data()
            .map_err(io_error("sync", &segment.path))?;
        segment.synced = segment.bytes;
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use tempfile::TempDir;

    const HOUR: Duration = Duration::from_secs(3600);

    fn config(dir: &TempDir) -> WalConfig {
        WalConfig {
            dir: dir.path().join("wal"),
            segment_bytes: 1 << 20,
            segment_age: HOUR,
            queue: 16,
        }
    }

    fn records(texts: &[&str]) -> Vec<Vec<u8>> {
        texts.iter().map(|t| t.as_bytes().to_vec()).collect()
    }

    /// Every sealed segment's number and records, oldest first.
    fn sealed_contents(wal: &Wal) -> Vec<(u64, Vec<Vec<u8>>)> {
        let read = |s: Segment| (s.number, s.read().expect("read segment"));
        wal.sealed().into_iter().map(read).collect()
    }

    fn only_segment_path(wal: &Wal) -> PathBuf {
        let sealed = wal.sealed();
        assert_eq!(sealed.len(), 1, "{sealed:?}");
        sealed[0].path.clone()
    }

    impl Wal {
        /// Test only: parks the writer until the returned sender is dropped.
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
    }

    #[tokio::test]
    async fn appended_records_read_back_in_order() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        wal.append(records(&["a", "bb"])).await.unwrap();
        wal.append(records(&["ccc"])).await.unwrap();
        assert!(
            wal.sealed().is_empty(),
            "the open segment is not sealed yet"
        );
        wal.seal(true).await.unwrap();
        assert_eq!(
            sealed_contents(&wal),
            vec![(1, records(&["a", "bb", "ccc"]))]
        );
        let stats = wal.stats();
        assert_eq!((stats.appends, stats.records), (2, 3));
        assert_eq!(stats.bytes_written, 3 * 8 + 6);
        assert_eq!(stats.bytes_pending, stats.bytes_written);
        let path = only_segment_path(&wal);
        assert_eq!(fs::metadata(path).unwrap().len(), stats.bytes_written);
    }

    #[tokio::test]
    async fn a_crash_leaves_the_open_segment_sealed_on_reopen() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        let node = wal.node_id().to_string();
        wal.append(records(&["kept", "too"])).await.unwrap();
        drop(wal); // no close, no seal
        let wal = Wal::open(config(&dir)).unwrap();
        assert_eq!(wal.node_id(), node);
        assert_eq!(sealed_contents(&wal), vec![(1, records(&["kept", "too"]))]);
        assert_eq!(wal.stats().bytes_pending, 2 * 8 + 7);
        wal.append(records(&["next"])).await.unwrap();
        wal.seal(true).await.unwrap();
        let numbers: Vec<u64> = wal.sealed().iter().map(|s| s.number).collect();
        assert_eq!(numbers, [1, 2]);
    }

    #[tokio::test]
    async fn a_torn_last_record_is_cut_off() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        for text in ["one", "two", "three"] {
            wal.append(records(&[text])).await.unwrap();
        }
        drop(wal);
        let path = segment_path(&config(&dir).dir, 1);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len((3 * 8 + 11 - 2) as u64).unwrap();
        drop(file);
        let wal = Wal::open(config(&dir)).unwrap();
        assert_eq!(sealed_contents(&wal), vec![(1, records(&["one", "two"]))]);
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * 8 + 6);
    }

    #[tokio::test]
    async fn garbage_after_the_last_record_is_cut_off() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        wal.append(records(&["one", "two"])).await.unwrap();
        drop(wal);
        let path = segment_path(&config(&dir).dir, 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        drop(file);
        let wal = Wal::open(config(&dir)).unwrap();
        assert_eq!(sealed_contents(&wal), vec![(1, records(&["one", "two"]))]);
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * 8 + 6);
    }

    #[test]
    fn decoding_stops_at_a_bad_checksum_or_zeros() {
        let mut bytes = Vec::new();
        for record in ["first", "second", "third"] {
            encode(record.as_bytes(), &mut bytes);
        }
        let (all, end) = decode(&bytes);
        assert_eq!(all, ["first", "second", "third"].map(str::as_bytes));
        assert_eq!(end, bytes.len());
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(decode(&zeros).1, bytes.len());
        let second_payload = 8 + 5 + 8;
        bytes[second_payload] ^= 1;
        assert_eq!(decode(&bytes), (vec![&b"first"[..]], 8 + 5));
    }

    #[tokio::test]
    async fn segments_rotate_by_size_in_order() {
        let dir = TempDir::new().unwrap();
        let config = WalConfig {
            segment_bytes: 2 * (8 + 4),
            ..config(&dir)
        };
        let wal = Wal::open(config).unwrap();
        let texts: Vec<String> = (0..6).map(|i| format!("rec{i}")).collect();
        for text in &texts {
            wal.append(records(&[text.as_str()])).await.unwrap();
        }
        let contents = sealed_contents(&wal);
        let numbers: Vec<u64> = contents.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3]);
        let all: Vec<Vec<u8>> = contents.into_iter().flat_map(|(_, r)| r).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(all, records(&texts));
    }

    #[tokio::test]
    async fn seal_waits_for_age_unless_forced() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        wal.seal(true).await.unwrap();
        assert!(wal.sealed().is_empty(), "nothing to seal");
        wal.append(records(&["young"])).await.unwrap();
        wal.seal(false).await.unwrap();
        assert!(wal.sealed().is_empty(), "younger than segment_age");
        wal.seal(true).await.unwrap();
        assert_eq!(sealed_contents(&wal), vec![(1, records(&["young"]))]);
        drop(wal);

        let config = WalConfig {
            segment_age: Duration::ZERO,
            ..config(&dir)
        };
        let wal = Wal::open(config).unwrap();
        wal.append(records(&["old enough"])).await.unwrap();
        wal.seal(false).await.unwrap();
        assert_eq!(wal.sealed().len(), 2);
    }

    #[test]
    fn sealing_is_due_by_age_or_force() {
        let second = Duration::from_secs(1);
        assert!(!seal_due(false, second, HOUR));
        assert!(seal_due(false, HOUR, HOUR));
        assert!(seal_due(true, Duration::ZERO, HOUR));
    }

    #[tokio::test]
    async fn numbers_continue_after_every_segment_was_removed() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        for text in ["a", "b"] {
            wal.append(records(&[text])).await.unwrap();
            wal.seal(true).await.unwrap();
        }
        for segment in wal.sealed() {
            segment.remove().unwrap();
        }
        assert_eq!(wal.stats().bytes_pending, 0);
        wal.close().await.unwrap();
        drop(wal);
        let wal = Wal::open(config(&dir)).unwrap();
        assert!(wal.sealed().is_empty());
        wal.append(records(&["c"])).await.unwrap();
        wal.seal(true).await.unwrap();
        assert_eq!(sealed_contents(&wal), vec![(3, records(&["c"]))]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(WalConfig {
            queue: 2,
            ..config(&dir)
        })
        .unwrap();
        let release = wal.hold().await;
        let first = wal.enqueue(records(&["1"])).unwrap();
        let second = wal.enqueue(records(&["2"])).unwrap();
        assert_eq!(wal.stats().queued, 2);
        let refused = wal.append(records(&["3"])).await;
        assert!(matches!(refused, Err(WalError::Full)), "{refused:?}");
        drop(release);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        wal.append(records(&["4"])).await.unwrap();
        assert_eq!(wal.stats().appends, 3);
    }

    #[tokio::test]
    async fn queued_appends_share_one_fsync() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        let release = wal.hold().await;
        let texts: Vec<String> = (0..10).map(|i| format!("request {i}")).collect();
        let answers: Vec<_> = texts
            .iter()
            .map(|t| wal.enqueue(records(&[t.as_str()])).unwrap())
            .collect();
        drop(release);
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let stats = wal.stats();
        assert_eq!((stats.appends, stats.fsyncs), (10, 1));
        wal.seal(true).await.unwrap();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(sealed_contents(&wal), vec![(1, records(&texts))]);
    }

    #[tokio::test]
    async fn close_writes_what_was_queued_then_refuses() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        let release = wal.hold().await;
        let answers: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|t| wal.enqueue(records(&[t])).unwrap())
            .collect();
        drop(release);
        wal.close().await.unwrap();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(sealed_contents(&wal), vec![(1, records(&["x", "y"]))]);
        let refused = wal.append(records(&["late"])).await;
        assert!(matches!(refused, Err(WalError::Closed)), "{refused:?}");
        wal.close().await.unwrap();
        let reopened = Wal::open(config(&dir)).unwrap();
        assert_eq!(sealed_contents(&reopened), vec![(1, records(&["x", "y"]))]);
    }

    #[tokio::test]
    async fn a_second_open_of_the_directory_is_refused() {
        let dir = TempDir::new().unwrap();
        let _wal = Wal::open(config(&dir)).unwrap();
        let second = Wal::open(config(&dir));
        assert!(
            matches!(second, Err(WalError::Locked(_))),
            "{:?}",
            second.err()
        );
    }

    #[tokio::test]
    async fn empty_and_oversized_records_are_refused() {
        let dir = TempDir::new().unwrap();
        let wal = Wal::open(config(&dir)).unwrap();
        let empty = wal.append(vec![Vec::new()]).await;
        assert!(matches!(empty, Err(WalError::Record(0))), "{empty:?}");
        let big = vec![vec![0; MAX_RECORD_BYTES + 1]];
        assert!(matches!(check_records(&big), Err(WalError::Record(_))));
        wal.append(Vec::new()).await.unwrap();
        assert_eq!(wal.stats().appends, 0);
    }
}
