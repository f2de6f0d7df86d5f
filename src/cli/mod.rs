//! The `tripwire` command line (docs/reference.md "CLI"): argument definitions and the
//! glue from each command to the library.

mod cluster;
mod triggers;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::deliver;
use crate::error::Error;
use crate::import::{Format, ImportOptions, Progress, import};
use crate::server::{App, shutdown_signal};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::limits::within;
use crate::sql::output::{OutputFormat, render};
use crate::sql::run_read_only;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "tripwire",
    version,
    about = "SQL-first event triggers: import events, query them, fire flows"
)]
pub struct Cli {
    /// The project's config (default ./tripwire.toml, else the embedded default).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import events from NDJSON (plain or .gz), CSV or Parquet files or folders.
    Import {
        /// Files, or folders whose files are all imported.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Workspace for events that do not name one (required when several are configured).
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
        /// Import nothing from a file that has any bad line.
        #[arg(long)]
        strict: bool,
        /// Load a CSV of contacts (`email` and/or `user_id` columns) as this
        /// static segment, replacing its earlier list.
        #[arg(long, value_name = "NAME")]
        segment: Option<String>,
    },
    /// Run one read-only SQL statement over a workspace's tables.
    Query {
        /// The SQL; tables: events, identities, contacts, quarantine, runs, matches, deliveries, attempts.
        sql: String,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Pin the clock (RFC 3339) that the identity TTL is measured against.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run triggers now (due or not) over the events since their last run, commit, exit.
    Run {
        /// Trigger names (file stems); all active triggers when none are given.
        triggers: Vec<String>,
        /// Pin the clock (RFC 3339) for identity TTL, so a run can be reproduced.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Dry run: the matches a trigger would produce now, with their contacts.
    Preview {
        trigger: String,
        /// Over every event, not only those since the last run.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List triggers with their workspace, schedule and cursor.
    Triggers,
    /// Show a trigger's cursor, or move it: `--set latest` skips everything
    /// stored so far, `--set VERSION` makes events stamped after VERSION new.
    Cursor {
        trigger: String,
        /// A table version (-1: the start), or `latest`.
        #[arg(long, value_name = "VERSION|latest", allow_hyphen_values = true)]
        set: Option<crate::trigger::cursor::CursorTarget>,
    },
    /// Validate the config and every trigger (parsed and planned), and run the
    /// trigger tests; non-zero exit on problems.
    Check,
    /// Run the trigger tests in queries/tests/ (all, or the named triggers')
    /// on a throwaway store; non-zero exit when one fails.
    Test {
        /// Trigger names; every test file when none are given.
        triggers: Vec<String>,
    },
    /// Serve the HTTP API on `listen` and run each trigger on its schedule.
    Serve,
    /// Run a scheduler or an executor of a Ballista cluster for `[engine] ballista`
    /// (a tripwire built with the `cluster` feature).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Erase people (right to erasure): their events, quarantined input,
    /// matches, delivery contacts and payloads, and the lines `file`
    /// actions wrote about them; recorded in `erasures` as counts.
    Erase {
        #[arg(long = "email", value_name = "EMAIL")]
        emails: Vec<String>,
        #[arg(long = "user-id", value_name = "USER_ID")]
        user_ids: Vec<String>,
        #[arg(long = "client-id", value_name = "CLIENT_ID")]
        client_ids: Vec<String>,
        /// One workspace; all when not given.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Maintain the tables now (what `serve` does every `maintenance_interval`):
    /// stamp, compact, checkpoint; delete events past `retention`.
    Optimize {
        /// Also delete files no longer referenced, older than `vacuum_retention`.
        #[arg(long)]
        vacuum: bool,
        /// One workspace; all when not given.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// The event names and fields a workspace has been sent (learned by `serve`).
    Schema {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// The fire ledger: planned deliveries with their status and attempts, newest first.
    Deliveries {
        /// Only deliveries that failed and wait for their next try.
        #[arg(long, conflicts_with = "dead")]
        failed: bool,
        /// Only dead deliveries (refused, or failing for the whole retry period).
        #[arg(long)]
        dead: bool,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Show at most this many deliveries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Replay dead or failed deliveries: reset them to pending, then deliver what is due.
    Redeliver {
        #[arg(required = true, value_name = "DELIVERY_ID")]
        ids: Vec<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Compare the edited trigger file with what its committed runs matched
    /// over the same windows: contacts added, removed, unchanged. Commits nothing.
    Diff {
        trigger: String,
        /// Compare the runs committed within this long (default 7d).
        #[arg(long, value_parser = crate::duration::parse_duration, default_value = "7d")]
        since: std::time::Duration,
        /// How many added and removed contacts to show.
        #[arg(long, default_value_t = 5)]
        sample: usize,
    },
    /// Run a trigger over the events from before it started (sent within
    /// --since): every delivery recorded as `shadow` and nothing sent, or
    /// sent with --live.
    Backfill {
        trigger: String,
        /// How far back by the events' sent_at (e.g. 7d).
        #[arg(long, value_parser = crate::duration::parse_duration)]
        since: std::time::Duration,
        /// Send the deliveries (under the flows' max_deliveries_per_run).
        #[arg(long)]
        live: bool,
        /// Pin the clock (RFC 3339): identity TTL, caps, and what --since counts back from.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run a trigger paused after max_run_failures failed runs in a row again.
    Resume {
        trigger: String,
        /// Also skip the window that kept failing: the cursor moves to the
        /// latest version, and the skipped range is recorded.
        #[arg(long)]
        skip: bool,
    },
    /// Send the deliveries a run held over a flow's max_deliveries_per_run.
    Release {
        run_id: String,
        /// Only the deliveries of this flow.
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Drop the deliveries a run held over a flow's max_deliveries_per_run: never sent.
    Discard {
        run_id: String,
        /// Only the deliveries of this flow.
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Deliver what is due now and exit (what `run` does after its triggers).
    #[command(hide = true)]
    Deliver {
        /// One workspace; all when not given.
        #[arg(long)]
        workspace: Option<String>,
        /// Deliver what is due at this time (RFC 3339): retries scheduled before it are due.
        /// Attempts, signatures and their next tries use the wall clock.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Command {
    /// Whether the command may write to the storage: such commands probe
    /// that it honours create-only writes before they start (`store::probe`).
    pub fn writes(&self) -> bool {
        match self {
            Command::Query { .. }
            | Command::Preview { .. }
            | Command::Triggers
            | Command::Check
            | Command::Test { .. }
            | Command::Schema { .. }
            | Command::Deliveries { .. }
            | Command::Diff { .. }
            | Command::Cluster { .. } => false,
            Command::Cursor { set, .. } => set.is_some(),
            _ => true,
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let config = Config::load(cli.config.as_deref())?;
    crate::sql::limits::configure(config.limits.query_memory);
    if let Some(why) = config.engine.unavailable(cfg!(feature = "cluster")) {
        return Err(Error::Usage(format!("{}: {why}", config.origin)));
    }
    crate::sql::cluster::configure(&config.engine);
    crate::store::objects::configure(&config.storage_options()?);
    if cli.command.writes() {
        Store::new(config.storage.clone())
            .probe_conditional_writes()
            .await?;
    }
    match cli.command {
        Command::Import {
            files,
            workspace,
            segment: Some(name),
            ..
        } => import_segment(&config, &name, &files, workspace.as_deref()).await,
        Command::Import {
            files,
            workspace,
            format,
            strict,
            segment: None,
        } => {
            let options = ImportOptions {
                paths: files,
                workspace,
                format,
                strict,
            };
            warn_unchecked_secrets(&config);
            crate::import::allocator::keep_freed_memory();
            let progress = Progress::on_stderr();
            let report = import(&config, &options, &progress).await?;
            println!("{}", report.summary());
            Ok(())
        }
        Command::Query {
            sql,
            workspace,
            format,
            now,
        } => {
            let workspace = config
                .pick_workspace(workspace.as_deref())
                .map_err(Error::Usage)?;
            let store = Store::new(config.storage.clone());
            let spec = SessionSpec {
                store: &store,
                workspace: &workspace.id,
                now: now.unwrap_or_else(chrono::Utc::now),
                identity_ttl: config.identity_ttl,
                events: None,
            };
            let ctx = workspace_session(&spec).await?;
            let timeout = config.limits.query_timeout;
            let batches = within(timeout, run_read_only(&ctx, &sql)).await??;
            let text = render(&batches, format)
                .map_err(|e| Error::Query(crate::sql::QueryError::Engine(e.to_string())))?;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            Ok(())
        }
        Command::Run {
            triggers: names,
            now,
        } => triggers::run(&config, &names, now).await,
        Command::Preview {
            trigger,
            all,
            now,
            format,
        } => triggers::preview(&config, &trigger, all, now, format).await,
        Command::Triggers => triggers::list(&config).await,
        Command::Cursor { trigger, set } => triggers::cursor(&config, &trigger, set).await,
        Command::Resume { trigger, skip } => triggers::resume(&config, &trigger, skip).await,
        Command::Diff {
            trigger,
            since,
            sample,
        } => triggers::diff(&config, &trigger, since, sample).await,
        Command::Backfill {
            trigger,
            since,
            live,
            now,
        } => triggers::backfill(&config, &trigger, since, live, now).await,
        Command::Check => triggers::check(&config).await,
        Command::Test { triggers: names } => triggers::test(&config, &names).await,
        Command::Serve => serve(config).await,
        Command::Cluster { command } => cluster::run(&config, command).await,
        Command::Erase {
            emails,
            user_ids,
            client_ids,
            workspace,
        } => {
            let subject = crate::erase::Subject {
                emails: emails.into_iter().collect(),
                user_ids: user_ids.into_iter().collect(),
                client_ids: client_ids.into_iter().collect(),
            };
            erase(&config, &subject, workspace.as_deref()).await
        }
        Command::Optimize { vacuum, workspace } => {
            optimize(&config, vacuum, workspace.as_deref()).await
        }
        Command::Schema { workspace, format } => {
            let workspace = config
                .pick_workspace(workspace.as_deref())
                .map_err(Error::Usage)?;
            let store = Store::new(config.storage.clone());
            let learned = crate::ingest::learn::load(&store, &workspace.id).await?;
            if learned.unlearned > 0 {
                eprintln!(
                    "{} events had a name beyond max_learned_names = {} and were not learned",
                    learned.unlearned, config.limits.max_learned_names
                );
            }
            if learned.events.is_empty() {
                eprintln!(
                    "nothing learned yet for {:?}: events sent to `tripwire serve` are learned when learning = true",
                    workspace.id
                );
            }
            triggers::print_json_rows(&crate::ingest::learn::rows(&learned), format)
        }
        Command::Deliveries {
            failed,
            dead,
            workspace,
            format,
            limit,
        } => {
            let listing = match (failed, dead) {
                (true, _) => deliver::Listing::Failed,
                (_, true) => deliver::Listing::Dead,
                _ => deliver::Listing::All,
            };
            deliver::list(&config, workspace.as_deref(), listing, format, limit).await
        }
        Command::Redeliver { ids, workspace } => {
            deliver::redeliver_now(&config, workspace.as_deref(), &ids, chrono::Utc::now()).await
        }
        Command::Release {
            run_id,
            flow,
            workspace,
        } => {
            let decision = deliver::Decision::Release;
            let (workspace, flow) = (workspace.as_deref(), flow.as_deref());
            deliver::decide_held_now(
                &config,
                workspace,
                &run_id,
                flow,
                decision,
                chrono::Utc::now(),
            )
            .await
        }
        Command::Discard {
            run_id,
            flow,
            workspace,
        } => {
            let decision = deliver::Decision::Discard;
            let (workspace, flow) = (workspace.as_deref(), flow.as_deref());
            deliver::decide_held_now(
                &config,
                workspace,
                &run_id,
                flow,
                decision,
                chrono::Utc::now(),
            )
            .await
        }
        Command::Deliver { workspace, now } => {
            let now = now.unwrap_or_else(chrono::Utc::now);
            deliver::deliver_now(&config, workspace.as_deref(), now).await
        }
    }
}

/// `tripwire import --segment NAME contacts.csv`.
async fn import_segment(
    config: &Config,
    name: &str,
    files: &[PathBuf],
    workspace: Option<&str>,
) -> Result<(), Error> {
    crate::flow::segment::check_name(name)?;
    let [file] = files else {
        return Err(Error::Usage("--segment takes exactly one CSV file".into()));
    };
    let workspace = config.pick_workspace(workspace).map_err(Error::Usage)?;
    let members = crate::flow::segment::read_csv(file).map_err(Error::Usage)?;
    let store = Store::new(config.storage.clone());
    crate::flow::segment::save_list(&store, &workspace.id, name, &members).await?;
    println!(
        "segment {name}: {} contacts in workspace {} (any earlier list replaced)",
        members.len(),
        workspace.id
    );
    Ok(())
}

/// `tripwire erase (--email E | --user-id U | --client-id C)... [--workspace W]`.
async fn erase(
    config: &Config,
    subject: &crate::erase::Subject,
    workspace: Option<&str>,
) -> Result<(), Error> {
    if subject.is_empty() {
        return Err(Error::Usage(
            "say who to erase: --email, --user-id or --client-id (each may repeat)".into(),
        ));
    }
    let store = Store::new(config.storage.clone());
    for workspace in chosen_workspaces(config, workspace)? {
        let done =
            crate::erase::erase(config, &store, workspace, subject, chrono::Utc::now()).await?;
        println!(
            "{workspace}: erased {} identifier(s): {} events, {} quarantined inputs, {} matches, \
             {} deliveries' contacts and payloads, {} file lines (erasure {}); the files the \
             deletes replaced are gone after `tripwire optimize --vacuum` past vacuum_retention",
            done.identifiers,
            done.events,
            done.quarantine,
            done.matches,
            done.deliveries,
            done.file_lines,
            done.erasure_id
        );
    }
    Ok(())
}

/// The workspace named, or every workspace.
fn chosen_workspaces<'a>(
    config: &'a Config,
    workspace: Option<&str>,
) -> Result<Vec<&'a str>, Error> {
    Ok(match workspace {
        Some(id) => vec![
            config
                .pick_workspace(Some(id))
                .map_err(Error::Usage)?
                .id
                .as_str(),
        ],
        None => config.workspaces.iter().map(|w| w.id.as_str()).collect(),
    })
}

/// `tripwire optimize [--vacuum] [--workspace W]`.
async fn optimize(config: &Config, vacuum: bool, workspace: Option<&str>) -> Result<(), Error> {
    let store = Store::new(config.storage.clone());
    let settings = crate::maintain::Settings::for_config(config, vacuum, chrono::Utc::now());
    for workspace in chosen_workspaces(config, workspace)? {
        for report in crate::maintain::maintain(config, &store, workspace, &settings).await? {
            println!("{workspace}: {report}");
        }
    }
    Ok(())
}

/// `tripwire serve`: until Ctrl-C or SIGTERM.
async fn serve(config: Config) -> Result<(), Error> {
    let app = App::build(config.clone()).await?;
    println!(
        "tripwire serving on http://{} (storage {}, triggers in {})",
        app.addr()?,
        config.storage,
        config
            .project_dir
            .join(crate::project::TRIGGER_DIR)
            .display()
    );
    note_closed_doors(&config);
    let _ = std::io::stdout().flush();
    app.run_until_stopped(shutdown_signal()).await
}

/// A workspace without a kind of key has that door shut: `serve` says so.
fn note_closed_doors(config: &Config) {
    for workspace in &config.workspaces {
        if workspace.secret.is_empty() {
            tracing::warn!(
                workspace = %workspace.id,
                "no secret configured: the workspace accepts no events over HTTP"
            );
        }
        if workspace.admin_secret.is_empty() {
            tracing::warn!(
                workspace = %workspace.id,
                "no admin_secret configured: its admin endpoints answer 403"
            );
        }
    }
}

/// A workspace whose write keys name unset variables cannot check `partnerSecret`.
fn warn_unchecked_secrets(config: &Config) {
    for workspace in &config.workspaces {
        for secret in workspace.secret.iter().filter(|s| s.resolve().is_none()) {
            eprintln!(
                "note: workspace {:?}: {} is not set, so imported partnerSecret values are not checked against it",
                workspace.id,
                secret.describe()
            );
        }
    }
}
