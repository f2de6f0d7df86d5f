//! Segments (docs/reference.md "Flows"): named sets of contacts. Either SQL in
//! `queries/segments/NAME.sql` returning `email` and/or `user_id`, evaluated
//! in the run's session (so at the run's clock), or a static list imported
//! from CSV (`tripwire import --segment NAME contacts.csv`), kept under the
//! storage root as `<workspace>/state/segments/NAME.json` and replaced whole
//! by each import.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use crate::project::{FileError, SEGMENT_DIR, file_name, load_files};
use crate::sql::{QueryError, plan_read_only, replace_table};
use crate::store::{Store, StoreError};

/// A segment as defined in the project.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentSource {
    Sql {
        path: std::path::PathBuf,
        sql: String,
    },
    List(Vec<Member>),
}

/// One member of a static list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub email: Option<String>,
    pub user_id: Option<String>,
}

/// The key columns a segment offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub email: bool,
    pub user_id: bool,
}

/// The SQL segments of the project folder, by name.
pub fn load_sql_segments(project_dir: &Path) -> (Vec<(String, SegmentSource)>, Vec<FileError>) {
    load_files(&project_dir.join(SEGMENT_DIR), "sql", |path, sql| {
        let name = file_name(path)?;
        let source = SegmentSource::Sql {
            path: path.to_path_buf(),
            sql: sql.to_string(),
        };
        Ok::<_, FileError>((name, source))
    })
}

/// The table name a segment is registered under in a run's session.
pub fn table_name(segment: &str) -> String {
    let plain: String = segment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__tripwire_segment_{plain}")
}

/// Registers `segment` on `ctx` and says which key columns it offers.
pub async fn register(
    ctx: &SessionContext,
    name: &str,
    source: &SegmentSource,
) -> Result<Keys, String> {
    let table = table_name(name);
    let keys = match source {
        SegmentSource::Sql { path, sql } => {
            let frame = plan_read_only(ctx, sql)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let schema = frame.schema();
            let keys = Keys {
                email: schema.has_column_with_unqualified_name("email"),
                user_id: schema.has_column_with_unqualified_name("user_id"),
            };
            if !keys.email && !keys.user_id {
                return Err(format!(
                    "{}: a segment must return a column email or user_id",
                    path.display()
                ));
            }
            replace_table(ctx, &table, frame.into_view()).map_err(|e| e.to_string())?;
            keys
        }
        SegmentSource::List(members) => {
            let batch = members_batch(members).map_err(|e| e.to_string())?;
            let provider =
                MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| e.to_string())?;
            replace_table(ctx, &table, Arc::new(provider)).map_err(|e| e.to_string())?;
            Keys {
                email: true,
                user_id: true,
            }
        }
    };
    Ok(keys)
}

fn members_batch(members: &[Member]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
    ]));
    let email: ArrayRef = Arc::new(StringArray::from_iter(
        members.iter().map(|m| m.email.as_deref()),
    ));
    let user: ArrayRef = Arc::new(StringArray::from_iter(
        members.iter().map(|m| m.user_id.as_deref()),
    ));
    RecordBatch::try_new(schema, vec![email, user])
}

fn list_location(
    store: &Store,
    workspace: &str,
    name: &str,
) -> Result<(std::sync::Arc<dyn object_store::ObjectStore>, ObjectPath), StoreError> {
    store.state_location(&format!("{workspace}/state/segments/{name}.json"))
}

/// The static lists saved for `workspace`, by name.
pub async fn load_lists(
    store: &Store,
    workspace: &str,
) -> Result<Vec<(String, SegmentSource)>, StoreError> {
    let (objects, file) = list_location(store, workspace, "x")?;
    let dir = ObjectPath::from(file.as_ref().trim_end_matches("x.json"));
    let failed = |e: &dyn std::fmt::Display| StoreError::Root {
        root: store.root().to_string(),
        message: e.to_string(),
    };
    let mut listed = Vec::new();
    let mut entries = objects.list(Some(&dir));
    while let Some(entry) = futures::StreamExt::next(&mut entries).await {
        let meta = match entry {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => break,
            Err(e) => return Err(failed(&e)),
        };
        let Some(name) = meta
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        let bytes = objects
            .get(&meta.location)
            .await
            .map_err(|e| failed(&e))?
            .bytes()
            .await
            .map_err(|e| failed(&e))?;
        let members: Vec<Member> = serde_json::from_slice(&bytes)
            .map_err(|e| failed(&format!("{}: {e}", meta.location)))?;
        listed.push((name, SegmentSource::List(members)));
    }
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(listed)
}

/// Reads a CSV of contacts (a header with `email` and/or `user_id`).
pub fn read_csv(path: &Path) -> Result<Vec<Member>, String> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (email, user) = (column("email"), column("user_id"));
    if email.is_none() && user.is_none() {
        return Err(format!(
            "{}:1: the header needs a column email or user_id",
            path.display()
        ));
    }
    let mut members = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{}:{}: {e}", path.display(), i + 2))?;
        let field = |at: Option<usize>| {
            at.and_then(|at| record.get(at))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let member = Member {
            email: field(email),
            user_id: field(user),
        };
        if member.email.is_some() || member.user_id.is_some() {
            members.push(member);
        }
    }
    Ok(members)
}

/// Saves `members` as segment `name` of `workspace`, replacing any earlier list.
pub async fn save_list(
    store: &Store,
    workspace: &str,
    name: &str,
    members: &[Member],
) -> Result<(), StoreError> {
    let (objects, path) = list_location(store, workspace, name)?;
    let bytes = serde_json::to_vec(members).map_err(|e| StoreError::Root {
        root: store.root().to_string(),
        message: e.to_string(),
    })?;
    objects
        .put(&path, bytes.into())
        .await
        .map_err(|e| StoreError::Root {
            root: store.root().to_string(),
            message: e.to_string(),
        })?;
    Ok(())
}

/// A segment name must be a plain name: it names a file and a table.
pub fn check_name(name: &str) -> Result<(), QueryError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(plain) {
        return Err(QueryError::Sql(format!(
            "segment name {name:?}: use letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}
