//! Sealed segments: the set the writer fills and the flusher drains, with the
//! counters both sides keep for `/metrics`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::error::{WalError, io_error};
use super::files::Files;
use super::format::decode;
use super::latch::Latch;

/// What the writer thread and the handles share: the file system, sealed
/// segments, whether the log can write, and counters.
pub(super) struct Shared {
    pub(super) files: Arc<dyn Files>,
    sealed: Mutex<BTreeMap<u64, SealedFile>>,
    pub(super) latch: Latch,
    /// Bytes of records queued for the writer and not yet answered.
    pub(super) queued_bytes: AtomicUsize,
    /// An append was refused for the log's `max_bytes` since the flusher
    /// last removed a segment.
    pub(super) backlogged: AtomicBool,
    /// Failed writes, fsyncs and segment creations.
    pub(super) errors: AtomicU64,
    pub(super) appends: AtomicU64,
    pub(super) records: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) bytes_pending: AtomicU64,
}

/// A sealed segment's file and its size: the bytes it is read up to (a
/// segment sealed after a failed write or fsync may hold more, never
/// acknowledged).
#[derive(Debug, Clone)]
pub(super) struct SealedFile {
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
}

impl Shared {
    /// Starts with what recovery found.
    pub(super) fn new(files: Arc<dyn Files>, sealed: BTreeMap<u64, SealedFile>) -> Shared {
        let pending = sealed.values().map(|f| f.bytes).sum();
        Shared {
            files,
            sealed: Mutex::new(sealed),
            latch: Latch::default(),
            queued_bytes: AtomicUsize::new(0),
            backlogged: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_pending: AtomicU64::new(pending),
        }
    }

    fn sealed(&self) -> MutexGuard<'_, BTreeMap<u64, SealedFile>> {
        self.sealed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn add_sealed(&self, number: u64, file: SealedFile) {
        self.sealed().insert(number, file);
    }

    pub(super) fn sealed_count(&self) -> usize {
        self.sealed().len()
    }

    /// Handles on every sealed segment, oldest first.
    pub(super) fn segments(self: &Arc<Self>) -> Vec<Segment> {
        self.sealed()
            .iter()
            .map(|(&number, file)| Segment {
                number,
                path: file.path.clone(),
                bytes: file.bytes,
                shared: self.clone(),
            })
            .collect()
    }

    fn forget(&self, number: u64) {
        if let Some(file) = self.sealed().remove(&number) {
            self.bytes_pending.fetch_sub(file.bytes, Ordering::Relaxed);
            self.backlogged.store(false, Ordering::Relaxed);
        }
    }
}

/// A sealed segment: complete, fsynced, never written again.
pub struct Segment {
    pub number: u64,
    pub path: PathBuf,
    /// Read up to here.
    bytes: u64,
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
    /// The bytes it is read up to.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every whole record up to the sealed length, in order (a torn or
    /// corrupt tail ends the segment). Blocking file I/O: call it from
    /// `spawn_blocking` on a busy runtime.
    pub fn read(&self) -> Result<Vec<Vec<u8>>, WalError> {
        let bytes = self
            .shared
            .files
            .read(&self.path)
            .map_err(io_error("read", &self.path))?;
        let end = bytes
            .len()
            .min(usize::try_from(self.bytes).unwrap_or(usize::MAX));
        Ok(decode(&bytes[..end])
            .0
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Deletes the segment (after the flusher committed it). Removing one
    /// that is already gone succeeds.
    pub fn remove(self) -> Result<(), WalError> {
        match self.shared.files.remove(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove", &self.path)(e));
            }
            _ => {}
        }
        self.shared.forget(self.number);
        Ok(())
    }
}
