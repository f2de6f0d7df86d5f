//! The write-ahead log's one door to the file system: every create, write,
//! fsync, rename, remove, read, listing and lock goes through [`Files`], so a
//! test can stand a power-cutting, error-injecting file system behind it.
//!
//! The durability model the log relies on, and a fault-injecting
//! implementation must honour: written bytes are durable only once the file
//! is synced; a create, rename or remove only once its directory is synced.

use std::any::Any;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

/// How [`Files::open`] opens a file. Every write appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// A file that must not exist yet.
    CreateNew,
    /// Created, or emptied if it exists.
    Truncate,
    /// A file that exists, kept as it is.
    Existing,
}

/// Held while the log is open; dropping it frees the directory.
pub(super) type Lock = Box<dyn Any + Send>;

/// A file open for writing.
pub(super) trait WalFile: Send {
    /// Appends all of `bytes`; on an error, any prefix may have been written.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts (or zero-extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the bytes durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the bytes and the metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
}

/// The file-system operations of the log, by path.
pub(super) trait Files: Send + Sync {
    /// Creates `dir` and its missing parents; `false` if it already existed.
    fn create_dir(&self, dir: &Path) -> io::Result<bool>;
    /// Takes the lock file at `path` (creating it); `None` if another
    /// process holds it.
    fn lock(&self, path: &Path) -> io::Result<Option<Lock>>;
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn WalFile>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of the entries in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Replaces `to` with `from`, atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the creates, renames and removes in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StdFiles;

impl WalFile for File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

impl Files for StdFiles {
    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        if dir.is_dir() {
            return Ok(false);
        }
        fs::create_dir_all(dir)?;
        Ok(true)
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn WalFile>> {
        let mut options = OpenOptions::new();
        match how {
            Open::CreateNew => options.append(true).create_new(true),
            // Writing from the start of an emptied file is appending too
            // (`append` and `truncate` together are refused).
            Open::Truncate => options.write(true).create(true).truncate(true),
            Open::Existing => options.append(true),
        };
        Ok(Box::new(options.open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
