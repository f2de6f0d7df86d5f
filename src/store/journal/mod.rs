//! A create-only map of small named records kept in append-only files on
//! a local disk, shared by every process and thread that opens the same
//! folder (delivery claims: thousands per batch, on a disk where one file
//! each costs an inode apiece; docs/architecture.md "Claims").
//!
//! The folder holds the log as numbered segments (`log-0000000001`, …;
//! `log` is the single file of earlier versions, read first), and `lock`,
//! which every change and read holds exclusively (`flock`) while it catches
//! up with what the others appended and appends its own: a batch of
//! creates costs one lock and one write.
//! - A line is `<written, µs since the epoch> <name>,<name>,… <value>`:
//!   the names of one batch share its value. A later record of a name
//!   replaces an earlier one (segments in number order, lines in order).
//! - Appends go to the newest segment, or a new one once the newest is
//!   [`SEGMENT_SPAN`] old, so each segment holds a span of time.
//! - A create appends a name only when no record has it, so of two
//!   creators one wins, as with an object created `If-None-Match`.
//! - A writer killed mid-append leaves a line without its newline; the next
//!   holder of the lock cuts it off (its writer is gone) before appending.
//! - [`Journal::retire`] drops whole segments written before a time: the
//!   records it is told to keep move to a new segment first. The others see
//!   a segment gone at their next catch-up and read the log afresh. A sweep
//!   thus costs the old records it looks at, never a rewrite of the rest.
//!
//! Appends are not synced: a record lost with the machine was held by a
//! process that died with it. Moved records are: they outlive their writer.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

mod records;
use records::{Record, Records};

/// Bytes of a log per record, about (a claim's name and its comma), to
/// make room for a segment's records before reading them.
const NAME_BYTES_GUESS: usize = 40;

/// A segment takes appends for this long after its first record.
pub const SEGMENT_SPAN: Duration = Duration::from_secs(10 * 60);

/// One folder's journal, as this process holds it.
pub struct Journal {
    folder: PathBuf,
    /// How long a segment takes appends ([`SEGMENT_SPAN`]; tests shorten it).
    span_micros: i64,
    /// Threads of one process take turns here; processes on the lock file.
    held: Mutex<Held>,
}

/// What this process has read of the log.
#[derive(Default)]
struct Held {
    /// The lock file, opened once.
    lock: Option<File>,
    /// The segments as last listed, oldest first.
    segments: Vec<Segment>,
    /// Each name's latest record.
    records: Records,
}

/// One file of the log, as read so far.
struct Segment {
    /// Its number (0: the `log` of earlier versions).
    number: u64,
    /// Its inode when opened: another file under the name is another segment.
    inode: u64,
    file: File,
    /// Bytes read (always the end of a whole line).
    read_to: u64,
    /// When its first and newest records were written (µs).
    first_written: Option<i64>,
    last_written: i64,
}

impl Journal {
    /// The journal in `folder` (made at the first change).
    pub fn open(folder: PathBuf) -> Journal {
        Journal::spanning(folder, SEGMENT_SPAN)
    }

    fn spanning(folder: PathBuf, span: Duration) -> Journal {
        Journal {
            folder,
            span_micros: i64::try_from(span.as_micros()).unwrap_or(i64::MAX),
            held: Mutex::new(Held::default()),
        }
    }

    /// Creates each of `names` holding `value` unless a record has it: for
    /// each, in order, whether it was created here.
    pub fn create_all(&self, names: &[String], value: &[u8]) -> io::Result<Vec<bool>> {
        check_value(value)?;
        names.iter().try_for_each(|name| check_name(name))?;
        self.locked(|held| {
            let (mut seen, mut fresh) = (HashSet::new(), Vec::new());
            let created: Vec<bool> = names
                .iter()
                .map(|name| {
                    let free = !held.records.contains(name) && seen.insert(name.as_str());
                    if free {
                        fresh.push(name.as_str());
                    }
                    free
                })
                .collect();
            self.append(held, &fresh, value)?;
            Ok(created)
        })
    }

    /// Writes `value` as `name`'s record, replacing any.
    pub fn write(&self, name: &str, value: &[u8]) -> io::Result<()> {
        check_name(name)?;
        check_value(value)?;
        self.locked(|held| self.append(held, &[name], value))
    }

    /// `name`'s value, if it has a record.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.locked(|held| Ok(held.records.get(name).map(|r| r.value().to_vec())))
    }

    /// What `pick` makes of each record (name, when written) that
    /// [`Journal::retire`] with the same `cutoff` would drop or move: those
    /// in segments written to at `cutoff` or before. In no particular order;
    /// records `pick` returns `None` for are skipped.
    pub fn aged<T>(
        &self,
        cutoff: DateTime<Utc>,
        pick: impl Fn(&str, DateTime<Utc>) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        self.locked(|held| {
            let aged = held.aged_through(cutoff.timestamp_micros());
            Ok(held
                .records
                .values()
                .filter(|record| aged.is_some_and(|through| record.segment <= through))
                .filter_map(|record| pick(record.name(), micros_to_time(record.written)))
                .collect())
        })
    }

    /// Deletes the segments last written to at `cutoff` or before, after
    /// moving their records not named in `drop` to a new segment: for each
    /// of `drop`, in order, whether its record went with them.
    pub fn retire(&self, cutoff: DateTime<Utc>, drop: &[String]) -> io::Result<Vec<bool>> {
        self.locked(|held| {
            let aged = held.aged_through(cutoff.timestamp_micros());
            let in_aged = |record: &Record| aged.is_some_and(|through| record.segment <= through);
            let dropped: Vec<bool> = drop
                .iter()
                .map(|name| held.records.remove_if(name, in_aged))
                .collect();
            let Some(through) = aged else {
                return Ok(dropped);
            };
            let moving: Vec<String> = held
                .records
                .values()
                .filter(|record| in_aged(record))
                .map(|record| record.name().to_string())
                .collect();
            self.move_to_new_segment(held, &moving)?;
            // Oldest first: a sweep cut short leaves a run from the oldest.
            for segment in held.segments.iter().take_while(|s| s.number <= through) {
                match std::fs::remove_file(self.segment_path(segment.number)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            held.segments.retain(|s| s.number > through);
            Ok(dropped)
        })
    }

    /// The folder the journal is in.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.folder.join(segment_name(number))
    }

    /// Runs `change` holding the lock, with the log caught up.
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

    /// Reads what was appended since the last read, and segments new since
    /// then; reads the log afresh when a segment it read is gone or
    /// another file took its name. Cuts off torn last lines.
    fn catch_up(&self, held: &mut Held) -> io::Result<()> {
        let listed = list_segments(&self.folder)?;
        let still = held.segments.len() <= listed.len()
            && held
                .segments
                .iter()
                .zip(&listed)
                .all(|(segment, listed)| (segment.number, segment.inode) == *listed);
        if !still {
            held.segments.clear();
            held.records.clear();
        }
        for (at, (number, inode)) in listed.into_iter().enumerate() {
            if at == held.segments.len() {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(self.segment_path(number))?;
                held.segments.push(Segment::new(number, inode, file));
            }
            held.read_tail(at)?;
        }
        Ok(())
    }

    /// Appends one record of each of `names` holding `value`, written now.
    fn append(&self, held: &mut Held, names: &[&str], value: &[u8]) -> io::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let written = Utc::now().timestamp_micros();
        let at = self.appendable(held, written)?;
        let names = names.join(",");
        if u32::try_from(names.len()).is_err() {
            return Err(invalid("a journal line's names are under 4 GiB".into()));
        }
        let mut line = Vec::new();
        write_line(&mut line, written, &names, value);
        let segment = &mut held.segments[at];
        (&segment.file).write_all(&line)?;
        segment.read_to += line.len() as u64;
        segment.note(written);
        held.records
            .put_line(written, &names, value, segment.number);
        Ok(())
    }

    /// The segment an append written at `written` goes to: the newest,
    /// unless it began [`SEGMENT_SPAN`] before, or after (a clock that went
    /// back): then a new one.
    fn appendable(&self, held: &mut Held, written: i64) -> io::Result<usize> {
        match held.segments.last() {
            Some(newest)
                if newest.first_written.is_none_or(|first| {
                    (0..self.span_micros).contains(&written.saturating_sub(first))
                }) =>
            {
                Ok(held.segments.len() - 1)
            }
            newest => {
                let number = newest.map_or(1, |s| s.number + 1);
                self.start_segment(held, number)
            }
        }
    }

    /// Creates segment `number` (after every other) and holds it.
    fn start_segment(&self, held: &mut Held, number: u64) -> io::Result<usize> {
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(self.segment_path(number))?;
        let inode = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
        held.segments.push(Segment::new(number, inode, file));
        Ok(held.segments.len() - 1)
    }

    /// Writes the records of `names` (unchanged) into a new segment, synced
    /// (they outlive their writers), and holds them there.
    fn move_to_new_segment(&self, held: &mut Held, names: &[String]) -> io::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for name in names {
            let record = held.records.get(name).expect("named by a record");
            write_line(&mut bytes, record.written, name, record.value());
        }
        // A line of no names, written now: the segment counts as written to
        // now, so its records move again only a sweep age later.
        let moved_at = Utc::now().timestamp_micros();
        write_line(&mut bytes, moved_at, "", b"moved");
        let number = held.segments.last().map_or(1, |s| s.number + 1);
        let at = self.start_segment(held, number)?;
        let segment = &mut held.segments[at];
        (&segment.file).write_all(&bytes)?;
        segment.file.sync_all()?;
        // Its name too, before the segments it replaces go.
        File::open(&self.folder)?.sync_all()?;
        segment.read_to = bytes.len() as u64;
        for name in names {
            let record = held.records.get_mut(name).expect("named above");
            record.segment = number;
            segment.note(record.written);
        }
        segment.note(moved_at);
        Ok(())
    }
}

impl Held {
    /// The segments aged at `cutoff` (µs): the oldest ones up to the first
    /// written to after it, as the number of the newest among them. Only a
    /// run from the oldest: a later segment dropped before an earlier one
    /// (one written to in the future by a clock that jumped) would bring
    /// back the earlier records of its names.
    fn aged_through(&self, cutoff: i64) -> Option<u64> {
        self.segments
            .iter()
            .take_while(|s| s.last_written <= cutoff)
            .last()
            .map(|s| s.number)
    }

    /// Reads segment `at` from where it was last read to its last whole
    /// line, cutting off a torn one (its writer is gone: the lock is held).
    fn read_tail(&mut self, at: usize) -> io::Result<()> {
        let segment = &mut self.segments[at];
        let mut tail = Vec::new();
        (&segment.file).seek(SeekFrom::Start(segment.read_to))?;
        (&segment.file).read_to_end(&mut tail)?;
        let whole = whole_lines(&tail);
        // Room for what it holds at once: growing a map of 500k records
        // step by step was most of reading them.
        self.records.reserve(whole / NAME_BYTES_GUESS);
        for line in tail[..whole].split(|b| *b == b'\n') {
            if let Some(written) = apply_line(&mut self.records, segment.number, line) {
                segment.note(written);
            }
        }
        segment.read_to += whole as u64;
        if whole < tail.len() {
            segment.file.set_len(segment.read_to)?;
        }
        Ok(())
    }
}

impl Segment {
    fn new(number: u64, inode: u64, file: File) -> Segment {
        Segment {
            number,
            inode,
            file,
            read_to: 0,
            first_written: None,
            last_written: i64::MIN,
        }
    }

    /// Notes a record written at `written` (µs).
    fn note(&mut self, written: i64) {
        self.first_written.get_or_insert(written);
        self.last_written = self.last_written.max(written);
    }
}

/// The segments in `folder`, oldest first: (number, inode).
fn list_segments(folder: &Path) -> io::Result<Vec<(u64, u64)>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(segment_number) {
            // As `fstat` says it (`start_segment`): on some file systems
            // (overlayfs) the folder's entry says another number.
            let inode = std::os::unix::fs::MetadataExt::ino(&entry.metadata()?);
            segments.push((number, inode));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn segment_name(number: u64) -> String {
    match number {
        0 => "log".to_string(),
        n => format!("log-{n:010}"),
    }
}

fn segment_number(name: &str) -> Option<u64> {
    match name {
        "log" => Some(0),
        _ => {
            let digits = name.strip_prefix("log-")?;
            let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            all_digits.then(|| digits.parse().ok()).flatten()
        }
    }
}

/// How many bytes of `bytes` are whole lines.
fn whole_lines(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1)
}

/// Applies one line of segment `segment` to `records`: when it was
/// written (µs), or `None` for a line that does not read (skipped).
fn apply_line(records: &mut Records, segment: u64, line: &[u8]) -> Option<i64> {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (micros, names, value) = (parts.next()?, parts.next()?, parts.next()?);
    let written: i64 = std::str::from_utf8(micros).ok()?.parse().ok()?;
    DateTime::<Utc>::from_timestamp_micros(written)?;
    records.put_line(written, std::str::from_utf8(names).ok()?, value, segment);
    Some(written)
}

/// A line of the log: `names` are separated by commas.
fn write_line(line: &mut Vec<u8>, written: i64, names: &str, value: &[u8]) {
    line.extend_from_slice(written.to_string().as_bytes());
    line.push(b' ');
    line.extend_from_slice(names.as_bytes());
    line.push(b' ');
    line.extend_from_slice(value);
    line.push(b'\n');
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn check_name(name: &str) -> io::Result<()> {
    match name.is_empty() || name.contains([' ', ',', '\n', '\r']) {
        true => Err(invalid(format!(
            "a journal record's name has no blanks or commas: {name:?}"
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
/// straight from its segments (for tests and inspection; no lock is taken).
pub fn read_log(folder: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
    let mut records = Records::default();
    for (number, _) in list_segments(folder)? {
        let bytes = std::fs::read(folder.join(segment_name(number)))?;
        for line in bytes[..whole_lines(&bytes)].split(|b| *b == b'\n') {
            apply_line(&mut records, number, line);
        }
    }
    Ok(records
        .values()
        .map(|record| (record.name().to_string(), record.value().to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn files(folder: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "lock")
            .collect();
        files.sort();
        files
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
        let text = std::fs::read_to_string(dir.path().join("j/log-0000000001")).unwrap();
        assert_eq!(
            text.lines()
                .map(|l| l.split(' ').nth(1).unwrap())
                .collect::<Vec<_>>(),
            ["x,y", "z", "x"],
            "a batch's names share one line"
        );
    }

    #[test]
    fn of_threads_racing_for_names_one_creates_each() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = names(&["a", "b", "c", "d"]);
        let racers: Vec<_> = (0..8)
            .map(|i| {
                // Every append of half of them starts a segment of its own.
                let span = Duration::from_secs(3600 * (i % 2));
                let journal = Journal::spanning(dir.path().to_path_buf(), span);
                let wanted = wanted.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|round| {
                            let batch: Vec<String> =
                                wanted.iter().map(|n| format!("{n}{round}")).collect();
                            let created = journal.create_all(&batch, format!("{i}").as_bytes());
                            journal.write(&format!("w{i}-{round}"), b"own")?;
                            created
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
        assert_eq!(read_log(dir.path()).unwrap().len(), 200 + 8 * 50);
        assert!(files(dir.path()).len() > 50, "{:?}", files(dir.path()));
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
    fn appends_go_to_the_newest_segment_until_it_spans_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let long = Journal::spanning(dir.path().join("long"), Duration::from_secs(3600));
        long.create_all(&names(&["a"]), b"1").unwrap();
        long.write("b", b"2").unwrap();
        assert_eq!(files(&dir.path().join("long")), ["log-0000000001"]);

        let short = Journal::spanning(dir.path().join("short"), Duration::ZERO);
        short.create_all(&names(&["a"]), b"1").unwrap();
        short.write("b", b"2").unwrap();
        short.write("a", b"3").unwrap();
        assert_eq!(
            files(&dir.path().join("short")),
            ["log-0000000001", "log-0000000002", "log-0000000003"]
        );
        let other = Journal::open(dir.path().join("short"));
        assert_eq!(other.read("a").unwrap(), Some(b"3".to_vec()), "later wins");
        assert_eq!(
            other.create_all(&names(&["b", "c"]), b"4").unwrap(),
            [false, true]
        );
        assert_eq!(
            files(&dir.path().join("short")).len(),
            3,
            "appends to the newest"
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        journal.create_all(&names(&["kept"]), b"{}").unwrap();
        let segment = dir.path().join("log-0000000001");
        let mut log = OpenOptions::new().append(true).open(&segment).unwrap();
        log.write_all(b"1764000000000000 torn,also {\"node\":")
            .unwrap();
        let other = Journal::open(dir.path().to_path_buf());
        assert_eq!(other.read("torn").unwrap(), None);
        assert_eq!(other.read("also").unwrap(), None);
        assert_eq!(other.read("kept").unwrap(), Some(b"{}".to_vec()));
        assert_eq!(
            other.create_all(&names(&["torn"]), b"{}").unwrap(),
            [true],
            "a torn create created nothing"
        );
        assert_eq!(journal.read("torn").unwrap(), Some(b"{}".to_vec()));
        let text = std::fs::read_to_string(&segment).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    /// A journal holding `log` (an earlier version's, one name a line but
    /// for one batch) and segment 1, all written on 1 and 2 January 2026.
    fn journal_from_january(folder: &Path) {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(
            folder.join("log"),
            "1767225600000000 gone-a 1\n1767225600000000 kept-a,gone-b 2\nnot a line\n",
        )
        .unwrap();
        std::fs::write(folder.join("log-0000000001"), "1767312000000000 kept-b 3\n").unwrap();
    }

    #[test]
    fn retiring_drops_the_named_records_of_old_segments_and_moves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        journal_from_january(dir.path());
        let (a, b) = (
            Journal::open(dir.path().to_path_buf()),
            Journal::open(dir.path().to_path_buf()),
        );
        a.create_all(&names(&["young"]), b"4").unwrap();
        a.write("gone-b", b"5").unwrap();
        assert_eq!(
            b.read("kept-a").unwrap(),
            Some(b"2".to_vec()),
            "b has read all"
        );
        let cutoff = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut aged = a
            .aged(cutoff, |name, written| Some((name.to_string(), written)))
            .unwrap();
        aged.sort();
        let january = |day| format!("2026-01-0{day}T00:00:00Z").parse().unwrap();
        assert_eq!(
            aged,
            [
                ("gone-a".to_string(), january(1)),
                ("kept-a".to_string(), january(1)),
                ("kept-b".to_string(), january(2)),
            ],
            "gone-b's record is young"
        );

        let drop = names(&["gone-a", "gone-b", "never"]);
        assert_eq!(a.retire(cutoff, &drop).unwrap(), [true, false, false]);
        assert_eq!(files(dir.path()), ["log-0000000002", "log-0000000003"]);
        for journal in [&a, &b] {
            assert_eq!(journal.read("gone-a").unwrap(), None);
            assert_eq!(journal.read("kept-a").unwrap(), Some(b"2".to_vec()));
            assert_eq!(journal.read("kept-b").unwrap(), Some(b"3".to_vec()));
            assert_eq!(journal.read("gone-b").unwrap(), Some(b"5".to_vec()));
            assert_eq!(journal.read("young").unwrap(), Some(b"4".to_vec()));
        }
        assert_eq!(b.create_all(&names(&["gone-a"]), b"6").unwrap(), [true]);
        assert_eq!(a.create_all(&names(&["gone-a"]), b"7").unwrap(), [false]);

        let moved = a.aged(cutoff, |name, _| Some(name.to_string())).unwrap();
        assert!(moved.is_empty(), "moved records wait a sweep age again");
        let later = Utc::now() + chrono::Duration::days(2);
        let kept_a = a
            .aged(later, |name, written| (name == "kept-a").then_some(written))
            .unwrap();
        assert_eq!(
            kept_a,
            [january(1)],
            "moved records keep when they were written"
        );
        assert_eq!(b.retire(later, &names(&["kept-a"])).unwrap(), [true]);
        let log = read_log(dir.path()).unwrap();
        let mut left: Vec<&str> = log.keys().map(String::as_str).collect();
        left.sort();
        assert_eq!(left, ["gone-a", "gone-b", "kept-b", "young"]);
        assert_eq!(log["gone-a"], b"6");
        assert_eq!(a.read("kept-a").unwrap(), None);
    }

    /// Asserts that nothing is aged at `cutoff`, and retiring `name` then
    /// drops nothing.
    fn retires_nothing(journal: &Journal, cutoff: DateTime<Utc>, name: &str) {
        let aged = journal.aged(cutoff, |n, _| Some(n.to_string())).unwrap();
        assert!(aged.is_empty(), "{aged:?}");
        assert_eq!(journal.retire(cutoff, &names(&[name])).unwrap(), [false]);
    }

    #[test]
    fn retiring_stops_at_the_first_segment_written_to_after_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        // Segment 1 written to in 2099 (a clock that had jumped), segment 2
        // in January: dropping 2 alone would bring back 1's record of "a".
        std::fs::write(dir.path().join("log-0000000001"), "4070908800000000 a 1\n").unwrap();
        std::fs::write(dir.path().join("log-0000000002"), "1767225600000000 a 2\n").unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        let cutoff = "2026-06-01T00:00:00Z".parse().unwrap();
        retires_nothing(&journal, cutoff, "a");
        assert_eq!(files(dir.path()), ["log-0000000001", "log-0000000002"]);
        assert_eq!(journal.read("a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn retiring_nothing_old_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        journal.create_all(&names(&["a"]), b"1").unwrap();
        let cutoff = "2026-01-01T00:00:00Z".parse().unwrap();
        retires_nothing(&journal, cutoff, "a");
        assert_eq!(files(dir.path()), ["log-0000000001"]);
        assert_eq!(journal.read("a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn names_with_blanks_or_commas_and_values_over_one_line_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().to_path_buf());
        assert!(journal.create_all(&names(&["a b"]), b"1").is_err());
        assert!(journal.create_all(&names(&["a,b"]), b"1").is_err());
        assert!(journal.write("", b"1").is_err());
        assert!(journal.write("a", b"1\n2").is_err());
        assert_eq!(read_log(dir.path()).unwrap().len(), 0);
    }
}
