//! The writer thread: the only code that writes segments. It takes one append,
//! drains whatever else is queued, writes them all and fsyncs once (group
//! commit), and only then answers every waiter.
//!
//! After a failed write or fsync it answers the batch with the error, seals
//! the segment at its durable length and writes the next batch to a fresh
//! segment (see `latch`); a seal tick while the log is failing tries to open
//! a fresh segment, so the log recovers by itself once the fault clears.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::WalConfig;
use super::error::{WalError, io_error};
use super::files::{Lock, Open, WalFile};
use super::format::{encode, segment_path};
use super::recovery::{sync_dir, write_counter};
use super::segment::{SealedFile, Shared};

/// One group commit stops draining the queue once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 16 << 20;

/// One request's records and the waiter to answer once they are fsynced.
pub(super) struct Append {
    pub(super) records: Vec<Vec<u8>>,
    pub(super) bytes: usize,
    pub(super) done: oneshot::Sender<Result<(), WalError>>,
    /// Its share of the queue's byte bound, given back when it is dropped.
    pub(super) _queued: Queued,
}

/// Bytes counted in [`Shared::queued_bytes`] until dropped.
pub(super) struct Queued {
    pub(super) shared: Arc<Shared>,
    pub(super) bytes: usize,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.shared
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What the handles ask of the writer, in queue order.
pub(super) enum Command {
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

/// Starts the writer on a dedicated OS thread; it runs until every sender is
/// gone, then releases `lock`.
pub(super) fn spawn(
    config: &WalConfig,
    next_number: u64,
    shared: Arc<Shared>,
    lock: Lock,
    receiver: mpsc::Receiver<Command>,
) -> io::Result<JoinHandle<()>> {
    let writer = Writer {
        dir: config.dir.clone(),
        segment_bytes: config.segment_bytes,
        segment_age: config.segment_age,
        next_number,
        open: None,
        shared,
        _lock: lock,
    };
    std::thread::Builder::new()
        .name("tripwire-wal".into())
        .spawn(move || writer.run(receiver))
}

/// The segment being written.
struct OpenSegment {
    number: u64,
    path: PathBuf,
    file: Box<dyn WalFile>,
    bytes: u64,
    synced: u64,
    /// When its first record was written; `None` while it is empty.
    first_record_at: Option<Instant>,
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    segment_age: Duration,
    next_number: u64,
    open: Option<OpenSegment>,
    shared: Arc<Shared>,
    /// Held while the writer runs.
    _lock: Lock,
}

/// Is the open segment due for sealing? Never while it is empty.
fn seal_due(force: bool, age: Option<Duration>, segment_age: Duration) -> bool {
    age.is_some_and(|age| force || age >= segment_age)
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
        let answer = self.answer();
        drop(self);
        for done in closers {
            let _ = done.send(answer.clone().map_err(WalError::Failed));
        }
    }

    /// `Ok` unless the log is failing, with the reason.
    fn answer(&self) -> Result<(), String> {
        self.shared.latch.failure().map_or(Ok(()), Err)
    }

    /// Writes a batch of appends, fsyncs, then answers every waiter.
    fn commit(&mut self, batch: Vec<Append>) {
        let answer = match self.write_batch(&batch) {
            Ok(()) => {
                self.shared.latch.clear();
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        };
        for append in batch {
            // Its bytes are counted as pending now (or given up): out of the
            // queue's count before the sender hears, so a next append from
            // it never finds them counted twice.
            let Append { done, _queued, .. } = append;
            drop(_queued);
            let _ = done.send(answer.clone().map_err(WalError::Failed));
        }
    }

    /// A write, fsync or creation failed: the open segment is never written
    /// again, the log reports the failure until a fresh segment works.
    fn fail(&mut self, error: WalError) -> String {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        self.abandon_open();
        self.shared.latch.trip(&error);
        error.to_string()
    }

    fn write_batch(&mut self, batch: &[Append]) -> Result<(), WalError> {
        let limit = self.segment_bytes;
        let mut frames = Vec::new();
        for append in batch {
            frames.clear();
            for record in &append.records {
                encode(record, &mut frames);
            }
            let shared = self.shared.clone();
            let segment = self.open_segment()?;
            let written = segment.file.write_all(&frames);
            // A failed write may have written a prefix: count it all as
            // written, so sealing at the durable length gives it back.
            segment.bytes += frames.len() as u64;
            segment.first_record_at.get_or_insert_with(Instant::now);
            shared
                .bytes_pending
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            written.map_err(io_error("write", &segment.path))?;
            if segment.bytes >= limit {
                self.seal_open()?;
            }
        }
        if let Some(segment) = &mut self.open {
            sync(segment, &self.shared)?;
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
    }

    fn open_segment(&mut self) -> Result<&mut OpenSegment, WalError> {
        let segment = match self.open.take() {
            Some(segment) => segment,
            None => self.create_segment()?,
        };
        Ok(self.open.insert(segment))
    }

    /// Persists the new number as the highest ever used, then creates the
    /// file and makes its name durable. A number is spent once the counter
    /// holds it, whatever happens next, so it is never handed out twice.
    fn create_segment(&mut self) -> Result<OpenSegment, WalError> {
        let number = self.next_number;
        let files = &*self.shared.files;
        write_counter(files, &self.dir, number)?;
        self.next_number += 1;
        let path = segment_path(&self.dir, number);
        let file = files
            .open(&path, Open::CreateNew)
            .map_err(io_error("create", &path))?;
        if let Err(error) = sync_dir(files, &self.dir) {
            // Its name may not survive a power cut: never write to it. The
            // flusher removes the empty file.
            self.register(number, path, 0);
            return Err(error);
        }
        Ok(OpenSegment {
            number,
            path,
            file,
            bytes: 0,
            synced: 0,
            first_record_at: None,
        })
    }

    /// Fsyncs the open segment and seals it.
    fn seal_open(&mut self) -> Result<(), WalError> {
        if let Some(segment) = &mut self.open {
            sync(segment, &self.shared)?;
        }
        if let Some(segment) = self.open.take() {
            self.register(segment.number, segment.path, segment.bytes);
        }
        Ok(())
    }

    /// Seals the open segment at the length known durable, after a failed
    /// write or fsync on it; what was written past it is given up.
    fn abandon_open(&mut self) {
        if let Some(segment) = self.open.take() {
            let unsynced = segment.bytes - segment.synced;
            self.shared
                .bytes_pending
                .fetch_sub(unsynced, Ordering::Relaxed);
            self.register(segment.number, segment.path, segment.synced);
        }
    }

    fn register(&self, number: u64, path: PathBuf, bytes: u64) {
        self.shared.add_sealed(number, SealedFile { path, bytes });
    }

    /// Seals the open segment when due. While the log is failing, first
    /// tries a fresh segment: once one can be created, the log works again.
    fn seal(&mut self, force: bool) -> Result<(), WalError> {
        if self.shared.latch.is_tripped() && self.open.is_none() {
            match self.create_segment() {
                Ok(segment) => {
                    self.open = Some(segment);
                    self.shared.latch.clear();
                }
                Err(error) => return Err(WalError::Failed(self.fail(error))),
            }
        }
        let due = self.open.as_ref().is_some_and(|s| {
            let age = s.first_record_at.map(|at| at.elapsed());
            seal_due(force, age, self.segment_age)
        });
        if due && let Err(error) = self.seal_open() {
            return Err(WalError::Failed(self.fail(error)));
        }
        Ok(())
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

    #[test]
    fn sealing_is_due_by_age_or_force_and_never_when_empty() {
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        assert!(!seal_due(false, Some(second), hour));
        assert!(seal_due(false, Some(hour), hour));
        assert!(seal_due(true, Some(Duration::ZERO), hour));
        assert!(!seal_due(true, None, hour));
    }
}
