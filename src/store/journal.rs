//! A create-only map of small named records kept in one append-only file
//! on a local disk, shared by every process and thread that opens the same
//! folder (delivery claims: thousands per batch, on a disk where one file
//! each costs an inode apiece; docs/architecture.md "Claims").
//!
//! The folder holds `log`, one record per line
//! (`<written, µs since the epoch> <name> <value>`; a later line of a name
//! replaces an earlier one), and `lock`, which every change and read holds
//! exclusively (`flock`) while it catches up with what the others appended
//! and appends its own: a batch of creates costs one lock and one write.
//! - A create appends a name only when no record has it, so of two
//!   creators one wins, as with an object created `If-None-Match`.
//! - A writer killed mid-append leaves a line without its newline; the next
//!   holder of the lock cuts it off (its writer is gone) before appending.
//! - [`Journal::remove`] rewrites the log without the removed names into a
//!   new file and renames it over `log`; the others see another file under
//!   the name at their next catch-up and read it afresh.
//!
//! Appends are not synced: a record lost with the machine was held by a
//! process that died with it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// One folder's journal, as this process holds it.
pub struct Journal {
    folder: PathBuf,
    /// Threads of one process take turns here; processes on the lock file.
    held: Mutex<Held>,
}

/// What this process has read of the log.
#[derive(Default)]
struct Held {
    /// The lock file, opened once.
    lock: Option<File>,
    /// The log as last opened, with its identity (device, inode).
    log: Option<(File, (u64, u64))>,
    /// Bytes of the log read (always the end of a whole line).
    read_to: u64,
    /// Each name's latest record.
    records: HashMap<Box<str>, Record>,
}

/// A name's latest record.
#[derive(Debug, Clone)]
struct Record {
    written: DateTime<Utc>,
    value: Box<[u8]>,
}

impl Journal {
    /// The journal in `folder` (made at the first change).
    pub fn open(folder: PathBuf) -> Journal {
        Journal {
            folder,
            held: Mutex::new(Held::default()),
        }
    }

    /// Creates each of `names` holding `value` unless a record has it: for
    /// each, in order, whether it was created here.
    pub fn create_all(&self, names: &[String], value: &[u8]) -> io::Result<Vec<bool>> {
        check_value(value)?;
        names.iter().try_for_each(|name| check_name(name))?;
        self.locked(|held| {
            let written = Utc::now();
            let mut line = Vec::new();
            let mut fresh = std::collections::HashSet::new();
            let created: Vec<bool> = names
                .iter()
                .map(|name| {
                    let free =
                        !held.records.contains_key(name.as_str()) && fresh.insert(name.as_str());
                    if free {
                        append_line(&mut line, written, name, value);
                    }
                    free
                })
                .collect();
            held.append(&line)?;
            for name in fresh {
                held.keep(name, written, value);
            }
            Ok(created)
        })
    }

    /// Writes `value` as `name`'s record, replacing any.
    pub fn write(&self, name: &str, value: &[u8]) -> io::Result<()> {
        check_name(name)?;
        check_value(value)?;
        self.locked(|held| {
            let written = Utc::now();
            let mut line = Vec::new();
            append_line(&mut line, written, name, value);
            held.append(&line)?;
            held.keep(name, written, value);
            Ok(())
        })
    }

    /// `name`'s value, if it has a record.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.locked(|held| Ok(held.records.get(name).map(|r| r.value.to_vec())))
    }

    /// What `pick` makes of each record (name, when last written),
    /// skipping those it returns `None` for; in no particular order.
    pub fn list<T>(&self, pick: impl Fn(&str, DateTime<Utc>) -> Option<T>) -> io::Result<Vec<T>> {
        self.locked(|held| {
            Ok(held
                .records
                .iter()
                .filter_map(|(name, record)| pick(name, record.written))
                .collect())
        })
    }

    /// Removes the records of `names` (rewriting the log without them):
    /// for each, in order, whether it had one.
    pub fn remove(&self, names: &[String]) -> io::Result<Vec<bool>> {
        self.locked(|held| {
            let removed: Vec<bool> = names
                .iter()
                .map(|name| held.records.remove(name.as_str()).is_some())
                .collect();
            if removed.contains(&true) {
                self.rewrite(held)?;
            }
            Ok(removed)
        })
    }

    /// The folder the journal is in.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn log_path(&self) -> PathBuf {
        self.folder.join("log")
    }

    /// Runs `change` holding the lock, with the log caught up and open.
    fn locked<T>(&self, change: impl FnOnce(&mut Held) -> io::Result<T>) -> io::Result<T> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let lock = match held.lock.take() {
            Some(lock) => lock,
            None => {
                std::fs::create_dir_all(&self.folder)?;
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.folder.join("lock"))?
            }
        };
        if let Err(e) = lock.lock() {
            held.lock = Some(lock);
            return Err(e);
        }
        let done = self.catch_up(&mut held).and_then(|()| change(&mut held));
        let unlocked = lock.unlock();
        held.lock = Some(lock);
        unlocked?;
        done
    }

    /// Reads what was appended since the last read; reads the log afresh
    /// when another file took its name. Cuts off a torn last line.
    fn catch_up(&self, held: &mut Held) -> io::Result<()> {
        let path = self.log_path();
        let identity = match std::fs::metadata(&path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let current = held.log.as_ref().map(|(_, id)| *id);
        if identity.is_none() || current != identity {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)?;
            let meta = log.metadata()?;
            held.log = Some((log, (meta.dev(), meta.ino())));
            held.read_to = 0;
            held.records.clear();
        }
        let mut tail = Vec::new();
        let mut log = &held.log.as_ref().expect("opened above").0;
        log.seek(SeekFrom::Start(held.read_to))?;
        log.read_to_end(&mut tail)?;
        let whole = tail
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        for line in tail[..whole].split(|b| *b == b'\n') {
            held.read_line(line);
        }
        held.read_to += whole as u64;
        if whole < tail.len() {
            let log = &held.log.as_ref().expect("opened above").0;
            log.set_len(held.read_to)?;
        }
        Ok(())
    }

    /// Writes every kept record into a new log and renames it over the old.
    fn rewrite(&self, held: &mut Held) -> io::Result<()> {
        let fresh_path = self.folder.join("log.new");
        let mut bytes = Vec::new();
        for (name, record) in &held.records {
            append_line(&mut bytes, record.written, name, &record.value);
        }
        let mut fresh = File::create(&fresh_path)?;
        fresh.write_all(&bytes)?;
        fresh.sync_all()?;
        std::fs::rename(&fresh_path, self.log_path())?;
        held.log = None;
        self.catch_up(held)
    }
}

impl Held {
    /// Appends `lines` (whole lines) at the end of the log, which this
    /// holder of the lock has read to.
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut log = &self.log.as_ref().expect("caught up before appending").0;
        log.write_all(lines)?;
        self.read_to += lines.len() as u64;
        Ok(())
    }

    fn keep(&mut self, name: &str, written: DateTime<Utc>, value: &[u8]) {
        let record = Record {
            written,
            value: value.into(),
        };
        self.records.insert(name.into(), record);
    }

    /// Applies one line of the log; one that does not read is skipped.
    fn read_line(&mut self, line: &[u8]) {
        let mut parts = line.splitn(3, |b| *b == b' ');
        let (Some(micros), Some(name), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let written = std::str::from_utf8(micros)
            .ok()
            .and_then(|m| m.parse().ok())
            .and_then(DateTime::<Utc>::from_timestamp_micros);
        let (Some(written), Ok(name)) = (written, std::str::from_utf8(name)) else {
            return;
        };
        self.keep(name, written, value);
    }
}

fn append_line(line: &mut Vec<u8>, written: DateTime<Utc>, name: &str, value: &[u8]) {
    line.extend_from_slice(written.timestamp_micros().to_string().as_bytes());
    line.push(b' ');
    line.extend_from_slice(name.as_bytes());
    line.push(b' ');
    line.extend_from_slice(value);
    line.push(b'\n');
}

fn check_name(name: &str) -> io::Result<()> {
    match name.is_empty() || name.contains([' ', '\n', '\r']) {
        true => Err(invalid(format!(
            "a journal record's name has no blanks: {name:?}"
        ))),
        false => Ok(()),
    }
}

fn check_value(value: &[u8]) -> io::Result<()> {
    match value.contains(&b'\n') {
        true => Err(invalid("a journal record's value is one line".into())),
        false => Ok(()),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The names recorded in the journal at `folder` with their values, read
/// straight from its log (for tests and inspection; no lock is taken).
pub fn read_log(folder: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
    let mut held = Held::default();
    let bytes = match std::fs::read(folder.join("log")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    for line in bytes.split(|b| *b == b'\n') {
        held.read_line(line);
    }
    Ok(held
        .records
        .into_iter()
        .map(|(name, record)| (name.into(), record.value.into()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_name_is_created_once_across_journals_of_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            Journal::open(dir.path().join("j")),
            Journal::open(dir.path().join("j")),
        );
        assert_eq!(
            a.create_all(&names(&["x", "y", "x"]), b"1").unwrap(),
            [true, true, false],
            "a name twice in one batch is created once"
        );
        assert_eq!(
            b.create_all(&names(&["y", "z"]), b"2").unwrap(),
            [false, true]
        );
        assert_eq!(a.read("z").unwrap(), Some(b"2".to_vec()), "a sees b's");
        b.write("x", b"3").unwrap();
        assert_eq!(a.read("x").unwrap(), Some(b"3".to_vec()));
        assert_eq!(a.read("w").unwrap(), None);
        let log = read_log(&dir.path().join("j")).unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(log["x"], b"3");
    }

    #[test]
    fn of_threads_racing_for_names_one_creates_each() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = names(&["a", "b", "c", "d"]);
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let journal = Journal::open(dir.path().to_path_buf());
                let wanted = wanted.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|round| {
                            let batch: Vec<String> =
                                wanted.iter().map(|n| format!("{n}{round}")).collect();
                            journal.create_all(&batch, format!("{i}").as_bytes())
                        })
                        .collect::<io::Result<Vec<Vec<bool>>>>()
                        .unwrap()
                })
            })
            .collect();
        let won: Vec<Vec<Vec<bool>>> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        for round in 0..50 {
            for name in 0..wanted.len() {
                let winners = won.iter().filter(|w| w[round][name]).count();
                assert_eq!(winners, 1, "round {round}, name {name}");
            }
        }
        assert_eq!(read_log(dir.path()).unwrap().len(), 200);
    }

    #[test]
    fn threads_of_one_journal_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path().to_path_buf()));
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let journal = journal.clone();
                std::thread::spawn(move || journal.create_all(&names(&["only"]), b"v").unwrap())
            })
            .collect();
        let won = racers
            .into_iter()
            .map(|r| r.join().unwrap()[0])
            .filter(|created| *created)
            .count();
        assert_eq!(won, 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        journal.create_all(&names(&["kept"]), b"{}").unwrap();
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        log.write_all(b"1764000000000000 torn {\"node\":").unwrap();
        let other = Journal::open(dir.path().to_path_buf());
        assert_eq!(other.read("torn").unwrap(), None);
        assert_eq!(other.read("kept").unwrap(), Some(b"{}".to_vec()));
        assert_eq!(
            other.create_all(&names(&["torn"]), b"{}").unwrap(),
            [true],
            "a torn create created nothing"
        );
        assert_eq!(journal.read("torn").unwrap(), Some(b"{}".to_vec()));
        let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn removed_names_are_gone_for_every_journal_and_may_be_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            Journal::open(dir.path().to_path_buf()),
            Journal::open(dir.path().to_path_buf()),
        );
        a.create_all(&names(&["old", "kept"]), b"1").unwrap();
        assert_eq!(b.read("old").unwrap(), Some(b"1".to_vec()));
        assert_eq!(a.remove(&names(&["old", "never"])).unwrap(), [true, false]);
        assert_eq!(b.read("old").unwrap(), None, "b reads the rewritten log");
        assert_eq!(b.read("kept").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.create_all(&names(&["old"]), b"2").unwrap(), [true]);
        assert_eq!(a.create_all(&names(&["old"]), b"3").unwrap(), [false]);
        let listed = a.list(|name, _| Some(name.to_string())).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!dir.path().join("log.new").exists());
    }

    #[test]
    fn names_with_blanks_and_values_over_one_line_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        assert!(journal.create_all(&names(&["a b"]), b"1").is_err());
        assert!(journal.write("", b"1").is_err());
        assert!(journal.write("a", b"1\n2").is_err());
        assert_eq!(read_log(dir.path()).unwrap().len(), 0);
    }
}
