//! Trigger files (docs/reference.md "Triggers"): `queries/triggers/NAME.sql`, a header of SQL
//! comments (`-- key: value`) followed by the analyst's query.

use std::path::{Path, PathBuf};

use crate::duration::parse_duration;
use crate::project::{FileError, file_name};
use crate::schedule::Schedule;
use crate::window::Backfill;

/// The header keys a trigger file may set.
pub const HEADER_KEYS: &[&str] = &[
    "schedule",
    "workspace",
    "requires_identity",
    "active",
    "description",
    "backfill",
    "wait_for_identity",
];

/// How long a row that requires an identity waits for one by default.
pub const DEFAULT_WAIT_FOR_IDENTITY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// One parsed trigger file.
#[derive(Debug, Clone)]
pub struct TriggerFile {
    /// The file stem.
    pub name: String,
    pub path: PathBuf,
    /// The `schedule` header as written (`None`: the config's default).
    pub schedule: Option<String>,
    pub workspace: Option<String>,
    pub requires_identity: bool,
    pub active: bool,
    pub description: Option<String>,
    /// What the first run reads besides new events (`backfill: all|7d`).
    pub backfill: Backfill,
    /// How long a row that requires an identity it lacks waits for one
    /// (`wait_for_identity: 1h`; zero: dropped at once).
    pub wait_for_identity: std::time::Duration,
    /// The query, with the header lines blanked so line numbers match the file.
    pub sql: String,
}

impl TriggerFile {
    /// Parses the text of `path`; its first problem if it has any.
    pub fn parse(path: &Path, text: &str) -> Result<TriggerFile, FileError> {
        TriggerFile::parse_all(path, text).map_err(|mut problems| problems.remove(0))
    }

    /// Parses the text of `path`; every problem of its header if it has any.
    pub fn parse_all(path: &Path, text: &str) -> Result<TriggerFile, Vec<FileError>> {
        let error = |line: usize, reason: String| FileError {
            path: path.display().to_string(),
            line,
            reason,
        };
        let name = file_name(path)?;
        let mut problems = Vec::new();
        let mut trigger = TriggerFile {
            name,
            path: path.to_path_buf(),
            schedule: None,
            workspace: None,
            requires_identity: true,
            active: true,
            description: None,
            backfill: Backfill::Nothing,
            wait_for_identity: DEFAULT_WAIT_FOR_IDENTITY,
            sql: String::new(),
        };
        let mut sql_lines = Vec::new();
        let mut in_header = true;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if in_header && !trimmed.is_empty() && !trimmed.starts_with("--") {
                in_header = false;
            }
            match header_entry(trimmed).filter(|_| in_header) {
                Some((key, value)) => {
                    if let Err(reason) = trigger.set(key, value) {
                        problems.push(error(i + 1, reason));
                    }
                    sql_lines.push("");
                }
                None => sql_lines.push(line),
            }
        }
        trigger.sql = sql_lines.join("\n");
        if trigger.sql.trim().is_empty() || in_header {
            problems.push(error(
                text.lines().count().max(1),
                "the file has no query after its header".into(),
            ));
        }
        match problems.is_empty() {
            true => Ok(trigger),
            false => Err(problems),
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "schedule" => {
                value.parse::<Schedule>()?;
                self.schedule = Some(value.to_string());
            }
            "workspace" => self.workspace = Some(value.to_string()),
            "requires_identity" => self.requires_identity = parse_bool(key, value)?,
            "active" => self.active = parse_bool(key, value)?,
            "description" => self.description = Some(value.to_string()),
            "backfill" => self.backfill = parse_backfill(value)?,
            "wait_for_identity" => {
                self.wait_for_identity = match value {
                    "0" => std::time::Duration::ZERO,
                    duration => parse_duration(duration)
                        .map_err(|e| format!("wait_for_identity: {e}; or 0 to drop at once"))?,
                }
            }
            other => {
                return Err(format!(
                    "unknown header key {other:?} (known: {})",
                    HEADER_KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `-- key: value` → (key, value); other comments are not header entries.
fn header_entry(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_prefix("--")?.trim();
    let (key, value) = body.split_once(':')?;
    let key = key.trim();
    let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    is_key.then(|| (key, value.trim()))
}

/// `all`, or a duration such as `7d` (events sent within it before the run).
fn parse_backfill(value: &str) -> Result<Backfill, String> {
    match value {
        "all" => Ok(Backfill::All),
        "none" => Ok(Backfill::Nothing),
        duration => parse_duration(duration)
            .map(Backfill::Recent)
            .map_err(|e| format!("backfill: {e}; or `all`")),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(format!("{key}: {value:?} is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TriggerFile, FileError> {
        TriggerFile::parse(Path::new("queries/triggers/cart_abandoned.sql"), text)
    }

    #[test]
    fn the_spec_example() {
        let t = parse(
            "-- schedule: */10 * * * *\n-- workspace: shop\n-- requires_identity: true\n\
             SELECT client_id, email FROM new_events\nWHERE event_name = 'cart_abandoned'\n",
        )
        .unwrap();
        assert_eq!(t.name, "cart_abandoned");
        assert_eq!(t.schedule.as_deref(), Some("*/10 * * * *"));
        assert_eq!(t.workspace.as_deref(), Some("shop"));
        assert!(t.requires_identity && t.active);
        // Header lines are blanked, so the query keeps the file's line numbers.
        assert_eq!(
            t.sql.lines().nth(3),
            Some("SELECT client_id, email FROM new_events")
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("-- schedule: every day\nSELECT 1").unwrap_err();
        assert_eq!(
            (err.line, err.path.as_str()),
            (1, "queries/triggers/cart_abandoned.sql")
        );
        assert!(err.reason.contains("every day"));
        let err = parse("-- description: x\n-- activ: false\nSELECT 1").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("unknown header key \"activ\""));
        let err = parse("-- active: maybe\nSELECT 1").unwrap_err();
        assert!(err.reason.contains("active"));
        assert!(
            parse("-- active: false\n")
                .unwrap_err()
                .reason
                .contains("no query")
        );
    }

    #[test]
    fn every_header_problem_is_reported() {
        let path = Path::new("queries/triggers/t.sql");
        let text = "-- schedule: every day\n-- activ: x\n-- active: maybe\n-- workspace: shop\n";
        let problems = TriggerFile::parse_all(path, text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 3, 4], "{problems:?}");
        assert!(problems[3].reason.contains("no query"));
    }

    #[test]
    fn backfill_is_all_a_duration_or_nothing() {
        let backfill = |header: &str| parse(&format!("{header}\nSELECT 1")).map(|t| t.backfill);
        assert_eq!(backfill(""), Ok(Backfill::Nothing));
        assert_eq!(backfill("-- backfill: all"), Ok(Backfill::All));
        assert_eq!(
            backfill("-- backfill: 7d"),
            Ok(Backfill::Recent(std::time::Duration::from_secs(7 * 86_400)))
        );
        let err = backfill("-- backfill: forever").unwrap_err();
        assert!(err.reason.contains("backfill"), "{err}");
    }

    #[test]
    fn rows_wait_an_hour_for_an_identity_unless_the_header_says() {
        let wait = |header: &str| {
            parse(&format!("{header}\nSELECT 1")).map(|t| t.wait_for_identity.as_secs())
        };
        assert_eq!(wait(""), Ok(3600));
        assert_eq!(wait("-- wait_for_identity: 0"), Ok(0));
        assert_eq!(wait("-- wait_for_identity: 2d"), Ok(2 * 86_400));
        assert!(wait("-- wait_for_identity: later").is_err());
    }

    #[test]
    fn ordinary_comments_are_kept() {
        let t =
            parse("-- Fires when a cart is left behind.\n-- active: false\nSELECT 1 -- note: x")
                .unwrap();
        assert!(!t.active);
        assert!(t.sql.contains("-- note: x"));
    }
}
