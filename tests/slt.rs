//! The `.slt` runner: the SQL semantics an analyst relies on (windows,
//! identity resolution and TTL, `requires_identity`, JSON extraction,
//! read-only SQL), written as sqllogictest files in `tests/slt/`. Each file
//! runs against a fresh temporary store with one workspace, `shop`.
//!
//! A record's SQL runs read-only, exactly as a trigger's SQL does: `events`,
//! `identities`, … and `new_events`, the window since the `cursor`. A few
//! records are harness directives instead:
//!
//! | record | what it does |
//! |---|---|
//! | `statement ok` `import FILE` | imports `tests/slt/data/FILE` (a bad line fails it); one or more table versions |
//! | `statement ok` `cursor` | marks the current version: `new_events` holds only rows added after it |
//! | `statement ok` `backfill all\|none\|DURATION` | the trigger header's `backfill`, for a trigger with no cursor yet (`all` until set) |
//! | `statement ok` `now RFC3339` | the run clock identity TTL is measured against ([`DEFAULT_NOW`] until set) |
//! | `statement ok` `requires_identity true\|false` | the trigger header's default for `matches` and `stats` (true until set) |
//! | `query TTTTTT` `matches SQL` | SQL run as a trigger: one row per match: email, user_id, client_id, contact, event_id, data |
//! | `statement ok` `wait_for_identity 0\|DURATION` | the trigger header's `wait_for_identity`, for `stats` (`1h` until set) |
//! | `query IIIII` `stats SQL` | SQL run as a trigger (a first run): one row: matched, resolved, unresolved, dropped, waiting for an identity |
//!
//! Values print as text, NULL as `NULL` and an empty string as `(empty)`. In
//! an expected row, `<slt:ignore>` stands for one value's text that differs
//! per run (a `seq`), never for whole values or rows.
//!
//! A record tripwire gets wrong today keeps its right answer, is preceded by
//! a comment saying what tripwire does instead, and by `skipif tripwire`:
//! it is counted as skipped until the bug is fixed.
//!
//! `cargo test --test slt [-- FILTER...]` runs the files whose name contains
//! a filter (all without one) and ends with `N passed, M failed`.

use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use sqllogictest::{
    AsyncDB, DBOutput, DefaultColumnType, Normalizer, Record, RecordOutput, Runner,
};

use tripwire::Config;
use tripwire::identity::identities_from_index;
use tripwire::identity::index::{AsOf, IndexCache};
use tripwire::identity::pending::defer;
use tripwire::identity::resolve::{Resolution, resolve};
use tripwire::import::{Format, ImportOptions, Progress, import};
use tripwire::session::{SessionSpec, workspace_session};
use tripwire::sql::{plan_read_only, run_read_only};
use tripwire::store::{Store, TableKind};
use tripwire::trigger::TriggerFile;
use tripwire::trigger::file::DEFAULT_WAIT_FOR_IDENTITY;
use tripwire::window::{Backfill, new_events, window_for};

/// Stack of each runtime worker: DataFusion planning recurses (as in `src/main.rs`).
const WORKER_STACK_BYTES: usize = 512 << 20;
/// The workspace every file's events land in.
const WORKSPACE: &str = "shop";
/// The run clock until a file sets one: fixed, so results never depend on the wall clock.
const DEFAULT_NOW: &str = "2026-11-10T00:00:00Z";
/// Marks the part of an expected value that differs per run.
const IGNORE: &str = "<slt:ignore>";

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let files: Vec<PathBuf> = slt_files()
        .into_iter()
        .filter(|f| filters.is_empty() || filters.iter().any(|x| name(f).contains(x.as_str())))
        .collect();
    if args.iter().any(|a| a == "--list") {
        files.iter().for_each(|f| println!("{}: test", name(f)));
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
        .expect("the tokio runtime starts");
    let outcomes = runtime.block_on(run_all(&files));
    let (mut passed, mut failed) = (0, 0);
    for (file, outcome) in files.iter().zip(&outcomes) {
        let verdict = if outcome.failures.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "slt {} ... {verdict} ({} passed, {} skipped)",
            name(file),
            outcome.passed,
            outcome.skipped
        );
        for failure in &outcome.failures {
            println!("{failure}");
        }
        passed += outcome.passed;
        failed += outcome.failures.len();
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every `tests/slt/*.slt` file, sorted.
fn slt_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .expect("tests/slt is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

fn name(file: &Path) -> String {
    file.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// What one file's records did.
struct FileOutcome {
    /// Statement and query records that passed.
    passed: usize,
    /// Records a `skipif tripwire` condition skipped (known bugs).
    skipped: usize,
    /// Each failed record's report: file, line, SQL and diff.
    failures: Vec<String>,
}

/// Runs the files concurrently, each on its own store.
async fn run_all(files: &[PathBuf]) -> Vec<FileOutcome> {
    let tasks: Vec<_> = files
        .iter()
        .map(|file| tokio::spawn(run_file(file.clone())))
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| FileOutcome {
            passed: 0,
            skipped: 0,
            failures: vec![format!("the harness panicked: {e}")],
        }));
    }
    outcomes
}

/// Runs every record of `file` in order; a failed record does not stop the rest.
async fn run_file(file: PathBuf) -> FileOutcome {
    let mut outcome = FileOutcome {
        passed: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    let records = match sqllogictest::parse_file::<DefaultColumnType>(&file) {
        Ok(records) => records,
        Err(e) => {
            outcome.failures.push(e.to_string());
            return outcome;
        }
    };
    let mut runner = Runner::new(Shop::new);
    runner.with_validator(validate);
    let color = std::io::stdout().is_terminal();
    for record in records {
        let counted = match record {
            Record::Halt { .. } => break,
            Record::Statement { .. } | Record::Query { .. } => 1,
            _ => 0,
        };
        match runner.run_async(record).await {
            Ok(RecordOutput::Nothing) => outcome.skipped += counted,
            Ok(_) => outcome.passed += counted,
            Err(e) => outcome.failures.push(e.display(color).to_string()),
        }
    }
    runner.shutdown_async().await;
    outcome
}

/// sqllogictest's comparison (rows of whitespace-normalized values), where
/// `<slt:ignore>` in an expected row skips text within one value only.
fn validate(normalizer: Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    let actual: Vec<String> = actual
        .iter()
        .map(|row| row.iter().map(normalizer).collect::<Vec<_>>().join(" "))
        .collect();
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(row, want)| row_matches(row, &normalizer(want)))
}

/// `row` is `expected` with each `<slt:ignore>` replaced by text without spaces.
fn row_matches(row: &str, expected: &str) -> bool {
    let mut parts = expected.split(IGNORE);
    let Some(mut rest) = row.strip_prefix(parts.next().unwrap_or_default()) else {
        return false;
    };
    // The expected text after each marker, in order.
    let after: Vec<&str> = parts.collect();
    for (i, text) in after.iter().enumerate() {
        let at = if i + 1 == after.len() {
            rest.ends_with(text).then(|| rest.len() - text.len())
        } else {
            rest.find(text)
        };
        match at {
            Some(at) if !rest[..at].contains(' ') => rest = &rest[at + text.len()..],
            _ => return false,
        }
    }
    rest.is_empty()
}

/// A failed record: the harness's or tripwire's message.
#[derive(Debug)]
struct SltError(String);

impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

fn fail(e: impl fmt::Display) -> SltError {
    SltError(e.to_string())
}

type Output = DBOutput<DefaultColumnType>;

/// One `.slt` file's database: a temporary store with the workspace `shop`,
/// a trigger's cursor, and a run clock.
struct Shop {
    /// The folder holding the store: removed when the file is done.
    _dir: tempfile::TempDir,
    config: Config,
    /// The events table version the cursor marks (`None`: a trigger's
    /// first run, which reads what `backfill` says).
    cursor: Option<i64>,
    backfill: Backfill,
    /// The trigger header's `wait_for_identity`, for `stats`.
    wait_for_identity: Duration,
    now: DateTime<Utc>,
    /// The trigger header's `requires_identity`.
    requires_identity: bool,
}

impl Shop {
    async fn new() -> Result<Shop, SltError> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let toml = format!("storage = \"./store\"\n[[workspace]]\nid = \"{WORKSPACE}\"\n");
        let config = Config::parse(&toml, "slt harness", dir.path()).map_err(fail)?;
        Ok(Shop {
            _dir: dir,
            config,
            cursor: None,
            backfill: Backfill::All,
            wait_for_identity: DEFAULT_WAIT_FOR_IDENTITY,
            now: parse_now(DEFAULT_NOW)?,
            requires_identity: true,
        })
    }

    fn store(&self) -> Store {
        Store::new(self.config.storage.clone())
    }

    async fn execute(&mut self, sql: &str) -> Result<Output, SltError> {
        let sql = sql.trim();
        let (word, rest) = sql
            .split_once(char::is_whitespace)
            .map_or((sql, ""), |(word, rest)| (word, rest.trim()));
        match word {
            "import" => self.import(rest).await,
            "cursor" if rest.is_empty() => self.mark_cursor().await,
            "backfill" => {
                let header = format!("-- backfill: {rest}\nSELECT 1");
                let trigger = TriggerFile::parse(Path::new("slt.sql"), &header).map_err(fail)?;
                self.backfill = trigger.backfill;
                Ok(DBOutput::StatementComplete(0))
            }
            "now" => {
                self.now = parse_now(rest)?;
                Ok(DBOutput::StatementComplete(0))
            }
            "requires_identity" => {
                self.requires_identity = rest.parse().map_err(|_| {
                    fail(format!(
                        "requires_identity takes true or false, not {rest:?}"
                    ))
                })?;
                Ok(DBOutput::StatementComplete(0))
            }
            "matches" => Ok(matches_output(&self.run_as_trigger(rest).await?)),
            "stats" => Ok(stats_output(
                &self.run_as_trigger(rest).await?,
                self.wait_for_identity,
            )),
            "wait_for_identity" => {
                let header = format!("-- wait_for_identity: {rest}\nSELECT 1");
                let trigger = TriggerFile::parse(Path::new("slt.sql"), &header).map_err(fail)?;
                self.wait_for_identity = trigger.wait_for_identity;
                Ok(DBOutput::StatementComplete(0))
            }
            _ => self.query(sql).await,
        }
    }

    /// `import FILE`: the events of `tests/slt/data/FILE`; the count is the events stored.
    async fn import(&self, file: &str) -> Result<Output, SltError> {
        let options = ImportOptions {
            paths: vec![slt_dir().join("data").join(file)],
            workspace: Some(WORKSPACE.to_string()),
            format: Format::Auto,
            strict: true,
        };
        let report = import(&self.config, &options, &Progress::hidden())
            .await
            .map_err(fail)?;
        Ok(DBOutput::StatementComplete(report.events))
    }

    /// `cursor`: later queries' `new_events` starts after the current version.
    async fn mark_cursor(&mut self) -> Result<Output, SltError> {
        let events = self
            .store()
            .open(WORKSPACE, TableKind::Events)
            .await
            .map_err(fail)?;
        self.cursor = Some(events.and_then(|t| t.version()).map_or(-1, |v| v as i64));
        Ok(DBOutput::StatementComplete(0))
    }

    /// A trigger's session: the workspace's tables at `now`, and the window.
    async fn session(&self) -> Result<SessionContext, SltError> {
        let store = self.store();
        let events = store
            .open(WORKSPACE, TableKind::Events)
            .await
            .map_err(fail)?;
        let spec = SessionSpec {
            store: &store,
            workspace: WORKSPACE,
            now: self.now,
            identity_ttl: self.config.identity_ttl,
            events: events.as_ref(),
        };
        let ctx = workspace_session(&spec).await.map_err(fail)?;
        let watermark = events
            .as_ref()
            .and_then(|t| t.version())
            .map_or(-1, |v| v as i64);
        let (window, sent_after) = window_for(self.cursor, watermark, self.backfill, self.now);
        let new_events = new_events(events.as_ref(), window, sent_after).map_err(fail)?;
        ctx.register_table("new_events", new_events).map_err(fail)?;
        Ok(ctx)
    }

    /// Plain SQL, read-only, as `tripwire query` runs it in a trigger's session.
    async fn query(&self, sql: &str) -> Result<Output, SltError> {
        let ctx = self.session().await?;
        let batches = run_read_only(&ctx, sql).await.map_err(fail)?;
        if sql.contains("identities") {
            self.same_from_index(sql, &batches).await?;
        }
        let types = batches.first().map_or_else(Vec::new, |b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect()
        });
        Ok(DBOutput::Rows {
            types,
            rows: render(&batches)?,
        })
    }

    /// Runs `sql` again with `identities` served by the identity index (as
    /// a run's session serves it) and fails if the rows differ from the
    /// view's.
    async fn same_from_index(&self, sql: &str, by_view: &[RecordBatch]) -> Result<(), SltError> {
        let store = self.store();
        let Some(events) = store
            .open(WORKSPACE, TableKind::Events)
            .await
            .map_err(fail)?
        else {
            return Ok(());
        };
        let index = IndexCache::new()
            .at(&store, WORKSPACE, &events)
            .await
            .map_err(fail)?;
        let Some(table) =
            identities_from_index(&index, self.now, self.config.identity_ttl).map_err(fail)?
        else {
            return Ok(());
        };
        let ctx = self.session().await?;
        ctx.deregister_table("identities").map_err(fail)?;
        ctx.register_table("identities", table).map_err(fail)?;
        let by_index = run_read_only(&ctx, sql).await.map_err(fail)?;
        // Compared as sets of rows: a query without ORDER BY has no order.
        let (mut view, mut index) = (render(by_view)?, render(&by_index)?);
        view.sort();
        index.sort();
        match view == index {
            true => Ok(()),
            false => Err(SltError(format!(
                "identities from the index differ from the view:\nview:  {view:?}\nindex: {index:?}"
            ))),
        }
    }

    /// The SQL run as a trigger: its rows resolved to matches.
    async fn run_as_trigger(&self, sql: &str) -> Result<Resolution, SltError> {
        let ctx = self.session().await?;
        let frame = plan_read_only(&ctx, sql).await.map_err(fail)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let rows = frame.collect().await.map_err(fail)?;
        let by_view = resolve(
            &ctx,
            rows.clone(),
            schema.clone(),
            self.requires_identity,
            None,
        )
        .await
        .map_err(SltError)?;
        // Every case also checks that the identity index resolves as the
        // `identities` view does.
        let store = self.store();
        let Some(events) = store
            .open(WORKSPACE, TableKind::Events)
            .await
            .map_err(fail)?
        else {
            return Ok(by_view);
        };
        let index = IndexCache::new()
            .at(&store, WORKSPACE, &events)
            .await
            .map_err(fail)?;
        let at = AsOf::new(self.now, self.config.identity_ttl);
        let by_index = resolve(
            &ctx,
            rows,
            schema,
            self.requires_identity,
            Some((&index, at)),
        )
        .await
        .map_err(SltError)?;
        let summary = |r: &Resolution| {
            (
                r.matched,
                r.resolved,
                r.unresolved,
                r.dropped,
                r.waiting.clone(),
                r.matches.clone(),
            )
        };
        if summary(&by_view) != summary(&by_index) {
            return Err(fail(format!(
                "the identity index resolved differently from the identities view:\n  view:  {:?}\n  index: {:?}",
                summary(&by_view),
                summary(&by_index)
            )));
        }
        Ok(by_view)
    }
}

fn parse_now(text: &str) -> Result<DateTime<Utc>, SltError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| fail(format!("now takes an RFC 3339 time, not {text:?}: {e}")))
}

/// One row per match: email, user_id, client_id, contact, event_id, data.
fn matches_output(resolution: &Resolution) -> Output {
    let text = |v: &Option<String>| v.clone().map_or_else(|| "NULL".to_string(), shown);
    let rows = resolution
        .matches
        .iter()
        .map(|m| {
            vec![
                text(&m.email),
                text(&m.user_id),
                text(&m.client_id),
                shown(m.contact.clone()),
                text(&m.event_id),
                shown(m.data.clone()),
            ]
        })
        .collect();
    DBOutput::Rows {
        types: vec![DefaultColumnType::Text; 6],
        rows,
    }
}

/// One row: matched, resolved, unresolved, dropped.
/// matched, resolved, unresolved, dropped, waiting for an identity: as a
/// first run with no pending rows counts them (`wait` is the trigger's
/// `wait_for_identity`).
fn stats_output(resolution: &Resolution, wait: Duration) -> Output {
    let origins = vec![None; resolution.matched as usize];
    let deferral = defer(&resolution.waiting, &origins, &[], wait, Utc::now());
    let counts = [
        resolution.matched,
        resolution.resolved,
        resolution.unresolved,
        resolution.dropped + deferral.drop.len() as i64,
        deferral.defer.len() as i64,
    ];
    DBOutput::Rows {
        types: vec![DefaultColumnType::Integer; 5],
        rows: vec![counts.iter().map(i64::to_string).collect()],
    }
}

/// Every value as text: NULL as `NULL`, the empty string as `(empty)`.
fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| shown(c.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn shown(text: String) -> String {
    if text.is_empty() {
        "(empty)".to_string()
    } else {
        text
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Any,
    }
}

/// sqllogictest's `AsyncDB` is an `#[async_trait]`; implemented here by hand
/// (boxed futures) to need no extra dependency.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl AsyncDB for Shop {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run<'a, 'b, 'f>(&'a mut self, sql: &'b str) -> Boxed<'f, Result<Output, SltError>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(self.execute(sql))
    }

    fn shutdown<'a, 'f>(&'a mut self) -> Boxed<'f, ()>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async {})
    }

    fn engine_name(&self) -> &str {
        "tripwire"
    }
}
