//! A person's right to erasure (`tripwire erase --email E --user-id U
//! --client-id C …`, docs/reference.md "CLI"). In each workspace:
//! - the identifiers given are widened by the identify calls that link them
//!   (a client id identified as an erased email is erased too);
//! - their events are deleted (so `identities` and `contacts`, views over
//!   the events, forget them), with a normal Delta delete: the surviving
//!   rows keep their stamps and fire nothing again;
//! - quarantined input that mentions them is deleted;
//! - their matches are deleted, and the deliveries planned for them keep
//!   their id, flow, status and attempts but lose their contact and payload;
//! - lines that `file` actions wrote about them are removed from the files;
//! - the erasure is recorded in `erasures`, as counts, not values.
//!
//! The data is physically gone once VACUUM deletes the files the deletes
//! replaced (after `vacuum_retention`; `tripwire optimize --vacuum`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use chrono::{DateTime, Utc};
use datafusion::functions::expr_fn::strpos;
use datafusion::prelude::{Expr, col, lit};
use deltalake_core::DeltaTable;

use crate::config::Config;
use crate::flow::file::Action;
use crate::flow::load_flows;
use crate::session::{SessionSpec, workspace_session};
use crate::sql::{QueryError, run_read_only};
use crate::store::commit::{Always, commit};
use crate::store::erasures::{Erasure, erasure_batch};
use crate::store::replan::{delete_rows, replanned};
use crate::store::{Store, StoreError, TableKind};

/// Who to erase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub emails: BTreeSet<String>,
    pub user_ids: BTreeSet<String>,
    pub client_ids: BTreeSet<String>,
}

impl Subject {
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.user_ids.is_empty() && self.client_ids.is_empty()
    }

    fn count(&self) -> i64 {
        (self.emails.len() + self.user_ids.len() + self.client_ids.len()) as i64
    }

    /// Rows whose `email`, `user_id` or `client_id` is one of ours.
    fn rows(&self) -> Expr {
        [
            ("email", &self.emails),
            ("user_id", &self.user_ids),
            ("client_id", &self.client_ids),
        ]
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(column, values)| {
            col(column).in_list(values.iter().map(|v| lit(v.clone())).collect(), false)
        })
        .reduce(Expr::or)
        .unwrap_or(lit(false))
    }

    /// The contact keys our people have (docs/reference.md "Contacts").
    fn contacts(&self) -> Vec<String> {
        let keyed = |kind: &str, values: &BTreeSet<String>| {
            values
                .iter()
                .map(|v| format!("{kind}:{v}"))
                .collect::<Vec<_>>()
        };
        let mut contacts = keyed("email", &self.emails);
        contacts.extend(keyed("user_id", &self.user_ids));
        contacts.extend(keyed("client_id", &self.client_ids));
        contacts
    }

    fn values(&self) -> impl Iterator<Item = &String> {
        self.emails
            .iter()
            .chain(&self.user_ids)
            .chain(&self.client_ids)
    }
}

/// Why an erasure did not finish (what it did so far stays done; running it
/// again finishes it).
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl From<EraseError> for crate::Error {
    fn from(e: EraseError) -> crate::Error {
        match e {
            EraseError::Store(e) => crate::Error::Store(e),
            EraseError::Query(e) => crate::Error::Query(e),
            EraseError::File { .. } => crate::Error::Server(e.to_string()),
        }
    }
}

/// Erases `subject` from `workspace`; returns what was erased.
pub async fn erase(
    config: &Config,
    store: &Store,
    workspace: &str,
    subject: &Subject,
    now: DateTime<Utc>,
) -> Result<Erasure, EraseError> {
    let subject = linked(config, store, workspace, subject, now).await?;
    let mut erasure = Erasure {
        erasure_id: uuid::Uuid::now_v7().to_string(),
        erased_at: now.timestamp_micros(),
        identifiers: subject.count(),
        ..Erasure::default()
    };
    if let Some(mut events) = store.open(workspace, TableKind::Events).await? {
        erasure.events = delete_rows(&mut events, subject.rows()).await?;
        // Persisted identity index snapshots hold their emails too; the
        // next run rebuilds the index from what is left.
        crate::identity::index::forget_snapshots(store, workspace).await?;
    }
    if let Some(mut quarantine) = store.open(workspace, TableKind::Quarantine).await? {
        erasure.quarantine = delete_rows(&mut quarantine, mentions(&subject)).await?;
    }
    if let Some(mut ledger) = store.open(workspace, TableKind::Ledger).await? {
        // Matches, and rows still waiting for their identity.
        let kinds = vec![lit("match"), lit("pending")];
        let matches = col("kind").in_list(kinds, false).and(subject.rows());
        erasure.matches = delete_rows(&mut ledger, matches).await?;
        erasure.deliveries = forget_deliveries(&mut ledger, &subject).await?;
        // Snapshots of the open deliveries hold payloads too; the delivery
        // worker rebuilds its index from what is left.
        let snapshots = format!("{workspace}/{}", crate::store::state::OPEN_DELIVERIES);
        store.state_dir(&snapshots)?.clear().await?;
    }
    erasure.file_lines = erase_file_lines(config, &subject)?;
    let mut erasures = store.open_or_create(workspace, TableKind::Erasures).await?;
    commit(&mut erasures, &mut Always(vec![erasure_batch(&erasure)])).await?;
    Ok(erasure)
}

/// `subject` with the client and user ids that identify calls link to it.
async fn linked(
    config: &Config,
    store: &Store,
    workspace: &str,
    subject: &Subject,
    now: DateTime<Utc>,
) -> Result<Subject, EraseError> {
    let spec = SessionSpec {
        store,
        workspace,
        now,
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await?;
    let quoted = |values: &BTreeSet<String>| {
        let listed: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect();
        match listed.is_empty() {
            true => "NULL".to_string(),
            false => listed.join(", "),
        }
    };
    let sql = format!(
        "SELECT client_id, user_id FROM events WHERE type = 'identify' AND \
         (email IN ({}) OR user_id IN ({}) OR client_id IN ({}))",
        quoted(&subject.emails),
        quoted(&subject.user_ids),
        quoted(&subject.client_ids)
    );
    let mut widened = subject.clone();
    for batch in run_read_only(&ctx, &sql).await? {
        for (column, into) in [(0, &mut widened.client_ids), (1, &mut widened.user_ids)] {
            let values = arrow::compute::cast(batch.column(column), &DataType::Utf8)
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            let values = values.as_string::<i32>();
            into.extend(values.iter().flatten().map(str::to_string));
        }
    }
    Ok(widened)
}

/// Quarantined input that mentions any of the identifiers.
fn mentions(subject: &Subject) -> Expr {
    subject
        .values()
        .map(|v| strpos(col("raw"), lit(v.clone())).gt(lit(0)))
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// Deliveries to our people keep their id, status and attempts; their
/// contact becomes `erased` and their payload goes (a pending one is then
/// refused rather than sent).
async fn forget_deliveries(ledger: &mut DeltaTable, subject: &Subject) -> Result<i64, StoreError> {
    let contacts: Vec<Expr> = subject.contacts().into_iter().map(lit).collect();
    replanned(ledger, |ledger| {
        let ours = col("kind")
            .eq(lit("delivery"))
            .and(col("contact").in_list(contacts.clone(), false));
        async move {
            let (updated, metrics) = ledger
                .update()
                .with_predicate(ours)
                .with_update("contact", lit("erased"))
                .with_update("payload", lit(datafusion::scalar::ScalarValue::Utf8(None)))
                .with_commit_properties(crate::store::table::operation_properties())
                .await?;
            Ok((updated, metrics.num_updated_rows as i64))
        }
    })
    .await
}

/// Removes the lines about our people from every file a `file` action of
/// the project writes; how many lines.
fn erase_file_lines(config: &Config, subject: &Subject) -> Result<i64, EraseError> {
    let (flows, _) = load_flows(&config.project_dir);
    let files: BTreeSet<PathBuf> = flows
        .iter()
        .flat_map(|f| f.actions.values())
        .filter_map(|a| match a {
            // Flow paths are relative to the project folder (and stay in it).
            Action::File { path } => Some(config.project_dir.join(path)),
            _ => None,
        })
        .collect();
    let mut removed = 0;
    for file in files.iter().filter(|f| f.exists()) {
        removed += remove_lines(file, subject).map_err(|e| EraseError::File {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(removed)
}

/// Rewrites `file` without the lines whose contact is one of ours (a new
/// file renamed over the old one, so a crash leaves one or the other).
fn remove_lines(file: &Path, subject: &Subject) -> std::io::Result<i64> {
    let text = std::fs::read_to_string(file)?;
    let mut kept = String::with_capacity(text.len());
    let mut removed = 0;
    for line in text.lines() {
        match is_about(line, subject) {
            true => removed += 1,
            false => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    if removed > 0 {
        let temporary = file.with_extension("erasing");
        std::fs::write(&temporary, kept)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, file)?;
    }
    Ok(removed)
}

/// Whether a delivered line's contact is one of ours.
fn is_about(line: &str, subject: &Subject) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    let contact = &value["contact"];
    let has =
        |key: &str, set: &BTreeSet<String>| contact[key].as_str().is_some_and(|v| set.contains(v));
    has("email", &subject.emails)
        || has("user_id", &subject.user_ids)
        || has("client_id", &subject.client_ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Subject {
        Subject {
            emails: ["ann@example.com".to_string()].into(),
            ..Subject::default()
        }
    }

    #[test]
    fn a_delivered_line_is_about_its_contact() {
        let line = r#"{"delivery_id":"d","contact":{"email":"ann@example.com","user_id":null}}"#;
        assert!(is_about(line, &ann()));
        let other = r#"{"contact":{"email":"bo@example.com"},"data":{"note":"ann@example.com"}}"#;
        assert!(!is_about(other, &ann()));
        assert!(!is_about("not json", &ann()));
    }

    /// Rows `ids`, every even one ann's.
    fn rows_of(ids: std::ops::Range<i64>) -> arrow::array::RecordBatch {
        use std::sync::Arc;

        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let emails: Vec<&str> = ids
            .clone()
            .map(|id| match id % 2 {
                0 => "ann@example.com",
                _ => "bo@example.com",
            })
            .collect();
        arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from(emails)),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_erasure_that_meets_another_writers_compaction_erases_on_the_table_as_it_is_now() {
        use crate::store::rewrite::tests::{every_row, read_before_a_merge};

        let dir = tempfile::tempdir().unwrap();
        let mut erasing = read_before_a_merge(dir.path(), rows_of).await;
        let ann = col("email").eq(lit("ann@example.com"));
        let deleted = delete_rows(&mut erasing, ann).await.unwrap();
        assert_eq!(deleted, 15);
        let left = every_row(&erasing).await;
        let emails: Vec<String> = left
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name("email").unwrap().as_string::<i32>();
                column
                    .iter()
                    .map(|e| e.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(emails.len(), 15, "no row twice");
        assert!(emails.iter().all(|e| e == "bo@example.com"), "{emails:?}");
    }
}
