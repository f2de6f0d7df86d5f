//! `tripwire.toml`: the project's configuration (docs/reference.md "Project"), its embedded
//! default, and validation that names the offending key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::duration::parse_duration;

// By path, so fuzz/ can compile this file by path too (a file loaded by
// path looks for its modules beside it).
#[path = "config/limits.rs"]
mod limits;
#[path = "config/storage.rs"]
mod storage;

pub use limits::{Limits, Server};
pub use storage::S3Settings;

#[path = "config/engine.rs"]
mod engine;

pub use engine::{Engine, Scheduler};

/// The configuration used when no `tripwire.toml` exists (docs/reference.md "Project").
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The file looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "tripwire.toml";

/// A configuration problem, always naming the file and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or "embedded default"), for messages.
    pub origin: String,
    /// The project folder: `queries/` and `flows/` live here (the config
    /// file's folder, or the working directory for the embedded default).
    pub project_dir: PathBuf,
    /// Root URL of all durable state (docs/architecture.md "Storage").
    pub storage: Url,
    /// `[storage]`'s S3 settings (endpoint, region, credentials, allow_http).
    pub storage_s3: S3Settings,
    pub listen: SocketAddr,
    pub identity_ttl: Duration,
    pub default_schedule: String,
    pub workspaces: Vec<Workspace>,
    pub ingest: Ingest,
    /// A delivery still failing this long after it was planned is dead.
    pub delivery_retry_period: Duration,
    /// `[server]`: connection timeouts and the connection cap of `serve`.
    pub server: Server,
    /// Bounds on analyst SQL, learning, import lines and ingest rates.
    pub limits: Limits,
    /// `[engine]`: where analysts' SQL executes (in-process, or a Ballista cluster).
    pub engine: Engine,
    /// `GET /metrics` answers without a key (else it needs an `admin_secret`).
    pub metrics_public: bool,
    /// How often `serve` maintains the tables (compaction, checkpoints).
    pub maintenance_interval: Duration,
    /// VACUUM deletes only files no version of this age still needs.
    pub vacuum_retention: Duration,
    /// Events sent longer ago than this are deleted by maintenance.
    pub retention: Option<Duration>,
    /// A trigger failing this many runs in a row is paused until
    /// `tripwire resume` (0: never paused).
    pub max_run_failures: u32,
}

/// One tenant: its id (also the collect envelope's `partnerId`) and secrets.
/// Each secret is a list, so a key can be rotated: every entry is valid
/// until it is removed. An empty list means the key is not configured.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    /// Write keys: they send events, nothing else.
    pub secret: Vec<Secret>,
    /// Admin keys: they read and act (triggers, runs, deliveries, metrics).
    pub admin_secret: Vec<Secret>,
    /// Webhook signing keys: each signs every webhook (one `v1=` apiece).
    pub signing_secret: Vec<Secret>,
    pub learning: bool,
    /// Keep rejected input in the workspace's quarantine table.
    pub quarantine: bool,
    /// Webhooks may go to loopback, private and link-local addresses.
    pub allow_private_networks: bool,
}

/// The workspace keys that hold secrets, as named in tripwire.toml.
pub const SECRET_KEYS: [&str; 3] = ["secret", "admin_secret", "signing_secret"];

impl Workspace {
    /// The entries of one of [`SECRET_KEYS`].
    pub fn secrets(&self, key: &str) -> &[Secret] {
        match key {
            "secret" => &self.secret,
            "admin_secret" => &self.admin_secret,
            _ => &self.signing_secret,
        }
    }

    /// The values of `entries` that resolve (unset variables left out).
    pub fn resolved(entries: &[Secret]) -> Vec<String> {
        entries.iter().filter_map(Secret::resolve).collect()
    }
}

/// A secret value or a reference to an environment variable (`env:NAME`).
/// Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Literal(String),
    Env(String),
}

impl Secret {
    /// `env:NAME` names a variable; anything else is the value itself.
    pub fn parse(text: &str) -> Secret {
        match text.strip_prefix("env:") {
            Some(name) => Secret::Env(name.to_string()),
            None => Secret::Literal(text.to_string()),
        }
    }

    /// The secret's value, or `None` when it names an unset variable.
    pub fn resolve(&self) -> Option<String> {
        match self {
            Secret::Literal(value) => Some(value.clone()),
            Secret::Env(name) => std::env::var(name).ok().filter(|v| !v.is_empty()),
        }
    }

    /// Where the value comes from, safe to print.
    pub fn describe(&self) -> String {
        match self {
            Secret::Literal(_) => "a literal in the config".to_string(),
            Secret::Env(name) => format!("the environment variable {name}"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(***)"),
            Secret::Env(name) => write!(f, "Secret(env:{name})"),
        }
    }
}

/// The file's shape; `deny_unknown_fields` makes a typo an error naming the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// A path or URL, or a `[storage]` table (`config/storage.rs`).
    storage: Option<toml::Value>,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_ttl")]
    identity_ttl: String,
    #[serde(default = "default_schedule")]
    default_schedule: String,
    #[serde(default)]
    workspace: Vec<RawWorkspace>,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default = "default_retry_period")]
    delivery_retry_period: String,
    #[serde(default)]
    server: limits::RawServer,
    #[serde(default)]
    engine: engine::RawEngine,
    query_timeout: Option<String>,
    query_memory: Option<usize>,
    max_learned_names: Option<usize>,
    max_learned_fields: Option<usize>,
    max_line_bytes: Option<usize>,
    max_events_per_second: Option<u32>,
    #[serde(default)]
    metrics_public: bool,
    #[serde(default = "default_maintenance_interval")]
    maintenance_interval: String,
    #[serde(default = "default_vacuum_retention")]
    vacuum_retention: String,
    retention: Option<String>,
    #[serde(default = "default_max_run_failures")]
    max_run_failures: u32,
}

/// `[ingest]`: the HTTP ingest API's durability and limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    wal_dir: String,
    flush_bytes: u64,
    flush_age: String,
    dedupe_window: String,
    max_event_bytes: usize,
    max_request_bytes: usize,
    max_batch_items: usize,
    queue: usize,
    max_queue_bytes: usize,
    max_wal_bytes: u64,
    max_dedupe_bytes: usize,
}

impl Default for RawIngest {
    fn default() -> RawIngest {
        RawIngest {
            wal_dir: "./wal".into(),
            flush_bytes: 16 << 20,
            flush_age: "2s".into(),
            dedupe_window: "24h".into(),
            max_event_bytes: 32 << 10,
            max_request_bytes: 4 << 20,
            max_batch_items: 500,
            queue: 4096,
            max_queue_bytes: 64 << 20,
            max_wal_bytes: 1 << 30,
            max_dedupe_bytes: 256 << 20,
        }
    }
}

/// The ingest API's settings (`[ingest]` in tripwire.toml).
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The write-ahead log's folder: the only local state, owned by one node.
    pub wal_dir: PathBuf,
    /// A WAL segment is committed to the tables once it holds this many bytes…
    pub flush_bytes: u64,
    /// …or once its oldest event is this old.
    pub flush_age: Duration,
    /// A repeated `event_id`/`messageId` within this window is stored once.
    pub dedupe_window: Duration,
    pub max_event_bytes: usize,
    pub max_request_bytes: usize,
    pub max_batch_items: usize,
    /// Requests waiting for the WAL before new ones get 503.
    pub queue: usize,
    /// Bytes of records waiting for the WAL before new requests get 503.
    pub max_queue_bytes: usize,
    /// Bytes acknowledged but not yet in the tables (the WAL's segments plus
    /// its queue) before new requests get 503: the WAL never grows past it.
    pub max_wal_bytes: u64,
    /// Memory the dedupe index may take; past it the oldest ids are forgotten.
    pub max_dedupe_bytes: usize,
}

impl RawIngest {
    fn validate(self, base: &Path) -> Result<Ingest, String> {
        let duration =
            |key: &str, text: &str| parse_duration(text).map_err(|m| format!("ingest.{key}: {m}"));
        let positive = |key: &str, n: u64| match n {
            0 => Err(format!("ingest.{key}: must be more than 0")),
            n => Ok(n),
        };
        positive("flush_bytes", self.flush_bytes)?;
        positive("max_event_bytes", self.max_event_bytes as u64)?;
        positive("max_request_bytes", self.max_request_bytes as u64)?;
        positive("max_batch_items", self.max_batch_items as u64)?;
        positive("queue", self.queue as u64)?;
        positive("max_queue_bytes", self.max_queue_bytes as u64)?;
        positive("max_wal_bytes", self.max_wal_bytes)?;
        positive("max_dedupe_bytes", self.max_dedupe_bytes as u64)?;
        if self.wal_dir.is_empty() {
            return Err("ingest.wal_dir: must not be empty".into());
        }
        Ok(Ingest {
            wal_dir: base.join(&self.wal_dir),
            flush_bytes: self.flush_bytes,
            flush_age: duration("flush_age", &self.flush_age)?,
            dedupe_window: duration("dedupe_window", &self.dedupe_window)?,
            max_event_bytes: self.max_event_bytes,
            max_request_bytes: self.max_request_bytes,
            max_batch_items: self.max_batch_items,
            queue: self.queue,
            max_queue_bytes: self.max_queue_bytes,
            max_wal_bytes: self.max_wal_bytes,
            max_dedupe_bytes: self.max_dedupe_bytes,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    id: String,
    #[serde(default)]
    secret: RawSecrets,
    #[serde(default)]
    admin_secret: RawSecrets,
    #[serde(default)]
    signing_secret: RawSecrets,
    #[serde(default = "yes")]
    learning: bool,
    #[serde(default = "yes")]
    quarantine: bool,
    #[serde(default = "yes")]
    allow_private_networks: bool,
}

/// A secret key's value: one string, or a list of them (rotation).
#[derive(Deserialize, Default)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum RawSecrets {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl RawSecrets {
    /// The entries; an empty one (or `env:` with no name) is an error.
    fn parse(self) -> Result<Vec<Secret>, String> {
        let texts = match self {
            RawSecrets::None => Vec::new(),
            RawSecrets::One(text) => vec![text],
            RawSecrets::Many(texts) => texts,
        };
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| match Secret::parse(text) {
                _ if text.is_empty() => Err(format!("entry {i} is empty")),
                Secret::Env(name) if name.is_empty() => {
                    Err(format!("entry {i} is \"env:\" without a variable name"))
                }
                secret => Ok(secret),
            })
            .collect()
    }
}

fn default_storage() -> String {
    "./data".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_ttl() -> String {
    "7d".into()
}
fn default_retry_period() -> String {
    "24h".into()
}
fn default_max_run_failures() -> u32 {
    5
}
fn default_maintenance_interval() -> String {
    "10m".into()
}
fn default_vacuum_retention() -> String {
    "7d".into()
}
fn default_schedule() -> String {
    "*/5 * * * *".into()
}
fn yes() -> bool {
    true
}

impl Config {
    /// Loads `path` if given (it must exist), else `./tripwire.toml` if it
    /// exists, else the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        match chosen {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                Config::parse(&text, &p.display().to_string(), &base)
            }
            None => Config::parse(DEFAULT_CONFIG, "embedded default config", Path::new("")),
        }
    }

    /// Parses and validates config text; relative storage paths resolve
    /// against `base` (the config file's folder).
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let storage = raw
            .storage
            .unwrap_or_else(|| toml::Value::String(default_storage()));
        let storage = storage::parse(storage, base).map_err(invalid)?;
        let listen = raw.listen.parse().map_err(|_| {
            invalid(format!(
                "listen: {:?} is not an address like \"127.0.0.1:8080\"",
                raw.listen
            ))
        })?;
        let identity_ttl =
            parse_duration(&raw.identity_ttl).map_err(|m| invalid(format!("identity_ttl: {m}")))?;
        crate::schedule::Schedule::from_str(&raw.default_schedule)
            .map_err(|m| invalid(format!("default_schedule: {m}")))?;
        let workspaces = validate_workspaces(raw.workspace).map_err(invalid)?;
        let ingest = raw.ingest.validate(base).map_err(invalid)?;
        let delivery_retry_period = parse_duration(&raw.delivery_retry_period)
            .map_err(|m| invalid(format!("delivery_retry_period: {m}")))?;
        let server = raw.server.validate().map_err(invalid)?;
        let limits = limits::RawLimits {
            query_timeout: raw.query_timeout,
            query_memory: raw.query_memory,
            max_learned_names: raw.max_learned_names,
            max_learned_fields: raw.max_learned_fields,
            max_line_bytes: raw.max_line_bytes,
            max_events_per_second: raw.max_events_per_second,
        }
        .validate()
        .map_err(invalid)?;
        let engine = raw.engine.validate().map_err(invalid)?;
        let maintenance_interval = parse_duration(&raw.maintenance_interval)
            .and_then(|d| at_least(d, MIN_MAINTENANCE_INTERVAL))
            .map_err(|m| invalid(format!("maintenance_interval: {m}")))?;
        let vacuum_retention = parse_duration(&raw.vacuum_retention)
            .and_then(|d| at_least(d, MIN_VACUUM_RETENTION))
            .map_err(|m| invalid(format!("vacuum_retention: {m}")))?;
        let retention = raw
            .retention
            .as_deref()
            .map(|text| parse_duration(text).and_then(|d| at_least(d, MIN_RETENTION)))
            .transpose()
            .map_err(|m| invalid(format!("retention: {m}")))?;
        Ok(Config {
            origin: origin.to_string(),
            project_dir: base.to_path_buf(),
            storage: storage.url,
            storage_s3: storage.s3,
            listen,
            identity_ttl,
            default_schedule: raw.default_schedule,
            workspaces,
            ingest,
            delivery_retry_period,
            server,
            limits,
            engine,
            metrics_public: raw.metrics_public,
            maintenance_interval,
            vacuum_retention,
            retention,
            max_run_failures: raw.max_run_failures,
        })
    }

    /// The S3 options of `[storage]` (object_store's names), secrets
    /// resolved; a secret naming an unset variable is an error naming its key.
    pub fn storage_options(&self) -> Result<Vec<(&'static str, String)>, ConfigError> {
        self.storage_s3
            .options()
            .map_err(|message| ConfigError::Invalid {
                origin: self.origin.clone(),
                message,
            })
    }

    /// Every configured secret entry that resolves to nothing (an unset or
    /// empty variable), as `workspace "W": KEY names VARIABLE, which is not
    /// set`. `serve` refuses to start while this is not empty.
    pub fn unresolved_secrets(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for workspace in &self.workspaces {
            for key in SECRET_KEYS {
                for secret in workspace.secrets(key) {
                    if secret.resolve().is_none() {
                        problems.push(format!(
                            "workspace {:?}: {key} names {}, which is not set (or empty)",
                            workspace.id,
                            secret.describe()
                        ));
                    }
                }
            }
        }
        problems
    }

    /// The workspace with this id.
    pub fn workspace(&self, id: &str) -> Option<&Workspace> {
        self.workspaces.iter().find(|w| w.id == id)
    }

    /// The workspace a command works on: the one named, or the only one.
    pub fn pick_workspace(&self, id: Option<&str>) -> Result<&Workspace, String> {
        match id {
            Some(id) => self.workspace(id).ok_or_else(|| {
                format!(
                    "unknown workspace {id:?} (configured in {}: {})",
                    self.origin,
                    self.workspace_ids()
                )
            }),
            None if self.workspaces.len() == 1 => Ok(&self.workspaces[0]),
            None => Err(format!(
                "{} workspaces are configured ({}): pass --workspace",
                self.workspaces.len(),
                self.workspace_ids()
            )),
        }
    }

    fn workspace_ids(&self) -> String {
        let ids: Vec<&str> = self.workspaces.iter().map(|w| w.id.as_str()).collect();
        ids.join(", ")
    }
}

fn validate_workspaces(raw: Vec<RawWorkspace>) -> Result<Vec<Workspace>, String> {
    if raw.is_empty() {
        return Err("workspace: at least one [[workspace]] with an id is required".into());
    }
    let mut seen = std::collections::HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, w)| {
            validate_workspace_id(&w.id).map_err(|m| format!("workspace[{i}].id: {m}"))?;
            if !seen.insert(w.id.clone()) {
                return Err(format!("workspace[{i}].id: {:?} is configured twice", w.id));
            }
            let secrets = |key: &str, raw: RawSecrets| {
                raw.parse()
                    .map_err(|m| format!("workspace[{i}].{key}: {m}"))
            };
            Ok(Workspace {
                secret: secrets("secret", w.secret)?,
                admin_secret: secrets("admin_secret", w.admin_secret)?,
                signing_secret: secrets("signing_secret", w.signing_secret)?,
                id: w.id,
                learning: w.learning,
                quarantine: w.quarantine,
                allow_private_networks: w.allow_private_networks,
            })
        })
        .collect()
}

/// The shortest `maintenance_interval`: a pass must not run back to back.
const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest `vacuum_retention`: longer than any run reads a snapshot.
const MIN_VACUUM_RETENTION: Duration = Duration::from_secs(60 * 60);
/// The shortest `retention` of events: a day.
const MIN_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

fn at_least(value: Duration, minimum: Duration) -> Result<Duration, String> {
    match value >= minimum {
        true => Ok(value),
        false => Err(format!("must be at least {}s", minimum.as_secs())),
    }
}

/// Workspace ids name folders under the storage root, so they are kept plain.
fn validate_workspace_id(id: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.is_empty() || id.len() > 128 || !id.chars().all(plain) || id.starts_with(['-', '_']) {
        return Err(format!(
            "{id:?} must be 1-128 letters, digits, '-' or '_', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "t.toml", Path::new("/proj"))
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::parse(DEFAULT_CONFIG, "default", Path::new("/proj")).unwrap();
        assert_eq!(config.workspaces[0].id, "shop");
        assert_eq!(config.identity_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(config.storage.as_str(), "file:///proj/data/");
        assert_eq!(
            config.workspaces[0].secret,
            [Secret::Env("SHOP_SECRET".into())]
        );
        assert_eq!(
            config.workspaces[0].admin_secret,
            [Secret::Env("SHOP_ADMIN".into())]
        );
        assert!(!config.metrics_public);
        assert!(config.workspaces[0].allow_private_networks);
    }

    #[test]
    fn secrets_are_a_string_or_a_list_for_rotation() {
        let config = parse(
            "metrics_public = true\n[[workspace]]\nid = \"a\"\nsecret = [\"old\", \"env:NEW_KEY\"]\n\
             admin_secret = \"adm\"\nallow_private_networks = false\n",
        )
        .unwrap();
        let a = &config.workspaces[0];
        assert_eq!(
            a.secret,
            [Secret::Literal("old".into()), Secret::Env("NEW_KEY".into())]
        );
        assert_eq!(a.admin_secret, [Secret::Literal("adm".into())]);
        assert!(a.signing_secret.is_empty());
        assert!(config.metrics_public && !a.allow_private_networks);
        for (line, named) in [
            ("secret = 3", "secret"),
            (
                "admin_secret = [\"\"]",
                "workspace[0].admin_secret: entry 0 is empty",
            ),
            ("signing_secret = \"env:\"", "workspace[0].signing_secret"),
        ] {
            let err = parse(&format!("[[workspace]]\nid = \"a\"\n{line}\n")).unwrap_err();
            assert!(err.to_string().contains(named), "{line}: {err}");
        }
    }

    #[test]
    fn unresolved_secrets_name_the_workspace_the_key_and_the_variable() {
        let config = parse(
            "[[workspace]]\nid = \"a\"\nsecret = \"lit\"\n\
             admin_secret = [\"x\", \"env:TRIPWIRE_TEST_SURELY_UNSET_VAR\"]\n",
        )
        .unwrap();
        let problems = config.unresolved_secrets();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("\"a\"")
                && problems[0].contains("admin_secret")
                && problems[0].contains("TRIPWIRE_TEST_SURELY_UNSET_VAR"),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("storge = \"x\"\n[[workspace]]\nid = \"a\"").unwrap_err();
        assert!(err.to_string().contains("storge"), "{err}");
        let err = parse("[[workspace]]\nid = \"a\"\nsecert = \"x\"").unwrap_err();
        assert!(err.to_string().contains("secert"), "{err}");
        let err = parse("[server]\nheader_timeot = \"1s\"\n[[workspace]]\nid = \"a\"").unwrap_err();
        assert!(err.to_string().contains("header_timeot"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("identity_ttl = \"7x\"", "identity_ttl"),
            ("listen = \"nowhere\"", "listen"),
            ("default_schedule = \"every day\"", "default_schedule"),
            ("storage = \"gs://bucket/x\"", "storage"),
            ("query_timeout = \"0s\"", "query_timeout"),
            ("max_learned_names = 0", "max_learned_names"),
            ("max_line_bytes = 2147483648", "max_line_bytes"),
            ("max_events_per_second = 0", "max_events_per_second"),
            (
                "[server]\nheader_timeout = \"soon\"",
                "server.header_timeout",
            ),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            ("[ingest]\nmax_dedupe_bytes = 0", "ingest.max_dedupe_bytes"),
            ("[ingest]\nmax_wal_bytes = 0", "ingest.max_wal_bytes"),
        ];
        for (line, key) in cases {
            let err = parse(&format!("{line}\n[[workspace]]\nid = \"a\"")).unwrap_err();
            assert!(err.to_string().contains(key), "{line}: {err}");
        }
    }

    #[test]
    fn workspaces_are_checked() {
        assert!(parse("").unwrap_err().to_string().contains("workspace"));
        let dup = parse("[[workspace]]\nid = \"a\"\n[[workspace]]\nid = \"a\"").unwrap_err();
        assert!(dup.to_string().contains("workspace[1].id"), "{dup}");
        let bad = parse("[[workspace]]\nid = \"../etc\"").unwrap_err();
        assert!(bad.to_string().contains("workspace[0].id"), "{bad}");
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::parse("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
