//! Bulk import (docs/reference.md "Import"): NDJSON in the three API shapes (plain or gzip), CSV
//! and Parquet, streamed in bounded chunks through a pipeline:
//!
//! ```text
//! reader thread ──raw chunks──▶ parser threads ──parsed chunks──▶ committer
//!   (gunzip, cut at lines)        (JSON → Arrow, route)          (Parquet + Delta txn, in order)
//! ```
//!
//! Memory is bounded by the channel capacities times the chunk size, not by
//! the file. Each commit records how many lines of the file (named by its
//! content hash) are stored, so importing again or after a crash resumes
//! exactly where the last commit ended. The file is hashed on its own
//! thread while the first chunks are read and parsed; the committer waits
//! for the hash before its first commit (a file imported before drops the
//! pipeline unread). The reader reads each chunk straight into a buffer a
//! parser has finished with, so a chunk's memory is faulted in once per
//! import, not once per chunk.

pub mod allocator;
pub mod by_name;
pub mod chunk;
pub mod commit;
pub mod lines;
pub mod progress;
pub mod remote;
pub mod route;
pub mod source;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use tokio::sync::mpsc as tokio_mpsc;

use crate::config::Config;
use crate::store::{Store, StoreError, table};
use chunk::{ChunkParser, ParsedChunk};
use commit::Committer;
pub use progress::Progress;
use route::Router;
pub use source::Format;

/// Parsed chunks waiting for the committer.
const PARSED_QUEUE: usize = 2;
/// Raw chunks waiting for a parser.
const RAW_QUEUE: usize = 2;
/// Chunk buffers parsed and waiting to be read into again (the rest are
/// freed).
const SPARE_BUFFERS: usize = 4;

/// What `tripwire import` was asked to do.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub paths: Vec<PathBuf>,
    pub workspace: Option<String>,
    pub format: Format,
    /// Refuse the whole file if any line is bad.
    pub strict: bool,
}

/// Totals of an import.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub files: u64,
    /// Events newly stored.
    pub events: u64,
    /// Events skipped because an earlier import of the same file stored them.
    pub skipped: u64,
    /// Lines that could not be stored (reported, and kept in quarantine).
    pub bad_lines: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl ImportReport {
    /// The one-line summary printed at the end.
    pub fn summary(&self) -> String {
        let rate = self.events as f64 / self.seconds.max(1e-9);
        let mut line = format!(
            "imported {} events from {} file(s), {} bad lines, in {:.2}s ({:.0} events/s, {:.1} MB/s)",
            self.events,
            self.files,
            self.bad_lines,
            self.seconds,
            rate,
            self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
        );
        if self.skipped > 0 {
            line.push_str(&format!("; {} already imported, skipped", self.skipped));
        }
        line
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(
        "{path}: {count} bad line(s) and --strict was given; nothing from this file was imported"
    )]
    Strict { path: String, count: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports every file (folders: the files in them) into the store.
pub async fn import(
    config: &Config,
    options: &ImportOptions,
    progress: &Progress,
) -> Result<ImportReport, ImportError> {
    let router =
        Arc::new(Router::new(config, options.workspace.as_deref()).map_err(ImportError::Usage)?);
    let quarantine = router
        .default_workspace()
        .filter(|w| config.workspace(w).is_some_and(|w| w.quarantine))
        .map(str::to_string);
    let inputs = inputs(&options.paths).await?;
    let store = Store::new(config.storage.clone());
    let total: u64 = inputs.iter().map(Input::size).sum();
    progress.start(total);
    let started = Instant::now();
    let mut report = ImportReport::default();
    let mut committer = Committer::new(store.clone(), quarantine);
    let scratch = match inputs.iter().any(|i| matches!(i, Input::Remote(_))) {
        true => Some(remote::Scratch::new()?),
        false => None,
    };
    for input in &inputs {
        let (name, size) = (input.name(), input.size());
        let downloaded = match (input, &scratch) {
            (Input::Remote(object), Some(scratch)) => Some(scratch.download(object).await?),
            _ => None,
        };
        let file = match (input, &downloaded) {
            (_, Some(downloaded)) => downloaded.path.as_path(),
            (Input::Local(path), None) => path.as_path(),
            (Input::Remote(_), None) => return Err(named_error(&name, "was not downloaded")),
        };
        let job = FileJob {
            path: file.to_path_buf(),
            name: name.clone(),
            format: source::detect_format(file, options.format)
                .map_err(|e| named_error(&name, e))?,
            router: router.clone(),
            max_line_bytes: config.limits.max_line_bytes,
        };
        // The file is hashed while its first chunks are parsed: nothing is
        // committed before the hash names the import.
        let hashing = {
            let file = file.to_path_buf();
            tokio::task::spawn_blocking(move || hash_file(&file))
        };
        // Not read (the file was imported before, or an error): dropped,
        // its threads end at their next send.
        let parsing = (!options.strict).then(|| job.start());
        let hash = hashing
            .await
            .map_err(|_| named_error(&name, "the hashing thread panicked"))?
            .map_err(|e| named_error(&name, e))?;
        let finished = finished_location(&hash);
        let done = match store.read_state::<ImportReport>(&finished).await? {
            // Imported before (its transactions may have expired since).
            Some(earlier) => ImportReport {
                skipped: earlier.events + earlier.skipped,
                ..ImportReport::default()
            },
            None => {
                if options.strict {
                    let bad = job.drain(job.start(), None, progress).await?.bad_lines;
                    progress.at(0);
                    if bad > 0 {
                        return Err(ImportError::Strict {
                            path: name.clone(),
                            count: bad,
                        });
                    }
                }
                committer.start_file(format!("import:{hash}"));
                let parsing = parsing.unwrap_or_else(|| job.start());
                let done = job.drain(parsing, Some(&mut committer), progress).await?;
                store.write_state(&finished, &done).await?;
                done
            }
        };
        progress.file_done(size);
        report.files += 1;
        report.events += done.events;
        report.skipped += done.skipped;
        report.bad_lines += done.bad_lines;
        report.bytes += size;
    }
    // A table committed to more than once (a bulk import) is checkpointed,
    // so the runs that follow open it without replaying those commits; a
    // small import leaves checkpoints to Delta's interval, as any writer does.
    for written in committer.into_written().filter(|w| w.commits > 1) {
        checkpoint_after_import(&written.table).await;
    }
    report.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(report)
}

/// Checkpoints a table a bulk import wrote to; a failure only costs the
/// next readers time (Delta's interval checkpoints it later), so it is
/// reported and the import, whose rows are stored, still succeeds.
async fn checkpoint_after_import(table: &deltalake_core::DeltaTable) {
    if let Err(e) = table::checkpoint(table).await {
        tracing::warn!("{e}: not checkpointed after the import (readers replay its commits)");
    }
}

/// One file's import: where it is, its format, and how to route its events.
struct FileJob {
    /// The file read (a local copy of a downloaded object).
    path: PathBuf,
    /// The file as the user named it, for reports.
    name: String,
    format: Format,
    router: Arc<Router>,
    /// Longer NDJSON lines are refused (`max_line_bytes`).
    max_line_bytes: usize,
}

/// A file's pipeline, started: its parsed chunks as they come, and the
/// thread that reads and parses them. Dropped unread, it stops: its
/// threads end at their next send.
struct Parsing {
    receiver: tokio_mpsc::Receiver<ParsedChunk>,
    producer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl FileJob {
    /// Starts reading and parsing the file; [`Self::drain`] takes what it
    /// parses.
    fn start(&self) -> Parsing {
        let (sender, receiver) = tokio_mpsc::channel::<ParsedChunk>(PARSED_QUEUE);
        let producer = self.spawn_producer(sender);
        Parsing { receiver, producer }
    }

    /// Takes every chunk the pipeline parses, in file order. Without a
    /// committer, only counts and reports bad lines (the `--strict` check).
    async fn drain(
        &self,
        parsing: Parsing,
        mut committer: Option<&mut Committer>,
        progress: &Progress,
    ) -> Result<ImportReport, ImportError> {
        let Parsing {
            mut receiver,
            producer,
        } = parsing;
        let mut report = ImportReport::default();
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        while let Some(parsed) = receiver.recv().await {
            waiting.insert(parsed.index, parsed);
            while let Some(chunk) = waiting.remove(&next) {
                next += 1;
                let chunk_offset = chunk.offset;
                report.bad_lines += chunk.rejected.len() as u64;
                for rejected in &chunk.rejected {
                    progress.bad_line(&format!(
                        "{}:{}: {}",
                        rejected.source, rejected.line, rejected.reason
                    ));
                }
                match committer.as_mut() {
                    Some(c) => {
                        let outcome = c.commit(chunk).await?;
                        report.events += outcome.stored;
                        report.skipped += outcome.skipped;
                    }
                    None => report.events += chunk.event_count() as u64,
                }
                progress.at(chunk_offset);
            }
        }
        producer
            .join()
            .map_err(|_| named_error(&self.name, "the reader thread panicked"))?
            .map_err(|e| named_error(&self.name, e))?;
        Ok(report)
    }

    /// Starts the threads that read and parse the file.
    fn spawn_producer(
        &self,
        sender: tokio_mpsc::Sender<ParsedChunk>,
    ) -> std::thread::JoinHandle<std::io::Result<()>> {
        let parser = ChunkParser {
            router: self.router.clone(),
            source: self.name.clone().into(),
            received_at: crate::event::now_micros(),
            rows_hint: source::CHUNK_ROWS,
            max_line_bytes: self.max_line_bytes,
            footprints: Default::default(),
        };
        let path = self.path.clone();
        let format = self.format;
        std::thread::spawn(move || {
            let send = |chunk: ParsedChunk| sender.blocking_send(chunk).is_ok();
            let consumed = Arc::new(AtomicU64::new(0));
            match format {
                Format::Parquet => source::read_parquet_chunks(&path, &parser, send),
                Format::Csv => {
                    let input = source::open_text(&path, &consumed)?;
                    source::read_csv_chunks(input, &consumed, &parser, send)
                }
                Format::Ndjson | Format::Auto => {
                    let input = source::open_text(&path, &consumed)?;
                    parse_ndjson_in_parallel(input, &consumed, parser, sender)
                }
            }
        })
    }
}

/// Cuts NDJSON into raw chunks on this thread and parses them on a pool.
fn parse_ndjson_in_parallel(
    input: Box<dyn Read + Send>,
    consumed: &AtomicU64,
    parser: ChunkParser,
    sender: tokio_mpsc::Sender<ParsedChunk>,
) -> std::io::Result<()> {
    let max_line_bytes = parser.max_line_bytes;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (raw_sender, raw_receiver) = mpsc::sync_channel(RAW_QUEUE);
    let raw_receiver = Arc::new(Mutex::new(raw_receiver));
    let (spare_sender, spare_receiver) = mpsc::sync_channel::<Vec<u8>>(SPARE_BUFFERS);
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let receiver = raw_receiver.clone();
            let parser = parser.clone();
            let sender = sender.clone();
            let spares = spare_sender.clone();
            std::thread::spawn(move || {
                loop {
                    let next = receiver.lock().map(|r| r.recv());
                    let Ok(Ok(mut raw)) = next else { return };
                    let parsed = parser.parse_ndjson_of(&mut raw);
                    // Full: the reader has enough; this one is freed.
                    let _ = spares.try_send(raw.data);
                    if sender.blocking_send(parsed).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop((sender, spare_sender));
    let spare = || spare_receiver.try_recv().unwrap_or_default();
    let read = lines::read_ndjson_chunks_into(input, consumed, max_line_bytes, spare, |raw| {
        raw_sender.send(raw).is_ok()
    });
    drop(raw_sender);
    for worker in pool {
        let _ = worker.join();
    }
    read
}

/// One file to import: on the local disk, or an object in S3.
enum Input {
    Local(PathBuf),
    Remote(remote::RemoteObject),
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::Local(path) => path.display().to_string(),
            Input::Remote(object) => object.name.clone(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Input::Local(path) => file_size(path),
            Input::Remote(object) => object.size,
        }
    }
}

/// The files named, in order: `s3://` URLs as [`remote::expand`] reads
/// them, local ones as [`expand`] does.
async fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, ImportError> {
    if paths.is_empty() {
        return Err(ImportError::Usage("no files to import".into()));
    }
    let mut inputs = Vec::new();
    for path in paths {
        match path.to_str().filter(|_| remote::is_remote(path)) {
            Some(url) => inputs.extend(remote::expand(url).await?.into_iter().map(Input::Remote)),
            None => inputs.extend(
                expand(std::slice::from_ref(path))?
                    .into_iter()
                    .map(Input::Local),
            ),
        }
    }
    Ok(inputs)
}

/// The files named: files as given, folders as their (non-hidden) files, sorted.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| input_error(path, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !is_hidden(p))
                .collect();
            inside.sort();
            files.extend(inside);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(input_error(path, "no such file or folder"));
        }
    }
    Ok(files)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Where a finished import of the file with content `hash` is recorded: the
/// transactions of its commits expire after a while, this record does not.
/// (Workspace ids never start with `_`, so no workspace folder clashes.)
fn finished_location(hash: &str) -> String {
    format!("_imports/{hash}.json")
}

/// The file's content hash (xxh3, 128 bits), which names it for idempotency.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

fn file_size(path: &Path) -> u64 {
    path.metadata().map_or(0, |m| m.len())
}

fn input_error(path: &Path, e: impl ToString) -> ImportError {
    named_error(&path.display().to_string(), e)
}

fn named_error(name: &str, e: impl ToString) -> ImportError {
    ImportError::Input {
        path: name.to_string(),
        message: e.to_string(),
    }
}
