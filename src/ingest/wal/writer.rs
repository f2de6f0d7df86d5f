//! The writer thread: the only code that writes segments. It takes one append,
//! drains whatever else is queued, writes them all and fsyncs once (group
//! commit), and only then answers every waiter.

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
use super::latch::Latch;
use super::recovery::{sync_dir, write_counter};
use super::segment::{SealedFile, Shared};

/// One group commit stops draining the queue once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 16 << 20;

/// One request's records and the waiter to answer once they are fsynced.
pub(super) struct Append {
    pub(super) records: Vec<Vec<u8>>,
    pub(super) bytes: usize,
    pub(super) done: oneshot::Sender<Result<(), WalError>>,
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
        latch: Latch::default(),
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
    first_record_at: Instant,
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    segment_age: Duration,
    next_number: u64,
    open: Option<OpenSegment>,
    latch: Latch,
    shared: Arc<Shared>,
    /// Held while the writer runs.
    _lock: Lock,
}

/// Is the open segment due for sealing?
fn seal_due(force: bool, age: Duration, segment_age: Duration) -> bool {
    force || age >= segment_age
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
        let latch = std::mem::take(&mut self.latch);
        drop(self);
        for done in closers {
            let _ = done.send(latch.check());
        }
    }

    /// Writes a batch of appends, fsyncs, then answers every waiter.
    fn commit(&mut self, batch: Vec<Append>) {
        if !self.latch.is_tripped()
            && let Err(error) = self.write_batch(&batch)
        {
            self.latch.trip(error);
        }
        for append in batch {
            let _ = append.done.send(self.latch.check());
        }
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
        let files = &*self.shared.files;
        write_counter(files, &self.dir, number)?;
        let path = segment_path(&self.dir, number);
        let file = files
            .open(&path, Open::CreateNew)
            .map_err(io_error("create", &path))?;
        sync_dir(files, &self.dir)?;
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
        self.latch.check()?;
        let due = self
            .open
            .as_ref()
            .is_some_and(|s| seal_due(force, s.first_record_at.elapsed(), self.segment_age));
        if !due {
            return Ok(());
        }
        match self.take_synced() {
            Ok(segment) => segment.into_iter().for_each(|s| self.register(s)),
            Err(error) => self.latch.trip(error),
        }
        self.latch.check()
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
    fn sealing_is_due_by_age_or_force() {
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        assert!(!seal_due(false, second, hour));
        assert!(seal_due(false, hour, hour));
        assert!(seal_due(true, Duration::ZERO, hour));
    }
}
